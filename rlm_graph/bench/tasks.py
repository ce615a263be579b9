"""Seeded benchmark tasks with gold answers and scorers (stdlib only).

The task kinds follow "Recursive Language Models" (Zhang, Kraska, Khattab 2025):

- ``sniah``: RULER niah_single style, one needle in a haystack of repeated filler (8K to 10M chars).
- ``oolong``: aggregation over ``Date: ... || User: ... || Instance: ...`` lines whose labels need a
  semantic judgement (question type or review sentiment); most-frequent label, count, relative frequency.
- ``oolong_pairs``: the pairs of users whose instances satisfy a condition; scored by F1 over pairs.
- ``structured``: orders as CSV text or a JSON list (sums, top customer, two-condition counts) and a
  two-step lookup (person -> city -> country) over two tables.
- ``smoke``: five small tasks for quick checks.

Scorers live in :mod:`rlm_graph.bench.scoring` (re-exported here): ``exact``, ``number_exp``, ``number_rel`` and
``pairs_f1`` serve these suites. The generalisation families with dev and test splits are in
:mod:`rlm_graph.bench.families`.

Every generator is ``make_<kind>(n_tasks, size_chars, seed) -> list[Task]``. Task ``i`` is built from its
own ``random.Random`` seeded by (kind, seed, size, i), so it is the same whatever ``n_tasks`` is.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import date, timedelta
from itertools import combinations
from pathlib import Path
from string import Formatter
from typing import Any, Callable, Iterable, Sequence

from rlm_graph.bench.scoring import SCORERS, parse_pairs, score, score_answer

Context = str | list | dict

__all__ = [
    "Task", "make_sniah", "make_oolong", "make_oolong_pairs", "make_structured", "make_smoke",
    "score", "score_answer", "parse_pairs", "SCORERS", "load_suite", "write_suite", "read_suite", "context_size",
    "GENERATORS", "DEFAULT_SIZES", "SUITES", "TEMPLATES", "SLOTS",
]


@dataclass
class Task:
    """One benchmark task. ``size_chars`` is the context's actual size (``len`` of a string, or of its JSON)."""

    id: str
    kind: str
    context: Context = field(repr=False)
    query: str
    gold: Any
    scorer: str
    size_chars: int
    metadata: dict[str, Any] = field(default_factory=dict)


def context_size(context: Context) -> int:
    """Characters in a context: ``len`` of a string, or of ``json.dumps`` of a list or dict."""
    return len(context) if isinstance(context, str) else len(json.dumps(context))


def _rng(kind: str, seed: int, size: int, i: int) -> random.Random:
    return random.Random(f"{kind}|{seed}|{size}|{i}")  # str seeds hash with SHA-512: stable across runs


def _label(size: int) -> str:
    """8000 -> '8k', 2000000 -> '2m'."""
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


# --------------------------------------------------------------------------------------------- S-NIAH

FILLER = "The grass is green. The sky is blue. The sun is yellow. Here we go. There and back again. "
_KEY_ADJ = ["calm", "bright", "silent", "rapid", "hollow", "golden", "frozen", "gentle", "crimson", "ancient",
            "wild", "lucky", "brave", "quiet", "misty", "rustic"]
_KEY_NOUN = ["harbor", "falcon", "meadow", "lantern", "canyon", "orchid", "glacier", "compass", "willow",
             "beacon", "summit", "thicket", "pebble", "garden", "river", "anchor"]


