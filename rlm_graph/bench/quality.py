"""Answer quality: the same seeded tasks through rlm-graph, one plain call, and the reference ``rlms``.

Every method talks to the same OpenAI-compatible endpoint (by default the embedded model servers:
root and sub). Each task's outcome is written as one JSON file, ``<out>/<method>/<task id>.json``,
as soon as it is known, so a long run can be stopped and picked up again with ``skip_existing``.
rlm-graph's trajectories (JSONL) go to ``<out>/trajectories/<task id>/``.

The tasks are the older suites (``tasks``: smoke, sniah, ...) or the generalisation families of
:mod:`rlm_graph.bench.families` (``split``: dev or test, optionally some ``families``; or ``task_ids``).
A family task's record also carries its split, family, generator, shape and seed, which
:mod:`rlm_graph.bench.scoreboard` groups into per-family scores.

- ``rlm``: :class:`rlm_graph.RLM` with its defaults for that model.
- ``base``: one plain call, the context cut to what fits the model's window (its head; the prompt
  says it was cut). The cut starts at ``window_tokens * 4`` characters and shrinks by 15 % each time
  the server answers that the prompt is too long, so the base model sees as much as it can.
- ``rlms``: the reference library, in its own virtual environment (see :mod:`rlm_graph.bench.jobs`),
  with its own prompt and defaults, pointed at the same root and sub servers.
"""

from __future__ import annotations

import json
import re
import shutil
import tempfile
import time
import traceback
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlm_graph.bench import METHODS, jobs
from rlm_graph.bench.measure import source_revision
from rlm_graph.bench.tasks import SUITES, Task, load_suite, score
from rlm_graph.errors import ConfigurationError
from rlm_graph.progress_bar import Steps


Progress = Callable[[str], None]


@dataclass
class QualityConfig:
    """A quality run: which methods, which tasks, which endpoint, which limits."""

    methods: Sequence[str] = ("rlm", "base")
    tasks: Sequence[str] = ("smoke",)
    n: int = 2
    seed: int = 0
    model: str | None = None  # a model name on base_url; None or "local" for the embedded servers
    base_url: str | None = None
    sub_base_url: str | None = None
    api_key: str | None = None
    out: Path = Path("bench/results/quality")
    max_iterations: int = 20
    max_seconds: float = 600.0
    reply_tokens: int = 1024
    base_reply_tokens: int = 256
    window_tokens: int = 8192
    timeout: float = 600.0
    skip_existing: bool = False
    rlms_venv: Path | None = None
    split: str | None = None  # "dev" or "test": the family tasks of that split instead of ``tasks``
    families: Sequence[str] = ()  # with ``split``: only these families
    per_slot: int = 1  # with ``split``: seeds per composition slot
    task_ids: Sequence[str] = ()  # family task ids to run (instead of ``tasks`` and ``split``)
    extra: dict[str, Any] = field(default_factory=dict)


# -- tasks -----------------------------------------------------------------------------------


def parse_size(text: str) -> int:
    """'8k' -> 8000, '1m' -> 1000000, '512000' -> 512000."""
    m = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kKmMgG]?)\s*", text)
    if not m:
        raise ConfigurationError(f"bad size {text!r}: use a number with an optional k, m or g suffix")
    return int(float(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000, "g": 1_000_000_000}[m.group(2).lower()])


def parse_task_spec(spec: str) -> tuple[str, list[int] | None]:
    """'sniah:8k,128k' -> ('sniah', [8000, 128000]); 'smoke' -> ('smoke', None)."""
    name, _, sizes = spec.partition(":")
    name = name.strip()
    if name not in SUITES:
        raise ConfigurationError(f"unknown task suite {name!r}: use one of {', '.join(SUITES)}")
    return name, [parse_size(s) for s in sizes.split(",") if s.strip()] or None


def load_tasks(specs: Sequence[str], n: int, seed: int) -> list[Task]:
    """The tasks named by ``specs`` (see :func:`parse_task_spec`), ``n`` per size."""
    out: list[Task] = []
    for spec in specs:
        name, sizes = parse_task_spec(spec)
        tasks = load_suite(name, sizes=sizes, n=n, seed=seed)
        out += tasks[:n] if name == "smoke" and n < len(tasks) else tasks
    return out


