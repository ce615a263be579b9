"""``rlm-graph serve`` (an OpenAI-compatible HTTP API) and ``rlm-graph mcp`` (an MCP server)."""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from rlm_graph.cli._options import EXIT_OK, LIMIT_FLAGS, add_model_flags, add_tools_flag, make_rlm
from rlm_graph.errors import ConfigurationError

#: The port ``rlm-graph serve`` listens on unless told otherwise.
DEFAULT_PORT = 8300


def _add_runner_flags(p: argparse.ArgumentParser) -> None:
    """Model, limit, sandbox and checkpoint flags of a server (its runs' settings and ceilings)."""
    add_model_flags(p, key_flag="--model-api-key")
    g = p.add_argument_group("limits (the most any request may use)")
    for name, kind, text in LIMIT_FLAGS:
        g.add_argument("--" + name.replace("_", "-"), type=kind, help=text)
    r = p.add_argument_group("runs")
    r.add_argument("--sandbox", default="local", help="local, docker, e2b or modal (default local)")
    r.add_argument("--isolation", choices=["auto", "bwrap", "none"], help="local sandbox: bubblewrap isolation (default auto)")
    r.add_argument("--checkpoint", help="SQLite file or postgresql:// URL (default .rlm/checkpoints.sqlite); 'none' to disable")
    r.add_argument("--work-dir", default=".rlm", help="where checkpoints and inline contexts live (default .rlm)")
    r.add_argument("--log-dir", help="write a trajectory JSONL per run here")
    r.add_argument("--answer-check", choices=["on", "off"], help="check each FINAL's form with the sub-model")
    r.add_argument("--context-root", action="append", default=[], metavar="DIR",
                   help="a folder whose files and subfolders requests may name as context_path (repeatable; default: none)")
    add_tools_flag(r)
    p.set_defaults(verbose=False, approve_code=False, json=False)


def register(sub: Any) -> None:
    serve = sub.add_parser("serve", help="serve the RLM as an OpenAI-compatible HTTP API (/v1/chat/completions)")
    serve.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1: this machine only)")
    serve.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"port (default {DEFAULT_PORT}; 0: any free port)")
    serve.add_argument("--api-key", help="bearer token clients must send (default: $RLM_GRAPH_SERVE_KEY; none: no check)")
    serve.add_argument("--served-model-name", default="rlm-graph", help="the model id clients name (default rlm-graph)")
    serve.add_argument("--max-runs", type=int, default=4, help="runs working at once; more requests wait (default 4)")
    _add_runner_flags(serve)
    serve.set_defaults(handler=cmd_serve)

    mcp = sub.add_parser("mcp", help="serve the RLM as an MCP tool, rlm_answer (stdio, or streamable HTTP with --http)")
    mcp.add_argument("--http", type=int, metavar="PORT", help="serve streamable HTTP on this port (path /mcp) instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="address for --http (default 127.0.0.1)")
    mcp.add_argument("--max-runs", type=int, default=4, help="calls working at once (default 4)")
    _add_runner_flags(mcp)
    mcp.set_defaults(handler=cmd_mcp)


def _rlm(args: argparse.Namespace) -> Any:
    return make_rlm(args)


def cmd_serve(args: argparse.Namespace) -> int:
    from rlm_graph.serve import LOOPBACK, ServeSettings, listen, run_app

    key = args.api_key or os.environ.get("RLM_GRAPH_SERVE_KEY") or None
    if args.host not in LOOPBACK and key is None:
        raise ConfigurationError(f"--host {args.host} lets other machines run code through this server: set --api-key (or $RLM_GRAPH_SERVE_KEY) first")
    if not 0 <= args.port <= 65535:
        raise ConfigurationError(f"--port must be 0-65535, got {args.port}")
    _need_stack(("starlette", "uvicorn"))
    settings = ServeSettings(model_id=args.served_model_name, api_key=key, context_roots=tuple(Path(r) for r in args.context_root), max_runs=args.max_runs)
    from rlm_graph.serve import create_app

    app = create_app(_rlm(args), settings)
    sock = listen(args.host, args.port)
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    print(f"rlm-graph serve: listening on http://{shown}:{port}/v1 (model {settings.model_id!r}{', key required' if key else ''})", file=sys.stderr, flush=True)
    run_app(app, sock)
    active = sorted(app.state.runs.active)
    if active:
        # Runs still working were cut off; their checkpoints are saved. Exit now rather than wait for them.
        print(f"rlm-graph serve: stopped with {len(active)} run(s) unfinished; carry them on with: rlm-graph resume THREAD_ID "
              f"or a request naming its thread_id ({', '.join(active)})", file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_OK)
    return EXIT_OK


def cmd_mcp(args: argparse.Namespace) -> int:
    from rlm_graph.serve import LOOPBACK

    if args.http is not None and args.host not in LOOPBACK:
        raise ConfigurationError(f"--host {args.host} would let other machines run code through this server; the MCP server has no key: keep it on 127.0.0.1")
    if args.http is not None and not 1 <= args.http <= 65535:
        raise ConfigurationError(f"--http must be a port 1-65535, got {args.http}")
    _need_stack(("mcp",))
    from rlm_graph.mcp_server import create_mcp_server

    server = create_mcp_server(_rlm(args), context_roots=tuple(Path(r) for r in args.context_root), max_runs=args.max_runs)
    if args.http is not None:
        print(f"rlm-graph mcp: streamable HTTP on http://{args.host}:{args.http}/mcp", file=sys.stderr, flush=True)
        server.run("streamable-http", host=args.host, port=args.http)
    else:
        server.run("stdio")
    return EXIT_OK


def _need_stack(modules: tuple[str, ...]) -> None:
    import importlib.util

    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigurationError(f"this command needs {', '.join(missing)}: pip install 'rlm-graph[serve]'")
