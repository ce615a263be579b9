"""Observers of a run's stream: the trajectory JSONL writer and the verbose console view.

Nodes never log: these read the graph's ``updates`` stream (see :meth:`rlm_graph.RLM.stream`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from rlm_graph.logging.console import ConsoleView
from rlm_graph.logging.trajectory import TrajectoryWriter

__all__ = ["ConsoleView", "RunObserver", "TrajectoryWriter"]


class RunObserver:
    """Fans stream events out to the trajectory writer and the console view that are switched on."""

    def __init__(self, *, verbose: bool, log_dir: Path | None, thread_id: str, settings: Any) -> None:
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

    def on_event(self, event: dict[str, Any]) -> None:
        for s in self.sinks:
            s.on_event(event)

    def on_result(self, result: Any) -> None:
        for s in self.sinks:
            s.on_result(result)

    def close(self) -> None:
        for s in self.sinks:
            s.close()
