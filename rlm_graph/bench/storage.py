"""The ``checkpoints`` overhead scenario: how checkpoint storage and the time to load a thread's
state grow with the length of a run.

One run of N iterations (20, 80, 320 by default), each a cell printing 1,000 characters that
differ from turn to turn, with SQLite checkpoints; then the bytes the thread stored (the
checkpoint and metadata blobs plus the saved writes) and, in a new process, the time to load its
state (``RLM.resume`` of the finished thread: one ``get_state``, median of the repeats after a
warm-up). With ``baseline_src`` (a checkout of an older rlm-graph) the same runs are made with that
code too, so the report can show before and after side by side.
"""

from __future__ import annotations

import shutil
import sqlite3
import statistics
import subprocess
import tempfile
import uuid
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_graph.bench import jobs
from rlm_graph.bench.loopback import LoopbackServer
from rlm_graph.bench.scenarios import loop_script

if TYPE_CHECKING:
    from rlm_graph.bench.overhead import Bench

#: A cell whose output is 1,000 characters, different at each turn ``t``.
WIDE_CELL = "print(''.join(chr(97 + (i * 7 + {t}) % 26) for i in range(1000)))"


def stored_bytes(path: Path) -> dict[str, int]:
    """Bytes a SQLite checkpointer holds: checkpoint and metadata blobs, saved writes, and the file."""
    con = sqlite3.connect(path)
    try:
        ck_bytes, ck_rows = con.execute("select coalesce(sum(length(checkpoint) + length(metadata)), 0), count(*) from checkpoints").fetchone()
        wr_bytes, wr_rows = con.execute("select coalesce(sum(length(value)), 0), count(*) from writes").fetchone()
    finally:
        con.close()
    return {"checkpoint_bytes": int(ck_bytes), "write_bytes": int(wr_bytes), "stored_bytes": int(ck_bytes) + int(wr_bytes),
            "checkpoints": int(ck_rows), "writes": int(wr_rows)}


def revision_of(src: Path) -> str | None:
    done = subprocess.run(["git", "-C", str(src), "rev-parse", "--short", "HEAD"], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def measure_checkpoints(b: Bench) -> list[dict[str, Any]]:
    rows = []
    variants: list[tuple[str, Path | None]] = [("current", None)]
    if b.cfg.baseline_src is not None:
        variants.insert(0, ("baseline", Path(b.cfg.baseline_src).resolve()))
    for variant, src in variants:
        for n in b.cfg.checkpoint_iterations:
            b.say(f"checkpoints: {variant} {n} iterations")
            rows.append(_one(b, variant, src, n))
    return rows


def _one(b: Bench, variant: str, src: Path | None, n: int) -> dict[str, Any]:
    # ``python -m`` puts its working directory first on the path: run there to run that checkout
    where = {"cwd": str(src), "env": {"PYTHONPATH": str(src)}} if src is not None else {}
    work = tempfile.mkdtemp(prefix="ck-", dir=b.cfg.scratch)
    thread = uuid.uuid4().hex[:12]
    row: dict[str, Any] = {"scenario": "checkpoints", "library": "rlm-graph", "variant": variant, "iterations": n,
                           "revision": revision_of(src or Path(__file__).resolve().parents[2]), "error": None}
    try:
        cells = {t: WIDE_CELL.format(t=t) for t in range(n - 1)}  # the last turn is the FINAL cell
        with LoopbackServer(loop_script("rlm-graph", n, cells)) as srv:
            job = {**b.job("rlm-graph", srv.base_url, checkpointer="sqlite", thread_id=thread), "work_dir": work, "max_iterations": n + 10}
            first = jobs.run("rlm-graph", job, timeout=3600, **where)["runs"][0]
            row["wall_s"] = round(first["ended"] - first["started"], 3)
            row["answer_ok"] = first["answer"] == "done" and first["iterations"] == n
            row.update(stored_bytes(Path(work) / "checkpoints.sqlite"))
            row["bytes_per_iteration"] = round(row["stored_bytes"] / n)
            again = {**job, "resume": True, "runs": b.cfg.repeats, "warmup": 1}
            loads = [r["ended"] - r["started"] for r in jobs.run("rlm-graph", again, timeout=600, **where)["runs"] if not r["warmup"]]
            row["load_ms"] = round(statistics.median(loads) * 1000, 3)
            row["samples_load_ms"] = [round(x * 1000, 3) for x in loads]
    except jobs.JobError as exc:
        row["error"] = str(exc)[-600:]
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return row
