"""bench/make_report.py: results -> docs/benchmarks.json -> benchmarks.md and PNG plots."""

from __future__ import annotations

import importlib.util
import json
import os
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("matplotlib")

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "make_report.py"


def _module() -> Any:
    spec = importlib.util.spec_from_file_location("make_report", SCRIPT)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def _it(lib: str, ck: str, lat: float, per: float, wall: float) -> dict[str, Any]:
    return {"scenario": "iterations", "library": lib, "checkpointer": ck, "latency_s": lat, "iterations": 30, "runs": 3, "runs_ok": 3,
            "wall_s": wall, "overhead_per_iter_ms": per, "steady_per_iter_ms": per / 2, "gap_by_turn_ms": [1.0, 2.0],
            "samples_overhead_per_iter_ms": [per]}


def _results(tmp: Path) -> Path:
    res = tmp / "results"
    (res / "quality" / "rlm").mkdir(parents=True)
    (res / "quality" / "base").mkdir(parents=True)
    rows = [
        _it("rlm-graph", "none", 0.0, 8.0, 0.3), _it("rlm-graph", "sqlite", 0.0, 12.0, 0.4), _it("rlms", "none", 0.0, 10.0, 0.5),
        {"scenario": "fanout", "library": "rlm-graph", "checkpointer": "sqlite", "concurrency": 16, "prompts": 256, "floor_s": 1.6,
         "cell_s": 1.8, "ratio_to_floor": 1.125, "max_in_flight": 16, "samples_cell_s": [1.8]},
        {"scenario": "context", "library": "rlm-graph", "size_bytes": 10**9, "load_s": 2.0, "peak_rss_bytes": 2.1e9, "hwm_sum_bytes": 2.2e9,
         "rss_ratio": 2.1, "hwm_ratio": 2.2, "answer_ok": True, "error": None},
        {"scenario": "resume", "library": "rlm-graph", "mode": "resume from checkpoint", "killed": "between iterations", "calls_before_kill": 20,
         "calls_after": 10, "repeated_calls": 0, "repeated_answered_ms_before_kill": [], "to_first_call_s": 0.1, "spawn_to_first_call_s": 1.0,
         "total_s": 2.0, "answer_ok": True},
    ]
    (res / "overhead-1.json").write_text(json.dumps({"machine": {"cpu": "CPU X", "cores": 2}, "versions": {"rlms": "0.1.3"},
                                                     "config": {"iterations": 30, "repeats": 3}, "rows": rows, "notes": ["pg skipped"]}))
    newer = {"machine": {"cpu": "CPU X", "cores": 2, "date": "2026-01-01 10:00:00 UTC"}, "versions": {"rlms": "0.1.3"},
             "config": {"iterations": 30, "repeats": 3}, "rows": [_it("rlm-graph", "none", 0.0, 9.0, 0.3), _it("rlm-graph", "sqlite", 0.0, 9.5, 0.31),
                                                              _it("rlms", "none", 0.0, 10.0, 0.5)]}
    (res / "overhead-2.json").write_text(json.dumps(newer))
    os.utime(res / "overhead-1.json", (1_000, 1_000))  # overhead-2 is the newer run
    for method, score in (("rlm", 1.0), ("base", 0.0)):
        for size in (8000, 1_000_000):
            rec = {"method": method, "task": f"sniah-{size}-0", "kind": "sniah", "size_chars": size, "requested_size": size, "score": score,
                   "seconds": 3.0, "iterations": 2, "subcalls": 0, "tokens": {"total": 100}, "answer": "123", "gold": "123", "error": None}
            (res / "quality" / method / f"sniah-{size}-0.json").write_text(json.dumps(rec))
    return res


def test_collect_then_render(tmp_path: Path) -> None:
    mod = _module()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.json").write_text(json.dumps({"notes": ["hand-written remark"]}))
    assert mod.main(["--results", str(_results(tmp_path)), "--docs", str(docs)]) == 0
    summary = json.loads((docs / "benchmarks.json").read_text())
    assert summary["notes"] == ["hand-written remark"]  # kept
    assert "samples_cell_s" not in json.dumps(summary)  # raw samples stay out of the committed summary
    page = (docs / "benchmarks.md").read_text()
    assert "hand-written remark" in page and "pg skipped" in page and "CPU X" in page
    for png in ("quality_score_vs_size.png", "overhead_ratios.png", "turn_cost.png"):
        assert (docs / "img" / png).stat().st_size > 1000
    assert "Run to run" in page and "12.0 (6.0)" in page and "9.5 (4.8)" in page  # both runs of the iterations table
    assert {r["source"] for r in summary["overhead"]["rows"]} == {"overhead-1.json", "overhead-2.json"}
    verdicts = {t: v for t, _, v in mod.targets(summary)}
    assert verdicts["per-iteration overhead ≤ rlms, sqlite checkpoints, 0 ms model latency"] == "met"  # the newer run: 9.5 vs 10 ms
    assert verdicts["fan-out ≤ 1.2 × floor, concurrency 16 (sqlite checkpoints)"] == "met"
    assert verdicts["1 GB context: peak RSS (host + sandbox) ≤ 1.5 × size"] == "missed"
    assert verdicts["S-NIAH at 1M chars: RLM ≥ 90 % with the embedded model, base fails"] == "met"
    # rendering again from the summary alone gives the same page
    (docs / "benchmarks.md").unlink()
    assert mod.main(["--render", "--docs", str(docs)]) == 0
    assert (docs / "benchmarks.md").read_text() == page


