"""sub_call: answer one prompt of a cell's request (or run one user tool call, see :mod:`rlm_graph.tools`).

The call's reservation was made by ``execute`` (in order, before the fan-out); this task settles
it to what the call spent, in the ledger and in the state's ``reserved`` channel at once.
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

from rlm_graph.contexts import ContextRef, load_stored, store_value, stored_path
from rlm_graph.errors import ContextError, ModelError
from rlm_graph.graph.bindings import Bindings, RunSettings
from rlm_graph.graph.ledger import Account, Spend, spend_of
from rlm_graph.graph.runtime import concurrency_slot, settings_of, task_account, trace_config
from rlm_graph.graph.settings import RLMContext
from rlm_graph.graph.state import Pending, RLMState
from rlm_graph import tools
from rlm_graph.models.calls import call_model
from rlm_graph.nodes.execute import sub_call_prompt


#: A child's whole state, not just its output schema: its turns belong in the parent's log.
_CHILD_KEYS = list(RLMState.__annotations__)


def sub_call(
    task: Pending,
    runtime: Runtime[RLMContext],
    *,
    defaults: Bindings | None = None,
    child_graph: Callable[[], Any] | None = None,
) -> dict[str, Any]:
    """Run one sub-call; its answer goes to ``answers[task.key]`` and its usage to the run's total."""
    ctx = settings_of(runtime, defaults)
    limits = task.get("limits") or {}
    with concurrency_slot(task.get("run_id") or "", int(limits.get("max_concurrency") or ctx.limits.max_concurrency)):
        return _answer(task, ctx, child_graph)


def _answer(task: Pending, ctx: RunSettings, child_graph: Callable[[], Any] | None) -> dict[str, Any]:
    start = time.monotonic()
    if task["kind"] == tools.TOOL_KIND:  # a host function, not a model: no usage, not a sub-call
        text, error, seconds = tools.call(ctx.tools, task["prompt"])
        return {"answers": {task["key"]: {"text": text, "error": error, "seconds": round(seconds, 3), "child": None}}}
    depth = int(task.get("depth") or 0)
    max_depth = int((task.get("limits") or {}).get("max_depth", ctx.limits.max_depth))
    account = task_account(task)
    hold = Spend.from_dict((task.get("budget") or {}).get("hold"))
    if task["kind"] == "rlm" and depth + 1 <= max_depth and child_graph is not None:
        return _child_run(task, child_graph(), depth, start, account, hold, ctx.work_dir)
    fallback = {"fallback": "max_depth", "depth": depth + 1} if task["kind"] == "rlm" else None
    prompt = sub_call_prompt(task["prompt"], _context_value(task, ctx.work_dir) if task["kind"] == "rlm" else None)
    settled = {"reserved": {task["key"]: None}, "n_subcalls": 1}
    try:
        reply = call_model(ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, prices=ctx.prices)
    except ModelError as exc:
        account.settle(task["key"], Spend(calls=1), folded=hold)
        answer = {"text": "", "error": str(exc), "seconds": round(time.monotonic() - start, 3), "child": fallback}
        return {"answers": {task["key"]: answer}, **settled}
    account.settle(task["key"], spend_of(reply.usage, 1), folded=hold)
    account.ledger.learn_rate(ctx.sub_label, reply.usage)
    answer = {"text": reply.text, "error": None, "seconds": round(reply.seconds, 3), "child": fallback}
    return {"answers": {task["key"]: answer}, "usage": reply.usage, **settled}


def _context_value(task: Pending, work_dir: str) -> Any:
    """The context an ``rlm_query`` passed (None: none), read back from the store."""
    ref = task.get("context_ref")
    if ref is not None:
        return load_stored(ref, work_dir)
    return task.get("context")  # type: ignore[typeddict-item]  # a fan-out saved before the store held it inline


def _child_ref(task: Pending, work_dir: str) -> ContextRef:
    """Where the child's context is stored; with none given, its prompt is its context.

    A stored context is looked for before the child starts (or carries on after a resume), so a
    missing file is one clear error before any call is made. A prompt stored as the context counts
    against the run's total like any child context.

    Raises:
        ContextError: the stored context is missing or changed, or the prompt would take the
            run's total past :data:`~rlm_graph.contexts.MAX_RUN_CHILD_CONTEXT_BYTES`.
    """
    ref = task.get("context_ref")
    if ref is not None:
        stored_path(ref, work_dir)
        return ref
    inline = task.get("context")  # type: ignore[typeddict-item]  # a fan-out saved before the store held it inline
    tree = (task.get("budget") or {}).get("tree") or task.get("run_id")
    return store_value(inline if inline is not None else task["prompt"], work_dir, run=tree)


def _child_run(task: Pending, graph: Any, depth: int, start: float, account: Account, hold: Spend, work_dir: str) -> dict[str, Any]:
    ref = task.get("budget") or {}
    try:
        context_ref = _child_ref(task, work_dir)
    except ContextError as exc:
        if task.get("context_ref") is not None:
            raise  # a stored context gone missing: the run stops with that one line
        account.release(task["key"], folded=hold)  # the child does not run: nothing spent
        answer = {"text": "", "error": str(exc), "seconds": round(time.monotonic() - start, 3), "child": None}
        return {"answers": {task["key"]: answer}, "reserved": {task["key"]: None}}
    child_input = {
        "query": task["prompt"],
        # the child's state holds the digest; its sandbox loads the stored file
        "context_ref": context_ref,
        "depth": depth + 1,
        # the child draws on its tree's ledger: every run of the tree reserves from one budget
        "parent": {"tree": ref.get("tree") or task.get("run_id"), "run_id": ref.get("run") or task.get("run_id"), "limits": task.get("limits") or {}},
    }
    # Invoked from inside this task, the child inherits its config: it nests under this task's
    # checkpoint namespace and so resumes with it.
    out = graph.invoke(child_input, trace_config(depth + 1), output_keys=_CHILD_KEYS)
    n_subcalls = 1 + int(out.get("n_subcalls") or 0)
    account.ledger.adopt(account.run, task["key"], out.get("run_id"), spend_of(out.get("usage"), n_subcalls), folded=hold)
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
    return {"answers": {task["key"]: answer}, "usage": out.get("usage") or {}, "n_subcalls": n_subcalls, "reserved": {task["key"]: None}}
