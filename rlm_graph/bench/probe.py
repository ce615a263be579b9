"""Run rlm-graph on one benchmark job in a fresh process: ``python -m rlm_graph.bench.probe job.json``.

The job (a JSON file, or stdin) is the same one the reference library's driver (``_rlms_driver.py``) takes::

    {"base_url": ..., "model": "scripted", "context": {"text": ...} | {"path": ...}, "query": ...,
     "runs": 1, "warmup": 0, "checkpointer": null | "sqlite" | "postgresql://...", "work_dir": ...,
     "max_iterations": 40, "max_concurrency": 16, "thread_id": null, "resume": false}

It prints one JSON object: ``{"runs": [{"answer", "started", "ended", "cpu_s", "iterations", ...}], ...}``.
Times are ``time.monotonic()`` readings, comparable with the loopback server's in another process;
``cpu_s`` is the CPU time this process (all its threads, not the sandbox worker) used in the run.
"""

from __future__ import annotations

import json
import sys
import time
import uuid
from pathlib import Path
from typing import Any

PROCESS_STARTED = time.monotonic()


def _context(spec: dict[str, Any]) -> Any:
    if "path" in spec:
        return Path(spec["path"])  # rlm-graph hands a file to the sandbox without reading it
    return spec["text"]


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    """Run the job's warm-up and measured runs; return their timings."""
    job_started = time.monotonic()
    from rlm_graph import RLM

    work = Path(job.get("work_dir") or ".rlm-bench")
    checkpointer: Any = job.get("checkpointer")
    if checkpointer in (None, "none"):
        checkpointer = False
    elif checkpointer == "sqlite":
        checkpointer = str(work / "checkpoints.sqlite")
    rlm = RLM(
        job.get("model") or "scripted",
        base_url=job["base_url"],
        sub_base_url=job.get("sub_base_url"),
        checkpointer=checkpointer,
        work_dir=work,
        max_retries=int(job.get("retries", 0)),
        timeout=float(job.get("timeout", 600)),
        reply_tokens=int(job.get("reply_tokens", 1024)),
        max_iterations=int(job.get("max_iterations", 40)),
        max_concurrency=int(job.get("max_concurrency", 16)),
        cell_timeout=float(job.get("cell_timeout", 600)),
    )
    ready = time.monotonic()
    runs = []
    for i in range(int(job.get("warmup", 0)) + int(job.get("runs", 1))):
        started, cpu = time.monotonic(), time.process_time()
        if job.get("resume"):
            result = rlm.resume(job["thread_id"])
        else:
            thread_id = job.get("thread_id") or uuid.uuid4().hex[:16]
            result = rlm.completion(_context(job["context"]), job.get("query") or "q", thread_id=thread_id)
        ended, cpu = time.monotonic(), time.process_time() - cpu
        runs.append(
            {
                "warmup": i < int(job.get("warmup", 0)),
                "answer": result.answer,
                "started": started,
                "ended": ended,
                "cpu_s": round(cpu, 6),
                "iterations": result.iterations,
                "subcalls": result.subcalls,
                "stopped_by": result.stopped_by,
                "usage": result.usage,
            }
        )
    return {"process_started": PROCESS_STARTED, "job_started": job_started, "ready": ready, "runs": runs}


def main() -> None:
    job = json.loads(Path(sys.argv[1]).read_text() if len(sys.argv) > 1 else sys.stdin.read())
    json.dump(run_job(job), sys.stdout)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
