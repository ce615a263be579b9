"""User tools: host functions that REPL code calls like ``llm_query``.

``RLM(tools={"lookup": lookup})`` (or ``create_rlm_graph(..., tools=...)``, or ``--tools
module:attr``) makes ``lookup(...)`` callable from the model's code. The sandbox never gets the
function, its module or its secrets: the worker has a stub that sends the call (the tool's name
and its JSON arguments) to the host as a request of kind ``"tool"``; the host runs the function in
a ``sub_call`` task and sends back its JSON result. Like a sub-call's answer, the result is saved
with the cell, so a replay after a crash, a resume or a fork serves it from the record and never
calls the tool again. Child runs (``rlm_query``) get the same tools. The system prompt lists each
tool with its signature and the first paragraph of its docstring.
"""

from __future__ import annotations

import asyncio
import importlib
import inspect
import json
import keyword
import os
import re
import sys
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from rlm_graph.errors import ConfigurationError

#: Names the REPL already defines: a tool may not take them.
RESERVED = frozenset({
    "context", "llm_query", "llm_query_batched", "rlm_query", "rlm_query_batched",
    "FINAL", "FINAL_VAR", "SHOW_VARS", "search", "judge", "classify", "print", "json",
})

#: The request kind of a tool call in the worker protocol.
TOOL_KIND = "tool"

#: Characters of a tool's JSON result, at most (it is saved with the cell in every checkpoint).
MAX_RESULT_CHARS = 1_000_000

#: Characters of a call (its JSON arguments) the host accepts from the sandbox.
MAX_CALL_CHARS = 1_000_000

_DOC_CHARS = 400


@dataclass(frozen=True)
class Tool:
    """A host function the REPL may call, with what the model is told about it."""

    name: str
    fn: Callable[..., Any]
    signature: str
    doc: str

    def line(self) -> str:
        """How the system prompt lists it: ``name(a, b=1) -> str: what it does``."""
        return f"- `{self.name}{self.signature}`" + (f": {self.doc}" if self.doc else "")


def make_tools(tools: Mapping[str, Callable[..., Any]] | None) -> dict[str, Tool]:
    """Check user tools and describe them.

    Raises:
        ConfigurationError: a name that is not a plain identifier, is private or clashes with the
            REPL's own names, or a value that is not callable.
    """
    if tools is None:
        return {}
    if not isinstance(tools, Mapping):
        raise ConfigurationError(f"tools must be a dict of name -> function, not {type(tools).__name__}")
    out: dict[str, Tool] = {}
    for name, fn in tools.items():
        if not isinstance(name, str) or not name.isidentifier() or keyword.iskeyword(name) or name.startswith("_"):
            raise ConfigurationError(f"tool name {name!r} must be a public Python identifier")
        if name in RESERVED:
            raise ConfigurationError(f"tool name {name!r} is taken by the REPL; choose another")
        if not callable(fn):
            raise ConfigurationError(f"tool {name!r} is not callable ({type(fn).__name__})")
        out[name] = Tool(name, fn, _signature(fn), _first_paragraph(inspect.getdoc(fn) or ""))
    return out


def _signature(fn: Callable[..., Any]) -> str:
    try:
        sig = inspect.signature(fn)
    except (TypeError, ValueError):  # some builtins have none
        return "(...)"
    try:
        sig = inspect.signature(fn, eval_str=True)  # 'str' -> str under postponed annotations
    except Exception:  # an annotation naming something not importable here: keep the text
        pass
    return str(sig)


def _first_paragraph(doc: str) -> str:
    text = " ".join(doc.strip().split("\n\n")[0].split())
    return text if len(text) <= _DOC_CHARS else text[: _DOC_CHARS - 3] + "..."


