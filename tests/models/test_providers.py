"""``provider:model`` specs through LangChain's init_chat_model: built when installed, one line naming the install when not."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from langchain_anthropic import ChatAnthropic

from rlm_graph import RLM, ConfigurationError, create_rlm_graph
from rlm_graph.models import resolve_model


def test_an_anthropic_spec_builds_the_model_with_the_rlm_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", "test-key")  # constructing makes no call
    rlm = RLM("anthropic:claude-3-5-haiku-latest", checkpointer=False, reply_tokens=512, timeout=30.0, max_retries=1)
    model = rlm.settings.model
    assert isinstance(model, ChatAnthropic) and model.model == "claude-3-5-haiku-latest"
    assert (model.max_tokens, model.temperature, model.max_retries, model.default_request_timeout) == (512, 0.0, 1, 30.0)
    assert rlm.settings.model_label == rlm.settings.sub_label == "claude-3-5-haiku-latest"
    assert rlm.settings.context.model == "anthropic:claude-3-5-haiku-latest"  # the settings hold the spec, not the object
    # the graph factory and a sub-model of another provider take the same specs
    graph = create_rlm_graph("anthropic:claude-3-5-haiku-latest", sub_model="anthropic:claude-3-5-sonnet-latest")
    assert graph.get_context_jsonschema()["properties"]["sub_model"]["anyOf"][0] == {"type": "string"}


def test_a_provider_key_is_needed_before_the_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    with pytest.raises(ConfigurationError, match="no API key for model spec 'anthropic:claude-x'.*pass api_key"):
        resolve_model("anthropic:claude-x")
    assert resolve_model("anthropic:claude-x", api_key="k").model.anthropic_api_key.get_secret_value() == "k"  # type: ignore[attr-defined]


def test_an_unknown_provider_names_the_known_ones() -> None:
    with pytest.raises(ConfigurationError, match=r"unknown model provider 'nosuch' .*anthropic.*google_genai.*ollama"):
        resolve_model("nosuch:model")


def _cli_error(blocked: str, tmp_path: Path) -> subprocess.CompletedProcess[str]:
    """``rlm-graph run`` with an anthropic spec in a process where ``blocked`` cannot be imported."""
    (tmp_path / "c.txt").write_text("abc")
    code = (f"import sys; sys.modules[{blocked!r}] = None\n"
            "from rlm_graph.cli import main\n"
            "sys.exit(main(['run', '--context', 'c.txt', '--query', 'q', '--model', 'anthropic:claude-3-5-haiku-latest']))")
    env = {**os.environ, "ANTHROPIC_API_KEY": "test-key", "LANGSMITH_TRACING": "false"}
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)


def test_a_missing_provider_package_is_one_line_naming_the_install(tmp_path: Path) -> None:
    done = _cli_error("langchain_anthropic", tmp_path)
    assert done.returncode == 2
    assert done.stderr.strip() == ("rlm-graph: error: model spec 'anthropic:claude-3-5-haiku-latest' needs the "
                                   "langchain-anthropic package: pip install langchain-anthropic")


def test_missing_langchain_names_the_providers_extra(tmp_path: Path) -> None:
    done = _cli_error("langchain", tmp_path)
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "pip install 'rlm-graph[providers]'" in done.stderr
