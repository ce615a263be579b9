"""The budget ledger: reservations, settlement, children's books, and the state's ``reserved`` reducer."""

from __future__ import annotations

import threading

import pytest

from rlm_graph.graph.ledger import Ledger, Spend, over, spend_of, worst_case
from rlm_graph.graph.settings import Limits
from rlm_graph.graph.state import CLEAR, merge_reserved
from rlm_graph.models.tokens import MESSAGE_OVERHEAD, count_tokens, method_for, ratio_tokens


def test_a_reservation_that_does_not_fit_is_refused_and_names_the_budget() -> None:
    ledger = Ledger(Limits(max_tokens=2100, max_subcalls=5))
    assert ledger.reserve("root", "a", Spend(tokens=1029, calls=1)) is None
    assert ledger.reserve("root", "b", Spend(tokens=1029, calls=1)) is None
    assert ledger.reserve("root", "c", Spend(tokens=1029, calls=1)) == "max_tokens"
    assert ledger.total() == Spend(tokens=2058, calls=2)
    ledger.settle("root", "a", Spend(tokens=1000, calls=1))
    ledger.release("root", "b")  # the call failed before it was made
    assert ledger.total() == Spend(tokens=1000, calls=1)
    assert ledger.held() == Spend()
    assert ledger.reserve("root", "c", Spend(tokens=1029, calls=1)) is None  # room again


