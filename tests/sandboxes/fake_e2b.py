"""A local stand-in for E2B's envd on 127.0.0.1:49983, for running the E2B SDK with E2B_DEBUG=true.

It serves what :class:`~rlm_graph.sandboxes.e2b.E2BTransport` uses, with real processes and files
on this machine: envd's Connect-RPC process service (the SDK ships its server side;
``Start`` streams a start event, stdout/stderr data events and an end event; ``SendInput``,
``SendSignal``, ``CloseStdin``) and the ``/files`` upload route (``application/octet-stream``,
which the SDK uses for streamed uploads). Output is cut into small chunks so that clients must
join lines themselves, as with the real service.

It also answers the two calls of E2B's own API a sandbox's life makes outside debug mode,
``POST /v2/sandboxes`` (create: the request bodies are kept in :attr:`FakeEnvd.created`) and
``DELETE /sandboxes/{id}`` (kill: the ids are kept in :attr:`FakeEnvd.killed`), so a test can point
``E2B_API_URL`` and ``E2B_SANDBOX_URL`` at it and see what the SDK asks for.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
import tempfile
import threading
import time
from collections.abc import AsyncIterator
from pathlib import Path
from types import TracebackType
from typing import Any, Literal

import uvicorn
from connectrpc.code import Code
from connectrpc.errors import ConnectError
from e2b.envd.process import process_pb as pb
from e2b.envd.process.process_connect import Process, ProcessASGIApplication
from protobuf import Oneof
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

ENVD_PORT = 49983


def _event(event: Any) -> pb.StartResponse:
    """Wrap a ProcessEvent oneof (``Oneof("start", ...)``, data, end) in a stream message."""
    return pb.StartResponse(event=pb.ProcessEvent(event=event))


class FakeProcessService(Process):
    """envd's process service running local subprocesses (unimplemented methods keep the Protocol's defaults)."""

    def __init__(self, chunk_size: int = 1000) -> None:
        self.chunk_size = chunk_size
        self.procs: dict[int, asyncio.subprocess.Process] = {}
        self.home = tempfile.mkdtemp(prefix="fake-envd-home-")  # so `bash -l` reads no user profile

    async def start(self, request: pb.StartRequest, ctx: Any) -> AsyncIterator[pb.StartResponse]:
        cfg = request.process
        assert cfg is not None
        env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home, **dict(cfg.envs)}
        proc = await asyncio.create_subprocess_exec(
            cfg.cmd,
            *cfg.args,
            cwd=cfg.cwd or None,
            env=env,
            stdin=asyncio.subprocess.PIPE if request.stdin else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            start_new_session=True,
        )
        self.procs[proc.pid] = proc
        out: asyncio.Queue[pb.ProcessEvent.DataEvent | None] = asyncio.Queue()

        async def pump(stream: asyncio.StreamReader, field: Literal["stdout", "stderr"]) -> None:
            while chunk := await stream.read(self.chunk_size):
                await out.put(pb.ProcessEvent.DataEvent(output=Oneof(field, chunk)))  # type: ignore[arg-type]
            await out.put(None)

        assert proc.stdout is not None and proc.stderr is not None
        tasks = [asyncio.create_task(pump(proc.stdout, "stdout")), asyncio.create_task(pump(proc.stderr, "stderr"))]
        try:
            yield _event(Oneof("start", pb.ProcessEvent.StartEvent(pid=proc.pid)))
            open_streams = 2
            while open_streams:
                data = await out.get()
                if data is None:
                    open_streams -= 1
                else:
                    yield _event(Oneof("data", data))
            code = await proc.wait()
            yield _event(Oneof("end", pb.ProcessEvent.EndEvent(exit_code=code, exited=True, status=f"exit status {code}")))
        finally:  # the client went away or the process ended: leave nothing running
            for task in tasks:
                task.cancel()
            if proc.returncode is None:
                proc.kill()
                await proc.wait()
            self.procs.pop(proc.pid, None)

    def _proc(self, selector: pb.ProcessSelector | None) -> asyncio.subprocess.Process:
        pid = selector.selector.value if selector and selector.selector else None
        if pid not in self.procs:
            raise ConnectError(Code.NOT_FOUND, f"process {pid} not found")
        return self.procs[pid]

    async def send_input(self, request: pb.SendInputRequest, ctx: Any) -> pb.SendInputResponse:
        proc = self._proc(request.process)
        assert proc.stdin is not None and request.input is not None and request.input.input is not None
        proc.stdin.write(request.input.input.value)
        await proc.stdin.drain()
        return pb.SendInputResponse()

    async def send_signal(self, request: pb.SendSignalRequest, ctx: Any) -> pb.SendSignalResponse:
        self._proc(request.process).send_signal(request.signal.value)
        return pb.SendSignalResponse()

    async def close_stdin(self, request: pb.CloseStdinRequest, ctx: Any) -> pb.CloseStdinResponse:
        proc = self._proc(request.process)
        assert proc.stdin is not None
        proc.stdin.close()
        return pb.CloseStdinResponse()

    def kill_all(self) -> None:
        for pid in list(self.procs):
            try:
                os.killpg(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


async def _upload(request: Request) -> Response:
    """envd's ``POST /files?path=...`` for octet-stream bodies: write the file, creating folders."""
    if request.headers.get("content-type") != "application/octet-stream":
        return JSONResponse({"message": "this fake envd only accepts application/octet-stream uploads"}, 415)
    path = Path(request.query_params["path"])
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        async for chunk in request.stream():
            f.write(chunk)
    return JSONResponse([{"name": path.name, "type": "file", "path": str(path)}])


