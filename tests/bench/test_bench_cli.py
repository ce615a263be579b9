"""``register`` adds ``bench quality | overhead`` to a parser and sets the handler."""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rlm_graph.bench.cli import cmd_overhead, cmd_quality, register
from tests.terminal import run_on_terminal


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="rlm-graph")
    register(p.add_subparsers(dest="command", required=True))
    return p


def test_quality_flags() -> None:
    a = _parser().parse_args(["bench", "quality", "--method", "rlm", "--method", "rlms", "--tasks", "smoke", "sniah:8k,1m", "--n", "3",
                              "--model", "qwen", "--base-url", "http://127.0.0.1:1/v1", "--out", "o"])
    assert a.handler is cmd_quality and a.method == ["rlm", "rlms"] and a.tasks == ["smoke", "sniah:8k,1m"]
    assert a.n == 3 and a.out == Path("o") and a.max_iterations == 20


def test_overhead_flags() -> None:
    a = _parser().parse_args(["bench", "overhead", "--only", "iterations,resume", "--latencies", "0,0.05",
                              "--context-sizes", "1m,1g", "--concurrency", "8", "--libraries", "rlm-graph"])
    assert a.handler is cmd_overhead
    assert a.only == ["iterations", "resume"] and a.latencies == [0.0, 0.05]
    assert a.context_sizes == [1_000_000, 1_000_000_000] and a.concurrency == [8] and a.libraries == ["rlm-graph"]


def test_overhead_end_to_end_writes_its_json(tmp_path: Path) -> None:
    out = tmp_path / "o.json"
    a = _parser().parse_args(["bench", "overhead", "--only", "iterations", "--libraries", "rlm-graph", "--repeats", "1",
                              "--iterations", "3", "--latencies", "0", "--checkpointers", "none", "--scratch", str(tmp_path), "--out", str(out)])
    assert a.handler(a) == 0
    assert '"scenario": "iterations"' in out.read_text()


def test_quality_family_flags() -> None:
    a = _parser().parse_args(["bench", "quality", "--split", "test", "--family", "logs", "--family", "needle", "--per-slot", "2",
                              "--task-id", "dev-logs-level-text-64k-s1000", "--list", "--slow-seconds", "250"])
    assert a.split == "test" and a.family == ["logs", "needle"] and a.per_slot == 2 and a.list and a.slow_seconds == 250
    assert a.task_id == ["dev-logs-level-text-64k-s1000"]


def test_quality_list_and_dump_run_nothing(tmp_path: Path, capsys: Any) -> None:
    ids = tmp_path / "ids.txt"
    ids.write_text("# two tasks\ndev-judge-reviews-list-1500-s3000\ntest-oolong-most_common-lines-4k-s106000  # a test one\n")
    a = _parser().parse_args(["bench", "quality", "--tasks-from", str(ids), "--list", "--dump", str(tmp_path / "d"),
                              "--base-url", "http://127.0.0.1:9/v1", "--model", "m"])
    assert a.handler(a) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["dev-judge-reviews-list-1500-s3000", "test-oolong-most_common-lines-4k-s106000"]
    assert (tmp_path / "d" / "tasks.jsonl").read_text().count("\n") == 2
    assert (tmp_path / "d" / "dev-judge-reviews-list-1500-s3000.json").exists()


def test_bad_family_input_is_one_clear_error(tmp_path: Path, capsys: Any) -> None:
    from rlm_graph.cli import main

    assert main(["bench", "quality", "--split", "dev", "--family", "nope", "--list"]) == 2
    assert main(["bench", "quality", "--tasks-from", str(tmp_path / "missing.txt"), "--list"]) == 2
    assert main(["bench", "quality", "--task-id", "dev-logs-level-text-64k-s100000", "--list"]) == 2
    assert main(["bench", "scores", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert "unknown family nope" in err and "cannot read --tasks-from" in err and "belongs to the test split" in err
    assert "Traceback" not in err


def test_scores_prints_per_family_tables(tmp_path: Path, capsys: Any) -> None:
    from rlm_graph.cli import main

    for method, task, score, secs in [("rlm", "dev-logs-level-text-64k-s1000", 1.0, 12.0), ("rlm", "dev-needle-code-line-2m-s0", 0.0, 400.0),
                                      ("base", "dev-logs-level-text-64k-s1000", 0.0, 3.0), ("rlm", "test-logs-level-text-64k-s101000", 1.0, 5.0)]:
        (tmp_path / method).mkdir(exist_ok=True)
        (tmp_path / method / f"{task}.json").write_text(json.dumps({"method": method, "task": task, "score": score, "seconds": secs}))
    (tmp_path / "rlm" / "sniah-8k-0.json").write_text(json.dumps({"method": "rlm", "task": "sniah-8k-0", "score": 1.0}))
    assert main(["bench", "scores", str(tmp_path), "--split", "dev"]) == 0
    out = capsys.readouterr().out
    assert "dev rlm" in out and "dev base" in out and "test rlm" not in out
    rows = {line.split()[0]: line.split()[1:] for line in out.splitlines()[2:] if line.strip()}
    assert rows["logs"][0] == "0.00" and rows["needle"][1] == "0.00"  # columns: dev base, dev rlm
    assert rows["mean"] == ["0.000", "0.500"] and rows[">300"] == ["s", "0", "1"]  # the 400 s needle task is over budget


def _quality_argv(base_url: str, out: Path, *extra: str) -> list[str]:
    return [sys.executable, "-m", "rlm_graph.cli", "bench", "quality", "--method", "base", "--tasks", "smoke", "--n", "2",
            "--model", "scripted", "--base-url", base_url, "--out", str(out), *extra]


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2]), "LANGSMITH_TRACING": "false"}


def test_quality_on_a_terminal_shows_runs_k_of_n_and_its_lines(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(lambda messages: "42")
    code, out, err = run_on_terminal(_quality_argv(srv.base_url, tmp_path / "a"), _env())
    assert code == 0, err
    seen = [err.find(f"{k}/2 runs") for k in range(3)]
    assert all(i >= 0 for i in seen) and seen == sorted(seen), err
    assert "bench quality" in err and "ETA" in err
    assert "smoke-0-sum" in err and "smoke-1-hidden_number" in err  # the per-task lines, above the bar
    assert json.loads(out.splitlines()[0])["n"] == 2  # the summary on stdout is untouched


def test_quality_quiet_or_piped_has_no_bar(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(lambda messages: "42")
    code, _, err = run_on_terminal(_quality_argv(srv.base_url, tmp_path / "q", "--quiet"), _env())
    assert code == 0, err
    assert "runs" not in err and "ETA" not in err and "smoke-1-hidden_number" in err
    done = subprocess.run(_quality_argv(srv.base_url, tmp_path / "p"), env=_env(), capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert "\x1b" not in done.stderr and "ETA" not in done.stderr
    assert [line.split()[:2] for line in lines[:2]] == [["base", "smoke-0-sum"], ["base", "smoke-1-hidden_number"]]
