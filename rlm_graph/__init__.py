"""rlm-graph: Recursive Language Models as a LangGraph state machine.

The context lives in a Python REPL as ``context``; the model explores it with code, asks
sub-models with ``llm_query``, spawns child RLMs with ``rlm_query`` and answers with ``FINAL``.

    >>> from rlm_graph import RLM
    >>> RLM("openai:gpt-4o-mini").completion("big.txt", "How many lines mention ERROR?").answer  # doctest: +SKIP
"""

from rlm_graph.errors import (
    ConfigurationError,
    ContextError,
    ModelError,
    ProtocolError,
    RLMError,
    RunNotFoundError,
    SandboxError,
    SandboxTimeout,
    WorkerCrashed,
)
from rlm_graph.graph.builder import create_rlm_graph
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMInput, RLMOutput, RLMState
from rlm_graph.rlm import RLM, RLMResult

__version__ = "0.1.0"

__all__ = [
    "RLM",
    "ConfigurationError",
    "ContextError",
    "Limits",
    "ModelError",
    "ProtocolError",
    "RLMContext",
    "RLMError",
    "RLMInput",
    "RLMOutput",
    "RLMResult",
    "RLMState",
    "RunNotFoundError",
    "SandboxError",
    "SandboxTimeout",
    "WorkerCrashed",
    "create_rlm_graph",
]