def config_tasks(cfg: QualityConfig) -> list[Task]:
    """The tasks a config names: its task ids, else its split's family tasks, else its suites."""
    from rlm_graph.bench import families

    try:
        if cfg.task_ids:
            return families.load_ids(cfg.task_ids)
        if cfg.split:
            return families.load_split(cfg.split, cfg.families or None, cfg.per_slot)
    except ValueError as exc:
        raise ConfigurationError(str(exc)) from exc
    return load_tasks(cfg.tasks, cfg.n, cfg.seed)


# -- endpoint --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Endpoint:
    model: str
    base_url: str
    sub_base_url: str
    embedded: bool = False  # the embedded llama.cpp servers: rewound before each task (local.rewind)


def resolve_endpoint(cfg: QualityConfig) -> Endpoint:
    """The model name and the root and sub URLs every method uses."""
    if cfg.base_url:
        if not cfg.model or cfg.model == "local":
            raise ConfigurationError("--base-url needs --model NAME (the model's name on that server)")
        return Endpoint(cfg.model, cfg.base_url.rstrip("/"), (cfg.sub_base_url or cfg.base_url).rstrip("/"))
    if cfg.model not in (None, "local"):
        raise ConfigurationError("give --base-url with --model, or --model local for the embedded servers")
    from rlm_graph.models import local

    urls = local.ensure_servers(("root", "sub"))
    return Endpoint(local.DEFAULT_ALIAS, urls["root"], urls["sub"], embedded=True)


# -- methods ---------------------------------------------------------------------------------


def _tokens(usage: dict[str, dict[str, Any]]) -> dict[str, int]:
    inp = sum(int(u.get("input_tokens") or 0) for u in usage.values())
    out = sum(int(u.get("output_tokens") or 0) for u in usage.values())
    return {"input": inp, "output": out, "total": inp + out}


def run_rlm(task: Task, ep: Endpoint, cfg: QualityConfig) -> dict[str, Any]:
    from rlm_graph import RLM

    work = Path(tempfile.mkdtemp(prefix="rlm-quality-"))
    rlm = RLM(
        ep.model,
        base_url=ep.base_url,
        sub_base_url=ep.sub_base_url,
        api_key=cfg.api_key,
        checkpointer=False,
        work_dir=work,
        log_dir=Path(cfg.out) / "trajectories" / task.id,
        reply_tokens=cfg.reply_tokens,
        timeout=cfg.timeout,
        max_iterations=cfg.max_iterations,
        max_seconds=cfg.max_seconds,
        **cfg.extra,
    )
    try:
        result = rlm.completion(task.context, task.query)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    usage = result.usage
    return {
        "answer": result.answer,
        "seconds": result.execution_time,
        "iterations": result.iterations,
        "subcalls": result.subcalls,
        "calls": sum(int(u.get("calls") or 0) for u in usage.values()),
        "tokens": _tokens(usage),
        "stopped_by": result.stopped_by,
        "confirmed": result.confirmed,
    }


#: The base method's prompt: the context first, then the question (a small model follows the last line best).
BASE_PROMPT = """Answer the question about the context below.

Context:
{context}{note}

Question: {query}
Reply with only the answer."""

BASE_CUT_NOTE = "\n[... the context was cut here: only its first {shown:,} of {total:,} characters are shown ...]"


def base_prompt(text: str, query: str, window_chars: int) -> tuple[str, int]:
    """The base prompt with ``text`` cut to its first ``window_chars`` characters, and how many it holds."""
    shown = min(len(text), window_chars)
    note = BASE_CUT_NOTE.format(shown=shown, total=len(text)) if shown < len(text) else ""
    return BASE_PROMPT.format(context=text[:shown], note=note, query=query.strip()), shown


