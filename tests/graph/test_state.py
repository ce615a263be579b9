from langchain_core.messages import AIMessage, HumanMessage

from rlm_graph.graph.state import CLEAR, add_usage, append_batches, append_turns, merge_answers, total_cost, total_tokens


def test_add_usage_sums_per_model() -> None:
    a = {"m": {"calls": 1, "input_tokens": 10, "output_tokens": 2, "cost_usd": 0.5}}
    b = {"m": {"calls": 2, "input_tokens": 5, "output_tokens": 1, "cost_usd": 0.25}, "s": {"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.0}}
    out = add_usage(a, b)
    assert out["m"] == {"calls": 3, "input_tokens": 15, "output_tokens": 3, "cost_usd": 0.75}
    assert out["s"]["calls"] == 1
    assert a["m"]["calls"] == 1  # inputs are not mutated


def test_unknown_cost_stays_unknown() -> None:
    out = add_usage({"m": {"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": 0.1}}, {"m": {"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": None}})
    assert out["m"]["cost_usd"] is None
    assert total_tokens(out) == 4
    assert total_cost(out) == 0.0


def test_missing_usage_is_counted_as_unknown() -> None:
    out = add_usage({}, {"m": {"calls": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": None, "unknown_usage": 1}})
    out = add_usage(out, {"m": {"calls": 1, "input_tokens": 0, "output_tokens": 0, "cost_usd": None, "unknown_usage": 1}})
    assert out["m"]["unknown_usage"] == 2 and out["m"]["calls"] == 2


def test_merge_answers_collects_and_clears() -> None:
    out = merge_answers({"a": {"text": "1"}}, [{"b": {"text": "2"}}, {"c": {"text": "3"}}])
    assert set(out) == {"a", "b", "c"}
    assert merge_answers(out, [CLEAR]) == {}
    assert merge_answers(out, [{"d": {}}, CLEAR, {"e": {}}]) == {"e": {}}  # a clear drops what came before it


def test_append_batches_keeps_order_and_does_not_mutate() -> None:
    cur = [1]
    assert append_batches(cur, [[2, 3], None, (4,)]) == [1, 2, 3, 4]
    assert cur == [1]
    assert append_batches(None, []) == []


def test_append_turns_turns_langchain_messages_back_into_dicts() -> None:
    out = append_turns([{"role": "user", "content": "a"}], [(AIMessage("b"),), [HumanMessage("c")], ({"role": "user", "content": "d"},)])
    assert out == [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}, {"role": "user", "content": "c"}, {"role": "user", "content": "d"}]


def test_delta_reducers_are_batching_invariant() -> None:
    """DeltaChannel replays saved writes in batches of any size: folding twice equals folding once."""
    xs, ys = [[1], [2, 3]], [[4]]
    assert append_batches(append_batches([0], xs), ys) == append_batches([0], xs + ys)
    a, b = [{"k1": {"text": "1"}}, CLEAR], [{"k2": {"text": "2"}}]
    assert merge_answers(merge_answers({"k0": {}}, a), b) == merge_answers({"k0": {}}, a + b)


def test_merge_tasks_appends_and_updates_by_index() -> None:
    from rlm_graph.graph.state import merge_tasks, task_start

    out = merge_tasks(None, [{"index": 0, "query": "a", "iteration": 0}])
    out = merge_tasks(out, [{"index": 0, "answer": "1", "stopped_by": "final"}, {"index": 1, "query": "b", "iteration": 4}])
    assert out == [
        {"index": 0, "query": "a", "iteration": 0, "answer": "1", "stopped_by": "final"},
        {"index": 1, "query": "b", "iteration": 4},
    ]
    assert merge_tasks(out, [{"query": "c", "iteration": 9}])[-1] == {"query": "c", "iteration": 9, "index": 2}
    assert out[0]["query"] == "a" and len(out) == 2  # inputs are not mutated
    assert task_start({"tasks": out}) == 4 and task_start({}) == 0
