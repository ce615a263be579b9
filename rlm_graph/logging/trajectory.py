"""Trajectory logs as JSONL, in the record layout of the reference ``rlms`` logger plus our fields.

A file holds one ``metadata`` record, one ``iteration`` record per root turn and a closing
``result`` record. An iteration record carries what the model saw new that turn (``prompt``: the
system prompt and task on the first turn, then only the REPL outputs and notes added since the
previous reply, never the whole conversation), its ``response``, each code block with its
``result`` (``stdout``, ``stderr``, ``locals``, ``execution_time`` and every sub-call in
``rlm_calls``), the ``final_answer``, ``iteration_time`` and the turn's ``usage``. A child RLM
(``rlm_query``) is nested where the reference puts it: its own iteration records, same layout,
in ``rlm_calls[i].metadata = {"run_metadata": ..., "iterations": [...]}``. Each turn is written
once, so a file grows linearly with iterations. docs/observability.md lists every field.

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

Record = dict[str, Any]


def _now() -> str:
    return datetime.now(timezone.utc).isoformat()


def _cost(usage: dict[str, Any]) -> float | None:
    """Known cost of ``usage`` in USD, or None when no model reported or priced one."""
    costs = [u["cost_usd"] for u in usage.values() if u.get("cost_usd") is not None]
    return round(sum(costs), 8) if costs else None


def _tokens(usage: dict[str, Any], key: str) -> int:
    return sum(int(u.get(key) or 0) for u in usage.values())


def _usage_summary(usage: dict[str, Any]) -> Record:
    """Our usage in the reference's ``UsageSummary`` layout."""
    models: Record = {}
    for label, u in usage.items():
        entry = {"total_calls": int(u.get("calls") or 0), "total_input_tokens": int(u.get("input_tokens") or 0),
                 "total_output_tokens": int(u.get("output_tokens") or 0)}
        if u.get("cost_usd") is not None:
            entry["total_cost"] = u["cost_usd"]
        models[label] = entry
    out: Record = {"model_usage_summaries": models}
    if _cost(usage) is not None:
        out["total_cost"] = _cost(usage)
    return out


def _backend(model: Any) -> str:
    """The reference's ``backend`` name for a chat model instance."""
    if "openrouter" in str(getattr(model, "openai_api_base", "") or ""):
        return "openrouter"
    name = type(model).__name__
    return {"ChatOpenAI": "openai", "NoneType": "unknown"}.get(name, name)


def run_metadata(settings: Any, *, thread_id: str | None) -> Record:
    """The reference's ``RLMMetadata`` fields for ``settings`` (an RLMContext), plus ours."""
    limits = getattr(settings, "limits", None)
    sandbox = getattr(settings, "sandbox", None)
    root, sub = getattr(settings, "model_label", None), getattr(settings, "sub_label", None)
    return {
        "root_model": root,
        "max_depth": getattr(limits, "max_depth", None),
        "max_iterations": getattr(limits, "max_iterations", None),
        "backend": _backend(getattr(settings, "model", None)),
        "backend_kwargs": {"model_name": root},
        "environment_type": sandbox if isinstance(sandbox, str) else "custom",
        "environment_kwargs": dict(getattr(settings, "sandbox_options", None) or {}),
        "other_backends": [sub] if sub and sub != root else None,
        "sub_model": sub,
        "limits": limits.as_dict() if limits is not None and hasattr(limits, "as_dict") else None,
        "thread_id": thread_id,
        "library": "rlm-graph",
        "log_version": LOG_VERSION,
    }


