"""check_final: end the run on an accepted FINAL, or on a spent budget after one forced answer."""

from __future__ import annotations

import ast
import re
from typing import Any, Literal

from langchain_core.messages import HumanMessage
from langgraph.runtime import Runtime

from rlm_graph.errors import ModelError, SandboxError
from rlm_graph.graph import prompts
from rlm_graph.graph.bindings import Bindings, RunSettings
from rlm_graph.graph.answers import (
    EMPTY_ANSWERS,
    STOP_WORDS,
    asks_aggregate,
    asks_yes_no,
    empty_lookup,
    extract_value,
    field_terms,
    grounding_lines,
    is_lookup,
    key_terms,
    mentions_any,
    names_the_subject,
    never_looked,
    next_hop_lines,
    non_answer,
    search_hint,
    sentences,
    snippets,
    stated_value,
    uncounted,
)
from rlm_graph.graph.parsing import find_final
from rlm_graph.graph.ledger import BudgetSpent
from rlm_graph.graph.runtime import COUNT_QUESTION, Charges, budgeted_call, close_session, field_count, judge_answer, judge_note, judgement_kind, label_scope_words, label_value, lowered_literals, lowered_rerun, open_session, refiltered_code, refiltered_rerun, table_stats, peek, peek_code, reached_limit, run_account, settings_of
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMState, add_usage
from rlm_graph.models.calls import ContextOverflow
from rlm_graph.nodes.generate import conversation
from rlm_graph.sandboxes.protocol import CellResult
from rlm_graph.tools import describe as describe_tools


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
    seen += "\n" + _runner_said(state).lower()  # what the runner's search showed counts as seen
    tokens = [t for t in _TOKEN.findall(answer.lower()) if len(t) > 1 or t.isdigit()]
    if not seen.strip() or not tokens:
        return False
    return not any(t in seen for t in tokens)


def _seen_text(state: RLMState) -> str:
    """Everything the cells printed (without the REPL's own "FINAL answer recorded" lines)."""
    return "\n".join(_RECORDED.sub("", c.get("stdout") or "") for c in state.get("cells") or [])


def _merge_spent(a: dict[str, Any], b: dict[str, Any]) -> dict[str, Any]:
    """Two charges' state updates as one (usage added, sub-calls summed)."""
    if not a or not b:
        return a or b
    out = {**a, **b}
    if a.get("usage") and b.get("usage"):
        out["usage"] = add_usage(a["usage"], b["usage"])
    if a.get("n_subcalls") and b.get("n_subcalls"):
        out["n_subcalls"] = a["n_subcalls"] + b["n_subcalls"]
    return out


def _context_is_query(state: RLMState) -> bool:
    """True when the context is the question itself (a child asked ``rlm_query(prompt)`` with no context):
    the question's words are then always "in the data", and finding them says nothing."""
    query = " ".join(str(state.get("query", "")).split())[:80]
    preview = " ".join(str((state.get("context_meta") or {}).get("preview", "")).split())
    return bool(query) and query in preview


def _notes_with(state: RLMState, mark: str) -> list[str]:
    """The user-turn notes that hold ``mark`` (the runner's notes start with a fixed phrase)."""
    return [str(m.get("content")) for m in state.get("messages") or [] if m.get("role") == "user" and mark in str(m.get("content"))]


def _runner_said(state: RLMState) -> str:
    """What the runner's own searches showed the model, in its notes."""
    return "\n".join(_notes_with(state, "The runner searched") + _notes_with(state, prompts.NEXT_HOP_MARK)
                     + _notes_with(state, prompts.REFILTER_MARK) + _notes_with(state, prompts.STATS_MARK))


def _runner_lines(state: RLMState) -> str:
    """The lines of the runner's notes without their search headers ("search('x') finds 4:"): the 1.5B
    model shown four hits answered 4, a number only the header held."""
    return "\n".join(line for line in _runner_said(state).splitlines() if not line.lstrip().startswith("search("))


def _search_hits(found: str | None) -> str | None:
    """The hit lines of the runner's search output (not its "finds 7:" headers); None when it found nothing."""
    if not found or found.startswith("search finds none of"):
        return None
    return "\n".join(line for line in found.splitlines() if not line.startswith("search("))


def _spent(charges: Charges) -> dict[str, Any]:
    """The state keys a runner call outside the record spent (a refusal is not carried: the budget said it)."""
    return {k: v for k, v in charges.update().items() if k != "budget_hit"}


def _token_in(answer: str, text: str) -> bool:
    """True if ``answer`` occurs in ``text`` as a whole token (ignoring case)."""
    a = answer.strip().strip("'\"").lower()
    return bool(a) and re.search(rf"(?<![\w-]){re.escape(a)}(?![\w-])", text.lower()) is not None


def _new_names(query: str, answer: str) -> list[str]:
    """The capitalised names in ``answer`` that the question does not name ("Penwick" in "KOFI VOGEL
    lives in Penwick." to "In which country does Kofi Vogel live?")."""
    return [n for n in _NAMES.findall(answer) if n.lower() not in query.lower()]


def _step_value(query: str, answer: str) -> str | None:
    """What a lookup's answer gives as a step: the answer itself (up to four words), or a sentence's
    one new name ("Penwick" in "Kofi Vogel's home is in Penwick."); else None."""
    if len(answer.split()) <= 4:
        return answer.strip().strip("'\"`.") or None
    names = _new_names(query, answer)
    return names[0] if len(names) == 1 else None


def _grounded(query: str, answer: str, lines: list[str]) -> bool:
    """True if ``answer`` is in one of ``lines``, or is a sentence whose new names all are: the 1.5B
    model answered "KOFI VOGEL lives in Penwick." after printing "Kofi Vogel's home is in Penwick."."""
    if any(_token_in(answer, line) for line in lines):
        return True
    names = _new_names(query, answer) if len(answer.split()) > 4 else []
    return bool(names) and all(any(_token_in(n, line) for line in lines) for n in names)


_ITEM_SPLIT = re.compile(r"\s*[,;\n]\s*")


def _items_seen(answer: str, seen: str) -> bool:
    """True if ``answer`` is a list of two or more items ("a, b", "['a', 'b']", "{'a', 'b'}") each of
    which the output shows. A lookup's grounding lines name the question's words; the items of a list
    answer are printed on lines of their own (the 1.5B model printed the six SKUs both warehouses
    stock, answered FINAL(common_items), and was told its answer was not in the output)."""
    inner = answer.strip()
    if inner[:1] in "[{(" and inner[-1:] in "]})":
        inner = inner[1:-1]
    items = [x.strip().strip("'\"") for x in _ITEM_SPLIT.split(inner) if x.strip().strip("'\"")]
    return len(items) >= 2 and all(_token_in(x, seen) for x in items)


_NUMBER_ANSWER = re.compile(r"\s*-?\d[\d,]*(?:\.\d+)?\s*")
_MONTHS = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october", "november", "december")


def _named_conditions(state: RLMState) -> list[list[str]]:
    """The conditions the question states on the table's fields (the worker's ``named_values``), or []
    when the runner's field count reads the question (``field_terms``): that count also reads "errors"
    as level ERROR, which the conditions (values written as the data writes them) miss; a note
    naming only the service sent the 1.5B model from the right count to a wrong one."""
    meta = state.get("context_meta") or {}
    named = meta.get("named_values") or []
    if named and field_terms(state.get("query", ""), meta.get("field_values")):
        return []
    return named


def _without_comments(code: str) -> str:
    """``code`` without its comments: "# ... in the Clothing category in April 2024" above a filter on the
    category alone is no test of the month. Code that does not parse loses only its whole-line comments."""
    try:
        return ast.unparse(ast.parse(code))
    except (SyntaxError, ValueError):
        return re.sub(r"^\s*#.*$", "", code, flags=re.MULTILINE)


def _tests(code: str, condition: list[str]) -> bool:
    """True if the (lower-cased) code of the cells tests ``condition`` ([field, value, kind], see the
    worker's _named_values) in some form: the value as text (or each of its words), or for a month
    '2024-03', '-03', '03', month == 3 or the month's name as a text of its own ('March', 'mar')."""
    _, value, kind = condition
    if kind == "month":
        # (a day field compared equal to the month tests nothing: row['date'] == '2024-09' matched no
        # day of it, and the 1.5B model answered 0 from that filter)
        code = re.sub(rf"==\s*['\"]{re.escape(value)}['\"]|['\"]{re.escape(value)}['\"]\s*==", " ", code)
        year, month = value.split("-")
        m = int(month)
        # the month's name counts only as a text of its own ('July', 'jul': strftime('%B') == 'July'), not
        # with its year ('May 2024' in row['date'], which ISO days never hold: the 1.5B model got 0 from it)
        # nor inside a message it prints
        name = re.search(rf"['\"]{_MONTHS[m - 1][:3]}(?:{_MONTHS[m - 1][3:]})?\.?['\"]", code) is not None
        return (value in code or re.search(rf"[-'\"]{month}['\"-]", code) is not None
                or re.search(rf"\bmonth\W*(?:==|in)\W*\(?\s*0?{m}\b", code) is not None or name)
    v = " ".join(value.lower().split())
    if kind == "prefix":
        return v.rstrip("/") in code
    words = [w for w in re.findall(r"\w+", v) if len(w) >= 3]
    return v in code or (bool(words) and all(w in code for w in words))


