"""execute: run the next queued cell in the run's sandbox, or continue a suspended one.

A cell that calls ``llm_query``/``rlm_query`` blocks inside the sandbox; execute then returns the
pending prompts (the recurse node fans them out) instead of waiting. When their answers are in
the state, execute is entered again and the same cell carries on.
"""

from __future__ import annotations

import re
import time
from typing import Any, Literal

from langgraph.runtime import Runtime
from langgraph.types import interrupt

from rlm_graph.errors import SandboxTimeout, WorkerCrashed
from rlm_graph.graph import prompts
from rlm_graph.graph.runtime import open_session, reached_limit, remaining, settings_of, spent_budget
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import CLEAR, ActiveCell, Cell, RLMState, RequestRecord, SubAnswer
from rlm_graph.sandboxes import POOL
from rlm_graph.sandboxes.protocol import CellResult, SubRequest
from rlm_graph.sandboxes.session import Recorded

#: Code the runner itself queues for a FINAL naming a variable: nothing to approve.
_HARMLESS = re.compile(r"FINAL_VAR\('[A-Za-z_][A-Za-z0-9_]*'\)")

#: Characters of each sub-call prompt kept in the record (the hash identifies it on replay).
PROMPT_PREVIEW = 2000


def answer_key(cell: int, ordinal: int, i: int, digest: str) -> str:
    """Where the answer of prompt ``i`` of request ``ordinal`` of ``cell`` is stored."""
    return f"c{cell}.r{ordinal}.p{i}.{digest}"


def _recorded(active: ActiveCell, answers: dict[str, SubAnswer]) -> list[Recorded]:
    """The requests of the active cell that are fully answered, in order (a prefix)."""
    out = []
    for k, req in enumerate(active.get("requests") or []):  # type: ignore[attr-defined]
        if req.get("refused"):
            out.append(Recorded(req["hashes"], [], req.get("error")))
            continue
        got = [answers.get(answer_key(active["index"], k, i, h)) for i, h in enumerate(req["hashes"])]
        if any(a is None for a in got):
            break
        out.append(Recorded(req["hashes"], *_texts(got)))  # type: ignore[arg-type]
    return out


def _texts(got: list[SubAnswer]) -> tuple[list[str], str | None]:
    if len(got) == 1 and got[0].get("error"):
        return [], str(got[0]["error"])
    return [a.get("text") or (f"[sub-call failed: {a['error']}]" if a.get("error") else "") for a in got], None


def _approve(code: str, index: int) -> tuple[str | None, str | None]:
    """Ask a human about the code: returns (code to run, rejection reason)."""
    decision = interrupt({"type": "approve_code", "cell": index, "code": code})
    if decision in (True, None, "approve", "approved", "yes"):
        return code, None
    if isinstance(decision, dict):
        action = decision.get("action", "approve")
        if action == "edit" and decision.get("code"):
            return str(decision["code"]), None
        if action == "approve":
            return code, None
        return None, str(decision.get("reason") or "rejected by the user")
    if isinstance(decision, str) and decision not in ("reject", "rejected", "no"):
        return decision, None  # a bare string is edited code
    return None, "rejected by the user"


