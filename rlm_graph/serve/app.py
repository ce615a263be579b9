"""The OpenAI-compatible HTTP API: ``/v1/models`` and ``/v1/chat/completions`` on Starlette.

Each chat request is one checkpointed RLM run, on a thread of its own: its id comes back in the
response's ``metadata.thread_id`` (and the ``X-RLM-Thread-Id`` header). A request that names a
``thread_id`` carries that run on: an unfinished one (say, cut off by a server restart) is resumed
from its last checkpoint, a finished one answers a new question as a follow-up, or returns its
saved answer when asked the same question again. Runs work in threads of their own, at most
``max_runs`` at once; a run whose client went away finishes anyway and stays saved.

Streaming (``stream: true``) sends server-sent events: a first chunk with the role, progress
notes as the run works (in ``delta.reasoning_content``, with the numbers in ``rlm_progress``),
the answer as ``delta.content``, a chunk with the finish reason, and a last chunk with no choices
that carries ``usage`` and ``metadata``; then ``data: [DONE]``.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import threading
import time
from collections.abc import AsyncIterator, Callable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from rlm_graph.errors import ConfigurationError, ContextError, ModelError, RunNotFoundError, SandboxError
from rlm_graph.serve.progress import Progress
from rlm_graph.serve.requests import ChatRequest, RequestError, parse_chat_request

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from rlm_graph.rlm import RLM, RLMResult


@dataclass(frozen=True)
class ServeSettings:
    """How the server behaves (the runs' own settings are the :class:`~rlm_graph.RLM`'s).

    Attributes:
        model_id: the one model ``/v1/models`` lists; requests must name it (or no model).
        api_key: the bearer token clients must send; None accepts every request.
        context_roots: folders a request's ``context_path`` may point into; empty: none.
        max_runs: runs working at once; later requests wait for a free slot.
        max_body_bytes: the largest request body accepted.
        keepalive_seconds: a stream with no news sends an SSE comment this often.
    """

    model_id: str = "rlm-graph"
    api_key: str | None = None
    context_roots: tuple[Path, ...] = ()
    max_runs: int = 4
    max_body_bytes: int = 64 * 2**20
    keepalive_seconds: float = 15.0

    def __post_init__(self) -> None:
        if self.max_runs < 1:
            raise ConfigurationError(f"max_runs must be at least 1, got {self.max_runs}")
        roots = []
        for root in self.context_roots:
            p = Path(root).expanduser().resolve()
            if not p.is_dir():
                raise ConfigurationError(f"context root is not a folder: {root}")
            roots.append(p)
        object.__setattr__(self, "context_roots", tuple(roots))


class Runs:
    """Starts runs in threads, at most ``max_runs`` at once, one per thread id at a time."""

    def __init__(self, rlm: RLM, max_runs: int) -> None:
        self.rlm = rlm
        self.slots = threading.BoundedSemaphore(max_runs)
        self.active: set[str] = set()
        self.lock = threading.Lock()

    def start(self, req: ChatRequest, thread_id: str, on_event: Callable[[dict[str, Any]], None] | None) -> Future[tuple[RLMResult, str]]:
        """Claim ``thread_id`` and run ``req`` on it in a new thread; the future gives (result, how).

        Raises:
            RequestError: the thread is already running on this server (409).
        """
        with self.lock:
            if thread_id in self.active:
                raise RequestError(f"run {thread_id!r} is already working on this server", status=409, kind="conflict_error", param="thread_id")
            self.active.add(thread_id)
        future: Future[tuple[RLMResult, str]] = Future()
        future.set_running_or_notify_cancel()  # a client that goes away cannot cancel a run: it stays saved

        def work() -> None:
            try:
                with self.slots:
                    future.set_result(self.run(req, thread_id, on_event))
            except BaseException as exc:
                future.set_exception(exc)
            finally:
                with self.lock:
                    self.active.discard(thread_id)

        threading.Thread(target=work, name=f"rlm-run-{thread_id}", daemon=True).start()
        return future

    def run(self, req: ChatRequest, thread_id: str, on_event: Callable[[dict[str, Any]], None] | None) -> tuple[RLMResult, str]:
        """Run ``req`` on ``thread_id``: a new run, a resume, a follow-up, or the saved answer."""
        from rlm_graph.contexts import open_source

        rlm = self.rlm
        if req.thread_id is not None and rlm.checkpointer is not None:
            snapshot = rlm.graph.get_state({"configurable": {"thread_id": thread_id}})
            values = snapshot.values
            if values:
                if snapshot.next or not values.get("stopped_by"):
                    return rlm.resume(thread_id, on_event=on_event), "resumed"
                tasks = values.get("tasks") or []
                if (tasks[-1].get("query") if tasks else values.get("query")) == req.question:
                    return rlm.result(thread_id), "saved"
                if req.named_context:  # earlier messages are a chat client's history: not a new context
                    raise RequestError(f"run {thread_id!r} already has its context; ask a follow-up without one, or start a new run", param="context")
                return rlm.completion(query=req.question, thread_id=thread_id, on_event=on_event), "follow_up"
        if req.context_path is not None:
            source = open_source(req.context_path)
            context: Any = source.path if source.path is not None else source.value
        else:
            context = req.context if req.context is not None else req.question
        result = rlm.completion(context, req.question, thread_id=thread_id, limits=req.limits or None, on_event=on_event)
        return result, "new"


def error_of(exc: BaseException) -> RequestError:
    """The HTTP error for a failed run (a :class:`RequestError` as it is)."""
    if isinstance(exc, RequestError):
        return exc
    if isinstance(exc, (ConfigurationError, ContextError)):
        return RequestError(str(exc))
    if isinstance(exc, RunNotFoundError):
        return RequestError(str(exc), status=404, kind="not_found_error")
    if isinstance(exc, ModelError):
        return RequestError(f"the model failed: {exc}", status=502, kind="model_error")
    if isinstance(exc, SandboxError):
        return RequestError(f"the sandbox failed: {exc}", status=500, kind="sandbox_error")
    first = (str(exc).splitlines() or [""])[0]
    return RequestError(f"the run failed: {type(exc).__name__}: {first}", status=500, kind="server_error")


def usage_of(result: RLMResult) -> dict[str, int]:
    """OpenAI ``usage`` summed over every model in the run's tree."""
    prompt = sum(int(u.get("input_tokens") or 0) for u in result.usage.values())
    completion = sum(int(u.get("output_tokens") or 0) for u in result.usage.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def metadata_of(result: RLMResult, how: str) -> dict[str, str]:
    """The response's ``metadata``: string values, as OpenAI's own metadata are."""
    return {
        "thread_id": result.thread_id,
        "run": how,  # new, resumed, follow_up, or saved (the answer was already there)
        "stopped_by": str(result.stopped_by),
        "iterations": str(result.iterations),
        "subcalls": str(result.subcalls),
        "cells": str(result.cells),
        "execution_time": f"{result.execution_time:.3f}",
    }


def _finish_reason(result: RLMResult) -> str:
    return "stop" if result.stopped_by == "final" else "length"


def completion_body(result: RLMResult, how: str, model_id: str) -> dict[str, Any]:
    """A ``chat.completion`` object for a finished run."""
    return {
        "id": f"chatcmpl-{result.thread_id}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model_id,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": result.answer or ""}, "finish_reason": _finish_reason(result)}],
        "usage": usage_of(result),
        "metadata": metadata_of(result, how),
        "rlm": {"usage_by_model": result.usage, "stopped_by": result.stopped_by, "iterations": result.iterations},
    }


