"""The RLM graph: state, prompts, settings and assembly.

``rlm_graph.graph.served:graph`` is the graph named in ``langgraph.json`` (see
:mod:`rlm_graph.graph.served`); ``rlm_graph.graph.graph`` is the same object. The names below are
imported on first use (PEP 562), so importing the light parts (``settings``, ``state``) does not
build a graph or import LangGraph.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from langgraph.graph.state import CompiledStateGraph

    from rlm_graph.graph.bindings import Bindings, RunSettings
    from rlm_graph.graph.builder import build_graph, create_rlm_graph
    from rlm_graph.graph.settings import Limits, RLMContext
    from rlm_graph.graph.state import RLMInput, RLMOutput, RLMState

    graph: CompiledStateGraph

__all__ = ["Bindings", "Limits", "RLMContext", "RLMInput", "RLMOutput", "RLMState", "RunSettings", "build_graph", "create_rlm_graph", "graph"]

_LAZY = {
    "Bindings": "rlm_graph.graph.bindings",
    "RunSettings": "rlm_graph.graph.bindings",
    "build_graph": "rlm_graph.graph.builder",
    "create_rlm_graph": "rlm_graph.graph.builder",
    "Limits": "rlm_graph.graph.settings",
    "RLMContext": "rlm_graph.graph.settings",
    "RLMInput": "rlm_graph.graph.state",
    "RLMOutput": "rlm_graph.graph.state",
    "RLMState": "rlm_graph.graph.state",
    "graph": "rlm_graph.graph.served",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_graph.graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
