import pytest

from rlm_graph.graph.parsing import FinalCall, code_blocks, find_final, normalize_code


def test_repl_python_and_bare_fences_are_code_but_json_is_not() -> None:
    text = "a\n```repl\nx = 1\n```\nb\n```python\ny = 2\n```\n```json\n{\"a\": 1}\n```\n```\nz = 3\n```"
    assert code_blocks(text) == ["x = 1", "y = 2", "z = 3"]


def test_unclosed_fence_counts_as_a_block() -> None:
    assert code_blocks("```repl\nprint(len(context))\n") == ["print(len(context))"]


def test_empty_blocks_and_output_echoes_are_skipped() -> None:
    assert code_blocks("```repl\n\n```\n```\nREPL output:\n5\n```") == []
    # Only literal values: output pasted back, which as code would just echo its last line.
    assert code_blocks("```\n18611\n7560\n```\n```repl\n[1, -2, (3, 'a')]\n{'k': None}\n```") == []
    # A name, a call or an assignment is code.
    assert code_blocks("```repl\nx = 1\nx\n```\n```repl\n7560\nprint(1)\n```") == ["x = 1\nx", "7560\nprint(1)"]
    # The runner's notes or a traceback pasted back (seen on the 1.5B model) are not code; a broken cell
    # of the model's own, or an annotation named note, still runs (its SyntaxError is the model's feedback).
    pasted = ("```\nnote: 'south' is not in `context` with these capitals, only with others.\n```\n"
              "```\nFile \"<cell 1>\", line 1\n    note: 'south' is not\nSyntaxError: invalid syntax\n```")
    assert code_blocks(pasted) == []
    assert code_blocks("```repl\nprint(len(rows)\n```\n```repl\nnote: str = 'x'\n```") == ["print(len(rows)", "note: str = 'x'"]


def test_final_with_nested_parentheses() -> None:
    assert find_final("FINAL(f(x) is (roughly) 3)") == FinalCall(answer="f(x) is (roughly) 3")


def test_final_with_tuple_and_string_literals() -> None:
    assert find_final("FINAL((1, 2))") == FinalCall(answer="(1, 2)")
    assert find_final('FINAL("a ) tricky")') == FinalCall(answer="a ) tricky")
    assert find_final("FINAL('Paris')") == FinalCall(answer="Paris")
    assert find_final("FINAL(42)") == FinalCall(answer="42")


def test_final_naming_a_variable_means_its_value() -> None:
    assert find_final("So: FINAL(total)") == FinalCall(var="total")
    assert find_final('FINAL_VAR("result")') == FinalCall(var="result")
    assert find_final("FINAL_VAR(result)") == FinalCall(var="result")


def test_final_inside_code_is_not_a_text_final() -> None:
    assert find_final("```repl\nFINAL(x)\n```") is None


def test_last_final_wins_and_unbalanced_takes_the_line() -> None:
    assert find_final("FINAL(1) no wait FINAL(2)") == FinalCall(answer="2")
    assert find_final("FINAL(the answer is (3\nmore") == FinalCall(answer="the answer is (3")


def test_not_final_when_part_of_a_longer_name() -> None:
    assert find_final("MY_FINAL(3)") is None
    assert find_final("FINAL()") is None


def test_normalize_code_ignores_blank_lines_and_trailing_spaces() -> None:
    assert normalize_code("x = 1  \n\n print(x)\n") == normalize_code("x = 1\n print(x)")


def test_integral_floats_are_written_as_integers() -> None:
    assert find_final("FINAL(24228839.0)") == FinalCall(answer="24228839")
    assert find_final("FINAL(2.5)") == FinalCall(answer="2.5")


@pytest.mark.timeout(120)  # the old parser took hours on each of these (quadratic); the pass is seconds
@pytest.mark.parametrize(
    "reply",
    [
        "FINAL(" * 175_000,  # a 48 KB one took 19 s; 120 KB hung
        "`" * 1_000_000,
        "```x" * 250_000,
        "FINAL(\"" + "(" * 1_000_000,
        ("```repl\nx = 1  # " + "c" * 1000 + "\n```\n") * 1000 + "FINAL(done)",
    ],
)
def test_a_one_megabyte_reply_parses(reply: str) -> None:
    assert len(reply) >= 1_000_000
    found = find_final(reply)
    blocks = code_blocks(reply)
    if reply.endswith("FINAL(done)"):
        assert found == FinalCall(var="done") and len(blocks) == 1000
    else:
        assert found is None or found.answer is not None
