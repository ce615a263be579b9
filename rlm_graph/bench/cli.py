"""``rlm-graph bench quality | scores | overhead``: the benchmark runners behind the command line.

:func:`register` adds the ``bench`` sub-command to the main parser and sets ``handler`` on the
parsed namespace, so ``rlm_graph.cli.main`` dispatches to it like any other command.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from rlm_graph.bench import DEFAULT_POSTGRES, DEFAULT_RLMS_VENV, LIBRARIES, METHODS, SCENARIOS, SLOW_SECONDS
from rlm_graph.progress_bar import ProgressBar, on_terminal


def _sizes(text: str) -> list[int]:
    from rlm_graph.bench.quality import parse_size

    return [parse_size(s) for s in text.split(",") if s.strip()]


def _floats(text: str) -> list[float]:
    return [float(s) for s in text.split(",") if s.strip()]


def _ints(text: str) -> list[int]:
    return [int(s) for s in text.split(",") if s.strip()]


def _words(text: str) -> list[str]:
    return [s.strip() for s in text.split(",") if s.strip()]


def register(subparsers: Any) -> argparse.ArgumentParser:
    """Add ``bench`` (with ``quality`` and ``overhead``) to the ``rlm-graph`` sub-commands."""
    bench = subparsers.add_parser("bench", help="benchmarks: answer quality and framework cost, side by side with rlms")
    actions = bench.add_subparsers(dest="bench_action", required=True, metavar="ACTION")

    q = actions.add_parser("quality", help="score methods on seeded tasks against one OpenAI-compatible endpoint")
    q.add_argument("--method", action="append", choices=METHODS, help="rlm, base or rlms; repeat for several (default: rlm and base)")
    q.add_argument("--tasks", nargs="+", default=["smoke"], metavar="SUITE[:SIZES]",
                   help="e.g. smoke sniah:8k,128k,1m oolong:8k (suites: smoke, sniah, oolong, oolong_pairs, structured, all)")
    q.add_argument("--n", type=int, default=2, help="tasks per size (default 2; smoke: the first N of its five)")
    q.add_argument("--seed", type=int, default=0)
    q.add_argument("--model", help="the model's name on --base-url, or 'local' for the embedded servers (default)")
    q.add_argument("--base-url", help="an OpenAI-compatible server (default: the embedded root server)")
    q.add_argument("--sub-base-url", help="server for sub-calls (default: --base-url, or the embedded sub server)")
    q.add_argument("--api-key")
    q.add_argument("--out", type=Path, default=Path("bench/results/quality"), help="per-task JSON goes to OUT/METHOD/TASK.json")
    q.add_argument("--max-iterations", type=int, default=20, help="root turns for rlm and rlms (default 20)")
    q.add_argument("--max-seconds", type=float, default=600.0, help="time limit per task for rlm and rlms (default 600)")
    q.add_argument("--window-tokens", type=int, default=8192, help="the model's context window, for base (default 8192)")
    q.add_argument("--skip-existing", action="store_true", help="keep results already in OUT")
    q.add_argument("--rlms-venv", type=Path, help=f"virtual environment for rlms (default {DEFAULT_RLMS_VENV})")
    q.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    fam = q.add_argument_group("generalisation families (instead of --tasks)")
    fam.add_argument("--split", choices=["dev", "test"], help="the dev split (tune on it) or the test split (report it)")
    fam.add_argument("--family", action="append", metavar="F",
                     help="only this family; repeat for several (needle, logs, tables, judge, sets, multihop, oolong)")
    fam.add_argument("--per-slot", type=int, default=1, metavar="N", help="seeds per composition slot (default 1: 29 tasks a split)")
    fam.add_argument("--task-id", action="append", default=[], metavar="ID", help="run this task id, e.g. dev-logs-status-text-1m-s1200; repeatable")
    fam.add_argument("--tasks-from", type=Path, metavar="FILE", help="run the task ids listed in FILE (one a line, # comments)")
    fam.add_argument("--list", action="store_true", help="print the selected tasks (id, size, gold, question) and run nothing")
    fam.add_argument("--dump", type=Path, metavar="DIR", help="write the selected tasks' contexts and a tasks.jsonl manifest to DIR; run nothing")
    fam.add_argument("--slow-seconds", type=float, default=SLOW_SECONDS, help=f"a task slower than this counts as over budget (default {SLOW_SECONDS:g})")
    q.set_defaults(handler=cmd_quality)

    sc = actions.add_parser("scores", help="per-family scores of quality results already written (runs nothing)")
    sc.add_argument("dirs", nargs="*", type=Path, default=[Path("bench/results/quality")], metavar="OUT",
                    help="result directories of `bench quality` (default bench/results/quality)")
    sc.add_argument("--split", choices=["dev", "test"])
    sc.add_argument("--method", action="append", choices=METHODS)
    sc.add_argument("--slow-seconds", type=float, default=SLOW_SECONDS)
    sc.set_defaults(handler=cmd_scores)

    o = actions.add_parser("overhead", help="framework overhead on a scripted loopback server, side by side with rlms")
    o.add_argument("--only", type=_words, default=list(SCENARIOS), metavar="LIST", help=f"scenarios: {','.join(SCENARIOS)} (default all)")
    o.add_argument("--libraries", type=_words, default=list(LIBRARIES), metavar="LIST", help="rlm-graph,rlms (default both)")
    o.add_argument("--repeats", type=int, default=5, help="measured runs per configuration (default 5)")
    o.add_argument("--iterations", type=int, default=30)
    o.add_argument("--latencies", type=_floats, default=[0.0, 0.1], metavar="LIST", help="seconds per model call (default 0,0.1)")
    o.add_argument("--checkpointers", type=_words, default=["none", "sqlite", "postgres"], metavar="LIST")
    o.add_argument("--postgres", default=DEFAULT_POSTGRES, help=f"Postgres URL (default {DEFAULT_POSTGRES}; skipped when unreachable)")
    o.add_argument("--concurrency", type=_ints, default=[16, 64], metavar="LIST", help="fan-out concurrency (default 16,64)")
    o.add_argument("--context-sizes", type=_sizes, default=[1_000_000, 100_000_000, 1_000_000_000], metavar="LIST", help="default 1m,100m,1g")
    o.add_argument("--checkpoint-iterations", type=_ints, default=[20, 80, 320], metavar="LIST", help="run lengths of the checkpoints scenario (default 20,80,320)")
    o.add_argument("--baseline-src", type=Path, help="checkpoints scenario: also run an older checkout of rlm-graph (a git worktree), for before/after")
    o.add_argument("--scratch", type=Path, help="where context files and work dirs go (default: $TMPDIR/rlm-graph-bench)")
    o.add_argument("--rlms-venv", type=Path, help=f"virtual environment for rlms (default {DEFAULT_RLMS_VENV})")
    o.add_argument("--out", type=Path, help="write the result JSON here (default bench/results/overhead-<time>.json)")
    o.add_argument("--quiet", "-q", action="store_true", help="no progress bar (it is shown only on a terminal anyway)")
    o.set_defaults(handler=cmd_overhead)
    return bench


def _task_ids(args: argparse.Namespace) -> list[str]:
    from rlm_graph.errors import ConfigurationError

    ids = list(args.task_id)
    if args.tasks_from:
        try:
            ids += args.tasks_from.read_text(encoding="utf-8").splitlines()
        except OSError as exc:
            raise ConfigurationError(f"cannot read --tasks-from {args.tasks_from}: {exc.strerror or exc}") from exc
    return ids


def _bar(label: str, unit: str, args: argparse.Namespace) -> ProgressBar:
    """The runner's progress bar on stderr: k of N and an ETA on a terminal, unless --quiet."""
    return ProgressBar(label, unit=unit, enabled=not args.quiet and on_terminal())


