"""What the nodes share at run time: the run's settings and its live sandbox.

The sandbox is not state. It lives in a process-local pool keyed by the run's id. When a node
finds none (a new process after a crash, another machine, a killed worker) or finds one that has
run different cells (a fork from an older checkpoint), it starts a new worker and replays the
recorded cells, serving each sub-call from the record: no model call is repeated.
"""

from __future__ import annotations

import ast
import json
import logging
import re
import threading
import time
import uuid
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from langchain_core.messages import BaseMessage, HumanMessage
from langgraph.config import get_config
from langgraph.runtime import Runtime

from rlm_graph.contexts import check_file, format_for, stored_path, write_value
from rlm_graph.errors import ConfigurationError, ModelError, SandboxError
from rlm_graph.graph import prompts
from rlm_graph.graph.bindings import Bindings, RunSettings, named_fields
from rlm_graph.graph.ledger import Account, BudgetSpent, Spend, drop_ledger, ledger_for, spend_of, worst_case
from rlm_graph.graph.settings import LIMIT_NAMES, Limits, RLMContext
from rlm_graph.graph.state import Pending, RLMState, Usage, add_usage, task_start
from rlm_graph.models.calls import Reply, call_model, reply_cap
from rlm_graph.models.tokens import count_tokens
from rlm_graph.sandboxes import POOL, SandboxSession, transport_factory
from rlm_graph.sandboxes.protocol import SubRequest, prompt_hash
from rlm_graph.sandboxes.session import Recorded

log = logging.getLogger("rlm_graph")


def settings_of(runtime: Runtime[RLMContext] | None, defaults: Bindings | RLMContext | None) -> RunSettings:
    """The run's settings: what its context names, over the graph's own settings, models resolved.

    The context may be an :class:`RLMContext` (what LangGraph builds from a run's JSON, or what a
    caller passes), a dict of its fields, a :class:`RunSettings` (``RLM.settings``), or nothing. Keys of the run config's ``configurable``
    that name a setting or a limit (``{"max_iterations": 5}``, the older way of passing settings)
    are taken where the context names nothing; values that are not JSON there belong to someone
    else (a parent graph) and are left alone.

    Raises:
        ConfigurationError: an unknown setting, or a value of the wrong kind, in one line.
    """
    bindings = defaults if isinstance(defaults, Bindings) else Bindings(settings=defaults or RLMContext())
    named = {**_configurable_settings(), **_context_settings(getattr(runtime, "context", None))}
    return bindings.resolve(bindings.merge(named))


def _context_settings(ctx: Any) -> dict[str, Any]:
    if ctx is None:
        return {}
    if isinstance(ctx, RLMContext):
        return named_fields(ctx)
    if isinstance(ctx, RunSettings):  # e.g. ``context=rlm.settings``: its JSON part
        return named_fields(ctx.context)
    if isinstance(ctx, dict):
        return named_fields(RLMContext(**ctx))  # validates: unknown keys and wrong kinds get one line
    raise ConfigurationError(f"the run's context must be an RLMContext or a dict of settings, not {type(ctx).__name__}")


_SETTING_NAMES = frozenset(f.name for f in fields(RLMContext)) - {"limits"}
_JSON_TYPES = (str, int, float, bool, dict, list, type(None))


def _configurable_settings() -> dict[str, Any]:
    """Settings given the older way, as ``config["configurable"]`` keys (flat limit names too)."""
    try:
        configurable = get_config().get("configurable") or {}
    except RuntimeError:  # not inside a run
        return {}
    named: dict[str, Any] = {k: v for k, v in configurable.items() if k in _SETTING_NAMES and isinstance(v, _JSON_TYPES)}
    limits = {k: v for k, v in configurable.items() if k in LIMIT_NAMES and isinstance(v, _JSON_TYPES)}
    if isinstance(configurable.get("limits"), dict):
        limits = {**limits, **configurable["limits"]}
    if limits:
        named["limits"] = limits
    if named:
        named = named_fields(RLMContext(**named))  # validates
    return named


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


def context_file(state: RLMState, ctx: RunSettings) -> tuple[Path, str]:
    """The file the sandbox loads the context from, writing an inline context the first time.

    A child run's context is found in the store by its digest (one line if it is missing).
    """
    if state.get("context_ref") is not None:
        ref = state["context_ref"]
        return stored_path(ref, ctx.work_dir), str(ref["format"])  # type: ignore[index]
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


