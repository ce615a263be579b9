"""The benchmarks' loopback server: root/sub routing by conversation shape, turn counting, timing records."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import threading

import httpx
import pytest

from rlm_graph.bench.loopback import LoopbackServer
from rlm_graph.bench.scenarios import resume_server


def _chat(url: str, messages: list[dict[str, str]]) -> dict:
    r = httpx.post(url + "/chat/completions", json={"model": "m", "messages": messages}, timeout=10)
    r.raise_for_status()
    return r.json()


def test_root_turns_follow_the_conversation_and_subs_get_their_own_reply() -> None:
    with LoopbackServer(lambda turn: f"turn {turn}", sub=lambda p: p.upper()) as srv:
        system = {"role": "system", "content": "you are an RLM"}
        first = _chat(srv.base_url, [system, {"role": "user", "content": "q"}])
        second = _chat(srv.base_url, [system, {"role": "user", "content": "q"}, {"role": "assistant", "content": "a"}, {"role": "user", "content": "out"}])
        sub = _chat(srv.base_url, [{"role": "user", "content": "hello"}])
    assert first["choices"][0]["message"]["content"] == "turn 0"
    assert second["choices"][0]["message"]["content"] == "turn 1"
    assert sub["choices"][0]["message"]["content"] == "HELLO"
    assert [r.role for r in srv.requests] == ["root", "root", "sub"]
    assert all(r.delivered and r.done >= r.arrived for r in srv.requests)
    assert first["usage"]["total_tokens"] > 0


def test_latency_is_applied_and_recorded_and_the_same_call_has_the_same_key() -> None:
    with LoopbackServer(lambda turn: "x", latency=0.05, sub_latency=0.0) as srv:
        msgs = [{"role": "system", "content": "s"}, {"role": "user", "content": "q"}]
        _chat(srv.base_url, msgs)
        _chat(srv.base_url, msgs)
        _chat(srv.base_url, [{"role": "user", "content": "p"}])
    root1, root2, sub = srv.requests
    assert root1.seconds >= 0.05 and sub.seconds < 0.05
    assert root1.key == root2.key != sub.key
    assert srv.between(root1.arrived, root1.arrived) == [root1]



class _Vanish:
    """``on_arrival`` for a server: holds the first request's reply until its client is gone."""

    def __init__(self) -> None:
        self.arrived, self.gone = threading.Event(), threading.Event()

    def __call__(self, req: object) -> None:
        if not self.arrived.is_set():
            self.arrived.set()
            assert self.gone.wait(10)


def _call_then_vanish(srv: LoopbackServer, hold: _Vanish, how: str) -> None:
    """A client on a real socket posts a sub-call and, once the server has it and before the reply is
    written, goes away: closes its socket, or is a process killed with SIGKILL (as in the resume scenario)."""
    body = json.dumps({"model": "m", "messages": [{"role": "user", "content": "item 7"}]}).encode()
    raw = b"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
    raw += b"Content-Length: %d\r\n\r\n" % len(body) + body
    if how == "closed":
        sock = socket.create_connection(("127.0.0.1", srv.port), timeout=5)
        sock.sendall(raw)
        assert hold.arrived.wait(5)
        sock.close()
        hold.gone.set()
        return
    code = f"import socket, sys, time\ns = socket.create_connection(('127.0.0.1', {srv.port}))\ns.sendall({raw!r})\ntime.sleep(30)"
    proc = subprocess.Popen([sys.executable, "-c", code])
    try:
        assert hold.arrived.wait(10)
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(5)  # reaped: its socket is closed
        hold.gone.set()


@pytest.mark.parametrize("how", ["closed", "killed"])
def test_resume_server_records_a_reply_to_a_client_gone_before_it_as_undelivered(how: str) -> None:
    hold = _Vanish()
    with resume_server(lambda turn: "x", on_arrival=hold) as srv:
        assert srv.split_writes  # the resume scenario's server, as measure_resume builds it
        _call_then_vanish(srv, hold, how)
        stayed = _chat(srv.base_url, [{"role": "user", "content": "item 8"}])
        assert srv.settle(5)
    gone, answered = srv.requests
    assert stayed["choices"][0]["message"]["content"] == "ok item 8"
    assert gone.sent >= gone.done > gone.arrived  # its reply was written (and failed) ...
    assert not gone.delivered  # ... so it does not count as answered before the kill
    assert answered.delivered and answered.sent >= answered.done


def test_one_write_servers_count_a_reply_to_a_closed_client_as_delivered() -> None:
    """Why the resume scenario needs split writes: the kernel takes the first write to a closed peer."""
    hold = _Vanish()
    with LoopbackServer(lambda turn: "x", on_arrival=hold) as srv:
        assert not srv.split_writes  # what the timing scenarios use: one segment per reply
        _call_then_vanish(srv, hold, "closed")
        assert srv.settle(5)
    (gone,) = srv.requests
    assert gone.delivered and gone.sent >= gone.done
