"""The benchmarks' loopback server: root/sub routing by conversation shape, turn counting, timing records."""

from __future__ import annotations

import httpx

from rlm_graph.bench.loopback import LoopbackServer


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

