"""Budgets as a ledger, end to end: real loopback servers, real sandboxes, real kills.

Each scenario checks the two things a budget promises: the run stays within its limit, and the
``usage`` it reports is exactly what the servers reported for the calls it received.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, ConfigurationError
from tests.conftest import by_question, repl
from tests.scripted_server import ScriptedServer

ROOT_USAGE = {"prompt_tokens": 10, "completion_tokens": 5, "total_tokens": 15}
SUB_USAGE = {"prompt_tokens": 990, "completion_tokens": 10, "total_tokens": 1000}
FANOUT = "out = llm_query_batched([f'q{i}' for i in range(16)])\nprint(sum(1 for a in out if a == 'a'), 'answered')"
REPLY_CAP = 1024  # the default reply_tokens: the cap sent with each request, and reserved


def fanout_root(messages: list[dict[str, Any]]) -> dict[str, Any]:
    """One cell fanning 16 prompts out, then FINAL; every root turn reports 15 tokens."""
    turn = sum(m["role"] == "assistant" for m in messages)
    return {"text": [repl(FANOUT), "FINAL(done)"][min(turn, 1)], "usage": ROOT_USAGE}


def thousand_token_sub(prompt: str) -> dict[str, Any]:
    return {"text": "a", "usage": SUB_USAGE}


def reported(srv: ScriptedServer) -> int:
    """Tokens the server reported over the calls it answered."""
    return sum(r["usage"]["total_tokens"] for r in srv.requests if r["status"] == 200 and r.get("usage"))


def tokens(usage: dict[str, dict[str, Any]]) -> int:
    return sum(u["input_tokens"] + u["output_tokens"] for u in usage.values())


# -- a fan-out -----------------------------------------------------------------------------

def test_a_fan_out_sends_only_the_sub_calls_its_token_budget_can_pay_for(rlm_for: Any) -> None:
    rlm, srv = rlm_for(fanout_root, sub=thousand_token_sub, max_tokens=2100)
    result = rlm.completion("ctx", "q")
    subs = srv.sub_requests()
    assert 1 <= len(subs) <= 3 and result.subcalls == len(subs)  # before the ledger: all 16
    spent = tokens(result.usage)
    assert spent == reported(srv)
    assert spent <= 2100 and 2100 - spent <= REPLY_CAP  # within one call's reply cap of the limit
    assert {r["max_tokens"] for r in srv.requests} == {REPLY_CAP}  # the cap reserved is the cap sent
    assert result.stopped_by == "max_tokens" and result.reserved == {}


def test_a_fan_out_sends_only_what_its_cost_budget_can_pay_for(rlm_for: Any) -> None:
    # $1 per million tokens each way: a sub-call costs $0.001, a root turn $0.000015
    rlm, srv = rlm_for(fanout_root, sub=thousand_token_sub, max_cost_usd=0.0021, prices={"scripted": (1.0, 1.0)})
    result = rlm.completion("ctx", "q")
    subs = srv.sub_requests()
    assert 1 <= len(subs) <= 3 and result.subcalls == len(subs)
    cost = result.usage["scripted"]["cost_usd"]
    assert cost == pytest.approx(reported(srv) * 1e-6)
    assert cost <= 0.0021 and 0.0021 - cost <= REPLY_CAP * 1e-6
    assert result.stopped_by == "max_cost_usd" and result.reserved == {}


def test_a_batch_of_which_some_prompts_fit_gets_answers_and_refusal_markers(rlm_for: Any) -> None:
    code = "out = llm_query_batched(['a', 'b', 'c'])\nprint(out)"
    rlm, srv = rlm_for([repl("first = llm_query('one')\nprint(first)"), repl(code), "FINAL(done)"], max_subcalls=2)
    result = rlm.completion("c", "q")
    assert result.subcalls == 2 == len(srv.sub_requests())
    shown = srv.root_requests()[-1]["conversation"]
    assert "answer to: a" in shown and shown.count("[sub-call failed: budget spent (max_subcalls)") == 2
    assert result.stopped_by == "max_subcalls"


# -- children ------------------------------------------------------------------------------

CHILDREN = {
    "TOP": [repl("r = rlm_query_batched([f'CHILD {i}' for i in range(5)])\nprint(r)"), "FINAL(r)"],
    "CHILD": [repl("xs = []\nfor j in range(5):\n    try:\n        xs.append(llm_query(f'x{j}'))\n    except RuntimeError as e:\n        xs.append(str(e))\nprint(xs)"), "FINAL(xs)"],
}


@pytest.mark.parametrize("max_subcalls", [5, 8])
def test_children_draw_on_one_tree_wide_subcall_budget(rlm_for: Any, max_subcalls: int) -> None:
    rlm, srv = rlm_for(by_question(CHILDREN), max_depth=1, max_subcalls=max_subcalls)
    result = rlm.completion("ctx", "TOP question")
    # 5 child runs count one each; the children's 25 llm_query calls share what is left
    assert result.subcalls == max_subcalls == 5 + len(srv.sub_requests())  # before the ledger: 30
    assert tokens(result.usage) == reported(srv)
    assert result.reserved == {}


def test_children_draw_on_one_tree_wide_token_budget(rlm_for: Any) -> None:
    rlm, srv = rlm_for(by_question(CHILDREN), max_depth=1, max_tokens=60)
    result = rlm.completion("ctx", "TOP question")
    assert srv.requests == [] and result.usage == {}  # no call's worst case fits 60 tokens (before: 405 spent)
    assert result.stopped_by == "max_tokens"
    # room for the root and a few of the children's turns: they compete for one budget
    rlm, srv = rlm_for(by_question(CHILDREN), max_depth=1, max_tokens=2500, reply_tokens=100)
    result = rlm.completion("ctx", "TOP question")
    spent = tokens(result.usage)
    assert spent == reported(srv) and spent <= 2500
    children = {r["conversation"].split("CHILD ")[1][:1] for r in srv.root_requests() if "CHILD " in r["conversation"]}
    assert 1 <= len(children) < 5  # some children got turns, not all did
    assert result.reserved == {}


# -- a replay whose prompts changed --------------------------------------------------------

def test_a_replay_with_clock_built_prompts_is_budgeted_and_counted(rlm_for: Any) -> None:
    script = [
        repl("import time\nanswers = llm_query_batched([f'{time.time_ns()} {i}' for i in range(3)])\nprint(len(answers))"),
        repl("import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"),
        repl("print(len(answers), answers[-1])"),
        "FINAL(done)",
    ]
    rlm, srv = rlm_for(script, max_subcalls=5, sandbox_options={"isolation": "none"})
    result = rlm.completion("ctx", "q")
    # cell 0 made 3 calls; the crash made the next cell rebuild the REPL, and cell 0's replay asked
    # for 3 new prompts: 2 fit, the third was refused
    assert len(srv.sub_requests()) == 5 == result.subcalls  # before the ledger: 6 made, 3 reported
    assert tokens(result.usage) == reported(srv)
    assert result.stopped_by == "max_subcalls" and result.reserved == {}


# -- max_errors ----------------------------------------------------------------------------

def test_max_errors_ends_the_run_after_failed_sub_calls_in_a_row(rlm_for: Any) -> None:
    code = "out = llm_query_batched([f'q{i}' for i in range(4)])\nprint(out[0][:40])"
    rlm, srv = rlm_for([repl(code), "FINAL(x)"], sub=lambda p: {"status": 500}, max_errors=3)
    result = rlm.completion("c", "q")
    assert result.stopped_by == "max_errors" and result.answer == "x"
    assert len(srv.root_requests()) == 2  # the cell's turn, then the forced answer
    assert "You have no more room for more errors" in srv.root_requests()[-1]["prompt"]


def test_max_errors_counts_failed_cells_and_a_success_resets_the_count(rlm_for: Any) -> None:
    failing = [repl(f"raise ValueError('bad {i}')") for i in range(5)]
    rlm, srv = rlm_for([*failing[:2], repl("print('ok')"), *failing[2:], "FINAL(y)"], max_errors=3)
    result = rlm.completion("c", "q")
    assert result.stopped_by == "max_errors" and result.answer == "y"
    assert result.cells == 6 and len(srv.root_requests()) == 7  # two failures, a success, three failures, the forced answer
    rlm, _ = rlm_for([*failing[:3], "FINAL(z)"])  # off by default
    assert rlm.completion("c", "q").stopped_by == "final"


# -- no silent limits ----------------------------------------------------------------------

def test_max_cost_without_a_price_is_refused_before_any_call(rlm_for: Any) -> None:
    rlm, srv = rlm_for(["FINAL(1)"], max_cost_usd=1.0)
    with pytest.raises(ConfigurationError, match=r"cost of model 'scripted' is unknown.*prices=\{'scripted'"):
        rlm.completion("c", "q")
    assert srv.requests == []


def test_the_cli_refuses_max_cost_without_prices_and_takes_a_price_table(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(lambda m: "FINAL(42)")
    (tmp_path / "ctx.txt").write_text("x y")
    base = [sys.executable, "-m", "rlm_graph.cli", "run", "--context", str(tmp_path / "ctx.txt"), "--query", "q", "--base-url", srv.base_url,
            "--model", "scripted", "--checkpoint", "none", "--max-cost-usd", "1"]
    env = {k: v for k, v in os.environ.items() if not k.endswith("_API_KEY")}
    out = subprocess.run(base, capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "prices" in out.stderr and "Traceback" not in out.stderr
    assert srv.requests == []
    out = subprocess.run([*base, "--prices", '{"scripted": [1, 2]}', "--json"], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["usage"]["scripted"]["cost_usd"] > 0
    out = subprocess.run([*base, "--prices", '{"scripted": 3}'], capture_output=True, text=True, timeout=120, env=env)
    assert out.returncode == 2 and "--prices" in out.stderr and "Traceback" not in out.stderr


def test_a_provider_reported_cost_is_used_and_openrouter_needs_no_price_table() -> None:
    from langchain_openai import ChatOpenAI

    from rlm_graph.models.calls import reports_cost

    assert reports_cost(ChatOpenAI(model="m", base_url="https://openrouter.ai/api/v1", api_key="x"))  # type: ignore[arg-type]
    assert not reports_cost(ChatOpenAI(model="m", base_url="http://127.0.0.1:9/v1", api_key="x"))  # type: ignore[arg-type]


def test_a_reported_cost_wins_over_the_price_table(rlm_for: Any) -> None:
    usage = {"prompt_tokens": 10, "completion_tokens": 1, "total_tokens": 11, "cost": 0.25}
    rlm, srv = rlm_for([repl("a = llm_query('x')\nprint(a)"), "FINAL(a)"], sub=lambda p: {"text": "ok", "usage": usage},
                       prices={"scripted": (0.0, 0.0)}, max_cost_usd=10.0)
    result = rlm.completion("c", "q")
    assert result.answer == "ok" and result.usage["scripted"]["cost_usd"] == 0.25


# -- a kill in the middle of a fan-out -----------------------------------------------------

def test_a_kill_mid_fan_out_then_resume_spends_exactly_what_the_server_reported(tmp_path: Path) -> None:
    state: dict[str, Any] = {"proc": None, "subs": 0, "killed": False}

    def sub(prompt: str) -> dict[str, Any]:
        state["subs"] += 1
        if state["subs"] == 5 and not state["killed"]:
            time.sleep(0.1)  # the four answered before are saved meanwhile
            os.kill(state["proc"].pid, signal.SIGKILL)
            state["killed"] = True
            time.sleep(0.3)
        return {"text": "a", "usage": SUB_USAGE, "delay": 0.3}

    srv = ScriptedServer(fanout_root, sub).start()
    try:
        limits = json.dumps({"max_tokens": 7000})  # room for 6 of the 16 sub-calls
        args = [sys.executable, "-m", "tests.durable.runner", srv.base_url, str(tmp_path / "work"), "t1", "--limits", limits]
        cwd = Path(__file__).parents[1]
        state["proc"] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        state["proc"].communicate(timeout=120)
        assert state["killed"] and state["proc"].returncode == -signal.SIGKILL
        done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=120, cwd=cwd)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
    finally:
        srv.stop()
    # Each call counts once: a call in flight at the kill, asked again on resume, was never received.
    received = {(r["role"], r["prompt"], r["n_messages"]): r["usage"]["total_tokens"] for r in srv.requests if r.get("delivered")}
    assert tokens(result["usage"]) == sum(received.values())
    subs = {k for k in received if k[0] == "sub"}
    assert result["subcalls"] == len(subs) == 6
    assert tokens(result["usage"]) <= 7000
    assert result["reserved"] == {} and result["stopped_by"] == "max_tokens"


def _saved_answers(db: Path) -> int:
    """Answers the root's fan-out has saved so far (its finished sub_call tasks)."""
    import sqlite3

    if not db.exists():
        return 0
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=1)
    try:  # a short read, closed at once: a reader left open would hold the runner's writes back
        return int(con.execute("SELECT count(*) FROM writes WHERE checkpoint_ns = '' AND channel = 'answers'").fetchone()[0])
    except sqlite3.Error:
        return 0
    finally:
        con.close()