def create_app(rlm: RLM, settings: ServeSettings | None = None) -> Starlette:
    """The ASGI app serving ``rlm`` with the OpenAI chat API.

    Args:
        rlm: runs every request (its limits cap what a request may ask for; its checkpointer
            makes each request resumable).
        settings: the server's own settings.

    Example:
        >>> app = create_app(RLM("m", base_url="http://127.0.0.1:8000/v1"))  # doctest: +SKIP
        >>> uvicorn.run(app, host="127.0.0.1", port=8300)  # doctest: +SKIP
    """
    from starlette.applications import Starlette
    from starlette.responses import JSONResponse, StreamingResponse
    from starlette.routing import Route

    settings = settings or ServeSettings()
    runs = Runs(rlm, settings.max_runs)
    created = int(time.time())
    model = {"id": settings.model_id, "object": "model", "created": created, "owned_by": "rlm-graph"}

    def refuse(err: RequestError, thread_id: str | None = None) -> Response:
        body = err.body()
        if thread_id:
            body["error"]["thread_id"] = thread_id
        return JSONResponse(body, status_code=err.status)

    def denied(request: Request) -> Response | None:
        if settings.api_key is None:
            return None
        scheme, _, token = request.headers.get("authorization", "").partition(" ")
        if scheme.lower() == "bearer" and hmac.compare_digest(token.strip().encode(), settings.api_key.encode()):
            return None
        return refuse(RequestError("missing or wrong API key (send Authorization: Bearer KEY)", status=401, kind="authentication_error"))

    async def health(request: Request) -> Response:
        return JSONResponse({"status": "ok"})

    async def list_models(request: Request) -> Response:
        return denied(request) or JSONResponse({"object": "list", "data": [model]})

    async def get_model(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        if request.path_params["model"] != settings.model_id:
            return refuse(RequestError(f"the model {request.path_params['model']!r} does not exist", status=404, param="model"))
        return JSONResponse(model)

    async def chat(request: Request) -> Response:
        if (refusal := denied(request)) is not None:
            return refusal
        try:
            body = await _json_body(request, settings.max_body_bytes)
            req = parse_chat_request(body, model_id=settings.model_id, server_limits=rlm.limits, roots=settings.context_roots)
        except RequestError as err:
            return refuse(err)
        thread_id = req.thread_id or uuid4().hex[:16]
        headers = {"X-RLM-Thread-Id": thread_id}
        if req.stream:
            progress, events = Progress(), _EventQueue()
            try:
                future = runs.start(req, thread_id, lambda e: events.put_event(e, progress))
            except RequestError as err:
                return refuse(err)
            stream = _sse(future, events, thread_id, settings)
            return StreamingResponse(stream, media_type="text/event-stream", headers={**headers, "Cache-Control": "no-cache"})
        try:
            result, how = await asyncio.wrap_future(runs.start(req, thread_id, None))
        except BaseException as exc:
            if isinstance(exc, asyncio.CancelledError):
                raise
            return refuse(error_of(exc), thread_id if rlm.checkpointer is not None else None)
        return JSONResponse(completion_body(result, how, settings.model_id), headers=headers)

    routes = [
        Route("/health", health),
        Route("/v1/models", list_models),
        Route("/v1/models/{model:path}", get_model),
        Route("/v1/chat/completions", chat, methods=["POST"]),
    ]
    app = Starlette(routes=routes)
    app.state.runs = runs
    return app


async def _json_body(request: Request, limit: int) -> Any:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"the request body is larger than {limit:,} bytes", status=413)
    size, chunks = 0, []
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise RequestError(f"the request body is larger than {limit:,} bytes", status=413)
        chunks.append(chunk)
    try:
        return json.loads(b"".join(chunks))
    except (ValueError, UnicodeDecodeError):
        raise RequestError("the request body is not valid JSON") from None


