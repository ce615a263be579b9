"""What the nodes share at run time: the run's settings and its live sandbox.

The sandbox is not state. It lives in a process-local pool keyed by the run's id. When a node
finds none (a new process after a crash, another machine, a killed worker) or finds one that has
run different cells (a fork from an older checkpoint), it starts a new worker and replays the
recorded cells, serving each sub-call from the record: no model call is repeated.
"""

from __future__ import annotations

import logging
import threading
import time
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from rlm_graph.contexts import check_file, format_for, write_value
from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMState, total_cost, total_tokens
from rlm_graph.models.calls import call_model
from rlm_graph.sandboxes import POOL, SandboxSession, transport_factory
from rlm_graph.sandboxes.protocol import SubRequest

log = logging.getLogger("rlm_graph")


def settings_of(runtime: Runtime[RLMContext] | None, defaults: RLMContext | None) -> RLMContext:
    """The run's settings: the invoke-time context, completed by the graph's defaults.

    The LangGraph server turns a run's ``context`` JSON into an ``RLMContext`` holding only what
    the request named (``{"approve_code": true, "limits": {"max_iterations": 5}}``); every field
    it left at its default, models included, comes from the graph's own settings.
    """
    if defaults is not None and defaults.model is None:
        defaults = _from_env(defaults)
    ctx = getattr(runtime, "context", None)
    if isinstance(ctx, dict):
        ctx = RLMContext(**{k: v for k, v in ctx.items() if k in _FIELDS})
    if not isinstance(ctx, RLMContext):
        if defaults is None:
            raise ConfigurationError("the RLM graph was invoked without settings: pass context=RLMContext(...)")
        return defaults
    if ctx.model is not None or defaults is None:
        return ctx if isinstance(ctx.limits, Limits) else replace(ctx, limits=Limits.from_dict(ctx.limits))  # type: ignore[arg-type]
    merged = {f: getattr(ctx, f) if getattr(ctx, f) != getattr(_BLANK, f) else getattr(defaults, f) for f in _FIELDS if f != "started_at"}
    limits = ctx.limits if isinstance(ctx.limits, Limits) else Limits.from_dict({**defaults.limits.as_dict(), **dict(ctx.limits)})  # type: ignore[call-overload]
    return RLMContext(**{**merged, "limits": limits, "started_at": ctx.started_at})


_BLANK = RLMContext()
_FIELDS = tuple(f.name for f in fields(RLMContext))


_ENV_SETTINGS: dict[int, RLMContext] = {}


def _from_env(base: RLMContext) -> RLMContext:
    """Fill a model-less graph's settings from the environment, once per process."""
    from rlm_graph.models import settings_from_env

    key = id(base)
    if key not in _ENV_SETTINGS:
        _ENV_SETTINGS[key] = RLMContext(**{**base.__dict__, **settings_from_env()})
    return _ENV_SETTINGS[key]


def trace_config(depth: int) -> dict[str, Any]:
    """Run-config keys that name an RLM run in LangSmith by its depth.

    The graph's run is called ``rlm depth N``; its node runs keep the node's name
    (``generate``, ``execute``, ``sub_call`` ...) and inherit ``rlm_depth`` in their metadata, so
    a trace can be filtered by depth. Merge it into the config of the root run (depth 0) and of
    each child invoke (depth + 1); it changes nothing when tracing is off.

    Example:
        >>> trace_config(1)
        {'run_name': 'rlm depth 1', 'metadata': {'rlm_depth': 1}}
    """
    return {"run_name": f"rlm depth {depth}", "metadata": {"rlm_depth": depth}}


def context_file(state: RLMState, ctx: RLMContext) -> tuple[Path, str]:
    """The file the sandbox loads the context from, writing an inline context the first time."""
    if state.get("context_path"):
        path = check_file(str(state["context_path"]))
        return path, state.get("context_format") or format_for(path)
    value = state.get("context")
    if value is None:
        value = state.get("query", "")
    run_id = state.get("run_id") or "run"
    target = Path(ctx.work_dir) / "contexts" / f"{run_id}{'.txt' if isinstance(value, str) else '.json'}"
    if target.exists():
        return target.resolve(), "text" if isinstance(value, str) else "json"
    path, fmt = write_value(value, target.parent, run_id)
    return path.resolve(), fmt


def new_session(state: RLMState, ctx: RLMContext) -> SandboxSession:
    """Start a worker for this run and load its context."""
    limits = Limits.from_dict(state.get("limits"))
    path, fmt = context_file(state, ctx)
    session = SandboxSession(
        transport_factory(ctx.sandbox, _sized_options(ctx, path)),
        cell_timeout=limits.cell_timeout,
        max_output_chars=limits.max_output_chars,
    )
    session.start()
    session.load_context(path, fmt)
    return session


