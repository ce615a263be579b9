"""The verbose console view: a live, rich rendering of a run as its stream arrives.

Each root turn shows as a panel (the model's reply), then each cell's code, its truncated output
and its sub-calls as a tree. A child RLM's turns print indented under the call that started it,
as they happen. A spinner line at the bottom says what the run is doing, with the elapsed time
and the tokens spent so far.
"""

from __future__ import annotations

import time
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.padding import Padding
from rich.panel import Panel
from rich.syntax import Syntax
from rich.text import Text
from rich.tree import Tree

from rlm_graph.graph.state import add_usage, total_tokens

REPLY_CHARS = 1500
OUTPUT_CHARS = 1200
PREVIEW_CHARS = 70


def _clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, keeping its head and tail."""
    if len(text) <= limit:
        return text
    head, tail = text[: limit * 2 // 3], text[-(limit // 3) :]
    return f"{head}\n… {len(text) - len(head) - len(tail):,} characters omitted …\n{tail}"


def _one_line(text: str, limit: int = PREVIEW_CHARS) -> str:
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


class _StatusLine:
    """The spinner's text, rendered afresh at every refresh so the clock keeps moving."""

    def __init__(self, view: ConsoleView) -> None:
        self.view = view

    def __rich__(self) -> Text:
        return Text.from_markup(f"{self.view.phase} [dim]· {self.view.stamp()}[/]")


