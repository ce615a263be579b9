"""The ``rlm-graph`` command line.

Each command group lives in its own module with a ``register(subparsers)`` function that adds its
parser and sets ``handler``: ``runs`` (run, resume, runs), ``steer`` (ask, fork, history), ``batch``, ``serve``, ``compare``, ``viz``, ``models``, and
``rlm_graph.bench.cli`` (bench). A handler parses nothing itself: it calls the same public
functions a user would, and prints. Answers go to stdout, diagnostics to stderr. Bad input gets
one line on stderr and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from rlm_graph.cli._options import CURRENT, EXIT_FAILED, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, LIMIT_FLAGS, make_rlm
from rlm_graph.errors import ConfigurationError, ContextError, ModelError, RLMError, RunBusyError, RunNotFoundError, SandboxError

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_OK", "EXIT_USAGE", "LIMIT_FLAGS", "build_parser", "main", "make_rlm"]


def build_parser() -> argparse.ArgumentParser:
    """The whole ``rlm-graph`` parser, one sub-command per registered command."""
    from rlm_graph.bench.cli import register as register_bench
    from rlm_graph.cli import batch, compare, models, runs, serve, steer, viz

    parser = argparse.ArgumentParser(prog="rlm-graph", description="Recursive Language Models as a LangGraph state machine.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    runs.register(sub)
    steer.register(sub)
    batch.register(sub)
    serve.register(sub)
    compare.register(sub)
    viz.register(sub)
    register_bench(sub)
    models.register(sub)
    return parser


def _resume_hint() -> str:
    tid = CURRENT.get("thread_id")
    return f"rlm-graph resume {tid}" if tid and CURRENT.get("resumable") else ""


class _ShutdownNoise(logging.Filter):
    """Drops the traceback concurrent.futures logs when a done-callback schedules work on an executor
    that a Ctrl-C is already shutting down ("cannot schedule new futures after shutdown"): seen once
    in CI between the interrupt and the "interrupted; resume with" line, which must stand alone."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not (isinstance(exc, RuntimeError) and "after shutdown" in str(exc))


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``rlm-graph`` command."""
    logging.getLogger("concurrent.futures").addFilter(_ShutdownNoise())
    parser = build_parser()
    args = parser.parse_args(argv)
    handler = getattr(args, "handler", None)
    if handler is None:  # pragma: no cover - argparse requires a command
        parser.error("no command")
    try:
        return int(handler(args) or 0)
    except KeyboardInterrupt:
        hint = _resume_hint()
        print(f"\ninterrupted{'; resume with: ' + hint if hint else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (ConfigurationError, ContextError, RunNotFoundError, RunBusyError) as exc:
        print(f"rlm-graph: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except (ModelError, SandboxError, RLMError) as exc:
        hint = _resume_hint()
        print(f"rlm-graph: error: {exc}{' (the run is saved; resume with: ' + hint + ')' if hint else ''}", file=sys.stderr)
        return EXIT_FAILED
    except Exception as exc:  # an unexpected failure still gets one line (RLM_GRAPH_DEBUG=1 shows the traceback)
        if os.environ.get("RLM_GRAPH_DEBUG"):
            raise
        hint = _resume_hint()
        first = str(exc).splitlines()[0] if str(exc) else ""
        print(f"rlm-graph: error: {type(exc).__name__}: {first}{' (resume with: ' + hint + ')' if hint else ''}", file=sys.stderr)
        return EXIT_FAILED


if __name__ == "__main__":
    sys.exit(main())
