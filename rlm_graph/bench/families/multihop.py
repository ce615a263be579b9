"""Multi-hop facts: the answer needs two facts found apart (person -> city -> country, employee -> team -> manager).

Generators: ``person_country`` and ``employee_manager``. Shapes: ``text`` (facts as sentences among filler, one
text of many lines), ``docs`` (a list of documents), ``dict`` (two tables as dicts of dicts), ``records`` (one
list of mixed records with a type field). Distractors: other people in the same city or team, people whose
name shares the first or the last name (or, in large contexts, differs only by the middle initial), and the
target named in sentences that carry no fact. The question writes the name in another case.
"""

from __future__ import annotations

import random
from typing import Any

from rlm_graph.bench.families.packing import Stream, pack
from rlm_graph.bench.families.prose import COUNTRIES, FIRST, LAST, PROPER, cities, filler_pool
from rlm_graph.bench.families.spec import Build, Built, Family, ask
from rlm_graph.bench.tasks import Context

#: relation -> (first-hop sentences, second-hop sentences, questions, names of the dict tables and fields)
RELATIONS: dict[str, dict[str, Any]] = {
    "person_country": {
        "hop1": ["{p} lives in {x}.", "{p} moved to {x} a few years ago and still lives there.", "{p} has lived in {x} since childhood.",
                 "{p}'s home is in {x}."],
        "hop2": ["{x} is a city in {y}.", "The city of {x} lies in {y}.", "{x} is located in {y}.", "{x}, in {y}, is known for its markets."],
        "ask": ["In which country does {q} live?", "Which country is {q}'s home city in?", "What country does {q} live in?",
                "{q} lives in a city. In which country is that city?"],
        "tables": ("people", "cities", "city", "country"),
        "aside": ["{p} enjoys long walks by the sea.", "{p} once won a baking contest.", "{p} collects old maps."],
    },
    "employee_manager": {
        "hop1": ["{p} works on the {x} team.", "{p} is a member of the {x} team.", "{p} joined the {x} team last year."],
        "hop2": ["The {x} team is managed by {y}.", "{y} manages the {x} team.", "{y} is the manager of the {x} team."],
        "ask": ["Who manages the team that {q} works on?", "Who is the manager of {q}'s team?",
                "Name the manager of the team {q} belongs to."],
        "tables": ("employees", "teams", "team", "manager"),
        "aside": ["{p} gave a talk at the spring offsite.", "{p} brings cake on Fridays.", "{p} is learning to sail."],
    },
}


def _people(rng: random.Random, n: int, initials: bool) -> list[str]:
    """``n`` distinct names; with ``initials`` they carry a middle initial ("Maya K. Novak")."""
    out: set[str] = set()
    while len(out) < n:
        mid = f" {rng.choice('ABCDEFGHJKLMNPRSTVW')}." if initials else ""
        out.add(f"{rng.choice(FIRST)}{mid} {rng.choice(LAST)}")
    return sorted(out)


def _similar(rng: random.Random, name: str, taken: set[str], initials: bool) -> list[str]:
    """Names sharing the first or the last name with ``name`` (or only differing by the initial)."""
    parts = name.split()
    first, last = parts[0], parts[-1]
    out: list[str] = []
    for _ in range(40):
        if len(out) >= 3:
            break
        mid = f" {rng.choice('ABCDEFGHJKLMNPRSTVW')}." if initials else ""
        cand = rng.choice([f"{first}{mid} {rng.choice(LAST)}", f"{rng.choice(FIRST)}{mid} {last}"])
        if initials and rng.random() < 0.5:
            cand = f"{first}{mid} {last}"
        if cand not in taken:
            taken.add(cand)
            out.append(cand)
    return out


