"""Learning path, phase 4: the same questions through a plain model call and through the RLM.

A plain call pastes the context into one prompt; when the context is longer than the window it is
cut, and whatever lies past the cut is lost. It also has to count and add in its head. The RLM
uses the same model but keeps the context in its REPL and computes with code.
``rlm_graph.compare.compare`` runs both on one question; this script runs three and prints the
accuracy side by side. The plain call's window is set to 8,000 characters here, about what the
embedded model reads in a few tens of seconds. Run:

    python examples/learn_04_comparison.py
"""

from __future__ import annotations

import random
from collections.abc import Callable

from _common import banner, make_rlm, run_or_explain

from rlm_graph.compare import ComparisonResult, compare, format_summary, format_table

WINDOW_CHARS = 8_000


def sum_task(rng: random.Random) -> tuple[str, str, str]:
    """Adding 150 numbers: easy for code, hard to do in one's head."""
    numbers = [rng.randint(100, 999) for _ in range(150)]
    return "\n".join(map(str, numbers)), "What is the sum of all the numbers in the context? Answer with the number.", str(sum(numbers))


def needle_task(rng: random.Random) -> tuple[str, str, str]:
    """One fact near the end of a 20,000-character text: past the plain call's window."""
    lines = [f"Note {i}: routine check of rack {rng.randint(1, 40)} finished, all fans ok." for i in range(360)]
    password = rng.choice(["marigold", "heliotrope", "juniper", "saffron"])
    lines[330] = f"Note 330: the password of the vault is {password}."
    return "\n".join(lines), "What is the password of the vault? Answer with the password only.", password


def count_task(rng: random.Random) -> tuple[str, str, str]:
    """Counting matching lines in a short log: the whole log fits the window, the counting is the hard part."""
    levels = ["error"] * 13 + ["info"] * 40 + ["warn"] * 7
    rng.shuffle(levels)
    lines = [f"12:{i:02d}:07 level={level} worker-{rng.randint(1, 5)} job {rng.randint(100, 999)}" for i, level in enumerate(levels)]
    return "\n".join(lines), "How many lines of the log have level=error? Answer with the number.", "13"


TASKS: list[Callable[[random.Random], tuple[str, str, str]]] = [sum_task, needle_task, count_task]


def main() -> None:
    rng = random.Random(4)
    rlm = make_rlm(max_iterations=8)
    banner(rlm, "phase 4: plain call vs RLM")
    results: list[ComparisonResult] = []
    for i, make_task in enumerate(TASKS, 1):
        context, query, expected = make_task(rng)
        print(f"\n[{i}/{len(TASKS)}] {make_task.__doc__}", flush=True)
        result = compare(context, query, rlm=rlm, expected=expected, window_chars=WINDOW_CHARS)
        print(format_table(result), flush=True)
        results.append(result)
    print("\n" + format_summary(results))
    rlm_ok = all(r.rlm.correct for r in results)
    # "correct" here is about the RLM: the plain call is expected to miss some.
    print(f"\nRLM answer: {[r.rlm.answer for r in results]}")
    print(f"expected:   {[r.expected for r in results]}")
    print(f"correct:    {rlm_ok}")
    rlm_s, plain_s = sum(r.rlm.seconds for r in results), sum(r.plain.seconds for r in results)
    print(f"iterations: {[r.rlm.iterations for r in results]}, time: {rlm_s:.1f}s (RLM), {plain_s:.1f}s (plain)")


if __name__ == "__main__":
    run_or_explain(main)
