"""The docker backend: the worker in a locked-down container, reached over a Unix socket.

The container has no network (``network_mode="none"``), memory, CPU and process limits, a
read-only root, no capabilities, and runs as an unprivileged user. Two host folders are
bind-mounted: a private one at ``/rlm``, read-only, holding the worker script, the context files
and the socket; and the work directory at ``/work``, the only writable place besides a small
``/tmp``. A read-only ``/rlm`` also means a cell cannot change the context a replay will reload.

Lines travel over a Unix socket in ``/rlm``: a few lines of Python connect to it, put it on the
worker's stdin and stdout, and exec ``worker.py``. This was chosen over the engine's attach
stream: the kernel carries the bytes directly (no multiplexed frames to split, no output lost
before attaching, no half-closed HTTP connection held by the engine), so several containers at
once never hang on the engine's stdio copying. It needs a local engine, which the bind mounts
need anyway. The container's stderr goes to its log, read for crash reports.
"""

from __future__ import annotations

import functools
import os
import shutil
import socket
import stat
import tempfile
import threading
import time
import weakref
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.base import END, BoundedLines, Transport
from rlm_graph.sandboxes.docker_image import IMAGE, LABEL_HOST_MOUNTS, LABEL_PYTHON, SANDBOX_UID, docker_client

if TYPE_CHECKING:
    import docker
    from docker.models.containers import Container

WORKER_SOURCE = Path(__file__).with_name("worker.py")

# Runs first in the container: connect to the host's socket, make it stdin and stdout, become the worker.
_BOOT = (
    "import os,socket,sys\n"
    "s=socket.socket(socket.AF_UNIX)\n"
    "s.connect(sys.argv[1])\n"
    "os.dup2(s.fileno(),0);os.dup2(s.fileno(),1);s.close()\n"
    "os.execv(sys.executable,[sys.executable,'-s','-u',sys.argv[2]])\n"
)
_ENV = {
    "PYTHONHASHSEED": "0",
    "PYTHONIOENCODING": "utf-8",
    "PYTHONDONTWRITEBYTECODE": "1",
    "HOME": "/work",
    "TMPDIR": "/tmp",
    "LANG": "C.UTF-8",
}


