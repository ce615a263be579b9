"""The local worker through a real subprocess: the REPL contract the model relies on."""

from __future__ import annotations

import os
import subprocess
import sys
import time
import warnings
from pathlib import Path

import pytest

from rlm_graph.errors import SandboxError, SandboxTimeout
from rlm_graph.sandboxes import local
from rlm_graph.sandboxes.local import LocalTransport, bwrap_status
from rlm_graph.sandboxes.protocol import SubRequest
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import run


@pytest.fixture
def session(tmp_path: Path):
    s = SandboxSession(lambda: LocalTransport(), cell_timeout=3, max_output_chars=1000)
    s.start()
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("alpha 1\nbeta 2\ngamma 3\n")
    s.load_context(ctx, "text")
    yield s
    s.close()


def test_context_metadata_never_needs_the_content(session: SandboxSession) -> None:
    meta = session.context_meta
    assert meta is not None
    assert meta["type"] == "str" and meta["length"] == 23 and meta["lines"] == 3
    assert meta["preview"].startswith("alpha 1")


def test_namespace_persists_and_last_expression_is_echoed(session: SandboxSession) -> None:
    assert run(session, 0, "x = len(context.splitlines())").stdout == ""
    out = run(session, 1, "x * 10")
    assert out.stdout == "30\n"
    assert out.vars == {"x": "int"}


def test_error_midway_keeps_earlier_assignments(session: SandboxSession) -> None:
    out = run(session, 0, "paid = 'expensive'\n1/0\nnever = 1")
    assert "ZeroDivisionError" in (out.error or "")
    assert run(session, 1, "print(paid)").stdout == "expensive\n"
    assert "never" not in run(session, 2, "SHOW_VARS()").stdout


def test_final_and_final_var_in_code(session: SandboxSession) -> None:
    assert run(session, 0, "FINAL((1, 2))").final == "(1, 2)"
    assert run(session, 0, "FINAL(327, 708, 'r824')").final == "327, 708, r824"  # several values: one answer
    assert run(session, 1, "answer = 'Paris'\nFINAL_VAR('answer')").final == "Paris"
    missing = run(session, 2, "FINAL_VAR('nope')")
    assert missing.final is None and "no such variable" in (missing.error or "")


def test_overwritten_repl_functions_are_restored(session: SandboxSession) -> None:
    out = run(session, 0, "llm_query = None\nFINAL = print\ndel context")
    assert "restored" in out.stderr
    assert run(session, 1, "callable(llm_query), len(context)").stdout == "(True, 23)\n"


def test_output_is_truncated_head_and_tail(session: SandboxSession) -> None:
    out = run(session, 0, "print('A' * 5000 + 'Z' * 5000)")
    assert len(out.stdout) < 1200
    assert out.stdout.startswith("AAAA") and out.stdout.rstrip().endswith("ZZZZ")
    assert "characters omitted" in out.stdout


def test_soft_timeout_keeps_the_worker_and_its_variables(session: SandboxSession) -> None:
    out = run(session, 0, "kept = 7\nwhile True: pass")
    assert out.timed_out and "TimeoutError" in (out.error or "")
    assert run(session, 1, "kept").stdout == "7\n"


def test_hard_timeout_kills_a_worker_that_ignores_its_alarm(session: SandboxSession) -> None:
    session.cell_timeout = 1
    with pytest.raises(SandboxTimeout):
        session.step(0, "import signal, time\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True: time.sleep(0.05)")
    assert session.transport is None


def test_sub_call_requests_round_trip_in_order(session: SandboxSession) -> None:
    req = session.step(0, "a = llm_query('one')\nb = llm_query_batched(['two', 'three'])\nprint(a, b)")
    assert isinstance(req, SubRequest) and req.prompts == ["one"] and req.ordinal == 0
    session.answer(req, ["1"])
    req2 = session.step(0, "", [])
    assert isinstance(req2, SubRequest) and req2.prompts == ["two", "three"] and req2.ordinal == 1
    session.answer(req2, ["2", "3"])
    assert run(session, 0, "").stdout == "1 ['2', '3']\n"


