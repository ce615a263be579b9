"""The run's clock (``max_seconds``) and the stuck-loop guard after a worker crash."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, ModelError, create_rlm_graph
from rlm_graph.graph.runtime import run_clock, seconds_left
from rlm_graph.graph.settings import Limits
from tests.conftest import repl


def test_run_clock_starts_once_and_restarts_on_demand() -> None:
    first = run_clock("clock-test")
    time.sleep(0.01)
    assert run_clock("clock-test") == first
    assert run_clock("clock-test", restart=True) > first
    assert seconds_left(Limits(), {"run_id": "clock-test"}) is None
    left = seconds_left(Limits(max_seconds=50), {"run_id": "clock-test"})
    assert left is not None and 49 < left <= 50


def test_max_seconds_counts_from_the_run_not_from_building_the_graph(scripted: Any) -> None:
    srv = scripted([repl("n = len(context)\nprint(n)"), "FINAL(n)"])
    graph = create_rlm_graph("scripted", base_url=srv.base_url, max_seconds=2)
    time.sleep(2.3)  # the graph waits longer than the whole budget before its run starts
    out = graph.invoke({"query": "how long?", "context": "abcd"})
    assert out["stopped_by"] == "final" and out["final_answer"] == "4"
    assert out["iteration"] == 2


def test_max_seconds_counts_from_the_resume(scripted: Any) -> None:
    broken = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        turn = sum(m["role"] == "assistant" for m in messages)
        if turn == 1 and broken["on"]:
            return {"status": 503, "body": {"error": {"message": "overloaded"}}}
        return [repl("n = len(context)\nprint(n)"), "FINAL(n)"][turn]

    srv = scripted(root)
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0, max_seconds=2)
    with pytest.raises(ModelError):
        rlm.completion("abcd", "q", thread_id="clock")
    time.sleep(2.3)  # dead time between the failure and the resume is not the run's
    broken["on"] = False
    result = rlm.resume("clock")
    assert result.stopped_by == "final" and result.answer == "4"


def test_rerunning_code_whose_worker_crashed_is_not_a_stuck_loop(rlm_for: Any, tmp_path: Path) -> None:
    flag = tmp_path / "crashed-once"
    code = (
        "import os, signal\n"
        f"if not os.path.exists({str(flag)!r}):\n"
        f"    open({str(flag)!r}, 'w').close()\n"
        "    os.kill(os.getpid(), signal.SIGKILL)\n"
        "x = 41 + 1\nprint(x)"
    )
    rlm, srv = rlm_for([repl(code), repl(code), "FINAL(x)"], sandbox_options={"isolation": "none"})
    result = rlm.completion("ctx", "q")
    assert "WorkerCrashed" in srv.root_requests()[1]["prompt"]
    assert "same code" not in srv.root_requests()[2]["prompt"]
    assert result.answer == "42" and result.cells == 3 and result.stopped_by == "final"
