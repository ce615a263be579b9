"""check_final: end the run on an accepted FINAL, or on a spent budget after one forced answer."""

from __future__ import annotations

import re
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from rlm_graph.errors import ModelError, SandboxError
from rlm_graph.graph import prompts
from rlm_graph.graph.parsing import find_final
from rlm_graph.graph.runtime import close_session, open_session, reached_limit, settings_of
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMState
from rlm_graph.models.calls import ContextOverflow, call_model
from rlm_graph.nodes.generate import conversation
from rlm_graph.sandboxes.protocol import CellResult


_FENCE_LINE = re.compile(r"^```.*$", re.MULTILINE)
_FENCED = re.compile(r"```.*?(?:```|\Z)", re.DOTALL)  # a fenced block, or one cut off at the end
_PLAN = re.compile(r"\s*(first,? i|i will|i'll|i need to|i am going to|let me|let's|we need to|we will|to answer this|step 1|next,? i)\b", re.IGNORECASE)
_RECORDED = re.compile(r"^FINAL answer recorded.*$", re.MULTILINE)
_TOKEN = re.compile(r"[A-Za-z0-9]+(?:[.][0-9]+)?")


def _unseen(answer: str, state: RLMState) -> bool:
    """True if no part of ``answer`` appears in any output the model was shown."""
    if answer.strip().lower() in ("yes", "no", "true", "false", "none", "0"):
        return False
    seen = "\n".join(_RECORDED.sub("", (c.get("stdout") or "") + (c.get("stderr") or "")) for c in state.get("cells") or []).lower()
    tokens = [t for t in _TOKEN.findall(answer.lower()) if len(t) > 1 or t.isdigit()]
    if not seen.strip() or not tokens:
        return False
    return not any(t in seen for t in tokens)


def _saw_output_before(state: RLMState, iteration: int) -> bool:
    return any(c.get("iteration", 0) < iteration for c in state.get("cells") or [])


def _form_ok(state: RLMState, ctx: RLMContext, answer: str) -> tuple[bool, str, dict[str, Any]]:
    """Ask the sub-model what kind of value the question wants; check the answer's form in code.

    A small model asked "is this answer of the right form?" says no to right answers; asked only
    for the kind (number, name, list ...) it is reliable, and the check itself needs no model.
    """
    prompt = prompts.FORM_CHECK_PROMPT.format(query=state.get("query", ""))
    try:
        reply = call_model(ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, prices=ctx.prices)
    except ModelError:
        return True, "", {}
    words = re.findall(r"[a-z]+", reply.text.lower())
    kind = next((w for w in words if w in _KINDS), "text")
    ok, reason = _fits(kind, answer)
    return ok, reason, reply.usage


_KINDS = ("number", "name", "word", "list", "date", "text")


def _fits(kind: str, answer: str) -> tuple[bool, str]:
    """Whether ``answer`` has the form of ``kind``; the reason when not."""
    text = answer.strip()
    numeric = re.fullmatch(r"[\d.,\s%$-]+", text) is not None
    if kind == "number" and not re.search(r"\d", text):
        return False, "the question asks for a number"
    if kind in ("name", "word") and numeric:
        return False, f"the question asks for a {kind}, not a number"
    if kind in ("name", "word") and len(text.split()) > 8:
        return False, f"the question asks for a {kind}, not a sentence"
    return True, ""


