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

from rlm_graph.contexts import ContextRef, store_value
from rlm_graph.errors import ContextError, SandboxTimeout, WorkerCrashed
from rlm_graph.graph import prompts
from rlm_graph.graph.bindings import Bindings, RunSettings
from rlm_graph.graph.ledger import Account, Spend
from rlm_graph.graph.runtime import Charges, estimate, open_session, reached_limit, run_account, seconds_left, settings_of
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import CLEAR, ActiveCell, BudgetRef, Cell, RLMState, RequestRecord, SubAnswer
from rlm_graph.models.calls import reply_cap
from rlm_graph.sandboxes import POOL
from rlm_graph.sandboxes.protocol import CellResult, SubRequest
from rlm_graph.sandboxes.session import Recorded
from rlm_graph.tools import TOOL_KIND

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


def execute(state: RLMState, runtime: Runtime[RLMContext], *, defaults: Bindings | None = None) -> dict[str, Any]:
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
    account = run_account(state)
    charges = Charges()  # fresh calls a replay needed
    session = open_session({**state, "active": active}, ctx, charges, account=account)
    update.update(charges.update())
    session.cell_timeout = limits.cell_timeout
    time_left = seconds_left(limits, state)
    if time_left is not None:
        session.cell_timeout = max(1.0, min(limits.cell_timeout, time_left))
    reserved = state.get("reserved") or {}
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
        keys = [answer_key(active["index"], req.ordinal, i, h) for i, h in enumerate(req.hashes)]
        contexts = req.contexts or [None] * len(req.prompts)
        depth = int(state.get("depth") or 0)
        # The host decides: each prompt reserves its worst case, in order; the first that does not
        # fit, and every prompt after it, is answered with an error instead of a call.
        # A tool call costs no tokens and is not a sub-call: budgets neither hold nor refuse it.
        tool = req.kind == TOOL_KIND
        refusal = None if tool else update.get("budget_hit") or state.get("budget_hit") or _time_up(limits, state)
        holds: dict[str, Spend] = {}
        refused_from = 0 if refusal else None
        if refusal is None and not tool:
            holds, refusal, refused_from = _reserve(account, req.kind, keys, req.prompts, contexts, answers, reserved, ctx, depth, limits)
        if refusal is not None:
            update["budget_hit"] = refusal
        error = f"budget spent ({refusal}); this sub-call was not made"
        if refused_from == 0 and not any(k in answers or k in reserved for k in keys):
            record.update(refused=True, error=error, texts=[])  # type: ignore[typeddict-unknown-key]
            requests[req.ordinal : req.ordinal + 1] = [record]
            recorded.append(Recorded(req.hashes, [], error))
            continue
        requests[req.ordinal : req.ordinal + 1] = [record]
        del requests[req.ordinal + 1 :]
        refused = set(keys[refused_from:]) - set(answers) - set(reserved) if refused_from is not None else set()
        if refused:
            update["answers"] = {k: {"text": "", "error": error, "refused": True, "seconds": 0.0} for k in refused}
        # A child's context goes to the content-addressed store, once; the state carries its digest.
        # One that would take the run's total past its cap is answered with the error instead.
        tree = state.get("tree") or state["run_id"]
        stored: dict[str, ContextRef | None] = {}
        for key, c in zip(keys, contexts):
            if key in answers or key in refused:
                continue
            try:
                stored[key] = store_value(c, ctx.work_dir, run=tree) if req.kind == "rlm" and c is not None else None
            except ContextError as exc:
                if key in holds:
                    account.release(key)
                    del holds[key]
                update.setdefault("answers", {})[key] = {"text": "", "error": str(exc), "seconds": 0.0, "child": None}
        if holds:
            update["reserved"] = {k: h.as_dict() for k, h in holds.items()}
        child_limits = _child_limits(limits, state)  # the same for every prompt of the request
        ref: BudgetRef = {"tree": tree, "run": state["run_id"], "parent": state.get("parent_run"),
                          "base": account.ledger.book(state["run_id"]).as_dict()}
        pending = [
            {"key": key, "kind": req.kind, "prompt": p, "depth": depth, "run_id": state["run_id"], "limits": child_limits,
             "context_ref": stored[key],
             "budget": {**ref, "hold": (holds.get(key) or Spend.from_dict(reserved.get(key))).as_dict()}}
            for key, p in zip(keys, req.prompts)
            if key in stored
        ]
        return {**update, "active": {**active, "requests": requests}, "pending": pending}


