"""The same question through one plain model call and through the RLM, side by side.

The plain call is what you would do without an RLM: paste the context into one prompt. It uses
the RLM's own root model, so the comparison is about the method, not the model. A context longer
than ``window_chars`` is cut to its head and the prompt says so; when the server still finds the
prompt too long for its window, the cut is halved and the call retried (at most three times).

    >>> from rlm_graph import RLM
    >>> from rlm_graph.compare import compare, format_table
    >>> print(format_table(compare("big.log", "Which error code appears most often?", rlm=RLM())))  # doctest: +SKIP
"""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.messages import HumanMessage

from rlm_graph.contexts import check_file, looks_like_path
from rlm_graph.errors import ConfigurationError, ContextError
from rlm_graph.graph.state import total_tokens
from rlm_graph.models.calls import ContextOverflow, call_model
from rlm_graph.rlm import RLM, RLMResult

#: The plain call's prompt: the context first, then the question (small models follow the last line best).
PLAIN_PROMPT = """\
Answer the question about the context below.

Context:
{context}{note}

Question: {query}
Reply with only the answer."""

TRUNCATION_NOTE = "\n[... the context was cut here: only its first {shown:,} of {total:,} characters are shown ...]"

#: How many times the plain call halves its window after the server says the prompt is too long.
OVERFLOW_RETRIES = 3


@dataclass
class Attempt:
    """One method's answer to the question.

    Attributes:
        method: "plain" or "rlm".
        answer: the answer text (None when the method gave none).
        seconds: wall-clock time of the attempt.
        usage: ``{model: {calls, input_tokens, output_tokens, cost_usd}}``.
        correct: whether ``answer`` matches the expected answer (None when none was given).
        error: why there is no answer (for example the context overflowed the window).
        iterations: root-model turns (1 for the plain call).
    """

    method: str
    answer: str | None
    seconds: float
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    correct: bool | None = None
    error: str | None = None
    iterations: int = 1

    @property
    def tokens(self) -> int:
        """Input plus output tokens over all models."""
        return total_tokens(self.usage)

    @property
    def calls(self) -> int:
        """Model calls made (sub-calls included)."""
        return sum(int(u.get("calls") or 0) for u in self.usage.values())


@dataclass
class ComparisonResult:
    """The plain call and the RLM on one question.

    Attributes:
        query: the question.
        expected: the expected answer, if given.
        context_chars: length of the context as text.
        shown_chars: how much of it the plain call's prompt held.
        plain: the plain call's attempt.
        rlm: the RLM's attempt.
        rlm_result: the RLM's full result (thread id, sub-calls, stop reason ...).
    """

    query: str
    expected: str | None
    context_chars: int
    shown_chars: int
    plain: Attempt
    rlm: Attempt
    rlm_result: RLMResult | None = None

    @property
    def truncated(self) -> bool:
        """True when the plain call saw only part of the context."""
        return self.shown_chars < self.context_chars

    def to_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["truncated"] = self.truncated
        for side in ("plain", "rlm"):
            out[side]["tokens"] = getattr(self, side).tokens
        return out


def compare(
    context: Any,
    query: str,
    *,
    rlm: RLM,
    expected: str | None = None,
    window_chars: int = 24000,
) -> ComparisonResult:
    """Answer ``query`` over ``context`` with one plain call and with ``rlm``; report both.

    Args:
        context: what :meth:`RLM.completion` takes: a str, list, dict, or a path to a file.
        query: the question.
        rlm: the RLM to run; its root model also makes the plain call.
        expected: the right answer, to mark each attempt correct or not (see :func:`answer_matches`).
        window_chars: the most characters of context the plain call's prompt holds.

    Returns:
        A :class:`ComparisonResult`; print it with :func:`format_table`.

    Raises:
        ConfigurationError, ContextError: bad input (nothing is run).
        ModelError, SandboxError: a call failed (a plain call that outgrows the window is not
            an error: its attempt carries ``error`` instead).

    Example:
        >>> r = compare("numbers.txt", "What is the sum? Answer with the number.", rlm=RLM(), expected="4150")  # doctest: +SKIP
        >>> r.plain.correct, r.rlm.correct  # doctest: +SKIP
        (False, True)
    """
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError("query (the question) must be a non-empty string")
    if window_chars < 1:
        raise ConfigurationError(f"window_chars must be positive, got {window_chars!r}")
    head, total = _context_head(context, window_chars)
    plain, shown = _plain_attempt(rlm, head, total, query)
    result = rlm.completion(context, query)
    attempt = Attempt(
        "rlm",
        result.answer,
        result.execution_time,
        result.usage,
        error=None if result.answer is not None else f"no answer ({result.stopped_by})",
        iterations=result.iterations,
    )
    if expected is not None:
        plain.correct = answer_matches(plain.answer, expected)
        attempt.correct = answer_matches(attempt.answer, expected)
    return ComparisonResult(query, expected, total, shown, plain, attempt, result)


