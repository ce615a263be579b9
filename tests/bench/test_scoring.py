"""Scorers: right answers in many formats score 1, wrong answers and non-answers score 0."""

from __future__ import annotations

from typing import Any

import pytest

from rlm_graph.bench import families as F
from rlm_graph.bench.scoring import is_non_answer, score
from rlm_graph.bench.tasks import Task

NON_ANSWERS = [
    "not found", "Not found.", "The context does not contain the access code.", "The context doesn't mention it.",
    "The value is not stated in the text.", "I could not find the answer.", "Unknown", "None", "N/A", "", "  ",
    "The output indicates that no matching line exists, so it cannot be determined.", "I don't know.",
    "There is no information about the Orion vault.", "Unable to determine the count.", "not enough information",
]


def _task(scorer: str, gold: Any, query: str = "q", **meta: Any) -> Task:
    return Task("t", "test", "", query, gold, scorer, 0, meta)


@pytest.mark.parametrize("answer", NON_ANSWERS)
def test_non_answers_are_recognised(answer: str) -> None:
    assert is_non_answer(answer)


@pytest.mark.parametrize("answer", ["42", "The access code is 48213.", "Brazil", "SKU-1370-K, SKU-3905-C", "0.75 ** 2",
                                    "Dr. Novak's office is room 4821", "There are 12 errors in the log."])
def test_answers_are_not_taken_for_non_answers(answer: str) -> None:
    assert not is_non_answer(answer)


@pytest.mark.parametrize("scorer, gold, meta", [
    ("exact", "48213", {}), ("exact", "Brazil", {"choices": ["Brazil", "Chile"]}), ("count", 42, {}), ("count_exp", 42, {}),
    ("number", 1234.5, {}), ("items_f1", [327, 708], {"items": "int"}), ("number_rel", 42, {}), ("number_exp", 42, {}),
])
def test_a_non_answer_scores_zero_even_with_the_gold_in_it(scorer: str, gold: Any, meta: dict[str, Any]) -> None:
    g = ", ".join(map(str, gold)) if isinstance(gold, list) else gold
    t = _task(scorer, gold, **meta)
    assert score(t, f"{g}") == 1.0
    for phrase in (f"The context does not contain {g}.", f"{g} was not found", f"Unknown (maybe {g})"):
        assert score(t, phrase) == 0.0, phrase


@pytest.mark.parametrize("answer, expected", [
    ("42", 1), ("42 errors", 1), ("Answer: 42", 1), ("FINAL(42)", 1), ("**42**", 1), ("There are 42 error lines.", 1),
    ("42.0", 1), ("The answer is 42.", 1), ("43", 0), ("4,2", 0), ("forty-two", 0), ("not found", 0),
])
def test_count(answer: str, expected: int) -> None:
    assert score(_task("count", 42, "How many errors are in the log?"), answer) == expected


def test_count_ignores_the_numbers_the_question_mentions() -> None:
    t = _task("count", 17, "How many orders were there in March 2024 in region 5?")
    assert score(t, "In March 2024, region 5 had 17 orders.") == 1.0
    assert score(t, "2024") == 0.0
    assert score(_task("count", 5, "How many errors in region 5?"), "5") == 1.0  # the gold may be one of them


@pytest.mark.parametrize("answer, expected", [
    ("1234.56", 1), ("$1,234.56", 1), ("1,234.56 USD", 1), ("Total: 1234.6", 1), ("about 1235", 1), ("1240", 0),
    ("-1234.56", 0), ("12345.6", 0), ("The total for 2024-03 is 1,234.56.", 1),
])
def test_number_within_a_relative_tolerance(answer: str, expected: int) -> None:
    t = _task("number", 1234.56, "What is the total amount during 2024-03?", rel_tol=0.001)
    assert score(t, answer) == expected


def test_count_exp_gives_partial_credit() -> None:
    t = _task("count_exp", 12, "How many reviews?")
    assert (score(t, "12"), score(t, "13 reviews"), score(t, "10")) == (1.0, 0.75, pytest.approx(0.5625))


