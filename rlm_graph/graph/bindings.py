"""What a graph is built with beyond JSON settings, and the settings a run's nodes read.

:class:`~rlm_graph.graph.settings.RLMContext` holds JSON values only. A graph is also built with
things JSON cannot carry: a chat model instance passed to ``create_rlm_graph`` or ``RLM``, a
transport factory, the API key and client options of its models. Those are :class:`Bindings`,
given to the nodes with ``functools.partial`` when the graph is built. At run time
:func:`rlm_graph.graph.runtime.settings_of` merges the run's context over the graph's settings
and returns :class:`RunSettings`: the merged JSON settings with the models resolved (a bound
instance while the run names no other spec; otherwise the spec strings, each built once per
process and cached).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_graph.errors import ConfigurationError
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.validation import check_setting

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

    from rlm_graph.models import ModelSpec
    from rlm_graph.tools import Tool

#: The ``sandbox`` setting that names the transport factory bound when the graph was built.
CUSTOM_SANDBOX = "custom"


@dataclass(frozen=True)
class Bindings:
    """A graph's build-time settings and live objects (never part of a run's context or state).

    Attributes:
        settings: the graph's own settings; a run's context overrides the fields it names.
        model: a chat model instance for the root model, used while the run names no other spec.
        sub_model: a chat model instance for ``llm_query``, likewise.
        transport: a zero-argument factory returning a Transport (``sandbox="custom"``).
        api_key: the key for ``base_url`` servers that need one (kept out of the settings, which
            Studio shows and traces record).
        timeout: seconds per model request.
        max_retries: retries of a failed model request.
        from_env: fill the settings from ``RLM_GRAPH_*`` on first use (the served graph).
        limit_paths: refuse a ``context_path`` outside the folders ``RLM_GRAPH_CONTEXT_ROOTS``
            names (the served graph, whose input comes over HTTP); see :func:`served_path`.
        tools: user tools the REPL may call (:mod:`rlm_graph.tools`), by name.
    """

    settings: RLMContext = field(default_factory=RLMContext)
    model: BaseChatModel | None = None
    sub_model: BaseChatModel | None = None
    transport: Callable[[], Any] | None = None
    api_key: str | None = None
    timeout: float = 600.0
    max_retries: int = 2
    from_env: bool = False
    limit_paths: bool = False
    tools: Mapping[str, Tool] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "timeout", check_setting("timeout", self.timeout))
        object.__setattr__(self, "max_retries", check_setting("max_retries", self.max_retries))

    @cached_property
    def base(self) -> RLMContext:
        """The graph's settings, completed from the environment for the served graph (once)."""
        if not self.from_env:
            return self.settings
        from rlm_graph.models import settings_from_env

        env = settings_from_env()
        limits = {**self.settings.limits.as_dict(), **env.pop("limits", {})}
        return replace(self.settings, **env, limits=Limits.from_dict(limits))

    def merge(self, named: dict[str, Any]) -> RLMContext:
        """The graph's settings with the fields a run named (``limits``: only the limits it named)."""
        base = self.base
        if not named:
            return base
        limits = {**base.limits.as_dict(), **dict(named.get("limits") or {})}
        return replace(base, **{k: v for k, v in named.items() if k != "limits"}, limits=Limits.from_dict(limits))

    def resolve(self, ctx: RLMContext) -> RunSettings:
        """The settings a node reads for a run with context ``ctx``.

        A run that names no setting reads the graph's own: those are resolved once (every node
        and every ``sub_call`` task of a fan-out asks for them), their models with them.
        """
        if ctx is self.base:
            return self._base_run
        return RunSettings(ctx, self)

    @cached_property
    def _base_run(self) -> RunSettings:
        return RunSettings(self.base, self)

    def models_for(self, ctx: RLMContext) -> tuple[ModelSpec, ModelSpec]:
        """The root and sub-model for ``ctx``: bound instances unless it names other specs."""
        from rlm_graph.models import ModelSpec, cached_model, label_of

        base = self.base
        options = dict(max_tokens=ctx.reply_tokens, api_key=self.api_key, timeout=self.timeout, max_retries=self.max_retries)
        if self.model is not None and (ctx.model, ctx.base_url) == (base.model, base.base_url):
            root = ModelSpec(self.model, label_of(self.model))
        else:
            root = cached_model(ctx.model, ctx.base_url, role="root", **options)
        if self.sub_model is not None and (ctx.sub_model, ctx.sub_base_url) == (base.sub_model, base.sub_base_url):
            sub = ModelSpec(self.sub_model, label_of(self.sub_model))
        elif ctx.sub_model is not None or ctx.sub_base_url is not None:
            sub = cached_model(ctx.sub_model or ctx.model, ctx.sub_base_url or ctx.base_url, role="sub", **options)
        elif self.model is None and ctx.base_url is None and root.label.startswith("qwen2.5-coder") and ctx.model in (None, "local"):
            sub = cached_model("local", None, role="sub", **options)  # its own server keeps the root's prompt cache
        else:
            sub = root
        return root, sub


