"""The untransformed chat.completions client sends what the OpenAI SDK's own create() sends."""

from __future__ import annotations

from typing import Any

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
from langchain_openai import ChatOpenAI

from rlm_graph.models import resolve_model
from rlm_graph.models.wire import PlainCompletions, _wire_ready
from tests.scripted_server import ScriptedServer


def _bodies(srv: ScriptedServer) -> list[dict[str, Any]]:
    seen: list[dict[str, Any]] = []
    handle = srv.handle

    def record(body: dict[str, Any]) -> Any:
        seen.append(body)
        return handle(body)

    srv.handle = record  # type: ignore[method-assign]
    return seen


def test_plain_requests_equal_the_sdks_and_parse_the_same(scripted: Any) -> None:
    srv = scripted([], lambda prompt: "pong")
    seen = _bodies(srv)
    ours = resolve_model("m", base_url=srv.base_url, max_tokens=77).model
    assert isinstance(ours.client, PlainCompletions)
    stock = ChatOpenAI(model="m", base_url=srv.base_url, api_key="none", max_tokens=77, max_retries=0, temperature=0.0,
                       stream_usage=True, extra_body={"max_tokens": 77})
    msgs = [SystemMessage("sys"), HumanMessage("q é"), AIMessage("a"), HumanMessage("again")]
    a, b = ours.invoke(msgs, stop=["```output"]), stock.invoke(msgs, stop=["```output"])
    assert seen[0] == seen[1] and seen[0]["messages"][1] == {"role": "user", "content": "q é"}
    assert a.content == b.content == "pong" and a.usage_metadata == b.usage_metadata


def test_anything_but_plain_messages_takes_the_sdks_path() -> None:
    assert _wire_ready({"messages": [{"role": "user", "content": "x"}]})
    assert not _wire_ready({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}]}]})
    assert not _wire_ready({"messages": iter([])})
