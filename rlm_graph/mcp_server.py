"""An MCP server with one tool, ``rlm_answer``: what ``rlm-graph mcp`` runs.

Built on the official ``mcp`` SDK (the ``serve`` extra). The tool answers a question over a
context (text, a list or an object), a file or folder inside the server's context roots, or,
with neither, over the question itself. While the run works it sends MCP progress notifications
("iteration 2: cell 3 asked for 8 sub-call(s)"), so a client can show what is happening. Each
call is a checkpointed run like one of ``rlm-graph serve``'s requests, with the same rules for a
``thread_id`` (resume an unfinished run, ask a follow-up, or get a saved answer back); see
docs/serve.md.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import uuid4

from typing_extensions import TypedDict

from rlm_graph.serve.app import Runs, ServeSettings, error_of, usage_of
from rlm_graph.serve.progress import Progress
from rlm_graph.serve.requests import MAX_QUESTION_CHARS, THREAD_ID, ChatRequest, RequestError, inside_roots

if TYPE_CHECKING:
    from mcp.server.mcpserver import MCPServer

    from rlm_graph.rlm import RLM

#: What the tool tells a client's model about itself.
TOOL_DESCRIPTION = (
    "Answer a question over a long context with a Recursive Language Model: the context is loaded "
    "into a Python REPL that a model explores with code and sub-queries, so it can be far longer than "
    "a context window. Give the data as `context` (text, a list or an object) or as `context_path` "
    "(a file or folder inside the server's context roots). Pass a previous result's `thread_id` to "
    "ask a follow-up question on the same data."
)


class Answer(TypedDict):
    """What ``rlm_answer`` returns."""

    answer: str
    thread_id: str
    stopped_by: str
    iterations: int
    total_tokens: int


def create_mcp_server(rlm: RLM, *, context_roots: Sequence[Path | str] = (), max_runs: int = 4, name: str = "rlm-graph") -> MCPServer:
    """An MCP server whose tool ``rlm_answer`` runs ``rlm``.

    Args:
        rlm: runs every call (its limits and checkpointer apply).
        context_roots: folders ``context_path`` may point into (none: no paths).
        max_runs: calls working at once.
        name: the server's name in the MCP handshake.

    Example:
        >>> create_mcp_server(RLM("m", base_url="http://127.0.0.1:8000/v1")).run("stdio")  # doctest: +SKIP
    """
    from mcp.server.mcpserver import Context, MCPServer
    from mcp.server.mcpserver.exceptions import ToolError

    roots = ServeSettings(context_roots=tuple(Path(r) for r in context_roots)).context_roots
    runs = Runs(rlm, max_runs)
    server: MCPServer = MCPServer(name, instructions=TOOL_DESCRIPTION)

    async def rlm_answer(
        question: str,
        context: str | list[Any] | dict[str, Any] | None = None,
        context_path: str | None = None,
        thread_id: str | None = None,
        ctx: Context | None = None,
    ) -> Answer:
        try:
            req = _request(question, context, context_path, thread_id, roots)
        except RequestError as err:
            raise ToolError(str(err)) from None
        tid = req.thread_id or uuid4().hex[:16]
        loop = asyncio.get_running_loop()
        notes: asyncio.Queue[str | None] = asyncio.Queue()
        progress = Progress()

        def on_event(event: dict[str, Any]) -> None:
            note = progress.on_event(event)
            if note is not None:
                try:
                    loop.call_soon_threadsafe(notes.put_nowait, note)
                except RuntimeError:  # the server stopped: the run goes on, saved
                    pass

        try:
            future = runs.start(req, tid, on_event)
        except RequestError as err:
            raise ToolError(str(err)) from None
        future.add_done_callback(lambda _: _put(loop, notes, None))
        sent = 0
        while (note := await notes.get()) is not None:
            sent += 1
            if ctx is not None:
                await ctx.report_progress(sent, None, note)
        try:
            result, _ = future.result()
        except Exception as exc:
            resume = f" (the run is saved: call again with thread_id={tid!r} to carry it on)" if rlm.checkpointer is not None else ""
            raise ToolError(str(error_of(exc)) + resume) from None
        return Answer(answer=result.answer or "", thread_id=result.thread_id, stopped_by=str(result.stopped_by),
                      iterations=result.iterations, total_tokens=usage_of(result)["total_tokens"])

    # The SDK reads the annotations to build the tool's schema: real types, not this module's
    # postponed strings (Context is only imported here).
    rlm_answer.__annotations__ = {
        "question": str, "context": str | list[Any] | dict[str, Any] | None, "context_path": str | None,
        "thread_id": str | None, "ctx": Context | None, "return": Answer,
    }
    server.tool(name="rlm_answer", description=TOOL_DESCRIPTION)(rlm_answer)
    return server


def _put(loop: asyncio.AbstractEventLoop, queue: asyncio.Queue[str | None], item: str | None) -> None:
    try:
        loop.call_soon_threadsafe(queue.put_nowait, item)
    except RuntimeError:
        pass


def _request(question: Any, context: Any, context_path: Any, thread_id: Any, roots: Sequence[Path]) -> ChatRequest:
    """A tool call's arguments, checked like an HTTP request's (the client's model wrote them)."""
    if not isinstance(question, str) or not question.strip():
        raise RequestError("'question' must be a non-empty string")
    if len(question) > MAX_QUESTION_CHARS:
        raise RequestError(f"'question' is {len(question):,} characters; put long text in 'context'")
    if context is not None and context_path is not None:
        raise RequestError("give 'context' or 'context_path', not both")
    if thread_id is not None and (not isinstance(thread_id, str) or not THREAD_ID.fullmatch(thread_id)):
        raise RequestError("'thread_id' must be 1-128 letters, digits or _.:- (starting with a letter or digit)")
    if isinstance(context, str) and not context.strip():
        raise RequestError("'context' is empty")
    path = inside_roots(context_path, roots) if context_path is not None else None
    return ChatRequest(question=question.strip(), context=context, context_path=path, thread_id=thread_id,
                       named_context=context is not None or path is not None)
