import rlm_graph


def test_public_surface_is_exactly_the_documented_names() -> None:
    exported = {name for name in dir(rlm_graph) if not name.startswith("_")}
    assert set(rlm_graph.__all__) == {
        "RLM", "RLMResult", "RLMContext", "RLMState", "RLMInput", "RLMOutput", "Limits", "create_rlm_graph",
        "RLMError", "ConfigurationError", "ContextError", "ModelError", "RunNotFoundError",
        "RunBusyError", "SandboxError", "SandboxTimeout", "WorkerCrashed", "ProtocolError",
    }
    assert set(rlm_graph.__all__) <= exported
    for name in rlm_graph.__all__:
        assert getattr(rlm_graph, name).__doc__, f"{name} has no docstring"


def test_errors_share_one_base() -> None:
    for name in ("ConfigurationError", "ContextError", "ModelError", "RunNotFoundError", "RunBusyError", "SandboxError", "SandboxTimeout", "WorkerCrashed", "ProtocolError"):
        assert issubclass(getattr(rlm_graph, name), rlm_graph.RLMError)


def test_graph_image_shows_the_rlm_nodes() -> None:
    g = rlm_graph.create_rlm_graph("m", base_url="http://127.0.0.1:9/v1")
    mermaid = g.get_graph().draw_mermaid()
    for node in ("generate", "execute", "check_final", "recurse", "sub_call"):
        assert f"{node}({node})" in mermaid
    assert "recurse -.-> sub_call" in mermaid and "sub_call --> execute" in mermaid
