"""OOLONG-style: lines with metadata (date, user) and a short text whose label needs a judgement.

Generators: ``most_common`` (the most frequent label), ``label_count`` (how many have a label), both over
all lines when there are at most 60 and over one user's lines otherwise; ``user_count`` (a label's count
among one user's 8-40 lines), ``date_count`` (a label's count among one month's lines, at most about 60).
So at most ~60 lines need a judgement; the rest can be set aside by their metadata with code. Datasets (drawn
per task): trivia questions labelled by the kind of answer they ask for, or reviews labelled by sentiment (the
label words never occur in a text). Shapes: ``lines`` (one text), ``list`` (a list of line strings),
``records`` (``[{"date": "2023-04-02", "user": 48213, "text": ...}]``).
"""

from __future__ import annotations

import random
from collections import Counter
from datetime import date, timedelta
from typing import Any

from rlm_graph.bench.families.prose import MONTHS
from rlm_graph.bench.families.spec import Build, Built, Family, ask
from rlm_graph.bench.tasks import _DATASET_INFO, TEMPLATES, Context, _instance

MAX_JUDGED = 60
_STYLES = ["Date: {mon} {d:02d}, {y} || User: {u} || Instance: {t}", "{iso} | user {u} | {t}", "[{iso}] <{u}> {t}"]


def _fmt(style: str, day: date, user: int, text: str) -> str:
    return style.format(mon=MONTHS[day.month - 1][:3], d=day.day, y=day.year, iso=day.isoformat(), u=user, t=text)


def _oolong(question: str, rng: random.Random, shape: str, size: int) -> Built:
    dataset = rng.choice(list(TEMPLATES))
    labels = list(TEMPLATES[dataset])
    style = rng.choice(_STYLES)
    sample = [_instance(rng, dataset, rng.choice(labels)) for _ in range(40)]
    per_line = sum(map(len, sample)) / len(sample) + (len(_fmt(style, date(2022, 1, 1), 12345, "")) + 1 if shape == "lines"
                                                      else len(_fmt(style, date(2022, 1, 1), 12345, "")) + 4 if shape == "list"
                                                      else 52)
    n = max(12, round(size / per_line))
    scope = "all" if n <= MAX_JUDGED and question in ("most_common", "label_count") else "month" if question == "date_count" else "user"
    users = rng.sample(range(10_000, 100_000), max(4, n // 6))
    target_user = users[0]
    weights = [rng.uniform(1.0, 4.0) for _ in labels]
    days = max(120, n * 30 // 40) if scope == "month" else 1096
    start = date(2022, 1, 1)
    rows: list[tuple[date, int, str, str]] = []
    mine = rng.randint(8, min(40, max(8, n // 2))) if scope == "user" else 0
    for i in range(n):
        user = target_user if i < mine else rng.choice(users[1:])
        label = rng.choices(labels, weights)[0]
        rows.append((start + timedelta(days=rng.randrange(days)), user, label, _instance(rng, dataset, label)))
    rows.sort(key=lambda r: (r[0], rng.random()))
    if scope == "month":
        per_month = Counter((d.year, d.month) for d, *_ in rows)
        y, m = rng.choice([k for k, c in per_month.items() if 8 <= c <= MAX_JUDGED] or [per_month.most_common()[-1][0]])
        picked = [r for r in rows if (r[0].year, r[0].month) == (y, m)]
        where = rng.choice([f"the instances dated in {MONTHS[m - 1]} {y}", f"the lines from {y}-{m:02d}"])
        scope_meta: dict[str, Any] = {"month": f"{y}-{m:02d}"}
    elif scope == "user":
        picked = [r for r in rows if r[1] == target_user]
        where = rng.choice([f"the instances of user {target_user}", f"the lines written by user {target_user}"])
        scope_meta = {"user": target_user}
    else:
        picked = rows
        where = rng.choice(["all the instances", "the whole context"])
        scope_meta = {}
    counts = Counter(r[2] for r in picked)
    if question == "most_common":
        for _ in range(50):  # relabel one line of the runner-up until the top label is unique
            top = counts.most_common(2)
            if len(top) < 2 or top[0][1] > top[1][1]:
                break
            i = next(k for k, r in enumerate(rows) if r in picked and r[2] == top[1][0])
            old = rows[i]
            rows[i] = (old[0], old[1], top[0][0], _instance(rng, dataset, top[0][0]))
            picked = [rows[i] if r is old else r for r in picked]
            counts = Counter(r[2] for r in picked)
        gold: Any = counts.most_common(1)[0][0]
        q = rng.choice([f"Which label is the most common among {where}?", f"What is the most frequent label in {where}?"])
        scorer, form = "exact", "label"
    else:
        label = rng.choice([lab for lab in labels if counts[lab]] or labels)
        gold = counts[label]
        q = rng.choice([f"How many of {where} have the label '{label}'?", f"Count {where} whose label is '{label}'."])
        scorer, form = "count_exp", "number"
        scope_meta["label"] = label
    if shape == "records":
        context: Context = [{"date": d.isoformat(), "user": u, "text": t} for d, u, _, t in rows]
        layout = "Each record has a date, a user id and a text."
    else:
        lines = [_fmt(style, d, u, t) for d, u, _, t in rows]
        context = "\n".join(lines) if shape == "lines" else lines
        layout = "Each line holds a date, a user id and a text."
    info = _DATASET_INFO[dataset].replace("Every instance is", "Every text is").replace("Its label", "A text's label")
    preamble = f"{layout} {info} The labels are not written in the context: judge each text yourself. "
    return Built(context, preamble + ask(rng, q, form), gold, scorer,
                 {"dataset": dataset, "scope": scope, "judged": len(picked), "lines": len(rows), "choices": labels,
                  "style": None if shape == "records" else style, **scope_meta})


def _generator(question: str) -> Build:
    def build(rng: random.Random, shape: str, size: int) -> Built:
        return _oolong(question, rng, shape, size)
    build.__doc__ = f"OOLONG-style {question.replace('_', ' ')}."
    return build


FAMILY = Family("oolong", __doc__.split("\n")[0],
                {q: _generator(q) for q in ("most_common", "label_count", "user_count", "date_count")},
                ("lines", "list", "records"), 1_000, 512_000)
