"""Turning what a caller passes as the context into a file the sandbox loads.

The host never reads a context file into memory and never puts it in a prompt: a path is checked
and handed to the sandbox; a Python value is written once to a file under the work directory.
Other sources (standard input, a folder, a SQL query) are read once on the host by
:func:`open_source` and written the same way. A child run's context (what a cell passes to
``rlm_query``) goes to a content-addressed store: :func:`store_value` writes it once under its
SHA-256, and the state carries only a :class:`ContextRef`. What one run (a root run and every child
below it) adds to the store is capped too (:data:`MAX_RUN_CHILD_CONTEXT_BYTES`).
"""

from __future__ import annotations

import datetime
import hashlib
import json
import os
import re
import sys
import tempfile
import threading
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import quote, unquote

from typing_extensions import TypedDict

from rlm_graph.errors import ContextError

#: File suffixes and the format the worker loads them as.
FORMATS = {".json": "json", ".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}


def format_for(path: Path) -> str:
    """The load format for a file: json, jsonl, csv, or text."""
    return FORMATS.get(path.suffix.lower(), "text")


def check_file(path: str | os.PathLike[str]) -> Path:
    """Validate a context file: it exists, is a regular file (not a FIFO or a device), is not empty
    and is not binary.

    Raises:
        ContextError: with a one-line reason.
    """
    p = Path(path).expanduser()
    if not p.exists():
        raise ContextError(f"context file not found: {p}")
    if p.is_dir():
        raise ContextError(f"context path is a directory, not a file: {p}")
    if not p.is_file():  # opening a FIFO would wait for a writer forever; a device never ends
        raise ContextError(f"context path is not a regular file (a FIFO, a socket or a device): {p}")
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


def encode_value(value: Any) -> tuple[bytes, str]:
    """An inline context as the bytes of its file and their load format: a str as UTF-8 text,
    anything else as JSON."""
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass"), "text"
    try:
        return json.dumps(value, ensure_ascii=False).encode("utf-8"), "json"
    except (TypeError, ValueError) as exc:
        raise ContextError(f"the context must be a str, or JSON-serializable (list, dict ...): {exc}") from exc


def write_value(value: Any, directory: str | os.PathLike[str], stem: str) -> tuple[Path, str]:
    """Write an inline context (str, list, dict ...) to ``directory``; return (path, format)."""
    data, fmt = encode_value(value)
    target = Path(directory) / f"{stem}{_SUFFIX[fmt]}"
    _write_atomically(target, data)
    return target, fmt


_SUFFIX = {"text": ".txt", "json": ".json"}


def _write_atomically(target: Path, data: bytes) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".ctx-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


# -- the content-addressed store of child contexts --------------------------------------------
# A child run (``rlm_query(prompt, context)`` in a cell) gets its context from code in the
# sandbox. It is written once, under its SHA-256, to ``<work_dir>/contexts/sha256/``; the state
# (the parent's pending fan-out, the child's input) carries only a ContextRef. The same context
# asked for again, by the same run, a resume, a fork or another run, is the same file.

#: Most bytes one child context may have as stored (UTF-8 text, or JSON): a bigger one is refused
#: by the protocol's gate, and the code that asked gets an error (see ``sandboxes/protocol.py``).
MAX_CHILD_CONTEXT_BYTES = 32 << 20

#: Most bytes the child contexts of one run (a root run and every child below it) may add to the
#: store, over all its children: a child whose context would pass it is refused inside the cell
#: that asked (see :func:`child_contexts_over_total`). A context already in the store adds nothing.
#: Read when a context is stored, so setting ``rlm_graph.contexts.MAX_RUN_CHILD_CONTEXT_BYTES``
#: changes it for the runs that follow.
MAX_RUN_CHILD_CONTEXT_BYTES = 1 << 30

#: The store's folder under the work directory.
STORE_DIR = Path("contexts") / "sha256"

#: Where each run's total (bytes its children's contexts added to the store) is kept, one small
#: file per run named by the SHA-256 of the root run's id, so a resume goes on from it.
TOTALS_DIR = Path("contexts") / "totals"

#: One store write at a time in this process: a run's total is checked and raised in one step.
#: Two processes never serve one run at once (the run lease), so each total has one writer.
_STORE_LOCK = threading.Lock()

_HEX64 = re.compile(r"[0-9a-f]{64}")


class ContextRef(TypedDict):
    """Where a stored child context is: its SHA-256 (the file's name), its size, its load format."""

    sha256: str
    size: int
    format: str  # "text" or "json"


def store_dir(work_dir: str | os.PathLike[str]) -> Path:
    """The content-addressed store of child contexts under ``work_dir``."""
    return Path(work_dir) / STORE_DIR


def store_value(value: Any, work_dir: str | os.PathLike[str], *, run: str | None = None) -> ContextRef:
    """Write ``value`` to the store once (an identical context already there is not written
    again); return its reference.

    ``run``: the root run's id of the tree the context is for. What the store writes for it is
    added to that run's total, which may not pass :data:`MAX_RUN_CHILD_CONTEXT_BYTES`; a context
    already in the store is not written, so it costs nothing.

    Raises:
        ContextError: the value is not a str or a JSON value, is over
            :data:`MAX_CHILD_CONTEXT_BYTES`, or would take ``run``'s total past its cap.
    """
    data, fmt = encode_value(value)
    if len(data) > MAX_CHILD_CONTEXT_BYTES:
        raise ContextError(child_context_too_big(len(data)))
    ref: ContextRef = {"sha256": hashlib.sha256(data).hexdigest(), "size": len(data), "format": fmt}
    target = store_dir(work_dir) / f"{ref['sha256']}{_SUFFIX[fmt]}"
    with _STORE_LOCK:
        try:
            if target.stat().st_size == len(data):
                return ref
        except OSError:
            pass
        used = 0
        if run is not None:
            used = run_total(work_dir, run)
            if used + len(data) > MAX_RUN_CHILD_CONTEXT_BYTES:
                raise ContextError(child_contexts_over_total(len(data), used))
        _write_atomically(target, data)
        if run is not None:
            _write_atomically(_total_file(work_dir, run), str(used + len(data)).encode("ascii"))
    return ref


def run_total(work_dir: str | os.PathLike[str], run: str) -> int:
    """Bytes the child contexts of run ``run`` (a root run's id) have added to the store so far."""
    try:
        return int(_total_file(work_dir, run).read_text("ascii").strip() or 0)
    except (OSError, ValueError):  # nothing stored for this run yet
        return 0


def _total_file(work_dir: str | os.PathLike[str], run: str) -> Path:
    return Path(work_dir) / TOTALS_DIR / hashlib.sha256(run.encode("utf-8", "surrogatepass")).hexdigest()


def child_context_too_big(size: int) -> str:
    """The one line that refuses a child context of ``size`` bytes."""
    return (f"a child context of {size:,} bytes is more than the {MAX_CHILD_CONTEXT_BYTES:,} one rlm_query may pass; "
            "give the child a slice of the data")


def child_contexts_over_total(size: int, used: int) -> str:
    """The one line that refuses a child context of ``size`` bytes when the run's children have
    already added ``used`` bytes to the store."""
    cap = MAX_RUN_CHILD_CONTEXT_BYTES
    return (f"a child context of {size:,} bytes is more than the {max(cap - used, 0):,} left of the {cap:,} the child "
            "contexts of one run may store; pass the children the same context again (it is stored once) or smaller slices")


def stored_path(ref: Any, work_dir: str | os.PathLike[str]) -> Path:
    """The file of a stored child context, checked: a valid reference, present, of its size.

    Raises:
        ContextError: one line naming the digest, the size and the folder it was looked for in.
    """
    if (not isinstance(ref, dict) or not isinstance(ref.get("sha256"), str) or not _HEX64.fullmatch(ref["sha256"])
            or ref.get("format") not in _SUFFIX or isinstance(ref.get("size"), bool) or not isinstance(ref.get("size"), int)):
        raise ContextError(f"not a stored context's reference (sha256, size, format): {str(ref)[:200]}")
    path = (store_dir(work_dir) / f"{ref['sha256']}{_SUFFIX[ref['format']]}").resolve()
    try:
        size = path.stat().st_size
    except OSError:
        raise ContextError(
            f"the child run's context (SHA-256 {ref['sha256'][:16]}..., {ref['size']:,} bytes) is missing: it is not in "
            f"{path.parent}; resume with the work directory the run was started with, or restore that file"
        ) from None
    if size != ref["size"]:
        raise ContextError(f"the child run's context {path} has {size:,} bytes, not the {ref['size']:,} stored: the file was changed")
    return path


def load_stored(ref: ContextRef, work_dir: str | os.PathLike[str]) -> Any:
    """A stored child context's value (for a child that falls back to one sub-model call)."""
    data = stored_path(ref, work_dir).read_bytes()
    return json.loads(data) if ref["format"] == "json" else data.decode("utf-8", "surrogatepass")


# -- sources: stdin, folders and SQL queries -------------------------------------------------
# These are read on the host once, when the run starts, and written to a file under the work
# directory like any inline value: the run then loads a snapshot, so a resume or a fork replays
# over the same data even if the folder or the table has changed since.

#: Files in one folder context, at most.
MAX_FOLDER_FILES = 100_000

#: URL schemes of the SQL sources.
SQL_SCHEMES = ("sqlite://", "postgresql://", "postgres://")


@dataclass(frozen=True)
class Source:
    """A context named by a string: a file the sandbox loads as it is, or a value read on the host.

    Attributes:
        path: a text, JSON, JSONL or CSV file (None when ``value`` holds the context).
        value: stdin's text, a folder's ``{relative path: text}``, or a query's rows as dicts.
        skipped: files of a folder left out (binary, unreadable, or links leading outside it).
    """

    path: Path | None = None
    value: Any = None
    skipped: list[str] = field(default_factory=list)


def is_source(spec: Any) -> bool:
    """True if ``spec`` names a context :func:`open_source` reads on the host (a folder or a SQL URL)."""
    if isinstance(spec, Path):
        return spec.is_dir()
    if not isinstance(spec, str):
        return False
    if spec.startswith(SQL_SCHEMES):
        return True
    try:
        return len(spec) < 4096 and "\n" not in spec and Path(spec).expanduser().is_dir()
    except OSError:
        return False


def open_source(spec: str | os.PathLike[str], *, stdin: TextIO | None = None) -> Source:
    """Turn a context named on the command line into a :class:`Source`.

    ``-`` reads standard input as text; a folder gives ``{relative path: text}`` (binary files
    skipped and listed); ``sqlite:///file.db?query=SELECT ...`` and ``postgresql://...?query=...``
    give the query's rows as a list of dicts; anything else is a context file.

    Raises:
        ContextError: with a one-line reason (missing file, empty input, failed query ...).
    """
    text = os.fspath(spec)
    if text == "-":
        return Source(value=read_stdin(stdin if stdin is not None else sys.stdin))
    if text.startswith(SQL_SCHEMES):
        return Source(value=query_rows(text))
    p = Path(text).expanduser()
    if p.is_dir():
        files, skipped = read_folder(p)
        return Source(value=files, skipped=skipped)
    return Source(path=check_file(p))


def read_stdin(stream: TextIO) -> str:
    """All of ``stream`` as text; refuses a terminal (nothing was piped in) and empty input."""
    if stream.isatty():
        raise ContextError("--context - reads standard input, but it is a terminal: pipe the data in (e.g. cat notes.txt | rlm-graph run --context - ...)")
    try:
        data = stream.read()
    except UnicodeDecodeError as exc:
        raise ContextError(f"standard input is not UTF-8 text: {exc.reason} at byte {exc.start}") from exc
    if not data.strip():
        raise ContextError("standard input is empty: nothing to use as the context")
    return data


def read_folder(folder: Path) -> tuple[dict[str, str], list[str]]:
    """Every text file under ``folder``: ``({relative path: text}, [skipped relative paths])``.

    Hidden files and folders (names starting with ``.``, such as ``.git``) are left out without
    listing; binary files (NUL bytes, or not UTF-8), unreadable files and links that lead outside
    the folder are skipped and listed.
    """
    root = folder.resolve()
    files: dict[str, str] = {}
    skipped: list[str] = []
    for dirpath, dirnames, filenames in os.walk(root):
        dirnames[:] = sorted(d for d in dirnames if not d.startswith("."))
        for name in sorted(filenames):
            if name.startswith("."):
                continue
            path = Path(dirpath) / name
            rel = path.relative_to(root).as_posix()
            if len(files) + len(skipped) >= MAX_FOLDER_FILES:
                raise ContextError(f"folder {folder} has more than {MAX_FOLDER_FILES:,} files; name a smaller one")
            try:
                real = path.resolve()
                if not real.is_relative_to(root) or not real.is_file():
                    skipped.append(rel)
                    continue
                data = real.read_bytes()
            except OSError:
                skipped.append(rel)
                continue
            if b"\x00" in data[:8192]:
                skipped.append(rel)
                continue
            try:
                files[rel] = data.decode("utf-8")
            except UnicodeDecodeError:
                skipped.append(rel)
    if not files:
        detail = f" ({len(skipped)} binary or unreadable file(s) skipped)" if skipped else ""
        raise ContextError(f"folder {folder} has no text files{detail}")
    return files, skipped


def split_query_url(url: str) -> tuple[str, str]:
    """``(connection URL, SQL)`` from ``scheme://...?[other=params&]query=SQL``.

    The SQL is everything after ``query=`` (so it must come last), written plainly or
    URL-encoded; ``&``, ``=`` and ``%`` inside a plain query are kept as they are.
    """
    base, sep, params = url.partition("?")
    at = -1 if not sep else next((i for i in _query_starts(params)), -1)
    if at < 0:
        raise ContextError(f"{base.split('://')[0]} context needs a query: add ?query=SELECT ... to the URL")
    sql = params[at + len("query="):]
    if sql and not any(ch.isspace() for ch in sql) and "%" in sql:
        sql = unquote(sql)  # URL-encoded (a plain query has spaces)
    if not sql.strip():
        raise ContextError("the context URL's query is empty: add ?query=SELECT ...")
    others = params[:at].rstrip("&")
    return base + ("?" + others if others else ""), sql


def _query_starts(params: str) -> list[int]:
    return [m.start() for m in re.finditer(r"(?:^|(?<=&))query=", params)]


def query_rows(url: str) -> list[dict[str, Any]]:
    """Run the query a ``sqlite://`` or ``postgresql://`` URL names; its rows as JSON-ready dicts.

    SQLite files are opened read-only; PostgreSQL runs the query in a read-only transaction.
    """
    conn_url, sql = split_query_url(url)
    rows = _sqlite_rows(conn_url, sql) if conn_url.startswith("sqlite://") else _postgres_rows(conn_url, sql)
    if not rows:
        raise ContextError(f"the context query returned no rows: {sql[:200]}")
    return [{str(k): _json_value(v) for k, v in row.items()} for row in rows]


def _sqlite_rows(conn_url: str, sql: str) -> list[dict[str, Any]]:
    import sqlite3

    if not conn_url.startswith("sqlite:///") or "?" in conn_url:
        raise ContextError("a SQLite context is sqlite:///relative/file.db?query=... or sqlite:////absolute/file.db?query=...")
    path = Path(unquote(conn_url[len("sqlite:///"):])).expanduser()
    if not path.is_file():
        raise ContextError(f"SQLite database not found: {path}")
    try:
        with closing(sqlite3.connect(f"file:{quote(str(path.resolve()))}?mode=ro", uri=True)) as conn:
            conn.row_factory = sqlite3.Row
            return [dict(r) for r in conn.execute(sql).fetchall()]
    except sqlite3.Error as exc:
        raise ContextError(f"SQLite query on {path} failed: {exc}") from exc


def _postgres_rows(conn_url: str, sql: str) -> list[dict[str, Any]]:
    try:
        import psycopg
        from psycopg.rows import dict_row
    except ImportError as exc:
        raise ContextError("a postgresql:// context needs psycopg: pip install 'rlm-graph[postgres]'") from exc
    where = conn_url.split("@")[-1].split("?")[0]  # host/db, without the password
    try:
        with psycopg.connect(conn_url, connect_timeout=10, autocommit=False) as conn:
            conn.read_only = True
            with conn.cursor(row_factory=dict_row) as cur:
                cur.execute(sql)  # type: ignore[arg-type]  # the user's own query, as given
                if cur.description is None:
                    raise ContextError(f"the context query on {where} returns no rows (it is not a SELECT)")
                return list(cur.fetchall())
    except psycopg.Error as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise ContextError(f"PostgreSQL query on {where} failed: {first}") from exc


def _json_value(value: Any) -> Any:
    """A database value as JSON: numbers, text, booleans and None as they are, dates as ISO text."""
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() and abs(value) < 2**53 else float(value)
    if isinstance(value, (datetime.date, datetime.time)):
        return value.isoformat()
    if isinstance(value, (bytes, bytearray, memoryview)):
        return f"<{len(bytes(value))} bytes>"
    if isinstance(value, dict):
        return {str(k): _json_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_json_value(v) for v in value]
    return str(value)
