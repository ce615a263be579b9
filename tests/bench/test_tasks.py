"""Tests for rlm_graph/bench/tasks.py: determinism, sizes, gold answers recomputed from the context, scorers, suites."""

from __future__ import annotations

import csv
import io
import json
import re
from collections import Counter
from itertools import combinations
from pathlib import Path
from typing import Any, Callable

import pytest

from rlm_graph.bench import tasks as B

SIZED: dict[str, Callable[[int, int, int], list[B.Task]]] = {
    "sniah": B.make_sniah, "oolong": B.make_oolong, "oolong_pairs": B.make_oolong_pairs,
    "structured": B.make_structured,
}
LINE = re.compile(r"Date: (?:Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) \d\d, \d{4} "
                  r"\|\| User: (\d{5}) \|\| Instance: (.+)")


def _template_regexes() -> dict[str, dict[str, list[re.Pattern[str]]]]:
    """Each template as a full-match regex, its {slots} as lazy wildcards."""
    return {ds: {lab: [re.compile(re.sub(r"\\\{\w+\\\}", "(.+?)", re.escape(t))) for t in ts]
                 for lab, ts in labels.items()} for ds, labels in B.TEMPLATES.items()}


REGEXES = _template_regexes()


def label_of(dataset: str, text: str) -> str:
    """The one label whose templates match ``text`` (fails if none or several do)."""
    hits = {lab for lab, pats in REGEXES[dataset].items() if any(p.fullmatch(text) for p in pats)}
    assert len(hits) == 1, (text, hits)
    return hits.pop()


def parse_instances(task: B.Task) -> list[tuple[int, str]]:
    """(user, label) for every line, labels judged from the templates, not from the generator."""
    out = []
    for line in task.context.split("\n"):
        m = LINE.fullmatch(line)
        assert m, line
        out.append((int(m.group(1)), label_of(task.metadata["dataset"], m.group(2))))
    return out


# ------------------------------------------------------------------------------------------ determinism, sizes

@pytest.mark.parametrize("kind", [*SIZED, "smoke"])
def test_deterministic_per_seed(kind: str) -> None:
    make = SIZED.get(kind, B.make_smoke)
    a, b, c = make(5, 12_000, 1), make(5, 12_000, 1), make(5, 12_000, 2)
    assert a == b
    assert [t.context for t in a] != [t.context for t in c]
    assert make(2, 12_000, 1) == a[:2]  # task i does not depend on n_tasks


@pytest.mark.parametrize("kind", list(SIZED))
@pytest.mark.parametrize("size", [8_000, 50_000])
def test_sizes_within_five_percent(kind: str, size: int) -> None:
    for t in SIZED[kind](8, size, 0):
        assert t.size_chars == B.context_size(t.context)
        assert abs(t.size_chars - size) <= 0.05 * size, (t.id, t.size_chars)
        assert t.metadata["requested_size"] == size


def test_ids_unique_and_kinds() -> None:
    tasks = B.load_suite("all", sizes=[8_000], n=4)
    assert len({t.id for t in tasks}) == len(tasks)
    assert {t.kind for t in tasks} == {"smoke", "sniah", "oolong", "oolong_pairs", "structured"}


# ------------------------------------------------------------------------------------------ gold answers

NEEDLE = re.compile(r"One of the special magic numbers for (\S+) is: (\d{7})\.")


def test_sniah_gold() -> None:
    for t in B.make_sniah(6, 20_000, 3):
        found = NEEDLE.findall(t.context)
        assert len(found) == 1
        key, number = found[0]
        assert t.gold == number and key in t.query and t.metadata["key"] == key
        assert not re.search(r"\d", NEEDLE.sub("", t.context))  # no other digits anywhere


def test_sniah_1m_single_needle() -> None:
    t = B.make_sniah(1, 1_000_000, 7)[0]
    assert abs(len(t.context) - 1_000_000) <= 50_000
    assert t.context.count("special magic number") == 1
    assert t.context.count(t.gold) == 1
    depth = t.context.index("One of the special") / len(t.context)
    assert abs(depth - t.metadata["depth"]) < 0.01


def test_instances_never_name_their_label() -> None:
    for ds, labels in B.TEMPLATES.items():
        for t in B.make_oolong(2, 30_000, 0) + B.make_oolong_pairs(2, 30_000, 0):
            if t.metadata["dataset"] != ds:
                continue
            for line in t.context.split("\n"):
                text = line.split("Instance: ", 1)[1].lower()
                assert not any(re.search(rf"\b{lab}\b", text) for lab in labels), text


