"""End-to-end runs of the RLM facade against a scripted OpenAI-compatible server on loopback."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
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


def test_an_answer_from_a_filter_that_cannot_match_goes_back(rlm_for: Any) -> None:
    # the 1.5B model's cell: a capitalised literal against lower-cased text, and FINAL in the same cell
    table = "customer,amount\nBlue Goods,10\nRed Goods,5\nBlue Goods,2\n"
    broken = repl("rows_ = [l for l in context.splitlines() if 'BLUE GOODS' in l.lower()]\n"
                  "total = sum(float(l.split(',')[1]) for l in rows_)\nFINAL(total)")
    fixed = repl("rows_ = [l for l in context.splitlines() if 'blue goods' in l.lower()]\n"
                 "total = sum(float(l.split(',')[1]) for l in rows_)\nprint(total)")
    rlm, srv = rlm_for([broken, "FINAL(0)", fixed, "FINAL(12.0)"], answer_check=True)
    result = rlm.completion(table, "What is the total amount of the orders from BLUE GOODS?")
    assert float(result.answer) == 12 and result.confirmed
    prompts = [r["prompt"] for r in srv.root_requests()]
    # both the FINAL inside the broken cell and the 0 repeated after it were sent back with the reason
    assert sum("comes from code whose filter cannot match" in p for p in prompts) == 2
    assert "before seeing any output" not in prompts[1]
    # the first note also shows the cell re-run by the runner with the flagged literal in lower case
    assert "The runner ran that cell with 'blue goods' in lower case" in prompts[1] and "reply FINAL(12.0)" in prompts[1]
    assert "The runner ran that cell" not in prompts[2]  # once per run


def test_no_filter_note_is_sent_past_the_iteration_limit(rlm_for: Any) -> None:
    table = "customer,amount\nBlue Goods,10\n"
    broken = repl("n = sum(1 for l in context.splitlines() if 'BLUE GOODS' in l.lower())\nFINAL(n)")
    rlm, srv = rlm_for([broken, "FINAL(1)"], answer_check=True, max_iterations=1)
    result = rlm.completion(table, "How many orders are from BLUE GOODS?")
    assert result.iterations == 1 and len(srv.root_requests()) <= 2  # the turn, and at most one forced answer
    assert all("filter cannot match" not in r["prompt"] for r in srv.root_requests())


def test_the_runners_fixed_run_of_a_cell_leaves_the_repl_as_the_recorded_cells_did(rlm_for: Any) -> None:
    table = "customer,amount\nBlue Goods,10\nRed Goods,5\nBlue Goods,2\n"
    broken = repl("hits = [l for l in context.splitlines() if 'BLUE GOODS' in l.lower()]\n"
                  "total = sum(float(l.split(',')[1]) for l in hits)\nFINAL_VAR('total')")
    rlm, srv = rlm_for([broken, repl("print('total is', total, len(hits))"), "FINAL(12.0)"], answer_check=True)
    result = rlm.completion(table, "What is the total amount of the orders from BLUE GOODS?")
    prompts = [r["prompt"] for r in srv.root_requests()]
    assert "reply FINAL(12.0)" in prompts[1]
    assert "total is 0 0" in prompts[2]  # the re-run bound nothing in the live REPL
    # the runner's value, given back, is taken as counted (it is not a number the model's code printed)
    assert float(result.answer) == 12 and result.confirmed and len(prompts) == 3


def test_parallel_batched_sub_calls_overlap(rlm_for: Any) -> None:
    import threading

    # ten calls must be in flight at once to pass the barrier (a sequential client would time out
    # there and fail the calls); no clock is compared, so a loaded machine cannot flake it
    barrier = threading.Barrier(10)

    def sub(prompt: str) -> str:
        barrier.wait(timeout=60)
        return f"ok-{prompt}"

    code = "answers = llm_query_batched([f'item {i}' for i in range(20)])\nprint(answers[:2], len(answers))"
    rlm, srv = rlm_for([repl(code), "FINAL(answers)"], sub=sub)
    result = rlm.completion("ctx", "q")
    subs = srv.sub_requests()
    assert len(subs) == 20 and result.subcalls == 20 and not barrier.broken
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
    # the same first block with a pasted "output" block after it is the same loop (only the first would run)
    again = repl("print(len(context))") + "\n\nIt prints:\n```\nthree\n```"
    rlm, srv = rlm_for([repl("print(len(context))"), again, "FINAL(3)"])
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
        RLM("nosuch:claude")
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


def test_a_forced_answer_leaves_out_the_runner_notes_the_model_pasted(rlm_for: Any) -> None:
    # Seen on the 1.5B model: its last reply was the stuck loop again with the runner's search note
    # pasted under it (one line re-worded), and that note became the answer to a how-many question.
    a = repl("print(sum('kestrel' in line for line in context.splitlines()))")
    pasted = ("The runner searched the context for the question's key words:\n"
              "search('August') finds 2:\n  the kestrel code is 7731\n"
              "Read these lines. If one of them answers the question, reply with FINAL and the value; "
              "otherwise write code that looks further.\n")
    rlm, srv = rlm_for([a, a, a, a + "\n" + pasted], sub=lambda p: "2" if "Outputs of code" in p else "unknown")
    result = rlm.completion("a line\nthe kestrel code is 7731\nkestrel again\n", "How many kestrel lines are there?")
    assert result.stopped_by == "stuck_loop" and result.confirmed is False
    assert any("The runner searched" in r["prompt"] for r in srv.root_requests())  # the note it pasted was shown to it
    assert result.answer == "2"  # not the pasted note: the sub-model read the outputs


def test_a_list_answer_whose_items_the_output_printed_is_grounded(rlm_for: Any) -> None:
    # The 1.5B model printed the items both lists hold, one per line under a heading, then answered
    # FINAL(common) (a set's repr): its items are in the output, though not on the heading's line.
    text = "=== East ===\nSKU-1\nSKU-2\nSKU-3\n\n=== West ===\nSKU-2\nSKU-3\nSKU-4\n"
    cell = repl("common = set(lists['East']) & set(lists['West'])\nprint('Items in both East and West:')\nfor x in sorted(common):\n    print(x)")
    rlm, srv = rlm_for([cell, "FINAL_VAR(common)"], sub=lambda p: "list", answer_check=True)
    result = rlm.completion(text, "Which items are in both the East and the West list?")
    assert result.stopped_by == "final" and sorted(result.answer.strip("{}").replace("'", "").split(", ")) == ["SKU-2", "SKU-3"]
    assert len(srv.root_requests()) == 2
    # an item the output never showed still goes back
    rlm, srv = rlm_for([cell, "FINAL(SKU-2, SKU-9)", "FINAL(SKU-2, SKU-3)"], sub=lambda p: "list", answer_check=True)
    assert rlm.completion(text, "Which items are in both the East and the West list?").answer == "SKU-2, SKU-3"
    assert "is not in the output lines that name what the question asks about" in srv.root_requests()[2]["prompt"]


def test_final_written_final_in_code_is_final(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("x = [1, 2]\nprint(x)"), repl("Final(x)")])
    assert rlm.completion("ctx", "Which numbers?").answer == "[1, 2]"


def test_a_number_from_code_that_never_tests_a_condition_of_the_question_goes_back_once(rlm_for: Any) -> None:
    # The 1.5B model, asked for the orders "in region central placed by SUMMIT GOODS", summed the region's.
    orders = [{"customer": ["Summit Goods", "Acme"][i % 2], "region": ["Central", "East"][i % 3 == 0], "amount": 10 + i}
              for i in range(12)]
    question = "How much did the orders in region central placed by SUMMIT GOODS bring in?"
    region_only = repl("# orders of Summit Goods in region Central\nprint(sum(r['amount'] for r in context if r['region'] == 'Central'))")
    both = repl("print(sum(r['amount'] for r in context if r['region'] == 'Central' and r['customer'] == 'Summit Goods'))")
    rlm, srv = rlm_for([region_only, "FINAL(128)", both, "FINAL(64)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    note = srv.root_requests()[2]["prompt"]
    assert "Your answer 128 comes from code whose filter is not the question's: it never tests customer == 'Summit Goods'" in note
    assert "kept = [r for r in context if r['customer'] == 'Summit Goods' and r['region'] == 'Central']" in note
    # the note shows the model's own cell run with the question's filter, and offers what it printed
    assert ("The runner ran your cell with the question's filter (r['customer'] == 'Summit Goods' and r['region'] == 'Central'). "
            "It printed:\n64\nIf 64 is the answer, reply with exactly: FINAL(64)") in note
    assert result.answer == "64" and len(srv.root_requests()) == 4
    # (dev-tables-sum-csv: told what to test, the 1.5B model used the note's `kept` without defining it, then
    # answered 0); the offered value, given back with no cell, is the answer
    rlm, srv = rlm_for([region_only, "FINAL(128)", "FINAL(64)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    assert result.answer == "64" and result.confirmed and len(srv.root_requests()) == 3
    # the run is not one of the run's cells: nothing it binds stays in the REPL
    rlm, srv = rlm_for([repl("t = sum(r['amount'] for r in context if r['region'] == 'Central')\nprint(t)"), "FINAL(128)", repl("print(t)"),
                        "FINAL(64)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, question).answer == "64" and srv.root_requests()[3]["prompt"].count("128") >= 1
    # code that tests both (in any capitals, in two cells) is believed at once; so is a second answer after the note
    split = [repl("c = [r for r in context if r['customer'].lower() == 'summit goods']\nprint(len(c))"),
             repl("print(sum(r['amount'] for r in c if r['region'] == 'Central'))"), "FINAL(64)"]
    rlm, srv = rlm_for(split, sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, question).answer == "64" and len(srv.root_requests()) == 3
    rlm, srv = rlm_for([region_only, "FINAL(128)", "FINAL(128)", "FINAL(128)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, question).answer == "128" and len(srv.root_requests()) == 4  # (two notes at most)
    # an empty answer given in a cell of its own after a filter with a test of its own found nothing goes back
    north = repl("print([r for r in context if r['customer'] == 'Summit Goods' and r['region'] == 'North'])")
    rlm, srv = rlm_for([north, repl("# Final answer\nFINAL([])"), both, "FINAL(64)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, question).answer == "64"
    assert "the question does not name region == 'North'" in srv.root_requests()[1]["prompt"]
    assert "Your answer [] comes from code whose filter cannot match" in srv.root_requests()[2]["prompt"]
    # the answer printed before the filter was fixed goes back, though a later cell tests every condition
    rlm, srv = rlm_for([region_only, both, "FINAL(128)", "FINAL(64)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, question).answer == "64"
    assert "Your answer 128 comes from code whose filter is not the question's" in srv.root_requests()[3]["prompt"]
    # a test of its own that the question never states goes back too
    rlm, srv = rlm_for([both, "FINAL(64)", repl("print(sum(r['amount'] for r in context if r['customer'] == 'Summit Goods'))"), "FINAL(90)"],
                       sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, "How much did the orders placed by SUMMIT GOODS bring in?").answer == "90"
    assert ("Your answer 64 comes from code whose filter is not the question's: it also tests region == 'Central', which the "
            "question does not ask") in srv.root_requests()[2]["prompt"]
    # a question the runner's field count reads ("warnings" is level 'warn') gets that count, not this note
    logs = [{"level": ["warn", "info", "error"][i % 3], "service": ["inventory", "payments"][i % 2], "message": "m"} for i in range(30)]
    rlm, srv = rlm_for([repl("print(sum(1 for r in context if r['service'] == 'inventory'))"), "FINAL(15)", "FINAL(5)"],
                       sub=lambda p: "number", answer_check=True)
    assert rlm.completion(logs, "How many warnings did INVENTORY log?").answer == "5"
    assert not any("never tests" in r["prompt"] for r in srv.root_requests())
    # at a forced end, the number its own cell printed from a filter on every condition is the answer
    wander = repl("print(search('central')[:2])")
    rlm, srv = rlm_for([region_only, both, wander, wander, wander, "FINAL(7)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    assert result.stopped_by == "stuck_loop" and result.answer == "64" and result.confirmed is False


def test_a_number_over_a_field_the_question_does_not_name_goes_back_with_the_named_fields_value(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-max-json): "What is the maximum amount of one order for garden products?"
    # answered with max(order['quantity'] ...), 9.
    orders = [{"order_id": 100 + i, "category": ["Garden", "Toys"][i % 2], "quantity": 1 + i % 9, "amount": 1000.5 - 7 * i}
              for i in range(30)]
    best = max(o["amount"] for o in orders if o["category"] == "Garden")
    cell = repl("garden = [r for r in context if r['category'] == 'Garden']\nprint(max(o['quantity'] for o in garden))")
    rlm, srv = rlm_for([cell, "FINAL(9)", f"FINAL({best})"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, "What is the maximum amount of one order for garden products?")
    note = srv.root_requests()[2]["prompt"]
    assert "Your answer 9 comes from code whose filter is not the question's: it takes r['quantity'] where the question asks about the amount" in note
    assert f"The runner ran your cell with r['amount'] in place of r['quantity']. It printed:\n{best}\n" in note
    assert result.answer == str(best) and len(srv.root_requests()) == 3
    # the same when the answer is given by a cell of its own, FINAL(m), and a comment names the field asked about
    cell = repl("# the maximum amount of one garden order\ng = [r for r in context if r['category'] == 'Garden']\nm = max(o['quantity'] for o in g)\nprint(m)")
    rlm, srv = rlm_for([cell, repl("FINAL(m)"), f"FINAL({best})"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, "What is the maximum amount of one order for garden products?").answer == str(best)
    assert "it takes r['quantity'] where the question asks about the amount" in srv.root_requests()[2]["prompt"]
    # the field the question names, or a question naming none, is believed at once
    right = repl("garden = [r for r in context if r['category'] == 'Garden']\nprint(max(o['amount'] for o in garden))")
    rlm, srv = rlm_for([right, f"FINAL({best})"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, "What is the maximum amount of one order for garden products?").answer == str(best)
    rlm, srv = rlm_for([cell, "FINAL(9)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(orders, "How many units did the largest garden order have?").answer == "9" and len(srv.root_requests()) == 2


def test_a_count_given_for_an_average_gets_the_runners_figures_over_the_questions_rows(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-avg-rows): "On average, how much was an order in the books category shipped
    # to the east region?" -> it printed the two orders and answered 2, three times, through two notes.
    orders = [{"order_id": i, "category": ["Books", "Toys"][i % 2], "region": ["East", "West", "North"][i % 3], "quantity": 1 + i % 4,
               "amount": 100.0 + 10 * i} for i in range(24)]
    kept = [o for o in orders if o["category"] == "Books" and o["region"] == "East"]
    mean = round(sum(o["amount"] for o in kept) / len(kept), 4)
    show = repl("for item in context:\n    if item['category'] == 'Books' and item['region'] == 'East':\n        print(item)")
    question = "On average, how much was an order in the books category shipped to the east region?"
    rlm, srv = rlm_for([show, "FINAL(4)", f"FINAL({mean})"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    note = srv.root_requests()[2]["prompt"]
    assert "Your answer 4 is not a number your code printed" in note
    assert ("The runner computed these over the rows the question's conditions keep (r['category'] == 'Books' and "
            f"r['region'] == 'East'):\n{len(kept)} rows\n") in note
    assert f"amount: sum {round(sum(o['amount'] for o in kept), 4)}, mean {mean}, largest {max(o['amount'] for o in kept)}" in note
    assert "order_id:" in note and "category:" not in note  # number fields only, not the conditions' fields
    assert float(result.answer) == mean and result.confirmed and len(srv.root_requests()) == 3
    # "how much was an order" names no field but asks about money: the table's one money field, amount
    assert f"For this question that is: FINAL({mean})" in note
    # words that name no field and no money leave the figure to the model
    units = "On average, how many units did an order in the books category shipped to the east region have?"
    rlm, srv = rlm_for([show, "FINAL(4)", "FINAL(2.5)"], sub=lambda p: "number", answer_check=True)
    rlm.completion(orders, units)
    assert "The runner computed these" in srv.root_requests()[2]["prompt"] and "For this question that is" not in srv.root_requests()[2]["prompt"]
    # shown once per run; the number of rows is no answer to an average (dev-tables-avg-rows s2105 answered 2 again)
    # (now with the offer: the number of rows kept through the notes is replaced by the figure, unconfirmed)
    rlm, srv = rlm_for([show, "FINAL(3)", "FINAL(3)", "FINAL(3)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    assert sum("The runner computed these" in r["prompt"] for r in srv.root_requests()) == 1
    assert float(result.answer) == mean and result.confirmed is False
    # a question that names the field and the figure gets it offered; kept off, the number no output showed as a
    # result is replaced by it (dev-tables-max-json s2309: 1478.45, one amount of a printed list, through both notes)
    named = "What is the average order amount in the books category shipped to the east region?"
    rlm, srv = rlm_for([show, "FINAL(1046.25)", "FINAL(1046.25)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, named)
    assert f"For this question that is: FINAL({mean})" in srv.root_requests()[2]["prompt"]
    assert float(result.answer) == mean and result.confirmed is False and len(srv.root_requests()) == 3
    # at a forced end (a loop on search()), the figure is the answer
    loop = repl("print(search('books'))")
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(7)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, "What is the largest amount of an order in the books category shipped to the east region?")
    assert result.stopped_by == "stuck_loop" and float(result.answer) == max(o["amount"] for o in kept) and result.confirmed is False


def test_a_forced_end_on_a_tested_zero_takes_the_runners_figure_over_the_questions_rows(rlm_for: Any) -> None:
    # Seen on the 1.5B model (test-tables-sum-csv): it tested 'May' in row['date'].split('-')[1], which no ISO day
    # meets, printed 0, looped on search(), and the forced end took that 0 over the month's sum.
    orders = [{"date": f"2024-{4 + i % 3:02d}-{1 + i:02d}", "customer": ["Silver Foods", "Acme"][i % 2], "amount": 10.25 + i} for i in range(24)]
    may = round(sum(o["amount"] for o in orders if o["date"].startswith("2024-05")), 4)
    zero = repl("m = [r for r in context if 'May' in r['date'].split('-')[1]]\nprint(sum(r['amount'] for r in m))")
    loop = repl("print(search('May')[:3])")
    question = "What was the combined revenue from orders in May 2024? Give only the number."
    rlm, srv = rlm_for([zero, loop, loop, loop, "FINAL(0)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    assert result.stopped_by == "stuck_loop" and float(result.answer) == may and result.confirmed is False
    # a tested number that is not empty stays the answer
    some = repl("m = [r for r in context if r['date'].startswith('2024-05') and r['customer'] == 'Acme']\nprint(sum(r['amount'] for r in m))")
    acme = round(sum(o["amount"] for o in orders if o["date"].startswith("2024-05") and o["customer"] == "Acme"), 4)
    rlm, srv = rlm_for([some, loop, loop, loop, "FINAL(0)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, question)
    assert result.stopped_by == "stuck_loop" and float(result.answer) == acme


def test_a_loop_on_a_count_the_fields_answer_ends_with_the_runners_field_count(rlm_for: Any) -> None:
    # Seen on the 1.5B model (test-logs-level_service-records): it printed search('ERROR')'s records three times,
    # never wrote FINAL (so no field-count note came), and the forced reply said 2; one record was the notifier's.
    logs = [{"time": f"2024-03-01 00:{i:02d}:00", "level": ["INF", "DBG", "WRN", "ERR"][i % 4], "service": ["auth", "notifier", "catalog"][i % 3],
             "message": "m%d" % i} for i in range(40)]
    want = sum(1 for r in logs if r["level"] == "ERR" and r["service"] == "notifier")
    loop = repl("hits = search('ERROR')\nprint(hits[:10])")
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(2)"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(logs, "How many ERROR lines come from Notifier? Give only the number.")
    assert want not in (0, 2) and result.stopped_by == "stuck_loop" and result.answer == str(want) and result.confirmed is False
    # a question whose words are not all field values keeps the forced reply
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(2)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion(logs, "How many ERROR lines from Notifier mention a timeout?").answer == "2"


def test_a_day_field_compared_equal_to_the_month_is_no_test_of_the_month(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-sum-csv s2014): row['date'] == '2024-09' kept nothing, and it answered 0.
    orders = [{"date": f"2024-{8 + i % 3:02d}-{1 + i:02d}", "customer": ["Silver Foods", "Acme"][i % 2], "amount": 10.25 + i} for i in range(24)]
    right = sum(o["amount"] for o in orders if o["date"].startswith("2024-09") and o["customer"] == "Silver Foods")
    cell = repl("k = [r for r in context if r['date'] == '2024-09' and r['customer'] == 'Silver Foods']\nprint(sum(r['amount'] for r in k))")
    rlm, srv = rlm_for([cell, "FINAL(0)", f"FINAL({right})"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, "What was the combined revenue from orders from SILVER FOODS during 2024-09?")
    note = srv.root_requests()[2]["prompt"]
    assert "it never tests date in '2024-09'" in note and f"FINAL({right})" in note
    assert float(result.answer) == right
    # nor is the month's name with its year, which ISO days never hold (test-tables-sum-csv: 'May 2024' in row['date'])
    named = repl("k = [r for r in context if 'September 2024' in r['date'] and r['customer'] == 'Silver Foods']\nprint(sum(r['amount'] for r in k))")
    rlm, srv = rlm_for([named, "FINAL(0)", f"FINAL({right})"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, "What was the combined revenue from orders from SILVER FOODS in September 2024?")
    out, note = srv.root_requests()[1]["prompt"], srv.root_requests()[2]["prompt"]
    assert ("note: 'September 2024' does not occur in `context` as written: the data writes dates as 2024-08-01: test the month "
            "as it does, e.g. row['date'].startswith('2024-09').") in out
    assert "it never tests date in '2024-09'" in note and float(result.answer) == right
    # the month's name alone takes the year the question gives it (test-tables-sum-csv: 'May' in row['date'] next)
    alone = repl("k = [r for r in context if 'Sep' in r['date'] and r['customer'] == 'Silver Foods']\nprint(sum(r['amount'] for r in k))")
    rlm, srv = rlm_for([alone, "FINAL(0)", f"FINAL({right})"], sub=lambda p: "number", answer_check=True)
    rlm.completion(orders, "What was the combined revenue from orders from SILVER FOODS in September 2024?")
    assert ("note: 'Sep' does not occur in `context` as written: the data writes dates as 2024-08-01: test the month "
            "as it does, e.g. row['date'].startswith('2024-09').") in srv.root_requests()[1]["prompt"]
    # (a question that gives the month no year, or another month, leaves a name alone to the plain note)
    rlm, srv = rlm_for([alone, "FINAL(0)", "FINAL(0)"], sub=lambda p: "number", answer_check=True)
    rlm.completion(orders, "What was the combined revenue from orders from SILVER FOODS in May 2024?")
    assert "note: 'Sep' does not occur in `context` as written. search('Sep')" in srv.root_requests()[1]["prompt"]


def test_a_test_on_a_word_inside_a_named_value_is_the_models_own(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-sum-csv): "orders placed by NORTHWIND RETAIL" filtered on region == 'North'
    # too, and its sum was a fifth of the right one.
    orders = [{"customer": ["Northwind Retail", "Acme"][i % 2], "region": ["North", "South", "East"][i % 3], "amount": 10 + i}
              for i in range(30)]
    right = sum(o["amount"] for o in orders if o["customer"] == "Northwind Retail")
    both = repl("n = [r for r in context if r['region'] == 'North' and r['customer'] == 'Northwind Retail']\nprint(sum(r['amount'] for r in n))")
    wrong = sum(o["amount"] for o in orders if o["customer"] == "Northwind Retail" and o["region"] == "North")
    rlm, srv = rlm_for([both, f"FINAL({wrong})", f"FINAL({right})"], sub=lambda p: "number", answer_check=True)
    result = rlm.completion(orders, "What is the sum of the amount over orders placed by NORTHWIND RETAIL?")
    note = srv.root_requests()[2]["prompt"]
    assert "it also tests region == 'North', which the question does not ask" in note
    assert f"If {right} is the answer, reply with exactly: FINAL({right})" in note
    assert result.answer == str(right)


def test_forced_final_reads_a_final_written_in_code(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("x = 5\nprint(x)"), repl("print(6)"), repl("FINAL(x)")], max_iterations=2)
    result = rlm.completion("ctx", "q")
    assert result.stopped_by == "max_iterations" and result.answer == "5"


def test_an_answer_the_output_never_showed_goes_back_once(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print([l for l in context.splitlines() if 'vault' in l])"), "FINAL(12345)", "FINAL(saffron)"], sub=lambda p: "word", answer_check=True)
    result = rlm.completion("a\nthe vault password is saffron\nb", "What is the password?")
    assert result.answer == "saffron"
    # (the lines that name the question's words are shown; without such lines, the note says the output never showed it)
    assert "is not in the output lines that name what the question asks about" in srv.root_requests()[2]["prompt"]
    assert "the vault password is saffron" in srv.root_requests()[2]["prompt"]
    rlm, srv = rlm_for([repl("print(len(context))"), "FINAL(12345)", "FINAL(6)"], sub=lambda p: "number", answer_check=True)
    assert rlm.completion("a\n12\nb", "What is the size?").answer == "6"
    assert "appears nowhere in the REPL output" in srv.root_requests()[2]["prompt"]


def test_final_of_a_shown_word_inside_a_code_block_is_the_word(rlm_for: Any) -> None:
    # Seen on the 1.5B model: ```repl FINAL(Kara)``` after the output showed Kara; run as code it is a NameError.
    rlm, _ = rlm_for([repl("print(context[0])"), repl("FINAL(Kara)")])
    result = rlm.completion(["Kara 85", "Wes 27"], "Who is listed first?")
    assert result.answer == "Kara" and result.cells == 1


def test_search_is_offered_for_every_shape_and_lines_get_a_counting_example(rlm_for: Any) -> None:
    # Issue 14: texts of 20+ lines got only a line filter, copied as "ERROR" in line.lower().
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"] * 3)
    rlm.completion("a long text on one line", "q")
    rlm.completion("\n".join(str(n) for n in range(40)), "q")
    rlm.completion([{"age": 3}], "q")
    text, lines, items = (srv.root_requests()[i]["conversation"] for i in (0, 2, 4))
    for conv in (text, lines, items):
        assert "`search(text)`" in conv and 'hits = search("error")' in conv
    assert "lines = [line for line in context.splitlines()" in lines
    assert "context.splitlines()" not in text and "context.splitlines()" not in items
    assert "Each item is a dict with the keys age." in items


def test_a_prose_answer_with_a_value_from_the_output_is_asked_to_be_wrapped_in_final(rlm_for: Any) -> None:
    # Seen on the 1.5B model: it printed 540000, then wrote "The total ... is 540000." with no FINAL.
    rlm, srv = rlm_for([repl("print(sum(context))"), "The total salary is 540000.", "FINAL(540000)"])
    assert rlm.completion([300000, 240000], "Total?").answer == "540000"
    assert "If 540000 is the answer, reply with exactly: FINAL(540000)" in srv.root_requests()[2]["prompt"]
    rlm, srv = rlm_for([repl("print(sum(context))"), "The total is large.", "FINAL(540000)"])
    assert rlm.completion([300000, 240000], "Total?").answer == "540000"
    assert "no code to run" in srv.root_requests()[2]["prompt"] and "If " not in srv.root_requests()[2]["prompt"]


def test_a_final_before_any_cell_is_never_accepted(rlm_for: Any) -> None:
    # Issue 14: the guard refused only the first unseen FINAL; ["FINAL(42)"] returned 42 with 0 cells.
    rlm, srv = rlm_for(["FINAL(42)"] * 4, max_iterations=3)  # three turns and the forced answer
    result = rlm.completion("ctx", "What is the number?")
    assert result.cells == 0 and result.stopped_by == "max_iterations"
    assert result.confirmed is False
    assert sum("before seeing any output" in r["prompt"] for r in srv.root_requests()) >= 2


def test_a_non_answer_is_sent_back_with_a_search_hint(rlm_for: Any) -> None:
    rlm, srv = rlm_for(
        [
            repl('print([l for l in context.splitlines() if "Kestrel" in l])'),
            "FINAL(The context does not contain the code.)",
            repl('print(search("kestrel"))'),
            "FINAL(7731)",
        ]
    )
    result = rlm.completion("a line\nthe kestrel code is 7731\nmore\n", "What is the code of Kestrel?")
    assert result.answer == "7731" and result.confirmed is True and result.stopped_by == "final"
    note = srv.root_requests()[2]["prompt"]
    assert "says the value is not there" in note and 'search("Kestrel")' in note


def test_a_lookup_answered_with_an_empty_result_is_a_non_answer(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-serial-records): its filter for "Beacon Generator" found nothing
    # (the data writes "Beacon-Generator") and it answered 0 to "what are the serial numbers of ...?".
    data = [{"id": 101, "note": "The Cedar-Generator carries serial number SN-1."}, {"id": 102, "note": "The Beacon-Generator carries serial number SN-7."}]
    rlm, srv = rlm_for([repl("print([i['id'] for i in context if 'Beacon Generator' in i['note']])"), "FINAL(0)", "FINAL(SN-7)"])
    result = rlm.completion(data, "What are the serial numbers of the Beacon Generator?")
    note = srv.root_requests()[2]["prompt"]
    assert "Your answer '0' says the value is not there" in note and "The Beacon-Generator carries serial number SN-7." in note
    assert result.answer == "SN-7" and result.confirmed is True
    # shown the runner's hits, it answered with their number (4): not in the lines that name the question's words
    rlm, srv = rlm_for([repl("print([i['id'] for i in context if 'Beacon Generator' in i['note']])"), "FINAL(0)", "FINAL(2)", "FINAL(SN-7)"],
                       sub=lambda p: "text", answer_check=True)
    assert rlm.completion(data, "What are the serial numbers of the Beacon Generator?").answer == "SN-7"
    assert "Your answer '2' is not in the output lines that name what the question asks about" in srv.root_requests()[3]["prompt"]
    # a count of 0 is an answer
    rlm, _ = rlm_for([repl("print(0)"), "FINAL(0)"])
    assert rlm.completion("a b", "How many error lines are there?").answer == "0"


def test_a_non_answer_kept_after_two_notes_ends_unconfirmed(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("print(1)"), "FINAL(not found)", "FINAL(not found)", "FINAL(Not found in the data.)"])
    result = rlm.completion("ctx", "What is the code of Kestrel?")
    assert result.answer == "Not found in the data." and result.confirmed is False and result.stopped_by == "final"
    # a yes/no question may rightly be answered "no ... found": no note, confirmed
    rlm, _ = rlm_for([repl("print(0)"), "FINAL(No, none found)"])
    result = rlm.completion("ctx", "Is there any error line?")
    assert result.iterations == 2 and result.confirmed is True


def test_a_count_in_a_sentence_becomes_the_number(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("print(len(context.split()))"), "FINAL(There are 3 words in the text.)"])
    result = rlm.completion("a b c", "How many words are there?")
    assert result.answer == "3" and result.confirmed is True


def test_a_forced_answer_is_unconfirmed_and_a_non_answer_is_read_from_the_outputs(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(search('kestrel'))"), repl("x = 1"), "I could not find it."],
                       sub=lambda p: "7731" if "Outputs of code" in p else "number", max_iterations=2)
    result = rlm.completion("a line\nthe kestrel code is 7731\n", "What is the code of Kestrel?")
    assert result.stopped_by == "max_iterations" and result.confirmed is False
    assert result.answer == "7731"  # the forced reply was a non-answer; the sub-model read the outputs
    assert any("the kestrel code is 7731" in r["prompt"] for r in srv.sub_requests())


def test_when_stuck_the_runner_shows_what_a_search_for_the_key_words_finds(rlm_for: Any) -> None:
    loop = repl('print([l for l in context.splitlines() if "Beacon Generator" in l])')
    rlm, srv = rlm_for([loop, loop, "FINAL(SN-7)", "FINAL(SN-7)"])
    context = "x\n" * 50 + "the generator beacon has serial SN-7\n" + "y\n" * 50
    result = rlm.completion(context, "What is the serial number of the Beacon Generator?")
    note = srv.root_requests()[2]["prompt"]
    assert "You ran the same code" in note and "The runner searched the context" in note
    assert "the generator beacon has serial SN-7" in note  # the rarest word's hits
    assert result.answer == "SN-7" and result.cells == 1  # the runner's search is not a cell of the run


def test_a_search_for_a_field_value_returns_the_lines_with_that_field_value(rlm_for: Any) -> None:
    lines = [f"2024-03-01T00:00:{i:02d}Z {'WARN' if i % 4 == 0 else 'INFO'} auth: {'no warnings' if i % 4 else 'disk full'}" for i in range(60)]
    rlm, srv = rlm_for([repl('print(len(search("warning")))'), "FINAL(15)"])
    result = rlm.completion("\n".join(lines), "How many warning entries were logged?")
    out = srv.root_requests()[1]["prompt"]
    assert "search('warning'): the 15 lines where word 2 of the line is 'WARN'" in out and "\n15\n" in out
    assert "fields=False" in out
    assert result.answer == "15"
    assert "word 2 (INFO, WARN)" in srv.root_requests()[0]["prompt"]  # the first message names the field's values


def test_a_search_of_two_field_values_returns_the_lines_with_both(rlm_for: Any) -> None:
    lines = [f"[2024-03-01 00:00:{i:02d}] [{'Err' if i % 3 == 0 else 'Info'}] {'CatalogService' if i % 2 else 'GatewayService'} - an error was logged"
             for i in range(60)]
    rlm, srv = rlm_for([repl('print(len(search("errors by CATALOG")))'), repl('print(len(search("errors by CATALOG", fields=False)))'), "FINAL(10)"])
    result = rlm.completion(lines, "Count the errors logged by CATALOG.")
    out = srv.root_requests()[1]["prompt"]
    assert "the 10 lines where word 3 of the line is '[Err]' and word 4 of the line is 'CatalogService'" in out and "\n10\n" in out
    assert "\n0\n" in srv.root_requests()[2]["prompt"]  # the text itself never says "errors by catalog"
    assert result.answer == "10"


def test_the_first_message_says_a_parsed_log_is_in_rows_with_its_keys_and_their_values(rlm_for: Any) -> None:
    lines = [f'time=2024-03-01T00:00:{i % 60:02d}Z client=10.1.{i}.2 method={"GET" if i % 3 else "PUT"} path=/api/cart/{i} '
             f'status={500 if i % 4 == 0 else 200} bytes={i * 500}' for i in range(60)]
    rlm, srv = rlm_for([repl("print(sum(1 for r in rows if r['status'] >= 500 and r['method'] == 'PUT'))"), "FINAL(5)"])
    result = rlm.completion(lines, "How many PUT requests failed with a 5xx status?")
    first = srv.root_requests()[0]["prompt"]
    assert ("It is a log whose lines have fields: the variable `rows` holds its 60 lines parsed, one dict per line with the keys "
            "time, client, method, path, status, bytes") in first
    assert "method (GET, PUT)" in first and "word 3" not in first  # the keys' values, not the words'
    assert "\n5\n" in srv.root_requests()[1]["prompt"] and result.answer == "5"


def test_a_zero_from_a_number_field_compared_with_text_goes_back(rlm_for: Any) -> None:
    # Seen on the 1.5B model over a parsed access log: row['status'] == '503' counted 0 and it answered 0.
    lines = [f'10.0.{i}.1 - - [01/Mar/2024:00:00:{i % 60:02d} +0000] "GET /x HTTP/1.1" {503 if i % 5 == 0 else 200} {i}' for i in range(50)]
    rlm, srv = rlm_for([repl("print(len([r for r in rows if r['status'] == '503']))"), "FINAL(0)",
                        repl("print(len([r for r in rows if r['status'] == 503]))"), "FINAL(10)"], answer_check=True, sub=lambda p: "number")
    result = rlm.completion("\n".join(lines), "How many requests returned status 503?")
    assert "Your answer 0 comes from code whose filter cannot match" in srv.root_requests()[2]["prompt"]
    assert result.answer == "10" and result.confirmed is True


def test_a_count_that_forgets_a_field_the_question_names_goes_back_with_the_runners_count(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-logs-level_service-list): search("error") found 418 errors of every
    # service and it answered 418 to "Count the errors logged by CATALOG"; 58 were Catalog's.
    lines = [f"[2024-03-01 00:00:{i:02d}] [{'Err' if i % 3 == 0 else 'Info'}] {'CatalogService' if i % 2 else 'GatewayService'} - an error was logged"
             for i in range(60)]
    sub = lambda p: "number"  # noqa: E731  (the form check's kind)
    rlm, srv = rlm_for([repl('print(len(search("error")))'), "FINAL(20)", "FINAL(10)"], sub=sub, answer_check=True)
    result = rlm.completion(lines, "Count the errors logged by CATALOG. Reply with just the number.")
    note = srv.root_requests()[2]["prompt"]
    assert "search('errors CATALOG') finds 10 lines where word 3 of the line is '[Err]' and word 4 of the line is 'CatalogService'" in note
    assert "Your answer 20 is a different count" in note and "FINAL(10)" in note
    assert result.answer == "10" and result.confirmed is True and result.cells == 1  # the runner's count is not a cell
    # an answer that agrees goes through with no note; a model that keeps its count after the note is believed
    rlm, srv = rlm_for([repl('print(len(search("errors CATALOG")))'), "FINAL(10)"], sub=sub, answer_check=True)
    assert rlm.completion(lines, "Count the errors logged by CATALOG.").iterations == 2
    rlm, srv = rlm_for([repl("print(7)"), "FINAL(7)", "FINAL(7)"], sub=sub, answer_check=True)
    result = rlm.completion(lines, "How many errors did CATALOG log?")
    assert result.answer == "7" and sum("names values of the data's fields" in r["prompt"] for r in srv.root_requests()) == 1
    # a question with a condition the fields do not hold ("before noon") gets no field count
    rlm, srv = rlm_for([repl("print(7)"), "FINAL(7)"], sub=sub, answer_check=True)
    assert rlm.completion(lines, "How many errors did CATALOG log before noon?").answer == "7"
    assert not any("names values of the data's fields" in r["prompt"] for r in srv.root_requests())


def test_an_answer_from_code_that_never_looked_for_the_questions_words_goes_back_with_the_runners_search(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-gate-docs): it counted the paragraphs starting with "The" and
    # answered 22 to "what is the boarding gate of the elm clipper?".
    docs = ["The mill rested. " * 20, "The Elm Clipper boards at gate F26 tonight. " + "The bell rang. " * 10, "The tram left. " * 20]
    text = lambda p: "text"  # noqa: E731  (the form check's kind)
    wander = [repl("print(sum(1 for d in context if d.startswith('The')))"), "FINAL(3)", "FINAL(F26)"]
    rlm, srv = rlm_for(wander, sub=text, answer_check=True)
    result = rlm.completion(docs, "From the text: what is the boarding gate of the elm clipper?")
    note = srv.root_requests()[2]["prompt"]
    assert "comes from code that never looked for what the question names ('boarding', 'clipper', 'gate')" in note
    assert "The Elm Clipper boards at gate F26 tonight." in note  # the runner's search, in the note
    assert result.answer == "F26" and result.cells == 1
    # code that looked for one of the words is believed; so is a count question; and without answer_check
    # (a model not known for this habit) the check is off
    rlm, _ = rlm_for([repl("print(search('clipper')[:1])"), "FINAL(F26)"], sub=text, answer_check=True)
    assert rlm.completion(docs, "What is the boarding gate of the elm clipper?").iterations == 2
    rlm, _ = rlm_for([repl("print(len(context))"), "FINAL(3)"], sub=text, answer_check=True)
    assert rlm.completion(docs, "How many documents are there?").iterations == 2
    rlm, _ = rlm_for(wander)
    assert rlm.completion(docs, "From the text: what is the boarding gate of the elm clipper?").answer == "3"


def test_a_lookup_stuck_in_a_loop_is_answered_by_the_reader_from_the_runners_search(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-wifi-lines): it looped on a broken cell while the runner's
    # note showed "password at the Dune-Lodge is saffron33"; the forced end answered None.
    loop = repl("print([l for l in context.splitlines() if 'WiFi key' in l])")
    text = "a quiet day\n" * 30 + "The password at the Dune-Lodge is saffron33.\n" + "rain\n" * 30
    rlm, srv = rlm_for([loop, loop, loop, loop, "I am not sure."], sub=lambda p: "saffron33" if "Dune-Lodge is saffron33" in p else "text",
                       max_iterations=6)
    result = rlm.completion(text, "According to the context, what's the WiFi key at the Dune-lodge?")
    assert result.stopped_by == "stuck_loop" and result.confirmed is False
    assert result.answer == "saffron33"
    # a lookup's reader gets the outputs first, then the question (asked first, the 1.5B reader said "unknown")
    reader = srv.sub_requests()[-1]["prompt"]
    assert reader.startswith("Outputs of code run over the data:") and reader.index("Dune-Lodge is saffron33") < reader.index("Question:")
    reader = [r for r in srv.sub_requests() if "Outputs of code" in r["prompt"]]
    assert reader and "The password at the Dune-Lodge is saffron33." in reader[0]["prompt"]


def test_judge_asks_the_sub_model_about_each_item_and_keeps_those_that_count(rlm_for: Any) -> None:
    def sub(prompt: str) -> str:
        if prompt.startswith("Question about a collection of items:"):  # judge()'s one-item rewrite, once per question
            return "Is this review from a satisfied customer?" if "satisfied" in prompt else "Are there any happy items?"
        item = prompt.split("Item:\n", 1)[1].split("\n\n", 1)[0]
        return "Yes." if "love" in item else "no"

    code = ("kept = judge(context, 'How many reviewers were satisfied? Reply with just the number.')\nprint(len(kept), kept)\n"
            "print(judge({'a1': 'I love it', 'b2': 'broken'}, 'Which reviews are happy?'))\n"
            "print(judge('I love it\\n\\nmeh\\n', 'Which lines are happy?'))\n"
            "print(len(judge(context, 'How many reviewers were satisfied? Reply with just the number.')))")
    rlm, srv = rlm_for([repl(code), "FINAL(2)"], sub=sub)
    result = rlm.completion(["I love this kettle", "It broke", "love the toaster"], "How many reviewers were satisfied?")
    out = srv.root_requests()[1]["prompt"]
    assert "2 ['I love this kettle', 'love the toaster']" in out
    assert "{'a1': 'I love it'}" in out and "['I love it']" in out
    # one sub-call per item (blank lines skipped) and one rewrite per question, asked once
    assert result.answer == "2" and result.subcalls == (1 + 3) + (1 + 2) + (1 + 2) + 3
    prompts = [r["prompt"] for r in srv.sub_requests()]
    assert not any("Reply with just" in p for p in prompts)  # the format sentence is not the sub-model's to answer
    # a good rewrite is asked about each item; a question about the whole collection is not taken
    assert "Item:\nI love this kettle\n\nIs this review from a satisfied customer? Answer yes or no." in prompts
    assert any(p.startswith("Item:\na1: I love it\n") and "Question about a collection of such items: Which reviews are happy?" in p for p in prompts)
    rlm, srv = rlm_for([repl("judge(list(range(2001)), 'q?')"), "FINAL(0)"], sub=sub)
    rlm.completion("x", "q")
    assert "2001 items is too many for one call" in srv.root_requests()[1]["prompt"] and not srv.sub_requests()
    # with no question, judge() asks the run's own (the worker is given it with the context)
    rlm, srv = rlm_for([repl("print(len(judge(context)))"), "FINAL(1)"], sub=sub)
    rlm.completion(["I love it", "It broke"], "How many reviewers were satisfied?")
    assert "1" in srv.root_requests()[1]["prompt"].split("```")[1]
    assert any("Question about a collection of items: How many reviewers were satisfied?" in r["prompt"] for r in srv.sub_requests())


def test_classify_asks_the_sub_model_for_one_label_per_item_and_reads_the_label_it_names(rlm_for: Any) -> None:
    def sub(prompt: str) -> str:
        item = prompt.split("Item: ", 1)[1].split("\n\n", 1)[0]
        # replies as a small model gives them: the label in a sentence, a capitalised label, an unrelated word
        return {"love": "The label is: Positive.", "broke": "negative", "box": "I think NEUTRAL"}.get(item.split()[-1], "hmm")

    code = ("labels = classify(context, ['positive', 'negative', 'neutral'])\nprint(labels)\nprint(Counter(labels).most_common(1))\n"
            "print(classify({'a1': 'broke', 'b2': 'in a box'}, {'positive': 'pleased', 'negative': 'unhappy', 'neutral': 'a fact'}, "
            "'Its label is its sentiment.'))")
    rlm, srv = rlm_for([repl(code), "FINAL(positive)"], sub=sub)
    result = rlm.completion(["I love", "It broke", "so love", "what"], "Which sentiment is the most common?")
    out = srv.root_requests()[1]["prompt"]
    assert "labels of 4 items: positive 2, negative 1, unknown 1; ['positive', 'negative', 'positive', 'unknown']" in out
    assert "[('positive', 2)]" in out
    assert "{'a1': 'negative', 'b2': 'neutral'}" in out
    assert result.answer == "positive" and result.subcalls == 4 + 2
    prompts = [r["prompt"] for r in srv.sub_requests()]
    assert prompts[0].endswith("Which label fits this item: positive, negative, neutral? Reply with the label only.")
    assert "negative (unhappy), neutral (a fact)?" in prompts[-1]
    assert prompts[-1].startswith("Its label is its sentiment.\n\nItem: ") and prompts[0].startswith("Item: ")
    # by default the labels' meaning comes from the sentences of the run's question that name two or more of them
    rlm, srv = rlm_for([repl("print(classify(context, ['positive', 'negative', 'neutral']))"), "FINAL(1)"], sub=sub)
    rlm.completion(["I love", "It broke"], "A review's label is its sentiment, one of: positive, negative, neutral (a plain fact). "
                                           "How many reviews have the label 'positive'?")
    asked = srv.sub_requests()[0]["prompt"]
    assert asked.startswith("A review's label is its sentiment, one of: positive, negative, neutral (a plain fact).\n\nItem: ")
    assert "How many" not in asked
    # with no labels, those the question lists
    rlm, srv = rlm_for([repl("print(classify(context))"), "FINAL(1)"], sub=sub)
    rlm.completion(["I love", "It broke"], "A review's label is its sentiment, one of: positive, negative or neutral (a plain fact). "
                                           "How many reviews have the label 'positive'?")
    assert "labels of 2 items: positive 1, negative 1" in srv.root_requests()[1]["prompt"]
    assert "fits this item: positive, negative, neutral?" in srv.sub_requests()[0]["prompt"]
    rlm, srv = rlm_for([repl("classify(context)"), "FINAL(0)"], sub=sub)
    rlm.completion(["I love"], "Which reviews are happy?")
    assert "the question lists no labels" in srv.root_requests()[1]["prompt"] and not srv.sub_requests()
    rlm, srv = rlm_for([repl("classify(['a', 'b'], ['only'])"), "FINAL(0)"], sub=sub)
    rlm.completion("x", "q")
    assert "give at least two label names" in srv.root_requests()[1]["prompt"] and not srv.sub_requests()


def test_a_cell_that_tests_texts_for_a_label_word_is_run_again_with_the_labels_judged(rlm_for: Any) -> None:
    """The question says each text's label is "one of: positive, negative, neutral"; the cell counts the
    lines that contain "neutral" (never written) and finds 0. The runner runs it again, each label test
    answered by classify() over the texts it tested, and shows what that printed; the cell's own
    output and names are unchanged, and the sub-calls are recorded with the cell."""
    def sub(prompt: str) -> str:
        item = prompt.split("Item: ", 1)[1].split("\n\n", 1)[0]
        return "neutral" if "box" in item else "positive" if "love" in item else "negative"

    lines = ["[2022-01-02] <111> I love it", "[2022-01-03] <222> It came in a box", "[2022-02-01] <111> It arrived in a box",
             "[2022-02-05] <111> It broke", "[2022-03-01] <333> in a box again"]
    question = ("Each line holds a date, a user id and a text. A text's label is its sentiment, one of: positive, negative, "
                "neutral (a plain fact). How many lines of user 111 have the label 'neutral'?")
    code = ("hits = [l for l in context.splitlines() if '<111>' in l]\n"
            "n = sum(1 for line in hits if 'neutral' in line.lower())\nn")  # a last expression is shown, as in a cell
    rlm, srv = rlm_for([repl(code), repl("print(n)"), "FINAL(1)"], sub=sub)
    result = rlm.completion("\n".join(lines), question)
    out = srv.root_requests()[1]["prompt"].split("```")[1]
    assert out.strip().startswith("0")  # the cell ran as written
    from rlm_graph.graph.prompts import LABEL_RUN_MARK

    assert "'neutral' is a label the model gives each text" in out and "over the 3 texts it tested (" in out
    assert LABEL_RUN_MARK in out  # the mark the host reads the runner's value by
    assert "It printed:\n1\nIf this answers the question, reply FINAL(1)." in out
    assert "does not occur" not in out and "judge(context" not in out  # the word-filter notes are not given too
    assert "0" == srv.root_requests()[2]["prompt"].split("```")[1].strip().splitlines()[0]  # n stayed the cell's own
    assert len(srv.sub_requests()) == 3 and result.answer == "1" and result.confirmed
    # judge() on such a question asks which label fits each item, and keeps those with the one asked about
    rlm, srv = rlm_for([repl("print(len(judge(context)))"), "FINAL(3)"], sub=sub)
    rlm.completion("\n".join(lines), question)
    assert srv.root_requests()[1]["prompt"].split("```")[1].strip() == "3"
    assert len(srv.sub_requests()) == 5 and all("Which label fits this item: positive, negative, neutral?" in r["prompt"] for r in srv.sub_requests())
    # a cell that is not run (it sets `context` to made-up lines) is not re-run either
    made_up = 'context = "I am neutral\\nme too"\nprint(sum("neutral" in l for l in context.splitlines()))'
    rlm, srv = rlm_for([repl(made_up), "FINAL(0)"], sub=sub)
    rlm.completion("\n".join(lines), question)
    assert "NotRun" in srv.root_requests()[1]["prompt"] and "ran this cell" not in srv.root_requests()[1]["prompt"]
    assert not srv.sub_requests()
    # a question that lists no labels, or a filter that found something, gets no re-run
    rlm, srv = rlm_for([repl("print(sum('neutral' in l for l in context.splitlines()))"), "FINAL(0)"], sub=sub)
    rlm.completion("\n".join(lines), "How many lines are neutral?")
    assert "re-ran" not in srv.root_requests()[1]["prompt"] and "ran this cell" not in srv.root_requests()[1]["prompt"]
    assert not srv.sub_requests()
    rlm, srv = rlm_for([repl("print(sum('box' in l for l in context.splitlines()))"), "FINAL(3)"], sub=sub)
    rlm.completion("\n".join(lines), question)
    assert "ran this cell" not in srv.root_requests()[1]["prompt"] and not srv.sub_requests()


def test_a_loop_on_a_question_that_lists_its_labels_is_shown_the_runners_label_counts(rlm_for: Any) -> None:
    """Stuck on word searches for a label ("most common label"), the model is shown how the sub-model
    labels every item of the context (the runner's classify() run, outside the record); a count from it is
    the runner's own, not an unseen number."""
    from rlm_graph.graph.prompts import LABELS_MARK

    def sub(prompt: str) -> str:
        return "neutral" if "box" in prompt.split("Item: ", 1)[1] else "negative"

    lines = ["I love it", "It came in a box", "It arrived in a box", "It broke", "in a box again"]
    question = "A review's label is its sentiment, one of: positive, negative, neutral. How many reviews are neutral?"
    look = repl("print(search('neutral'))")
    rlm, srv = rlm_for([look, look, "FINAL(3)"], sub=sub)
    result = rlm.completion("\n".join(lines), question)
    note = srv.root_requests()[2]["prompt"]
    assert LABELS_MARK + " of the 5 items of `context`" in note and "\n  neutral: 3\n  negative: 2\n" in note
    assert result.answer == "3" and len(srv.sub_requests()) == 5
    # the items are labelled outside the run's record: no cell of the run made them
    assert result.cells == 1 and result.confirmed
    # a model that loops on regardless ends with the runner's value (unconfirmed): the count of the
    # label the question names, or the most common label; not when the question names an id or a date
    for asked, want in ((question, "3"), (question.replace("How many reviews are neutral?", "Which label is the most common?"), "neutral"),
                        (question.replace("How many reviews", "How many reviews of user 59117"), "not-the-runner's")):
        rlm, srv = rlm_for([look, look, look, "The answer is not-the-runner's."], sub=sub)
        result = rlm.completion("\n".join(lines), asked)
        assert result.stopped_by == "stuck_loop" and not result.confirmed
        assert (result.answer or "").rstrip(".").endswith(want), (asked, result.answer)
    # a question that lists no labels gets the runner's search instead
    rlm, srv = rlm_for([look, look, "FINAL(0)"], sub=sub)
    rlm.completion("\n".join(lines), "How many reviews say neutral?")
    assert LABELS_MARK not in srv.root_requests()[2]["prompt"] and not srv.sub_requests()


def test_a_question_about_one_users_labels_gets_the_runners_counts_of_that_users_items(rlm_for: Any, tmp_path: Path) -> None:
    """After the model's first look at the data, a question that lists its labels and asks how many of one
    user's lines have one is shown how the sub-model labels that user's texts (the lines parsed into
    `rows`, kept by the question's user id); the count is the runner's own, and a run that loops on
    ends with it."""
    from rlm_graph.graph.prompts import LABELS_MARK, SCOPED_LABELS_MARK

    def sub(prompt: str) -> str:
        if "Item: " not in prompt:
            return "number"  # the form check
        return "neutral" if "box" in prompt.split("Item: ", 1)[1] else "negative"

    lines = [f"[2022-01-{i % 28 + 1:02d}] <{48213 if i % 5 == 0 else 50000 + i}> {'It came in a box' if i % 3 == 0 else 'It broke'}"
             for i in range(40)]
    question = ("A text's label is its sentiment, one of: positive, negative, neutral. "
                "How many of the lines of user 48213 have the label 'neutral'?")
    mine = [line for line in lines if "<48213>" in line]
    want = str(sum("box" in line for line in mine))
    look = repl("print(rows[:2])")
    rlm, srv = rlm_for([look, f"FINAL({want})"], sub=sub, answer_check=True, log_dir=tmp_path)
    result = rlm.completion("\n".join(lines), question)
    note = srv.root_requests()[1]["prompt"]
    # the trajectory log shows the note in the turn that saw it
    records = [json.loads(line) for f in tmp_path.glob("*.jsonl") for line in f.read_text().splitlines()]
    turn2 = [r for r in records if r["type"] == "iteration" and r["iteration"] == 2]
    assert [m["content"] for m in turn2[0]["prompt"]][-1] == note
    assert note.startswith(LABELS_MARK + f" of the {len(mine)} items of `context` {SCOPED_LABELS_MARK} (user == 48213;")
    assert f"\n  neutral: {want}\n" in note and note.endswith(f"For this question that is: FINAL({want})")
    labelled = [r for r in srv.sub_requests() if "Item: " in r["prompt"]]
    assert len(labelled) == len(mine) and all("It " in r["prompt"].split("Item: ", 1)[1] for r in labelled)
    assert result.answer == want and result.confirmed and result.cells == 1
    # a model that loops on ends with the runner's count (unconfirmed)
    rlm, srv = rlm_for([look, look, look, "The answer is not-the-runner's."], sub=sub, answer_check=True)
    result = rlm.completion("\n".join(lines), question)
    assert result.stopped_by == "stuck_loop" and not result.confirmed and result.answer == want
    assert len([r for r in srv.sub_requests() if "Item: " in r["prompt"]]) == len(mine)  # labelled once, not again at the loop
    # a most-common question: the note gives the label, and FINAL(negative) is that word (no such variable),
    # the runner's own value, not one the output never showed
    most = question.replace("How many of the lines of user 48213 have the label 'neutral'?", "Which label is the most common among the lines of user 48213?")
    rlm, srv = rlm_for([look, "FINAL(negative)"], sub=sub, answer_check=True)
    result = rlm.completion("\n".join(lines), most)
    assert srv.root_requests()[1]["prompt"].endswith("For this question that is: FINAL(negative)")
    assert result.answer == "negative" and result.confirmed and len(srv.root_requests()) == 2
    # a reply that is only the offered value, fenced or not, is that answer
    for reply in ("```\n5\n```", "5"):
        rlm, srv = rlm_for([look, reply], sub=sub, answer_check=True)
        result = rlm.completion("\n".join(lines), question.replace("'neutral'", "'negative'"))
        assert result.answer == "5" and result.confirmed and len(srv.root_requests()) == 2, reply
    # ...and the top label's count, answered to it, is taken as that label (it is the note's number for it)
    rlm, srv = rlm_for([look, "FINAL(5)"], sub=sub, answer_check=True)
    result = rlm.completion("\n".join(lines), most)
    assert result.answer == "negative" and result.confirmed and len(srv.root_requests()) == 2
    # records, a question about all of them: the runner's count is the answer, not a reason to judge the items again
    records = [{"date": f"2022-01-{i + 1:02d}", "user": 50000 + i, "text": f"The kettle came in a plain box and it was on time, order {i}." if i % 3 == 0
                else f"The kettle broke after {i + 2} days and I am not happy with it."} for i in range(12)]
    count = question.replace("How many of the lines of user 48213", "How many of the records")
    rlm, srv = rlm_for([repl("print(context[:2])"), "FINAL(4)"], sub=sub, answer_check=True)
    result = rlm.completion(records, count)
    assert srv.root_requests()[1]["prompt"].endswith("For this question that is: FINAL(4)")
    assert result.answer == "4" and result.confirmed and len(srv.root_requests()) == 2
    # a user the data does not hold: no condition the runner can apply, so no counts
    rlm, srv = rlm_for([look, "FINAL(0)"], sub=sub, answer_check=True)
    rlm.completion("\n".join(lines), question.replace("48213", "99999"))
    assert LABELS_MARK not in srv.root_requests()[1]["conversation"] and not [r for r in srv.sub_requests() if "Item: " in r["prompt"]]


def test_a_number_final_written_under_code_that_prints_another_number_goes_back(rlm_for: Any) -> None:
    """FINAL(0) written in the same cell as code that prints 4 was written before the model saw the 4:
    it goes back once with a note; a FINAL that agrees with what the cell printed is accepted as it is."""
    from rlm_graph.graph.prompts import BLIND_FINAL_NOTE

    text = "\n".join(f"line {i}" for i in range(30))
    look = repl("print(context[:20])")
    rlm, srv = rlm_for([look, repl("print(len(context.splitlines()) - 26)\nFINAL(0)"), "FINAL(4)"], answer_check=True)
    result = rlm.completion(text, "How many lines are there, minus 26?")
    assert BLIND_FINAL_NOTE.format(answer="0").split(",")[0] in srv.root_requests()[2]["prompt"]
    assert result.answer == "4" and len(srv.root_requests()) == 3
    rlm, srv = rlm_for([look, repl("print(len(context.splitlines()) - 26)\nFINAL(4)")], answer_check=True)
    result = rlm.completion(text, "How many lines are there, minus 26?")
    assert result.answer == "4" and len(srv.root_requests()) == 2


def test_a_run_that_loops_on_after_the_judge_cell_ends_with_what_that_cell_printed(rlm_for: Any) -> None:
    """After the judge note the model ran the judge() cell, which printed the ids, then repeated it until
    the loop guard stopped the run: the forced answer is what that cell printed."""
    reviews = {f"r{100 + i}": (f"The kettle broke after {i + 2} days and support never answered me." if i % 3 == 0
                               else f"The kettle number {i} works well and I would buy it again.") for i in range(12)}

    def sub(prompt: str) -> str:
        return "yes" if "broke" in prompt else "no"

    question = "Which reviews are from unhappy customers? Give their ids."
    look = repl("print(search('unhappy'))")
    cell = repl(f"kept = judge(context, {question!r})\nprint(list(kept))")
    rlm, srv = rlm_for([look, look, cell, cell, cell, "I cannot tell."], sub=sub, answer_check=True)
    result = rlm.completion(reviews, question)
    assert "Counting by words in the text cannot answer this" in srv.root_requests()[2]["prompt"]
    assert result.stopped_by == "stuck_loop" and not result.confirmed
    assert result.answer == "['r100', 'r103', 'r106', 'r109']"
    # ...and one that answers with the first of those ids gives them all
    rlm, srv = rlm_for([look, look, cell, "FINAL(r100)"], sub=sub, answer_check=True)
    result = rlm.completion(reviews, question)
    assert result.answer == "['r100', 'r103', 'r106', 'r109']" and result.stopped_by == "final"
    # ...and a count question answered with another number than the judge() cell's count gets that count
    count = "How many reviews are from unhappy customers?"
    counted = repl(f"kept = judge(context, {count!r})\nprint(len(kept))")
    rlm, srv = rlm_for([look, look, counted, "FINAL(0)"], sub=sub, answer_check=True)
    result = rlm.completion(reviews, count)
    assert result.answer == "4" and result.stopped_by == "final"


def test_the_classify_helper_is_offered_only_when_asked_and_only_for_a_context_of_short_texts() -> None:
    from rlm_graph.graph import prompts as P

    assert "classify(items, labels)" in P.system_prompt(max_output_chars=2000, allow_rlm=False, context_meta={"type": "list", "prose_items": True},
                                                        offer_classify=True)
    assert "classify(" not in P.system_prompt(max_output_chars=2000, allow_rlm=False, context_meta={"type": "list", "prose_items": True})
    assert "classify(" not in P.system_prompt(max_output_chars=2000, allow_rlm=False, context_meta={"type": "list"})


def test_the_forced_reader_of_a_lookup_reads_the_runners_hits_first_and_no_unrelated_output(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-gate-docs): 30 lines of "The readin" ahead of the runner's hits
    # made the reader say "unknown"; with the hits alone it read F26.
    loop = repl("print([d for d in context if 'boarding' in d])")
    docs = ["The mill rested. " * 20, "The Elm Clipper departs from gate F26. " + "The bell rang. " * 10]
    rlm, srv = rlm_for([repl("print([d[:10] for d in context])"), loop, loop, loop, "FINAL(1)"],
                       sub=lambda p: "F26" if "Outputs of code" in p else "word", max_iterations=8)
    result = rlm.completion(docs, "From the text: what is the boarding gate of the elm clipper?")
    assert result.stopped_by == "stuck_loop" and result.answer == "F26"
    reader = [r["prompt"] for r in srv.sub_requests() if "Outputs of code" in r["prompt"]][0]
    assert "The Elm Clipper departs from gate F26." in reader and "The mill r" not in reader


def test_a_json_text_is_described_as_json_to_parse(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-max-json): it searched a JSON text's lines for the customer and
    # answered 8 (the number of hits) for the largest order.
    import json as _json

    rows = [{"order_id": i, "customer": ["Acme", "Northwind"][i % 2], "amount": 10.5 * i} for i in range(40)]
    rlm, srv = rlm_for([repl("print(max(r['amount'] for r in rows if r['customer'] == 'Northwind'))"), "FINAL(409.5)"])
    result = rlm.completion(_json.dumps(rows, indent=1), "What was the biggest order from NORTHWIND, by amount?")
    first = srv.root_requests()[0]["prompt"]
    assert ("It is JSON text, already parsed for you: the variable `rows` holds it, a list of 40 dicts with the keys "
            "order_id, customer, amount") in first
    assert "\n409.5\n" in srv.root_requests()[1]["prompt"]
    assert "customer (Acme, Northwind)" in first
    assert result.answer == "409.5"
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"])
    rlm.completion(_json.dumps({"east": [1], "west": [2]}), "q")
    assert "`data = json.loads(context)` gives a dict of 2 keys (keys east, west)" in srv.root_requests()[0]["prompt"]
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"])
    rlm.completion("[not json, a bracketed note]\nmore", "q")
    assert "JSON" not in srv.root_requests()[0]["prompt"]


def test_a_run_stuck_after_the_field_count_note_ends_with_the_runners_count(rlm_for: Any) -> None:
    # Seen on the 1.5B model: after the note it pasted the note back as code until the loop guard stopped it.
    lines = [f"[2024-03-01 00:00:{i:02d}] [{'Err' if i % 3 == 0 else 'Info'}] {'CatalogService' if i % 2 else 'GatewayService'} - ok"
             for i in range(60)]
    paste = repl("search('errors CATALOG'): the 10 lines")
    rlm, _ = rlm_for([repl('print(len(search("error")))'), "FINAL(20)", paste, paste, paste, "FINAL(20)"],
                     sub=lambda p: "number", answer_check=True, max_iterations=8)
    result = rlm.completion(lines, "Count the errors logged by CATALOG.")
    assert result.stopped_by == "stuck_loop" and result.answer == "10" and result.confirmed is False


def test_a_table_in_columns_or_in_csv_text_is_also_given_as_rows(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-count-columns): it indexed a column as if it held rows and never counted.
    columns = {"region": ["East", "West", "East"], "amount": [1.5, 2, 3]}
    code = "print(len(rows), rows[0], sum(r['amount'] for r in rows if r['region'] == 'East'))"
    rlm, srv = rlm_for([repl(code), "FINAL(4.5)"])
    assert rlm.completion(columns, "Total amount for East?").answer == "4.5"
    assert "The variable `rows` holds the same table as a list of 3 dicts, one per row" in srv.root_requests()[0]["prompt"]
    assert "3 {'region': 'East', 'amount': 1.5} 4.5" in srv.root_requests()[1]["prompt"]
    rlm, srv = rlm_for([repl(code), "FINAL(4.5)"])
    rlm.completion("region,amount\nEast,1.5\nWest,2\nEast,3\n", "Total amount for East?")
    assert "The variable `rows` holds its rows, numbers parsed, as a list of 3 dicts" in srv.root_requests()[0]["prompt"]
    assert "3 {'region': 'East', 'amount': 1.5} 4.5" in srv.root_requests()[1]["prompt"]
    # columns of different lengths are not a table; a plain text gets no rows
    for context in ({"a": [1, 2], "b": [1]}, "just some text\nover two lines"):
        rlm, srv = rlm_for([repl("print('rows' in dir())"), "FINAL(no)"])
        rlm.completion(context, "Is there a table?")
        assert "`rows`" not in srv.root_requests()[0]["prompt"] and "\nFalse\n" in srv.root_requests()[1]["prompt"]


def test_a_count_over_short_texts_with_no_sub_call_goes_back_with_the_judge_code_to_run(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-judge-*): it counted tickets containing "bug" (0) or reviews starting with
    # "The" (10) and never asked the sub-model; the note gives the exact code to run.
    reviews = ["I really love this kettle and use it daily.", "The toaster broke after a week of use.",
               "We love the quiet fan in the bedroom.", "The blender is too loud for my small flat."]
    query = "How many reviewers were satisfied with their purchase?"

    def sub(prompt: str) -> str:
        if prompt.startswith("Item:"):
            return "yes" if "love" in prompt.split("\n\n", 1)[0] else "no"
        return "number"

    run_judge = repl(f"kept = judge(context, {query!r})\nprint(len(kept))")
    rlm, srv = rlm_for([repl("print(sum('satisfied' in r for r in context))"), "FINAL(0)", run_judge, "FINAL(2)"], sub=sub, answer_check=True)
    result = rlm.completion(reviews, query)
    note = srv.root_requests()[2]["prompt"]
    assert "Counting by words in the text cannot answer this: each of the 4 items has to be judged" in note
    assert f"kept = judge(context, {query!r})" in note
    assert result.answer == "2" and result.confirmed is True and result.subcalls >= 4
    # a model that ignores the note (answers again with no sub-call): the runner runs judge() itself
    rlm, srv = rlm_for([repl("print(sum('satisfied' in r for r in context))"), "FINAL(0)", "FINAL(0)"], sub=sub, answer_check=True)
    result = rlm.completion(reviews, query)
    assert result.answer == "2" and result.confirmed is False and result.stopped_by == "final"
    assert result.subcalls >= 4 and result.cells == 1  # the runner's judge() is not a cell of the run
    # once per run; not for a count reached with sub-calls, nor over data that is not short texts
    rlm, srv = rlm_for([repl("print(len(llm_query_batched(['x'])))"), "FINAL(1)"], sub=sub, answer_check=True)
    assert rlm.completion(reviews, query).iterations == 2
    rlm, srv = rlm_for([repl("print(len(context))"), "FINAL(3)"], sub=sub, answer_check=True)
    assert rlm.completion(["SKU-1", "SKU-2", "SKU-3"], "How many SKUs are listed?").iterations == 2


def test_a_judgement_question_looping_on_word_filters_is_sent_to_judge_and_answered_by_it_at_the_end(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-judge-reviews-list, -tickets-records): it filtered for "satisfied" / "bug",
    # words the texts never use, found 0, searched the question's other words and ended stuck with no answer.
    reviews = {"r12": "I really love this kettle and use it daily.", "r40": "The toaster broke after a week of use.",
               "r57": "We love the quiet fan in the bedroom.", "r81": "The blender is too loud for my small flat."}
    query = "Which reviews come from satisfied customers? Give their ids."

    def sub(prompt: str) -> str:
        if prompt.startswith("Item:"):
            return "yes" if "love" in prompt.split("\n\n", 1)[0] else "no"
        return "list"

    words = repl("print([k for k, v in context.items() if 'satisfied' in v])")
    # the word filter finds nothing: the worker's note says these are short texts to judge
    rlm, srv = rlm_for([words, repl("print(judge(context, 'Which reviews are from satisfied customers?'))"), "FINAL(r12, r57)"], sub=sub, answer_check=True)
    result = rlm.completion(reviews, query)
    shown = srv.root_requests()[1]["prompt"]
    assert "is a collection of short texts" in shown and f"kept = judge(context, {query!r})" in shown and result.answer == "r12, r57"
    # a name that matched nothing is a lookup's key, not a topic: no judge() note (test-needle-serial-records: told
    # to judge() 178 posts after 'Fennel-compressor' matched nothing, the 1.5B model ran out of time)
    for name in ("Fennel-compressor", "SN-48", "Elm Clipper"):
        rlm, srv = rlm_for([repl(f"print([k for k, v in context.items() if {name!r} in v])"), "FINAL(r12)"], sub=sub)
        rlm.completion(reviews, f"Which review mentions the {name}?")
        shown = srv.root_requests()[1]["prompt"]
        assert f"note: {name!r} does not occur" in shown and "short texts" not in shown
    # stuck on the filter: the loop note is the judge note with the ids cell, not a search
    rlm, srv = rlm_for([words, words, repl(f"kept = judge(context, {query!r})\nprint(list(kept))"), "FINAL(r12, r57)"], sub=sub, answer_check=True)
    result = rlm.completion(reviews, query)
    note = srv.root_requests()[2]["prompt"]
    assert "Counting by words in the text cannot answer this" in note and "reply with FINAL and the ids it prints" in note
    assert f"kept = judge(context, {query!r})\nprint(list(kept))" in note and "The runner searched" not in note
    assert result.answer == "r12, r57" and result.confirmed is True
    # ignored until the loop guard ends the run: the runner's own judge() gives the ids, unconfirmed
    rlm, srv = rlm_for([words, words, words, words, "FINAL(none)"], sub=sub, max_iterations=6, answer_check=True)
    result = rlm.completion(reviews, query)
    assert result.stopped_by == "stuck_loop" and result.confirmed is False and result.answer == "r12, r57"
    # records carry their ids in a field; a text's lines carry them as their first number
    records = [{"id": int(k[1:]), "text": v} for k, v in reviews.items()]
    rlm, srv = rlm_for([words.replace("k, v in context.items()", "k, v in enumerate(context)"), "FINAL(3)", "FINAL(3)"], sub=sub, answer_check=True)
    assert rlm.completion(records, query).answer == "12, 57"
    lines = "\n".join(f"#{k[1:]} | {v}" for k, v in reviews.items())
    rlm, srv = rlm_for([repl("print(0)"), "FINAL(7)", "FINAL(7)"], sub=sub, answer_check=True)
    assert rlm.completion(lines, query).answer == "12, 57"
    # a count at the iteration limit, with no sub-call made: judge()'s count, not the model's guess
    rlm, srv = rlm_for([repl(f"print({i})") for i in range(3)], sub=sub, max_iterations=3, answer_check=True)
    result = rlm.completion(list(reviews.values()), "How many reviewers were satisfied with their purchase?")
    assert result.stopped_by == "max_iterations" and result.answer == "2" and result.confirmed is False


def test_a_value_the_model_stated_in_prose_is_kept_for_a_run_that_ends_without_an_answer() -> None:
    # Seen on the 1.5B model: judge() printed 18, the model wrote "There are 18 headlines that are not
    # about sport.", was offered FINAL(18), searched again until the loop guard stopped it, and the run ended with None.
    from rlm_graph.graph import prompts as P
    from rlm_graph.nodes.check_final import _stated_earlier

    messages = [{"role": "assistant", "content": "There are 18 headlines that are not about sport."},
                {"role": "user", "content": P.NO_CODE_VALUE_NOTE.format(value="18")},
                {"role": "assistant", "content": "```repl\nprint(search('x'))\n```"},
                {"role": "user", "content": P.NO_CODE_NOTE}]
    assert _stated_earlier({"messages": messages}) == "18"
    assert _stated_earlier({"messages": messages[2:]}) is None


def test_a_cell_that_writes_made_up_data_into_context_is_not_run(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-room-dictdocs): it set context = {'page_000': [... 'room number 1234']},
    # searched that, and answered 1234.
    fake = repl("context = {'page_000': ['Grace Fischer has room number 1234']}\nprint(search('Grace Fischer'))")
    rlm, srv = rlm_for([fake, repl("print(search('Grace Fischer'))"), "FINAL(8222)"])
    result = rlm.completion({"page_000": ["Grace Fischer's office is room 8222."]}, "Where is the office of Grace Fischer?")
    out = srv.root_requests()[1]["prompt"]
    assert "NotRun: this cell was not run: it sets `context` to data written in the code" in out and "1234" not in out.split("NotRun")[1]
    assert result.answer == "8222"
    # a transformation of the real context runs (and is put back after the cell, as before)
    rlm, srv = rlm_for([repl("context = context.lower()\nprint(context)"), "FINAL(abc)"])
    rlm.completion("ABC", "What does it say?")
    assert "\nabc\n" in srv.root_requests()[1]["prompt"] and "NotRun" not in srv.root_requests()[1]["prompt"]


def test_a_lookup_answer_not_in_the_lines_that_name_the_question_goes_back_with_those_lines(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-gate-docs): it printed "The Elm Clipper departs from gate F26." and answered 1.
    docs = ["The mill rested by the river all day long. " * 10 + "The Elm Clipper departs from gate F26.", "Gate D56 is reserved for the Quill Clipper."]
    rlm, srv = rlm_for([repl("print(search('clipper'))"), "FINAL(1)", "FINAL(F26)"], sub=lambda p: "text", answer_check=True)
    result = rlm.completion(docs, "From the text: what is the boarding gate of the elm clipper?")
    note = srv.root_requests()[2]["prompt"]
    assert "Your answer '1' is not in the output lines that name what the question asks about" in note
    assert "The Elm Clipper departs from gate F26." in note
    assert result.answer == "F26" and result.confirmed is True
    # a second step is grounded through the first line's name; a count is not a lookup
    rlm, _ = rlm_for([repl("print(search('Kofi Vogel'))\nprint(search('Penwick'))"), "FINAL(Brazil)"], sub=lambda p: "text", answer_check=True)
    text = "Kofi Vogel lives in Penwick.\nrain\nPenwick lies in Brazil.\n"
    assert rlm.completion(text, "In which country does KOFI VOGEL live?").iterations == 2


def test_a_final_of_an_unknown_name_in_a_code_block_repeated_is_a_stuck_loop(rlm_for: Any) -> None:
    # Seen on the 1.5B model: ```FINAL(boarding)``` failed with a NameError and was sent again 18 times.
    block = "```\nFINAL(boarding)\n```"
    rlm, srv = rlm_for([repl("print(search('x'))"), block, block, block, block, "FINAL(B28)"], max_iterations=20)
    result = rlm.completion("a text with no such word", "What is the boarding gate of the Aster sleeper?")
    assert result.stopped_by == "stuck_loop" and len(srv.root_requests()) <= 6


def test_a_first_step_answer_goes_back_once_with_what_the_context_says_about_it(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-multihop-person_country-text): it found "Kofi Vogel lives in Penwick." and
    # answered Penwick to "In which country does Kofi Vogel live?".
    text = "Kofi Vogel lives in Penwick.\nrain\nAna Silva lives in Penwick.\nPenwick is a city in Brazil.\nOslo lies in Norway.\n"
    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))"), "FINAL(Penwick)", "FINAL(Brazil)"], sub=lambda p: "name", answer_check=True)
    result = rlm.completion(text, "In which country does KOFI VOGEL live?")
    note = srv.root_requests()[2]["prompt"]
    assert "Your answer 'Penwick' is what the context says about Kofi Vogel itself" in note
    assert "  Penwick is a city in Brazil." in note and "Ana Silva" not in note
    assert result.answer == "Brazil" and result.confirmed is True and result.cells == 1
    # a sentence is read for its one new name
    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))"), "FINAL(Kofi Vogel's home is in Penwick.)", "FINAL(Brazil)"],
                       sub=lambda p: "name", answer_check=True)
    home = "Kofi Vogel's home is in Penwick.\nrain\nAna Silva lives in Penwick.\nPenwick is a city in Brazil.\n"
    assert rlm.completion(home, "In which country does KOFI VOGEL live?").answer == "Brazil"
    assert "Your answer 'Penwick' is what the context says about Kofi Vogel itself" in srv.root_requests()[2]["prompt"]
    # ...also a sentence in the model's own words: its new name is in the lines, so it is grounded (the 1.5B
    # model answered "KOFI VOGEL lives in Penwick." after printing "Kofi Vogel's home is in Penwick." and was
    # told its answer was not in the lines)
    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))"), "FINAL(KOFI VOGEL lives in Penwick.)", "FINAL(Brazil)"],
                       sub=lambda p: "name", answer_check=True)
    assert rlm.completion(home, "In which country does KOFI VOGEL live?").answer == "Brazil"
    assert "Your answer 'Penwick' is what the context says about Kofi Vogel itself" in srv.root_requests()[2]["prompt"]
    # field search is not used to find the answer's lines: records where a field equals it are the same relation
    recs = [{"type": "employee", "name": f"P{i} Q", "team": "Garnet"} for i in range(6)] + [{"type": "team", "name": "Garnet", "manager": "Jade Varga"}]
    rlm, srv = rlm_for([repl("print([r for r in context if r['name'] == 'P3 Q'])"), "FINAL(Garnet)", "FINAL(Jade Varga)"],
                       sub=lambda p: "name", answer_check=True)
    assert rlm.completion(recs, "Name the manager of the team P3 Q belongs to.").answer == "Jade Varga"
    note = srv.root_requests()[2]["prompt"]
    assert "'manager': 'Jade Varga'" in note and "search(" not in note
    # the sub-model read those lines with the question: its value is offered when the lines hold it
    reader = lambda p: "Jade Varga" if p.startswith("Outputs of code run over the data") else "name"  # noqa: E731
    rlm, srv = rlm_for([repl("print([r for r in context if r['name'] == 'P3 Q'])"), "FINAL(Garnet)", "FINAL(Jade Varga)"],
                       sub=reader, answer_check=True)
    assert rlm.completion(recs, "Name the manager of the team P3 Q belongs to.").answer == "Jade Varga"
    assert "Read with the question, these lines give Jade Varga: if that is what the question asks for, reply FINAL(Jade Varga)." in (
        srv.root_requests()[2]["prompt"])
    assert "these lines give" not in note  # the first run's sub-model said "name": nothing offered
    # a model that gives the same answer again is believed (the note is sent once)
    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))"), "FINAL(Penwick)", "FINAL(Penwick)"], sub=lambda p: "name", answer_check=True)
    assert rlm.completion(text, "In which country does KOFI VOGEL live?").answer == "Penwick" and len(srv.root_requests()) == 3
    # a one-step lookup whose answer the context says nothing else about ends at once; without answer_check no note
    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))"), "FINAL(Penwick)"], sub=lambda p: "name", answer_check=True)
    assert rlm.completion("Kofi Vogel lives in Penwick.\nrain\n", "Where does Kofi Vogel live?").iterations == 2
    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))"), "FINAL(Penwick)"], sub=lambda p: "name")
    assert rlm.completion(text, "In which country does KOFI VOGEL live?").answer == "Penwick"


