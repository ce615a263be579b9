"""The graph ``langgraph dev`` and LangGraph Server serve: ``langgraph.json`` names ``rlm_graph.graph.served:graph``.

It is compiled without a checkpointer (the server brings its own) and without a model: on its
first run its settings are read from the environment (see
:func:`rlm_graph.models.settings_from_env`: ``RLM_GRAPH_MODEL``, ``RLM_GRAPH_BASE_URL``,
``RLM_GRAPH_SUB_MODEL``, ``RLM_GRAPH_SUB_BASE_URL``, ``RLM_GRAPH_SANDBOX``,
``RLM_GRAPH_MAX_ITERATIONS``) and its models built from them. A run's ``context`` (in the
server's API, a form in Studio) may change any :class:`~rlm_graph.graph.settings.RLMContext`
field: limits, model specs, switches such as ``approve_code``. A ``context_path`` in the input must
lead into a folder ``RLM_GRAPH_CONTEXT_ROOTS`` names (``os.pathsep``-separated; default: the
server's work dir); any other is refused with one line. The server reads this module's
``__dict__``, so ``graph`` is a plain module variable.
"""

from __future__ import annotations

from rlm_graph.graph.bindings import Bindings
from rlm_graph.graph.builder import build_graph

__all__ = ["graph"]

graph = build_graph(Bindings(from_env=True, limit_paths=True), name="rlm")