@pytest.mark.parametrize("answer, expected", [
    ("SN-482133", 1), ("sn-482133", 1), ("The serial number is SN-482133.", 1), ("'SN-482133'", 1),
    ("SN-482133 or SN-482999", 0), ("SN-482999", 0), ("482133", 0),
])
def test_exact_code_with_rival_values(answer: str, expected: int) -> None:
    t = _task("exact", "SN-482133", choices=["SN-482133", "SN-482999", "SN-482007"])
    assert score(t, answer) == expected


@pytest.mark.parametrize("answer, expected", [
    ("Jade Varga", 1), ("jade varga", 1), ("The manager is JADE VARGA.", 1), ("Jade", 0), ("Jade Varga or Ben Costa", 0),
])
def test_exact_names_ignore_case(answer: str, expected: int) -> None:
    assert score(_task("exact", "Jade Varga", choices=["Jade Varga", "Ben Costa"]), answer) == expected


@pytest.mark.parametrize("answer, expected", [
    ("[327, 708, 824]", 1.0), ("824, 327 and 708", 1.0), ("Reviews #327, #708 and #824.", 1.0), ("review_327\nreview_708\nreview_824", 1.0),
    ("327, 708", 0.8), ("327, 708, 824, 900", 6 / 7), ("100", 0.0), ("none of them", 0.0), ("There are no such reviews.", 0.0),
])
def test_ids_f1(answer: str, expected: float) -> None:
    assert score(_task("items_f1", [327, 708, 824], items="int"), answer) == pytest.approx(expected)


def test_ids_from_a_list_answer() -> None:
    assert score(_task("items_f1", [327, 708], items="int"), [708, 327]) == 1.0  # a FINAL_VAR of a list


@pytest.mark.parametrize("answer, expected", [
    ("SKU-1370-K, SKU-3905-C", 1.0), ("['sku-3905-c', 'sku-1370-k']", 1.0), ("The common SKUs are SKU-1370-K and SKU-3905-C.", 1.0),
    ("SKU-1370-K", 2 / 3), ("SKU-1370-J, SKU-3905-C", 0.5), ("2", 0.0),
])
def test_pattern_items_f1(answer: str, expected: float) -> None:
    t = _task("items_f1", ["SKU-1370-K", "SKU-3905-C"], items="pattern", item_pattern=r"SKU-\d{4}-[A-Z]")
    assert score(t, answer) == pytest.approx(expected)


def test_name_items_f1_reads_names_out_of_the_universe() -> None:
    t = _task("items_f1", ["Maya Novak", "Ben Costa"], items="names", universe=["Maya Novak", "Ben Costa", "Maya Berg", "Ben Cost"])
    assert score(t, "maya novak and BEN COSTA") == 1.0
    assert score(t, "Maya Novak, Maya Berg") == 0.5
    assert score(t, "Ben Cost") == 0.0


def _formats(gold: Any) -> list[Any]:
    if isinstance(gold, list):
        return [", ".join(map(str, gold)), str(list(reversed(gold))), "Answer: " + " and ".join(map(str, gold)), gold]
    if isinstance(gold, (int, float)) and not isinstance(gold, bool):
        return [str(gold), f"{gold:,}", f"Answer: {gold}", f"FINAL({gold})", f"The answer is {gold}."]
    return [gold, gold.upper(), f"Answer: {gold}", f"The answer is {gold}.", f"**{gold}**"]


def test_every_family_task_gold_scores_one_in_several_formats_and_a_wrong_answer_zero() -> None:
    for spec in F.split_specs("dev"):
        if spec.size > 300_000:
            continue
        t = F.make_task(spec)
        for answer in _formats(t.gold):
            assert score(t, answer) == 1.0, (t.id, answer)
        wrong = (t.gold + 3 if isinstance(t.gold, int) else t.gold * 1.5 if isinstance(t.gold, float)
                 else [] if isinstance(t.gold, list) else "Atlantis")
        assert score(t, wrong) < 0.5 and score(t, "The context does not contain it.") == 0.0, t.id
