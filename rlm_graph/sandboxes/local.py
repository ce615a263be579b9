"""The local backend: the worker in a subprocess of the host, with rlimits and a scrubbed environment."""

from __future__ import annotations

import collections
import os
import queue
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.base import Transport

WORKER_SOURCE = Path(__file__).with_name("worker.py")

# Names kept from the host environment; everything else (API keys included) is dropped.
_ENV_KEEP = ("PATH", "LANG", "LC_ALL", "TZ")


def scrubbed_env(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The worker's environment: no secrets, deterministic hashing, UTF-8 I/O."""
    env = {k: os.environ[k] for k in _ENV_KEEP if k in os.environ}
    env.update(PYTHONHASHSEED="0", PYTHONIOENCODING="utf-8", PYTHONDONTWRITEBYTECODE="1")
    if extra:
        env.update(extra)
    return env


def _limits(memory_mb: int | None) -> None:
    """Runs in the child before exec: own process group and rlimits.

    Not PR_SET_PDEATHSIG: it fires when the *thread* that started the worker ends, and graph
    nodes run on pool threads that come and go. The worker watches its parent itself.
    """
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))


class _LineReader:
    """Pumps a worker's stdout into a queue and keeps the tail of its stderr."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines: queue.Queue[str | None] = queue.Queue()
        self.err_tail: collections.deque[str] = collections.deque(maxlen=40)
        assert proc.stdout is not None and proc.stderr is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True).start()

    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        for raw in iter(stream.readline, b""):
            self.lines.put(raw.decode("utf-8", "replace").rstrip("\n"))
        self.lines.put(None)

    def _drain(self, stream) -> None:  # type: ignore[no-untyped-def]
        for raw in iter(stream.readline, b""):
            self.err_tail.append(raw.decode("utf-8", "replace")[:500])


class LocalTransport(Transport):
    """Start ``worker.py`` in a local subprocess.

    Args:
        python: interpreter for the worker (default: the host's).
        memory_mb: address-space limit for the worker (RLIMIT_AS); None for no limit.
        work_dir: the worker's working directory (default: a fresh temporary directory).
        isolation: "none" runs the plain subprocess; "bwrap" wraps it in bubblewrap (no network,
            read-only system, private /tmp, only the work dir writable); "auto" uses bubblewrap
            when it is installed and works.
    """

    kind = "local"

    def __init__(
        self,
        *,
        python: str | None = None,
        memory_mb: int | None = 4096,
        work_dir: str | os.PathLike[str] | None = None,
        isolation: str = "none",
    ) -> None:
        if isolation not in ("none", "bwrap", "auto"):
            raise SandboxError(f"unknown isolation {isolation!r}: use 'none', 'bwrap' or 'auto'")
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir or tempfile.mkdtemp(prefix="rlm-sbx-"))
        self.work_dir.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(WORKER_SOURCE, self.work_dir / "_rlm_worker.py")
        python = python or sys.executable
        argv = [python, "-s", "-u", str(self.work_dir / "_rlm_worker.py")]
        self.isolation = _resolve_isolation(isolation)
        if self.isolation == "bwrap":
            argv = _bwrap_argv(self.work_dir, python) + argv
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.work_dir,
                env=scrubbed_env({"HOME": str(self.work_dir), "TMPDIR": str(self.work_dir)}),
                preexec_fn=lambda: _limits(memory_mb),
            )
        except OSError as exc:
            raise SandboxError(f"could not start the local worker with {python}: {exc}") from exc
        self._reader = _LineReader(self._proc)
        self._closed = False

    def send(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode("utf-8") + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise WorkerCrashed(self._crash_message()) from exc

    def receive(self, timeout: float | None) -> str | None:
        try:
            line = self._reader.lines.get(timeout=timeout)
        except queue.Empty:
            return None
        if line is None:
            self._reader.lines.put(None)  # keep reporting the crash to later calls
            raise WorkerCrashed(self._crash_message())
        return line

    def _crash_message(self) -> str:
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        reason = f"exit code {code}"
        if code is not None and code < 0:
            try:
                reason = f"killed by {signal.Signals(-code).name}"
            except ValueError:
                pass
        tail = "".join(self._reader.err_tail).strip()[-1500:]
        return f"the sandbox worker died ({reason})" + (f"; its last output:\n{tail}" if tail else "")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stderr_tail(self) -> str:
        return "".join(self._reader.err_tail)

    def put_file(self, local_path: Path, name: str) -> str:
        # The worker runs on this machine: it reads the file where it is, unless bubblewrap
        # hides the host's files, in which case it gets a hard link or copy in its work dir.
        if self.isolation != "bwrap":
            return str(Path(local_path).resolve())
        target = self.work_dir / name
        try:
            os.link(local_path, target)
        except OSError:
            shutil.copyfile(local_path, target)
        return str(target)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass
        for stream in (self._proc.stdin, self._proc.stdout, self._proc.stderr):
            try:
                if stream:
                    stream.close()
            except OSError:
                pass
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)


def _bwrap_works() -> bool:
    exe = shutil.which("bwrap")
    if not exe:
        return False
    try:
        return subprocess.run([exe, "--unshare-all", "--ro-bind", "/", "/", "true"], timeout=10, capture_output=True).returncode == 0
    except (OSError, subprocess.TimeoutExpired):
        return False


_BWRAP_OK: bool | None = None


def _resolve_isolation(isolation: str) -> str:
    global _BWRAP_OK
    if isolation == "none":
        return "none"
    if _BWRAP_OK is None:
        _BWRAP_OK = _bwrap_works()
    if _BWRAP_OK:
        return "bwrap"
    if isolation == "bwrap":
        raise SandboxError("isolation='bwrap' was asked for but bubblewrap is not installed or cannot run here (apt-get install bubblewrap)")
    print("rlm-graph: bubblewrap not available; the local sandbox runs without isolation (isolation='none' hides this note)", file=sys.stderr)
    return "none"


def _bwrap_argv(work_dir: Path, python: str) -> list[str]:
    argv = ["bwrap", "--unshare-all", "--die-with-parent", "--new-session"]
    for path in ("/usr", "/bin", "/lib", "/lib64", "/etc"):
        if os.path.exists(path):
            argv += ["--ro-bind", path, path]
    prefix = Path(sys.prefix).resolve()
    base = Path(sys.base_prefix).resolve()
    for path in {prefix, base, Path(python).resolve().parent.parent}:
        if not str(path).startswith(("/usr", "/bin", "/lib")):
            argv += ["--ro-bind", str(path), str(path)]
    argv += ["--proc", "/proc", "--dev", "/dev", "--tmpfs", "/tmp", "--bind", str(work_dir), str(work_dir), "--chdir", str(work_dir)]
    return argv