def load_tools(specs: Sequence[str]) -> dict[str, Callable[..., Any]]:
    """Import ``module:attr`` specs: each a dict of functions, a list of functions, or one function.

    The current folder is importable (as for ``python -m``), so ``--tools mytools:TOOLS`` finds
    ``./mytools.py``.

    Raises:
        ConfigurationError: a malformed spec, a module or attribute that is missing, a value of
            the wrong kind, or the same name twice.
    """
    if os.getcwd() not in sys.path and "" not in sys.path:
        sys.path.insert(0, os.getcwd())
    out: dict[str, Callable[..., Any]] = {}
    for spec in specs:
        module_name, sep, attr = spec.partition(":")
        if not sep or not module_name or not re.fullmatch(r"[A-Za-z_][\w.]*", attr or "-"):
            raise ConfigurationError(f"--tools {spec!r}: write MODULE:ATTR, e.g. mytools:TOOLS")
        try:
            module = importlib.import_module(module_name)
        except ImportError as exc:
            raise ConfigurationError(f"--tools {spec!r}: cannot import {module_name}: {exc}") from exc
        value: Any = module
        for part in attr.split("."):
            if not hasattr(value, part):
                raise ConfigurationError(f"--tools {spec!r}: {module_name} has no {attr}")
            value = getattr(value, part)
        if isinstance(value, Mapping):
            found = dict(value)
        elif callable(value):
            found = {getattr(value, "__name__", attr.split(".")[-1]): value}
        elif isinstance(value, (list, tuple)) and all(callable(v) for v in value):
            found = {v.__name__: v for v in value}
        else:
            raise ConfigurationError(f"--tools {spec!r}: {attr} is a {type(value).__name__}, not a function, a list of functions or a dict")
        twice = sorted(set(found) & set(out))
        if twice:
            raise ConfigurationError(f"--tools: {', '.join(twice)} given twice")
        out.update(found)
    make_tools(out)  # validates names and values
    return out


def describe(tools: Mapping[str, Tool]) -> str:
    """The system prompt's section on the tools ('' with none)."""
    from rlm_graph.graph.prompts import TOOLS_PROMPT

    if not tools:
        return ""
    return TOOLS_PROMPT.format(tools="\n".join(t.line() for t in tools.values()))


def call(tools: Mapping[str, Tool], request: str) -> tuple[str, str | None, float]:
    """Run the call a cell sent (JSON ``{"tool", "args", "kwargs"}``): ``(JSON result, error, seconds)``.

    Everything in ``request`` comes from the sandbox: it is checked before anything is called,
    and the tool's own exceptions become the error the cell sees.
    """
    start = time.monotonic()
    try:
        name, args, kwargs = _parse_call(request, tools)
    except ValueError as exc:
        return "", str(exc), 0.0
    tool = tools[name]
    try:
        result = tool.fn(*args, **kwargs)
        if inspect.isawaitable(result):
            result = asyncio.run(_awaited(result))
    except Exception as exc:
        return "", f"tool {name} raised {type(exc).__name__}: {exc}", time.monotonic() - start
    text = json.dumps(result, ensure_ascii=False, default=str)
    if len(text) > MAX_RESULT_CHARS:
        return "", f"tool {name} returned {len(text):,} characters of JSON; at most {MAX_RESULT_CHARS:,} are passed to the REPL", time.monotonic() - start
    return text, None, time.monotonic() - start


async def _awaited(value: Any) -> Any:
    return await value


def _parse_call(request: str, tools: Mapping[str, Tool]) -> tuple[str, list[Any], dict[str, Any]]:
    if len(request) > MAX_CALL_CHARS:
        raise ValueError(f"a tool call's arguments may take at most {MAX_CALL_CHARS:,} characters of JSON")
    try:
        msg = json.loads(request)
    except ValueError:
        raise ValueError("a tool call must be JSON") from None
    if not isinstance(msg, dict) or not isinstance(msg.get("tool"), str):
        raise ValueError("a tool call must name its tool")
    name, args, kwargs = msg["tool"], msg.get("args", []), msg.get("kwargs", {})
    if name not in tools:
        raise ValueError(f"there is no tool {name!r}")
    if not isinstance(args, list) or not isinstance(kwargs, dict) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"tool {name}: malformed arguments")
    return name, args, kwargs
