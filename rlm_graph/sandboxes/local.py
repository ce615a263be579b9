"""The local backend: the worker in a subprocess of the host, isolated by bubblewrap when it can be.

Always: a scrubbed environment (no API keys), an address-space limit (RLIMIT_AS), no core dumps,
its own process group, and a cap on processes (see ``max_processes``).

With ``isolation="bwrap"`` (what ``"auto"``, the default, picks when bubblewrap runs here) the
worker also gets, from the kernel's namespaces (the command line is in
:mod:`rlm_graph.sandboxes.isolation`, which lists them in full): no network, no host processes,
a read-only system with a private ``/tmp`` and the work dir as its one writable folder, the
contexts in a read-only inbox, and an unprivileged user with no capabilities that dies with the
host.

Without bubblewrap, ``"auto"`` falls back to the plain subprocess and says so once per process
on stderr (a ``RuntimeWarning``). That subprocess runs as the host's user: it can read what the
host user can (files, other processes' environments under ``/proc``) and reach the network.
"""

from __future__ import annotations

import collections
import functools
import itertools
import os
import resource
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import warnings
from collections.abc import Sequence
from pathlib import Path

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.base import END, BoundedLines, Transport
# bwrap_status is also imported from here (tests, bench/sandbox_bench.py) and patched here.
from rlm_graph.sandboxes.isolation import _bwrap_argv, bwrap_status

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


class _LineReader:
    """Pumps a worker's stdout into bounded lines and keeps a bounded tail of its stderr."""

    def __init__(self, proc: subprocess.Popen[bytes]) -> None:
        self.lines = BoundedLines()
        self.err_tail: collections.deque[str] = collections.deque(maxlen=40)
        assert proc.stdout is not None and proc.stderr is not None
        threading.Thread(target=self._pump, args=(proc.stdout,), daemon=True).start()
        threading.Thread(target=self._drain, args=(proc.stderr,), daemon=True).start()

    # Each thread closes its own stream at EOF: closing it from another thread mid-read races.
    # Both read in chunks, never a whole line: a worker may write a line of any length.
    def _pump(self, stream) -> None:  # type: ignore[no-untyped-def]
        with stream:
            for chunk in iter(functools.partial(stream.read1, _CHUNK), b""):
                self.lines.feed(chunk)
        self.lines.end()

    def _drain(self, stream) -> None:  # type: ignore[no-untyped-def]
        partial = ""
        with stream:
            for chunk in iter(functools.partial(stream.read1, _CHUNK), b""):
                *lines, partial = (partial + chunk.decode("utf-8", "replace")).split("\n")
                self.err_tail.extend(line[:500] + "\n" for line in lines[-40:])
                partial = partial[-500:]
        if partial:
            self.err_tail.append(partial)


#: Bytes read from a worker's pipe at a time.
_CHUNK = 1 << 16


