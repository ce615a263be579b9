"""The sandbox contract: what every backend does the same way, because the model relies on it.

Runs once per installed backend (see ``backend`` in conftest.py): the local subprocess, the local
subprocess under bubblewrap, a Docker container, and E2B through the fake envd.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from rlm_graph.errors import WorkerCrashed
from rlm_graph.sandboxes.protocol import CellResult, SubRequest
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import BIG_CONTEXT_MB, NEEDLE, run

Start = Callable[..., SandboxSession]


@pytest.fixture
def small_context(tmp_path: Path) -> Path:
    path = tmp_path / "ctx.txt"
    path.write_text("alpha 1\nbeta 2\ngamma 3\n", encoding="utf-8")
    path.chmod(0o644)
    return path


def test_namespace_persists_across_cells(sandbox: Start) -> None:
    s = sandbox()
    assert run(s, 0, "x = 20\ndef double(v):\n    return 2 * v").stdout == ""
    out = run(s, 1, "y = double(x) + 2")
    assert out.vars == {"x": "int", "y": "int"}
    assert run(s, 2, "print(x, y)").stdout == "20 42\n"


def test_last_expression_is_echoed_like_a_repl(sandbox: Start) -> None:
    s = sandbox()
    assert run(s, 0, "print('a')\n6 * 7").stdout == "a\n42\n"
    assert run(s, 1, "None").stdout == ""  # None is not echoed
    assert run(s, 2, "v = 3").stdout == ""  # an assignment is not an expression
    assert run(s, 3, "'text'").stdout == "'text'\n"  # shown as its repr


def test_final_and_final_var(sandbox: Start) -> None:
    s = sandbox()
    assert run(s, 0, "x = 1").final is None
    assert run(s, 1, "FINAL(42.0)").final == "42"
    assert run(s, 2, "answer = 'Paris'\nFINAL_VAR('answer')").final == "Paris"
    missing = run(s, 3, "FINAL_VAR('nope')")
    assert missing.final is None and "no such variable" in (missing.error or "")
    assert run(s, 4, "1 + 1").final is None  # a FINAL belongs to its cell only


def test_llm_query_and_batched_fan_out_round_trip(sandbox: Start) -> None:
    s = sandbox()
    code = (
        "a = llm_query('one')\n"
        "b = llm_query_batched([f'q{i}' for i in range(8)])\n"
        "c = rlm_query('deeper', context=[1, 2])\n"
        "print(a, b, c)"
    )
    req = s.step(0, code)
    assert isinstance(req, SubRequest) and (req.kind, req.prompts, req.ordinal) == ("llm", ["one"], 0)
    s.answer(req, ["A"])
    req = s.step(0, code)
    assert isinstance(req, SubRequest) and req.prompts == [f"q{i}" for i in range(8)] and req.ordinal == 1
    s.answer(req, [p.upper() for p in req.prompts])
    req = s.step(0, code)
    assert isinstance(req, SubRequest) and req.kind == "rlm" and req.contexts == [[1, 2]]
    s.answer(req, ["child"])
    out = s.step(0, code)
    assert isinstance(out, CellResult) and out.error is None
    assert out.stdout == f"A {[f'Q{i}' for i in range(8)]} child\n"


def test_sub_call_error_is_raised_inside_the_cell(sandbox: Start) -> None:
    s = sandbox()
    code = "try:\n    llm_query('x')\nexcept RuntimeError as e:\n    print('caught:', e)"
    req = s.step(0, code)
    assert isinstance(req, SubRequest)
    s.answer(req, [], "rate limited")
    assert run(s, 0, code).stdout == "caught: rate limited\n"


def test_soft_timeout_keeps_the_worker_and_its_variables(sandbox: Start) -> None:
    s = sandbox(cell_timeout=1)
    out = run(s, 0, "kept = 7\nn = 0\nwhile True:\n    n += 1")
    assert out.timed_out and "TimeoutError" in (out.error or "")
    assert run(s, 1, "kept, n > 0").stdout == "(7, True)\n"


def test_error_midway_keeps_earlier_assignments(sandbox: Start) -> None:
    s = sandbox()
    out = run(s, 0, "paid = 'expensive'\n1 / 0\nnever = 1")
    assert "ZeroDivisionError" in (out.error or "") and out.vars == {"paid": "str"}


def test_output_is_truncated_to_head_and_tail(sandbox: Start) -> None:
    s = sandbox(max_output_chars=1000)
    out = run(s, 0, "print('A' * 50_000 + 'Z' * 50_000)")
    assert len(out.stdout) < 1200 and "characters omitted" in out.stdout
    assert out.stdout.startswith("AAAA") and out.stdout.rstrip().endswith("ZZZZ")
    many = run(s, 1, "for i in range(100_000):\n    print(i)")
    assert many.stdout.startswith("0\n1\n") and many.stdout.endswith("99999\n") and len(many.stdout) < 1200


def test_stray_writes_to_fd1_do_not_corrupt_the_protocol(sandbox: Start) -> None:
    s = sandbox()
    out = run(s, 0, "import os\nos.write(1, b'{not json}\\n')\nos.system('echo from-a-child')\nprint('ok')")
    assert out.stdout == "ok\n"
    assert run(s, 1, "2 + 2").stdout == "4\n"


def test_worker_crash_then_restart_and_replay(sandbox: Start, small_context: Path) -> None:
    s = sandbox()
    s.load_context(small_context, "text")
    cells: list[dict] = [{"index": 0, "code": "n = len(context.splitlines())"}]
    run(s, 0, cells[0]["code"])
    code = "r = llm_query_batched(['p1', 'p2'])"
    req = s.step(1, code)
    assert isinstance(req, SubRequest)
    s.answer(req, ["A", "B"])
    assert run(s, 1, code).error is None
    cells.append({"index": 1, "code": code, "requests": [{"hashes": req.hashes, "texts": ["A", "B"]}]})
    with pytest.raises(WorkerCrashed):
        s.step(2, "import os\nos._exit(3)")
    cells.append({"index": 2, "code": "import os\nos._exit(3)", "killed": True})
    assert not s.matches(cells)

    s.start()  # a new worker: reload the context and replay the record, asking nothing
    s.load_context(small_context, "text")
    asked: list[SubRequest] = []

    def fresh(req: SubRequest) -> list[str]:
        asked.append(req)
        return ["fresh"] * len(req.prompts)

    assert s.replay(cells, fresh) == 0
    assert asked == [] and s.matches(cells)
    assert run(s, 3, "n, r").stdout == "(3, ['A', 'B'])\n"


def test_a_100_mb_context(sandbox: Start, big_context: Path) -> None:
    s = sandbox()
    meta = s.load_context(big_context, "text")
    size = BIG_CONTEXT_MB * 1024 * 1024 + len(NEEDLE) + 1
    assert meta["type"] == "str" and meta["length"] == size
    assert run(s, 0, "len(context)").stdout == f"{size}\n"
    out = run(s, 1, f"at = context.find({NEEDLE!r})\nat, context[at:].strip(), context.count('fox')")
    assert out.stdout == f"({size - len(NEEDLE) - 1}, {NEEDLE!r}, {BIG_CONTEXT_MB * 16384})\n"


def test_unicode_everywhere(sandbox: Start, tmp_path: Path) -> None:
    path = tmp_path / "ünï.txt"
    path.write_text("zeile ünïcode € 日本 🙂\n" * 3, encoding="utf-8")
    path.chmod(0o644)
    s = sandbox()
    s.load_context(path, "text")
    assert run(s, 0, "context.splitlines()[0]").stdout == "'zeile ünïcode € 日本 🙂'\n"
    assert run(s, 1, "größe = len(context)\nprint('✓', größe)").stdout == "✓ 63\n"
    code = "print(llm_query('frage: 日本?'))"
    req = s.step(2, code)
    assert isinstance(req, SubRequest) and req.prompts == ["frage: 日本?"]
    s.answer(req, ["antwort: 🙂"])
    assert run(s, 2, code).stdout == "antwort: 🙂\n"
    assert run(s, 3, "FINAL('réponse ✓')").final == "réponse ✓"


def test_code_cannot_replace_the_repl_functions_or_delete_context(sandbox: Start, small_context: Path) -> None:
    s = sandbox()
    s.load_context(small_context, "text")
    out = run(s, 0, "llm_query = None\nFINAL = print\nSHOW_VARS = 1\ndel context\ncontext_gone = True")
    assert "restored" in out.stderr and out.error is None
    out = run(s, 1, "callable(llm_query), callable(FINAL), len(context)")
    assert out.stdout == "(True, True, 23)\n"
    out = run(s, 2, "globals().pop('FINAL_VAR')\nimport builtins\nbuiltins.FINAL = None")
    assert run(s, 3, "x = 'kept'\nFINAL_VAR('x')").final == "kept"
