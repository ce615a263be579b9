"""Profile rlm-graph's host process on the overhead benchmark's jobs, with py-spy (or cProfile).

    python bench/profile_overhead.py --name after --iterations 30 --checkpointer sqlite
    python bench/profile_overhead.py --job fanout --name fanout-after --concurrency 64 --checkpointer none

``--job iterations`` (the default) runs the same job as ``rlm-graph bench overhead --only
iterations`` (trivial cells, a loopback server in this process, the run in its own process).
``--job fanout`` runs the fan-out scenario's job (one cell asks ``llm_query_batched`` for
``--prompts`` prompts, each answered after ``--latency`` seconds, default 0.1, at
``--concurrency``), and first measures the host's CPU per sub-call without a profiler: the
probe reports each run's CPU time (``time.process_time``: every thread of the host process, not
the sandbox worker, not this process's server), and a sub-call costs (CPU of a fan-out run - CPU
of a run whose cell asks for nothing) / prompts, medians over ``--runs`` runs. CPU time, unlike
wall time, stays meaningful on a machine that is busy with something else.

The profile is taken with ``py-spy record --gil`` when py-spy is installed (only the thread
holding the GIL is sampled, so waiting threads do not count) and with cProfile in every thread
otherwise (or with ``--profiler cprofile``), on each thread's CPU clock (so a thread waiting on a
lock or a socket costs nothing): cProfile counts calls exactly but slows small functions down,
so its percentages lean towards code that makes many calls. The raw profile
goes to bench/results/profiles/NAME.txt (py-spy's folded stacks; cProfile's pstats as .pstats;
large, not committed) and a summary of the top functions, by own time and by inclusive time
(py-spy: imports set apart), to bench/profiles/NAME.txt (committed next to the benchmark
numbers). Install py-spy with ``pip install 'rlm-graph[bench]'``.
"""
from __future__ import annotations

import argparse
import collections
import cProfile
import json
import pstats
import statistics
import threading
import time
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

from rlm_graph.bench.loopback import LoopbackServer
from rlm_graph.bench.scenarios import fanout_cell, loop_script

ROOT = Path(__file__).resolve().parents[1]


def summarize(raw: Path, top: int = 40) -> str:
    """Top functions of a py-spy raw (folded) profile: own samples and inclusive samples, in %."""
    own: collections.Counter[str] = collections.Counter()
    incl: collections.Counter[str] = collections.Counter()
    total = imports = 0
    for line in raw.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        n = int(count)
        frames = [re.sub(r" \((?:.*/)?([^/]+)\)$", r" (\1)", f) for f in stack.split(";")]
        total += n
        if any("_find_and_load" in f for f in frames):
            imports += n
            continue
        own[frames[-1]] += n
        for f in set(frames):
            incl[f] += n
    lines = [f"samples: {total} (imports, start-up and lazy: {100 * imports / max(1, total):.1f} %)", "", "own time:"]
    lines += [f"  {100 * v / total:5.1f} %  {f}" for f, v in own.most_common(top)]
    lines += ["", "inclusive time:"]
    lines += [f"  {100 * v / total:5.1f} %  {f}" for f, v in incl.most_common(top)]
    return "\n".join(lines) + "\n"


def summarize_pstats(stats: pstats.Stats, top: int = 40) -> str:
    """Top functions of a cProfile profile: own time and inclusive time, in % of the total."""
    table = stats.stats  # type: ignore[attr-defined]  # {(file, line, name): (cc, nc, tt, ct, callers)}
    total = sum(v[2] for v in table.values()) or 1.0

    def name(key: tuple[str, int, str]) -> str:
        file, line, func = key
        return f"{func} ({Path(file).name}:{line})" if file != "~" else func

    lines = [f"CPU time total: {total:.3f} s (cProfile's clock: each thread's CPU time)", "", "own time:"]
    for key, v in sorted(table.items(), key=lambda kv: -kv[1][2])[:top]:
        lines.append(f"  {100 * v[2] / total:5.1f} %  {v[1]:>7} calls  {name(key)}")
    lines += ["", "inclusive time (a function's own time and its callees'; threads overlap):"]
    for key, v in sorted(table.items(), key=lambda kv: -kv[1][3])[:top]:
        lines.append(f"  {100 * v[3] / total:5.1f} %  {v[1]:>7} calls  {name(key)}")
    return "\n".join(lines) + "\n"


def cprofile_child(out: str, job_file: str) -> None:
    """Run the probe on ``job_file`` with cProfile in every thread; dump the merged stats to ``out``.

    Only the job's measured runs are profiled: the warm-up runs first, unprofiled.
    """
    from rlm_graph.bench import probe

    job = json.loads(Path(job_file).read_text())
    profiles: list[cProfile.Profile] = []
    lock = threading.Lock()

    def start_thread(*_: Any) -> None:  # the first event of a new thread: give it its own profiler
        prof = cProfile.Profile(time.thread_time)
        with lock:
            profiles.append(prof)
        prof.enable()

    if job.get("warmup"):
        probe.run_job({**job, "runs": 0})
    threading.setprofile(start_thread)
    main_prof = cProfile.Profile(time.thread_time)
    main_prof.enable()
    probe.run_job({**job, "warmup": 0})
    main_prof.disable()
    threading.setprofile(None)  # type: ignore[arg-type]
    stats = pstats.Stats(main_prof)
    with lock:
        for prof in profiles:
            prof.disable()
            stats.add(prof)
    stats.dump_stats(out)