_AGGREGATES = frozenset({"max", "min", "sum", "sorted", "mean", "median", "fmean", "average", "nlargest", "nsmallest"})


def _wrong_field(state: RLMState, code: str) -> dict[str, str]:
    """{field the code aggregates: field the question names} when the question names one numeric field
    of the rows ("the maximum amount of one order") and ``code`` never reads it but takes max/sum/...
    over another one the question never names (r['quantity']); {} otherwise. The 1.5B model answered
    "What is the maximum amount of one order for garden products?" with the largest quantity, 9."""
    keys, fixed = _fields(state)
    if not keys:
        return {}
    query = str(state.get("query", ""))
    asked = [k for k in keys if k not in fixed and _named_field(query, k)]
    if len(asked) != 1:
        return {}
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return {}
    read, aggregated = set(), set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and isinstance(node.slice.value, str):
            read.add(node.slice.value)
        func = getattr(node, "func", None)
        if isinstance(node, ast.Call) and (getattr(func, "id", None) or getattr(func, "attr", None)) in _AGGREGATES:
            aggregated |= {n.slice.value for n in ast.walk(node) if isinstance(n, ast.Subscript) and isinstance(n.slice, ast.Constant)
                           and isinstance(n.slice.value, str)}
    if asked[0] in read:
        return {}
    wrong = [k for k in keys if k in aggregated and k not in fixed and k != asked[0] and not _named_field(query, k)]
    return {wrong[0]: asked[0]} if len(wrong) == 1 else {}


def _refiltered(state: RLMState, ctx: RunSettings, at: int | None, tests: str | None, swap: dict[str, str]) -> tuple[str | None, str, Charges]:
    """The value the model's cells up to the one that printed the answer (``at``; the newest when None)
    print when the runner runs them with ``tests`` as their filter over the rows and ``swap``'s fields
    (runtime.refiltered_rerun), and what they printed; (None, "", charges) when there is nothing to run
    or no value. The run starts at the newest of the last three cells that filter the rows, and leaves
    out cells that failed."""
    cells = state.get("cells") or []
    if not cells:
        return None, "", Charges()
    end = len(cells) - 1 if at is None else at
    ok = [i for i in range(max(0, end - 3), end + 1) if not cells[i].get("error") and not cells[i].get("timed_out")
          and not _ONLY_FINAL.fullmatch(str(cells[i].get("code") or ""))]
    start = next((i for i in reversed(ok) if refiltered_code(str(cells[i].get("code") or ""), tests, swap) is not None), None)
    if start is None:
        return None, "", Charges()
    code = "\n".join(str(cells[i].get("code") or "") for i in ok if i >= start)
    out, charges = refiltered_rerun(state, ctx, code, tests, swap)
    lines = [line for line in (out or "").splitlines() if line.strip()]
    if not lines:
        return None, "", charges
    value = lines[-1][len("FINAL VALUE "):].strip() if lines[-1].startswith("FINAL VALUE ") else lines[-1].strip()
    shown = "\n".join(line for line in lines if not line.startswith("FINAL VALUE "))[-1500:] or value
    return (value if _NUMBER_ANSWER.fullmatch(value) else None), shown, charges


def _refilter_offers(state: RLMState) -> list[str]:
    """The values the runner's reruns of the model's cell with the question's filter offered."""
    return [m.group(1) for note in _notes_with(state, prompts.REFILTER_MARK) for m in _REFILTER_OFFER.finditer(note)]


#: The figure of the runner's table stats a question's words ask for, tried in this order.
_FIGURES = (("mean", re.compile(r"\b(?:average|mean)\b")), ("largest", re.compile(r"\b(?:largest|biggest|maximum|max|highest)\b")),
            ("smallest", re.compile(r"\b(?:smallest|minimum|min|lowest)\b")), ("sum", re.compile(r"\b(?:total|sum|combined)\b")))


def _figure_asked(query: str) -> str | None:
    """The figure the (lower-cased) question's words ask for: mean, largest, smallest or sum, or None."""
    return next((name for name, words in _FIGURES if words.search(query)), None)


def _fields(state: RLMState) -> tuple[list[str], set[str]]:
    """The rows' keys (of a table or records) and those that take a few values or are the question's
    conditions' fields (the others can hold numbers to add up)."""
    meta = state.get("context_meta") or {}
    keys = [str(k) for k in (meta.get("item_keys") or meta.get("columns") or [])]
    fixed = {str(c[0]) for c in meta.get("named_values") or []}
    for group in ("field_values", "json_values", "log_values"):
        fixed |= {str(k) for k in (meta.get(group) or {})}
    return keys, fixed


def _named_field(query: str, key: str) -> bool:
    """True if the question writes the field's name (unit_price as "unit price", or a plural)."""
    return re.search(rf"\b{re.escape(key.lower().replace('_', ' '))}s?\b", query.lower()) is not None


#: Words that ask about money without naming a field, and the field names that hold a row's money.
_MONEY_WORDS = re.compile(r"\b(?:revenue|money|sales|income|earnings|spent|spend|how much (?:was|were|did|is|are))\b")
_MONEY_FIELDS = frozenset({"amount", "total", "total_amount", "revenue", "sales", "value"})


def _stats_figure(query: str, keys: list[str], fixed: set[str], stats: str) -> str | None:
    """The figure of the runner's table stats (runtime.table_stats) the question asks for: the sum, mean,
    largest or smallest of the one number field the question names ("the biggest order ... by amount" ->
    amount's largest); None when its words do not say which. (Not a count: the rows the conditions keep
    are not the answer to "how many of user 48213's texts are questions?", whose label is no field.)"""
    q = query.lower()
    figure = _figure_asked(q)
    named = [k for k in keys if k not in fixed and _named_field(q, k)]
    if not named and _MONEY_WORDS.search(q):
        # "the combined revenue", "how much money did the orders bring in": the table's one money field
        named = [k for k in keys if k not in fixed and k.lower() in _MONEY_FIELDS]
    if figure is None or len(named) != 1:
        return None
    line = next((l for l in stats.splitlines() if l.startswith(f"{named[0]}: ")), "")
    found = re.search(rf"\b{figure} (-?\d+(?:\.\d+)?)", line)
    return found.group(1) if found else None


def _stats_part(state: RLMState, ctx: RunSettings) -> tuple[str, Charges]:
    """The runner's figures over the rows that meet the question's conditions (runtime.table_stats), as a
    note part, for a question with such conditions that asks for a count, a total, an average or an
    extreme, ending with the figure it asks for when its words say which (``For this question that is:
    FINAL(x)``); "" otherwise, or once they were shown."""
    named = _named_conditions(state)
    keys, fixed = _fields(state)
    if not named or not keys or not asks_aggregate(state.get("query", "")) or _notes_with(state, prompts.STATS_MARK):
        return "", Charges()
    tests = " and ".join(_test_code(c) for c in named)
    source = "rows" if (state.get("context_meta") or {}).get("rows") else "context"
    out, charges = table_stats(state, ctx, source, tests, [k for k in keys if k not in fixed])
    if not out:
        return "", charges
    figure = _stats_figure(state.get("query", ""), keys, fixed, out)
    return prompts.STATS_NOTE.format(tests=tests, stats=out) + (prompts.STATS_VALUE.format(value=figure) if figure else ""), charges


def _forced_figure(state: RLMState, ctx: RunSettings) -> tuple[str | None, Charges]:
    """The figure the runner's table stats give for the question at a forced end (the one its note gave,
    or computed now), or None."""
    picked = _stats_pick(state)
    if picked is not None or _notes_with(state, prompts.STATS_MARK):
        return picked, Charges()
    part, charges = _stats_part(state, ctx)
    return _figure_offered(part), charges


#: The figure a table-stats note offers (its last line, which the runner writes).
_STATS_OFFER = re.compile(re.escape(prompts.STATS_VALUE.split("{")[0].strip()) + r"(-?\d+(?:\.\d+)?)\)")


def _figure_offered(note: str) -> str | None:
    """The figure ``note`` offers: the last offer in it, since the lines above it are the sandbox's output."""
    found = _STATS_OFFER.findall(note)
    return found[-1] if found else None


def _stats_pick(state: RLMState) -> str | None:
    """The figure the runner's table stats note gave for this question (its ``For this question that is``)."""
    return next((v for v in map(_figure_offered, _notes_with(state, prompts.STATS_MARK)) if v is not None), None)


