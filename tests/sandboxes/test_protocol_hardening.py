"""The worker protocol as a trust boundary: whatever code in a cell writes to the protocol channel,
the host stays bounded and the run goes on (docs/reliability.md, "Hostile sandbox code").

Each test runs a real worker (a local subprocess) whose cell forges messages by writing straight
to the worker's protocol stream, as hostile code would.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.errors import ProtocolError
from rlm_graph.sandboxes.base import END, BoundedLines
from rlm_graph.sandboxes.local import LocalTransport
from rlm_graph.sandboxes.protocol import MAX_FINAL_CHARS, MAX_VAR_NAME, SubRequest, parse
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import run

ROOT = Path(__file__).resolve().parents[2]

#: Cell code that defines ``raw(line)``: write one line to the protocol channel, as the worker does.
RAW = "import sys as _s\n_w = _s.modules['__main__']\ndef raw(line):\n    _w._PROTO.write(line + '\\n'); _w._PROTO.flush()\n"


@pytest.fixture
def session(tmp_path: Path) -> Any:
    s = SandboxSession(lambda: LocalTransport(isolation="none"), cell_timeout=10, max_output_chars=1000)
    s.start()
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("alpha\nbeta\n")
    s.load_context(ctx, "text")
    yield s
    s.close()


# -- bounded reads -------------------------------------------------------------------------------
def test_bounded_lines_drop_an_oversized_line_without_holding_it() -> None:
    lines = BoundedLines(max_line_bytes=100, max_buffered_bytes=10_000)
    lines.feed(b'{"a": 1}\n' + b"x" * 60)
    lines.feed(b"x" * 60)  # the line is now over the cap: dropped as it streams
    assert len(lines._partial) == 0 and lines._dropping == 120
    lines.feed(b"x" * 10_000 + b"\nnext\npartial")
    lines.end()
    assert lines.get(0) == '{"a": 1}'
    with pytest.raises(ProtocolError, match=r"more than 100 bytes \(10,120\)"):
        lines.get(0)
    assert lines.get(0) == "next"
    assert lines.get(0) is END  # a line cut off by the end of the stream is not a message


_HUGE_LINE_HOST = """
import json
from pathlib import Path
from rlm_graph.sandboxes.local import LocalTransport
from rlm_graph.sandboxes.session import SandboxSession

def peak_mb():
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024

