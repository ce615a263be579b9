"""The modal backend: the worker as a process in a Modal sandbox (``modal.Sandbox``).

A new sandbox is created with ``block_network=True`` and runs nothing of its own; the worker is
started in it with ``Sandbox.exec`` and its stdin and stdout are the channel. Output comes back
as byte chunks that do not follow line boundaries (joined here into lines, in bounded memory);
each line to the worker is written to the process's stdin and drained, in pieces no larger than
the SDK's write buffer. Files (the worker script, the context) go up with
``Sandbox.filesystem.copy_from_local``, which streams them from disk: a context goes up once,
when the session loads it, and cells read it there. A second load sends it again (a cell could
have changed the copy in the sandbox, which is writable). The sandbox never connects to the host.

Offline, the tests drive this code through a local stand-in for ``modal.App.lookup`` and
``modal.Sandbox.create`` (``tests/sandboxes/fake_modal.py``) whose sandbox runs the exec'd
command as a local process; ``tests/sandboxes/test_modal_live.py`` runs it against Modal when a
token is configured.
"""

from __future__ import annotations

import os
import threading
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.base import BoundedLines
from rlm_graph.sandboxes.remote import RemoteTransport, StreamState

if TYPE_CHECKING:
    import modal

WORKER_SOURCE = Path(__file__).with_name("worker.py")

#: The one line shown when the SDK is not installed.
MISSING_SDK = "the modal sandbox needs the Modal SDK: pip install 'rlm-graph[modal]'"
#: The one line shown when no token is configured.
MISSING_TOKEN = (
    "the modal sandbox needs a Modal token: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
)

#: Bytes written to the worker's stdin per drain: well under the SDK's write buffer (2 MiB for a
#: sandbox's own stdin, 16 MiB for an exec'd process), so a long line never overflows it.
STDIN_CHUNK = 1 << 20

_ENV = {"PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1", "LANG": "C.UTF-8"}


def modal_token_configured() -> bool:
    """True when the Modal SDK has credentials to use: ``MODAL_TOKEN_ID`` and ``MODAL_TOKEN_SECRET``,
    a profile in ``~/.modal.toml`` (``modal token new``), OAuth settings, or a Modal container's own
    identity (code running inside Modal needs no token).

    Raises:
        SandboxError: the SDK is not installed.
    """
    try:
        from modal.config import config
    except ImportError as exc:
        raise SandboxError(MISSING_SDK) from exc
    if os.environ.get("MODAL_IS_REMOTE") == "1":
        return True
    try:
        if config.get("token_id") and config.get("token_secret"):
            return True
        return any(config.get(k) for k in ("oauth_refresh_token", "oauth_client_id", "oauth_jwt_key"))
    except Exception:  # an unreadable ~/.modal.toml or an unknown profile: no usable token
        return False