def check_final(state: RLMState, runtime: Runtime[RLMContext], *, defaults: RLMContext | None = None) -> dict[str, Any]:
    """Accept a FINAL (after the grounding and form checks), force one when a budget is spent, or go on."""
    ctx = settings_of(runtime, defaults)
    limits = Limits.from_dict(state.get("limits"))
    proposed = state.get("proposed")
    if proposed is not None and not state.get("budget_hit"):
        answer = str(proposed.get("answer"))
        if ctx.grounding_guard and not state.get("guard_used") and not _saw_output_before(state, int(proposed.get("iteration") or 0)):
            return {"proposed": None, "guard_used": True, "messages": [{"role": "user", "content": prompts.GROUNDING_NOTE}]}
        checks = int(state.get("form_checks") or 0)
        if checks < 2 and ctx.answer_check and _unseen(answer, state):
            # A small model often answers with a placeholder (12345) right after its code printed
            # the real value: an answer none of whose parts the REPL ever showed goes back once.
            note = prompts.UNSEEN_NOTE.format(answer=answer[:200])
            return {"proposed": None, "form_checks": checks + 1, "messages": [{"role": "user", "content": note}]}
        if checks < 2 and _PLAN.match(answer) and len(answer) > 20:
            # "First I will count the lines..." is a plan, not an answer: no model call needed to see it
            return {"proposed": None, "form_checks": checks + 1, "messages": [{"role": "user", "content": prompts.PLAN_NOTE}]}
        usage: dict[str, Any] = {}
        if ctx.answer_check and checks < 2:
            ok, reason, usage = _form_ok(state, ctx, answer)
            if not ok:
                note = prompts.FORM_NOTE.format(answer=answer[:200], reason=reason or "wrong kind of value")
                return {"proposed": None, "form_checks": checks + 1, "usage": usage,
                        "messages": [{"role": "user", "content": note}]}
        close_session(state)
        return {"final_answer": answer, "stopped_by": "final", "proposed": None, "usage": usage}
    limit = reached_limit(limits, state, ctx)
    if limit is not None:
        return _forced_final(state, ctx, limits, limit)
    last = (state.get("messages") or [{}])[-1]
    if last.get("role") == "assistant" and not state.get("queue"):
        value = _stated_value(last.get("content") or "", state)
        note = prompts.NO_CODE_VALUE_NOTE.format(value=value) if value else prompts.NO_CODE_NOTE
        return {"messages": [{"role": "user", "content": note}]}
    return {}


_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")


def _stated_value(prose: str, state: RLMState) -> str | None:
    """The last number in a prose reply that the REPL output showed: "The total is 540000." after
    an output of 540000 is an answer the small model forgot to wrap in FINAL. Not for a reply that
    pasted output into a code block: its numbers are the output's, not an answer."""
    if "```" in prose:
        return None
    seen = "\n".join(_RECORDED.sub("", c.get("stdout") or "") for c in state.get("cells") or [])
    shown = set(_NUMBER.findall(seen))
    for raw in reversed(_NUMBER.findall(prose)):
        number = raw.rstrip(",")
        if number in shown or number.replace(",", "") in shown:
            return number.replace(",", "")
    return None


_WHAT = {
    "max_iterations": "iterations left",
    "max_tokens": "token budget left",
    "max_cost_usd": "budget left",
    "max_seconds": "time left",
    "max_subcalls": "sub-calls left",
    "context_overflow": "room in your context window",
    "stuck_loop": "new ideas to try",
}


def _forced_final(state: RLMState, ctx: RLMContext, limits: Limits, limit: str) -> dict[str, Any]:
    """One last root call asking for the best answer so far; the run ends whatever it says."""
    ask = {"role": "user", "content": prompts.FORCED_FINAL_PROMPT.format(what=_WHAT.get(limit, "budget left"))}
    update: dict[str, Any] = {"stopped_by": limit, "proposed": None}
    answer = None
    for keep in (None, 6, 0):  # on a context overflow, retry with less history
        msgs = conversation({**state, "messages": [*(state.get("messages") or []), ask]}, limits, keep_last=None if keep is None else keep + 1)
        try:
            reply = call_model(ctx.model, msgs, label=ctx.model_label, stop=prompts.STOP_SEQUENCES, prices=ctx.prices)  # type: ignore[arg-type]
        except ContextOverflow:
            continue
        except ModelError:
            break
        update["usage"] = reply.usage
        update["messages"] = [ask, {"role": "assistant", "content": reply.text}]
        final = find_final(reply.text) or find_final(_FENCE_LINE.sub("", reply.text))  # FINAL written in a code block too
        if final is not None and final.var is not None:
            answer = _read_var(state, ctx, final.var) or final.var
        elif final is not None:
            answer = final.answer
        else:  # prose is a best-effort answer; code it can no longer run is not
            answer = _FENCED.sub("", reply.text).strip() or None
        break
    if answer is None and state.get("proposed"):
        answer = str(state["proposed"].get("answer"))
    close_session(state)
    update["final_answer"] = answer
    return update


def _read_var(state: RLMState, ctx: RLMContext, name: str) -> str | None:
    try:
        session = open_session(state, ctx)
        out = session.step(len(state.get("cells") or []) + 10_000, f"FINAL_VAR({name!r})")
    except SandboxError:
        return None
    return out.final if isinstance(out, CellResult) else None


def route_check_final(state: RLMState) -> Literal["generate", "__end__"]:
    """End when there is a final answer or a stop reason; otherwise take another turn."""
    return "__end__" if state.get("stopped_by") else "generate"
