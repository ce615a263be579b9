"""Message types of the worker protocol, their JSON-lines encoding, and the host's checks.

Everything the worker sends is untrusted: code in a cell can write any bytes to the protocol
channel. :func:`parse` is the one gate a line passes before the host acts on it: it must be JSON,
a known message type, with fields of the right types, shapes and sizes. Text is cut to the sizes
the host allows (a cell's output to ``max_output_chars``, head and tail kept, as the worker cuts
it) and made safe for every checkpointer (see :func:`rlm_graph.validation.safe_text`). A line
that fails raises :class:`~rlm_graph.errors.ProtocolError` with a short reason; the session turns
that into a note in the running cell, never into the end of the run.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass, field
from typing import Any

from rlm_graph.contexts import MAX_CHILD_CONTEXT_BYTES, child_context_too_big
from rlm_graph.errors import ProtocolError
from rlm_graph.validation import safe_text, safe_value

#: The worker protocol's version, recorded in every run's manifest: bump it when a message changes shape.
PROTOCOL_VERSION = 1

#: Message types the host may receive from the worker.
WORKER_MESSAGES = frozenset({"ready", "loaded", "request", "result", "pong", "protocol_error"})

#: What a request may ask for: sub-LM calls, child RLMs, host tools (``rlm_graph.tools``).
REQUEST_KINDS = ("llm", "rlm", "tool")

#: Longest line (one message) the host reads from a worker, in bytes; a longer one is dropped as
#: it streams in, never held whole. Large enough for a batch of long prompts or a child's context.
MAX_MESSAGE_BYTES = 64 << 20
#: Most prompts in one request (``llm_query_batched`` / ``rlm_query_batched``).
MAX_PROMPTS = 10_000
#: Most characters of a FINAL answer reported by a cell.
MAX_FINAL_CHARS = 1_000_000
#: Most variables a result lists, and characters of each name and type name.
MAX_VARS = 200
MAX_VAR_NAME = 100
#: Characters of the context's metadata fields kept (its preview, its keys ...).
MAX_META_TEXT = 2_000
#: Request ids are positive integers a JSON number can hold exactly.
MAX_ID = 2**53


def encode(msg: dict[str, Any]) -> str:
    """Encode one message as a single JSON line (no trailing newline), ASCII only.

    ASCII escapes keep a lone surrogate (which no UTF-8 encoder takes) from breaking the channel.
    """
    return json.dumps(msg, ensure_ascii=True, separators=(",", ":"))


def decode(line: str) -> dict[str, Any]:
    """Decode one line from the worker; raise ProtocolError if it is not a known message.

    Only the envelope is checked here: :func:`parse` checks the fields too.
    """
    try:
        msg = json.loads(line)
    except (ValueError, RecursionError) as exc:
        raise ProtocolError(f"a line that is not JSON: {_show(line)}") from exc
    if not isinstance(msg, dict) or msg.get("type") not in WORKER_MESSAGES:
        raise ProtocolError(f"an unknown message: {_show(line)}")
    return msg


def parse(line: str, *, max_output_chars: int = 4000) -> dict[str, Any]:
    """The message in ``line``, its fields checked, cut to size and made safe.

    Raises:
        ProtocolError: the line is not JSON, not a known message, or a field has the wrong
            type or shape (a short reason, with the start of the line).
    """
    msg = decode(line)
    kind = msg["type"]
    try:
        if kind == "request":  # the line's length spares measuring contexts that must fit
            return _request(msg, max_output_chars, len(line))
        return _CHECKS[kind](msg, max_output_chars)
    except _Bad as exc:
        text = f"a {kind} message with {exc}: {_show(line)}"
        rid = msg.get("id")
        if kind == "request" and isinstance(rid, int) and not isinstance(rid, bool) and 0 < rid <= MAX_ID:
            raise InvalidRequest(text, rid) from None
        raise ProtocolError(text) from None


def _show(line: str, n: int = 120) -> str:
    line = safe_text(line)
    return repr(line[:n]) + (f" ... ({len(line):,} characters)" if len(line) > n else "")


class _Bad(Exception):
    """A field of a message is wrong (the message says which)."""


class InvalidRequest(ProtocolError):
    """A request with a usable id but a bad field: the host answers it with an error, so a cell
    waiting for that id gets the error instead of waiting forever."""

    def __init__(self, message: str, request_id: int) -> None:
        super().__init__(message)
        self.request_id = request_id


def _int(msg: dict[str, Any], key: str, low: int = 0, high: int = MAX_ID) -> int:
    value = msg.get(key)
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise _Bad(f"a bad {key!r} ({_brief(value)})")
    return value


def _text(msg: dict[str, Any], key: str, limit: int, *, optional: bool = True) -> str | None:
    value = msg.get(key)
    if value is None and optional:
        return None
    if not isinstance(value, str):
        raise _Bad(f"a bad {key!r} ({_brief(value)})")
    return cut(safe_text(value), limit)


def _brief(value: Any) -> str:
    return f"{type(value).__name__} {safe_text(repr(value))[:40]}"


def cut(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, its head and tail kept, as the worker cuts output.

    Text the worker already cut (``limit`` plus its "[N characters omitted]" line) passes as is.
    """
    if len(text) <= limit + 100:
        return text
    half = max(limit // 2, 1)
    return text[:half] + f"\n... [{len(text) - 2 * half} characters omitted by the host] ...\n" + text[-half:]


def _ready(msg: dict[str, Any], _limit: int) -> dict[str, Any]:
    pid = msg.get("pid")
    return {"type": "ready", "pid": pid if isinstance(pid, int) and not isinstance(pid, bool) else None,
            "python": _text(msg, "python", 40) if isinstance(msg.get("python"), str) else None}


def _loaded(msg: dict[str, Any], _limit: int) -> dict[str, Any]:
    if msg.get("error") is not None:
        return {"type": "loaded", "error": _text(msg, "error", MAX_META_TEXT) or "unknown error"}
    meta = msg.get("meta")
    if not isinstance(meta, dict):
        raise _Bad(f"a bad 'meta' ({_brief(meta)})")
    return {"type": "loaded", "meta": _meta(meta)}


#: A month condition's value: "2024-03".
_MONTH = re.compile(r"\d{4}-(?:0[1-9]|1[0-2])")


def _meta(meta: dict[str, Any]) -> dict[str, Any]:
    """The context's metadata, each field of the kind it should be and of bounded size."""
    out: dict[str, Any] = {}
    for key in ("type", "preview"):
        if isinstance(meta.get(key), str):
            out[key] = safe_text(meta[key][:MAX_META_TEXT])
    for key in ("length", "lines", "total_chars", "rows", "text_items"):
        value = meta.get(key)
        if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
            out[key] = value
    seconds = meta.get("load_seconds")
    if isinstance(seconds, (int, float)) and not isinstance(seconds, bool) and math.isfinite(seconds):
        out["load_seconds"] = seconds
    if isinstance(meta.get("chunk_lengths"), list):
        out["chunk_lengths"] = [n for n in meta["chunk_lengths"][:20] if isinstance(n, int) and not isinstance(n, bool)]
    if isinstance(meta.get("keys"), list):
        out["keys"] = [safe_text(str(k)[:MAX_VAR_NAME]) for k in meta["keys"][:20]]
    # the layout facts (issue 14): short lists of short strings, nothing else
    for key in ("columns", "item_keys", "log_keys"):
        if isinstance(meta.get(key), list):
            out[key] = [safe_text(str(k)[:MAX_VAR_NAME]) for k in meta[key][:30]]
    if meta.get("prose_items") is True:
        out["prose_items"] = True
    if meta.get("separator") in (",", "\t", ";", "|"):
        out["separator"] = meta["separator"]
    if meta.get("value_kind") == "list" and isinstance(meta.get("value_items"), int) and not isinstance(meta["value_items"], bool):
        out["value_kind"], out["value_items"] = "list", max(0, meta["value_items"])
    if meta.get("json") in ("list", "dict") and isinstance(meta.get("json_items"), int) and not isinstance(meta["json_items"], bool):
        out["json"], out["json_items"] = meta["json"], max(0, meta["json_items"])
    named = meta.get("named_values")
    if isinstance(named, list):  # the conditions the question states on the table's fields: [field, value, kind]
        out["named_values"] = [[safe_text(str(c[0])[:MAX_VAR_NAME]), safe_text(str(c[1])[:80]), c[2]] for c in named[:6]
                               if isinstance(c, list) and len(c) == 3 and c[2] in ("eq", "month", "prefix", "number")
                               and (c[2] != "month" or _MONTH.fullmatch(str(c[1])) is not None)
                               and (c[2] != "number" or re.fullmatch(r"\d{1,18}", str(c[1])) is not None)]
    lists = meta.get("lists")
    if isinstance(lists, dict):  # the named lists the worker built: name -> item count
        out["lists"] = {safe_text(str(name)[:MAX_VAR_NAME]): n for name, n in list(lists.items())[:20]
                        if isinstance(n, int) and not isinstance(n, bool) and n >= 0}
    for key in ("field_values", "json_values", "log_values"):
        fields = meta.get(key)
        if isinstance(fields, dict):
            out[key] = {
                safe_text(str(name)[:MAX_VAR_NAME]): [safe_text(str(v)[:40]) for v in values[:12]]
                for name, values in list(fields.items())[:6]
                if isinstance(values, list)
            }
    return out


def _request(msg: dict[str, Any], _limit: int, line_chars: int = MAX_MESSAGE_BYTES) -> dict[str, Any]:
    rid = _int(msg, "id", 1)
    kind = msg.get("kind", "llm")
    if kind not in REQUEST_KINDS:
        raise _Bad(f"an unknown kind ({_brief(kind)})")
    prompts = msg.get("prompts")
    if not isinstance(prompts, list) or not prompts or len(prompts) > MAX_PROMPTS:
        raise _Bad(f"no list of 1 to {MAX_PROMPTS:,} prompts ({_brief(prompts)})")
    if not all(isinstance(p, str) for p in prompts):
        raise _Bad("a prompt that is not a string")
    contexts = msg.get("contexts")
    if contexts is not None:
        if not isinstance(contexts, list) or len(contexts) != len(prompts):
            n = len(contexts) if isinstance(contexts, list) else _brief(contexts)
            raise _Bad(f"{n} contexts for {len(prompts)} prompts")
        # only a child run (rlm) takes a context; whatever else a forged request carries is dropped
        contexts = safe_value(contexts) if kind == "rlm" else None
    if kind == "rlm":  # a child's context is stored whole: capped (with none given, the prompt is its context)
        for p, c in zip(prompts, contexts or [None] * len(prompts)):
            size = _stored_size(c if c is not None else p, line_chars)
            if size > MAX_CHILD_CONTEXT_BYTES:
                raise _Bad(child_context_too_big(size))
    return {"type": "request", "id": rid, "kind": kind, "prompts": [safe_text(p) for p in prompts], "contexts": contexts}


def _stored_size(context: Any, line_chars: int) -> int:
    """Bytes of ``context`` as the store writes it (0 for one that must fit).

    The line holds the context's JSON, and the stored form has at most 5 bytes for each of its
    characters (4 for a character in UTF-8; a number such as ``1e15`` is written back as
    ``1000000000000000.0``): a line of at most an eighth of the cap fits whole, unmeasured.
    """
    if line_chars * 8 <= MAX_CHILD_CONTEXT_BYTES:
        return 0
    if isinstance(context, str):
        return len(context.encode("utf-8", "surrogatepass"))
    return len(json.dumps(context, ensure_ascii=False).encode("utf-8"))


def _result(msg: dict[str, Any], limit: int) -> dict[str, Any]:
    cell = _int(msg, "cell")
    raw_vars = msg.get("vars")
    if raw_vars is not None and not isinstance(raw_vars, dict):
        raise _Bad(f"a bad 'vars' ({_brief(raw_vars)})")
    variables: dict[str, str] = {}
    for name, kind in list((raw_vars or {}).items())[:MAX_VARS]:
        variables[safe_text(str(name)[:MAX_VAR_NAME])] = safe_text(str(kind)[:MAX_VAR_NAME])
    timed_out = msg.get("timed_out", False)
    if not isinstance(timed_out, bool):
        raise _Bad(f"a bad 'timed_out' ({_brief(timed_out)})")
    return {
        "type": "result",
        "cell": cell,
        "stdout": _text(msg, "stdout", limit) or "",
        "stderr": _text(msg, "stderr", limit) or "",
        "error": _text(msg, "error", limit),
        "final": _text(msg, "final", MAX_FINAL_CHARS),
        "vars": variables,
        "timed_out": timed_out,
    }


def _pong(msg: dict[str, Any], _limit: int) -> dict[str, Any]:
    return {"type": "pong"}


def _protocol_error(msg: dict[str, Any], _limit: int) -> dict[str, Any]:
    error = msg.get("error")
    return {"type": "protocol_error", "error": safe_text(str(error)[:MAX_META_TEXT])}


_CHECKS = {
    "ready": _ready,
    "loaded": _loaded,
    "request": _request,
    "result": _result,
    "pong": _pong,
    "protocol_error": _protocol_error,
}


def prompt_hash(prompt: str) -> str:
    """A short stable digest of a sub-call prompt; replay matches recorded answers by it."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class SubRequest:
    """A cell asked the host for sub-calls: ``kind`` is "llm", "rlm" or "tool", one entry per prompt."""

    id: int
    kind: str
    prompts: list[str]
    contexts: list[Any] | None = None
    ordinal: int = 0  # position of this request among the cell's requests (0-based)

    @property
    def hashes(self) -> list[str]:
        return [prompt_hash(p) for p in self.prompts]


@dataclass
class CellResult:
    """What a finished cell produced (cut to size by the worker, and again by the host)."""

    cell: int
    stdout: str = ""
    stderr: str = ""
    error: str | None = None
    final: str | None = None
    vars: dict[str, str] = field(default_factory=dict)
    timed_out: bool = False
    killed: bool = False  # the worker had to be killed (hard timeout or crash)

    @classmethod
    def from_message(cls, msg: dict[str, Any]) -> "CellResult":
        """A result from a message :func:`parse` has checked."""
        return cls(
            cell=int(msg.get("cell", 0)),
            stdout=str(msg.get("stdout") or ""),
            stderr=str(msg.get("stderr") or ""),
            error=msg.get("error"),
            final=msg.get("final"),
            vars=dict(msg.get("vars") or {}),
            timed_out=bool(msg.get("timed_out")),
        )