class ConsoleView:
    """Prints each step of a run to stderr as it happens.

    Args:
        settings: the run's :class:`~rlm_graph.RLMContext` (for the model names).
        console: where to print (default: a rich console on stderr).
    """

    def __init__(self, *, settings: Any, console: Console | None = None) -> None:
        self.console = console or Console(stderr=True, highlight=False)
        self.settings = settings
        self.t0 = time.monotonic()
        self.usage: dict[str, Any] = {}
        self.phase = "starting"
        self.answers: dict[tuple[tuple[str, ...], str], dict[str, Any]] = {}
        self.inflight: dict[tuple[str, ...], list[int]] = {}  # namespace -> [answered, asked]
        self._status = self.console.status(_StatusLine(self), spinner="dots")
        self._status.start()
        self._stopped = False

    # -- helpers ---------------------------------------------------------------------------
    def stamp(self) -> str:
        return f"{time.monotonic() - self.t0:.1f}s · {total_tokens(self.usage):,} tokens"

    def _print(self, renderable: RenderableType, depth: int) -> None:
        self.console.print(Padding(renderable, (0, 0, 0, 4 * depth)) if depth else renderable)

    def _who(self, ns: tuple[str, ...]) -> str:
        return f"child {ns[-1].rsplit(':', 1)[-1][:4]} · depth {len(ns)} · " if ns else ""

    # -- events ----------------------------------------------------------------------------
    def on_event(self, event: dict[str, Any]) -> None:
        """Render one ``{"namespace", "node", "update"}`` event."""
        node, update = event.get("node"), event.get("update")
        if not isinstance(update, dict) or not isinstance(node, str) or node.startswith("__"):
            return
        ns = tuple(event.get("namespace") or ())
        depth = len(ns)
        if update.get("usage") and not (node == "sub_call" and self._ran_child(update)):
            # a child run's usage arrives twice: step by step, then as its total in the sub_call
            self.usage = add_usage(self.usage, update["usage"])
        handler = getattr(self, f"_on_{node}", None)
        if handler is not None:
            handler(ns, depth, update)
        self._status.update(_StatusLine(self))

    @staticmethod
    def _ran_child(update: dict[str, Any]) -> bool:
        return any((a.get("child") or {}).get("run_id") for a in (update.get("answers") or {}).values())

    def _on_prepare(self, ns: tuple[str, ...], depth: int, update: dict[str, Any]) -> None:
        meta = update.get("context_meta") or {}
        what = f"{meta.get('type')} of length {meta.get('length'):,}" if meta.get("length") is not None else "loaded"
        label = "[bold]context[/]" if not ns else f"[magenta]↳ {self._who(ns)}started[/], context"
        self._print(Text.from_markup(f"{label} {what} [dim]· {self.stamp()}[/]"), depth)
        self.phase = f"{self._who(ns)}model thinking (iteration 1)"

    def _on_generate(self, ns: tuple[str, ...], depth: int, update: dict[str, Any]) -> None:
        reply = next((m["content"] for m in update.get("messages") or [] if m.get("role") == "assistant"), None)
        n = update.get("iteration")
        title = f"{self._who(ns)}iteration {n}"
        body = Text(_clip(reply, REPLY_CHARS)) if reply else Text("(reply not streamed)" if ns else "(no reply)", style="dim")
        style = "magenta" if ns else "cyan"
        self._print(Panel(body, title=title, title_align="left", subtitle=self.stamp(), subtitle_align="right", border_style=style), depth)
        self.phase = f"{self._who(ns)}running code" if update.get("queue") else f"{self._who(ns)}checking the answer"

    def _on_execute(self, ns: tuple[str, ...], depth: int, update: dict[str, Any]) -> None:
        pending = update.get("pending") or []
        if pending:
            self.inflight[ns] = [0, len(pending)]
            self.phase = f"{self._who(ns)}{len(pending)} sub-call(s) in flight"
        for cell in update.get("cells") or []:
            self._print(self._cell(ns, cell), depth)
        if update.get("cells"):
            self.phase = f"{self._who(ns)}model thinking"

    def _cell(self, ns: tuple[str, ...], cell: dict[str, Any]) -> RenderableType:
        from rlm_graph.nodes.execute import answer_key

        out = (cell.get("stdout") or "") + (cell.get("stderr") or "") + (cell.get("error") or "")
        parts: list[RenderableType] = [
            Syntax(cell.get("code") or "", "python", theme="ansi_dark", word_wrap=True),
            Panel(
                Text(_clip(out.rstrip("\n"), OUTPUT_CHARS) or "(no output)"),
                title=f"cell {cell.get('index')} · {cell.get('seconds')}s" + (" · FINAL" if cell.get("final") is not None else ""),
                title_align="left",
                border_style="red" if cell.get("error") else "green",
            ),
        ]
        requests = cell.get("requests") or []
        n_calls = sum(len(r.get("prompts") or []) for r in requests)
        if n_calls:
            tree = Tree(Text.from_markup(f"[bold]{n_calls} sub-call(s)[/]"))
            for k, req in enumerate(requests):
                texts, hashes = req.get("texts") or [], req.get("hashes") or []
                for i, prompt in enumerate(req.get("prompts") or []):
                    key = answer_key(cell.get("index", 0), k, i, hashes[i]) if i < len(hashes) else ""
                    answer = self.answers.pop((ns, key), {})
                    reply = answer.get("text", texts[i] if i < len(texts) else "")
                    tokens = total_tokens(answer.get("usage"))
                    extra = f" [dim]· {tokens:,} tok · {answer.get('seconds', req.get('seconds'))}s[/]" if answer else ""
                    line = Text.from_markup(f"[magenta]{req.get('kind')}_query[/] ")
                    line.append(repr(_one_line(prompt)))
                    line.append(" → ")
                    line.append(repr(_one_line(reply)), style="red" if answer.get("error") or req.get("error") else "green")
                    line.append_text(Text.from_markup(extra))
                    branch = tree.add(line)
                    child = answer.get("child")
                    if child and child.get("run_id"):
                        branch.add(Text(f"child RLM depth {child.get('depth')}: {child.get('iterations')} iteration(s), stopped by {child.get('stopped_by')}", style="dim"))
                    elif child and child.get("fallback"):
                        branch.add(Text(f"plain model call ({child['fallback']} reached)", style="dim"))
            parts.append(tree)
        return Group(*parts)

    def _on_sub_call(self, ns: tuple[str, ...], depth: int, update: dict[str, Any]) -> None:
        for key, answer in (update.get("answers") or {}).items():
            self.answers[(ns, key)] = {**answer, "usage": update.get("usage") or {}}
            count = self.inflight.setdefault(ns, [0, 0])
            count[0] += 1
            self.phase = f"{self._who(ns)}{count[0]} of {max(count)} sub-call(s) answered"

    def _on_check_final(self, ns: tuple[str, ...], depth: int, update: dict[str, Any]) -> None:
        if update.get("stopped_by"):
            answer = update.get("final_answer")
            if ns:
                self._print(Text.from_markup(f"[magenta]↳ {self._who(ns)}answered[/] {_one_line(str(answer), 200)!r} [dim]· {self.stamp()}[/]"), depth)
                self.phase = "waiting for the other sub-calls"
            else:
                how = update.get("stopped_by")
                self.console.print(Text.from_markup(f"[bold green]FINAL[/] ({how}): ") + Text(repr(answer)) + Text.from_markup(f" [dim]· {self.stamp()}[/]"))
                self.phase = "done"
            return
        for m in update.get("messages") or []:
            if m.get("role") == "user":
                self._print(Text(_one_line(m["content"], 200), style="yellow"), depth)
        self.phase = f"{self._who(ns)}model thinking"

    # -- the end ---------------------------------------------------------------------------
    def on_result(self, result: Any) -> None:
        """Stop the spinner and print the totals per model."""
        self._stop()
        lines = [
            f"done in {result.execution_time:.1f}s · {result.iterations} iteration(s) · {result.subcalls} sub-call(s)"
            + (f" · stopped by {result.stopped_by}" if result.stopped_by not in (None, "final") else "")
        ]
        for model, u in (result.usage or {}).items():
            cost = f" · ${u['cost_usd']:.4f}" if u.get("cost_usd") else ""
            lines.append(f"  {model}: {u.get('calls') or 0} call(s), {u.get('input_tokens') or 0:,} in / {u.get('output_tokens') or 0:,} out{cost}")
        self.console.print(Text("\n".join(lines), style="bold"))

    def _stop(self) -> None:
        if not self._stopped:
            self._stopped = True
            self._status.stop()

    def close(self) -> None:
        self._stop()
