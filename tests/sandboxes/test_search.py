"""The REPL's ``search`` helper, run in a real worker on every installed backend.

``search`` exists because the embedded 1.5B model searched a one-line haystack with
``splitlines()`` and printed line numbers; it must show the text around a match whatever the
context's shape.
"""

from __future__ import annotations

import ast
from collections.abc import Callable
from pathlib import Path

import pytest

from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import run

Start = Callable[..., SandboxSession]

FILLER = "The grass is green. The sky is blue. "


def _hits(session: SandboxSession, cell: int, code: str) -> list[str]:
    out = run(session, cell, code)
    assert out.error is None, out.error
    value = ast.literal_eval(out.stdout.strip())
    assert isinstance(value, list)
    return value


def _loaded(sandbox: Start, tmp_path: Path, text: str) -> SandboxSession:
    path = tmp_path / "ctx.txt"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    session = sandbox()
    session.load_context(path, "text")
    return session


def test_a_match_in_one_long_line_gives_the_text_around_it(sandbox: Start, tmp_path: Path) -> None:
    text = FILLER * 2000 + "The code for calm-harbor is: 4711. " + FILLER * 2000
    session = _loaded(sandbox, tmp_path, text)
    hits = _hits(session, 0, "search('CALM-HARBOR', window=40)")
    assert hits == ["The code for calm-harbor is: 4711."]  # its sentence, not the whole line
    # with no sentence end near, `window` characters either side
    text = "word " * 4000 + "calm-harbor 4711 " + "word " * 4000
    (hit,) = _hits(_loaded(sandbox, tmp_path, text), 1, "search('CALM-HARBOR', window=40)")
    assert len(hit) == len("calm-harbor") + 80 and "calm-harbor 4711" in hit


def test_short_lines_come_back_whole_once_per_line(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, "a ERROR one\nok\nerror error twice\nfine\n")
    assert _hits(session, 0, "search('error')") == ["a ERROR one", "error error twice"]
    assert _hits(session, 1, "search('ERROR', case=True)") == ["a ERROR one"]
    assert _hits(session, 2, r"search(r'e\w+r\s+t', regex=True)") == ["error error twice"]
    assert _hits(session, 3, "search('absent')") == []


def test_a_phrase_that_matches_nothing_is_tried_looser_with_a_note(sandbox: Start, tmp_path: Path) -> None:
    # The 1.5B model asks for "special magic number for X"; the data says "magic numbers for X".
    text = FILLER * 500 + "One of the special magic numbers for frozen-compass is: 123. " + FILLER * 500
    session = _loaded(sandbox, tmp_path, text)
    out = run(session, 0, "hits = search('special magic number for frozen-compass', window=20)\nprint(hits)")
    note, shown = out.stdout.splitlines()
    assert "no exact match; 1 with its words in this order" in note
    assert "magic numbers for frozen-compass is: 123." in shown
    # Words out of order: the rarest word's matches, said so.
    out = run(session, 1, "print(search('number of frozen-compass'))")
    assert "here are the matches (1) of its rarest word 'frozen-compass'" in out.stdout and "is: 123." in out.stdout
    # Nothing rare: only how often each word occurs (capped), and an empty list.
    out = run(session, 2, "print(search('the moon sky'))")
    assert "'the' 1000+, 'moon' 0, 'sky' 1000+" in out.stdout and out.stdout.endswith("[]\n")
    assert run(session, 3, "search('moon')").stdout == "[]\n"  # one word: nothing to loosen
    assert run(session, 4, "search('moon.*sky', regex=True)").stdout == "[]\n"  # a regex is taken as written


def test_lists_dicts_and_explicit_text(sandbox: Start) -> None:
    session = sandbox()
    code = "search('x', text=['ax', 'b', {'q': 'x'}]), search('2', text={'k1': 1, 'k2': 2})"
    out = run(session, 0, "print(list((" + code + ")))")
    assert ast.literal_eval(out.stdout.strip()) == [["ax", "{'q': 'x'}"], ["k2: 2"]]


@pytest.mark.parametrize("bad", ["''", "None", "3"])
def test_a_bad_pattern_is_one_clear_error(sandbox: Start, bad: str) -> None:
    out = run(sandbox(), 0, f"search({bad})")
    assert out.error is not None and "pattern must be a non-empty string" in out.error


def test_search_is_restored_when_the_code_overwrites_it(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, "needle here\nhay\n")
    run(session, 0, "search = None")
    assert _hits(session, 1, "search('needle')") == ["needle here"]