def _stats_values(state: RLMState) -> list[str]:
    """The figures the runner's table stats showed (see :func:`_stats_part`) of the kind the question asks
    for: its means for an average ("2 rows" is no answer to "On average, how much was an order ...?": the
    1.5B model answered 2 twice), the number of rows for a count; all of them when its words say neither."""
    q = str(state.get("query", "")).lower()
    figure = _figure_asked(q)
    out = []
    for note in _notes_with(state, prompts.STATS_MARK):
        lines = note.split(prompts.STATS_MARK, 1)[1].split("\nPick the figure", 1)[0].split("):\n", 1)[-1].splitlines()
        if lines and (figure is None or COUNT_QUESTION.search(q)):
            out += lines[0].split(" ", 1)[:1]
        for line in lines[1:]:
            out += [m.group(2) for m in re.finditer(r"\b(sum|mean|largest|smallest) (-?\d+(?:\.\d+)?)", line) if figure in (None, m.group(1))]
    return out


_REFILTER_OFFER = re.compile(r"If (-?\d[\d,]*(?:\.\d+)?) is the answer, reply with exactly: FINAL\(")


def _untested_note(state: RLMState, ctx: RunSettings, answer: str) -> tuple[str | None, Charges]:
    """A note when a number answer comes from code that never tests a condition the question states
    on the table's fields (the worker finds them: ``named_values``), with a filter that tests them all,
    or from code that aggregates a field the question does not name in place of the one it names
    (:func:`_wrong_field`). The 1.5B model, asked for the orders "in region central placed by SUMMIT
    GOODS", summed the region's orders and answered with that.

    The note also shows what the model's own cell prints with the question's filter (and field), run by
    the runner: told what to test, the 1.5B model wrote its next cell over the note's ``kept`` without
    defining it and answered 0. That value, given back, is accepted; so is an answer that the rerun
    prints too (its filter was the question's, written in a way the test here does not read)."""
    named = _named_conditions(state)
    if not _NUMBER_ANSWER.fullmatch(answer):
        return None, Charges()
    if any(_same_value(answer, n) for note in _notes_with(state, prompts.SCOPED_LABELS_MARK) for _, n in _label_counts_of(note)):
        return None, Charges()  # the runner's own label count of the items that meet the conditions
    if any(_same_value(answer, v) for v in _refilter_offers(state) + _stats_values(state)):
        return None, Charges()
    cells = state.get("cells") or []
    # the code up to the cell that printed the answer (the 1.5B model printed the largest order of all,
    # filtered by the customer two cells later, and answered the first value again); all of it when no
    # cell printed it
    # (not the cell that only records it: "FINAL answer recorded: 9" under FINAL(max_quantity))
    at = next((i for i in range(len(cells) - 1, -1, -1) if _token_in(answer, _RECORDED.sub("", str(cells[i].get("stdout") or "")))), None)
    code = "\n".join(_without_comments(str(c.get("code") or "")) for c in (cells if at is None else cells[: at + 1])).lower()
    missing = [c for c in named if not _tests(code, c)]
    # the tests of its own in the cell that printed the answer (or the newest): method == 'GET' to
    # "How many requests to /api/cart failed with a 5xx status?"
    shown = cells[at] if at is not None else cells[-1] if cells else {}
    extra = _unasked(str(shown.get("code") or ""), state.get("query", ""), named) if named else []
    swap = _wrong_field(state, str(shown.get("code") or ""))
    if not missing and not extra and not swap:
        return None, Charges()
    source = "rows" if (state.get("context_meta") or {}).get("rows") else "context"
    tests = " and ".join(_test_code(c) for c in named) or None
    value, printed, charges = _refiltered(state, ctx, at, tests, swap)
    if value is not None and _same_value(answer, value):
        return None, charges  # the question's filter and field give the model's answer too
    said = "; ".join(part for part in (
        f"never tests {' and '.join(_condition(c) for c in missing)}" if missing else "",
        f"also tests {' and '.join(f'{k} == {v!r}' for k, v in extra)}, which the question does not ask" if extra else "",
        " and ".join(f"takes r[{k!r}] where the question asks about the {v.replace('_', ' ')}" for k, v in swap.items())) if part)
    example = f"kept = [r for r in {source} if {tests or 'True'}]"
    if swap:
        field = next(iter(swap.values()))
        example += f"\nprint(max(r[{field!r}] for r in kept), sum(r[{field!r}] for r in kept))"
    note = prompts.UNTESTED_NOTE.format(answer=answer.strip(), said=said, example=example)
    if value is None:
        # no cell of its own to run with the question's filter (it filtered search()'s hits): the runner's figures
        stats, more = _stats_part(state, ctx)
        note = note + stats
        charges.add(more.usage, more.calls)
        charges.refused = charges.refused or more.refused
    else:
        what = " and ".join(part for part in (
            f"the question's filter ({tests})" if tests and (missing or extra) else "",
            " and ".join(f"r[{v!r}] in place of r[{k!r}]" for k, v in swap.items())) if part)
        note += prompts.REFILTER_RUN.format(what=what, output=printed, value=value)
    return note, charges


def _condition(c: list[str]) -> str:
    key, value, kind = c
    shown = value if kind == "number" else repr(value)
    return f"{key} {'in' if kind == 'month' else 'starting with' if kind == 'prefix' else '=='} {shown}"


def _test_code(c: list[str]) -> str:
    """The test of one named condition on a row ``r``, as code: r['date'].startswith('2024-03'), r['user'] == 48213."""
    key, value, kind = c
    if kind in ("month", "prefix"):
        return f"r[{key!r}].startswith({value!r})"
    return f"r[{key!r}] == {int(value) if kind == 'number' else value!r}"


def _unasked(code: str, query: str, named: list[list[str]]) -> list[tuple[str, str]]:
    """The ``field == 'text'`` tests in ``code`` for a text the question never writes (nor any of its
    conditions' values of that field, nor the start of one of its words: 'warn' in "warnings"). A word
    inside a condition's value is not written for another field: region == 'North' is the model's own
    test in "orders placed by NORTHWIND RETAIL" (the 1.5B model added it, and its sum was a fifth of
    the right one)."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    q = query.lower()
    for _, v, kind in named:
        if kind == "eq" and str(v).split():
            q = re.sub(r"\s+".join(map(re.escape, str(v).lower().split())), " ", q)
    asked = {(str(f), str(v).lower()) for f, v, _ in named}
    out: list[tuple[str, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1 or not isinstance(node.ops[0], ast.Eq):
            continue
        for field, lit in ((node.left, node.comparators[0]), (node.comparators[0], node.left)):
            if (isinstance(field, ast.Subscript) and isinstance(field.slice, ast.Constant) and isinstance(field.slice.value, str)
                    and isinstance(lit, ast.Constant) and isinstance(lit.value, str) and lit.value.strip()):
                want = lit.value.strip().lower()
                written = re.search(rf"(?<![\w-]){re.escape(want)}", q) is not None  # 'warn' in "warnings", not 'get' in "target"
                if not written and not any(f == field.slice.value and (want in a or a in want) for f, a in asked) and (field.slice.value, lit.value) not in out:
                    out.append((field.slice.value, lit.value))
    return out[:3]


def _tested_value(state: RLMState) -> str | None:
    """The number the newest cell printed as its last line whose code tests every condition the question
    states on the table's fields (``named_values``), or None. At a forced end that is the model's own
    answer: the 1.5B model printed 117 twice from a filter on both the month and the category, never
    wrote FINAL, and the forced answer was the runner's search count for the month (1102)."""
    named = _named_conditions(state)
    if not named:
        return None
    for cell in reversed(state.get("cells") or []):
        code = _without_comments(str(cell.get("code") or "")).lower()
        lines = [line.strip() for line in str(cell.get("stdout") or "").splitlines() if line.strip()]
        if lines and _NUMBER_ANSWER.fullmatch(lines[-1]) and all(_tests(code, c) for c in named):
            return lines[-1]
    return None


def _looked_at(state: RLMState) -> str:
    """The code the model ran and what it printed (not the runner's notes: the model did not look)."""
    cells = state.get("cells") or []
    return "\n".join(str(c.get("code") or "") for c in cells) + "\n" + _seen_text(state)


def _saw_output_before(state: RLMState, iteration: int) -> bool:
    return any(c.get("iteration", 0) < iteration for c in state.get("cells") or [])


#: A cell that only gives the answer: FINAL(x) or FINAL_VAR("x"), comment lines aside.
_ONLY_FINAL = re.compile(r"(?:\s*#[^\n]*\n)*\s*FINAL(?:_VAR)?\(.*\)\s*(?:#[^\n]*)?\s*", re.DOTALL)


def _filter_failed(state: RLMState, answer: str) -> bool:
    """True if the newest cell's filter could not match (the worker's audit notes say so) and the answer
    comes from it: that cell recorded a FINAL, or the answer is an empty result (0, []). The 1.5B model
    wrote ``"BLUE GOODS" in row.lower()`` and ``FINAL(total)`` in one cell, then kept answering 0."""
    # (a cell that only gives the answer, ```FINAL(total)```, is not where the answer came from)
    cells = [c for c in state.get("cells") or [] if not _ONLY_FINAL.fullmatch(str(c.get("code") or ""))]
    if not cells:
        return False
    last = cells[-1]
    if not any(mark in str(last.get("stderr") or "") for mark in prompts.FILTER_NOTE_MARKS):
        return False
    return last.get("final") is not None or answer.strip() in EMPTY_ANSWERS


