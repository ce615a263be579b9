"""Trajectory logs as JSONL, in the record layout of the reference ``rlms`` logger plus our fields.

A file holds one ``metadata`` record, one ``iteration`` record per root turn and a closing
``result`` record. An iteration record carries what the model saw new that turn (``prompt``: the
system prompt and task on the first turn, then only the REPL outputs and notes added since the
previous reply, never the whole conversation), its ``response``, each code block with its
``result`` (``stdout``, ``stderr``, ``locals``, ``execution_time`` and every sub-call in
``rlm_calls``), the ``final_answer``, ``iteration_time`` and the turn's ``usage``. A child RLM
(``rlm_query``) is nested where the reference puts it: its own iteration records, same layout,
go in ``rlm_calls[i].metadata = {"run_metadata": ..., "iterations": [...]}``. Each turn is
written once, so files grow linearly with iterations. See docs/observability.md.

The writer reads the graph's stream (``updates`` per namespace): a child's steps arrive under the
namespace of the ``sub_call`` task that runs it, and are matched to its parent's call by run id.
"""

from __future__ import annotations

import json
import time
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlm_graph.graph import prompts
from rlm_graph.graph.state import add_usage, total_tokens

#: Bumped when a record changes shape in a way readers must know about.
LOG_VERSION = 1


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _cost(usage: dict[str, Any]) -> float | None:
    """Known cost of ``usage`` in USD, or None when no model reported or priced one."""
    costs = [u.get("cost_usd") for u in usage.values() if u.get("cost_usd") is not None]
    return round(sum(costs), 8) if costs else None


def _usage_summary(usage: dict[str, Any]) -> dict[str, Any]:
    """Our usage in the reference's ``UsageSummary`` layout."""
    models = {}
    for label, u in usage.items():
        entry = {"total_calls": int(u.get("calls") or 0), "total_input_tokens": int(u.get("input_tokens") or 0),
                 "total_output_tokens": int(u.get("output_tokens") or 0)}
        if u.get("cost_usd") is not None:
            entry["total_cost"] = u["cost_usd"]
        models[label] = entry
    out: dict[str, Any] = {"model_usage_summaries": models}
    if _cost(usage) is not None:
        out["total_cost"] = _cost(usage)
    return out


def _tokens(usage: dict[str, Any], key: str) -> int:
    return sum(int(u.get(key) or 0) for u in usage.values())


def _backend(model: Any) -> str:
    """The reference's ``backend`` name for a chat model instance."""
    name = type(model).__name__
    base = str(getattr(model, "openai_api_base", "") or "")
    if "openrouter" in base:
        return "openrouter"
    return {"ChatOpenAI": "openai", "NoneType": "unknown"}.get(name, name)


def run_metadata(settings: Any, *, thread_id: str | None) -> dict[str, Any]:
    """The reference's ``RLMMetadata`` fields for ``settings`` (an RLMContext), plus ours."""
    limits = getattr(settings, "limits", None)
    sandbox = getattr(settings, "sandbox", None)
    sub_label = getattr(settings, "sub_label", None)
    root_label = getattr(settings, "model_label", None)
    return {
        "root_model": root_label,
        "max_depth": getattr(limits, "max_depth", None),
        "max_iterations": getattr(limits, "max_iterations", None),
        "backend": _backend(getattr(settings, "model", None)),
        "backend_kwargs": {"model_name": root_label},
        "environment_type": sandbox if isinstance(sandbox, str) else "custom",
        "environment_kwargs": dict(getattr(settings, "sandbox_options", None) or {}),
        "other_backends": [sub_label] if sub_label and sub_label != root_label else None,
        "sub_model": sub_label,
        "limits": limits.as_dict() if hasattr(limits, "as_dict") else None,
        "thread_id": thread_id,
        "library": "rlm-graph",
        "log_version": LOG_VERSION,
    }


