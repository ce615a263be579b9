"""Turning what a caller passes as the context into a file the sandbox loads.

The host never reads a context file into memory and never puts it in a prompt: a path is checked
and handed to the sandbox; a Python value is written once to a file under the work directory.
"""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from rlm_graph.errors import ContextError

#: File suffixes and the format the worker loads them as.
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def format_for(path: Path) -> str:
    """The load format for a file: json, jsonl, csv, or text."""
    return FORMATS.get(path.suffix.lower(), "text")


def check_file(path: str | os.PathLike[str]) -> Path:
    """Validate a context file: it exists, is a regular file, is not empty and is not binary.

    Raises:
        ContextError: with a one-line reason.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ContextError(f"context file not found: {p}")
    if p.is_dir():
        raise ContextError(f"context path is a directory, not a file: {p}")
    try:
        size = p.stat().st_size
        with p.open("rb") as f:
            head = f.read(8192)
    except OSError as exc:
        raise ContextError(f"cannot read context file {p}: {exc.strerror or exc}") from exc
    if size == 0:
        raise ContextError(f"context file is empty (0 bytes): {p}")
    if b"\x00" in head:
        raise ContextError(f"context file looks binary (it contains NUL bytes): {p}; give a text, JSON, JSONL or CSV file")
    return p.resolve()


#: Suffixes that make a one-word string context a file name even when the file is missing.
_FILE_SUFFIXES = (".txt", ".json", ".jsonl", ".ndjson", ".csv", ".log", ".md", ".tsv")


def looks_like_path(value: str) -> bool:
    """True if a string context is meant as a file path rather than as the text itself.

    An existing file's path is a path; so is one word ending in a data-file suffix (so that a
    typo gives "not found" instead of a run over the file name).
    """
    if not value or len(value) > 4096 or any(ch.isspace() for ch in value.strip()):
        return False
    value = value.strip()
    try:
        return value.lower().endswith(_FILE_SUFFIXES) or Path(value).expanduser().is_file()
    except OSError:  # e.g. a name longer than the file system allows: text, not a path
        return False


def write_value(value: Any, directory: str | os.PathLike[str], stem: str) -> tuple[Path, str]:
    """Write an inline context (str, list, dict ...) to ``directory``; return (path, format)."""
    d = Path(directory)
    d.mkdir(parents=True, exist_ok=True)
    if isinstance(value, str):
        suffix, data, fmt = ".txt", value.encode("utf-8", "surrogatepass"), "text"
    else:
        try:
            data = json.dumps(value, ensure_ascii=False).encode("utf-8")
        except (TypeError, ValueError) as exc:
            raise ContextError(f"the context must be a str, or JSON-serializable (list, dict ...): {exc}") from exc
        suffix, fmt = ".json", "json"
    target = d / f"{stem}{suffix}"
    fd, tmp = tempfile.mkstemp(dir=d, prefix=".ctx-")
    with os.fdopen(fd, "wb") as f:
        f.write(data)
    os.replace(tmp, target)
    return target, fmt
