"""Load: many runs at once in one process, and several processes sharing one checkpoint store."""

from __future__ import annotations

import json
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM
from tests.conftest import repl
from tests.durable.test_kill_resume import _postgres_url, forget_threads


def _count_words(messages: list[dict[str, Any]]) -> str:
    turn = sum(m["role"] == "assistant" for m in messages)
    return repl("n = len(context.split())\nprint(n)") if turn == 0 else "FINAL(n)"


def test_twenty_parallel_runs_in_one_process_do_not_cross(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(_count_words)
    rlm = RLM("scripted", base_url=srv.base_url, work_dir=tmp_path / "work")  # default SQLite checkpoints

    def one(i: int) -> tuple[int, Any]:
        return i, rlm.completion(" ".join(["w"] * (i + 1)), "How many words?", thread_id=f"par-{i}")

    with ThreadPoolExecutor(max_workers=20) as pool:
        results = list(pool.map(one, range(20)))
    for i, result in results:
        assert result.answer == str(i + 1), (i, result)
        assert result.thread_id == f"par-{i}" and result.iterations == 2
    assert len({r.run_id for _, r in results}) == 20


def _processes(srv: Any, work: Path, checkpoint: str | None) -> list[dict[str, Any]]:
    procs = []
    for i in range(4):
        args = [sys.executable, "-m", "tests.durable.runner", srv.base_url, str(work), f"proc-{i}", "--context", " ".join(["w"] * (i + 3))]
        if checkpoint:
            args += ["--checkpoint", checkpoint]
        procs.append(subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parents[1]))
    out = []
    for p in procs:
        stdout, stderr = p.communicate(timeout=180)
        assert p.returncode == 0, stderr
        assert "locked" not in stderr.lower()
        out.append(json.loads(stdout))
    return out


def test_four_processes_share_one_sqlite_file(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(_count_words)
    results = _processes(srv, tmp_path / "work", None)
    assert [r["answer"] for r in results] == ["3", "4", "5", "6"]
    from rlm_graph.checkpoints import list_runs, open_checkpointer

    rows = list_runs(open_checkpointer(None, tmp_path / "work"))
    assert sorted(r["thread_id"] for r in rows) == [f"proc-{i}" for i in range(4)]
    assert {r["status"] for r in rows} == {"finished"}


def test_four_processes_share_one_postgres_database(scripted: Any, tmp_path: Path) -> None:
    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432 (set RLM_GRAPH_TEST_POSTGRES)")
    forget_threads(url, "proc-%")
    srv = scripted(_count_words)
    results = _processes(srv, tmp_path / "work", url)
    assert [r["answer"] for r in results] == ["3", "4", "5", "6"]
