"""The RLM graph's state, its input and output schemas, and every reducer.

The state is checkpointed after every step, so it holds only what a resume needs and keeps it
compact: model replies and REPL outputs (never the context itself, only where it lives: a child
run's context too, as a digest in the content-addressed store of :mod:`rlm_graph.contexts`), completed
cells with the answers of every sub-call they made (so a new sandbox can be rebuilt by replay with
no model call repeated), the pending fan-out, counters, usage and the final answer.

The channels that only grow (``messages``, ``cells``, ``answers``) are LangGraph delta channels
(``DeltaChannel``): a checkpoint stores each step's new items, not the whole list again, and a
full snapshot every :data:`SNAPSHOT_EVERY` updates bounds the replay that rebuilds them. Storage
then grows linearly with the run (a plain ``operator.add`` channel is written whole at every
step: quadratic). Their reducers take the current value and a batch of writes,
``(current, [write, ...])``, and must give the same result however the writes are batched.

Nodes write ``messages`` as a tuple of ``{role, content}`` dicts: LangGraph turns message-shaped
dicts written to a delta channel *in a list* into LangChain messages, in the saved writes and in
the ``updates`` stream the loggers read.
"""

from __future__ import annotations

import operator
from collections.abc import Sequence
from typing import Annotated, Any

from langgraph.channels.delta import DeltaChannel
from typing_extensions import TypedDict

from rlm_graph.contexts import ContextRef

#: Usage entry per model: calls, input_tokens, output_tokens, cost_usd (None when unknown).
Usage = dict[str, dict[str, Any]]


class Message(TypedDict):
    """One turn the root model sees after the system prompt and the task: ``role`` and ``content``."""

    role: str
    content: str


class RequestRecord(TypedDict, total=False):
    """A sub-call request a cell made, with what it got back (in the order the cell asked)."""

    kind: str  # "llm" or "rlm"
    hashes: list[str]  # prompt digests, matched on replay
    prompts: list[str]  # prompts, each cut to a preview length for logs
    texts: list[str]  # the answers, whole
    error: str | None
    refused: bool  # a spent budget answered it with an error, no call was made
    seconds: float
    children: list[dict[str, Any]]  # per rlm prompt: a summary of the child run (iterations, answer, fallback)


class Cell(TypedDict, total=False):
    """A completed code cell."""

    index: int
    iteration: int
    code: str
    stdout: str
    stderr: str
    error: str | None
    final: str | None
    vars: dict[str, str]
    seconds: float
    timed_out: bool
    killed: bool  # the worker was killed mid-cell: replay skips this cell
    requests: list[RequestRecord]


class BudgetRef(TypedDict, total=False):
    """Where a sub-call's reservation lives, so a task re-run after a kill can settle it."""

    tree: str  # the root run's id: one ledger per tree
    run: str  # the run that asked
    parent: str | None  # that run's parent (None for the root)
    hold: dict[str, Any]  # this call's reservation: {tokens, cost_usd, calls}
    base: dict[str, Any]  # the run's spend when the fan-out was reserved, every hold of it included


class Pending(TypedDict):
    """One sub-call waiting to be fanned out (one prompt of a request): the ``sub_call`` input."""

    key: str  # "c{cell}.r{ordinal}.p{i}.{prompt hash}"
    kind: str  # "llm" or "rlm"
    prompt: str
    context_ref: ContextRef | None  # for rlm: where the child's context is stored (None: the prompt itself)
    depth: int  # the depth of the run that asked
    run_id: str
    limits: dict[str, Any]  # the run's limits (max_seconds: what is left), for a child run
    budget: BudgetRef  # where this call's reservation is held


class ParentRef(TypedDict, total=False):
    """What a child run (``rlm_query``) gets from the run that started it."""

    tree: str
    run_id: str
    limits: dict[str, Any]


class SubAnswer(TypedDict, total=False):
    """What one sub_call task returned."""

    text: str
    error: str | None
    usage: Usage
    seconds: float
    child: dict[str, Any] | None


