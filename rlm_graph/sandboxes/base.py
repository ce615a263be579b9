"""The transport contract every sandbox backend implements.

A transport only starts the worker (``worker.py``) somewhere and moves JSON lines to and
from it. Everything else (contexts, cells, sub-calls, replay) lives above it, in
:mod:`rlm_graph.sandboxes.session`, and is written once for all backends.
"""

from __future__ import annotations

import abc
from pathlib import Path
from types import TracebackType


class Transport(abc.ABC):
    """A bidirectional line channel to one running worker process.

    Implementations: :class:`~rlm_graph.sandboxes.local.LocalTransport`,
    :class:`~rlm_graph.sandboxes.docker.DockerTransport`,
    :class:`~rlm_graph.sandboxes.e2b.E2BTransport`.
    """

    #: Short backend name used in logs and trajectories ("local", "docker", "e2b").
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
