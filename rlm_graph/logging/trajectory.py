"""Trajectory logs as JSONL, in the record layout of the reference ``rlms`` logger plus our fields.

One ``metadata`` record, then one ``iteration`` record per root turn: the model's response, each
code block with its result (stdout, stderr, locals, execution_time and every sub-call in
``rlm_calls``, a child RLM's own cells nested), the final answer, and usage so far. Each record
holds only its own turn (never the whole conversation), so files grow linearly.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def _sub_calls(cell: dict[str, Any]) -> list[dict[str, Any]]:
    calls = []
    for req in cell.get("requests") or []:
        texts = req.get("texts") or []
        children = req.get("children") or []
        for i, prompt in enumerate(req.get("prompts") or []):
            child = children[i] if i < len(children) else None
            calls.append(
                {
                    "kind": req.get("kind"),
                    "prompt": prompt,
                    "response": texts[i] if i < len(texts) else "",
                    "error": req.get("error"),
                    "execution_time": req.get("seconds"),
                    "child": child,
                }
            )
    return calls


class TrajectoryWriter:
    """Writes ``<log_dir>/rlm_<timestamp>_<thread>.jsonl`` from a run's stream events."""

    def __init__(self, log_dir: str | Path, *, thread_id: str, settings: Any) -> None:
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        self.path = self.dir / f"rlm_{stamp}_{thread_id}.jsonl"
        self._f = self.path.open("a", encoding="utf-8")
        self._iter: dict[str, Any] | None = None
        self._t0 = time.monotonic()
        self._usage: dict[str, Any] = {}
        limits = getattr(settings, "limits", None)
        self._write(
            {
                "type": "metadata",
                "timestamp": datetime.now(timezone.utc).isoformat(),
                "root_model": getattr(settings, "model_label", None),
                "sub_model": getattr(settings, "sub_label", None),
                "max_depth": getattr(limits, "max_depth", None),
                "max_iterations": getattr(limits, "max_iterations", None),
                "backend": "openai",
                "environment_type": settings.sandbox if isinstance(getattr(settings, "sandbox", None), str) else "custom",
                "thread_id": thread_id,
                "library": "rlm-graph",
            }
        )

    def _write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def _flush(self, final: str | None = None) -> None:
        if self._iter is None:
            return
        rec = self._iter
        rec["final_answer"] = final
        rec["iteration_time"] = round(time.monotonic() - rec.pop("_t"), 3)
        rec["usage"] = self._usage
        self._write(rec)
        self._iter = None

    def on_event(self, event: dict[str, Any]) -> None:
        if event["namespace"]:
            return  # children are logged inside their parent's sub-call records
        node, update = event["node"], event["update"] or {}
        if not isinstance(update, dict):
            return
        if "usage" in update and update["usage"]:
            from rlm_graph.graph.state import add_usage

            self._usage = add_usage(self._usage, update["usage"])
        if node == "prepare":
            self._context_meta = update.get("context_meta")
            self._write({"type": "context", "context_meta": update.get("context_meta"), "run_id": update.get("run_id"), "depth": update.get("depth", 0)})
        elif node == "generate":
            self._flush()
            response = next((m["content"] for m in update.get("messages") or [] if m["role"] == "assistant"), "")
            self._iter = {"type": "iteration", "iteration": update.get("iteration"), "depth": 0, "response": response, "code_blocks": [], "_t": time.monotonic()}
        elif node == "execute" and update.get("cells") and self._iter is not None:
            for cell in update["cells"]:
                self._iter["code_blocks"].append(
                    {
                        "code": cell.get("code"),
                        "result": {
                            "stdout": cell.get("stdout", ""),
                            "stderr": (cell.get("stderr") or "") + (("\n" + cell["error"]) if cell.get("error") else ""),
                            "locals": cell.get("vars") or {},
                            "execution_time": cell.get("seconds"),
                            "rlm_calls": _sub_calls(cell),
                            "final": cell.get("final"),
                        },
                    }
                )
        elif node == "check_final" and update.get("stopped_by"):
            if self._iter is None:
                self._iter = {"type": "iteration", "iteration": None, "depth": 0, "response": "", "code_blocks": [], "_t": time.monotonic()}
            forced = next((m["content"] for m in update.get("messages") or [] if m["role"] == "assistant"), None)
            if forced:
                self._iter["forced_response"] = forced
            self._iter["stopped_by"] = update.get("stopped_by")
            self._flush(update.get("final_answer"))

    def on_result(self, result: Any) -> None:
        self._flush()
        self._write(
            {
                "type": "result",
                "final_answer": result.answer,
                "stopped_by": result.stopped_by,
                "iterations": result.iterations,
                "usage": result.usage,
                "execution_time": result.execution_time,
                "thread_id": result.thread_id,
                "subcalls": result.subcalls,
            }
        )

    def close(self) -> None:
        self._flush()
        self._f.close()
