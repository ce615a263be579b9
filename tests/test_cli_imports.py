"""The command line imports only what a command needs (its speed is measured in bench/cli_startup.py)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

_HEAVY = ("langgraph", "langchain_core", "langchain_openai", "openai", "pydantic", "langsmith")
_PROBE = "import sys, json\n{body}\nprint(json.dumps(sorted(m for m in sys.modules if m.split('.')[0] in {heavy!r} or m.startswith('rlm_graph'))))"


def _modules_after(body: str, *args: str, env: dict[str, str] | None = None) -> list[str]:
    code = _PROBE.format(body=body, heavy=set(_HEAVY) | {"docker", "e2b", "e2b_code_interpreter", "modal", "psycopg", "sqlite3"})
    done = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=120, env=env)
    assert done.returncode == 0, done.stderr[-2000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_the_parser_and_the_package_import_no_framework() -> None:
    loaded = _modules_after("import rlm_graph, rlm_graph.cli\nrlm_graph.cli.build_parser()\nfrom rlm_graph import ConfigurationError, RLMError")
    assert not [m for m in loaded if m.split(".")[0] in _HEAVY], loaded
    assert "rlm_graph.rlm" not in loaded and "rlm_graph.bench.quality" not in loaded and "rlm_graph.bench.jobs" not in loaded


def test_help_and_argument_errors_answer_without_the_framework() -> None:
    for argv, code in ((["--help"], 0), (["run"], 2), (["bench", "quality", "--method", "nope"], 2)):
        body = f"from rlm_graph.cli import main\ntry:\n    main({argv!r})\nexcept SystemExit as e:\n    assert e.code == {code}, e.code"
        loaded = _modules_after(body)
        assert not [m for m in loaded if m.split(".")[0] in _HEAVY], (argv, loaded)


def test_names_still_resolve_lazily() -> None:
    import rlm_graph

    assert rlm_graph.RLM.__name__ == "RLM" and rlm_graph.Limits().max_iterations == 30
    assert "create_rlm_graph" in dir(rlm_graph)
    try:
        rlm_graph.nothing_here  # noqa: B018
    except AttributeError as exc:
        assert "nothing_here" in str(exc)
    else:
        raise AssertionError("an unknown name must raise AttributeError")


def test_a_run_without_checkpoints_imports_no_checkpoint_or_sandbox_sdk(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(['FINAL("done")'])
    (tmp_path / "c.txt").write_text("a b c")
    body = "from rlm_graph.cli import main\nassert main(sys.argv[1:]) == 0"
    argv = ["run", "--context", str(tmp_path / "c.txt"), "--query", "q", "--model", "m", "--base-url", srv.base_url,
            "--checkpoint", "none", "--work-dir", str(tmp_path / "w"), "--max-iterations", "1"]
    loaded = _modules_after(body, *argv, env={**os.environ, "LANGSMITH_TRACING": "false"})
    assert "langgraph" in loaded and "langchain_openai" in loaded  # what the run needs
    unneeded = [m for m in loaded if m.split(".")[0] in ("docker", "e2b", "e2b_code_interpreter", "modal", "psycopg", "sqlite3")]
    unneeded += [m for m in loaded if m.startswith(("langgraph.checkpoint.sqlite", "langgraph.checkpoint.postgres", "rlm_graph.bench.quality", "rlm_graph.bench.overhead", "rlm_graph.bench.tasks", "rlm_graph.compare", "rlm_graph.viz"))]
    assert not unneeded, unneeded
