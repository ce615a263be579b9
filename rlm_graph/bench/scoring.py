"""Scorers for benchmark answers (stdlib only).

A scorer reads a free-form answer the way a patient grader would: ``FINAL(...)``, "Answer:" and "The answer
is" prefixes, quotes, markdown and a trailing full stop are ignored, names are compared without case, numbers
may carry thousands separators or units ("1,234.50 USD", "42 errors"), lists may be written in any order and
any notation. It never gives credit to a non-answer: an answer that says the value is not there ("not found",
"The context does not contain ...", "unknown") scores 0 whatever else it holds.

Scorers, by ``Task.scorer``:

- ``exact``: the cleaned answer equals the gold, or holds it as a whole word with no rival beside it (another
  of ``metadata['choices']``; for a numeric gold, another number of the same number of digits).
- ``number_exp``: ``0.75 ** |error|`` on the first number (OOLONG's score for counts).
- ``number_rel``: 1 if the first number is within ``metadata['rel_tol']`` (default 0.001) of the gold.
- ``count``: 1 if the answer's number equals the gold exactly; ``count_exp``: ``0.75 ** |error|``;
  ``number``: 1 within ``metadata['rel_tol']`` (default 0.001), relative. These three read the first number
  of the answer that the question does not itself mention (so "In March 2024 there were 17" gives 17).
- ``items_f1``: F1 between the gold items and the items found in the answer (``metadata['items']``: ``int``
  for numeric ids, ``pattern`` for ids matching ``metadata['item_pattern']``, ``names`` for names out of
  ``metadata['universe']``).
- ``pairs_f1``: F1 over the set of (low, high) pairs.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterable
from typing import Any, Protocol

__all__ = ["SCORERS", "is_non_answer", "parse_pairs", "answer_numbers", "answer_items", "score", "score_answer"]


class Scorable(Protocol):
    """What :func:`score` reads from a task."""

    query: str
    gold: Any
    scorer: str
    metadata: dict[str, Any]


_PREFIX = re.compile(r"^(?:(?:the\s+)?(?:final\s+)?answer\s*(?:is\b|:|=)|final\s*:)\s*", re.I)
_NUMBER = re.compile(r"(?:(?<![\w.])-)?(?:\d{1,3}(?:,\d{3})+(?![\d])|\d+)(?:\.\d+)?")
_PAIR = re.compile(r"(\d+)\s*(?:,|-|–|—|&|/|\band\b|\bwith\b)\s*(\d+)")

#: Phrases that say the value was not found or cannot be given. An answer holding one is not an answer.
_NON_ANSWER = re.compile(
    r"""\bnot\s+(?:be\s+)?(?:found|present|mentioned|stated|specified|provided|given|available|listed|included|
         contained|determined|determinable|known|possible|enough|clear|sure|certain)\b
      | \b(?:does|do|did|is|are|was|were|could|can|has|have|had)(?:\s+not|n't)\s+(?:seem\s+to\s+)?
         (?:contain|mention|include|appear|exist|say|state|specify|provide|find|locate|identify|determine|know|
         have|hold|list|show|give|be\s+(?:found|determined|identified|located))\b
      | \b(?:cannot|can't|couldn't|unable\s+to|impossible\s+to)\b
      | \bno\s+(?:information|data|mention|record|records|answer|matches|matching|such|relevant|value|entry|
         entries|results?|way|idea)\b
      | \b(?:unknown|undetermined|unclear|insufficient|i\s+(?:do\s+not|don't)\s+know)\b
      | ^\W*(?:none|null|nil|n/?a|nan|unknown|-+|\?+)\W*$""",
    re.I | re.X,
)


def is_non_answer(answer: Any) -> bool:
    """True when ``answer`` says that the value is absent or unknowable (such an answer scores 0)."""
    return answer is None or bool(_NON_ANSWER.search(str(answer))) or not str(answer).strip()


def _clean(text: Any) -> str:
    """Lower-cased answer without FINAL(...), 'The answer is', quotes, markdown or trailing punctuation."""
    s = str(text).strip()
    m = re.fullmatch(r"FINAL(?:_VAR)?\((.*)\)", s, re.S)
    s = m.group(1) if m else s
    for _ in range(3):
        s = _PREFIX.sub("", s.strip()).strip(" \t\r\n'\"`*").rstrip(".!;").strip()
    return " ".join(s.lower().split())


def _has_word(text: str, word: str) -> bool:
    return re.search(r"(?<!\w)" + re.escape(word) + r"(?!\w)", text) is not None


def _numbers(text: str) -> list[float]:
    return [float(m.replace(",", "")) for m in _NUMBER.findall(text)]


def _first_number(answer: Any) -> float | None:
    nums = _numbers(_clean(answer))
    return nums[0] if nums else None


def answer_numbers(answer: Any, query: str = "") -> list[float]:
    """The numbers in ``answer`` in order, without those the question itself mentions (a year, a user id),
    unless nothing else is left."""
    nums = _numbers(_clean(answer))
    asked = set(_numbers(query.lower()))
    return [n for n in nums if n not in asked] or nums


def _score_exact(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """1 if the cleaned answer equals the gold, or contains it as a whole word with no rival in it: no other
    choice (``meta['choices']``), and for a numeric gold no other number of the same number of digits."""
    a, g = _clean(answer), _clean(gold)
    if a == g:
        return 1.0
    if g.isdigit():  # a code such as a magic number: present, and no other number of its length
        nums = {n.replace(",", "") for n in re.findall(r"\d[\d,]*\d|\d", a)}
        return 1.0 if g in nums and all(n == g or len(n) != len(g) for n in nums) else 0.0
    if not a or not _has_word(a, g):
        return 0.0
    rivals = [c for c in meta.get("choices", ()) if _clean(c) != g and _has_word(a, _clean(c))]
    return 0.0 if rivals else 1.0


def _score_number_exp(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """0.75 ** |error| (OOLONG's score for counts)."""
    x = _first_number(answer)
    return 0.0 if x is None else 0.75 ** abs(x - float(gold))


def _score_number_rel(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """1 if within ``meta['rel_tol']`` (default 0.001) of the gold, relative to it."""
    x = _first_number(answer)
    g = float(gold)
    return 0.0 if x is None else float(abs(x - g) <= meta.get("rel_tol", 0.001) * abs(g) + 1e-6)


def _asked_number(answer: Any, meta: dict[str, Any]) -> float | None:
    nums = answer_numbers(answer, meta.get("query", ""))
    return nums[0] if nums else None


def _score_count(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """1 if the answer's number (not one the question mentions) is the gold count."""
    x = _asked_number(answer, meta)
    return float(x is not None and x == float(gold))


def _score_count_exp(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """0.75 ** |error| on the answer's number (not one the question mentions)."""
    x = _asked_number(answer, meta)
    return 0.0 if x is None else 0.75 ** abs(x - float(gold))


def _score_number(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """1 if the answer's number (not one the question mentions) is within ``rel_tol`` of the gold."""
    x, g = _asked_number(answer, meta), float(gold)
    return 0.0 if x is None else float(abs(x - g) <= meta.get("rel_tol", 0.001) * abs(g) + 1e-9)


def _norm_item(item: Any) -> str:
    return " ".join(str(item).lower().replace("\u2019", "'").split())


def answer_items(answer: Any, meta: dict[str, Any]) -> set[Any]:
    """The items an answer names, normalised as the gold is (ints for ``int``; lower-cased text otherwise)."""
    text = answer if isinstance(answer, str) else " ; ".join(map(str, answer)) if isinstance(answer, (list, tuple, set)) else str(answer)
    kind = meta.get("items", "int")
    if kind == "int":
        return {int(n) for n in re.findall(r"(?<![\d.])\d+(?!\d|\.\d)", text)}  # "r327", "#327", "review_327"
    if kind == "pattern":
        return {_norm_item(m) for m in re.findall(meta["item_pattern"], text, re.I)}
    low = _norm_item(text)
    return {_norm_item(u) for u in meta.get("universe", ()) if _has_word(low, _norm_item(u))}


def _f1(gold: Iterable[Any], found: set[Any]) -> float:
    g = set(gold)
    if not g or not found:
        return float(not g and not found)
    hit = len(g & found)
    return 0.0 if hit == 0 else 2 * hit / (len(g) + len(found))


def _score_items_f1(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """F1 between the gold items and the items found in the answer (order and notation ignored)."""
    want = {int(x) for x in gold} if meta.get("items", "int") == "int" else {_norm_item(x) for x in gold}
    return _f1(want, answer_items(answer, meta))


def parse_pairs(answer: Any) -> set[tuple[int, int]]:
    """Pairs written as '[(1, 2), (3, 4)]', '[[1, 2]]', '1-2, 3-4', '1 and 2; 3 & 4' ...; each as (low, high)."""
    s = str(answer)
    return {(min(a, b), max(a, b)) for a, b in ((int(x), int(y)) for x, y in _PAIR.findall(s)) if a != b}


def _score_pairs_f1(gold: Any, answer: Any, meta: dict[str, Any]) -> float:
    """F1 between the set of gold pairs and the pairs found in the answer (order inside a pair ignored)."""
    return _f1({(min(a, b), max(a, b)) for a, b in gold}, parse_pairs(answer))


SCORERS: dict[str, Callable[[Any, Any, dict[str, Any]], float]] = {
    "exact": _score_exact, "number_exp": _score_number_exp, "number_rel": _score_number_rel,
    "count": _score_count, "count_exp": _score_count_exp, "number": _score_number,
    "items_f1": _score_items_f1, "pairs_f1": _score_pairs_f1,
}


def score_answer(scorer: str, gold: Any, answer: Any, metadata: dict[str, Any] | None = None) -> float:
    """Score a free-form answer in [0, 1] with the named scorer; ``None``, a non-answer or an unparseable
    answer gives 0. A list or tuple answer (a ``FINAL_VAR`` of a list) is scored as its items."""
    if answer is None:
        return 0.0
    if isinstance(answer, str) and is_non_answer(answer):
        return 0.0
    value = SCORERS[scorer](gold, answer, metadata or {})
    return min(1.0, max(0.0, value)) if math.isfinite(value) else 0.0


def score(task: Scorable, answer: Any) -> float:
    """Score the model's answer to ``task`` in [0, 1] (the question's own numbers are known to the scorer)."""
    return score_answer(task.scorer, task.gold, answer, {**task.metadata, "query": task.query})
