"""Steering a saved run: carrying it on as its manifest says (``plan``), its iterations
(``history``) and new branches from any of them (``fork``).

A resume, a fork and a follow-up question first make a :class:`Plan` from the run's manifest
(:mod:`rlm_graph.graph.manifest`) and the options the caller gave: the settings to run with, and
the state to write when an allowed change or a moved context must be recorded. History and fork
read the thread's checkpoints. Every iteration begins with a checkpoint whose next step is
``generate`` (the root model's call); the one before iteration N holds the state after iteration
N - 1: its messages, its cells with every sub-call's answer, its usage. A fork copies that state to
a new thread, under a new run id, so the original thread is never written to and the fork's
first cell rebuilds the REPL by replay: no call made before iteration N is made again.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime
from typing import Any

from rlm_graph.errors import ConfigurationError, RunNotFoundError
from rlm_graph.graph import manifest as manifests
from rlm_graph.graph import prompts
from rlm_graph.graph.settings import LIMIT_NAMES, Limits, RLMContext
from rlm_graph.graph.state import total_tokens

log = logging.getLogger("rlm_graph")


@dataclass(frozen=True)
class Plan:
    """How a saved run goes on: the settings to run with and the state to write first.

    Attributes:
        settings: the run's settings from its manifest, changes applied (None for a run saved
            before manifests existed: the caller's own settings are used, as they were then).
        updates: state to write before carrying on: the manifest when it changed, the limits
            when one changed, the context's new path when it moved. Empty when nothing changed.
        changes: the options that differ from the manifest (allowed, or there would be no plan).
    """

    settings: RLMContext | None
    updates: dict[str, Any] = field(default_factory=dict)
    changes: list[manifests.Change] = field(default_factory=list)


def plan(
    thread_id: str,
    values: dict[str, Any],
    requested: dict[str, Any],
    *,
    how: str,
    allow_change: bool = False,
    context: Any = None,
    work_dir: str = ".rlm",
    record: dict[str, Any] | None = None,
) -> Plan:
    """Check ``requested`` options (see :func:`rlm_graph.graph.manifest.requested_names`) against the
    run's manifest and make the plan to carry it on.

    Args:
        thread_id: the run, for messages.
        values: the run's state (its latest, or a fork point's).
        requested: the options the caller gave, by name.
        how: "resume", "fork" or "ask": what the manifest's change entry says.
        allow_change: accept options that differ from the manifest (they are recorded).
        context: a new path for the run's context; accepted when its SHA-256 matches.
        work_dir: this process's work directory (not part of the manifest).
        record: always add a change entry with these details, even with nothing changed (a fork
            records where it came from).

    Raises:
        ConfigurationError: an option differs and ``allow_change`` is off; a chat model object or
            transport factory the run was started with is not given again.
        ContextError: the context is missing, changed, or ``context`` is another file.
    """
    manifest = values.get("manifest")
    if not manifest:
        if context is not None:
            raise ConfigurationError(f"run {thread_id!r} was saved before runs had a manifest, so a moved context cannot be checked")
        return Plan(None)
    changes = changes_to(thread_id, values, requested, allow_change=allow_change)
    moved = None if values.get("context") is not None else manifests.check_context(thread_id, manifest, context)
    for note in manifests.software_notes(thread_id, manifest):
        log.warning("%s; carrying it on", note)
    updates: dict[str, Any] = {}
    if changes or moved or record is not None:
        detail = dict(record or {})
        if moved:
            detail["context"] = [manifest["context"]["path"], moved]
        new = manifests.apply(manifest, changes, how=how, iteration=int(values.get("iteration") or 0), **detail)
        if moved:
            new["context"]["path"] = moved
            updates["context_path"] = moved
        updates["manifest"] = new
        manifest = new
    if any(c.name in LIMIT_NAMES for c in changes):
        updates["limits"] = Limits.from_dict({**(values.get("limits") or {}), **{c.name: c.new for c in changes if c.name in LIMIT_NAMES}}).as_dict()
    return Plan(manifests.settings_of(manifest, work_dir=work_dir), updates, changes)


def changes_to(thread_id: str, values: dict[str, Any], requested: dict[str, Any], *, allow_change: bool = False) -> list[manifests.Change]:
    """The options in ``requested`` that differ from the run's manifest (none for a run without one).

    Raises:
        ConfigurationError: some differ and ``allow_change`` is off, or a chat model object or
            transport factory the run was started with is not given again.
    """
    manifest = values.get("manifest")
    if not manifest:
        return []
    missing = manifests.missing_object(thread_id, manifest, requested)
    if missing:
        raise ConfigurationError(missing)
    changes = manifests.differences(manifest, requested)
    if changes and not allow_change:
        raise ConfigurationError(manifests.refusal(thread_id, changes))
    return changes


def continuation(thread_id: str, values: dict[str, Any], steered: Plan, ctx: Any) -> dict[str, Any] | None:
    """The state that lets a run a limit stopped go on after an allowed change, or None when
    nothing changed (the run's stored result stands). ``ctx`` is the run's RunSettings.

    Raises:
        ConfigurationError: the limit that stopped the run would stop it again at once.
    """
    if not steered.changes:
        return None
    from rlm_graph.graph.runtime import reached_limit

    stopped = values.get("stopped_by")
    limits = Limits.from_dict(steered.updates.get("limits") or values.get("limits"))
    if stopped in LIMIT_NAMES:
        again = reached_limit(limits, {**values, "budget_hit": None}, ctx)  # type: ignore[arg-type]
        if again is not None:
            used = f" ({int(values.get('iteration') or 0)} iterations taken)" if again == "max_iterations" else ""
            raise ConfigurationError(f"run {thread_id!r} was stopped by {stopped}{used}, and with these limits it would stop again at once: raise {again} further")
    changed = ", ".join(c.describe() for c in steered.changes)
    return {
        **steered.updates,
        "stopped_by": None,
        "final_answer": None,
        "proposed": None,
        "budget_hit": None,
        "stuck": 0,
        "form_checks": 0,
        "messages": ({"role": "user", "content": prompts.CONTINUE_NOTE.format(changes=changed)},),
    }


@dataclass(frozen=True)
class Iteration:
    """One root-model turn of a thread, as ``rlm-graph history`` lists it.

    Attributes:
        iteration: its number (1 for the first turn; a fork or ``--at`` names it).
        task: which question on the thread it served (0 for the first; each follow-up adds one).
        cells: the indices of the cells it ran.
        code: the first line of its first cell ("" for a turn that ran no code).
        reply: the start of the model's reply.
        started: when its model call began (ISO 8601, UTC).
        seconds: from its start to the next turn's (or the run's end); None while unfinished.
        tokens: input and output tokens it spent, root and sub-calls together.
    """

    iteration: int
    task: int
    cells: list[int]
    code: str
    reply: str
    started: str
    seconds: float | None
    tokens: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _starts(graph: Any, config: dict[str, Any]) -> dict[int, Any]:
    """The checkpoint before each iteration's model call, by iteration number (newest wins)."""
    starts: dict[int, Any] = {}
    for snap in graph.get_state_history(config):  # newest first
        if tuple(snap.next) == ("generate",) and snap.values.get("run_id"):
            starts.setdefault(int(snap.values.get("iteration") or 0) + 1, snap)
    return starts


