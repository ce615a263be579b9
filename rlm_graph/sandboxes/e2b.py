"""The e2b backend: the worker as a background command in an E2B cloud sandbox.

The sandbox is an ``e2b_code_interpreter.Sandbox``: by default it starts from the code
interpreter's template (``code-interpreter-v1``, which E2B accounts have without building one, with
Python and the usual data libraries); ``template=`` picks another. The worker does not use the
template's Jupyter kernel: it runs as a plain command, fed on stdin. The sandbox never connects to
the host. The worker's stdout comes back on the command's event
stream (chunks that do not follow line boundaries, joined here into lines) and each line to the
worker is one ``send_stdin`` call. Files go up through envd's ``/files`` route, streamed from
disk. With ``E2B_DEBUG=true`` the SDK skips E2B's service and talks to an envd on
``localhost:49983``, which is how the tests run it offline.
"""

from __future__ import annotations

import os
import shlex
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.remote import RemoteTransport

if TYPE_CHECKING:
    from e2b import CommandHandle
    from e2b_code_interpreter import Sandbox

WORKER_SOURCE = Path(__file__).with_name("worker.py")

_ENV = {"PYTHONHASHSEED": "0", "PYTHONIOENCODING": "utf-8", "PYTHONDONTWRITEBYTECODE": "1"}


class E2BTransport(RemoteTransport):
    """Start ``worker.py`` in a new E2B sandbox; the sandbox is killed on close.

    Args:
        template: E2B template name or id, with ``python3`` on its PATH (default: the code
            interpreter's template, ``e2b_code_interpreter.Sandbox.default_template``).
        timeout: seconds the sandbox may live (E2B's hobby tier allows at most 3600).
        api_key: E2B API key (default: the ``E2B_API_KEY`` environment variable).
        work_dir: folder inside the sandbox for the worker and the context files.
        python: the interpreter command inside the sandbox.
        request_timeout: seconds for each call to E2B (create, upload, send).

    Example::

        from rlm_graph.sandboxes.e2b import E2BTransport
        from rlm_graph.sandboxes.session import SandboxSession

        session = SandboxSession(lambda: E2BTransport(timeout=1800))
        session.start()
    """

    kind = "e2b"

    def __init__(
        self,
        template: str | None = None,
        *,
        timeout: int = 3600,
        api_key: str | None = None,
        work_dir: str = "/home/user/rlm",
        python: str = "python3",
        request_timeout: float = 60.0,
    ) -> None:
        try:
            from e2b_code_interpreter import Sandbox
        except ImportError as exc:
            raise SandboxError("the e2b sandbox needs E2B's code interpreter SDK: pip install e2b-code-interpreter") from exc
        api_key = api_key or os.environ.get("E2B_API_KEY")
        if not api_key and os.environ.get("E2B_DEBUG", "").lower() != "true":
            raise SandboxError("the e2b sandbox needs an E2B API key: set E2B_API_KEY or pass api_key=...")
        super().__init__(work_dir)
        self._handle: CommandHandle[None] | None = None
        try:
            self._sbx: Sandbox = Sandbox.create(
                template=template, timeout=timeout, api_key=api_key, request_timeout=request_timeout
            )
        except Exception as exc:  # the SDK's errors (auth, quota, network) share no useful base
            raise SandboxError(f"could not create the E2B sandbox: {exc}") from exc
        try:
            self._upload(WORKER_SOURCE, f"{self.work_dir}/worker.py")
            # `exec` makes the worker the process the handle's pid names, so a kill reaches it.
            self._handle = self._sbx.commands.run(
                f"exec {shlex.quote(python)} -s -u worker.py",
                background=True,
                stdin=True,
                cwd=self.work_dir,
                envs=_ENV,
                timeout=0,  # the event stream lives as long as the worker
                retain_output=False,  # output is consumed by the callbacks, not kept twice
            )
        except Exception as exc:
            self.close()
            raise SandboxError(f"could not start the worker in the E2B sandbox: {exc}") from exc
        threading.Thread(target=self._pump, name="rlm-e2b-reader", daemon=True).start()

    def _pump(self) -> None:
        """Follow the command's event stream until the worker ends; then signal end of stream."""
        from e2b import CommandExitException

        assert self._handle is not None
        try:
            self._handle.wait(on_stdout=self._on_stdout, on_stderr=self._state.stderr)
            exit = "exit code 0"
        except CommandExitException as exc:
            exit = f"exit code {exc.exit_code}" + (f", {exc.error}" if exc.error else "")
        except Exception as exc:  # the stream broke: sandbox killed, expired or unreachable
            exit = f"the sandbox stream ended: {exc}"
        self._state.ended(exit, self._lines)

    def _on_stdout(self, chunk: str) -> None:
        self._lines.feed(chunk.encode("utf-8", "surrogatepass"))

    def _upload(self, local_path: Path, remote: str, attempts: int = 3) -> None:
        for attempt in range(1, attempts + 1):
            with open(local_path, "rb") as f:  # a file object is streamed in chunks, not read whole
                try:
                    self._sbx.files.write(remote, f)
                    return
                except Exception as exc:  # a reset connection is worth another try; the rest is not
                    transient = "reset" in str(exc).lower() or "connection" in type(exc).__name__.lower()
                    if attempt == attempts or not transient:
                        raise SandboxError(f"could not upload {local_path} to the E2B sandbox: {exc}") from exc
                    time.sleep(0.2 * attempt)

    def send(self, line: str) -> None:
        if self._closed or self._handle is None:
            raise WorkerCrashed("the e2b sandbox is closed")
        try:
            self._sbx.commands.send_stdin(self._handle.pid, line + "\n")
        except Exception as exc:
            raise WorkerCrashed(self._crash_message(f"sending to it failed: {exc}")) from exc

    def _stop(self) -> None:
        # Kill the worker first: a debug sandbox (E2B_DEBUG) ignores kill(), and a real one
        # stops billing only when the sandbox itself is gone.
        stops = [self._handle.kill] if self._handle else []
        for stop in (*stops, self._sbx.kill):
            try:
                stop()
            except Exception:  # already gone or unreachable: nothing left to free on our side
                pass
