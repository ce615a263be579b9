"""Run the reference library ``rlms`` on one benchmark job. Runs INSIDE the rlms virtual environment.

    <rlms-venv>/bin/python _rlms_driver.py job.json

Standard library plus ``rlms`` only: rlm-graph is not installed there, so nothing here imports it.
The job and the printed result have the same shape as ``rlm_graph.bench.probe``'s. ``rlms`` has
no resume: a job with ``"resume": true`` starts the task over, which is what a user of it would do.

Only the library's public constructor is used, plus two observation points: the OpenAI client's
usage hook (to count root and sub calls apart) and, when the job asks for a fan-out concurrency
other than the library's default, ``LMHandler``'s ``batch_max_concurrent`` default.
"""

from __future__ import annotations

import contextvars
import json
import sys
import time
from collections import Counter
from typing import Any

PROCESS_STARTED = time.monotonic()

_ROLE: contextvars.ContextVar[str] = contextvars.ContextVar("role", default="sub")
TALLY: Counter = Counter()


def _observe_calls() -> None:
    """Count calls and tokens per role (root: a conversation with a system prompt; sub: the rest)."""
    from rlm.clients.openai import OpenAIClient

    def role_of(prompt: Any) -> str:
        return "root" if isinstance(prompt, list) and prompt and prompt[0].get("role") == "system" else "sub"

    completion, acompletion, track = OpenAIClient.completion, OpenAIClient.acompletion, OpenAIClient._track_cost

    def completion_(self, prompt, model=None):  # type: ignore[no-untyped-def]
        token = _ROLE.set(role_of(prompt))
        try:
            return completion(self, prompt, model)
        finally:
            _ROLE.reset(token)

    async def acompletion_(self, prompt, model=None):  # type: ignore[no-untyped-def]
        _ROLE.set(role_of(prompt))  # each gathered call runs in its own context copy
        return await acompletion(self, prompt, model)

    def track_(self, response, model):  # type: ignore[no-untyped-def]
        role = _ROLE.get()
        usage = getattr(response, "usage", None)
        TALLY[role + "_calls"] += 1
        if usage is not None:
            TALLY[role + "_input_tokens"] += int(usage.prompt_tokens or 0)
            TALLY[role + "_output_tokens"] += int(usage.completion_tokens or 0)
        return track(self, response, model)

    OpenAIClient.completion, OpenAIClient.acompletion, OpenAIClient._track_cost = completion_, acompletion_, track_


def _batch_concurrency(n: int) -> None:
    from rlm.core import lm_handler

    init = lm_handler.LMHandler.__init__

    def init_(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        kwargs.setdefault("batch_max_concurrent", n)
        init(self, *args, **kwargs)

    lm_handler.LMHandler.__init__ = init_


def _load(spec: dict[str, Any]) -> Any:
    if "text" in spec:
        return spec["text"]
    with open(spec["path"], encoding="utf-8") as f:
        return json.load(f) if spec.get("format") == "json" else f.read()


def run_job(job: dict[str, Any]) -> dict[str, Any]:
    job_started = time.monotonic()
    from rlm import RLM

    _observe_calls()
    if job.get("max_concurrency"):
        _batch_concurrency(int(job["max_concurrency"]))
    sampling = job.get("sampling_args")
    backend_kwargs = {"model_name": job.get("model") or "scripted", "base_url": job["base_url"], "api_key": job.get("api_key") or "none"}
    if job.get("timeout"):
        backend_kwargs["timeout"] = float(job["timeout"])
    if job.get("retries") is not None:
        backend_kwargs["max_retries"] = int(job["retries"])
    options: dict[str, Any] = {}
    if job.get("sub_base_url"):
        options["other_backends"] = ["openai"]
        options["other_backend_kwargs"] = [{**backend_kwargs, "base_url": job["sub_base_url"]}]
    if sampling:
        options["sampling_args"] = sampling
        if "other_backends" in options:
            options["sub_sampling_args"] = sampling
    runs = []
    context_started = time.monotonic()
    context = _load(job["context"])  # the library takes the context as a Python value
    ready = time.monotonic()
    for i in range(int(job.get("warmup", 0)) + int(job.get("runs", 1))):
        TALLY.clear()
        lib = RLM(
            backend="openai",
            backend_kwargs=dict(backend_kwargs),
            max_iterations=int(job.get("max_iterations", 40)),
            max_timeout=job.get("max_seconds"),
            **options,
        )
        started = time.monotonic()
        answer, error = None, None
        try:
            answer = lib.completion(context, root_prompt=job.get("query") or "q").response
        except Exception as exc:  # the library raises on its limits; keep its best answer
            answer = getattr(exc, "partial_answer", None)
            error = f"{type(exc).__name__}: {str(exc)[:300]}"
        ended = time.monotonic()
        runs.append(
            {
                "warmup": i < int(job.get("warmup", 0)),
                "answer": answer,
                "error": error,
                "started": started,
                "ended": ended,
                "iterations": TALLY["root_calls"],  # its iteration callbacks are never fired (0.1.3)
                "subcalls": TALLY["sub_calls"],
                "usage": {
                    role: {
                        "calls": TALLY[role + "_calls"],
                        "input_tokens": TALLY[role + "_input_tokens"],
                        "output_tokens": TALLY[role + "_output_tokens"],
                    }
                    for role in ("root", "sub")
                },
            }
        )
    from importlib.metadata import version as dist_version

    version = dist_version("rlms")
    return {"process_started": PROCESS_STARTED, "job_started": job_started, "context_started": context_started, "ready": ready, "runs": runs, "library_version": version}


def main() -> None:
    job = json.loads(open(sys.argv[1], encoding="utf-8").read() if len(sys.argv) > 1 else sys.stdin.read())
    json.dump(run_job(job), sys.stdout, default=str)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
