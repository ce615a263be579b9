"""Assembling the RLM state machine: ``create_rlm_graph``."""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.types import Checkpointer

from rlm_graph.checkpoints import checkpoint_safe as safe
from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.bindings import CUSTOM_SANDBOX, Bindings
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.graph.state import RLMInput, RLMOutput, RLMState
from rlm_graph.nodes.check_final import check_final, route_check_final
from rlm_graph.nodes.execute import execute, route_execute
from rlm_graph.nodes.generate import generate, route_generate
from rlm_graph.nodes.prepare import prepare
from rlm_graph.nodes.recurse import EXECUTOR_THREADS, fan_out, recurse
from rlm_graph.nodes.sub_call import sub_call
from rlm_graph.sandboxes import SANDBOX_KINDS
from rlm_graph.tools import make_tools


def create_rlm_graph(
    model: str | BaseChatModel | None = None,
    *,
    sub_model: str | BaseChatModel | None = None,
    sandbox: str | Callable[[], Any] | None = None,
    checkpointer: Checkpointer = None,
    base_url: str | None = None,
    sub_base_url: str | None = None,
    settings: RLMContext | None = None,
    name: str = "rlm",
    tools: Mapping[str, Callable[..., Any]] | None = None,
    **limits: Any,
) -> CompiledStateGraph:
    """Build the RLM graph: prepare → generate → execute ⇄ recurse/sub_call → check_final.

    Args:
        model: the root model: a spec (``"openai:gpt-4o-mini"``), a model name with ``base_url``,
            a LangChain chat model, or None for the default (see :func:`rlm_graph.models.default_spec`).
        sub_model: the model for ``llm_query`` (default: ``model``).
        sandbox: "local", "docker", "e2b", "modal", or a callable returning a Transport (default: the
            settings' sandbox, "local").
        checkpointer: a LangGraph checkpointer. None when embedded: the graph then uses its
            parent's checkpointer (which is also how ``rlm_query`` children are checkpointed).
        base_url: an OpenAI-compatible server for ``model``.
        sub_base_url: an OpenAI-compatible server for ``sub_model``.
        settings: the graph's default run settings; the arguments above and ``limits`` override
            its fields, and a run's context overrides what it names.
        name: the compiled graph's name.
        tools: host functions REPL code may call, by name (:mod:`rlm_graph.tools`); children
            of ``rlm_query`` get them too.
        **limits: any :class:`~rlm_graph.graph.settings.Limits` field (``max_iterations=10`` ...).

    Returns:
        A compiled graph. Input: :class:`RLMInput` (``query`` and ``context`` or ``context_path``).
        Output: :class:`RLMOutput` (``final_answer``, ``stopped_by``, ``usage`` ...). Context:
        :class:`RLMContext` (JSON settings; chat model instances and a transport factory given
        here are bound to the graph, not carried in it).

    Raises:
        ConfigurationError: unknown limit, sandbox or model spec, a missing API key, or a bad tool.

    Example:
        >>> g = create_rlm_graph("m", base_url="http://127.0.0.1:8000/v1", max_iterations=5)
        >>> sorted(n for n in g.get_graph().nodes if not n.startswith("__"))
        ['check_final', 'execute', 'generate', 'prepare', 'recurse', 'sub_call']
    """
    unknown = set(limits) - set(Limits.__dataclass_fields__)
    if unknown:
        raise ConfigurationError(f"unknown option(s) {', '.join(sorted(unknown))}; limits are: {', '.join(Limits.__dataclass_fields__)}")
    bindings = make_bindings(model, sub_model=sub_model, sandbox=sandbox, base_url=base_url, sub_base_url=sub_base_url,
                             settings=settings or RLMContext(), limits=limits, tools=make_tools(tools))
    bindings.resolve(bindings.settings).model  # validation first: a bad spec or a missing key fails here
    return build_graph(bindings, checkpointer=checkpointer, name=name)


def make_bindings(
    model: str | BaseChatModel | None,
    *,
    sub_model: str | BaseChatModel | None = None,
    sandbox: str | Callable[[], Any] | None = None,
    base_url: str | None = None,
    sub_base_url: str | None = None,
    settings: RLMContext,
    limits: dict[str, Any] | None = None,
    **options: Any,
) -> Bindings:
    """Split what a graph is built with into JSON settings and bound live objects.

    A spec string goes into the settings; a chat model instance or a transport factory is bound
    (the settings then say ``sandbox="custom"``). ``options`` are :class:`Bindings` fields
    (``api_key``, ``timeout``, ``max_retries``, ``tools``).
    """
    if isinstance(sandbox, str) and sandbox not in SANDBOX_KINDS:
        raise ConfigurationError(f"unknown sandbox {sandbox!r}: use one of {', '.join(SANDBOX_KINDS)}")
    for role, value in (("model", model), ("sub_model", sub_model)):
        if value is not None and not isinstance(value, (str, BaseChatModel)):
            raise ConfigurationError(f"{role} must be a spec string or a LangChain chat model, not {type(value).__name__}")
    changes: dict[str, Any] = {"limits": Limits.from_dict({**settings.limits.as_dict(), **(limits or {})})}
    if model is not None:
        changes["model"] = model if isinstance(model, str) else None
    if base_url is not None:
        changes["base_url"] = base_url
    if sub_model is not None:
        changes["sub_model"] = sub_model if isinstance(sub_model, str) else None
    if sub_base_url is not None:
        changes["sub_base_url"] = sub_base_url
    if sandbox is not None:
        changes["sandbox"] = CUSTOM_SANDBOX if callable(sandbox) else sandbox
    return Bindings(
        settings=replace(settings, **changes),
        model=model if isinstance(model, BaseChatModel) else None,
        sub_model=sub_model if isinstance(sub_model, BaseChatModel) else None,
        transport=sandbox if callable(sandbox) else None,
        **options,
    )


def build_graph(defaults: Bindings | RLMContext, *, checkpointer: Checkpointer = None, name: str = "rlm") -> CompiledStateGraph:
    """Wire the nodes around ready-made bindings (used by :func:`create_rlm_graph` and :class:`RLM`).

    ``defaults`` are the graph's :class:`Bindings` (or bare settings, with nothing bound). Models
    are resolved when a run first needs them, not here.
    """
    if isinstance(defaults, RLMContext):
        defaults = Bindings(settings=defaults)
    holder: dict[str, CompiledStateGraph] = {}
    bind = functools.partial
    builder = StateGraph(RLMState, context_schema=RLMContext, input_schema=RLMInput, output_schema=RLMOutput)
    # Every string a node writes is made safe for every checkpointer (NUL, lone surrogates).
    builder.add_node("prepare", safe(bind(prepare, defaults=defaults)))
    builder.add_node("generate", safe(bind(generate, defaults=defaults)))
    builder.add_node("execute", safe(bind(execute, defaults=defaults)))
    builder.add_node("recurse", recurse)
    builder.add_node("sub_call", safe(bind(sub_call, defaults=defaults, child_graph=lambda: holder["graph"])))
    builder.add_node("check_final", safe(bind(check_final, defaults=defaults)))
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
