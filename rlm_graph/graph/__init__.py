"""The RLM graph: state, prompts, settings and assembly.

``rlm_graph.graph:graph`` is the module-level graph named in ``langgraph.json``. It is compiled
without a checkpointer (the LangGraph server brings its own) and without a model: on its first
run the model is resolved from the environment (see :func:`rlm_graph.models.settings_from_env`:
``RLM_GRAPH_MODEL``, ``RLM_GRAPH_BASE_URL``, ``RLM_GRAPH_SUB_MODEL``, ``RLM_GRAPH_SUB_BASE_URL``,
``RLM_GRAPH_SANDBOX``, ``RLM_GRAPH_MAX_ITERATIONS``). A run's ``context`` (in the server's API) may
change limits and switches such as ``approve_code``.
"""

from __future__ import annotations

from rlm_graph.graph.builder import build_graph, create_rlm_graph
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMInput, RLMOutput, RLMState

__all__ = ["Limits", "RLMContext", "RLMInput", "RLMOutput", "RLMState", "build_graph", "create_rlm_graph", "graph"]

#: The graph for ``langgraph dev`` / LangGraph Server (models resolved from the environment on first use).
graph = build_graph(RLMContext(model=None), name="rlm")