def history(graph: Any, config: dict[str, Any]) -> list[Iteration]:
    """The iterations of the thread named by ``config``, oldest first.

    Raises:
        RunNotFoundError: the thread has no checkpoint.
    """
    latest = graph.get_state(config)
    if not latest.values:
        raise RunNotFoundError(f"no run with thread id {config['configurable']['thread_id']!r}")
    values = latest.values
    starts = _starts(graph, config)
    last = int(values.get("iteration") or 0)
    cells = values.get("cells") or []
    replies = [m["content"] for m in values.get("messages") or [] if m.get("role") == "assistant"]
    tasks = values.get("tasks") or []
    end_time, end_tokens = latest.created_at, total_tokens(values.get("usage"))
    out = []
    for n in range(1, last + 1):
        start = starts.get(n)
        nxt = starts.get(n + 1)
        mine = [c for c in cells if int(c.get("iteration") or 0) == n]
        t0 = start.created_at if start else None
        t1 = nxt.created_at if nxt else (end_time if n == last and not latest.next else None)
        k0 = total_tokens(start.values.get("usage")) if start else 0
        k1 = total_tokens(nxt.values.get("usage")) if nxt else end_tokens
        out.append(
            Iteration(
                iteration=n,
                task=max((t["index"] for t in tasks if int(t.get("iteration") or 0) < n), default=0),
                cells=[int(c["index"]) for c in mine],
                code=(mine[0].get("code") or "").strip().splitlines()[0][:120] if mine and (mine[0].get("code") or "").strip() else "",
                reply=(replies[n - 1] if n - 1 < len(replies) else "")[:120],
                started=t0 or "",
                seconds=round(_seconds(t0, t1), 3) if t0 and t1 else None,
                tokens=max(0, k1 - k0),
            )
        )
    return out


