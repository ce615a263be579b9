"""`langgraph dev` serving langgraph.json's graph, driven over its HTTP API (what Studio uses)."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import repl

ROOT = Path(__file__).parents[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _script(messages: list[dict[str, Any]]) -> str:
    """Count words in two turns; for "Keep going", new code every turn until forced to answer."""
    turns = sum(m["role"] == "assistant" for m in messages)
    if any("Keep going" in str(m["content"]) for m in messages):
        return 'FINAL("stopped")' if "no more" in str(messages[-1]["content"]) else repl(f"print({turns})")
    return {0: repl("n = len(context.split())\nprint(n)"), 1: "FINAL(n)"}.get(turns, "FINAL(n)")


@pytest.fixture
def dev_server(scripted: Any, tmp_path: Path) -> Iterator[tuple[httpx.Client, Any]]:
    exe = Path(sys.executable).with_name("langgraph")
    if not exe.exists() and shutil.which("langgraph") is None:
        pytest.fail("langgraph-cli is not installed: the test command installs the 'dev' extra")
    srv = scripted(_script)
    port = _free_port()
    env = {**os.environ, "LANGGRAPH_CLI_NO_ANALYTICS": "1", "LANGGRAPH_NO_VERSION_CHECK": "1",
           "RLM_GRAPH_MODEL": "scripted", "RLM_GRAPH_BASE_URL": srv.base_url, "LANGSMITH_TRACING": "false"}
    log = (tmp_path / "dev.log").open("w")
    proc = subprocess.Popen([str(exe), "dev", "--no-browser", "--port", str(port), "--config", str(ROOT / "langgraph.json")],
                            cwd=tmp_path, env=env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=60)
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, (tmp_path / "dev.log").read_text()[-3000:]
            try:
                if client.get("/ok").status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            assert time.monotonic() < deadline, "langgraph dev did not start in 90 s"
            time.sleep(0.5)
        yield client, srv
    finally:
        client.close()
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
        log.close()


def test_run_state_history_and_approval_over_http(dev_server: tuple[httpx.Client, Any]) -> None:
    client, srv = dev_server
    thread = client.post("/threads", json={}).json()["thread_id"]
    out = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "rlm", "input": {"query": "How many words?", "context": "a b c d e"}}).json()
    assert out["final_answer"] == "5" and out["stopped_by"] == "final"
    state = client.get(f"/threads/{thread}/state").json()
    assert state["values"]["final_answer"] == "5" and state["next"] == []
    assert [c["code"] for c in state["values"]["cells"]][0].startswith("n = len(")
    history = client.post(f"/threads/{thread}/history", json={"limit": 50}).json()
    steps = [h["metadata"].get("step") for h in history]
    assert len(history) >= 5 and steps == sorted(steps, reverse=True)

    # approval: the run stops before its first cell; the human edits the code over HTTP
    thread2 = client.post("/threads", json={}).json()["thread_id"]
    first = client.post(f"/threads/{thread2}/runs/wait", json={"assistant_id": "rlm", "input": {"query": "How many words?", "context": "a b c"}, "context": {"approve_code": True}}).json()
    (pending,) = first["__interrupt__"]
    assert pending["value"]["code"].startswith("n = len(")
    waiting = client.get(f"/threads/{thread2}/state").json()
    assert waiting["next"] == ["execute"]
    done = client.post(f"/threads/{thread2}/runs/wait", json={"assistant_id": "rlm", "command": {"resume": {"action": "edit", "code": "n = 40 + 2\nprint(n)"}}, "context": {"approve_code": True}}).json()
    assert done["final_answer"] == "42"
    assert len(srv.root_requests()) == 4  # two per run; the resume repeated none


def test_bad_input_over_http_is_one_clear_error(dev_server: tuple[httpx.Client, Any]) -> None:
    client, srv = dev_server
    thread = client.post("/threads", json={}).json()["thread_id"]
    out = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "rlm", "input": {"query": "q", "context_path": "missing.txt"}}).json()
    assert out["__error__"]["error"] == "ConfigurationError" and "not found" in out["__error__"]["message"]
    # a file the server can read but outside its context roots (default: its work dir)
    thread = client.post("/threads", json={}).json()["thread_id"]
    out = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "rlm", "input": {"query": "q", "context_path": "/etc/hostname"}}).json()
    assert out["__error__"]["error"] == "ConfigurationError" and "outside the server's context roots" in out["__error__"]["message"]
    assert srv.requests == []
    thread = client.post("/threads", json={}).json()["thread_id"]
    out = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "rlm", "input": {"context": "abc"}}).json()
    assert out["__error__"]["error"] == "ConfigurationError"


def test_schemas_and_settings_over_http(dev_server: tuple[httpx.Client, Any]) -> None:
    """What Studio renders: the input form, the output, and a settings form with the limits."""
    client, srv = dev_server
    (assistant,) = client.post("/assistants/search", json={"graph_id": "rlm"}).json()
    schemas = client.get(f"/assistants/{assistant['assistant_id']}/schemas").json()
    assert {"query", "context", "context_path"} <= set(schemas["input_schema"]["properties"])
    assert {"final_answer", "stopped_by", "usage"} <= set(schemas["output_schema"]["properties"])
    context = schemas["context_schema"]
    assert {"model", "base_url", "sub_model", "sandbox", "limits", "approve_code"} <= set(context["properties"])
    assert context["properties"]["model"]["anyOf"][0]["type"] == "string"
    assert "max_iterations" in context["$defs"]["Limits"]["properties"]

    def run(**body: Any) -> dict[str, Any]:
        thread = client.post("/threads", json={}).json()["thread_id"]
        out = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "rlm", "input": {"query": "Keep going", "context": "a b"}, **body}).json()
        state = client.get(f"/threads/{thread}/state").json()["values"]
        return {**out, "iteration": state.get("iteration"), "limits": state.get("limits")}

    limited = run(context={"limits": {"max_iterations": 2}})
    assert (limited["stopped_by"], limited["iteration"], limited["final_answer"]) == ("max_iterations", 2, "stopped")
    assert limited["limits"]["max_iterations"] == 2 and limited["limits"]["cell_timeout"] == 120.0
    # the older way: settings as configurable keys, limits flat
    older = run(config={"configurable": {"max_iterations": 1}})
    assert (older["stopped_by"], older["iteration"]) == ("max_iterations", 1)
    # a key that is no setting is refused in one line, not a TypeError
    thread = client.post("/threads", json={}).json()["thread_id"]
    bad = client.post(f"/threads/{thread}/runs/wait", json={"assistant_id": "rlm", "input": {"query": "q", "context": "a"}, "config": {"configurable": {"max_iterations": "many"}}}).json()
    assert bad["__error__"]["error"] == "ConfigurationError" and "max_iterations" in bad["__error__"]["message"]
