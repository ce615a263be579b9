"""The overhead runners against the loopback server, small and fast. Their numbers are not checked
(benchmarks never assert a time): only that each scenario runs, answers right, and counts right."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.bench import jobs
from rlm_graph.bench.loopback import Request
from rlm_graph.bench.overhead import OverheadConfig, run_overhead, summarize
from rlm_graph.bench.scenarios import _max_in_flight, context_file, final_reply, loop_script

HAVE_RLMS = jobs.installed_rlms(jobs.DEFAULT_RLMS_VENV) == jobs.RLMS_VERSION


def _cfg(tmp_path: Path, **kw: Any) -> OverheadConfig:
    base: dict[str, Any] = dict(
        libraries=("rlm-graph",), repeats=1, iterations=6, latencies=(0.0,), checkpointers=("none", "sqlite"),
        fanout_prompts=12, fanout_latency=0.02, concurrencies=(4,), context_sizes=(20_000,),
        resume_kill_turn=4, resume_fanout_turn=2, resume_fanout=12, resume_kill_sub=6, scratch=tmp_path / "scratch",
    )
    base.update(kw)
    return OverheadConfig(**base)


def _run(cfg: OverheadConfig) -> dict[str, Any]:
    """run_overhead, checking its steps: (0, N) first, then one more as each of the N configurations
    ends, N being the number of configurations it announced (so the planned count is right)."""
    lines: list[str] = []
    steps: list[tuple[int, int]] = []
    result = run_overhead(cfg, progress=lines.append, steps=lambda done, total: steps.append((done, total)))
    assert lines and steps == [(k, len(lines)) for k in range(len(lines) + 1)], (lines, steps)
    return result


def test_scripts_end_with_each_librarys_own_final_cell() -> None:
    ours, theirs = loop_script("rlm-graph", 3), loop_script("rlms", 3)
    assert "x0 = 0" in ours(0) and "x1 = 1" in theirs(1)
    assert "FINAL(result)" in ours(2) and ours(2) == final_reply("rlm-graph") and ours(7) == ours(2)
    assert 'answer["ready"] = True' in theirs(2)


def test_max_in_flight() -> None:
    reqs = [Request("sub", "a", 1, 0.0, 1.0), Request("sub", "b", 1, 0.5, 1.5), Request("sub", "c", 1, 1.2, 2.0)]
    assert _max_in_flight(reqs) == 2


def test_context_file_has_the_size_and_one_needle(tmp_path: Path) -> None:
    path = context_file(tmp_path, 50_000)
    text = path.read_text()
    assert len(text) == 50_000 and text.count("special magic number") == 1
    assert context_file(tmp_path, 50_000) == path  # made once


def test_iterations_and_fanout_run_and_count(tmp_path: Path) -> None:
    result = _run(_cfg(tmp_path, scenarios=("iterations", "fanout")))
    it = [r for r in result["rows"] if r["scenario"] == "iterations"]
    assert {r["checkpointer"] for r in it} == {"none", "sqlite"}
    for r in it:
        assert r["runs_ok"] == r["runs"] == 1 and r["iterations"] == 6
        assert r["overhead_per_iter_ms"] > 0 and len(r["gap_by_turn_ms"]) == 5
    fan = [r for r in result["rows"] if r["scenario"] == "fanout"]
    for r in fan:
        assert r["runs_ok"] == 1 and r["max_in_flight"] <= 4
        assert r["floor_s"] == pytest.approx(0.02 * math.ceil(12 / 4))
    assert result["summary"]["checkpoint_cost"][0]["checkpointer"] == "sqlite"
    assert result["machine"]["cores"] and result["versions"]["langgraph"]


def test_context_load_measures_memory_of_host_and_sandbox(tmp_path: Path) -> None:
    result = _run(_cfg(tmp_path, scenarios=("context",)))
    (row,) = result["rows"]
    assert row["answer_ok"] and row["error"] is None
    assert row["processes"] >= 2  # the host and its sandbox worker
    assert row["peak_rss_bytes"] > 20_000 and row["hwm_sum_bytes"] >= row["peak_rss_bytes"] * 0.5


def test_resume_after_sigkill_counts_repeated_calls(tmp_path: Path) -> None:
    result = _run(_cfg(tmp_path, scenarios=("resume",)))
    rows = result["rows"]
    assert [r["killed"].split(" (")[0] for r in rows] == ["between iterations", "mid fan-out"]
    for r in rows:
        assert r["killed_by_signal"] and r["answer_ok"], r
        assert r["mode"] == "resume from checkpoint"
        assert r["calls_before_kill"] > 0 and r["calls_after"] > 0
        assert r["repeated_calls"] == len(r["repeated_answered_ms_before_kill"])
    assert rows[0]["repeated_calls"] == 0, rows[0]  # killed between iterations: every finished call was saved


def test_summarize_computes_ratios() -> None:
    rows = [
        {"scenario": "iterations", "library": "rlms", "checkpointer": "none", "latency_s": 0.0, "overhead_per_iter_ms": 10.0, "steady_per_iter_ms": 5.0, "wall_s": 1.0},
        {"scenario": "iterations", "library": "rlm-graph", "checkpointer": "none", "latency_s": 0.0, "overhead_per_iter_ms": 8.0, "steady_per_iter_ms": 5.0, "wall_s": 1.0},
        {"scenario": "iterations", "library": "rlm-graph", "checkpointer": "sqlite", "latency_s": 0.0, "overhead_per_iter_ms": 12.0, "steady_per_iter_ms": 7.5, "wall_s": 1.25},
    ]
    s = summarize(rows)
    assert {r["checkpointer"]: r["ratio"] for r in s["iteration_ratio"]} == {"none": 0.8, "sqlite": 1.2}
    assert s["checkpoint_cost"] == [{"checkpointer": "sqlite", "latency_s": 0.0, "extra_wall_pct": 25.0}]


@pytest.mark.skipif(not HAVE_RLMS, reason=f"rlms=={jobs.RLMS_VERSION} is not installed in {jobs.DEFAULT_RLMS_VENV} (python bench/rlms_env.py)")
def test_the_reference_library_runs_the_same_script(tmp_path: Path) -> None:
    result = _run(_cfg(tmp_path, scenarios=("iterations", "fanout"), libraries=("rlms",)))
    for r in result["rows"]:
        assert r["library"] == "rlms" and r["checkpointer"] == "none" and r["runs_ok"] == 1
    assert result["versions"]["rlms"] == jobs.RLMS_VERSION


def test_checkpoint_storage_scenario_measures_bytes_and_load(tmp_path: Path) -> None:
    root = Path(__file__).resolve().parents[2]
    cfg = _cfg(tmp_path, scenarios=("checkpoints",), checkpoint_iterations=(3,), repeats=1, baseline_src=root)
    result = _run(cfg)
    rows = result["rows"]
    assert [(r["variant"], r["iterations"]) for r in rows] == [("baseline", 3), ("current", 3)]
    for r in rows:
        assert r["error"] is None and r["answer_ok"], r
        assert r["stored_bytes"] == r["checkpoint_bytes"] + r["write_bytes"] > 0 and r["load_ms"] > 0
        assert r["revision"] and len(r["samples_load_ms"]) == 1
    # the same code both times: the same bytes, up to the width of timings and ids written into the
    # state (durations, timestamps), which differ from run to run
    a, b = rows[0]["stored_bytes"], rows[1]["stored_bytes"]
    assert abs(a - b) <= 0.02 * max(a, b), (a, b)
    assert [c["variant"] for c in result["summary"]["checkpoints"]] == ["baseline", "current"]
