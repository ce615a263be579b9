"""Shared fixtures: a scripted OpenAI-compatible server on loopback, a clean work dir, no API keys."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest

from rlm_graph.sandboxes import POOL
from tests.scripted_server import ScriptedServer

_SECRETS = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "E2B_API_KEY", "LANGSMITH_API_KEY", "RLM_GRAPH_MODEL", "RLM_GRAPH_BASE_URL")


@pytest.fixture(autouse=True)
def _isolated(tmp_path: Any, monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Each test runs in its own directory, with no provider keys and tracing off."""
    for name in _SECRETS:
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("LANGSMITH_TRACING", "false")
    monkeypatch.chdir(tmp_path)
    yield
    POOL.close_all()


@pytest.fixture
def scripted() -> Iterator[Any]:
    """``scripted(root_replies, sub=...)`` starts a ScriptedServer that stops after the test."""
    servers: list[ScriptedServer] = []

    def start(root: Any = (), sub: Any = None, **kw: Any) -> ScriptedServer:
        srv = ScriptedServer(root, sub, **kw).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.stop()


@pytest.fixture
def rlm_for(scripted: Any) -> Any:
    """``rlm_for(root_replies, sub=..., **rlm_options)`` -> (RLM, server) against a scripted server."""
    from rlm_graph import RLM

    def make(root: Any = (), sub: Any = None, sub_delay: float = 0.0, **options: Any) -> tuple[Any, ScriptedServer]:
        srv = scripted(root, sub, sub_delay=sub_delay)
        options.setdefault("checkpointer", False)
        return RLM("scripted", base_url=srv.base_url, max_retries=0, **options), srv

    return make


def repl(code: str, prose: str = "") -> str:
    """A model reply holding one ```repl block."""
    return f"{prose}\n```repl\n{code}\n```".strip()


os.environ.setdefault("PYTHONHASHSEED", "0")


def by_question(script: dict[str, list[Any]]) -> Any:
    """A root script keyed by a word of the run's question, so parent and children differ."""

    def reply(messages: list[dict[str, Any]]) -> Any:
        question = messages[1]["content"]
        turn = sum(m["role"] == "assistant" for m in messages)
        for key, replies in script.items():
            if key in question:
                return replies[min(turn, len(replies) - 1)]
        return "FINAL(unscripted)"

    return reply