class LocalTransport(Transport):
    """Start ``worker.py`` in a local subprocess, under bubblewrap when available.

    Args:
        python: interpreter for the worker (default: the host's).
        memory_mb: address-space limit for the worker (RLIMIT_AS); None for no limit. A cell that
            allocates past it gets a ``MemoryError``; the worker lives on.
        work_dir: the worker's working directory, its only writable folder under bubblewrap
            (default: a fresh temporary directory, removed on close).
        isolation: "auto" (default) uses bubblewrap when it is installed and works, and otherwise
            runs the plain subprocess with a note on stderr, once per process; "bwrap" requires
            bubblewrap (a SandboxError without it); "none" runs the plain subprocess silently.
        max_processes: most processes and threads the worker may add. As root: a pids cgroup
            when the cgroup filesystem is writable (otherwise no cap: root is exempt from
            RLIMIT_NPROC). Otherwise: RLIMIT_NPROC set to the user's current count plus this,
            as that limit counts all of the user's processes. None for no cap.
        ro_paths: more host folders the worker may read under bubblewrap (data, an extra
            site-packages); the worker's Python and its venv are always visible.
        tmpfs_mb: size of each in-memory folder under bubblewrap (``/tmp``, ``/dev/shm``); their
            pages are RAM that RLIMIT_AS does not count.

    Example::

        from rlm_graph.sandboxes.local import LocalTransport
        from rlm_graph.sandboxes.session import SandboxSession

        session = SandboxSession(lambda: LocalTransport(memory_mb=2048))
        session.start()
        print(session.step(0, "1 + 1").stdout)  # "2"
        session.close()
    """

    kind = "local"

    def __init__(
        self,
        *,
        python: str | None = None,
        memory_mb: int | None = 4096,
        work_dir: str | os.PathLike[str] | None = None,
        isolation: str = "auto",
        max_processes: int | None = 256,
        ro_paths: Sequence[str | os.PathLike[str]] = (),
        tmpfs_mb: int = 256,
    ) -> None:
        if isolation not in ("none", "bwrap", "auto"):
            raise SandboxError(f"unknown isolation {isolation!r}: use 'auto', 'bwrap' or 'none'")
        self.isolation = _resolve_isolation(isolation)
        self._closed = False
        _remove_stale_boxes()
        self._box = Path(tempfile.mkdtemp(prefix=f"{_PREFIX}{os.getpid()}-"))
        # The inbox holds the worker script and the contexts; read-only to the worker under bwrap.
        self._inbox = self._box / "in"
        self._inbox.mkdir()
        self._own_dir = work_dir is None
        self.work_dir = Path(work_dir).resolve() if work_dir is not None else self._box / "work"
        self.work_dir.mkdir(parents=True, exist_ok=True)
        worker = self._inbox / "_rlm_worker.py"
        shutil.copyfile(WORKER_SOURCE, worker)
        python = python or sys.executable
        argv = [python, "-s", "-u", str(worker)]
        if self.isolation == "bwrap":
            argv = _bwrap_argv(self.work_dir, self._inbox, python, ro_paths, tmpfs_mb) + argv
        self._cgroup = _PidsCgroup.create(max_processes) if max_processes and os.geteuid() == 0 else None
        nproc = _user_tasks() + max_processes if max_processes and os.geteuid() != 0 else None
        try:
            self._proc = subprocess.Popen(
                argv,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                cwd=self.work_dir,
                env=scrubbed_env({"HOME": str(self.work_dir), "TMPDIR": str(self.work_dir)}),
                preexec_fn=functools.partial(_limits, memory_mb, nproc, self._cgroup),
            )
        except (OSError, subprocess.SubprocessError) as exc:
            self._release()
            raise SandboxError(f"could not start the local worker with {python}: {exc}") from exc
        self._reader = _LineReader(self._proc)

    def send(self, line: str) -> None:
        assert self._proc.stdin is not None
        try:
            self._proc.stdin.write(line.encode("utf-8") + b"\n")
            self._proc.stdin.flush()
        except (BrokenPipeError, OSError, ValueError) as exc:
            raise WorkerCrashed(self._crash_message()) from exc

    def receive(self, timeout: float | None) -> str | None:
        line = self._reader.lines.get(timeout)
        if line is END:
            raise WorkerCrashed(self._crash_message())
        return line  # type: ignore[return-value]

    def _crash_message(self) -> str:
        try:
            code = self._proc.wait(timeout=2)
        except subprocess.TimeoutExpired:
            code = None
        reason = f"exit code {code}"
        signum = -code if code is not None and code < 0 else 0
        if self.isolation == "bwrap" and code is not None and code > 128:
            signum = code - 128  # bubblewrap exits with 128 + n when signal n killed the worker
        if signum:
            try:
                reason = f"killed by {signal.Signals(signum).name}"
            except ValueError:
                pass
        tail = "".join(self._reader.err_tail).strip()[-1500:]
        return f"the sandbox worker died ({reason})" + (f"; its last output:\n{tail}" if tail else "")

    def alive(self) -> bool:
        return self._proc.poll() is None

    def stderr_tail(self) -> str:
        return "".join(self._reader.err_tail)

    def put_file(self, local_path: Path, name: str) -> str:
        # Without isolation the worker reads the file where it is. Under bubblewrap the host's
        # files are hidden: it gets a hard link (free for a large context) or a copy in the
        # read-only inbox, so a cell can neither read other files nor change this one.
        if self.isolation != "bwrap":
            return str(Path(local_path).resolve())
        if Path(name).name != name or name in ("", ".", "..", "_rlm_worker.py"):
            raise SandboxError(f"invalid sandbox file name {name!r}")
        target = self._inbox / name
        target.unlink(missing_ok=True)
        try:
            os.link(local_path, target)
        except OSError:  # another filesystem, or linking not allowed
            shutil.copyfile(local_path, target)
        return str(target)

    def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._reader.lines.close()
        try:
            os.killpg(self._proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self._proc.wait(timeout=5)
        except subprocess.TimeoutExpired:  # pragma: no cover - a process that ignores SIGKILL
            pass
        try:
            if self._proc.stdin:
                self._proc.stdin.close()
        except OSError:
            pass
        self._release()

    def _release(self) -> None:
        # Children that left the worker's process group (setsid) are still in its cgroup.
        if self._cgroup is not None:
            self._cgroup.release()
        if self._own_dir:
            shutil.rmtree(self.work_dir, ignore_errors=True)
        shutil.rmtree(self._box, ignore_errors=True)


def _limits(memory_mb: int | None, nproc: int | None, cgroup: _PidsCgroup | None) -> None:
    """Runs in the child before exec: own process group, rlimits, the pids cgroup.

    Not PR_SET_PDEATHSIG: it fires when the *thread* that started the worker ends, and graph
    nodes run on pool threads that come and go. The worker watches its parent itself, and
    under bubblewrap ``--die-with-parent`` ends the sandbox with the host.
    """
    os.setsid()
    resource.setrlimit(resource.RLIMIT_CORE, (0, 0))
    if memory_mb:
        limit = memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    if nproc:
        resource.setrlimit(resource.RLIMIT_NPROC, (nproc, nproc))
    if cgroup is not None:
        cgroup.enter()


# -- choosing the isolation -------------------------------------------------------------------
# Here rather than in isolation.py: it looks up ``bwrap_status`` and ``_WARNED`` in this module,
# where tests (and callers that silence the note) patch them.

_WARNED = False


def _resolve_isolation(isolation: str) -> str:
    """The isolation a transport gets: "bwrap" or "none"; warns once when "auto" must fall back."""
    global _WARNED
    if isolation == "none":
        return "none"
    ok, why = bwrap_status()
    if ok:
        return "bwrap"
    if isolation == "bwrap":
        raise SandboxError(f"isolation='bwrap' was asked for but {why} (Debian/Ubuntu: apt-get install bubblewrap)")
    if not _WARNED:
        _WARNED = True
        warnings.warn(
            f"rlm-graph: {why}, so the local sandbox runs WITHOUT isolation: code the model writes can "
            "read your files and reach the network. Install bubblewrap (apt-get install bubblewrap) "
            "or use sandbox='docker'; pass isolation='none' to silence this note.",
            RuntimeWarning,
            stacklevel=4,
        )
    return "none"


# -- private folders --------------------------------------------------------------------------

#: Prefix of the private folders and cgroups, followed by the host's pid: "rlm-sbx-<pid>-...".
_PREFIX = "rlm-sbx-"
_BOXES_SWEPT = False


def _owner_gone(name: str) -> bool:
    """True for a folder or cgroup named by a host process that no longer exists."""
    owner = name[len(_PREFIX) :].split("-", 1)[0]
    return owner.isdigit() and not Path(f"/proc/{owner}").exists()


def _remove_stale_boxes() -> None:
    """Once per process: remove the private folders of hosts that died without closing them."""
    global _BOXES_SWEPT
    if _BOXES_SWEPT:
        return
    _BOXES_SWEPT = True
    for path in Path(tempfile.gettempdir()).glob(f"{_PREFIX}*-*"):
        if _owner_gone(path.name):
            shutil.rmtree(path, ignore_errors=True)


# -- process caps -----------------------------------------------------------------------------

_COUNTER = itertools.count()


class _PidsCgroup:
    """A pids cgroup that caps the worker's process tree (cgroup v1, or v2 with pids delegated)."""

    def __init__(self, path: Path) -> None:
        self.path = path

    @classmethod
    def create(cls, limit: int) -> _PidsCgroup | None:
        base = _pids_hierarchy()
        if base is None:
            return None
        _remove_stale(base)
        path = base / f"{_PREFIX}{os.getpid()}-{next(_COUNTER)}"
        try:
            path.mkdir()
            (path / "pids.max").write_text(f"{limit}\n")
        except OSError:
            try:
                path.rmdir()
            except OSError:
                pass
            return None
        return cls(path)

    def enter(self) -> None:
        """Move the calling process in (runs in the child before exec)."""
        try:
            with open(self.path / "cgroup.procs", "w") as f:
                f.write("0")
        except OSError:
            pass  # the sandbox still starts; only its process cap is missing

    def release(self) -> None:
        """Kill whatever is left in the group and remove it."""
        deadline = time.monotonic() + 5
        while True:
            try:
                pids = [int(p) for p in (self.path / "cgroup.procs").read_text().split()]
            except (OSError, ValueError):
                pids = []
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            try:
                self.path.rmdir()
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    return  # left for _remove_stale to collect next time
                time.sleep(0.02)


def _pids_hierarchy() -> Path | None:
    """The writable cgroup folder new pids cgroups go in, if this host has one."""
    try:
        lines = Path("/proc/self/cgroup").read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        _, controllers, rel = line.split(":", 2)
        if "pids" in controllers.split(","):
            base = Path("/sys/fs/cgroup/pids") / rel.lstrip("/")
            return base if os.access(base, os.W_OK) else None
    for line in lines:
        if line.startswith("0::"):
            base = Path("/sys/fs/cgroup") / line[3:].lstrip("/")
            try:
                delegated = "pids" in (base / "cgroup.subtree_control").read_text().split()
            except OSError:
                return None
            return base if delegated and os.access(base, os.W_OK) else None
    return None


def _remove_stale(base: Path) -> None:
    """Remove groups left by hosts that were killed (their processes died with them)."""
    for path in base.glob(f"{_PREFIX}*-*"):
        if _owner_gone(path.name):
            try:
                path.rmdir()
            except OSError:
                pass


def _user_tasks() -> int:
    """Processes and threads the real user runs now: what RLIMIT_NPROC counts."""
    uid, count = os.getuid(), 0
    for entry in os.scandir("/proc"):
        if entry.name.isdigit():
            try:
                if entry.stat().st_uid == uid:
                    count += len(os.listdir(f"/proc/{entry.name}/task"))
            except OSError:
                pass
    return count