def new_session(state: RLMState, ctx: RunSettings) -> SandboxSession:
    """Start a worker for this run and load its context."""
    limits = Limits.from_dict(state.get("limits"))
    path, fmt = context_file(state, ctx)
    session = SandboxSession(
        transport_factory(ctx.sandbox, _sized_options(ctx, path)),
        cell_timeout=limits.cell_timeout,
        max_output_chars=limits.max_output_chars,
    )
    session.tool_names = list(ctx.tools)  # defined in the worker as it starts (and after a restart)
    session.start()
    session.load_context(path, fmt, state.get("query") or None)
    return session


#: The memory limit each backend uses when none is given (MB). Modal's own default request is
#: smaller; a context that needs more than 1024 MB gets its size asked for.
_DEFAULT_MEMORY_MB = {"local": 4096, "docker": 1024, "modal": 1024}


def _sized_options(ctx: RunSettings, path: Path) -> dict[str, Any]:
    """Sandbox options with a memory limit big enough for the context (Python holds text at ~2x)."""
    opts = dict(ctx.sandbox_options)
    default = _DEFAULT_MEMORY_MB.get(ctx.sandbox) if isinstance(ctx.sandbox, str) else None
    if default is not None and "memory_mb" not in opts:
        needed = int(path.stat().st_size * 2.5 / 2**20) + 512
        if needed > default:
            opts["memory_mb"] = needed
    return opts


def open_session(state: RLMState, ctx: RunSettings, charges: Charges | None = None, *, account: Account | None = None) -> SandboxSession:
    """This run's live sandbox, rebuilt by replay when missing or out of step with the state.

    A replay whose code asks for prompts the record does not hold (prompts built from the clock
    or from random numbers) calls the sub-model fresh, through the run's budget ledger; what those
    calls spent is added to ``charges``, for the calling node to put in the state.
    """
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
        charges = charges if charges is not None else Charges()
        account = account or run_account(state)
        fresh = session.replay(cells, lambda req: _fresh_answers(req, ctx, account, charges))
        if fresh:
            log.warning("run %s: replay needed %d fresh sub-call(s) because the code's prompts changed", key, fresh)
    POOL.put(key, session)
    return session


@dataclass
class Charges:
    """What model calls made outside a node's own bookkeeping (a replay's fresh calls) spent."""

    usage: Usage = field(default_factory=dict)
    calls: int = 0
    refused: str | None = None  # a budget that refused one of them

    def add(self, usage: Usage, calls: int) -> None:
        self.usage = add_usage(self.usage, usage)
        self.calls += calls

    def update(self) -> dict[str, Any]:
        """The state keys that count them (empty when nothing was spent)."""
        out: dict[str, Any] = {}
        if self.usage:
            out["usage"] = self.usage
        if self.calls:
            out["n_subcalls"] = self.calls
        if self.refused:
            out["budget_hit"] = self.refused
        return out


def _fresh_answers(req: SubRequest, ctx: RunSettings, account: Account, charges: Charges) -> list[str]:
    """Answer a request the record has no match for from the sub-model (or the tool), each prompt reserved first.

    Prompts that no longer fit the budget get an error marker (the whole request fails when its
    first one does not fit), as a live fan-out does.
    """
    from rlm_graph import tools

    if req.kind == tools.TOOL_KIND:  # a host function: no tokens, not a sub-call, no reservation
        text, error, _ = tools.call(ctx.tools, req.prompts[0] if req.prompts else "")
        if error:
            raise RuntimeError(error)  # replay turns it into the error the cell sees
        return [text]
    texts: list[str] = []
    for i, prompt in enumerate(req.prompts):
        try:
            reply = budgeted_call(account, f"replay.{uuid.uuid4().hex}", ctx.sub, [HumanMessage(prompt)],
                                  label=ctx.sub_label, ctx=ctx, calls=1)
        except BudgetSpent as spent:
            charges.refused = charges.refused or spent.limit
            if i == 0:
                raise
            texts += [f"[sub-call failed: {spent}]"] * (len(req.prompts) - i)
            break
        except Exception:
            charges.add({}, 1)  # a call was made and failed: counted as one, as a live sub-call is
            raise
        charges.add(reply.usage, 1)
        texts.append(reply.text)
    return texts


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
    """Stop the run's sandbox (the run has ended) and close its book in the budget ledger."""
    if state.get("run_id"):
        POOL.discard(state["run_id"])
        if not state.get("parent_run"):
            drop_ledger(state.get("tree") or state["run_id"])
        with _SLOTS_LOCK:
            _SLOTS.pop(state["run_id"], None)
            _CLOCKS.pop(state["run_id"], None)


_CLOCKS: dict[str, float] = {}