_LAST_VALUE = re.compile(r"^\s*-?\d[\d,]*(?:\.\d+)?\s*$")


def _with_lowered_run(state: RLMState, ctx: RunSettings, note: str) -> tuple[str, Charges]:
    """``note`` plus what the newest cell gives with its flagged capitalised literals lower-cased
    (the fix the worker's note names), run by the runner outside the record; ``note`` alone when
    there is nothing to fix or the run shows no value."""
    last = (state.get("cells") or [{}])[-1]
    words = lowered_literals(str(last.get("stderr") or ""))
    if not words:
        return note, Charges()
    out, charges = lowered_rerun(state, ctx, str(last.get("code") or ""), words)
    lines = [line for line in (out or "").splitlines() if line.strip()]
    if not lines:
        return note, charges
    value = lines[-1][len("FINAL VALUE "):].strip() if lines[-1].startswith("FINAL VALUE ") else None
    if value is None and _LAST_VALUE.match(lines[-1]):
        value = lines[-1].strip()
    shown = "\n".join(line for line in lines if not line.startswith("FINAL VALUE "))[-1500:] or value or ""
    ask = prompts.LOWERED_ASK.format(value=value) if value and value not in EMPTY_ANSWERS else ""
    run = prompts.LOWERED_RUN.format(words=", ".join(repr(w.lower()) for w in words), output=shown, ask=ask)
    return note + run.rstrip(), charges


def _form_ok(state: RLMState, ctx: RunSettings, answer: str) -> tuple[bool, str, dict[str, Any]]:
    """Ask the sub-model what kind of value the question wants; check the answer's form in code.

    A small model asked "is this answer of the right form?" says no to right answers; asked only
    for the kind (number, name, list ...) it is reliable, and the check itself needs no model.
    """
    prompt = prompts.FORM_CHECK_PROMPT.format(query=state.get("query", ""))
    try:
        reply = budgeted_call(run_account(state), "form_check", ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, ctx=ctx)
    except (ModelError, BudgetSpent):
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
    if kind in ("name", "word") and len(text.split()) > 4:
        return False, f"the question asks for a {kind}, not a sentence"
    return True, ""


def check_final(state: RLMState, runtime: Runtime[RLMContext], *, defaults: Bindings | None = None) -> dict[str, Any]:
    """Accept a FINAL (after the grounding and form checks), force one when a budget is spent, or go on."""
    ctx = settings_of(runtime, defaults)
    limits = Limits.from_dict(state.get("limits"))
    proposed = state.get("proposed")
    if proposed is not None and not state.get("budget_hit"):
        answer = str(proposed.get("answer"))
        if ctx.answer_check:
            answer = _judged_pick(state, _label_pick(state, answer))
        notes = int(state.get("answer_notes") or 0)
        if ctx.answer_check and notes < 2 and _filter_failed(state, answer) and reached_limit(limits, state, ctx) is None:
            # (not on the last iteration: a note there would run one turn past max_iterations)
            note, charges = prompts.FILTER_FAILED_NOTE.format(answer=answer[:200]), Charges()
            if not _notes_with(state, prompts.LOWERED_MARK):
                note, charges = _with_lowered_run(state, ctx, note)
            return {"proposed": None, "answer_notes": notes + 1, "messages": ({"role": "user", "content": note},), **_spent(charges)}
        if ctx.grounding_guard and not _saw_output_before(state, int(proposed.get("iteration") or 0)):
            # Never accepted: an answer given before any output is a guess (["FINAL(42)"] used to
            # return 42 with no cell run). Each refusal costs an iteration, so the limits still hold.
            limit = reached_limit(limits, state, ctx)
            if limit is not None:
                return _forced_final({**state, "proposed": None}, ctx, limits, limit)
            return {"proposed": None, "guard_used": True, "messages": ({"role": "user", "content": prompts.GROUNDING_NOTE},)}
        if ctx.answer_check and notes < 2 and _written_blind(state, answer) and reached_limit(limits, state, ctx) is None:
            note = prompts.BLIND_FINAL_NOTE.format(answer=answer[:200])
            return {"proposed": None, "answer_notes": notes + 1, "messages": ({"role": "user", "content": note},)}
        missing = (non_answer(answer) or empty_lookup(state.get("query", ""), answer)) and not asks_yes_no(state.get("query", ""))
        if missing and notes < 2:
            # "The context does not contain ..." to a question that presupposes a value: the small
            # model's filter was wrong far more often than the value was missing.
            note = prompts.NON_ANSWER_NOTE.format(answer=answer[:200], search_hint=search_hint(state.get("query", "")))
            found, charges = peek(state, ctx, key_terms(state.get("query", ""), 4))
            if found:
                note += prompts.RUNNER_SEARCH.format(found=found)
            spent = _spent(charges)
            return {"proposed": None, "answer_notes": notes + 1, "messages": ({"role": "user", "content": note},), **spent}
        # (small-model habits, like the other answer_check checks: a strong model's derived answer is left alone)
        # (an answer the runner's label counts gave, "FINAL(negative)", needs no grounding)
        looks = (ctx.answer_check and not missing and notes < 2 and not _context_is_query(state)
                 and not any(_same_value(answer, c) for c in _label_values(state)))
        wandered = never_looked(state.get("query", ""), _looked_at(state)) if looks and not _token_in(answer, _runner_said(state)) else None
        said = _runner_lines(state)  # the runner's hits count as lines the model read; "finds 4:" does not
        grounding = grounding_lines(state.get("query", ""), _seen_text(state) + "\n" + said) if looks and not wandered else None
        if (grounding and not _grounded(state.get("query", ""), answer, grounding) and not _token_in(answer, said)
                and not _items_seen(answer, _seen_text(state))):
            # The 1.5B model printed "The Elm Clipper departs from gate F26." and answered 1.
            terms = key_terms(state.get("query", ""), 4)
            shown = "\n".join("  " + part for line in grounding[:8] for part in snippets(line, terms))[:3000]
            note = prompts.UNGROUNDED_NOTE.format(answer=answer[:200], lines=shown)
            return {"proposed": None, "answer_notes": notes + 1, "messages": ({"role": "user", "content": note},)}
        spent: dict[str, Any] = {}
        if wandered:
            # The 1.5B model counted paragraphs starting with "The" and answered 22 to "what is the boarding
            # gate of the elm clipper?": it goes back with what the runner's search finds for those words,
            # when the data has them and the answer is not among the hits ("Who is listed first?" has
            # no word the data holds: its answer is believed).
            found, charges = peek(state, ctx, wandered)
            spent = _spent(charges)
            hits = _search_hits(found)
            if hits is not None and not _token_in(answer, hits):
                note = prompts.WANDERED_NOTE.format(answer=answer[:200], terms=", ".join(repr(t) for t in wandered))
                note += prompts.RUNNER_SEARCH.format(found=found)
                return {"proposed": None, "answer_notes": notes + 1, "messages": ({"role": "user", "content": note},), **spent}
        if missing:
            close_session(state)  # the model kept its non-answer after two notes: it ends the run, unconfirmed
            return {"final_answer": answer, "stopped_by": "final", "confirmed": False, "proposed": None}
        answer = extract_value(state.get("query", ""), answer, _seen_text(state))
        checks = int(state.get("form_checks") or 0)
        if ctx.answer_check and names_the_subject(state.get("query", ""), answer) and _notes_with(state, prompts.SUBJECT_MARK):
            # The model named the question's subject again after the note: the runner takes the steps
            # itself, reading what the data says about the subject (and one step further), unconfirmed.
            found, more = _runner_hops(state, ctx, _subject_named(state.get("query", ""), answer) or answer)
            spent = _merge_spent(spent, more)
            if found is not None:
                close_session(state)
                return {"final_answer": found, "stopped_by": "final", "confirmed": False, "proposed": None, **spent}
        if checks < 2 and ctx.answer_check and names_the_subject(state.get("query", ""), answer) and not _notes_with(state, prompts.SUBJECT_MARK):
            # The 1.5B model printed "Lena Moreau works on the Lyra team." and answered Lena Moreau to
            # "Who manages the team that lena moreau works on?".
            note = prompts.SUBJECT_NOTE.format(answer=answer.strip())
            return {"proposed": None, "form_checks": checks + 1, "messages": ({"role": "user", "content": note},)}
        if ctx.answer_check and not _context_is_query(state):
            # The 1.5B model kept "Penwick" after the next-hop note said the lines give Brazil
            chosen, more = _hop_choice(state, ctx, answer)
            spent = _merge_spent(spent, more)
            answer = chosen or answer
        if checks < 2 and ctx.answer_check and not _context_is_query(state):
            note, more = _next_hop(state, ctx, answer)
            spent = _merge_spent(spent, more)
            if note is not None:
                return {"messages": ({"role": "user", "content": note},), **spent, "proposed": None, "form_checks": checks + 1}
        kind = judgement_kind(state)
        if ctx.answer_check and kind and _notes_with(state, prompts.JUDGE_MARK):
            # The model answered again with no sub-call after the judge note (the 1.5B model repeated
            # FINAL(4)): the runner runs judge() itself; its count or ids, from the sub-model, are the answer.
            judged, charges = judge_answer(state, ctx, kind)
            spent = _merge_spent(spent, _spent(charges))
            if judged is not None:
                close_session(state)
                return {"final_answer": judged, "stopped_by": "final", "confirmed": False, "proposed": None, **spent}
        if checks < 2 and ctx.answer_check and kind and _needs_judging(state, answer, kind):
            # The 1.5B model never called llm_query on a judgement question: it counted items containing
            # "bug" (0) or starting with "The" (10). The note gives the exact code, which it copies.
            return {"proposed": None, "form_checks": checks + 1, "messages": ({"role": "user", "content": judge_note(state, kind)},)}
        if checks < 2 and ctx.answer_check and len(_notes_with(state, prompts.UNTESTED_MARK)) < 2:
            note, rerun = _untested_note(state, ctx, answer)
            spent = _merge_spent(spent, _spent(rerun))
            if note is not None:
                return {"proposed": None, "form_checks": checks + 1, "messages": ({"role": "user", "content": note},), **spent}
        if checks < 2 and ctx.answer_check:
            note, more = _field_recount(state, ctx, answer)
            spent = _merge_spent(spent, more)
            if note is not None:
                return {"messages": ({"role": "user", "content": note},), **spent, "proposed": None, "form_checks": checks + 1}
        counted = any(_same_value(answer, c) for c in _runner_counts(state))  # the runner's own count, given back: not unseen, not uncounted
        not_a_result = not counted and uncounted(state.get("query", ""), answer, _seen_text(state))
        picked = _stats_pick(state) if ctx.answer_check else None
        if picked is not None and not_a_result:
            # The figure the runner's table stats gave, after the model kept a number no output showed as a
            # result (the 1.5B model repeated 1478.45, one amount of a printed list, through both notes).
            close_session(state)
            return {"final_answer": picked, "stopped_by": "final", "confirmed": False, "proposed": None, **spent}
        if checks < 2 and not_a_result:
            note = prompts.UNCOUNTED_NOTE.format(answer=answer)
            if ctx.answer_check:
                stats, figuring = _stats_part(state, ctx)
                note, spent = note + stats, _merge_spent(spent, _spent(figuring))
            return {"proposed": None, "form_checks": checks + 1, "messages": ({"role": "user", "content": note},), **spent}
        if checks < 2 and ctx.answer_check and not counted and _unseen(answer, state):
            # A small model often answers with a placeholder (12345) right after its code printed
            # the real value: an answer none of whose parts the REPL ever showed goes back once.
            note = prompts.UNSEEN_NOTE.format(answer=answer[:200])
            return {"proposed": None, "form_checks": checks + 1, "messages": ({"role": "user", "content": note},)}
        if checks < 2 and _PLAN.match(answer) and len(answer) > 20:
            # "First I will count the lines..." is a plan, not an answer: no model call needed to see it
            return {"proposed": None, "form_checks": checks + 1, "messages": ({"role": "user", "content": prompts.PLAN_NOTE},)}
        usage: dict[str, Any] = {}
        if ctx.answer_check and checks < 2 and not any(_same_value(answer, c) for c in _label_values(state)):
            # (not for the value the runner's label counts gave: it has the question's form)
            ok, reason, usage = _form_ok(state, ctx, answer)
            if not ok:
                note = prompts.FORM_NOTE.format(answer=answer[:200], reason=reason or "wrong kind of value")
                return {"proposed": None, "form_checks": checks + 1, "usage": usage,
                        "messages": ({"role": "user", "content": note},)}
        close_session(state)
        usage = add_usage(spent.pop("usage", None), usage) if spent.get("usage") else usage
        # an answer that names the question's own subject, kept after the note, is not confirmed
        confirmed = not (ctx.answer_check and names_the_subject(state.get("query", ""), answer))
        return {"final_answer": answer, "stopped_by": "final", "confirmed": confirmed, "proposed": None, "usage": usage, **spent}
    limit = reached_limit(limits, state, ctx)
    if limit is not None:
        return _forced_final(state, ctx, limits, limit)
    last = (state.get("messages") or [{}])[-1]
    if last.get("role") == "assistant" and not state.get("queue"):
        value = stated_value(last.get("content") or "", _seen_text(state))
        note = prompts.NO_CODE_VALUE_NOTE.format(value=value) if value else prompts.NO_CODE_NOTE
        return {"messages": ({"role": "user", "content": note},)}
    return {}



