"""Sandboxes: one stdlib worker (``worker.py``) reached through interchangeable transports.

``local`` (a subprocess), ``docker`` (a container), ``e2b`` (an E2B cloud sandbox) and ``modal`` (a
Modal sandbox) only start the worker and move JSON lines;
:class:`~rlm_graph.sandboxes.session.SandboxSession` does the rest.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from rlm_graph.errors import ConfigurationError
from rlm_graph.sandboxes.base import Transport
from rlm_graph.sandboxes.session import POOL, SandboxSession

SANDBOX_KINDS = ("local", "docker", "e2b", "modal")

__all__ = ["POOL", "SANDBOX_KINDS", "SandboxSession", "Transport", "transport_factory"]


def transport_factory(sandbox: str | Callable[[], Transport], options: dict[str, Any] | None = None) -> Callable[[], Transport]:
    """A zero-argument callable that starts a worker of the given kind.

    Raises:
        ConfigurationError: unknown sandbox kind.
    """
    opts = dict(options or {})
    if callable(sandbox):
        return sandbox
    if sandbox == "local":
        from rlm_graph.sandboxes.local import LocalTransport

        return lambda: LocalTransport(**opts)
    if sandbox == "docker":
        from rlm_graph.sandboxes.docker import DockerTransport

        return lambda: DockerTransport(**opts)
    if sandbox == "e2b":
        from rlm_graph.sandboxes.e2b import E2BTransport

        return lambda: E2BTransport(**opts)
    if sandbox == "modal":
        from rlm_graph.sandboxes.modal import ModalTransport

        return lambda: ModalTransport(**opts)
    raise ConfigurationError(f"unknown sandbox {sandbox!r}: use one of {', '.join(SANDBOX_KINDS)}")
