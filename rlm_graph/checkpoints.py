"""Opening a checkpointer from what a user gives: nothing, a path, a Postgres URL, or a saver."""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from rlm_graph.errors import ConfigurationError, RunBusyError
from rlm_graph.validation import safe_value

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
        import sqlite3

        conn = sqlite3.connect(str(path), check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")  # several processes may share one file
        # In WAL mode, NORMAL syncs at checkpoints of the log, not at every commit: a commit survives
        # the process being killed (what resume needs), and only an OS crash or power loss can take
        # back the last ones. A commit cost 3.1 ms with FULL and 0.14 ms with NORMAL on these machines.
        conn.execute("PRAGMA synchronous=NORMAL")
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
    saver._rlm_url = url  # type: ignore[attr-defined]  # leases take their own connection
    return saver


#: The task id LangGraph gives writes that belong to no task (a Command's update on a resume).
_NULL_TASK = "00000000-0000-0000-0000-000000000000"


def list_runs(saver: Any) -> list[dict[str, Any]]:
    """One row per thread in ``saver``: thread id, status, iteration, answer, last update time,
    the root model's label and the changes recorded in the run's manifest.

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
        manifest = values.get("manifest")
        for task_id, channel, value in tup.pending_writes or []:
            if channel == "manifest" and task_id == _NULL_TASK:  # a change recorded as a resume began
                manifest = value
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
                "model": ((manifest or {}).get("models") or {}).get("root", {}).get("label") or ((manifest or {}).get("settings") or {}).get("model"),
                "changes": (manifest or {}).get("changes") or [],
            }
        )
    rows.sort(key=lambda r: r["updated"] or "", reverse=True)
    return rows


def checkpoint_safe(node: Callable[..., Any]) -> Callable[..., Any]:
    """``node`` with every string of its update made storable by every checkpointer.

    Model replies, sub-call answers and cell output may hold NUL, which Postgres refuses in text
    and JSON (a FINAL with NUL ended a run with ``UntranslatableCharacter`` and left it listed as
    resumable forever), or a lone surrogate, which no UTF-8 encoder takes. Both become U+FFFD
    (:func:`rlm_graph.validation.safe_value`) before LangGraph writes the update.
    """

    @functools.wraps(node)
    def safe_node(*args: Any, **kwargs: Any) -> Any:
        return safe_value(node(*args, **kwargs))

    return safe_node


# -- one runner per thread ---------------------------------------------------------------------


@contextlib.contextmanager
def thread_lease(saver: Any, thread_id: str) -> Iterator[None]:
    """Hold the lease of ``thread_id`` in ``saver`` while the block runs: one runner per thread.

    Two processes running one thread would both pay for every remaining call. The lease is a lock
    the operating system or the database releases by itself when its holder dies, so the lease of a
    killed runner is taken over at once, with no expiry to wait for:

    - SQLite: ``flock`` on a file beside the database (``.leases/<db name>-<hash of the thread id>.lock``);
    - Postgres: ``pg_try_advisory_lock`` on a connection of the lease's own (or the saver's), with
      the holder named in a ``rlm_graph_leases`` row;
    - any other saver (in memory): a lock within this process.

    Raises:
        RunBusyError: another runner holds it: "thread T is running in pid P on host H (since ...)".
    """
    if saver is None:
        yield
        return
    lease = _lease_for(saver, thread_id)
    lease.acquire()
    try:
        yield
    finally:
        lease.release()


def _holder() -> dict[str, Any]:
    return {"pid": os.getpid(), "host": socket.gethostname(), "since": time.strftime("%Y-%m-%d %H:%M:%S%z")}


def _busy(thread_id: str, holder: dict[str, Any] | None) -> RunBusyError:
    if not holder:
        return RunBusyError(f"thread {thread_id} is running in another process; wait for it to finish or stop it first")
    return RunBusyError(
        f"thread {thread_id} is running in pid {holder.get('pid')} on host {holder.get('host')} "
        f"(since {holder.get('since')}); wait for it to finish or stop it first"
    )


def _lease_key(thread_id: str) -> bytes:
    return hashlib.sha256(("rlm-graph lease\0" + thread_id).encode("utf-8", "surrogatepass")).digest()


class _FileLease:
    """``flock`` on a file beside a SQLite database; the kernel drops it when the process dies."""

    def __init__(self, database: Path, thread_id: str) -> None:
        # In a hidden folder beside the database, so globs of the database's own files skip it.
        self.path = database.parent / ".leases" / f"{database.name}-{_lease_key(thread_id).hex()[:32]}.lock"
        self.thread_id = thread_id
        self.fd: int | None = None

    def acquire(self) -> None:
        import fcntl

        self.path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = _read_holder(fd)
            os.close(fd)
            raise _busy(self.thread_id, holder) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, json.dumps({**_holder(), "thread_id": self.thread_id}).encode(), 0)
        self.fd = fd

    def release(self) -> None:
        if self.fd is not None:
            os.close(self.fd)  # closing drops the lock; the file stays (unlinking it would race)
            self.fd = None


def _read_holder(fd: int) -> dict[str, Any] | None:
    try:
        data = os.pread(fd, 4096, 0)
        holder = json.loads(data) if data else None
    except (OSError, ValueError):
        return None
    return holder if isinstance(holder, dict) else None


class _PostgresLease:
    """``pg_try_advisory_lock``: the server drops it when the holder's connection ends."""

    def __init__(self, saver: Any, thread_id: str) -> None:
        self.saver, self.thread_id = saver, thread_id
        self.key = int.from_bytes(_lease_key(thread_id)[:8], "big", signed=True)
        self.conn: Any = None
        self.give_back: Callable[[], None] | None = None

    def _connect(self) -> None:
        url = getattr(self.saver, "_rlm_url", None)
        if url is not None:
            from psycopg import Connection

            self.conn = Connection.connect(url, autocommit=True)
            self.give_back = self.conn.close
            return
        conn = self.saver.conn
        if hasattr(conn, "getconn"):  # a pool: keep one connection out of it while the lease lasts
            self.conn = conn.getconn()
            self.give_back = lambda: conn.putconn(self.conn)
        else:  # the saver's own connection; its lock keeps our statements apart from its own
            self.conn = conn
            self.give_back = None

    @contextlib.contextmanager
    def _cursor(self) -> Iterator[Any]:
        lock = getattr(self.saver, "lock", None) if self.give_back is None else None
        with lock if lock is not None else contextlib.nullcontext():
            with self.conn.cursor() as cur:
                yield cur

    def acquire(self) -> None:
        self._connect()
        try:
            with self._cursor() as cur:
                cur.execute("SELECT pg_try_advisory_lock(%s)", (self.key,))
                row = cur.fetchone()
                got = row[0] if not isinstance(row, dict) else next(iter(row.values()))
                cur.execute(_LEASE_TABLE)
                if not got:
                    cur.execute("SELECT pid, host, since FROM rlm_graph_leases WHERE thread_id = %s", (self.thread_id,))
                    found = cur.fetchone()
                    holder = dict(found) if isinstance(found, dict) else dict(zip(("pid", "host", "since"), found)) if found else None
                    raise _busy(self.thread_id, holder)
                me = _holder()
                cur.execute(
                    "INSERT INTO rlm_graph_leases (thread_id, pid, host, since) VALUES (%s, %s, %s, %s) "
                    "ON CONFLICT (thread_id) DO UPDATE SET pid = EXCLUDED.pid, host = EXCLUDED.host, since = EXCLUDED.since",
                    (self.thread_id, me["pid"], me["host"], me["since"]),
                )
        except BaseException:
            self._close()
            raise

    def release(self) -> None:
        try:
            with self._cursor() as cur:
                cur.execute("SELECT pg_advisory_unlock(%s)", (self.key,))
        except Exception:  # the connection is gone, and the lock with it
            pass
        self._close()

    def _close(self) -> None:
        if self.give_back is not None:
            try:
                self.give_back()
            except Exception:
                pass
        self.conn, self.give_back = None, None