def test_a_first_step_answer_kept_after_the_note_gives_way_when_the_sub_model_picks_the_second_step(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-multihop-person_country-text): told that the lines about Penwick give
    # Brazil, it replied FINAL(Penwick) again. The sub-model is asked which candidate answers, in both orders.
    text = "Kofi Vogel lives in Penwick.\nrain\nAna Silva lives in Penwick.\nPenwick is a city in Brazil.\nOslo lies in Norway.\n"

    def sub(picks: Callable[[str, str], str]) -> Callable[[str], str]:
        def answer(p: str) -> str:
            if p.startswith("Outputs of code run over the data"):
                return "Brazil"
            m = re.search(r"Two candidate answers: (.+?) or (.+?)\. Which one", p)
            return picks(m.group(1), m.group(2)) if m else "name"
        return answer

    script = [repl("print(search('Kofi Vogel'))"), "FINAL(Penwick)", "FINAL(Penwick)"]
    rlm, srv = rlm_for(script, sub=sub(lambda first, second: "Brazil"), answer_check=True)
    result = rlm.completion(text, "In which country does KOFI VOGEL live?")
    assert result.answer == "Brazil" and result.confirmed is True and len(srv.root_requests()) == 3
    asked = [r["prompt"] for r in srv.sub_requests() if "Two candidate answers" in r["prompt"]]
    assert len(asked) == 2 and "Penwick or Brazil" in asked[0] and "Brazil or Penwick" in asked[1]
    assert "Kofi Vogel lives in Penwick." in asked[0] and "Penwick is a city in Brazil." in asked[0]
    # the sub-model naming whichever comes first: no agreement, the model's answer stands
    rlm, srv = rlm_for(script, sub=sub(lambda first, second: first), answer_check=True)
    assert rlm.completion(text, "In which country does KOFI VOGEL live?").answer == "Penwick"
    # another answer than the one the note was about is not touched, and without the note nothing is asked
    rlm, srv = rlm_for([*script[:2], "FINAL(Oslo)", "FINAL(Oslo)"], sub=sub(lambda first, second: "Brazil"), answer_check=True)
    assert rlm.completion(text, "In which country does KOFI VOGEL live?").answer == "Oslo"
    assert not any("Two candidate answers" in r["prompt"] for r in srv.sub_requests())


