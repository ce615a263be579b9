"""Set operations over two lists: how many items (or which) are in both, or in the first but not the second.

Generators: ``common_count``, ``common_items`` (3-8 items in both), ``diff_items`` (3-8 items only in the
first), ``diff_count``. Themes, drawn per task: conference attendees of two years (e-mail addresses, or names in
small contexts), stock of two warehouses (SKUs such as ``SKU-4821-B``), customers of two months (6-digit ids).
Shapes: ``sections`` (one text with a titled section per list), ``dict`` (a key per list), ``files`` (two
files' worth of lines, ``==> east.txt <==``), ``records`` (one dict per membership, shuffled). The second list
holds near misses of first-list items (one character apart), and dicts and sections sometimes hold a third,
unrelated list.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, Callable

from rlm_graph.bench.families.prose import FIRST, LAST
from rlm_graph.bench.families.spec import Build, Built, Family, ask
from rlm_graph.bench.tasks import Context, context_size

_DOMAINS = ["example.org", "mail.test", "corp.example", "inbox.test", "post.example", "net.test"]


@dataclass(frozen=True)
class Theme:
    titles: tuple[str, str, str]  # first list, second list, an unrelated third
    keys: tuple[str, str, str]
    files: tuple[str, str, str]
    field: str  # the records' item field; the list field holds keys
    both_count: tuple[str, ...]
    both_items: tuple[str, ...]
    diff_items: tuple[str, ...]
    diff_count: tuple[str, ...]


THEMES: dict[str, Theme] = {
    "conference": Theme(
        ("Attendees 2023", "Attendees 2024", "Speakers 2024"), ("attendees_2023", "attendees_2024", "speakers_2024"),
        ("attendees_2023.txt", "attendees_2024.txt", "speakers_2024.txt"), "attendee",
        ("How many people attended the conference in both 2023 and 2024?", "How many of the 2023 attendees came back in 2024?"),
        ("Which people attended both the 2023 and the 2024 conference?", "Who was an attendee in 2023 and again in 2024?"),
        ("Which 2023 attendees did not attend in 2024?", "Who attended in 2023 but is missing from the 2024 list?"),
        ("How many 2023 attendees did not come back in 2024?", "How many people attended in 2023 but not in 2024?")),
    "warehouse": Theme(
        ("Stock at the East warehouse", "Stock at the West warehouse", "Discontinued items"), ("east_stock", "west_stock", "discontinued"),
        ("east_stock.txt", "west_stock.txt", "discontinued.txt"), "sku",
        ("How many SKUs are stocked in both the East and the West warehouse?", "How many products does each warehouse carry in common with the other?"),
        ("Which SKUs are stocked in both warehouses?", "Which items appear in the East stock list and also in the West one?"),
        ("Which SKUs are in the East warehouse but not in the West warehouse?", "Which East-warehouse items are absent from the West stock list?"),
        ("How many SKUs does the East warehouse stock that the West warehouse does not?",)),
    "customers": Theme(
        ("Customers who ordered in January", "Customers who ordered in February", "Customers who returned an item"),
        ("january_customers", "february_customers", "returns"), ("jan_customers.txt", "feb_customers.txt", "returns.txt"), "customer_id",
        ("How many customers ordered in both January and February?", "How many January customers ordered again in February?"),
        ("Which customer ids ordered in both January and February?",),
        ("Which January customers did not order in February? Give their ids.", "Which customer ids appear in January's list but not in February's?"),
        ("How many customers ordered in January but not in February?",)),
}


def _maker(theme: str, rng: random.Random, names: bool) -> tuple[Callable[[], Any], Callable[[Any], Any], dict[str, Any]]:
    """(new item, near miss of an item, scorer settings) for a theme."""
    if theme == "warehouse":
        def sku() -> str:
            return f"SKU-{rng.randint(1000, 9999)}-{rng.choice('ABCDEFGHJK')}"
        return sku, lambda s: s[:-1] + rng.choice([c for c in "ABCDEFGHJK" if c != s[-1]]), {
            "items": "pattern", "item_pattern": r"SKU-\d{4}-[A-Z]"}
    if theme == "customers":
        return lambda: rng.randint(100_000, 999_999), lambda i: min(999_999, max(100_000, i + rng.choice([-1, 1, 10, -10]))), {
            "items": "pattern", "item_pattern": r"(?<!\d)\d{6}(?!\d)"}
    if names:
        return lambda: f"{rng.choice(FIRST)} {rng.choice(LAST)}", lambda s: s.split()[0] + " " + rng.choice(LAST), {"items": "names"}

    def email() -> str:
        n = rng.choice(["", "", str(rng.randint(1, 99))])
        return f"{rng.choice(FIRST)}.{rng.choice(LAST)}{n}@{rng.choice(_DOMAINS)}".lower()
    return email, lambda s: s.replace("@", f"{rng.randint(1, 9)}@", 1), {
        "items": "pattern", "item_pattern": r"[\w.+-]+@[\w-]+(?:\.[\w-]+)+"}


def _lists(rng: random.Random, op: str, n_total: int, new: Callable[[], Any], near: Callable[[Any], Any]) -> tuple[list[Any], list[Any], list[Any], list[Any]]:
    """(first, second, third, answer items) for ``op`` with about ``n_total`` items in the two lists."""
    seen: set[Any] = set()

    def fresh(k: int) -> list[Any]:
        out = []
        while len(out) < k:
            x = new()
            if x not in seen:
                seen.add(x)
                out.append(x)
        return out

    half = max(10, n_total // 2)
    small = rng.randint(3, 8)
    if op in ("common_items", "diff_items"):
        shared_n = half - small if op == "diff_items" else small
    else:
        shared_n = int(half * rng.uniform(0.2, 0.6))
    shared = fresh(shared_n)
    only_a = fresh(small if op == "diff_items" else half - shared_n)
    near_b = []
    for x in rng.sample(only_a, min(len(only_a), rng.randint(2, 5))):
        y = near(x)
        if y not in seen:
            seen.add(y)
            near_b.append(y)
    only_b = fresh(max(0, half - shared_n - len(near_b)))
    first, second = shared + only_a, shared + only_b + near_b
    rng.shuffle(first)
    rng.shuffle(second)
    third = fresh(rng.randint(3, 12))
    answer = shared if op.startswith("common") else only_a
    return first, second, third, answer


def _render(shape: str, theme: Theme, lists: list[list[Any]], with_third: bool, rng: random.Random) -> tuple[Context, dict[str, Any]]:
    order = [0, 1, 2] if with_third else [0, 1]
    if with_third and rng.random() < 0.5:
        order = [2, 0, 1]
    if shape == "sections":
        head = rng.choice(["## {t}", "{t}:", "=== {t} ==="])
        return "\n\n".join(head.format(t=theme.titles[i]) + "\n" + "\n".join(map(str, lists[i])) for i in order), {"heading": head}
    if shape == "files":
        head = rng.choice(["==> {f} <==", "--- file: {f} ---"])
        return "\n\n".join(head.format(f=theme.files[i]) + "\n" + "\n".join(map(str, lists[i])) for i in order[-2:]), {"heading": head}
    if shape == "dict":
        return {theme.keys[i]: lists[i] for i in order}, {}
    recs = [{theme.field: x, "list": theme.keys[i]} for i in order[-2:] for x in lists[i]]
    rng.shuffle(recs)
    return recs, {}


def _sets(op: str, rng: random.Random, shape: str, size: int) -> Built:
    name = rng.choice(list(THEMES))
    theme = THEMES[name]
    names = name == "conference" and size <= 24_000 and rng.random() < 0.5
    new, near, scoring = _maker(name, rng, names)
    n_total = max(24, size // {"warehouse": 11, "customers": 7, "conference": 14 if names else 26}[name])
    for _ in range(2):  # the second pass corrects the item count by the size the first one came to
        first, second, third, answer = _lists(rng, op, n_total, new, near)
        with_third = shape in ("dict", "sections") and rng.random() < 0.5
        context, extra = _render(shape, theme, [first, second, third], with_third, rng)
        got = context_size(context)
        if abs(got - size) <= 0.05 * size:
            break
        n_total = max(24, round(n_total * size / got))
    meta: dict[str, Any] = {"theme": name, "op": op, "first": theme.keys[0], "second": theme.keys[1],
                            "third": theme.keys[2] if with_third else None, "sizes": [len(first), len(second)], **extra}
    if op.endswith("count"):
        q = rng.choice(theme.both_count if op == "common_count" else theme.diff_count)
        return Built(context, ask(rng, q, "number"), len(answer), "count", meta)
    q = rng.choice(theme.both_items if op == "common_items" else theme.diff_items)
    if scoring["items"] == "names":
        scoring["universe"] = sorted({*first, *second})
    return Built(context, ask(rng, q, "list"), sorted(answer), "items_f1", {**meta, **scoring})


def _generator(op: str) -> Build:
    def build(rng: random.Random, shape: str, size: int) -> Built:
        return _sets(op, rng, shape, size)
    build.__doc__ = f"Two lists: {op.replace('_', ' ')}."
    return build


FAMILY = Family("sets", __doc__.split("\n")[0],
                {op: _generator(op) for op in ("common_count", "common_items", "diff_items", "diff_count")},
                ("sections", "dict", "files", "records"), 2_000, 2_000_000)
