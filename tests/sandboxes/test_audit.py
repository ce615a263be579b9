"""The worker's notes on text filters that cannot match, and the context's shape facts.

The 1.5B model's commonest silent mistake on logs and texts was a filter that can never be true
(``"ERROR" in line.lower()``) or a literal the data spells otherwise, followed by an answer that
the data has none. The worker adds a note naming the cause and the search that would find it;
the cell itself runs unchanged.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import run

Start = Callable[..., SandboxSession]

LOG = "\n".join(
    f"2024-05-0{i % 9 + 1} 12:00:0{i % 10} [{'ERROR' if i % 3 == 0 else 'INFO'}] Service-{i % 4}: request done"
    for i in range(60)
) + "\n"


def _loaded(sandbox: Start, tmp_path: Path, text: str, fmt: str = "text") -> SandboxSession:
    path = tmp_path / "ctx.txt"
    path.write_text(text, encoding="utf-8")
    path.chmod(0o644)
    session = sandbox()
    session.load_context(path, fmt)
    return session


def test_a_capital_literal_against_lowered_text_gets_a_note(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, LOG)
    out = run(session, 0, 'n = sum(1 for line in context.splitlines() if "ERROR" in line.lower())\nprint(n)')
    assert out.stdout.strip() == "0"  # the cell ran as written
    assert "'ERROR' has capital letters" in out.stderr and "'error'" in out.stderr and "search('ERROR')" in out.stderr
    # the same filter written right gets no note
    ok = run(session, 1, 'print(sum(1 for line in context.splitlines() if "error" in line.lower()))')
    assert ok.stdout.strip() == "20" and "note:" not in ok.stderr


def test_a_literal_with_other_capitals_or_absent_gets_a_note_only_when_nothing_was_found(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, LOG)
    out = run(session, 0, 'print([l for l in context.splitlines() if "service-2" in l])')
    assert out.stdout.strip() == "[]"
    assert "'service-2' is not in `context` with these capitals" in out.stderr and "search('service-2')" in out.stderr
    out = run(session, 1, 'print(len([l for l in context.splitlines() if "Warning" in l]))')
    assert "'Warning' does not occur in `context` as written" in out.stderr
    # a filter that found something is left alone, even if another literal is absent
    out = run(session, 2, 'print(len([l for l in context.splitlines() if "Service-2" in l or "zzz" in l]))')
    assert out.stdout.strip() == "15" and "note:" not in out.stderr
    # comparisons against other strings (a model's replies) are not about the context: no note unless empty
    out = run(session, 3, 'r = ["yes", "no"]\nprint(sum("yes" in x for x in r))')
    assert out.stdout.strip() == "1" and "note:" not in out.stderr


def test_more_section_title_forms_make_lists_and_a_list_is_found_by_a_near_name(sandbox: Start, tmp_path: Path) -> None:
    dashed = _loaded(sandbox, tmp_path, "--- file: east_stock.txt ---\nS1\nS2\nS3\n\n--- file: west_stock.txt ---\nS2\nS4\n")
    assert dashed.context_meta["lists"] == {"east_stock.txt": 3, "west_stock.txt": 2}
    # a file's name without its extension, or one word only one title has, finds the list
    out = run(dashed, 0, "print(sorted(set(lists['east_stock']) - set(lists['West'])), 'east' in lists, lists.get('north'))")
    assert out.stdout.strip() == "['S1', 'S3'] True None"
    # a name that fits no title (or two) is still a KeyError, which names the lists there are
    out = run(dashed, 1, "lists['stock']")
    assert "KeyError" in str(out.error) and "'east_stock.txt'" in str(out.error)
    colon = _loaded(sandbox, tmp_path, "Attendees 2023:\nana@x.test\nbo@x.test\n\nAttendees 2024:\nbo@x.test\ncy@x.test\n")
    assert colon.context_meta["lists"] == {"Attendees 2023": 2, "Attendees 2024": 2}
    # "Title:" lines are titles only when the text opens with one; a rule of dashes is no title
    for plain in ("some notes\nNext steps:\nx\ny\nOther:\nz\nw\n", "------\nx\ny\n------\nz\nw\n"):
        assert "lists" not in _loaded(sandbox, tmp_path, plain).context_meta


def test_a_cells_own_lists_or_rows_that_fails_or_repeats_the_runners_keeps_the_runners(sandbox: Start, tmp_path: Path) -> None:
    text = "=== Stock at the East warehouse ===\nSKU-1\nSKU-2\nSKU-3\n\n=== Stock at the West warehouse ===\nSKU-2\nSKU-3\nSKU-4\n"
    session = _loaded(sandbox, tmp_path, text)
    # its own split fails: `lists` keeps the runner's, the rest of the cell runs
    code = ("lists = {title: lines for title, lines in context.split('===') if title.strip()}\n"
            "print(sorted(set(lists['Stock at the East warehouse']) & set(lists['Stock at the West warehouse'])))")
    out = run(session, 0, code)
    assert out.error is None and out.stdout.strip() == "['SKU-2', 'SKU-3']"
    assert "your own `lists = ...` failed (ValueError" in out.stderr and "'Stock at the West warehouse' (3 lines)" in out.stderr
    # its own split by line numbers under the runner's names: skipped, said so
    out = run(session, 1, "lists = {'Stock at the East warehouse': context.splitlines()[0:2], 'Stock at the West warehouse': []}\n"
                          "print(len(lists['Stock at the East warehouse']), len(lists['Stock at the West warehouse']))")
    assert out.stdout.strip() == "3 3" and "own `lists = {...}` was skipped" in out.stderr
    # lists of its own under other names, or built otherwise, are its own
    out = run(session, 2, "lists = {'a': [1], 'b': [2]}\nprint(sorted(lists))")
    assert out.stdout.strip() == "['a', 'b']" and "note:" not in out.stderr
    table = _loaded(sandbox, tmp_path, CSV)
    out = run(table, 0, "rows = [dict(zip(['a', 'b'], line.split(',')[9])) for line in context.splitlines()]\nprint(len(rows), rows[0]['customer'])")
    assert out.error is None and out.stdout.strip() == "30 Blue Traders" and "your own `rows = ...` failed (IndexError" in out.stderr


def test_the_conditions_a_question_states_on_a_tables_fields_are_found(sandbox: Start, tmp_path: Path) -> None:
    orders = "order_id,date,customer,region,amount\n" + "\n".join(
        f"{100 + i},2024-0{i % 3 + 1}-1{i % 9},{['Summit Goods', 'Summit Retail', 'Acme'][i % 3]},{['Central', 'East'][i % 2]},{10 + i}.50"
        for i in range(30)) + "\n"
    path = tmp_path / "orders.csv"
    path.write_text(orders, encoding="utf-8")
    session = sandbox()
    # a name in other capitals (not the shorter name inside it), a region in lower case, a month in words
    meta = session.load_context(path, "text", question="How much did SUMMIT GOODS order in region central in February 2024?")
    assert meta["named_values"] == [["date", "2024-02", "month"], ["customer", "Summit Goods", "eq"], ["region", "Central", "eq"]]
    meta = session.load_context(path, "text", question="What is the total during 2024-03 for acme?")
    assert meta["named_values"] == [["date", "2024-03", "month"], ["customer", "Acme", "eq"]]
    # a question that names no value of a field (or a month the data lacks): none
    assert "named_values" not in session.load_context(path, "text", question="What is the total amount in May 2024?")
    # a path the question writes is a prefix of a field's values (however many distinct values it has)
    access = "\n".join(f'10.0.{i}.1 - - [01/Mar/2024:00:00:{i % 60:02d} +0000] "GET /api/{["cart", "orders"][i % 2]}/{i} HTTP/1.1" 200 {i}'
                       for i in range(600))
    log = tmp_path / "access.log"
    log.write_text(access, encoding="utf-8")
    meta = sandbox().load_context(log, "text", question="How many requests to /api/cart (including its sub-paths) failed?")
    assert meta["named_values"] == [["path", "/api/cart", "prefix"]]
    # a test of its own beside the path: the note states the path as a prefix, as the question does (dev-logs-status-text
    # s1200: told "path == '/api/orders'", the 1.5B model tested that and missed the sub-paths)
    logs = sandbox()
    logs.load_context(log, "text", question="How many requests to /api/cart (including its sub-paths) failed with a 5xx status?")
    out = run(logs, 0, "print(len([r for r in rows if r['path'].startswith('/api/cart') and r['method'] == 'POST']))")
    assert "the question does not name method == 'POST'" in out.stderr
    assert "Test only the conditions the question states: path starting with '/api/cart'." in out.stderr
    # a filter that found nothing with a test of its own beside the question's gets a note; one of the question's alone none
    session.load_context(path, "text", question="What is the largest amount of SUMMIT GOODS?")
    out = run(session, 0, "print([r for r in rows if r['customer'] == 'Summit Goods' and r['region'] == 'North'])")
    assert out.stdout.strip() == "[]" and "the question does not name region == 'North'" in out.stderr
    assert "Test only the conditions the question states: customer == 'Summit Goods'." in out.stderr
    out = run(session, 1, "print([r['amount'] for r in rows if r['customer'] == 'Summit Goods' and r['region'] == 'Central'][:2])")
    assert out.stdout.strip() == "[10.5, 16.5]" and "note:" not in out.stderr  # it found rows: no note
    # a lookup's filter (no count, no aggregate) may test what the question does not write: its second step
    session.load_context(path, "text", question="Which region did SUMMIT GOODS order from?")
    out = run(session, 2, "print([r for r in rows if r['customer'] == 'Summit Goods' and r['region'] == 'North'])")
    assert out.stdout.strip() == "[]" and "the question does not name" not in out.stderr


def test_a_slice_of_a_tables_text_gets_a_note_with_a_parsed_row(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, CSV)
    out = run(session, 0, "print(context[:40])")
    assert out.stdout.startswith("order_id,date") and "The whole table is already parsed in `rows`, 30 dicts" in out.stderr
    assert "rows[0] = {'order_id': 100, 'date': '2024-01-10', 'customer': 'Blue Traders', 'amount': 10.5}" in out.stderr
    # computing over `rows`, or a slice of a text that is no table, gets none
    assert "note:" not in run(session, 1, "print(len(rows[:3]))").stderr
    assert "note:" not in run(_loaded(sandbox, tmp_path, "just some words\nand more\n"), 0, "print(context[:4])").stderr


def test_a_csv_header_is_described_as_columns(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, "date,customer,amount\n2024-01-02,Acme,10\n2024-01-03,Beta,12\n")
    meta = session.context_meta
    assert meta["columns"] == ["date", "customer", "amount"] and meta["separator"] == ","
    plain = _loaded(sandbox, tmp_path, "1,2,3\n4,5,6\n")  # numbers are rows, not a header
    assert "columns" not in plain.context_meta


CSV = "order_id,date,customer,amount\n" + "\n".join(
    f"{100 + i},2024-0{i % 3 + 1}-1{i % 9},{['Blue Traders', 'Blue Foods', 'Acme Ltd'][i % 3]},{10 + i}.50" for i in range(30)
) + "\n"


def test_a_field_compared_with_another_spelling_gets_a_note_when_the_total_is_zero(sandbox: Start, tmp_path: Path) -> None:
    session = _loaded(sandbox, tmp_path, CSV)
    rows = "import csv, io\nrows = list(csv.DictReader(io.StringIO(context)))\n"
    # the question wrote the customer in capitals; the data does not: the sum is 0 and a note says why
    out = run(session, 0, rows + 'total = sum(float(r["amount"]) for r in rows if r["customer"] == "BLUE TRADERS")\nprint("total:", total)')
    assert out.stdout.strip() == "total: 0"
    assert "'BLUE TRADERS' is not in `context` with these capitals" in out.stderr and "'blue traders'" in out.stderr
    # a lower-cased field compared with a capitalised literal can never be equal
    out = run(session, 1, 'print(sum(1 for r in rows if r["customer"].strip().lower() == "Blue Foods"))')
    assert out.stdout.strip() == "0" and "'Blue Foods' has capital letters" in out.stderr
    # a month written as words never starts an ISO date
    out = run(session, 2, 'print(sum(float(r["amount"]) for r in rows if r["date"].startswith(("March 2024", "Mar 2024"))))')
    assert out.stdout.strip() == "0" and "'March 2024' does not occur in `context` as written" in out.stderr
    # the same filters written right get no note
    out = run(session, 3, 'print(sum(1 for r in rows if r["customer"] == "Blue Traders" and r["date"].startswith("2024-01")))')
    assert out.stdout.strip() == "10" and "note:" not in out.stderr
    # a model's reply compared with "yes" is not a filter over the data: no note, even at zero
    out = run(session, 4, 'replies = ["no", "no"]\nprint(sum(r.strip().lower() == "yes" for r in replies))')
    assert out.stdout.strip() == "0" and "note:" not in out.stderr


def test_a_text_of_titled_sections_and_records_naming_their_list_are_given_as_lists(sandbox: Start, tmp_path: Path) -> None:
    text = "=== Stock at the East warehouse ===\nSKU-1\nSKU-2\nSKU-3\n\n=== Stock at the West warehouse ===\nSKU-2\nSKU-3\nSKU-4\n"
    session = _loaded(sandbox, tmp_path, text)
    assert session.context_meta["lists"] == {"Stock at the East warehouse": 3, "Stock at the West warehouse": 3}
    out = run(session, 0, "print(sorted(set(lists['Stock at the East warehouse']) & set(lists['Stock at the West warehouse'])))")
    assert out.stdout.strip() == "['SKU-2', 'SKU-3']"
    files = _loaded(sandbox, tmp_path, "==> east.txt <==\na\nb\n==> west.txt <==\nb\nc\n")
    assert files.context_meta["lists"] == {"east.txt": 2, "west.txt": 2}
    records = [{"sku": f"S{i}", "list": "east" if i % 2 else "west"} for i in range(10)]
    grouped = _loaded(sandbox, tmp_path, json.dumps(records), "json")
    assert grouped.context_meta["lists"] == {"west": 5, "east": 5}
    assert run(grouped, 0, "print(lists['east'][:2])").stdout.strip() == "['S1', 'S3']"
    # text before the first title, a single section, records of more keys, a log: no lists
    for plain in ("intro\n=== A ===\nx\ny\n=== B ===\nz\nw\n", "=== A ===\nx\ny\n", LOG):
        assert "lists" not in _loaded(sandbox, tmp_path, plain).context_meta
    wide = [{"sku": f"S{i}", "list": "east", "qty": i} for i in range(10)]
    assert "lists" not in _loaded(sandbox, tmp_path, json.dumps(wide), "json").context_meta


def test_a_cell_that_asks_a_model_gets_no_note_on_its_reply_comparisons(sandbox: Start, tmp_path: Path) -> None:
    # learn_03 on the 1.5B model: reply[0].strip().lower() == "yes" over llm_query_batched replies got
    # "'yes' does not occur in `context`", which is about the data, not the replies.
    session = _loaded(sandbox, tmp_path, CSV)
    code = 'def llm_query_batched(p):\n    return ["no"] * len(p)\nreply = llm_query_batched(["x"])\nprint(sum(1 for r in [reply] if r[0] == "yes"))'
    out = run(session, 0, code)  # (the stand-in llm_query_batched is put back after the cell, with its own note)
    assert out.stdout.strip() == "0" and "'yes' does not occur" not in out.stderr


def test_a_helper_variable_read_as_a_key_of_context_gets_a_note(sandbox: Start, tmp_path: Path) -> None:
    # Seen on the 1.5B model (dev-tables-count-columns): told that `rows` holds the table, it wrote
    # context['rows'], got a KeyError, and printed that the data has no rows until the loop guard stopped it.
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps({"region": ["East", "West", "East"], "amount": [1, 2, 3]}), encoding="utf-8")
    session = sandbox()
    session.load_context(path, "json")
    out = run(session, 0, "print(len([r for r in context['rows'] if r['region'] == 'East']))")
    assert "KeyError" in (out.error or "") and "`rows` is a variable of its own, not a key of `context`" in out.stderr
    out = run(session, 1, "print(len([r for r in rows if r['region'] == 'East']))")
    assert out.stdout.strip() == "2" and "note:" not in out.stderr
    # a loop over one column as if it held rows (seen on dev-tables-count-columns, run again and again
    # after a note naming `rows`) runs over `rows`, and the note says so
    out = run(session, 2, "print(len([r for r in context['amount'] if r['region'] == 'East']))")
    assert out.error is None and out.stdout.strip() == "2"
    assert "context['amount'] holds one column's plain values" in out.stderr and "for row in rows:" in out.stderr
    code = "n = 0\nfor row in context:\n    if row['region'] == 'West':\n        n += row['amount']\nprint(n)"
    out = run(session, 4, code)  # the dict itself (its keys are the column names): the same
    assert out.error is None and out.stdout.strip() == "2" and "context holds the column names" in out.stderr
    # a loop the rows cannot explain still fails, with the note naming `rows`
    out = run(session, 5, "for r in context['amount']:\n    print(r.region)")
    assert "AttributeError" in (out.error or "")
    out = run(session, 3, "print(sum(v for v in context['amount']))")
    assert out.stdout.strip() == "6" and "note:" not in out.stderr  # a column used as a column: no note
    # a text context has no `rows`: reading context['rows'] there is some other mistake, with no such note
    text = _loaded(sandbox, tmp_path, LOG)
    out = run(text, 0, "print(context['rows'])")
    assert out.error and "variable of its own" not in out.stderr


def test_search_over_a_json_text_or_columns_returns_whole_records(sandbox: Start, tmp_path: Path) -> None:
    # Seen on the 1.5B model (dev-tables-max-json): search("Books") on a one-line JSON text returned a window
    # cut mid-record, and it answered with the amount of the record before the match.
    records = [{"id": i, "category": ["Books", "Toys", "Garden"][i % 3], "customer": f"Shop {i % 5}", "amount": 10.5 * i}
               for i in range(40)]
    books = [str(r) for r in records if r["category"] == "Books"]
    columns = {k: [r[k] for r in records] for k in records[0]}
    for data, fmt in ((json.dumps(records), "text"), (json.dumps(columns), "json")):
        path = tmp_path / "ctx.json"
        path.write_text(data, encoding="utf-8")
        session = sandbox()
        meta = session.load_context(path, fmt)
        assert meta["field_values"]["category"] if fmt == "json" else meta["json_values"]["category"]
        out = run(session, 0, "hits = search('books')\nprint(len(hits))\nprint(hits[0])")
        # the field's value (Books) was matched on each record, and each hit is the whole record
        assert out.stdout.splitlines()[-2:] == [str(len(books)), books[0]], out.stdout
        out = run(session, 1, "print(search('Shop 3'))")
        assert out.stdout.strip() == str([str(r) for r in records if r["customer"] == "Shop 3"]), out.stdout
        # a search in a text the cell gives is a plain text search, as before
        out = run(session, 2, "print(search('b', text='a\\nb\\nc'))")
        assert out.stdout.strip() == "['b']"
        # each hit, a text, also reads like its record (dev-tables-max-json: the 1.5B model filtered the
        # hits with row['category'] == 'Clothing' and got "string indices must be integers" five times)
        code = ("hits = search('books')\nkept = [h for h in hits if h['category'] == 'Books']\n"
                "print(len(kept), max(h['amount'] for h in kept), hits[0].get('customer'), hits[0][:5], 'Books' in hits[0])")
        out = run(session, 3, code)
        best = max(r["amount"] for r in records if r["category"] == "Books")
        assert out.stdout.splitlines()[-1] == f"{len(books)} {best} Shop 0 {books[0][:5]} True", (out.stdout, out.stderr)
        out = run(session, 4, "print(search('Shop 3')[0]['colour'])")
        assert "KeyError: 'colour'" in (out.error or "")


def test_a_dict_of_dicts_is_previewed_with_one_entry_of_each_and_a_key_in_other_capitals_gets_a_note(
        sandbox: Start, tmp_path: Path) -> None:
    # Seen on the 1.5B model (dev-multihop-person_country-dict): told only the keys 'people' and 'cities',
    # it set `context` to made-up people and then filtered a list of city names it had invented.
    data = {"people": {"Gianni S. Petrov": {"city": "Yarholm", "age": 33}, "Ana Silva": {"city": "Oslo", "age": 40}},
            "cities": {"Yarholm": {"country": "Poland", "founded": 12}, "Oslo": {"country": "Norway", "founded": 3}}}
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    session = sandbox()
    session.load_context(path, "json")
    preview = session.context_meta["preview"].splitlines()
    assert preview == ["keys: 'people', 'cities'",
                       "context['people']: a dict of 2 entries, e.g. 'Gianni S. Petrov': {'city': 'Yarholm', 'age': 33}",
                       "context['cities']: a dict of 2 entries, e.g. 'Yarholm': {'country': 'Poland', 'founded': 12}"]
    # the question's capitals, copied into a key: the note names the key as the data writes it
    out = run(session, 0, "print(context['people']['GIANNI S. PETROV'])")
    assert "KeyError" in (out.error or "")
    assert "note: the data writes the key 'GIANNI S. PETROV' as 'Gianni S. Petrov': context['people']['Gianni S. Petrov']." in out.error
    out = run(session, 1, "print(context['people']['Nobody'])")
    assert "KeyError" in (out.error or "") and "note:" not in out.error  # no such key in any case: no note
    # a dict of texts keeps its one-line preview
    texts = tmp_path / "texts.json"
    texts.write_text(json.dumps({"r1": "good stuff here", "r2": "bad"}), encoding="utf-8")
    session.load_context(texts, "json")
    assert session.context_meta["preview"] == "keys: 'r1', 'r2'"


def test_search_over_a_dict_of_tables_returns_whole_entries_the_one_a_name_keys_first(sandbox: Start, tmp_path: Path) -> None:
    # Seen on the 1.5B model (dev-multihop-person_country-dict): search("GIANNI S. PETROV") returned a window cut
    # out of one 1 MB "people: {...}" text, and the runner's search for his city found 60 residents before the city.
    people = {f"Person {i}": {"city": "Yarholm" if i % 2 else "Oslo", "age": 20 + i} for i in range(80)}
    people["Gianni S. Petrov"] = {"city": "Yarholm", "age": 33}
    data = {"people": people, "cities": {"Oslo": {"country": "Norway"}, "Yarholm": {"country": "Poland"}}, "note": "plain"}
    path = tmp_path / "ctx.json"
    path.write_text(json.dumps(data), encoding="utf-8")
    session = sandbox()
    session.load_context(path, "json")
    out = run(session, 0, "print(search('GIANNI S. PETROV'))")
    assert out.stdout.strip() == """["context['people']['Gianni S. Petrov']: {'city': 'Yarholm', 'age': 33}"]"""
    out = run(session, 1, "hits = search('Yarholm')\nprint(len(hits))\nprint(hits[0])")
    assert out.stdout.split("\n")[:2] == ["42", "context['cities']['Yarholm']: {'country': 'Poland'}"]
    assert run(session, 2, "print(search('plain'))").stdout.strip() == "['note: plain']"  # other values: key: value


def test_a_field_search_leaves_out_words_the_data_never_writes_and_reads_key_value_fields(sandbox: Start, tmp_path: Path) -> None:
    # Seen on dev logs: search("WARNING INVENTORY come") and search("gateway service errors") found nothing,
    # as "come" and "service" are in no line (the data writes "gateway-api[4064]:"); "level=error" was no
    # field value of "errors".
    lines = [f'ts=2024-03-01T00:00:{i % 60:02d}Z level={"error" if i % 3 == 0 else "info"} service={"gateway" if i % 2 else "auth"}-api '
             f'msg="{"an error occurred" if i % 5 == 0 else "ok"}"' for i in range(60)]
    session = _loaded(sandbox, tmp_path, "\n".join(lines))

    def searched(cell: int, pattern: str) -> tuple[int, str]:
        code = ("import contextlib, io\nb = io.StringIO()\nwith contextlib.redirect_stdout(b):\n"
                f"    n = len(search({pattern!r}))\nprint(n)\nprint(b.getvalue().replace(chr(10), ' ')[:400])")
        n, note = run(session, cell, code).stdout.split("\n", 1)
        return int(n), note

    n, note = searched(0, "errors come from the gateway service")
    assert n == 10 and "'service=gateway-api' (a field's values) ('come': not in the data, left out)" in note
    n, note = searched(1, "errors")
    assert n == 20 and "'level=error' (a field's value);" in note  # the errors, not the 12 lines saying "error"
    n, note = searched(2, "errors elsewhere")
    assert n == 20 and "('elsewhere': not in the data, left out)" in note
    assert searched(3, "errors occurred")[0] == 4  # a word the data holds still picks lines


def test_an_access_log_or_a_logfmt_log_is_also_given_as_rows(sandbox: Start, tmp_path: Path) -> None:
    # The 1.5B model counted "503" anywhere in an access log's lines (a byte count, a path id).
    access = "\n".join(f'10.0.{i}.{i % 9} - - [01/Mar/2024:00:00:{i % 60:02d} +0000] "{"GET" if i % 2 else "POST"} /api/cart/{i}503 HTTP/1.1" '
                       f'{503 if i % 7 == 0 else 200} {i * 503}' for i in range(70))
    session = _loaded(sandbox, tmp_path, access)
    meta = session.context_meta
    assert meta["log_keys"] == ["client", "time", "method", "path", "status", "bytes"] and meta["rows"] == 70
    assert meta["log_values"] == {"method": ["POST", "GET"]}
    out = run(session, 0, "print(sum(1 for r in rows if r['status'] == 503), rows[0]['path'], rows[1]['bytes'])").stdout
    assert out == "10 /api/cart/0503 503\n"
    assert run(session, 1, "print(len(search('503')))").stdout.strip() == "70"  # search() still reads the lines
    logfmt = "\n".join(f'ts=2024-03-01T00:00:{i % 60:02d}Z level={"error" if i % 3 == 0 else "info"} msg="took {i} ms"' for i in range(40))
    meta = _loaded(sandbox, tmp_path, logfmt).context_meta
    assert meta["log_keys"] == ["ts", "level", "msg"] and meta["log_values"] == {"level": ["info", "error"]}
    # prose, a CSV table, a log of free-form lines: no log rows
    for text in (LOG, "a,b\n" + "\n".join(f"{i},{i}" for i in range(40)), "\n".join(f"The day {i} was fine." for i in range(40))):
        assert "log_keys" not in _loaded(sandbox, tmp_path, text).context_meta


def test_lines_of_metadata_fields_and_a_text_are_given_as_rows(sandbox: Start, tmp_path: Path) -> None:
    # The 1.5B model, asked about one user's lines, split such lines by hand and kept the wrong part.
    texts = ["Great value: sturdy and well made.", "It came in a | box.", "Broke after a day."]
    layouts = {
        "chat": lambda i: f"[2022-0{i % 3 + 1}-1{i % 9}] <{48213 if i % 4 == 0 else 50000 + i}> {texts[i % 3]}",
        "named": lambda i: f"Date: {['Jan', 'Feb', 'Mar'][i % 3]} 1{i % 9}, 2022 || User: {48213 if i % 4 == 0 else 50000 + i} || Instance: {texts[i % 3]}",
        "bars": lambda i: f"2022-0{i % 3 + 1}-1{i % 9} | user {48213 if i % 4 == 0 else 50000 + i} | {texts[i % 3]}",
    }
    question = "How many of the lines of user 48213 from February 2022 have the label 'neutral'?"
    for name, line in layouts.items():
        path = tmp_path / f"{name}.txt"
        path.write_text("\n".join(line(i) for i in range(40)), encoding="utf-8")
        session = sandbox()
        meta = session.load_context(path, "text", question=question)
        text_key = "instance" if name == "named" else "text"
        assert meta["log_keys"] == ["date", "user", text_key] and meta["rows"] == 40, name
        # days as ISO dates, ids as numbers, a text that holds the separator whole; the question's user and month
        assert meta["named_values"] == [["date", "2022-02", "month"], ["user", "48213", "number"]], name
        out = run(session, 0, f"print(rows[1]['date'], rows[0]['user'] + 1, rows[1]['{text_key}'])").stdout
        assert out == "2022-02-11 48214 It came in a | box.\n", name
    # the same words with no id after them, or an id the field does not hold: no number condition
    session = sandbox()
    assert session.load_context(tmp_path / "bars.txt", "text", question="How many users wrote 48213 reviews?").get("named_values") is None
    assert session.load_context(tmp_path / "bars.txt", "text", question="What did user 99999 write?").get("named_values") is None


def test_a_cell_that_replaces_the_parsed_rows_and_finds_nothing_gets_them_back(sandbox: Start, tmp_path: Path) -> None:
    # Seen on the 1.5B model (dev-logs-status-text): it parsed the access log itself over `rows` (a date under
    # 'method'), counted 0 and answered 0.
    access = "\n".join(f'10.0.{i}.1 - - [01/Mar/2024:00:00:{i % 60:02d} +0000] "GET /api/cart/{i} HTTP/1.1" {500 if i % 5 == 0 else 200} {i}'
                       for i in range(50))
    session = _loaded(sandbox, tmp_path, access)
    out = run(session, 0, "rows = [dict(zip(['client', 'time', 'method'], line.split())) for line in context.splitlines()]\n"
                          "print(len([r for r in rows if r['method'] == 'GET']))")
    assert out.stdout.strip() == "0" and "builds its own `rows` and found nothing" in out.stderr
    assert run(session, 1, "print(sum(1 for r in rows if r['status'] >= 500))").stdout.strip() == "10"  # the parsed rows again
    # a cell that builds its own rows and finds something keeps them
    out = run(session, 2, "rows = [line.split() for line in context.splitlines()]\nprint(len(rows))")
    assert out.stdout.strip() == "50" and "builds its own" not in out.stderr
    assert run(session, 3, "print(rows[0][0])").stdout.strip() == "10.0.0.1"
    # a parse that fails keeps the parsed rows, and the rest of the cell runs with them (the 1.5B model
    # wrote rows = [dict(line.split()) ...] three times)
    out = run(session, 4, "rows = [dict(line.split()) for line in context.splitlines()]\nprint(len(rows))")
    assert out.error is None and out.stdout.strip() == "50" and "your own `rows = ...` failed (ValueError" in out.stderr
    assert run(session, 5, "print(sum(1 for r in rows if r['status'] >= 500))").stdout.strip() == "10"


def test_a_number_field_compared_with_a_text_of_digits_gets_a_note_when_nothing_matched(sandbox: Start, tmp_path: Path) -> None:
    # Seen on the 1.5B model over a parsed access log: row['status'] == '503' counted 0 and it answered 0.
    records = [{"status": 503 if i % 4 == 0 else 200, "method": "GET" if i % 2 else "PUT"} for i in range(40)]
    session = _loaded(sandbox, tmp_path, json.dumps(records), "json")
    out = run(session, 0, "print(len([r for r in context if r['status'] == '503']))")
    assert out.stdout.strip() == "0" and "'status' holds numbers (e.g. 503), not text: compare it with 503, not '503'" in out.stderr
    out = run(session, 1, "print(len([r for r in context if r['method'] == 1]))")
    assert "'method' holds text (e.g. 'PUT'), not numbers" in out.stderr
    out = run(session, 2, "print(len([r for r in context if r['status'] == 503]))")  # written right: no note
    assert out.stdout.strip() == "10" and "holds" not in out.stderr
