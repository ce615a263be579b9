"""Batches: many questions, each an RLM run of its own, on a local process pool or a Ray cluster.

A batch is a JSONL file, one task a line::

    {"id": "q1", "query": "How many ERROR lines?", "context_path": "/data/server.log"}
    {"id": "q2", "query": "Total for ACME?", "context": "...", "options": {"max_iterations": 10}}

Each task runs in its own checkpoint thread, named by :func:`thread_id_for` from the task's id and
content, in one shared checkpointer (a SQLite file on one machine, Postgres for a cluster). So:

- a task whose worker process dies is run again (by the pool, or by Ray's task retries) and
  resumes from its last checkpoint: no model call that was saved is made again;
- running the same batch again skips the tasks that finished (their results are read back from
  the checkpoints) and resumes the others.

Results are written to a JSONL file as tasks finish, one line per task: ``id``, ``thread_id``,
``status`` ("done" or "failed"), ``answer``, ``stopped_by``, ``iterations``, ``subcalls``,
``usage``, ``seconds``, ``skipped`` (finished in an earlier run) and ``error``.

Example::

    from rlm_graph.batch import BatchSettings, read_tasks, run_batch

    settings = BatchSettings(model="qwen", base_url="http://127.0.0.1:8080/v1", checkpoint="postgresql://...")
    summary = run_batch(read_tasks("tasks.jsonl"), settings, out="results.jsonl", ray="auto")
    print(summary.done, summary.failed)
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import IO, Any

from rlm_graph.errors import ConfigurationError, RLMError
from rlm_graph.graph.settings import Limits

#: Fields a task line may have.
TASK_FIELDS = ("id", "query", "context", "context_path", "options")

#: Times a task is started again after its worker process died.
DEFAULT_RETRIES = 3


@dataclass(frozen=True)
class BatchTask:
    """One line of a batch: a question over a context (inline, or a file every worker can read).

    ``options`` holds :class:`~rlm_graph.graph.settings.Limits` fields for this task only.
    """

    id: str
    query: str
    context: Any = None
    context_path: str | None = None
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def thread_id(self) -> str:
        return thread_id_for(self)


def thread_id_for(task: BatchTask) -> str:
    """The checkpoint thread of ``task``: its id, and a digest of its content.

    The same task in a re-run gets the same thread (and is skipped once finished or resumed
    otherwise); another batch that reuses the id for a different question gets another thread.
    """
    content = json.dumps([task.query, task.context, task.context_path, task.options], sort_keys=True, default=str)
    digest = hashlib.sha256(content.encode()).hexdigest()[:12]
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in task.id)[:64]
    return f"batch-{safe}-{digest}"


def read_tasks(path: str | os.PathLike[str]) -> list[BatchTask]:
    """Parse and check a batch file; every problem names its line.

    Raises:
        ConfigurationError: the file is missing, a line is not a valid task, or two tasks share an id.
    """
    source = Path(path)
    try:
        lines = source.read_text(encoding="utf-8").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigurationError(f"cannot read the batch file {source}: {exc}") from exc
    tasks: list[BatchTask] = []
    seen: dict[str, int] = {}
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        task = _parse_task(line, f"{source}:{n}")
        if task.id in seen:
            raise ConfigurationError(f"{source}:{n}: task id {task.id!r} was already used on line {seen[task.id]}")
        seen[task.id] = n
        tasks.append(task)
    if not tasks:
        raise ConfigurationError(f"the batch file {source} holds no tasks")
    return tasks


def _parse_task(line: str, where: str) -> BatchTask:
    try:
        raw = json.loads(line)
    except json.JSONDecodeError as exc:
        raise ConfigurationError(f"{where}: not a JSON object: {exc.msg}") from exc
    if not isinstance(raw, dict):
        raise ConfigurationError(f"{where}: a task is a JSON object, not {type(raw).__name__}")
    unknown = sorted(set(raw) - set(TASK_FIELDS))
    if unknown:
        raise ConfigurationError(f"{where}: unknown field(s) {', '.join(unknown)}; a task has {', '.join(TASK_FIELDS)}")
    tid = raw.get("id")
    if isinstance(tid, bool) or not isinstance(tid, (str, int)) or not str(tid).strip():
        raise ConfigurationError(f"{where}: 'id' must be a non-empty string or a number")
    query = raw.get("query")
    if not isinstance(query, str) or not query.strip():
        raise ConfigurationError(f"{where}: 'query' must be a non-empty string")
    has_inline, path = "context" in raw and raw["context"] is not None, raw.get("context_path")
    if has_inline == (path is not None):
        raise ConfigurationError(f"{where}: give exactly one of 'context' (inline) and 'context_path' (a file)")
    if path is not None and (not isinstance(path, str) or not path.strip()):
        raise ConfigurationError(f"{where}: 'context_path' must be a path")
    options = raw.get("options") or {}
    if not isinstance(options, dict):
        raise ConfigurationError(f"{where}: 'options' must be an object of limits")
    bad = sorted(set(options) - set(Limits.__dataclass_fields__))
    if bad:
        raise ConfigurationError(f"{where}: unknown option(s) {', '.join(bad)}; options are limits: {', '.join(Limits.__dataclass_fields__)}")
    try:
        Limits.from_dict(options)
    except ConfigurationError as exc:
        raise ConfigurationError(f"{where}: {exc}") from exc
    # resolved now: a worker may run in another directory
    return BatchTask(str(tid), query, raw.get("context"), str(Path(path).expanduser().resolve()) if path else None, dict(options))


@dataclass(frozen=True)
class BatchSettings:
    """What every worker needs to build its :class:`~rlm_graph.RLM`: plain values only (they are
    pickled to the workers, possibly on other machines).

    ``checkpoint`` is a SQLite file (one machine) or a ``postgresql://`` URL (any number of
    machines); ``limits`` apply to every task, a task's ``options`` override them.
    """

    model: str | None = None
    sub_model: str | None = None
    base_url: str | None = None
    sub_base_url: str | None = None
    api_key: str | None = None
    sandbox: str = "local"
    sandbox_options: dict[str, Any] = field(default_factory=dict)
    checkpoint: str = ".rlm/checkpoints.sqlite"
    work_dir: str = ".rlm"
    limits: dict[str, Any] = field(default_factory=dict)
    answer_check: bool | None = None
    timeout: float = 600.0
    retries: int = 2


def _absolute(settings: BatchSettings) -> BatchSettings:
    """The same settings with the SQLite file and the work dir as absolute paths (workers may run elsewhere)."""
    from dataclasses import replace

    checkpoint = settings.checkpoint
    if not checkpoint.startswith(("postgres://", "postgresql://")):
        checkpoint = str(Path(checkpoint).expanduser().resolve())
    return replace(settings, checkpoint=checkpoint, work_dir=str(Path(settings.work_dir).expanduser().resolve()))


_RLMS: dict[str, Any] = {}


def _rlm_for(settings: BatchSettings, options: dict[str, Any]) -> Any:
    """This process's RLM for these settings and options (built once per worker process)."""
    key = json.dumps([asdict(settings), options], sort_keys=True, default=str)
    if key not in _RLMS:
        from rlm_graph.rlm import RLM

        _RLMS[key] = RLM(
            settings.model,
            settings.sub_model,
            base_url=settings.base_url,
            sub_base_url=settings.sub_base_url,
            api_key=settings.api_key,
            sandbox=settings.sandbox,
            sandbox_options=dict(settings.sandbox_options),
            checkpointer=settings.checkpoint,
            work_dir=settings.work_dir,
            answer_check=settings.answer_check,
            timeout=settings.timeout,
            max_retries=settings.retries,
            **{**settings.limits, **options},
        )
    return _RLMS[key]


