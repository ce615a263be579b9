"""Flags and helpers shared by the commands that run the RLM (run, resume, compare, ...).

A command module adds its parser with ``register(subparsers)`` and sets ``handler`` on it; the
helpers here turn parsed flags into an :class:`~rlm_graph.RLM` and print a result. Heavy imports
happen inside the functions, so ``rlm-graph --help`` stays fast.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rlm_graph.errors import ConfigurationError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130

def _count_or_none(value: str) -> int | str:
    """A whole number, or "none" (no limit) for a limit whose default is a number."""
    return "none" if value.strip().lower() in ("none", "unlimited") else int(value)


#: Limit flags: (Limits field, type, help).
LIMIT_FLAGS: list[tuple[str, Any, str]] = [
    ("max_iterations", int, "root-model turns before a forced final answer (default 30)"),
    ("max_depth", int, "how deep rlm_query may recurse (default 1)"),
    ("max_subcalls", _count_or_none, "sub-calls in the whole tree (default 1000, a stop for runaway loops; 'none' for no limit)"),
    ("max_tokens", int, "input+output tokens in the whole tree"),
    ("max_cost_usd", float, "spend in the whole tree, in USD"),
    ("max_seconds", float, "wall-clock seconds"),
    ("cell_timeout", float, "seconds one cell may run (default 120)"),
    ("max_output_chars", int, "characters of cell output the model sees (default 4000)"),
    ("max_concurrency", int, "sub-calls in flight at once (default 16)"),
    ("max_errors", int, "failed cells or sub-calls in a row before a forced final answer (default: no limit)"),
]

#: The run a command is working on, for the hint printed when it fails or is interrupted.
CURRENT: dict[str, Any] = {}


def add_model_flags(p: argparse.ArgumentParser, key_flag: str = "--api-key") -> None:
    """The model flags; ``key_flag`` names the model server's key (``serve`` keeps --api-key for its own)."""
    g = p.add_argument_group("model")
    g.add_argument("--model", help="openai:MODEL, openrouter:MODEL, local, PROVIDER:MODEL (any LangChain provider, e.g. anthropic:..., with the providers extra), or a model name with --base-url")
    g.add_argument("--base-url", help="an OpenAI-compatible server, e.g. http://127.0.0.1:8080/v1")
    g.add_argument("--sub-model", help="model for llm_query (default: --model)")
    g.add_argument("--sub-base-url", help="server for --sub-model (default: --base-url)")
    g.add_argument(key_flag, dest="api_key", help="key for --base-url servers that need one (default: $RLM_GRAPH_API_KEY)")
    g.add_argument("--timeout", type=float, default=600.0, help="seconds per model request (default 600)")
    g.add_argument("--retries", type=int, default=2, help="retries of a failed model request (default 2)")


def add_run_flags(p: argparse.ArgumentParser) -> None:
    add_model_flags(p)
    g = p.add_argument_group("limits")
    for name, kind, text in LIMIT_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    r = p.add_argument_group("run")
    r.add_argument("--sandbox", help="local, docker, e2b or modal (default local)")
    r.add_argument("--isolation", choices=["auto", "bwrap", "none"],
                   help="local sandbox: bubblewrap isolation (auto: when installed; none: a plain subprocess that can read host files and use the network)")
    r.add_argument("--checkpoint", help="SQLite file or postgresql:// URL (default .rlm/checkpoints.sqlite); 'none' to disable")
    r.add_argument("--work-dir", default=".rlm", help="where checkpoints and inline contexts live (default .rlm)")
    r.add_argument("--log-dir", help="write a trajectory JSONL here")
    r.add_argument("--verbose", "-v", action="store_true", help="show each step live on stderr")
    r.add_argument("--json", action="store_true", help="print the whole result as one JSON object")
    r.add_argument("--answer-check", choices=["on", "off"], help="check each FINAL's form with the sub-model")
    r.add_argument("--approve-code", action="store_true", help="ask before running each cell")
    r.add_argument("--prices", type=prices_arg, metavar="JSON",
                   help='USD per million tokens by model label, for cost accounting and --max-cost-usd: \'{"gpt-4o-mini": [0.15, 0.6]}\'')
    add_tools_flag(r)


def prices_arg(value: str) -> dict[str, tuple[float, float]]:
    """``--prices`` JSON: ``{label: [input, output]}`` in USD per million tokens."""
    try:
        data = json.loads(value)
        if not isinstance(data, dict):
            raise ValueError("not an object")
        out: dict[str, tuple[float, float]] = {}
        for label, pair in data.items():
            per_in, per_out = (float(x) for x in pair)
            if per_in < 0 or per_out < 0 or per_in != per_in or per_out != per_out or float("inf") in (per_in, per_out):
                raise ValueError(f"{label}: prices must be finite and not negative")
            out[str(label)] = (per_in, per_out)
        return out
    except (ValueError, TypeError) as exc:
        raise argparse.ArgumentTypeError(f'expected JSON like {{"MODEL": [USD_PER_M_INPUT, USD_PER_M_OUTPUT]}}: {exc}') from None


