"""Reading a model reply: its code blocks and a FINAL(...) / FINAL_VAR(...) written in the text."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass

_LANG = re.compile(r"[ \t]*([A-Za-z0-9_+-]*)")
_CODE_LANGS = {"repl", "python", "py", "python3", ""}
_FINAL = re.compile(r"\b(FINAL_VAR|FINAL)\s*\(")


@dataclass(frozen=True)
class FinalCall:
    """A FINAL written in the reply text. ``var`` is set when it names a variable to read."""

    answer: str | None = None
    var: str | None = None


def code_blocks(text: str) -> list[str]:
    """The code of each ```repl block (```python and unlabeled fences count too), in order.

    An unclosed fence at the end of the reply counts as a block (the reply was cut off).
    Blocks that are plainly not Python (```json, ```text ...) are skipped.
    """
    blocks = []
    for _, _, lang, body in _fences(text):
        if lang.lower() not in _CODE_LANGS:
            continue
        body = body.strip("\n")
        if body.strip() and not _is_output_echo(body):
            blocks.append(body)
    return blocks


def _is_output_echo(body: str) -> bool:
    """True for a block that repeats output rather than code: a "REPL output" header, nothing
    but literal values (``18611\n7560``), which as code would only echo its last line, or text that
    is not Python and starts as the runner's output does (a note, a traceback line): the 1.5B model
    pasted a cell's notes back as its next block four times, and each ran as a SyntaxError."""
    if body.lstrip().startswith(("REPL output", "Output:")):
        return True
    try:
        tree = ast.parse(body)
    except (SyntaxError, ValueError):
        return body.lstrip().startswith(_OUTPUT_STARTS)
    return bool(tree.body) and all(isinstance(s, ast.Expr) and _is_literal(s.value) for s in tree.body)


#: How the lines of a cell's output that are not the code's own prints begin.
_OUTPUT_STARTS = ("note: ", 'File "<cell', "Traceback (most recent call last)", "NotRun: ", "SyntaxError: ")


def _is_literal(node: ast.expr) -> bool:
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, (ast.USub, ast.UAdd)):
        return _is_literal(node.operand)
    if isinstance(node, (ast.List, ast.Tuple, ast.Set)):
        return all(_is_literal(e) for e in node.elts)
    if isinstance(node, ast.Dict):
        return all(k is not None and _is_literal(k) for k in node.keys) and all(_is_literal(v) for v in node.values)
    return False


def _balanced(text: str, start: int) -> int | None:
    """Index of the parenthesis closing the one before ``start``, skipping string literals."""
    depth, i, quote = 1, start, None
    while i < len(text):
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 2
                continue
            if text.startswith(quote, i):
                i += len(quote)
                quote = None
                continue
        elif ch in "\"'":
            quote = text[i : i + 3] if text[i : i + 3] in ('"""', "'''") else ch
            i += len(quote)
            continue
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return None


def _fences(text: str) -> Iterator[tuple[int, int, str, str]]:
    """Each fenced block: (start, end, language, body), in one pass over ``text``.

    A fence is three backticks, a header line (its first word the language), the body, and the
    closing backticks (or the end of the text). Written as a scan rather than a regular
    expression, whose backtracking over a header with no line end took quadratic time (a reply
    of backticks alone took seconds per 50 KB).
    """
    pos = 0
    while True:
        start = text.find("```", pos)
        if start < 0:
            return
        line_end = text.find("\n", start + 3)
        if line_end < 0:
            return  # no header line, so no block here or later
        lang = _LANG.match(text, start + 3, line_end)
        close = text.find("```", line_end + 1)
        end = len(text) if close < 0 else close + 3
        yield start, end, lang.group(1) if lang else "", text[line_end + 1 : end - 3 if close >= 0 else end]
        pos = end


def _outside_code(text: str) -> str:
    parts, pos = [], 0
    for start, end, _, _ in _fences(text):
        parts.append(text[pos:start])
        parts.append(" ")
        pos = end
    parts.append(text[pos:])
    return "".join(parts)


def find_final(text: str) -> FinalCall | None:
    """The last FINAL(...) or FINAL_VAR(...) written outside code blocks, if any.

    Parentheses nest (``FINAL(f(x) (approx))``), tuples survive (``FINAL((1, 2))``), string
    literals are unquoted, and a bare identifier (``FINAL(total)``) means "the variable's value",
    because that is what models mean by it. An unbalanced FINAL takes the rest of its line.
    """
    prose = _outside_code(text)
    last = None
    for m in _FINAL.finditer(prose):
        if m.start() > 0 and (prose[m.start() - 1].isalnum() or prose[m.start() - 1] == "_"):
            continue
        last = m
    if last is None:
        return None
    # Only the last one counts, so only it is scanned: scanning each took quadratic time.
    end = _balanced(prose, last.end())
    if end is None:
        line_end = prose.find("\n", last.end())
        inner = prose[last.end() : line_end if line_end != -1 else len(prose)].rstrip().rstrip(")")
    else:
        inner = prose[last.end() : end]
    name, inner = last.group(1), inner.strip()
    if not inner:
        return None
    if name == "FINAL_VAR" or inner.isidentifier():
        var = _literal_str(inner) if name == "FINAL_VAR" else inner
        if var is not None and var.isidentifier() and var not in ("None", "True", "False"):
            return FinalCall(var=var)
    literal = _literal(inner)
    return FinalCall(answer=literal if literal is not None else inner)


def _literal_str(src: str) -> str | None:
    value = _literal(src)
    return value if value is not None else src.strip().strip("\"'")


def _literal(src: str) -> str | None:
    """A Python literal's value as text (quotes dropped, tuples kept), or None if not a literal."""
    try:
        value = ast.literal_eval(src)
    except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
        return None
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        value = int(value)  # 24228839.0 -> 24228839: the question asked for a number
    return value if isinstance(value, str) else str(value)


def normalize_code(code: str) -> str:
    """The code with blank lines and trailing spaces dropped, for spotting a repeated block."""
    return "\n".join(line.rstrip() for line in code.strip().splitlines() if line.strip())