def test_sub_call_error_raises_inside_the_cell(session: SandboxSession) -> None:
    req = session.step(0, "try:\n    llm_query('x')\nexcept RuntimeError as e:\n    print('caught', e)")
    assert isinstance(req, SubRequest)
    session.answer(req, [], "server down")
    assert run(session, 0, "").stdout == "caught server down\n"


def test_replay_serves_recorded_answers_without_asking(tmp_path: Path) -> None:
    ctx = tmp_path / "c.json"
    ctx.write_text('[1, 2, 3]')
    cells = [
        {"index": 0, "code": "s = sum(context)"},
        {"index": 1, "code": "r = llm_query_batched(['p1', 'p2'])", "requests": []},
        {"index": 2, "code": "boom()", "killed": True},
    ]
    from rlm_graph.sandboxes.protocol import prompt_hash

    cells[1]["requests"] = [{"hashes": [prompt_hash("p1"), prompt_hash("p2")], "texts": ["A", "B"]}]
    s = SandboxSession(lambda: LocalTransport(), cell_timeout=5)
    s.start()
    s.load_context(ctx, "json")
    asked: list[SubRequest] = []
    assert s.replay(cells, lambda req: asked.append(req) or ["fresh"] * len(req.prompts)) == 0
    assert asked == []
    assert s.matches(cells)
    assert run(s, 3, "s, r").stdout == "(6, ['A', 'B'])\n"
    s.close()


def test_replay_calls_fresh_when_the_prompt_changed(tmp_path: Path) -> None:
    ctx = tmp_path / "c.txt"
    ctx.write_text("x")
    cells = [{"index": 0, "code": "r = llm_query('new prompt')", "requests": [{"hashes": ["0" * 16], "texts": ["old"]}]}]
    s = SandboxSession(lambda: LocalTransport(), cell_timeout=5)
    s.start()
    s.load_context(ctx, "text")
    assert s.replay(cells, lambda req: ["fresh"]) == 1
    assert run(s, 1, "r").stdout == "'fresh'\n"
    s.close()


def test_worker_environment_has_no_secrets(session: SandboxSession, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-secret")
    s = SandboxSession(lambda: LocalTransport(), cell_timeout=5)
    s.start()
    out = run(s, 0, "import os\nprint(sorted(os.environ))\nprint('sk-test-secret' in str(os.environ))")
    assert "OPENAI_API_KEY" not in out.stdout and out.stdout.strip().endswith("False")
    assert "PYTHONHASHSEED" in out.stdout
    s.close()


def test_writes_to_fd1_do_not_corrupt_the_protocol(session: SandboxSession) -> None:
    out = run(session, 0, "import os\nos.write(1, b'{not json}\\n')\nos.system('echo from-child')\nprint('ok')")
    assert out.stdout == "ok\n"


def test_unicode_round_trips(session: SandboxSession) -> None:
    assert run(session, 0, "print('héllo ✓ 日本')").stdout == "héllo ✓ 日本\n"
    req = session.step(1, "print(llm_query('ünï'))")
    assert isinstance(req, SubRequest) and req.prompts == ["ünï"]
    session.answer(req, ["✓"])
    assert run(session, 1, "").stdout == "✓\n"


def test_a_worker_never_outlives_its_session(tmp_path: Path) -> None:
    t = LocalTransport()
    pid = t._proc.pid
    t.close()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)


# -- isolation ----------------------------------------------------------------------------------

needs_bwrap = pytest.mark.skipif(not bwrap_status()[0], reason=f"{bwrap_status()[1]} (scripts/ci-setup.sh installs it)")

_HOST = """
import sys, time
from rlm_graph.sandboxes.local import LocalTransport
from rlm_graph.sandboxes.protocol import encode
t = LocalTransport(isolation=sys.argv[1])
assert '"ready"' in t.receive(30)
t.send(encode({"type": "exec", "cell": 0, "code": "while True: pass", "timeout": 0}))
print(t._box, flush=True)
time.sleep(60)
"""


