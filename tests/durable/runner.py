"""A run in its own process, for kill-and-resume tests: prints the result as JSON on stdout.

    python -m tests.durable.runner BASE_URL WORK_DIR THREAD_ID [--resume [--change NAME=VALUE ...]]
        [--checkpoint URL] [--context FILE] [--query Q] [--limits JSON] [--prices JSON]

A resume names no model, server, limit or price: the run carries on as its manifest records.
With ``--change``, it asks for those limits instead and allows the change.
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
    p.add_argument("--change", action="append", default=[], metavar="NAME=VALUE", help="a limit to change on resume")
    p.add_argument("--checkpoint")
    p.add_argument("--context", default="")
    p.add_argument("--query", default="q")
    p.add_argument("--cell-timeout", type=float, default=60)
    p.add_argument("--limits", default="{}", help="more limits, as JSON")
    p.add_argument("--prices", help="a price table, as JSON")
    a = p.parse_args()
    extra = {**json.loads(a.limits), **({"prices": json.loads(a.prices)} if a.prices else {})}

    def start() -> RLM:
        # isolation none: the test's cells write a marker file outside the sandbox's work dir
        return RLM("scripted", base_url=a.base_url, work_dir=a.work_dir, checkpointer=a.checkpoint, max_retries=0,
                   cell_timeout=a.cell_timeout, max_concurrency=4, sandbox_options={"isolation": "none"}, **extra)

    if a.resume:
        changes = {name: float(value) if "." in value else int(value) for name, value in (c.split("=", 1) for c in a.change)}
        try:
            result = RLM(work_dir=a.work_dir, checkpointer=a.checkpoint, **changes).resume(a.thread_id, allow_change=bool(changes))
        except RunNotFoundError:  # killed before its first checkpoint: nothing to resume, start it
            result = start().completion(a.context or "one two three four five", a.query, thread_id=a.thread_id)
    else:
        result = start().completion(a.context or "one two three four five", a.query, thread_id=a.thread_id)
    json.dump(result.to_dict(), sys.stdout)


if __name__ == "__main__":
    main()
