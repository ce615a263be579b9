"""A local stand-in for Modal at the SDK boundary: ``modal.App.lookup`` and ``modal.Sandbox.create``.

:class:`FakeModal` replaces those two entry points of the real, installed ``modal`` package (the
rest of it, ``modal.Image`` included, stays real). The sandbox it creates has what
:class:`~rlm_graph.sandboxes.modal.ModalTransport` uses of ``modal.Sandbox``: ``exec`` (a real
local subprocess, its stdin and stdout as the SDK's ``StreamWriter`` and ``StreamReader`` present
them), ``filesystem.copy_from_local``, ``poll`` and ``terminate``. Every call is checked against
the real SDK's signature, so a call the SDK would reject fails here too, and a few of the SDK's
rules are kept: the stdin buffer refuses more than the SDK's limit before a ``drain``, a write
after ``write_eof`` is an error, remote paths must be absolute, a terminated sandbox runs nothing.
Output is cut into small chunks so that clients must join lines themselves.

What it cannot be: the worker runs as a plain host process, so ``block_network`` and the resource
options are recorded (for tests to check) but not enforced.
"""

from __future__ import annotations

import inspect
import itertools
import os
import shutil
import signal
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import modal
import modal.io_streams
from modal.container_process import ContainerProcess
from modal.io_streams import StreamWriter
from modal.sandbox.sandbox import SandboxFilesystem

_IDS = itertools.count(1)


def _check(real: Any, *args: Any, **kwargs: Any) -> None:
    """Raise TypeError unless the real SDK function accepts these arguments."""
    inspect.signature(real).bind(*args, **kwargs)


class FakeApp:
    def __init__(self, name: str) -> None:
        self.name = name
        self.app_id = f"ap-fake{next(_IDS)}"


class FakeStreamWriter:
    """A process's stdin as ``modal.io_streams.StreamWriter`` behaves: buffered writes, sent by ``drain``."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self._proc = proc
        self._buffer = bytearray()
        self._eof = False
        self.drains = 0
        self.largest_drain = 0

    def write(self, data: bytes | bytearray | memoryview | str) -> None:
        _check(StreamWriter.write, self, data)
        if self._eof:
            raise ValueError("Stdin is closed. Cannot write to it.")
        if isinstance(data, str):
            data = data.encode("utf-8")
        if len(self._buffer) + len(data) > modal.io_streams.TASK_COMMAND_ROUTER_MAX_BUFFER_SIZE:
            raise BufferError("Buffer size exceed limit. Call drain to flush the buffer.")
        self._buffer += data

    def write_eof(self) -> None:
        self._eof = True

    def drain(self) -> None:
        assert self._proc.stdin is not None
        data = bytes(self._buffer)
        self._proc.stdin.write(data)  # a dead process: BrokenPipeError, as the real one fails too
        self._proc.stdin.flush()
        self._buffer.clear()
        self.drains += 1
        self.largest_drain = max(self.largest_drain, len(data))
        if self._eof:
            self._proc.stdin.close()


class FakeStreamReader:
    """A process's stdout or stderr as ``modal.io_streams.StreamReader`` iterates it: chunks, bytes or str."""

    def __init__(self, stream: Any, text: bool, chunk_size: int) -> None:
        self._stream = stream
        self._text = text
        self._chunk_size = chunk_size

    def __iter__(self) -> Iterator[bytes | str]:
        while chunk := self._stream.read1(self._chunk_size):
            yield chunk.decode("utf-8", "replace") if self._text else chunk

    def read(self) -> bytes | str:
        data = self._stream.read()
        return data.decode("utf-8", "replace") if self._text else data


class FakeContainerProcess:
    """``modal.container_process.ContainerProcess`` over a local subprocess."""

    def __init__(self, proc: subprocess.Popen[bytes], text: bool, chunk_size: int) -> None:
        self.proc = proc
        self.stdin = FakeStreamWriter(proc)
        self.stdout = FakeStreamReader(proc.stdout, text, chunk_size)
        self.stderr = FakeStreamReader(proc.stderr, text, chunk_size)

    def poll(self) -> int | None:
        _check(ContainerProcess.poll, self)
        return self._code(self.proc.poll())

    def wait(self) -> int:
        _check(ContainerProcess.wait, self)
        return self._code(self.proc.wait())  # type: ignore[return-value]

    @staticmethod
    def _code(code: int | None) -> int | None:
        return None if code is None else (128 - code if code < 0 else code)  # a signal: 128 + its number


