"""One runner per thread: a second runner gets one clear line naming the first one's pid and host,
and the lease of a runner that was killed is taken over (docs/reliability.md, "Host faults")."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, RunBusyError
from rlm_graph.checkpoints import open_checkpointer, thread_lease
from tests.conftest import repl

ROOT = Path(__file__).resolve().parents[1]
POSTGRES = os.environ.get("RLM_GRAPH_TEST_POSTGRES", "postgresql://postgres@127.0.0.1:5432/test")

_HOLDER = """
import sys, time
from rlm_graph.checkpoints import open_checkpointer, thread_lease
with thread_lease(open_checkpointer(sys.argv[1]), sys.argv[2]):
    print("held", flush=True)
    time.sleep(600)
"""


def _postgres_or_skip() -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        psycopg.connect(POSTGRES, connect_timeout=3).close()
    except psycopg.OperationalError:
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432 (set RLM_GRAPH_TEST_POSTGRES)")
    return POSTGRES


@pytest.fixture(params=["sqlite", "postgres"])
def checkpoint(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    return str(tmp_path / "runs.sqlite") if request.param == "sqlite" else _postgres_or_skip()


@pytest.fixture
def holder() -> Iterator[Any]:
    """``holder(checkpoint, thread_id)``: another process that takes the thread's lease and keeps it."""
    procs: list[subprocess.Popen[str]] = []

    def start(checkpoint: str, thread_id: str) -> subprocess.Popen[str]:
        proc = subprocess.Popen([sys.executable, "-c", _HOLDER, checkpoint, thread_id], stdout=subprocess.PIPE, text=True, cwd=ROOT)
        procs.append(proc)
        assert proc.stdout is not None and proc.stdout.readline().strip() == "held"
        return proc

    yield start
    for proc in procs:
        proc.kill()
        proc.wait()


def _thread_id() -> str:
    return f"lease-{os.getpid()}-{os.urandom(4).hex()}"


def _resumable(
    scripted: Any, checkpoint: str, thread_id: str, gate: threading.Event | None = None, arrived: threading.Event | None = None
) -> tuple[RLM, Any]:
    """A run that failed at its second turn (a server error), so it is saved and resumable.

    Resumed, its second turn sets ``arrived`` and is answered once ``gate`` is set (at once without one).
    """
    failed = {"n": 0}

    def root(messages: list[dict[str, Any]]) -> Any:
        turn = sum(m["role"] == "assistant" for m in messages)
        if turn == 0:
            return repl("x = llm_query('a')\nprint(x)")
        if failed["n"] == 0:
            failed["n"] += 1
            return {"status": 500, "body": {"error": {"message": "down"}}}
        if arrived is not None:
            arrived.set()
        if gate is not None:
            gate.wait(120)  # the runner waits here, holding its lease, while a second one tries
        return 'FINAL("done")'

    srv = scripted(root, sub=lambda p: "A")
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0, checkpointer=checkpoint)
    with pytest.raises(Exception, match="500"):
        rlm.completion("ctx", "q", thread_id=thread_id)
    return rlm, srv


def test_a_second_runner_gets_one_line_naming_the_first(scripted: Any, checkpoint: str, holder: Any, capsys: pytest.CaptureFixture[str]) -> None:
    from rlm_graph.cli import main

    thread_id = _thread_id()
    rlm, srv = _resumable(scripted, checkpoint, thread_id)
    first = holder(checkpoint, thread_id)
    calls = len(srv.requests)
    capsys.readouterr()
    code = main(["resume", thread_id, "--model", "scripted", "--base-url", srv.base_url, "--checkpoint", checkpoint])
    err = capsys.readouterr().err
    assert code == 2
    assert err.startswith(f"rlm-graph: error: thread {thread_id} is running in pid {first.pid} on host {socket.gethostname()} (since ")
    assert len(err.strip().splitlines()) == 1 and "resume with" not in err
    with pytest.raises(RunBusyError, match=f"pid {first.pid}"):
        rlm.resume(thread_id)
    assert len(srv.requests) == calls  # the refused runner asked the model nothing


def test_the_lease_of_a_killed_runner_is_taken_over(scripted: Any, checkpoint: str, holder: Any) -> None:
    thread_id = _thread_id()
    rlm, srv = _resumable(scripted, checkpoint, thread_id)
    first = holder(checkpoint, thread_id)
    with pytest.raises(RunBusyError):
        rlm.resume(thread_id)
    os.kill(first.pid, signal.SIGKILL)
    first.wait()
    deadline = time.monotonic() + 30  # Postgres drops the lock when it sees the connection close
    while True:
        try:
            result = rlm.resume(thread_id)
            break
        except RunBusyError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    assert result.answer == "done" and result.stopped_by == "final"


def test_two_resume_processes_on_one_thread_pay_each_call_once(scripted: Any, tmp_path: Path) -> None:
    checkpoint = str(tmp_path / "runs.sqlite")
    thread_id = _thread_id()
    gate, arrived = threading.Event(), threading.Event()
    _, srv = _resumable(scripted, checkpoint, thread_id, gate, arrived)
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    argv = [sys.executable, "-m", "rlm_graph.cli", "resume", thread_id, "--model", "scripted", "--base-url", srv.base_url,
            "--checkpoint", checkpoint, "--retries", "0"]
    first = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    try:
        # The first runner is in its turn (held there by the gate), so it holds the lease.
        assert arrived.wait(120), first.communicate()
        second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
        gate.set()
        out, err = first.communicate(timeout=120)
    finally:
        gate.set()
        first.kill()
    assert second.returncode == 2 and f"is running in pid {first.pid}" in second.stderr, second
    assert first.returncode == 0 and out.strip() == "done", err
    turns = [r for r in srv.root_requests() if r["status"] == 200]
    assert len(turns) == 2  # turn 0 before the failure, turn 1 once: not twice


def test_leases_of_different_threads_and_in_memory_savers() -> None:
    from langgraph.checkpoint.memory import InMemorySaver

    saver = InMemorySaver()
    with thread_lease(saver, "a"), thread_lease(saver, "b"):
        with pytest.raises(RunBusyError, match=f"thread a is running in pid {os.getpid()}"):
            with thread_lease(saver, "a"):
                pass
    with thread_lease(saver, "a"):  # released at the end of the block
        pass
    with thread_lease(None, "a"), thread_lease(None, "a"):  # no checkpointer: nothing to resume, no lease
        pass


def test_a_sqlite_lease_lives_beside_the_database(tmp_path: Path) -> None:
    saver = open_checkpointer(str(tmp_path / "db.sqlite"))
    with thread_lease(saver, "t/with:odd chars"):
        files = list((tmp_path / ".leases").iterdir())
        assert [f.name.split("-")[0] for f in files] == ["db.sqlite"]
        assert len(files) == 1 and f'"pid": {os.getpid()}' in files[0].read_text()


def test_sqlite_checkpoints_are_written_ahead_and_synced_at_log_checkpoints(tmp_path: Path) -> None:
    # WAL with synchronous=NORMAL: a commit is not fsynced on its own (3.1 ms -> 0.14 ms here) and still
    # survives a killed process, which the kill-and-resume tests (tests/durable) run against.
    saver = open_checkpointer(str(tmp_path / "db.sqlite"))
    assert saver.conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    assert saver.conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL (FULL is 2)
