"""A scripted OpenAI-compatible chat server on loopback, so tests run the real client code.

Root turns (requests whose first message is the RLM system prompt) get the next reply of the
``root`` script; every other request is a sub-call and gets ``sub(prompt)``. Each request is
recorded with its arrival and reply times, so tests can check parallelism and that a resumed run
repeats no call. The HTTP side (Nagle off, a backlog of 512) is the benchmark server's
:class:`~rlm_graph.bench.loopback.ChatServer`. Run it standalone for subprocess tests::

    python -m tests.scripted_server --port 0 --script script.json --log requests.jsonl
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlm_graph.bench import loopback

Reply = str | dict[str, Any]  # a text, or {"status": 500, "body": ...} / {"text":..., "usage": None, "delay": 1}


def _is_root(messages: list[dict[str, Any]]) -> bool:
    return bool(messages) and messages[0].get("role") == "system" and "REPL" in str(messages[0].get("content"))


class ScriptedServer(loopback.ChatServer):
    """Serve ``/v1/chat/completions`` from a script. Use as a context manager; ``.base_url`` to connect."""

    def __init__(
        self,
        root: list[Reply] | Callable[[list[dict[str, Any]]], Reply] = (),
        sub: Callable[[str], Reply] | dict[str, Reply] | None = None,
        *,
        sub_delay: float = 0.0,
        log_path: str | Path | None = None,
        port: int = 0,
    ) -> None:
        self.root_script = root if callable(root) else list(root)
        self.sub = sub
        self.sub_delay = sub_delay
        self.requests: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.root_index = 0
        self.log_path = Path(log_path) if log_path else None
        # Two writes a reply, so that one to a runner killed meanwhile is recorded undelivered.
        super().__init__(port=port, quiet=False, split_writes=True)

    def reply(self, body: dict[str, Any]) -> loopback.Reply:
        status, payload, raw, record = self.handle(body)
        data = raw.encode() if raw is not None else json.dumps(payload).encode()

        def sent(delivered: bool) -> None:
            record["delivered"] = delivered  # False: the client died before reading its reply: the call never finished

        return loopback.Reply(status, data, record.get("headers"), sent)

    # -- scripting -----------------------------------------------------------------------
    def _next(self, messages: list[dict[str, Any]]) -> tuple[str, Reply]:
        if _is_root(messages):
            with self.lock:
                if callable(self.root_script):
                    return "root", self.root_script(messages)
                i = self.root_index
                self.root_index += 1
            script = self.root_script
            return "root", script[i] if i < len(script) else "FINAL(script exhausted)"
        prompt = str(messages[-1].get("content"))
        if self.sub is None:
            return "sub", f"answer to: {prompt[:40]}"
        if callable(self.sub):
            return "sub", self.sub(prompt)
        for key, value in self.sub.items():
            if key in prompt:
                return "sub", value
        return "sub", "unknown"

    def handle(self, body: dict[str, Any]) -> tuple[int, Any, str | None, dict[str, Any]]:
        messages = body.get("messages") or []
        arrived = time.monotonic()
        role, reply = self._next(messages)
        spec = reply if isinstance(reply, dict) else {"text": reply}
        delay = spec.get("delay", self.sub_delay if role == "sub" else 0.0)
        if delay:
            time.sleep(delay)
        record = {
            "role": role,
            "model": body.get("model"),
            "prompt": str(messages[-1].get("content")) if messages else "",
            "n_messages": len(messages),
            "turn": sum(1 for m in messages if m.get("role") == "assistant"),
            "conversation": "\n".join(str(m.get("content", "")) for m in messages),
            "stop": body.get("stop"),
            "max_tokens": body.get("max_tokens"),
            "arrived": arrived,
            "done": time.monotonic(),
            "status": spec.get("status", 200),
            "headers": spec.get("headers"),
        }
        with self.lock:
            self.requests.append(record)
            if self.log_path:
                with self.log_path.open("a") as f:
                    f.write(json.dumps({k: record[k] for k in ("role", "prompt", "n_messages", "status")}) + "\n")
        if "raw" in spec:
            return int(spec.get("status", 200)), None, spec["raw"], record
        if spec.get("status", 200) != 200:
            return int(spec["status"]), spec.get("body", {"error": {"message": "scripted error"}}), None, record
        text = spec["text"]
        prompt_tokens = sum(len(str(m.get("content", "")).split()) for m in messages)
        usage = spec.get("usage", {"prompt_tokens": prompt_tokens, "completion_tokens": len(text.split()), "total_tokens": prompt_tokens + len(text.split())})
        payload: dict[str, Any] = {
            "id": "chatcmpl-scripted",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", "scripted"),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
        }
        if usage is not None:
            payload["usage"] = usage
        record["usage"] = usage
        return 200, payload, None, record

    # -- views ---------------------------------------------------------------------------
    def root_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["role"] == "root"]

    def sub_requests(self) -> list[dict[str, Any]]:
        return [r for r in self.requests if r["role"] == "sub"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--script", required=True, help='JSON: {"root": [...], "sub": {"substring": "answer"}, "sub_delay": 0}')
    parser.add_argument("--log", help="append one JSON line per request here")
    parser.add_argument("--port-file", help="write the bound port here once listening")
    args = parser.parse_args()
    script = json.loads(Path(args.script).read_text())
    server = ScriptedServer(script.get("root", []), script.get("sub"), sub_delay=script.get("sub_delay", 0.0), log_path=args.log, port=args.port)
    if args.port_file:
        Path(args.port_file).write_text(str(server.port))
    server.httpd.serve_forever()


if __name__ == "__main__":
    main()
