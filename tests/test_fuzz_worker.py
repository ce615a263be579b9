"""Fuzzing the host side of the worker protocol: random and adversarial worker messages, seeded.

Two drivers, each a few thousand messages:

- a scripted worker (a :class:`Transport` written here) that answers every ``exec`` with a burst of
  junk: mutated messages, wrong types and shapes, NUL and lone surrogates, deep nesting, lines
  over the size cap, truncated JSON; then maybe a genuine request, a crash or silence, and a
  genuine result. The session must give a result, a request, or a ``SandboxTimeout`` /
  ``WorkerCrashed`` (which execute turns into a note and a restart), with every field within its
  cap, in bounded memory;
- a real run (a real worker, the scripted model server) whose cells write seeded junk straight to
  the protocol channel between their sub-calls: the run must end with the right answer, with
  every paid answer delivered to the code that asked for it.
"""

from __future__ import annotations

import json
import random
import tracemalloc
from typing import Any

import pytest

from rlm_graph.errors import SandboxTimeout, WorkerCrashed
from rlm_graph.sandboxes import session as session_module
from rlm_graph.sandboxes.base import BoundedLines, Transport
from rlm_graph.sandboxes.protocol import MAX_FINAL_CHARS, MAX_VAR_NAME, MAX_VARS, CellResult, SubRequest
from rlm_graph.sandboxes.session import SandboxSession
from tests.conftest import repl

SEED = 20_2026
MAX_LINE = 64 << 10  # the scripted worker's line cap (the real one is 64 MiB): oversized lines stay cheap