def test_an_answer_that_names_the_questions_subject_goes_back_once_and_is_unconfirmed_if_kept(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-multihop-employee_manager-docs): it printed "Lena Moreau works on the Lyra team."
    # and answered Lena Moreau to "Who manages the team that lena moreau works on?".
    text = "Lena Moreau works on the Lyra team.\nrain\nGianni Berg manages the Lyra team.\n"
    rlm, srv = rlm_for([repl("print(search('lena moreau'))"), "FINAL(Lena Moreau)", repl("print(search('Lyra'))"), "FINAL(Gianni Berg)"],
                       sub=lambda p: "name", answer_check=True)
    result = rlm.completion(text, "Who manages the team that lena moreau works on?")
    assert "Your answer 'Lena Moreau' is what the question names, not what it asks for" in srv.root_requests()[2]["prompt"]
    assert result.answer == "Gianni Berg" and result.confirmed is True
    # the same answer again is believed (one note per run)
    rlm, srv = rlm_for([repl("print(search('lena moreau'))"), "FINAL(Lena Moreau)", "FINAL(Lena Moreau)"], sub=lambda p: "name", answer_check=True)
    kept = rlm.completion(text, "Who manages the team that lena moreau works on?")
    assert kept.answer == "Lena Moreau" and kept.confirmed is False
    # ...unless the sub-model, reading the context's lines about her (and then about what those give), answers:
    # the runner's answer, unconfirmed, with no more root turns
    def reader(p: str) -> str:
        if not p.startswith("Outputs of code run over the data"):
            return "name"
        return "Gianni Berg" if "manages the Lyra team" in p else "Lyra" if "works on the Lyra team" in p else "unknown"

    rlm, srv = rlm_for([repl("print(search('lena moreau'))"), "FINAL(Lena Moreau)", "FINAL(Lena Moreau)"], sub=reader, answer_check=True)
    hopped = rlm.completion(text, "Who manages the team that lena moreau works on?")
    assert hopped.answer == "Gianni Berg" and hopped.confirmed is False and len(srv.root_requests()) == 3
    read = [r["prompt"] for r in srv.sub_requests() if r["prompt"].startswith("Outputs of code run over the data")]
    assert "Lena Moreau works on the Lyra team." in read[0] and "Gianni Berg" not in read[0]  # first her lines alone
    assert "Gianni Berg manages the Lyra team." in read[-1]  # then one step further