s = SandboxSession(lambda: LocalTransport(isolation="none", memory_mb=None), cell_timeout=120)
s.start()
before = peak_mb()
code = RAW + "chunk = 'x' * (1 << 20)\\nfor _ in range(1024): _w._PROTO.write(chunk)\\n_w._PROTO.write('\\\\n'); _w._PROTO.flush()\\nprint('still here')"
out = s.step(0, code)
after = peak_mb()
nxt = s.step(1, "print(6 * 7)")
print(json.dumps([out.stdout, out.stderr, nxt.stdout, before, after]))
s.close()
"""


def test_a_one_gib_line_is_refused_and_host_memory_stays_bounded() -> None:
    # In a fresh process, so its peak RSS (VmHWM) is the host's alone.
    proc = subprocess.run(
        [sys.executable, "-c", f"RAW = {RAW!r}\n" + _HUGE_LINE_HOST],
        capture_output=True,
        text=True,
        cwd=ROOT,
        timeout=240,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    stdout, stderr, nxt, before, after = json.loads(proc.stdout)
    assert stdout == "still here\n"
    assert "more than 67,108,864 bytes (1,073,741,824); it was dropped" in stderr
    assert nxt == "42\n"
    # The cap is 64 MiB a message; without it the host held the whole GiB, several times over.
    assert after - before < 300, (before, after)
    print(f"host peak RSS: {before:.0f} MB before, {after:.0f} MB after")


# -- forged messages -----------------------------------------------------------------------------
def test_a_forged_result_is_cut_to_max_output_chars(session: SandboxSession) -> None:
    forged = {"type": "result", "cell": 0, "stdout": "F" * 5_000_030, "stderr": "E" * 100_000, "error": "R" * 100_000,
              "final": None, "vars": {}, "timed_out": False}
    out = run(session, 0, RAW + f"raw({json.dumps(json.dumps(forged))})\nimport time; time.sleep(0.2)")
    assert out.stdout.startswith("FFF") and "characters omitted by the host" in out.stdout
    for text in (out.stdout, out.stderr, out.error or ""):
        assert len(text) < 1200
    # The genuine result of cell 0 arrives during cell 1, for the wrong cell: dropped, and named.
    nxt = run(session, 1, "print('cell one')")
    assert nxt.stdout == "cell one\n"
    assert "a result for cell 0 while cell 1 runs" in nxt.stderr


def test_a_result_for_another_cell_is_dropped(session: SandboxSession) -> None:
    forged = {"type": "result", "cell": 7, "stdout": "not mine", "stderr": "", "error": None, "final": "forged", "vars": {}}
    out = run(session, 0, RAW + f"raw({json.dumps(json.dumps(forged))})\nprint('mine')")
    assert out.stdout == "mine\n" and out.final is None
    assert "dropped 1 invalid message" in out.stderr and "a result for cell 7 while cell 0 runs" in out.stderr


@pytest.mark.parametrize(
    "line, why",
    [
        ('{"type": "pong"}', "an unexpected pong message"),
        ("this is not json", "a line that is not JSON"),
        ('{"type": "request", "id": "seven", "kind": "llm", "prompts": ["p"]}', "a bad 'id'"),
        ('{"type": "request", "id": true, "kind": "llm", "prompts": ["p"]}', "a bad 'id'"),
        ('{"type": "request", "id": 3, "kind": "llm", "prompts": "p"}', "no list of 1 to"),
        ('{"type": "request", "id": 3, "kind": "shell", "prompts": ["p"]}', "an unknown kind"),
        ('{"type": "result", "cell": "0"}', "a bad 'cell'"),
        ('{"type": "result", "cell": 0, "vars": [1, 2]}', "a bad 'vars'"),
        ('{"type": "hello"}', "an unknown message"),
        ("[1, 2, 3]", "an unknown message"),
        ('{"type": "result", "cell": 0, "stdout": ' + "[" * 100_000 + "]" * 100_000 + "}", "not JSON"),
    ],
)
def test_stray_and_malformed_messages_are_dropped_and_the_cell_goes_on(session: SandboxSession, line: str, why: str) -> None:
    out = run(session, 0, RAW + f"raw({line!r})\nx = 41 + 1\nprint(x)")
    assert out.stdout == "42\n" and out.error is None
    assert why in out.stderr
    assert run(session, 1, "x").stdout == "42\n"


def test_a_request_with_fewer_contexts_than_prompts_is_refused_inside_the_cell(session: SandboxSession) -> None:
    code = "import __main__\ntry:\n    __main__._ask('rlm', ['a', 'b'], ['only one'])\nexcept RuntimeError as e:\n    print('refused:', e)"
    out = run(session, 0, code)
    assert out.stdout.startswith("refused: the host refused this request") and "1 contexts for 2 prompts" in out.stdout


def test_variable_names_and_types_are_capped(session: SandboxSession) -> None:
    out = run(session, 0, "for i in range(300):\n    globals()[str(i) * 200_000] = i")
    assert len(out.vars) <= 200
    assert all(len(name) <= MAX_VAR_NAME for name in out.vars)
    assert sum(len(n) for n in out.vars) <= 200 * MAX_VAR_NAME


def test_parse_checks_shapes_and_makes_text_safe() -> None:
    msg = parse('{"type": "result", "cell": 2, "stdout": "a\\u0000b\\ud800c", "final": "x\\u0000", "vars": {"v\\u0000": "int"}}')
    assert msg["stdout"] == "a\ufffdb\ufffdc" and msg["final"] == "x\ufffd" and msg["vars"] == {"v\ufffd": "int"}
    long_final = parse(json.dumps({"type": "result", "cell": 0, "final": "y" * (MAX_FINAL_CHARS + 10)}))["final"]
    assert len(long_final) < MAX_FINAL_CHARS + 100 and long_final.startswith("yyy")
    with pytest.raises(ProtocolError, match="2 contexts for 1 prompts"):
        parse('{"type": "request", "id": 1, "kind": "rlm", "prompts": ["p"], "contexts": [1, 2]}')
    with pytest.raises(ProtocolError, match="a bad 'timed_out'"):
        parse('{"type": "result", "cell": 0, "timed_out": "yes"}')



def test_a_loaded_contexts_conditions_are_checked_before_the_host_reads_them() -> None:
    # a worker's named_values end up in a note's code example and in the month test (int(month)): a forged
    # month, an unknown kind or a malformed entry is dropped, and values are bounded
    named = [["date", "2024-13", "month"], ["date", "May", "month"], ["region", "x" * 500, "eq"], ["a", "b", "exec"],
             "junk", ["date", "2024-03", "month"]]
    meta = parse(json.dumps({"type": "loaded", "meta": {"named_values": named}}))["meta"]
    assert meta["named_values"] == [["region", "x" * 80, "eq"], ["date", "2024-03", "month"]]
    meta = parse(json.dumps({"type": "loaded", "meta": {"named_values": [["path", "/api", "prefix"]] * 9}}))["meta"]
    assert meta["named_values"] == [["path", "/api", "prefix"]] * 6  # at most six
    # a number condition is written into code as int(value): digits only
    named = [["user", "48213", "number"], ["user", "4e3", "number"], ["user", "1)+exec(x", "number"], ["user", "", "number"]]
    meta = parse(json.dumps({"type": "loaded", "meta": {"named_values": named}}))["meta"]
    assert meta["named_values"] == [["user", "48213", "number"]]


# -- code the host cannot send -------------------------------------------------------------------
def test_a_lone_surrogate_in_code_is_reported_as_such(session: SandboxSession) -> None:
    out = run(session, 0, "x = 1\ny = '\ud800'")
    assert out.error is not None and "lone surrogate ('\\ud800') at line 2, column 6" in out.error
    assert "worker died" not in out.error
    assert run(session, 1, "print('alive')").stdout == "alive\n"


def test_a_lone_surrogate_in_output_or_an_answer_does_not_break_the_channel(session: SandboxSession) -> None:
    out = run(session, 0, "print('a' + chr(0xD800) + 'b')")
    assert out.stdout == "a\ufffdb\n"
    req = session.step(1, "print(llm_query('q'))")
    assert isinstance(req, SubRequest)
    session.answer(req, ["bad \ud800 answer"])
    assert run(session, 1, "").stdout == "bad \ufffd answer\n"


# -- threads -------------------------------------------------------------------------------------
THREADED = (
    "from concurrent.futures import ThreadPoolExecutor\n"
    "with ThreadPoolExecutor(8) as ex:\n"
    "    got = list(ex.map(llm_query, [f'q{i}' for i in range(8)]))\n"
    "print(got)"
)


def test_llm_query_from_threads_inside_a_cell_gets_each_its_own_answer(session: SandboxSession) -> None:
    out = session.step(0, THREADED)
    asked = []
    while isinstance(out, SubRequest):
        asked.append(out.prompts[0])
        session.answer(out, ["A:" + out.prompts[0]])
        out = session.step(0, THREADED)
    assert sorted(asked) == [f"q{i}" for i in range(8)]
    assert out.error is None and out.stdout == str([f"A:q{i}" for i in range(8)]) + "\n"
    assert run(session, 1, "print('alive')").stdout == "alive\n"


def test_sub_calls_from_threads_that_outlived_their_cell_are_refused(session: SandboxSession) -> None:
    start = (
        "import threading, time\n"
        "errors, go = [], threading.Event()\n"
        "def late():\n"
        "    time.sleep(0.3)\n"  # runs on after its cell ended: between cells
        "    try: llm_query('late')\n"
        "    except RuntimeError as e: errors.append(str(e))\n"
        "def waiting():\n"
        "    go.wait()\n"  # an earlier cell's thread, calling during a later cell
        "    try: llm_query('old')\n"
        "    except RuntimeError as e: errors.append(str(e))\n"
        "t1 = threading.Thread(target=late); t1.start()\n"
        "t2 = threading.Thread(target=waiting); t2.start()\n"
    )
    assert run(session, 0, start).error is None
    out = run(session, 1, "time.sleep(0.6); go.set(); t1.join(); t2.join()\nprint(len(errors), all('outlived its cell' in e for e in errors))")
    assert out.stdout == "2 True\n" and out.error is None
    assert run(session, 2, "print('alive')").stdout == "alive\n"


# -- file descriptors and replay -----------------------------------------------------------------
def test_a_cell_that_closes_fd_0_poisons_neither_later_cells_nor_replay(tmp_path: Path) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("x")
    cells = [
        {"index": 0, "code": "import os, sys\nos.close(0)\nsys.stdin.close()\nkept = 1"},
        {"index": 1, "code": "after = input() if False else 2"},
    ]
    live = SandboxSession(lambda: LocalTransport(isolation="none"), cell_timeout=10)
    live.start()
    live.load_context(ctx, "text")
    for c in cells:
        assert run(live, c["index"], c["code"]).error is None
    assert run(live, 2, "print(kept + after)").stdout == "3\n"
    live.close()
    fresh = SandboxSession(lambda: LocalTransport(isolation="none"), cell_timeout=10)
    fresh.start()
    fresh.load_context(ctx, "text")
    assert fresh.replay(cells, lambda req: ["unused"]) == 0 and fresh.replay_notes == []
    assert run(fresh, 2, "print(kept + after)").stdout == "3\n"
    fresh.close()


def test_a_cell_that_breaks_the_channel_is_skipped_on_replay_with_a_note(tmp_path: Path) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("x")
    # ctypes closes the protocol's input under the worker's feet: no descriptor juggling helps.
    breaker = "import ctypes, sys\nctypes.CDLL(None).close(sys.modules['__main__']._IN.fileno())\nbroken = True"
    cells = [{"index": 0, "code": "kept = 1"}, {"index": 1, "code": breaker}, {"index": 2, "code": "later = 2"}]
    s = SandboxSession(lambda: LocalTransport(isolation="none"), cell_timeout=10)
    s.start()
    s.load_context(ctx, "text")
    assert s.replay(cells, lambda req: ["unused"]) == 0
    assert len(s.replay_notes) == 1 and "cell 1 was not replayed" in s.replay_notes[0]
    assert s.matches(cells)
    assert run(s, 3, "print(kept, later, 'broken' in globals())").stdout == "1 2 False\n"
    s.close()


def test_replay_does_not_run_a_soft_timed_out_cell_again(tmp_path: Path) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("x")
    cells = [
        {"index": 0, "code": "kept = 1"},
        {"index": 1, "code": "partial = 2\nwhile True: pass", "timed_out": True},
    ]
    s = SandboxSession(lambda: LocalTransport(isolation="none"), cell_timeout=10)
    s.start()
    s.load_context(ctx, "text")
    assert s.replay(cells, lambda req: ["unused"]) == 0
    assert s.replay_notes == ["cell 1 was not replayed: it ran into its time limit; the variables it set are gone"]
    assert s.matches(cells)
    assert run(s, 2, "print(kept, 'partial' in globals())").stdout == "1 False\n"
    s.close()


# -- whole runs ----------------------------------------------------------------------------------
def test_a_run_whose_cells_forge_messages_finishes_and_leaves_nothing_to_resume(rlm_for: Any, tmp_path: Path) -> None:
    from rlm_graph.checkpoints import list_runs
    from tests.conftest import repl

    forge = RAW + "raw('{\"type\": \"pong\"}')\nraw('not json')\nraw('{\"type\": \"request\", \"id\": \"x\"}')\nprint('done')"
    rlm, _ = rlm_for([repl(forge), 'FINAL("ok")'], checkpointer=str(tmp_path / "c.sqlite"), sandbox_options={"isolation": "none"})
    result = rlm.completion("ctx", "q", thread_id="forged")
    assert result.answer == "ok" and result.stopped_by == "final"
    assert [r["status"] for r in list_runs(rlm.checkpointer)] == ["finished"]


def test_a_request_with_fewer_contexts_than_prompts_does_not_loop_the_run(rlm_for: Any) -> None:
    from tests.conftest import repl

    code = "import __main__\ntry:\n    __main__._ask('rlm', ['a', 'b'], ['x'])\nexcept RuntimeError as e:\n    print('refused')"
    rlm, srv = rlm_for([repl(code), 'FINAL("fine")'], sandbox_options={"isolation": "none"})
    result = rlm.completion("ctx", "q")
    assert result.answer == "fine" and result.subcalls == 0 and srv.sub_requests() == []
    assert result.cells == 1


def test_a_run_with_llm_query_from_eight_threads_pays_each_answer_once(rlm_for: Any) -> None:
    from tests.conftest import repl

    rlm, srv = rlm_for([repl(THREADED), repl("FINAL(','.join(got))")], sub=lambda p: "A:" + p, sandbox_options={"isolation": "none"})
    result = rlm.completion("ctx", "q")
    assert result.answer == ",".join(f"A:q{i}" for i in range(8))
    assert sorted(r["prompt"] for r in srv.sub_requests()) == [f"q{i}" for i in range(8)] and result.subcalls == 8