#: The environment variable naming the folders a served run's ``context_path`` may point into.
CONTEXT_ROOTS_ENV = "RLM_GRAPH_CONTEXT_ROOTS"


def context_roots() -> tuple[Path, ...]:
    """The served graph's context roots: ``RLM_GRAPH_CONTEXT_ROOTS`` (``os.pathsep``-separated), else the work dir.

    Raises:
        ConfigurationError: a named root is not a folder.
    """
    from rlm_graph.serve.app import ServeSettings

    named = [part for part in os.environ.get(CONTEXT_ROOTS_ENV, "").split(os.pathsep) if part.strip()]
    return ServeSettings(context_roots=tuple(Path(part) for part in named) or (Path.cwd(),)).context_roots


def served_path(raw: Any) -> Path:
    """Resolve a served run's ``context_path`` inside :func:`context_roots`, as ``rlm-graph serve`` does.

    Relative paths are looked up in each root; links are resolved first, so a link out of a root
    is refused too.

    Raises:
        ConfigurationError: the path leads outside the roots, or is not found in them (one line).
    """
    from rlm_graph.serve.requests import RequestError, inside_roots

    try:
        return inside_roots(raw, context_roots())
    except RequestError as err:
        raise ConfigurationError(f"{err} (the folders {CONTEXT_ROOTS_ENV} names; default: the work dir)") from None


@dataclass(frozen=True)
class RunSettings:
    """What a node reads: the run's merged settings, with its models resolved on first use.

    ``model``/``sub`` are chat models; every JSON setting reads through (``limits``,
    ``sandbox_options``, ``prices`` ...); ``sandbox`` is a kind name, or the bound transport
    factory when the settings say ``"custom"``.
    """

    context: RLMContext
    bindings: Bindings

    @cached_property
    def _models(self) -> tuple[ModelSpec, ModelSpec]:
        return self.bindings.models_for(self.context)

    @property
    def model(self) -> BaseChatModel:
        return self._models[0].model

    @property
    def model_label(self) -> str:
        return self.context.model_label or self._models[0].label

    @property
    def sub(self) -> BaseChatModel:
        return self._models[1].model

    @property
    def sub_label(self) -> str:
        if self.context.sub_model_label:
            return self.context.sub_model_label
        root, sub = self._models
        return self.model_label if sub is root else sub.label

    @property
    def sandbox(self) -> str | Callable[[], Any]:
        if self.context.sandbox != CUSTOM_SANDBOX:
            return self.context.sandbox
        if self.bindings.transport is None:
            raise ConfigurationError("sandbox 'custom' names a transport factory, but this graph was built without one")
        return self.bindings.transport

    @property
    def limits(self) -> Limits:
        return self.context.limits

    @property
    def tools(self) -> Mapping[str, Tool]:
        return self.bindings.tools

    @property
    def sandbox_options(self) -> dict[str, Any]:
        return self.context.sandbox_options

    @property
    def reply_tokens(self) -> int:
        return self.context.reply_tokens

    @property
    def grounding_guard(self) -> bool:
        return self.context.grounding_guard

    @property
    def answer_check(self) -> bool:
        return self.context.answer_check

    @property
    def approve_code(self) -> bool:
        return self.context.approve_code

    @property
    def work_dir(self) -> str:
        return self.context.work_dir

    @property
    def prices(self) -> dict[str, tuple[float, float]] | None:
        return self.context.prices


_BLANK = RLMContext()
_FIELDS = tuple(f.name for f in fields(RLMContext))
_BLANK_LIMITS = Limits().as_dict()


def named_fields(ctx: RLMContext) -> dict[str, Any]:
    """The fields of ``ctx`` that differ from the defaults: what a run's context named.

    The LangGraph server builds an ``RLMContext`` from a run's JSON, filling what the request left
    out with the defaults; a field equal to its default is therefore taken as not named.
    """
    named: dict[str, Any] = {f: getattr(ctx, f) for f in _FIELDS if f != "limits" and getattr(ctx, f) != getattr(_BLANK, f)}
    limits = {k: v for k, v in ctx.limits.as_dict().items() if v != _BLANK_LIMITS[k]}
    if limits:
        named["limits"] = limits
    return named