class _RunRecorder:
    """Builds the iteration records of one run (the root, or a child RLM) from its own updates."""

    def __init__(self, writer: "TrajectoryWriter", namespace: tuple[str, ...]) -> None:
        self.writer = writer
        self.namespace = list(namespace)
        self.depth = len(namespace)
        self.run_id: str | None = None
        self.query: str | None = writer.query if not namespace else None
        self.context_meta: dict[str, Any] | None = None
        self.records: list[dict[str, Any]] = []  # finished iterations (children only; the root writes them)
        self.current: dict[str, Any] | None = None
        self.pending_prompt: list[dict[str, Any]] = []
        self.carry: dict[str, Any] = {}  # usage seen while no iteration was open
        self.answers: dict[str, dict[str, Any]] = {}  # sub_call key -> answer, with that call's usage
        self.children: dict[str, dict[str, Any]] = {}  # sub_call key -> the child's trajectory
        self.task_message: dict[str, Any] | None = None
        self.last_event = time.monotonic()
        self.opened = 0  # iterations started
        self.partial = False  # replies and cells were not in the stream
        self.finished = False
        self.final_answer: str | None = None
        self.stopped_by: str | None = None

    # -- turning updates into records ------------------------------------------------------
    def on_update(self, node: str, update: dict[str, Any]) -> None:
        now = time.monotonic()
        if node == "generate":
            self._generate(update, now)  # opens the turn its usage belongs to
            self._add_usage(update.get("usage"))
        else:
            self._add_usage(update.get("usage"))
        if node == "prepare":
            self._prepare(update)
        elif node == "execute":
            for cell in update.get("cells") or []:
                self._open(cell.get("iteration"))["code_blocks"].append(self._code_block(cell))
            self._take_user_messages(update.get("messages"))
        elif node == "sub_call":
            for key, answer in (update.get("answers") or {}).items():
                # one sub_call task answers one prompt: the update's usage is that call's
                self.answers[key] = {**answer, "usage": update.get("usage") or {}}
                run_id = (answer.get("child") or {}).get("run_id")
                done = self.writer._finished.pop(run_id, None) if run_id else None
                if done is not None:
                    self.children[key] = done
        elif node == "check_final":
            self._check_final(update, now)
        self.last_event = now

    def _prepare(self, update: dict[str, Any]) -> None:
        self.run_id = update.get("run_id") or self.run_id
        self.depth = int(update.get("depth", self.depth) or 0)
        self.context_meta = update.get("context_meta") or self.context_meta
        limits = update.get("limits") or self.writer.limits
        allow_rlm = self.depth < int(limits.get("max_depth", 1) or 0)
        system = prompts.system_prompt(max_output_chars=int(limits.get("max_output_chars", 4000)), allow_rlm=allow_rlm)
        # The task turn needs the question, which a child learns from its parent's call: it is
        # filled in when the child is attached (see fill_task) and dropped if it never is.
        self.task_message = {"role": "user", "content": None}
        self.pending_prompt = [{"role": "system", "content": system}, self.task_message]
        if self.query is not None:
            self.fill_task(self.query)

    def fill_task(self, query: str) -> None:
        self.query = query
        if self.task_message is not None and self.task_message["content"] is None and self.context_meta is not None:
            self.task_message["content"] = prompts.task_prompt(query, self.context_meta)

    def _generate(self, update: dict[str, Any], now: float) -> None:
        self._close(end=self.last_event)
        messages = update.get("messages") or []
        reply = next((m["content"] for m in messages if m.get("role") == "assistant"), "")
        if "messages" not in update:
            self.partial = True  # the graph streamed only this run's output keys (see docs/observability.md)
        usage = update.get("usage") or {}
        self.current = self._new(update.get("iteration"), start=self.last_event)
        self.current.update(
            response=reply,
            model_time=round(now - self.last_event, 3),
            prompt_tokens=_tokens(usage, "input_tokens"),
            completion_tokens=_tokens(usage, "output_tokens"),
        )
        if update.get("budget_hit"):
            self.current["stopped_by"] = update["budget_hit"]
        after = messages[next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), len(messages)) + 1 :]
        self._take_user_messages(after)

    def _check_final(self, update: dict[str, Any], now: float) -> None:
        messages = update.get("messages") or []
        if not update.get("stopped_by"):
            self._take_user_messages(messages)
            return
        current = self._open(None)
        forced = next((m["content"] for m in messages if m.get("role") == "assistant"), None)
        if forced is not None:
            current["forced_final"] = {"prompt": [m for m in messages if m.get("role") != "assistant"], "response": forced}
        current["final_answer"] = update.get("final_answer")
        current["stopped_by"] = update.get("stopped_by")
        self.final_answer, self.stopped_by = update.get("final_answer"), update.get("stopped_by")
        self._close(end=now)
        self.finished = True

    def _take_user_messages(self, messages: list[dict[str, Any]] | None) -> None:
        self.pending_prompt.extend({"role": m["role"], "content": m["content"]} for m in messages or [] if m.get("role") != "assistant")

    def _new(self, iteration: Any, *, start: float) -> dict[str, Any]:
        prompt, self.pending_prompt = self.pending_prompt, []
        record: dict[str, Any] = {
            "type": "iteration",
            "iteration": iteration,
            "timestamp": _now(),
            "depth": self.depth,
            "namespace": self.namespace,
            "run_id": self.run_id,
            "thread_id": self.writer.thread_id,
            "prompt": prompt,
            "response": "",
            "code_blocks": [],
            "final_answer": None,
            "iteration_time": None,
            "usage": self.carry,
            "_start": start,
        }
        if self.context_meta is not None and self.opened == 0:
            record["context_meta"] = self.context_meta
        self.opened += 1
        self.carry = {}
        return record

    def _open(self, iteration: Any) -> dict[str, Any]:
        """The iteration in progress (a placeholder when a resumed run starts mid-turn)."""
        if self.current is None:
            self.current = self._new(iteration, start=self.last_event)
        return self.current

    def _add_usage(self, usage: dict[str, Any] | None) -> None:
        if not usage:
            return
        if self.current is not None:
            self.current["usage"] = add_usage(self.current["usage"], usage)
        else:
            self.carry = add_usage(self.carry, usage)

    def _close(self, *, end: float) -> None:
        if self.current is None:
            return
        record, self.current = self.current, None
        record["iteration_time"] = round(end - record.pop("_start"), 3)
        record["cost_usd"] = _cost(record["usage"])
        record["total_tokens"] = total_tokens(record["usage"])
        if self.namespace:
            self.records.append(record)  # its task turn is filled in when it is attached
        else:
            record["prompt"] = [m for m in record["prompt"] if m.get("content") is not None]
            self.writer._write(record)

    # -- code blocks and their sub-calls ---------------------------------------------------
    def _code_block(self, cell: dict[str, Any]) -> dict[str, Any]:
        stderr = (cell.get("stderr") or "") + (("\n" if cell.get("stderr") else "") + cell["error"] if cell.get("error") else "")
        return {
            "code": cell.get("code"),
            "result": {
                "stdout": cell.get("stdout", ""),
                "stderr": stderr,
                "locals": cell.get("vars") or {},
                "execution_time": cell.get("seconds"),
                "rlm_calls": self._calls(cell),
                "final_answer": cell.get("final"),
                "cell": cell.get("index"),
                "timed_out": bool(cell.get("timed_out")),
            },
        }

    def _calls(self, cell: dict[str, Any]) -> list[dict[str, Any]]:
        from rlm_graph.nodes.execute import answer_key

        calls = []
        for k, req in enumerate(cell.get("requests") or []):
            texts = req.get("texts") or []
            children = req.get("children") or []
            for i, prompt in enumerate(req.get("prompts") or []):
                hashes = req.get("hashes") or []
                key = answer_key(cell.get("index", 0), k, i, hashes[i]) if i < len(hashes) else ""
                answer = self.answers.pop(key, {})
                usage = answer.get("usage") or {}
                summary = answer.get("child") or (children[i] if req.get("kind") == "rlm" and i < len(children) else None)
                call: dict[str, Any] = {
                    "root_model": next(iter(usage), None),
                    "prompt": prompt,
                    "response": answer.get("text", texts[i] if i < len(texts) else ""),
                    "usage_summary": _usage_summary(usage),
                    "execution_time": answer.get("seconds", req.get("seconds")),
                    "prompt_tokens": _tokens(usage, "input_tokens"),
                    "completion_tokens": _tokens(usage, "output_tokens"),
                    "cost_usd": _cost(usage),
                    "kind": req.get("kind"),
                    "depth": self.depth + 1,
                }
                error = answer.get("error") or (req.get("error") if req.get("refused") else None)
                if error:
                    call["error"] = error
                if req.get("refused"):
                    call["refused"] = True
                if summary:
                    call["child"] = {k2: v for k2, v in summary.items() if k2 != "cells"}
                child = self.children.pop(key, None)
                if child is not None:
                    child.fill_task(prompt)
                    call["metadata"] = child.trajectory()
                calls.append(call)
        return calls

    def trajectory(self) -> dict[str, Any]:
        """This (child) run as the reference nests it: ``{"run_metadata", "iterations"}``."""
        self._close(end=self.last_event)
        keep = ("root_model", "max_depth", "max_iterations", "backend", "environment_type", "thread_id")
        meta = {**{k: self.writer.metadata.get(k) for k in keep}, "depth": self.depth, "namespace": self.namespace,
                "run_id": self.run_id, "final_answer": self.final_answer, "stopped_by": self.stopped_by}
        if self.partial:
            meta["partial"] = True
        for r in self.records:
            r["prompt"] = [m for m in r["prompt"] if m.get("content") is not None]
        return {"run_metadata": meta, "iterations": self.records}