_OFFERED = re.compile(r"If (.{1,200}?) is the answer, reply with exactly: FINAL\(")


def _stated_earlier(state: RLMState) -> str | None:
    """The last value the model stated in a prose reply (what the no-code note offered back to it)."""
    for m in reversed(state.get("messages") or []):
        if m.get("role") == "user" and str(m.get("content") or "").startswith(prompts.NO_CODE_VALUE_NOTE.split("{")[0][:40]):
            found = _OFFERED.search(str(m.get("content")))
            if found:
                return found.group(1)
    return None


_NAMES = re.compile(r"\b[A-Z][\w-]*(?:\s+[A-Z][\w-]*)*")

_HITS = """\
for _x in search({answer!r}, fields=False)[:60]:
    print(str(_x)[:400].replace("\\n", " "))
"""


def _next_hop(state: RLMState, ctx: RunSettings, answer: str) -> tuple[str | None, dict[str, Any]]:
    """A note when a lookup's answer is the first of two steps (once per run).

    The 1.5B model answered "Penwick" to "In which country does Kofi Vogel live?" after finding
    "Kofi Vogel lives in Penwick": the runner searches the context for the answer and, when other
    lines say something else about it ("Penwick is a city in Brazil"), shows them and asks whether
    the question goes one step further. A model that repeats its answer is believed.
    """
    query = state.get("query", "")
    if _notes_with(state, prompts.NEXT_HOP_MARK) or not is_lookup(query):  # (a yes/no is not a lookup)
        return None, {}
    step = _step_value(query, answer)
    if step is None or re.fullmatch(r"[\d.,\s%$-]+", step):
        return None, {}
    answer = step
    found, charges = _peek_hits(state, ctx, answer.strip().strip("'\""))
    spent = _spent(charges)
    hop = next_hop_lines(query, answer, found) if found else None
    if hop is None:
        return None, spent
    subject, lines = hop
    asked = _asked_name(query, subject) if not _notes_with(state, prompts.OTHER_SUBJECT_MARK) else None
    if asked is not None:
        # The 1.5B model answered Indigo to "Who manages the team that rafael abbott works on?": the line
        # was Rafael Grant's ({'name': 'Rafael Abbott', 'team': 'Lyra'} is his), and the next-hop note led
        # on to Indigo's manager. The lines about the question's subject, when none holds the answer.
        own, more = _peek_hits(state, ctx, asked)
        spent = _merge_spent(spent, _spent(more))
        if own and not any(_token_in(answer, line) for line in own):
            shown = "\n".join("  " + line[:300] for line in own[:5])
            return prompts.OTHER_SUBJECT_NOTE.format(answer=answer.strip(), asked=asked, other=subject, lines=shown), spent
    shown = "\n".join("  " + line[:300] for line in lines)
    note = prompts.NEXT_HOP_NOTE.format(answer=answer.strip(), subject=subject, lines=shown)
    # The 1.5B root, shown "{'type': 'team', 'name': 'Garnet', 'manager': 'Jade Varga'}", repeated Garnet;
    # the sub-model reading the subject's lines and these with the question said Jade Varga.
    # sentence by sentence: shown the window around "Kofi Vogel's home is in Penwick." (four other
    # people's homes beside it) with the lines, the sub-model read Penwick; shown the sentence, Brazil
    own = _subject_sentences(found, subject, answer)
    value, usage = _read_lines(state, ctx, own + lines)
    spent = _merge_spent(spent, {"usage": usage} if usage else {})
    if (value and value.strip().lower() != answer.strip().lower() and re.search(r"[A-Z0-9]", value)  # a name or a code, not a key ("name")
            and _token_in(value, "\n".join(lines))):
        note += prompts.NEXT_HOP_READ.format(value=value)
    return note, spent


def _asked_name(query: str, subject: str) -> str | None:
    """The question's name for its subject when it is not ``subject``: a word of ``subject`` the question
    writes together with a word beside it that ``subject`` lacks ("rafael abbott" for the line's "Rafael
    Grant"), or None. Whether that is a name or a verb ("Rafael work") the data decides: the caller
    searches for it."""
    words = re.findall(r"[A-Za-z][\w'-]*", query)
    have = {w.lower() for w in re.findall(r"[A-Za-z][\w'-]*", subject)}
    if not have or have <= {w.lower() for w in words}:  # (the question writes the whole of it)
        return None
    for i, w in enumerate(words):
        if w.lower() not in have:
            continue
        for j in (i + 1, i - 1):
            if 0 <= j < len(words) and len(words[j]) >= 3 and words[j].lower() not in STOP_WORDS and words[j].lower() not in have:
                pair = (words[min(i, j)], words[max(i, j)])
                return " ".join(pair)
    return None


