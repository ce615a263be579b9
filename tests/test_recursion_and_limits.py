"""rlm_query recursion, whole-tree accounting, every limit, async and streaming."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from tests.conftest import by_question, repl


def test_depth_two_child_runs_its_own_repl(rlm_for: Any) -> None:
    script = {
        "TOP": [repl("a = rlm_query('CHILD: count the words', context='x y z')\nprint(a)"), "FINAL(a)"],
        "CHILD": [repl("n = len(context.split())\nprint(n)"), "FINAL(n)"],
    }
    rlm, srv = rlm_for(by_question(script), max_depth=2)
    result = rlm.completion("ignored", "TOP question")
    assert result.answer == "3"
    child_turns = [r for r in srv.root_requests() if "CHILD" in r["prompt"] or r["n_messages"] > 2]
    assert any("CHILD" in r["prompt"] for r in srv.root_requests())
    assert result.usage["scripted"]["calls"] == 4 == len(srv.root_requests())
    assert child_turns


def test_depth_three_and_fallback_at_max_depth(rlm_for: Any) -> None:
    script = {
        "TOP": [repl("a = rlm_query('MID question', context='m')\nprint(a)"), "FINAL(a)"],
        "MID": [repl("b = rlm_query('LEAF question', context='leaf data')\nprint(b)"), "FINAL(b)"],
        "LEAF": [repl("c = rlm_query('too deep')\nprint(c)"), "FINAL(c)"],
    }
    rlm, srv = rlm_for(by_question(script), sub=lambda p: "plain:" + p[:8], max_depth=3)
    result = rlm.completion("ignored", "TOP question")
    # TOP (depth 0) -> MID (1) -> LEAF (2) -> 'too deep' would be depth 3 = max_depth: still an RLM
    assert result.answer == "unscripted"
    rlm, srv = rlm_for(by_question(script), sub=lambda p: "plain:" + p[:8], max_depth=2)
    result = rlm.completion("ignored", "TOP question")
    # at depth 2 the LEAF's rlm_query falls back to a plain call
    assert result.answer == "plain:too deep"
    assert [r["prompt"][:8] for r in srv.sub_requests()] == ["too deep"]


def test_the_rlm_line_is_only_offered_below_max_depth(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"], max_depth=0)
    rlm.completion("c", "q")
    assert srv.root_requests()  # ran
    rlm2, srv2 = rlm_for([repl("print(1)"), "FINAL(1)"], max_depth=1)
    rlm2.completion("c", "q")
    # the system prompt is not in the recorded prompt (last message); check through the graph instead
    from rlm_graph.graph import prompts

    assert "rlm_query" not in prompts.system_prompt(max_output_chars=4000, allow_rlm=False)
    assert "rlm_query" in prompts.system_prompt(max_output_chars=4000, allow_rlm=True)


def test_sandbox_code_cannot_raise_its_own_depth(rlm_for: Any) -> None:
    sneaky = (
        "import os, __main__\n"
        "os.environ['RLM_MAX_DEPTH'] = '99'\n"
        "r = __main__._ask('rlm', ['DEEP please'], [None])\n"
        "print(r)"
    )
    script = {"TOP": [repl(sneaky), "FINAL(r)"], "DEEP": [repl("print('I am a REPL run')"), "FINAL(nested)"]}
    rlm, srv = rlm_for(by_question(script), sub=lambda p: "plain answer", max_depth=0)
    result = rlm.completion("c", "TOP question")
    assert result.answer == "['plain answer']"
    assert not any("DEEP" in r["prompt"] for r in srv.root_requests())


def test_token_totals_are_exact_across_the_tree(rlm_for: Any) -> None:
    script = {
        "TOP": [repl("a = rlm_query('CHILD q', context='p q')\nb = llm_query_batched(['s1', 's2'])\nprint(a, b)"), "FINAL(a)"],
        "CHILD": [repl("x = llm_query('inner')\nprint(x)"), "FINAL(x)"],
    }
    rlm, srv = rlm_for(by_question(script), max_depth=1)
    result = rlm.completion("c", "TOP question")
    served = [r["usage"] for r in srv.requests if r["status"] == 200]
    u = result.usage["scripted"]
    assert u["calls"] == len(served) == 7  # 2 top turns, 2 child turns, 1 inner, 2 batched
    assert u["input_tokens"] == sum(s["prompt_tokens"] for s in served)
    assert u["output_tokens"] == sum(s["completion_tokens"] for s in served)
    assert result.subcalls == 4  # child run + its inner call + 2 batched


def test_cost_is_computed_from_a_price_table_and_limits_the_run(rlm_for: Any) -> None:
    # each root turn reports 1,000 tokens; at $1 per million a turn costs $0.001 and reserves
    # less than that ($0.0009 or so: its prompt's estimate plus a 100-token reply cap)
    turn = {"prompt_tokens": 900, "completion_tokens": 100, "total_tokens": 1000}
    script = [{"text": repl("print(1)"), "usage": turn}, {"text": repl("print(2)"), "usage": turn}, {"text": "FINAL(9)", "usage": turn}]
    rlm, srv = rlm_for(script, prices={"scripted": (1.0, 1.0)}, max_cost_usd=0.0025, reply_tokens=100)
    result = rlm.completion("c", "q")
    # two turns fit; the third turn's worst case does not (0.002 spent + its reservation > 0.0025),
    # so it is never sent, nor is the forced answer (the same conversation, a bigger worst case)
    assert result.stopped_by == "max_cost_usd" and len(srv.root_requests()) == 2
    assert result.usage["scripted"]["cost_usd"] == 0.002 and result.answer is None


def test_max_subcalls_refuses_the_request_and_ends_the_run(rlm_for: Any) -> None:
    code = "try:\n    r = llm_query_batched(['a', 'b', 'c'])\nexcept RuntimeError as e:\n    print('refused:', e)\npartial = 'kept'"
    # (a batch of which some prompts fit is answered in part: tests/test_budgets.py)
    rlm, srv = rlm_for([repl("first = llm_query('one')\nprint(first)"), repl(code), "FINAL(partial)"], max_subcalls=1)
    result = rlm.completion("c", "q")
    assert result.stopped_by == "max_subcalls" and result.subcalls == 1
    assert len(srv.sub_requests()) == 1
    assert result.answer == "kept"  # the cell caught the refusal and went on; its variable was read
    assert "refused: budget spent (max_subcalls)" in srv.root_requests()[-1]["conversation"]


def test_max_tokens_ends_the_run_with_a_forced_answer(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl(f"print({i})") for i in range(10)] + ["FINAL(x)"], max_tokens=700)
    result = rlm.completion("c", "q")
    assert result.stopped_by == "max_tokens" and result.iterations < 10


def test_max_seconds_is_checked_inside_a_long_cell(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("import time\nkept = 1\ntime.sleep(30)"), "FINAL(kept)"], max_seconds=2.0)
    result = rlm.completion("c", "q")
    assert result.stopped_by == "max_seconds"
    assert result.execution_time < 20


def test_servers_without_usage_count_as_unknown_in_children(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("r = llm_query('x')\nprint(r)"), "FINAL(r)"], sub=lambda p: {"text": "no-usage", "usage": None})
    result = rlm.completion("c", "q")
    assert result.answer == "no-usage" and result.usage["scripted"]["unknown_usage"] == 1


def test_a_thousand_sub_calls_in_one_batch(rlm_for: Any) -> None:
    code = "out = llm_query_batched([f'q{i}' for i in range(1000)])\nprint(len(out), out[0], out[-1])"
    rlm, srv = rlm_for([repl(code), "FINAL(done)", 'FINAL("done")'], sub=lambda p: p.upper(), max_concurrency=64)
    result = rlm.completion("c", "q")
    assert len(srv.sub_requests()) == 1000 and result.subcalls == 1000
    assert "1000 Q0 Q999" in srv.root_requests()[1]["prompt"]


def test_async_completions_run_concurrently(rlm_for: Any) -> None:
    rlm, srv = rlm_for(lambda m: repl("print(len(context))") if sum(x["role"] == "assistant" for x in m) == 0 else {"text": 'FINAL("3")', "delay": 0.5})

    async def both() -> list[Any]:
        return await asyncio.gather(rlm.acompletion("abc", "q"), rlm.acompletion("abcdef", "q"))

    r1, r2 = asyncio.run(both())
    assert r1.thread_id != r2.thread_id and r1.iterations == r2.iterations == 2
    finals = sorted((r["arrived"], r["done"]) for r in srv.root_requests() if r["n_messages"] > 3)
    assert finals[1][0] < finals[0][1]  # the two final turns overlapped


def test_stream_yields_iterations_sub_calls_and_child_steps(rlm_for: Any) -> None:
    script = {"TOP": [repl("a = rlm_query('CHILD q')\nb = llm_query('s')\nprint(a, b)"), "FINAL(a)"], "CHILD": [repl("print(2)"), "FINAL(two)"]}
    rlm, _ = rlm_for(by_question(script), max_depth=1)
    events = list(rlm.stream("c", "TOP question"))
    nodes = [(len(e["namespace"]), e["node"]) for e in events]
    assert (0, "generate") in nodes and (0, "sub_call") in nodes and (0, "check_final") in nodes
    assert any(depth >= 1 and node == "generate" for depth, node in nodes)  # the child's own turns
    final = [e for e in events if e["node"] == "check_final" and not e["namespace"] and (e["update"] or {}).get("final_answer")]
    assert final and final[-1]["update"]["final_answer"] == "two"


@pytest.mark.parametrize("bad", [{"max_depth": -1}, {"max_concurrency": 0}, {"cell_timeout": "soon"}, {"max_output_chars": 50}])
def test_invalid_limits_are_refused(rlm_for: Any, bad: dict[str, Any]) -> None:
    from rlm_graph import ConfigurationError

    with pytest.raises(ConfigurationError):
        rlm_for([], **bad)