def run_clock(run_id: str, *, restart: bool = False) -> float:
    """``time.monotonic()`` when the run started, or was last resumed, in this process.

    ``max_seconds`` counts from here. The clock is the run's, not the graph's or the settings':
    a graph may be built long before it is invoked. ``prepare`` starts it, :meth:`RLM.resume`
    restarts it, and a run carried on in a new process (after a kill) starts it at its first step
    there, so time spent dead between a kill and its resume is not charged to the run.
    """
    with _SLOTS_LOCK:
        if restart or run_id not in _CLOCKS:
            _CLOCKS[run_id] = time.monotonic()
        return _CLOCKS[run_id]


def seconds_left(limits: Limits, state: RLMState) -> float | None:
    """What is left of ``max_seconds`` (None when unlimited)."""
    if limits.max_seconds is None:
        return None
    return limits.max_seconds - (time.monotonic() - run_clock(state.get("run_id") or ""))



# -- budgets -----------------------------------------------------------------------------

def run_account(state: RLMState) -> Account:
    """This run's book in its tree's budget ledger, set to what its checkpointed state says."""
    run = state.get("run_id") or ""
    ledger = ledger_for(state.get("tree") or run, Limits.from_dict(state.get("limits")))
    ledger.sync(
        run,
        parent=state.get("parent_run"),
        settled=spend_of(state.get("usage"), int(state.get("n_subcalls") or 0)),
        held={k: Spend.from_dict(v) for k, v in (state.get("reserved") or {}).items()},
    )
    return Account(ledger, run)


def task_account(task: Pending) -> Account:
    """The book a ``sub_call`` task settles in; opened from the task's snapshot in a new process."""
    ref = task.get("budget") or {}
    run = ref.get("run") or task.get("run_id") or ""
    ledger = ledger_for(ref.get("tree") or run, Limits.from_dict(task.get("limits")))
    ledger.ensure(run, parent=ref.get("parent"), settled=Spend.from_dict(ref.get("base")), finished=lambda: _finished_siblings(task))
    return Account(ledger, run)


#: LangGraph's config key for the run's checkpointer (not part of its public API; pinned versions).
_CHECKPOINTER_KEY = "__pregel_checkpointer"


def _finished_siblings(task: Pending) -> list[tuple[Spend, Spend]]:
    """``(actual, hold)`` of each task of this fan-out that finished before the process started.

    Their writes sit in the fan-out's checkpoint as pending writes until the whole fan-out is
    done; a child run that finished before a kill is counted only there. Read from the
    checkpointer the run uses (nothing when there is none: an unsaved run has no earlier process).
    """
    try:
        conf = get_config().get("configurable") or {}
    except RuntimeError:
        return []
    saver, ns = conf.get(_CHECKPOINTER_KEY), str(conf.get("checkpoint_ns") or "")
    if saver is None or not conf.get("thread_id") or "sub_call:" not in ns:
        return []
    parent_ns = ns.rpartition("|")[0]
    target = {"thread_id": conf["thread_id"], "checkpoint_ns": parent_ns}
    checkpoint_id = (conf.get("checkpoint_map") or {}).get(parent_ns)
    if checkpoint_id:
        target["checkpoint_id"] = checkpoint_id
    try:
        saved = saver.get_tuple({"configurable": target})
    except Exception as exc:  # the ledger stays conservative for the other holds; log and go on
        log.warning("could not read the fan-out's saved answers for the budget ledger: %s", exc)
        return []
    if saved is None:
        return []
    holds = {p.get("key"): Spend.from_dict((p.get("budget") or {}).get("hold")) for p in saved.checkpoint.get("channel_values", {}).get("pending") or []}
    writes: dict[str, dict[str, Any]] = {}
    for task_id, channel, value in saved.pending_writes or []:
        writes.setdefault(str(task_id), {})[channel] = value
    out = []
    for w in writes.values():
        for key, value in (w.get("reserved") or {}).items() if isinstance(w.get("reserved"), dict) else ():
            if value is None and key in holds and key != task.get("key"):
                out.append((spend_of(w.get("usage"), int(w.get("n_subcalls") or 0)), holds[key]))
    return out


def estimate(account: Account, texts: list[str], *, label: str, cap: int, ctx: RunSettings, calls: int = 0) -> Spend:
    """The worst case of a call with these message texts and reply cap (see :mod:`rlm_graph.graph.ledger`)."""
    return worst_case(count_tokens(texts, label), label=label, reply_cap=cap, prices=ctx.prices,
                      rate=account.ledger.rates.get(label), calls=calls)


