"""Prose shapes: sentences (filler plus facts put at chosen depths) packed into one shape (stdlib only).

Shapes: ``line`` (one long line), ``lines`` (many lines: a log, paragraphs, or prose hard-wrapped at 72-90
columns, chosen by the seed), ``docs`` (a list of documents), ``dictdocs`` (a dict of lists of paragraphs,
``{"doc_017": [...]}``), ``records`` (a list of dicts with a free-text field). A fact put at depth 0.37 lands
where 37 % of the target size has been written. Sizes are counted as the context will be: characters of a
string, or of the JSON of a list or dict.
"""

from __future__ import annotations

import json
import random
from collections.abc import Callable, Sequence
from typing import Any

from rlm_graph.bench.families.prose import FIRST, LAST
from rlm_graph.bench.tasks import Context

PROSE_SHAPES = ("line", "lines", "docs", "dictdocs", "records")


class Stream:
    """Filler sentences, with the given facts put in when the packed size reaches their depth."""

    def __init__(self, rng: random.Random, pool: Sequence[str], size: int, facts: Sequence[tuple[float, str]]) -> None:
        self.rng, self.pool = rng, pool
        self.pending = sorted(((depth * size, text) for depth, text in facts), key=lambda p: p[0])

    def next(self, at: int) -> str:
        """The next sentence: a fact whose depth ``at`` (the packed size so far) has reached, else filler."""
        if self.pending and at >= self.pending[0][0]:
            return self.pending.pop(0)[1]
        return self.rng.choice(self.pool)

    def rest(self) -> list[str]:
        """Facts whose depth was not reached (depth close to 1): they go at the end."""
        out = [t for _, t in self.pending]
        self.pending = []
        return out


def _json_len(value: Any) -> int:
    return len(json.dumps(value))


def pack_line(s: Stream, size: int) -> str:
    """Sentences joined by spaces: one line."""
    parts: list[str] = []
    total = 0
    while total < size:
        parts.append(s.next(total))
        total += len(parts[-1]) + 1
    parts += s.rest()
    return " ".join(parts)


def _log_prefix(rng: random.Random) -> Callable[[int], str]:
    """A timestamp, a level and a component for line i of a log-like text."""
    comp = rng.sample(["ops", "notes", "desk", "relay", "archive", "intake", "memo"], 3)
    levels = ["INFO", "INFO", "INFO", "NOTE", "DEBUG"]

    def prefix(i: int) -> str:
        sec = 8 * 3600 + i * 7
        return (f"2024-{4 + sec // 86400 % 6:02d}-{1 + sec // 3600 % 28:02d} {sec // 3600 % 24:02d}:"
                f"{sec // 60 % 60:02d}:{sec % 60:02d} {levels[i % 5]} {comp[i % 3]}: ")
    return prefix


def pack_lines(s: Stream, size: int, rng: random.Random) -> tuple[str, str]:
    """(text, style) with style 'log', 'paragraphs' or 'wrapped'."""
    style = rng.choice(["log", "paragraphs", "wrapped"])
    out: list[str] = []
    total = 0
    if style == "log":
        prefix = _log_prefix(rng)
        while total < size:
            out.append(prefix(len(out)) + s.next(total))
            total += len(out[-1]) + 1
        out += [prefix(len(out) + i) + t for i, t in enumerate(s.rest())]
        return "\n".join(out), style
    width = rng.randint(72, 90)
    while total < size:
        text = _paragraph(s, total, rng, 2, 6)
        block = text if style == "paragraphs" else _wrap(text, width)
        out.append(block)
        total += len(block) + 2
    rest = s.rest()
    if rest:
        out.append(" ".join(rest) if style == "paragraphs" else _wrap(" ".join(rest), width))
    return "\n\n".join(out), style


def _wrap(text: str, width: int) -> str:
    """Greedy hard wrap at spaces (textwrap is several times slower on 10M characters)."""
    lines: list[str] = []
    cur: list[str] = []
    n = 0
    for word in text.split(" "):
        if cur and n + 1 + len(word) > width:
            lines.append(" ".join(cur))
            cur, n = [], 0
        n += len(word) + (1 if cur else 0)
        cur.append(word)
    if cur:
        lines.append(" ".join(cur))
    return "\n".join(lines)


