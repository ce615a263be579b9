"""Shared by the learning-path scripts: pick the model from the environment, print results."""

from __future__ import annotations

import os
import sys
from typing import Any

from rlm_graph import RLM, RLMError


def make_rlm(**options: Any) -> RLM:
    """An RLM on the best model available: RLM_GRAPH_BASE_URL, an API key's provider, or the embedded one."""
    options.setdefault("checkpointer", False)
    if os.environ.get("RLM_GRAPH_BASE_URL"):
        return RLM(os.environ.get("RLM_GRAPH_MODEL", "default"), base_url=os.environ["RLM_GRAPH_BASE_URL"], **options)
    return RLM(os.environ.get("RLM_GRAPH_MODEL"), **options)


def run_or_explain(fn: Any) -> None:
    """Run ``fn``; on a library error print one line and exit 1 instead of a traceback."""
    try:
        fn()
    except RLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