def budgeted_call(
    account: Account,
    key: str,
    model: Any,
    messages: list[BaseMessage],
    *,
    label: str,
    ctx: RunSettings,
    stop: list[str] | None = None,
    calls: int = 0,
) -> Reply:
    """Reserve a call's worst case, make it, settle it to the reported usage.

    Raises:
        BudgetSpent: the reservation did not fit; nothing was sent.
        ModelError: the call failed; its hold was released.
    """
    texts = [m.content if isinstance(m.content, str) else str(m.content) for m in messages]
    hold = estimate(account, texts, label=label, cap=reply_cap(model, ctx.reply_tokens), ctx=ctx, calls=calls)
    refusal = account.reserve(key, hold)
    if refusal is not None:
        raise BudgetSpent(refusal)
    try:
        reply = call_model(model, messages, label=label, stop=stop, prices=ctx.prices)
    except BaseException:
        account.settle(key, Spend(calls=calls))
        raise
    account.settle(key, spend_of(reply.usage, calls))
    account.ledger.learn_rate(label, reply.usage)
    return reply


def remaining(limits: Limits, state: RLMState, ctx: RunSettings) -> dict[str, Any]:
    """What is left of each whole-tree budget (None where unlimited), reservations counted as spent."""
    total = run_account(state).ledger.total()
    return {
        "max_subcalls": None if limits.max_subcalls is None else limits.max_subcalls - total.calls,
        "max_tokens": None if limits.max_tokens is None else limits.max_tokens - total.tokens,
        "max_cost_usd": None if limits.max_cost_usd is None else limits.max_cost_usd - total.cost,
        "max_seconds": seconds_left(limits, state),
    }


def reached_limit(limits: Limits, state: RLMState, ctx: RunSettings) -> str | None:
    """Why the run must end now with a forced answer: a budget a call found spent, a whole-tree
    budget spent, or the last iteration done (each question on a thread gets ``max_iterations``
    turns of its own); None while the run may take another turn."""
    limit = state.get("budget_hit") or spent_budget(limits, state, ctx)
    if limit is None and int(state.get("iteration") or 0) - task_start(state) >= limits.max_iterations:
        limit = "max_iterations"
    return limit


def spent_budget(limits: Limits, state: RLMState, ctx: RunSettings) -> str | None:
    """The name of the first whole-tree budget that has nothing left (children's spend included)."""
    left = remaining(limits, state, ctx)
    if left["max_subcalls"] is not None and left["max_subcalls"] < 0:
        return "max_subcalls"
    for name in ("max_tokens", "max_cost_usd", "max_seconds"):
        if left[name] is not None and left[name] <= 0:
            return name
    return None


#: The runner's own look at the data when the model is stuck or says "not found": the first of the
#: question's key words that ``search`` finds, with a few of its hits. Names start with ``_`` so
#: they are not the model's variables.
_PEEK = """\
for _t in {terms!r}:
    _h = search(_t)
    if _h:
        print("search(%r) finds %d:" % (_t, len(_h)))
        for _x in _h[:8]:
            print("  " + str(_x)[:300])
        break
else:
    print("search finds none of: " + ", ".join({terms!r}))
"""


_FIELD_COUNT = """\
_h = search({pattern!r})
print("FIELD COUNT %d" % len(_h))
"""
_FIELD_SAID = re.compile(r"^search\(.*?\): the (\d+) (lines|records) where (.*?) \(a field's values?\)", re.MULTILINE)


def field_count(state: RLMState, ctx: RunSettings, pattern: str) -> tuple[int | None, str, Charges]:
    """How many lines (or records) ``search(pattern)`` finds by field values, outside the run's record.

    Returns ``(count, what was matched, charges)``: "lines where word 3 of the line is '[Err]' and
    ...". The count is None unless the worker's search matched by fields (not by text), so a plain
    text search never stands in for a count.
    """
    out, charges = peek_code(state, ctx, _FIELD_COUNT.format(pattern=pattern))
    said = _FIELD_SAID.search(out or "")
    count = re.search(r"^FIELD COUNT (\d+)$", out or "", re.MULTILINE)
    if not said or not count or said.group(1) != count.group(1):
        return None, "", charges
    return int(count.group(1)), f"{said.group(2)} where {said.group(3)}", charges


#: Words of a question that asks how many.
COUNT_QUESTION = re.compile(r"\b(?:how many|number of|count)\b", re.IGNORECASE)
_IDS_QUESTION = re.compile(r"\b(?:which|list)\b.*\bids?\b", re.IGNORECASE | re.DOTALL)


