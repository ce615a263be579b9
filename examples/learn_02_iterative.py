"""Learning path, phase 2: look first, then compute, then answer, one iteration at a time.

The context is a JSON document the model never reads whole. Its first message shows only the
top-level keys, so it cannot write the counting code yet: it prints a record or two, reads that
output, and only on a later turn counts with code and answers. Every turn is written to ./logs as
a trajectory JSONL, which the script prints at the end. Run:

    python examples/learn_02_iterative.py
"""

from __future__ import annotations

import random
from collections import Counter
from typing import Any

from _common import banner, log_file, make_rlm, report, run_or_explain, show_trajectory

CITIES = ["Lyon", "Porto", "Ghent", "Turin", "Leeds", "Malmo"]
NAMES = ["Ada", "Bo", "Cy", "Di", "Ed", "Flo", "Gus", "Hal", "Ida", "Jo"]
QUESTION = "Which city do most of the orders ship to? Answer with the city name only."


def make_orders(seed: int = 2) -> tuple[dict[str, Any], str]:
    """A JSON export of 60 orders; most of them ship to one city."""
    rng = random.Random(seed)
    top = rng.choice(CITIES)
    cities = [top] * 18 + [c for c in CITIES if c != top for _ in range(rng.randint(5, 8))]
    cities += [rng.choice([c for c in CITIES if c != top]) for _ in range(60 - len(cities))]
    rng.shuffle(cities)
    orders = [
        {
            "order_id": 5001 + i,
            "customer": rng.choice(NAMES),
            "city": city,
            "items": rng.randint(1, 5),
            "total_eur": round(rng.uniform(5, 300), 2),
        }
        for i, city in enumerate(cities)
    ]
    counts = Counter(cities).most_common(2)
    assert counts[0][0] == top and counts[0][1] > counts[1][1]
    return {"source": "shop export", "exported": "2026-03-31", "orders": orders}, top


def main() -> None:
    context, expected = make_orders()
    rlm = make_rlm(max_iterations=10, verbose=True, log_dir="logs")
    banner(rlm, "phase 2: iterative inspection")
    result = rlm.completion(context, QUESTION)
    report(result, expected)
    path = log_file("logs", result)
    if path is not None:
        show_trajectory(path)


if __name__ == "__main__":
    run_or_explain(main)
