"""generate: one root-model turn. Reads the reply's code blocks and any FINAL written in its text."""

from __future__ import annotations

import re
from typing import Any, Literal

from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage
from langgraph.runtime import Runtime

from rlm_graph.graph import prompts
from rlm_graph.graph.bindings import Bindings, RunSettings
from rlm_graph.graph.answers import key_terms, search_hint
from rlm_graph.graph.parsing import FinalCall, code_blocks, find_final, normalize_code
from rlm_graph.graph.ledger import BudgetSpent
from rlm_graph.graph.runtime import Charges, asks_label_counts, budgeted_call, judge_note, judgement_kind, label_counts, peek, run_account, sent, settings_of
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMState, add_usage
from rlm_graph.models.calls import ContextOverflow
from rlm_graph.tools import describe as describe_tools


def conversation(state: RLMState, limits: Limits, *, keep_last: int | None = None, tools: str = "") -> list[BaseMessage]:
    """System prompt (with the user tools' section ``tools``, if any), the task with the context's metadata, then the turns so far."""
    allow_rlm = int(state.get("depth") or 0) < limits.max_depth
    system = prompts.system_prompt(max_output_chars=limits.max_output_chars, allow_rlm=allow_rlm, context_meta=state.get("context_meta"))
    msgs: list[BaseMessage] = [
        SystemMessage(system + "\n\n" + tools if tools else system),
        HumanMessage(prompts.task_prompt(_first_query(state), state.get("context_meta") or {})),
    ]
    history = list(state.get("messages") or [])
    if keep_last is not None:
        history = history[-keep_last:] if keep_last else []
    for m in history:
        msgs.append(AIMessage(m["content"]) if m["role"] == "assistant" else HumanMessage(m["content"]))
    return msgs


def _first_query(state: RLMState) -> str:
    """The thread's first question: a follow-up is a later turn, it does not rewrite the first."""
    tasks = state.get("tasks") or []
    return str(tasks[0].get("query") or "") if tasks else state.get("query", "")


_BARE_FINAL = re.compile(r"\s*FINAL\(\s*([A-Za-z_]\w*)\s*\)\s*")


def _recent_code(state: RLMState) -> set[str]:
    """The last three cells' code: a reply that repeats one of them (A, B, A loops too) is stuck.

    A cell whose worker died (a crash, a hard timeout) is left out: its effects were rolled back
    by the replay, so running it again is a retry, not a loop.
    """
    return {normalize_code(c["code"]) for c in (state.get("cells") or [])[-3:] if not c.get("killed")}


_PAGE = re.compile(r"print\(\s*(?:context|rows)\s*\[[^\[\]]*:[^\[\]]*\]\s*\)")


def _pages(code: str) -> bool:
    """True if a cell only prints a slice of the context (``print(context[100:200])``), comments aside."""
    lines = [line.split("#", 1)[0].strip() for line in code.splitlines()]
    lines = [line for line in lines if line]
    return len(lines) == 1 and _PAGE.fullmatch(lines[0]) is not None


def _same_as_last_reply(state: RLMState, text: str) -> bool:
    """True if a reply with no code and no FINAL repeats the model's previous reply word for word.

    The 1.5B model pasted the same REPL output back as its reply ten times in a row, each answered
    by the no-code note: a loop like repeated code, and ended the same way.
    """
    last = next((m.get("content") for m in reversed(state.get("messages") or []) if m.get("role") == "assistant"), None)
    return bool(text) and last is not None and " ".join(str(last).split()) == " ".join(text.split())


def _defined(name: str, state: RLMState, blocks: list[str]) -> bool:
    """True if ``name`` is a REPL variable already, or is assigned in this reply's code."""
    cells = state.get("cells") or []
    if any(name in (c.get("vars") or {}) for c in cells[-3:]):
        return True
    return any(re.search(rf"\b{re.escape(name)}\s*(=[^=]|,|\+=)|for\s+{re.escape(name)}\b|def\s+{re.escape(name)}\b", b) for b in blocks)


def _offered(value: str, state: RLMState, notes: tuple[dict[str, Any], ...]) -> bool:
    """True if a runner's note (of the run, or ``notes`` shown this turn) offered exactly ``FINAL(value)``."""
    offer = f"FINAL({value})"
    return any(m.get("role") == "user" and offer in str(m.get("content")) for m in [*(state.get("messages") or []), *notes])


def _shown(word: str, state: RLMState, notes: tuple[dict[str, Any], ...] = ()) -> bool:
    """True if ``word`` appeared in a REPL output, or a runner's note (of the run, or ``notes`` shown this
    turn) offered ``FINAL(word)``: FINAL(saffron) then means the word itself."""
    return any(re.search(rf"\b{re.escape(word)}\b", c.get("stdout") or "") for c in state.get("cells") or []) or _offered(word, state, notes)


