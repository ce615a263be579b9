"""A scripted OpenAI-compatible server on loopback for the overhead benchmarks (stdlib only).

A request whose first message is a system message is a root turn: it gets ``root(turn)``, where
``turn`` is the number of assistant messages already in the conversation, so the script does not
depend on which library sends it. Any other request is a sub-call and gets ``sub(prompt)``. Every
reply waits ``latency`` (root) or ``sub_latency`` (sub) seconds first; with 0 the server answers
as fast as it can.

Each request is recorded with its arrival and reply times on the system-wide monotonic clock, so
a benchmark can subtract the model's time from a client's wall time even when the client runs in
another process.

The HTTP side, :class:`ChatServer`, is shared with the tests' scripted server
(tests/scripted_server.py), which scripts its replies differently.
"""

from __future__ import annotations

import hashlib
import json
import socket
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar


@dataclass
class Request:
    """One chat request as the server saw it."""

    role: str  # "root" or "sub"
    key: str  # identifies the call: a repeat of a finished call has the same key
    n_messages: int
    arrived: float
    done: float = 0.0
    delivered: bool = False
    tail: str = ""  # the end of the last few messages (what the client was last shown)
    sent: float = 0.0  # when writing the reply ended, delivered or not (0.0: not yet)

    @property
    def seconds(self) -> float:
        return self.done - self.arrived


def _call_key(role: str, messages: list[dict[str, Any]]) -> str:
    last = str(messages[-1].get("content")) if messages else ""
    digest = hashlib.sha256(last.encode("utf-8", "replace")).hexdigest()[:16]
    return f"{role}:{len(messages)}:{digest}"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 512  # a 256-wide fan-out connects all at once (the default backlog is 5)
    quiet = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        if not self.quiet:
            super().handle_error(request, client_address)
        # else: a client killed mid-request (the resume scenario does it on purpose) is not an error


@dataclass
class Reply:
    """What :meth:`ChatServer.reply` sends back: a JSON body, its status and extra headers."""

    status: int
    body: bytes
    headers: dict[str, str] | None = None
    sent: Callable[[bool], None] | None = None  # told whether the client got the whole reply


_S = TypeVar("_S", bound="ChatServer")


class ChatServer:
    """The HTTP side of a scripted OpenAI-compatible server on ``127.0.0.1``; use as a context manager.

    ``GET`` lists one model, ``scripted``; ``POST`` hands the JSON body to :meth:`reply`, which a
    subclass writes, and sends what it returns, in one write (see ``split_writes``) with Nagle's
    algorithm off. The listen backlog is 512, for wide fan-outs; HTTP/1.1 keep-alive; a thread
    per connection.

    Args:
        port: the port to listen on (default: a free one); ``.port`` and ``.base_url`` say which.
        quiet: stay silent about a request that fails past the reply (such as a client killed
            mid-request) instead of printing its traceback on stderr.
        split_writes: send the headers and the body in two writes. The first write to a client
            that has died still succeeds (the kernel takes it), the second fails: so a reply to a
            killed client is reported undelivered, at the cost of one more segment.
    """

    def __init__(self, *, port: int = 0, quiet: bool = True, split_writes: bool = False) -> None:
        self.split_writes = split_writes
        self.httpd = _Server(("127.0.0.1", port), self._handler())
        self.httpd.quiet = quiet
        #: ``client.address``: the (host, port) of the client whose request this thread is answering
        self.client = threading.local()
        self.port = self.httpd.server_address[1]
        self.base_url = f"http://127.0.0.1:{self.port}/v1"
        self._thread: threading.Thread | None = None

    def reply(self, body: dict[str, Any]) -> Reply:
        """The reply to one chat request (its parsed JSON body)."""
        raise NotImplementedError

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def setup(self) -> None:
                super().setup()
                # Without this, Nagle's algorithm and the client's delayed ACK add ~40 ms to
                # every reply on loopback, which would swamp the overhead being measured.
                self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                self._send(200, json.dumps({"object": "list", "data": [{"id": "scripted", "object": "model"}]}).encode())

            def do_POST(self) -> None:
                body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
                server.client.address = self.client_address
                reply = server.reply(body)
                try:
                    self._send(reply.status, reply.body, reply.headers)
                    delivered = True
                except OSError:  # the client died before reading its reply
                    delivered = False
                if reply.sent is not None:
                    reply.sent(delivered)

            def _send(self, status: int, data: bytes, headers: dict[str, str] | None = None) -> None:
                try:
                    reason = HTTPStatus(status).phrase
                except ValueError:
                    reason = ""
                head = f"HTTP/1.1 {status} {reason}\r\n"
                for key, value in (headers or {}).items():
                    head += f"{key}: {value}\r\n"
                head += f"Content-Type: application/json\r\nContent-Length: {len(data)}\r\n\r\n"
                if server.split_writes:
                    self.wfile.write(head.encode())
                    self.wfile.write(data)
                else:
                    self.wfile.write(head.encode() + data)  # one write: one segment
                self.wfile.flush()

        return Handler

    def start(self: _S) -> _S:
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()

    def __enter__(self: _S) -> _S:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()


