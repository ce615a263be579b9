"""The ``RLM`` facade: one object to configure, ``completion`` to run, ``resume`` to carry on."""

from __future__ import annotations

import asyncio
import copy
import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

from langchain_core.language_models import BaseChatModel
from langgraph.types import Command

from rlm_graph.checkpoints import open_checkpointer, thread_lease
from rlm_graph.contexts import check_file, format_for, is_source, looks_like_path, open_source, write_value
from rlm_graph.errors import ConfigurationError, RunNotFoundError
from rlm_graph.graph import manifest
from rlm_graph.graph.bindings import Bindings
from rlm_graph.graph.builder import build_graph, make_bindings
from rlm_graph.graph.runtime import run_clock, trace_config
from rlm_graph.graph.settings import Limits, RLMContext
from rlm_graph.validation import safe_text
from rlm_graph.nodes.recurse import EXECUTOR_THREADS
from rlm_graph.sandboxes import SANDBOX_KINDS
from rlm_graph.tools import make_tools

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
        limits: the limits the run started with.
        reserved: budget reservations not yet settled, by call (empty once the run has ended).
        confirmed: True when the answer was accepted by the checks (given with FINAL after the
            model saw output, not a "not found", of the form the question asks for). False for a
            best-effort answer forced at a limit, or a non-answer the model kept giving.
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
    reserved: dict[str, Any] = field(default_factory=dict)
    confirmed: bool = False

    @property
    def forced(self) -> bool:
        """True when a limit ended the run and the answer came from the forced final call."""
        return self.stopped_by not in (None, "final")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _remembers_options(init: Callable[..., None]) -> Callable[..., None]:
    """Keep the run options a caller named: a resume, fork or follow-up compares them with the run's manifest."""

    @functools.wraps(init)
    def named(self: RLM, model: Any = None, sub_model: Any = None, **options: Any) -> None:
        init(self, model, sub_model, **options)
        tools = self.settings.bindings.tools or None  # by name, as make_tools checked them
        self._requested = manifest.requested_names({"model": model, "sub_model": sub_model, **options, "tools": tools})

    return named


