"""rlm-graph: Recursive Language Models as a LangGraph state machine.

The context lives in a Python REPL as ``context``; the model explores it with code, asks
sub-models with ``llm_query``, spawns child RLMs with ``rlm_query`` and answers with ``FINAL``.

    >>> from rlm_graph import RLM
    >>> RLM("openai:gpt-4o-mini").completion("big.txt", "How many lines mention ERROR?").answer  # doctest: +SKIP

The names below are imported on first use (PEP 562), so ``import rlm_graph`` and the
``rlm-graph`` command line do not pay for LangGraph and LangChain until something needs them.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from rlm_graph.errors import (
    ConfigurationError,
    ContextError,
    ModelError,
    ProtocolError,
    RLMError,
    RunBusyError,
    RunNotFoundError,
    SandboxError,
    SandboxTimeout,
    WorkerCrashed,
)

if TYPE_CHECKING:
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
    "RunBusyError",
    "RunNotFoundError",
    "SandboxError",
    "SandboxTimeout",
    "WorkerCrashed",
    "create_rlm_graph",
]

#: Where each lazily imported public name lives.
_LAZY = {
    "RLM": "rlm_graph.rlm",
    "RLMResult": "rlm_graph.rlm",
    "create_rlm_graph": "rlm_graph.graph.builder",
    "Limits": "rlm_graph.graph.settings",
    "RLMContext": "rlm_graph.graph.settings",
    "RLMInput": "rlm_graph.graph.state",
    "RLMOutput": "rlm_graph.graph.state",
    "RLMState": "rlm_graph.graph.state",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'rlm_graph' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