def test_a_kill_while_children_run_counts_the_child_that_had_finished(tmp_path: Path) -> None:
    # Two children in parallel: FAST answers in one turn, SLOW's first turn is in flight when the
    # process is killed. Each child turn reports 5,000 tokens, more than it reserved, so the
    # budget of 8,000 is passed by FAST and SLOW's first turns together. On resume FAST's spend
    # is still only in the checkpoint's pending writes: SLOW's second turn must see it and not go.
    big = {"prompt_tokens": 4990, "completion_tokens": 10, "total_tokens": 5000}
    state: dict[str, Any] = {"proc": None, "killed": False}

    def root(messages: list[dict[str, Any]]) -> dict[str, Any]:
        question, turn = messages[1]["content"], sum(m["role"] == "assistant" for m in messages)
        if "FAST" in question:
            return {"text": 'FINAL("fast")', "usage": big}
        if "SLOW" in question:
            if turn == 0 and not state["killed"]:
                deadline = time.monotonic() + 20
                while not _saved_answers(tmp_path / "work" / "checkpoints.sqlite") and time.monotonic() < deadline:
                    time.sleep(0.2)  # until FAST's sub_call task is saved (as a pending write of the fan-out)
                os.kill(state["proc"].pid, signal.SIGKILL)
                state["killed"] = True
                time.sleep(0.3)
            return {"text": [repl("print(1)"), 'FINAL("slow")'][min(turn, 1)], "usage": big}
        return {"text": [repl("a = rlm_query_batched(['FAST child', 'SLOW child'])\nprint(a)"), "FINAL(a)"][min(turn, 1)], "usage": ROOT_USAGE}

    srv = ScriptedServer(root).start()
    try:
        options = json.dumps({"max_tokens": 8000, "max_depth": 1, "reply_tokens": 100, "grounding_guard": False})
        args = [sys.executable, "-m", "tests.durable.runner", srv.base_url, str(tmp_path / "work"), "t1", "--limits", options]
        cwd = Path(__file__).parents[1]
        state["proc"] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=cwd)
        state["proc"].communicate(timeout=120)
        assert state["killed"]
        done = subprocess.run([*args, "--resume"], capture_output=True, text=True, timeout=120, cwd=cwd)
        assert done.returncode == 0, done.stderr
        result = json.loads(done.stdout)
    finally:
        srv.stop()
    fast = [r for r in srv.requests if "FAST child" in r["conversation"] and r["role"] == "root" and r["n_messages"] == 2]
    slow_second = [r for r in srv.requests if "SLOW child" in r["conversation"] and r["role"] == "root" and r["turn"] >= 1]
    # FAST had finished and was saved (normally: on a loaded machine its save may come after the
    # kill, and then it runs again on resume, counted live); either way SLOW's second turn never goes
    assert 1 <= len(fast) <= 2
    assert slow_second == []  # 5,015 spent by FAST and the root, 5,000 by SLOW's first turn: no room left
    received = {(r["role"], r["conversation"]): r["usage"]["total_tokens"] for r in srv.requests if r.get("delivered")}
    assert tokens(result["usage"]) == sum(received.values())
    assert result["reserved"] == {} and result["stopped_by"] == "max_tokens"
