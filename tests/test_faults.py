"""The fault catalogue: model server faults, model output faults, sandbox faults (docs/reliability.md)."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, ModelError
from tests.conftest import repl

OK = [repl("x = 6 * 7\nprint(x)"), "FINAL(x)"]


def turn_script(faults: dict[int, list[Any]]) -> Any:
    """Root replies by turn; a turn listed in ``faults`` first serves those faults, one per request."""
    pending = {k: list(v) for k, v in faults.items()}

    def reply(messages: list[dict[str, Any]]) -> Any:
        turn = sum(m["role"] == "assistant" for m in messages)
        if pending.get(turn):
            return pending[turn].pop(0)
        return OK[min(turn, len(OK) - 1)]

    return reply


# -- model server faults ---------------------------------------------------------------------
def test_429_with_retry_after_is_retried(rlm_for: Any) -> None:
    limited = {"status": 429, "headers": {"Retry-After": "1"}, "body": {"error": {"message": "rate limited"}}}
    srv_rlm, srv = rlm_for(turn_script({1: [limited]}))
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=2, checkpointer=False)
    start = time.monotonic()
    assert rlm.completion("c", "q").answer == "42"
    assert time.monotonic() - start >= 0.9  # it waited as told
    assert [r["status"] for r in srv.root_requests()] == [200, 429, 200]


@pytest.mark.parametrize("status", [500, 502, 503])
def test_server_errors_are_retried_then_succeed(rlm_for: Any, status: int) -> None:
    _, srv = rlm_for(turn_script({0: [{"status": status}]}))
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=2, checkpointer=False)
    assert rlm.completion("c", "q").answer == "42"


def test_persistent_server_errors_become_a_model_error(rlm_for: Any) -> None:
    rlm, srv = rlm_for(turn_script({1: [{"status": 503}] * 5}))
    with pytest.raises(ModelError, match="503"):
        rlm.completion("c", "q")


def test_connection_refused_is_a_clear_model_error() -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    rlm = RLM("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=0, checkpointer=False)
    with pytest.raises(ModelError, match="Connection error"):
        rlm.completion("c", "q")


def test_a_hang_past_the_timeout_is_a_model_error(rlm_for: Any) -> None:
    _, srv = rlm_for(turn_script({0: [{"text": "late", "delay": 5}]}))
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0, timeout=1.0, checkpointer=False)
    start = time.monotonic()
    with pytest.raises(ModelError, match="Timeout"):
        rlm.completion("c", "q")
    assert time.monotonic() - start < 4.5


@pytest.mark.parametrize("raw", ['{"id": "x", "choices": [', "<html>bad gateway</html>"])
def test_truncated_or_non_json_bodies_are_model_errors(rlm_for: Any, raw: str) -> None:
    rlm, _ = rlm_for(turn_script({0: [{"raw": raw}] * 3}))
    with pytest.raises(ModelError):
        rlm.completion("c", "q")


def test_a_failed_sub_call_is_an_error_inside_the_cell(rlm_for: Any) -> None:
    code = "try:\n    r = llm_query('x')\nexcept RuntimeError as e:\n    r = 'failed: ' + str(e)[:40]\nprint(r)"
    rlm, _ = rlm_for([repl(code), "FINAL(r)"], sub=lambda p: {"status": 400, "body": {"error": {"message": "bad prompt"}}})
    assert rlm.completion("c", "q").answer.startswith("failed: model call failed")


# -- model output faults ---------------------------------------------------------------------
def test_unclosed_fence_runs_the_code(rlm_for: Any) -> None:
    rlm, _ = rlm_for(["```repl\nx = 3 * 3\nprint(x)", "FINAL(x)"])
    assert rlm.completion("c", "q").answer == "9"


def test_python_fence_is_accepted_like_repl(rlm_for: Any) -> None:
    rlm, _ = rlm_for(["```python\nx = 2 ** 5\nprint(x)\n```", "FINAL(x)"])
    assert rlm.completion("c", "q").answer == "32"


def test_empty_reply_gets_a_note_and_the_run_goes_on(rlm_for: Any) -> None:
    rlm, srv = rlm_for(["", *OK])
    assert rlm.completion("c", "q").answer == "42"
    assert "no code to run" in srv.root_requests()[1]["prompt"]


def test_unbalanced_final_takes_the_rest_of_the_line(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("print(1)"), "FINAL(the total is (42\n"])
    assert rlm.completion("c", "q").answer == "the total is (42"


def test_a_plan_given_as_the_final_answer_is_sent_back(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(1)"), 'FINAL("First I will count the lines, then sum them")', repl("x = 42\nprint(x)"), "FINAL(x)"])
    assert rlm.completion("c", "q").answer == "42"
    assert "reads like a plan" in srv.root_requests()[2]["prompt"]


# -- sandbox faults --------------------------------------------------------------------------
def test_a_segfault_restarts_the_worker_with_its_variables(rlm_for: Any) -> None:
    crash = "import ctypes\nctypes.string_at(0)"
    rlm, srv = rlm_for([repl("kept = 'yes'\nprint(kept)"), repl(crash), repl("print(kept)"), "FINAL(kept)"])
    assert rlm.completion("c", "q").answer == "yes"
    shown = srv.root_requests()[2]["prompt"]
    assert "WorkerCrashed" in shown and ("SIGSEGV" in shown or "exit code 139" in shown)


def test_a_memory_bomb_ends_the_cell_not_the_run(rlm_for: Any) -> None:
    bomb = "kept = 1\nhog = []\nwhile True:\n    hog.append(bytearray(50_000_000))"
    rlm, srv = rlm_for([repl(bomb), repl("print(kept)"), "FINAL(kept)"], sandbox_options={"memory_mb": 512})
    assert rlm.completion("c", "q").answer == "1"
    assert "MemoryError" in srv.root_requests()[1]["prompt"]


def test_a_hundred_megabytes_printed_is_cut_for_the_model(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("for _ in range(100):\n    print('y' * 1_000_000)"), "FINAL(done)", 'FINAL("done")'])
    assert rlm.completion("c", "q").answer == "done"
    shown = srv.root_requests()[1]["prompt"]
    assert len(shown) < 5000 and "characters omitted" in shown


def test_deleting_context_and_overwriting_llm_query_are_undone(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("del context\nllm_query = 5\nprint('done')"), repl("r = llm_query(context)\nprint(r)"), "FINAL(r)"], sub=lambda p: "len " + str(len(p)))
    assert rlm.completion("abcdef", "q").answer == "len 6"
    assert "restored" in srv.root_requests()[1]["prompt"]


def test_secrets_never_reach_logs_checkpoints_or_the_sandbox(scripted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    secret = "sk-test-9f8e7d6c5b4a-SECRET"
    srv = scripted([repl("import os\nprint(sorted(os.environ))\nprint(open('/proc/self/environ').read())"), 'FINAL("ok")'])
    monkeypatch.setenv("OPENAI_API_KEY", secret)
    monkeypatch.setenv("OPENAI_BASE_URL", srv.base_url)
    rlm = RLM("openai:gpt-4o-mini", log_dir=tmp_path / "logs", work_dir=tmp_path / "work", verbose=True)
    assert rlm.completion("c", "q").answer == "ok"
    assert secret not in srv.root_requests()[1]["prompt"]  # not in the sandbox's environment
    for path in [*(tmp_path / "logs").rglob("*"), *(tmp_path / "work").rglob("*")]:
        if path.is_file():
            assert secret.encode() not in path.read_bytes(), path