def sent(state: RLMState, mark: str) -> bool:
    """True if a message of the run holds ``mark`` (the fixed first words of a once-only note)."""
    return any(mark in str(m.get("content")) for m in state.get("messages") or [])


def judgement_kind(state: RLMState) -> str | None:
    """``"count"`` or ``"ids"`` when the question asks how many, or which (by id), of a collection of
    short texts count, the context has no field a code filter could count by, and no sub-call has
    been made: the items have to be judged one by one (``judge()``), and no word filter can stand in.

    The 1.5B model filtered reviews for "satisfied" and tickets for "bug" (words the texts never
    use), found 0, and searched the question's other words until the loop guard stopped it.
    """
    meta = state.get("context_meta") or {}
    if not meta.get("text_items") or meta.get("field_values") or int(state.get("n_subcalls") or 0) > 0:
        return None
    if sent(state, prompts.LABELS_MARK):
        return None  # the runner labelled the items already (label_counts, outside the record)
    query = state.get("query", "")
    if COUNT_QUESTION.search(query):
        return "count"
    if _IDS_QUESTION.search(query) and _ids_expr(meta, "kept") is not None:
        return "ids"
    return None


def _ids_expr(meta: dict[str, Any], kept: str) -> str | None:
    """Python that turns ``judge()``'s kept items into their ids, by the context's shape; None if they have none."""
    if meta.get("type") == "dict":
        return f"list({kept})"
    if meta.get("type") == "str":
        return f"[m.group() for m in (re.search(r'\\d+', line) for line in {kept}) if m]"
    keys = [str(k) for k in meta.get("item_keys") or []]
    key = next((k for k in keys if k.lower() == "id"), None) or next((k for k in keys if re.search(r"(?:^|_)id$", k.lower())), None)
    return f"[item[{key!r}] for item in {kept}]" if key else None


def judge_code(state: RLMState, kind: str) -> str:
    """The cell the judge note gives the model: judge() over the context, then the count or the ids."""
    query = state.get("query", "")
    shown = "len(kept)" if kind == "count" else _ids_expr(state.get("context_meta") or {}, "kept") or "kept"
    return f"kept = judge(context, {query!r})\nprint({shown})"


def judge_note(state: RLMState, kind: str) -> str:
    """The judge note: the exact judge() cell to run, for a count or for the ids."""
    return prompts.JUDGE_NOTE.format(n=int((state.get("context_meta") or {}).get("text_items") or 0),
                                     what="the number" if kind == "count" else "the ids", code=judge_code(state, kind))


def judge_answer(state: RLMState, ctx: RunSettings, kind: str) -> tuple[str | None, Charges]:
    """The answer ``judge()`` gives, run by the runner outside the run's record: how many of the
    context's items the sub-model judges to count toward the question, or their ids (comma-separated).
    Its sub-calls go through the run's budget and are in the returned charges; None if the sandbox
    failed, the budget refused or the items have no ids."""
    shown = "len(_kept)" if kind == "count" else _ids_expr(state.get("context_meta") or {}, "_kept")
    if shown is None:
        return None, Charges()
    code = f"_kept = judge(context, {state.get('query', '')!r})\nprint('JUDGED ' + json.dumps({shown}, default=str))\n"
    out, charges = peek_code(state, ctx, code)
    found = re.search(r"^JUDGED (.+)$", out or "", re.MULTILINE)
    if not found:
        return None, charges
    try:
        value = json.loads(found.group(1))
    except ValueError:
        return None, charges
    if kind == "count":
        return (str(value) if isinstance(value, int) else None), charges
    return (", ".join(str(v) for v in value) if isinstance(value, list) else None), charges


#: At most this many items are labelled by the runner's own classify() run (one sub-call each).
LABEL_ITEMS_MAX = 150
_LABELS_RUN = """\
_conds = {conds!r}
_items = context.splitlines() if isinstance(context, str) else context
_items = [x for x in _items if str(x).strip()] if isinstance(_items, list) else []
if _conds:
    _rows = globals().get("rows")
    _rows = [r for r in (_rows if isinstance(_rows, list) else _items) if isinstance(r, dict)]
    def _meets(r):
        for k, v, kind in _conds:
            x = str(r.get(k, "")).strip().lower()
            if not (x.startswith(v.lower()) if kind in ("month", "prefix") else x == v.lower()):
                return False
        return True
    _kept = [r for r in _rows if _meets(r)]
    _long = max(_kept[0], key=lambda k: sum(len(str(r.get(k, ""))) for r in _kept[:50])) if _kept else None
    _items = [str(r.get(_long, "")) for r in _kept]
if 0 < len(_items) <= {cap}:
    print("LABELLED " + json.dumps([len(_items), collections.Counter(classify(_items)).most_common()]))
"""


