"""Learning path, phase 2: inspect, then narrow down, then answer, one iteration at a time.

The model never reads the log below. It sees its size and a short preview, prints the lines that
matter, reads that output, counts with code on the next turn, and answers only once an output
shows the answer. Every turn is written to ./logs as a trajectory JSONL, printed at the end. Run:

    python examples/learn_02_iterative.py
"""

from __future__ import annotations

import random
from collections import Counter

from _common import banner, log_file, make_rlm, report, run_or_explain, show_trajectory

USERS = ["alice", "bob", "carol", "dave", "erin", "frank"]
QUESTION = "Which user has the most login_failed events in the log? Answer with the user name only."


def make_log(seed: int = 2) -> tuple[str, str]:
    """A login log of 120 lines; one user fails to log in clearly more often than the others."""
    rng = random.Random(seed)
    culprit = rng.choice(USERS)
    events = [("login_failed", culprit)] * 9
    events += [("login_failed", u) for u in USERS if u != culprit for _ in range(rng.randint(1, 3))]
    while len(events) < 120:
        events.append((rng.choice(["login_ok", "logout", "password_changed"]), rng.choice(USERS)))
    rng.shuffle(events)
    lines = [
        f"2026-03-{1 + i // 10:02d} {8 + i % 10:02d}:{rng.randint(0, 59):02d}:{rng.randint(0, 59):02d} {event} user={user} ip=10.0.{rng.randint(0, 9)}.{rng.randint(1, 254)}"
        for i, (event, user) in enumerate(events)
    ]
    failed = Counter(user for event, user in events if event == "login_failed")
    assert failed.most_common(1)[0][0] == culprit
    return "\n".join(lines), culprit


def main() -> None:
    context, expected = make_log()
    rlm = make_rlm(max_iterations=8, verbose=True, log_dir="logs")
    banner(rlm, "phase 2: iterative inspection")
    result = rlm.completion(context, QUESTION)
    report(result, expected)
    path = log_file("logs", result)
    if path is not None:
        show_trajectory(path)


if __name__ == "__main__":
    run_or_explain(main)