def cmd_quality(args: argparse.Namespace) -> int:
    from rlm_graph.bench.quality import QualityConfig, config_tasks, run_quality, summarize
    from rlm_graph.bench.scoreboard import format_table
    from rlm_graph.bench.tasks import write_suite

    cfg = QualityConfig(
        methods=args.method or ["rlm", "base"],
        tasks=args.tasks,
        n=args.n,
        seed=args.seed,
        model=args.model,
        base_url=args.base_url,
        sub_base_url=args.sub_base_url,
        api_key=args.api_key,
        out=args.out,
        max_iterations=args.max_iterations,
        max_seconds=args.max_seconds,
        window_tokens=args.window_tokens,
        skip_existing=args.skip_existing,
        rlms_venv=args.rlms_venv,
        split=args.split,
        families=args.family or (),
        per_slot=args.per_slot,
        task_ids=_task_ids(args),
    )
    if args.list or args.dump:
        tasks = config_tasks(cfg)
        if args.dump:
            print(f"written: {write_suite(tasks, args.dump)}", file=sys.stderr)
        if args.list:
            for t in tasks:
                gold = json.dumps(t.gold) if not isinstance(t.gold, str) else t.gold
                print(f"{t.id}\t{t.size_chars}\t{gold[:60]}\t{t.query}")
        return 0
    with _bar("bench quality", "runs", args) as bar:
        records = run_quality(cfg, progress=bar.log, steps=bar)
    if any(r.get("family") for r in records):
        print(format_table(records, slow=args.slow_seconds))
    else:
        for row in summarize(records):
            print(json.dumps(row))
    print(f"per-task results: {args.out}/<method>/<task>.json", file=sys.stderr)
    return 0


