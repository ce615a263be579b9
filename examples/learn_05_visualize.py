"""Learning path, phase 5: watch a run in the trajectory viewer.

A multi-step run over a CSV file (loaded inside the sandbox as a list of row dicts, never into a
prompt) writes its trajectory to ./logs. The script prints where the log is and the command that
opens it in the web viewer, where each iteration shows the model's reply, the code, its output
and any sub-calls. Run:

    python examples/learn_05_visualize.py
    rlm-graph viz logs/
"""

from __future__ import annotations

import csv
import random
from collections import defaultdict
from pathlib import Path

from _common import banner, log_file, make_rlm, report, run_or_explain

DEPARTMENTS = ["Sales", "Support", "Research", "Legal", "Design"]
QUESTION = (
    "Which department has the highest total salary? `context` is a list of rows (dicts with the keys "
    "department and salary). First add up the salary of each department's rows with code and print the "
    "totals. When you have seen the printed totals, answer with FINAL and the department name."
)


def write_staff(path: Path, seed: int = 5) -> str:
    """A staff CSV of 40 rows; the department with the most people is not the one paid the most in total."""
    rng = random.Random(seed)
    rows = []
    for i in range(40):
        dept = "Support" if i < 12 else rng.choice(DEPARTMENTS)
        salary = rng.randint(20, 28) * 1000 if dept == "Support" else rng.randint(40, 95) * 1000
        rows.append({"employee_id": 100 + i, "name": f"emp{100 + i}", "department": dept, "salary": salary})
    rng.shuffle(rows)
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    totals: dict[str, int] = defaultdict(int)
    for r in rows:
        totals[r["department"]] += r["salary"]
    ranked = sorted(totals, key=totals.get, reverse=True)  # type: ignore[arg-type]
    assert totals[ranked[0]] > totals[ranked[1]] and ranked[0] != "Support"
    return ranked[0]


def main() -> None:
    data = Path(".rlm") / "learn_05_staff.csv"
    expected = write_staff(data)
    # answer_check=False: on the embedded 1.5B model the answer-form check rejects right answers
    # (see LEARNING.md, "Troubleshooting").
    rlm = make_rlm(max_iterations=10, verbose=True, log_dir="logs", answer_check=False)
    banner(rlm, "phase 5: a run to look at in the viewer")
    result = rlm.completion(data, QUESTION)
    report(result, expected)
    path = log_file("logs", result)
    print(f"\ntrajectory: {path}")
    print("next: open it in the viewer with\n\n    rlm-graph viz logs/\n")


if __name__ == "__main__":
    run_or_explain(main)