class LoopbackServer(ChatServer):
    """Serve ``/v1/chat/completions`` from a script; use as a context manager.

    Args:
        root: ``root(turn) -> reply text`` for root turns.
        sub: ``sub(prompt) -> reply text`` for sub-calls (default: a short echo).
        latency: seconds each root reply waits.
        sub_latency: seconds each sub-call reply waits (default: ``latency``).
        on_arrival: called with each :class:`Request` as it arrives (e.g. to kill a client).
        split_writes: write each reply's headers and body separately, so that a reply to a client
            killed before it was written is recorded ``delivered=False`` (see :class:`ChatServer`).
            Off by default: the timing scenarios keep one segment per reply.
    """

    def __init__(
        self,
        root: Callable[[int], str],
        sub: Callable[[str], str] | None = None,
        *,
        latency: float = 0.0,
        sub_latency: float | None = None,
        on_arrival: Callable[[Request], None] | None = None,
        split_writes: bool = False,
    ) -> None:
        self.root = root
        self.sub = sub or (lambda prompt: "ok " + prompt[:24])
        self.latency = latency
        self.sub_latency = latency if sub_latency is None else sub_latency
        self.on_arrival = on_arrival
        self.requests: list[Request] = []
        self.lock = threading.Lock()
        super().__init__(split_writes=split_writes)

    def reply(self, body: dict[str, Any]) -> Reply:
        record, payload = self.answer(body)

        def sent(delivered: bool) -> None:
            record.delivered = delivered
            record.sent = time.monotonic()

        return Reply(200, json.dumps(payload).encode(), sent=sent)

    def answer(self, body: dict[str, Any]) -> tuple[Request, dict[str, Any]]:
        """Build the reply to one request and record it."""
        messages = body.get("messages") or []
        role = "root" if messages and messages[0].get("role") == "system" else "sub"
        recent = "\n".join(str(m.get("content")) for m in messages[-3:])  # rlms puts a turn prompt after the output
        record = Request(role, _call_key(role, messages), len(messages), time.monotonic(), tail=recent[-1000:])
        with self.lock:
            self.requests.append(record)
        if self.on_arrival is not None:
            self.on_arrival(record)
        if role == "root":
            turn = sum(1 for m in messages if m.get("role") == "assistant")
            text, delay = self.root(turn), self.latency
        else:
            text, delay = self.sub(str(messages[-1].get("content")) if messages else ""), self.sub_latency
        if delay:
            time.sleep(delay)
        record.done = time.monotonic()
        n_in = sum(len(str(m.get("content", ""))) for m in messages) // 4
        n_out = max(1, len(text) // 4)
        payload = {
            "id": "chatcmpl-loopback",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": n_in, "completion_tokens": n_out, "total_tokens": n_in + n_out},
        }
        return record, payload

    def settle(self, timeout: float = 10.0) -> bool:
        """Wait until every request so far has had its reply written (or failed); False on timeout."""
        deadline = time.monotonic() + timeout
        while True:
            with self.lock:
                pending = any(not r.sent for r in self.requests)
            if not pending:
                return True
            if time.monotonic() >= deadline:
                return False
            time.sleep(0.005)

    def between(self, start: float, end: float) -> list[Request]:
        """Requests that arrived in ``[start, end]``."""
        with self.lock:
            return [r for r in self.requests if start <= r.arrived <= end]
