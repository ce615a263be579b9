"""Needle and multi-hop golds recomputed from the generated context alone, with distractors checked unambiguous.

The parsers here read the text the way a careful human would (a key matches whatever its case or hyphens);
they never call the generators' own answer code.
"""

from __future__ import annotations

import re
from typing import Any

import pytest

from rlm_graph.bench import families as F
from rlm_graph.bench.families.spec import TaskSpec

VALUE = {"code": r"(?<![\w-])\d{5}(?![\w-])", "wifi": r"\b[a-z]+\d{2}\b", "gate": r"\b[A-H]\d{2}\b",
         "room": r"(?<![\w-])\d{4}(?![\w-])", "serial": r"\bSN-\d{6}\b"}
LOG_PREFIX = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d [A-Z]+ \w+: ", re.M)


def norm(text: str) -> str:
    """Lower case, hyphens as spaces, no 'Dr.', single spaces."""
    t = re.sub(r"\bdr\.?(?=\s)", " ", text.lower())
    return " ".join(re.sub(r"[-\s]+", " ", t).split())


def texts(context: Any) -> list[str]:
    """Every string of a context (record fields too)."""
    if isinstance(context, str):
        return [context]
    if isinstance(context, dict):
        return [s for v in context.values() for s in texts(v)]
    if isinstance(context, list):
        return [s for v in context for s in texts(v)]
    return []


def sentences(context: Any) -> list[str]:
    out = []
    for t in texts(context):
        t = " ".join(LOG_PREFIX.sub("", t).split())  # a wrapped sentence is one sentence again
        out += re.split(r"(?<=[.!?])\s+(?=[A-Z])(?<!Dr\. )", t)
    return out


NEEDLES = [TaskSpec("needle", g, sh, size, seed) for g in F.FAMILIES["needle"].generators for sh in F.FAMILIES["needle"].shapes
           for size, seed in ((9_000, 1), (30_000, 2), (60_000, 3))]


@pytest.mark.parametrize("spec", NEEDLES, ids=lambda s: s.id)
def test_needle_gold_is_the_one_value_stated_for_the_asked_key(spec: TaskSpec) -> None:
    t = F.make_task(spec)
    key = norm(t.metadata["key"])
    assert key in norm(t.query)
    with_value = [(s, re.findall(VALUE[spec.generator], s)) for s in sentences(t.context)]
    with_value = [(s, v) for s, v in with_value if v]
    about_key = [(s, v) for s, v in with_value if re.search(rf"(?<!\w){re.escape(key)}(?!\w)", norm(s))]
    assert len(about_key) == 1, about_key  # exactly one fact about the asked key
    assert about_key[0][1] == [t.gold]
    others = [v[0] for s, v in with_value if (s, v) not in about_key]
    assert len(others) >= 4 and t.gold not in others  # same-kind distractors, none with the gold value
    literal = re.search(r"(?:Dr\.? )?" + re.escape(t.metadata["key"]).replace(r"\ ", r"[\s-]+"), about_key[0][0], re.I)
    assert literal and literal.group() not in t.query  # the question writes the key differently
    mentions = [s for s in sentences(t.context) if key in norm(s)]
    assert len(mentions) >= 2  # the key also appears without its value


def test_needle_answer_positions_spread_over_the_context() -> None:
    depths = [F.make_task(TaskSpec("needle", "code", "line", 20_000, seed)) for seed in range(12)]
    where = [t.context.index(t.gold) / len(t.context) for t in depths]
    assert min(where) < 0.3 and max(where) > 0.7
    for t, w in zip(depths, where):
        assert abs(w - t.metadata["depth"]) < 0.05


HOP1 = re.compile(r"(?:^|(?<=\. ))([A-Z][a-z]+(?: [A-Z]\.)? [A-Z][a-z]+)(?: lives in| moved to| has lived in|'s home is in"
                  r"| works on the| is a member of the| joined the) ([A-Z][a-z]+)")
HOP2 = re.compile(r"(?:The city of |The )?([A-Z][a-z]+)(?: team)?(?: is a city in| lies in| is located in|, in| is managed by) "
                  r"([A-Z][a-z]+(?: [A-Z]\.)?(?: [A-Z][a-z]+)?)")
HOP2_REV = re.compile(r"([A-Z][a-z]+(?: [A-Z]\.)? [A-Z][a-z]+)(?: manages the| is the manager of the) ([A-Z][a-z]+) team")


def hops(t: Any) -> tuple[dict[str, list[str]], dict[str, list[str]]]:
    """(name -> places, place -> answers) read from the context."""
    one: dict[str, list[str]] = {}
    two: dict[str, list[str]] = {}
    c = t.context
    if isinstance(c, dict):
        (people, places) = c.values()
        for name, row in people.items():
            one.setdefault(name, []).append(row.get("city") or row.get("team"))
        for place, row in places.items():
            two.setdefault(place, []).append(row.get("country") or row.get("manager"))
    elif isinstance(c, list) and c and isinstance(c[0], dict):
        for r in c:
            if r["type"] in ("person", "employee"):
                one.setdefault(r["name"], []).append(r.get("city") or r.get("team"))
            else:
                two.setdefault(r["name"], []).append(r.get("country") or r.get("manager"))
    else:
        for s in sentences(c):
            for name, place in HOP1.findall(s):
                one.setdefault(name, []).append(place)
            for place, answer in HOP2.findall(s):
                two.setdefault(place, []).append(answer)
            for answer, place in HOP2_REV.findall(s):
                two.setdefault(place, []).append(answer)
    return one, two


MULTIHOP = [TaskSpec("multihop", g, sh, size, seed) for g in F.FAMILIES["multihop"].generators
            for sh in F.FAMILIES["multihop"].shapes for size, seed in ((8_000, 4), (40_000, 5))]


@pytest.mark.parametrize("spec", MULTIHOP, ids=lambda s: s.id)
def test_multihop_gold_needs_both_hops(spec: TaskSpec) -> None:
    t = F.make_task(spec)
    one, two = hops(t)
    asked = [n for n in one if norm(n) in norm(t.query)]
    assert len(asked) == 1, asked  # the question names one person, and only one person has that name
    (place,) = one[asked[0]]
    (answer,) = two[place]
    assert answer == t.gold
    assert all(len(v) == 1 for v in two.values())  # every place has exactly one second-hop fact
    assert place not in t.query and norm(t.gold) not in norm(t.query)
    namesakes = [n for n in one if n != asked[0] and (n.split()[0] == asked[0].split()[0] or n.split()[-1] == asked[0].split()[-1])]
    assert sum(two[one[n][0]][0] != t.gold for n in namesakes) >= 2  # similar names that lead elsewhere
    neighbours = [n for n, p in one.items() if p == [place] and n != asked[0]]
    assert len(one) >= 20 and (neighbours or len(one) < 40)