def test_a_partial_run_replaces_only_what_it_measured(tmp_path: Path) -> None:
    mod = _module()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.json").write_text("{}")
    assert mod.main(["--results", str(_results(tmp_path)), "--docs", str(docs)]) == 0
    before = json.loads((docs / "benchmarks.json").read_text())
    # A later session measures only the context load, and one quality task again.
    res = tmp_path / "later"
    (res / "quality" / "rlm").mkdir(parents=True)
    context = {"scenario": "context", "library": "rlm-graph", "size_bytes": 10**9, "load_s": 1.4, "peak_rss_bytes": 1.14e9,
               "hwm_sum_bytes": 1.2e9, "rss_ratio": 1.14, "hwm_ratio": 1.2, "answer_ok": True, "error": None}
    (res / "overhead-3.json").write_text(json.dumps({"machine": {"cpu": "CPU Y", "cores": 2}, "versions": {}, "config": {},
                                                     "rows": [context]}))
    rec = {"method": "rlm", "task": "sniah-8000-0", "kind": "sniah", "size_chars": 8000, "requested_size": 8000, "score": 0.0,
           "seconds": 5.0, "iterations": 3, "subcalls": 0, "tokens": {"total": 50}, "answer": "9", "gold": "123", "error": None}
    (res / "quality" / "rlm" / "sniah-8000-0.json").write_text(json.dumps(rec))
    assert mod.main(["--results", str(res), "--docs", str(docs)]) == 0
    after = json.loads((docs / "benchmarks.json").read_text())
    by_scenario = {s: [r for r in after["overhead"]["rows"] if r["scenario"] == s] for s in ("iterations", "fanout", "context", "resume")}
    assert [r["rss_ratio"] for r in by_scenario["context"]] == [1.14]
    for scenario in ("iterations", "fanout", "resume"):  # kept from the first summary
        assert by_scenario[scenario] == [r for r in before["overhead"]["rows"] if r["scenario"] == scenario]
    assert {r["source"] for r in after["overhead"]["runs"]} == {"overhead-1.json", "overhead-2.json", "overhead-3.json"}
    scores = {(t["method"], t["task"]): t["score"] for t in after["quality"]["tasks"]}
    assert scores[("rlm", "sniah-8000-0")] == 0.0  # measured again: replaced
    assert scores[("base", "sniah-8000-0")] == 0.0 and scores[("rlm", "sniah-1000000-0")] == 1.0  # kept
    assert len(after["quality"]["tasks"]) == len(before["quality"]["tasks"])
    verdicts = {t: v for t, _, v in mod.targets(after)}
    assert verdicts["1 GB context: peak RSS (host + sandbox) ≤ 1.5 × size"] == "met"


def test_the_split_section_puts_dev_and_test_side_by_side(tmp_path: Path) -> None:
    mod = _module()
    from rlm_graph.bench.families import split_specs

    res = tmp_path / "results"
    for split in ("dev", "test"):
        for spec in split_specs(split, ["logs", "judge"]):
            for method, score, secs in (("rlm", 1.0 if spec.family == "logs" else 0.25, 320.0 if spec.generator == "status" else 20.0),
                                        ("base", 0.0, 4.0)):
                (res / "quality" / method).mkdir(parents=True, exist_ok=True)
                rec = {"method": method, "task": spec.id, "kind": spec.family, "split": split, "family": spec.family, "size_chars": spec.size,
                       "requested_size": spec.size, "score": score, "seconds": secs, "iterations": 3, "subcalls": 0, "tokens": {"total": 10},
                       "answer": "7", "gold": 7, "error": None, "revision": "abc1234", "date": "2026-11-26 10:00:00 UTC"}
                (res / "quality" / method / f"{spec.id}.json").write_text(json.dumps(rec))
    docs = tmp_path / "docs"
    docs.mkdir()
    assert mod.main(["--results", str(res), "--docs", str(docs)]) == 0
    page = (docs / "benchmarks.md").read_text()
    section = page.split("## Generalisation: the dev and test splits")[1].split("\n## ")[0]
    header = next(line for line in section.splitlines() if line.startswith("| family"))
    assert header == "| family | dev rlm | dev base | test rlm | test base |"
    assert "| logs | 1.00 (4) | 0.00 (4) | 1.00 (4) | 0.00 (4) |" in section
    assert "| judge | 0.25 (4) | 0.00 (4) | 0.25 (4) | 0.00 (4) |" in section
    assert "| mean | 0.625 | 0.000 | 0.625 | 0.000 |" in section and "| >300 s | 1 | 0 | 1 | 0 |" in section
    assert "test rlm: revision abc1234" in section and "test-logs-status-text-1m-s101200" in section
    summary = json.loads((docs / "benchmarks.json").read_text())
    verdicts = {t: (m, v) for t, m, v in mod.targets(summary)}
    assert verdicts["test split: mean ≥ 0.80 with the embedded model (rlm)"] == ("0.625 over 8 tasks (dev 0.625); base 0.000", "missed")
    assert verdicts["test split: no family below 0.5 (rlm)"] == ("lowest: judge 0.25 (4 tasks)", "missed")
    assert verdicts["test split: every task ≤ 300 s (rlm)"][1] == "missed"
    assert "## Answer quality" in page and "No quality results yet." in page  # the suites' section ignores family tasks