def _context_head(context: Any, limit: int) -> tuple[str, int]:
    """The first ``limit`` characters of the context as text, and its total length in characters.

    A file is read in chunks, so a huge one is never held whole; a list or dict becomes JSON.
    """
    if context is None:
        raise ContextError("context is required: a str, list, dict, or a path to a file")
    if isinstance(context, Path) or (isinstance(context, str) and looks_like_path(context)):
        head: list[str] = []
        total = 0
        with check_file(context).open(encoding="utf-8", errors="replace") as f:
            while chunk := f.read(1 << 20):
                if total < limit:
                    head.append(chunk[: limit - total])
                total += len(chunk)
        return "".join(head), total
    if isinstance(context, str):
        return context[:limit], len(context)
    try:
        text = json.dumps(context, ensure_ascii=False)
    except (TypeError, ValueError) as exc:
        raise ContextError(f"the context must be a str, or JSON-serializable (list, dict ...): {exc}") from exc
    return text[:limit], len(text)


def plain_prompt(head: str, total: int, query: str) -> str:
    """The plain call's prompt: ``head`` (the start of a context of ``total`` characters), then the question."""
    note = TRUNCATION_NOTE.format(shown=len(head), total=total) if len(head) < total else ""
    return PLAIN_PROMPT.format(context=head, note=note, query=query.strip())