def test_parallel_reservations_send_only_what_fits() -> None:
    ledger = Ledger(Limits(max_tokens=2100))
    start = threading.Barrier(16)
    granted: list[str] = []
    lock = threading.Lock()

    def reserve(i: int) -> None:
        start.wait()
        if ledger.reserve("root", f"k{i}", Spend(tokens=1029, calls=1)) is None:
            with lock:
                granted.append(f"k{i}")

    threads = [threading.Thread(target=reserve, args=(i,)) for i in range(16)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(granted) == 2 and ledger.total().tokens == 2058


def test_every_budget_is_checked_and_subcalls_fill_exactly() -> None:
    limits = Limits(max_subcalls=2, max_cost_usd=0.01)
    assert over(limits, Spend(calls=2)) is None and over(limits, Spend(calls=3)) == "max_subcalls"
    assert over(limits, Spend(cost=0.01)) is None and over(limits, Spend(cost=0.0101)) == "max_cost_usd"
    assert over(Limits(max_subcalls=None), Spend(tokens=10**9, cost=1e9, calls=10**6)) is None  # unlimited


def test_children_draw_on_one_ledger_and_their_spend_moves_to_the_parent_once() -> None:
    ledger = Ledger(Limits(max_tokens=1000))
    ledger.sync("root", parent=None, settled=Spend(tokens=100), held={})
    assert ledger.reserve("root", "c0.r0.p0", Spend(calls=1)) is None  # the child run itself
    ledger.sync("child", parent="root", settled=Spend(), held={})
    assert ledger.reserve("child", "turn1", Spend(tokens=600)) is None
    assert ledger.reserve("root", "other", Spend(tokens=400)) == "max_tokens"  # the child's hold counts for the root too
    ledger.settle("child", "turn1", Spend(tokens=300))
    assert ledger.total() == Spend(tokens=400, calls=1)
    ledger.adopt("root", "c0.r0.p0", "child", Spend(tokens=300, calls=1))
    assert not ledger.has("child") and ledger.total() == Spend(tokens=400, calls=1)
    # the parent's next step reads its book from its state, which now holds the child's usage
    ledger.sync("root", parent=None, settled=Spend(tokens=400, calls=1), held={})
    assert ledger.total() == Spend(tokens=400, calls=1)


def test_a_sync_drops_the_books_of_children_that_never_returned() -> None:
    ledger = Ledger(Limits(max_tokens=1000))
    ledger.sync("root", parent=None, settled=Spend(), held={})
    ledger.sync("child", parent="root", settled=Spend(tokens=500), held={"turn3": Spend(tokens=400)})
    ledger.sync("grandchild", parent="child", settled=Spend(tokens=50), held={})
    assert ledger.total().tokens == 950
    ledger.sync("root", parent=None, settled=Spend(tokens=20), held={})  # the child's run failed; the root carries on
    assert ledger.total().tokens == 20 and not ledger.has("grandchild")


def test_a_book_opened_from_a_snapshot_settles_folded_holds() -> None:
    # A new process re-runs two tasks of a fan-out: the snapshot holds the run's spend with all
    # four holds folded in; two tasks had finished before the kill (their settlements are in the
    # checkpoint, not here), the two re-run settle theirs.
    ledger = Ledger(Limits(max_tokens=10_000))
    hold = Spend(tokens=1029, calls=1)
    assert ledger.ensure("root", parent=None, settled=Spend(tokens=15) + hold + hold + hold + hold)
    assert not ledger.ensure("root", parent=None, settled=Spend())  # opened once
    ledger.settle("root", "c0.r0.p2", Spend(tokens=1000, calls=1), folded=hold)
    ledger.release("root", "c0.r0.p3", folded=Spend(tokens=1029))  # failed: one call, no tokens
    assert ledger.total() == Spend(tokens=15 + 1029 * 2 + 1000, calls=4)
    # the tasks that finished before the kill, read from the checkpoint as the book opens
    ledger = Ledger(Limits(max_tokens=10_000))
    child = Spend(calls=1)
    ledger.ensure("root", parent=None, settled=Spend(tokens=15) + child + child, finished=lambda: [(Spend(tokens=5000, calls=3), child)])
    assert ledger.total() == Spend(tokens=5015, calls=4)


def test_worst_case_prices_the_prompt_and_the_reply_cap() -> None:
    spend = worst_case(100, label="m", reply_cap=1000, prices={"m": (2.0, 10.0)}, calls=1)
    assert spend == Spend(tokens=1100, cost=100 * 2e-6 + 1000 * 1e-5, calls=1)
    assert worst_case(100, label="other", reply_cap=1000, prices={"m": (2.0, 10.0)}).cost == 0.0
    assert worst_case(100, label="x", reply_cap=900, rate=1e-6).cost == pytest.approx(0.001)


def test_learned_rates_keep_the_highest_cost_per_token() -> None:
    ledger = Ledger(Limits())
    ledger.learn_rate("r", {"r": {"input_tokens": 900, "output_tokens": 100, "cost_usd": 0.001}})
    ledger.learn_rate("r", {"r": {"input_tokens": 1000, "output_tokens": 0, "cost_usd": 0.0005}})
    ledger.learn_rate("r", {"r": {"input_tokens": 10, "output_tokens": 0, "cost_usd": None}})
    assert ledger.rates == {"r": pytest.approx(1e-6)}


def test_spend_of_a_usage_record() -> None:
    usage = {"a": {"calls": 2, "input_tokens": 10, "output_tokens": 5, "cost_usd": 0.25}, "b": {"calls": 1, "input_tokens": 1, "output_tokens": 1, "cost_usd": None}}
    assert spend_of(usage, 3) == Spend(tokens=17, cost=0.25, calls=3)
    assert Spend.from_dict(Spend(5, 0.5, 1).as_dict()) == Spend(5, 0.5, 1)


def test_the_reserved_reducer_adds_settles_and_clears() -> None:
    state = merge_reserved(None, {"a": {"tokens": 1}, "b": {"tokens": 2}})
    state = merge_reserved(state, {"a": None, "c": {"tokens": 3}})
    assert state == {"b": {"tokens": 2}, "c": {"tokens": 3}}
    assert merge_reserved(state, CLEAR) == {}
    assert merge_reserved(state, {"zzz": None}) == state  # settling twice is harmless


def test_token_estimates_are_an_upper_bound_by_the_ratio() -> None:
    assert method_for("qwen2.5-coder") == "ratio" and method_for("scripted") == "ratio"
    assert ratio_tokens("abcdef") == 2 and ratio_tokens("日本語") == 3 and ratio_tokens("ab日") == 2
    text = "The quick brown fox jumps over the lazy dog. " * 20
    assert count_tokens([text, "hi"]) == ratio_tokens(text) + ratio_tokens("hi") + 2 * MESSAGE_OVERHEAD
    assert count_tokens([text]) >= len(text.split())  # at least one token a word


def test_tiktoken_is_used_only_from_its_cache(tmp_path: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlm_graph.models import tokens

    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path))  # empty: the encoding is not there
    tokens._encoder.cache_clear()
    try:
        assert method_for("gpt-4o-mini") == "ratio"  # no download is attempted
    finally:
        tokens._encoder.cache_clear()
