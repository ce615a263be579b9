"""``rlm-graph ask | fork | history``: steer a saved run: a follow-up question, a new branch, its turns."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from rlm_graph.cli._options import CURRENT, EXIT_OK, add_run_flags, add_steer_flags, make_rlm, print_result
from rlm_graph.errors import ConfigurationError


def register(sub: Any) -> None:
    ask = sub.add_parser("ask", help="ask a finished run a follow-up question (its REPL variables are kept)")
    ask.add_argument("thread_id")
    ask.add_argument("--query", required=True, help="the new question")
    add_steer_flags(ask)
    add_run_flags(ask)
    ask.set_defaults(handler=cmd_ask)

    fork = sub.add_parser("fork", help="take a saved run again from iteration N on a new thread (the original is kept)")
    fork.add_argument("thread_id", help="the run to fork")
    fork.add_argument("--at", type=int, required=True, metavar="N", help="the iteration to take again (see: rlm-graph history ID)")
    fork.add_argument("--thread-id", dest="new_thread_id", metavar="NEW", help="the new thread's id (default: a new one)")
    fork.add_argument("--code", metavar="FILE", help="run this file's code as iteration N instead of asking the model")
    fork.add_argument("--note", metavar="TEXT", help="a note the model reads before iteration N")
    add_steer_flags(fork)
    add_run_flags(fork)
    fork.set_defaults(handler=cmd_fork)

    hist = sub.add_parser("history", help="list a saved run's iterations (to pick N for fork --at)")
    hist.add_argument("thread_id")
    hist.add_argument("--checkpoint", help="SQLite file or postgresql:// URL (default .rlm/checkpoints.sqlite)")
    hist.add_argument("--work-dir", default=".rlm")
    hist.add_argument("--json", action="store_true")
    hist.set_defaults(handler=cmd_history)


def cmd_ask(args: argparse.Namespace) -> int:
    rlm = make_rlm(args)
    CURRENT.update(thread_id=args.thread_id, resumable=rlm.checkpointer is not None)
    result = rlm.ask(args.thread_id, args.query, allow_change=args.allow_change, context=args.new_context)
    print_result(result, args.json)
    return EXIT_OK


def cmd_fork(args: argparse.Namespace) -> int:
    code = None
    if args.code is not None:
        try:
            code = Path(args.code).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise ConfigurationError(f"cannot read the code file {args.code}: {exc}") from exc
    rlm = make_rlm(args)
    result = rlm.fork(args.thread_id, at=args.at, thread_id=args.new_thread_id, code=code, note=args.note,
                      allow_change=args.allow_change, context=args.new_context)
    print_result(result, args.json)
    return EXIT_OK


def cmd_history(args: argparse.Namespace) -> int:
    from rlm_graph import steering
    from rlm_graph.checkpoints import open_checkpointer
    from rlm_graph.cli._options import checkpoint_arg
    from rlm_graph.errors import RunNotFoundError
    from rlm_graph.graph.builder import build_graph
    from rlm_graph.graph.settings import RLMContext

    saver = open_checkpointer(checkpoint_arg(args.checkpoint), args.work_dir)
    if saver is None:
        raise ConfigurationError("history needs a checkpointer")
    graph = build_graph(RLMContext(), checkpointer=saver)  # only reads checkpoints: no model is needed
    try:
        rows = steering.history(graph, {"configurable": {"thread_id": args.thread_id}})
    except RunNotFoundError:
        raise RunNotFoundError(f"no run with thread id {args.thread_id!r} in {getattr(saver, '_rlm_location', 'the checkpointer')}") from None
    if args.json:
        print(json.dumps([r.to_dict() for r in rows]))
        return EXIT_OK
    if not rows:
        print("no iterations yet", file=sys.stderr)
    print(f"{'iter':>4} {'task':>4} {'cells':<7} {'started':<19} {'seconds':>8} {'tokens':>7}  code or reply")
    for r in rows:
        cells = ",".join(map(str, r.cells)) or "-"
        seconds = f"{r.seconds:.2f}" if r.seconds is not None else "-"
        what = (r.code or r.reply).replace("\n", " ")[:60]
        print(f"{r.iteration:>4} {r.task:>4} {cells:<7} {r.started[:19]:<19} {seconds:>8} {r.tokens:>7}  {what}")
    return EXIT_OK