def _text(rng: random.Random, n: int | None = None) -> str:
    n = rng.choice([0, 1, 5, 50, 500, 5000]) if n is None else n
    alphabet = "ab \n\x00\ud800\udfff\u00e9\u65e5\U0001f600\\\"{}[]"
    return "".join(rng.choice(alphabet) for _ in range(min(n, 200))) * max(1, n // 200)


def _value(rng: random.Random, depth: int = 0) -> Any:
    kind = rng.randrange(10 if depth < 3 else 7)
    makers = [
        lambda: None,
        lambda: rng.choice([True, False]),
        lambda: rng.choice([0, -1, 1, 2**63, -(2**70), 7]),
        lambda: rng.choice([0.5, -3.0, 1e308]),
        lambda: _text(rng),
        lambda: _text(rng, 5),
        lambda: rng.choice(["llm", "rlm", "result", "request", "pong"]),
        lambda: [_value(rng, depth + 1) for _ in range(rng.randrange(4))],
        lambda: {_text(rng, 3): _value(rng, depth + 1) for _ in range(rng.randrange(4))},
        lambda: [_value(rng, depth + 1)] * rng.randrange(3),
    ]
    return makers[kind]()


def _junk(rng: random.Random, cell: int) -> str:
    """One adversarial line."""
    shape = rng.randrange(12)
    if shape == 0:
        return _text(rng)  # not JSON
    if shape == 1:
        return "[" * rng.choice([10, 5000]) + "]" * rng.choice([0, 10])  # deep or broken nesting
    if shape == 2:
        return "x" * rng.choice([MAX_LINE + 1, 3 * MAX_LINE])  # over the cap
    if shape == 3:
        return json.dumps({"type": "pong"})
    if shape == 4:
        return "NaN" if rng.random() < 0.5 else '{"type": "result", "cell": NaN}'
    msg: dict[str, Any] = {"type": rng.choice(["result", "request", "ready", "loaded", "protocol_error", "hello", None, 3])}
    if msg["type"] == "result":
        msg.update(cell=rng.choice([cell + 1, cell - 1, str(cell), None, True, 2**80]), stdout=_value(rng), stderr=_value(rng),
                   error=_value(rng), final=_value(rng), vars=_value(rng), timed_out=_value(rng))
    elif msg["type"] == "request":
        msg.update(id=_value(rng), kind=_value(rng), prompts=_value(rng), contexts=_value(rng))
        if rng.random() < 0.3:  # well formed but for contexts: the host answers it with an error
            msg.update(id=rng.randrange(10_000, 20_000), kind="rlm", prompts=["a", "b"], contexts=["one"])
    else:
        for _ in range(rng.randrange(4)):
            msg[_text(rng, 4)] = _value(rng)
    line = json.dumps(msg, ensure_ascii=rng.random() < 0.5)
    return line[: rng.randrange(len(line))] if rng.random() < 0.1 else line  # sometimes truncated


class FuzzWorker(Transport):
    """A worker that answers each exec with junk, then (mostly) the genuine protocol."""

    kind = "fuzz"

    def __init__(self, rng: random.Random, stats: dict[str, int]) -> None:
        self.rng, self.stats = rng, stats
        self.lines = BoundedLines(max_line_bytes=MAX_LINE, max_buffered_bytes=16 * MAX_LINE)
        self.cell: int | None = None
        self.asked: int | None = None
        self._emit('{"type": "ready", "pid": 1}')

    def _emit(self, line: str) -> None:
        self.stats["lines"] += 1
        self.lines.feed(line.encode("utf-8", "surrogatepass") + b"\n")

    def _burst(self, cell: int) -> None:
        for _ in range(self.rng.randrange(1, 12)):
            self._emit(_junk(self.rng, cell))

    def send(self, line: str) -> None:
        msg = json.loads(line)
        if msg["type"] == "exec":
            self.cell = msg["cell"]
            self._burst(msg["cell"])
            self._after(msg["cell"])
        elif msg["type"] == "answer":
            assert isinstance(msg["id"], int)
            if msg["id"] == self.asked:
                self.asked = None
                self.stats["answered"] += 1
            if self.cell is not None and self.asked is None:
                self._burst(self.cell)
                self._after(self.cell)
        elif msg["type"] == "ping":
            self._emit('{"type": "pong"}')

    def _after(self, cell: int) -> None:
        roll = self.rng.random()
        if roll < 0.25:
            self.asked = self.rng.randrange(1, 1000)
            self._emit(json.dumps({"type": "request", "id": self.asked, "kind": "llm", "prompts": [_text(self.rng, 20)]}))
        elif roll < 0.28:
            self.lines.end()  # the worker dies
        elif roll < 0.30:
            pass  # silence: the host's deadline must end the step
        else:
            genuine = {"type": "result", "cell": cell, "stdout": _text(self.rng, self.rng.choice([10, 5000])),
                       "stderr": "", "error": None, "final": self.rng.choice([None, "done", _text(self.rng, 100)]),
                       "vars": {f"v{i}\x00\ud800" * 5: "int" for i in range(self.rng.choice([1, 300]))}, "timed_out": False}
            self._emit(json.dumps(genuine))
            self.cell = None

    def receive(self, timeout: float | None) -> str | None:
        from rlm_graph.sandboxes.base import END

        line = self.lines.get(timeout)
        if line is END:
            raise WorkerCrashed("the fuzz worker died")
        return line  # type: ignore[return-value]

    def close(self) -> None:
        self.lines.close()

    def put_file(self, local_path: Any, name: str) -> str:
        return str(local_path)


def test_thousands_of_adversarial_messages_leave_the_host_bounded_and_going(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(session_module, "HARD_TIMEOUT_GRACE", 0.05)
    rng = random.Random(SEED)
    stats = {"lines": 0, "answered": 0, "results": 0, "requests": 0, "timeouts": 0, "crashes": 0}
    session = SandboxSession(lambda: FuzzWorker(rng, stats), cell_timeout=0.01, max_output_chars=1000)
    session.start()
    tracemalloc.start()
    try:
        cell = 0
        while stats["lines"] < 4000:
            try:
                out = session.step(cell, "code")
                while isinstance(out, SubRequest):
                    stats["requests"] += 1
                    assert out.kind in ("llm", "rlm") and out.prompts and all(isinstance(p, str) for p in out.prompts)
                    assert out.contexts is None or len(out.contexts) == len(out.prompts)
                    session.answer(out, ["ok"])
                    out = session.step(cell, "code")
                stats["results"] += 1
                _check_capped(out, 1000)
            except SandboxTimeout:
                stats["timeouts"] += 1
                session.start()  # what execute does: a new worker (replay has nothing to replay here)
            except WorkerCrashed:
                stats["crashes"] += 1
                session.start()
            cell += 1
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
        session.close()
    # Every outcome happened, and memory stayed within a few line caps (each line is dropped or cut).
    assert stats["results"] > 50 and stats["requests"] > 10 and stats["timeouts"] and stats["crashes"], stats
    assert stats["answered"] > 10, stats
    assert peak < 64 * MAX_LINE, peak


def _check_capped(out: CellResult, limit: int) -> None:
    assert isinstance(out, CellResult)
    for text in (out.stdout, out.stderr, out.error or ""):
        assert len(text) <= limit + 1500  # the cut text, plus the host's note naming dropped lines
        assert "\x00" not in text
        text.encode("utf-8")  # no lone surrogate
    assert out.final is None or len(out.final) <= MAX_FINAL_CHARS
    assert len(out.vars) <= MAX_VARS and all(len(k) <= MAX_VAR_NAME for k in out.vars)


# -- a real run ------------------------------------------------------------------------------------
def _junk_cell(rng: random.Random, n: int, tag: str) -> str:
    lines = [_junk(rng, 0) for _ in range(n)]
    lines = [line for line in lines if len(line) < 20_000]  # the real cap is 64 MiB: keep the code small
    return (
        "import sys as _s\n_w = _s.modules['__main__']\n"
        f"for _line in {json.dumps(lines)}:\n"
        "    _w._PROTO.write(_line + '\\n'); _w._PROTO.flush()\n"
        f"got_{tag} = llm_query('{tag}')\n"
        f"for _line in {json.dumps(lines[::-1])}:\n"
        "    _w._PROTO.write(_line + '\\n'); _w._PROTO.flush()\n"
        f"print(got_{tag})"
    )


def test_a_real_run_survives_seeded_junk_on_the_protocol_channel(rlm_for: Any) -> None:
    rng = random.Random(SEED + 1)
    cells = [_junk_cell(rng, 400, tag) for tag in ("alpha", "beta", "gamma")]
    replies = [repl(c) for c in cells] + [repl("FINAL(got_alpha + got_beta + got_gamma)")]
    rlm, srv = rlm_for(replies, sub=lambda p: p.upper(), sandbox_options={"isolation": "none"})
    result = rlm.completion("ctx", "q")
    assert result.answer == "ALPHABETAGAMMA"
    assert sorted(r["prompt"] for r in srv.sub_requests()) == ["alpha", "beta", "gamma"]
    assert result.stopped_by == "final"