def _plain_attempt(rlm: RLM, head: str, total: int, query: str) -> tuple[Attempt, int]:
    settings = rlm.settings
    start = time.monotonic()
    for _ in range(OVERFLOW_RETRIES + 1):
        try:
            messages = [HumanMessage(plain_prompt(head, total, query))]
            reply = call_model(settings.model, messages, label=settings.model_label, prices=settings.prices)  # type: ignore[arg-type]
        except ContextOverflow:
            head = head[: max(1, len(head) // 2)]  # the server counts tokens, we count characters: halve and retry
            continue
        return Attempt("plain", _strip_final(reply.text), round(time.monotonic() - start, 3), reply.usage), len(head)
    error = f"the prompt did not fit the model's window even with {len(head):,} characters of context"
    return Attempt("plain", None, round(time.monotonic() - start, 3), error=error), 0


def _strip_final(text: str) -> str:
    """A plain reply's answer: whitespace trimmed, and a stray ``FINAL(...)`` wrapper dropped."""
    text = text.strip()
    m = re.fullmatch(r"FINAL\((.*)\)", text, re.DOTALL)
    return m.group(1).strip() if m else text


#: How much an answer may say besides the expected value and still count (``"The city is Lyon."`` does).
MAX_EXTRA_WORDS = 8
MAX_EXTRA_NUMBERS = 2

_NUMBER = re.compile(r"[-+]?\d+(?:\.\d+)?")
_NUMERIC = re.compile(r"[-+]?\d[\d,_]*(?:\.\d+)?")


def _numbers(text: str) -> list[float]:
    cleaned = re.sub(r"(?<=\d)[,_](?=\d{3}\b)", "", text)  # 1,234,567 -> 1234567
    return [float(n) for n in _NUMBER.findall(cleaned)]


def _words(text: str) -> str:
    return " ".join(re.findall(r"[a-z0-9]+(?:[.'-][a-z0-9]+)*", text.lower()))


def answer_matches(answer: str | None, expected: str) -> bool:
    """Whether ``answer`` gives ``expected``, forgiving form but not content.

    A numeric expected answer matches when the answer holds that number (``"The sum is 1,234."``
    matches ``1234``; ``12345`` does not match ``1234``). Any other expected answer matches when
    its words appear, in order and whole, in the answer, ignoring case and punctuation
    (``"Carol."`` matches ``carol``; ``"Caroline"`` does not). Either way the answer must be
    short: a code block, or a long reply that happens to mention the value (or many numbers), is
    not an answer.
    """
    if answer is None or "```" in answer:
        return False
    expected = str(expected).strip()
    words = _words(answer).split()
    if _NUMERIC.fullmatch(expected):
        want = _numbers(expected)[0]
        found = _numbers(answer)
        if len(set(found)) > MAX_EXTRA_NUMBERS + 1 or len(words) > MAX_EXTRA_WORDS + 1:
            return False
        return any(math.isclose(n, want, rel_tol=0, abs_tol=1e-9) for n in found)
    needle = _words(expected)
    if not needle or len(words) > len(needle.split()) + MAX_EXTRA_WORDS:
        return False
    return f" {needle} " in f" {' '.join(words)} "


def _cell(value: Any, width: int) -> str:
    text = "-" if value is None else str(value)
    text = " ".join(text.split())
    return text if len(text) <= width else text[: width - 1] + "…"


def _correct(value: bool | None) -> str:
    return "-" if value is None else "yes" if value else "no"


def format_table(result: ComparisonResult) -> str:
    """A plain-text table of one comparison: answer, correctness, time, tokens, calls, iterations."""
    seen = (
        f"the plain call saw the first {result.shown_chars:,} (truncated)"
        if result.truncated
        else "the plain call saw all of it"
    )
    lines = [
        f"question: {_cell(result.query, 100)}",
        f"context:  {result.context_chars:,} characters; {seen}",
    ]
    if result.expected is not None:
        lines.append(f"expected: {_cell(result.expected, 100)}")
    header = f"{'method':<7} {'answer':<32} {'correct':<8} {'seconds':>8} {'tokens':>9} {'calls':>6} {'iterations':>10}"
    lines += ["", header, "-" * len(header)]
    for a in (result.plain, result.rlm):
        answer = a.answer if a.answer is not None else f"({a.error or 'no answer'})"
        lines.append(
            f"{a.method:<7} {_cell(answer, 32):<32} {_correct(a.correct):<8} {a.seconds:>8.1f} "
            f"{a.tokens:>9,} {a.calls:>6} {a.iterations:>10}"
        )
    return "\n".join(lines)


def format_summary(results: Sequence[ComparisonResult]) -> str:
    """One row per comparison (plain and RLM answers side by side), then each method's accuracy."""
    header = f"{'#':<3} {'expected':<14} {'plain answer':<22} {'ok':<4} {'rlm answer':<22} {'ok':<4} {'plain s':>8} {'rlm s':>8}"
    lines = [header, "-" * len(header)]
    for i, r in enumerate(results, 1):
        lines.append(
            f"{i:<3} {_cell(r.expected, 14):<14} {_cell(r.plain.answer or r.plain.error, 22):<22} {_correct(r.plain.correct):<4} "
            f"{_cell(r.rlm.answer or r.rlm.error, 22):<22} {_correct(r.rlm.correct):<4} {r.plain.seconds:>8.1f} {r.rlm.seconds:>8.1f}"
        )
    judged = [r for r in results if r.expected is not None]
    if judged:
        plain_ok = sum(bool(r.plain.correct) for r in judged)
        rlm_ok = sum(bool(r.rlm.correct) for r in judged)
        lines += ["", f"accuracy: plain {plain_ok}/{len(judged)}, rlm {rlm_ok}/{len(judged)}"]
    return "\n".join(lines)