_HOP_NOTE = re.compile(r"Your answer (['\"])(.+?)\1 " + re.escape(prompts.NEXT_HOP_MARK) + r" (.+?) itself\.")
_HOP_READ = re.compile(re.escape(prompts.NEXT_HOP_READ.split("{value}")[0].strip()) + " (.+?)" + re.escape(prompts.NEXT_HOP_READ.split("{value}")[1]))


def _hop_choice(state: RLMState, ctx: RunSettings, answer: str) -> tuple[str | None, dict[str, Any]]:
    """The second step's value, when the model kept its first-step answer after the next-hop note
    offered it (see :func:`_next_hop`) and the sub-model, shown what the data says about both, picks
    the second step with the candidates in either order; else None (the model's answer stands).

    The 1.5B root, shown "The city of Penwick lies in Brazil" and told the lines give Brazil, replied
    FINAL(Penwick) again to "In which country does Kofi Vogel live?". Asked once, the sub-model leans
    to the candidate named first (17 of 24 right on a probe of two-step and one-step questions); both
    orders agreeing changed no right answer there and fixed every two-step one it changed.
    """
    notes = _notes_with(state, prompts.NEXT_HOP_MARK)
    note = _HOP_NOTE.search(notes[-1]) if notes else None
    read = _HOP_READ.search(notes[-1]) if notes else None
    if note is None or read is None or not _same_value(answer, note.group(2)):
        return None, {}
    first, subject, second = note.group(2), note.group(3), read.group(1)
    # Only the two facts, sentence by sentence: shown the note's whole lines ("Kofi Vogel collects old
    # maps. ...", "Wanda Fischer lives in Penwick.") the sub-model said Penwick in either order.
    own = [x for x in sentences(_seen_text(state)) if mentions_any(x, [subject]) and mentions_any(x, [first])][:2]
    hop = [x for line in notes[-1].splitlines() if line.startswith("  ") for x in sentences(line)
           if mentions_any(x, [first]) and mentions_any(x, [second]) and not mentions_any(x, [subject])][:2]
    if not own or not hop:
        return None, {}
    lines = own + hop
    usage: dict[str, Any] = {}
    for a, b in ((first, second), (second, first)):
        prompt = prompts.HOP_CHOICE_PROMPT.format(query=state.get("query", ""), lines="\n".join(lines)[:3000], first=a, second=b)
        try:
            reply = budgeted_call(run_account(state), "hop_choice", ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, ctx=ctx)
        except (ModelError, BudgetSpent):
            return None, {"usage": usage} if usage else {}
        usage = add_usage(usage or None, reply.usage)
        said = reply.text.lower()
        if second.lower() not in said or first.lower() in said:
            return None, {"usage": usage}
    return second, {"usage": usage}


def _subject_named(query: str, answer: str | None) -> str | None:
    """The question's subject when ``answer`` is that subject ("Lena Berg"), else None. (A sentence
    naming it, "Yuki Grant lives in Lordale", is left to the forced reader: on a needle question such
    a sentence holds the answer, and the hops' effect there was not measured.)"""
    return answer.strip().strip("'\"`.") if answer and names_the_subject(query, answer) else None


def _runner_hops(state: RLMState, ctx: RunSettings, subject: str) -> tuple[str | None, dict[str, Any]]:
    """The runner's own answer to a lookup the model answered with its subject ("Lena Moreau" to "Who
    manages the team that lena moreau works on?") twice: the sub-model reads the context's lines
    about the subject with the question; when what it reads there is the first of two steps (other
    lines say something else about it, see :func:`next_hop_lines`), it reads those too. None when
    the lines give nothing but the subject. Seen on the 1.5B model (dev-multihop-employee_manager-docs):
    it printed "Lena Moreau works on the Lyra team." and answered Lena Moreau, before and after the note.
    """
    query = state.get("query", "")
    hits, charges = _peek_hits(state, ctx, subject)
    spent = _spent(charges)
    # sentence by sentence: a window around her name also held "Iris Jovanovic is the manager of the
    # Meridian team", another team's manager, and the sub-model answered with it
    own = list(dict.fromkeys(x for hit in hits for x in sentences(hit) if mentions_any(x, [subject])))[:6]
    if not own:
        return None, spent
    first, usage = _read_lines(state, ctx, own)
    spent = _merge_spent(spent, {"usage": usage} if usage else {})
    if not first or names_the_subject(query, first) or not _token_in(first, "\n".join(own)):
        return None, spent
    second, more = _second_step(state, ctx, first, own)
    return second or first, _merge_spent(spent, more)


def _subject_sentences(hits: list[str], subject: str, answer: str, most: int = 3) -> list[str]:
    """The sentences of ``hits`` that name both the subject and the answer (the first step's fact)."""
    return list(dict.fromkeys(x for hit in hits for x in sentences(hit) if mentions_any(x, [subject]) and mentions_any(x, [answer])))[:most]


def _second_step(state: RLMState, ctx: RunSettings, first: str, own: list[str] | None = None) -> tuple[str | None, dict[str, Any]]:
    """The second step of a lookup whose first step is ``first``: when other lines say something
    else about it (see :func:`next_hop_lines`), the sub-model reads them with the subject's lines
    (``own``, or the hits naming the subject) and the question. None when there is no such line or
    the reading gives no value those lines hold."""
    query = state.get("query", "")
    more, charges = _peek_hits(state, ctx, first)
    spent = _spent(charges)
    hop = next_hop_lines(query, first, more) if more else None
    if hop is None:
        return None, spent
    subject, lines = hop
    if own is None:
        own = _subject_sentences(more, subject, first)
    further = list(dict.fromkeys(x for line in lines for x in sentences(line) if mentions_any(x, [first])))[:6]
    second, usage = _read_lines(state, ctx, own[:3] + further)
    spent = _merge_spent(spent, {"usage": usage} if usage else {})
    if second and second.strip().lower() != first.strip().lower() and _token_in(second, "\n".join(further)):
        return second, spent
    return None, spent


def _read_lines(state: RLMState, ctx: RunSettings, lines: list[str]) -> tuple[str | None, dict[str, Any]]:
    """The sub-model's answer to the question from ``lines`` alone (None for "unknown" or a long reply)."""
    prompt = prompts.READER_LOOKUP_PROMPT.format(query=state.get("query", ""), outputs="\n".join(line[:400] for line in lines)[:4000])
    try:
        reply = budgeted_call(run_account(state), "hop_reader", ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, ctx=ctx)
    except (ModelError, BudgetSpent):
        return None, {}
    text = reply.text.strip().strip("`").strip().rstrip(".")
    if not text or non_answer(text) or len(text.split()) > 8:
        return None, reply.usage
    return text, reply.usage


def _peek_hits(state: RLMState, ctx: RunSettings, answer: str) -> tuple[list[str], Charges]:
    """The context's lines (windows on long lines) that mention ``answer``, by the runner's search."""
    out, charges = peek_code(state, ctx, _HITS.format(answer=answer))
    return ([line for line in (out or "").splitlines() if line.strip() and not line.startswith("search(")], charges)


def _needs_judging(state: RLMState, answer: str, kind: str) -> bool:
    """An answer, reached with no sub-call, to a judgement question (see :func:`judgement_kind`): a count
    that is not every item ("How many documents are there?"), or any ids (once per run)."""
    meta = state.get("context_meta") or {}
    if kind == "count" and (not re.fullmatch(r"\d+", answer.strip()) or answer.strip() == str(meta.get("text_items"))):
        return False
    return not _notes_with(state, prompts.JUDGE_MARK)


#: FINAL(<a constant>) in a cell's code: FINAL(0), FINAL("Paris").


def _judged_value(state: RLMState) -> str | None:
    """The last line the newest cell that ran judge() printed (its count or its ids), or None. At a forced
    end after the judge note that is the answer: the 1.5B model ran the judge() cell it was given, which
    printed the nine right ids, then repeated it until the loop guard stopped the run, with no answer."""
    for cell in reversed(state.get("cells") or []):
        if "judge(" in str(cell.get("code") or "") and not cell.get("error"):
            lines = [line.strip() for line in str(cell.get("stdout") or "").splitlines()
                     if line.strip() and not line.startswith("FINAL answer recorded")]
            return lines[-1][:2000] if lines else None
    return None


def _judged_pick(state: RLMState, answer: str) -> str:
    """After the judge note, an answer that is one of the ids the judge() cell printed as a list is that
    list (the 1.5B model printed fifteen ids from the cell the note gave it and answered FINAL(100), the
    first), and a number answer other than the count the cell printed is that count."""
    if not _notes_with(state, prompts.JUDGE_MARK):
        return answer
    judged = _judged_value(state)
    if not judged or _same_value(answer, judged):
        return answer
    if _NUMBER_ANSWER.fullmatch(judged) and _NUMBER_ANSWER.fullmatch(answer):
        return judged  # the count the cell printed, not another number (it printed 4 and the model kept FINAL(0))
    if not judged.startswith("["):
        return answer
    items = [x.strip(" '\"") for x in judged.strip("[]").split(",")]
    return judged if len(items) >= 2 and answer.strip(" '\"") in items else answer


