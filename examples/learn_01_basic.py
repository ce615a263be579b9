"""Learning path, phase 1: code instead of mental arithmetic.

A plain model guesses at 7-digit products and long sums. An RLM writes code in its REPL, runs it,
reads the output, and answers with FINAL(...). Run:

    python examples/learn_01_basic.py            # embedded model, or your API key's provider
"""

from __future__ import annotations

import random

from _common import make_rlm, run_or_explain


def main() -> None:
    rng = random.Random(1)
    numbers = [rng.randint(1000, 99999) for _ in range(500)]
    context = "\n".join(str(n) for n in numbers)
    expected = sum(numbers)
    rlm = make_rlm(max_iterations=8, verbose=True)
    result = rlm.completion(context, "What is the sum of all the numbers in the context? Answer with the number.")
    print(f"\nRLM answer: {result.answer}")
    print(f"expected:   {expected}")
    print(f"correct:    {str(expected) in (result.answer or '').replace(',', '')}")
    print(f"iterations: {result.iterations}, time: {result.execution_time:.1f}s, usage: {result.usage}")


if __name__ == "__main__":
    run_or_explain(main)
