"""The served graph (``langgraph.json``'s) takes a ``context_path`` only inside its context roots.

Over HTTP, ``langgraph dev`` hands the request's input to this graph as it is; these tests invoke
the same module-level graph in-process with the input a client would send.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.served import graph
from tests.conftest import repl


def _settings(srv: Any) -> dict[str, Any]:
    """The run's settings as a client sends them: the scripted model, a quick budget."""
    return {"model": "scripted", "base_url": srv.base_url, "limits": {"max_iterations": 3}}


def _count_words() -> list[str]:
    return [repl("print(len(context.split()))"), "FINAL(3)"]


def test_context_path_outside_the_roots_is_refused(scripted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    root, elsewhere = tmp_path / "root", tmp_path / "elsewhere"
    root.mkdir(), elsewhere.mkdir()
    secret = elsewhere / "secret.txt"
    secret.write_text("not for clients")
    (root / "escape.txt").symlink_to(secret)
    monkeypatch.setenv("RLM_GRAPH_CONTEXT_ROOTS", str(root))
    srv = scripted(_count_words())
    for path in (str(secret), str(root / ".." / "elsewhere" / "secret.txt"), "escape.txt", "/etc/hostname"):
        with pytest.raises(ConfigurationError) as err:
            graph.invoke({"query": "How many words?", "context_path": path}, context=_settings(srv))
        message = str(err.value)
        assert "outside the server's context roots" in message and "RLM_GRAPH_CONTEXT_ROOTS" in message, path
        assert "\n" not in message
    with pytest.raises(ConfigurationError, match="not found in the server's context roots"):
        graph.invoke({"query": "How many words?", "context_path": "missing.txt"}, context=_settings(srv))
    assert srv.requests == []  # refused before any model call


def test_context_path_inside_the_roots_runs(scripted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first, second = tmp_path / "first", tmp_path / "second"
    first.mkdir(), second.mkdir()
    (second / "words.txt").write_text("one two three")
    monkeypatch.setenv("RLM_GRAPH_CONTEXT_ROOTS", os.pathsep.join([str(first), str(second)]))
    srv = scripted(_count_words())
    out = graph.invoke({"query": "How many words?", "context_path": "words.txt"}, context=_settings(srv))  # looked up in each root
    assert out["final_answer"] == "3"
    assert len(srv.root_requests()) == 2


def test_roots_default_to_the_work_dir(scripted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("RLM_GRAPH_CONTEXT_ROOTS", raising=False)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "words.txt").write_text("one two three")
    srv = scripted(_count_words())
    out = graph.invoke({"query": "How many words?", "context_path": str(tmp_path / "words.txt")}, context=_settings(srv))
    assert out["final_answer"] == "3"
    with pytest.raises(ConfigurationError, match="outside the server's context roots"):
        graph.invoke({"query": "How many words?", "context_path": str(tmp_path.parent)}, context=_settings(srv))


def test_a_root_that_is_no_folder_is_one_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLM_GRAPH_CONTEXT_ROOTS", str(tmp_path / "nowhere"))
    with pytest.raises(ConfigurationError, match="context root is not a folder"):
        graph.invoke({"query": "q", "context_path": "a.txt"})
