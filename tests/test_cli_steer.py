"""``rlm-graph ask | fork | history`` in real subprocesses, against a scripted server on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from tests.conftest import repl
from tests.test_cli import cli

SCRIPT = [
    repl("words = context.split()\nprint(len(words))"),
    repl("label = llm_query('name this: ' + words[0])\nprint(label)"),
    repl("result = label + ':' + str(len(words))\nprint(result)"),
    "FINAL(result)",
    repl("last = words[-1]\nprint(last)"),
    "FINAL(last)",
]


def _turn(messages: list[dict[str, Any]]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def test_history_fork_and_ask_from_the_command_line(scripted: Any, tmp_path: Path) -> None:
    (tmp_path / "c.txt").write_text("alpha beta gamma")
    srv = scripted(lambda m: SCRIPT[min(_turn(m), len(SCRIPT) - 1)], sub=lambda p: "LABEL-" + p.split()[-1])
    model = ["--model", "m", "--base-url", srv.base_url]
    run = cli("run", "--context", "c.txt", "--query", "label and count", "--thread-id", "job", *model)
    assert run.returncode == 0, run.stderr
    assert run.stdout.strip() == "LABEL-alpha:3"

    hist = cli("history", "job")
    assert hist.returncode == 0, hist.stderr
    lines = hist.stdout.strip().splitlines()
    assert lines[0].split()[:3] == ["iter", "task", "cells"] and len(lines) == 5
    assert "label = llm_query" in lines[2]
    rows = json.loads(cli("history", "job", "--json").stdout)
    assert [r["iteration"] for r in rows] == [1, 2, 3, 4] and all(r["tokens"] > 0 for r in rows)

    (tmp_path / "cell.py").write_text("result = words[1].upper()\nprint(result)\n")
    fork = cli("fork", "job", "--at", "3", "--thread-id", "job-b", "--code", "cell.py", *model)
    assert fork.returncode == 0, fork.stderr
    assert fork.stdout.strip() == "BETA" and "thread job-b" in fork.stderr
    assert len(srv.sub_requests()) == 1  # the fork's replay served cell 2's sub-call from the record

    ask = cli("ask", "job", "--query", "and the last word?", *model)
    assert ask.returncode == 0, ask.stderr
    assert ask.stdout.strip() == "gamma"

    listed = {r["thread_id"]: r for r in json.loads(cli("runs", "--json").stdout)}
    assert set(listed) == {"job", "job-b"} and listed["job"]["answer"] == "gamma"


def test_steering_errors_are_one_line(scripted: Any, tmp_path: Path) -> None:
    srv = scripted([])
    model = ["--model", "m", "--base-url", srv.base_url]
    for args in (["history", "nope"], ["ask", "nope", "--query", "q", *model], ["fork", "nope", "--at", "1", "--code", "missing.py", *model]):
        out = cli(*args)
        assert out.returncode == 2, (args, out.stderr)
        assert len(out.stderr.strip().splitlines()) == 1 and "Traceback" not in out.stderr, out.stderr