def test_a_forced_answer_naming_the_questions_subject_gets_the_runners_hops(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-multihop-employee_manager-docs): at a stuck loop's forced end it answered
    # "Lena Berg" to "Name the manager of the team Lena Berg belongs to.".
    def reader(p: str) -> str:
        if not p.startswith("Outputs of code run over the data"):
            return "name"
        return ("Gianni Berg" if "manages the Lyra team" in p else "Lyra" if "works on the Lyra team" in p
                else "France" if "Lordale is a city in France" in p else "Lordale" if "moved to Lordale" in p else "unknown")

    loop = repl("print(len(context))")
    text = "Lena Moreau works on the Lyra team. It rained.\nrain\nGianni Berg manages the Lyra team.\n"
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(Lena Moreau)"], sub=reader, answer_check=True)
    result = rlm.completion(text, "Who manages the team that lena moreau works on?")
    assert result.stopped_by == "stuck_loop" and result.answer == "Gianni Berg" and result.confirmed is False
    # a sentence naming the subject is not the subject: its new name is the first step, taken one further
    # (dev-multihop-person_country-text: the 1.5B model's forced answer was "Yuki Grant lives in Lordale")
    lordale = "Yuki Grant moved to Lordale a few years ago.\nrain\nLordale is a city in France.\nAna Silva lives in Lordale.\n"
    rlm, srv = rlm_for([loop, loop, loop, "Yuki Grant lives in Lordale"], sub=reader, answer_check=True)
    assert rlm.completion(lordale, "What country does yuki grant live in?").answer == "France"
    # ...and on a needle question, where nothing else is said of the sentence's value, the sentence goes to the reader
    gate = "The Elm Clipper departs from gate F26.\nrain\nThe Oak Clipper departs from gate F26.\n"
    rlm, srv = rlm_for([loop, loop, loop, "The Elm Clipper leaves from gate F26"], sub=lambda p: "F26" if p.startswith("Outputs") else "name",
                       answer_check=True)
    assert rlm.completion(gate, "What is the boarding gate of the Elm Clipper?").answer == "F26"


