"""The lease pool: connections reused across concurrent calls, limits and failures as httpcore's pool has them."""

from __future__ import annotations

import sys
import threading
import time
from typing import Any

import pytest
from langchain_core.messages import HumanMessage

from rlm_graph.errors import ModelError
from rlm_graph.models import resolve_model
from rlm_graph.models.calls import call_model
from rlm_graph.models.pool import LeasePool, lease_transport, use_lease_pool
from tests.scripted_server import ScriptedServer


def _record_clients(srv: ScriptedServer) -> list[Any]:
    """The client address (host, port) of each request: one port per connection."""
    seen: list[Any] = []
    handle = srv.handle

    def record(body: dict[str, Any]) -> Any:
        seen.append(srv.client.address)
        return handle(body)

    srv.handle = record  # type: ignore[method-assign]
    return seen


def _pool(model: Any) -> Any:
    return model.root_client._client._transport._pool


def _httpx(model: Any) -> Any:
    """The httpx module the SDK's client is built on (``httpx`` or ``httpx2``)."""
    return sys.modules[type(model.root_client._client._transport).__module__.split(".", 1)[0]]


def _swap(model: Any, **limits: Any) -> LeasePool:
    """Put a fresh lease pool with ``limits`` (and the current pool's TLS and socket options) on ``model``'s client."""
    old = _pool(model)
    pool = LeasePool(old._core, **old._options, **limits)
    model.root_client._client._transport._pool = pool
    return pool


def test_a_built_model_sends_through_the_lease_pool_and_reuses_its_connections(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok", sub_delay=0.05)
    clients = _record_clients(srv)
    model = resolve_model("m", base_url=srv.base_url, max_retries=0).model
    assert isinstance(_pool(model), LeasePool)
    width, rounds = 8, 3
    gate = threading.BoundedSemaphore(width)
    replies: list[str] = []

    def one(i: int) -> None:
        with gate:
            replies.append(call_model(model, [HumanMessage(f"p{i}")], label="m").text)

    threads = [threading.Thread(target=one, args=(i,)) for i in range(width * rounds)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert replies == ["ok"] * (width * rounds)
    assert len(set(clients)) <= width < len(clients)  # at most one connection per call in flight, then reused
    pool = _pool(model)
    assert pool.open_connections == pool.idle_connections == len(set(clients))


def test_models_on_one_endpoint_share_one_pool(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok")
    a = resolve_model("a", base_url=srv.base_url).model
    b = resolve_model("b", base_url=srv.base_url).model
    assert _pool(a) is _pool(b)  # langchain-openai hands both the same client; the swap happens once
    assert use_lease_pool(a) is True


def test_a_connection_the_server_closes_is_not_reused(scripted: Any) -> None:
    srv = scripted([], lambda prompt: {"text": "bye", "headers": {"Connection": "close"}} if "close" in prompt else "ok")
    clients = _record_clients(srv)
    model = resolve_model("m", base_url=srv.base_url, max_retries=0).model
    assert call_model(model, [HumanMessage("please close")], label="m").text == "bye"
    assert _pool(model).open_connections == 0  # h11 saw "Connection: close": the connection was closed, not kept
    assert call_model(model, [HumanMessage("again")], label="m").text == "ok"
    assert call_model(model, [HumanMessage("and again")], label="m").text == "ok"
    assert len(set(clients)) == 2 and clients[1] == clients[2]


def test_an_expired_connection_is_replaced(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok")
    clients = _record_clients(srv)
    model = resolve_model("m", base_url=srv.base_url, max_retries=0).model
    pool = _swap(model, keepalive_expiry=0.01)
    call_model(model, [HumanMessage("one")], label="m")
    time.sleep(0.05)  # past the expiry (not a timing assertion: the expiry is what is tested)
    call_model(model, [HumanMessage("two")], label="m")
    assert len(set(clients)) == 2 and pool.open_connections == 1


def test_past_max_connections_a_request_waits_then_times_out(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok")
    model = resolve_model("m", base_url=srv.base_url, max_retries=0).model
    pool = _swap(model, max_connections=1)
    client = model.root_client._client
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    httpx = _httpx(model)
    with client.stream("POST", "/chat/completions", json=body) as held:  # its connection stays taken until closed
        assert held.status_code == 200
        with pytest.raises(httpx.PoolTimeout):
            client.post("/chat/completions", json=body, timeout=httpx.Timeout(5.0, pool=0.05))
        held.read()
    assert pool.open_connections == pool.idle_connections == 1  # closing the read response gave the connection back
    assert client.post("/chat/completions", json=body).status_code == 200


def test_a_waiting_request_gets_the_connection_given_back(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok")
    clients = _record_clients(srv)
    model = resolve_model("m", base_url=srv.base_url, max_retries=0).model
    _swap(model, max_connections=1)
    client = model.root_client._client
    body = {"model": "m", "messages": [{"role": "user", "content": "x"}]}
    statuses: list[int] = []
    with client.stream("POST", "/chat/completions", json=body) as held:
        waiter = threading.Thread(target=lambda: statuses.append(client.post("/chat/completions", json=body).status_code))
        waiter.start()
        waiter.join(0.1)
        assert waiter.is_alive() and not statuses  # no connection free: it waits (pool timeout: the SDK's 600 s)
        held.read()
    waiter.join(10)
    assert statuses == [200] and len(set(clients)) == 1


def test_a_response_closed_unread_drops_its_connection(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok " * 2000)
    model = resolve_model("m", base_url=srv.base_url, max_retries=0).model
    client = model.root_client._client
    with client.stream("POST", "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}) as r:
        assert r.status_code == 200  # closed without reading the body: the connection cannot carry another request
    assert _pool(model).open_connections == 0


def test_connection_errors_and_retries_are_the_sdks(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok")
    port = srv.base_url.rsplit(":", 1)[1].split("/")[0]
    srv.stop()  # nothing listens there now
    model = resolve_model("m", base_url=f"http://127.0.0.1:{port}/v1", max_retries=1, timeout=5.0).model
    with pytest.raises(ModelError, match="Connection ?[Ee]rror"):
        call_model(model, [HumanMessage("x")], label="m")
    assert _pool(model).open_connections == 0


def test_server_errors_are_retried_on_a_kept_connection(scripted: Any) -> None:
    calls = {"n": 0}

    def sub(prompt: str) -> Any:
        calls["n"] += 1
        return {"status": 500} if calls["n"] == 1 else "ok"

    srv = scripted([], sub)
    clients = _record_clients(srv)
    model = resolve_model("m", base_url=srv.base_url, max_retries=1).model
    assert call_model(model, [HumanMessage("x")], label="m").text == "ok"
    assert calls["n"] == 2 and len(set(clients)) == 1


def test_only_a_plain_unused_pool_is_replaced(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "ok")
    model = resolve_model("m", base_url=srv.base_url).model
    assert lease_transport(None) is False
    assert lease_transport(object()) is False  # a transport of the caller's own making
    httpx = _httpx(model)
    used = httpx.HTTPTransport()
    with httpx.Client(transport=used) as client:
        assert client.post(srv.base_url + "/chat/completions", json={"model": "m", "messages": [{"role": "user", "content": "x"}]}).status_code == 200
        assert lease_transport(used) is False  # it has a connection open: left as it is
    fresh = httpx.HTTPTransport(limits=httpx.Limits(max_connections=3, max_keepalive_connections=2, keepalive_expiry=7.0))
    assert lease_transport(fresh) is True
    assert fresh._pool._max_open == 3 and fresh._pool._max_idle == 2 and fresh._pool._expiry == 7.0
