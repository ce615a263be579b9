from rlm_graph.graph.state import CLEAR, add_usage, merge_answers, total_cost, total_tokens


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
    out = merge_answers({"a": {"text": "1"}}, {"b": {"text": "2"}})
    assert set(out) == {"a", "b"}
    assert merge_answers(out, CLEAR) == {}