def label_counts(state: RLMState, ctx: RunSettings) -> tuple[str | None, Charges]:
    """How many of the context's items the sub-model gives each label the question lists ("its
    sentiment, one of: positive, negative, neutral"), by the runner's own ``classify()`` run outside
    the record, as a note. When the question states conditions on the items' fields (the worker's
    ``named_values``: "the instances of user 48213", "the lines from 2022-03"), only the items that
    meet them all are labelled, by their longest field (the text: on 157 dev items the sub-model gave
    the right label to 141 by the text alone, 140 by the whole line or record). None when the question lists no
    labels, names an id or a date that is not such a condition, the items are not a collection of at
    most LABEL_ITEMS_MAX, or the sandbox or the budget refused."""
    query = state.get("query", "")
    if not re.search(r"\bone of\b", query, re.IGNORECASE):
        return None, Charges()
    named = [list(c) for c in (state.get("context_meta") or {}).get("named_values") or []
             if isinstance(c, (list, tuple)) and len(c) == 3]
    if not named and re.search(r"\d", label_scope_words(query)):
        return None, Charges()  # about some of the items, which the runner cannot pick
    out, charges = peek_code(state, ctx, _LABELS_RUN.format(conds=named, cap=LABEL_ITEMS_MAX))
    found = re.search(r"^LABELLED (.+)$", out or "", re.MULTILINE)
    if not found:
        return None, charges
    try:
        n, counts = json.loads(found.group(1))
        shown = "\n".join(f"  {label}: {int(k)}" for label, k in counts)
    except (ValueError, TypeError):
        return None, charges
    value = label_value(query, [(str(label), int(k)) for label, k in counts])
    if named:
        scope = " and ".join(f"{k} {'starting with' if kind in ('month', 'prefix') else '=='} {v if kind == 'number' else repr(v)}"
                             for k, v, kind in named)
        note = prompts.SCOPED_LABELS_NOTE.format(n=n, scope=scope, counts=shown)
    else:
        note = prompts.LABELS_NOTE.format(n=n, counts=shown)
    return note + (prompts.LABELS_VALUE.format(value=value) if value is not None else ""), charges


def label_value(query: str, counts: list[tuple[str, int]]) -> str | None:
    """What label counts (most common first) answer: the count of the one label a how-many question
    names, or the most common label; None for another question. Told "this answers it" with the
    counts alone, the 1.5B model answered a most-common question with the top count (14)."""
    rest, how_many, most_common = _label_question(query)
    named = [n for label, n in counts if re.search(rf"(?<![\w-]){re.escape(label.lower())}(?![\w-])", rest)]
    if len(named) == 1 and how_many:
        return str(named[0])
    if counts and not named and most_common:
        return counts[0][0]
    return None


def asks_label_counts(query: str) -> bool:
    """True if the question lists the labels its items take ("its sentiment, one of: positive,
    negative, neutral") and asks how many items have one, or which is the most common."""
    _, how_many, most_common = _label_question(query)
    return bool(re.search(r"\bone of\b", query, re.IGNORECASE)) and (how_many or most_common)


_MOST_COMMON = re.compile(r"\bmost (?:common|frequent|often)\b")


def _label_question(query: str) -> tuple[str, bool, bool]:
    """A label question read once: its words without the label list (:func:`label_scope_words`), and
    whether they ask how many or which is the most common."""
    rest = label_scope_words(query)
    return rest, COUNT_QUESTION.search(rest) is not None, _MOST_COMMON.search(rest) is not None


def label_scope_words(query: str) -> str:
    """The question without its list of labels and their explanations (lower-cased): what is left
    says which items it is about ("the instances of user 59117") and what it asks."""
    return re.sub(r"\bone of\b:?[^.?!;]*", " ", re.sub(r"\([^)]*\)", "", query), flags=re.IGNORECASE).lower()


#: The worker's note on a capitalised literal compared with lower-cased text (sandboxes/worker.py, _audit).
_CAPITALS_NOTE = re.compile(r"^note: ('(?:[^'\\]|\\.)*'|\"(?:[^\"\\]|\\.)*\") has capital letters " + re.escape(prompts.FILTER_NOTE_MARKS[0]), re.MULTILINE)

