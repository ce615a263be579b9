"""A run in its own process, for kill-and-resume tests: prints the result as JSON on stdout.

    python -m tests.durable.runner BASE_URL WORK_DIR THREAD_ID [--resume] [--checkpoint URL] [--context FILE] [--query Q]
"""

from __future__ import annotations

import argparse
import json
import sys

from rlm_graph import RLM, RunNotFoundError


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("base_url")
    p.add_argument("work_dir")
    p.add_argument("thread_id")
    p.add_argument("--resume", action="store_true")
    p.add_argument("--checkpoint")
    p.add_argument("--context", default="")
    p.add_argument("--query", default="q")
    p.add_argument("--cell-timeout", type=float, default=60)
    a = p.parse_args()
    # isolation none: the test's cells write a marker file outside the sandbox's work dir
    rlm = RLM("scripted", base_url=a.base_url, work_dir=a.work_dir, checkpointer=a.checkpoint, max_retries=0,
              cell_timeout=a.cell_timeout, max_concurrency=4, sandbox_options={"isolation": "none"})
    if a.resume:
        try:
            result = rlm.resume(a.thread_id)
        except RunNotFoundError:  # killed before its first checkpoint: nothing to resume, start it
            result = rlm.completion(a.context or "one two three four five", a.query, thread_id=a.thread_id)
    else:
        result = rlm.completion(a.context or "one two three four five", a.query, thread_id=a.thread_id)
    json.dump(result.to_dict(), sys.stdout)


if __name__ == "__main__":
    main()