def cmd_scores(args: argparse.Namespace) -> int:
    from rlm_graph.bench.scoreboard import format_table, read_records
    from rlm_graph.errors import ConfigurationError

    for d in args.dirs:
        if not d.is_dir():
            raise ConfigurationError(f"no result directory {d}")
        print(f"== {d}")
        print(format_table(read_records(d, split=args.split, methods=args.method), slow=args.slow_seconds))
    return 0


def cmd_overhead(args: argparse.Namespace) -> int:
    from rlm_graph.bench.overhead import OverheadConfig, run_overhead

    cfg = OverheadConfig(
        scenarios=args.only,
        libraries=args.libraries,
        repeats=args.repeats,
        iterations=args.iterations,
        latencies=args.latencies,
        checkpointers=args.checkpointers,
        postgres_url=args.postgres,
        concurrencies=args.concurrency,
        context_sizes=args.context_sizes,
        rlms_venv=args.rlms_venv,
        checkpoint_iterations=args.checkpoint_iterations,
        baseline_src=args.baseline_src,
    )
    if args.scratch:
        cfg.scratch = args.scratch
    with _bar("bench overhead", "configurations", args) as bar:
        result = run_overhead(cfg, progress=bar.log, steps=bar)
    out = args.out or Path("bench/results") / f"overhead-{time.strftime('%Y%m%d-%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(result, indent=1))
    print(json.dumps(result["summary"], indent=1))
    for note in result["notes"]:
        print(f"note: {note}", file=sys.stderr)
    print(f"written: {out}", file=sys.stderr)
    return 0


def main(argv: list[str] | None = None) -> int:
    """``python -m rlm_graph.bench.cli quality|overhead ...``: the same as ``rlm-graph bench ...``."""
    from rlm_graph.errors import RLMError

    parser = argparse.ArgumentParser(prog="rlm-graph-bench", description="rlm-graph benchmarks")
    register(parser.add_subparsers(dest="command", required=True, metavar="COMMAND"))
    args = parser.parse_args(["bench", *(sys.argv[1:] if argv is None else argv)])
    try:
        return int(args.handler(args) or 0)
    except RLMError as exc:
        print(f"rlm-graph bench: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