class _RunRecorder:
    """Builds the iteration records of one run (the root, or a child RLM) from its own updates."""

    def __init__(self, writer: TrajectoryWriter, namespace: tuple[str, ...]) -> None:
        self.writer = writer
        self.namespace = list(namespace)
        self.depth = len(namespace)
        self.run_id: str | None = None
        self.query: str | None = None if namespace else writer.query
        self.context_meta: Record | None = None
        self.task_message: Record | None = None  # the first turn's task, filled in once the question is known
        self.records: list[Record] = []  # a child's finished turns (the root writes its own at once)
        self.current: Record | None = None  # the turn in progress
        self.pending_prompt: list[Record] = []  # messages for the next turn
        self.carry: dict[str, Any] = {}  # usage seen while no turn was open
        self.answers: dict[str, Record] = {}  # sub_call key -> its answer and usage
        self.children: dict[str, _RunRecorder] = {}  # sub_call key -> the child run it started
        self.last_event = time.monotonic()
        self.opened = 0
        self.partial = False  # the stream lacked this run's replies
        self.finished = False
        self.final_answer: str | None = None
        self.stopped_by: str | None = None

    def on_update(self, node: str, update: Record) -> None:
        now = time.monotonic()
        if node == "generate":
            self._generate(update, now)  # first: it opens the turn its usage belongs to
        self._add_usage(update.get("usage"))
        if node == "prepare":
            self._prepare(update)
        elif node == "execute":
            for cell in update.get("cells") or []:
                self._open(cell.get("iteration"))["code_blocks"].append(self._code_block(cell))
            self._take_user_messages(update.get("messages"))
        elif node == "sub_call":
            for key, answer in (update.get("answers") or {}).items():
                # one sub_call task answers one prompt, so the update's usage is that call's
                self.answers[key] = {**answer, "usage": update.get("usage") or {}}
                done = self.writer._take_finished((answer.get("child") or {}).get("run_id"))
                if done is not None:
                    self.children[key] = done
        elif node == "check_final":
            self._check_final(update, now)
        self.last_event = now

    # -- turns -----------------------------------------------------------------------------
    def _prepare(self, update: Record) -> None:
        self.run_id = update.get("run_id") or self.run_id
        self.depth = int(update.get("depth", self.depth) or 0)
        self.context_meta = update.get("context_meta") or self.context_meta
        limits = update.get("limits") or self.writer.limits
        system = prompts.system_prompt(
            max_output_chars=int(limits.get("max_output_chars", 4000)),
            allow_rlm=self.depth < int(limits.get("max_depth", 1) or 0),
            context_meta=self.context_meta,
        )
        # A child learns its question from its parent's call, when it is attached (fill_task);
        # a task turn still unknown then is dropped rather than made up.
        self.task_message = {"role": "user", "content": None}
        self.pending_prompt = [{"role": "system", "content": system}, self.task_message]
        if self.query is not None:
            self.fill_task(self.query)

    def fill_task(self, query: str) -> None:
        self.query = query
        if self.task_message is not None and self.task_message["content"] is None and self.context_meta is not None:
            self.task_message["content"] = prompts.task_prompt(query, self.context_meta)

    def _generate(self, update: Record, now: float) -> None:
        self._close(end=self.last_event)
        messages = update.get("messages") or []
        if "messages" not in update:
            self.partial = True  # the graph streamed only this run's output keys
        at = next((i for i, m in enumerate(messages) if m.get("role") == "assistant"), None)
        # a note the runner added before the model's turn (its label counts) is part of what the turn saw
        self._take_user_messages(messages[:at] if at is not None else [])
        usage = update.get("usage") or {}
        self.current = self._new(update.get("iteration"), start=self.last_event)
        self.current.update(
            response=messages[at]["content"] if at is not None else "",
            model_time=round(now - self.last_event, 3),
            prompt_tokens=_tokens(usage, "input_tokens"),
            completion_tokens=_tokens(usage, "output_tokens"),
        )
        if update.get("budget_hit"):
            self.current["stopped_by"] = update["budget_hit"]
        self._take_user_messages(messages[at + 1 :] if at is not None else [])

    def _check_final(self, update: Record, now: float) -> None:
        messages = update.get("messages") or []
        if not update.get("stopped_by"):
            self._take_user_messages(messages)
            return
        current = self._open(None)
        forced = next((m["content"] for m in messages if m.get("role") == "assistant"), None)
        if forced is not None:
            current["forced_final"] = {"prompt": [m for m in messages if m.get("role") != "assistant"], "response": forced}
        current["final_answer"] = self.final_answer = update.get("final_answer")
        current["stopped_by"] = self.stopped_by = update.get("stopped_by")
        current["confirmed"] = bool(update.get("confirmed"))
        self._close(end=now)
        self.finished = True

    def _take_user_messages(self, messages: list[Record] | None) -> None:
        self.pending_prompt += [{"role": m["role"], "content": m["content"]} for m in messages or [] if m.get("role") != "assistant"]

    def _new(self, iteration: Any, *, start: float) -> Record:
        prompt, self.pending_prompt = self.pending_prompt, []
        record: Record = {
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

    def _open(self, iteration: Any) -> Record:
        """The turn in progress (a placeholder when a resumed run starts mid-turn)."""
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
            self.records.append(record)  # its task turn may still be filled in (see trajectory)
        else:
            record["prompt"] = [m for m in record["prompt"] if m.get("content") is not None]
            self.writer._write(record)

    # -- code blocks and their sub-calls ---------------------------------------------------
    def _code_block(self, cell: Record) -> Record:
        stderr = "\n".join(part for part in (cell.get("stderr") or "", cell.get("error") or "") if part)
        return {
            "code": cell.get("code"),
            "result": {
                "stdout": cell.get("stdout", ""),
                "stderr": stderr,
                "locals": cell.get("vars") or {},
                "execution_time": cell.get("seconds"),
                "rlm_calls": [self._call(cell, k, req, i) for k, req in enumerate(cell.get("requests") or []) for i in range(len(req.get("prompts") or []))],
                "final_answer": cell.get("final"),
                "cell": cell.get("index"),
                "timed_out": bool(cell.get("timed_out")),
            },
        }

    def _call(self, cell: Record, k: int, req: Record, i: int) -> Record:
        """Prompt ``i`` of request ``k`` of ``cell``, in the reference's ``RLMChatCompletion`` layout."""
        from rlm_graph.nodes.execute import answer_key

        hashes, texts, children = req.get("hashes") or [], req.get("texts") or [], req.get("children") or []
        key = answer_key(cell.get("index", 0), k, i, hashes[i]) if i < len(hashes) else ""
        answer = self.answers.pop(key, {})
        usage = answer.get("usage") or {}
        summary = answer.get("child") or (children[i] if req.get("kind") == "rlm" and i < len(children) else None)
        prompt = req["prompts"][i]
        call: Record = {
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
            call["child"] = {name: value for name, value in summary.items() if name != "cells"}
        child = self.children.pop(key, None) or self.writer._take_finished((summary or {}).get("run_id"))
        if child is not None:
            child.fill_task(prompt)
            call["metadata"] = child.trajectory()
        return call

    def trajectory(self) -> Record:
        """This child run as the reference nests it: ``{"run_metadata", "iterations"}``."""
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
        self.metadata = run_metadata(settings, thread_id=thread_id)
        self.limits: dict[str, Any] = self.metadata["limits"] or {}
        self.query: str | None = None
        self._recorders: dict[tuple[str, ...], _RunRecorder] = {}
        self._finished: dict[str, _RunRecorder] = {}  # child runs over but not yet attached, by run id
        self._f = self.path.open("a", encoding="utf-8")
        self._write({"type": "metadata", "timestamp": _now(), **self.metadata})

    def _write(self, record: Record) -> None:
        self._f.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
        self._f.flush()

    def _take_finished(self, run_id: str | None) -> _RunRecorder | None:
        return self._finished.pop(run_id, None) if run_id else None

    def on_event(self, event: Record) -> None:
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
        recorder = self._recorders.get(namespace)
        if recorder is None:
            recorder = self._recorders[namespace] = _RunRecorder(self, namespace)
        recorder.on_update(node, update)
        if recorder.finished and namespace:
            # A child run is over: hold it until its parent's record names its run id.
            del self._recorders[namespace]
            self._finished[recorder.run_id or f"unknown-{len(self._finished)}"] = recorder

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
                "confirmed": bool(getattr(result, "confirmed", False)),
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
        if root is None or root.current is None:
            return
        # The run stopped mid-turn (a crash, an interrupt): keep the child runs it had started.
        unfinished = [r.trajectory() for ns, r in self._recorders.items() if ns]
        unfinished += [r.trajectory() for r in self._finished.values()]
        if unfinished:
            root.current["unfinished_children"] = unfinished
        root._close(end=time.monotonic())

    def close(self) -> None:
        """Write the iteration in progress, if any, and close the file."""
        if not self._f.closed:
            self._flush_root()
            self._f.close()


def read_trajectory(path: str | Path) -> Record:
    """Read a trajectory JSONL file (ours or the reference logger's).

    Returns:
        ``{"metadata": dict | None, "iterations": [...], "result": dict | None, "other": [...]}``;
        lines that are not JSON are skipped.

    Example:
        >>> log = read_trajectory("logs/rlm_20250101_120000_abc.jsonl")  # doctest: +SKIP
        >>> [it["iteration"] for it in log["iterations"]]  # doctest: +SKIP
        [1, 2, 3]
    """
    out: Record = {"metadata": None, "iterations": [], "result": None, "other": []}
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            record = json.loads(line) if line.strip() else None
        except json.JSONDecodeError:
            continue
        if not isinstance(record, dict):
            continue
        kind = record.get("type")
        if kind == "metadata":
            out["metadata"] = record
        elif kind == "iteration" or (kind is None and "code_blocks" in record):
            out["iterations"].append(record)
        elif kind == "result":
            out["result"] = record
        else:
            out["other"].append(record)
    return out