def _paragraph(s: Stream, at: int, rng: random.Random, lo: int = 2, hi: int = 5) -> str:
    """``lo``-``hi`` sentences of the stream; ``at`` is the packed size where the paragraph starts."""
    para: list[str] = []
    for _ in range(rng.randint(lo, hi)):
        para.append(s.next(at + sum(len(x) + 1 for x in para)))
    return " ".join(para)


def pack_docs(s: Stream, size: int, rng: random.Random) -> list[str]:
    """Documents of paragraphs (blank lines between), about a twelfth of the size each (0.6-6K characters)."""
    docs: list[str] = []
    total = 2
    doc_chars = max(600, min(6000, size // 12))
    while total < size:
        paras: list[str] = []
        n = 0
        while n < doc_chars * rng.uniform(0.5, 1.5):
            paras.append(_paragraph(s, total + n, rng))
            n += len(paras[-1]) + 4  # "\n\n" is 4 characters in JSON
        docs.append("\n\n".join(paras))
        total += _json_len(docs[-1]) + 2
    rest = s.rest()
    if rest:
        docs.append(" ".join(rest))
    return docs


def pack_dictdocs(s: Stream, size: int, rng: random.Random) -> tuple[dict[str, list[str]], str]:
    """``{"doc_000": [paragraph, ...], ...}`` (the key prefix drawn per task); returns (dict, prefix)."""
    prefix = rng.choice(["doc", "page", "note", "section"])
    out: dict[str, list[str]] = {}
    total = 2
    doc_chars = max(500, min(5000, size // 12))
    while total < size:
        paras: list[str] = []
        n = 0
        while n < doc_chars * rng.uniform(0.5, 1.5):
            paras.append(_paragraph(s, total + n, rng))
            n += len(paras[-1]) + 4
        key = f"{prefix}_{len(out):03d}"
        out[key] = paras
        total += _json_len({key: paras})  # its braces stand for the ', ' between entries
    rest = s.rest()
    if rest:
        out[f"{prefix}_{len(out):03d}"] = [" ".join(rest)]
    return out, prefix


def pack_records(s: Stream, size: int, rng: random.Random) -> tuple[list[dict[str, Any]], str]:
    """Records with an id, an author, a date and 1-3 sentences in a text field named per task; returns (records, field)."""
    field = rng.choice(["text", "body", "note", "message"])
    out: list[dict[str, Any]] = []
    total = 2
    authors = [f"{f} {last[0]}." for f, last in zip(rng.sample(FIRST, 12), rng.sample(LAST, 12))]
    while total < size:
        rec = {"id": 1000 + len(out), "author": rng.choice(authors),
               "date": f"2024-{rng.randint(1, 12):02d}-{rng.randint(1, 28):02d}",
               field: _paragraph(s, total, rng, 1, 3)}
        out.append(rec)
        total += _json_len(rec) + 2
    rest = s.rest()
    if rest:
        out.append({"id": 1000 + len(out), "author": authors[0], "date": "2024-12-30", field: " ".join(rest)})
    return out, field


def pack(shape: str, s: Stream, size: int, rng: random.Random) -> tuple[Context, dict[str, Any]]:
    """The context in ``shape`` and what describes its layout (style, key prefix, text field)."""
    if shape == "line":
        return pack_line(s, size), {}
    if shape == "lines":
        text, style = pack_lines(s, size, rng)
        return text, {"style": style}
    if shape == "docs":
        return pack_docs(s, size, rng), {}
    if shape == "dictdocs":
        d, prefix = pack_dictdocs(s, size, rng)
        return d, {"key_prefix": prefix}
    if shape == "records":
        recs, field = pack_records(s, size, rng)
        return recs, {"text_field": field}
    raise ValueError(f"unknown prose shape {shape!r}")