def test_the_command_line_start_up_is_collected_and_judged(tmp_path: Path) -> None:
    mod = _module()
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "benchmarks.json").write_text("{}")
    res = tmp_path / "results"
    res.mkdir()
    row = {"command": "rlm-graph --help", "argv": "rlm-graph --help", "exit_codes": [0], "wall_s": 0.31, "cpu_s": 0.12,
           "bare_wall_s": 0.2, "bare_cpu_s": 0.05, "over_bare_wall_s": 0.11, "over_bare_cpu_s": 0.07, "repeats": 15}
    (res / "cli-startup.json").write_text(json.dumps({"machine": {"date": "2026-12-01 16:00"}, "rows": [row]}))
    assert mod.main(["--results", str(res), "--docs", str(docs)]) == 0
    page = (docs / "benchmarks.md").read_text()
    assert "## Command-line start-up" in page and "| rlm-graph --help | 0.31 | 0.12 | 0.11 | 0.07 | 0 |" in page
    verdicts = {t: v for t, _, v in mod.targets(json.loads((docs / "benchmarks.json").read_text()))}
    assert verdicts["`rlm-graph --help` ≤ 0.5 s over a bare Python start"] == "met"
    (res / "cli-startup.json").write_text(json.dumps({"machine": {}, "rows": [{**row, "over_bare_wall_s": 0.9}]}))
    assert mod.main(["--results", str(res), "--docs", str(docs)]) == 0
    verdicts = {t: v for t, _, v in mod.targets(json.loads((docs / "benchmarks.json").read_text()))}
    assert verdicts["`rlm-graph --help` ≤ 0.5 s over a bare Python start"] == "missed"


def test_the_before_after_section_attributes_test_points_to_the_helpers_that_fired(tmp_path: Path) -> None:
    mod = _module()
    from rlm_graph.bench.families import split_specs

    res = tmp_path / "results"
    specs = split_specs("test", ["logs"])
    for folder, score in (("quality", 1.0), ("quality-before", 0.0)):
        (res / folder / "rlm").mkdir(parents=True)
        for spec in specs:
            rec = {"method": "rlm", "task": spec.id, "kind": spec.family, "split": "test", "family": spec.family, "size_chars": spec.size,
                   "requested_size": spec.size, "score": score, "seconds": 5.0, "iterations": 3, "subcalls": 0, "tokens": {"total": 10},
                   "answer": "7", "gold": 7, "error": None, "revision": {"commit": "after12", "changed": []} if score else "before1", "date": "2026-12-01 10:00"}
            (res / folder / "rlm" / f"{spec.id}.json").write_text(json.dumps(rec))
    # the field search fired in the first task's log only; the runner's search in none
    log = res / "quality" / "trajectories" / specs[0].id
    log.mkdir(parents=True)
    (log / "run.jsonl").write_text(json.dumps({"type": "iteration", "response": "search('warning'): the 9 lines where word 2 is 'WARN' (a field's value)"}) + "\n")
    docs = tmp_path / "docs"
    docs.mkdir()
    assert mod.main(["--results", str(res), "--docs", str(docs)]) == 0
    page = (docs / "benchmarks.md").read_text()
    section = page.split("## Issue 14 on the test split: before and after")[1].split("\n## ")[0]
    assert "| logs | 0.00 | 1.00 | +1.00 |" in section and "| **mean** | 0.00 | 1.00 | +1.000 |" in section
    assert f"| search by field value (search('warning') -> level WARN) | 1 | 0.00 | 1.00 | {1 / len(specs):+.3f} |" in section
    assert "| runner's own search when stuck or after 'not found' | 0 | – | – | – |" in section
    assert "before is main at before1" in section and "after is after12" in section
