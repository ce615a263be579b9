"""The RLM graph: state, prompts, settings and assembly.

``rlm_graph.graph:graph`` is the module-level graph named in ``langgraph.json``. It is built on
first access (not at import) from environment variables: ``RLM_GRAPH_MODEL`` (a spec or a model
name), ``RLM_GRAPH_BASE_URL`` (an OpenAI-compatible server), ``RLM_GRAPH_SUB_MODEL``,
``RLM_GRAPH_SUB_BASE_URL`` and ``RLM_GRAPH_SANDBOX``. It has no checkpointer: the server brings its own.
"""

from __future__ import annotations

import os
from typing import Any

from rlm_graph.graph.builder import build_graph, create_rlm_graph
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMInput, RLMOutput, RLMState

__all__ = ["Limits", "RLMContext", "RLMInput", "RLMOutput", "RLMState", "build_graph", "create_rlm_graph", "graph"]

_GRAPH: Any = None


def _graph_from_env() -> Any:
    env = os.environ
    limits = {}
    if env.get("RLM_GRAPH_MAX_ITERATIONS"):
        limits["max_iterations"] = int(env["RLM_GRAPH_MAX_ITERATIONS"])
    return create_rlm_graph(
        env.get("RLM_GRAPH_MODEL") or None,
        base_url=env.get("RLM_GRAPH_BASE_URL") or None,
        sub_model=env.get("RLM_GRAPH_SUB_MODEL") or None,
        sub_base_url=env.get("RLM_GRAPH_SUB_BASE_URL") or None,
        sandbox=env.get("RLM_GRAPH_SANDBOX", "local"),
        settings=RLMContext(approve_code=env.get("RLM_GRAPH_APPROVE_CODE", "") in ("1", "true")),
        **limits,
    )


def __getattr__(name: str) -> Any:
    global _GRAPH
    if name == "graph":
        if _GRAPH is None:
            _GRAPH = _graph_from_env()
        return _GRAPH
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
