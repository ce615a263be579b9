"""One live sandbox for one run: contexts, cells, sub-call requests and replay, above any transport.

The execute node drives a session with :meth:`SandboxSession.step`. A step runs (or continues) a
cell until it either finishes (a :class:`CellResult`) or asks for sub-calls the host has no answer
for yet (a :class:`SubRequest`). Answers the run already paid for are passed in as ``recorded``,
in call order; they are served without asking the model again. That single rule is what makes
both a live cell that waits for its fan-out and a replay after a crash work the same way.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_graph.errors import ContextError, ProtocolError, SandboxError, SandboxTimeout, WorkerCrashed
from rlm_graph.sandboxes.base import Transport
from rlm_graph.sandboxes.protocol import CellResult, InvalidRequest, SubRequest, encode, parse, prompt_hash

#: The run's question as sent to the worker (for judge() and classify()), at most this many characters.
MAX_QUESTION_CHARS = 20_000

log = logging.getLogger("rlm_graph.sandbox")

#: Extra seconds the host waits past the worker's own (soft) cell timeout before killing it.
HARD_TIMEOUT_GRACE = 5.0
#: Seconds a worker has to answer a ping between replayed cells.
PING_TIMEOUT = 30.0
#: Invalid messages of one cell named in its note (all are dropped; the rest are only counted).
NOTED_MESSAGES = 3


@dataclass(frozen=True)
class Recorded:
    """A request the run already answered: matched on replay by call order and prompt hashes."""

    hashes: list[str]
    texts: list[str]
    error: str | None = None


@dataclass
class _Progress:
    """Which cells this live worker has executed (to detect forks and stale sessions)."""

    done: list[str] = field(default_factory=list)  # code hash of each completed cell, in order
    cell: int | None = None  # the cell currently running, if any
    answered: int = 0  # requests of that cell already answered
    waiting: SubRequest | None = None
    used: set[int] = field(default_factory=set)  # recorded requests of that cell already served
    dropped: list[str] = field(default_factory=list)  # why messages of that cell were dropped
    n_dropped: int = 0


class SandboxSession:
    """A worker reached through a transport, plus the bookkeeping to run and replay cells.

    Every line the worker sends passes :func:`~rlm_graph.sandboxes.protocol.parse` first. A line
    that fails (not JSON, an unknown or unexpected message, a bad field, a result for another
    cell, a line over the size cap) is dropped and named in a note appended to the running
    cell's stderr; a bad request with a usable id is answered with an error, so the code waiting
    for it gets a ``RuntimeError``. Nothing a worker sends ends the run.

    Args:
        factory: makes a new transport (a started worker); called again after a crash.
        cell_timeout: seconds a cell may run (time spent waiting for sub-calls excluded).
        max_output_chars: the worker keeps this many characters of a cell's output (head and
            tail), and the host cuts whatever it is sent to the same size.
    """

    def __init__(
        self,
        factory: Callable[[], Transport],
        *,
        cell_timeout: float = 120.0,
        max_output_chars: int = 4000,
        startup_timeout: float = 60.0,
    ) -> None:
        self._factory = factory
        self.cell_timeout = cell_timeout
        self.max_output_chars = max_output_chars
        self.startup_timeout = startup_timeout
        self.transport: Transport | None = None
        self.progress = _Progress()
        self.context_meta: dict[str, Any] | None = None
        self._context: tuple[Path, str, str | None] | None = None
        self.tool_names: list[str] = []
        self.lock = threading.Lock()
        #: What the last :meth:`replay` left out, and why (one line each).
        self.replay_notes: list[str] = []

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start a fresh worker and wait for its ready message."""
        self.close()
        self.transport = self._factory()
        self.progress = _Progress()
        msg = self._next(self.startup_timeout, "start")
        if msg["type"] != "ready":
            raise ProtocolError(f"worker did not say ready: {msg}")
        if self.tool_names:
            self.transport.send(encode({"type": "tools", "names": self.tool_names}))

    def close(self) -> None:
        if self.transport is not None:
            try:
                self.transport.send(encode({"type": "shutdown"}))
            except SandboxError:
                pass
            self.transport.close()
            self.transport = None

    @property
    def kind(self) -> str:
        return self.transport.kind if self.transport else "none"

    def _next(self, timeout: float | None, what: str) -> dict[str, Any]:
        """The next message, checked (:func:`parse`); ProtocolError for a line that fails."""
        assert self.transport is not None
        line = self.transport.receive(timeout)
        if line is None:
            raise SandboxTimeout(f"the sandbox worker did not answer within {timeout:.0f} s ({what})")
        return parse(line, max_output_chars=self.max_output_chars)

    def define_tools(self, names: Sequence[str]) -> None:
        """Define host tools in the REPL (stubs that send ``tool`` requests), now and after every restart."""
        self.tool_names = list(names)
        if self.transport is not None and self.tool_names:
            self.transport.send(encode({"type": "tools", "names": self.tool_names}))

    # -- context ---------------------------------------------------------------------------
    def load_context(self, path: Path, fmt: str = "auto", question: str | None = None) -> dict[str, Any]:
        """Make ``path`` visible to the worker and load it as ``context``; return its metadata.

        ``question``, the run's question, is what ``judge()`` asks and ``classify()`` reads its labels'
        meaning from when the code gives none."""
        if self.transport is None:
            self.start()
        assert self.transport is not None
        self._context = (path, fmt, question)
        worker_path = self.transport.put_file(path, "context" + "".join(path.suffixes[-1:]))
        msg: dict[str, Any] = {"type": "load_context", "path": worker_path, "format": fmt}
        if question:
            msg["question"] = question[:MAX_QUESTION_CHARS]
        self.transport.send(encode(msg))
        msg = self._next(None, "load context")
        if msg["type"] != "loaded":
            raise ProtocolError(f"the worker answered load_context with a {msg['type']} message")
        if msg.get("error"):
            raise ContextError(f"the sandbox could not load the context {path.name}: {msg['error']}")
        self.context_meta = dict(msg.get("meta") or {})
        return self.context_meta

    # -- cells -----------------------------------------------------------------------------
    def step(self, cell: int, code: str, recorded: Sequence[Recorded] = ()) -> CellResult | SubRequest:
        """Run or continue ``cell`` until it finishes or asks for something not in ``recorded``.

        Raises:
            SandboxTimeout: the worker ignored its own timeout and was killed.
            WorkerCrashed: the worker died; start a new session and :meth:`replay` the earlier cells.
        """
        if self.transport is None:
            raise SandboxError("the sandbox is not started")
        p = self.progress
        if p.cell != cell:
            if p.cell is not None:
                raise SandboxError(f"cell {p.cell} is still running; cannot start cell {cell}")
            unreadable = _lone_surrogate(code)
            if unreadable:  # it cannot be sent as UTF-8, let alone compiled: report it, run nothing
                p.done.append(prompt_hash(code))
                return CellResult(cell, error=unreadable)
            p.cell, p.answered, p.waiting, p.used = cell, 0, None, set()
            p.dropped, p.n_dropped = [], 0
            self.transport.send(
                encode(
                    {
                        "type": "exec",
                        "cell": cell,
                        "code": code,
                        "timeout": self.cell_timeout,
                        "max_output_chars": self.max_output_chars,
                    }
                )
            )
        elif p.waiting is not None:
            answered = self._answer_from_record(p.waiting, recorded)
            if not answered:
                return p.waiting
        # One deadline for the whole step: a worker that keeps writing cannot hold it open.
        limit = self.cell_timeout + HARD_TIMEOUT_GRACE if self.cell_timeout else None
        deadline = None if limit is None else time.monotonic() + limit
        while True:
            try:
                msg = self._next(None if deadline is None else max(0.0, deadline - time.monotonic()), f"cell {cell}")
            except SandboxTimeout:
                self.close()
                p.cell = None
                raise SandboxTimeout(
                    f"cell {cell} ran past {self.cell_timeout:.0f} s and did not stop; the worker was killed"
                ) from None
            except InvalidRequest as exc:
                self._drop(str(exc))
                self._send_answer(exc.request_id, [], f"the host refused this request: {exc}")
                continue
            except ProtocolError as exc:
                self._drop(str(exc))
                continue
            if msg["type"] == "request":
                req = SubRequest(
                    id=msg["id"],
                    kind=msg["kind"],
                    prompts=msg["prompts"],
                    contexts=msg["contexts"],
                    ordinal=p.answered,
                )
                p.waiting = req
                if not self._answer_from_record(req, recorded):
                    return req
                if deadline is not None:  # the worker's clock stopped while it waited
                    deadline = time.monotonic() + limit  # type: ignore[operator]
                continue
            if msg["type"] == "result":
                if msg["cell"] != cell:
                    self._drop(f"a result for cell {msg['cell']} while cell {cell} runs")
                    continue
                p.cell, p.waiting = None, None
                p.done.append(prompt_hash(code))
                return self._with_notes(CellResult.from_message(msg))
            self._drop(f"an unexpected {msg['type']} message during a cell")

    def _drop(self, why: str) -> None:
        p = self.progress
        p.n_dropped += 1
        if len(p.dropped) < NOTED_MESSAGES:
            p.dropped.append(why[:300])
        if p.n_dropped == 1:
            log.warning("cell %s: dropped a message from the sandbox worker: %s", p.cell, why[:300])

    def _with_notes(self, result: CellResult) -> CellResult:
        p = self.progress
        if p.n_dropped:
            more = f" (and {p.n_dropped - len(p.dropped)} more)" if p.n_dropped > len(p.dropped) else ""
            result.stderr += (
                f"note: the host dropped {p.n_dropped} invalid message(s) the sandbox sent during this cell{more}: "
                + "; ".join(p.dropped)
                + "\n"
            )
        return result

    def _answer_from_record(self, req: SubRequest, recorded: Sequence[Recorded]) -> bool:
        """Serve ``req`` from ``recorded``: the record at its position, else the first unused one
        with the same prompts (threads in a cell may ask in another order than the record's)."""
        p = self.progress
        hashes = req.hashes
        match = None
        if req.ordinal < len(recorded) and req.ordinal not in p.used and recorded[req.ordinal].hashes == hashes:
            match = req.ordinal
        else:
            match = next((k for k, rec in enumerate(recorded) if k not in p.used and rec.hashes == hashes), None)
        if match is None:
            if req.ordinal < len(recorded):
                log.warning(
                    "replay diverged at cell %s request %d: the prompts differ from the record; calling fresh",
                    p.cell,
                    req.ordinal,
                )
            return False
        p.used.add(match)
        rec = recorded[match]
        self.answer(req, rec.texts, rec.error)
        return True

    def answer(self, req: SubRequest, texts: list[str], error: str | None = None) -> None:
        """Send the answers of ``req`` to the waiting cell."""
        self._send_answer(req.id, texts, error)
        self.progress.answered += 1
        self.progress.waiting = None

    def _send_answer(self, rid: int, texts: list[str], error: str | None) -> None:
        assert self.transport is not None
        self.transport.send(encode({"type": "answer", "id": rid, "texts": texts, "error": error}))

    def ping(self, timeout: float = PING_TIMEOUT) -> bool:
        """True if the worker, between cells, still reads and answers its channel."""
        if self.transport is None:
            return False
        try:
            self.transport.send(encode({"type": "ping"}))
            deadline = time.monotonic() + timeout
            while True:
                try:
                    if self._next(max(0.0, deadline - time.monotonic()), "ping")["type"] == "pong":
                        return True
                except ProtocolError:
                    continue  # a stray line: keep waiting for the pong
        except SandboxError:
            return False

    # -- replay ----------------------------------------------------------------------------
    def matches(self, cells: Sequence[dict[str, Any]]) -> bool:
        """True if this worker has executed exactly these completed cells (no fork, no restart)."""
        if self.transport is None or not self.transport.alive():
            return False
        want = [prompt_hash(c["code"]) for c in cells if not c.get("killed")]
        return self.progress.done == want

    def replay(
        self,
        cells: Sequence[dict[str, Any]],
        fresh: Callable[[SubRequest], list[str]],
    ) -> int:
        """Re-run completed ``cells`` in a new worker, serving sub-calls from their records.

        ``fresh`` answers a request that has no matching record (logged as a divergence).
        Returns the number of fresh calls that were needed (0 when the replay was exact).

        Two kinds of cells are not run again, each with a line in :attr:`replay_notes`: a cell
        that hit its (soft) timeout, which would only spend its whole timeout again; and a cell
        after which the worker no longer answers (one that closed the protocol's descriptors,
        say), found by a ping after each cell: the worker is restarted without it, so it cannot
        break every later cell.
        """
        self.replay_notes = []
        skip: set[int] = set()
        while True:
            try:
                return self._replay(cells, fresh, skip)
            except _Poisoned as exc:
                skip.add(exc.index)
                self.replay_notes.append(
                    f"cell {exc.index} was not replayed: the sandbox worker stopped answering after it ({exc.why}); "
                    "the variables it set are gone"
                )
                log.warning("replay: %s", self.replay_notes[-1])
                assert self._context is not None
                self.start()
                self.load_context(*self._context)

    def _replay(self, cells: Sequence[dict[str, Any]], fresh: Callable[[SubRequest], list[str]], skip: set[int]) -> int:
        fresh_calls = 0
        for c in cells:
            if c.get("killed"):
                continue  # its worker was killed mid-cell: its effects never existed
            if c.get("timed_out") or c["index"] in skip:
                if c.get("timed_out") and c["index"] not in skip:
                    skip.add(c["index"])
                    self.replay_notes.append(
                        f"cell {c['index']} was not replayed: it ran into its time limit; the variables it set are gone"
                    )
                self.progress.done.append(prompt_hash(c["code"]))
                continue
            recorded = [Recorded(r["hashes"], r["texts"], r.get("error")) for r in c.get("requests", [])]
            try:
                out = self.step(c["index"], c["code"], recorded)
                while isinstance(out, SubRequest):
                    fresh_calls += 1
                    try:
                        self.answer(out, fresh(out))
                    except SandboxError:
                        raise
                    except Exception as exc:  # a failing fresh call becomes an error inside the cell
                        self.answer(out, [], f"{type(exc).__name__}: {exc}")
                    out = self.step(c["index"], c["code"], recorded)
            except (WorkerCrashed, SandboxTimeout) as exc:
                raise _Poisoned(c["index"], type(exc).__name__) from exc
            if not self.ping():
                raise _Poisoned(c["index"], "no answer to a ping")
        return fresh_calls


