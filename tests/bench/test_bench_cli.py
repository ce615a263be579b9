"""``register`` adds ``bench quality | overhead`` to a parser and sets the handler."""

from __future__ import annotations

import argparse
from pathlib import Path

from rlm_graph.bench.cli import cmd_overhead, cmd_quality, register


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
