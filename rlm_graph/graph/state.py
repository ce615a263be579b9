"""The RLM graph's state, its input and output schemas, and every reducer.

The state is checkpointed after every step, so it holds only what a resume needs and keeps it
compact: model replies and REPL outputs (never the context itself, only where it lives), completed
cells with the answers of every sub-call they made (so a new sandbox can be rebuilt by replay with
no model call repeated), the pending fan-out, counters, usage and the final answer.
"""

from __future__ import annotations

import operator
from typing import Annotated, Any, TypedDict

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


class Pending(TypedDict):
    """One sub-call waiting to be fanned out (one prompt of a request): the ``sub_call`` input."""

    key: str  # "c{cell}.r{ordinal}.p{i}.{prompt hash}"
    kind: str  # "llm" or "rlm"
    prompt: str
    context: Any  # for rlm: the child's context (None: the prompt itself)
    depth: int  # the depth of the run that asked
    run_id: str
    limits: dict[str, Any]  # what is left of the budgets, for a child run


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


class RLMInput(TypedDict, total=False):
    """What a caller passes in: the question and the context (inline, or a file path)."""

    query: str
    context: Any
    context_path: str | None
    context_format: str
    depth: int


class RLMOutput(TypedDict, total=False):
    """What the graph returns to a caller (or a parent graph)."""

    final_answer: str | None
    stopped_by: str | None
    iteration: int
    usage: Usage
    n_subcalls: int
    cells: list[Cell]
    run_id: str


class RLMState(TypedDict, total=False):
    """The whole checkpointed state of one RLM run."""

    # input
    query: str
    context: Any
    context_path: str | None
    context_format: str
    depth: int
    # set up once
    run_id: str
    context_meta: dict[str, Any]
    limits: dict[str, Any]
    # the conversation and the REPL record
    messages: Annotated[list[Message], operator.add]
    queue: list[str]  # code blocks of the latest reply still to run
    active: ActiveCell | None
    cells: Annotated[list[Cell], operator.add]
    pending: list[Pending]
    answers: Annotated[dict[str, SubAnswer], merge_answers]
    # counters and accounting
    iteration: int
    n_subcalls: Annotated[int, operator.add]
    usage: Annotated[Usage, add_usage]
    proposed: dict[str, Any] | None  # a FINAL not yet accepted: {answer, iteration, source}
    budget_hit: str | None  # a budget a sub-call request found spent
    guard_used: bool  # the grounding guard fired once already
    stuck: int  # stuck-loop notes in a row
    form_checks: int  # answer-form checks made
    # the end
    final_answer: str | None
    stopped_by: str | None


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


CLEAR = {"__clear__": True}


def merge_answers(left: dict[str, SubAnswer] | None, right: dict[str, Any] | None) -> dict[str, SubAnswer]:
    """Reducer: collect sub-call answers by key; the value :data:`CLEAR` empties the channel."""
    if right is not None and right.get("__clear__"):
        return {}
    out = dict(left or {})
    out.update(right or {})
    return out


def total_tokens(usage: Usage | None) -> int:
    """Input plus output tokens over all models."""
    return sum(int(u.get("input_tokens") or 0) + int(u.get("output_tokens") or 0) for u in (usage or {}).values())


def total_cost(usage: Usage | None) -> float:
    """Known cost over all models (unknown costs count as zero)."""
    return sum(float(u.get("cost_usd") or 0.0) for u in (usage or {}).values())
