"""Per-family scores of quality records: the table ``rlm-graph bench quality --split`` prints.

A record is one task's outcome as :mod:`rlm_graph.bench.quality` writes it (``method``, ``task``, ``score``,
``seconds``, and for family tasks ``split`` and ``family``). A split's **mean** is the mean of its family means,
so each family weighs the same whatever its number of tasks.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from rlm_graph.bench import SLOW_SECONDS


def family_of(record: dict[str, Any]) -> str | None:
    """The family of a record (``None`` for the older suites)."""
    return record.get("family") or (record["task"].split("-")[1] if record.get("task", "").startswith(("dev-", "test-")) else None)


def split_of_record(record: dict[str, Any]) -> str | None:
    return record.get("split") or (record["task"].split("-")[0] if record.get("task", "").startswith(("dev-", "test-")) else None)


def read_records(out: Path | str, *, split: str | None = None, methods: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The family-task records under ``out/<method>/*.json`` (optionally one split, some methods)."""
    records = []
    for path in sorted(Path(out).glob("*/*.json")):
        try:
            rec = json.loads(path.read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(rec, dict) or family_of(rec) is None:
            continue
        if (split and split_of_record(rec) != split) or (methods and rec.get("method") not in methods):
            continue
        records.append(rec)
    return records


def family_scores(records: Iterable[dict[str, Any]], slow: float = SLOW_SECONDS) -> dict[tuple[str, str], dict[str, Any]]:
    """(split, method) -> {"families": {family: {"score", "n"}}, "mean", "n", "seconds", "slow", "errors"}."""
    groups: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for r in records:
        split = split_of_record(r)
        if split and family_of(r):
            groups.setdefault((split, r["method"]), []).append(r)
    out: dict[tuple[str, str], dict[str, Any]] = {}
    for key, rs in sorted(groups.items()):
        fams: dict[str, list[float]] = {}
        for r in rs:
            fams.setdefault(str(family_of(r)), []).append(float(r.get("score") or 0.0))
        per = {f: {"score": sum(v) / len(v), "n": len(v)} for f, v in fams.items()}
        secs = [float(r.get("seconds") or 0.0) for r in rs]
        out[key] = {"families": per, "mean": sum(p["score"] for p in per.values()) / len(per), "n": len(rs),
                    "seconds": sum(secs) / len(secs), "max_seconds": max(secs), "slow": sum(1 for s in secs if s > slow),
                    "errors": sum(1 for r in rs if r.get("error"))}
    return out


def family_rows(records: Iterable[dict[str, Any]], families: Sequence[str] | None = None, slow: float = SLOW_SECONDS,
                columns: Sequence[tuple[str, str]] | None = None) -> tuple[list[str], list[list[str]]]:
    """(header, rows): a row per family, a column per (split, method), then the mean, the number of tasks, the
    mean and largest time per task, the tasks over ``slow`` seconds and the errors. Empty when no records."""
    scores = family_scores(records, slow)
    cols = [c for c in (columns or list(scores)) if c in scores]
    if not cols:
        return [], []
    fams = list(families or sorted({f for c in cols for f in scores[c]["families"]}))
    fams = [f for f in fams if any(f in scores[c]["families"] for c in cols)]
    head = ["family"] + [f"{split} {method}" for split, method in cols]
    rows = [[f] + [(f"{scores[c]['families'][f]['score']:.2f} ({scores[c]['families'][f]['n']})" if f in scores[c]["families"] else "-")
                   for c in cols] for f in fams]
    rows.append(["mean"] + [f"{scores[c]['mean']:.3f}" for c in cols])
    rows.append(["tasks"] + [str(scores[c]["n"]) for c in cols])
    rows.append(["s/task"] + [f"{scores[c]['seconds']:.1f}" for c in cols])
    rows.append(["max s"] + [f"{scores[c]['max_seconds']:.1f}" for c in cols])
    rows.append([f">{slow:g} s"] + [str(scores[c]["slow"]) for c in cols])
    rows.append(["errors"] + [str(scores[c]["errors"]) for c in cols])
    return head, rows


def format_table(records: Iterable[dict[str, Any]], families: Sequence[str] | None = None, slow: float = SLOW_SECONDS) -> str:
    """:func:`family_rows` as aligned text."""
    head, rows = family_rows(records, families, slow)
    if not head:
        return "no family-task results"
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells: Sequence[str]) -> str:
        return "  ".join(c.ljust(w) if i == 0 else c.rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))
    return "\n".join([line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)])