def _world(rng: random.Random, relation: str, n_people: int) -> dict[str, Any]:
    """Who is where: hop-1 map (person -> place), hop-2 map (place -> answer), the target and its distractors."""
    initials = n_people > 1200
    people = _people(rng, n_people, initials)
    if relation == "person_country":
        places = cities(rng, max(10, min(400, n_people // 15)))
        answers = rng.sample(COUNTRIES, min(len(COUNTRIES), max(5, len(places) // 3)))
        hop2 = {c: rng.choice(answers) for c in places}
    else:
        places = rng.sample(PROPER, min(len(PROPER), max(8, n_people // 40)))
        managers = _people(rng, len(places) + 5, initials)
        managers = [m for m in managers if m not in set(people)][: len(places)]
        hop2 = dict(zip(places, managers))
        places = list(hop2)
    target = rng.choice(people)
    hop1 = {p: rng.choice(places) for p in people}
    similar = _similar(rng, target, set(people) | set(hop2.values()), initials)
    for s in similar:  # similar names live elsewhere, where the answer differs
        other = [x for x in places if hop2[x] != hop2[hop1[target]]]
        hop1[s] = rng.choice(other or places)
    mates = [p for p in people if hop1[p] == hop1[target] and p != target]
    return {"hop1": hop1, "hop2": hop2, "target": target, "similar": similar, "mates": len(mates), "initials": initials}


def _prose(rng: random.Random, rel: dict[str, Any], w: dict[str, Any], shape: str, size: int) -> tuple[Context, dict[str, Any]]:
    facts = [(rng.uniform(0, 1), rng.choice(rel["hop1"]).format(p=p, x=x)) for p, x in w["hop1"].items()]
    facts += [(rng.uniform(0, 1), rng.choice(rel["hop2"]).format(x=x, y=y)) for x, y in w["hop2"].items()]
    facts += [(rng.uniform(0, 1), rng.choice(rel["aside"]).format(p=w["target"])) for _ in range(rng.randint(1, 2))]
    return pack("lines" if shape == "text" else "docs", Stream(rng, filler_pool(rng), size, facts), size, rng)


def _tables(rng: random.Random, rel: dict[str, Any], w: dict[str, Any], shape: str) -> Context:
    first, second, key, value = rel["tables"]
    people = list(w["hop1"].items())
    rng.shuffle(people)
    places = list(w["hop2"].items())
    rng.shuffle(places)
    if shape == "dict":
        extra = "age" if key == "city" else "role"
        return {first: {p: {key: x, extra: rng.randint(21, 80) if extra == "age" else rng.choice(["analyst", "engineer", "designer"])}
                        for p, x in people},
                second: {x: {value: y, "founded" if key == "city" else "floor": rng.randint(1, 40)} for x, y in places}}
    recs: list[dict[str, Any]] = [{"type": first[:-1] if first != "people" else "person", "name": p, key: x} for p, x in people]
    recs += [{"type": key, "name": x, value: y} for x, y in places]
    rng.shuffle(recs)
    return recs


def _multihop(relation: str, rng: random.Random, shape: str, size: int) -> Built:
    rel = RELATIONS[relation]
    w = _world(rng, relation, max(30, size // {"text": 110, "docs": 110, "dict": 50, "records": 64}[shape]))
    if shape in ("text", "docs"):
        context, layout = _prose(rng, rel, w, shape, size)
    else:
        context, layout = _tables(rng, rel, w, shape), {}
    target = w["target"]
    q_name = rng.choice([target, target.upper(), target.lower()])
    gold = w["hop2"][w["hop1"][target]]
    choices = sorted(set(w["hop2"].values()))
    return Built(context, ask(rng, rng.choice(rel["ask"]).format(q=q_name), "name"), gold, "exact",
                 {"person": target, "via": w["hop1"][target], "similar_names": w["similar"], "same_place": w["mates"],
                  "choices": choices, **layout})


def _generator(relation: str) -> Build:
    def build(rng: random.Random, shape: str, size: int) -> Built:
        return _multihop(relation, rng, shape, size)
    build.__doc__ = f"Two hops: {relation.replace('_', ' -> ')}."
    return build


FAMILY = Family("multihop", __doc__.split("\n")[0], {r: _generator(r) for r in RELATIONS}, ("text", "docs", "dict", "records"),
                4_000, 2_000_000)