def execute(state: RLMState, runtime: Runtime[RLMContext], *, defaults: RLMContext | None = None) -> dict[str, Any]:
    """Run or continue one cell; return its record, or the sub-calls it waits for."""
    ctx = settings_of(runtime, defaults)
    limits = Limits.from_dict(state.get("limits"))
    queue = list(state.get("queue") or [])
    active = state.get("active")
    update: dict[str, Any] = {}
    if active is None:
        code = queue.pop(0)
        index = len(state.get("cells") or [])
        update["queue"] = queue
        if ctx.approve_code and not _HARMLESS.fullmatch(code):
            approved, reason = _approve(code, index)
            if approved is None:
                return _finish(state, {"index": index, "code": code, "started": time.time()}, CellResult(index, error=f"Not run: {reason}."), [], update)
            code = approved
        active = {"index": index, "code": code, "started": time.time(), "requests": []}  # type: ignore[typeddict-unknown-key]
    requests: list[RequestRecord] = [dict(r) for r in active.get("requests") or []]  # type: ignore[misc]
    answers = state.get("answers") or {}
    recorded = _recorded({**active, "requests": requests}, answers)  # type: ignore[typeddict-item]
    session = open_session({**state, "active": active}, ctx)
    left = spent_budget(limits, state, ctx)
    session.cell_timeout = limits.cell_timeout
    if limits.max_seconds is not None:
        session.cell_timeout = max(1.0, min(limits.cell_timeout, limits.max_seconds - (time.monotonic() - ctx.started_at)))
    while True:
        try:
            out = session.step(active["index"], active["code"], recorded)
        except (SandboxTimeout, WorkerCrashed) as exc:
            POOL.discard(state["run_id"])  # rebuilt by replay on the next cell
            result = CellResult(active["index"], error=f"{type(exc).__name__}: {exc}. The REPL was restarted; variables from earlier cells were restored.", killed=True)
            return _finish(state, active, result, requests, update)
        if isinstance(out, CellResult):
            return _finish(state, active, out, requests, update)
        req: SubRequest = out
        record: RequestRecord = {"kind": req.kind, "hashes": req.hashes, "prompts": [p[:PROMPT_PREVIEW] for p in req.prompts]}
        refusal = left or spent_budget(limits, state, ctx, extra_calls=len(req.prompts))
        if refusal:
            # The host decides: a spent budget answers the cell with an error instead of a call.
            error = f"budget spent ({refusal}); no more sub-calls in this run"
            record.update(refused=True, error=error, texts=[])  # type: ignore[typeddict-unknown-key]
            requests[req.ordinal : req.ordinal + 1] = [record]
            recorded.append(Recorded(req.hashes, [], error))
            update["budget_hit"] = refusal
            continue
        requests[req.ordinal : req.ordinal + 1] = [record]
        del requests[req.ordinal + 1 :]
        depth = int(state.get("depth") or 0)
        contexts = req.contexts or [None] * len(req.prompts)
        child_limits = _child_limits(limits, state, ctx)  # the same for every prompt of the request
        keys = [answer_key(active["index"], req.ordinal, i, h) for i, h in enumerate(req.hashes)]
        pending = [
            {"key": key, "kind": req.kind, "prompt": p, "context": c, "depth": depth, "run_id": state["run_id"], "limits": child_limits}
            for key, p, c in zip(keys, req.prompts, contexts)
            if key not in answers
        ]
        return {**update, "active": {**active, "requests": requests}, "pending": pending}


def _child_limits(limits: Limits, state: RLMState, ctx: RLMContext) -> dict[str, Any]:
    """The limits a child run gets: the parent's, with what is left of the whole-tree budgets."""
    left = remaining(limits, state, ctx)
    out = limits.as_dict()
    for name in ("max_subcalls", "max_tokens", "max_cost_usd"):
        if left[name] is not None:
            out[name] = max(left[name], 1)
    return out


def _finish(state: RLMState, active: ActiveCell, result: CellResult, requests: list[RequestRecord], update: dict[str, Any]) -> dict[str, Any]:
    answers = state.get("answers") or {}
    for k, req in enumerate(requests):
        if req.get("refused"):  # type: ignore[typeddict-item]
            continue
        got = [answers.get(answer_key(active["index"], k, i, h)) or {} for i, h in enumerate(req["hashes"])]
        req["texts"] = [a.get("text") or "" for a in got]
        errors = [a.get("error") for a in got if a.get("error")]
        req["error"] = errors[0] if errors else None
        req["seconds"] = round(max((a.get("seconds") or 0.0) for a in got) if got else 0.0, 3)
        req["children"] = [a["child"] for a in got if a.get("child")]
    cell: Cell = {
        "index": active["index"],
        "iteration": int(state.get("iteration") or 0),
        "code": active["code"],
        "stdout": result.stdout,
        "stderr": result.stderr,
        "error": result.error,
        "final": result.final,
        "vars": result.vars,
        "seconds": round(time.time() - active["started"], 3),
        "timed_out": result.timed_out or result.killed,
        "killed": result.killed,
        "requests": requests,
    }
    queue = update.get("queue", state.get("queue") or [])
    out: dict[str, Any] = {
        **update,
        "cells": [cell],
        "active": None,
        "pending": [],
        "answers": CLEAR,
        "messages": [{"role": "user", "content": prompts.output_message(cell["index"], result.stdout, result.stderr, result.error, result.vars)}],
    }
    if result.final is not None:
        out["proposed"] = {"answer": result.final, "iteration": cell["iteration"], "source": "code"}
        out["queue"] = []  # a FINAL ends the reply: later blocks were written before its output
    else:
        out["queue"] = queue
    return out


def route_execute(
    state: RLMState, runtime: Runtime[RLMContext], *, defaults: RLMContext | None = None
) -> Literal["recurse", "execute", "check_final", "generate"]:
    """Fan out waiting sub-calls, run the next queued cell, go decide, or take the next turn.

    ``check_final`` only runs when it has something to decide (a proposed answer, a spent budget,
    the last iteration): otherwise it would be a step that changes nothing, yet costs a checkpoint
    write, one of three per iteration.
    """
    if state.get("pending"):
        return "recurse"
    if state.get("active") is not None:
        return "execute"
    if state.get("queue") and not state.get("budget_hit"):
        return "execute"
    if state.get("proposed") is not None:
        return "check_final"
    if reached_limit(Limits.from_dict(state.get("limits")), state, settings_of(runtime, defaults)) is not None:
        return "check_final"
    return "generate"
