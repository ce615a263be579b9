"""``rlm-graph batch TASKS.jsonl --out RESULTS.jsonl``: many questions, on a process pool or a Ray cluster."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from rlm_graph.cli._options import EXIT_FAILED, EXIT_OK, LIMIT_FLAGS, add_model_flags, check_reachable
from rlm_graph.errors import ConfigurationError


def register(sub: Any) -> None:
    p = sub.add_parser(
        "batch",
        help="run every task of a JSONL file (one RLM run each) on a local process pool or a Ray cluster",
        description="Each line: {\"id\", \"query\", \"context\" | \"context_path\", \"options\"?}. Each task runs in its own "
        "checkpoint thread, so a task whose worker died resumes where it was, and running the batch again skips the "
        "finished tasks. See docs/batch.md.",
    )
    p.add_argument("tasks", help="the batch: a JSONL file, one task a line")
    p.add_argument("--out", required=True, help="the results: a JSONL file, one line per task as it ends")
    p.add_argument("--workers", type=int, help="tasks running at once (default: CPUs here, or the Ray cluster's)")
    p.add_argument("--ray", nargs="?", const="auto", metavar="auto|ADDRESS",
                   help="run on Ray: 'auto' joins the cluster this machine knows (RAY_ADDRESS, `ray start`) or starts a local one; "
                   "or a cluster address such as ray://head:10001")
    p.add_argument("--checkpoint", help="SQLite file (one machine) or postgresql:// URL (a cluster); default .rlm/checkpoints.sqlite")
    p.add_argument("--task-retries", type=int, default=3, help="restarts of a task whose worker process died (default 3)")
    add_model_flags(p)
    g = p.add_argument_group("limits (every task; a task's options override them)")
    for name, kind, text in LIMIT_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    r = p.add_argument_group("run")
    r.add_argument("--sandbox", default="local", help="local, docker, e2b or modal (default local)")
    r.add_argument("--isolation", choices=["auto", "bwrap", "none"], help="local sandbox isolation (default auto)")
    r.add_argument("--work-dir", default=".rlm", help="where inline contexts are written (default .rlm; shared by the workers)")
    r.add_argument("--answer-check", choices=["on", "off"], help="check each FINAL's form with the sub-model")
    r.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    p.set_defaults(handler=cmd_batch)


def cmd_batch(args: argparse.Namespace) -> int:
    from rlm_graph.batch import BatchSettings, read_tasks, run_batch, write_summary

    if args.model is None and args.base_url is not None:
        raise ConfigurationError("--base-url needs --model NAME (the model's name on that server)")
    if args.workers is not None and args.workers < 1:
        raise ConfigurationError(f"--workers must be at least 1, got {args.workers}")
    if args.checkpoint is not None and args.checkpoint.lower() in ("none", "off", "false"):
        raise ConfigurationError("a batch needs checkpoints: they are how a task resumes and how a re-run skips finished tasks")
    tasks = read_tasks(args.tasks)
    for url in (args.base_url, args.sub_base_url):
        if url:
            check_reachable(url)
    checkpoint = args.checkpoint or f"{args.work_dir}/checkpoints.sqlite"
    if args.ray not in (None, "auto") and not checkpoint.startswith(("postgres://", "postgresql://")):
        print("rlm-graph batch: note: workers on other machines cannot share a SQLite file; use --checkpoint postgresql://...", file=sys.stderr)
    settings = BatchSettings(
        model=args.model,
        sub_model=args.sub_model,
        base_url=args.base_url,
        sub_base_url=args.sub_base_url,
        api_key=args.api_key,
        sandbox=args.sandbox,
        sandbox_options={"isolation": args.isolation} if args.isolation else {},
        checkpoint=checkpoint,
        work_dir=args.work_dir,
        limits={name: getattr(args, name) for name, _, _ in LIMIT_FLAGS if getattr(args, name, None) is not None},
        answer_check=None if args.answer_check is None else args.answer_check == "on",
        timeout=args.timeout,
        retries=args.retries,
    )
    summary = run_batch(tasks, settings, out=args.out, workers=args.workers, ray=args.ray, retries=args.task_retries,
                        progress=not args.quiet and sys.stderr.isatty())
    write_summary(summary)
    print(f"results: {args.out}", file=sys.stderr)
    return EXIT_OK if summary.failed == 0 else EXIT_FAILED