def _seconds(t0: str, t1: str) -> float:
    return (datetime.fromisoformat(t1) - datetime.fromisoformat(t0)).total_seconds()


def fork(
    graph: Any,
    config: dict[str, Any],
    *,
    at: int,
    thread_id: str | None = None,
    code: str | None = None,
    note: str | None = None,
    extra: dict[str, Any] | Callable[[dict[str, Any]], dict[str, Any]] | None = None,
) -> str:
    """Copy the thread's state before iteration ``at``'s model call to a new thread; return its id.

    Args:
        graph: the compiled RLM graph (with its checkpointer).
        config: names the source thread.
        at: the iteration to take again (1 is the first; see :func:`history`).
        thread_id: the new thread's id (default: a new one). It must not exist yet.
        code: run this code as iteration ``at`` instead of asking the model for it.
        note: a message from the user the model reads before its turn.
        extra: more state to write with the copy (the manifest's record of the fork), or a
            function of the copied state returning it.

    Raises:
        RunNotFoundError: no such source thread.
        ConfigurationError: no iteration ``at``, or the new thread already exists.
    """
    source = config["configurable"]["thread_id"]
    latest = graph.get_state(config)
    if not latest.values:
        raise RunNotFoundError(f"no run with thread id {source!r}")
    starts = _starts(graph, config)
    if at not in starts:
        known = sorted(starts)
        span = f"{known[0]} to {known[-1]}" if known else "none yet"
        raise ConfigurationError(f"run {source!r} has no iteration {at} to fork at (its iterations: {span})")
    if code is not None and not code.strip():
        raise ConfigurationError("the code to run at the fork is empty")
    new_id = thread_id or uuid.uuid4().hex[:16]
    new_config = {**config, "configurable": {**config["configurable"], "thread_id": new_id}}
    if graph.get_state(new_config).values:
        raise ConfigurationError(f"thread {new_id!r} already exists; pick another --thread-id")
    values = dict(starts[at].values)
    # A new run id: the live sandbox pool is keyed by it, so the fork rebuilds its own REPL by
    # replay and never touches a worker the original thread may still be using.
    values["run_id"] = uuid.uuid4().hex
    # a tuple: messages written in a list would be saved as LangChain messages (see graph/state.py)
    values["messages"] = tuple(values.get("messages") or ())
    if note:
        values["messages"] += ({"role": "user", "content": prompts.USER_NOTE.format(note=note)},)
    values.update((extra(values) if callable(extra) else extra) or {})
    graph.update_state(new_config, values, as_node="prepare")  # prepare's edge leads to generate
    if code is not None:
        reply = f"```repl\n{code.strip()}\n```"
        graph.update_state(
            new_config,
            {"iteration": at, "messages": ({"role": "assistant", "content": reply},), "queue": [code], "proposed": None},
            as_node="generate",
        )
    return new_id
