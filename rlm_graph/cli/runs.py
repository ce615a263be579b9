"""``rlm-graph run | resume | runs``: answer a question, carry on a saved run, list saved runs."""

from __future__ import annotations

import argparse
import json
import sys
import uuid
from typing import Any

from rlm_graph.cli._options import CURRENT, EXIT_OK, add_run_flags, add_steer_flags, checkpoint_arg, make_rlm, print_result
from rlm_graph.errors import ConfigurationError


def register(sub: Any) -> None:
    run = sub.add_parser("run", help="answer a question over a context file")
    run.add_argument("--context", required=True,
                     help="a text, JSON, JSONL or CSV file; - (standard input); a folder; sqlite:///FILE.db?query=SQL or postgresql://...?query=SQL")
    run.add_argument("--query", required=True, help="the question")
    run.add_argument("--thread-id", help="checkpoint thread id (default: a new one)")
    add_run_flags(run)
    run.set_defaults(handler=cmd_run)

    resume = sub.add_parser(
        "resume",
        help="carry on an interrupted or killed run from its last checkpoint, as it started",
        description="Carry on a saved run with the models, sandbox and limits it started with (its manifest). "
        "An option given here that differs is refused unless --allow-change; raising a limit with "
        "--allow-change lets a run that limit stopped go on.",
    )
    resume.add_argument("thread_id")
    resume.add_argument("--decision", help="answer a pending code approval: approve, reject, or edited code")
    add_steer_flags(resume)
    add_run_flags(resume)
    resume.set_defaults(handler=cmd_resume)

    runs = sub.add_parser("runs", help="list checkpointed runs")
    runs.add_argument("--checkpoint", help="SQLite file or postgresql:// URL (default .rlm/checkpoints.sqlite)")
    runs.add_argument("--work-dir", default=".rlm")
    runs.add_argument("--json", action="store_true")
    runs.set_defaults(handler=cmd_runs)


def _interactive_approval(code: str) -> Any:
    print("--- code to run ---\n" + code + "\n-------------------", file=sys.stderr)
    answer = input("run it? [y]es / [n]o / [e]dit: ").strip().lower()
    if answer.startswith("e"):
        print("enter the new code, end with a line holding only '.'", file=sys.stderr)
        lines = []
        while (line := input()) != ".":
            lines.append(line)
        return {"action": "edit", "code": "\n".join(lines)}
    return answer in ("", "y", "yes")


def _decision(value: str | None) -> Any:
    if value is None or value.lower() in ("approve", "yes", "y"):
        return True
    if value.lower() in ("reject", "no", "n"):
        return {"action": "reject"}
    return {"action": "edit", "code": value}


def cmd_run(args: argparse.Namespace) -> int:
    from rlm_graph.contexts import open_source

    source = open_source(args.context)  # a file, stdin, a folder or a SQL query (not inline text)
    if source.skipped:
        shown = ", ".join(source.skipped[:10]) + (f" and {len(source.skipped) - 10} more" if len(source.skipped) > 10 else "")
        print(f"note: skipped {len(source.skipped)} binary or unreadable file(s): {shown}", file=sys.stderr)
    context = source.path if source.path is not None else source.value
    on_approve = _interactive_approval if args.approve_code and sys.stdin.isatty() else None
    rlm = make_rlm(args, on_approve=on_approve)

    thread_id = args.thread_id or uuid.uuid4().hex[:16]
    CURRENT["thread_id"] = thread_id
    CURRENT["resumable"] = rlm.checkpointer is not None
    result = rlm.completion(context, args.query, thread_id=thread_id)
    print_result(result, args.json)
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    rlm = make_rlm(args)
    CURRENT.update(thread_id=args.thread_id, resumable=True)
    result = rlm.resume(args.thread_id, _decision(args.decision) if args.decision else None,
                        allow_change=args.allow_change, context=args.new_context)
    print_result(result, args.json)
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from rlm_graph.checkpoints import list_runs, open_checkpointer

    saver = open_checkpointer(checkpoint_arg(args.checkpoint), args.work_dir)
    if saver is None:
        raise ConfigurationError("runs needs a checkpointer")
    rows = list_runs(saver)
    if args.json:
        print(json.dumps(rows))
        return EXIT_OK
    if not rows:
        print("no runs", file=sys.stderr)
    for r in rows:
        answer = (r["answer"] or "")[:60].replace("\n", " ")
        model = f"{r['model'] or '':<16}" if "model" in r else ""
        print(f"{r['thread_id']}  {r['status']:<12} iter {r['iteration']:<3} {model} {r['updated'] or '':<26} {answer}")
        for change in r.get("changes") or []:
            print(f"    {_change_line(change)}")
    return EXIT_OK


def _change_line(change: dict[str, Any]) -> str:
    """One entry of a manifest's change history, as ``runs`` shows it."""
    what = [f"{name} {_shown(old)} -> {_shown(new)}" for name, (old, new) in (change.get("changed") or {}).items()]
    if change.get("context"):
        what.append(f"context moved {change['context'][0]} -> {change['context'][1]}")
    if change.get("source") is not None:
        what.insert(0, f"forked from {change['source']} at iteration {change.get('fork_at')}")
    when = (change.get("time") or "")[:19].replace("T", " ")
    return f"{when}  {change.get('how')} after iteration {change.get('iteration')}: {'; '.join(what) or 'no change'}"


def _shown(value: Any) -> str:
    return "(none)" if value is None else json.dumps(value) if not isinstance(value, str) else repr(value)