class FakeFilesystem:
    """``Sandbox.filesystem``: ``copy_from_local`` streams the file into place, under the sandbox's root only."""

    def __init__(self, sandbox: FakeSandbox) -> None:
        self._sandbox = sandbox

    def copy_from_local(self, local_path: str | os.PathLike[str], remote_path: str) -> None:
        _check(SandboxFilesystem.copy_from_local, self, local_path, remote_path)
        if not remote_path.startswith("/"):
            raise modal.exception.InvalidError(f"copy_from_local: remote path must be absolute, got {remote_path!r}")
        target = Path(remote_path)
        if not target.resolve().is_relative_to(self._sandbox.root.resolve()):
            raise PermissionError(f"the fake sandbox only writes under {self._sandbox.root}, not {remote_path}")
        if self._sandbox.terminated:
            raise modal.exception.SandboxTerminatedError("Sandbox has been terminated")
        target.parent.mkdir(parents=True, exist_ok=True)
        with open(local_path, "rb") as src, open(target, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)  # in chunks, like the SDK's stream
        self._sandbox.uploads.append((str(local_path), remote_path, target.stat().st_size))


class FakeSandbox:
    """What the transport uses of ``modal.Sandbox``: ``exec``, ``filesystem``, ``poll``, ``terminate``."""

    def __init__(self, fake: FakeModal, options: dict[str, Any]) -> None:
        self.object_id = f"sb-fake{next(_IDS)}"
        self.options = options
        self.root = fake.root
        self.home = fake.home
        self.chunk_size = fake.chunk_size
        self.filesystem = FakeFilesystem(self)
        self.processes: list[FakeContainerProcess] = []
        self.uploads: list[tuple[str, str, int]] = []
        self.terminated = False
        self._lock = threading.Lock()

    def exec(self, *args: str, **kwargs: Any) -> FakeContainerProcess:
        _check(modal.Sandbox.exec, self, *args, **kwargs)
        with self._lock:
            if self.terminated:
                raise modal.exception.SandboxTerminatedError("Sandbox has been terminated")
            env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": self.home}
            env.update({k: v for k, v in (self.options.get("env") or {}).items() if v is not None})
            env.update({k: v for k, v in (kwargs.get("env") or {}).items() if v is not None})
            proc = subprocess.Popen(
                list(args),
                cwd=kwargs.get("workdir") or self.options.get("workdir") or self.home,
                env=env,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                start_new_session=True,
            )
            handle = FakeContainerProcess(proc, kwargs.get("text", True), self.chunk_size)
            self.processes.append(handle)
            return handle

    def poll(self) -> int | None:
        _check(modal.Sandbox.poll, self)
        return 137 if self.terminated else None

    def terminate(self, *, wait: bool = False) -> int | None:
        _check(modal.Sandbox.terminate, self, wait=wait)
        with self._lock:
            self.terminated = True
            for handle in self.processes:
                try:
                    os.killpg(handle.proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            for handle in self.processes:
                handle.proc.wait()
                try:
                    handle.proc.stdin.close()  # type: ignore[union-attr]
                except OSError:
                    pass
        return 137 if wait else None

    def running(self) -> list[int]:
        """Pids of this sandbox's processes still running."""
        return [h.proc.pid for h in self.processes if h.proc.poll() is None]


class FakeModal:
    """Install with :meth:`install`; the sandboxes created are in :attr:`sandboxes`, newest last.

    Args:
        root: the only folder the fake sandboxes' ``copy_from_local`` may write in (the tests'
            ``work_dir`` is under it).
        chunk_size: most bytes of output per chunk the stdout reader yields.
    """

    def __init__(self, root: Path, chunk_size: int = 1000) -> None:
        self.root = root
        self.chunk_size = chunk_size
        self.home = tempfile.mkdtemp(prefix="fake-modal-home-")
        self.apps: dict[str, FakeApp] = {}
        self.sandboxes: list[FakeSandbox] = []
        self.create_error: Exception | None = None  # raised by the next create, then cleared

    def install(self, monkeypatch: Any) -> FakeModal:
        real_lookup, real_create = modal.App.lookup, modal.Sandbox.create

        def lookup(name: str, **kwargs: Any) -> FakeApp:
            _check(real_lookup, name, **kwargs)
            if name not in self.apps:
                if not kwargs.get("create_if_missing"):
                    raise modal.exception.NotFoundError(f"App '{name}' not found")
                self.apps[name] = FakeApp(name)
            return self.apps[name]

        def create(*args: str, **kwargs: Any) -> FakeSandbox:
            _check(real_create, *args, **kwargs)
            if not isinstance(kwargs.get("app"), FakeApp):
                raise modal.exception.InvalidError("App is required")
            if kwargs.get("image") is not None and not isinstance(kwargs["image"], modal.Image):
                raise modal.exception.InvalidError(f"image must be a modal.Image, not {type(kwargs['image']).__name__}")
            if self.create_error is not None:
                error, self.create_error = self.create_error, None
                raise error
            sandbox = FakeSandbox(self, {"args": args, **kwargs})
            self.sandboxes.append(sandbox)
            return sandbox

        monkeypatch.setattr(modal.App, "lookup", lookup)
        monkeypatch.setattr(modal.Sandbox, "create", create)
        return self

    def close(self) -> None:
        for sandbox in self.sandboxes:
            sandbox.terminate()
        shutil.rmtree(self.home, ignore_errors=True)