def test_a_forced_first_step_answer_gets_the_runners_second_step(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-multihop-person_country-text): stuck after finding "Kofi Vogel's home is in
    # Penwick.", its forced answer was Penwick; the next-step note had never come.
    def reader(p: str) -> str:
        if not p.startswith("Outputs of code run over the data"):
            return "name"
        return "Brazil" if "Penwick lies in Brazil" in p else "unknown"

    loop = repl("print(len(context))")
    text = ("Rain fell. Kofi Vogel's home is in Penwick. Ida Berg lives in Rome.\nAna Silva lives in Penwick.\n"
            "Bo Lee lives in Penwick.\nThe city of Penwick lies in Brazil.\n")
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(Penwick)"], sub=reader, answer_check=True)
    result = rlm.completion(text, "In which country does KOFI VOGEL live?")
    assert result.stopped_by == "stuck_loop" and result.answer == "Brazil" and result.confirmed is False
    read = [r["prompt"] for r in srv.sub_requests() if r["prompt"].startswith("Outputs of code run over the data")]
    assert len(read) == 1 and "Kofi Vogel's home is in Penwick." in read[0] and "Ida Berg" not in read[0]  # the subject's sentence
    # an answer the context says nothing else about stays (one step), as does one the reader cannot take further
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(Penwick)"], sub=reader, answer_check=True)
    assert rlm.completion("Kofi Vogel lives in Penwick.\nrain\n", "Where does Kofi Vogel live?").answer == "Penwick"
    rlm, srv = rlm_for([loop, loop, loop, "FINAL(Penwick)"], sub=lambda p: "name", answer_check=True)
    assert rlm.completion(text, "In which country does KOFI VOGEL live?").answer == "Penwick"
    # the forced reader's answer is a first step too (test-multihop-person_country-dict: the forced reply was code,
    # and the reader of the outputs said Holfield, the city)
    def outputs_reader(p: str) -> str:
        return "Penwick" if p.startswith("Outputs of code run over the data") and "lies in Brazil" not in p else reader(p)

    rlm, srv = rlm_for([repl("print(search('Kofi Vogel'))")] * 3 + [repl("print(1)")], sub=outputs_reader, answer_check=True)
    result = rlm.completion(text, "In which country does KOFI VOGEL live?")
    assert result.stopped_by == "stuck_loop" and result.answer == "Brazil" and result.confirmed is False


