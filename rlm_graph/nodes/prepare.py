"""prepare: start the run: give it an id, snapshot its limits, load the context into a sandbox,
and write the run's manifest (see :mod:`rlm_graph.graph.manifest`).

On a thread that has run before, a new input is a follow-up question: the conversation and the
REPL (rebuilt by replay, with no model call) are kept, the question is added as a new task, and
the previous question's stop state is cleared so the new one is answered on its own.
"""

from __future__ import annotations

import uuid
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from langgraph.runtime import Runtime

from rlm_graph.errors import ConfigurationError
from rlm_graph.graph import manifest, prompts
from rlm_graph.graph.bindings import Bindings, RunSettings, served_path
from rlm_graph.graph.runtime import Charges, context_file, new_session, open_session, run_account, run_clock, settings_of
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import CLEAR, RLMState
from rlm_graph.models.calls import reports_cost
from rlm_graph.sandboxes import POOL


def prepare(state: RLMState, runtime: Runtime[RLMContext], *, defaults: Bindings | None = None) -> dict[str, Any]:
    """Load the context in a new sandbox and record its metadata (never its content)."""
    ctx = settings_of(runtime, defaults)
    query = state.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError("the input needs a non-empty 'query' (the question)")
    checked: dict[str, Any] = {}
    if state.get("context_path") and ctx.bindings.limit_paths:  # the served graph: a path from HTTP
        checked = {"context_path": str(served_path(state["context_path"]))}
        state = {**state, **checked}  # type: ignore[typeddict-item]
    if state.get("run_id"):
        return {**_follow_up(state, ctx, query), **checked}
    if state.get("context") is None and not state.get("context_path") and state.get("context_ref") is None:
        raise ConfigurationError("the input needs a 'context' (inline) or a 'context_path' (a file)")
    run_id = uuid.uuid4().hex
    run_clock(run_id, restart=True)  # max_seconds counts from here, not from when the graph was built
    # A child run arrives with its parent's limits (the whole-tree budgets, the seconds left) and
    # draws on its tree's budget ledger.
    parent = state.get("parent") or {}
    limits = Limits.from_dict({**ctx.limits.as_dict(), **(state.get("limits") or {}), **(parent.get("limits") or {})})
    if not parent:
        check_prices(limits, ctx)
    tree = parent.get("tree") or run_id
    ready: RLMState = {**state, "run_id": run_id, "limits": limits.as_dict(), "tree": tree, "parent_run": parent.get("run_id")}
    run_account(ready)  # open the run's book before its first call
    depth = int(state.get("depth") or 0)
    path, fmt = context_file(ready, ctx)  # an inline context is written here, once
    with ThreadPoolExecutor(1) as hashing:  # a big context is hashed while the worker loads it
        identity = hashing.submit(manifest.file_identity, path) if not parent else None
        session = new_session(ready, ctx)
        POOL.put(run_id, session)
        update: dict[str, Any] = {}
        if identity is not None:  # a child run is carried on by its parent's manifest
            update["manifest"] = manifest.build(ctx, limits=limits.as_dict(), context={**identity.result(), "format": fmt},
                                                per_run=state.get("limits") or {})
    return {
        **checked,
        **update,
        "run_id": run_id,
        "tree": tree,
        "parent_run": parent.get("run_id"),
        "limits": limits.as_dict(),
        "context_meta": session.context_meta or {},
        "depth": depth,
        "iteration": 0,
        "tasks": [{"index": 0, "query": query, "iteration": 0}],
    }


def check_prices(limits: Limits, ctx: RunSettings) -> None:
    """Refuse ``max_cost_usd`` when a model's calls could not be priced (it would never fire).

    A model is priced by the ``prices`` table (under its usage label) or by a provider that
    reports each call's cost (OpenRouter).

    Raises:
        ConfigurationError: naming the model and the ``prices`` entry that would fix it.
    """
    if limits.max_cost_usd is None:
        return
    prices = ctx.prices or {}
    for label, model in ((ctx.model_label, ctx.model), (ctx.sub_label, ctx.sub)):
        if label not in prices and not reports_cost(model):
            raise ConfigurationError(
                f"max_cost_usd is set but the cost of model {label!r} is unknown: its provider reports no cost and "
                f"there is no price for it; pass prices={{{label!r}: (USD_PER_M_INPUT, USD_PER_M_OUTPUT)}} "
                f"(CLI: --prices '{{\"{label}\": [IN, OUT]}}'), or drop max_cost_usd"
            )


def _follow_up(state: RLMState, ctx: RunSettings, query: str) -> dict[str, Any]:
    """A new question on a thread that has run: same REPL, same conversation, a new task."""
    run_clock(state["run_id"], restart=True)
    charges = Charges()
    open_session({**state, "active": None}, ctx, charges)  # the REPL as the last cell left it, by replay
    tasks = state.get("tasks") or []
    iteration = int(state.get("iteration") or 0)
    previous = {"index": len(tasks) - 1, "answer": state.get("final_answer"), "stopped_by": state.get("stopped_by")}
    return {
        "tasks": [previous, {"index": len(tasks), "query": query, "iteration": iteration}] if tasks else [{"index": 0, "query": query, "iteration": iteration}],
        "messages": ({"role": "user", "content": prompts.FOLLOW_UP_PROMPT.format(query=query)},),
        # the previous question's end, and anything a killed run left half done
        "final_answer": None,
        "stopped_by": None,
        "proposed": None,
        "budget_hit": None,
        "stuck": 0,
        "form_checks": 0,
        "queue": [],
        "active": None,
        "pending": [],
        "answers": CLEAR,
        "reserved": CLEAR,
        "errors": 0,
        **charges.update(),
    }
