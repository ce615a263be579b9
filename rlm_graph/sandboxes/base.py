"""The transport contract every sandbox backend implements.

A transport only starts the worker (``worker.py``) somewhere and moves JSON lines to and
from it. Everything else (contexts, cells, sub-calls, replay) lives above it, in
:mod:`rlm_graph.sandboxes.session`, and is written once for all backends.
"""

from __future__ import annotations

import abc
import collections
import threading
import time
from pathlib import Path
from types import TracebackType

from rlm_graph.errors import ProtocolError
from rlm_graph.sandboxes.protocol import MAX_MESSAGE_BYTES


class Transport(abc.ABC):
    """A bidirectional line channel to one running worker process.

    Implementations: :class:`~rlm_graph.sandboxes.local.LocalTransport`,
    :class:`~rlm_graph.sandboxes.docker.DockerTransport`,
    :class:`~rlm_graph.sandboxes.e2b.E2BTransport`, :class:`~rlm_graph.sandboxes.modal.ModalTransport`.
    """

    #: Short backend name used in logs and trajectories ("local", "docker", "e2b", "modal").
    kind: str = "abstract"

    @abc.abstractmethod
    def send(self, line: str) -> None:
        """Write one JSON line (without the trailing newline) to the worker's stdin.

        Raises:
            WorkerCrashed: the worker is gone.
        """

    @abc.abstractmethod
    def receive(self, timeout: float | None) -> str | None:
        """Return the next line the worker wrote, or None if ``timeout`` seconds passed.

        Raises:
            WorkerCrashed: the worker exited (the message includes its last stderr lines).
        """

    @abc.abstractmethod
    def close(self) -> None:
        """Stop the worker and free its resources. Safe to call twice."""

    @abc.abstractmethod
    def put_file(self, local_path: Path, name: str) -> str:
        """Make a host file readable by the worker; return the path the worker sees."""

    def alive(self) -> bool:
        """True while the worker process runs."""
        return True

    def stderr_tail(self) -> str:
        """The last lines the worker wrote on stderr (for crash reports)."""
        return ""

    def __enter__(self) -> "Transport":
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()


#: What :meth:`BoundedLines.get` returns once the stream has ended (and keeps returning).
END = object()

#: Bytes of bookkeeping counted for each queued line, so a flood of empty lines is bounded too.
_LINE_OVERHEAD = 64


class BoundedLines:
    """The lines of a worker's output stream, read in bounded memory (one per transport).

    A reader thread calls :meth:`feed` with each chunk it receives and :meth:`end` at the end of
    the stream; the session's thread calls :meth:`get`. Two bounds hold whatever the worker writes:

    - a line longer than ``max_line_bytes`` is dropped as it streams in (never held whole), and
      :meth:`get` raises a :class:`ProtocolError` in its place;
    - at most ``max_buffered_bytes`` of complete lines wait to be read: past that, :meth:`feed`
      blocks, so the reader stops reading and the worker's own writes block (back-pressure).

    A line cut off by the end of the stream is not a message and is dropped.
    """

    def __init__(self, max_line_bytes: int = MAX_MESSAGE_BYTES, max_buffered_bytes: int | None = None) -> None:
        self.max_line_bytes = max_line_bytes
        self.max_buffered_bytes = max_buffered_bytes or max_line_bytes
        self._items: collections.deque[tuple[str | ProtocolError, int]] = collections.deque()
        self._buffered = 0
        self._partial = bytearray()
        self._dropping = 0  # bytes of an oversized line dropped so far (0: not dropping)
        self._ended = False
        self._closed = False
        self._cond = threading.Condition()

    def feed(self, data: bytes) -> None:
        """Add a chunk of the stream; blocks while too much is waiting to be read."""
        start = 0
        while start < len(data) and not self._closed:
            newline = data.find(b"\n", start)
            stop = len(data) if newline < 0 else newline
            if self._dropping:
                self._dropping += stop - start
            elif len(self._partial) + stop - start > self.max_line_bytes:
                self._dropping = len(self._partial) + stop - start
                self._partial = bytearray()
            else:
                self._partial += data[start:stop]
            if newline < 0:
                return
            if self._dropping:
                n = self._dropping
                self._dropping = 0
                self._put(ProtocolError(f"a message of more than {self.max_line_bytes:,} bytes ({n:,}); it was dropped"), _LINE_OVERHEAD)
            else:
                line = self._partial.decode("utf-8", "replace")
                self._partial = bytearray()
                self._put(line, len(line) + _LINE_OVERHEAD)
            start = newline + 1

    def _put(self, item: str | ProtocolError, size: int) -> None:
        with self._cond:
            while self._buffered and self._buffered + size > self.max_buffered_bytes and not self._closed:
                self._cond.wait()
            if self._closed:
                return
            self._items.append((item, size))
            self._buffered += size
            self._cond.notify_all()

    def end(self) -> None:
        """The stream ended: :meth:`get` returns :data:`END` once the queued lines are read."""
        with self._cond:
            self._ended = True
            self._partial = bytearray()
            self._cond.notify_all()

    def close(self) -> None:
        """Stop accepting lines and wake a blocked :meth:`feed` (the transport is closing)."""
        with self._cond:
            self._closed = self._ended = True
            self._items.clear()
            self._buffered = 0
            self._cond.notify_all()

    def get(self, timeout: float | None) -> str | object | None:
        """The next line, :data:`END` after the last one, or None when ``timeout`` seconds pass.

        Raises:
            ProtocolError: in place of a line that was too long.
        """
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._cond:
            while not self._items:
                if self._ended:
                    return END
                left = None if deadline is None else deadline - time.monotonic()
                if left is not None and left <= 0:
                    return None
                self._cond.wait(left)
            item, size = self._items.popleft()
            self._buffered -= size
            self._cond.notify_all()
        if isinstance(item, ProtocolError):
            raise item
        return item