def add_tools_flag(group: Any) -> None:
    group.add_argument("--tools", action="append", default=[], metavar="MODULE:ATTR",
                       help="host functions REPL code may call: a dict of functions, a list, or one function (repeatable; "
                            "the current folder is importable); give the same to resume")


def add_steer_flags(p: argparse.ArgumentParser) -> None:
    """Flags of the commands that carry a saved run on (resume, ask, fork)."""
    g = p.add_argument_group("saved run")
    g.add_argument("--allow-change", action="store_true",
                   help="carry the run on with options that differ from how it started (recorded in its manifest; e.g. a raised limit)")
    g.add_argument("--context", dest="new_context", metavar="NEWPATH",
                   help="the run's context file in a new place (another machine, a moved file): accepted when its SHA-256 matches")


def checkpoint_arg(value: str | None) -> Any:
    if value is None:
        return None
    return False if value.lower() in ("none", "off", "false") else value


def make_rlm(args: argparse.Namespace, **extra: Any) -> Any:
    """An RLM configured from the parsed flags (used by run, resume and compare)."""
    from rlm_graph.graph.settings import Limits
    from rlm_graph.rlm import RLM
    from rlm_graph.validation import check_setting

    if args.model is None and args.base_url is not None:
        raise ConfigurationError("--base-url needs --model NAME (the model's name on that server)")
    limits = {name: getattr(args, name) for name, _, _ in LIMIT_FLAGS if getattr(args, name, None) is not None}
    limits = {name: None if value == "none" else value for name, value in limits.items()}
    # Every number first (one place: rlm_graph.validation), before any server is reached.
    Limits(**limits)
    check_setting("timeout", args.timeout, label="--timeout")
    check_setting("max_retries", args.retries, label="--retries")
    answer_check = None if getattr(args, "answer_check", None) is None else args.answer_check == "on"
    if args.base_url:
        check_reachable(args.base_url)
    if args.sub_base_url:
        check_reachable(args.sub_base_url)
    if getattr(args, "tools", None):
        from rlm_graph.tools import load_tools

        extra.setdefault("tools", load_tools(args.tools))
    # Only the flags given: a resume compares them with the run's manifest, and a default is not a request.
    named = {
        "base_url": args.base_url,
        "sub_base_url": args.sub_base_url,
        "sandbox": args.sandbox,
        "sandbox_options": {"isolation": args.isolation} if getattr(args, "isolation", None) else None,
        "answer_check": answer_check,
        "approve_code": True if args.approve_code else None,
        "prices": getattr(args, "prices", None),
        **limits,
    }
    return RLM(
        args.model,
        args.sub_model,
        api_key=args.api_key,
        verbose=args.verbose,
        log_dir=args.log_dir,
        checkpointer=checkpoint_arg(args.checkpoint),
        work_dir=args.work_dir,
        timeout=args.timeout,
        max_retries=args.retries,
        **{k: v for k, v in named.items() if v is not None},
        **extra,
    )


def check_reachable(base_url: str) -> None:
    """Fail fast, with one line, when an OpenAI-compatible server is not there."""
    import httpx

    try:
        httpx.get(base_url.rstrip("/") + "/models", timeout=10.0)
    except httpx.HTTPError as exc:
        raise ConfigurationError(f"cannot reach the model server at {base_url}: {type(exc).__name__}: {exc}") from exc


def print_result(result: Any, as_json: bool) -> None:
    if as_json:
        keys = ("answer", "iterations", "thread_id", "stopped_by", "confirmed", "execution_time", "usage", "subcalls", "cells", "interrupted", "pending_code")
        print(json.dumps({k: getattr(result, k) for k in keys}, ensure_ascii=False))
        return
    if result.interrupted:
        print(f"run {result.thread_id} waits for approval of this code:\n{result.pending_code}", file=sys.stderr)
        print(f"approve with: rlm-graph resume {result.thread_id} --decision approve", file=sys.stderr)
        return
    if result.stopped_by not in ("final", None):
        print(f"note: the run was stopped by {result.stopped_by}; this is its best answer (unconfirmed)", file=sys.stderr)
    elif result.answer is not None and not result.confirmed:
        print("note: the answer is unconfirmed: the checks sent it back and the model kept it", file=sys.stderr)
    print(result.answer if result.answer is not None else "")
    tokens = sum(u.get("input_tokens", 0) + u.get("output_tokens", 0) for u in result.usage.values())
    print(f"[{result.iterations} iterations, {result.subcalls} sub-calls, {tokens:,} tokens, {result.execution_time:.1f}s, thread {result.thread_id}]", file=sys.stderr)
