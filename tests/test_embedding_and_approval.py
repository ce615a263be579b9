"""The RLM graph as a subgraph of a user's graph, and human approval of code before it runs."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from rlm_graph import RLM
from tests.conftest import repl

sys.path.insert(0, str(Path(__file__).parents[1] / "examples"))


def test_embedded_as_a_node_of_a_user_graph(scripted: Any) -> None:
    import embed_subgraph

    srv = scripted([repl("total = sum(int(l.split()[2]) for l in context.splitlines())\nprint(total)"), "FINAL(total)"])
    app = embed_subgraph.build("scripted", srv.base_url)
    config = {"configurable": {"thread_id": "embed-1"}}
    doc = "\n".join(f"order {i}: {i * 3} units" for i in range(200))
    out = app.invoke({"question": "How many units?", "document": doc}, config)
    assert out["answer"].startswith("Q: How many units?\nA: 59700 (")
    # the RLM's steps were checkpointed by the parent, under the node's namespace
    nested = [s for s in app.get_state_history(config)]
    assert nested and app.get_state(config).values["tokens"] > 0
    subgraph_ns = {t.config["configurable"].get("checkpoint_ns", "") for t in app.checkpointer.list(None)}
    assert any(ns.startswith("ask_rlm:") for ns in subgraph_ns), subgraph_ns


def test_approve_edit_and_reject_from_python(scripted: Any, tmp_path: Path) -> None:
    srv = scripted([repl("print('original')"), repl("print('second')"), 'FINAL("ok")'])
    decisions = iter([{"action": "edit", "code": "print('edited')"}, {"action": "reject", "reason": "no thanks"}])
    seen: list[str] = []

    def on_approve(code: str) -> Any:
        seen.append(code)
        return next(decisions)

    rlm = RLM("scripted", base_url=srv.base_url, approve_code=True, on_approve=on_approve, checkpointer=tmp_path / "cp.sqlite")
    result = rlm.completion("ctx", "q")
    assert result.answer == "ok" and seen == ["print('original')", "print('second')"]
    prompts = [r["prompt"] for r in srv.root_requests()]
    assert "edited" in prompts[1] and "Not run: no thanks" in prompts[2]


def test_interrupted_run_waits_and_resumes_with_a_decision(scripted: Any, tmp_path: Path) -> None:
    srv = scripted([repl("x = 21 * 2\nprint(x)"), "FINAL(x)"])
    rlm = RLM("scripted", base_url=srv.base_url, approve_code=True, checkpointer=tmp_path / "cp.sqlite")
    first = rlm.completion("ctx", "q", thread_id="hitl")
    assert first.interrupted and first.pending_code == "x = 21 * 2\nprint(x)" and first.answer is None
    # a new RLM object (as after a restart) finds the run and approves the code
    again = RLM("scripted", base_url=srv.base_url, approve_code=True, checkpointer=tmp_path / "cp.sqlite")
    done = again.resume("hitl", True)
    assert done.answer == "42" and not done.interrupted
    assert len(srv.root_requests()) == 2


def test_the_embedding_example_runs_on_the_default_model_with_no_rlm_settings(scripted: Any, tmp_path: Path) -> None:
    """No RLM_GRAPH_* variables: the example takes the default model (here an OpenAI key's provider)."""
    srv = scripted([repl("total = sum(int(l.split()[2]) for l in context.splitlines())\nprint(total)"), "FINAL(total)"])
    env = {"PATH": os.environ["PATH"], "HOME": str(tmp_path), "OPENAI_API_KEY": "test-key", "OPENAI_BASE_URL": srv.base_url, "LANGSMITH_TRACING": "false"}
    script = Path(__file__).parents[1] / "examples" / "embed_subgraph.py"
    done = subprocess.run([sys.executable, str(script)], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.startswith("Q: How many units in all orders together?\nA: 59700 (")
    assert len(srv.root_requests()) == 2
