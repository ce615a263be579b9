"""sub_call: answer one prompt of a cell's request.

``llm_query`` prompts are one call to the sub-model. ``rlm_query`` prompts run this same RLM graph
one level deeper, as a subgraph of this task (so its steps are checkpointed under this task's
namespace and resume with it); at ``max_depth`` they fall back to a plain sub-model call and the
record says so.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from rlm_graph.errors import ModelError
from rlm_graph.graph.runtime import concurrency_slot, settings_of, trace_config
from rlm_graph.graph.settings import RLMContext
from rlm_graph.graph.state import Pending, RLMState
from rlm_graph.models.calls import call_model


#: A child's whole state, not just its output schema: its turns belong in the parent's log.
_CHILD_KEYS = list(RLMState.__annotations__)


def sub_call(
    task: Pending,
    runtime: Runtime[RLMContext],
    *,
    defaults: RLMContext | None = None,
    child_graph: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Run one sub-call; its answer goes to ``answers[task.key]`` and its usage to the run's total."""
    ctx = settings_of(runtime, defaults)
    limits = task.get("limits") or {}
    with concurrency_slot(task.get("run_id") or "", int(limits.get("max_concurrency") or ctx.limits.max_concurrency)):
        return _answer(task, ctx, child_graph)


def _answer(task: Pending, ctx: RLMContext, child_graph: Callable[[], Any] | None) -> dict[str, Any]:
    start = time.monotonic()
    depth = int(task.get("depth") or 0)
    max_depth = int((task.get("limits") or {}).get("max_depth", ctx.limits.max_depth))
    if task["kind"] == "rlm" and depth + 1 <= max_depth and child_graph is not None:
        return _child_run(task, child_graph(), depth, start)
    fallback = {"fallback": "max_depth", "depth": depth + 1} if task["kind"] == "rlm" else None
    prompt = task["prompt"]
    if task["kind"] == "rlm" and task.get("context") is not None:
        prompt = f"{prompt}\n\nContext:\n{task['context']}"
    try:
        reply = call_model(ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, prices=ctx.prices)
    except ModelError as exc:
        answer = {"text": "", "error": str(exc), "seconds": round(time.monotonic() - start, 3), "child": fallback}
        return {"answers": {task["key"]: answer}, "n_subcalls": 1}
    answer = {"text": reply.text, "error": None, "seconds": round(reply.seconds, 3), "child": fallback}
    return {"answers": {task["key"]: answer}, "usage": reply.usage, "n_subcalls": 1}


def _child_run(task: Pending, graph: Any, depth: int, start: float) -> dict[str, Any]:
    context = task.get("context")
    child_input = {
        "query": task["prompt"],
        "context": context if context is not None else task["prompt"],
        "depth": depth + 1,
        "limits": task.get("limits") or {},
    }
    # Invoked from inside this task, the child inherits its config: it nests under this task's
    # checkpoint namespace and so resumes with it.
    out = graph.invoke(child_input, trace_config(depth + 1), output_keys=_CHILD_KEYS)
    child = {
        "depth": depth + 1,
        "run_id": out.get("run_id"),
        "iterations": out.get("iteration"),
        "stopped_by": out.get("stopped_by"),
        "answer": out.get("final_answer"),
        "cells": [{"code": c.get("code"), "stdout": (c.get("stdout") or "")[:2000], "error": c.get("error")} for c in out.get("cells") or []],
    }
    text = out.get("final_answer")
    answer = {
        "text": text if text is not None else "",
        "error": None if text is not None else f"the child RLM ended without an answer ({out.get('stopped_by')})",
        "seconds": round(time.monotonic() - start, 3),
        "child": child,
    }
    return {"answers": {task["key"]: answer}, "usage": out.get("usage") or {}, "n_subcalls": 1 + int(out.get("n_subcalls") or 0)}
