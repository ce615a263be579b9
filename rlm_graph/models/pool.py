"""A connection pool for the OpenAI SDK's sync client whose cost per request does not grow with the pool.

httpcore's ``ConnectionPool`` (what ``httpx.HTTPTransport`` sends every request through) keeps
its connections in one list and, twice per request (when the request is queued and when its
response is closed), walks that whole list under one lock: it checks every connection for
expiry (a ``poll`` system call per idle one) and looks for an idle one to hand out. A fan-out
keeps ``max_concurrency`` connections open, so each sub-call paid for ~2 x ``max_concurrency``
connection checks and a ``poll`` per idle connection; at concurrency 64 that was the largest
single item of the host's CPU per sub-call outside the model client, and it grows on a busy
machine, where more connections sit idle at each walk (docs/benchmarks.md, fan-out).

:class:`LeasePool` hands out the same httpcore connections (same sockets, TLS, keep-alive
expiry, socket options, HTTP/1.1 parsing) from a stack of idle ones per origin: a request takes
the most recently used idle connection (checked for expiry once), or opens one; closing its
response puts the connection back. Limits keep their meaning: at most ``max_connections`` open
(a request past it waits up to the pool timeout, then ``PoolTimeout``), at most
``max_keepalive_connections`` kept idle, idle ones dropped after ``keepalive_expiry``.

:func:`use_lease_pool` swaps it into a ``ChatOpenAI``'s sync client; everything above the pool
(the SDK's retries, timeouts, error mapping, the httpx client's headers and hooks) is unchanged.
The async client keeps httpcore's pool: the runner's sub-calls are sync calls on threads.
"""

from __future__ import annotations

import sys
import threading
import time
from collections.abc import Iterator
from typing import Any

__all__ = ["LeasePool", "lease_transport", "use_lease_pool"]

_Key = tuple[bytes, bytes, int]


class LeasePool:
    """An httpcore-compatible pool: ``handle_request(request) -> Response``, ``close()``.

    Args:
        core: the httpcore module the connections come from (``httpcore`` or ``httpcore2``:
            whichever the SDK's httpx uses).
        max_connections: most connections open at once (None: no cap).
        max_keepalive_connections: most idle connections kept for reuse (None: no cap).
        keepalive_expiry: seconds an idle connection is kept (None: until the server closes it).
        connection_options: passed to each ``core.HTTPConnection`` (ssl_context, socket_options,
            local_address, uds, retries, network_backend, http1, http2).
    """

    def __init__(
        self,
        core: Any,
        *,
        max_connections: int | None = None,
        max_keepalive_connections: int | None = None,
        keepalive_expiry: float | None = None,
        **connection_options: Any,
    ) -> None:
        self._core = core
        self._max_open = sys.maxsize if max_connections is None else int(max_connections)
        self._max_idle = self._max_open if max_keepalive_connections is None else min(self._max_open, int(max_keepalive_connections))
        self._expiry = keepalive_expiry
        self._options = connection_options
        self._idle: dict[_Key, list[Any]] = {}
        self._n_idle = 0
        self._n_open = 0
        self._closed = False
        self._lock = threading.Lock()
        self._freed = threading.Condition(self._lock)

    @property
    def open_connections(self) -> int:
        """Connections open now (in use or idle)."""
        return self._n_open

    @property
    def idle_connections(self) -> int:
        """Connections open and waiting for a request."""
        return self._n_idle

    def handle_request(self, request: Any) -> Any:
        """Send ``request`` on an idle connection to its origin, or on a new one."""
        url = request.url
        if url.scheme not in (b"http", b"https"):
            raise self._core.UnsupportedProtocol(f"unsupported URL scheme {url.scheme.decode(errors='replace')!r}")
        key: _Key = (url.scheme, url.host, int(url.port or (443 if url.scheme == b"https" else 80)))
        pool_timeout = (request.extensions.get("timeout") or {}).get("pool")
        while True:
            conn = self._take(key, url.origin, pool_timeout)
            try:
                response = conn.handle_request(request)
            except self._core.ConnectionNotAvailable:
                self._discard(conn)  # it stopped being usable between the check and the send
                continue
            except BaseException:
                self._discard(conn)
                raise
            return self._core.Response(
                status=response.status,
                headers=response.headers,
                content=_LeasedStream(response.stream, self, key, conn),
                extensions=response.extensions,
            )

    def _take(self, key: _Key, origin: Any, pool_timeout: float | None) -> Any:
        """An idle, unexpired connection for ``key``, else a new one (waiting for room under the cap)."""
        stale: list[Any] = []
        deadline = None if pool_timeout is None else time.monotonic() + pool_timeout
        try:
            with self._lock:
                while True:
                    if self._closed:
                        raise RuntimeError("the connection pool is closed")
                    stack = self._idle.get(key)
                    while stack:
                        conn = stack.pop()
                        self._n_idle -= 1
                        if conn.has_expired():  # kept too long, or the server hung up meanwhile
                            self._n_open -= 1
                            stale.append(conn)
                            continue
                        return conn
                    if self._n_open >= self._max_open and self._n_idle:
                        self._evict_one_idle(stale)  # an idle connection to another origin makes room
                    if self._n_open < self._max_open:
                        self._n_open += 1
                        return self._core.HTTPConnection(origin=origin, keepalive_expiry=self._expiry, **self._options)
                    left = None if deadline is None else deadline - time.monotonic()
                    if left is not None and left <= 0:
                        raise self._core.PoolTimeout(f"no connection free within the pool timeout ({pool_timeout} s)")
                    self._freed.wait(left)
        finally:
            for conn in stale:
                conn.close()

    def _evict_one_idle(self, stale: list[Any]) -> None:
        for stack in self._idle.values():
            if stack:
                stale.append(stack.pop(0))  # the oldest
                self._n_idle -= 1
                self._n_open -= 1
                return

    def _give_back(self, key: _Key, conn: Any) -> None:
        """Called when a response is closed: keep ``conn`` for the next request, or close it."""
        with self._lock:
            if not self._closed and conn.is_idle() and self._n_idle < self._max_idle:
                self._idle.setdefault(key, []).append(conn)
                self._n_idle += 1
                self._freed.notify()
                return
            self._n_open -= 1
            self._freed.notify()
        conn.close()

    def _discard(self, conn: Any) -> None:
        with self._lock:
            self._n_open -= 1
            self._freed.notify()
        conn.close()

    def close(self) -> None:
        """Close the idle connections; connections still in use close when their response does."""
        with self._lock:
            self._closed = True
            idle = [conn for stack in self._idle.values() for conn in stack]
            self._idle.clear()
            self._n_open -= len(idle)
            self._n_idle = 0
            self._freed.notify_all()
        for conn in idle:
            conn.close()

    def __enter__(self) -> LeasePool:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<LeasePool [{self._n_open} open, {self._n_idle} idle]>"


