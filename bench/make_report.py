"""Regenerate docs/benchmarks.md and docs/img/*.png from benchmark results.

    python bench/make_report.py              # collect bench/results/ into docs/benchmarks.json, then render
    python bench/make_report.py --render     # render from the committed docs/benchmarks.json only

bench/results/ (gitignored) holds the raw output of ``rlm-graph bench overhead`` (overhead-*.json; the
newest file wins, or name one with --overhead) and of ``rlm-graph bench quality`` (quality/<method>/<task>.json).
Collecting writes the compact summary docs/benchmarks.json, which is committed; rendering reads only that
file, so the report can be rebuilt without the raw results. Hand-written remarks go in the summary's
"notes" list; collecting keeps them.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rlm_graph.bench.families import FAMILIES
from rlm_graph.bench.scoreboard import SLOW_SECONDS, family_rows, family_scores

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
DOCS = ROOT / "docs"

#: Keys of an overhead row kept in the summary (raw samples stay in bench/results).
_DROP = ("samples_overhead_per_iter_ms", "samples_cell_s", "samples_load_ms")


# -- collect ---------------------------------------------------------------------------------


def _newest(paths: Sequence[Path]) -> Path | None:
    return max(paths, key=lambda p: p.stat().st_mtime) if paths else None


def collect(results: Path, overhead_file: Path | None, previous: dict[str, Any]) -> dict[str, Any]:
    """The compact summary of the raw results (keeping the previous summary's notes and any part
    for which there are no raw results).

    Each overhead scenario's table comes from the newest result file that measured it; the
    per-iteration and fan-out numbers of every file are kept as ``runs`` to show the spread.
    """
    out: dict[str, Any] = {"notes": previous.get("notes", [])}
    files = [overhead_file] if overhead_file else sorted(results.glob("overhead-*.json"), key=lambda p: p.stat().st_mtime)
    raws = [(f, json.loads(f.read_text())) for f in files]
    if raws:
        rows: list[dict[str, Any]] = []
        before = previous.get("overhead") or {}
        kept = before.get("rows") or []
        for scenario in ("iterations", "fanout", "context", "resume", "checkpoints"):
            for f, raw in reversed(raws):
                mine = [r for r in raw["rows"] if r["scenario"] == scenario]
                if mine:
                    rows += [{**{k: v for k, v in r.items() if k not in _DROP}, "source": f.name} for r in mine]
                    break
            else:  # not measured this time: the summary's rows stay
                rows += [r for r in kept if r.get("scenario") == scenario]
        newest = raws[-1][1]
        runs = [{"source": f.name, "machine": raw["machine"], "scenarios": sorted({r["scenario"] for r in raw["rows"]}),
                 "spread": [_spread_row(r) for r in raw["rows"] if r["scenario"] in ("iterations", "fanout")]} for f, raw in raws]
        sources = {r["source"] for r in runs}
        runs = [r for r in before.get("runs") or [] if r["source"] not in sources] + runs
        out["overhead"] = {
            "runs": runs,
            "machine": newest["machine"],
            "versions": {**before.get("versions", {}), **newest["versions"]},
            "config": {**before.get("config", {}), **newest["config"]},
            "rows": rows,
            "notes": sorted({*before.get("notes", []), *(n for _, raw in raws for n in raw.get("notes", []))}),
        }
    elif "overhead" in previous:
        out["overhead"] = previous["overhead"]
    startup = results / "cli-startup.json"
    if startup.exists():
        out["cli_startup"] = json.loads(startup.read_text())
    elif "cli_startup" in previous:
        out["cli_startup"] = previous["cli_startup"]
    records = [json.loads(p.read_text()) for p in sorted((results / "quality").glob("*/*.json"))]
    # A task measured again replaces its row; every other row of the summary stays.
    tasks = {(t["method"], t["task"]): t for t in (previous.get("quality") or {}).get("tasks") or []}
    tasks.update({(r["method"], r["task"]): _compact(r) for r in records})
    if tasks:
        out["quality"] = {"tasks": sorted(tasks.values(), key=lambda t: (t["method"], t["kind"], t["size"], t["task"]))}
    before = [json.loads(p.read_text()) for p in sorted((results / "quality-before").glob("rlm/*.json"))]
    if before:
        out["quality_before"] = {"tasks": [_compact(r) for r in before]}
    elif "quality_before" in previous:
        out["quality_before"] = previous["quality_before"]
    # A task whose trajectory is here replaces its row; the other tasks' rows stay (like the quality rows).
    fired = {h["task"]: h for h in previous.get("helpers") or []}
    fired.update({h["task"]: h for h in helper_usage(results / "quality" / "trajectories")})
    if fired:
        out["helpers"] = sorted(fired.values(), key=lambda h: h["task"])
    return out


#: Issue 14's helpers and guards, as they show in a run's trajectory log: (name, text that shows it fired).
HELPER_MARKERS: tuple[tuple[str, tuple[str, ...]], ...] = (
    ("layout facts in the first message (columns, record keys, field values)",
     ("It is a table: a header line", "Each item is a dict with the keys", "Fields that take only a few values")),
    ("search by field value (search('warning') -> level WARN)", ("(a field's value",)),
    ("filter notes (capitals against .lower(), a literal not in the data)",
     ("has capital letters but is compared", "with these capitals, only with others", "as written. search(")),
    ("runner's own search when stuck or after 'not found'", ("The runner searched the context",)),
    ("non-answer sent back ('not found', placeholders)", ("says the value is not there",)),
    ("uncounted count sent back", ("is not a count your code printed", "is not a number your code printed")),
    ("no answer before any output", ("before seeing any output",)),
    ("runner's count by the fields the question names", ("The question names values of the data's fields",)),
    ("answer from code that never looked for the question's words", ("comes from code that never looked for",)),
    ("judge() code given for a count over short texts", ("Counting by words in the text cannot answer this",)),
    ("a table also given as rows (columns, CSV, JSON text)", ("The variable `rows` holds", "the variable `rows` holds it")),
    ("next-step check (a first-step answer shown what the context says about it)", ("is what the context says about",)),
    ("subject check (an answer naming what the question names)", ("is what the question names, not what it asks for",)),
    ("named lists (`lists`: titled sections, records grouped by list)", ("maps each title to its lines", "already grouped for you")),
    ("paging note (context printed a slice at a time)", ("a slice at a time",)),
    ("short-texts note (a word filter over reviews or tickets found nothing: judge() instead)", ("is a collection of short texts",)),
    ("classify() offered (a context of short texts)", ("`classify(items, labels)`",)),
    ("answer from a filter that cannot match sent back", ("comes from code whose filter cannot match",)),
    ("context['rows'] note (a helper variable read as a key)", ("is a variable of its own, not a key of `context`",)),
    ("a column looped over as rows: note naming `rows`", ("is one column, a list of plain values",)),
    ("paging again: the runner's search shown", ("You are still reading `context` a slice at a time",)),
    ("a row loop over one column run over `rows`", ("so the runner ran your loop over `rows`",)),
    ("a dict key written in other capitals: note naming it", ("note: the data writes the key",)),
    ("label re-run (a filter for a label word re-run with classify() answering it)", ("again with each label test answered by classify()",)),
    ("runner's label counts over the context (a loop on a question that lists labels)", ("The runner asked the model which label fits each",)),
    ("a log's lines given as rows (access log, logfmt)", ("It is a log whose lines have fields",)),
    ("field search leaving out words the data never writes", ("not in the data, left out)",)),
    ("own parse over `rows` that found nothing: rows given back", ("builds its own `rows` and found nothing",)),
    ("a number field compared with text (or text with a number): note", ("not text: compare it with", "not numbers: compare it with")),
    ("next-step reading offered (the sub-model read the next step's lines)", ("Read with the question, these lines give",)),
    ("a cell's own `lists`/`rows` that failed or repeated the runner's: the runner's kept",
     ("your own `lists = ...` failed", "your own `rows = ...` failed", "own `lists = {...}` was skipped")),
    ("a placeholder `context = ...` line skipped, the rest of the cell run", ("was skipped: `context` already holds the whole data",)),
    ("a number from code that never tests a condition the question states: sent back", ("comes from code whose filter is not the question's",)),
    ("a filter test the question never names, found nothing: note", ("that test is your own, and with it",)),
    ("a slice of a table's raw text: note with rows[0]", ("that is a piece of the raw text",)),
    ("runner's label counts of the items the question's fields pick (a user, a month)", ("that meet the question's conditions",)),
    ("a number over a field the question does not name (quantity for amount): sent back", ("where the question asks about the",)),
    ("the model's cells re-run with the question's filter and field, their value offered", ("The runner ran your cell with",)),
    ("runner's figures over the rows the question's conditions keep (sum, mean, largest, smallest)",
     ("The runner computed these over the rows",)),
    ("an answer off the line of someone sharing the subject's name: the subject's lines shown",
     ("is not what the context says about",)),
    ("a month's name alone tested against ISO days: note with the month as the data writes it",
     ("does not occur in `context` as written: the data writes dates as",)),
)


def helper_usage(trajectories: Path) -> list[dict[str, Any]]:
    """Which helpers and guards fired in each task's run: ``[{"task", "fired": [names]}]``."""
    out = []
    for folder in sorted(p for p in trajectories.glob("*") if p.is_dir()):
        text = "\n".join(f.read_text(errors="replace") for f in sorted(folder.glob("*.jsonl")))
        if not text:
            continue
        fired = [name for name, marks in HELPER_MARKERS if any(m in text for m in marks)]
        out.append({"task": folder.name, "fired": fired})
    return out


