"""One model call as the RLM loop needs it: text out, usage counted, foreign errors mapped."""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage

from rlm_graph.errors import ModelError

#: Phrases servers use when a request outgrows the model's window (OpenAI, llama.cpp, vLLM).
_OVERFLOW_HINTS = ("context length", "context_length", "maximum context", "exceeds the context", "too many tokens", "n_ctx", "context window")


class ContextOverflow(ModelError):
    """The conversation no longer fits the model's context window."""


@dataclass
class Reply:
    """A model reply: its text and the usage to add under ``label``."""

    text: str
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    seconds: float = 0.0
    finish_reason: str | None = None


def usage_of(message: AIMessage, label: str, prices: dict[str, tuple[float, float]] | None = None) -> dict[str, dict[str, Any]]:
    """Usage of one reply, keyed by model label. A server that reports none counts as unknown."""
    meta = message.usage_metadata
    entry: dict[str, Any] = {"calls": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": None}
    if meta:
        entry["input_tokens"] = int(meta.get("input_tokens") or 0)
        entry["output_tokens"] = int(meta.get("output_tokens") or 0)
    else:
        entry["unknown_usage"] = 1
    reported = (message.response_metadata or {}).get("token_usage", {}) or {}
    if isinstance(reported, dict) and reported.get("cost") is not None:
        entry["cost_usd"] = float(reported["cost"])  # OpenRouter reports cost itself
    elif prices and label in prices and meta:
        per_in, per_out = prices[label]
        entry["cost_usd"] = round(entry["input_tokens"] * per_in / 1e6 + entry["output_tokens"] * per_out / 1e6, 8)
    return {label: entry}


#: Attributes chat model classes keep their reply cap in (OpenAI, Anthropic, Google, Ollama).
_CAP_FIELDS = ("max_tokens", "max_completion_tokens", "max_output_tokens", "num_predict")


def reply_cap(model: Any, default: int) -> int:
    """The most tokens one reply of ``model`` may have: the cap it sends with each request.

    A model built from a spec sends the run's ``reply_tokens``; a chat model instance sends its
    own cap, and one with none is assumed to stop at ``default`` (the ledger cannot know better).
    """
    for name in _CAP_FIELDS:
        value = getattr(model, name, None)
        if isinstance(value, int) and not isinstance(value, bool) and value > 0:
            return value
    return default


def reports_cost(model: Any) -> bool:
    """True for a provider that reports each call's cost in its usage (OpenRouter does)."""
    base = str(getattr(model, "openai_api_base", "") or getattr(model, "base_url", "") or "")
    return "openrouter.ai" in base


def call_model(
    model: BaseChatModel,
    messages: Sequence[BaseMessage],
    *,
    label: str,
    stop: list[str] | None = None,
    prices: dict[str, tuple[float, float]] | None = None,
) -> Reply:
    """Invoke ``model`` once.

    Raises:
        ContextOverflow: the server said the conversation is longer than its window.
        ModelError: any other failure after the client's own retries.
    """
    start = time.monotonic()
    try:
        msg = model.invoke(list(messages), stop=stop) if stop else model.invoke(list(messages))
    except Exception as exc:  # map every provider's errors at this one boundary
        text = str(exc)
        status = getattr(exc, "status_code", None)
        if (status == 400 or "400" in text[:40]) and any(h in text.lower() for h in _OVERFLOW_HINTS):
            raise ContextOverflow(f"the conversation outgrew the model's context window: {text[:300]}") from exc
        raise ModelError(f"model call failed ({type(exc).__name__}): {text[:500]}") from exc
    content = msg.content if isinstance(msg.content, str) else "".join(
        part.get("text", "") if isinstance(part, dict) else str(part) for part in msg.content
    )
    finish = (msg.response_metadata or {}).get("finish_reason")
    ai = msg if isinstance(msg, AIMessage) else AIMessage(content=content)
    return Reply(content, usage_of(ai, label, prices), time.monotonic() - start, finish)
