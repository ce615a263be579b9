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
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_graph.errors import ContextError, ProtocolError, SandboxError, SandboxTimeout
from rlm_graph.sandboxes.base import Transport
from rlm_graph.sandboxes.protocol import CellResult, SubRequest, decode, encode, prompt_hash

log = logging.getLogger("rlm_graph.sandbox")

#: Extra seconds the host waits past the worker's own (soft) cell timeout before killing it.
HARD_TIMEOUT_GRACE = 5.0


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


class SandboxSession:
    """A worker reached through a transport, plus the bookkeeping to run and replay cells.

    Args:
        factory: makes a new transport (a started worker); called again after a crash.
        cell_timeout: seconds a cell may run (time spent waiting for sub-calls excluded).
        max_output_chars: the worker keeps this many characters of a cell's output (head and tail).
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
        self._context: tuple[Path, str] | None = None
        self.lock = threading.Lock()

    # -- lifecycle -------------------------------------------------------------------------
    def start(self) -> None:
        """Start a fresh worker and wait for its ready message."""
        self.close()
        self.transport = self._factory()
        self.progress = _Progress()
        msg = self._next(self.startup_timeout, "start")
        if msg["type"] != "ready":
            raise ProtocolError(f"worker did not say ready: {msg}")

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
        assert self.transport is not None
        line = self.transport.receive(timeout)
        if line is None:
            raise SandboxTimeout(f"the sandbox worker did not answer within {timeout:.0f} s ({what})")
        return decode(line)

    # -- context ---------------------------------------------------------------------------
    def load_context(self, path: Path, fmt: str = "auto") -> dict[str, Any]:
        """Make ``path`` visible to the worker and load it as ``context``; return its metadata."""
        if self.transport is None:
            self.start()
        assert self.transport is not None
        self._context = (path, fmt)
        worker_path = self.transport.put_file(path, "context" + "".join(path.suffixes[-1:]))
        self.transport.send(encode({"type": "load_context", "path": worker_path, "format": fmt}))
        msg = self._next(None, "load context")
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
            p.cell, p.answered, p.waiting = cell, 0, None
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
        deadline = self.cell_timeout + HARD_TIMEOUT_GRACE if self.cell_timeout else None
        while True:
            try:
                msg = self._next(deadline, f"cell {cell}")
            except SandboxTimeout:
                self.close()
                p.cell = None
                raise SandboxTimeout(
                    f"cell {cell} ran past {self.cell_timeout:.0f} s and did not stop; the worker was killed"
                ) from None
            if msg["type"] == "request":
                req = SubRequest(
                    id=int(msg["id"]),
                    kind=str(msg.get("kind", "llm")),
                    prompts=[str(x) for x in msg.get("prompts") or []],
                    contexts=msg.get("contexts"),
                    ordinal=p.answered,
                )
                p.waiting = req
                if not self._answer_from_record(req, recorded):
                    return req
                continue
            if msg["type"] == "result":
                p.cell, p.waiting = None, None
                p.done.append(prompt_hash(code))
                return CellResult.from_message(msg)
            raise ProtocolError(f"unexpected message during cell {cell}: {msg}")

    def _answer_from_record(self, req: SubRequest, recorded: Sequence[Recorded]) -> bool:
        p = self.progress
        if req.ordinal >= len(recorded):
            return False
        rec = recorded[req.ordinal]
        if rec.hashes != req.hashes:
            log.warning(
                "replay diverged at cell %s request %d: the prompts differ from the record; calling fresh",
                p.cell,
                req.ordinal,
            )
            return False
        self.answer(req, rec.texts, rec.error)
        return True

    def answer(self, req: SubRequest, texts: list[str], error: str | None = None) -> None:
        """Send the answers of ``req`` to the waiting cell."""
        assert self.transport is not None
        self.transport.send(encode({"type": "answer", "id": req.id, "texts": texts, "error": error}))
        self.progress.answered += 1
        self.progress.waiting = None

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
        """
        fresh_calls = 0
        for c in cells:
            if c.get("killed"):
                continue  # its worker was killed mid-cell: its effects never existed
            recorded = [Recorded(r["hashes"], r["texts"], r.get("error")) for r in c.get("requests", [])]
            out = self.step(c["index"], c["code"], recorded)
            while isinstance(out, SubRequest):
                fresh_calls += 1
                try:
                    self.answer(out, fresh(out))
                except Exception as exc:  # a failing fresh call becomes an error inside the cell
                    self.answer(out, [], f"{type(exc).__name__}: {exc}")
                out = self.step(c["index"], c["code"], recorded)
        return fresh_calls


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