#: Runs the model's cell, the flagged literals lower-cased, in a copy of the REPL's names: what it prints
#: and the value it gives FINAL are shown, and nothing it binds stays (a replay never runs it).
_LOWERED_RUN = """\
_g = dict(globals())
_said = []
_g["FINAL"] = lambda a: _said.append(str(a))
_g["FINAL_VAR"] = lambda n: _said.append(str(_g.get(str(n).strip("'\\" "), n)))
exec(compile({code!r}, "<cell>", "exec"), _g)
if _said:
    print("FINAL VALUE " + _said[-1][:500])
"""


def lowered_literals(stderr: str) -> list[str]:
    """The literals the worker's notes say have capitals but are compared with lower-cased text."""
    out = []
    for m in _CAPITALS_NOTE.finditer(stderr or ""):
        try:
            value = ast.literal_eval(m.group(1))
        except (ValueError, SyntaxError):
            continue
        if isinstance(value, str) and value != value.lower() and value not in out:
            out.append(value)
    return out


def lowered_rerun(state: RLMState, ctx: RunSettings, code: str, literals: list[str]) -> tuple[str | None, Charges]:
    """Run ``code`` with each of ``literals`` written in lower case, outside the run's record, and
    return what it printed (the FINAL it gave as a last line "FINAL VALUE x"), or None.

    The fix is the one the worker's note names ("'BLUE GOODS' is compared with lower-cased text:
    write 'blue goods'"); the 1.5B model was told so twice and ran the same cell again each time.
    The cell runs in a copy of the REPL's names, so the live REPL keeps only what recorded cells did.
    """
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return None, Charges()
    hit = False
    for node in ast.walk(tree):
        if isinstance(node, ast.Constant) and isinstance(node.value, str) and node.value in literals:
            node.value = node.value.lower()
            hit = True
    if not hit:
        return None, Charges()
    return peek_code(state, ctx, _LOWERED_RUN.format(code=ast.unparse(tree)))


#: The names a cell's filter reads the table's rows from (the worker binds both to the parsed rows
#: when the context is a table or a list of records).
_ROW_SOURCES = frozenset({"rows", "context"})


class _Refilter(ast.NodeTransformer):
    """Puts the question's conditions in place of the tests of every comprehension or ``for`` loop over
    the rows (``[r for r in rows if r['region'] == 'South']``), and ``swap``'s fields in place of others
    (``r['quantity']`` -> ``r['amount']``). ``tests(name)`` is the conditions' test of a row ``name``."""

    def __init__(self, tests: Any, swap: dict[str, str]) -> None:
        self.tests, self.swap, self.changed = tests, swap, 0

    def _refilter(self, node: Any) -> Any:
        self.generic_visit(node)
        gens = node.generators
        if self.tests is not None and len(gens) == 1 and isinstance(gens[0].iter, ast.Name) and gens[0].iter.id in _ROW_SOURCES and isinstance(gens[0].target, ast.Name):
            gens[0].ifs = [self.tests(gens[0].target.id)]
            self.changed += 1
        return node

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _refilter

    def visit_For(self, node: ast.For) -> Any:
        self.generic_visit(node)
        if (self.tests is not None and isinstance(node.iter, ast.Name) and node.iter.id in _ROW_SOURCES and isinstance(node.target, ast.Name)
                and len(node.body) == 1 and isinstance(node.body[0], ast.If) and not node.body[0].orelse):
            node.body[0].test = self.tests(node.target.id)
            self.changed += 1
        return node

    def visit_Subscript(self, node: ast.Subscript) -> Any:
        self.generic_visit(node)
        if isinstance(node.slice, ast.Constant) and node.slice.value in self.swap:
            node.slice = ast.Constant(self.swap[node.slice.value])
            self.changed += 1
        return node


def refiltered_code(code: str, tests: str | None, swap: dict[str, str] | None = None) -> str | None:
    """``code`` with the tests of its comprehensions and loops over ``rows`` (or ``context``) replaced
    by ``tests`` (an expression on a row ``r``; None keeps them) and the fields of ``swap`` renamed, or
    None when the code reads no rows that way or nothing changed (or it does not parse)."""
    try:
        tree = ast.parse(code)
        test = ast.parse(tests or "True", mode="eval").body
    except (SyntaxError, ValueError):
        return None

    def on(name: str) -> ast.expr:
        class _Rename(ast.NodeTransformer):
            def visit_Name(self, node: ast.Name) -> Any:
                return ast.Name(name, node.ctx) if node.id == "r" else node
        return _Rename().visit(ast.parse(ast.unparse(test), mode="eval").body)

    fixer = _Refilter(on if tests is not None else None, dict(swap or {}))
    tree = ast.fix_missing_locations(fixer.visit(tree))
    if not fixer.changed or not any(isinstance(n, (ast.comprehension, ast.For)) and isinstance(n.iter, ast.Name)
                                    and n.iter.id in _ROW_SOURCES for n in ast.walk(tree)):
        return None
    return ast.unparse(tree)