def test_oolong_gold() -> None:
    tasks = B.make_oolong(12, 10_000, 5)
    assert {(t.metadata["dataset"], t.metadata["question"]) for t in tasks} == {
        (d, q) for d in B.TEMPLATES for q in ("most_frequent", "count", "relative")}
    for t in tasks:
        counts = Counter(lab for _, lab in parse_instances(t))
        q = t.metadata["question"]
        if q == "most_frequent":
            (best, n1), (_, n2) = counts.most_common(2)
            assert t.gold == best and n1 > n2
        elif q == "count":
            assert t.gold == counts[t.metadata["labels"][0]]
        else:
            a, b = (counts[x] for x in t.metadata["labels"])
            assert t.gold == {1: "more", -1: "less", 0: "same"}[(a > b) - (a < b)]
            assert all(f"'{x}'" in t.query for x in t.metadata["labels"])


def test_oolong_pairs_gold() -> None:
    tasks = B.make_oolong_pairs(8, 15_000, 2)
    assert {t.metadata["condition"] for t in tasks} == {"both", "one_each"}
    for t in tasks:
        has: dict[str, set[int]] = {}
        for user, lab in parse_instances(t):
            has.setdefault(lab, set()).add(user)
        labs = t.metadata["labels"]
        if t.metadata["condition"] == "both":
            want = set(combinations(sorted(has[labs[0]]), 2))
        else:
            want = {tuple(sorted((a, b))) for a in has[labs[0]] for b in has[labs[1]] if a != b}
        assert want and set(t.gold) == want and len(t.gold) == len(want)
        assert t.gold == sorted(t.gold) and all(a < b for a, b in t.gold)


def _orders(t: B.Task) -> list[dict[str, Any]]:
    if t.metadata["format"] == "csv":
        return [{**r, "amount": float(r["amount"])} for r in csv.DictReader(io.StringIO(t.context))]
    return t.context


def _tables(t: B.Task) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    if t.metadata["format"] == "json":
        return t.context["people"], t.context["cities"]
    people, cities = t.context.split("\n\n# cities\n")
    return (list(csv.DictReader(io.StringIO(people.removeprefix("# people\n")))),
            list(csv.DictReader(io.StringIO(cities))))


def test_structured_gold() -> None:
    tasks = B.make_structured(8, 20_000, 4)
    assert {(t.metadata["question"], t.metadata["format"]) for t in tasks} == {
        (q, f) for q in ("sum_customer_month", "top_customer", "count_two_conditions", "lookup") for f in ("csv", "json")}
    for t in tasks:
        m, q = t.metadata, t.metadata["question"]
        if q == "lookup":
            people, cities = _tables(t)
            person = [p for p in people if p["name"] == m["person"]]
            assert len(person) == 1 and m["person"] in t.query
            country = [c["country"] for c in cities if c["city"] == person[0]["city"]]
            assert country == [t.gold] and t.gold in m["choices"]
            continue
        rows = _orders(t)
        if q == "sum_customer_month":
            total = sum(r["amount"] for r in rows if r["customer"] == m["customer"] and r["date"][5:7] == f"{m['month']:02d}")
            assert t.gold == pytest.approx(total, abs=0.005) and total > 0
        elif q == "top_customer":
            totals: Counter[str] = Counter()
            for r in rows:
                totals[r["customer"]] += r["amount"]
            assert t.gold == max(totals, key=totals.__getitem__)
        else:
            assert t.gold == sum(r["region"] == m["region"] and r["category"] == m["category"] for r in rows) > 0


def test_smoke_gold() -> None:
    tasks = B.load_suite("smoke", seed=9)
    by = {t.metadata["question"]: t for t in tasks}
    assert len(tasks) == 5 and set(by) == set(B.SMOKE_KINDS)
    assert by["sum"].gold == sum(by["sum"].context)
    assert re.findall(r"The secret number is (\d+)\.", by["hidden_number"].context) == [by["hidden_number"].gold]
    ages = sorted(by["oldest"].context, key=lambda p: p["age"])
    assert by["oldest"].gold == ages[-1]["name"] and ages[-1]["age"] > ages[-2]["age"]
    assert by["count_positive"].gold == sum(label_of("reviews", r) == "positive" for r in by["count_positive"].context)
    assert NEEDLE.findall(by["needle"].context)[0][1] == by["needle"].gold
    assert abs(by["needle"].size_chars - 20_000) <= 1_000


# ------------------------------------------------------------------------------------------ scorers

def test_every_gold_scores_one() -> None:
    for t in B.load_suite("all", sizes=[8_000], n=4):
        assert B.score(t, str(t.gold)) == 1.0, t.id
        assert B.score(t, f"The answer is {t.gold}.") == 1.0, t.id


def _task(scorer: str, gold: Any, **meta: Any) -> B.Task:
    return B.Task("t", "test", "", "q", gold, scorer, 0, meta)


@pytest.mark.parametrize("answer, expected", [
    ("4821337", 1.0), ("'4821337'", 1.0), ("FINAL(4821337)", 1.0), ("The answer is 4,821,337.", 1.0),
    ("The special magic number for calm-gate is 4821337.", 1.0), ("4821337 (found on line 12)", 1.0),
    ("4821338", 0.0), ("4821337 or 1234567", 0.0), ("", 0.0), ("no idea", 0.0), (None, 0.0),
])
def test_exact_number_code(answer: Any, expected: float) -> None:
    assert B.score(_task("exact", "4821337"), answer) == expected


