"""``rlm-graph compare``: one question through a plain LLM call and through the RLM, side by side."""

from __future__ import annotations

import argparse
import json
from typing import Any

from rlm_graph.cli._options import EXIT_OK, add_run_flags, make_rlm


def register(sub: Any) -> None:
    compare = sub.add_parser("compare", help="the same question through one plain LLM call and through the RLM, side by side")
    compare.add_argument("--context", required=True, help="a text, JSON, JSONL or CSV file")
    compare.add_argument("--query", required=True, help="the question")
    compare.add_argument("--expected", help="the right answer, to mark each side correct or not")
    compare.add_argument("--window-chars", type=int, default=24000, help="context characters the plain call may see (default 24000)")
    add_run_flags(compare)
    compare.set_defaults(handler=cmd_compare)


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
