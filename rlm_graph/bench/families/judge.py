"""Per-item judgement: 12-40 short items, each needing a semantic judgement (best asked of ``llm_query``).

Generators are the item sets: ``reviews`` (an unhappy or a pleased customer), ``tickets`` (about money or
about something not working), ``headlines`` (sport or not). The question asks how many items have the label
(scored ``0.75 ** |error|``) or, when the items carry ids, which ones (F1 over the ids). No item contains the
words the question uses for its label (see ``judge_items.FORBIDDEN``). Shapes: ``list`` (a list of strings),
``records`` (``[{"id": 412, "text": ...}]``), ``lines`` (``#412 | text`` per line), ``dict`` (``{"r412": text}``).
``size`` is the context's size in characters; it sets the number of items (about one per 75 characters,
within 12-40), so contexts stay under 4K characters and a sub-call per item fits in the time budget.
"""

from __future__ import annotations

import random
from typing import Any

from rlm_graph.bench.families.judge_items import ITEMS
from rlm_graph.bench.families.spec import Build, Built, Family, ask
from rlm_graph.bench.tasks import SLOTS, Context

#: dataset -> label asked about -> (count question wordings, "which" question wordings)
QUESTIONS: dict[str, dict[str, tuple[list[str], list[str]]]] = {
    "reviews": {
        "negative": (["How many of the reviews are from unhappy customers?",
                      "How many reviews express dissatisfaction with the product?",
                      "How many reviewers were disappointed by what they bought?"],
                     ["Which reviews are from unhappy customers? Give their ids.",
                      "Which reviewers were disappointed with their purchase? List the review ids."]),
        "positive": (["How many reviews are from customers who liked the product?",
                      "How many reviewers were satisfied with their purchase?"],
                     ["Which reviews come from satisfied customers? Give their ids."]),
    },
    "tickets": {
        "money": (["How many tickets are about money (a charge, a refund, an invoice or a price)?",
                   "How many support tickets concern a payment or billing problem?"],
                  ["Which tickets are billing questions (charges, refunds, invoices, prices)? Give their ids."]),
        "technical": (["How many tickets report a technical problem (something in the product not working)?",
                       "How many support tickets are about a bug or a broken feature?"],
                      ["Which tickets report a technical problem? List their ids."]),
    },
    "headlines": {
        "sport": (["How many of the headlines are about sport?",
                   "How many headlines report on a sporting event or an athlete?"],
                  ["Which headlines are about sport? Give their ids."]),
        "other": (["How many of the headlines are not about sport?"],
                  ["Which headlines have nothing to do with sport? List their ids."]),
    },
}
_NOUN = {"reviews": "review", "tickets": "ticket", "headlines": "headline"}


def _items(rng: random.Random, dataset: str, n: int) -> list[tuple[str, str]]:
    """``n`` distinct (label, text) items with at least 3 of each label, shuffled."""
    labels = list(ITEMS[dataset])
    room = [len(ITEMS[dataset][lab]) if "{p}" not in ITEMS[dataset][lab][0] else n for lab in labels]
    k = rng.randint(max(3, n - room[1]), min(n - 3, room[0]))
    counts = {labels[0]: k, labels[1]: n - k}
    out = []
    for label, c in counts.items():
        texts = rng.sample(ITEMS[dataset][label], min(c, len(ITEMS[dataset][label])))
        while len(texts) < c:  # more than the written items: reuse one with another product
            texts.append(rng.choice(ITEMS[dataset][label]))
        out += [(label, t.replace("{p}", rng.choice(SLOTS["product"]))) for t in texts]
    rng.shuffle(out)
    seen: set[str] = set()
    return [(lab, t) for lab, t in out if not (t in seen or seen.add(t))]


def _render(shape: str, dataset: str, ids: list[int], texts: list[str], rng: random.Random) -> tuple[Context, dict[str, Any]]:
    if shape == "list":
        return texts, {}
    if shape == "records":
        return [{"id": i, "text": t} for i, t in zip(ids, texts)], {}
    if shape == "lines":
        fmt = rng.choice(["#{i} | {t}", "[{i}] {t}", "{noun} {i}: {t}"])
        return "\n".join(fmt.format(i=i, t=t, noun=_NOUN[dataset].title()) for i, t in zip(ids, texts)), {"line_format": fmt}
    prefix = rng.choice([_NOUN[dataset][0], _NOUN[dataset] + "_", ""])
    return {f"{prefix}{i}": t for i, t in zip(ids, texts)}, {"key_prefix": prefix}


def _judge(dataset: str, rng: random.Random, shape: str, size: int) -> Built:
    texts = [t.replace("{p}", "coffee grinder") for lab in ITEMS[dataset].values() for t in lab]
    per_item = sum(map(len, texts)) / len(texts) + {"list": 4, "records": 24, "lines": 9, "dict": 12}[shape]
    reusable = any("{p}" in t for lab in ITEMS[dataset].values() for t in lab)
    n = max(12, min(40 if reusable else sum(len(v) for v in ITEMS[dataset].values()) - 2, round(size / per_item)))
    items = _items(rng, dataset, n)
    ids = sorted(rng.sample(range(100, 1000), len(items)))
    texts = [t for _, t in items]
    context, extra = _render(shape, dataset, ids, texts, rng)
    asked = rng.choice(list(QUESTIONS[dataset]))
    count_q, which_q = QUESTIONS[dataset][asked]
    meta: dict[str, Any] = {"dataset": dataset, "label": asked, "n_items": len(items), **extra}
    if shape != "list" and rng.random() < 0.5:
        gold: Any = [i for i, (lab, _) in zip(ids, items) if lab == asked]
        query = ask(rng, rng.choice(which_q), "list")
        meta.update(answer="ids", items="int")
        scorer = "items_f1"
    else:
        gold = sum(1 for lab, _ in items if lab == asked)
        query = ask(rng, rng.choice(count_q), "number")
        meta["answer"] = "count"
        scorer = "count_exp"
    return Built(context, query, gold, scorer, meta)


def _generator(dataset: str) -> Build:
    def build(rng: random.Random, shape: str, size: int) -> Built:
        return _judge(dataset, rng, shape, size)
    build.__doc__ = f"Judge each of 12-40 {dataset}; a count or the ids of one label."
    return build


FAMILY = Family("judge", __doc__.split("\n")[0], {d: _generator(d) for d in ITEMS}, ("list", "records", "lines", "dict"),
                800, 20_000)
