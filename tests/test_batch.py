"""Batches (rlm_graph.batch, ``rlm-graph batch``): task files, the local process pool, re-runs that
skip finished tasks, and a Ray cluster whose worker is killed mid-task."""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.batch import BatchSettings, BatchTask, read_tasks, run_batch, thread_id_for
from rlm_graph.cli import main
from tests.conftest import repl
from tests.scripted_server import ScriptedServer


def _write(path: Path, rows: list[Any]) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return path


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("not json", "not a JSON object"),
        ("[1, 2]", "a task is a JSON object"),
        ('{"query": "q", "context": "c"}', "'id' must be"),
        ('{"id": "a", "context": "c"}', "'query' must be"),
        ('{"id": "a", "query": "q"}', "exactly one of 'context'"),
        ('{"id": "a", "query": "q", "context": "c", "context_path": "f"}', "exactly one of 'context'"),
        ('{"id": "a", "query": "q", "context": "c", "options": {"max_iterationz": 3}}', "unknown option(s) max_iterationz"),
        ('{"id": "a", "query": "q", "context": "c", "options": {"max_iterations": -1}}', "max_iterations must be positive"),
        ('{"id": "a", "query": "q", "context": "c", "extra": 1}', "unknown field(s) extra"),
    ],
)
def test_a_bad_task_line_is_named(tmp_path: Path, line: str, message: str) -> None:
    path = _write(tmp_path / "tasks.jsonl", ['{"id": "ok", "query": "q", "context": "c"}', line])
    with pytest.raises(Exception) as info:
        read_tasks(path)
    assert f"{path}:2:" in str(info.value) and message in str(info.value)


def test_duplicate_ids_and_empty_files_are_refused(tmp_path: Path) -> None:
    dup = _write(tmp_path / "dup.jsonl", [{"id": 1, "query": "q", "context": "c"}, "", {"id": "1", "query": "r", "context": "c"}])
    with pytest.raises(Exception, match="already used on line 1"):
        read_tasks(dup)
    with pytest.raises(Exception, match="holds no tasks"):
        read_tasks(_write(tmp_path / "empty.jsonl", [""]))


def test_thread_ids_follow_the_id_and_the_content() -> None:
    a = BatchTask("q/1", "how many?", "text")
    assert thread_id_for(a) == thread_id_for(BatchTask("q/1", "how many?", "text"))
    assert thread_id_for(a) != thread_id_for(BatchTask("q/1", "how many?", "other text"))
    assert thread_id_for(a).startswith("batch-q_1-")


def _tasks(n: int) -> list[dict[str, Any]]:
    return [{"id": f"t{i:02d}", "query": f"What is the sum for task t{i:02d}?", "context": f"numbers {i} {i + 1}"} for i in range(n)]


def _task_of(messages: list[dict[str, Any]]) -> str:
    text = "\n".join(str(m.get("content")) for m in messages[:2])
    return text.split("for task ", 1)[1][:3]


def _script(messages: list[dict[str, Any]]) -> str:
    """Three turns per task: a sub-call, a plain cell, the answer (the task's own id)."""
    turn = sum(1 for m in messages if m["role"] == "assistant")
    task = _task_of(messages)
    return [repl(f"a = llm_query('echo {task}')\nprint(a)"), repl("b = len(a)\nprint(b)"), repl(f"FINAL('{task} ' + a)")][min(turn, 2)]


def test_local_pool_runs_every_task_and_a_rerun_skips_them(tmp_path: Path) -> None:
    srv = ScriptedServer(_script, lambda p: p.split()[-1]).start()
    try:
        tasks = read_tasks(_write(tmp_path / "tasks.jsonl", _tasks(4)))
        settings = BatchSettings(model="scripted", base_url=srv.base_url, checkpoint=str(tmp_path / "cp.sqlite"),
                                 work_dir=str(tmp_path / "work"), retries=0, sandbox_options={"isolation": "none"})
        out = tmp_path / "results.jsonl"
        summary = run_batch(tasks, settings, out=out, workers=2)
        rows = [json.loads(line) for line in out.read_text().splitlines()]
        assert summary.done == 4 and summary.failed == 0 and summary.skipped == 0
        assert sorted(r["answer"] for r in rows) == [f"t{i:02d} t{i:02d}" for i in range(4)]
        assert all(r["status"] == "done" and r["iterations"] == 3 and r["stopped_by"] == "final" and r["usage"] for r in rows)
        assert summary.usage["scripted"]["calls"] == 4 * 4  # three root turns and one sub-call per task
        calls = len(srv.requests)
        again = run_batch(tasks, settings, out=out, workers=2)
        assert again.done == again.skipped == 4 and len(srv.requests) == calls  # read back, no call made
        assert sorted(json.loads(line)["answer"] for line in out.read_text().splitlines()) == sorted(r["answer"] for r in rows)
    finally:
        srv.stop()