class TrajectoryWriter:
    """Writes ``<log_dir>/rlm_<timestamp>_<thread>.jsonl`` from a run's stream events.

    Args:
        log_dir: the directory (created if missing).
        thread_id: the run's checkpoint thread, part of the file name and of every record.
        settings: the run's :class:`~rlm_graph.RLMContext` (models, limits, sandbox).
    """

    def __init__(self, log_dir: str | Path, *, thread_id: str, settings: Any) -> None:
        self.dir = Path(log_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        stamp = datetime.now(timezone.utc).strftime("%Y%m%d_%H%M%S")
        self.path = self.dir / f"rlm_{stamp}_{thread_id}.jsonl"
        self.thread_id = thread_id
        limits = getattr(settings, "limits", None)
        self.limits: dict[str, Any] = limits.as_dict() if hasattr(limits, "as_dict") else {}
        self.metadata = run_metadata(settings, thread_id=thread_id)
        self.query: str | None = None
        self._recorders: dict[tuple[str, ...], _RunRecorder] = {}
        self._finished: dict[str, _RunRecorder] = {}  # child run id -> its finished recorder
        self._f = self.path.open("a", encoding="utf-8")
        self._write({"type": "metadata", "timestamp": _now(), **self.metadata})

    def _write(self, record: dict[str, Any]) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def _recorder(self, namespace: tuple[str, ...]) -> _RunRecorder:
        rec = self._recorders.get(namespace)
        if rec is None:
            rec = self._recorders[namespace] = _RunRecorder(self, namespace)
        return rec

    def on_event(self, event: dict[str, Any]) -> None:
        """Consume one ``{"namespace", "node", "update"}`` event of :meth:`rlm_graph.RLM.stream`."""
        namespace, node, update = tuple(event.get("namespace") or ()), event.get("node"), event.get("update")
        if node == "__values__":
            if not namespace and self.query is None and isinstance(update, dict) and update.get("query"):
                self.query = str(update["query"])
                if () in self._recorders:
                    self._recorders[()].fill_task(self.query)
            return
        if not isinstance(update, dict) or not isinstance(node, str) or node.startswith("__"):
            return
        rec = self._recorder(namespace)
        rec.on_update(node, update)
        if rec.finished and namespace:
            # A child run is over: hold it until its parent's sub_call answer names its run id.
            del self._recorders[namespace]
            self._finished[rec.run_id or f"?{len(self._finished)}"] = rec

    def on_result(self, result: Any) -> None:
        """Close the last iteration and append the ``result`` record."""
        self._flush_root()
        usage = dict(result.usage or {})
        self._write(
            {
                "type": "result",
                "timestamp": _now(),
                "final_answer": result.answer,
                "stopped_by": result.stopped_by,
                "iterations": result.iterations,
                "usage": usage,
                "usage_summary": _usage_summary(usage),
                "total_tokens": total_tokens(usage),
                "cost_usd": _cost(usage),
                "execution_time": result.execution_time,
                "thread_id": result.thread_id,
                "run_id": result.run_id,
                "subcalls": result.subcalls,
                "cells": result.cells,
                # Readers built for the reference logger take every non-metadata line for an
                # iteration: these keep them from failing on this one.
                "prompt": [],
                "response": "",
                "code_blocks": [],
                "iteration_time": None,
            }
        )

    def _flush_root(self) -> None:
        root = self._recorders.get(())
        if root is None:
            return
        if root.current is not None:
            # Children still running when the run stopped (a crash, an interrupt) are kept.
            unfinished = [r.trajectory() for ns, r in self._recorders.items() if ns]
            unfinished += [r.trajectory() for r in self._finished.values()]
            if unfinished:
                root.current["unfinished_children"] = unfinished
        root._close(end=time.monotonic())

    def close(self) -> None:
        """Write the iteration in progress, if any, and close the file."""
        if self._f.closed:
            return
        self._flush_root()
        self._f.close()


def read_trajectory(path: str | Path) -> dict[str, Any]:
    """Read a trajectory JSONL file (ours or the reference logger's).

    Returns:
        ``{"metadata": dict | None, "iterations": [...], "result": dict | None, "other": [...]}``;
        lines that are not JSON are skipped.

    Example:
        >>> log = read_trajectory("logs/rlm_20250101_120000_abc.jsonl")  # doctest: +SKIP
        >>> [it["iteration"] for it in log["iterations"]]  # doctest: +SKIP
        [1, 2, 3]
    """
    out: dict[str, Any] = {"metadata": None, "iterations": [], "result": None, "other": []}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        try:
            record = json.loads(line)
        except json.JSONDecodeError:
            continue
        kind = record.get("type") if isinstance(record, dict) else None
        if kind == "metadata":
            out["metadata"] = record
        elif kind == "iteration" or (kind is None and isinstance(record, dict) and "code_blocks" in record):
            out["iterations"].append(record)
        elif kind == "result":
            out["result"] = record
        else:
            out["other"].append(record)
    return out