def test_the_same_reply_without_code_again_and_again_is_a_stuck_loop(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-needle-gate-docs): it pasted the same REPL output back as its reply
    # ten times, each time told that the reply had no code.
    pasted = "search('boarding gate') found nothing; here are the matches (8) of its rarest word 'gate':\n['The Elm Clipper departs from gate F26.']"
    rlm, srv = rlm_for([repl("print(search('gate'))"), pasted, pasted, pasted, "FINAL(F26)", pasted], max_iterations=20)
    result = rlm.completion("The Elm Clipper departs from gate F26.", "What is the boarding gate of the elm clipper?")
    assert result.stopped_by == "stuck_loop" and result.answer == "F26" and result.confirmed is False
    assert len(srv.root_requests()) == 5  # the cell, the paste, two repeats (a stuck note each), the forced answer
    assert "You ran the same code as in your previous reply" in srv.root_requests()[3]["prompt"]


def test_reading_the_context_a_slice_at_a_time_gets_a_note_once(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-max-json): print(context[0:100]), print(context[100:200]), ... for 20 turns.
    pages = [repl(f"# next part\nprint(context[{i * 10}:{(i + 1) * 10}])") for i in range(5)]
    rlm, srv = rlm_for([*pages, "FINAL(7)"], max_iterations=10)
    rlm.completion("x" * 1000, "What is the largest number?")
    seen = [r["conversation"] for r in srv.root_requests()]
    mark = "You are reading `context` a slice at a time"
    assert [mark in c for c in seen] == [False, False, False, True, True, True]  # after the third slice
    assert seen[-1].count(mark) == 1 and "(1,000 characters)" in seen[-1]  # once


