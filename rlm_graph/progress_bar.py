"""A progress bar for long work (k of N, elapsed time, ETA) on stderr, shown only on a terminal.

Long steps (assembling the embedded model from its part packages, a benchmark's tasks) report
``(done, total)`` through a :data:`Steps` callback. :class:`ProgressBar` is such a callback: on a
terminal it draws a rich bar; elsewhere (a pipe, a log file, CI) it draws nothing, so captured
output stays plain lines. rich is imported only when a bar is actually drawn.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from types import TracebackType
from typing import IO, Any

Steps = Callable[[int, int], None]
"""Called with ``(done, total)``: ``(0, N)`` when the work starts, then after each of the N units."""


def on_terminal(stream: IO[str] | None = None) -> bool:
    """True when ``stream`` (default: stderr) is a terminal that no other bar is drawing on.

    While a rich live display runs, it replaces ``sys.stderr`` with a proxy that prints above
    it; a second bar there would fight the first, so work started under a bar reports in lines.
    """
    stream = stream if stream is not None else sys.stderr
    if type(stream).__module__ == "rich.file_proxy":
        return False
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):  # no isatty, or a closed stream
        return False


class ProgressBar:
    """A rich progress bar: ``label``, the bar, ``k/N unit``, a note, elapsed time and ETA.

    Args:
        label: what is being done, shown left of the bar.
        unit: what is counted, shown after ``k/N`` (e.g. ``"parts"``, ``"tasks"``).
        enabled: draw the bar; None (the default) draws it only when ``stream`` is a terminal.
        stream: where the bar goes (default: stderr).

    Use it as a context manager (the bar is removed from the live display and left as one final
    line on exit) and call it, or :meth:`update`, with ``(done, total)``. :meth:`log` prints a
    line above the bar, or plainly to ``stream`` when no bar is drawn.

    Example::

        with ProgressBar("bench quality", unit="tasks") as bar:
            for k, task in enumerate(tasks, 1):
                run(task)
                bar(k, len(tasks))
    """

    def __init__(self, label: str, *, unit: str = "", enabled: bool | None = None, stream: IO[str] | None = None) -> None:
        self.label = label
        self.unit = unit
        self.stream = stream if stream is not None else sys.stderr
        self.enabled = on_terminal(self.stream) if enabled is None else enabled
        self._bar: Any = None
        self._task: Any = None

    def __enter__(self) -> ProgressBar:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        self.close()

    def __call__(self, done: int, total: int) -> None:
        self.update(done, total)

    def _start(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        console = Console(file=self.stream, force_terminal=True if self.enabled and not on_terminal(self.stream) else None)
        self._bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn(self.unit),
            TextColumn("{task.fields[note]}"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=console,
            redirect_stdout=False,  # results on stdout stay untouched; lines on stderr go above the bar
        )
        self._task = self._bar.add_task(self.label, total=total, note="")
        self._bar.start()

    def update(self, done: int, total: int, note: str = "") -> None:
        """Show ``done`` of ``total`` (and ``note``); the first call starts the bar."""
        if not self.enabled:
            return
        if self._bar is None:
            self._start(total)
        self._bar.update(self._task, completed=done, total=total, note=note)
        self._bar.refresh()  # each step is drawn, however quick (steps are seconds apart in real use)

    def log(self, line: str) -> None:
        """Print ``line`` above the bar, or plainly to the stream when no bar is drawn."""
        if self._bar is not None:
            self._bar.console.print(line, markup=False, highlight=False, soft_wrap=True)
        else:
            print(line, file=self.stream, flush=True)

    def close(self) -> None:
        """Stop the live display (the bar's last state stays on screen)."""
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