_LEASE_TABLE = "CREATE TABLE IF NOT EXISTS rlm_graph_leases (thread_id text PRIMARY KEY, pid integer, host text, since text)"


class _LocalLease:
    """For savers that live in this process only: a lock among this process's runners."""

    _held: dict[tuple[int, str], dict[str, Any]] = {}
    _guard = threading.Lock()

    def __init__(self, saver: Any, thread_id: str) -> None:
        self.key = (id(saver), thread_id)
        self.thread_id = thread_id

    def acquire(self) -> None:
        with self._guard:
            if self.key in self._held:
                raise _busy(self.thread_id, self._held[self.key])
            self._held[self.key] = _holder()

    def release(self) -> None:
        with self._guard:
            self._held.pop(self.key, None)


def _lease_for(saver: Any, thread_id: str) -> Any:
    kind = type(saver).__name__
    if "Postgres" in kind and hasattr(saver, "conn"):
        return _PostgresLease(saver, thread_id)
    database = _sqlite_file(saver)
    if database is not None:
        return _FileLease(database, thread_id)
    return _LocalLease(saver, thread_id)


def _sqlite_file(saver: Any) -> Path | None:
    """The file of a SQLite saver's main database (None in memory, or for another saver)."""
    conn = getattr(saver, "conn", None)
    if conn is None or type(conn).__module__ != "sqlite3":
        return None
    try:
        rows = conn.execute("PRAGMA database_list").fetchall()
    except Exception:
        return None
    for _, name, file in rows:
        if name == "main" and file:
            return Path(file)
    return None