class DockerTransport(Transport):
    """Start ``worker.py`` in a Docker container with no network and resource limits.

    Args:
        image: an image with Python 3 (default: the one ``docker_image.build_image`` makes, which
            runs the host's read-only ``/usr/bin/python3``).
        memory_mb: memory limit; swap is disabled, so going over it kills the worker (OOM).
        cpus: CPU share (1.0 = one core).
        pids_limit: most processes and threads the container may run.
        work_dir: host folder mounted writable at ``/work``; ``user`` must be able to write to it
            (default: a temporary folder, removed on close).
        user: ``"uid:gid"`` inside the container (default: nobody when the host runs as root,
            otherwise the host user, so files in ``work_dir`` stay the caller's).
        tmpfs_mb: size of the in-memory ``/tmp`` (counted against ``memory_mb``).
        startup_timeout: seconds to wait for the worker to connect.

    Example::

        from rlm_graph.sandboxes.docker import DockerTransport
        from rlm_graph.sandboxes.session import SandboxSession

        session = SandboxSession(lambda: DockerTransport(memory_mb=512))
        session.start()
        print(session.step(0, "1 + 1").stdout)  # "2"
        session.close()
    """

    kind = "docker"

    def __init__(
        self,
        image: str = IMAGE,
        *,
        memory_mb: int = 1024,
        cpus: float = 1.0,
        pids_limit: int = 128,
        work_dir: str | os.PathLike[str] | None = None,
        user: str | None = None,
        tmpfs_mb: int = 64,
        startup_timeout: float = 30.0,
    ) -> None:
        client = docker_client()
        _remove_orphans(client)
        self._res = _Resources(client, Path(tempfile.mkdtemp(prefix=f"{_BOX_PREFIX}{os.getpid()}-")))
        # Freed by close(), or when the transport is garbage-collected or the interpreter exits.
        self._release = weakref.finalize(self, self._res.release)
        self._client = self._res.client
        self.memory_mb, self.cpus, self.pids_limit, self.tmpfs_mb = memory_mb, cpus, pids_limit, tmpfs_mb
        self._closed = False
        self._eof = threading.Event()
        self._crash: str | None = None
        self._lines = BoundedLines()
        self._send_lock = threading.Lock()
        # The private folder, read-only at /rlm inside: the worker, the contexts and the socket.
        self._inbox = self._res.box / "in"
        self._own_work = work_dir is None
        self.work_dir = Path(work_dir) if work_dir is not None else self._res.box / "work"
        try:
            self._res.sock = self._start(image, user or _default_user(), startup_timeout)
        except BaseException:
            self.close()
            raise
        # The reader holds no reference to self, so an unclosed transport can still be collected.
        reader = threading.Thread(target=_read_lines, args=(self._res.sock, self._lines, self._eof), daemon=True)
        reader.start()

    @property
    def _container(self) -> Container | None:
        return self._res.container

    def _start(self, image: str, user: str, startup_timeout: float) -> socket.socket:
        """Create and start the container; return the worker's connection."""
        import docker

        try:
            labels = self._client.images.get(image).labels or {}
        except docker.errors.ImageNotFound:
            raise SandboxError(
                f"the Docker image {image!r} is not there: build it with scripts/docker-setup.sh "
                "or `python -m rlm_graph.sandboxes.docker_image`"
            ) from None
        except docker.errors.DockerException as exc:
            raise SandboxError(f"could not inspect the Docker image {image!r}: {exc}") from exc
        listener = self._listen(user)
        try:
            self._res.container = self._client.containers.create(
                image,
                [labels.get(LABEL_PYTHON) or "python3", "-c", _BOOT, "/rlm/sock", "/rlm/worker.py"],
                **self._run_options(labels, user),
            )
            self._res.container.start()
            return self._accept(listener, startup_timeout)
        except docker.errors.DockerException as exc:
            raise SandboxError(f"could not start the docker sandbox from {image!r}: {exc}") from exc
        finally:
            listener.close()
            (self._inbox / "sock").unlink(missing_ok=True)

    def _listen(self, user: str) -> socket.socket:
        """Fill the private folder (worker script, listening socket) and make the work dir."""
        try:
            self._inbox.mkdir(mode=0o755)
            self.work_dir.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(WORKER_SOURCE, self._inbox / "worker.py")
            os.chmod(self._inbox / "worker.py", 0o644)
            if os.geteuid() == 0 and self._own_work:
                uid, _, gid = user.partition(":")
                os.chown(self.work_dir, int(uid), int(gid or uid))
            listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            listener.bind(str(self._inbox / "sock"))
            os.chmod(self._inbox / "sock", 0o666)  # the container's user is not the socket's owner
            listener.listen(1)
        except OSError as exc:
            raise SandboxError(f"could not prepare the docker sandbox folder {self._res.box}: {exc}") from exc
        return listener

    def _run_options(self, labels: dict[str, str], user: str) -> dict[str, Any]:
        """The container's isolation and limits, as keyword arguments of ``containers.create``."""
        from docker.types import LogConfig, Mount, Ulimit

        mounts = [Mount(p, p, type="bind", read_only=True) for p in _split(labels.get(LABEL_HOST_MOUNTS))]
        mounts += [
            Mount("/rlm", str(self._inbox), type="bind", read_only=True),
            Mount("/work", str(self.work_dir.resolve()), type="bind"),
        ]
        return dict(
            user=user,
            environment=_ENV,
            working_dir="/work",
            network_mode="none",
            mem_limit=f"{self.memory_mb}m",
            memswap_limit=f"{self.memory_mb}m",  # no swap: going over the limit is an OOM kill
            nano_cpus=int(self.cpus * 1e9),
            pids_limit=self.pids_limit,
            read_only=True,
            tmpfs={"/tmp": f"rw,nosuid,nodev,size={self.tmpfs_mb}m,mode=1777"},
            mounts=mounts,
            cap_drop=["ALL"],
            security_opt=["no-new-privileges"],
            ulimits=[Ulimit(name="core", soft=0, hard=0)],
            labels={LABEL_SANDBOX: "1", LABEL_HOST: _host_id()},
            log_config=LogConfig(type="json-file", config={"max-size": "1m", "max-file": "1"}),
        )

    def _accept(self, listener: socket.socket, timeout: float) -> socket.socket:
        """Wait for the worker to connect, watching for a container that died first."""
        assert self._container is not None
        listener.settimeout(0.2)
        deadline = time.monotonic() + timeout
        while True:
            try:
                conn, _ = listener.accept()
                conn.settimeout(None)
                return conn
            except TimeoutError:
                pass
            self._container.reload()
            if self._container.status in ("exited", "dead"):
                tail = self.stderr_tail().strip()[-1500:]
                raise SandboxError(
                    f"the docker sandbox exited before its worker started ({self._describe_exit()})"
                    + (f"; its output:\n{tail}" if tail else "")
                )
            if time.monotonic() > deadline:
                raise SandboxError(f"the docker sandbox worker did not connect within {timeout:.0f} s")

    def send(self, line: str) -> None:
        if self._res.sock is None or self._closed:
            raise WorkerCrashed("the docker sandbox is closed")
        try:
            with self._send_lock:
                self._res.sock.sendall(line.encode("utf-8") + b"\n")
        except OSError as exc:
            raise WorkerCrashed(self._crash_message()) from exc

    def receive(self, timeout: float | None) -> str | None:
        line = self._lines.get(timeout)
        if line is END:
            raise WorkerCrashed(self._crash_message())
        return line  # type: ignore[return-value]

    def _crash_message(self) -> str:
        if self._crash is None:
            reason = self._describe_exit() if self._container is not None and not self._closed else "closed"
            tail = self.stderr_tail().strip()[-1500:]
            self._crash = f"the docker sandbox worker died ({reason})" + (f"; its last output:\n{tail}" if tail else "")
        return self._crash

    def _describe_exit(self) -> str:
        """Why the container stopped: its exit code, and whether the memory limit killed it."""
        assert self._container is not None
        try:
            self._container.wait(timeout=5)
            self._container.reload()
        except Exception:  # still running, or gone: report what is known
            return "the container did not report an exit status"
        state: dict[str, Any] = self._container.attrs.get("State", {})
        if state.get("OOMKilled"):
            return f"out of memory: the {self.memory_mb} MB limit was reached and the worker was killed"
        code = state.get("ExitCode")
        return f"exit code {code}" + (" (killed)" if code == 137 else "")

    def alive(self) -> bool:
        return not (self._eof.is_set() or self._closed)

    def stderr_tail(self) -> str:
        if self._container is None:
            return ""
        try:
            return str(self._container.logs(stdout=True, stderr=True, tail=40).decode("utf-8", "replace"))
        except Exception:  # the container is gone
            return ""

    def put_file(self, local_path: Path, name: str) -> str:
        if Path(name).name != name or name in ("", ".", "..", "sock", "worker.py"):
            raise SandboxError(f"invalid sandbox file name {name!r}")
        target = self._inbox / name
        target.unlink(missing_ok=True)
        # A hard link costs nothing for a large context, and the read-only mount keeps the
        # container from writing through it; but the container's user must be able to read it.
        if os.stat(local_path).st_mode & stat.S_IROTH:
            try:
                os.link(local_path, target)
                return f"/rlm/{name}"
            except OSError:  # another filesystem, or linking not allowed: copy instead
                pass
        shutil.copyfile(local_path, target)
        os.chmod(target, 0o644)
        return f"/rlm/{name}"

    def close(self) -> None:
        self._closed = True
        self._lines.close()
        self._release()  # runs once, however often close() is called


