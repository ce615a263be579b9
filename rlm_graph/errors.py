"""Errors raised by rlm-graph.

The tree::

    RLMError                      base of everything this library raises on purpose
    ├── ConfigurationError        bad arguments, unknown model spec or sandbox, missing API key
    ├── ContextError              a context that cannot be loaded (missing, binary, empty file)
    ├── ModelError                the model server failed in a way retrying did not fix
    ├── RunNotFoundError          no checkpointed run with that thread id
    ├── RunBusyError              another process is running that thread now
    └── SandboxError              the sandbox could not be started or talked to
        ├── SandboxTimeout        a cell ran past its time limit and the worker was killed
        ├── WorkerCrashed         the worker process died
        └── ProtocolError         the worker sent a line that is not a valid message

A spent budget is not an error: the graph ends the run with its best answer and
``RLMResult.stopped_by`` names the limit.
"""

from __future__ import annotations


class RLMError(Exception):
    """Base class of every error rlm-graph raises on purpose."""


class ConfigurationError(RLMError, ValueError):
    """Invalid configuration: arguments, model spec, sandbox kind, missing key."""


class ContextError(RLMError, ValueError):
    """The context cannot be loaded."""


class ModelError(RLMError):
    """A model call failed after retries."""


class RunNotFoundError(RLMError, KeyError):
    """No run with the given thread id exists in the checkpointer."""

    def __str__(self) -> str:  # KeyError quotes its message; keep it readable
        return str(self.args[0]) if self.args else "run not found"


class RunBusyError(RLMError):
    """Another process holds the thread's lease: it is running it now (one runner per thread)."""


class SandboxError(RLMError):
    """The sandbox failed."""


class SandboxTimeout(SandboxError):
    """A cell exceeded its time limit; the worker was killed."""


class WorkerCrashed(SandboxError):
    """The worker process exited unexpectedly."""


class ProtocolError(SandboxError):
    """The worker sent something that is not a protocol message."""
