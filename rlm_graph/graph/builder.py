"""Assembling the RLM state machine: ``create_rlm_graph``."""

from __future__ import annotations

import functools
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMInput, RLMOutput, RLMState
from rlm_graph.models import resolve_model
from rlm_graph.nodes.check_final import check_final, route_check_final
from rlm_graph.nodes.execute import execute, route_execute
from rlm_graph.nodes.generate import generate, route_generate
from rlm_graph.nodes.prepare import prepare
from rlm_graph.nodes.recurse import EXECUTOR_THREADS, fan_out, recurse
from rlm_graph.nodes.sub_call import sub_call
from rlm_graph.sandboxes import SANDBOX_KINDS


def create_rlm_graph(
    model: str | BaseChatModel | None = None,
    *,
    sub_model: str | BaseChatModel | None = None,
    sandbox: str | Any = "local",
    checkpointer: Checkpointer = None,
    base_url: str | None = None,
    sub_base_url: str | None = None,
    settings: RLMContext | None = None,
    name: str = "rlm",
    **limits: Any,
) -> CompiledStateGraph:
    """Build the RLM graph: prepare → generate → execute ⇄ recurse/sub_call → check_final.

    Args:
        model: the root model: a spec (``"openai:gpt-4o-mini"``), a model name with ``base_url``,
            a LangChain chat model, or None for the default (see :func:`rlm_graph.models.default_spec`).
        sub_model: the model for ``llm_query`` (default: ``model``).
        sandbox: "local", "docker", "e2b", or a callable returning a Transport.
        checkpointer: a LangGraph checkpointer. None when embedded: the graph then uses its
            parent's checkpointer (which is also how ``rlm_query`` children are checkpointed).
        base_url: an OpenAI-compatible server for ``model``.
        sub_base_url: an OpenAI-compatible server for ``sub_model``.
        settings: full run settings; the arguments above and ``limits`` override its fields.
        name: the compiled graph's name.
        **limits: any :class:`~rlm_graph.graph.settings.Limits` field (``max_iterations=10`` ...).

    Returns:
        A compiled graph. Input: :class:`RLMInput` (``query`` and ``context`` or ``context_path``).
        Output: :class:`RLMOutput` (``final_answer``, ``stopped_by``, ``usage`` ...).

    Raises:
        ConfigurationError: unknown limit, sandbox or model spec.

    Example:
        >>> g = create_rlm_graph("m", base_url="http://127.0.0.1:8000/v1", max_iterations=5)
        >>> sorted(n for n in g.get_graph().nodes if not n.startswith("__"))
        ['check_final', 'execute', 'generate', 'prepare', 'recurse', 'sub_call']
    """
    unknown = set(limits) - set(Limits.__dataclass_fields__)
    if unknown:
        raise ConfigurationError(f"unknown option(s) {', '.join(sorted(unknown))}; limits are: {', '.join(Limits.__dataclass_fields__)}")
    if isinstance(sandbox, str) and sandbox not in SANDBOX_KINDS:
        raise ConfigurationError(f"unknown sandbox {sandbox!r}: use one of {', '.join(SANDBOX_KINDS)}")
    base = settings or RLMContext()
    reply_tokens = base.reply_tokens
    overrides: dict[str, Any] = {"sandbox": sandbox, "limits": Limits.from_dict({**base.limits.as_dict(), **limits})}
    if model is not None or base.model is None:
        root = resolve_model(model, base_url=base_url, max_tokens=reply_tokens)
        overrides.update(model=root.model, model_label=root.label)
    if sub_model is not None or sub_base_url is not None:
        sub = resolve_model(sub_model or model, base_url=sub_base_url or base_url, max_tokens=reply_tokens, role="sub")
        overrides.update(sub_model=sub.model, sub_model_label=sub.label)
    defaults = RLMContext(**{**base.__dict__, **overrides})
    return build_graph(defaults, checkpointer=checkpointer, name=name)


def build_graph(defaults: RLMContext, *, checkpointer: Checkpointer = None, name: str = "rlm") -> CompiledStateGraph:
    """Wire the nodes around ready-made settings (used by :func:`create_rlm_graph` and :class:`RLM`)."""
    holder: dict[str, CompiledStateGraph] = {}
    bind = functools.partial
    builder = StateGraph(RLMState, context_schema=RLMContext, input_schema=RLMInput, output_schema=RLMOutput)
    builder.add_node("prepare", bind(prepare, defaults=defaults))
    builder.add_node("generate", bind(generate, defaults=defaults))
    builder.add_node("execute", bind(execute, defaults=defaults))
    builder.add_node("recurse", recurse)
    builder.add_node("sub_call", bind(sub_call, defaults=defaults, child_graph=lambda: holder["graph"]))
    builder.add_node("check_final", bind(check_final, defaults=defaults))
    builder.add_edge(START, "prepare")
    builder.add_edge("prepare", "generate")
    builder.add_conditional_edges("generate", route_generate, ["execute", "check_final"])
    builder.add_conditional_edges("execute", bind(route_execute, defaults=defaults), ["recurse", "execute", "check_final", "generate"])
    builder.add_conditional_edges("recurse", fan_out, ["sub_call"])
    builder.add_edge("sub_call", "execute")
    builder.add_conditional_edges("check_final", route_check_final, ["generate", END])
    graph = builder.compile(checkpointer=checkpointer, name=name)
    # Children (rlm_query) run a copy without a checkpointer of its own: nested in a sub_call
    # task, they use the parent's, under that task's namespace.
    holder["graph"] = builder.compile(name=name) if checkpointer is not None else graph
    return graph.with_config(max_concurrency=EXECUTOR_THREADS)  # type: ignore[return-value]
