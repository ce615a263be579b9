"""A stdlib HTTP server for the trajectory viewer: one page, its script and style, and the logs.

Routes: ``/`` (the page), ``/app.js``, ``/app.css``, ``/api/logs`` (the ``.jsonl`` files it may
serve, newest first) and ``/api/log?name=...`` (one of them, as text). Only files found under the
target are served, by their listed name, so nothing else on the disk is reachable. The page parses
logs in the browser, which is also how it opens a file picked or dropped by the user.
"""

from __future__ import annotations

import json
import sys
import threading
import webbrowser
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlparse

from rlm_graph.errors import ConfigurationError

_ASSETS = {
    "/": ("index.html", "text/html; charset=utf-8"),
    "/index.html": ("index.html", "text/html; charset=utf-8"),
    "/app.js": ("app.js", "text/javascript; charset=utf-8"),
    "/app.css": ("app.css", "text/css; charset=utf-8"),
}

#: Where ``rlm-graph viz`` looks when given no target.
DEFAULT_DIRS = ("logs", ".")


def _asset(name: str) -> bytes:
    return resources.files("rlm_graph.viz").joinpath(name).read_bytes()


def resolve_target(target: str | Path | None) -> Path:
    """The file or directory to serve: ``target``, else ``./logs`` if it exists, else ``.``."""
    if target is None:
        for candidate in DEFAULT_DIRS:
            if Path(candidate).is_dir():
                return Path(candidate).resolve()
    path = Path(str(target)).expanduser()
    if not path.exists():
        raise ConfigurationError(f"no log file or directory at {path}")
    return path.resolve()


class ViewerServer(ThreadingHTTPServer):
    """The viewer's HTTP server. ``url`` is where to point a browser; stop it with ``shutdown()``."""

    daemon_threads = True
    target: Path

    @property
    def url(self) -> str:
        host, port = self.server_address[:2]
        name = host.decode() if isinstance(host, bytes) else host
        return f"http://{name}:{port}/"

    def logs(self) -> dict[str, Path]:
        """The logs it may serve, by name (a path relative to the target), newest first."""
        if self.target.is_file():
            return {self.target.name: self.target}
        found = [p for p in self.target.rglob("*.jsonl") if p.is_file() and not any(part.startswith(".") for part in p.relative_to(self.target).parts)]
        found.sort(key=lambda p: p.stat().st_mtime, reverse=True)
        return {p.relative_to(self.target).as_posix(): p for p in found[:500]}


class _Handler(BaseHTTPRequestHandler):
    server: ViewerServer
    protocol_version = "HTTP/1.1"

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.end_headers()
        self.wfile.write(body)

    def _json(self, payload: Any, status: int = 200) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def do_GET(self) -> None:
        url = urlparse(self.path)
        if url.path in _ASSETS:
            name, kind = _ASSETS[url.path]
            self._send(200, _asset(name), kind)
        elif url.path == "/api/logs":
            logs = self.server.logs()
            rows = [{"name": n, "size": p.stat().st_size, "mtime": p.stat().st_mtime} for n, p in logs.items()]
            self._json({"target": str(self.server.target), "logs": rows, "default": rows[0]["name"] if rows else None})
        elif url.path == "/api/log":
            name = (parse_qs(url.query).get("name") or [""])[0]
            path = self.server.logs().get(name)
            if path is None:
                self._json({"error": f"no log named {name!r}"}, HTTPStatus.NOT_FOUND)
                return
            self._send(200, path.read_bytes(), "application/x-ndjson; charset=utf-8")
        elif url.path == "/favicon.ico":
            self._send(204, b"", "image/x-icon")
        else:
            self._json({"error": "not found"}, HTTPStatus.NOT_FOUND)


def make_server(target: str | Path | None = None, *, port: int = 3001, host: str = "127.0.0.1") -> ViewerServer:
    """A viewer server bound to ``host:port`` (``port=0`` picks a free one), not yet serving.

    Args:
        target: a ``.jsonl`` log, or a directory searched for them (default ``./logs``, else ``.``).
        port: the TCP port.
        host: the interface; the default serves this machine only.

    Raises:
        ConfigurationError: the target does not exist, or the port is taken.

    Example:
        >>> srv = make_server("logs", port=0)  # doctest: +SKIP
        >>> threading.Thread(target=srv.serve_forever, daemon=True).start()  # doctest: +SKIP
        >>> srv.url  # doctest: +SKIP
        'http://127.0.0.1:40123/'
    """
    resolved = resolve_target(target)
    try:
        server = ViewerServer((host, port), _Handler)
    except OSError as exc:
        raise ConfigurationError(f"cannot listen on {host}:{port} ({exc.strerror or exc}); pick another --port") from exc
    server.target = resolved
    return server


def serve(target: str | Path | None = None, *, port: int = 3001, host: str = "127.0.0.1", open_browser: bool = False) -> None:
    """Serve the trajectory viewer until Ctrl+C.

    Args:
        target: a ``.jsonl`` log, or a directory searched for them (default ``./logs``, else ``.``).
        port: the TCP port (default 3001).
        host: the interface (default 127.0.0.1, this machine only).
        open_browser: open the page in the default browser.

    Raises:
        ConfigurationError: the target does not exist, or the port is taken.
    """
    server = make_server(target, port=port, host=host)
    print(f"rlm-graph viz: {server.target} at {server.url} (Ctrl+C to stop)", file=sys.stderr)
    if open_browser:
        threading.Timer(0.3, webbrowser.open, args=(server.url,)).start()
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
