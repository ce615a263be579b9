"""The verbose console view: iterations, code, truncated output and sub-calls, with rich."""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console
from rich.panel import Panel
from rich.syntax import Syntax
from rich.tree import Tree

from rlm_graph.graph.state import add_usage, total_tokens


class ConsoleView:
    """Prints each step of a run to stderr as it happens."""

    def __init__(self, *, settings: Any, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.t0 = time.monotonic()
        self.usage: dict[str, Any] = {}
        self.settings = settings
        self._status = self.console.status("[dim]the model is thinking...[/]")
        self._status.start()

    def _stamp(self) -> str:
        return f"[dim]{time.monotonic() - self.t0:6.1f}s · {total_tokens(self.usage):,} tokens[/]"

    def on_event(self, event: dict[str, Any]) -> None:
        node, update = event["node"], event["update"]
        if not isinstance(update, dict):
            return
        if update.get("usage"):
            self.usage = add_usage(self.usage, update["usage"])
        indent = "  " * len(event["namespace"])
        if node == "prepare" and not event["namespace"]:
            meta = update.get("context_meta") or {}
            self.console.print(f"[bold]context[/] {meta.get('type')} of length {meta.get('length'):,} {self._stamp()}")
        elif node == "generate":
            reply = next((m["content"] for m in update.get("messages") or [] if m["role"] == "assistant"), "")
            title = f"{indent}iteration {update.get('iteration')}" + (" (child)" if event["namespace"] else "")
            self.console.print(Panel(reply[:1500], title=title, subtitle=self._stamp(), border_style="cyan"))
        elif node == "execute" and update.get("cells"):
            for cell in update["cells"]:
                self.console.print(Syntax(cell.get("code", ""), "python", line_numbers=False, theme="ansi_dark"))
                out = (cell.get("stdout") or "") + (cell.get("error") or "")
                self.console.print(Panel(out[:1200] or "(no output)", title=f"{indent}cell {cell.get('index')} · {cell.get('seconds')}s", border_style="red" if cell.get("error") else "green"))
                calls = [r for r in cell.get("requests") or []]
                if calls:
                    tree = Tree(f"{sum(len(r.get('prompts') or []) for r in calls)} sub-call(s)")
                    for r in calls:
                        for i, p in enumerate((r.get("prompts") or [])[:8]):
                            ans = (r.get("texts") or [""] * (i + 1))[i] if i < len(r.get("texts") or []) else ""
                            tree.add(f"[magenta]{r.get('kind')}[/] {p[:80]!r} → {ans[:80]!r}")
                    self.console.print(tree)
        elif node == "sub_call" and not event["namespace"]:
            for key in (update.get("answers") or {}):
                self.console.print(f"[dim]{indent}  sub-call {key} done {self._stamp()}[/]")
        elif node == "check_final" and update.get("stopped_by"):
            self.console.print(f"[bold green]FINAL[/] ({update.get('stopped_by')}): {update.get('final_answer')!r} {self._stamp()}")

    def on_result(self, result: Any) -> None:
        self._status.stop()
        lines = [f"{m}: {u.get('calls')} calls, {u.get('input_tokens'):,} in / {u.get('output_tokens'):,} out" for m, u in result.usage.items()]
        self.console.print(f"[bold]done[/] in {result.execution_time:.1f}s, {result.iterations} iterations; " + "; ".join(lines))

    def close(self) -> None:
        self._status.stop()
