"""Run-time settings of the RLM graph: models, sandbox and limits, passed as ``context_schema``.

``RLMContext`` holds JSON values only (model specs as strings, limits, sandbox name and options),
so its JSON schema is what LangGraph Studio renders as the run's settings form. Live objects (a chat
model instance, a transport factory) are bound when the graph is built: see
:mod:`rlm_graph.graph.bindings`. Settings are not checkpointed; the run's limits are copied into
the state when the run starts, so a resumed run keeps the limits it began with.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from rlm_graph.errors import ConfigurationError
from rlm_graph.validation import check_setting

#: Limit names, in the order they are checked. Each is also an RLM/CLI option and a ``stopped_by`` value.
LIMIT_NAMES = (
    "max_iterations",
    "max_depth",
    "max_subcalls",
    "max_tokens",
    "max_cost_usd",
    "max_seconds",
    "cell_timeout",
    "max_output_chars",
    "max_concurrency",
    "max_errors",
)


#: The default ``max_subcalls``: a spend stop for a runaway loop, far above what a task needs.
DEFAULT_MAX_SUBCALLS = 1000

#: Limits that may be None (unlimited).
_OPTIONAL = frozenset({"max_subcalls", "max_tokens", "max_cost_usd", "max_seconds", "max_errors"})


@dataclass(frozen=True)
class Limits:
    """Every budget of a run. ``None`` means unlimited.

    Attributes:
        max_iterations: root-model turns before one forced final answer.
        max_depth: how deep ``rlm_query`` may recurse; at the limit it becomes a plain LM call.
        max_subcalls: sub-calls in the whole tree (children included). 1,000 by default, so that
            a runaway loop of ``llm_query`` stops (one made 417 paid calls in 25 s with no limit
            set); None for no limit.
        max_tokens: input plus output tokens in the whole tree.
        max_cost_usd: spend in the whole tree (needs prices or provider-reported cost).
        max_seconds: wall-clock seconds for the run.
        cell_timeout: seconds one cell may run (time waiting for sub-calls excluded).
        max_output_chars: characters of a cell's output the model sees (head and tail kept).
        max_concurrency: sub-calls in flight at once.
        max_errors: failed cells and failed sub-calls in a row before a forced final answer.
    """

    max_iterations: int = 30
    max_depth: int = 1
    max_subcalls: int | None = DEFAULT_MAX_SUBCALLS
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    cell_timeout: float = 120.0
    max_output_chars: int = 4000
    max_concurrency: int = 16
    max_errors: int | None = None

    def __post_init__(self) -> None:
        # Finite and in range (rlm_graph.validation.RANGES): nan, inf, negatives and absurd sizes
        # are one clear error here, for the API, the CLI and a run's JSON context alike.
        for f in fields(self):
            value = check_setting(f.name, getattr(self, f.name), allow_none=f.name in _OPTIONAL)
            object.__setattr__(self, f.name, value)

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Limits":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


def _named_fields_only(cls: type) -> type:
    """Make unknown keyword arguments one clear :class:`ConfigurationError` instead of a TypeError.

    LangGraph builds the context from a run's JSON with ``RLMContext(**context)``; a misspelt or
    flat key (``{"max_iterations": 2}`` instead of ``{"limits": {...}}``) must say what is wrong.
    """
    init = cls.__init__  # type: ignore[misc]
    known = {f.name for f in fields(cls)}

    @functools.wraps(init)
    def checked_init(self: Any, *args: Any, **kwargs: Any) -> None:
        unknown = sorted(set(kwargs) - known)
        if unknown:
            hint = " (limits go under 'limits', e.g. {\"limits\": {\"max_iterations\": 5}})" if set(unknown) & set(LIMIT_NAMES) else ""
            raise ConfigurationError(f"unknown setting(s) {', '.join(unknown)}{hint}; settings are: {', '.join(sorted(known))}")
        init(self, *args, **kwargs)

    cls.__init__ = checked_init  # type: ignore[misc]
    return cls


@_named_fields_only
@dataclass(frozen=True)
class RLMContext:
    """A run's settings: JSON values only, so LangGraph Studio can show them as a form.

    Passed as the graph's ``context_schema``: ``graph.invoke(input, context=RLMContext(...))``, a
    dict of the same fields, or a run's ``context`` JSON over the LangGraph server. Fields left at
    their defaults take the graph's own settings (those it was built with). Live objects (a chat
    model instance, a transport factory) are bound when the graph is built, never carried here.

    Attributes:
        model: the root model's spec (``"openai:gpt-4o-mini"``, ``"anthropic:claude-..."``,
            ``"local"``, or a model name with ``base_url``); None: the graph's model.
        base_url: an OpenAI-compatible server for ``model``.
        sub_model: the spec of the model for ``llm_query`` (default: the root model).
        sub_base_url: an OpenAI-compatible server for ``sub_model``.
        model_label: the name usage of the root model is counted under (default: its name).
        sub_model_label: the same for the sub-model.
        sandbox: "local", "docker", "e2b" or "modal" ("custom" names a transport factory bound at build time).
        sandbox_options: keyword arguments for the sandbox backend.
        limits: the run's budgets (copied into the state when a run starts).
        reply_tokens: cap on one root-model reply.
        grounding_guard: refuse a FINAL given before the model saw any output (once per run).
        answer_check: ask the sub-model whether a FINAL has the form the question asks for.
        approve_code: interrupt before each cell so a human can approve, edit or reject it.
        work_dir: where inline contexts are written for the sandbox to load.
        prices: USD per million tokens, ``{label: [input, output]}``, for cost accounting.
    """

    model: str | None = None
    base_url: str | None = None
    sub_model: str | None = None
    sub_base_url: str | None = None
    model_label: str | None = None
    sub_model_label: str | None = None
    sandbox: str = "local"
    sandbox_options: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    reply_tokens: int = 1024
    grounding_guard: bool = True
    answer_check: bool = False
    approve_code: bool = False
    work_dir: str = ".rlm"
    prices: dict[str, tuple[float, float]] | None = None

    def __post_init__(self) -> None:
        if isinstance(self.limits, dict):  # from JSON
            object.__setattr__(self, "limits", Limits.from_dict(self.limits))
        elif not isinstance(self.limits, Limits):
            raise ConfigurationError(f"limits must be a Limits or a dict of limits, not {type(self.limits).__name__}")
        if self.sandbox_options is None:
            object.__setattr__(self, "sandbox_options", {})
        object.__setattr__(self, "reply_tokens", check_setting("reply_tokens", self.reply_tokens))
        if self.prices is not None:
            if not isinstance(self.prices, dict):
                raise ConfigurationError(f"prices must be a dict {{label: [input, output]}}, not {type(self.prices).__name__}")
            for label, pair in self.prices.items():
                if not isinstance(pair, (list, tuple)) or len(pair) != 2:
                    raise ConfigurationError(f"prices[{label!r}] must be [input, output] USD per million tokens, got {pair!r}")
                for part, value in zip(("input", "output"), pair):
                    check_setting("price", value, label=f"prices[{label!r}] {part}")
        for name in ("model", "base_url", "sub_model", "sub_base_url", "model_label", "sub_model_label", "sandbox", "work_dir"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                hint = " (bind a chat model or a transport factory when building the graph: create_rlm_graph(model, sandbox=...))" if name in ("model", "sub_model", "sandbox") else ""
                raise ConfigurationError(f"setting {name!r} must be a string, not {type(value).__name__}{hint}")

    def as_dict(self) -> dict[str, Any]:
        """The settings as JSON values (what a run's ``context`` takes over HTTP)."""
        return asdict(self)