def _spread_row(r: dict[str, Any]) -> dict[str, Any]:
    if r["scenario"] == "iterations":
        keys = ("scenario", "library", "checkpointer", "latency_s", "overhead_per_iter_ms", "steady_per_iter_ms", "wall_s")
    else:
        keys = ("scenario", "library", "checkpointer", "concurrency", "ratio_to_floor")
    return {k: r.get(k) for k in keys}


def _compact(r: dict[str, Any]) -> dict[str, Any]:
    answer = None if r.get("answer") is None else " ".join(str(r["answer"]).split())[:80]
    return {
        "method": r["method"],
        "task": r["task"],
        "kind": r["kind"],
        "size": int(r.get("requested_size", r.get("size_chars")) or 0),
        "score": r["score"],
        "seconds": r.get("seconds"),
        "iterations": r.get("iterations"),
        "subcalls": r.get("subcalls"),
        "tokens": (r.get("tokens") or {}).get("total"),
        "answer": answer,
        "gold": r.get("gold") if not isinstance(r.get("gold"), list) else f"{len(r['gold'])} {'pairs' if r.get('scorer') == 'pairs_f1' else 'items'}",
        "error": (r.get("error") or "")[:160] or None,
        "stopped_by": r.get("stopped_by"),
        "model": r.get("model"),
        "date": r.get("date"),
        **{k: r[k] for k in ("split", "family", "generator", "shape", "revision") if r.get(k) is not None},
    }


# -- tables ----------------------------------------------------------------------------------


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    def cell(v: Any) -> str:
        if v is None:
            return "–"
        if isinstance(v, float):
            return f"{v:,.3g}" if abs(v) < 1000 else f"{v:,.0f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def _bytes(n: float) -> str:
    for unit, div in (("GB", 10**9), ("MB", 10**6), ("KB", 10**3)):
        if n >= div:
            return f"{n / div:g} {unit}"
    return f"{n:g} B"


def _chars(n: int) -> str:
    for unit, div in (("G", 10**9), ("M", 10**6), ("K", 10**3)):
        if n >= div:
            return f"{n / div:g}{unit}"
    return str(n)


