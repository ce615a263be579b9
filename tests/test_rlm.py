"""End-to-end runs of the RLM facade against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, ConfigurationError, ContextError
from tests.conftest import repl


def test_multi_iteration_run_answers_from_code(rlm_for: Any) -> None:
    rlm, srv = rlm_for(
        [
            repl("nums = [int(x) for x in context.split()]\nprint(len(nums), nums[:3])"),
            repl("total = sum(nums)\ntotal"),
            "The total is known. FINAL(total)",
        ]
    )
    result = rlm.completion(" ".join(str(i) for i in range(1, 101)), "What is the sum of the numbers?")
    assert result.answer == "5050"
    assert result.iterations == 3 and result.stopped_by == "final"
    assert result.usage["scripted"]["calls"] == 3
    # the model saw the echoed value of the last expression
    assert "5050" in srv.root_requests()[2]["prompt"]


def test_request_carries_stop_sequences_and_max_tokens(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"], reply_tokens=333)
    rlm.completion("x", "q")
    first = srv.root_requests()[0]
    assert first["stop"] == ["REPL output", "```output"]
    assert first["max_tokens"] == 333


def test_the_context_never_reaches_a_prompt(rlm_for: Any) -> None:
    secret_tail = "NEEDLE-7f3a"
    context = "filler line\n" * 5000 + secret_tail
    rlm, srv = rlm_for([repl("print(len(context))"), "FINAL(done)"])
    rlm.completion(context, "How long is it?")
    assert all(secret_tail not in r["prompt"] for r in srv.requests)
    assert "60,011 characters" in srv.root_requests()[0]["prompt"]


def test_final_in_code_and_final_var(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("x = 6 * 7\nprint(x)"), repl("FINAL(x)")])
    assert rlm.completion("ctx", "q").answer == "42"
    rlm, _ = rlm_for([repl("city = 'Paris'\nprint(city)"), repl("FINAL_VAR('city')")])
    assert rlm.completion("ctx", "q").answer == "Paris"
    rlm, _ = rlm_for([repl("city = 'Lyon'\nprint(city)"), 'FINAL_VAR("city")'])
    assert rlm.completion("ctx", "q").answer == "Lyon"


def test_final_text_with_nested_parentheses_and_tuple(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("print(1)"), "FINAL(f(x) = (x + 1) (approx))"])
    assert rlm.completion("ctx", "q").answer == "f(x) = (x + 1) (approx)"
    rlm, _ = rlm_for([repl("print(1)"), "FINAL((3, 4))"])
    assert rlm.completion("ctx", "q").answer == "(3, 4)"


def test_grounding_guard_refuses_a_final_given_before_any_output(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("x = 2 + 2\nFINAL(x)"), "Checked. FINAL(4)"])
    result = rlm.completion("ctx", "What is 2+2?")
    assert result.answer == "4" and result.iterations == 2
    assert "before seeing any output" in srv.root_requests()[1]["prompt"]


def test_parallel_batched_sub_calls_overlap(rlm_for: Any) -> None:
    code = "answers = llm_query_batched([f'item {i}' for i in range(20)])\nprint(answers[:2], len(answers))"
    rlm, srv = rlm_for([repl(code), "FINAL(answers)"], sub=lambda p: f"ok-{p}", sub_delay=0.3)
    result = rlm.completion("ctx", "q")
    subs = srv.sub_requests()
    assert len(subs) == 20 and result.subcalls == 20
    # at least half of the calls were in flight at the same moment
    latest_start = sorted(s["arrived"] for s in subs)[9]
    earliest_end = min(s["done"] for s in subs)
    assert latest_start < earliest_end
    assert "ok-item 0" in result.answer and "ok-item 19" in result.answer
    assert result.usage["scripted"]["calls"] == 22


def test_batched_answers_keep_their_order(rlm_for: Any) -> None:
    import random

    def slow_sub(prompt: str) -> dict[str, Any]:
        return {"text": prompt.upper(), "delay": random.random() * 0.2}

    code = "out = llm_query_batched(['a', 'b', 'c', 'd', 'e', 'f'])\nprint(out)"
    rlm, _ = rlm_for([repl(code), "FINAL(out)"], sub=slow_sub)
    assert rlm.completion("ctx", "q").answer == "['A', 'B', 'C', 'D', 'E', 'F']"


def test_sub_calls_inside_a_loop_continue_the_same_cell(rlm_for: Any) -> None:
    code = "res = []\nfor w in context.split():\n    res.append(llm_query(w))\nprint(res)"
    rlm, srv = rlm_for([repl(code), "FINAL(res)"], sub=lambda p: p[::-1])
    result = rlm.completion("abc def ghi", "q")
    assert result.answer == "['cba', 'fed', 'ihg']"
    assert result.cells == 2  # one cell with three sub-calls, then FINAL_VAR


def test_a_cell_timeout_is_survived_and_reported(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("kept = 5\nwhile True: pass"), repl("print(kept)"), "FINAL(kept)"], cell_timeout=1)
    result = rlm.completion("ctx", "q")
    assert result.answer == "5"
    assert "TimeoutError" in srv.root_requests()[1]["prompt"]


def test_a_killed_worker_is_rebuilt_by_replay(rlm_for: Any) -> None:
    code_kill = "import os, signal\nos.kill(os.getpid(), signal.SIGKILL)"
    rlm, srv = rlm_for([repl("a = llm_query('first')\nprint(a)"), repl(code_kill), repl("print(a)"), "FINAL(a)"], sub=lambda p: "ANSWER")
    result = rlm.completion("ctx", "q")
    assert result.answer == "ANSWER"
    assert "WorkerCrashed" in srv.root_requests()[2]["prompt"]
    assert len(srv.sub_requests()) == 1  # the replay served 'first' from the record


def test_output_is_truncated_for_the_model(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print('x' * 50000)"), "FINAL(done)"], max_output_chars=500)
    rlm.completion("ctx", "q")
    shown = srv.root_requests()[1]["prompt"]
    assert len(shown) < 1000 and "characters omitted" in shown


def test_forced_final_answer_when_iterations_run_out(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(1)"), repl("print(2)"), "I think FINAL(best guess)"], max_iterations=2)
    result = rlm.completion("ctx", "q")
    assert result.stopped_by == "max_iterations" and result.forced
    assert result.answer == "best guess"
    assert "no more iterations left" in srv.root_requests()[-1]["prompt"]


def test_stuck_loop_gets_a_nudge_instead_of_a_rerun(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(len(context))"), repl("print(len(context))"), "FINAL(3)"])
    result = rlm.completion("abc", "q")
    assert result.answer == "3" and result.cells == 1
    assert "same code as in your previous reply" in srv.root_requests()[2]["prompt"]


def test_reply_without_code_or_final_gets_a_note(rlm_for: Any) -> None:
    rlm, srv = rlm_for(["I am thinking about it.", repl("print(1)"), "FINAL(1)"])
    assert rlm.completion("abc", "q").answer == "1"
    assert "no code to run" in srv.root_requests()[1]["prompt"]


def test_a_block_that_only_repeats_output_is_not_run(rlm_for: Any) -> None:
    # Seen on the 1.5B model: after the output "18611\n7560" it replied with that output in a fence.
    rlm, srv = rlm_for([repl("print(context[:11])"), "```\n18611\n7560\n```", repl("print(sum(map(int, context.split())))"), "FINAL(26171)"])
    result = rlm.completion("18611\n7560", "What is the sum?")
    assert result.answer == "26171" and result.cells == 2
    assert "only repeats output is not code" in srv.root_requests()[2]["prompt"]


def test_server_without_usage_does_not_break_the_run(rlm_for: Any) -> None:
    rlm, _ = rlm_for([{"text": repl("print(1)"), "usage": None}, {"text": "FINAL(1)", "usage": None}])
    result = rlm.completion("abc", "q")
    assert result.answer == "1"
    assert result.usage["scripted"]["unknown_usage"] == 2 and result.usage["scripted"]["calls"] == 2


def test_context_overflow_ends_the_run_cleanly(rlm_for: Any) -> None:
    overflow = {"status": 400, "body": {"error": {"message": "the request exceeds the available context size (n_ctx 8192)", "type": "invalid_request_error"}}}
    rlm, _ = rlm_for([repl("print(1)"), overflow, "FINAL(partial)"])
    result = rlm.completion("abc", "q")
    assert result.stopped_by == "context_overflow" and result.answer == "partial"


def test_contexts_of_every_kind(rlm_for: Any, tmp_path: Path) -> None:
    cases: list[tuple[Any, str]] = [
        (["a", "b", "c"], "3"),
        ({"k1": 1, "k2": 2}, "2"),
    ]
    jsonl = tmp_path / "rows.jsonl"
    jsonl.write_text('{"a": 1}\n{"a": 2}\n{"a": 3}\n{"a": 4}\n')
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("name,age\nann,31\nbob,45\n")
    js = tmp_path / "d.json"
    js.write_text(json.dumps({"x": [1, 2, 3, 4, 5]}))
    txt = tmp_path / "t.txt"
    txt.write_text("one\ntwo\n")
    cases += [(str(jsonl), "4"), (str(csv_file), "2"), (js, "1"), (str(txt), "8")]
    for context, expected in cases:
        rlm, _ = rlm_for([repl("n = len(context)\nprint(n)"), "FINAL(n)"])
        assert rlm.completion(context, "How many?").answer == expected, context
    rlm, _ = rlm_for([repl("print(max(context, key=lambda r: r['age'])['name'])"), 'FINAL("bob")'])
    assert rlm.completion(str(csv_file), "Oldest?").answer == "bob"


def test_bad_context_and_options_fail_before_any_call(rlm_for: Any, tmp_path: Path) -> None:
    rlm, srv = rlm_for([])
    empty = tmp_path / "empty.txt"
    empty.write_text("")
    binary = tmp_path / "blob.txt"
    binary.write_bytes(b"\x00\x01\x02")
    with pytest.raises(ContextError, match="empty"):
        rlm.completion(empty, "q")
    with pytest.raises(ContextError, match="binary"):
        rlm.completion(binary, "q")
    with pytest.raises(ContextError, match="not found"):
        rlm.completion(tmp_path / "missing.txt", "q")
    with pytest.raises(ConfigurationError, match="non-empty"):
        rlm.completion("ctx", "  ")
    assert srv.requests == []
    with pytest.raises(ConfigurationError, match="max_iterations"):
        RLM("m", base_url=srv.base_url, max_iterations=0)
    with pytest.raises(ConfigurationError, match="unknown option"):
        RLM("m", base_url=srv.base_url, max_iteration=3)
    with pytest.raises(ConfigurationError, match="unknown sandbox"):
        RLM("m", base_url=srv.base_url, sandbox="vm")
    with pytest.raises(ConfigurationError, match="unknown model provider"):
        RLM("anthropic:claude")
    with pytest.raises(ConfigurationError, match="OPENAI_API_KEY"):
        RLM("openai:gpt-4o-mini")


def test_trajectory_log_is_written(rlm_for: Any, tmp_path: Path) -> None:
    rlm, _ = rlm_for([repl("r = llm_query('hi')\nprint(r)"), "FINAL(r)"], log_dir=tmp_path / "logs")
    rlm.completion("ctx", "q")
    (log,) = list((tmp_path / "logs").glob("*.jsonl"))
    records = [json.loads(line) for line in log.read_text().splitlines()]
    assert records[0]["type"] == "metadata" and records[0]["root_model"] == "scripted"
    iters = [r for r in records if r["type"] == "iteration"]
    assert [r["iteration"] for r in iters] == [1, 2]
    calls = iters[0]["code_blocks"][0]["result"]["rlm_calls"]
    assert calls[0]["prompt"] == "hi" and calls[0]["response"].startswith("answer to")
    assert records[-1]["type"] == "result" and records[-1]["final_answer"] == records[-2]["final_answer"]


def test_final_of_an_undefined_name(rlm_for: Any) -> None:
    # a lower-case name is a variable the model forgot to define: the REPL tells it so
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(totl)", repl("totl = 5\nprint(totl)"), "FINAL(totl)"])
    assert rlm.completion("ctx", "q").answer == "5"
    assert "no such variable" in srv.root_requests()[2]["prompt"]
    # a capitalised word with no such variable is the answer itself
    rlm, _ = rlm_for([repl("print(1)"), "FINAL(Paris)"])
    assert rlm.completion("ctx", "q").answer == "Paris"


def test_answer_check_asks_for_the_kind_and_checks_the_form_in_code(rlm_for: Any) -> None:
    def sub(prompt: str) -> str:
        return "number" if "What kind of value" in prompt else "?"

    rlm, srv = rlm_for([repl("n = 12\nprint(n, 'apples')"), 'FINAL("twelve apples")', "FINAL(n)"], sub=sub, answer_check=True)
    result = rlm.completion("ctx", "How many apples?")
    assert result.answer == "12"
    assert "asks for a number" in srv.root_requests()[2]["prompt"]


def test_a_repeating_loop_ends_with_a_forced_answer(rlm_for: Any) -> None:
    a, b = repl("print('a')"), repl("print('b')")
    rlm, srv = rlm_for([a, b, a, b, 'FINAL("best")'])
    result = rlm.completion("ctx", "q")
    assert result.stopped_by == "stuck_loop" and result.answer == "best"
    assert result.cells == 2


def test_a_loop_with_prose_between_its_repeats_ends_too(rlm_for: Any) -> None:
    # Seen on the 1.5B model: the same search, "it is not mentioned", the same search, ... for 20 turns.
    a, prose = repl("print(search('absent phrase'))"), "The value is not mentioned in the text."
    rlm, srv = rlm_for([a, prose, a, prose, a, 'FINAL("none")'])
    result = rlm.completion("ctx", "q")
    assert result.stopped_by == "stuck_loop" and result.answer == "none"
    assert result.cells == 1 and result.iterations == 5


def test_a_forced_answer_that_is_only_code_is_no_answer(rlm_for: Any) -> None:
    # Seen on the 1.5B model: asked for its answer at the end, it wrote the stuck search once more.
    a = repl("print(search('absent phrase'))")
    rlm, _ = rlm_for([a, a, a, a])
    result = rlm.completion("ctx", "q")
    assert result.stopped_by == "stuck_loop" and result.answer is None
    rlm, _ = rlm_for([a, a, a, "It is not in the text.\n" + a])
    assert rlm.completion("ctx", "q").answer == "It is not in the text."


def test_forced_final_reads_a_final_written_in_code(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("x = 5\nprint(x)"), repl("print(6)"), repl("FINAL(x)")], max_iterations=2)
    result = rlm.completion("ctx", "q")
    assert result.stopped_by == "max_iterations" and result.answer == "5"


def test_an_answer_the_output_never_showed_goes_back_once(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print([l for l in context.splitlines() if 'vault' in l])"), "FINAL(12345)", "FINAL(saffron)"], sub=lambda p: "word", answer_check=True)
    result = rlm.completion("a\nthe vault password is saffron\nb", "What is the password?")
    assert result.answer == "saffron"
    assert "appears nowhere in the REPL output" in srv.root_requests()[2]["prompt"]


def test_final_of_a_shown_word_inside_a_code_block_is_the_word(rlm_for: Any) -> None:
    # Seen on the 1.5B model: ```repl FINAL(Kara)``` after the output showed Kara; run as code it is a NameError.
    rlm, _ = rlm_for([repl("print(context[0])"), repl("FINAL(Kara)")])
    result = rlm.completion(["Kara 85", "Wes 27"], "Who is listed first?")
    assert result.answer == "Kara" and result.cells == 1


def test_the_first_example_follows_the_context_shape(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"] * 3)
    rlm.completion("a long text on one line", "q")
    rlm.completion("\n".join(str(n) for n in range(40)), "q")
    rlm.completion([{"age": 3}], "q")
    text, lines, items = (srv.root_requests()[i]["conversation"] for i in (0, 2, 4))
    assert 'hits = search("error")' in text and "hits = [" not in text
    assert "hits = [line for line in context.splitlines()" in lines and "hits = search(" not in lines
    assert "hits = [line for line in context.splitlines()" in items and "hits = search(" not in items
    assert "`search(text)`" in text and "`search(text)`" not in lines + items  # only where the example uses it


def test_a_prose_answer_with_a_value_from_the_output_is_asked_to_be_wrapped_in_final(rlm_for: Any) -> None:
    # Seen on the 1.5B model: it printed 540000, then wrote "The total ... is 540000." with no FINAL.
    rlm, srv = rlm_for([repl("print(sum(context))"), "The total salary is 540000.", "FINAL(540000)"])
    assert rlm.completion([300000, 240000], "Total?").answer == "540000"
    assert "If 540000 is the answer, reply with exactly: FINAL(540000)" in srv.root_requests()[2]["prompt"]
    rlm, srv = rlm_for([repl("print(sum(context))"), "The total is large.", "FINAL(540000)"])
    assert rlm.completion([300000, 240000], "Total?").answer == "540000"
    assert "no code to run" in srv.root_requests()[2]["prompt"] and "If " not in srv.root_requests()[2]["prompt"]
