"""Serving an RLM to other programs: an OpenAI-compatible HTTP API (and an MCP server, see
:mod:`rlm_graph.mcp_server`).

``rlm-graph serve`` is :func:`create_app` plus :func:`run_app`; both work from Python too::

    from rlm_graph import RLM
    from rlm_graph.serve import ServeSettings, create_app, listen, run_app

    app = create_app(RLM("qwen", base_url="http://127.0.0.1:8080/v1"), ServeSettings(api_key="secret"))
    run_app(app, listen("127.0.0.1", 8300))

Starlette and uvicorn come with the ``serve`` extra; they are imported when an app is built.
See docs/serve.md.
"""

from __future__ import annotations

import socket
from typing import Any

from rlm_graph.errors import ConfigurationError
from rlm_graph.serve.app import ServeSettings, create_app
from rlm_graph.serve.requests import ChatRequest, RequestError, parse_chat_request

__all__ = ["ChatRequest", "RequestError", "ServeSettings", "create_app", "listen", "parse_chat_request", "run_app"]

#: Hosts that only this machine can reach.
LOOPBACK = ("127.0.0.1", "::1", "localhost")


def listen(host: str, port: int) -> socket.socket:
    """A listening socket on ``host:port`` (port 0: any free port; read it with ``getsockname()``).

    Raises:
        ConfigurationError: the address is taken or cannot be bound.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
        sock.listen(512)
    except OSError as exc:
        sock.close()
        raise ConfigurationError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from exc
    return sock


def run_app(app: Any, sock: socket.socket, *, log_level: str = "warning") -> None:
    """Serve ``app`` with uvicorn on ``sock`` until interrupted (Ctrl-C or SIGTERM)."""
    try:
        import uvicorn
    except ImportError as exc:
        raise ConfigurationError("serving needs uvicorn and starlette: pip install 'rlm-graph[serve]'") from exc
    config = uvicorn.Config(app, log_level=log_level, lifespan="off", timeout_graceful_shutdown=5)
    uvicorn.Server(config).run(sockets=[sock])
