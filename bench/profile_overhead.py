"""Profile rlm-graph's host process on the overhead benchmark's iterations job, with py-spy.

    python bench/profile_overhead.py --name after --iterations 30 --checkpointer sqlite

Runs the same job as ``rlm-graph bench overhead --only iterations`` (trivial cells, a loopback
server in this process, the run in its own process) under ``py-spy record --gil`` (only the
thread holding the GIL is sampled, so waiting threads do not count), writes the raw folded stacks
to bench/results/profiles/NAME.txt (large, not committed) and a summary of the top functions, by
own time and by inclusive time, imports set apart, to bench/profiles/NAME.txt (committed next to
the benchmark numbers). Needs py-spy (``pip install 'rlm-graph[bench]'``).
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from rlm_graph.bench.loopback import LoopbackServer
from rlm_graph.bench.scenarios import loop_script

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


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--name", required=True)
    p.add_argument("--iterations", type=int, default=30)
    p.add_argument("--latency", type=float, default=0.0)
    p.add_argument("--checkpointer", default="sqlite", choices=["none", "sqlite"])
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rate", type=int, default=250, help="samples per second")
    a = p.parse_args()
    spy = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    raw = ROOT / "bench" / "results" / "profiles" / f"{a.name}.txt"
    raw.parent.mkdir(parents=True, exist_ok=True)
    work = tempfile.mkdtemp(prefix="profile-")
    with LoopbackServer(loop_script("rlm-graph", a.iterations), latency=a.latency) as srv:
        job = {"base_url": srv.base_url, "model": "scripted", "context": {"text": "hello world"}, "query": "q",
               "checkpointer": None if a.checkpointer == "none" else "sqlite", "work_dir": work,
               "max_iterations": a.iterations + 10, "retries": 0, "runs": a.runs, "warmup": 1}
        job_file = Path(work) / "job.json"
        job_file.write_text(json.dumps(job))
        cmd = [spy, "record", "--gil", "-r", str(a.rate), "-f", "raw", "-o", str(raw), "--",
               sys.executable, "-m", "rlm_graph.bench.probe", str(job_file)]
        done = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "LANGSMITH_TRACING": "false"})
    shutil.rmtree(work, ignore_errors=True)
    if done.returncode != 0 or not raw.exists():
        print(done.stderr[-2000:], file=sys.stderr)
        return 1
    header = (f"py-spy --gil at {a.rate} Hz: rlm-graph bench probe, {a.runs} runs of {a.iterations} iterations after a warm-up, "
              f"checkpointer {a.checkpointer}, model latency {a.latency * 1000:g} ms; load average {os.getloadavg()[0]:.2f}\n")
    out = ROOT / "bench" / "profiles" / f"{a.name}.txt"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(header + summarize(raw))
    print(f"written: {out} (raw: {raw})", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