@pytest.mark.parametrize("answer, expected", [
    ("negative", 1.0), ("NEGATIVE", 1.0), ('"Negative".', 1.0), ("**negative**", 1.0), ("Answer: negative", 1.0),
    ("The most common label is negative.", 1.0), ("positive", 0.0), ("negative or neutral", 0.0),
    ("negatively", 0.0), ("[]", 0.0),
])
def test_exact_label(answer: str, expected: float) -> None:
    assert B.score(_task("exact", "negative", choices=["positive", "negative", "neutral"]), answer) == expected


def test_exact_names() -> None:
    t = _task("exact", "France", choices=["France", "Kenya"])
    assert B.score(t, "Jonas lives in Ashford, which is in France.") == 1.0
    assert B.score(t, "Ashford") == 0.0
    assert B.score(t, "France or Kenya") == 0.0


@pytest.mark.parametrize("answer, expected", [
    ("12", 1.0), ("The answer is 12.", 1.0), ("There are 12 positive reviews.", 1.0), ("13", 0.75),
    ("10", 0.75 ** 2), ("12.0", 1.0), ("twelve", 0.0), ("", 0.0),
])
def test_number_exp(answer: str, expected: float) -> None:
    assert B.score(_task("number_exp", 12), answer) == pytest.approx(expected)


@pytest.mark.parametrize("answer, expected", [
    ("1234.56", 1.0), ("$1,234.56", 1.0), ("Total: 1,234.56 USD", 1.0), ("1235", 1.0), ("1240", 0.0),
    ("-1234.56", 0.0), ("n/a", 0.0),
])
def test_number_rel(answer: str, expected: float) -> None:
    assert B.score(_task("number_rel", 1234.56, rel_tol=0.001), answer) == expected


def test_number_rel_exact_count() -> None:
    t = _task("number_rel", 17, rel_tol=0.0)
    assert (B.score(t, "17 orders"), B.score(t, "18"), B.score(t, "1,7")) == (1.0, 0.0, 0.0)


GOLD_PAIRS = [(11111, 22222), (11111, 33333), (22222, 33333)]


@pytest.mark.parametrize("answer, expected", [
    ("[(11111, 22222), (11111, 33333), (22222, 33333)]", 1.0),
    ("[[22222, 11111], [33333, 11111], [33333, 22222]]", 1.0),
    ("11111-22222, 11111-33333, 22222-33333", 1.0),
    ("1. 11111 and 22222\n2. 11111 & 33333\n3. 22222 / 33333", 1.0),
    ("(11111, 22222)", 0.5),  # precision 1, recall 1/3
    ("[(11111, 22222), (11111, 33333), (22222, 33333), (33333, 44444)]", 6 / 7),
    ("(44444, 55555)", 0.0), ("3", 0.0), ("no pairs", 0.0), ("", 0.0),
])
def test_pairs_f1(answer: str, expected: float) -> None:
    assert B.score(_task("pairs_f1", GOLD_PAIRS), answer) == pytest.approx(expected)


def test_pairs_f1_accepts_non_string_answers_and_empty_gold() -> None:
    assert B.score(_task("pairs_f1", GOLD_PAIRS), GOLD_PAIRS) == 1.0  # e.g. FINAL_VAR of a list
    assert B.score(_task("pairs_f1", []), "[]") == 1.0
    assert B.score(_task("pairs_f1", []), "(1, 2)") == 0.0


# ------------------------------------------------------------------------------------------ suites and files

def test_load_suite() -> None:
    assert len(B.load_suite("sniah", sizes=[8_000, 16_000], n=2)) == 4
    assert [t.size_chars <= 8_000 for t in B.load_suite("oolong", sizes=[8_000], n=3)] == [True] * 3
    assert B.load_suite("structured", sizes=[9_000], n=2, seed=1) == B.make_structured(2, 9_000, 1)
    assert len(B.load_suite("smoke")) == 5
    with pytest.raises(ValueError):
        B.load_suite("nope")


def test_write_and_read_suite(tmp_path: Path) -> None:
    tasks = B.load_suite("all", sizes=[8_000], n=2)
    manifest = B.write_suite(tasks, tmp_path / "suite")
    rows = [json.loads(line) for line in manifest.read_text().splitlines()]
    assert [r["id"] for r in rows] == [t.id for t in tasks]
    for r, t in zip(rows, tasks):
        assert {"id", "kind", "query", "gold", "scorer", "context_file", "size_chars"} <= set(r)
        path = manifest.parent / r["context_file"]
        assert path.suffix == (".txt" if isinstance(t.context, str) else ".json")
        assert (path.read_text() if path.suffix == ".txt" else json.loads(path.read_text())) == t.context
    assert B.read_suite(tmp_path / "suite") == tasks
