"""Posting langchain-openai's chat requests as they are, without the OpenAI SDK's body transform.

``openai``'s ``chat.completions.create`` walks the whole request body against its typed
parameter definitions before sending it (``maybe_transform``). For a conversation that is a
list of plain ``{role, content}`` dicts this changes nothing, yet it costs about 0.4 ms of CPU
per message on every call, so a turn's cost grows with the conversation: in a py-spy profile of
a 30-turn run it was the largest single cost of a turn outside the model (see
docs/benchmarks.md). langchain-openai already builds the request in its wire form, so
:class:`PlainCompletions` posts it through the SDK's own client (its retries, errors, auth and
response parsing unchanged) and skips only the transform; a request with anything but text
messages goes through the SDK's ``create`` as before.
"""

from __future__ import annotations

from typing import Any

try:  # the SDK's request plumbing; without it the stock client stays in place
    from openai._base_client import make_request_options
    from openai._streaming import Stream
    from openai.resources.chat.completions import Completions
    from openai.types.chat import ChatCompletion, ChatCompletionChunk
except ImportError:  # pragma: no cover - an SDK that moved them
    Completions = None  # type: ignore[assignment,misc]

_PLAIN = (str, int, float, bool, type(None))


def _wire_ready(body: dict[str, Any]) -> bool:
    """True when every message is a dict of plain values: then the transform would be the identity."""
    messages = body.get("messages")
    if not isinstance(messages, list):
        return False
    return all(isinstance(m, dict) and all(isinstance(v, _PLAIN) for v in m.values()) for m in messages)


if Completions is not None:

    class PlainCompletions(Completions):  # type: ignore[misc,valid-type]
        """``chat.completions`` whose ``create`` sends a text-only request body untransformed."""

        def create(self, **kwargs: Any) -> Any:  # type: ignore[override]
            body = {k: v for k, v in kwargs.items() if k not in ("extra_headers", "extra_query", "extra_body", "timeout")}
            if not _wire_ready(body):
                return super().create(**kwargs)
            options = make_request_options(
                extra_headers=kwargs.get("extra_headers"),
                extra_query=kwargs.get("extra_query"),
                extra_body=kwargs.get("extra_body"),
                **({"timeout": kwargs["timeout"]} if "timeout" in kwargs else {}),
            )
            return self._post(
                "/chat/completions",
                body=body,
                options=options,
                cast_to=ChatCompletion,
                stream=bool(body.get("stream")),
                stream_cls=Stream[ChatCompletionChunk],
            )


def use_plain_requests(model: Any) -> Any:
    """Give a ``ChatOpenAI`` the untransformed ``chat.completions`` (a no-op for other models)."""
    root = getattr(model, "root_client", None)
    if Completions is None or root is None or getattr(model, "client", None) is None:
        return model
    model.client = PlainCompletions(root)
    return model