def refiltered_rerun(state: RLMState, ctx: RunSettings, code: str, tests: str | None, swap: dict[str, str] | None = None) -> tuple[str | None, Charges]:
    """Run ``code`` with its filter over the rows replaced by ``tests`` (see :func:`refiltered_code`),
    in a copy of the REPL's names and outside the run's record, and return what it printed (a FINAL it
    gave as a last line "FINAL VALUE x"), or None.

    The 1.5B model, told which conditions its filter missed and given a filter that tests them all,
    wrote its next cell over ``kept`` without defining it (NameError), then answered 0; its own cell
    with the question's filter printed the right total.
    """
    fixed = refiltered_code(code, tests, swap)
    if fixed is None:
        return None, Charges()
    return peek_code(state, ctx, _LOWERED_RUN.format(code=fixed))


#: The runner's figures over the rows that meet the question's conditions: the count, and for each
#: field of numbers its sum, mean, largest and smallest (names bound only inside the function).
_STATS_RUN = """\
def _rlm_stats():
    kept = [r for r in {source} if isinstance(r, dict) and {tests}]
    print("%d rows" % len(kept))
    for f in {fields!r}:
        v = [r[f] for r in kept if isinstance(r.get(f), (int, float)) and not isinstance(r.get(f), bool)]
        if v:
            print("%s: sum %s, mean %s, largest %s, smallest %s" % (f, round(sum(v), 4), round(sum(v) / len(v), 4), max(v), min(v)))
_rlm_stats()
del _rlm_stats
"""


def table_stats(state: RLMState, ctx: RunSettings, source: str, tests: str, fields: list[str]) -> tuple[str | None, Charges]:
    """The count of the rows of ``source`` (``rows`` or ``context``) that meet ``tests`` (an expression on
    a row ``r``) and each number field's sum, mean, largest and smallest over them, run by the runner
    outside the record; None when it printed nothing or no row meets them.

    Asked "On average, how much was an order in the books category shipped to the east region?", the
    1.5B model printed the two orders and answered 2, three times, through two notes to compute it."""
    if source not in _ROW_SOURCES:
        return None, Charges()
    try:
        ast.parse(tests, mode="eval")
    except (SyntaxError, ValueError):
        return None, Charges()
    out, charges = peek_code(state, ctx, _STATS_RUN.format(source=source, tests=tests, fields=[str(f) for f in fields][:12]))
    if not out or out.startswith("0 rows") or not out.split(" ", 1)[0].isdigit():
        return None, charges
    return out, charges


def peek(state: RLMState, ctx: RunSettings, terms: list[str]) -> tuple[str | None, Charges]:
    """Run the runner's search for ``terms`` in the live sandbox, outside the run's record.

    The code only reads (``search`` and ``print``), so it is not one of the run's cells: the worker
    forgets it ran, a replay never runs it, and the model sees its output inside a note.
    Returns the output (None if the sandbox failed) and what a replay to rebuild the sandbox spent.
    """
    if not terms:
        return None, Charges()
    return peek_code(state, ctx, _PEEK.format(terms=list(terms)))


def peek_code(state: RLMState, ctx: RunSettings, code: str) -> tuple[str | None, Charges]:
    """Run runner ``code`` in the live sandbox, outside the run's record (see :func:`peek`).

    Sub-calls the code makes (``judge()``) are answered fresh through the run's budget; what they
    spent is in the returned charges. None if the sandbox failed or the budget refused.
    """
    charges = Charges()
    account = run_account(state)
    try:
        session = open_session(state, ctx, charges)
        cell = len(state.get("cells") or []) + 20_000
        recorded: list[Recorded] = []
        out = session.step(cell, code, recorded)
        while isinstance(out, SubRequest):
            texts = _fresh_answers(out, ctx, account, charges)
            recorded.append(Recorded(hashes=[prompt_hash(p) for p in out.prompts], texts=texts))
            out = session.step(cell, code, recorded)
    except (SandboxError, BudgetSpent, ModelError, RuntimeError):
        return None, charges
    session.progress.done.pop()  # not a cell of the run: the worker stays in step with the record
    return (out.stdout or "").strip()[:2500] or None, charges