class _EventQueue:
    """Progress notes, then the end, from a run's thread to the event loop serving its stream."""

    def __init__(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.queue: asyncio.Queue[tuple[str, dict[str, int]] | None] = asyncio.Queue()

    def _put(self, item: tuple[str, dict[str, int]] | None) -> None:
        try:
            self.loop.call_soon_threadsafe(self.queue.put_nowait, item)
        except RuntimeError:  # the loop has closed (the server stopped): the run goes on, saved
            pass

    def put_event(self, event: dict[str, Any], progress: Progress) -> None:
        note = progress.on_event(event)
        if note is not None:
            self._put((note, progress.snapshot()))

    def watch(self, future: Future[Any]) -> None:
        """Put None on the queue when ``future`` is done, after every note sent before it."""
        future.add_done_callback(lambda _: self._put(None))


def _chunk(thread_id: str, model_id: str, created: int, delta: dict[str, Any] | None, finish: str | None = None, **extra: Any) -> str:
    choices = [] if delta is None else [{"index": 0, "delta": delta, "finish_reason": finish}]
    body = {"id": f"chatcmpl-{thread_id}", "object": "chat.completion.chunk", "created": created, "model": model_id, "choices": choices, **extra}
    return f"data: {json.dumps(body, ensure_ascii=False)}\n\n"


async def _sse(future: Future[tuple[RLMResult, str]], events: _EventQueue, thread_id: str, settings: ServeSettings) -> AsyncIterator[str]:
    created, model_id = int(time.time()), settings.model_id
    yield _chunk(thread_id, model_id, created, {"role": "assistant", "content": ""}, metadata={"thread_id": thread_id})
    events.watch(future)
    while True:
        try:
            item = await asyncio.wait_for(events.queue.get(), settings.keepalive_seconds)
        except asyncio.TimeoutError:
            yield ": keep-alive\n\n"
            continue
        if item is None:
            break
        note, numbers = item
        yield _chunk(thread_id, model_id, created, {"reasoning_content": note + "\n"}, rlm_progress=numbers)
    try:
        result, how = future.result()
    except Exception as exc:
        err = error_of(exc).body()
        err["error"]["thread_id"] = thread_id
        yield f"data: {json.dumps(err, ensure_ascii=False)}\n\n"
        yield "data: [DONE]\n\n"
        return
    yield _chunk(thread_id, model_id, created, {"content": result.answer or ""})
    yield _chunk(thread_id, model_id, created, {}, _finish_reason(result))
    yield _chunk(thread_id, model_id, created, None, usage=usage_of(result), metadata=metadata_of(result, how))
    yield "data: [DONE]\n\n"
