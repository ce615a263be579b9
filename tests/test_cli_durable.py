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
    resumed = cli("resume", "job-1", *common)
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.strip() == "alpha"
    assert len([r for r in srv.root_requests() if r["status"] == 200]) == 3  # turn 1 was not asked again
    listed = json.loads(cli("runs", "--json").stdout)
    assert listed[0]["status"] == "finished" and listed[0]["answer"] == "alpha"
    again = cli("resume", "job-1", *common, "--json")
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
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert waiting.wait(60)
    time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=90)  # the call in flight finishes and is saved first
    assert proc.returncode == 130
    assert "resume with: rlm-graph resume job-2" in err and "Traceback" not in err
    slow["on"] = False
    resumed = cli("resume", "job-2", "--model", "m", "--base-url", srv.base_url)
    assert resumed.returncode == 0 and resumed.stdout.strip() == "alpha"


def test_resume_of_an_unknown_thread_is_one_clear_line(tmp_path: Path, scripted: Any) -> None:
    srv = scripted([])
    out = cli("resume", "no-such-run", "--model", "m", "--base-url", srv.base_url)
    assert out.returncode == 2 and "no run with thread id 'no-such-run'" in out.stderr
    assert len(out.stderr.strip().splitlines()) == 1