class ModalTransport(RemoteTransport):
    """Start ``worker.py`` in a new Modal sandbox with no network; the sandbox is terminated on close.

    Args:
        image: the sandbox's image: a ``modal.Image``, or a registry tag (``"python:3.12-slim"``)
            with ``python3`` on its PATH (default: ``modal.Image.debian_slim()``).
        app_name: the Modal app the sandboxes belong to (looked up, created if missing).
        timeout: seconds the sandbox may live; Modal terminates it then, worker and all.
        cpu: CPU cores to request (Modal's default when None).
        memory_mb: memory to request, in MiB (Modal's default when None). A text context needs
            about 2.2× its size while it loads.
        work_dir: folder inside the sandbox for the worker and the context files.
        python: the interpreter command inside the sandbox.
        region: a Modal region (or list of regions) to run in.

    Example::

        from rlm_graph.sandboxes.modal import ModalTransport
        from rlm_graph.sandboxes.session import SandboxSession

        session = SandboxSession(lambda: ModalTransport(memory_mb=2048))
        session.start()
    """

    kind = "modal"

    def __init__(
        self,
        image: modal.Image | str | None = None,
        *,
        app_name: str = "rlm-graph",
        timeout: int = 3600,
        cpu: float | None = None,
        memory_mb: int | None = None,
        work_dir: str = "/rlm",
        python: str = "python3",
        region: str | list[str] | None = None,
    ) -> None:
        try:
            import modal
        except ImportError as exc:
            raise SandboxError(MISSING_SDK) from exc
        if not modal_token_configured():
            raise SandboxError(MISSING_TOKEN)
        if not work_dir.startswith("/") or "\n" in work_dir:
            raise SandboxError(f"the modal sandbox's work_dir must be an absolute path, not {work_dir!r}")
        super().__init__(work_dir)
        self._send_lock = threading.Lock()
        self._proc: Any = None
        try:
            app = modal.App.lookup(app_name, create_if_missing=True)
            if image is None:
                image = modal.Image.debian_slim()
            elif isinstance(image, str):
                image = modal.Image.from_registry(image)
            options: dict[str, Any] = {"app": app, "image": image, "block_network": True, "timeout": timeout}
            if cpu is not None:
                options["cpu"] = cpu
            if memory_mb is not None:
                options["memory"] = memory_mb
            if region is not None:
                options["region"] = region
            sbx = modal.Sandbox.create(**options)
        except Exception as exc:  # the SDK's errors (auth, quota, image build, network) share no useful base
            raise SandboxError(f"could not create the Modal sandbox: {_one_line(exc)}") from exc
        self._sbx = sbx
        # Terminated by close(), or when the transport is garbage-collected or the interpreter exits.
        self._release = weakref.finalize(self, _terminate, sbx)
        try:
            self._upload(WORKER_SOURCE, f"{self.work_dir}/worker.py")
            self._proc = sbx.exec(python, "-s", "-u", "worker.py", workdir=self.work_dir, env=dict(_ENV), text=False)
        except Exception as exc:
            self.close()
            if isinstance(exc, SandboxError):
                raise
            raise SandboxError(f"could not start the worker in the Modal sandbox: {_one_line(exc)}") from exc
        # The readers hold no reference to self, so an unclosed transport can still be collected.
        threading.Thread(target=_read_stdout, args=(self._proc, self._lines, self._state), name="rlm-modal-out", daemon=True).start()
        threading.Thread(target=_read_stderr, args=(self._proc, self._state), name="rlm-modal-err", daemon=True).start()

    def _upload(self, local_path: Path, remote: str) -> None:
        try:
            self._sbx.filesystem.copy_from_local(local_path, remote)  # streamed from disk in chunks
        except Exception as exc:
            raise SandboxError(f"could not upload {local_path} to the Modal sandbox: {_one_line(exc)}") from exc

    def send(self, line: str) -> None:
        if self._closed or self._proc is None:
            raise WorkerCrashed("the modal sandbox is closed")
        data = (line + "\n").encode("utf-8")
        try:
            with self._send_lock:
                stdin = self._proc.stdin
                for start in range(0, len(data), STDIN_CHUNK):
                    stdin.write(data[start : start + STDIN_CHUNK])
                    stdin.drain()
        except Exception as exc:
            raise WorkerCrashed(self._crash_message(f"sending to it failed: {_one_line(exc)}")) from exc

    def put_file(self, local_path: Path, name: str) -> str:
        """Upload ``local_path`` into the work folder as ``name``; return its path in the sandbox.

        Raises:
            SandboxError: ``name`` is not a plain file name on one line (or is the worker's), or
                the upload failed.
        """
        if "\n" in name:
            raise SandboxError(f"invalid sandbox file name {name!r}")
        return super().put_file(local_path, name)

    def _stop(self) -> None:
        self._release()  # runs once, even if the finalizer already ran


def _read_stdout(proc: Any, lines: BoundedLines, state: StreamState) -> None:
    """Feed the worker's stdout to ``lines`` chunk by chunk until it ends; then record the exit."""
    try:
        for chunk in proc.stdout:
            lines.feed(chunk if isinstance(chunk, bytes) else chunk.encode("utf-8", "surrogatepass"))
        code = proc.wait()
        exit = f"exit code {code}" + (f" (killed by signal {code - 128})" if code > 128 else "")
    except Exception as exc:  # the stream broke: sandbox terminated, expired or unreachable
        exit = f"the sandbox stream ended: {_one_line(exc)}"
    state.ended(exit, lines)


def _read_stderr(proc: Any, state: StreamState) -> None:
    """Keep the last stderr chunks for crash reports."""
    try:
        for chunk in proc.stderr:
            state.stderr(chunk.decode("utf-8", "replace") if isinstance(chunk, bytes) else chunk)
    except Exception:  # the stream ended with the sandbox: the tail so far is what there is
        pass


def _terminate(sbx: Any) -> None:
    try:
        sbx.terminate()
    except Exception:  # already gone or unreachable: Modal ends it at its timeout
        pass


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split()) or type(exc).__name__
    return text[:500]