def _time_up(limits: Limits, state: RLMState) -> str | None:
    left = seconds_left(limits, state)
    return "max_seconds" if left is not None and left <= 0 else None


def sub_call_prompt(prompt: str, context: Any) -> str:
    """What a plain sub-call sends for a prompt (an ``rlm_query`` at ``max_depth`` sends its context too)."""
    return prompt if context is None else f"{prompt}\n\nContext:\n{context}"


def _reserve(
    account: Account,
    kind: str,
    keys: list[str],
    prompts: list[str],
    contexts: list[Any],
    answers: dict[str, SubAnswer],
    reserved: dict[str, Any],
    ctx: RunSettings,
    depth: int,
    limits: Limits,
) -> tuple[dict[str, Spend], str | None, int | None]:
    """Reserve the request's prompts one by one: (new holds, the budget that refused, its index).

    A prompt already answered or already held (execute entered again between fan-out waves)
    is skipped. A child run holds one sub-call; its own calls reserve as they are made.
    """
    child = kind == "rlm" and depth + 1 <= limits.max_depth
    cap = reply_cap(ctx.sub, ctx.reply_tokens)
    holds: dict[str, Spend] = {}
    for i, (key, prompt, context) in enumerate(zip(keys, prompts, contexts)):
        if key in answers or key in reserved:
            continue
        if child:
            amount = Spend(calls=1)
        else:
            text = sub_call_prompt(prompt, context if kind == "rlm" else None)
            amount = estimate(account, [text], label=ctx.sub_label, cap=cap, ctx=ctx, calls=1)
        refusal = account.reserve(key, amount)
        if refusal is not None:
            return holds, refusal, i
        holds[key] = amount
    return holds, None, None


def _child_limits(limits: Limits, state: RLMState) -> dict[str, Any]:
    """The limits a child run gets: the parent's (the whole-tree budgets are the ledger's to
    enforce, for every run of the tree at once), with what is left of ``max_seconds``."""
    out = limits.as_dict()
    left = seconds_left(limits, state)
    if left is not None:
        out["max_seconds"] = max(left, 1)
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
    errors, worst = _error_streak(int(state.get("errors") or 0), requests, answers, active["index"], result)
    limits = Limits.from_dict(state.get("limits"))
    if limits.max_errors is not None and worst >= limits.max_errors and not update.get("budget_hit"):
        update = {**update, "budget_hit": "max_errors"}
    # Every hold of the cell is settled by now; one that is not (a task that never reported) is
    # released, so no reservation outlives its cell.
    leftover = {k: None for k in state.get("reserved") or {} if k.startswith(f"c{active['index']}.")}
    out: dict[str, Any] = {
        **update,
        "errors": errors,
        "cells": [cell],
        "active": None,
        "pending": [],
        "answers": CLEAR,
        "messages": ({"role": "user", "content": prompts.output_message(cell["index"], result.stdout, result.stderr, result.error, result.vars, state.get("query"))},),
    }
    if leftover:
        out["reserved"] = leftover
    if result.final is not None:
        out["proposed"] = {"answer": result.final, "iteration": cell["iteration"], "source": "code"}
        out["queue"] = []  # a FINAL ends the reply: later blocks were written before its output
    else:
        out["queue"] = queue
    return out


def _error_streak(streak: int, requests: list[RequestRecord], answers: dict[str, SubAnswer], cell: int, result: CellResult) -> tuple[int, int]:
    """Failed sub-calls and cells in a row, in call order: (the streak after this cell, its peak).

    A sub-call the budget refused is neither a failure nor a success.
    """
    peak = streak
    for k, req in enumerate(requests):
        if req.get("refused"):  # type: ignore[typeddict-item]
            continue
        for i, h in enumerate(req["hashes"]):
            got = answers.get(answer_key(cell, k, i, h)) or {}
            if got.get("refused"):
                continue
            streak = streak + 1 if got.get("error") else 0
            peak = max(peak, streak)
    streak = streak + 1 if result.error else 0
    return streak, max(peak, streak)


def route_execute(
    state: RLMState, runtime: Runtime[RLMContext], *, defaults: Bindings | None = None
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
