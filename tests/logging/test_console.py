"""The verbose console view, on a real run and on hand-made events."""

from __future__ import annotations

import io
from types import SimpleNamespace
from typing import Any

import pytest
from rich.console import Console

from rlm_graph.graph.settings import RLMContext
from rlm_graph.logging import ConsoleView
from tests.conftest import repl


def test_verbose_run_shows_turns_code_output_and_sub_calls(rlm_for: Any, capsys: pytest.CaptureFixture[str]) -> None:
    script = [
        repl("n = rlm_query('count these', context='a b c')\nok = llm_query('is it fine?')\nprint(n, ok)", "Let me delegate."),
        repl("print(len(context.split()))"),  # the child
        'FINAL("3")',  # the child
        "FINAL(n)",
    ]
    rlm, _ = rlm_for(script, sub=lambda p: "fine", verbose=True)
    assert rlm.completion("x y z", "how many?").answer == "3"
    err = capsys.readouterr().err
    for expected in (
        "context str of length 5",
        "iteration 1",
        "Let me delegate.",
        "rlm_query('count these'",  # the code
        "3 fine",  # its output
        "2 sub-call(s)",
        "rlm_query 'count these' → '3'",
        "llm_query 'is it fine?' → 'fine'",
        "child RLM depth 1: 2 iteration(s), stopped by final",
        "depth 1 · started",  # the child's own steps, live
        "depth 1 · answered '3'",
        "FINAL (final): '3'",
        "done in",
        "2 iteration(s) · 2 sub-call(s)",
        "scripted: 5 call(s)",
    ):
        assert expected in err, f"{expected!r} not in the console output:\n{err}"


def _view() -> tuple[ConsoleView, io.StringIO]:
    out = io.StringIO()
    return ConsoleView(settings=RLMContext(), console=Console(file=out, width=100, force_terminal=False)), out


def test_long_output_is_truncated_and_the_status_line_tracks_the_run() -> None:
    view, out = _view()
    usage = {"m": {"calls": 1, "input_tokens": 1000, "output_tokens": 234, "cost_usd": 0.01}}
    view.on_event({"namespace": [], "node": "generate", "update": {"iteration": 1, "usage": usage, "queue": ["x"], "messages": [{"role": "assistant", "content": "go"}]}})
    assert "running code" in view.phase and "1,234 tokens" in view.stamp()
    cell = {"index": 0, "code": "print('x' * 9000)", "stdout": "x" * 9000, "seconds": 0.5, "requests": []}
    view.on_event({"namespace": [], "node": "execute", "update": {"cells": [cell]}})
    view.on_event({"namespace": [], "node": "execute", "update": {"pending": [{}, {}, {}]}})
    assert view.phase == "3 sub-call(s) in flight"
    view.on_event({"namespace": [], "node": "sub_call", "update": {"answers": {"k": {"text": "a"}}}})
    assert view.phase == "1 of 3 sub-call(s) answered"
    view.on_event({"namespace": [], "node": "__values__", "update": {"query": "q"}})  # ignored
    view.on_result(SimpleNamespace(execution_time=1.5, iterations=1, subcalls=3, stopped_by="max_tokens", usage=usage))
    view.close()
    text = out.getvalue()
    assert "characters omitted" in text and len(text) < 6000
    assert "stopped by max_tokens" in text and "1,000 in / 234 out · $0.0100" in text