def _offered_value(text: str, blocks: list[str], state: RLMState, notes: tuple[dict[str, Any], ...]) -> str | None:
    """The value a reply gives alone (as its text, or as its one block's only line) when a runner's note
    of the run offered exactly ``FINAL(value)``; else None."""
    if len(blocks) > 1:
        return None
    value = (blocks[0] if blocks else re.sub(r"^```[\w-]*|```$", "", text.strip())).strip()
    if not value or "\n" in value or len(value) > 100:
        return None
    return value if _offered(value, state, notes) else None


def _with_runner_search(state: RLMState, ctx: RunSettings, note: str, update: dict[str, Any]) -> str:
    """``note`` plus what the runner's search for the question's key words finds (run outside the
    record); what a replay spent to get there is added to ``update``'s usage."""
    found, charges = peek(state, ctx, key_terms(state.get("query", ""), 4))
    if found:
        note += prompts.RUNNER_SEARCH.format(found=found)
    _charge(update, charges)
    return note


def _spent_usage(charges: Charges) -> dict[str, Any]:
    """``{"usage": ...}`` for what a runner call before the turn spent (its label counts), or {}."""
    return {"usage": charges.usage} if charges.usage else {}


def _charge(update: dict[str, Any], charges: Charges) -> None:
    """Add what a runner call outside the record spent (a replay, sub-calls) to ``update``'s usage."""
    if charges.usage:
        update["usage"] = add_usage(update["usage"], charges.usage)


def _with_label_counts(state: RLMState, ctx: RunSettings, note: str, update: dict[str, Any]) -> str | None:
    """``note`` plus the runner's label counts over the context (see :func:`label_counts`), or None."""
    counts, charges = label_counts(state, ctx)
    _charge(update, charges)
    return note + counts if counts else None


