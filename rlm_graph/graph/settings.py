"""Run-time settings of the RLM graph: models, sandbox and limits, passed as ``context_schema``.

They are not checkpointed (models are live objects). The run's limits are also copied into the
state when the run starts, so a resumed run keeps the limits it began with.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from langchain_core.language_models import BaseChatModel

from rlm_graph.errors import ConfigurationError

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
)


@dataclass(frozen=True)
class Limits:
    """Every budget of a run. ``None`` means unlimited.

    Attributes:
        max_iterations: root-model turns before one forced final answer.
        max_depth: how deep ``rlm_query`` may recurse; at the limit it becomes a plain LM call.
        max_subcalls: sub-calls in the whole tree (children included).
        max_tokens: input plus output tokens in the whole tree.
        max_cost_usd: spend in the whole tree (needs prices or provider-reported cost).
        max_seconds: wall-clock seconds for the run.
        cell_timeout: seconds one cell may run (time waiting for sub-calls excluded).
        max_output_chars: characters of a cell's output the model sees (head and tail kept).
        max_concurrency: sub-calls in flight at once.
    """

    max_iterations: int = 30
    max_depth: int = 1
    max_subcalls: int | None = None
    max_tokens: int | None = None
    max_cost_usd: float | None = None
    max_seconds: float | None = None
    cell_timeout: float = 120.0
    max_output_chars: int = 4000
    max_concurrency: int = 16

    def __post_init__(self) -> None:
        for f in fields(self):
            value = getattr(self, f.name)
            if value is None and f.name in ("max_subcalls", "max_tokens", "max_cost_usd", "max_seconds"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                raise ConfigurationError(f"{f.name} must be a number, got {value!r}")
            if value < 0 or (value == 0 and f.name not in ("max_depth",)):
                raise ConfigurationError(f"{f.name} must be positive, got {value!r}")
        if self.max_output_chars < 200:
            raise ConfigurationError(f"max_output_chars must be at least 200, got {self.max_output_chars}")

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any] | None) -> "Limits":
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (data or {}).items() if k in known})


@dataclass(frozen=True)
class RLMContext:
    """Everything a run needs that is not state.

    Attributes:
        model: the root chat model.
        model_label: the name usage of ``model`` is counted under.
        sub_model: the model for ``llm_query`` (default: ``model``).
        sub_model_label: its usage label.
        sandbox: "local", "docker", "e2b", or a zero-argument callable returning a Transport.
        sandbox_options: keyword arguments for the sandbox backend.
        limits: the run's budgets (copied into the state when a run starts).
        reply_tokens: cap on one root-model reply.
        grounding_guard: refuse a FINAL given before the model saw any output (once per run).
        answer_check: ask the sub-model whether a FINAL has the form the question asks for.
        approve_code: interrupt before each cell so a human can approve, edit or reject it.
        work_dir: where inline contexts are written for the sandbox to load.
        prices: USD per million tokens, ``{label: (input, output)}``, for cost accounting.
        started_at: ``time.monotonic()`` at the start of the run (for ``max_seconds``).
    """

    model: BaseChatModel | None = None
    model_label: str = "root"
    sub_model: BaseChatModel | None = None
    sub_model_label: str | None = None
    sandbox: str | Callable[[], Any] = "local"
    sandbox_options: dict[str, Any] = field(default_factory=dict)
    limits: Limits = field(default_factory=Limits)
    reply_tokens: int = 1024
    grounding_guard: bool = True
    answer_check: bool = False
    approve_code: bool = False
    work_dir: str = ".rlm"
    prices: dict[str, tuple[float, float]] | None = None
    started_at: float = field(default_factory=time.monotonic)

    @property
    def sub(self) -> BaseChatModel:
        model = self.sub_model or self.model
        if model is None:
            raise ConfigurationError("no model configured for this run")
        return model

    @property
    def sub_label(self) -> str:
        return self.sub_model_label or (self.model_label if self.sub_model is None else "sub")
