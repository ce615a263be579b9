"""Learning path, phase 5: watch a run in the trajectory viewer.

A multi-step run over a JSON file writes its trajectory to ./logs. The file is loaded inside the
sandbox, never into a prompt: the model sees only its top-level keys, so it looks inside first,
then computes, then answers. The script prints where the log is and the command that opens it in
the web viewer, where each iteration shows the model's reply, the code, its output and any
sub-calls. Run:

    python examples/learn_05_visualize.py
    rlm-graph viz logs/
"""

from __future__ import annotations

import json
import random
from pathlib import Path

from _common import banner, log_file, make_rlm, report, run_or_explain

DEPARTMENTS = ["Sales", "Support", "Research", "Legal", "Design"]
QUESTION = "What is the total salary of the people in the Research department? Answer with the number."


def write_staff(path: Path, seed: int = 5) -> str:
    """A staff export of 40 people in five departments; returns the Research department's total salary."""
    rng = random.Random(seed)
    staff = []
    for i in range(40):
        dept = "Support" if i < 12 else rng.choice(DEPARTMENTS)
        salary = rng.randint(20, 28) * 1000 if dept == "Support" else rng.randint(40, 95) * 1000
        staff.append({"employee_id": 100 + i, "name": f"emp{100 + i}", "department": dept, "salary": salary})
    rng.shuffle(staff)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"company": "Acme", "exported": "2026-03-31", "staff": staff}, indent=1))
    return str(sum(person["salary"] for person in staff if person["department"] == "Research"))


def main() -> None:
    data = Path(".rlm") / "learn_05_staff.json"
    expected = write_staff(data)
    rlm = make_rlm(max_iterations=10, verbose=True, log_dir="logs")
    banner(rlm, "phase 5: a run to look at in the viewer")
    result = rlm.completion(data, QUESTION)
    report(result, expected)
    path = log_file("logs", result)
    print(f"\ntrajectory: {path}")
    print("next: open it in the viewer with\n\n    rlm-graph viz logs/\n")


if __name__ == "__main__":
    run_or_explain(main)
