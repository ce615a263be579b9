"""What the cloud backends (e2b, modal) share: a worker in a remote sandbox, reached through an SDK.

Each backend starts the worker its own way, uploads files its own way and frees its sandbox its
own way; the rest is written here once: the worker's output as bounded lines
(:class:`~rlm_graph.sandboxes.base.BoundedLines`), what the reader threads learn about the
worker's end and its last stderr (:class:`StreamState`), crash messages, liveness and file names.
"""

from __future__ import annotations

import abc
import collections
import threading
from pathlib import Path

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.base import END, BoundedLines, Transport

#: Stderr chunks kept for crash reports, and the characters kept of each.
ERR_TAIL_CHUNKS = 40
ERR_CHUNK_CHARS = 500


class StreamState:
    """What the reader threads learn about the worker: its exit and its last stderr chunks.

    It holds no reference to the transport, so a reader thread given only this (and the
    transport's :class:`BoundedLines`) does not keep an unclosed transport alive.
    """

    def __init__(self) -> None:
        self.exit: str | None = None
        self.done = threading.Event()
        self.err_tail: collections.deque[str] = collections.deque(maxlen=ERR_TAIL_CHUNKS)

    def stderr(self, text: str) -> None:
        """Keep one stderr chunk, cut to its last :data:`ERR_CHUNK_CHARS` characters."""
        self.err_tail.append(text[-ERR_CHUNK_CHARS:])

    def ended(self, exit: str, lines: BoundedLines) -> None:
        """Record how the worker ended and end its line stream.

        A line cut off by the worker's death is not a message, so it is dropped.
        """
        self.exit = exit
        self.done.set()
        lines.end()


class RemoteTransport(Transport):
    """A transport whose worker runs in a remote sandbox: :class:`~rlm_graph.sandboxes.e2b.E2BTransport`
    and :class:`~rlm_graph.sandboxes.modal.ModalTransport`.

    A subclass calls ``__init__`` with its (checked) work folder before it starts anything, feeds
    the worker's stdout to ``self._lines`` and its exit and stderr to ``self._state``, and
    implements :meth:`send`, :meth:`_upload` (one host file to one path in the sandbox) and
    :meth:`_stop` (free the sandbox).
    """

    def __init__(self, work_dir: str) -> None:
        self.work_dir = work_dir.rstrip("/") or "/"
        self._lines = BoundedLines()
        self._state = StreamState()
        self._closed = False

    @abc.abstractmethod
    def _upload(self, local_path: Path, remote: str) -> None:
        """Copy ``local_path`` to the absolute path ``remote`` inside the sandbox.

        Raises:
            SandboxError: the upload failed.
        """

    @abc.abstractmethod
    def _stop(self) -> None:
        """Stop the worker and free the sandbox; called once, by :meth:`close`. Never raises."""

    def receive(self, timeout: float | None) -> str | None:
        """Return the next line the worker wrote, or None if ``timeout`` seconds passed.

        Raises:
            WorkerCrashed: the worker exited (the message includes its last stderr).
            ProtocolError: in place of a line that was too long.
        """
        line = self._lines.get(timeout)
        if line is END:
            raise WorkerCrashed(self._crash_message())
        return line  # type: ignore[return-value]

    def _crash_message(self, detail: str = "") -> str:
        self._state.done.wait(2)  # give the reader a moment to record the exit status
        reason = self._state.exit or detail or "no exit status"
        tail = self.stderr_tail().strip()[-1500:]
        return f"the {self.kind} sandbox worker died ({reason})" + (f"; its last output:\n{tail}" if tail else "")

    def alive(self) -> bool:
        """True until the worker's output stream ends or the transport is closed."""
        return not (self._state.done.is_set() or self._closed)

    def stderr_tail(self) -> str:
        """The last stderr chunks the worker wrote (for crash reports)."""
        return "".join(self._state.err_tail)

    def put_file(self, local_path: Path, name: str) -> str:
        """Upload ``local_path`` into the work folder as ``name``; return its path in the sandbox.

        Raises:
            SandboxError: ``name`` is not a plain file name (or is the worker's), or the upload failed.
        """
        if Path(name).name != name or name in ("", ".", "..", "worker.py"):
            raise SandboxError(f"invalid sandbox file name {name!r}")
        remote = f"{self.work_dir}/{name}"
        self._upload(local_path, remote)
        return remote

    def close(self) -> None:
        """Stop the worker and free the sandbox. Safe to call twice."""
        if self._closed:
            return
        self._closed = True
        self._lines.close()
        self._stop()
