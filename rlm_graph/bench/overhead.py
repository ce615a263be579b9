"""Framework cost of rlm-graph, side by side with the reference library ``rlms``, on a scripted server.

Both libraries run in their own processes against the same :class:`~rlm_graph.bench.loopback.LoopbackServer`
and the same script; only the final cell differs (``FINAL(...)`` here, ``answer["ready"] = True`` in
``rlms``). The server's clock says how long each model call took, so the model's time can be
taken out of each run's wall time:

- ``iterations``: a 30-iteration run, one trivial cell per turn, at zero latency and at a fixed
  latency; rlm-graph without a checkpointer, with SQLite and with Postgres. Reported per iteration:
  (wall - time inside the server) / root calls, and the median gap between a reply and the next
  request (the steady-state cost of one turn).
- ``fanout``: one cell asks ``llm_query_batched`` for 256 prompts that each take 100 ms; the cell's
  time against its floor ``0.1 s * ceil(256 / concurrency)``.
- ``context``: a 1 MB / 100 MB / 1 GB text file as the context; load time and the peak resident
  memory of the whole process tree (host and sandbox).
- ``resume``: a run killed with SIGKILL (between iterations, and in the middle of a fan-out) and
  started again in a new process: time to the first new call, and model calls repeated.

Numbers are measurements, never assertions: nothing here fails on a slow result.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import statistics
import subprocess
import tempfile
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlm_graph.bench import jobs
from rlm_graph.bench.loopback import LoopbackServer, Request
from rlm_graph.bench.measure import TreeMemory, machine, versions

SCENARIOS = ("iterations", "fanout", "context", "resume")
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"
MB = 1_000_000

Progress = Callable[[str], None]


@dataclass
class OverheadConfig:
    """What to measure. Sizes in bytes, times in seconds."""

    scenarios: Sequence[str] = SCENARIOS
    libraries: Sequence[str] = jobs.LIBRARIES
    repeats: int = 5
    iterations: int = 30
    latencies: Sequence[float] = (0.0, 0.1)
    checkpointers: Sequence[str] = ("none", "sqlite", "postgres")
    postgres_url: str = DEFAULT_POSTGRES
    fanout_prompts: int = 256
    fanout_latency: float = 0.1
    concurrencies: Sequence[int] = (16, 64)
    context_sizes: Sequence[int] = (MB, 100 * MB, 1000 * MB)
    resume_kill_turn: int = 20
    resume_fanout_turn: int = 5
    resume_fanout: int = 64
    resume_kill_sub: int = 40
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "rlm-graph-bench")
    rlms_venv: Path | None = None


# -- scripts ---------------------------------------------------------------------------------


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def final_cell(library: str, expression: str = '"done"') -> str:
    """The last turn: a cell that submits ``expression`` the way each library expects."""
    if library == "rlms":
        return repl(f'answer["content"] = str({expression})\nanswer["ready"] = True')
    return repl(f"FINAL(str({expression}))")


def loop_script(library: str, n: int, cells: dict[int, str] | None = None) -> Callable[[int], str]:
    """``n`` turns: trivial cells (or ``cells[turn]``), then the final cell."""

    def root(turn: int) -> str:
        if turn >= n - 1:
            return final_cell(library)
        return repl((cells or {}).get(turn) or f"x{turn} = {turn}\nprint(x{turn})")

    return root


def fanout_cell(n: int) -> str:
    return f"answers = llm_query_batched([f'item {{i}}' for i in range({n})])\nprint(len(answers), answers[0])"


# -- helpers ---------------------------------------------------------------------------------


def _median(xs: Sequence[float]) -> float | None:
    return round(statistics.median(xs), 6) if xs else None


def _max_in_flight(reqs: Sequence[Request]) -> int:
    events = sorted([(r.arrived, 1) for r in reqs] + [(r.done, -1) for r in reqs])
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def postgres_reachable(url: str) -> str | None:
    """None when a Postgres server answers at ``url``, else why not."""
    try:
        import psycopg
    except ImportError:
        return "psycopg is not installed (pip install 'rlm-graph[postgres]')"
    try:
        with psycopg.connect(url, connect_timeout=3):
            return None
    except Exception as exc:  # any driver error means: skip Postgres
        return f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc).strip() else ''}"


def context_file(directory: Path, size: int) -> Path:
    """A text file of ``size`` bytes of S-NIAH filler with one needle in the middle (made once)."""
    from rlm_graph.bench.tasks import FILLER

    path = directory / f"context-{size}.txt"
    if path.exists() and path.stat().st_size == size:
        return path
    directory.mkdir(parents=True, exist_ok=True)
    needle = "One of the special magic numbers for calm-harbor is: 4817263. "
    block = FILLER * (8 * MB // len(FILLER))
    tmp = path.with_suffix(".tmp")
    with tmp.open("w", encoding="ascii") as f:
        written, placed = 0, False
        while written < size:
            if not placed and written >= size // 2:
                f.write(needle)
                written += len(needle)
                placed = True
            piece = block[: min(len(block), size - written)]
            f.write(piece)
            written += len(piece)
    os.replace(tmp, path)
    return path


class _Bench:
    """Shared plumbing of the scenarios: the job runner, the scratch directory, progress."""

    def __init__(self, cfg: OverheadConfig, progress: Progress) -> None:
        self.cfg = cfg
        self.say = progress
        self.rlms_python = jobs.ensure_rlms(cfg.rlms_venv) if "rlms" in cfg.libraries else None
        cfg.scratch.mkdir(parents=True, exist_ok=True)
        self.notes: list[str] = []
        reason = postgres_reachable(cfg.postgres_url) if "postgres" in cfg.checkpointers else "not asked for"
        self.postgres = cfg.postgres_url if reason is None else None
        if reason and "postgres" in cfg.checkpointers:
            self.notes.append(f"Postgres skipped: {reason}")

    def work_dir(self) -> str:
        return tempfile.mkdtemp(prefix="work-", dir=self.cfg.scratch)

    def job(self, library: str, base_url: str, *, checkpointer: str = "none", **extra: Any) -> dict[str, Any]:
        ck: str | None = None
        if library == "rlm-graph" and checkpointer != "none":
            ck = self.postgres if checkpointer == "postgres" else "sqlite"
        return {
            "base_url": base_url,
            "model": "scripted",
            "context": {"text": "hello world"},
            "query": "q",
            "checkpointer": ck,
            "work_dir": self.work_dir(),
            "max_iterations": self.cfg.iterations + 10,
            "retries": 0,
            **extra,
        }

    def run(self, library: str, job: dict[str, Any]) -> dict[str, Any]:
        try:
            return jobs.run(library, job, rlms_python=self.rlms_python, timeout=1800)
        finally:
            shutil.rmtree(job["work_dir"], ignore_errors=True)

    def start(self, library: str, job: dict[str, Any]) -> subprocess.Popen[str]:
        return jobs.start(library, job, rlms_python=self.rlms_python)

    def checkpointers(self, library: str) -> list[str]:
        if library == "rlms":
            return ["none"]  # the reference library has no checkpointing
        return [c for c in self.cfg.checkpointers if c != "postgres" or self.postgres]


# -- scenarios -------------------------------------------------------------------------------


def measure_iterations(b: _Bench) -> list[dict[str, Any]]:
    rows = []
    n = b.cfg.iterations
    for latency in b.cfg.latencies:
        for library in b.cfg.libraries:
            for ck in b.checkpointers(library):
                b.say(f"iterations: {library} checkpointer={ck} latency={latency}s x{b.cfg.repeats}")
                with LoopbackServer(loop_script(library, n), latency=latency) as srv:
                    res = b.run(library, b.job(library, srv.base_url, checkpointer=ck, runs=b.cfg.repeats, warmup=1))
                    per_iter, steady, walls, series, ok = [], [], [], [], 0
                    for r in (r for r in res["runs"] if not r["warmup"]):
                        reqs = srv.between(r["started"], r["ended"])
                        roots = [q for q in reqs if q.role == "root"]
                        wall = r["ended"] - r["started"]
                        walls.append(wall)
                        per_iter.append((wall - sum(q.seconds for q in reqs)) / max(1, len(roots)))
                        gaps = [b2.arrived - a.done for a, b2 in zip(roots, roots[1:])]
                        steady.append(statistics.median(gaps))
                        series.append(gaps)
                        ok += r["answer"] == "done" and len(roots) == n
                rows.append(
                    {
                        "scenario": "iterations",
                        "library": library,
                        "checkpointer": ck,
                        "latency_s": latency,
                        "iterations": n,
                        "runs": len(walls),
                        "runs_ok": ok,
                        "wall_s": _median(walls),
                        "overhead_per_iter_ms": _median([x * 1000 for x in per_iter]),
                        "steady_per_iter_ms": _median([x * 1000 for x in steady]),
                        "samples_overhead_per_iter_ms": [round(x * 1000, 3) for x in per_iter],
                        # the gap before root call k+1, median over runs: does a turn cost more as the run grows?
                        "gap_by_turn_ms": [round(statistics.median(g) * 1000, 2) for g in zip(*series)],
                    }
                )
    return rows


def measure_fanout(b: _Bench) -> list[dict[str, Any]]:
    rows = []
    n, lat = b.cfg.fanout_prompts, b.cfg.fanout_latency
    for conc in b.cfg.concurrencies:
        floor = lat * math.ceil(n / conc)
        for library in b.cfg.libraries:
            for ck in [c for c in b.checkpointers(library) if c in ("none", "sqlite")]:
                b.say(f"fanout: {library} checkpointer={ck} concurrency={conc} x{b.cfg.repeats}")
                script = loop_script(library, 2, {0: fanout_cell(n)})
                with LoopbackServer(script, sub_latency=lat) as srv:
                    job = b.job(library, srv.base_url, checkpointer=ck, runs=b.cfg.repeats, warmup=1, max_concurrency=conc)
                    res = b.run(library, job)
                    cells, spans, flight, ok = [], [], [], 0
                    for r in (r for r in res["runs"] if not r["warmup"]):
                        reqs = srv.between(r["started"], r["ended"])
                        roots = [q for q in reqs if q.role == "root"]
                        subs = [q for q in reqs if q.role == "sub"]
                        if len(roots) < 2 or not subs:
                            continue
                        cells.append(roots[1].arrived - roots[0].done)
                        spans.append(max(q.done for q in subs) - min(q.arrived for q in subs))
                        flight.append(_max_in_flight(subs))
                        ok += len(subs) == n and r["answer"] == "done"
                cell = _median(cells)
                rows.append(
                    {
                        "scenario": "fanout",
                        "library": library,
                        "checkpointer": ck,
                        "concurrency": conc,
                        "prompts": n,
                        "latency_s": lat,
                        "runs": len(cells),
                        "runs_ok": ok,
                        "floor_s": round(floor, 3),
                        "cell_s": cell,
                        "span_s": _median(spans),
                        "ratio_to_floor": round(cell / floor, 3) if cell else None,
                        "max_in_flight": max(flight) if flight else None,
                        "samples_cell_s": [round(x, 4) for x in cells],
                    }
                )
    return rows


def measure_context(b: _Bench) -> list[dict[str, Any]]:
    rows = []
    for size in b.cfg.context_sizes:
        path = context_file(b.cfg.scratch / "contexts", size)
        for library in b.cfg.libraries:
            b.say(f"context: {library} {size / MB:g} MB")
            with LoopbackServer(lambda turn, lib=library: repl("print(len(context))") if turn == 0 else final_cell(lib, "len(context)")) as srv:
                job = b.job(library, srv.base_url, context={"path": str(path)}, runs=1, cell_timeout=1200, timeout=1200)
                spawned = time.monotonic()
                proc = b.start(library, job)
                mem = TreeMemory(proc.pid).start()
                error = None
                try:
                    res = jobs.finish(proc, timeout=1800)
                except jobs.JobError as exc:
                    res, error = None, str(exc)[-600:]
                finally:
                    peak = mem.stop()
                    shutil.rmtree(job["work_dir"], ignore_errors=True)
                exited = time.monotonic()
                roots = [q for q in srv.requests if q.role == "root"]
                row: dict[str, Any] = {"scenario": "context", "library": library, "size_bytes": size, "error": error, **peak}
                row["rss_ratio"] = round(peak["peak_rss_bytes"] / size, 3)
                row["hwm_ratio"] = round(peak["hwm_sum_bytes"] / size, 3)
                row["process_s"] = round(exited - spawned, 3)
                if res is not None and roots:
                    run = res["runs"][0]
                    begin = res.get("context_started", run["started"])  # rlms reads the file before its run
                    row["load_s"] = round(roots[0].arrived - begin, 3)
                    row["run_s"] = round(run["ended"] - run["started"], 3)
                    row["answer_ok"] = run["answer"] == str(size)
                rows.append(row)
    return rows


def measure_resume(b: _Bench) -> list[dict[str, Any]]:
    rows = []
    cfg = b.cfg
    fan_turn = cfg.resume_fanout_turn
    kills = [("root", cfg.resume_kill_turn, f"between iterations (root call {cfg.resume_kill_turn} of {cfg.iterations})"),
             ("sub", cfg.resume_kill_sub, f"mid fan-out (sub-call {cfg.resume_kill_sub} of {cfg.resume_fanout})")]
    for library in cfg.libraries:
        for role, at, label in kills:
            b.say(f"resume: {library} killed {label}")
            state: dict[str, Any] = {"pid": None, "count": 0, "killed_at": None}

            def on_arrival(req: Request) -> None:
                if state["killed_at"] is not None or req.role != role:
                    return
                state["count"] += 1
                if state["count"] == at and state["pid"]:
                    os.kill(state["pid"], signal.SIGKILL)
                    state["killed_at"] = time.monotonic()

            script = loop_script(library, cfg.iterations, {fan_turn: fanout_cell(cfg.resume_fanout)})
            with LoopbackServer(script, latency=0.02, sub_latency=0.05, on_arrival=on_arrival) as srv:
                thread = uuid.uuid4().hex[:12]
                job = b.job(library, srv.base_url, checkpointer="sqlite", thread_id=thread, max_concurrency=8)
                work = job["work_dir"]
                spawned = time.monotonic()
                proc = b.start(library, job)
                state["pid"] = proc.pid
                try:
                    jobs.finish(proc, timeout=600)
                except jobs.JobError:
                    pass  # killed, as planned
                first = [q for q in srv.requests if q.delivered]
                before = {q.key for q in first}
                fresh_first = next((q.arrived for q in srv.requests if q.role == "root"), spawned) - spawned
                mark = len(srv.requests)
                again = {**job, "resume": library == "rlm-graph", "work_dir": work}
                spawned2 = time.monotonic()
                error = None
                try:
                    res = jobs.run(library, again, rlms_python=b.rlms_python, timeout=900)
                except jobs.JobError as exc:
                    res, error = None, str(exc)[-600:]
                finally:
                    shutil.rmtree(work, ignore_errors=True)
                second = srv.requests[mark:]
                repeated = [q for q in second if q.key in before]
                done_at = {q.key: q.done for q in first}
                killed_at = state["killed_at"] or spawned2
                row: dict[str, Any] = {
                    "scenario": "resume",
                    "library": library,
                    "mode": "resume from checkpoint" if library == "rlm-graph" else "start over (no resume in the library)",
                    "killed": label,
                    "killed_by_signal": proc.returncode == -signal.SIGKILL,
                    "calls_before_kill": len(first),
                    "calls_after": len(second),
                    "repeated_calls": len(repeated),
                    # how long before the kill each repeated call had been answered: a few ms means the
                    # answer was received but not yet saved when the process died
                    "repeated_answered_ms_before_kill": sorted(round((killed_at - done_at[q.key]) * 1000, 1) for q in repeated),
                    "cold_start_to_first_call_s": round(fresh_first, 3),
                    "error": error,
                }
                if res is not None and second:
                    run = res["runs"][0]
                    row["to_first_call_s"] = round(second[0].arrived - run["started"], 3)
                    row["spawn_to_first_call_s"] = round(second[0].arrived - spawned2, 3)
                    row["total_s"] = round(run["ended"] - spawned2, 3)
                    row["answer_ok"] = run["answer"] == "done"
                rows.append(row)
    return rows


MEASURES: dict[str, Callable[[_Bench], list[dict[str, Any]]]] = {
    "iterations": measure_iterations,
    "fanout": measure_fanout,
    "context": measure_context,
    "resume": measure_resume,
}


def run_overhead(cfg: OverheadConfig, progress: Progress = print) -> dict[str, Any]:
    """Run the chosen scenarios; return ``{"machine", "versions", "config", "rows", "summary", "notes"}``."""
    unknown = set(cfg.scenarios) - set(SCENARIOS)
    if unknown:
        from rlm_graph.errors import ConfigurationError

        raise ConfigurationError(f"unknown scenario(s) {', '.join(sorted(unknown))}: use {', '.join(SCENARIOS)}")
    b = _Bench(cfg, progress)
    started = machine()
    rows: list[dict[str, Any]] = []
    for name in SCENARIOS:
        if name in cfg.scenarios:
            rows += MEASURES[name](b)
    lib_versions = versions("rlm-graph", "langgraph", "langgraph-checkpoint-sqlite", "langgraph-checkpoint-postgres", "langchain-openai")
    lib_versions["rlms"] = jobs.installed_rlms(Path(cfg.rlms_venv or jobs.DEFAULT_RLMS_VENV)) if b.rlms_python else None
    config = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    return {
        "kind": "overhead",
        "machine": {**started, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": lib_versions,
        "config": config,
        "rows": rows,
        "summary": summarize(rows),
        "notes": b.notes,
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The numbers the targets are stated in: overhead ratios, fan-out ratios, RSS ratios, repeats."""

    def pick(**match: Any) -> dict[str, Any] | None:
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)

    out: dict[str, Any] = {"iteration_ratio": [], "checkpoint_cost": [], "fanout": [], "context": [], "resume": []}
    for r in rows:
        if r["scenario"] == "iterations" and r["library"] == "rlm-graph":
            ref = pick(scenario="iterations", library="rlms", latency_s=r["latency_s"])
            base = pick(scenario="iterations", library="rlm-graph", checkpointer="none", latency_s=r["latency_s"])
            if ref and ref["overhead_per_iter_ms"]:
                out["iteration_ratio"].append(
                    {
                        "checkpointer": r["checkpointer"],
                        "latency_s": r["latency_s"],
                        "ratio": round(r["overhead_per_iter_ms"] / ref["overhead_per_iter_ms"], 3),
                        "steady_ratio": round(r["steady_per_iter_ms"] / ref["steady_per_iter_ms"], 3) if ref["steady_per_iter_ms"] else None,
                    }
                )
            if base and r["checkpointer"] != "none" and base["wall_s"]:
                out["checkpoint_cost"].append(
                    {"checkpointer": r["checkpointer"], "latency_s": r["latency_s"], "extra_wall_pct": round(100 * (r["wall_s"] / base["wall_s"] - 1), 1)}
                )
        elif r["scenario"] == "fanout":
            out["fanout"].append({k: r[k] for k in ("library", "checkpointer", "concurrency", "floor_s", "cell_s", "ratio_to_floor")})
        elif r["scenario"] == "context":
            out["context"].append({k: r.get(k) for k in ("library", "size_bytes", "load_s", "peak_rss_bytes", "rss_ratio", "hwm_ratio", "error")})
        elif r["scenario"] == "resume":
            out["resume"].append({k: r.get(k) for k in ("library", "killed", "repeated_calls", "to_first_call_s", "total_s", "answer_ok")})
    return out
