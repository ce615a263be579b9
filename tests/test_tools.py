"""User tools: host functions REPL code calls through the worker protocol, recorded so a replay
(a resume after a kill, a fork) never calls them again; children get them; the system prompt
lists them. Runs are real (local sandbox, scripted model server on loopback)."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, create_rlm_graph
from rlm_graph.errors import ConfigurationError
from rlm_graph.tools import call, load_tools, make_tools
from tests.conftest import repl
from tests.scripted_server import ScriptedServer
from tests.tool_fixtures import TOOLS

REPO = Path(__file__).parents[1]
SELL = repl("r = record_sale('north', 5)\nprint('TOTAL=%s CALLS=%s' % (r['total'], r['calls']))")


def total_then_final(messages: list[dict[str, Any]]) -> str:
    """Turn 0 calls the tool; later turns answer with what the REPL printed."""
    if not any(m["role"] == "assistant" for m in messages):
        return SELL
    m = re.search(r"TOTAL=(\d+) CALLS=(\d+)", "\n".join(str(x["content"]) for x in messages))
    return f"FINAL('total {m.group(1)} after {m.group(2)} call(s)')" if m else "FINAL('no output')"


@pytest.fixture
def tool_log(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    log = tmp_path / "tool-calls.log"
    monkeypatch.setenv("TOOL_LOG", str(log))
    return log


def calls(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


def test_a_tool_is_called_from_the_repl_and_listed_in_the_system_prompt(scripted: Any, tool_log: Path) -> None:
    model = scripted(total_then_final)
    rlm = RLM("scripted", base_url=model.base_url, checkpointer=False, max_retries=0, tools=TOOLS, sandbox_options={"isolation": "none"})
    result = rlm.completion("some data", "record a sale")
    assert result.answer == "total 5 after 1 call(s)"
    assert calls(tool_log) == ["north 5 sk-"]
    assert result.subcalls == 0  # a tool call is not a model sub-call
    system = model.root_requests()[0]["conversation"]
    assert "- `record_sale(region: str, amount: int = 1) -> dict`: Record a sale and return the region's running total." in system
    assert "Each call appends" not in system  # only the docstring's first paragraph


def test_the_sandbox_gets_the_call_not_the_function(scripted: Any, tool_log: Path) -> None:
    probe = repl(
        "import json\n"
        "seen = repr(record_sale.__code__.co_consts) + repr(record_sale.__defaults__) + repr(record_sale.__closure__)\n"
        "print('LEAK' if 'sk-host' in seen or 'TOOL_LOG' in seen else 'CLEAN', record_sale.__module__)\n"
        "try:\n    record_sale(object())\nexcept TypeError as e:\n    print('ARGS', e)\n"
        "try:\n    record_sale('south', amount='x')\nexcept RuntimeError as e:\n    print('FAILED', e)"
    )
    model = scripted(lambda m: probe if not any(x["role"] == "assistant" for x in m) else "FINAL('ok')")
    rlm = RLM("scripted", base_url=model.base_url, checkpointer=False, max_retries=0, tools=TOOLS, sandbox_options={"isolation": "none"})
    assert rlm.completion("data", "probe").answer == "ok"
    output = model.root_requests()[1]["prompt"]
    assert "CLEAN __main__" in output, output
    assert "ARGS record_sale: arguments must be JSON values" in output
    assert "FAILED tool record_sale raised ValueError: invalid literal for int() with base 10: 'x'" in output
    assert calls(tool_log) == ["south x sk-"]  # the tool ran once, raised, and the cell saw it


def test_children_of_rlm_query_get_the_same_tools(scripted: Any, tool_log: Path) -> None:
    def root(messages: list[dict[str, Any]]) -> str:
        first = "\n".join(str(m["content"]) for m in messages[:2])
        child = "sell in the child" in first
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == 0:
            return SELL if child else repl("print('CHILD=' + rlm_query('sell in the child', 'child data'))")
        return total_then_final(messages) if child else "FINAL('" + re.search(r"CHILD=(.*)", messages[-1]["content"]).group(1) + "')"

    model = scripted(root)
    graph = create_rlm_graph("scripted", base_url=model.base_url, tools=TOOLS, max_depth=1, sandbox=None)
    out = graph.invoke({"query": "ask a child", "context": "root data"}, context={"sandbox_options": {"isolation": "none"}})
    assert out["final_answer"] == "total 5 after 1 call(s)"
    assert calls(tool_log) == ["north 5 sk-"]
    child_system = next(r["conversation"] for r in model.root_requests() if "sell in the child" in r["conversation"])
    assert "record_sale(region: str" in child_system


def test_a_fork_replays_the_tool_call_from_the_record(scripted: Any, tool_log: Path, tmp_path: Path) -> None:
    def root(messages: list[dict[str, Any]]) -> str:
        turns = sum(1 for m in messages if m["role"] == "assistant")
        return [SELL, repl("print('TWICE', r['total'] * 2)")][turns] if turns < 2 else total_then_final(messages)

    model = scripted(root)
    rlm = RLM("scripted", base_url=model.base_url, checkpointer=str(tmp_path / "ck.sqlite"), max_retries=0, tools=TOOLS,
              sandbox_options={"isolation": "none"})
    first = rlm.completion("data", "sell", thread_id="t1")
    assert first.answer == "total 5 after 1 call(s)" and calls(tool_log) == ["north 5 sk-"]
    forked = rlm.fork("t1", at=2)  # its REPL is rebuilt by replaying cell 0, which called the tool
    assert forked.answer == "total 5 after 1 call(s)"
    assert calls(tool_log) == ["north 5 sk-"]
    cells = rlm.graph.get_state({"configurable": {"thread_id": forked.thread_id}}).values["cells"]
    assert cells[0]["requests"][0]["kind"] == "tool" and json.loads(cells[0]["requests"][0]["texts"][0])["total"] == 5


def _cli(*args: str, log: Path) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-m", "rlm_graph.cli", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, cwd=REPO, env={**os.environ, "TOOL_LOG": str(log)})


def test_a_tool_call_survives_a_kill_and_resume_without_being_called_again(tmp_path: Path) -> None:
    """``rlm-graph run --tools`` SIGKILLed after the tool ran; ``rlm-graph resume`` replays the cell from the record."""
    log = tmp_path / "tool-calls.log"
    state: dict[str, Any] = {"proc": None, "killed": False}

    def root(messages: list[dict[str, Any]]) -> str:
        turns = sum(1 for m in messages if m["role"] == "assistant")
        if turns == 2 and not state["killed"]:
            state["killed"] = True
            os.kill(state["proc"].pid, signal.SIGKILL)
            time.sleep(0.3)
        return [SELL, repl("x = r['total'] + 1\nprint(x)")][turns] if turns < 2 else total_then_final(messages)

    model = ScriptedServer(root).start()
    (tmp_path / "data.txt").write_text("some data\n")
    common = ["--model", "scripted", "--base-url", model.base_url, "--retries", "0", "--isolation", "none",
              "--work-dir", str(tmp_path / "work"), "--tools", "tests.tool_fixtures:TOOLS", "--json"]
    try:
        state["proc"] = _cli("run", "--context", str(tmp_path / "data.txt"), "--query", "sell", "--thread-id", "t1", *common, log=log)
        _, err = state["proc"].communicate(timeout=120)
        assert state["proc"].returncode == -signal.SIGKILL, err
        assert calls(log) == ["north 5 sk-"]  # the tool ran in cell 0, before the kill at turn 2
        resumed = _cli("resume", "t1", *common, log=log)
        out, err = resumed.communicate(timeout=120)
        assert resumed.returncode == 0, err
        assert json.loads(out)["answer"] == "total 5 after 1 call(s)"
        assert calls(log) == ["north 5 sk-"]  # the resume replayed cells 0 and 1 from the record
    finally:
        if state["proc"] and state["proc"].poll() is None:
            state["proc"].kill()
        model.stop()


def test_bad_tools_are_refused_with_one_line(tmp_path: Path) -> None:
    for tools, message in [
        ({"context": len}, "taken by the REPL"),
        ({"_private": len}, "public Python identifier"),
        ({"not valid": len}, "public Python identifier"),
        ({"x": 3}, "is not callable"),
    ]:
        with pytest.raises(ConfigurationError, match=message):
            make_tools(tools)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="write MODULE:ATTR"):
        load_tools(["tests.tool_fixtures"])
    with pytest.raises(ConfigurationError, match="has no NOPE"):
        load_tools(["tests.tool_fixtures:NOPE"])
    with pytest.raises(ConfigurationError, match="cannot import no_such_module"):
        load_tools(["no_such_module:X"])
    assert list(load_tools(["tests.tool_fixtures:record_sale"])) == ["record_sale"]
    out = subprocess.run([sys.executable, "-m", "rlm_graph.cli", "run", "--context", "x.txt", "--query", "q", "--tools", "nope:X",
                          "--base-url", "http://127.0.0.1:9/v1", "--model", "m"], capture_output=True, text=True, cwd=REPO, timeout=60)
    assert out.returncode == 2 and out.stderr.count("\n") == 1, out.stderr


def test_a_call_from_the_sandbox_is_checked_before_anything_runs() -> None:
    tools = make_tools(TOOLS)
    for request, error in [
        ("not json", "must be JSON"),
        ('{"args": []}', "must name its tool"),
        ('{"tool": "os_system", "args": []}', "there is no tool 'os_system'"),
        ('{"tool": "record_sale", "args": {"a": 1}}', "malformed arguments"),
        ('{"tool": "record_sale", "args": [], "kwargs": []}', "malformed arguments"),
        ("x" * 1_000_001, "at most"),
    ]:
        text, err, _ = call(tools, request)
        assert text == "" and err is not None and error in err, (request[:40], err)
