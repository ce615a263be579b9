"""Answer checks that need no model (graph/answers.py)."""

from __future__ import annotations

import pytest

from rlm_graph.graph.answers import (
    asks_yes_no,
    extract_value,
    key_terms,
    names_the_subject,
    next_hop_lines,
    non_answer,
    search_hint,
    stated_value,
    uncounted,
)


@pytest.mark.parametrize(
    "answer",
    ["The context does not contain the code.", "not found", "Not stated in the text", "Unknown",
     "I could not find the value", "There is no mention of Kestrel.", "", "No matching lines."],
)
def test_non_answers(answer: str) -> None:
    assert non_answer(answer)


@pytest.mark.parametrize("answer", ["7731", "Paris", "42 errors", "Known unknowns (a film)"[:6], "No. 5 Rue Royale"[:0] or "Rue Royale"])
def test_answers_are_not_non_answers(answer: str) -> None:
    assert not non_answer(answer)


def test_yes_no_questions() -> None:
    assert asks_yes_no("Is there any error?") and asks_yes_no("Does the log mention disk?")
    assert asks_yes_no("Tell me whether X is listed")
    assert not asks_yes_no("What is the code of Kestrel?") and not asks_yes_no("How many errors are there?")


def test_key_terms_prefer_names_quotes_and_codes() -> None:
    assert key_terms("What is the access code of Kestrel?")[0] == "Kestrel"
    assert key_terms('Which city does "Mara Voss" live in?')[0] == "Mara Voss"
    assert key_terms("How many lines mention payment-service?")[0] == "payment-service"
    assert key_terms("how many warnings are there")[0] == "warnings"
    assert search_hint("What is the code of Kestrel?") == 'search("Kestrel")'
    assert search_hint("?") == 'search("word")'


def test_extract_value_takes_the_one_grounded_number_of_a_sentence() -> None:
    seen = "matches: 42\n[...]"
    assert extract_value("How many errors are there?", "There are 42 errors in the log.", seen) == "42"
    assert extract_value("How many errors?", "42", seen) == "42"
    # two numbers, only one shown: that one
    assert extract_value("How many errors?", "Of 100 lines, 42 are errors.", seen) == "42"
    # not a count question, or several candidates: unchanged
    assert extract_value("Who wrote it?", "It was 42 people", seen) == "It was 42 people"
    assert extract_value("What is the total?", "Between 1,200 and 1,300", "") == "Between 1,200 and 1,300"


def test_stated_value_reads_a_number_the_output_showed() -> None:
    assert stated_value("The total is 540,000.", "540000\n") == "540000"
    assert stated_value("```\n540000\n```", "540000") is None
    assert stated_value("Maybe 7?", "42") is None


def test_a_count_must_be_printed_as_a_result() -> None:
    q = "How many warning entries were logged?"
    hits = "['2024-03-01T00:00:42Z WARN auth: disk at 4%', '2024-03-01T00:04:19Z WARN x']"
    assert uncounted(q, "4", hits)  # only inside printed data
    assert uncounted(q, "10", "2024-03-01 10:00 WARN a\n")  # inside a timestamp
    for shown in ("94", "count: 94", "94 of 1056", "There are 94 matches"):
        assert not uncounted(q, "94", "some data\n" + shown + "\n")
    assert not uncounted("What is the gate?", "4", hits)  # not a count question
    # a sum answered 0 after printing the first lines (the learning path's phase 4)
    assert uncounted("What is the sum of all the numbers?", "0", "['341', '410', '205']")
    assert not uncounted("What is the sum of all the numbers?", "80120", "['341', '410']\n80120\n")
    assert not uncounted("What is the sum of all the numbers?", "80120", "80120.0\n")  # a float sum printed
    assert uncounted("What is the sum of all the numbers?", "80120", "80120.5\n")
    assert not uncounted(q, "about four", hits)  # not a number: other checks judge it
    # a decimal answer to a total or a largest is a result when a short line shows it, rounded or not
    big = "What is the largest single order amount shipped to the North region?"
    records = "[{'region': 'North', 'amount': 1478.45}, {'region': 'North', 'amount': 3027.69}]"
    assert uncounted(big, "1478.45", records)  # read off printed records (dev-tables-max-json s2309)
    assert not uncounted(big, "3027.69", records + "\n3027.69\n")
    assert not uncounted("What is the total amount?", "1014530.17", "1014530.1700000002\n")
    assert not uncounted("What is the total amount?", "1,014,530.17", "total: 1,014,530.17\n")
    assert uncounted("What is the total amount?", "1014530.17", "1014530.3\n")
    # a value printed rounded, the answer at full precision (dev-tables-avg-rows s2109)
    assert not uncounted("What is the average quantity?", "5.857142857142857", "The average quantity per order is 5.86\n")
    assert uncounted("What is the average quantity?", "5.857142857142857", "The average quantity per order is 5.81\n")
    assert not uncounted("What is the gate?", "1478.45", records)  # not a count, a total or an extreme