class ActiveCell(TypedDict, total=False):
    """The cell being executed (possibly suspended while its sub-calls run)."""

    index: int
    code: str
    started: float
    requests: list[RequestRecord]  # requests made so far; answers arrive in ``answers``


class Task(TypedDict, total=False):
    """One question asked on a thread: the first, then each follow-up (``rlm-graph ask``)."""

    index: int  # 0 for the thread's first question
    query: str
    iteration: int  # root turns taken before this question was asked (its iterations count from here)
    answer: str | None  # filled in when the next question is asked
    stopped_by: str | None


class RLMInput(TypedDict, total=False):
    """What a caller passes in: the question and the context (inline, or a file path)."""

    query: str
    context: Any
    context_path: str | None
    context_format: str
    context_ref: ContextRef | None  # a child run's context, in the store (contexts.store_value)
    depth: int
    limits: dict[str, Any]  # budgets for this run, over the graph's
    parent: ParentRef  # set for a child run: its tree, its parent, the limits it inherits
    manifest: dict[str, Any]  # what the run is, saved with the input (prepare completes it): graph/manifest.py


class RLMOutput(TypedDict, total=False):
    """What the graph returns to a caller (or a parent graph)."""

    final_answer: str | None
    stopped_by: str | None
    confirmed: bool
    iteration: int
    usage: Usage
    n_subcalls: int
    cells: list[Cell]
    run_id: str
    reserved: dict[str, dict[str, Any]]  # budget reservations not yet settled: empty once a run has ended


#: Updates of a delta channel between two full snapshots. A snapshot costs the channel's whole
#: size, the replay in between one reducer call over at most this many writes: at 100, a 320-turn
#: run stores about 1.5x its items' size and reads its state back in a few milliseconds.
SNAPSHOT_EVERY = 100

CLEAR = {"__clear__": True}


def append_batches(current: list[Any] | None, writes: Sequence[list[Any] | None]) -> list[Any]:
    """Reducer of the list channels: append each write's items, in order."""
    out = list(current or [])
    for items in writes:
        out.extend(items or [])
    return out


def append_turns(current: list[Message] | None, writes: Sequence[Sequence[Any] | None]) -> list[Message]:
    """Reducer of ``messages``: append each write's turns, in order, as ``{role, content}`` dicts.

    LangGraph turns a message-shaped dict written to a delta channel in a list into a LangChain
    message (to give it an id); nodes write tuples, which it leaves alone, and a message that
    arrives anyway is turned back into the plain dict the rest of the code reads.
    """
    out = list(current or [])
    for items in writes:
        for m in items or ():
            out.append(m if isinstance(m, dict) else _as_turn(m))
    return out


def _as_turn(message: Any) -> Message:
    role = "assistant" if getattr(message, "type", "") == "ai" else "user"
    return {"role": role, "content": str(getattr(message, "content", message))}


def merge_answers(current: dict[str, SubAnswer] | None, writes: Sequence[dict[str, Any] | None]) -> dict[str, SubAnswer]:
    """Reducer of ``answers``: collect sub-call answers by key; a write of :data:`CLEAR` empties it."""
    out = dict(current or {})
    for update in writes:
        if update is not None and update.get("__clear__"):
            out = {}
        else:
            out.update(update or {})
    return out