def run_base(task: Task, ep: Endpoint, cfg: QualityConfig) -> dict[str, Any]:
    from langchain_core.messages import HumanMessage

    from rlm_graph.models import resolve_model
    from rlm_graph.models.calls import ContextOverflow, call_model

    text = task.context if isinstance(task.context, str) else json.dumps(task.context)
    model = resolve_model(ep.model, base_url=ep.base_url, api_key=cfg.api_key, max_tokens=cfg.base_reply_tokens, timeout=cfg.timeout)
    window = (cfg.window_tokens - cfg.base_reply_tokens - 200) * 4
    start = time.monotonic()
    overflows = 0
    while window > 200:
        prompt, shown = base_prompt(text, task.query, window)
        try:
            reply = call_model(model.model, [HumanMessage(prompt)], label=model.label)
        except ContextOverflow:
            overflows += 1
            window = int(shown * 0.85)
            continue
        return {
            "answer": reply.text.strip(),
            "seconds": round(time.monotonic() - start, 3),
            "iterations": 1,
            "subcalls": 0,
            "calls": 1 + overflows,
            "tokens": _tokens(reply.usage),
            "shown_chars": shown,
            "overflow_retries": overflows,
        }
    return {"answer": None, "seconds": round(time.monotonic() - start, 3), "error": "no cut of the context fit the window"}


def run_rlms(task: Task, ep: Endpoint, cfg: QualityConfig) -> dict[str, Any]:
    python = jobs.ensure_rlms(cfg.rlms_venv)
    context, note = task.context, None
    if isinstance(context, list) and any(not isinstance(x, (str, dict)) for x in context):
        # rlms 0.1.3 measures a list context with len() of each item: a list of numbers raises TypeError
        context, note = json.dumps(context), "a list of numbers was passed as its JSON text (rlms cannot take it as a list)"
    with tempfile.TemporaryDirectory(prefix="rlms-quality-") as tmp:
        is_text = isinstance(context, str)
        path = Path(tmp) / ("context.txt" if is_text else "context.json")
        path.write_text(context if is_text else json.dumps(context), encoding="utf-8")
        sampling = {"temperature": 0.0, "max_tokens": cfg.reply_tokens, "extra_body": {"max_tokens": cfg.reply_tokens}}
        job = {
            "base_url": ep.base_url,
            "sub_base_url": ep.sub_base_url,
            "model": ep.model,
            "api_key": cfg.api_key or "none",
            "context": {"path": str(path), "format": "text" if is_text else "json"},
            "query": task.query,
            "max_iterations": cfg.max_iterations,
            "max_seconds": cfg.max_seconds,
            "sampling_args": sampling,
            "timeout": cfg.timeout,
            "retries": 2,
        }
        res = jobs.run("rlms", job, rlms_python=python, timeout=cfg.max_seconds + cfg.timeout + 60)
    run = res["runs"][0]
    usage = run.get("usage") or {}
    return {
        "answer": run.get("answer"),
        "seconds": round(run["ended"] - run["started"], 3),
        "iterations": run.get("iterations"),
        "subcalls": run.get("subcalls"),
        "calls": sum(int(u.get("calls") or 0) for u in usage.values()),
        "tokens": _tokens(usage),
        "error": run.get("error"),
        "library_version": res.get("library_version"),
        **({"note": note} if note else {}),
    }


_REVISION = source_revision()

RUNNERS: dict[str, Callable[[Task, Endpoint, QualityConfig], dict[str, Any]]] = {"rlm": run_rlm, "base": run_base, "rlms": run_rlms}


# -- the run ---------------------------------------------------------------------------------


def result_path(out: Path, method: str, task: Task) -> Path:
    return Path(out) / method / f"{task.id}.json"


