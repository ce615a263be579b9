"""``rlm-graph mcp``: the official MCP client (``mcp.ClientSession`` over stdio) starts the server as
a subprocess and calls ``rlm_answer``, which runs against a scripted model server on loopback."""

from __future__ import annotations

import asyncio
import os
import re
import sys
from pathlib import Path
from typing import Any

from mcp import ClientSession, StdioServerParameters
from mcp.client.stdio import stdio_client

from tests.conftest import repl

REPO = Path(__file__).parents[1]
FAN_OUT = repl("parts = llm_query_batched([f'part {w}' for w in context.split()])\nprint('WORDS=%d FIRST=%s' % (len(parts), context.split()[0]))")


def root(messages: list[dict[str, Any]]) -> str:
    if not any(m["role"] == "assistant" for m in messages):
        return FAN_OUT
    m = re.search(r"WORDS=(\d+) FIRST=(\S+)", messages[-1]["content"])
    return f"FINAL({m.group(1)} {m.group(2)})" if m else "FINAL(no output)"


def session(model_url: str, tmp_path: Path, *extra: str) -> Any:
    params = StdioServerParameters(
        command=sys.executable,
        args=["-m", "rlm_graph.cli", "mcp", "--model", "scripted", "--base-url", model_url, "--retries", "0",
              "--isolation", "none", "--work-dir", str(tmp_path / "work"), *extra],
        cwd=str(REPO),
        env={k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "LANG", "PYTHONHASHSEED")} | {"LANGSMITH_TRACING": "false"},
    )
    return stdio_client(params)


def test_rlm_answer_over_stdio_with_progress(scripted: Any, tmp_path: Path) -> None:
    model = scripted(root)
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "notes.txt").write_text("kiwi lime fig")

    async def talk() -> dict[str, Any]:
        notes: list[tuple[float, str | None]] = []

        async def on_progress(progress: float, total: float | None, message: str | None) -> None:
            notes.append((progress, message))

        async with session(model.base_url, tmp_path, "--context-root", str(docs)) as (read, write), ClientSession(read, write) as s:
            await s.initialize()
            tools = (await s.list_tools()).tools
            inline = await s.call_tool("rlm_answer", {"question": "how many words?", "context": "alpha beta gamma delta"}, progress_callback=on_progress)
            by_path = await s.call_tool("rlm_answer", {"question": "and here?", "context_path": "notes.txt"})
            outside = await s.call_tool("rlm_answer", {"question": "x", "context_path": str(tmp_path / "work")})
            both = await s.call_tool("rlm_answer", {"question": "x", "context": "a", "context_path": "notes.txt"})
            again = await s.call_tool("rlm_answer", {"question": "how many words?", "thread_id": inline.structured_content["thread_id"]})
            return {"tools": tools, "inline": inline, "by_path": by_path, "outside": outside, "both": both, "again": again, "notes": notes}

    out = asyncio.run(asyncio.wait_for(talk(), 120))
    (tool,) = out["tools"]
    assert tool.name == "rlm_answer" and {"question", "context", "context_path", "thread_id"} <= set(tool.input_schema["properties"])
    inline = out["inline"]
    assert not inline.is_error and inline.structured_content["answer"] == "4 alpha"
    assert inline.structured_content["stopped_by"] == "final" and inline.structured_content["total_tokens"] > 0
    assert "4 alpha" in inline.content[0].text
    progress = [p for p, _ in out["notes"]]
    messages = [m or "" for _, m in out["notes"]]
    assert progress == sorted(progress) and len(progress) >= 4
    assert any("iteration 1" in m for m in messages) and any("4 sub-call(s)" in m for m in messages), messages
    assert out["by_path"].structured_content["answer"] == "3 kiwi"
    assert out["outside"].is_error and "outside the server's context roots" in out["outside"].content[0].text
    assert out["both"].is_error and "not both" in out["both"].content[0].text
    assert out["again"].structured_content == inline.structured_content  # the saved answer
    assert len([r for r in model.root_requests()]) == 4  # two runs of two turns; the repeat made no call


def test_rlm_answer_over_streamable_http(scripted: Any, tmp_path: Path) -> None:
    import socket
    import subprocess
    import time

    from mcp.client.streamable_http import streamable_http_client

    model = scripted(root)
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rlm_graph.cli", "mcp", "--http", str(port), "--model", "scripted", "--base-url", model.base_url,
         "--retries", "0", "--isolation", "none", "--work-dir", str(tmp_path / "work")],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while True:  # until the port takes connections
            assert proc.poll() is None and time.monotonic() < deadline, proc.stderr.read() if proc.stderr else ""
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)

        async def talk() -> Any:
            async with streamable_http_client(f"http://127.0.0.1:{port}/mcp") as (read, write), ClientSession(read, write) as s:
                await s.initialize()
                return await s.call_tool("rlm_answer", {"question": "how many words?", "context": "alpha beta gamma delta"})

        result = asyncio.run(asyncio.wait_for(talk(), 120))
        assert not result.is_error and result.structured_content["answer"] == "4 alpha"
    finally:
        proc.terminate()
        proc.wait(30)