def test_paging_on_after_the_note_is_shown_the_runners_search_once(rlm_for: Any) -> None:
    # Seen on the 1.5B model (dev-tables-max-json): it read on, 100 characters a turn, for 17 turns after the note.
    records = [{"customer": "Acme" if i % 4 == 0 else "Zeta", "amount": i} for i in range(40)]
    pages = [repl(f"print(context[{i * 10}:{(i + 1) * 10}])") for i in range(7)]
    rlm, srv = rlm_for([*pages, "FINAL(36)"], max_iterations=10)
    result = rlm.completion(json.dumps(records), "What is the largest order amount from Acme?")
    seen = [r["conversation"] for r in srv.root_requests()]
    again = "You are still reading `context` a slice at a time"
    assert [again in c for c in seen] == [False] * 4 + [True] * 2  # after the first slice past the note
    # one more slice after both notes is a loop: not run, and the run ends with one forced answer
    assert result.stopped_by == "stuck_loop" and result.cells == 4 and result.confirmed is False
    assert "answer the question now" in srv.root_requests()[-1]["prompt"]
    assert seen[-1].count(again) == 1 and 'search("Acme")' in seen[-1]
    # the runner's search shows whole records of the JSON text, not windows cut inside them
    assert "The runner searched the context" in seen[-1] and "{'customer': 'Acme', 'amount': 4}" in seen[-1]


