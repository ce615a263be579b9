"""Judgement golds (judge, oolong) recomputed from the context: each text's label is read off the written item
pools by matching, not taken from the generator."""

from __future__ import annotations

import re
from collections import Counter
from typing import Any

import pytest

from rlm_graph.bench import families as F
from rlm_graph.bench.families.judge_items import FORBIDDEN, ITEMS
from rlm_graph.bench.families.spec import TaskSpec
from rlm_graph.bench.tasks import TEMPLATES


def _pattern(template: str) -> re.Pattern[str]:
    return re.compile(re.sub(r"\\\{\w+\\\}", "(.+?)", re.escape(template)))


ITEM_RE = {ds: {lab: [_pattern(t) for t in ts] for lab, ts in labels.items()} for ds, labels in ITEMS.items()}
OOLONG_RE = {ds: {lab: [_pattern(t) for t in ts] for lab, ts in labels.items()} for ds, labels in TEMPLATES.items()}


def label_of(patterns: dict[str, list[re.Pattern[str]]], text: str) -> str:
    hits = {lab for lab, ps in patterns.items() if any(p.fullmatch(text) for p in ps)}
    assert len(hits) == 1, (text, hits)
    return hits.pop()


def judge_items(t: Any) -> list[tuple[int | None, str]]:
    """(id, text) of every item, whatever the shape."""
    c = t.context
    if isinstance(c, dict):
        return [(int(re.search(r"\d+$", k).group()), v) for k, v in c.items()]
    if isinstance(c, list):
        return [(r["id"], r["text"]) if isinstance(r, dict) else (None, r) for r in c]
    out = []
    for line in c.split("\n"):
        m = re.fullmatch(r"(?:#|\[|\w+ )(\d+)(?:\] | \| |: )(.*)", line)
        assert m, line
        out.append((int(m.group(1)), m.group(2)))
    return out


JUDGE = [TaskSpec("judge", g, sh, size, seed) for g in F.FAMILIES["judge"].generators for sh in F.FAMILIES["judge"].shapes
         for size, seed in ((900, 41), (2_000, 42), (3_200, 43), (2_500, 44))]


@pytest.mark.parametrize("spec", JUDGE, ids=lambda s: s.id)
def test_judge_gold(spec: TaskSpec) -> None:
    t = F.make_task(spec)
    items = judge_items(t)
    assert 12 <= len(items) <= 40 and len({x for _, x in items}) == len(items)
    labels = [(i, label_of(ITEM_RE[spec.generator], x)) for i, x in items]
    for _, text in items:
        assert not any(w in text.lower() for w in FORBIDDEN[spec.generator]), text
    counts = Counter(lab for _, lab in labels)
    assert len(counts) == 2 and min(counts.values()) >= 3
    asked = t.metadata["label"]
    if t.scorer == "items_f1":
        assert sorted(t.gold) == sorted(i for i, lab in labels if lab == asked)
        assert "ids" in t.query.lower() or "which" in t.query.lower()
    else:
        assert t.gold == counts[asked] and t.query.lower().startswith("how many")


LINE = [re.compile(r"Date: \w{3} (\d\d), (\d{4}) \|\| User: (\d{5}) \|\| Instance: (.+)"),
        re.compile(r"(\d{4})-(\d\d)-\d\d \| user (\d{5}) \| (.+)"), re.compile(r"\[(\d{4})-(\d\d)-\d\d\] <(\d{5})> (.+)")]
MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]


def oolong_rows(t: Any) -> list[tuple[str, int, str]]:
    """(YYYY-MM, user, text) of every line."""
    c = t.context
    if isinstance(c, list) and c and isinstance(c[0], dict):
        return [(r["date"][:7], r["user"], r["text"]) for r in c]
    out = []
    for line in c.split("\n") if isinstance(c, str) else c:
        if line.startswith("Date: "):
            m = LINE[0].fullmatch(line)
            assert m
            out.append((f"{m.group(2)}-{MONTHS.index(line[6:9]) + 1:02d}", int(m.group(3)), m.group(4)))
            continue
        m = LINE[1].fullmatch(line) or LINE[2].fullmatch(line)
        assert m, line
        out.append((f"{m.group(1)}-{m.group(2)}", int(m.group(3)), m.group(4)))
    return out


OOLONG = [TaskSpec("oolong", g, sh, size, seed) for g in F.FAMILIES["oolong"].generators for sh in F.FAMILIES["oolong"].shapes
          for size, seed in ((3_000, 51), (5_000, 52), (30_000, 53))]


@pytest.mark.parametrize("spec", OOLONG, ids=lambda s: s.id)
def test_oolong_gold(spec: TaskSpec) -> None:
    t = F.make_task(spec)
    dataset = "reviews" if "product review" in t.query else "questions"
    rows = [(ym, u, label_of(OOLONG_RE[dataset], x)) for ym, u, x in oolong_rows(t)]
    user = re.search(r"user (\d{5})", t.query)
    month = re.search(r"(\d{4})-(\d\d)\b|(January|February|March|April|May|June|July|August|September|October|November|December) (\d{4})", t.query)
    scope = rows
    if user:
        scope = [r for r in rows if r[1] == int(user.group(1))]
    elif month:
        ym = f"{month.group(1)}-{month.group(2)}" if month.group(1) else \
            f"{month.group(4)}-{['January', 'February', 'March', 'April', 'May', 'June', 'July', 'August', 'September', 'October', 'November', 'December'].index(month.group(3)) + 1:02d}"
        scope = [r for r in rows if r[0] == ym]
    assert 1 <= len(scope) <= 60  # at most ~60 texts need a judgement
    counts = Counter(lab for *_, lab in scope)
    if t.scorer == "exact":
        (top, n1), *rest = counts.most_common()
        assert t.gold == top and (not rest or n1 > rest[0][1])
    else:
        label = re.search(r"label (?:is )?'(\w+)'", t.query).group(1)
        assert t.gold == counts[label]
    if spec.generator in ("user_count", "date_count") and spec.size >= 30_000:
        assert len(scope) < len(rows) / 3  # the metadata filter leaves few lines to judge
