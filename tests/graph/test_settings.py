"""Run settings: JSON values only in the context, live objects bound at build time, one-line refusals."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pytest
from langchain_openai import ChatOpenAI

from rlm_graph import ConfigurationError, Limits, RLMContext, create_rlm_graph
from rlm_graph.graph.bindings import Bindings
from rlm_graph.graph.runtime import settings_of
from tests.conftest import repl


@dataclass
class _Runtime:
    context: Any


def test_the_three_schemas_generate_and_the_context_is_json() -> None:
    graph = create_rlm_graph("m", base_url="http://127.0.0.1:9/v1")
    assert {"query", "context", "context_path"} <= set(graph.get_input_jsonschema()["properties"])
    assert {"final_answer", "stopped_by", "usage", "iteration"} <= set(graph.get_output_jsonschema()["properties"])
    schema = graph.get_context_jsonschema()
    assert schema["properties"]["model"] == {"anyOf": [{"type": "string"}, {"type": "null"}], "default": None, "title": "Model"}
    assert set(schema["$defs"]["Limits"]["properties"]) == set(Limits.__dataclass_fields__)
    json.dumps(schema)
    assert json.loads(json.dumps(RLMContext(limits=Limits(max_iterations=3)).as_dict()))["limits"]["max_iterations"] == 3


def test_a_context_takes_json_and_refuses_live_objects_or_unknown_keys_in_one_line() -> None:
    assert RLMContext(**{"limits": {"max_iterations": 4}}).limits == Limits(max_iterations=4)
    with pytest.raises(ConfigurationError, match=r"unknown setting\(s\) max_iterations \(limits go under 'limits'"):
        RLMContext(**{"max_iterations": 4})
    with pytest.raises(ConfigurationError, match="setting 'model' must be a string, not ChatOpenAI .*create_rlm_graph"):
        RLMContext(model=ChatOpenAI(model="m", api_key="x"))  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="limits must be a Limits or a dict"):
        RLMContext(limits=5)  # type: ignore[arg-type]


def test_settings_of_merges_what_the_run_names_over_the_graph_settings() -> None:
    bindings = Bindings(settings=RLMContext(model="m", base_url="http://127.0.0.1:9/v1", limits=Limits(max_iterations=7, cell_timeout=9.0)))
    for context in (None, {}, RLMContext()):
        assert settings_of(_Runtime(context), bindings).context == bindings.settings
    for context in ({"limits": {"max_iterations": 2}, "approve_code": True}, RLMContext(limits=Limits(max_iterations=2), approve_code=True)):
        merged = settings_of(_Runtime(context), bindings)
        assert merged.limits == Limits(max_iterations=2, cell_timeout=9.0) and merged.approve_code
        assert (merged.context.model, merged.model_label) == ("m", "m")
    assert settings_of(None, None).context == RLMContext()
    with pytest.raises(ConfigurationError, match="unknown setting"):
        settings_of(_Runtime({"limit": {}}), bindings)
    with pytest.raises(ConfigurationError, match="must be an RLMContext or a dict of settings, not list"):
        settings_of(_Runtime([1]), bindings)


def test_a_bound_model_instance_is_used_until_a_run_names_another_spec(scripted: Any) -> None:
    first = scripted([repl("print(len(context))"), 'FINAL("one")'])
    second = scripted([repl("print(len(context))"), 'FINAL("two")'])
    model = ChatOpenAI(model="bound", base_url=first.base_url, api_key="none", max_retries=0)  # type: ignore[arg-type]
    graph = create_rlm_graph(model, max_iterations=5)
    assert graph.invoke({"query": "q", "context": "abc"})["final_answer"] == "one"
    out = graph.invoke({"query": "q", "context": "abc"}, context={"model": "other", "base_url": second.base_url})
    assert out["final_answer"] == "two" and set(out["usage"]) == {"other"}
    assert len(first.requests) == 2 and len(second.requests) == 2


def test_configurable_keys_are_a_fallback(scripted: Any) -> None:
    srv = scripted(lambda messages: 'FINAL("done")' if "no more" in str(messages[-1]["content"]) else repl(f"print({len(messages)})"))
    graph = create_rlm_graph("scripted", base_url=srv.base_url)
    out = graph.invoke({"query": "q", "context": "abc"}, {"configurable": {"max_iterations": 2}})
    assert (out["stopped_by"], out["iteration"]) == ("max_iterations", 2)
    out = graph.invoke({"query": "q", "context": "abc"}, {"configurable": {"limits": {"max_iterations": 1}}})
    assert (out["stopped_by"], out["iteration"]) == ("max_iterations", 1)
    # a parent graph's own configurable objects are not settings
    assert graph.invoke({"query": "q", "context": "abc"}, {"configurable": {"model": object(), "max_iterations": 1}})["iteration"] == 1
