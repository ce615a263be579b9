"""compare(): one plain call and one RLM run on the same question, against a scripted server on loopback.

The scripted server tells the two apart by the system prompt: RLM root turns carry it, the plain
call (a single user message) does not, so it is answered by the ``sub`` script.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import ConfigurationError, ContextError
from rlm_graph.compare import TRUNCATION_NOTE, ComparisonResult, answer_matches, compare, format_summary, format_table
from tests.conftest import repl

PLAIN_MARK = "Answer the question about the context below."


def _numbers(n: int) -> str:
    return "\n".join(str(1000 + i) for i in range(n))


def test_plain_call_gets_the_truncated_context_and_the_rlm_runs(rlm_for: Any) -> None:
    context = _numbers(3000)  # 14,999 characters
    expected = str(sum(1000 + i for i in range(3000)))
    rlm, srv = rlm_for(
        [repl("total = sum(int(x) for x in context.split())\nprint(total)"), "FINAL(total)"],
        sub=lambda prompt: "1234",
    )
    result = compare(context, "What is the sum? Answer with the number.", rlm=rlm, expected=expected, window_chars=5000)

    plain = [r for r in srv.sub_requests() if PLAIN_MARK in r["prompt"]]
    assert len(plain) == 1
    prompt = plain[0]["prompt"]
    assert context[:5000] in prompt and context[:5001] not in prompt  # exactly the head
    assert TRUNCATION_NOTE.format(shown=5000, total=len(context)) in prompt
    assert prompt.rstrip().endswith("Reply with only the answer.") and "What is the sum?" in prompt
    # the RLM side never put the context in a prompt, and answered from code
    assert all(context[-20:] not in r["prompt"] for r in srv.root_requests())
    assert len(srv.root_requests()) == 2

    assert result.truncated and result.shown_chars == 5000 and result.context_chars == len(context)
    assert result.plain.answer == "1234" and result.plain.correct is False
    assert result.rlm.answer == expected and result.rlm.correct is True
    assert result.rlm.iterations == 2 and result.plain.iterations == 1
    assert result.plain.calls == 1 and result.rlm.calls == 2
    assert result.plain.tokens > 0 and result.rlm.tokens > 0
    assert result.plain.seconds >= 0 and result.rlm.seconds > 0
    assert result.rlm_result is not None and result.rlm_result.stopped_by == "final"


def test_short_context_is_shown_whole_and_correctness_needs_expected(rlm_for: Any) -> None:
    rlm, srv = rlm_for([repl("print(context.upper())"), "FINAL(PARIS)"], sub=lambda p: "Paris.")
    result = compare("paris", "Which city? Answer with the name.", rlm=rlm)
    prompt = srv.sub_requests()[0]["prompt"]
    assert "paris" in prompt and "was cut" not in prompt
    assert not result.truncated and result.shown_chars == result.context_chars == 5
    assert result.plain.correct is None and result.rlm.correct is None
    assert result.plain.answer == "Paris." and result.rlm.answer == "PARIS"
    rlm, _ = rlm_for([repl("print(1)"), "FINAL(Paris)"], sub=lambda p: "Lyon")
    with_expected = compare("paris", "Which city? Answer with the name.", rlm=rlm, expected="paris")
    assert with_expected.plain.correct is False and with_expected.rlm.correct is True


def test_list_and_file_contexts_reach_the_plain_call_as_text(rlm_for: Any, tmp_path: Path) -> None:
    rlm, srv = rlm_for([repl("print(sum(context))"), "FINAL(6)", repl("print(len(context.splitlines()))"), "FINAL(2)"], sub=lambda p: "6")
    result = compare([1, 2, 3], "What is the sum?", rlm=rlm, expected="6")
    assert "[1, 2, 3]" in srv.sub_requests()[0]["prompt"]
    assert result.plain.correct and result.rlm.correct

    path = tmp_path / "rows.txt"
    path.write_text("alpha\nbeta\n")
    result = compare(str(path), "How many lines?", rlm=rlm, expected="2")
    assert "alpha\nbeta" in srv.sub_requests()[1]["prompt"]
    assert result.context_chars == len("alpha\nbeta\n") and result.rlm.correct


def test_a_prompt_too_long_for_the_server_is_retried_with_half_the_window(rlm_for: Any) -> None:
    message = "Requested tokens (9000) exceed context window of 8192"
    overflow = {"status": 400, "body": {"error": {"message": message, "type": "invalid_request_error"}}}
    rlm, srv = rlm_for([repl("print(1)"), "FINAL(1)"], sub=lambda p: overflow if len(p) > 3000 else "7")
    result = compare("x" * 10_000, "q?", rlm=rlm, window_chars=8000)
    sizes = [len(r["prompt"]) for r in srv.sub_requests()]
    assert len(sizes) == 3 and sizes[0] > sizes[1] > sizes[2]  # 8000, then 4000, then 2000 characters
    assert result.shown_chars == 2000 and result.plain.answer == "7" and result.plain.error is None


def test_a_prompt_that_never_fits_is_an_attempt_without_answer_not_an_error(rlm_for: Any) -> None:
    overflow = {"status": 400, "body": {"error": {"message": "this model's maximum context length is 8192 tokens"}}}
    rlm, _ = rlm_for([repl("print(1)"), "FINAL(1)"], sub=lambda p: overflow)
    result = compare("y " * 500, "q?", rlm=rlm, expected="1", window_chars=800)
    assert result.plain.answer is None and "did not fit" in (result.plain.error or "")
    assert result.plain.correct is False and result.rlm.correct is True
    assert "did not fit" in format_table(result)


def test_bad_input_is_refused_before_any_call(rlm_for: Any) -> None:
    rlm, srv = rlm_for([])
    with pytest.raises(ConfigurationError):
        compare("ctx", "  ", rlm=rlm)
    with pytest.raises(ConfigurationError):
        compare("ctx", "q", rlm=rlm, window_chars=0)
    with pytest.raises(ContextError):
        compare("missing-file.txt", "q", rlm=rlm)
    with pytest.raises(ContextError):
        compare(None, "q", rlm=rlm)
    assert srv.requests == []


def test_tables_show_both_methods_and_the_accuracy(rlm_for: Any) -> None:
    rlm, _ = rlm_for([repl("print(42)"), "FINAL(42)"], sub=lambda p: "41")
    result = compare("z " * 150, "What number? Answer with the number.", rlm=rlm, expected="42", window_chars=100)
    table = format_table(result)
    assert "the plain call saw the first 100 (truncated)" in table and "expected: 42" in table
    rows = {line.split()[0]: line.split() for line in table.splitlines() if line.startswith(("plain ", "rlm "))}
    assert rows["plain"][1:3] == ["41", "no"] and rows["rlm"][1:3] == ["42", "yes"]
    summary = format_summary([result, result])
    assert "accuracy: plain 0/2, rlm 2/2" in summary
    assert json.loads(json.dumps(result.to_dict()))["truncated"] is True
    assert isinstance(result, ComparisonResult)


@pytest.mark.parametrize(
    ("answer", "expected", "ok"),
    [
        ("4150", "4150", True),
        ("The sum is 4,150.", "4150", True),
        ("41500", "4150", False),
        ("4150.0", "4150", True),
        ("Carol.", "carol", True),
        ("Caroline", "carol", False),
        ("New York City", "new york", True),
        ("```repl\nFINAL(Lyon)\n```", "Lyon", False),
        ("1, 2, 3, 4, 5, 6, 7", "7", False),
        (None, "7", False),
    ],
)
def test_answer_matches(answer: str | None, expected: str, ok: bool) -> None:
    assert answer_matches(answer, expected) is ok