def _processes_naming(marker: str) -> list[int]:
    found = []
    for entry in os.scandir("/proc"):
        try:
            if entry.name.isdigit() and marker.encode() in Path(entry.path, "cmdline").read_bytes():
                found.append(int(entry.name))
        except OSError:
            pass
    return found


@pytest.mark.parametrize("isolation", ["none", pytest.param("bwrap", marks=needs_bwrap)])
def test_the_worker_dies_with_its_host_even_mid_cell(isolation: str) -> None:
    host = subprocess.Popen([sys.executable, "-c", _HOST, isolation], stdout=subprocess.PIPE, text=True)
    try:
        assert host.stdout is not None
        box = host.stdout.readline().strip()
        assert box and _processes_naming(box)
    finally:
        host.kill()  # SIGKILL: no cleanup code runs in the host
        host.wait()
    deadline = time.monotonic() + 5  # the worker checks on its parent every second
    while _processes_naming(box) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert _processes_naming(box) == []


@needs_bwrap
def test_bwrap_context_is_a_read_only_hard_link(tmp_path: Path) -> None:
    ctx = tmp_path / "ctx.txt"
    ctx.write_text("linked, not copied\n")
    s = SandboxSession(lambda: LocalTransport(isolation="bwrap"), cell_timeout=5)
    s.start()
    s.load_context(ctx, "text")
    out = run(s, 0, "import sys, os\np = sys.modules['__main__']._CONTEXT_SOURCE['path']\nos.stat(p).st_ino, context")
    assert out.stdout == f"({ctx.stat().st_ino}, 'linked, not copied\\n')\n"
    s.close()


@needs_bwrap
def test_bwrap_worker_runs_the_venv_python_with_its_packages() -> None:
    pytest.importorskip("numpy")
    s = SandboxSession(lambda: LocalTransport(isolation="bwrap"), cell_timeout=20)
    s.start()
    out = run(s, 0, "import sys, numpy\nsys.prefix, numpy.arange(4).sum().item()")
    assert out.stdout == f"({sys.prefix!r}, 6)\n"
    s.close()


def test_auto_without_bubblewrap_falls_back_with_one_note(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "bwrap_status", lambda: (False, "bubblewrap (bwrap) is not installed"))
    monkeypatch.setattr(local, "_WARNED", False)
    with pytest.warns(RuntimeWarning, match="WITHOUT isolation") as notes:
        transports = [LocalTransport(), LocalTransport(isolation="auto")]
    assert len(notes) == 1 and "isolation='none'" in str(notes[0].message)
    assert [t.isolation for t in transports] == ["none", "none"]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        transports.append(LocalTransport(isolation="none"))
    with pytest.raises(SandboxError, match="apt-get install bubblewrap"):
        LocalTransport(isolation="bwrap")
    for t in transports:
        t.close()


def test_reassigning_context_is_undone_with_a_note(session: SandboxSession) -> None:
    out = run(session, 0, 'context = context[:12]\nprint(len(context))')
    assert out.stdout == "12\n" and "`context` always holds the whole data" in out.stderr
    assert run(session, 1, "len(context)").stdout == "23\n"
    # made-up data written into `context` is refused before the cell runs
    out = run(session, 2, 'x = 1\ncontext = """alpha 1\nbeta"""\nprint(len(context))')
    assert out.stdout == "" and out.error and out.error.startswith("NotRun: this cell was not run")
    assert run(session, 3, "print(len(context), 'x' in dir())").stdout == "23 False\n"


def test_a_placeholder_context_line_is_skipped_and_the_rest_runs(session: SandboxSession) -> None:
    # the 1.5B model opened its cell with `context = ...` (it thought it had to load the data)
    out = run(session, 0, "context = ...\nprint(len(context))")
    assert out.error is None and out.stdout == "23\n" and "the line `context = ...` was skipped" in out.stderr
    out = run(session, 1, "context = 'your_context_here'\nn = len(context)\nn")
    assert out.stdout == "23\n" and "`context = 'your_context_here'` was skipped" in out.stderr
    # data written into it (a text of words, lines) is still refused
    out = run(session, 2, "context = 'alpha beta'\nprint(len(context))")
    assert out.stdout == "" and str(out.error).startswith("NotRun")