def test_placeholders_names_and_descriptions_are_not_answers() -> None:
    for answer in ("total", "None", "(empty reply)", "east_stock_items", "The output will be the number of lines"):
        assert non_answer(answer), answer
    for answer in ("Total Recall", "SN-733731", "saffron33", "East", "The Output"):
        assert not non_answer(answer), answer


def test_field_terms_are_the_words_naming_field_values_when_nothing_else_is_asked() -> None:
    from rlm_graph.graph.answers import field_terms

    log = {"word 3": ["[Info]", "[Debug]", "[Warn]", "[Err]"], "word 4": ["CatalogService", "PaymentsService"]}
    assert field_terms("Count the errors logged by CATALOG. Reply with just the number.", log) == ["errors", "CATALOG"]
    assert field_terms("How many warning entries were logged?", log) == ["warning"]
    assert field_terms("How many errors did the Payments service log?", log) == ["errors", "Payments"]
    records = {"level": ["debug", "info", "warning", "error"], "service": ["gateway", "inventory"]}
    assert field_terms("How many WARNING lines come from INVENTORY? Answer with the number only.", records) == ["WARNING", "INVENTORY"]
    assert field_terms("How many orders were there in region east?", {"region": ["East", "West"]}) == ["east"]
    # a condition no field holds, two values of one field, a sum, or no value named: no field count
    assert field_terms("How many orders were there in March 2024 in region east?", {"region": ["East", "West"]}) is None
    assert field_terms("How many requests to /api/orders failed with a 5xx status?", {"status": ["200", "500"]}) is None
    assert field_terms("How many lines are errors or warnings?", log) is None
    assert field_terms("What is the total of the errors?", log) is None
    assert field_terms("How many lines are there?", log) is None
    assert field_terms("How many errors?", None) is None


def test_key_terms_do_not_join_names_across_sentences_but_keep_initials() -> None:
    from rlm_graph.graph.answers import key_terms

    assert key_terms("Count the errors logged by CATALOG. Reply with just the number.", 2) == ["CATALOG", "errors"]
    assert key_terms("Which country is GIANNI S. PETROV's home city in? Reply with just the name.", 1) == ["GIANNI S. PETROV"]


