"""prepare: start the run: give it an id, snapshot its limits, load the context into a sandbox."""

from __future__ import annotations

import uuid
from typing import Any

from langgraph.runtime import Runtime

from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.runtime import new_session, settings_of
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMState
from rlm_graph.sandboxes import POOL


def prepare(state: RLMState, runtime: Runtime[RLMContext], *, defaults: RLMContext | None = None) -> dict[str, Any]:
    """Load the context in a new sandbox and record its metadata (never its content)."""
    ctx = settings_of(runtime, defaults)
    query = state.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError("the input needs a non-empty 'query' (the question)")
    if state.get("context") is None and not state.get("context_path"):
        raise ConfigurationError("the input needs a 'context' (inline) or a 'context_path' (a file)")
    run_id = state.get("run_id") or uuid.uuid4().hex
    # A child run may arrive with the parent's remaining budgets; they override the settings.
    limits = Limits.from_dict({**ctx.limits.as_dict(), **(state.get("limits") or {})})
    ready: RLMState = {**state, "run_id": run_id, "limits": limits.as_dict()}
    session = new_session(ready, ctx)
    POOL.put(run_id, session)
    return {
        "run_id": run_id,
        "limits": limits.as_dict(),
        "context_meta": session.context_meta or {},
        "depth": int(state.get("depth") or 0),
        "iteration": 0,
    }