#: The memory limit each backend uses when none is given (MB).
_DEFAULT_MEMORY_MB = {"local": 4096, "docker": 1024}


def _sized_options(ctx: RLMContext, path: Path) -> dict[str, Any]:
    """Sandbox options with a memory limit big enough for the context (Python holds text at ~2x)."""
    opts = dict(ctx.sandbox_options)
    default = _DEFAULT_MEMORY_MB.get(ctx.sandbox) if isinstance(ctx.sandbox, str) else None
    if default is not None and "memory_mb" not in opts:
        needed = int(path.stat().st_size * 2.5 / 2**20) + 512
        if needed > default:
            opts["memory_mb"] = needed
    return opts


def open_session(state: RLMState, ctx: RLMContext) -> SandboxSession:
    """This run's live sandbox, rebuilt by replay when missing or out of step with the state."""
    key = state["run_id"]
    cells = state.get("cells") or []
    session = POOL.get(key)
    active = state.get("active")
    if session is not None and session.matches(cells):
        running = session.progress.cell
        if running is None or (active is not None and running == active["index"]):
            return session
    if session is not None:
        log.info("run %s: the live sandbox is out of step with the checkpoint; rebuilding it by replay", key)
    session = new_session(state, ctx)
    if cells:
        fresh = session.replay(cells, lambda req: _fresh_answers(req, ctx))
        if fresh:
            log.warning("run %s: replay needed %d fresh sub-call(s) because the code's prompts changed", key, fresh)
    POOL.put(key, session)
    return session


def _fresh_answers(req: SubRequest, ctx: RLMContext) -> list[str]:
    """Answer a request the record has no match for, straight from the sub-model."""
    return [call_model(ctx.sub, [HumanMessage(p)], label=ctx.sub_label).text for p in req.prompts]


_SLOTS: dict[str, threading.BoundedSemaphore] = {}
_SLOTS_LOCK = threading.Lock()


def concurrency_slot(run_id: str, limit: int) -> threading.BoundedSemaphore:
    """The semaphore that caps a run's sub-calls in flight at ``max_concurrency``.

    The cap is not LangGraph's ``max_concurrency`` config: that also sizes the thread pool the
    checkpoint writes go through, and a pool full of waiting tasks would hold a finished task's
    write back until the whole fan-out is done (a kill then loses answers already paid for).
    """
    with _SLOTS_LOCK:
        slot = _SLOTS.get(run_id)
        if slot is None:
            slot = _SLOTS[run_id] = threading.BoundedSemaphore(max(1, int(limit)))
        return slot


def close_session(state: RLMState) -> None:
    """Stop the run's sandbox (the run has ended)."""
    if state.get("run_id"):
        POOL.discard(state["run_id"])
        with _SLOTS_LOCK:
            _SLOTS.pop(state["run_id"], None)


def remaining(limits: Limits, state: RLMState, ctx: RLMContext) -> dict[str, Any]:
    """What is left of each whole-tree budget (None where unlimited)."""
    usage = state.get("usage") or {}
    return {
        "max_subcalls": None if limits.max_subcalls is None else limits.max_subcalls - int(state.get("n_subcalls") or 0),
        "max_tokens": None if limits.max_tokens is None else limits.max_tokens - total_tokens(usage),
        "max_cost_usd": None if limits.max_cost_usd is None else limits.max_cost_usd - total_cost(usage),
        "max_seconds": None if limits.max_seconds is None else limits.max_seconds - (time.monotonic() - ctx.started_at),
    }


def reached_limit(limits: Limits, state: RLMState, ctx: RLMContext) -> str | None:
    """Why the run must end now with a forced answer: a budget a request found spent, a whole-tree
    budget spent, or the last iteration done; None while the run may take another turn."""
    limit = state.get("budget_hit") or spent_budget(limits, state, ctx)
    if limit is None and int(state.get("iteration") or 0) >= limits.max_iterations:
        limit = "max_iterations"
    return limit


def spent_budget(limits: Limits, state: RLMState, ctx: RLMContext, extra_calls: int = 0) -> str | None:
    """The name of the first whole-tree budget that is spent (``extra_calls`` more sub-calls included)."""
    left = remaining(limits, state, ctx)
    if left["max_subcalls"] is not None and left["max_subcalls"] - extra_calls < 0:
        return "max_subcalls"
    for name in ("max_tokens", "max_cost_usd", "max_seconds"):
        if left[name] is not None and left[name] <= 0:
            return name
    return None
