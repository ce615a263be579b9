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
- ``checkpoints``: runs of 20, 80 and 320 iterations whose cells print 1,000 characters, with
  SQLite: bytes stored and the time to load the thread's state, for this code and optionally an
  older checkout (``baseline_src``), see :mod:`rlm_graph.bench.storage`.
- ``resume``: a run killed with SIGKILL (between iterations, and in the middle of a fan-out) and
  started again in a new process: time to the first new call, and model calls repeated.

Numbers are measurements, never assertions: nothing here fails on a slow result.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rlm_graph.bench import DEFAULT_POSTGRES, SCENARIOS, jobs, scenarios, storage
from rlm_graph.bench.measure import machine, source_revision, versions
from rlm_graph.bench.scenarios import MB
from rlm_graph.progress_bar import Steps


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
    checkpoint_iterations: Sequence[int] = (20, 80, 320)
    baseline_src: Path | None = None
    scratch: Path = field(default_factory=lambda: Path(tempfile.gettempdir()) / "rlm-graph-bench")
    rlms_venv: Path | None = None


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


class Bench:
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


MEASURES: dict[str, Callable[[Bench], list[dict[str, Any]]]] = {
    "iterations": scenarios.measure_iterations,
    "fanout": scenarios.measure_fanout,
    "context": scenarios.measure_context,
    "resume": scenarios.measure_resume,
    "checkpoints": storage.measure_checkpoints,
}


# How many configurations each scenario runs: each starts with one ``b.say`` line (kept in step
# with the loops of the MEASURES functions; tests/bench/test_overhead.py checks the two agree).
PLANS: dict[str, Callable[[Bench], int]] = {
    "iterations": lambda b: len(b.cfg.latencies) * sum(len(b.checkpointers(lib)) for lib in b.cfg.libraries),
    "fanout": lambda b: len(b.cfg.concurrencies)
    * sum(len([c for c in b.checkpointers(lib) if c in ("none", "sqlite")]) for lib in b.cfg.libraries),
    "context": lambda b: len(b.cfg.context_sizes) * len(b.cfg.libraries),
    "resume": lambda b: 2 * len(b.cfg.libraries),  # killed between iterations, and mid fan-out
    "checkpoints": lambda b: (2 if b.cfg.baseline_src is not None else 1) * len(b.cfg.checkpoint_iterations),
}


def run_overhead(cfg: OverheadConfig, progress: Progress = print, steps: Steps | None = None) -> dict[str, Any]:
    """Run the chosen scenarios; return ``{"machine", "versions", "config", "rows", "summary", "notes"}``.

    Args:
        cfg: what to measure.
        progress: called with one line as each configuration starts.
        steps: called with ``(configurations done, configurations)``: ``(0, total)`` first, then
            as each one ends; e.g. a :class:`~rlm_graph.progress_bar.ProgressBar`.
    """
    unknown = set(cfg.scenarios) - set(SCENARIOS)
    if unknown:
        from rlm_graph.errors import ConfigurationError

        raise ConfigurationError(f"unknown scenario(s) {', '.join(sorted(unknown))}: use {', '.join(SCENARIOS)}")
    b = Bench(cfg, progress)
    step = steps or (lambda done, total: None)
    total = sum(PLANS[name](b) for name in SCENARIOS if name in cfg.scenarios)
    begun = 0

    def say(line: str) -> None:  # a configuration starts: the one before it has ended
        nonlocal begun
        if begun:
            step(begun, total)
        begun += 1
        progress(line)

    b.say = say
    step(0, total)
    started = machine()
    rows: list[dict[str, Any]] = []
    for name in SCENARIOS:
        if name in cfg.scenarios:
            rows += MEASURES[name](b)
    step(begun, total)
    lib_versions = versions("rlm-graph", "langgraph", "langgraph-checkpoint-sqlite", "langgraph-checkpoint-postgres", "langchain-openai")
    lib_versions["rlms"] = jobs.installed_rlms(Path(cfg.rlms_venv or jobs.DEFAULT_RLMS_VENV)) if b.rlms_python else None
    config = {k: (str(v) if isinstance(v, Path) else list(v) if isinstance(v, tuple) else v) for k, v in asdict(cfg).items()}
    return {
        "kind": "overhead",
        "machine": {**started, "loadavg_end": [round(x, 2) for x in os.getloadavg()]},
        "versions": lib_versions,
        "revision": source_revision(),
        "config": config,
        "rows": rows,
        "summary": summarize(rows),
        "notes": b.notes,
    }


def summarize(rows: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """The numbers the targets are stated in: overhead ratios, fan-out ratios, RSS ratios, repeats."""

    def pick(**match: Any) -> dict[str, Any] | None:
        return next((r for r in rows if all(r.get(k) == v for k, v in match.items())), None)

    out: dict[str, Any] = {"iteration_ratio": [], "checkpoint_cost": [], "fanout": [], "context": [], "resume": [], "checkpoints": []}
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
        elif r["scenario"] == "checkpoints":
            out["checkpoints"].append({k: r.get(k) for k in ("variant", "iterations", "stored_bytes", "bytes_per_iteration", "load_ms", "error")})
        elif r["scenario"] == "resume":
            out["resume"].append({k: r.get(k) for k in ("library", "killed", "repeated_calls", "to_first_call_s", "total_s", "answer_ok")})
    return out
