"""``rlm-graph viz``: open trajectory logs in the local web viewer."""

from __future__ import annotations

import argparse
from typing import Any

from rlm_graph.cli._options import EXIT_OK


def register(sub: Any) -> None:
    viz = sub.add_parser("viz", help="open trajectory logs in a local web viewer")
    viz.add_argument("target", nargs="?", help="a .jsonl log or a directory of them (default ./logs)")
    viz.add_argument("--port", type=int, default=3001)
    viz.add_argument("--host", default="127.0.0.1")
    viz.add_argument("--open", action="store_true", help="open the page in a browser")
    viz.set_defaults(handler=cmd_viz)


def cmd_viz(args: argparse.Namespace) -> int:
    from rlm_graph.viz import serve

    serve(args.target, port=args.port, host=args.host, open_browser=args.open)
    return EXIT_OK
