"""Reading an OpenAI chat request into what a run needs, with every field checked.

Everything here comes from a client, so each field is type-checked and bounded, and a bad one is
one :class:`RequestError` with the HTTP status and the OpenAI-style message to send back.

The last message (a user's) is the question; the earlier messages' text is the context. A
request may name the context itself instead, as fields next to ``messages`` (what the ``openai``
client sends with ``extra_body``): ``context`` (text, a list or a dict) or ``context_path`` (a
file or folder inside the server's context roots). ``thread_id`` names a saved run to carry on or
to ask a follow-up question on; ``limits`` lowers the server's budgets for this run.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.settings import Limits

#: A thread id a client may name: what ``rlm-graph`` itself makes, and other plain ids.
THREAD_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:-]{0,127}")

#: Messages in one request, and characters of one question.
MAX_MESSAGES = 10_000
MAX_QUESTION_CHARS = 100_000


class RequestError(Exception):
    """A request the server refuses: ``status`` and an OpenAI-style error ``type``."""

    def __init__(self, message: str, *, status: int = 400, kind: str = "invalid_request_error", param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.kind = kind
        self.param = param

    def body(self) -> dict[str, Any]:
        return {"error": {"message": str(self), "type": self.kind, "param": self.param, "code": None}}


@dataclass(frozen=True)
class ChatRequest:
    """A checked chat request.

    Attributes:
        question: the last user message's text.
        context: the context as a value (None when ``context_path`` names it).
        context_path: a file or folder inside the server's roots.
        thread_id: a saved run this request carries on or asks a follow-up question on.
        limits: budgets for this run, already capped by the server's.
        stream: send server-sent events as the run works.
        named_context: the request named ``context`` or ``context_path`` (rather than the context
            being the conversation before the question, which a chat client resends each turn).
    """

    question: str
    context: Any = None
    context_path: Path | None = None
    thread_id: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)
    stream: bool = False
    named_context: bool = False


def parse_chat_request(body: Any, *, model_id: str, server_limits: Limits, roots: Sequence[Path]) -> ChatRequest:
    """Check a ``/v1/chat/completions`` body and turn it into a :class:`ChatRequest`.

    Raises:
        RequestError: the first thing wrong with the request.
    """
    if not isinstance(body, dict):
        raise RequestError("the request body must be a JSON object")
    model = body.get("model")
    if model is not None and model != model_id:
        raise RequestError(f"the model {model!r} does not exist; this server serves {model_id!r}", status=404, param="model", kind="invalid_request_error")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        raise RequestError("'stream' must be true or false", param="stream")
    question, earlier = _messages(body.get("messages"))
    context, context_path = _context(body, earlier, roots)
    thread_id = body.get("thread_id")
    if thread_id is not None and (not isinstance(thread_id, str) or not THREAD_ID.fullmatch(thread_id)):
        raise RequestError("'thread_id' must be 1-128 letters, digits or _.:- (starting with a letter or digit)", param="thread_id")
    return ChatRequest(
        question=question,
        context=context,
        context_path=context_path,
        thread_id=thread_id,
        limits=capped_limits(body.get("limits"), server_limits),
        stream=stream,
        named_context=body.get("context") is not None or body.get("context_path") is not None,
    )


def _text(content: Any, where: str) -> str:
    """A message's text: a string, or the text parts of a list of content parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = []
        for part in content:
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise RequestError(f"{where}: only text content parts are supported", param="messages")
            parts.append(part["text"])
        return "\n".join(parts)
    if content is None:
        return ""
    raise RequestError(f"{where}: 'content' must be a string or a list of text parts", param="messages")


