"""The ``rlm-graph`` command line: run, resume and list runs, plus the tools of other modules.

It parses arguments, builds an :class:`~rlm_graph.RLM`, calls the same public functions a user
would, and prints. Answers go to stdout, diagnostics to stderr. Bad input gets one line on
stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import uuid
from collections.abc import Callable, Sequence
from typing import Any

from rlm_graph.errors import ConfigurationError, ContextError, ModelError, RLMError, RunNotFoundError, SandboxError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

_LIMIT_FLAGS: list[tuple[str, type, str]] = [
    ("max_iterations", int, "root-model turns before a forced final answer (default 30)"),
    ("max_depth", int, "how deep rlm_query may recurse (default 1)"),
    ("max_subcalls", int, "sub-calls in the whole tree"),
    ("max_tokens", int, "input+output tokens in the whole tree"),
    ("max_cost_usd", float, "spend in the whole tree, in USD"),
    ("max_seconds", float, "wall-clock seconds"),
    ("cell_timeout", float, "seconds one cell may run (default 120)"),
    ("max_output_chars", int, "characters of cell output the model sees (default 4000)"),
    ("max_concurrency", int, "sub-calls in flight at once (default 16)"),
]


def _add_model_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("model")
    g.add_argument("--model", help="openai:MODEL, openrouter:MODEL, local, or a model name with --base-url")
    g.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    g.add_argument("--sub-model", help="model for llm_query (default: --model)")
    g.add_argument("--sub-base-url", help="server for --sub-model (default: --base-url)")
    g.add_argument("--api-key", help="key for --base-url servers that need one (default: $RLM_GRAPH_API_KEY)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per model request (default 600)")
    g.add_argument("--retries", type=int, default=2, help="retries of a failed model request (default 2)")


def _add_run_flags(p: argparse.ArgumentParser) -> None:
    _add_model_flags(p)
    g = p.add_argument_group("limits")
    for name, kind, text in _LIMIT_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    r = p.add_argument_group("run")
    r.add_argument("--sandbox", default="local", help="local, docker or e2b (default local)")
    r.add_argument("--isolation", choices=["auto", "bwrap", "none"],
                   help="local sandbox: bubblewrap isolation (auto: when installed; none: a plain subprocess that can read host files and use the network)")
    r.add_argument("--checkpoint", help="SQLite file or postgresql:// URL (default .rlm/checkpoints.sqlite); 'none' to disable")
    r.add_argument("--work-dir", default=".rlm", help="where checkpoints and inline contexts live (default .rlm)")
    r.add_argument("--log-dir", help="write a trajectory JSONL here")
    r.add_argument("--verbose", "-v", action="store_true", help="show each step live on stderr")
    r.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    r.add_argument("--answer-check", choices=["on", "off"], help="check each FINAL's form with the sub-model")
    r.add_argument("--approve-code", action="store_true", help="ask before running each cell")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rlm-graph", description="Recursive Language Models as a LangGraph state machine.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    run = sub.add_parser("run", help="answer a question over a context file")
    run.add_argument("--context", required=True, help="a text, JSON, JSONL or CSV file")
    run.add_argument("--query", required=True, help="the question")
    run.add_argument("--thread-id", help="checkpoint thread id (default: a new one)")
    _add_run_flags(run)

    resume = sub.add_parser("resume", help="carry on an interrupted or killed run from its last checkpoint")
    resume.add_argument("thread_id")
    resume.add_argument("--decision", help="answer a pending code approval: approve, reject, or edited code")
    _add_run_flags(resume)

    runs = sub.add_parser("runs", help="list checkpointed runs")
    runs.add_argument("--checkpoint", help="SQLite file or postgresql:// URL (default .rlm/checkpoints.sqlite)")
    runs.add_argument("--work-dir", default=".rlm")
    runs.add_argument("--json", action="store_true")

    compare = sub.add_parser("compare", help="the same question through one plain LLM call and through the RLM, side by side")
    compare.add_argument("--context", required=True, help="a text, JSON, JSONL or CSV file")
    compare.add_argument("--query", required=True, help="the question")
    compare.add_argument("--expected", help="the right answer, to mark each side correct or not")
    compare.add_argument("--window-chars", type=int, default=24000, help="context characters the plain call may see (default 24000)")
    _add_run_flags(compare)

    viz = sub.add_parser("viz", help="open trajectory logs in a local web viewer")
    viz.add_argument("target", nargs="?", help="a .jsonl log or a directory of them (default ./logs)")
    viz.add_argument("--port", type=int, default=3001)
    viz.add_argument("--host", default="127.0.0.1")
    viz.add_argument("--open", action="store_true", help="open the page in a browser")

    from rlm_graph.bench.cli import register as register_bench

    register_bench(sub)

    models = sub.add_parser("models", help="the embedded local model servers: status, start, stop")
    models.add_argument("action", choices=["status", "start", "stop"])
    models.add_argument("--role", choices=["root", "sub"], help="only this server (default: both)")
    models.add_argument("--json", action="store_true")
    return parser


def _checkpoint_arg(value: str | None) -> Any:
    if value is None:
        return None
    return False if value.lower() in ("none", "off", "false") else value


def make_rlm(args: argparse.Namespace, **extra: Any) -> Any:
    """An RLM configured from the parsed flags (used by run, resume and compare)."""
    from rlm_graph.rlm import RLM

    if args.model is None and args.base_url is not None:
        raise ConfigurationError("--base-url needs --model NAME (the model's name on that server)")
    limits = {name: getattr(args, name) for name, _, _ in _LIMIT_FLAGS if getattr(args, name, None) is not None}
    answer_check = None if getattr(args, "answer_check", None) is None else args.answer_check == "on"
    if args.base_url:
        _check_reachable(args.base_url)
    if args.sub_base_url:
        _check_reachable(args.sub_base_url)
    return RLM(
        args.model,
        args.sub_model,
        base_url=args.base_url,
        sub_base_url=args.sub_base_url,
        api_key=args.api_key,
        sandbox=args.sandbox,
        sandbox_options={"isolation": args.isolation} if getattr(args, "isolation", None) else None,
        verbose=args.verbose,
        log_dir=args.log_dir,
        checkpointer=_checkpoint_arg(args.checkpoint),
        work_dir=args.work_dir,
        answer_check=answer_check,
        approve_code=args.approve_code,
        timeout=args.timeout,
        max_retries=args.retries,
        **limits,
        **extra,
    )


def _check_reachable(base_url: str) -> None:
    """Fail fast, with one line, when an OpenAI-compatible server is not there."""
    import httpx

    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=10.0)
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"cannot reach the model server at {base_url}: {type(exc).__name__}: {exc}") from exc


def _print_result(result: Any, as_json: bool) -> None:
    if as_json:
        keys = ("answer", "iterations", "thread_id", "stopped_by", "execution_time", "usage", "subcalls", "cells", "interrupted", "pending_code")
        print(json.dumps({k: getattr(result, k) for k in keys}, ensure_ascii=False))
        return
    if result.interrupted:
        print(f"run {result.thread_id} waits for approval of this code:\n{result.pending_code}", file=sys.stderr)
        print(f"approve with: rlm-graph resume {result.thread_id} --decision approve", file=sys.stderr)
        return
    if result.stopped_by not in ("final", None):
        print(f"note: the run was stopped by {result.stopped_by}; this is its best answer", file=sys.stderr)
    print(result.answer if result.answer is not None else "")
    tokens = sum(u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in result.usage.values())
    print(f"[{result.iterations} iterations, {result.subcalls} sub-calls, {tokens:,} tokens, {result.execution_time:.1f}s, thread {result.thread_id}]", file=sys.stderr)


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
    from rlm_graph.contexts import check_file

    context = check_file(args.context)  # a CLI context is always a file
    on_approve = _interactive_approval if args.approve_code and sys.stdin.isatty() else None
    rlm = make_rlm(args, on_approve=on_approve)

    thread_id = args.thread_id or uuid.uuid4().hex[:16]
    _CURRENT["thread_id"] = thread_id
    _CURRENT["resumable"] = rlm.checkpointer is not None
    result = rlm.completion(context, args.query, thread_id=thread_id)
    _print_result(result, args.json)
    return EXIT_OK


def cmd_resume(args: argparse.Namespace) -> int:
    rlm = make_rlm(args)
    _CURRENT.update(thread_id=args.thread_id, resumable=True)
    result = rlm.resume(args.thread_id, _decision(args.decision) if args.decision else None)
    _print_result(result, args.json)
    return EXIT_OK


def cmd_runs(args: argparse.Namespace) -> int:
    from rlm_graph.checkpoints import list_runs, open_checkpointer

    saver = open_checkpointer(_checkpoint_arg(args.checkpoint), args.work_dir)
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
        print(f"{r['thread_id']}  {r['status']:<12} iter {r['iteration']:<3} {r['updated'] or '':<26} {answer}")
    return EXIT_OK


def cmd_models(args: argparse.Namespace) -> int:
    from rlm_graph.models import local

    roles = (args.role,) if args.role else ("root", "sub")
    if args.action == "start":
        if not local.is_llama_server_installed():
            raise ConfigurationError(local.INSTALL_HINT)
        urls = local.ensure_servers(roles)
        for role, url in urls.items():
            print(f"{role}: {url}")
        return EXIT_OK
    if args.action == "stop":
        stopped = local.stop(args.role)
        print("stopped: " + (", ".join(stopped) if stopped else "nothing was running"), file=sys.stderr)
        return EXIT_OK
    rows = local.status()
    if args.json:
        print(json.dumps(rows))
    elif not rows:
        print("no embedded model server is running (start one with: rlm-graph models start)", file=sys.stderr)
    for r in rows:
        state = "running" if r.get("running") else "stale"
        print(f"{r['role']:<5} {state:<8} pid {r.get('pid')} {r.get('base_url') or ''} {r.get('model')}")
    return EXIT_OK


def cmd_compare(args: argparse.Namespace) -> int:
    from rlm_graph.compare import compare, format_table
    from rlm_graph.contexts import check_file

    context = check_file(args.context)
    result = compare(context, args.query, rlm=make_rlm(args), expected=args.expected, window_chars=args.window_chars)
    if args.json:
        print(json.dumps(result.to_dict(), ensure_ascii=False, default=str))
    else:
        print(format_table(result))
    return EXIT_OK


def cmd_viz(args: argparse.Namespace) -> int:
    from rlm_graph.viz import serve

    serve(args.target, port=args.port, host=args.host, open_browser=args.open)
    return EXIT_OK


_CURRENT: dict[str, Any] = {}
_COMMANDS: dict[str, Callable[[argparse.Namespace], int]] = {"run": cmd_run, "resume": cmd_resume, "runs": cmd_runs, "models": cmd_models, "compare": cmd_compare, "viz": cmd_viz}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlm-graph`` command."""
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = _COMMANDS.get(args.command) or getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse requires a command
        parser.error("no command")
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        tid = _CURRENT.get("thread_id")
        hint = f"; resume with: rlm-graph resume {tid}" if tid and _CURRENT.get("resumable") else ""
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigurationError, ContextError, RunNotFoundError) as exc:
        print(f"rlm-graph: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelError, SandboxError, RLMError) as exc:
        tid = _CURRENT.get("thread_id")
        hint = f" (the run is saved; resume with: rlm-graph resume {tid})" if tid and _CURRENT.get("resumable") else ""
        print(f"rlm-graph: error: {exc}{hint}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected failure still gets one line (RLM_GRAPH_DEBUG=1 shows the traceback)
        if os.environ.get("RLM_GRAPH_DEBUG"):
            raise
        tid = _CURRENT.get("thread_id")
        hint = f" (resume with: rlm-graph resume {tid})" if tid and _CURRENT.get("resumable") else ""
        print(f"rlm-graph: error: {type(exc).__name__}: {str(exc).splitlines()[0] if str(exc) else ''}{hint}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