def test_next_hop_lines_are_what_the_context_says_else_about_a_first_step_answer() -> None:
    lines = ["Kofi Vogel lives in Penwick.", "Ana Silva lives in Penwick.", "Cy Do has lived in Penwick since childhood.",
             "Penwick is a city in Brazil.", "Kofi Vogel's home is in Penwick."]
    # the subject's own lines and the same fact about other people are left out; the second step is kept
    assert next_hop_lines("in which country does kofi vogel live?", "Penwick", lines) == ("Kofi Vogel", ["Penwick is a city in Brazil."])
    records = ['{"type": "person", "name": "Kofi Vogel", "city": "Penwick"}', '{"type": "city", "name": "Penwick", "country": "Brazil"}',
               '{"type": "person", "name": "Ana Li", "city": "Penwick"}']
    assert next_hop_lines("Which country is KOFI VOGEL's home city in?", "Penwick", records) == (
        "Kofi Vogel", ['{"type": "city", "name": "Penwick", "country": "Brazil"}'])
    team = ["Iris Castillo works on the Garnet team.", "Jo Ng is a member of the Garnet team.", "The Garnet team is managed by Jade Varga."]
    subject, shown = next_hop_lines("Who manages the team that iris castillo works on?", "Garnet", team) or ("", [])
    assert subject == "Iris Castillo" and shown[0] == "The Garnet team is managed by Jade Varga."  # most of the question's words first
    # nothing to say: the answer is the second step already, the same fact repeats, a number, a count question
    assert next_hop_lines("In which country does Kofi Vogel live?", "Brazil", ["Penwick is a city in Brazil.", "Oslo is in Brazil."]) is None
    gates = ["The Elm Clipper departs from gate F26.", "The Oak Clipper departs from gate F26."]
    assert next_hop_lines("What is the boarding gate of the Elm Clipper?", "F26", gates) is None
    assert next_hop_lines("What is the room of Kofi Vogel?", "4161", ["Kofi Vogel is in room 4161.", "Room 4161 is on floor 4."]) is None
    assert next_hop_lines("How many people live in Penwick?", "Penwick", lines) is None


def test_next_hop_lines_read_prose_sentence_by_sentence_and_put_a_relation_said_once_first() -> None:
    # lines of prose: each holds other people's facts beside the answer's; the first step is said of
    # other people in other words ("X's home is in Penwick") several times, the second step once
    lines = ["Rain fell. Ana Silva's home is in Penwick. Bo Lee lives in Oslo.", "Mo Chan's home is in Penwick.",
             "Kofi Vogel lives in Penwick. Ida Berg's home is in Rome.", "Cy Do's home is in Penwick. The city of Penwick lies in Brazil.",
             "Eli Roth's home is in Penwick. Tea was served."]
    subject, shown = next_hop_lines("In which country does Kofi Vogel live?", "Penwick", lines) or ("", [])
    assert subject == "Kofi Vogel"
    assert shown[0] == "The city of Penwick lies in Brazil."
    assert all(line.count(".") == 1 for line in shown)  # sentences, not whole lines


def test_an_answer_that_repeats_what_the_question_names_is_the_subject() -> None:
    assert names_the_subject("Who manages the team that lena moreau works on? Answer with the name only.", "Lena Moreau")
    assert names_the_subject("In which country does KOFI VOGEL live?", "Vogel")
    assert names_the_subject("What code gets you into the Rowan-vault?", "Rowan-vault")
    # the value asked for, a choice the question offers, a count's word, a number: not the subject
    assert not names_the_subject("Who manages the team that lena moreau works on?", "Gianni Berg")
    assert not names_the_subject("Which city, Paris or Rome, is older?", "Rome")
    assert not names_the_subject("How many errors were logged?", "errors")
    assert not names_the_subject("What is the room of office 4161?", "4161")
    # seen on dev-oolong-most_common: a label of the listed choices is an answer, not the subject
    assert not names_the_subject("A text's label is its sentiment, one of: positive, negative, neutral. Which label is the most common?", "positive")


def test_an_aggregate_in_other_words_is_no_lookup() -> None:
    from rlm_graph.graph.answers import is_lookup

    # "biggest ... by amount" and "combined revenue" ask for a computed number, like "largest" and "total"
    for q in ("What was the biggest order from NORTHWIND RETAIL, by amount?", "What was the combined revenue from orders in May 2024?",
              "What is the largest single order amount?", "How many orders were there?"):
        assert not is_lookup(q), q
    assert is_lookup("What is the boarding gate of the Elm Clipper?")
