"""Aggregation over CSV/JSON: the sum, average, maximum or count of orders with one or two filters.

Generators: ``sum`` (total amount), ``avg`` (mean amount or quantity), ``max`` (largest amount), ``count``
(orders matching two filters). Filters: customer, month, region, category. Shapes: ``csv`` (CSV text),
``rows`` (a list of dicts with numbers, as the CSV loader gives), ``json`` (JSON text), ``columns`` (a dict
of columns). Customers share words ("Blue Traders", "Blue Foods"), the question writes names and regions in
another case and months as "March 2024", "2024-03" or "Mar 2024". Golds are exact (sums in cents); sums,
means and maxima are scored within 0.1 %, counts exactly.
"""

from __future__ import annotations

import json
import random
from datetime import date, timedelta
from typing import Any

from rlm_graph.bench.families.prose import MONTHS
from rlm_graph.bench.families.spec import Build, Built, Family, ask
from rlm_graph.bench.tasks import CATEGORIES, CUSTOMERS, REGIONS, Context, context_size

FIELDS = ["order_id", "date", "customer", "region", "category", "quantity", "unit_price", "amount"]


def _rows(rng: random.Random, shape: str, size: int) -> list[dict[str, Any]]:
    per_row = 60 if shape == "csv" else 150 if shape in ("rows", "json") else 76
    n_cust = min(len(CUSTOMERS), max(8, size // per_row // 40))
    customers = rng.sample(CUSTOMERS, n_cust)
    rows: list[dict[str, Any]] = []
    for i in range(max(20, int(size * 1.1 / per_row))):
        qty, cents = rng.randint(1, 9), rng.randint(199, 49_999)
        rows.append({"order_id": 100_001 + i, "date": (date(2024, 1, 1) + timedelta(days=rng.randrange(366))).isoformat(),
                     "customer": rng.choice(customers), "region": rng.choice(REGIONS), "category": rng.choice(CATEGORIES),
                     "quantity": qty, "unit_price": cents / 100, "amount": round(qty * cents / 100, 2)})
    return rows


def _render(shape: str, rows: list[dict[str, Any]], rng: random.Random) -> tuple[Context, dict[str, Any]]:
    if shape == "csv":
        lines = [",".join(FIELDS)] + [",".join(str(r[k]) for k in FIELDS[:6]) + f",{r['unit_price']:.2f},{r['amount']:.2f}"
                                      for r in rows]
        return "\n".join(lines), {}
    if shape == "rows":
        return rows, {}
    if shape == "json":
        indent = rng.choice([None, None, 1])
        return json.dumps(rows, indent=indent), {"indent": indent}
    return {k: [r[k] for r in rows] for k in FIELDS}, {}


def _trim(rows: list[dict[str, Any]], shape: str, size: int, rng: random.Random) -> tuple[Context, list[dict[str, Any]], dict[str, Any]]:
    """Render, then cut rows until the context is at most 1 % over ``size`` (rows are drawn 10 % too many)."""
    context, extra = _render(shape, rows, rng)
    for _ in range(3):
        n = context_size(context)
        if n <= size * 1.01 or len(rows) <= 20:
            break
        rows = rows[: max(20, int(len(rows) * size / n))]
        context, extra = _render(shape, rows, rng)
    return context, rows, extra


def _month_words(rng: random.Random, m: int) -> str:
    return rng.choice([f"in {MONTHS[m - 1]} 2024", f"during 2024-{m:02d}", f"in {MONTHS[m - 1][:3]} 2024"])


def _case(rng: random.Random, name: str) -> str:
    return rng.choice([name, name.upper(), name.lower()])


_FILTERS = {
    "customer": lambda rng, v: rng.choice([f"placed by {_case(rng, v)}", f"from {_case(rng, v)}"]),
    "month": lambda rng, v: _month_words(rng, v),
    "region": lambda rng, v: rng.choice([f"shipped to the {_case(rng, v)} region", f"in region {_case(rng, v)}"]),
    "category": lambda rng, v: rng.choice([f"in the {_case(rng, v)} category", f"for {v.lower()} products"]),
}


def _value(row: dict[str, Any], key: str) -> Any:
    return int(row["date"][5:7]) if key == "month" else row[key]


def _filters(rng: random.Random, rows: list[dict[str, Any]], keys: list[str], at_least: int) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """Filter values taken from a row, redrawn until ``at_least`` rows match; returns (filters, matching rows)."""
    for _ in range(200):
        pick = rng.choice(rows)
        want = {k: _value(pick, k) for k in keys}
        hit = [r for r in rows if all(_value(r, k) == v for k, v in want.items())]
        if len(hit) >= at_least:
            return want, hit
    return want, hit


def _phrase(rng: random.Random, want: dict[str, Any]) -> str:
    parts = [_FILTERS[k](rng, v) for k, v in want.items()]
    return " ".join(parts)


def _aggregate(op: str, rng: random.Random, shape: str, size: int) -> Built:
    rows = _rows(rng, shape, size)
    context, rows, extra = _trim(rows, shape, size, rng)
    n_filters = 2 if op == "count" else rng.choice([1, 2])
    keys = rng.sample(["customer", "month", "region", "category"] if op != "sum" else ["customer", "month", "region"], n_filters)
    if op == "sum" and n_filters == 2 and "customer" not in keys:
        keys[0] = "customer"
    want, hit = _filters(rng, rows, keys, 1 if op in ("count", "max") else 2)
    where = _phrase(rng, want)
    meta: dict[str, Any] = {"op": op, "filters": want, "matching_rows": len(hit), "rows": len(rows), **extra}
    if op == "sum":
        gold: Any = sum(round(r["amount"] * 100) for r in hit) / 100
        q = rng.choice([f"What is the total amount of the orders {where}?", f"What is the sum of the amount column over orders {where}?",
                        f"What was the combined revenue from orders {where}?", f"How much money did the orders {where} bring in?"])
    elif op == "avg":
        column = rng.choice(["amount", "amount", "quantity"])
        gold = round(sum(r[column] for r in hit) / len(hit), 4)
        meta["column"] = column
        q = (rng.choice([f"What is the average order amount {where}?", f"On average, how much was an order {where}?",
                         f"What is the mean of the amount over orders {where}?"]) if column == "amount" else
             rng.choice([f"What is the average quantity per order {where}?", f"On average, how many units did an order {where} have?"]))
    elif op == "max":
        gold = max(r["amount"] for r in hit)
        q = rng.choice([f"What is the largest single order amount {where}?", f"What was the biggest order {where}, by amount?",
                        f"What is the maximum amount of one order {where}?"])
    else:
        gold = len(hit)
        q = rng.choice([f"How many orders were there {where}?", f"Count the orders {where}.", f"What is the number of orders {where}?"])
    return Built(context, ask(rng, q, "number"), gold, "count" if op == "count" else "number", {**meta, "rel_tol": 0.001})


def _generator(op: str) -> Build:
    def build(rng: random.Random, shape: str, size: int) -> Built:
        return _aggregate(op, rng, shape, size)
    build.__doc__ = f"The {op} of orders matching one or two filters."
    return build


FAMILY = Family("tables", __doc__.split("\n")[0], {op: _generator(op) for op in ("sum", "avg", "max", "count")},
                ("csv", "rows", "json", "columns"), 4_000, 2_000_000)
