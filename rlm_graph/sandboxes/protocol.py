"""Message types of the worker protocol and their JSON-lines encoding (see ``worker.py``)."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import Any

from rlm_graph.errors import ProtocolError

#: Message types the host may receive from the worker.
WORKER_MESSAGES = frozenset({"ready", "loaded", "request", "result", "pong", "protocol_error"})


def encode(msg: dict[str, Any]) -> str:
    """Encode one message as a single JSON line (no trailing newline)."""
    return json.dumps(msg, ensure_ascii=False, separators=(",", ":"))


def decode(line: str) -> dict[str, Any]:
    """Decode one line from the worker; raise ProtocolError if it is not a known message."""
    try:
        msg = json.loads(line)
    except ValueError as exc:
        raise ProtocolError(f"worker sent a line that is not JSON: {line[:200]!r}") from exc
    if not isinstance(msg, dict) or msg.get("type") not in WORKER_MESSAGES:
        raise ProtocolError(f"worker sent an unknown message: {line[:200]!r}")
    return msg


def prompt_hash(prompt: str) -> str:
    """A short stable digest of a sub-call prompt; replay matches recorded answers by it."""
    return hashlib.sha256(prompt.encode("utf-8", "surrogatepass")).hexdigest()[:16]


@dataclass(frozen=True)
class SubRequest:
    """A cell asked the host for sub-calls: ``kind`` is "llm" or "rlm", one entry per prompt."""

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
    """What a finished cell produced (already truncated by the worker)."""

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
        return cls(
            cell=int(msg.get("cell", 0)),
            stdout=str(msg.get("stdout") or ""),
            stderr=str(msg.get("stderr") or ""),
            error=msg.get("error"),
            final=msg.get("final"),
            vars=dict(msg.get("vars") or {}),
            timed_out=bool(msg.get("timed_out")),
        )
