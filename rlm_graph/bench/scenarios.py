"""The four overhead scenarios, each a function of the shared :class:`~rlm_graph.bench.overhead.Bench`.

Every scenario starts a :class:`~rlm_graph.bench.loopback.LoopbackServer` with a script, runs each
library's job in its own process against it, and turns the server's records into one row per
configuration. See :mod:`rlm_graph.bench.overhead` for what each one measures.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import statistics
import time
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_graph.bench import jobs
from rlm_graph.bench.loopback import LoopbackServer, Request
from rlm_graph.bench.measure import TreeMemory

if TYPE_CHECKING:
    from rlm_graph.bench.overhead import Bench

MB = 1_000_000

# -- scripts ---------------------------------------------------------------------------------


def repl(code: str) -> str:
    return f"```repl\n{code}\n```"


def final_reply(library: str) -> str:
    """The last turn: a cell that answers "done" the way each library expects (``rlms`` ends only on a
    cell that sets ``answer["ready"]``; rlm-graph on ``FINAL``, here of a variable, which reads the same
    whether FINAL is taken from the code or from the reply's text)."""
    if library == "rlms":
        return repl('answer["content"] = "done"\nanswer["ready"] = True')
    return repl('result = "done"\nFINAL(result)')


def loop_script(library: str, n: int, cells: dict[int, str] | None = None) -> Callable[[int], str]:
    """``n`` turns: trivial cells (or ``cells[turn]``), then the final cell."""

    def root(turn: int) -> str:
        if turn >= n - 1:
            return final_reply(library)
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
            end = size // 2 if not placed else size  # stop at the middle to put the needle there
            piece = block[: max(0, min(len(block), end - written))]
            f.write(piece)
            written += len(piece)
    os.replace(tmp, path)
    return path


# -- scenarios -------------------------------------------------------------------------------


def measure_iterations(b: Bench) -> list[dict[str, Any]]:
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


def measure_fanout(b: Bench) -> list[dict[str, Any]]:
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


def measure_context(b: Bench) -> list[dict[str, Any]]:
    rows = []
    for size in b.cfg.context_sizes:
        path = context_file(b.cfg.scratch / "contexts", size)
        for library in b.cfg.libraries:
            b.say(f"context: {library} {size / MB:g} MB")
            with LoopbackServer(lambda turn, lib=library: repl("print(len(context))") if turn == 0 else final_reply(lib)) as srv:
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
                    # the whole file was loaded: the cell printed its length, and the model was shown it
                    row["answer_ok"] = run["answer"] == "done" and len(roots) > 1 and str(size) in roots[1].tail
                rows.append(row)
    return rows


def resume_server(script: Callable[[int], str], on_arrival: Callable[[Request], None]) -> LoopbackServer:
    """The resume scenario's server. It writes each reply in two writes (headers, then body): the
    first write to a client that was killed still succeeds, the second fails, so a reply written
    after the kill is recorded ``delivered=False``. With one write it would pass for delivered,
    and a call that was still in flight at the kill would count as answered before it."""
    return LoopbackServer(script, latency=0.02, sub_latency=0.05, on_arrival=on_arrival, split_writes=True)


def measure_resume(b: Bench) -> list[dict[str, Any]]:
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
            with resume_server(script, on_arrival) as srv:
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
                # the calls in flight at the kill are still being answered (to a dead client): wait
                # until every reply has been written or has failed before reading `delivered`
                srv.settle()
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
                    "calls_in_flight_at_kill": mark - len(first),  # made before the kill, answer never delivered
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
