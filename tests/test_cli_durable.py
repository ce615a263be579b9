"""Checkpointed runs from the command line: resume after a failure or Ctrl-C, list runs."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import repl
from tests.test_cli import cli

SCRIPT = [repl("words = context.split()\nprint(len(words))"), repl("first = words[0]\nprint(first)"), "FINAL(first)"]


def _turn(messages: list[dict[str, Any]]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def test_failed_run_is_listed_and_resumed(scripted: Any, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("alpha beta gamma")
    broken = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        if _turn(messages) == 1 and broken["on"]:
            return {"status": 503, "body": {"error": {"message": "overloaded"}}}
        return SCRIPT[_turn(messages)]

    srv = scripted(root)
    common = ["--model", "m", "--base-url", srv.base_url, "--retries", "0"]
    out = cli("run", "--context", "c.txt", "--query", "first word?", "--thread-id", "job-1", *common)
    assert out.returncode == 1 and "rlm-graph resume job-1" in out.stderr
    listed = json.loads(cli("runs", "--json").stdout)
    assert [(r["thread_id"], r["status"]) for r in listed] == [("job-1", "resumable")]
    broken["on"] = False
    resumed = cli("resume", "job-1")  # no flags: the run remembers its model and server
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "alpha"
    assert len([r for r in srv.root_requests() if r["status"] == 200]) == 3  # turn 1 was not asked again
    listed = json.loads(cli("runs", "--json").stdout)
    assert listed[0]["status"] == "finished" and listed[0]["answer"] == "alpha"
    again = cli("resume", "job-1", "--json")
    assert json.loads(again.stdout)["answer"] == "alpha"


def test_ctrl_c_stops_cleanly_and_says_how_to_resume(scripted: Any, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("alpha beta gamma")
    slow = {"on": True}
    waiting = threading.Event()

    def root(messages: list[dict[str, Any]]) -> Any:
        reply = SCRIPT[_turn(messages)]
        if _turn(messages) == 1 and slow["on"]:
            waiting.set()  # the runner now waits for this slow reply
            return {"text": reply, "delay": 6}
        return reply

    srv = scripted(root)
    args = [sys.executable, "-m", "rlm_graph.cli", "run", "--context", "c.txt", "--query", "q", "--thread-id", "job-2", "--model", "m", "--base-url", srv.base_url]
    # A terminal's Ctrl-C reaches a process whose SIGINT is at its default. An earlier test in the
    # same pytest process can leave SIGINT ignored, and an ignored signal stays ignored in children
    # (Python then installs no KeyboardInterrupt handler): start the run as a terminal would.
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    assert waiting.wait(60)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)  # the call in flight finishes and is saved first
    assert proc.returncode == 130
    assert "resume with: rlm-graph resume job-2" in err and "Traceback" not in err
    slow["on"] = False
    resumed = cli("resume", "job-2")
    assert resumed.returncode == 0 and resumed.stdout.strip() == "alpha"


def test_resume_of_an_unknown_thread_is_one_clear_line(tmp_path: Path, scripted: Any) -> None:
    srv = scripted([])
    out = cli("resume", "no-such-run", "--model", "m", "--base-url", srv.base_url)
    assert out.returncode == 2 and "no run with thread id 'no-such-run'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1


def _one_line(out: Any) -> str:
    assert out.returncode == 2 and out.stdout == "", out.stderr
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in out.stderr, out.stderr
    return lines[0]


def test_resume_with_a_different_model_is_refused_then_allowed(scripted: Any, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("alpha beta gamma")
    broken = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        if _turn(messages) == 1 and broken["on"]:
            return {"status": 503, "body": {"error": {"message": "overloaded"}}}
        return SCRIPT[_turn(messages)]

    first = scripted(root)
    second = scripted(lambda m: SCRIPT[_turn(m)])
    out = cli("run", "--context", "c.txt", "--query", "first word?", "--thread-id", "job-3", "--model", "model-a", "--base-url", first.base_url, "--retries", "0")
    assert out.returncode == 1 and "rlm-graph resume job-3" in out.stderr
    other = ["--model", "model-b", "--base-url", second.base_url]
    line = _one_line(cli("resume", "job-3", *other))
    assert f"model 'model-a' -> 'model-b'; base_url {first.base_url!r} -> {second.base_url!r}" in line and "--allow-change" in line
    assert second.requests == []
    allowed = cli("resume", "job-3", *other, "--allow-change")
    assert allowed.returncode == 0, allowed.stderr
    assert allowed.stdout.strip() == "alpha"
    assert {r["model"] for r in second.requests} == {"model-b"} and [r["turn"] for r in second.root_requests()] == [1, 2]
    assert [r["model"] for r in first.requests if r["status"] == 200] == ["model-a"]
    listed = cli("runs")
    assert listed.returncode == 0, listed.stderr
    run_line, change_line = listed.stdout.strip().splitlines()
    assert run_line.startswith("job-3") and "finished" in run_line and "model-b" in run_line
    assert "resume after iteration 1: model 'model-a' -> 'model-b'; base_url" in change_line
    row = json.loads(cli("runs", "--json").stdout)[0]
    assert row["changes"][0]["changed"]["model"] == ["model-a", "model-b"]


def test_raising_a_limit_lets_a_stopped_run_go_on(scripted: Any, tmp_path: Path) -> None:
    from tests.test_steer import _limited_script

    (tmp_path / "c.txt").write_text("alpha beta gamma")
    srv = scripted(_limited_script)
    out = cli("run", "--context", "c.txt", "--query", "third word?", "--thread-id", "job-4", "--model", "m", "--base-url", srv.base_url, "--max-iterations", "2")
    assert out.returncode == 0 and out.stdout.strip() == "forced guess" and "stopped by max_iterations" in out.stderr
    line = _one_line(cli("resume", "job-4", "--max-iterations", "5"))
    assert "max_iterations 2 -> 5" in line and "--allow-change" in line
    went_on = cli("resume", "job-4", "--max-iterations", "5", "--allow-change", "--json")
    assert went_on.returncode == 0, went_on.stderr
    result = json.loads(went_on.stdout)
    assert result["answer"] == "gamma" and result["stopped_by"] == "final" and result["iterations"] == 4
    listed = cli("runs").stdout
    assert "resume after iteration 2: max_iterations 2 -> 5" in listed


def test_a_postgres_run_goes_on_elsewhere_with_its_context_moved(scripted: Any, tmp_path: Path) -> None:
    from tests.durable.test_kill_resume import _postgres_url, forget_threads

    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432 (set RLM_GRAPH_TEST_POSTGRES)")
    forget_threads(url, "job-pg-moved")
    here, there = tmp_path / "machine-a", tmp_path / "machine-b"
    here.mkdir(), there.mkdir()
    (here / "c.txt").write_text("alpha beta gamma")
    broken = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        if _turn(messages) == 1 and broken["on"]:
            return {"status": 503, "body": {"error": {"message": "overloaded"}}}
        return SCRIPT[_turn(messages)]

    srv = scripted(root)
    out = cli("run", "--context", str(here / "c.txt"), "--query", "q", "--thread-id", "job-pg-moved", "--model", "m",
              "--base-url", srv.base_url, "--retries", "0", "--checkpoint", url, "--work-dir", str(here / ".rlm"))
    assert out.returncode == 1, out.stderr
    broken["on"] = False
    (here / "c.txt").rename(there / "copy.txt")  # the other machine has the file somewhere else
    where = ["--checkpoint", url, "--work-dir", str(there / ".rlm")]
    assert "give its new place with --context NEWPATH" in _one_line(cli("resume", "job-pg-moved", *where))
    (there / "wrong.txt").write_text("alpha beta delta")
    assert "is not the context of run 'job-pg-moved'" in _one_line(cli("resume", "job-pg-moved", *where, "--context", str(there / "wrong.txt")))
    resumed = cli("resume", "job-pg-moved", *where, "--context", str(there / "copy.txt"))
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "alpha"
    assert len([r for r in srv.root_requests() if r["status"] == 200]) == 3
    assert f"context moved {here / 'c.txt'} -> {there / 'copy.txt'}" in cli("runs", *where).stdout
