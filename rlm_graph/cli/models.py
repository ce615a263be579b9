"""``rlm-graph models status | start | stop``: the embedded local model servers."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from rlm_graph.cli._options import EXIT_OK
from rlm_graph.errors import ConfigurationError


def register(sub: Any) -> None:
    models = sub.add_parser("models", help="the embedded local model servers: status, start, stop")
    models.add_argument("action", choices=["status", "start", "stop"])
    models.add_argument("--role", choices=["root", "sub"], help="only this server (default: both)")
    models.add_argument("--json", action="store_true")
    models.set_defaults(handler=cmd_models)


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
