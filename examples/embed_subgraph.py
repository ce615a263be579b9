"""Embedding the RLM graph as a node of your own LangGraph graph.

Your state has its own keys; a small node maps them to the RLM's input (``query`` and
``context`` or ``context_path``) and its output (``final_answer``, ``usage`` ...) back. With
``checkpointer=None`` the RLM graph uses your graph's checkpointer, so its steps are saved under
the node's namespace and resume with your graph. With no environment variables it runs on the
default model (an API key's provider, else the embedded one: ``make model``); or against any
OpenAI-compatible server:

    RLM_GRAPH_MODEL=qwen RLM_GRAPH_BASE_URL=http://127.0.0.1:8080/v1 python examples/embed_subgraph.py
"""

from __future__ import annotations

import os
import sys
from typing import TypedDict

from langgraph.checkpoint.memory import InMemorySaver
from langgraph.graph import END, START, StateGraph

from rlm_graph import RLMError, create_rlm_graph


class ReportState(TypedDict, total=False):
    question: str
    document: str
    answer: str
    tokens: int


def build(rlm_model: str | None = None, base_url: str | None = None):  # type: ignore[no-untyped-def]
    """A two-step graph: the RLM answers, then a plain node formats the report."""
    rlm = create_rlm_graph(rlm_model, base_url=base_url, max_iterations=10)

    def ask_rlm(state: ReportState) -> ReportState:
        out = rlm.invoke({"query": state["question"], "context": state["document"]})
        used = sum(u["input_tokens"] + u["output_tokens"] for u in out["usage"].values())
        return {"answer": out["final_answer"] or "", "tokens": used}

    def report(state: ReportState) -> ReportState:
        return {"answer": f"Q: {state['question']}\nA: {state['answer']} ({state['tokens']} tokens)"}

    graph = StateGraph(ReportState)
    graph.add_node("ask_rlm", ask_rlm)
    graph.add_node("report", report)
    graph.add_edge(START, "ask_rlm")
    graph.add_edge("ask_rlm", "report")
    graph.add_edge("report", END)
    return graph.compile(checkpointer=InMemorySaver())


def main() -> int:
    try:
        app = build(os.environ.get("RLM_GRAPH_MODEL") or None, os.environ.get("RLM_GRAPH_BASE_URL") or None)
        doc = "\n".join(f"order {i}: {i * 3} units" for i in range(200))
        out = app.invoke({"question": "How many units in all orders together?", "document": doc}, {"configurable": {"thread_id": "demo"}})
    except RLMError as exc:
        print(f"embed_subgraph: {exc}", file=sys.stderr)
        return 2
    print(out["answer"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