def test_cli_batch_bad_input_is_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = _write(tmp_path / "tasks.jsonl", ['{"id": "a", "query": "q"}'])
    assert main(["batch", str(bad), "--out", str(tmp_path / "r.jsonl"), "--model", "m"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "tasks.jsonl:1: give exactly one of 'context'" in err
    assert main(["batch", str(tmp_path / "missing.jsonl"), "--out", "r.jsonl"]) == 2
    assert main(["batch", str(bad), "--out", "r.jsonl", "--checkpoint", "none"]) == 2
    assert "a batch needs checkpoints" in capsys.readouterr().err


def test_cli_batch_runs_and_summarizes(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    srv = ScriptedServer(_script, lambda p: p.split()[-1]).start()
    try:
        tasks = _write(tmp_path / "tasks.jsonl", _tasks(2))
        out = tmp_path / "results.jsonl"
        code = main(["batch", str(tasks), "--out", str(out), "--model", "scripted", "--base-url", srv.base_url,
                     "--workers", "2", "--checkpoint", str(tmp_path / "cp.sqlite"), "--isolation", "none", "--retries", "0"])
        assert code == 0, capsys.readouterr().err
        err = capsys.readouterr().err
        assert "2 tasks" in err and "done" in err and f"results: {out}" in err
        assert {json.loads(line)["id"] for line in out.read_text().splitlines()} == {"t00", "t01"}
    finally:
        srv.stop()


# -- Ray -------------------------------------------------------------------------------------


def _pid_of_client(port: int) -> int | None:
    """The process that owns the loopback TCP socket whose local port is ``port``."""
    inode = None
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if int(fields[1].rsplit(":", 1)[1], 16) == port:
                inode = fields[9]
                break
    if inode is None:
        return None
    target = f"socket:[{inode}]"
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if any(os.readlink(f"/proc/{pid}/fd/{fd}") == target for fd in os.listdir(f"/proc/{pid}/fd")):
                return int(pid)
        except OSError:
            continue
    return None


def _wait_closed(port: int, timeout: float = 10.0) -> None:
    """Wait until the client's loopback socket on ``port`` is closed (no longer ESTABLISHED).

    A SIGKILLed process's leader thread shows as a zombie while its other threads are still
    exiting and its descriptors still open, so waiting on the process's state is not enough: a
    reply written then lands in a live socket buffer and is recorded as delivered.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        states = [line.split()[3] for table in ("/proc/net/tcp", "/proc/net/tcp6")
                  for line in Path(table).read_text().splitlines()[1:]
                  if int(line.split()[1].rsplit(":", 1)[1], 16) == port]
        if "01" not in states:  # 01: TCP_ESTABLISHED
            return
        time.sleep(0.01)
    raise AssertionError(f"the killed client's socket on port {port} stayed open for {timeout} s")


def test_ray_batch_with_postgres_survives_a_killed_worker(tmp_path: Path) -> None:
    pytest.importorskip("ray", reason="Ray is in the test extra: pip install -e '.[test]'")
    from tests.durable.test_kill_resume import _postgres_url, forget_threads

    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432 (set RLM_GRAPH_TEST_POSTGRES)")
    forget_threads(url, "batch-t%")
    killed: list[int] = []
    lock = threading.Lock()
    server: dict[str, ScriptedServer] = {}

    def root(messages: list[dict[str, Any]]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        if _task_of(messages) == "t07" and turn == 2:
            with lock:
                if not killed:  # the worker running t07 dies as it asks for its last turn
                    port = server["srv"].client.address[1]
                    pid = _pid_of_client(port)
                    assert pid is not None and pid != os.getpid()
                    killed.append(pid)
                    os.kill(pid, signal.SIGKILL)
                    _wait_closed(port)  # its socket is closed: the reply below cannot reach it
        return _script(messages)

    srv = server["srv"] = ScriptedServer(root, lambda p: p.split()[-1]).start()
    try:
        tasks = read_tasks(_write(tmp_path / "tasks.jsonl", _tasks(20)))
        settings = BatchSettings(model="scripted", base_url=srv.base_url, checkpoint=url, work_dir=str(tmp_path / "work"), retries=0)
        out = tmp_path / "results.jsonl"
        summary = run_batch(tasks, settings, out=out, workers=4, ray="auto",
                            ray_options={"num_cpus": 4, "_node_ip_address": "127.0.0.1"}, retries=2)  # loopback only
        rows = {r["id"]: r for r in map(json.loads, out.read_text().splitlines())}
        assert killed, "no worker was killed"
        assert summary.done == 20 and summary.failed == 0, summary.failures
        assert all(rows[f"t{i:02d}"]["answer"] == f"t{i:02d} t{i:02d}" for i in range(20))
        # every call whose reply reached a worker was saved: none was made twice
        delivered = Counter((_task_of_record(r), r["role"], r["turn"], r["prompt"]) for r in srv.requests if r.get("delivered"))
        assert max(delivered.values()) == 1, [k for k, v in delivered.items() if v > 1]
        # t07 resumed: its last turn was asked twice (the first reply never arrived), its first two once
        t07 = [r for r in srv.requests if _task_of_record(r) == "t07" and r["role"] == "root"]
        assert [r["turn"] for r in t07] == [0, 1, 2, 2] and [r.get("delivered") for r in t07] == [True, True, False, True]
    finally:
        srv.stop()
        import ray

        ray.shutdown()
        forget_threads(url, "batch-t%")


def _task_of_record(record: dict[str, Any]) -> str:
    text = record["conversation"] if record["role"] == "root" else record["prompt"]
    return text.split("for task ", 1)[1][:3] if "for task " in text else text.split()[-1]