def test_a_batched_reply_used_as_one_string_gets_a_note(rlm_for: Any) -> None:
    # Seen on the 1.5B model (learn_03): reply = llm_query_batched([one prompt]) per review, then reply.lower().
    code = "n = 0\nfor item in context:\n    reply = llm_query_batched(['Is this positive?\\n' + item])\n    if reply.lower().startswith('yes'):\n        n += 1\nprint(n)"
    rlm, srv = rlm_for([repl(code), "FINAL(1)"], sub=lambda p: "yes")
    rlm.completion(["good", "bad"], "How many reviews are positive?")
    out = srv.root_requests()[1]["prompt"]
    assert "AttributeError: 'list' object has no attribute 'lower'" in out
    assert "note: llm_query_batched(prompts) and rlm_query_batched(...) return a list of strings, one per prompt" in out


def test_a_test_is_the_questions_own_when_it_starts_one_of_its_words() -> None:
    from rlm_graph.nodes.check_final import _unasked

    named = [["path", "/api/cart", "prefix"]]
    code = "n = [r for r in rows if r['method'] == 'GET' and r['level'] == 'warn' and r['path'].startswith('/api/cart')]"
    # 'warn' starts "warnings"; 'get' is a word of the first question, and only inside "target" in the second
    assert _unasked(code, "How many warnings did requests to /api/cart get as a target?", named) == []
    assert _unasked(code, "How many warnings were logged for the target /api/cart?", named) == [("method", "GET")]


def test_an_answer_read_off_the_line_of_someone_sharing_the_subjects_name_goes_back_with_the_subjects_lines(rlm_for: Any) -> None:
    # Seen on the 1.5B model (test-multihop-employee_manager-records): its cell printed Lyra, Rafael Abbott's team, yet
    # it answered Indigo, Rafael Grant's; the next-hop note then led on to Indigo's manager.
    people = [{"type": "employee", "name": n, "team": t} for n, t in
              (("Rafael Grant", "Indigo"), ("Rafael Abbott", "Lyra"), ("Iris Torres", "Sable"), ("Nadia Ueda", "Indigo"))]
    teams = [{"type": "team", "name": t, "manager": m} for t, m in (("Indigo", "Bianca Ito"), ("Lyra", "David Mendes"), ("Sable", "Ana Reyes"))]
    context = people + teams
    cell = repl("for r in context:\n    if r['name'] == 'Rafael Abbott':\n        print(r['team'])")
    question = "Who manages the team that rafael abbott works on? Answer with the name only."
    rlm, srv = rlm_for([cell, "FINAL(Indigo)", "FINAL(Lyra)", "FINAL(David Mendes)"], sub=lambda p: "unknown", answer_check=True)
    result = rlm.completion(context, question)
    note = srv.root_requests()[2]["prompt"]
    assert ("Your answer 'Indigo' is not what the context says about rafael abbott: the line that holds it is about Rafael "
            "Grant, someone else. The lines about rafael abbott:\n  {'type': 'employee', 'name': 'Rafael Abbott', 'team': 'Lyra'}") in note
    assert "Lyra" in srv.root_requests()[3]["prompt"] and "David Mendes" in srv.root_requests()[3]["prompt"]  # the next step, from Lyra
    assert result.answer == "David Mendes" and result.confirmed
    # an answer the subject's own lines hold gets the next-hop note as before, not this one
    rlm, srv = rlm_for([cell, "FINAL(Lyra)", "FINAL(David Mendes)"], sub=lambda p: "unknown", answer_check=True)
    assert rlm.completion(context, question).answer == "David Mendes"
    assert not any("someone else" in r["prompt"] for r in srv.root_requests())
