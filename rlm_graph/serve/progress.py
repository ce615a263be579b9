"""Turning a run's events into short progress notes, for streamed chunks and MCP notifications.

A :class:`Progress` reads the events :meth:`rlm_graph.RLM.stream` yields (one per finished step)
and keeps the few numbers a client wants while it waits: the root's iteration, cells run,
sub-calls asked and answered, how deep the tree has gone. :meth:`Progress.on_event` returns a line
worth showing, or None for steps that change nothing a client cares about.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass
class Progress:
    """What a run has done so far (root iteration, cells, sub-calls asked and answered)."""

    iteration: int = 0
    cells: int = 0
    asked: int = 0
    answered: int = 0
    depth: int = 0

    @property
    def in_flight(self) -> int:
        return max(self.asked - self.answered, 0)

    def snapshot(self) -> dict[str, int]:
        return {"iteration": self.iteration, "cells": self.cells, "subcalls_done": self.answered,
                "subcalls_in_flight": self.in_flight, "depth": self.depth}

    def on_event(self, event: dict[str, Any]) -> str | None:
        """Take in one event; return a note for the client, or None."""
        node, update = event.get("node"), event.get("update")
        namespace = event.get("namespace") or []
        if not isinstance(update, dict):
            return None
        if namespace:  # a child run (rlm_query) inside a sub_call task
            depth = sum(1 for part in namespace if str(part).startswith("sub_call"))
            if depth > self.depth:
                self.depth = depth
                return f"a child RLM started at depth {depth}"
            return None
        if node == "prepare":
            meta = update.get("context_meta") or {}
            return f"context loaded: {meta.get('type', '?')} of length {meta.get('length', '?')}"
        if node == "generate":
            self.iteration = int(update.get("iteration") or self.iteration)
            return f"iteration {self.iteration}: the model replied"
        if node == "execute":
            pending = update.get("pending") or []
            if pending:
                self.asked += len(pending)
                return f"iteration {self.iteration}: cell {self.cells + 1} asked for {len(pending)} sub-call(s); {self.in_flight} in flight"
            if update.get("cells"):
                self.cells += len(update["cells"])
                return f"iteration {self.iteration}: cell {self.cells} finished"
            return None
        if node == "sub_call":
            self.answered += len(update.get("answers") or {})
            return f"iteration {self.iteration}: {self.answered} sub-call(s) answered, {self.in_flight} in flight"
        if node == "check_final" and update.get("stopped_by"):
            return f"finished ({update['stopped_by']})"
        return None