class _Poisoned(Exception):
    """A replayed cell left the worker dead or deaf."""

    def __init__(self, index: int, why: str) -> None:
        super().__init__(index, why)
        self.index, self.why = index, why


def _lone_surrogate(code: str) -> str | None:
    """An error message if ``code`` holds a lone surrogate (text no UTF-8 encoder takes), else None."""
    try:
        code.encode("utf-8")
        return None
    except UnicodeEncodeError as exc:
        line = code.count("\n", 0, exc.start) + 1
        column = exc.start - (code.rfind("\n", 0, exc.start) + 1) + 1
        return (
            f"SyntaxError: the code holds a lone surrogate ({code[exc.start]!r}) at line {line}, column {column}: "
            "it is not valid Unicode text, so it was not run"
        )


class SessionPool:
    """Process-local live sessions, keyed by the run they belong to. The sandbox is not state."""

    def __init__(self) -> None:
        self._sessions: dict[str, SandboxSession] = {}
        self._lock = threading.Lock()

    def get(self, key: str) -> SandboxSession | None:
        with self._lock:
            return self._sessions.get(key)

    def put(self, key: str, session: SandboxSession) -> None:
        with self._lock:
            old = self._sessions.pop(key, None)
            self._sessions[key] = session
        if old is not None and old is not session:
            old.close()

    def discard(self, key: str) -> None:
        with self._lock:
            session = self._sessions.pop(key, None)
        if session is not None:
            session.close()

    def close_all(self) -> None:
        with self._lock:
            sessions = list(self._sessions.values())
            self._sessions.clear()
        for s in sessions:
            s.close()

    def __len__(self) -> int:
        return len(self._sessions)


#: The pool used by the graph's nodes.
POOL = SessionPool()