def run_task(task: BatchTask, settings: BatchSettings) -> dict[str, Any]:
    """Run (or resume, or read back) one task in this process; return its result record.

    Errors of the run become a ``"failed"`` record (its checkpoint stays, so a re-run resumes it);
    only the death of the process itself escapes, which is what the pool or Ray retries.
    """
    started = time.monotonic()
    record: dict[str, Any] = {"id": task.id, "thread_id": task.thread_id}
    try:
        rlm = _rlm_for(settings, task.options)
        saved = rlm.graph.get_state({"configurable": {"thread_id": task.thread_id}})
        finished = bool(saved.values) and bool(saved.values.get("stopped_by")) and not saved.next
        if saved.values:
            result = rlm.resume(task.thread_id)
        else:
            context = Path(task.context_path) if task.context_path is not None else task.context
            result = rlm.completion(context, task.query, thread_id=task.thread_id)
    except RLMError as exc:
        return {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": round(time.monotonic() - started, 3)}
    except Exception as exc:  # anything unexpected is still one task's failure, not the batch's
        return {**record, "status": "failed", "error": f"{type(exc).__name__}: {exc}", "seconds": round(time.monotonic() - started, 3)}
    return {
        **record,
        "status": "done",
        "answer": result.answer,
        "stopped_by": result.stopped_by,
        "iterations": result.iterations,
        "subcalls": result.subcalls,
        "usage": result.usage,
        "seconds": round(time.monotonic() - started, 3),
        "skipped": finished,
        "error": None,
    }


@dataclass
class BatchSummary:
    """What a batch did: counts, time, and usage summed over its tasks."""

    total: int
    done: int = 0
    failed: int = 0
    skipped: int = 0
    retried: int = 0
    seconds: float = 0.0
    usage: dict[str, dict[str, Any]] = field(default_factory=dict)
    failures: list[dict[str, Any]] = field(default_factory=list)

    def add(self, record: dict[str, Any]) -> None:
        from rlm_graph.graph.state import add_usage

        if record["status"] == "done":
            self.done += 1
            self.skipped += bool(record.get("skipped"))
            if not record.get("skipped"):
                self.usage = add_usage(self.usage, record.get("usage") or {})
        else:
            self.failed += 1
            self.failures.append({"id": record["id"], "error": record.get("error")})


#: ``on_result(record)`` is called in the driver as each task ends; ``on_start(task_id)`` as it is handed out.
OnResult = Callable[[dict[str, Any]], None]


def run_batch(
    tasks: Sequence[BatchTask],
    settings: BatchSettings,
    *,
    out: str | os.PathLike[str] | None = None,
    workers: int | None = None,
    ray: str | None = None,
    ray_options: dict[str, Any] | None = None,
    retries: int = DEFAULT_RETRIES,
    progress: bool = False,
    on_result: OnResult | None = None,
) -> BatchSummary:
    """Run every task; write each result to ``out`` (JSONL) as it ends; return the summary.

    Args:
        tasks: from :func:`read_tasks`.
        settings: models, sandbox, checkpointer and limits for every task.
        out: the results file (rewritten; one line per task, in the order they end).
        workers: tasks running at once (default: the CPU count, or the Ray cluster's CPUs).
        ray: None for a local process pool; "auto" to connect to the Ray cluster this machine
            knows (``RAY_ADDRESS``, or one started with ``ray start``) or else start a local one;
            any other value is a cluster address (``ray://head:10001``, ``10.0.0.5:6379``).
        ray_options: more keyword arguments for ``ray.init`` (e.g. ``{"num_cpus": 4}``).
        retries: times a task is started again after its worker process died.
        progress: show a live progress bar (done, failed, running, ETA) on stderr.
        on_result: called with each result record as it arrives.

    Raises:
        ConfigurationError: Ray asked for but not installed, or a bad worker count.
    """
    if workers is not None and workers < 1:
        raise ConfigurationError(f"workers must be at least 1, got {workers}")
    summary = BatchSummary(total=len(tasks))
    started = time.monotonic()
    settings = _absolute(settings)
    sink: IO[str] | None = None
    if out is not None:
        Path(out).parent.mkdir(parents=True, exist_ok=True)
        sink = open(out, "w", encoding="utf-8")
    view = _Progress(len(tasks)) if progress else None

    def finished(record: dict[str, Any]) -> None:
        summary.add(record)
        if sink is not None:
            sink.write(json.dumps(record, ensure_ascii=False, default=str) + "\n")
            sink.flush()  # a result on disk survives a crash of the driver
        if view is not None:
            view.ended(record)
        if on_result is not None:
            on_result(record)

    try:
        if view is not None:
            view.start()
        runner = _run_on_ray if ray else _run_on_pool
        summary.retried = runner(list(tasks), settings, finished, workers=workers, ray=ray, ray_options=ray_options or {},
                                 retries=retries, view=view)
    finally:
        if view is not None:
            view.stop()
        if sink is not None:
            sink.close()
    summary.seconds = round(time.monotonic() - started, 3)
    return summary


def _run_on_pool(tasks: list[BatchTask], settings: BatchSettings, finished: OnResult, *, workers: int | None,
                 retries: int, view: "_Progress | None", **_: Any) -> int:
    """A local process pool; a pool broken by a dead worker is replaced and its tasks resubmitted."""
    size = workers or os.cpu_count() or 2
    todo = list(tasks)
    attempts: dict[str, int] = {}
    restarts = 0
    # spawn: a forked copy of a process that runs LangGraph's threads could inherit held locks
    context = multiprocessing.get_context("spawn")
    while todo:
        broken: list[BatchTask] = []
        with ProcessPoolExecutor(max_workers=size, mp_context=context) as pool:
            waiting: dict[Future[dict[str, Any]], BatchTask] = {}
            queue = list(todo)
            while queue or waiting:
                while queue and len(waiting) < size:
                    task = queue.pop(0)
                    waiting[pool.submit(run_task, task, settings)] = task
                    if view is not None:
                        view.running(len(waiting))
                done, _ = wait(waiting, return_when=FIRST_COMPLETED)
                for fut in done:
                    task = waiting.pop(fut)
                    try:
                        finished(fut.result())
                    except BrokenProcessPool:
                        broken.append(task)
                if broken:  # every task still in the pool failed with it: start them again
                    broken += [waiting.pop(f) for f in list(waiting)] + queue
                    queue = []
                if view is not None:
                    view.running(len(waiting))
        todo = []
        if broken:
            restarts += 1
        for task in broken:
            attempts[task.id] = attempts.get(task.id, 0) + 1
            if attempts[task.id] > retries:
                finished({"id": task.id, "thread_id": task.thread_id, "status": "failed",
                          "error": f"its worker process died {attempts[task.id]} times"})
            else:
                todo.append(task)
    return sum(attempts.values())


def _run_on_ray(tasks: list[BatchTask], settings: BatchSettings, finished: OnResult, *, workers: int | None, ray: str,
                ray_options: dict[str, Any], retries: int, view: "_Progress | None") -> int:
    """Ray tasks; a task whose worker died is retried by Ray itself (``max_retries``)."""
    try:
        import ray as ray_lib
    except ImportError as exc:
        raise ConfigurationError("batches on Ray need Ray: pip install 'rlm-graph[ray]'") from exc
    options = {"log_to_driver": False, "include_dashboard": False, **ray_options}
    if not ray_lib.is_initialized():
        try:
            ray_lib.init(address=None if ray == "auto" else ray, **options)
        except Exception as exc:  # connection errors of every kind: one line
            raise ConfigurationError(f"cannot start or reach the Ray cluster {ray!r}: {exc}") from exc
    size = workers or max(1, int(ray_lib.cluster_resources().get("CPU", 1)))
    remote = ray_lib.remote(max_retries=retries, retry_exceptions=False)(run_task)
    queue = list(tasks)
    waiting: dict[Any, BatchTask] = {}
    while queue or waiting:
        while queue and len(waiting) < size:
            task = queue.pop(0)
            waiting[remote.remote(task, settings)] = task
        if view is not None:
            view.running(len(waiting))
        ready, _ = ray_lib.wait(list(waiting), num_returns=1, timeout=1.0)
        for ref in ready:
            task = waiting.pop(ref)
            try:
                finished(ray_lib.get(ref))
            except Exception as exc:  # the worker died more often than max_retries allows
                finished({"id": task.id, "thread_id": task.thread_id, "status": "failed", "error": f"{type(exc).__name__}: {str(exc)[:300]}"})
    return 0  # Ray retries inside the task; its count is not reported to the driver


class _Progress:
    """A rich progress bar on stderr: done and failed counts, tasks running, elapsed time and ETA."""

    def __init__(self, total: int) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.counts = {"done": 0, "failed": 0, "running": 0}
        self.bar = Progress(
            TextColumn("[bold]batch"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("[green]{task.fields[done]} done[/] [red]{task.fields[failed]} failed[/] {task.fields[running]} running"),
            TimeElapsedColumn(),
            TextColumn("ETA"),
            TimeRemainingColumn(),
            console=Console(file=sys.stderr),
        )
        self.task = self.bar.add_task("batch", total=total, **self.counts)

    def start(self) -> None:
        self.bar.start()

    def stop(self) -> None:
        self.bar.stop()

    def running(self, n: int) -> None:
        self.counts["running"] = n
        self.bar.update(self.task, **self.counts)

    def ended(self, record: dict[str, Any]) -> None:
        self.counts["done" if record["status"] == "done" else "failed"] += 1
        self.bar.update(self.task, advance=1, **self.counts)


def write_summary(summary: BatchSummary, stream: IO[str] | None = None) -> None:
    """Print the summary as a small table (rich) on ``stream`` (default stderr)."""
    from rich.console import Console
    from rich.table import Table

    console = Console(file=stream or sys.stderr)
    table = Table(title=f"batch: {summary.total} tasks in {summary.seconds:.1f} s", show_header=False)
    table.add_row("done", f"{summary.done} ({summary.skipped} finished earlier, read from their checkpoints)")
    table.add_row("failed", str(summary.failed))
    if summary.retried:
        table.add_row("restarted", f"{summary.retried} (their worker process died; resumed from checkpoints)")
    for model, u in summary.usage.items():
        table.add_row(f"usage {model}", f"{u.get('calls', 0)} calls, {u.get('input_tokens', 0):,} in + {u.get('output_tokens', 0):,} out tokens")
    console.print(table)
    for f in summary.failures[:10]:
        console.print(f"[red]failed[/] {f['id']}: {f['error']}")
    if len(summary.failures) > 10:
        console.print(f"... and {len(summary.failures) - 10} more failures (see the results file)")


def tasks_from(records: Iterable[dict[str, Any]]) -> list[BatchTask]:
    """Tasks from parsed JSON objects (checked like the lines of a batch file)."""
    return [_parse_task(json.dumps(r), f"task {i}") for i, r in enumerate(records, 1)]