@dataclass
class _Resources:
    """What a transport holds outside Python, kept apart from it so a finalizer can free it."""

    client: docker.DockerClient
    box: Path  # the host folder with the /rlm inbox and, by default, the work dir
    container: Container | None = None
    sock: socket.socket | None = None

    def release(self) -> None:
        if self.sock is not None:
            try:
                self.sock.shutdown(socket.SHUT_RDWR)  # also wakes the reader thread
            except OSError:
                pass
            self.sock.close()
        if self.container is not None:
            try:
                self.container.remove(force=True)
            except Exception:  # already gone; the label lets `docker container prune` find leftovers
                pass
        self.client.close()
        shutil.rmtree(self.box, ignore_errors=True)


def _read_lines(sock: socket.socket, lines: BoundedLines, eof: threading.Event) -> None:
    """Feed what the worker writes to ``lines`` in chunks (a line may be of any length), then end it."""
    try:
        for chunk in iter(functools.partial(sock.recv, 1 << 16), b""):
            lines.feed(chunk)
    except OSError:
        pass  # closed under us by close(), or reset by a dying worker: both end the stream
    eof.set()
    lines.end()  # a line cut off by the worker's death is not a message


#: Label on every sandbox container, and the label naming the host process that started it.
LABEL_SANDBOX = "org.rlm-graph.sandbox"
LABEL_HOST = "org.rlm-graph.host"
_BOX_PREFIX = "rlm-docker-"
_SWEPT = False


def _host_id() -> str:
    """``<boot id>/<pid namespace>/<pid>``: names this process unambiguously on this machine."""
    boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
    return f"{boot}/{os.readlink('/proc/self/ns/pid')}/{os.getpid()}"


def _remove_orphans(client: docker.DockerClient) -> None:
    """Once per process: remove the containers and folders of hosts that died without closing them.

    A host killed by SIGKILL runs no cleanup, and a worker busy in a cell that ignores its alarm
    never reads the end of its input: without this its container would run on.
    """
    global _SWEPT
    if _SWEPT:
        return
    _SWEPT = True
    try:
        here = _host_id().rsplit("/", 1)[0] + "/"
        for container in client.containers.list(all=True, filters={"label": LABEL_SANDBOX}):
            owner = container.labels.get(LABEL_HOST, "")
            if owner.startswith(here) and not Path(f"/proc/{owner[len(here) :]}").exists():
                container.remove(force=True)
    except Exception:  # best effort: an engine or kernel that says less just keeps its leftovers
        pass
    for path in Path(tempfile.gettempdir()).glob(f"{_BOX_PREFIX}*-*"):
        owner = path.name[len(_BOX_PREFIX) :].split("-", 1)[0]
        if owner.isdigit() and not Path(f"/proc/{owner}").exists():
            shutil.rmtree(path, ignore_errors=True)


def _default_user() -> str:
    uid = os.geteuid()
    return f"{SANDBOX_UID}:{SANDBOX_UID}" if uid == 0 else f"{uid}:{os.getegid()}"


def _split(value: str | None) -> list[str]:
    return [p for p in (value or "").split(",") if p.startswith("/")]