class _LeasedStream:
    """A response body that hands its connection back to the pool when closed."""

    def __init__(self, stream: Any, pool: LeasePool, key: _Key, conn: Any) -> None:
        self._stream = stream
        self._pool = pool
        self._key = key
        self._conn = conn
        self._closed = False

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._stream
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            if hasattr(self._stream, "close"):
                self._stream.close()  # the connection goes back to idle, or closes if the body was cut short
        finally:
            self._pool._give_back(self._key, self._conn)


def use_lease_pool(model: Any) -> bool:
    """Give ``model``'s sync HTTP client a :class:`LeasePool` (see :func:`lease_transport`).

    The client may be shared: langchain-openai builds one per (base URL, timeout, socket
    options) and hands it to every ``ChatOpenAI`` built with those, so all of them then share
    the lease pool, as they shared the pool it replaces. Returns whether ``model``'s client now
    sends through a lease pool.
    """
    root = getattr(model, "root_client", None)
    return lease_transport(getattr(getattr(root, "_client", None), "_transport", None))


def lease_transport(transport: Any) -> bool:
    """Swap an ``httpx.HTTPTransport``'s connection pool for a :class:`LeasePool` with its limits.

    Only a plain, unused HTTP/1.1 connection pool is replaced: a proxy's pool, an HTTP/2 one, a
    transport of the caller's own making (no ``_pool``), or a pool with connections open already
    is left as it is. Returns whether ``transport`` now sends through a lease pool.
    """
    old = getattr(transport, "_pool", None)
    if isinstance(old, LeasePool):
        return True
    if old is None or type(old).__name__ != "ConnectionPool" or getattr(old, "_http2", False):
        return False
    core = sys.modules.get(type(old).__module__.split(".", 1)[0])
    needed = ("_ssl_context", "_max_connections", "_max_keepalive_connections", "_keepalive_expiry", "_socket_options", "_connections")
    if core is None or not hasattr(core, "HTTPConnection") or not all(hasattr(old, name) for name in needed):
        return False  # an httpcore whose pool is built differently: keep it
    if old._connections:
        return False  # already in use: its connections stay where they are
    options = {
        "ssl_context": old._ssl_context,
        "socket_options": old._socket_options,
        "local_address": getattr(old, "_local_address", None),
        "uds": getattr(old, "_uds", None),
        "retries": getattr(old, "_retries", 0),
        "network_backend": getattr(old, "_network_backend", None),
    }
    transport._pool = LeasePool(
        core,
        max_connections=None if old._max_connections == sys.maxsize else old._max_connections,
        max_keepalive_connections=None if old._max_keepalive_connections == sys.maxsize else old._max_keepalive_connections,
        keepalive_expiry=old._keepalive_expiry,
        **options,
    )
    return True
