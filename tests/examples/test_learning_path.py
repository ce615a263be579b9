"""The learning path on the real embedded model: each examples/learn_*.py script answers correctly.

Slow (tens of seconds to minutes per script on 2 cores) and needs the model runtime, so these
carry the ``model`` marker and run only with ``make test-model`` (``pytest -m model``). Each script
runs as a user would run it: a subprocess with no API key set, in a fresh working directory.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.model

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
SCRIPTS = ["learn_01_basic.py", "learn_02_iterative.py", "learn_03_recursive.py", "learn_04_comparison.py", "learn_05_visualize.py"]
_DROP = ("OPENAI_API_KEY", "OPENROUTER_API_KEY", "RLM_GRAPH_MODEL", "RLM_GRAPH_BASE_URL", "RLM_GRAPH_API_KEY")


@pytest.fixture(scope="module", autouse=True)
def _model_runtime() -> None:
    from rlm_graph.models import local

    if not local.is_llama_server_installed():
        pytest.skip(local.INSTALL_HINT)


def _run(script: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in _DROP}
    env["LANGSMITH_TRACING"] = "false"
    return subprocess.run([sys.executable, str(EXAMPLES / script)], check=False, cwd=cwd, env=env, capture_output=True, text=True, timeout=2400)


@pytest.mark.timeout(2700)
@pytest.mark.parametrize("script", SCRIPTS)
def test_script_answers_correctly_on_the_embedded_model(script: str, tmp_path: Path) -> None:
    out = _run(script, tmp_path)
    shown = f"--- stdout ---\n{out.stdout[-3000:]}\n--- stderr ---\n{out.stderr[-3000:]}"
    assert out.returncode == 0, shown
    assert re.search(r"^correct:\s+True$", out.stdout, re.MULTILINE), shown
    if script in ("learn_02_iterative.py", "learn_05_visualize.py"):
        logs = list((tmp_path / "logs").glob("rlm_*.jsonl"))
        assert len(logs) == 1 and logs[0].stat().st_size > 0, shown
    if script == "learn_05_visualize.py":
        assert "rlm-graph viz logs/" in out.stdout
    if script == "learn_04_comparison.py":
        assert re.search(r"^accuracy: plain \d/3, rlm 3/3$", out.stdout, re.MULTILINE), shown
