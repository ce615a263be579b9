"""Shared by the learning-path scripts: pick the model from the environment, print results."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any

from rlm_graph import RLM, RLMError, RLMResult
from rlm_graph.compare import answer_matches


def make_rlm(**options: Any) -> RLM:
    """An RLM on the best model available: RLM_GRAPH_BASE_URL, an API key's provider, or the embedded one."""
    options.setdefault("checkpointer", False)
    if os.environ.get("RLM_GRAPH_BASE_URL"):
        return RLM(os.environ.get("RLM_GRAPH_MODEL", "default"), base_url=os.environ["RLM_GRAPH_BASE_URL"], **options)
    return RLM(os.environ.get("RLM_GRAPH_MODEL"), **options)


def run_or_explain(fn: Any) -> None:
    """Run ``fn``; on a library error print one line and exit 1 instead of a traceback."""
    try:
        fn()
    except RLMError as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(1)
    except KeyboardInterrupt:
        print("\ninterrupted", file=sys.stderr)
        sys.exit(130)


def banner(rlm: RLM, title: str) -> None:
    """One line naming the lesson and the models it runs on."""
    sub = rlm.settings.sub_label
    print(f"== {title} ==  (root model: {rlm.settings.model_label}, sub-calls: {sub})", flush=True)


def report(result: RLMResult, expected: Any) -> bool:
    """Print the answer, the expected answer and whether they match; return the match."""
    correct = answer_matches(result.answer, str(expected))
    print(f"\nRLM answer: {result.answer}")
    print(f"expected:   {expected}")
    print(f"correct:    {correct}")
    print(f"iterations: {result.iterations}, sub-calls: {result.subcalls}, time: {result.execution_time:.1f}s")
    if result.forced:
        print(f"note:       a limit ended the run ({result.stopped_by}); the answer is its forced best guess")
    return correct


def log_file(log_dir: str | Path, result: RLMResult) -> Path | None:
    """The trajectory file a run with ``log_dir`` wrote (named after its thread id)."""
    found = sorted(Path(log_dir).glob(f"rlm_*_{result.thread_id}.jsonl"))
    return found[-1] if found else None


def show_trajectory(path: Path, width: int = 100) -> None:
    """Print each iteration of a trajectory file: the code the model wrote and what it saw back."""
    print(f"\ntrajectory ({path}):")
    for line in path.read_text(encoding="utf-8").splitlines():
        record = json.loads(line)
        if record.get("type") != "iteration":
            continue
        print(f"  iteration {record.get('iteration')}:")
        blocks = record.get("code_blocks") or []
        if not blocks:
            reply = " ".join((record.get("forced_response") or record.get("response") or "").split())
            print(f"    reply:  {reply[:width]}")
        for block in blocks:
            code = (block.get("code") or "").strip().splitlines()
            out = " ".join((block["result"].get("stdout") or block["result"].get("stderr") or "(no output)").split())
            for c in code[:6]:
                print(f"    code:   {c[:width]}")
            if len(code) > 6:
                print(f"    code:   ... ({len(code) - 6} more lines)")
            print(f"    output: {out[:width]}")
            calls = block["result"].get("rlm_calls") or []
            if calls:
                print(f"    sub-calls: {len(calls)}")
        if record.get("final_answer") is not None:
            print(f"    FINAL:  {record['final_answer']}")