class RLMState(TypedDict, total=False):
    """The whole checkpointed state of one RLM run."""

    # input
    query: str
    context: Any
    context_path: str | None
    context_format: str
    context_ref: ContextRef | None  # a child run's context: its digest in the store, never the value
    depth: int
    parent: ParentRef  # input of a child run
    # set up once
    run_id: str
    tree: str  # the root run's id: the budget ledger this run draws on
    parent_run: str | None  # the run that started this one (None for the root)
    context_meta: dict[str, Any]
    limits: dict[str, Any]
    manifest: dict[str, Any]  # what the run is: settings, versions, context identity (graph/manifest.py)
    tasks: Annotated[list[Task], merge_tasks]  # the questions asked on this thread, in order
    # the conversation and the REPL record
    messages: Annotated[list[Message], DeltaChannel(append_turns, snapshot_frequency=SNAPSHOT_EVERY)]
    queue: list[str]  # code blocks of the latest reply still to run
    active: ActiveCell | None
    cells: Annotated[list[Cell], DeltaChannel(append_batches, snapshot_frequency=SNAPSHOT_EVERY)]
    pending: list[Pending]
    answers: Annotated[dict[str, SubAnswer], DeltaChannel(merge_answers, snapshot_frequency=SNAPSHOT_EVERY)]
    # counters and accounting
    iteration: int
    n_subcalls: Annotated[int, operator.add]
    usage: Annotated[Usage, add_usage]
    reserved: Annotated[dict[str, dict[str, Any]], merge_reserved]  # holds of sub-calls in flight, by answer key
    errors: int  # failed cells and sub-calls in a row (max_errors)
    proposed: dict[str, Any] | None  # a FINAL not yet accepted: {answer, iteration, source}
    budget_hit: str | None  # a budget a sub-call request found spent
    guard_used: bool  # the grounding guard fired once already
    stuck: int  # stuck-loop notes in a row
    form_checks: int  # answer-form checks made
    answer_notes: int  # notes sent back about a non-answer ("not found") or an answer in a sentence
    # the end
    final_answer: str | None
    stopped_by: str | None
    confirmed: bool  # the answer passed the checks (False: a best effort at a limit, or a non-answer)


def add_usage(left: Usage | None, right: Usage | None) -> Usage:
    """Reducer: add per-model usage counters; ``cost_usd`` stays None while any part is unknown."""
    out: Usage = {k: dict(v) for k, v in (left or {}).items()}
    for model, u in (right or {}).items():
        cur = out.setdefault(model, {"calls": 0, "input_tokens": 0, "output_tokens": 0, "cost_usd": 0.0})
        for key in ("calls", "input_tokens", "output_tokens"):
            cur[key] = int(cur.get(key) or 0) + int(u.get(key) or 0)
        cur_cost, add_cost = cur.get("cost_usd"), u.get("cost_usd", 0.0)
        cur["cost_usd"] = None if cur_cost is None or add_cost is None else round(cur_cost + add_cost, 8)
        if u.get("unknown_usage") or cur.get("unknown_usage"):
            cur["unknown_usage"] = int(cur.get("unknown_usage") or 0) + int(u.get("unknown_usage") or 0)
    return out


def merge_reserved(left: dict[str, dict[str, Any]] | None, right: dict[str, dict[str, Any] | None] | None) -> dict[str, dict[str, Any]]:
    """Reducer of ``reserved``: add holds by key; a key written as None is settled (removed);
    a write of :data:`CLEAR` empties it."""
    out = dict(left or {})
    if right is not None and right.get("__clear__"):
        return {}
    for key, hold in (right or {}).items():
        if hold is None:
            out.pop(key, None)
        else:
            out[key] = hold
    return out


def merge_tasks(left: list[Task] | None, right: list[Task] | None) -> list[Task]:
    """Reducer: add a thread's questions; an entry whose ``index`` is already there updates it
    (a follow-up records the previous question's answer that way)."""
    out = [dict(t) for t in left or []]
    for task in right or []:
        index = task.get("index", len(out))
        if 0 <= index < len(out):
            out[index] = {**out[index], **task}
        else:
            out.append({**task, "index": len(out)})
    return out  # type: ignore[return-value]


def task_start(state: RLMState) -> int:
    """The iteration at which the thread's current question was asked (0 for its first)."""
    tasks = state.get("tasks") or []
    return int(tasks[-1].get("iteration") or 0) if tasks else 0


def total_tokens(usage: Usage | None) -> int:
    """Input plus output tokens over all models."""
    return sum(int(u.get("input_tokens") or 0) + int(u.get("output_tokens") or 0) for u in (usage or {}).values())


def total_cost(usage: Usage | None) -> float:
    """Known cost over all models (unknown costs count as zero)."""
    return sum(float(u.get("cost_usd") or 0.0) for u in (usage or {}).values())
