"""Opening a checkpointer from what a user gives: nothing, a path, a Postgres URL, or a saver."""

from __future__ import annotations

import sqlite3
from pathlib import Path
from typing import Any

from rlm_graph.errors import ConfigurationError

DEFAULT_FILE = "checkpoints.sqlite"


def open_checkpointer(spec: Any, work_dir: str | Path = ".rlm") -> Any:
    """A LangGraph checkpointer for ``spec``.

    - None: a SQLite file ``<work_dir>/checkpoints.sqlite`` (the default: runs are resumable).
    - False: no checkpointer (runs cannot be resumed or interrupted).
    - ``"postgresql://..."``: a Postgres saver (tables are created if missing).
    - any other string or Path: a SQLite file at that path.
    - a ``BaseCheckpointSaver``: used as is.
    """
    from langgraph.checkpoint.base import BaseCheckpointSaver

    if spec is False:
        return None
    if isinstance(spec, BaseCheckpointSaver):
        return spec
    if spec is None:
        spec = Path(work_dir) / DEFAULT_FILE
    if isinstance(spec, str) and spec.startswith(("postgres://", "postgresql://")):
        return _postgres(spec)
    if isinstance(spec, (str, Path)):
        return _sqlite(Path(spec))
    raise ConfigurationError(f"checkpointer must be None, False, a path, a postgresql:// URL or a checkpointer, not {type(spec).__name__}")


def _sqlite(path: Path) -> Any:
    from langgraph.checkpoint.sqlite import SqliteSaver

    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")  # several processes may share one file
    except (OSError, sqlite3.Error) as exc:
        raise ConfigurationError(f"cannot open the checkpoint file {path}: {exc}") from exc
    saver = SqliteSaver(conn)
    saver.setup()
    saver._rlm_location = str(path)  # type: ignore[attr-defined]
    return saver


def _postgres(url: str) -> Any:
    try:
        from langgraph.checkpoint.postgres import PostgresSaver
        from psycopg import Connection
        from psycopg.rows import dict_row
    except ImportError as exc:
        raise ConfigurationError("Postgres checkpoints need: pip install 'rlm-graph[postgres]'") from exc
    try:
        conn = Connection.connect(url, autocommit=True, prepare_threshold=0, row_factory=dict_row)
    except Exception as exc:  # psycopg's OperationalError and friends
        raise ConfigurationError(f"cannot connect to the Postgres checkpointer: {str(exc).strip().splitlines()[0]}") from exc
    saver = PostgresSaver(conn)  # type: ignore[arg-type]
    saver.setup()
    saver._rlm_location = url.split("@")[-1]  # type: ignore[attr-defined]
    return saver


def list_runs(saver: Any) -> list[dict[str, Any]]:
    """One row per thread in ``saver``: thread id, status, iteration, answer, last update time.

    Status is "finished" (a final answer), "stopped" (a limit ended it), "interrupted" (waits for a
    human decision), or "resumable" (it stopped midway: a crash, a kill, an error).
    """
    latest: dict[str, Any] = {}
    for tup in saver.list(None):
        cfg = tup.config.get("configurable", {})
        if cfg.get("checkpoint_ns"):
            continue  # a child run's checkpoints belong to its parent's thread
        tid = cfg.get("thread_id")
        if tid not in latest:  # list() returns newest first
            latest[tid] = tup
    rows = []
    for tid, tup in latest.items():
        values = tup.checkpoint.get("channel_values", {})
        stopped = values.get("stopped_by")
        interrupted = any(w[1] == "__interrupt__" for w in tup.pending_writes or [])
        status = "interrupted" if interrupted else "finished" if stopped == "final" else "stopped" if stopped else "resumable"
        rows.append(
            {
                "thread_id": tid,
                "status": status,
                "stopped_by": stopped,
                "iteration": values.get("iteration") or 0,
                "answer": values.get("final_answer"),
                "query": (values.get("query") or "")[:120],
                "updated": tup.checkpoint.get("ts"),
            }
        )
    rows.sort(key=lambda r: r["updated"] or "", reverse=True)
    return rows
