"""Observers of a run's stream: the trajectory JSONL writer and the verbose console view.

Nodes never log: these read the graph's ``updates`` stream (see :meth:`rlm_graph.RLM.stream`).
LangSmith tracing needs no observer: LangGraph traces every node and model call itself when
``LANGSMITH_TRACING=true``; :func:`trace_config` only names the runs by depth.
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path
from typing import Any

from rlm_graph.graph.runtime import trace_config
from rlm_graph.logging.console import ConsoleView
from rlm_graph.logging.trajectory import TrajectoryWriter, read_trajectory

__all__ = ["ConsoleView", "RunObserver", "TrajectoryWriter", "read_trajectory", "trace_config"]

log = logging.getLogger("rlm_graph")


class RunObserver:
    """Fans stream events out to the trajectory writer and the console view that are switched on.

    An observer never breaks a run: a sink that raises is reported once and switched off.
    """

    def __init__(self, *, verbose: bool, log_dir: Path | str | None, thread_id: str, settings: Any) -> None:
        self.sinks: list[Any] = []
        if log_dir is not None:
            self.sinks.append(TrajectoryWriter(log_dir, thread_id=thread_id, settings=settings))
        if verbose:
            self.sinks.append(ConsoleView(settings=settings))

    @property
    def log_path(self) -> Path | None:
        for s in self.sinks:
            if isinstance(s, TrajectoryWriter):
                return s.path
        return None

    def _call(self, method: str, *args: Any) -> None:
        for sink in list(self.sinks):
            try:
                getattr(sink, method)(*args)
            except Exception:
                log.warning("%s.%s failed; it is switched off for this run", type(sink).__name__, method, exc_info=True)
                self.sinks.remove(sink)
                with contextlib.suppress(Exception):
                    sink.close()

    def on_event(self, event: dict[str, Any]) -> None:
        self._call("on_event", event)

    def on_result(self, result: Any) -> None:
        self._call("on_result", result)

    def close(self) -> None:
        self._call("close")