def _root_label(bindings: Bindings) -> str:
    """The root model's label, without starting the embedded model (a resume may never need it)."""
    from rlm_graph.models import default_spec

    ctx = bindings.settings
    if bindings.model is None and ctx.base_url is None and (ctx.model or default_spec()) == "local":
        from rlm_graph.models.local import DEFAULT_ALIAS

        return ctx.model_label or DEFAULT_ALIAS
    return bindings.resolve(ctx).model_label


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
        sandbox: "local", "docker", "e2b" or "modal".
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
        tools: host functions REPL code may call like ``llm_query`` (``{"lookup": lookup}``): the
            sandbox sends the call, the host runs it, the result is saved with the cell so a
            replay never calls it again. Listed in the system prompt; children get them too.
        **limits: ``max_iterations`` (30), ``max_depth`` (1), ``max_subcalls``, ``max_tokens``,
            ``max_cost_usd``, ``max_seconds``, ``cell_timeout`` (120), ``max_output_chars`` (4000),
            ``max_concurrency`` (16).

    Example:
        >>> rlm = RLM("qwen", base_url="http://127.0.0.1:8080/v1", checkpointer=False)  # doctest: +SKIP
        >>> rlm.completion("data.txt", "How many lines mention ERROR?").answer  # doctest: +SKIP
        '42'
    """

    @_remembers_options
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
        tools: dict[str, Callable[..., Any]] | None = None,
        **limits: Any,
    ) -> None:
        unknown = set(limits) - set(Limits.__dataclass_fields__)
        if unknown:
            raise ConfigurationError(f"unknown option(s): {', '.join(sorted(unknown))}")
        if isinstance(sandbox, str) and sandbox not in SANDBOX_KINDS:
            raise ConfigurationError(f"unknown sandbox {sandbox!r}: use one of {', '.join(SANDBOX_KINDS)}")
        self.limits = Limits(**limits)
        self.work_dir = Path(work_dir)
        settings = RLMContext(
            sandbox_options=dict(sandbox_options or {}),
            limits=self.limits,
            reply_tokens=reply_tokens,
            grounding_guard=grounding_guard,
            answer_check=bool(answer_check),
            approve_code=approve_code,
            work_dir=str(self.work_dir),
            prices=prices,
        )
        bindings = make_bindings(model, sub_model=sub_model, sandbox=sandbox, base_url=base_url, sub_base_url=sub_base_url,
                                 settings=settings, api_key=api_key, timeout=timeout, max_retries=max_retries, tools=make_tools(tools))
        if answer_check is None:  # on for the qwen2.5-coder models (the embedded one among them)
            bindings = replace(bindings, settings=replace(bindings.settings, answer_check=_root_label(bindings).startswith("qwen2.5-coder")))
        #: The run settings, models resolved on first use (``settings.context`` is the JSON part).
        self.settings = bindings.resolve(bindings.settings)
        self._requested: dict[str, Any] = {}
        self.checkpointer = open_checkpointer(checkpointer, self.work_dir)
        self.graph = build_graph(bindings, checkpointer=self.checkpointer)
        self.verbose = verbose
        self.log_dir = Path(log_dir) if log_dir is not None else None
        self.on_approve = on_approve

    # -- running ---------------------------------------------------------------------------
    def _input(self, context: Any, query: str, thread_id: str) -> dict[str, Any]:
        if is_source(context):  # a folder or a SQL URL: read once here, saved as a snapshot below
            context = open_source(context).value
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

    def _start(self, context: Any, root_prompt: str | None, query: str | None, thread_id: str | None) -> tuple[dict[str, Any], str, RLM]:
        """The input of a new run, or of a follow-up question when ``thread_id`` has already run,
        and the RLM that runs it (for a follow-up: set up as the thread's manifest says)."""
        if root_prompt is not None and query is not None and root_prompt != query:
            raise ConfigurationError("give the question once: root_prompt or query, not both")
        question = query if query is not None else root_prompt
        if question is not None and (not isinstance(question, str) or not question.strip()):
            raise ConfigurationError("the question (root_prompt or query) must be a non-empty string")
        if question is not None:
            question = safe_text(question)  # the input is checkpointed too: no NUL, no lone surrogate
        if thread_id is not None and self.checkpointer is not None:
            snapshot = self.graph.get_state(self._config(thread_id))
            if snapshot.values:
                return self._follow_up(snapshot, thread_id, context, question)
        thread_id = thread_id or uuid.uuid4().hex[:16]
        payload = self._input(context, question if question is not None else DEFAULT_QUERY, thread_id)
        self.settings.model  # a missing model or key fails here, before the run is saved
        return payload, thread_id, self

    def _follow_up(self, snapshot: Any, thread_id: str, context: Any, question: str | None, allow_change: bool = False) -> tuple[dict[str, Any], str, RLM]:
        """A new question on a finished thread: only the question goes in; the REPL and the conversation stay."""
        from rlm_graph import steering

        values = snapshot.values
        if snapshot.next or snapshot.interrupts or not values.get("stopped_by"):
            raise ConfigurationError(
                f"run {thread_id!r} has not finished, so it cannot take a new question yet; "
                f"carry it on first with: rlm-graph resume {thread_id}"
            )
        if question is None:
            raise ConfigurationError(f"run {thread_id!r} has already answered its question; give a new one (query=...)")
        moved = None
        if context is not None and not _same_file(context, values.get("context_path")):
            if not values.get("manifest") or not _is_path(context):
                raise ConfigurationError(
                    f"run {thread_id!r} already has its context; a follow-up question keeps it "
                    "(pass no context, or use a new thread_id for a new context)"
                )
            moved = context  # the same file in another place: accepted when its SHA-256 matches
        steered = steering.plan(thread_id, values, self._requested, how="ask", allow_change=allow_change, context=moved, work_dir=str(self.work_dir))
        runner = self._runner(steered)
        if steered.updates:  # recorded on the finished thread; check_final's route still ends it
            runner.graph.update_state(self._config(thread_id), steered.updates, as_node="check_final")
        return {"query": question}, thread_id, runner

    def _with_manifest(self, payload: dict[str, Any]) -> dict[str, Any]:
        """A new run's input with its manifest, so a run killed before its first step resumes as
        it began too (``prepare`` writes the whole manifest, the context's identity included)."""
        if "context_path" not in payload or self.checkpointer is None:
            return payload  # a follow-up question: its thread has a manifest
        per_run = dict(payload.get("limits") or {})
        limits = Limits.from_dict({**self.limits.as_dict(), **per_run}).as_dict()
        return {**payload, "manifest": manifest.build(self.settings, limits=limits, context={}, per_run=per_run)}

    def _runner(self, steered: Any) -> RLM:
        """This RLM with the settings a steering plan names (itself for a run saved without a manifest)."""
        if steered.settings is None:
            return self
        bindings = replace(self.settings.bindings, settings=steered.settings)
        runner = copy.copy(self)
        runner.settings = bindings.resolve(bindings.settings)
        runner.limits = steered.settings.limits
        runner.graph = build_graph(bindings, checkpointer=self.checkpointer)
        return runner

    def completion(
        self,
        context: Any = None,
        root_prompt: str | None = None,
        *,
        query: str | None = None,
        thread_id: str | None = None,
        limits: dict[str, Any] | None = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> RLMResult:
        """Answer a question over ``context`` (a str, list, dict, or a path to a text/JSON/JSONL/CSV file).

        With the ``thread_id`` of a finished run, the question is a follow-up on that thread: its
        REPL variables and its conversation are kept, and the answer is the new question's.

        Args:
            context: the data (required for a new run; none for a follow-up): a value, a file, a
                folder (``{relative path: text}``), or ``"sqlite:///file.db?query=SELECT ..."`` /
                ``"postgresql://...?query=..."`` (the rows as dicts); see :func:`rlm_graph.contexts.open_source`.
            root_prompt: the question (``query`` is the same, by keyword).
            thread_id: the checkpoint thread (default: a new one).
            limits: budgets for this run only (``{"max_iterations": 5}``), over this RLM's own; a
                follow-up question keeps the thread's.
            on_event: called with each progress event (see :meth:`stream`) while the run works.

        Raises:
            ConfigurationError, ContextError: bad input (nothing is run).
            ModelError, SandboxError: the run failed; with a checkpointer it can be resumed.
        """
        payload, thread_id, runner = self._start(context, root_prompt, query, thread_id)
        if limits and "context_path" in payload:  # a new run (a follow-up keeps its thread's limits)
            unknown = set(limits) - set(Limits.__dataclass_fields__)
            if unknown:
                raise ConfigurationError(f"unknown limit(s): {', '.join(sorted(unknown))}")
            Limits.from_dict({**self.limits.as_dict(), **limits})  # validates
            payload = {**payload, "limits": dict(limits)}
        return runner._drive(self._with_manifest(payload), thread_id, on_event)

    async def acompletion(
        self,
        context: Any = None,
        root_prompt: str | None = None,
        *,
        query: str | None = None,
        thread_id: str | None = None,
    ) -> RLMResult:
        """Async :meth:`completion` (runs in a worker thread; many may run at once)."""
        return await asyncio.to_thread(self.completion, context, root_prompt, query=query, thread_id=thread_id)

    def ask(self, thread_id: str, query: str, *, allow_change: bool = False, context: Any = None) -> RLMResult:
        """A follow-up question on a finished thread: ``completion(query=query, thread_id=thread_id)``.

        The thread runs with the settings its manifest records; ``allow_change`` accepts options
        of this RLM that differ (recorded in the manifest), ``context`` the run's context file in
        a new place (same SHA-256).
        """
        self._need_checkpointer("a follow-up question")
        snapshot = self.graph.get_state(self._config(thread_id))
        if not snapshot.values:
            raise RunNotFoundError(f"no run with thread id {thread_id!r} in {self.checkpoint_location}")
        if not isinstance(query, str) or not query.strip():
            raise ConfigurationError("the question (query) must be a non-empty string")
        payload, _, runner = self._follow_up(snapshot, thread_id, context, query, allow_change=allow_change)
        return runner._drive(payload, thread_id)

    def resume(
        self,
        thread_id: str,
        decision: Any = None,
        *,
        allow_change: bool = False,
        context: Any = None,
        on_event: Callable[[dict[str, Any]], None] | None = None,
    ) -> RLMResult:
        """Carry on a run from its last checkpoint (after a crash, a kill, or an interrupt), as it began.

        The run keeps the models, sandbox, limits and settings its manifest records, whatever
        this RLM was created with; keys come from the environment (or this RLM's ``api_key``).
        ``RLM().resume(thread_id)`` is enough. Finished cells are rebuilt in a new sandbox by
        replay; no model call that finished is made again.

        Args:
            thread_id: the run.
            decision: answers a pending ``approve_code`` interrupt (True, False, or edited code).
            allow_change: carry the run on with the options of this RLM that differ from its
                manifest (each difference is recorded in the manifest). Raising a limit lets a
                run that limit stopped go on.
            context: the run's context file in a new place (another machine, a moved file);
                accepted when its SHA-256 matches the manifest's.
            on_event: called with each progress event (see :meth:`stream`).

        Raises:
            RunNotFoundError: no such run.
            ConfigurationError: an option differs from the manifest and ``allow_change`` is off
                (one line naming the difference); a raised limit still leaves nothing to run.
            ContextError: the context file is missing or is not the run's.
        """
        from rlm_graph import steering

        self._need_checkpointer("resume")
        config = self._config(thread_id)
        snapshot = self.graph.get_state(config)
        values = snapshot.values
        if not values:
            raise RunNotFoundError(f"no run with thread id {thread_id!r} in {self.checkpoint_location}")
        ended = bool(values.get("stopped_by")) and not snapshot.next
        if ended and (values.get("stopped_by") == "final" or not steering.changes_to(thread_id, values, self._requested, allow_change=allow_change)):
            return self._result(values, thread_id, 0.0)  # finished, or stopped with no more room given: nothing to run
        steered = steering.plan(thread_id, values, self._requested, how="resume", allow_change=allow_change, context=context, work_dir=str(self.work_dir))
        runner = self._runner(steered)
        if values.get("run_id"):
            run_clock(values["run_id"], restart=True)  # max_seconds counts from the resume
        if ended:  # a limit stopped it: it goes on only when an allowed change gives it room
            carry_on = steering.continuation(thread_id, values, steered, runner.settings)
            if carry_on is None:
                return self._result(values, thread_id, 0.0)
            runner.graph.update_state(config, carry_on, as_node="prepare")  # prepare's edge leads to generate
            return runner._drive(None, thread_id, on_event)
        payload: Any = None
        if snapshot.interrupts or steered.updates:
            # the updates go in with the resume, so a step half done keeps the answers it saved
            payload = Command(resume=decision if snapshot.interrupts else None, update=steered.updates or None)
        return runner._drive(payload, thread_id, on_event)

    def result(self, thread_id: str) -> RLMResult:
        """The saved outcome of a thread, as it stands (no model call; ``stopped_by`` is None while unfinished).

        Raises:
            RunNotFoundError: no run has this thread id.
        """
        self._need_checkpointer("result")
        snapshot = self.graph.get_state(self._config(thread_id))
        if not snapshot.values:
            raise RunNotFoundError(f"no run with thread id {thread_id!r} in {self.checkpoint_location}")
        values = snapshot.values if not snapshot.next else {**snapshot.values, "stopped_by": None}
        return self._result(values, thread_id, 0.0)

    def fork(
        self,
        source: str,
        *,
        at: int,
        thread_id: str | None = None,
        code: str | None = None,
        note: str | None = None,
        allow_change: bool = False,
        context: Any = None,
    ) -> RLMResult:
        """Take a saved run again from iteration ``at``, on a new thread; the original stays as it is.

        The new thread starts from the checkpoint before iteration ``at``'s model call. Its REPL is
        rebuilt by replay (every sub-call answered from the record): no model call made before
        iteration ``at`` is made again. See :meth:`history` for the iterations.

        Args:
            source: the thread to fork.
            at: the iteration to take again (1 is the first).
            thread_id: the new thread's id (default: a new one).
            code: run this code as iteration ``at`` instead of asking the model.
            note: a message the model reads before its turn ("the dates are day-first").
            allow_change: run the fork with the options of this RLM that differ from the run's
                manifest (a fork on another model, say); recorded in the fork's manifest.
            context: the run's context file in a new place (same SHA-256).

        Returns:
            The fork's result; ``result.thread_id`` is the new thread.
        """
        from rlm_graph import steering

        self._need_checkpointer("fork")
        plans: list[Any] = []

        def record(values: dict[str, Any]) -> dict[str, Any]:
            # checked against the manifest of the fork point; the fork's entry says where it came from
            steered = steering.plan(source, values, self._requested, how="fork", allow_change=allow_change, context=context,
                                    work_dir=str(self.work_dir), record={"source": source, "fork_at": at})
            plans.append(steered)
            return steered.updates

        new_id = steering.fork(self.graph, self._config(source), at=at, thread_id=thread_id, code=code, note=note, extra=record)
        return self._runner(plans[0])._drive(None, new_id)

    def history(self, thread_id: str) -> list[Any]:
        """The iterations of a saved run, oldest first: a list of :class:`rlm_graph.steering.Iteration`."""
        from rlm_graph import steering

        self._need_checkpointer("history")
        try:
            return steering.history(self.graph, self._config(thread_id))
        except RunNotFoundError:
            raise RunNotFoundError(f"no run with thread id {thread_id!r} in {self.checkpoint_location}") from None

    def _need_checkpointer(self, what: str) -> None:
        if self.checkpointer is None:
            raise ConfigurationError(f"{what} needs a checkpointer (this RLM was created with checkpointer=False)")

    def stream(
        self,
        context: Any = None,
        root_prompt: str | None = None,
        *,
        query: str | None = None,
        thread_id: str | None = None,
    ) -> Iterator[dict[str, Any]]:
        """Run and yield progress events ``{"namespace", "node", "update"}`` as steps finish."""
        payload, thread_id, runner = self._start(context, root_prompt, query, thread_id)
        yield from runner._events(self._with_manifest(payload), thread_id)

    @property
    def checkpoint_location(self) -> str:
        return getattr(self.checkpointer, "_rlm_location", "the checkpointer")

    def _events(self, payload: Any, thread_id: str) -> Iterator[dict[str, Any]]:
        # One runner per thread: a second process on it gets RunBusyError, not a second bill.
        with thread_lease(self.checkpointer, thread_id):
            for ns, mode, data in self.graph.stream(
                payload,
                self._config(thread_id),
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

    def _drive(self, payload: Any, thread_id: str, on_event: Callable[[dict[str, Any]], None] | None = None) -> RLMResult:
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
                    if on_event is not None:
                        on_event(event)
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
            reserved=values.get("reserved") or {},
            confirmed=bool(values.get("confirmed")) and values.get("final_answer") is not None,
        )


def _is_path(context: Any) -> bool:
    return isinstance(context, Path) or (isinstance(context, str) and looks_like_path(context))


def _same_file(context: Any, recorded: str | None) -> bool:
    """True if ``context`` names the file the thread already loads."""
    if recorded is None or not _is_path(context):
        return False
    return check_file(context) == Path(recorded).resolve()


def _interrupt_code(value: Any) -> str | None:
    items = value if isinstance(value, (list, tuple)) else [value]
    for item in items:
        v = getattr(item, "value", item)
        if isinstance(v, dict) and "code" in v:
            return str(v["code"])
    return None