#: A constant given to FINAL in code: FINAL(0), FINAL('x').
_FINAL_LITERAL = re.compile(r"\bFINAL\(\s*(-?\d[\d,.]*|'[^'\n]*'|\"[^\"\n]*\")\s*\)")


def _written_blind(state: RLMState, answer: str) -> bool:
    """True if the answer is a number written as a constant in FINAL(...) in the newest cell, whose
    printed output ends with another number: the model wrote the value before it saw what the cell
    computed. The 1.5B model ran the judge() cell it was given, which printed 4, with FINAL(0) under it."""
    cells = state.get("cells") or []
    proposed = state.get("proposed") or {}
    if not cells or proposed.get("source") != "code" or cells[-1].get("final") is None:
        return False
    last = cells[-1]
    if not any(_same_value(m.group(1).strip("'\""), answer) for m in _FINAL_LITERAL.finditer(str(last.get("code") or ""))):
        return False
    printed = [line.strip() for line in str(last.get("stdout") or "").splitlines()
               if line.strip() and not line.startswith("FINAL answer recorded")]
    return (bool(printed) and _NUMBER_ANSWER.fullmatch(answer) is not None and _NUMBER_ANSWER.fullmatch(printed[-1]) is not None
            and not _same_value(answer, printed[-1]))


def _same_value(a: str, b: str) -> bool:
    """True if two answers are the same text or the same number (12 and 12.0)."""
    a, b = a.strip(), b.strip()
    if a == b:
        return True
    try:
        return float(a.replace(",", "")) == float(b.replace(",", ""))
    except ValueError:
        return False


def _runner_counts(state: RLMState) -> set[str]:
    """The counts the runner's field-count notes gave (see :func:`_field_recount`)."""
    counts = {m.group(1) for note in _notes_with(state, prompts.FIELD_COUNT_MARK) for m in re.finditer(r"reply FINAL\((\d+)\)", note)}
    # and the value of the model's own cell re-run with its filter fixed (see _with_lowered_run) or
    # with its label tests answered by the sub-model (the worker's _label_rerun)
    counts |= {m.group(1) for mark in (prompts.LOWERED_MARK, prompts.LABEL_RUN_MARK) for note in _notes_with(state, mark)
               for m in re.finditer(r"reply FINAL\((.+?)\)\.$", note, re.MULTILINE)}
    # and the value of the model's own cells re-run with the question's filter (see _untested_note)
    counts |= set(_refilter_offers(state)) | set(_stats_values(state))
    # and the per-label counts of the runner's classify() over the context (see runtime.label_counts),
    # with the value they give (a label, for a most-common question)
    return counts | _label_values(state)


def _label_values(state: RLMState) -> set[str]:
    """The numbers of the runner's label-count notes and the value they give (see runtime.label_counts)."""
    labels = _notes_with(state, prompts.LABELS_MARK)
    return {n for note in labels for _, n in _label_counts_of(note)} | {m.group(1) for note in labels for m in _LABELS_VALUE.finditer(note)}


def _label_counts_of(note: str) -> list[tuple[str, str]]:
    """The (label, count) lines of a label-counts note, most common first."""
    return re.findall(r"^  ([^:\n]+): (\d+)$", note.split(prompts.LABELS_MARK, 1)[-1], re.MULTILINE)


#: The value line that ends a label-counts note.
_LABELS_VALUE = re.compile("^" + re.escape(prompts.LABELS_VALUE.strip().split("{")[0]) + r"(.+)\)$", re.MULTILINE)


def _label_pick(state: RLMState, answer: str) -> str:
    """The value the runner's label counts give when ``answer`` is another of the note's numbers: told
    "numeric: 14 ... For this question that is: FINAL(numeric)", the 1.5B model answered 14 to "Which
    label is the most common?" (and 5, another label's count, is a misread of "how many are neutral").
    Any other answer is kept."""
    notes = _notes_with(state, prompts.LABELS_MARK)
    if not notes:
        return answer
    value = _LABELS_VALUE.search(notes[-1])
    if value is None or _same_value(answer, value.group(1)) or not any(_same_value(answer, n) for _, n in _label_counts_of(notes[-1])):
        return answer
    return value.group(1)


def _label_answer(state: RLMState) -> str | None:
    """The answer the runner's label counts give (see runtime.label_counts), for a run that ends at a
    limit after them: the count of the one label the question names, or the most common label. None
    when no such note was shown, or when the question names an id or a date (it may be about some of
    the items: "the instances of user 59117") and the counts were not of the items that meet its conditions."""
    notes = _notes_with(state, prompts.LABELS_MARK)
    rest = label_scope_words(state.get("query", ""))
    if not notes or (re.search(r"\d", rest) and prompts.SCOPED_LABELS_MARK not in notes[-1]):
        return None
    return label_value(state.get("query", ""), [(label, int(n)) for label, n in _label_counts_of(notes[-1])])


def _field_recount(state: RLMState, ctx: RunSettings, answer: str) -> tuple[str | None, dict[str, Any]]:
    """A note when a how-many answer differs from the count by the field values the question names.

    "Count the errors logged by CATALOG" answered 418 (every error, the service forgotten) goes back
    with the runner's count of the lines whose level is [Err] and whose service is CatalogService.
    Only for a question whose every other word merely frames a count (see ``field_terms``), only when
    the worker's search matched by fields, and once per run: a model that keeps its count after the
    note may know better (a condition the fields do not hold).
    """
    if not re.fullmatch(r"\d+", answer.strip()):
        return None, {}
    if _notes_with(state, prompts.FIELD_COUNT_MARK):
        return None, {}
    terms = field_terms(state.get("query", ""), (state.get("context_meta") or {}).get("field_values"))
    if not terms:
        return None, {}
    pattern = " ".join(terms)
    count, said, charges = field_count(state, ctx, pattern)
    spent = _spent(charges)  # a replay that rebuilt the sandbox
    if count is None or str(count) == answer.strip():
        return None, spent
    return prompts.FIELD_COUNT_NOTE.format(pattern=pattern, count=count, said=said, answer=answer.strip(), unit=said.split()[0]), spent


_WHAT = {
    "max_iterations": "iterations left",
    "max_tokens": "token budget left",
    "max_cost_usd": "budget left",
    "max_seconds": "time left",
    "max_subcalls": "sub-calls left",
    "context_overflow": "room in your context window",
    "stuck_loop": "new ideas to try",
    "max_errors": "room for more errors",
}


