"""Measure what the ``rlm-graph`` command costs before it does anything: whole processes, timed from outside.

    python bench/cli_startup.py              # 15 paired runs per command
    python bench/cli_startup.py --repeats 30

Each command is started as a new process, alternating with a bare ``python -c pass`` (the
yardstick), so the pair sees the same machine load. Per command: the median wall time, the median
CPU time (user + system of the finished child, which a busy machine inflates far less than wall
time), and the median of the paired differences to the bare start. Commands: ``import rlm_graph``,
``rlm-graph --help``, an argument error (``rlm-graph run`` without its options), and a whole
one-iteration run against a scripted server on loopback (no checkpoints).

Prints a markdown table; writes bench/results/cli-startup.json (``python bench/make_report.py``
puts it in docs/benchmarks.md).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from rlm_graph.bench.loopback import LoopbackServer
from rlm_graph.bench.measure import machine, source_revision, versions

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "cli-startup.json"
CLI = Path(sys.executable).with_name("rlm-graph")


def _timed(cmd: list[str], env: dict[str, str]) -> tuple[float, float, int]:
    """Wall seconds, CPU seconds (user + system) and exit code of one run of ``cmd``."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    done = subprocess.run(cmd, env=env, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return wall, cpu, done.returncode


def measure(commands: dict[str, list[str]], repeats: int, env: dict[str, str]) -> list[dict[str, Any]]:
    """Run each command ``repeats`` times, each run paired with a bare interpreter start."""
    bare = [sys.executable, "-c", "pass"]
    rows = []
    for name, cmd in commands.items():
        _timed(cmd, env), _timed(bare, env)  # warm the file cache
        runs = []
        for _ in range(repeats):
            a, b = _timed(cmd, env), _timed(bare, env)
            runs.append((a, b))
        med = statistics.median
        rows.append({
            "command": name,
            "argv": " ".join(Path(c).name if i == 0 else c for i, c in enumerate(cmd)),
            "exit_codes": sorted({a[2] for a, _ in runs}),
            "wall_s": round(med(a[0] for a, _ in runs), 3),
            "cpu_s": round(med(a[1] for a, _ in runs), 3),
            "bare_wall_s": round(med(b[0] for _, b in runs), 3),
            "bare_cpu_s": round(med(b[1] for _, b in runs), 3),
            "over_bare_wall_s": round(med(a[0] - b[0] for a, b in runs), 3),
            "over_bare_cpu_s": round(med(a[1] - b[1] for a, b in runs), 3),
            "repeats": repeats,
        })
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args()
    if not CLI.exists():
        print(f"cli_startup: {CLI} not found: run from the virtual environment rlm-graph is installed in", file=sys.stderr)
        return 2
    env = {k: v for k, v in os.environ.items() if not k.startswith(("RLM_GRAPH_", "OPENAI_", "OPENROUTER_"))}
    env["LANGSMITH_TRACING"] = "false"
    load_start = os.getloadavg()
    with tempfile.TemporaryDirectory() as scratch, LoopbackServer(lambda turn: 'FINAL("done")') as server:
        context = Path(scratch) / "context.txt"
        context.write_text("one two three\n")
        commands = {
            "import rlm_graph": [sys.executable, "-c", "import rlm_graph"],
            "rlm-graph --help": [str(CLI), "--help"],
            "argument error": [str(CLI), "run"],
            "1-iteration run": [str(CLI), "run", "--context", str(context), "--query", "q", "--model", "m",
                                "--base-url", server.base_url, "--checkpoint", "none", "--work-dir", scratch, "--max-iterations", "1"],
        }
        rows = measure(commands, args.repeats, env)
    result = {"machine": {**machine(), "loadavg": [round(x, 2) for x in load_start], "loadavg_end": [round(x, 2) for x in os.getloadavg()],
                          "date": time.strftime("%Y-%m-%d %H:%M", time.gmtime())},
              "versions": versions("rlm-graph", "langgraph", "langchain-core"), "source": source_revision(), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1))
    print("| command | wall (s) | CPU (s) | over bare python, wall (s) | over bare python, CPU (s) | exit |")
    print("| --- | --- | --- | --- | --- | --- |")
    for r in rows:
        print(f"| {r['command']} | {r['wall_s']} | {r['cpu_s']} | {r['over_bare_wall_s']} | {r['over_bare_cpu_s']} | {r['exit_codes']} |")
    print(f"bare python: wall {rows[0]['bare_wall_s']} s, CPU {rows[0]['bare_cpu_s']} s; written: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