def _messages(messages: Any) -> tuple[str, list[str]]:
    """(the question, the earlier messages' texts)."""
    if not isinstance(messages, list) or not messages:
        raise RequestError("'messages' must be a non-empty list", param="messages")
    if len(messages) > MAX_MESSAGES:
        raise RequestError(f"too many messages ({len(messages)}; at most {MAX_MESSAGES})", param="messages")
    texts = []
    for i, m in enumerate(messages):
        if not isinstance(m, dict) or not isinstance(m.get("role"), str):
            raise RequestError(f"messages[{i}] must be an object with a 'role'", param="messages")
        texts.append(_text(m.get("content"), f"messages[{i}]"))
    if messages[-1]["role"] != "user":
        raise RequestError("the last message must be the user's question", param="messages")
    question = texts[-1].strip()
    if not question:
        raise RequestError("the last message (the question) is empty", param="messages")
    if len(question) > MAX_QUESTION_CHARS:
        raise RequestError(f"the question is {len(question):,} characters; put long text in earlier messages or 'context'", param="messages")
    return question, [t for t in texts[:-1] if t.strip()]


def _context(body: dict[str, Any], earlier: list[str], roots: Sequence[Path]) -> tuple[Any, Path | None]:
    has_context, has_path = body.get("context") is not None, body.get("context_path") is not None
    if has_context and has_path:
        raise RequestError("give 'context' or 'context_path', not both", param="context")
    if has_path:
        return None, inside_roots(body["context_path"], roots)
    if has_context:
        value = body["context"]
        if not isinstance(value, (str, list, dict)):
            raise RequestError("'context' must be a string, a list or an object", param="context")
        if isinstance(value, str) and not value.strip():
            raise RequestError("'context' is empty", param="context")
        return value, None
    # No context named: the conversation before the question is the context (or, with none,
    # the question itself, as rlm_query does for a child).
    return ("\n\n".join(earlier) if earlier else None), None


def inside_roots(raw: Any, roots: Sequence[Path]) -> Path:
    """Resolve a client's ``context_path`` to an existing file or folder inside one of ``roots``.

    A relative path is looked up in each root in turn. Links are resolved first, so a link inside
    a root that points outside it is refused too.
    """
    if not isinstance(raw, str) or not raw.strip() or "\x00" in raw:
        raise RequestError("'context_path' must be a non-empty string", param="context_path")
    if not roots:
        raise RequestError("this server takes no 'context_path' (start it with --context-root DIR)", status=403, kind="permission_error", param="context_path")
    candidates = [Path(raw)] if Path(raw).is_absolute() else [root / raw for root in roots]
    outside = False
    for candidate in candidates:
        try:
            resolved = candidate.resolve()
        except (OSError, RuntimeError):
            continue
        if not any(resolved == root or resolved.is_relative_to(root) for root in roots):
            outside = True
        elif resolved.exists():
            return resolved
    if outside:
        raise RequestError("'context_path' leads outside the server's context roots", status=403, kind="permission_error", param="context_path")
    raise RequestError(f"'context_path' {raw!r} was not found in the server's context roots", status=404, kind="not_found_error", param="context_path")


def capped_limits(requested: Any, server: Limits) -> dict[str, Any]:
    """A request's limits, each lowered to the server's own where the server sets one.

    A client can only make a run smaller: ``max_iterations=1000`` on a server with 30 gives 30.
    """
    if requested is None:
        return {}
    if not isinstance(requested, dict):
        raise RequestError("'limits' must be an object such as {\"max_iterations\": 5}", param="limits")
    known = Limits.__dataclass_fields__
    unknown = sorted(str(k) for k in requested if k not in known)
    if unknown:
        raise RequestError(f"unknown limit(s) {', '.join(unknown)}; limits are: {', '.join(known)}", param="limits")
    out: dict[str, Any] = {}
    for name, value in requested.items():
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise RequestError(f"limit {name!r} must be a number", param="limits")
        ceiling = getattr(server, name)
        out[name] = value if ceiling is None else min(value, ceiling)
    try:
        Limits.from_dict({**server.as_dict(), **out})
    except ConfigurationError as exc:
        raise RequestError(str(exc), param="limits") from None
    return out