async def _health(request: Request) -> Response:
    return Response(status_code=204)


class FakeApi:
    """E2B's sandbox API, as far as create and kill: records what it is asked, answers like E2B."""

    ENVD_VERSION = "99.99.99"  # what the SDK assumes in debug mode: every envd feature is on

    def __init__(self) -> None:
        self.created: list[dict[str, Any]] = []
        self.killed: list[str] = []

    async def create(self, request: Request) -> Response:
        body = await request.json()
        self.created.append(body)
        sandbox_id = f"fake-sandbox-{len(self.created)}"
        return JSONResponse(
            {"templateID": body["templateID"], "sandboxID": sandbox_id, "clientID": "fake", "envdVersion": self.ENVD_VERSION},
            201,
        )

    async def kill(self, request: Request) -> Response:
        self.killed.append(request.path_params["sandbox_id"])
        return Response(status_code=204)


class FakeEnvd:
    """Serve the fake envd on 127.0.0.1:49983 in a background thread, as a context manager."""

    def __init__(self, port: int = ENVD_PORT, chunk_size: int = 1000) -> None:
        self.port = port
        self.service = FakeProcessService(chunk_size)
        self.api = FakeApi()
        rpc = ProcessASGIApplication(self.service)
        files = Starlette(routes=[
            Route("/files", _upload, methods=["POST"]),
            Route("/health", _health),
            Route("/v2/sandboxes", self.api.create, methods=["POST"]),
            Route("/sandboxes/{sandbox_id}", self.api.kill, methods=["DELETE"]),
        ])

        async def app(scope: dict[str, Any], receive: Any, send: Any) -> None:
            target = rpc if scope["type"] == "http" and scope["path"].startswith(rpc.path + "/") else files
            await target(scope, receive, send)

        config = uvicorn.Config(
            app, host="127.0.0.1", port=port, log_level="warning", lifespan="off", timeout_graceful_shutdown=2
        )
        self.server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self.server.run, name="fake-envd", daemon=True)

    def __enter__(self) -> FakeEnvd:
        self._thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the fake envd could not listen on 127.0.0.1:{self.port} (is the port taken?)")
            time.sleep(0.02)
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.service.kill_all()
        self.server.should_exit = True
        self._thread.join(10)
        shutil.rmtree(self.service.home, ignore_errors=True)