def generate(state: RLMState, runtime: Runtime[RLMContext], *, defaults: Bindings | None = None) -> dict[str, Any]:
    """Ask the root model for its next step; queue its code, note a FINAL written in prose."""
    ctx = settings_of(runtime, defaults)
    limits = Limits.from_dict(state.get("limits"))
    iteration = int(state.get("iteration") or 0) + 1
    shown: tuple[dict[str, Any], ...] = ()
    spent_before = Charges()
    if (ctx.answer_check and len(state.get("cells") or []) == 1 and not sent(state, prompts.LABELS_MARK)
            and asks_label_counts(state.get("query", ""))):
        # a question about the labels of the items (how many have one, which is the most common): after
        # the model's first look at the data, the runner's label counts (of the items the question's
        # conditions keep) come with its output. Left to itself, the 1.5B model searched the texts for
        # the label words, which they never contain, and looped.
        counts, spent_before = label_counts(state, ctx)
        if counts:
            shown = ({"role": "user", "content": counts.strip()},)
    try:
        reply = budgeted_call(
            run_account(state),
            f"turn{iteration}",
            ctx.model,
            conversation(state, limits, tools=describe_tools(ctx.tools)) + [HumanMessage(m["content"]) for m in shown],
            label=ctx.model_label,
            ctx=ctx,
            stop=prompts.STOP_SEQUENCES,
        )
    except BudgetSpent as spent:  # the turn's worst case does not fit: nothing was sent
        return {"budget_hit": spent.limit, **_spent_usage(spent_before)}
    except ContextOverflow:
        return {"iteration": iteration, "budget_hit": "context_overflow", **_spent_usage(spent_before)}
    text = reply.text.strip()
    update: dict[str, Any] = {
        "iteration": iteration,
        "usage": reply.usage,
        "messages": shown + ({"role": "assistant", "content": text or "(empty reply)"},),
        "proposed": None,
    }
    _charge(update, spent_before)
    blocks = code_blocks(text)
    final = find_final(text)
    bare = _offered_value(text, blocks, state, shown) if final is None else None
    if bare is not None:
        # "```\n9\n```" (or "9") right after a runner's note offered FINAL(9): that answer, not code
        # (the 1.5B model replied so twice to the label counts, then looped until the guard stopped it)
        final, blocks = FinalCall(answer=bare), []
    in_code = _BARE_FINAL.fullmatch(blocks[-1]) if final is None and blocks else None
    if in_code:
        # ```repl FINAL(Kara)``` after the output showed Kara: the word, as in prose (as code it
        # would be a NameError); a variable of that name still wins below.
        final = FinalCall(var=in_code.group(1))
    recent = _recent_code(state)
    if (blocks and (final is None or in_code) and normalize_code(blocks[0]) in recent) or (
            not blocks and final is None and _same_as_last_reply(state, text)):
        # (```FINAL(boarding)``` again after it failed as a NameError is a loop too: it ran 20 times;
        # only the first block would run, so a reply that repeats it and adds a pasted "output" block
        # is one too: the 1.5B model did that six times, 500 s of generation, on a dev oolong task)
        # Code it has just run: the model is stuck. Don't run it again; ask for an answer, and
        # after two such notes in a row end the run with one forced answer.
        stuck = int(state.get("stuck") or 0) + 1
        note = prompts.STUCK_NOTE.format(search_hint=search_hint(state.get("query", "")))
        kind = judgement_kind(state) if ctx.answer_check else None
        if stuck == 1 and not shown and not sent(state, prompts.LABELS_MARK) and (labelled := _with_label_counts(state, ctx, note, update)):
            # a question that lists its labels ("one of: positive, negative, neutral") looped on word
            # searches for the labels: show how the sub-model labels the items instead
            note = labelled
        elif stuck == 1 and kind and not sent(state, prompts.JUDGE_MARK):
            # a judgement question (reviews, tickets) looped on word filters: the way out is judge(), not a search
            note = judge_note(state, kind)
        elif stuck == 1:
            # show what a search for the question's key words finds, rather than only suggest it
            note = _with_runner_search(state, ctx, note, update)
        update["messages"] += ({"role": "user", "content": note},)
        update.update(queue=[], stuck=stuck)
        if stuck >= 2:
            update["budget_hit"] = "stuck_loop"
        return update
    paging = blocks and _pages(blocks[0]) and sum(1 for c in (state.get("cells") or [])[-2:] if _pages(str(c.get("code") or ""))) == 2
    if paging and not sent(state, prompts.PAGING_MARK):
        # The 1.5B model printed context[0:100], context[100:200], ... for 20 turns over a 42-order table.
        size = (state.get("context_meta") or {}).get("length")
        update["messages"] += ({"role": "user", "content": prompts.PAGING_NOTE.format(
            size=f"{size:,} characters" if isinstance(size, int) and (state.get("context_meta") or {}).get("type") == "str"
            else f"{size:,} items" if isinstance(size, int) else "the context")},)
    elif paging and not sent(state, prompts.PAGING_AGAIN_MARK):
        # It read on for 17 more turns after the note: once, the runner shows what a search for the
        # question's key words finds (whole records on a JSON text), as for a repeated cell.
        note = prompts.PAGING_AGAIN_NOTE.format(search_hint=search_hint(state.get("query", "")))
        update["messages"] += ({"role": "user", "content": _with_runner_search(state, ctx, note, update)},)
    elif paging:
        # ...and after both notes it read on until the iterations ran out (dev-tables-max-json, 20
        # turns, 100 s): a loop like a repeated cell, ended the same way, with one forced answer.
        update.update(queue=[], budget_hit="stuck_loop")
        return update
    if len(blocks) > 1:
        # Rule 3, enforced: later blocks were written before the first one's output was seen (the
        # 1.5B model filtered CSV dates as 'January 2024' in a second block, unseen, and answered 0).
        update["messages"] += ({"role": "user", "content": prompts.FIRST_BLOCK_NOTE.format(n=len(blocks) - 1)},)
        blocks = blocks[:1]
    if blocks or final is not None:
        update["stuck"] = 0  # a reply with neither (prose) keeps the count: A, prose, A, prose, A is a loop too
    if final is not None and final.var is not None and (_defined(final.var, state, blocks) or not (final.var[0].isupper() or _shown(final.var, state, shown))):
        # FINAL(total): the variable's value; if there is none, the REPL says so and lists what exists.
        if not in_code:  # in code, FINAL(total) reads it already
            blocks.append(f"FINAL_VAR({final.var!r})")
    elif final is not None and final.var is not None:
        # FINAL(Paris), or FINAL(saffron) after the output showed "saffron", with no such
        # variable: the model meant the word itself.
        update["proposed"] = {"answer": final.var, "iteration": iteration, "source": "text"}
        # ...so a block that is only that call must not run: FINAL(Paris) there is a NameError.
        blocks = [b for b in blocks if not re.fullmatch(rf"\s*FINAL(?:_VAR)?\(\s*{re.escape(final.var)}\s*\)\s*", b)]
    elif final is not None:
        update["proposed"] = {"answer": final.answer, "iteration": iteration, "source": "text"}
    update["queue"] = blocks
    return update


def route_generate(state: RLMState) -> Literal["execute", "check_final"]:
    """Run the reply's code if it has any; otherwise decide whether the run is over."""
    return "execute" if state.get("queue") and not state.get("budget_hit") else "check_final"
