"""Fixtures shared by the viewer tests: viewer servers on loopback."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from typing import Any

import pytest

from rlm_graph.viz import ViewerServer, make_server


@pytest.fixture
def serve() -> Iterator[Any]:
    """``serve(target)`` starts a ViewerServer for a log file or folder on a free port, in a
    thread; all are shut down after the test."""
    servers: list[ViewerServer] = []

    def start(target: Any) -> ViewerServer:
        srv = make_server(target, port=0)
        threading.Thread(target=srv.serve_forever, daemon=True).start()
        servers.append(srv)
        return srv

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()