def _fanout_cpu(srv_url: str, base_url: str, job: dict[str, Any], work: str, prompts: int) -> dict[str, Any]:
    """CPU per sub-call: probe runs of the fan-out cell and of a cell that asks for nothing."""
    from rlm_graph.bench import jobs

    cpu: dict[str, list[float]] = {}
    for label, url in (("fanout", srv_url), ("empty", base_url)):
        res = jobs.run("rlm-graph", {**job, "base_url": url, "work_dir": tempfile.mkdtemp(dir=work)}, timeout=1800)
        cpu[label] = [r["cpu_s"] for r in res["runs"] if not r["warmup"]]
    fan, empty = statistics.median(cpu["fanout"]), statistics.median(cpu["empty"])
    return {"fanout_cpu_s": cpu["fanout"], "empty_cpu_s": cpu["empty"], "per_subcall_ms": 1000 * (fan - empty) / prompts}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--job", default="iterations", choices=["iterations", "fanout"])
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--latency", type=float, default=None, help="model latency, s (iterations: 0; fanout: each sub-call, 0.1)")
    p.add_argument("--prompts", type=int, default=256, help="fanout: prompts of the cell")
    p.add_argument("--concurrency", type=int, default=64, help="fanout: max_concurrency")
    p.add_argument("--checkpointer", default="sqlite", choices=["none", "sqlite"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--profile-runs", type=int, default=None, help="runs profiled (default: --runs)")
    p.add_argument("--rate", type=int, default=250, help="samples per second (py-spy)")
    p.add_argument("--profiler", default="auto", choices=["auto", "py-spy", "cprofile", "off"],
                   help="auto: py-spy if installed, else cProfile; off: fanout CPU numbers only")
    a = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    profiler = a.profiler if a.profiler != "auto" else ("py-spy" if Path(spy).exists() else "cprofile")
    raw = ROOT / "bench" / "results" / "profiles" / f"{a.name}.{'pstats' if profiler == 'cprofile' else 'txt'}"
    raw.parent.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="profile-")
    env = {**os.environ, "LANGSMITH_TRACING": "false"}
    fanout = a.job == "fanout"
    profiled = a.profile_runs or a.runs
    latency = a.latency if a.latency is not None else (0.1 if fanout else 0.0)
    if fanout:
        script, server = loop_script("rlm-graph", 2, {0: fanout_cell(a.prompts)}), {"sub_latency": latency}
        what = (f"fan-out of {a.prompts} prompts at concurrency {a.concurrency}, {profiled} runs profiled after a warm-up, "
                f"checkpointer {a.checkpointer}, sub-call latency {latency * 1000:g} ms")
    else:
        script, server = loop_script("rlm-graph", a.iterations), {"latency": latency}
        what = (f"{profiled} runs of {a.iterations} iterations after a warm-up, checkpointer {a.checkpointer}, "
                f"model latency {latency * 1000:g} ms")
    cpu_line = ""
    with LoopbackServer(script, **server) as srv:  # type: ignore[arg-type]
        job = {"base_url": srv.base_url, "model": "scripted", "context": {"text": "hello world"}, "query": "q",
               "checkpointer": None if a.checkpointer == "none" else "sqlite", "work_dir": work,
               "max_iterations": a.iterations + 10, "retries": 0, "runs": a.runs, "warmup": 1}
        if fanout:
            job["max_concurrency"] = a.concurrency
            with LoopbackServer(loop_script("rlm-graph", 2)) as empty:
                cpu = _fanout_cpu(srv.base_url, empty.base_url, job, work, a.prompts)
            cpu_line = (f"host CPU per sub-call, no profiler: {cpu['per_subcall_ms']:.3f} ms "
                        f"(run CPU, s: fan-out {cpu['fanout_cpu_s']}, empty cell {cpu['empty_cpu_s']})\n")
            print(cpu_line, end="", file=sys.stderr)
        job_file = Path(work) / "job.json"
        job_file.write_text(json.dumps({**job, "runs": profiled}))
        probe = [sys.executable, "-m", "rlm_graph.bench.probe", str(job_file)]
        if profiler == "py-spy":
            cmd = [spy, "record", "--gil", "-r", str(a.rate), "-f", "raw", "-o", str(raw), "--", *probe]
        elif profiler == "cprofile":
            cmd = [sys.executable, str(Path(__file__).resolve()), "--cprofile-child", str(raw), str(job_file)]
        if profiler != "off":
            done = subprocess.run(cmd, capture_output=True, text=True, env=env)
    shutil.rmtree(work, ignore_errors=True)
    if profiler == "off":
        return 0
    if done.returncode != 0 or not raw.exists():
        print(done.stderr[-2000:], file=sys.stderr)
        return 1
    tool = f"py-spy --gil at {a.rate} Hz" if profiler == "py-spy" else "cProfile in every thread"
    header = f"{tool}: rlm-graph bench probe, {what}; load average {os.getloadavg()[0]:.2f}\n" + cpu_line
    out = ROOT / "bench" / "profiles" / f"{a.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + (summarize(raw) if profiler == "py-spy" else summarize_pstats(pstats.Stats(str(raw)))))
    print(f"written: {out} (raw: {raw})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "--cprofile-child":
        cprofile_child(sys.argv[2], sys.argv[3])
        sys.exit(0)
    sys.exit(main())