def run_task(method: str, task: Task, ep: Endpoint, cfg: QualityConfig) -> dict[str, Any]:
    """One method on one task: its outcome with the task's facts and the score. Never raises for a
    failed run: the error is recorded and the score is 0."""
    record: dict[str, Any] = {
        "method": method,
        "task": task.id,
        "kind": task.kind,
        **{k: task.metadata[k] for k in ("split", "family", "generator", "shape", "seed") if k in task.metadata},
        "size_chars": task.size_chars,
        "requested_size": 0 if task.kind == "smoke" else task.metadata.get("requested_size", task.size_chars),
        "query": task.query,
        "gold": task.gold,
        "scorer": task.scorer,
        "model": ep.model,
        "endpoint": {"root": ep.base_url, "sub": ep.sub_base_url},
        "max_iterations": cfg.max_iterations,
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
        "revision": _REVISION,
    }
    start = time.monotonic()
    try:
        outcome = RUNNERS[method](task, ep, cfg)
    except Exception as exc:  # a failed run is a result too
        outcome = {"answer": None, "seconds": round(time.monotonic() - start, 3), "error": f"{type(exc).__name__}: {str(exc)[:500]}",
                   "traceback": traceback.format_exc()[-2000:]}
    record.update(outcome)
    record["score"] = round(score(task, record["answer"]) if record.get("answer") is not None else 0.0, 4)
    return record


def run_quality(cfg: QualityConfig, progress: Progress = print, steps: Steps | None = None) -> list[dict[str, Any]]:
    """Run every method on every task; write and return the per-task records.

    Args:
        cfg: what to run and where the results go.
        progress: called with one line per task (method, task, score, seconds, answer).
        steps: called with ``(done, total)`` runs of a method on a task: ``(0, total)`` first,
            then after each (a kept result counts); e.g. a :class:`~rlm_graph.progress_bar.ProgressBar`.
    """
    unknown = set(cfg.methods) - set(METHODS)
    if unknown:
        raise ConfigurationError(f"unknown method(s) {', '.join(sorted(unknown))}: use {', '.join(METHODS)}")
    tasks = config_tasks(cfg)
    endpoint: list[Endpoint] = []  # resolved on the first task to run: kept results need no server

    def ep_once() -> Endpoint:
        if not endpoint:
            endpoint.append(resolve_endpoint(cfg))
            if "rlms" in cfg.methods:
                jobs.ensure_rlms(cfg.rlms_venv)
        return endpoint[0]

    records: list[dict[str, Any]] = []
    total = len(tasks) * len(cfg.methods)
    step = steps or (lambda done, total: None)
    step(0, total)
    for task in tasks:
        for method in cfg.methods:
            path = result_path(cfg.out, method, task)
            if cfg.skip_existing and path.exists():
                records.append(json.loads(path.read_text()))
                progress(f"{method:<5} {task.id:<40} (kept from {path})")
                step(len(records), total)
                continue
            ep = ep_once()
            if ep.embedded:
                # each task starts from the servers' fresh-start prompt cache, so its score does not
                # depend on which task ran before it (see models.local.rewind)
                from rlm_graph.models import local

                local.rewind(list(dict.fromkeys((ep.base_url, ep.sub_base_url))), alias=ep.model)
            rec = run_task(method, task, ep, cfg)
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(rec, indent=1, default=str))
            records.append(rec)
            answer = " ".join(str(rec.get("answer")).split())[:40]
            note = f" error: {rec['error'][:80]}" if rec.get("error") else ""
            progress(f"{method:<5} {task.id:<40} score {rec['score']:.2f}  {rec.get('seconds') or 0:7.1f}s  "
                     f"iters {rec.get('iterations')}  answer {answer!r} gold {task.gold!r}{note}")
            step(len(records), total)
    return records


def summarize(records: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Mean score, time and tokens per (method, kind, size)."""
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in records:
        size = int(r.get("requested_size", r["size_chars"]) or 0)
        groups.setdefault((r["method"], r["kind"], size), []).append(r)
    rows = []
    for (method, kind, size), rs in sorted(groups.items()):
        rows.append(
            {
                "method": method,
                "kind": kind,
                "size_chars": size,
                "n": len(rs),
                "mean_score": round(sum(r["score"] for r in rs) / len(rs), 3),
                "mean_seconds": round(sum(float(r.get("seconds") or 0) for r in rs) / len(rs), 1),
                "mean_tokens": round(sum(int((r.get("tokens") or {}).get("total") or 0) for r in rs) / len(rs)),
                "errors": sum(1 for r in rs if r.get("error")),
            }
        )
    return rows

