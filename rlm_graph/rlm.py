"""The ``RLM`` facade: one object to configure, ``completion`` to run, ``resume`` to carry on."""

from __future__ import annotations

import asyncio
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import Command

from rlm_graph.checkpoints import open_checkpointer
from rlm_graph.contexts import check_file, format_for, looks_like_path, write_value
from rlm_graph.errors import ConfigurationError, RunNotFoundError
from rlm_graph.graph.builder import build_graph
from rlm_graph.graph.runtime import trace_config
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.models import resolve_model
from rlm_graph.nodes.recurse import EXECUTOR_THREADS
from rlm_graph.sandboxes import SANDBOX_KINDS

DEFAULT_QUERY = "Answer the question or do the task that the context describes."


@dataclass
class RLMResult:
    """The outcome of a run.

    Attributes:
        answer: the final answer (None if the run ended without one).
        iterations: root-model turns taken.
        usage: ``{model: {calls, input_tokens, output_tokens, cost_usd}}`` for the whole tree.
        execution_time: wall-clock seconds of this call.
        thread_id: the checkpoint thread; pass it to :meth:`RLM.resume`.
        stopped_by: "final", or the limit that ended the run ("max_iterations", "max_tokens" ...).
        run_id: the run's id inside the state.
        subcalls: sub-calls made in the whole tree.
        cells: code cells executed by the root.
        interrupted: the run waits for a human decision (``approve_code``); see ``pending_code``.
        pending_code: the code waiting for approval.
    """

    answer: str | None
    iterations: int
    usage: dict[str, dict[str, Any]]
    execution_time: float
    thread_id: str
    stopped_by: str | None = None
    run_id: str | None = None
    subcalls: int = 0
    cells: int = 0
    interrupted: bool = False
    pending_code: str | None = None
    limits: dict[str, Any] = field(default_factory=dict)

    @property
    def forced(self) -> bool:
        """True when a limit ended the run and the answer came from the forced final call."""
        return self.stopped_by not in (None, "final")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class RLM:
    """Run Recursive Language Models.

    Args:
        model: root model: ``"openai:gpt-4o-mini"``, ``"openrouter:..."``, a model name with
            ``base_url``, a LangChain chat model, or None for the default (an API key's provider,
            else the embedded local model).
        sub_model: model for ``llm_query`` (default: ``model``).
        base_url: OpenAI-compatible server for ``model``.
        sub_base_url: OpenAI-compatible server for ``sub_model``.
        api_key: key for ``base_url`` servers that need one.
        sandbox: "local", "docker" or "e2b".
        sandbox_options: backend options (e.g. ``{"memory_mb": 2048}``).
        verbose: show a live view of the run on the console.
        log_dir: write a trajectory JSONL file per run there.
        checkpointer: None for the default SQLite file ``<work_dir>/checkpoints.sqlite``; False for
            none; a path, a ``postgresql://`` URL, or a LangGraph checkpointer.
        work_dir: where checkpoints and inline contexts live (default ``.rlm``).
        approve_code: interrupt before every cell; ``on_approve`` (or :meth:`resume`) decides.
        on_approve: ``f(code) -> True | False | "new code"`` called for each cell when ``approve_code``.
        answer_check: ask the sub-model whether a FINAL has the form the question wants.
        grounding_guard: refuse a FINAL given before the model saw any output (once).
        prices: USD per million tokens ``{label: (input, output)}`` for cost accounting.
        reply_tokens: cap on one root reply.
        **limits: ``max_iterations`` (30), ``max_depth`` (1), ``max_subcalls``, ``max_tokens``,
            ``max_cost_usd``, ``max_seconds``, ``cell_timeout`` (120), ``max_output_chars`` (4000),
            ``max_concurrency`` (16).

    Example:
        >>> rlm = RLM("qwen", base_url="http://127.0.0.1:8080/v1", checkpointer=False)  # doctest: +SKIP
        >>> rlm.completion("data.txt", "How many lines mention ERROR?").answer  # doctest: +SKIP
        '42'
    """

    def __init__(
        self,
        model: str | BaseChatModel | None = None,
        sub_model: str | BaseChatModel | None = None,
        *,
        base_url: str | None = None,
        sub_base_url: str | None = None,
        api_key: str | None = None,
        sandbox: str | Callable[[], Any] = "local",
        sandbox_options: dict[str, Any] | None = None,
        verbose: bool = False,
        log_dir: str | os.PathLike[str] | None = None,
        checkpointer: Any = None,
        work_dir: str | os.PathLike[str] = ".rlm",
        approve_code: bool = False,
        on_approve: Callable[[str], Any] | None = None,
        answer_check: bool | None = None,
        grounding_guard: bool = True,
        prices: dict[str, tuple[float, float]] | None = None,
        reply_tokens: int = 1024,
        max_retries: int = 2,
        timeout: float = 600.0,
        **limits: Any,
    ) -> None:
        unknown = set(limits) - set(Limits.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if isinstance(sandbox, str) and sandbox not in SANDBOX_KINDS:
            raise ConfigurationError(f"unknown sandbox {sandbox!r}: use one of {', '.join(SANDBOX_KINDS)}")
        self.limits = Limits(**limits)
        common = dict(max_tokens=reply_tokens, max_retries=max_retries, timeout=timeout)
        root = resolve_model(model, base_url=base_url, api_key=api_key, **common)
        sub = root
        if sub_model is not None or sub_base_url is not None:
            sub = resolve_model(sub_model or model, base_url=sub_base_url or base_url, api_key=api_key, role="sub", **common)
        elif model in (None, "local") and base_url is None and root.label.startswith("qwen2.5-coder"):
            sub = resolve_model("local", role="sub", **common)  # its own server keeps the root's prefix cache
        local_small = root.label.startswith("qwen2.5-coder")
        self.work_dir = Path(work_dir)
        self.settings = RLMContext(
            model=root.model,
            model_label=root.label,
            sub_model=sub.model if sub is not root else None,
            sub_model_label=sub.label if sub is not root else None,
            sandbox=sandbox,
            sandbox_options=dict(sandbox_options or {}),
            limits=self.limits,
            reply_tokens=reply_tokens,
            grounding_guard=grounding_guard,
            answer_check=local_small if answer_check is None else answer_check,
            approve_code=approve_code,
            work_dir=str(self.work_dir),
            prices=prices,
        )
        self.checkpointer = open_checkpointer(checkpointer, self.work_dir)
        self.graph = build_graph(self.settings, checkpointer=self.checkpointer)
        self.verbose = verbose
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.on_approve = on_approve

    # -- running ---------------------------------------------------------------------------
    def _input(self, context: Any, root_prompt: str | None, thread_id: str) -> dict[str, Any]:
        query = root_prompt if root_prompt is not None else DEFAULT_QUERY
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError("root_prompt (the question) must be a non-empty string")
        if isinstance(context, Path) or (isinstance(context, str) and looks_like_path(context)):
            path = check_file(context)
            return {"query": query, "context_path": str(path), "context_format": format_for(path)}
        if context is None:
            raise ConfigurationError("context is required: a str, list, dict, or a path to a file")
        # Written once to a file so the checkpoint never holds the context itself.
        path, fmt = write_value(context, self.work_dir / "contexts", thread_id)
        return {"query": query, "context_path": str(path.resolve()), "context_format": fmt}

    def _config(self, thread_id: str) -> dict[str, Any]:
        return {
            "configurable": {"thread_id": thread_id},
            "max_concurrency": EXECUTOR_THREADS,  # threads; sub-calls in flight are capped per run
            "recursion_limit": 100_000,
            **trace_config(0),
        }

    def completion(self, context: Any, root_prompt: str | None = None, *, thread_id: str | None = None) -> RLMResult:
        """Answer ``root_prompt`` over ``context`` (a str, list, dict, or a path to a text/JSON/JSONL/CSV file).

        Raises:
            ConfigurationError, ContextError: bad input (nothing is run).
            ModelError, SandboxError: the run failed; with a checkpointer it can be resumed.
        """
        thread_id = thread_id or uuid.uuid4().hex[:16]
        return self._drive(self._input(context, root_prompt, thread_id), thread_id)

    async def acompletion(self, context: Any, root_prompt: str | None = None, *, thread_id: str | None = None) -> RLMResult:
        """Async :meth:`completion` (runs in a worker thread; many may run at once)."""
        return await asyncio.to_thread(self.completion, context, root_prompt, thread_id=thread_id)

    def resume(self, thread_id: str, decision: Any = None) -> RLMResult:
        """Carry on a run from its last checkpoint (after a crash, a kill, or an interrupt).

        Finished cells are rebuilt in a new sandbox by replay; no model call that finished is made again.
        ``decision`` answers a pending ``approve_code`` interrupt (True, False, or edited code).
        """
        if self.checkpointer is None:
            raise ConfigurationError("resume needs a checkpointer (this RLM was created with checkpointer=False)")
        config = self._config(thread_id)
        snapshot = self.graph.get_state(config)
        if not snapshot.values:
            raise RunNotFoundError(f"no run with thread id {thread_id!r} in {self.checkpoint_location}")
        if snapshot.values.get("stopped_by") and not snapshot.next:
            return self._result(snapshot.values, thread_id, 0.0)  # finished: nothing to pay for again
        payload: Any = Command(resume=decision) if snapshot.interrupts else None
        return self._drive(payload, thread_id)

    def stream(self, context: Any, root_prompt: str | None = None, *, thread_id: str | None = None) -> Iterator[dict[str, Any]]:
        """Run and yield progress events ``{"namespace", "node", "update"}`` as steps finish."""
        thread_id = thread_id or uuid.uuid4().hex[:16]
        yield from self._events(self._input(context, root_prompt, thread_id), thread_id)

    @property
    def checkpoint_location(self) -> str:
        return getattr(self.checkpointer, "_rlm_location", "the checkpointer")

    def _events(self, payload: Any, thread_id: str) -> Iterator[dict[str, Any]]:
        settings = RLMContext(**{**self.settings.__dict__, "started_at": time.monotonic()})
        for ns, mode, data in self.graph.stream(
            payload,
            self._config(thread_id),
            context=settings,
            stream_mode=["updates", "values"],
            subgraphs=True,
            durability="sync" if self.checkpointer is not None else None,
        ):
            if mode == "values":
                if not ns:
                    yield {"namespace": [], "node": "__values__", "update": data, "thread_id": thread_id}
                continue
            for node, update in (data or {}).items():
                yield {"namespace": list(ns), "node": node, "update": update, "thread_id": thread_id}

    def _drive(self, payload: Any, thread_id: str) -> RLMResult:
        from rlm_graph.logging import RunObserver

        start = time.monotonic()
        observer = RunObserver(verbose=self.verbose, log_dir=self.log_dir, thread_id=thread_id, settings=self.settings)
        last: dict[str, Any] = {}
        try:
            while True:
                interrupt_value = None
                for event in self._events(payload, thread_id):
                    if event["node"] == "__interrupt__":
                        interrupt_value = event["update"]
                    elif event["node"] == "__values__":
                        last = event["update"]
                    observer.on_event(event)
                if interrupt_value is None:
                    break
                code = _interrupt_code(interrupt_value)
                if self.on_approve is None:
                    values = self.graph.get_state(self._config(thread_id)).values if self.checkpointer else last
                    result = self._result(values, thread_id, time.monotonic() - start)
                    result.interrupted, result.pending_code = True, code
                    return result
                payload = Command(resume=self.on_approve(code or ""))
            values = self.graph.get_state(self._config(thread_id)).values if self.checkpointer is not None else last
            result = self._result(values, thread_id, time.monotonic() - start)
            observer.on_result(result)
            return result
        finally:
            observer.close()

    def _result(self, values: dict[str, Any], thread_id: str, seconds: float) -> RLMResult:
        return RLMResult(
            answer=values.get("final_answer"),
            iterations=int(values.get("iteration") or 0),
            usage=values.get("usage") or {},
            execution_time=round(seconds, 3),
            thread_id=thread_id,
            stopped_by=values.get("stopped_by"),
            run_id=values.get("run_id"),
            subcalls=int(values.get("n_subcalls") or 0),
            cells=len(values.get("cells") or []),
            limits=values.get("limits") or {},
        )


def _interrupt_code(value: Any) -> str | None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        v = getattr(item, "value", item)
        if isinstance(v, dict) and "code" in v:
            return str(v["code"])
    return None