def _rows(summary: dict[str, Any], scenario: str) -> list[dict[str, Any]]:
    return [r for r in summary.get("overhead", {}).get("rows", []) if r["scenario"] == scenario]


def _pick(rows: Sequence[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
    return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)


def _is_family(t: dict[str, Any]) -> bool:
    """A task of the generalisation families (dev or test split), which the split section reports."""
    return bool(t.get("split")) or str(t.get("task", "")).startswith(("dev-", "test-"))


def quality_groups(tasks: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean score, time and tokens per (suite, size, method), family tasks left out."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for t in (t for t in tasks if not _is_family(t)):
        groups.setdefault((t["kind"], t["size"], t["method"]), []).append(t)
    out = []
    for (kind, size, method), ts in sorted(groups.items()):
        secs = [float(t["seconds"] or 0) for t in ts]
        out.append({"kind": kind, "size": size, "method": method, "n": len(ts),
                    "score": sum(t["score"] for t in ts) / len(ts), "seconds": sum(secs) / len(secs),
                    "tokens": sum(int(t["tokens"] or 0) for t in ts) / len(ts),
                    "errors": sum(1 for t in ts if t["error"])})
    return out


# -- targets ---------------------------------------------------------------------------------


def targets(summary: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(target, what was measured, met / missed / not measured)."""
    out: list[tuple[str, str, str]] = []

    def verdict(ok: bool | None) -> str:
        return "not measured" if ok is None else "met" if ok else "missed"

    it = _rows(summary, "iterations")
    ref = {r["latency_s"]: r for r in it if r["library"] == "rlms"}
    spread = [[x for x in run["spread"]] for run in summary.get("overhead", {}).get("runs", [])]

    def across(fn: Any, unit: str = "") -> str:
        """' (all runs: lo–hi)' of fn(rows of one run), over the runs where it is defined."""
        vals = [v for v in (fn(rows) for rows in spread) if v is not None]
        fmt = ".0f" if unit else ".2f"
        return f" (all {len(vals)} runs: {min(vals):{fmt}}–{max(vals):{fmt}}{unit})" if len(vals) > 1 else ""

    def one(rows: list[dict[str, Any]], **match: Any) -> dict[str, Any] | None:
        return _pick(rows, **match)

    for ck in ("sqlite", "postgres"):
        for r in (r for r in it if r["library"] == "rlm-graph" and r["checkpointer"] == ck):
            rr = ref.get(r["latency_s"])
            if rr and rr["overhead_per_iter_ms"]:
                ratio = r["overhead_per_iter_ms"] / rr["overhead_per_iter_ms"]
                steady = r["steady_per_iter_ms"] / rr["steady_per_iter_ms"]
                lat = r["latency_s"]

                def run_ratio(rows: list[dict[str, Any]], key: str, ck: str = ck, lat: float = lat) -> float | None:
                    a = one(rows, scenario="iterations", library="rlm-graph", checkpointer=ck, latency_s=lat)
                    b = one(rows, scenario="iterations", library="rlms", latency_s=lat)
                    return a[key] / b[key] if a and b and b[key] else None

                out.append((f"per-iteration overhead ≤ rlms, {ck} checkpoints, {r['latency_s'] * 1000:g} ms model latency",
                            f"ratio {ratio:.2f} over the whole run ({r['overhead_per_iter_ms']:.1f} vs {rr['overhead_per_iter_ms']:.1f} ms)"
                            f"{across(lambda rows: run_ratio(rows, 'overhead_per_iter_ms'))}; "
                            f"steady state {steady:.2f} ({r['steady_per_iter_ms']:.1f} vs {rr['steady_per_iter_ms']:.1f} ms)"
                            f"{across(lambda rows: run_ratio(rows, 'steady_per_iter_ms'))}",
                            "met" if max(ratio, steady) <= 1.0 else "missed" if min(ratio, steady) > 1.0
                            else f"whole run {verdict(ratio <= 1.0)}, steady state {verdict(steady <= 1.0)}"))
    for r in (r for r in _rows(summary, "fanout") if r["library"] == "rlm-graph"):
        if r["cell_s"] is not None:
            def fan(rows: list[dict[str, Any]], r: dict[str, Any] = r) -> float | None:
                x = one(rows, scenario="fanout", library="rlm-graph", checkpointer=r["checkpointer"], concurrency=r["concurrency"])
                return x["ratio_to_floor"] if x else None

            out.append((f"fan-out ≤ 1.2 × floor, concurrency {r['concurrency']} ({r['checkpointer']} checkpoints)",
                        f"{r['cell_s']:.2f} s vs floor {r['floor_s']:.2f} s = {r['ratio_to_floor']:.2f} ×{across(fan)}",
                        verdict(r["ratio_to_floor"] <= 1.2)))
    big = [r for r in _rows(summary, "context") if r["library"] == "rlm-graph" and r["size_bytes"] >= 10**9]
    for r in big:
        out.append((f"{_bytes(r['size_bytes'])} context: peak RSS (host + sandbox) ≤ 1.5 × size",
                    f"{r['peak_rss_bytes'] / 1e9:.2f} GB sampled = {r['rss_ratio']:.2f} × (per-process high-water marks: {r['hwm_ratio']:.2f} ×)"
                    + (f"; failed: {r['error'][:80]}" if r.get("error") else ""),
                    verdict(r["rss_ratio"] <= 1.5 and not r.get("error"))))
    for r in (r for r in _rows(summary, "resume") if r["library"] == "rlm-graph"):
        out.append((f"zero repeated LLM calls on resume, killed {r['killed']}",
                    f"{r['repeated_calls']} repeated" + (f" (answered {r['repeated_answered_ms_before_kill']} ms before the kill)" if r["repeated_calls"] else ""),
                    verdict(r["repeated_calls"] == 0 and not r.get("error"))))
    out += _storage_targets(_rows(summary, "checkpoints"))
    for r in (r for r in it if r["library"] == "rlm-graph" and r["checkpointer"] != "none"):
        base = _pick(it, library="rlm-graph", checkpointer="none", latency_s=r["latency_s"])
        if base and base["wall_s"]:
            extra = 100 * (r["wall_s"] / base["wall_s"] - 1)

            def cost(rows: list[dict[str, Any]], r: dict[str, Any] = r) -> float | None:
                a = one(rows, scenario="iterations", library="rlm-graph", checkpointer=r["checkpointer"], latency_s=r["latency_s"])
                b = one(rows, scenario="iterations", library="rlm-graph", checkpointer="none", latency_s=r["latency_s"])
                return 100 * (a["wall_s"] / b["wall_s"] - 1) if a and b and b["wall_s"] else None

            out.append((f"checkpoint overhead ≤ 10 % wall time, {r['checkpointer']}, {r['latency_s'] * 1000:g} ms model latency",
                        f"+{extra:.1f} % ({r['wall_s']:.2f} s vs {base['wall_s']:.2f} s for 30 iterations){across(cost, ' %')}", verdict(extra <= 10)))
    helprow = _pick((summary.get("cli_startup") or {}).get("rows") or [], command="rlm-graph --help")
    if helprow:
        out.append(("`rlm-graph --help` ≤ 0.5 s over a bare Python start",
                    f"+{helprow['over_bare_wall_s']:.3f} s wall, +{helprow['over_bare_cpu_s']:.3f} s CPU (medians of {helprow['repeats']} paired runs)",
                    verdict(helprow["over_bare_wall_s"] <= 0.5)))
    groups = quality_groups(summary.get("quality", {}).get("tasks", []))
    big_sniah = [g for g in groups if g["kind"] == "sniah" and g["size"] >= 1_000_000]
    for size in sorted({g["size"] for g in big_sniah}):
        rlm = _pick(big_sniah, size=size, method="rlm")
        base = _pick(big_sniah, size=size, method="base")
        if rlm:
            text = f"rlm {rlm['score']:.0%} (n={rlm['n']})" + (f", base {base['score']:.0%} (n={base['n']})" if base else "")
            ok = rlm["score"] >= 0.9 and (base is None or base["score"] < 0.5)
            out.append((f"S-NIAH at {_chars(size)} chars: RLM ≥ 90 % with the embedded model, base fails", text, verdict(ok)))
    if not big_sniah:
        out.append(("S-NIAH at 1M+ chars: RLM ≥ 90 %, base fails", "no S-NIAH task of 1M+ characters in the results", verdict(None)))
    return out + _split_targets(summary, verdict)


def _split_targets(summary: dict[str, Any], verdict: Any) -> list[tuple[str, str, str]]:
    """Issue 14's bar, on the test split with the embedded model: mean ≥ 0.80, no family below 0.5, every task ≤ 300 s."""
    scores = family_scores([t for t in summary.get("quality", {}).get("tasks", []) if _is_family(t)])
    test, dev = scores.get(("test", "rlm")), scores.get(("dev", "rlm"))
    if not test:
        return [("test split: mean ≥ 0.80, no family below 0.5, every task ≤ 300 s (rlm)", "no test-split results", verdict(None))]
    worst = min(test["families"].items(), key=lambda kv: kv[1]["score"])
    base = scores.get(("test", "base"))
    return [
        ("test split: mean ≥ 0.80 with the embedded model (rlm)",
         f"{test['mean']:.3f} over {test['n']} tasks" + (f" (dev {dev['mean']:.3f})" if dev else "") + (f"; base {base['mean']:.3f}" if base else ""),
         verdict(test["mean"] >= 0.8)),
        ("test split: no family below 0.5 (rlm)", f"lowest: {worst[0]} {worst[1]['score']:.2f} ({worst[1]['n']} tasks)",
         verdict(worst[1]["score"] >= 0.5)),
        (f"test split: every task ≤ {SLOW_SECONDS:g} s (rlm)", f"largest {test['max_seconds']:.0f} s; {test['slow']} over",
         verdict(test["slow"] == 0)),
    ]


# -- plots -----------------------------------------------------------------------------------


def _pyplot() -> Any:
    """matplotlib.pyplot on the file-only Agg backend (no display here)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig: Any, path: Path) -> None:
    """Write ``fig`` as a PNG and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_quality(summary: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    groups = [g for g in quality_groups(summary.get("quality", {}).get("tasks", [])) if g["kind"] != "smoke"]
    kinds = sorted({g["kind"] for g in groups})
    if not kinds:
        return False
    fig, axes = plt.subplots(1, len(kinds), figsize=(4.8 * len(kinds), 3.6), squeeze=False)
    for ax, kind in zip(axes[0], kinds):
        for method in sorted({g["method"] for g in groups if g["kind"] == kind}):
            pts = sorted((g["size"], g["score"], g["n"]) for g in groups if g["kind"] == kind and g["method"] == method)
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=method)
            for x, y, n in pts:
                ax.annotate(f"n={n}", (x, y), textcoords="offset points", xytext=(4, 4), fontsize=7)
        ax.set_xscale("log")
        ax.set_ylim(-0.05, 1.05)
        ax.set_title(kind)
        ax.set_xlabel("context size (characters)")
        ax.set_ylabel("mean score")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_overhead(summary: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    it, fan, ctx = _rows(summary, "iterations"), _rows(summary, "fanout"), _rows(summary, "context")
    if not (it or fan or ctx):
        return False
    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    ax = axes[0]
    ref = {r["latency_s"]: r for r in it if r["library"] == "rlms"}
    labels, whole, steady = [], [], []
    for r in (r for r in it if r["library"] == "rlm-graph" and r["latency_s"] in ref):
        rr = ref[r["latency_s"]]
        labels.append(f"{r['checkpointer']}\n{r['latency_s'] * 1000:g} ms")
        whole.append(r["overhead_per_iter_ms"] / rr["overhead_per_iter_ms"])
        steady.append(r["steady_per_iter_ms"] / rr["steady_per_iter_ms"])
    xs = range(len(labels))
    ax.bar([x - 0.2 for x in xs], whole, 0.4, label="whole run")
    ax.bar([x + 0.2 for x in xs], steady, 0.4, label="steady state")
    ax.axhline(1.0, color="k", lw=0.8, ls="--")
    ax.set_xticks(list(xs), labels, fontsize=8)
    ax.set_title("per-iteration overhead, rlm-graph / rlms")
    ax.legend(fontsize=8)
    ax = axes[1]
    labels = [f"{r['library']}\n{r['checkpointer']} c={r['concurrency']}" for r in fan if r["ratio_to_floor"]]
    ax.bar(range(len(labels)), [r["ratio_to_floor"] for r in fan if r["ratio_to_floor"]],
           color=["C0" if r["library"] == "rlm-graph" else "C1" for r in fan if r["ratio_to_floor"]])
    ax.axhline(1.2, color="r", lw=0.8, ls="--")
    ax.set_xticks(range(len(labels)), labels, fontsize=7)
    ax.set_title("fan-out 256 × 100 ms: cell time / floor")
    ax = axes[2]
    for lib in sorted({r["library"] for r in ctx}):
        pts = sorted((r["size_bytes"], r["rss_ratio"]) for r in ctx if r["library"] == lib and not r.get("error"))
        ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=lib)
    ax.axhline(1.5, color="r", lw=0.8, ls="--")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("context size (bytes)")
    ax.set_title("peak RSS (host + sandbox) / context size")
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


def plot_turn_cost(summary: dict[str, Any], path: Path) -> bool:
    plt = _pyplot()
    rows = [r for r in _rows(summary, "iterations") if r.get("gap_by_turn_ms") and r["latency_s"] == 0.0]
    if not rows:
        return False
    fig, ax = plt.subplots(figsize=(6.4, 3.8))
    for r in rows:
        ax.plot(range(2, len(r["gap_by_turn_ms"]) + 2), r["gap_by_turn_ms"], label=f"{r['library']} {r['checkpointer']}")
    ax.set_xlabel("root call")
    ax.set_ylabel("ms between a reply and the next call")
    ax.set_title("cost of one turn as the run grows (zero-latency server)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    _save(fig, path)
    return True


# -- the page --------------------------------------------------------------------------------


def render(summary: dict[str, Any], docs: Path) -> str:
    img = docs / "img"
    img.mkdir(parents=True, exist_ok=True)
    have_q = plot_quality(summary, img / "quality_score_vs_size.png")
    have_o = plot_overhead(summary, img / "overhead_ratios.png")
    have_t = plot_turn_cost(summary, img / "turn_cost.png")
    ov = summary.get("overhead", {})
    m = ov.get("machine", {})
    parts = [
        "# Benchmarks",
        "",
        "Generated by `python bench/make_report.py` from [`benchmarks.json`](benchmarks.json); do not edit by hand "
        "(remarks go in that file's `notes`). Benchmarks measure: no test asserts these numbers.",
        "",
        "## What was run",
        "",
        "- `rlm-graph bench overhead`: rlm-graph and the reference library `rlms` "
        f"{ov.get('versions', {}).get('rlms') or ''} (from PyPI, in its own virtual environment) in separate processes "
        "against the same scripted OpenAI-compatible server on loopback, with the same script (only the final cell differs: "
        "`FINAL(...)` vs `answer[\"ready\"] = True`). The server's clock gives each model call's time, which is taken out of the "
        "wall time.",
        "- `rlm-graph bench quality`: seeded tasks (the suites of `rlm_graph/bench/tasks.py`, and the generalisation families of "
        "`rlm_graph/bench/families/` with their dev and test splits) through `rlm` (rlm-graph), `base` (one plain call, "
        "the context cut to the model's 8K-token window) and `rlms`, all on the same embedded model servers "
        "(Qwen2.5-Coder-1.5B-Instruct Q4_K_M, llama.cpp, one server for root calls and one for sub-calls).",
        "",
    ]
    if m:
        v = ov.get("versions", {})
        runs = "; ".join(f"{r['machine'].get('date')} ({', '.join(r['scenarios'])}; load average {r['machine'].get('loadavg')} → "
                         f"{r['machine'].get('loadavg_end')})" for r in ov.get("runs", []))
        parts += [
            f"Machine: {m.get('cpu')}, {m.get('cores')} cores, {m.get('memory_gib')} GiB RAM, {m.get('os')}, Python {m.get('python')}. "
            f"Overhead runs: {runs or m.get('date')}. Each table below comes from the newest run that measured it. "
            "Versions: " + ", ".join(f"{k} {val}" for k, val in v.items() if val) + ".",
            "",
        ]
    notes = list(summary.get("notes", [])) + list(ov.get("notes", []))
    if notes:
        parts += ["Notes:", ""] + [f"- {n}" for n in notes] + [""]
    parts += ["## Targets", "",
              "Verdicts are on the newest run that measured each thing; the ranges show every overhead run "
              "(the machine was shared, see the notes).", "",
              _table(["target", "measured", "verdict"], targets(summary)), ""]
    parts += _overhead_sections(summary, have_o, have_t)
    parts += _split_sections(summary)
    parts += _before_after_sections(summary)
    parts += _quality_sections(summary, have_q)
    parts += _startup_section(summary)
    parts += ["## Reproduce", "", "```sh",
              "rlm-graph bench overhead                      # ~15 min; writes bench/results/overhead-<time>.json",
              "rlm-graph models start",
              "rlm-graph bench quality --method rlm --method base --tasks smoke sniah:8k,128k,1m oolong:8k --n 2",
              "rlm-graph bench quality --method rlms --tasks sniah:8k,128k --n 1",
              "rlm-graph bench quality --split test --method rlm --method base --method rlms   # the generalisation split",
              "python bench/cli_startup.py                   # the command line's start-up; writes bench/results/cli-startup.json",
              "python bench/make_report.py                   # results -> docs/benchmarks.json -> this page",
              "```", "",
              "On a terminal both runners draw a progress bar on stderr (runs or configurations done of N, elapsed",
              "time, ETA), with each run's line printed above it; `--quiet` turns the bar off, and piped or",
              "redirected output never has one.", ""]
    return "\n".join(parts)


def _overhead_sections(summary: dict[str, Any], have_plot: bool, have_turns: bool) -> list[str]:
    parts: list[str] = []
    it = _rows(summary, "iterations")
    if it:
        cfg = summary["overhead"]["config"]
        parts += ["## Framework overhead", "", f"### Per iteration ({cfg['iterations']}-iteration run, one trivial cell per turn, "
                  f"{cfg['repeats']} runs each after one warm-up, medians)", "",
                  "*whole run*: (wall time − time inside the server) / root calls, start-up included. "
                  "*steady state*: median time between a reply and the next root call.", "",
                  _table(["library", "checkpointer", "model latency", "wall (s)", "whole run (ms/iter)", "steady state (ms/iter)", "runs ok"],
                         [[r["library"], r["checkpointer"], f"{r['latency_s'] * 1000:g} ms", r["wall_s"], r["overhead_per_iter_ms"],
                           r["steady_per_iter_ms"], f"{r['runs_ok']}/{r['runs']}"] for r in it]), ""]
        parts += _spread(summary, "iterations")
        if have_turns:
            parts += ["![turn cost](img/turn_cost.png)", ""]
    fan = _rows(summary, "fanout")
    if fan:
        parts += ["### Sub-call fan-out (one cell, `llm_query_batched` of 256 prompts, 100 ms each)", "",
                  "*cell*: from the reply holding the cell to the next root call; *floor*: 0.1 s × ceil(256 / concurrency).", "",
                  _table(["library", "checkpointer", "concurrency", "floor (s)", "cell (s)", "ratio", "most in flight"],
                         [[r["library"], r["checkpointer"], r["concurrency"], r["floor_s"], r["cell_s"], r["ratio_to_floor"], r["max_in_flight"]] for r in fan]), ""]
        parts += _spread(summary, "fanout")
    ctx = _rows(summary, "context")
    if ctx:
        parts += ["### Context load (a text file; one `print(len(context))` cell)", "",
                  "*load*: from handing over the context to the first root call. rlm-graph passes the file's path to the sandbox; "
                  "`rlms` takes the context as a Python string, so its time includes reading the file. *peak RSS*: largest sum over "
                  "the process tree, sampled every 10 ms; *HWM*: sum of each process's own high-water mark.", "",
                  _table(["library", "size", "load (s)", "peak RSS (MB)", "RSS / size", "HWM / size", "ok"],
                         [[r["library"], _bytes(r["size_bytes"]), r.get("load_s"), round(r["peak_rss_bytes"] / 1e6), r["rss_ratio"], r["hwm_ratio"],
                           "yes" if r.get("answer_ok") else (r.get("error") or "no")[:60]] for r in ctx]), ""]
    res = _rows(summary, "resume")
    if res:
        parts += ["### Resume after SIGKILL (30 iterations, a 64-prompt fan-out at turn 5, SQLite checkpoints)", "",
                  "rlm-graph resumes from its checkpoint; `rlms` has no resume, so its row is a fresh start of the same task. "
                  "*repeated*: calls whose reply had been delivered before the kill and that were made again.", "",
                  _table(["library", "killed", "mode", "calls before", "calls after", "repeated", "to first new call (s)", "process start to first call (s)", "total (s)", "answer ok"],
                         [[r["library"], r["killed"], r["mode"], r["calls_before_kill"], r["calls_after"], r["repeated_calls"], r.get("to_first_call_s"),
                           r.get("spawn_to_first_call_s"), r.get("total_s"), r.get("answer_ok")] for r in res]), ""]
    parts += _storage_section(_rows(summary, "checkpoints"))
    if have_plot:
        parts += ["![overhead ratios](img/overhead_ratios.png)", ""]
    return parts


def _startup_section(summary: dict[str, Any]) -> list[str]:
    """The command line's cost before it does anything (bench/cli_startup.py)."""
    st = summary.get("cli_startup")
    if not st:
        return []
    m = st.get("machine", {})
    rows = st["rows"]
    return ["## Command-line start-up", "",
            f"`python bench/cli_startup.py`: whole processes, each run paired with a bare `python -c pass` started just after it "
            f"({rows[0]['repeats']} pairs per command, medians; {m.get('date')}, load average {m.get('loadavg')} → {m.get('loadavg_end')}). "
            f"A bare start took {rows[0]['bare_wall_s']} s wall, {rows[0]['bare_cpu_s']} s CPU. *CPU* is user + system time of the "
            "finished process: on a shared machine wall time waits for a processor, CPU time does not.", "",
            _table(["command", "wall (s)", "CPU (s)", "over bare Python, wall (s)", "over bare Python, CPU (s)", "exit"],
                   [[r["command"], r["wall_s"], r["cpu_s"], r["over_bare_wall_s"], r["over_bare_cpu_s"], ",".join(map(str, r["exit_codes"]))] for r in rows]), ""]


def _storage_targets(rows: Sequence[dict[str, Any]]) -> list[tuple[str, str, str]]:
    """Linear checkpoint storage: the bytes at 80 iterations against those at 20, this code and the baseline."""
    by = {(r["variant"], r["iterations"]): r for r in rows if not r.get("error")}
    now_20, now_80 = by.get(("current", 20)), by.get(("current", 80))
    if not (now_20 and now_80):
        return []
    ratio = now_80["stored_bytes"] / now_20["stored_bytes"]
    text = f"{ratio:.2f} × ({_bytes(now_80['stored_bytes'])} vs {_bytes(now_20['stored_bytes'])})"
    old_20, old_80 = by.get(("baseline", 20)), by.get(("baseline", 80))
    if old_20 and old_80:
        text += f"; before ({old_20.get('revision')}): {old_80['stored_bytes'] / old_20['stored_bytes']:.2f} × ({_bytes(old_80['stored_bytes'])} vs {_bytes(old_20['stored_bytes'])})"
    return [("checkpoint bytes at 80 iterations ≤ 5 × those at 20 (linear storage), SQLite", text, "met" if ratio <= 5 else "missed")]


def _storage_section(rows: Sequence[dict[str, Any]]) -> list[str]:
    if not rows:
        return []
    first = {r["variant"]: r for r in sorted(rows, key=lambda r: r["iterations"], reverse=True) if not r.get("error")}

    def label(r: dict[str, Any]) -> str:
        return f"before ({r['revision']})" if r["variant"] == "baseline" else "after (this code)"

    table = []
    for r in rows:
        base = first.get(r["variant"])
        smallest = min((x for x in rows if x["variant"] == r["variant"] and not x.get("error")), key=lambda x: x["iterations"], default=None)
        growth = r["stored_bytes"] / smallest["stored_bytes"] if smallest and r.get("stored_bytes") and base else None
        table.append([label(r), r["iterations"], _bytes(r["stored_bytes"]) if r.get("stored_bytes") else None,
                      round(r["bytes_per_iteration"] / 1000, 1) if r.get("bytes_per_iteration") else None,
                      round(growth, 2) if growth else None, r.get("checkpoints"), r.get("writes"), r.get("load_ms"),
                      r.get("wall_s"), "yes" if r.get("answer_ok") else (r.get("error") or "no")[:60]])
    return ["### Checkpoint storage (SQLite; each cell prints 1,000 characters)", "",
            "*stored*: the thread's checkpoint and metadata blobs plus its saved writes. *growth*: stored bytes against the shortest run "
            "of the same code (linear storage: 4 × and 16 × for 80 and 320 iterations against 20). *load*: the time to read the "
            "finished thread's state back in a new process (one `get_state`, median after a warm-up). Before: every step wrote the whole "
            "`messages` and `cells` lists again; after: they are delta channels (each step's new items, a snapshot every 100 updates).", "",
            _table(["code", "iterations", "stored", "per iteration (KB)", "growth", "checkpoint rows", "write rows", "load (ms)", "run wall (s)", "ok"], table), ""]


def _spread(summary: dict[str, Any], scenario: str) -> list[str]:
    """The same configurations in every overhead run, side by side (the machine was shared: see the spread)."""
    runs = [r for r in summary.get("overhead", {}).get("runs", []) if scenario in r["scenarios"]]
    if len(runs) < 2:
        return []
    if scenario == "iterations":
        ident, value = ("library", "checkpointer", "latency_s"), "overhead_per_iter_ms"
        caption = "Run to run (whole run, ms/iter; steady state in brackets):"
    else:
        ident, value = ("library", "checkpointer", "concurrency"), "ratio_to_floor"
        caption = "Run to run (cell time / floor):"
    keys: list[tuple[Any, ...]] = []
    for run in runs:
        for r in run["spread"]:
            if r["scenario"] == scenario and tuple(r[k] for k in ident) not in keys:
                keys.append(tuple(r[k] for k in ident))
    rows = []
    for key in keys:
        cells = []
        for run in runs:
            r = next((x for x in run["spread"] if x["scenario"] == scenario and tuple(x[k] for k in ident) == key), None)
            if r is None:
                cells.append(None)
            elif scenario == "iterations":
                cells.append(f"{r[value]:.1f} ({r['steady_per_iter_ms']:.1f})")
            else:
                cells.append(f"{r[value]:.2f}")
        label = list(key)
        if scenario == "iterations":
            label[2] = f"{key[2] * 1000:g} ms"
        rows.append([*label, *cells])
    header = ["library", "checkpointer", "model latency" if scenario == "iterations" else "concurrency"]
    header += [f"run {i + 1} ({r['machine'].get('date', '')[11:16]}, load {r['machine'].get('loadavg', ['?'])[0]})" for i, r in enumerate(runs)]
    return [caption, "", _table(header, rows), ""]


def _split_sections(summary: dict[str, Any]) -> list[str]:
    """Per-family scores of the dev and test splits, each method side by side, and every family task."""
    tasks = [t for t in summary.get("quality", {}).get("tasks", []) if _is_family(t)]
    parts = ["## Generalisation: the dev and test splits", "",
             "Seven task families, each varying the context's shape, the question's wording, the size and where the answer sits "
             "([the generalisation bench](quality-bench.md)). Prompts and helpers are tuned on **dev**; a change is judged by the "
             "**test** mean. A cell is the mean score over the family's tasks (their number in brackets); *mean* is the mean of the "
             f"family means; *>{SLOW_SECONDS:g} s* counts the tasks over the time budget.", ""]
    if not tasks:
        return parts + ["No split results yet: `rlm-graph bench quality --split test --method rlm --method base --method rlms`.", ""]
    cols = [(split, m) for split in ("dev", "test") for m in ("rlm", "base", "rlms")]
    head, rows = family_rows(tasks, list(FAMILIES), columns=cols)
    parts += [_table(head, rows), ""]
    runs = []
    for split, m in cols:
        mine = [t for t in tasks if t["task"].startswith(split + "-") and t["method"] == m]
        if mine:
            revs = sorted({_rev(t) for t in mine})
            dates = sorted(str(t.get("date") or "")[:16] for t in mine)
            runs.append(f"{split} {m}: revision {', '.join(revs)}, {dates[0]} to {dates[-1]}")
    parts += ["Runs: " + "; ".join(runs) + ".", ""]
    parts += ["<details><summary>Every family task</summary>", "",
              _table(["task", "method", "score", "answer", "gold", "time (s)", "iterations", "sub-calls", "stopped by / error"],
                     [[t["task"], t["method"], t["score"], t["answer"], t["gold"], t["seconds"], t["iterations"], t["subcalls"],
                       t["error"] or t["stopped_by"]] for t in sorted(tasks, key=lambda t: (t["task"], t["method"]))]),
              "", "</details>", ""]
    return parts


def _rev(t: dict[str, Any]) -> str:
    """A result's revision: ``bench quality`` writes ``{"commit", "changed"}``, older results a string."""
    rev = t.get("revision")
    if isinstance(rev, dict):
        rev = str(rev.get("commit") or "?") + ("+changes" if rev.get("changed") else "")
    return str(rev or "?")[:12]


def _f2(x: float | None) -> str | None:
    return None if x is None else f"{x:.2f}"


def _before_after_sections(summary: dict[str, Any]) -> list[str]:
    """The test split before and after issue 14's changes, per family, and which helper fired where."""
    before = [t for t in summary.get("quality_before", {}).get("tasks", []) if t["task"].startswith("test-")]
    after = [t for t in summary.get("quality", {}).get("tasks", []) if t["task"].startswith("test-") and t["method"] == "rlm"]
    if not before or not after:
        return []
    b, a = family_scores(before).get(("test", "rlm")), family_scores(after).get(("test", "rlm"))
    if not b or not a:
        return []
    rev_b = ", ".join(sorted({_rev(t) for t in before}))
    rev_a = ", ".join(sorted({_rev(t) for t in after}))
    parts = ["## Issue 14 on the test split: before and after", "",
             f"The test split's tasks, the same embedded model, `rlm` method; before is main at {rev_b} (the previous "
             f"measurement, {len(before)} tasks), after is {rev_a} ({len(after)} tasks). A family mean is over "
             "the tasks each run finished. What changed between them is in the notes above.", ""]
    rows = []
    for fam in FAMILIES:
        if fam in b["families"] or fam in a["families"]:
            sb, sa = b["families"].get(fam, {}).get("score"), a["families"].get(fam, {}).get("score")
            rows.append([fam, _f2(sb), _f2(sa), None if sb is None or sa is None else f"{sa - sb:+.2f}"])
    rows.append(["**mean**", _f2(b["mean"]), _f2(a["mean"]), f"{a['mean'] - b['mean']:+.3f}"])
    parts += [_table(["family", "before", "after", "change"], rows), ""]
    fired = {h["task"]: h["fired"] for h in summary.get("helpers", [])}
    score_b = {t["task"]: t["score"] for t in before}
    score_a = {t["task"]: t["score"] for t in after}
    hrows = []
    for name, _ in HELPER_MARKERS:
        tasks = [t for t, f in fired.items() if name in f and t in score_a and t.startswith("test-")]
        if not tasks:
            hrows.append([name, 0, None, None, None])
            continue
        mb = sum(score_b.get(t, 0.0) for t in tasks) / len(tasks)
        ma = sum(score_a[t] for t in tasks) / len(tasks)
        # in test-mean points if every family weighed its tasks equally: the change on these tasks over all tasks
        pts = sum(score_a[t] - score_b.get(t, 0.0) for t in tasks) / max(1, len(score_a))
        hrows.append([name, len(tasks), _f2(mb), _f2(ma), f"{pts:+.3f}"])
    parts += ["What each helper and guard bought, as far as one run can say: the tasks of the after-run where it fired "
              "(found in the trajectory logs), their mean score before and after, and the change on those tasks in "
              "test-mean points (the sum of their score changes over all 29 tasks). Several helpers often fire in one "
              "task, so the points overlap and do not add up; an ablation (a run with the helper off) would separate "
              "them and was not made.", "",
              _table(["helper or guard", "tasks where it fired", "their score before", "after", "points"], hrows), ""]
    return parts


def _quality_sections(summary: dict[str, Any], have_plot: bool) -> list[str]:
    tasks = [t for t in summary.get("quality", {}).get("tasks", []) if not _is_family(t)]
    if not tasks:
        return ["## Answer quality", "", "No quality results yet.", ""]
    groups = quality_groups(tasks)
    parts = ["## Answer quality", "",
             _table(["task", "size (chars)", "method", "n", "mean score", "mean time (s)", "mean tokens", "errors"],
                    [[g["kind"], _chars(g["size"]) if g["size"] else "small", g["method"], g["n"], round(g["score"], 2), round(g["seconds"], 1),
                      round(g["tokens"]), g["errors"]] for g in groups]), ""]
    if have_plot:
        parts += ["![score against context size](img/quality_score_vs_size.png)", ""]
    parts += ["<details><summary>Every task</summary>", "",
              _table(["task", "method", "score", "answer", "gold", "time (s)", "iterations", "sub-calls", "tokens", "stopped by / error"],
                     [[t["task"], t["method"], t["score"], t["answer"], t["gold"], t["seconds"], t["iterations"], t["subcalls"], t["tokens"],
                       t["error"] or t["stopped_by"]] for t in sorted(tasks, key=lambda t: (t["task"], t["method"]))]),
              "", "</details>", ""]
    return parts


def main(argv: Sequence[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--results", type=Path, default=RESULTS)
    p.add_argument("--overhead", type=Path, help="the overhead result to use (default: the newest)")
    p.add_argument("--docs", type=Path, default=DOCS)
    p.add_argument("--render", action="store_true", help="only render from docs/benchmarks.json")
    a = p.parse_args(argv)
    summary_path = a.docs / "benchmarks.json"
    previous = json.loads(summary_path.read_text()) if summary_path.exists() else {}
    summary = previous if a.render else collect(a.results, a.overhead, previous)
    if not summary:
        print("no results: run `rlm-graph bench overhead` / `rlm-graph bench quality` first", file=sys.stderr)
        return 1
    a.docs.mkdir(parents=True, exist_ok=True)
    if not a.render:
        summary_path.write_text(json.dumps(summary, indent=1, ensure_ascii=False) + "\n")
    (a.docs / "benchmarks.md").write_text(render(summary, a.docs))
    print(f"written: {a.docs / 'benchmarks.md'}, {a.docs / 'img'}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