def _forced_final(state: RLMState, ctx: RunSettings, limits: Limits, limit: str) -> dict[str, Any]:
    """One last root call asking for the best answer so far; the run ends whatever it says.

    A judgement question no sub-call has touched (see :func:`judgement_kind`) is answered by the
    runner's own judge() instead: the model's best guess there is a keyword count.
    """
    kind = judgement_kind(state) if ctx.answer_check and limit not in _SPEND_LIMITS and limit != "max_seconds" else None
    if kind:
        judged, charges = judge_answer(state, ctx, kind)
        if judged is not None:
            close_session(state)
            return {"stopped_by": limit, "proposed": None, "final_answer": judged, "confirmed": False, **_spent(charges)}
    ask = {"role": "user", "content": prompts.FORCED_FINAL_PROMPT.format(what=_WHAT.get(limit, "budget left"))}
    update: dict[str, Any] = {"stopped_by": limit, "proposed": None}
    answer = None
    for keep in (None, 6, 0):  # on a context overflow, retry with less history
        msgs = conversation({**state, "messages": [*(state.get("messages") or []), ask]}, limits, keep_last=None if keep is None else keep + 1,
                            tools=describe_tools(ctx.tools))
        try:
            reply = budgeted_call(run_account(state), "forced_final", ctx.model, msgs, label=ctx.model_label, ctx=ctx, stop=prompts.STOP_SEQUENCES)
        except ContextOverflow:
            continue
        except (ModelError, BudgetSpent):  # a forced answer whose worst case does not fit is not asked
            break
        update["usage"] = reply.usage
        update["messages"] = (ask, {"role": "assistant", "content": reply.text})
        final = find_final(reply.text) or find_final(_FENCE_LINE.sub("", reply.text))  # FINAL written in a code block too
        if final is not None and final.var is not None:
            charges = Charges()
            answer = _read_var(state, ctx, final.var, charges) or final.var
            update.update(_spent(charges))
            if charges.usage:
                update["usage"] = add_usage(reply.usage, charges.usage)
        elif final is not None:
            answer = final.answer
        else:  # prose is a best-effort answer; code it can no longer run is not
            answer = _own_prose(state, _FENCED.sub("", reply.text))
        break
    if answer is None and state.get("proposed"):
        answer = str(state["proposed"].get("answer"))
    if answer is None or non_answer(answer):
        # The value the model itself stated in prose after seeing it printed ("There are 18 headlines
        # that are not about sport."), offered back as FINAL(18), before it wandered off and looped.
        answer = _stated_earlier(state) or answer
    query = state.get("query", "")
    counts = _runner_counts(state)
    counting = Charges()
    if ctx.answer_check and not counts and limit not in _SPEND_LIMITS:
        # A count question whose words all name field values ("How many ERROR lines come from Notifier?"),
        # looped on before any answer could get the field-count note: that count is the answer. (The 1.5B
        # model printed search('ERROR')'s five records three times and the forced reply said 2; one was
        # the notifier's.)
        terms = field_terms(query, (state.get("context_meta") or {}).get("field_values"))
        if terms:
            count, _, counting = field_count(state, ctx, " ".join(terms))
            if count is not None:
                counts = {str(count)}
    if len(counts) == 1 and (answer is None or answer.strip() not in counts):
        # The runner counted by the fields the question names and the model did not take it up (it
        # pasted the note back as code until the loop guard stopped it): the runner's count is the
        # best answer there is, and it needs no call.
        answer = next(iter(counts))
    labelled = _label_answer(state)
    if labelled is not None:
        answer = labelled
    judged = _judged_value(state) if ctx.answer_check and labelled is None and _notes_with(state, prompts.JUDGE_MARK) else None
    if judged is not None:
        answer = judged  # (what the judge() cell the note gave printed)
    # the runner's label counts or the judge() cell gave the answer: no tested value, no lookup steps after them
    runner_value = labelled is not None or judged is not None
    # (not over the runner's field count, nor for a lookup: a name's answer is no number)
    tested = _tested_value(state) if ctx.answer_check and not runner_value and len(counts) != 1 and not is_lookup(query) else None
    if tested is not None:
        answer = tested
    empty_tested = tested is not None and tested.strip() in EMPTY_ANSWERS
    if ctx.answer_check and (tested is None or empty_tested) and not runner_value and not is_lookup(query) and not any(
            answer is not None and _same_value(answer, v) for v in _refilter_offers(state)):
        # A table question the model looped on without computing it (it printed search()'s records
        # again and again): the runner's figure over the rows its conditions keep, when its words say which.
        # Also over a tested 0: the 1.5B model tested 'May' in row['date'].split('-')[1] (never true for
        # '2024-05-14'), printed 0 and looped, while the month's rows summed to 446145.29.
        figure, figuring = _forced_figure(state, ctx)
        if figuring.usage:
            update["usage"] = add_usage(update.get("usage"), figuring.usage)
        if figure is not None and not (empty_tested and figure.strip() in EMPTY_ANSWERS):
            answer = figure
    lookup = is_lookup(query) and tested is None and not runner_value
    subject = _subject_named(query, answer) if ctx.answer_check and lookup and limit not in _SPEND_LIMITS else None
    read_by_runner = False
    if subject is not None:
        # A forced answer that is the question's subject ("Lena Berg"): the runner takes the lookup's
        # steps itself, as after a kept subject answer.
        hopped, more = _runner_hops(state, ctx, subject)
        if more.get("usage"):
            update["usage"] = add_usage(update.get("usage"), more["usage"])
        update.update({k: v for k, v in more.items() if k != "usage"})
        if hopped is not None:  # (a reading of the context already: the reader below does not read it again)
            answer, read_by_runner = hopped, True
    found, charges = None, Charges()
    if not read_by_runner and limit not in _SPEND_LIMITS and lookup and not _context_is_query(state) and (
            answer is None or non_answer(answer) or limit == "stuck_loop" or never_looked(query, _looked_at(state))):
        # A lookup the model got stuck on: the runner's search for the question's words (the 1.5B model
        # looped on a filter while the runner's note showed "password at the Dune-Lodge is saffron33").
        found, charges = peek(state, ctx, key_terms(query, 4))
        found = found if _search_hits(found) is not None else None
    # The reader answers when the forced answer is missing or a non-answer, or, for a lookup, when the
    # runner's search found the question's words and the forced answer is not among the hits.
    hits = _search_hits(found) or ""
    weak = answer is None or non_answer(answer) or (found is not None and not _token_in(answer, hits))
    if limit not in _SPEND_LIMITS and weak and not read_by_runner:
        # (not after a spend budget: the reader is one more paid call, and the budget said stop)
        read, usage = _read_outputs(state, ctx, found)
        if read is not None:
            answer = read
        if usage:
            update["usage"] = add_usage(update.get("usage"), usage)
    if (not read_by_runner and ctx.answer_check and lookup and limit not in _SPEND_LIMITS and answer and not non_answer(answer)
            and _step_value(query, answer) and not _notes_with(state, prompts.NEXT_HOP_MARK)):
        # A forced answer (or the reader's) that is the first of two steps ("Penwick", or "Yuki Grant
        # lives in Lordale", to "In which country does Kofi Vogel live?"), when the next-step note never
        # came: the runner reads the next step, unconfirmed like any forced answer. (A needle's value is
        # said once, or said the same way of others: no next step, the answer stays.)
        second, more = _second_step(state, ctx, _step_value(query, answer) or answer)
        if more.get("usage"):
            update["usage"] = add_usage(update.get("usage"), more["usage"])
        update.update({k: v for k, v in more.items() if k != "usage"})
        answer = second or answer
    charges.add(counting.usage, counting.calls)  # (the field count's replay, if it needed one)
    update.update({k: v for k, v in charges.update().items() if k not in ("budget_hit", "usage")})  # a replay the peek needed
    if charges.usage:
        update["usage"] = add_usage(update.get("usage"), charges.usage)
    close_session(state)
    update["final_answer"] = answer
    update["confirmed"] = False  # a best effort at a limit is never confirmed
    return update


def _own_prose(state: RLMState, text: str) -> str | None:
    """The lines of a reply's prose that the model wrote itself: lines copied from the runner's
    messages are left out (the 1.5B model pasted "The runner searched the context for the question's
    key words: ..." under its code, and that note became the forced answer), and so are lines that
    show a search's hits. None if nothing is left, or if what is left is longer than an answer."""
    said = {" ".join(line.split()) for m in state.get("messages") or [] if m.get("role") == "user"
            for line in str(m.get("content") or "").splitlines() if len(line.strip()) >= 12}
    kept = [line for line in text.strip().splitlines() if " ".join(line.split()) not in said and not _HIT_COUNT.match(line)]
    answer = "\n".join(kept).strip()
    return answer if answer and len(answer) <= _MAX_PROSE else None


#: "search('August') finds 12897:", a line of the runner's search note, as the model re-words it.
_HIT_COUNT = re.compile(r"\s*search\(.*\) finds \d+")
#: A forced reply's prose longer than this is not an answer (the reader tries instead).
_MAX_PROSE = 1000


#: Limits on spending: at these the run makes no call beyond its one forced answer.
_SPEND_LIMITS = frozenset({"max_tokens", "max_cost_usd", "max_subcalls"})

_EMPTY_OUTPUT = re.compile(r"^\s*(?:\[\]|\{\}|0|None|set\(\)|''|search\(.*)\s*$")


def _informative(stdout: str) -> str:
    """An output without the lines that say nothing was found ([], 0, search's own notes)."""
    return "\n".join(line for line in _RECORDED.sub("", stdout).splitlines() if line.strip() and not _EMPTY_OUTPUT.match(line)).strip()


def _read_outputs(state: RLMState, ctx: RunSettings, found: str | None = None) -> tuple[str | None, dict[str, Any]]:
    """At a forced end with no usable answer, the sub-model reads the last outputs the root saw
    (and ``found``, what the runner's search for the question's words printed) and answers from
    them (the root often printed the value and then wandered off)."""
    outputs = [o[-1500:] for o in (_informative(c.get("stdout") or "") for c in (state.get("cells") or [])[-4:]) if o]
    if found:
        # The runner's hits first, and only outputs that name a word of the question: 30 lines of
        # "The readin" before the hits made the 1.5B reader say "unknown" (it said F26 without them).
        terms = key_terms(state.get("query", ""), 4)
        shown = "\n---\n".join([found[:2500], *(o for o in outputs if mentions_any(o, terms))])[:5000]
    else:
        shown = "\n---\n".join(outputs)[-5000:]
    if not shown:
        return None, {}
    template = prompts.READER_LOOKUP_PROMPT if is_lookup(state.get("query", "")) else prompts.READER_PROMPT
    prompt = template.format(query=state.get("query", ""), outputs=shown)
    try:
        reply = budgeted_call(run_account(state), "reader", ctx.sub, [HumanMessage(prompt)], label=ctx.sub_label, ctx=ctx)
    except (ModelError, BudgetSpent):
        return None, {}
    text = reply.text.strip().strip("`").strip()
    final = find_final(text)
    if final is not None and final.answer is not None:
        text = final.answer
    if not text or non_answer(text) or len(text) > 300:
        return None, reply.usage
    return text, reply.usage


def _read_var(state: RLMState, ctx: RunSettings, name: str, charges: Charges) -> str | None:
    try:
        session = open_session(state, ctx, charges)
        out = session.step(len(state.get("cells") or []) + 10_000, f"FINAL_VAR({name!r})")
    except SandboxError:
        return None
    return out.final if isinstance(out, CellResult) else None


def route_check_final(state: RLMState) -> Literal["generate", "__end__"]:
    """End when there is a final answer or a stop reason; otherwise take another turn."""
    return "__end__" if state.get("stopped_by") else "generate"