def _haystack(rng: random.Random, size_chars: int) -> tuple[str, str, str, float]:
    """(context, key, number, depth): FILLER repeated around one needle at a seeded depth."""
    key = f"{rng.choice(_KEY_ADJ)}-{rng.choice(_KEY_NOUN)}"
    number = str(rng.randrange(1_000_000, 10_000_000))
    depth = round(rng.random(), 3)
    needle = f"One of the special magic numbers for {key} is: {number}. "
    blocks = max(0, (size_chars - len(needle)) // len(FILLER))
    before = round(blocks * depth)
    text = FILLER * before + needle + FILLER * (blocks - before)
    return text.rstrip(), key, number, depth


def make_sniah(n_tasks: int, size_chars: int, seed: int = 0) -> list[Task]:
    """Single needle in a haystack: find the 7-digit special magic number for a key."""
    tasks = []
    for i in range(n_tasks):
        text, key, number, depth = _haystack(_rng("sniah", seed, size_chars, i), size_chars)
        query = (f"What is the special magic number for {key} mentioned in the provided text? "
                 "Answer with the number only.")
        tasks.append(Task(f"sniah-{_label(size_chars)}-{i}", "sniah", text, query, number, "exact", len(text),
                          {"key": key, "depth": depth, "requested_size": size_chars}))
    return tasks


# --------------------------------------------------------------------------------------------- OOLONG

#: dataset -> label -> instance templates; ``{slot}`` is filled from SLOTS. A label word never appears in
#: an instance, and the templates of different labels never match the same text.
TEMPLATES: dict[str, dict[str, list[str]]] = {
    "questions": {
        "abbreviation": ["What does {abbr} stand for?", "What is the full form of {abbr}?",
                         "What is {abbr} short for?", "What is the acronym for the {org}?",
                         "What do the letters {abbr} mean?"],
        "entity": ["What kind of animal is the {animal}?", "What color is a ripe {fruit}?",
                   "Which instrument did {musician} play?", "What is the national dish of {country}?",
                   "What language do people speak in {country}?"],
        "description": ["Why do people {activity}?", "What does the word {word} mean?",
                        "How does a {machine} work?", "What is the difference between {pair}?",
                        "What causes {phenomenon}?"],
        "human": ["Who invented the {invention}?", "Who wrote {book}?", "Who was the first person to {feat}?",
                  "Who painted {painting}?", "Who discovered {discovery}?"],
        "location": ["Where is {landmark} located?", "What is the capital of {country}?",
                     "In which country is the city of {city}?", "Which river flows through {city}?",
                     "On which continent is {country}?"],
        "numeric": ["How many {conversion}?", "In what year was the {invention} invented?",
                    "How tall is {landmark}?", "What is the population of {city}?",
                    "How much does a new {gadget} cost?"],
    },
    "reviews": {
        "positive": ["The {product} works perfectly and I would happily buy it again.",
                     "Absolutely love this {product}, it exceeded every expectation.",
                     "My {relative} was delighted with the {product} I gave them.",
                     "Great value: the {product} feels sturdy and well made.",
                     "Setup took two minutes and the {product} has been flawless ever since."],
        "negative": ["The {product} stopped working after {n} days.",
                     "Very disappointed, the {product} looks nothing like the photos.",
                     "I returned the {product} because it kept overheating.",
                     "Customer service ignored my emails about the broken {product}.",
                     "Waste of money, the {product} fell apart within a week."],
        "neutral": ["The {product} arrived on {weekday} in a {color} box.", "I ordered the {product} for my {relative}.",
                    "The {product} is also sold in {color}.", "I have had the {product} for {n} weeks now.",
                    "The {product} is about the same size as my old one."],
    },
}

SLOTS: dict[str, list[str]] = {
    "abbr": ["NASA", "UNESCO", "HTML", "SCUBA", "RADAR", "LASER", "FIFA", "NATO", "DNA", "GPS", "UNICEF", "OPEC"],
    "org": ["World Health Organization", "European Space Agency", "International Monetary Fund",
            "World Trade Organization", "Royal Air Force", "Internet Engineering Task Force"],
    "animal": ["axolotl", "pangolin", "okapi", "quokka", "tarsier", "narwhal", "capybara", "kinkajou"],
    "fruit": ["mango", "papaya", "plum", "lime", "banana", "fig", "persimmon"],
    "musician": ["Miles Davis", "Jimi Hendrix", "Yo-Yo Ma", "Louis Armstrong", "Frederic Chopin", "Ravi Shankar"],
    "country": ["Peru", "Japan", "Hungary", "Morocco", "Vietnam", "Norway", "Ghana", "Chile", "Portugal", "Nepal"],
    "activity": ["yawn", "sneeze", "dream", "get hiccups", "procrastinate", "blush", "shiver"],
    "word": ["serendipity", "ephemeral", "ubiquitous", "quixotic", "laconic", "petrichor"],
    "machine": ["refrigerator", "jet engine", "microwave oven", "compass", "thermostat", "solar panel"],
    "pair": ["weather and climate", "a virus and a bacterium", "a lake and a pond", "speed and velocity",
             "a comet and an asteroid"],
    "phenomenon": ["rainbows", "tides", "earthquakes", "the northern lights", "thunder"],
    "invention": ["telephone", "printing press", "light bulb", "telescope", "steam engine", "radio"],
    "book": ["Moby-Dick", "Pride and Prejudice", "War and Peace", "Don Quixote", "The Odyssey", "Frankenstein"],
    "feat": ["climb Mount Everest", "walk on the Moon", "fly solo across the Atlantic", "reach the South Pole",
             "swim the English Channel"],
    "painting": ["the Mona Lisa", "The Starry Night", "Girl with a Pearl Earring", "The Scream", "The Night Watch"],
    "discovery": ["penicillin", "radium", "the electron", "X-rays", "insulin"],
    "landmark": ["Machu Picchu", "the Eiffel Tower", "Angkor Wat", "Petra", "the Taj Mahal", "Stonehenge"],
    "city": ["Vienna", "Kyoto", "Lagos", "Quito", "Lyon", "Krakow", "Mumbai", "Seattle", "Adelaide", "Cairo"],
    "conversion": ["seconds are in an hour", "feet are in a mile", "bones are in an adult skeleton",
                   "keys are on a piano", "players are on a rugby team", "days are in a leap year"],
    "gadget": ["smartphone", "laptop", "electric scooter", "games console", "smartwatch"],
    "product": ["blender", "desk lamp", "backpack", "coffee grinder", "phone case", "yoga mat", "kettle",
                "air fryer", "office chair", "water bottle", "toaster", "keyboard", "rain jacket"],
    "relative": ["sister", "father", "grandmother", "roommate", "son", "neighbour"],
    "weekday": ["Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday"],
    "color": ["red", "plain brown", "white", "blue", "grey"],
    "n": [str(k) for k in range(2, 13)],
}

_DATASET_INFO = {
    "questions": ("Every instance is a trivia question. Its label is the kind of answer it asks for, one of: "
                  "abbreviation (what an acronym stands for), entity (a thing: animal, color, food, language, "
                  "instrument), description (an explanation, reason or definition), human (a person), "
                  "location (a place), numeric (a number, year, size or amount)."),
    "reviews": ("Every instance is a short product review. Its label is its sentiment, one of: positive, "
                "negative, neutral (a plain statement of fact with no opinion)."),
}
DATASETS = tuple(TEMPLATES)
_MONTHS = ["Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"]
_SLOTS_OF = {t: [f for _, f, _, _ in Formatter().parse(t) if f] for d in TEMPLATES.values()
             for ts in d.values() for t in ts}

Row = tuple[int, str, str]  # (user, label, line)


def _instance(rng: random.Random, dataset: str, label: str) -> str:
    """A random instance text of ``label``."""
    template = rng.choice(TEMPLATES[dataset][label])
    return template.format(**{s: rng.choice(SLOTS[s]) for s in _SLOTS_OF[template]})


def _line(rng: random.Random, user: int, text: str) -> str:
    d = date(2022, 1, 1) + timedelta(days=rng.randrange(1096))
    return f"Date: {_MONTHS[d.month - 1]} {d.day:02d}, {d.year} || User: {user} || Instance: {text}"


def _users(rng: random.Random, size_chars: int) -> list[int]:
    """Distinct 5-digit user ids, about one per five lines."""
    return rng.sample(range(10_000, 100_000), min(89_000, max(8, size_chars // 460)))


def _fill_lines(rng: random.Random, size_chars: int, dataset: str, users: list[int],
                pick_label: Callable[[int], str], forced: Iterable[tuple[int, str]] = ()) -> list[Row]:
    """Lines (the ``forced`` (user, label) ones first) until the next would pass ``size_chars``; shuffled."""
    rows = [(u, lab, _line(rng, u, _instance(rng, dataset, lab))) for u, lab in forced]
    total = sum(len(r[2]) for r in rows) + max(0, len(rows) - 1)
    while True:
        user = rng.choice(users)
        label = pick_label(user)
        line = _line(rng, user, _instance(rng, dataset, label))
        if total + len(line) + (1 if rows else 0) > size_chars:
            break
        total += len(line) + (1 if rows else 0)
        rows.append((user, label, line))
    rng.shuffle(rows)
    return rows


def _preamble(dataset: str) -> str:
    return ("The context has one instance per line: `Date: Mon DD, YYYY || User: <id> || Instance: <text>`. "
            f"{_DATASET_INFO[dataset]} The labels are not written in the context: judge each instance yourself. ")


def make_oolong(n_tasks: int, size_chars: int, seed: int = 0) -> list[Task]:
    """Aggregate semantic labels: the most frequent label, a label's count, or one label vs another."""
    tasks = []
    for i in range(n_tasks):
        rng = _rng("oolong", seed, size_chars, i)
        dataset, question = DATASETS[i % 2], ("most_frequent", "count", "relative")[i % 3]
        labels = list(TEMPLATES[dataset])
        users = _users(rng, size_chars)
        for _ in range(100):  # redraw until the most frequent label is unique
            weights = [rng.uniform(1.0, 4.0) for _ in labels]
            rows = _fill_lines(rng, size_chars, dataset, users, lambda u: rng.choices(labels, weights)[0])
            top = Counter(lab for _, lab, _ in rows).most_common(2)
            if len(top) == 1 or top[0][1] > top[1][1]:
                break
        counts = Counter(lab for _, lab, _ in rows)
        gold: Any
        meta: dict[str, Any] = {"dataset": dataset, "question": question, "choices": labels,
                                "requested_size": size_chars}
        if question == "most_frequent":
            gold, scorer = top[0][0], "exact"
            q = "Which label is the most common among all instances? Answer with the label only."
        elif question == "count":
            label = rng.choice(labels)
            gold, scorer, meta["labels"] = counts[label], "number_exp", [label]
            q = f"How many instances have the label '{label}'? Answer with a number."
        else:
            a, b = rng.sample(labels, 2)
            gold = "more" if counts[a] > counts[b] else "less" if counts[a] < counts[b] else "same"
            scorer, meta["labels"], meta["choices"] = "exact", [a, b], ["more", "less", "same"]
            q = (f"Is the label '{a}' more common, less common, or the same frequency as the label '{b}'? "
                 "Answer with one word: more, less, or same.")
        text = "\n".join(r[2] for r in rows)
        tasks.append(Task(f"oolong-{_label(size_chars)}-{i}", "oolong", text, _preamble(dataset) + q, gold,
                          scorer, len(text), meta))
    return tasks


def make_oolong_pairs(n_tasks: int, size_chars: int, seed: int = 0) -> list[Task]:
    """Pairs of users meeting a condition on their labels; gold is a sorted list of (low id, high id)."""
    tasks = []
    for i in range(n_tasks):
        rng = _rng("oolong_pairs", seed, size_chars, i)
        condition, dataset = ("both", "one_each")[i % 2], DATASETS[(i + i // 2) % 2]
        labels = list(TEMPLATES[dataset])
        rare = rng.sample(labels, 1 if condition == "both" else 2)
        common = [lab for lab in labels if lab not in rare]
        users = _users(rng, size_chars)
        # Rare labels only occur for a few chosen users, so the gold stays a short list at any size.
        chosen = {lab: set(rng.sample(users, rng.randint(3, 6))) for lab in rare}

        def pick(user: int) -> str:
            mine = [lab for lab in rare if user in chosen[lab]]
            return rng.choice(mine) if mine and rng.random() < 0.4 else rng.choice(common)

        forced = [(u, lab) for lab in rare for u in sorted(chosen[lab])]
        rows = _fill_lines(rng, size_chars, dataset, users, pick, forced)
        has = {lab: {u for u, l2, _ in rows if l2 == lab} for lab in rare}
        if condition == "both":
            gold = sorted(combinations(sorted(has[rare[0]]), 2))
            cond = f"both users have at least one instance with the label '{rare[0]}'"
        else:
            gold = sorted({(min(a, b), max(a, b)) for a in has[rare[0]] for b in has[rare[1]] if a != b})
            cond = (f"one user has at least one instance with the label '{rare[0]}' and the other user has "
                    f"at least one instance with the label '{rare[1]}'")
        q = (f"List every pair of distinct user IDs where {cond}. Give each pair once, lower ID first, "
             "as a list like [(11111, 22222), (11111, 33333)].")
        text = "\n".join(r[2] for r in rows)
        tasks.append(Task(f"oolong_pairs-{_label(size_chars)}-{i}", "oolong_pairs", text, _preamble(dataset) + q,
                          gold, "pairs_f1", len(text),
                          {"dataset": dataset, "condition": condition, "labels": rare, "requested_size": size_chars}))
    return tasks


# --------------------------------------------------------------------------------------------- structured

_CO_A = ["Blue", "Summit", "Northwind", "Acme", "Golden", "Silver", "Redwood", "Pioneer", "Cedar", "Harbor"]
_CO_B = ["Traders", "Foods", "Labs", "Supply", "Works", "Retail", "Systems", "Goods"]
CUSTOMERS = [f"{a} {b}" for a in _CO_A for b in _CO_B]
REGIONS = ["North", "South", "East", "West", "Central"]
CATEGORIES = ["Electronics", "Furniture", "Grocery", "Clothing", "Toys", "Books", "Garden", "Sports"]
ORDER_FIELDS = ["order_id", "date", "customer", "region", "category", "quantity", "unit_price", "amount"]
MONTH_NAMES = ["January", "February", "March", "April", "May", "June", "July", "August", "September",
               "October", "November", "December"]
_CITY_A = ["Ash", "Bel", "Cor", "Dun", "El", "Fen", "Gar", "Hol", "Ivy", "Kel", "Lor", "Mar", "Nor", "Ost",
           "Pen", "Ros", "Sel", "Tor", "Ul", "Ver", "Wyn", "Yar"]
_CITY_B = ["ford", "haven", "mere", "stead", "wick", "dale", "bury", "holm", "gate", "ton", "moor", "crest"]
COUNTRIES = ["France", "Brazil", "Canada", "Kenya", "India", "Sweden", "Mexico", "Egypt", "Japan", "Poland",
             "Argentina", "Vietnam", "Turkey", "Ireland", "Australia", "Chile"]
_FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kara", "Liam",
          "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zoe"]
_LAST = ["Berg", "Costa", "Dube", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski", "Lopez",
         "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi", "Silva", "Tanaka", "Ueda", "Varga", "Weber"]
_JOBS = ["teacher", "nurse", "engineer", "baker", "pilot", "lawyer", "farmer", "chemist", "designer", "plumber"]


def _person_name(rng: random.Random) -> str:
    return f"{rng.choice(_FIRST)} {rng.choice('ABCDEFGHJKLMNPRSTVW')}. {rng.choice(_LAST)}"


def _orders(rng: random.Random, size_chars: int, fmt: str) -> tuple[Context, list[dict[str, Any]]]:
    """Order rows up to ``size_chars`` as CSV text (fmt 'csv') or a JSON-ready list; returns (context, rows)."""
    n_cust = min(len(CUSTOMERS), max(8, size_chars // (70 if fmt == "csv" else 170) // 25))
    customers = rng.sample(CUSTOMERS, n_cust)
    header = ",".join(ORDER_FIELDS)
    rows: list[dict[str, Any]] = []
    lines: list[str] = []
    total = len(header) if fmt == "csv" else 2
    while True:
        qty, cents = rng.randint(1, 9), rng.randint(199, 49_999)
        row = {"order_id": 100_001 + len(rows),
               "date": (date(2024, 1, 1) + timedelta(days=rng.randrange(366))).isoformat(),
               "customer": rng.choice(customers), "region": rng.choice(REGIONS), "category": rng.choice(CATEGORIES),
               "quantity": qty, "unit_price": cents / 100, "amount": qty * cents / 100}
        line = (",".join(str(row[k]) for k in ORDER_FIELDS[:6]) + f",{cents / 100:.2f},{qty * cents / 100:.2f}"
                if fmt == "csv" else json.dumps(row))
        add = len(line) + (1 if fmt == "csv" else 2 if rows else 0)
        if total + add > size_chars:
            break
        total += add
        rows.append(row)
        lines.append(line)
    return (header + "\n" + "\n".join(lines) if fmt == "csv" else rows), rows


def _lookup(rng: random.Random, size_chars: int, fmt: str) -> tuple[Context, str, str, str, list[str]]:
    """People (name, age, occupation, city) and cities (city, country) tables, as two CSV sections or a
    dict of two lists. Returns (context, target name, its city, its country, countries used)."""
    all_cities = [a + b for a in _CITY_A for b in _CITY_B]
    cities = rng.sample(all_cities, min(len(all_cities), max(12, size_chars // 300)))
    countries = rng.sample(COUNTRIES, min(len(COUNTRIES), max(4, len(cities) // 3)))
    city_rows = [{"city": c, "country": rng.choice(countries)} for c in cities]
    target = {"name": _person_name(rng), "age": rng.randint(18, 90), "occupation": rng.choice(_JOBS),
              "city": rng.choice(cities)}
    csv_people = "# people\nname,age,occupation,city\n"
    csv_cities = "\n\n# cities\ncity,country\n" + "\n".join(f"{r['city']},{r['country']}" for r in city_rows)

    def enc(p: dict[str, Any]) -> str:
        return f"{p['name']},{p['age']},{p['occupation']},{p['city']}" if fmt == "csv" else json.dumps(p)

    sep = 1 if fmt == "csv" else 2
    total = (len(csv_people) + len(csv_cities) if fmt == "csv"
             else len(json.dumps({"people": [], "cities": city_rows}))) + len(enc(target))
    people: list[dict[str, Any]] = []
    while True:
        p = {"name": _person_name(rng), "age": rng.randint(18, 90), "occupation": rng.choice(_JOBS),
             "city": rng.choice(cities)}
        if p["name"] == target["name"]:
            continue
        if total + len(enc(p)) + sep > size_chars:
            break
        total += len(enc(p)) + sep
        people.append(p)
    people.insert(rng.randrange(len(people) + 1), target)
    country = next(r["country"] for r in city_rows if r["city"] == target["city"])
    context: Context = (csv_people + "\n".join(enc(p) for p in people) + csv_cities if fmt == "csv"
                        else {"people": people, "cities": city_rows})
    return context, target["name"], target["city"], country, sorted({r["country"] for r in city_rows})


def make_structured(n_tasks: int, size_chars: int, seed: int = 0) -> list[Task]:
    """Orders as CSV text or a JSON list (sum by customer and month, top customer, two-condition count),
    and a two-step lookup person -> city -> country over two tables."""
    tasks = []
    for i in range(n_tasks):
        rng = _rng("structured", seed, size_chars, i)
        question = ("sum_customer_month", "top_customer", "count_two_conditions", "lookup")[i % 4]
        fmt = ("csv", "json")[(i + i // 4) % 2]
        meta: dict[str, Any] = {"question": question, "format": fmt, "requested_size": size_chars}
        gold: Any
        where = "the CSV text" if fmt == "csv" else "the list of order records"
        if question == "lookup":
            context, name, city, gold, countries = _lookup(rng, size_chars, fmt)
            scorer = "exact"
            meta.update(person=name, city=city, choices=countries)
            q = f"In which country does {name} live? Answer with the country name."
        else:
            context, rows = _orders(rng, size_chars, fmt)
            pick = rng.choice(rows)
            if question == "sum_customer_month":
                month = int(pick["date"][5:7])
                cents = sum(round(r["amount"] * 100) for r in rows
                            if r["customer"] == pick["customer"] and int(r["date"][5:7]) == month)
                gold, scorer = cents / 100, "number_rel"
                meta.update(customer=pick["customer"], month=month, rel_tol=0.001)
                q = (f"Using {where}: what is the total amount of all orders placed by {pick['customer']} in "
                     f"{MONTH_NAMES[month - 1]} 2024? Answer with a number.")
            elif question == "top_customer":
                totals: Counter[str] = Counter()
                for r in rows:
                    totals[r["customer"]] += round(r["amount"] * 100)
                gold, scorer = totals.most_common(1)[0][0], "exact"
                meta["choices"] = sorted(totals)
                q = (f"Using {where}: which customer has the highest total order amount over all their orders? "
                     "Answer with the customer name.")
            else:
                gold = sum(1 for r in rows if r["region"] == pick["region"] and r["category"] == pick["category"])
                scorer = "number_rel"
                meta.update(region=pick["region"], category=pick["category"], rel_tol=0.0)
                q = (f"Using {where}: how many orders were shipped to the {pick['region']} region in the "
                     f"{pick['category']} category? Answer with a number.")
        tasks.append(Task(f"structured-{_label(size_chars)}-{i}", "structured", context, q, gold, scorer,
                          context_size(context), meta))
    return tasks


# --------------------------------------------------------------------------------------------- smoke

_ESSAY = ["The library opens at nine every morning.", "Rain is expected later this week.",
          "The committee met to discuss the new budget.", "Several trains were delayed by the storm.",
          "A small bakery on the corner sells fresh bread.", "The museum added a wing for modern art.",
          "Children played football in the park until dusk.", "The bridge was repainted last summer.",
          "Farmers reported a good harvest this year.", "The old clock tower still keeps time.",
          "Visitors queued outside the theatre for tickets.", "The river flooded the lower fields in spring."]
SMOKE_KINDS = ("sum", "hidden_number", "oldest", "count_positive", "needle")


def make_smoke(n_tasks: int = 5, size_chars: int = 20_000, seed: int = 0) -> list[Task]:
    """Five small quick-check tasks (cycled if ``n_tasks`` > 5); ``size_chars`` sizes the needle task only."""
    tasks = []
    for i in range(n_tasks):
        rng, kind = _rng("smoke", seed, size_chars, i), SMOKE_KINDS[i % len(SMOKE_KINDS)]
        meta: dict[str, Any] = {"question": kind}
        context: Context
        gold: Any
        if kind == "sum":
            context = [rng.randint(1, 999) for _ in range(rng.randint(50, 100))]
            gold, scorer, meta["rel_tol"] = sum(context), "number_rel", 0.0
            q = "What is the sum of all the numbers in the list? Answer with a number."
        elif kind == "hidden_number":
            secret = str(rng.randrange(10_000, 100_000))
            sentences = [rng.choice(_ESSAY) for _ in range(40)]
            sentences.insert(rng.randrange(41), f"The secret number is {secret}.")
            context, gold, scorer = " ".join(sentences), secret, "exact"
            q = "What is the secret number hidden in the text? Answer with the number only."
        elif kind == "oldest":
            names, ages = rng.sample(_FIRST, 20), rng.sample(range(18, 95), 20)
            context = [{"name": n, "age": a, "city": rng.choice(SLOTS["city"])} for n, a in zip(names, ages)]
            gold, scorer, meta["choices"] = max(context, key=lambda p: p["age"])["name"], "exact", names
            q = "Who is the oldest person in the list? Answer with the name only."
        elif kind == "count_positive":
            labels = rng.choices(list(TEMPLATES["reviews"]), k=12)
            labels[rng.randrange(12)] = "positive"
            context = [_instance(rng, "reviews", lab) for lab in labels]
            gold, scorer = labels.count("positive"), "number_exp"
            q = ("How many of these product reviews are positive? Judge each review's sentiment "
                 "(call llm_query on each review). Answer with a number.")
        else:
            context, key, gold, depth = _haystack(rng, size_chars)
            scorer = "exact"
            meta.update(key=key, depth=depth, requested_size=size_chars)
            q = (f"What is the special magic number for {key} mentioned in the provided text? "
                 "Answer with the number only.")
        tasks.append(Task(f"smoke-{i}-{kind}", "smoke", context, q, gold, scorer, context_size(context), meta))
    return tasks


# --------------------------------------------------------------------------------------------- suites

GENERATORS: dict[str, Callable[[int, int, int], list[Task]]] = {
    "smoke": make_smoke, "sniah": make_sniah, "oolong": make_oolong, "oolong_pairs": make_oolong_pairs,
    "structured": make_structured,
}
DEFAULT_SIZES: dict[str, tuple[int, ...]] = {
    "sniah": (8_000, 64_000, 512_000, 2_000_000, 10_000_000),
    "oolong": (8_000, 32_000, 128_000),
    "oolong_pairs": (8_000, 32_000, 128_000),
    "structured": (8_000, 64_000, 512_000),
}
SUITES = ("smoke", "sniah", "oolong", "oolong_pairs", "structured", "all")


def load_suite(name: str, *, sizes: Sequence[int] | None = None, n: int = 3, seed: int = 0) -> list[Task]:
    """The tasks of a suite: ``n`` per size (``sizes`` defaults to DEFAULT_SIZES). 'smoke' is always its five
    small tasks; 'all' is every suite in turn."""
    if name == "all":
        return [t for s in SUITES[:-1] for t in load_suite(s, sizes=sizes, n=n, seed=seed)]
    if name == "smoke":
        return make_smoke(5, 20_000, seed)
    if name not in GENERATORS:
        raise ValueError(f"unknown suite {name!r}; choose one of {', '.join(SUITES)}")
    return [t for size in (sizes or DEFAULT_SIZES[name]) for t in GENERATORS[name](n, size, seed)]


def write_suite(tasks: Iterable[Task], directory: str | Path) -> Path:
    """Write each context to ``<id>.txt`` (str) or ``<id>.json`` (list/dict) and a ``tasks.jsonl`` manifest
    (id, kind, query, gold, scorer, context_file, size_chars, metadata); return the manifest's path."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    manifest = d / "tasks.jsonl"
    with manifest.open("w", encoding="utf-8") as mf:
        for t in tasks:
            name = f"{t.id}.txt" if isinstance(t.context, str) else f"{t.id}.json"
            with (d / name).open("w", encoding="utf-8", newline="") as f:
                if isinstance(t.context, str):
                    f.write(t.context)
                else:
                    json.dump(t.context, f)
            mf.write(json.dumps({"id": t.id, "kind": t.kind, "query": t.query, "gold": t.gold, "scorer": t.scorer,
                                 "context_file": name, "size_chars": t.size_chars, "metadata": t.metadata}) + "\n")
    return manifest


def read_suite(directory: str | Path) -> list[Task]:
    """Load the tasks written by :func:`write_suite` (contexts included)."""
    d = Path(directory)
    tasks = []
    for line in (d / "tasks.jsonl").read_text(encoding="utf-8").splitlines():
        if not line.strip():
            continue
        r = json.loads(line)
        path = d / r["context_file"]
        with path.open(encoding="utf-8", newline="") as f:
            context = f.read() if path.suffix == ".txt" else json.load(f)
        gold = [tuple(p) for p in r["gold"]] if r["scorer"] == "pairs_f1" else r["gold"]
        tasks.append(Task(r["id"], r["kind"], context, r["query"], gold, r["scorer"], r["size_chars"],
                          r.get("metadata", {})))
    return tasks
