"""Prompt templates and the rendering of the context's metadata. Node modules hold no prompt text.

The system prompt is short on purpose (the embedded 1.5B model has an 8K window and reads about
38 tokens a second): three small examples, one of which prints the matching lines themselves and
one of which loops over chunks with ``llm_query_batched`` (both measured to matter, see
model-notes.md).
"""

from __future__ import annotations

from typing import Any

#: Where the REPL output starts in a user turn; also a stop sequence, so the model cannot invent output.
OUTPUT_MARKER = "REPL output"
STOP_SEQUENCES = [OUTPUT_MARKER, "```output"]

SYSTEM_PROMPT = """\
You answer a question about a context that is too large to read at once. The context is stored in \
a Python REPL as the variable `context`. You explore it by writing Python code in a ```repl block; \
the user then shows you the code's output. Variables persist between blocks.

The REPL has:
- `context`: the data.
- `search(text)`: finds `text` in `context`, ignoring case and word endings; returns a list of the \
matching lines (on very long lines, the text around each match). Use it to find any name, key or word.
- `llm_query(prompt)`: asks a language model about a piece of text you put in the prompt (it cannot \
see `context`); returns a string. Use it for judgements code cannot make.
- `llm_query_batched(prompts)`: many llm_query calls at once, in parallel; returns a list of strings.
- `judge(items, question)`: asks the language model, item by item, whether each item counts toward the \
question; returns the items (a text's lines, a dict's entries) that do.
{classify_line}{rlm_line}- `FINAL(answer)`: gives your final answer. `FINAL_VAR("name")`: gives a variable's value as the answer.
- `print(...)`: shows values. Output longer than {max_output_chars} characters is cut.

Rules:
1. Look at the data first: {look_rule}.
2. Count, search and compute with code. Never guess a number.
3. Write one ```repl block per reply, then stop and wait for its output.
4. When the output shows the answer, reply FINAL(value) with only what the question asks for, e.g. \
FINAL(42) or FINAL(Paris), or FINAL(name) with the variable that holds it.
5. If code finds nothing, suspect the code, not the data: search for another word of the question.

How to answer:
- A fact about a name or key: search for the name, print the hits, read the value in them.
- How many lines or items match: filter with code, print the count and a few matches.
- A sum, average or largest value: parse the numbers with code, then compute.
- A judgement about each item (satisfied or not, on a topic or not): `kept = judge(context, "<the question>")`, \
then print(len(kept)) or the kept items.
{classify_rule}- Two steps (where X lives, then that place's country): search for X, then search for what you found.

Example: find what the data says about something
```repl
hits = search("error")
print(hits[:10])
```

{count_example}Example: judge pieces with llm_query
```repl
chunks = [context[i:i + 3000] for i in range(0, len(context), 3000)]
replies = llm_query_batched(["Is this text about sports? Answer yes or no.\\n" + c for c in chunks])
print(sum(r.strip().lower().startswith("yes") for r in replies), "of", len(chunks))
```
"""

#: The second example follows the context's shape: text of many lines gets a line filter that
#: counts and prints the lines it keeps. Lists and dicts get none: given an item filter there, the
#: model counted reviews containing "love" instead of asking llm_query.
COUNT_LINES = """\
Example: count matching lines
```repl
lines = [line for line in context.splitlines() if "error" in line.lower()]
print(len(lines))
print(lines[:5])
```

"""

#: Whether the system prompt offers classify() for a context of short texts. Off: offered to the 1.5B
#: model, it called classify(context, ["entity", "numeric"]) and answered len() of the result, and the
#: oolong family fell on dev (0.27 -> 0.03) and on test; the function stays in the REPL.
OFFER_CLASSIFY = False

#: For a context of short texts (reviews, posts, questions): one label per item, counted with code.
CLASSIFY_LINE = (
    "- `classify(items, labels)`: asks the language model, item by item, which of `labels` (a list of names) "
    "fits each item; returns one label per item, in order.\n"
)
CLASSIFY_RULE = (
    "- Which label is most common, or how many items have a label (sentiment, kind, topic): keep the items the "
    "question is about with code, then `labels = classify(items, [\"<label>\", \"<label>\", ...])` and "
    "print(collections.Counter(labels)).\n"
)

RLM_QUERY_LINE = (
    "- `rlm_query(prompt, context=None)`: asks a helper that has its own REPL over `context` (a smaller "
    "piece you pass); use it for sub-problems that need code. `rlm_query_batched(prompts, contexts)` runs several.\n"
)

TASK_PROMPT = """\
Question: {query}

The context: {description}
Its first characters (only a preview; the whole data is in the variable `context`):
{preview}

Write a ```repl block to start exploring the context."""

#: A follow-up question on a finished thread (``rlm-graph ask``): a new task, same REPL.
FOLLOW_UP_PROMPT = """\
New question: {query}

The REPL still holds `context` and every variable your earlier code set. Answer this new question \
the same way: explore with a ```repl block, then FINAL(answer)."""

#: A note a user adds when forking a run (``rlm-graph fork --note``), shown before the model's next turn.
USER_NOTE = "A note from the user: {note}"

#: A run a limit stopped, carried on after the user raised it (``rlm-graph resume ID --max-iterations N --allow-change``).
CONTINUE_NOTE = (
    "The user gave you more room ({changes}), so the task is not over: the answer you just gave was forced. "
    "Carry on from where you stopped with a ```repl block, and give FINAL(answer) when you are sure."
)

OUTPUT_TEMPLATE = """\
{marker} (cell {cell}):
```
{body}
```"""

NO_CODE_NOTE = (
    "Your reply had no code to run (a block that only repeats output is not code) and no FINAL(...). Write a ```repl block to explore the context, "
    "or FINAL with the value if you know it, e.g. FINAL(42)."
)

#: The first words of the paging note: it is sent once per run.
PAGING_MARK = "You are reading `context` a slice at a time"
PAGING_NOTE = (
    PAGING_MARK + ": at this pace the whole of it ({size}) takes many turns, and you cannot remember it all. "
    "Do not read it; compute the answer with code over all of it (a loop over the items or `rows`, a sum, a "
    "count, or search(...) for the question's words), then print the result."
)

#: Sent once when the model reads on a slice at a time after the paging note, with the runner's search.
PAGING_AGAIN_MARK = "You are still reading `context` a slice at a time"
PAGING_AGAIN_NOTE = (
    PAGING_AGAIN_MARK + ". Stop paging: compute the answer with code over all "
    "of it (over `rows`, the items or the lines), or run {search_hint} and read its hits."
)

FIRST_BLOCK_NOTE = (
    "Only your first ```repl block runs; the other {n} were written before you saw its output. Read "
    "the output below, then write the next block."
)

NO_CODE_VALUE_NOTE = (
    "Your reply had no code to run and no FINAL(...). If {value} is the answer, reply with exactly: "
    "FINAL({value}). Otherwise write a ```repl block."
)

STUCK_NOTE = (
    "You ran the same code as in your previous reply. Do not repeat it. If the output above answers the "
    "question, reply with FINAL and the value now, e.g. FINAL(42); otherwise try a different approach, "
    "e.g. {search_hint} to print the lines that mention a word of the question."
)

#: A FINAL(<constant>) in a cell that printed something else first (check_final._written_blind).
BLIND_FINAL_NOTE = (
    "Your FINAL({answer}) was written in the same cell as the code, before you saw what that code printed, "
    "and the output does not show {answer}. Read the output above, then reply with FINAL and the value it shows."
)

GROUNDING_NOTE = (
    "You gave a final answer before seeing any output. Read the output above, check it, then reply with FINAL and the value it shows, e.g. FINAL(42)."
)

#: Parts of the worker's notes on a cell's text filter that cannot match (sandboxes/worker.py, _audit):
#: a literal with capitals against lower-cased text, or one the data spells with other capitals. (Not
#: "does not occur as written": a count of something the data lacks is rightly 0.)
FILTER_NOTE_MARKS = ("but is compared with lower-cased text", "with these capitals, only with others",
                     "builds its own `rows` and found nothing", "the filter never matched")

FILTER_FAILED_NOTE = (
    "Your answer {answer} comes from code whose filter cannot match: the notes under its output say why. "
    "Do not answer from it. Fix the filter as the notes say, run the code again and print the result, "
    "then reply with FINAL and the value it prints."
)

#: The first words of the note part that shows the runner's lower-cased run of the model's cell.
LOWERED_MARK = "The runner ran that cell with"
LOWERED_RUN = (
    "\n\n" + LOWERED_MARK + " {words} in lower case, as the notes say. It printed:\n{output}\n{ask}"
)
LOWERED_ASK = "If this answers the question, reply FINAL({value})."

#: The worker's note after it re-ran a cell that tested texts for a label word, each test answered by
#: classify() (sandboxes/worker.py, _label_rerun); its "reply FINAL(x)." value counts as the runner's own.
LABEL_RUN_MARK = "again with each label test answered by classify()"

FORM_NOTE = (
    "Your answer {answer!r} does not look like what the question asks for ({reason}). Check the question "
    "and reply with FINAL and the right kind of value, e.g. FINAL(42) for a number."
)

UNSEEN_NOTE = (
    "Your answer {answer!r} appears nowhere in the REPL output you have seen. Answer with the value "
    "the output shows, or compute and print it in a ```repl block first."
)

PLAN_NOTE = (
    "Your FINAL reads like a plan, not an answer. Carry the plan out in ```repl blocks, then give "
    "FINAL with only the value the question asks for, e.g. FINAL(42)."
)


#: Appended to the system prompt when the run has user tools (``rlm_graph.tools``).
TOOLS_PROMPT = """\
Tools: these functions are also defined in the REPL. They run outside the sandbox, on the host; call
them from code like llm_query, with JSON values (text, numbers, lists, dicts) as arguments. Each
returns a JSON value; a failure raises RuntimeError in the cell.
{tools}"""

FORCED_FINAL_PROMPT = (
    "You have no more {what}. Using only what you found so far, answer the question now: "
    "reply with FINAL and the value itself, e.g. FINAL(42) or FINAL(\"Paris\"), and nothing else."
)

NON_ANSWER_NOTE = (
    "Your answer {answer!r} says the value is not there, but it is in `context`: the code that looked "
    "for it missed it (wrong word, wrong case, or a filter that was too strict). Look again another way: "
    "{search_hint} ignores case and word endings and prints the whole matching lines. Print the hits, "
    "then answer with FINAL and the value."
)

#: Appended to a note when the runner ran ``search`` for the question's key words itself.
RUNNER_SEARCH = (
    "\n\nThe runner searched the context for the question's key words:\n{found}\nRead these lines. If one "
    "of them answers the question, reply with FINAL and the value; otherwise write code that looks further."
)

#: The runner's classify() over the whole context, for a loop on a question that lists its labels.
LABELS_MARK = "The runner asked the model which label fits each"
LABELS_NOTE = (
    "\n\n" + LABELS_MARK + " of the {n} items of `context` (classify(context), with the labels the question "
    "lists); how many items got each label:\n{counts}\nIf the question is about all the items, this answers it: "
    "reply with FINAL and the value. If it is about some of them (one user's, one month's), keep those with code, "
    "then print(classify(items))."
)

#: The runner's classify() over the items that meet the question's conditions on their fields.
SCOPED_LABELS_MARK = "that meet the question's conditions"
SCOPED_LABELS_NOTE = (
    "\n\n" + LABELS_MARK + " of the {n} items of `context` " + SCOPED_LABELS_MARK + " ({scope}; classify() over "
    "their texts, with the labels the question lists); how many of them got each label:\n{counts}\nThis answers "
    "the question: reply with FINAL and the value."
)
#: Ends a label-counts note when the counts answer the question (runtime.label_value).
LABELS_VALUE = "\nFor this question that is: FINAL({value})"

UNCOUNTED_NOTE = (
    "Your answer {answer} is not a number your code printed: no output line shows it as a result. Compute "
    "it with code over the whole context (for example, print(len(matches)) for the matching lines or items, "
    "print(sum(numbers)) for a total, print(max(values)) for the largest), then reply with FINAL and the number it prints."
)

#: The first words of the field-count note: it is sent once per run.
FIELD_COUNT_MARK = "The question names values of the data's fields"
FIELD_COUNT_NOTE = (
    FIELD_COUNT_MARK + ": the runner's search({pattern!r}) finds {count} {said}. Your answer {answer} "
    "is a different count. If those {unit} are what the question counts, reply FINAL({count}); if the question "
    "asks for something more, count it with code and reply with FINAL and the number it prints."
)

#: Appended to the next-step note when the sub-model, reading those lines with the question, gives a value.
NEXT_HOP_READ = "\nRead with the question, these lines give {value}: if that is what the question asks for, reply FINAL({value})."

#: The sub-model's choice between a first-step answer the root kept and the second step the runner read
#: (asked in both orders: the 1.5B model leans to the candidate named first).
HOP_CHOICE_PROMPT = """\
Question: {query}

What the data says:
{lines}

Two candidate answers: {first} or {second}. Which one answers the question? Reply with only that candidate."""

#: Sent (at most twice) when a number answer comes from code that never tests a condition the question
#: states on the table's fields, or that also tests a text the question never writes (check_final._untested_note).
UNTESTED_MARK = "comes from code whose filter is not the question's"
UNTESTED_NOTE = (
    "Your answer {answer} " + UNTESTED_MARK + ": it {said}. Keep only the rows that meet every condition the "
    "question states, all together and nothing else, for example:\n{example}\nthen compute the result over "
    "`kept`, print it, and reply with FINAL and the value it prints."
)

#: The part of the untested note that shows the model's own cell run by the runner with the question's
#: filter (and the field the question names): check_final._untested_note.
REFILTER_MARK = "The runner ran your cell with"
REFILTER_RUN = "\n\n" + REFILTER_MARK + " {what}. It printed:\n{output}\nIf {value} is the answer, reply with exactly: FINAL({value})"

#: The runner's figures over the rows that meet the question's conditions (runtime.table_stats), added to
#: the untested and uncounted notes of a question that asks for a count, a total, an average or an extreme.
STATS_MARK = "The runner computed these over the rows the question's conditions keep"
STATS_NOTE = "\n\n" + STATS_MARK + " ({tests}):\n{stats}\nPick the figure the question asks for and reply with FINAL and it."
STATS_VALUE = LABELS_VALUE  # the same words as the label counts' value

#: The first words of the subject note: it is sent once per run.
SUBJECT_MARK = "is what the question names, not what it asks for"
SUBJECT_NOTE = (
    "Your answer {answer!r} " + SUBJECT_MARK + ". Read the output lines about {answer} again and reply with "
    "FINAL and the value the question asks about {answer}; if no line gives it, search for it first."
)

#: A lookup's answer read off the line of someone who shares a word of the question's subject (once per run).
OTHER_SUBJECT_MARK = "is not what the context says about"
OTHER_SUBJECT_NOTE = (
    "Your answer {answer!r} " + OTHER_SUBJECT_MARK + " {asked}: the line that holds it is about {other}, "
    "someone else. The lines about {asked}:\n{lines}\nReply with FINAL and the value these lines give, or "
    "write code that looks further."
)

#: The first words of the next-step note: it is sent once per run.
NEXT_HOP_MARK = "is what the context says about"
NEXT_HOP_NOTE = (
    "Your answer {answer!r} " + NEXT_HOP_MARK + " {subject} itself. The question may ask one step further, "
    "about {answer}. Other lines of the context about {answer}:\n{lines}\nIf the question asks for something "
    "these lines say about {answer} (for example a place's country), reply with FINAL and that value. If "
    "{answer} itself answers the question, reply FINAL({answer}) again."
)

#: The first words of the judge note: it is sent once per run.
JUDGE_MARK = "Counting by words in the text cannot answer this"
JUDGE_NOTE = (
    JUDGE_MARK + ": each of the {n} items has to be judged. Run exactly this, then reply with FINAL and "
    "{what} it prints:\n```repl\n{code}\n```"
)

UNGROUNDED_NOTE = (
    "Your answer {answer!r} is not in the output lines that name what the question asks about. Those "
    "lines are:\n{lines}\nRead them: if one gives the value, reply with FINAL and that value; otherwise "
    "search further."
)

WANDERED_NOTE = (
    "Your answer {answer!r} comes from code that never looked for what the question names ({terms}): "
    "it does not answer this question."
)
#: The end of the wandered note when the runner's search found nothing to show.
LOOK_FOR_TERMS = " Look for them: {search_hint} ignores case and word endings and prints the matching lines; then answer with FINAL and the value."

#: The reader for a lookup: the outputs first, then the question, and a word that the wording may differ.
#: Given the question first, the 1.5B reader said "unknown" to "what is the boarding gate of the elm
#: clipper?" over "The Elm Clipper departs from gate F26."; this way round it said F26.
READER_LOOKUP_PROMPT = """\
Outputs of code run over the data:
{outputs}

Question: {query}
Answer with the value only (a number, a name or a code), taken from the output about what the question \
names. The question may use other words than the output. If no output answers it, reply: unknown"""

READER_PROMPT = """\
Question: {query}

Outputs of code that searched the data for the answer:
{outputs}

Using only these outputs, answer the question with the value alone (a number, a name, a short list). \
If the outputs do not show it, reply: unknown"""

FORM_CHECK_PROMPT = """\
Question: {query}

What kind of value does this question ask for? Reply with one word from: number, name, word, list, date, text."""


LOOK_AT_TEXT = "print the matching text itself (search shows it), not only how many matches there are"
LOOK_AT_LINES = "print the matching lines or items themselves, not only how many there are"

#: A text with at least this many lines gets the line-counting example.
MANY_LINES = 20


def system_prompt(*, max_output_chars: int, allow_rlm: bool, context_meta: dict[str, Any] | None = None,
                  offer_classify: bool = OFFER_CLASSIFY) -> str:
    """The root model's system prompt; the context's metadata (its type and line count) picks the examples.

    ``classify()`` is in every REPL, but the prompt names it only when ``offer_classify`` (default
    :data:`OFFER_CLASSIFY`) and the context is short texts.

    ``search`` is offered for every shape: a text of many lines used to get only a line filter,
    which the 1.5B model copied as ``"ERROR" in line.lower()`` and found nothing (issue 14).
    """
    meta = context_meta or {}
    lines = meta.get("type", "str") == "str" and int(meta.get("lines") or 0) >= MANY_LINES
    return SYSTEM_PROMPT.format(
        max_output_chars=max_output_chars,
        rlm_line=RLM_QUERY_LINE if allow_rlm else "",
        look_rule=LOOK_AT_LINES if lines or meta.get("type") in ("list", "dict") else LOOK_AT_TEXT,
        count_example=COUNT_LINES if lines else "",
        classify_line=CLASSIFY_LINE if offer_classify and meta.get("prose_items") else "",
        classify_rule=CLASSIFY_RULE if offer_classify and meta.get("prose_items") else "",
    )


def describe_context(meta: dict[str, Any]) -> str:
    """A few sentences about the context: its type, size and layout (columns, record keys, the
    few values a field takes), never a whole record of its content."""
    kind = meta.get("type", "unknown")
    length = meta.get("length")
    if kind == "str":
        text = f"a string of {length:,} characters in {meta.get('lines', 0):,} lines."
        if meta.get("json") == "list":
            keys = f" dicts with the keys {', '.join(meta['item_keys'])}" if meta.get("item_keys") else " items"
            if meta.get("rows"):
                text += (f" It is JSON text, already parsed for you: the variable `rows` holds it, a list of "
                         f"{int(meta['rows']):,}{keys} (rows[0]['<key>']); compute over `rows`, not over the text's lines.")
            else:
                text += (f" It is JSON text: parse it first, `data = json.loads(context)` gives a list of "
                         f"{int(meta.get('json_items') or 0):,}{keys}; compute over `data`, not over the text's lines.")
            return text + _fields({"field_values": meta.get("json_values")})
        if meta.get("json") == "dict":
            keys = f" (keys {', '.join(meta['item_keys'][:20])})" if meta.get("item_keys") else ""
            return text + (f" It is JSON text: parse it first, `data = json.loads(context)` gives a dict of "
                           f"{int(meta.get('json_items') or 0):,} keys{keys}; compute over `data`.")
        if meta.get("lists"):
            text += _lists(meta["lists"], "titled sections, already split for you: the variable `lists` maps each title to its lines")
        if meta.get("columns"):
            sep = {",": "commas", "\t": "tabs", ";": "semicolons", "|": "bars"}.get(meta.get("separator", ","), "commas")
            text += f" It is a table: a header line with the columns {', '.join(meta['columns'])}, values separated by {sep}."
            text += _rows(meta).replace("the same table", "its rows, numbers parsed,")
        return text + _log(meta)
    if kind == "list":
        first = meta.get("chunk_lengths") or []
        extra = f" The first items' lengths: {first[:10]}." if first else ""
        keys = meta.get("item_keys")
        if keys:
            extra = f" Each item is a dict with the keys {', '.join(keys)}."
        if meta.get("lists"):
            extra += _lists(meta["lists"], "lists by the key that names the list, already grouped for you: the variable "
                                           "`lists` maps each list's name to its items")
        return f"a list of {length:,} items (iterate over it: `for item in context`).{extra}" + _log(meta)
    if kind == "dict":
        keys = ", ".join(meta.get("keys") or [])
        text = f"a dict with {length:,} keys ({keys})."
        if meta.get("value_kind") == "list":
            n = int(meta.get("value_items") or 0)
            text += (f" Each key holds a list ({n:,} items in the first); when the lists have the same length they are "
                     "columns of one table: row i is context[key][i] for every key.")
            text += _rows(meta) or SET_HINT.format(a="context[A]", b="context[B]")
        return text + _fields(meta)
    return f"a value of type {kind}."


#: How to compare two lists, added where the context is made of lists.
SET_HINT = (" To compare two lists, with A and B their names: the items in both are set({a}) & set({b}); the items in A "
            "but not in B are set({a}) - set({b}).")


def _lists(lists: dict[str, int], what: str) -> str:
    """" It is made of N <what>: 'A' (n items), ..." and how to compare two of them."""
    names = list(lists)
    shown = ", ".join(f"{name!r} ({n:,})" for name, n in lists.items())
    hint = SET_HINT.format(a="lists[A]", b="lists[B]") if len(names) >= 2 else ""
    return f" It is made of {len(names)} {what}: {shown}.{hint}"


def _rows(meta: dict[str, Any]) -> str:
    """" `rows` holds it as N row dicts ..." when the worker built them (a table in another form)."""
    n = meta.get("rows")
    if not isinstance(n, int) or n <= 0:
        return ""
    return (f" The variable `rows` holds the same table as a list of {n:,} dicts, one per row "
            "(rows[0]['<column>']): filter, count and add up over `rows`.")


def _log(meta: dict[str, Any]) -> str:
    """" It is a log: `rows` holds its lines parsed ..." (and the few values its keys take) when the
    worker parsed the lines' fields, else the few values of the lines' words (see :func:`_fields`)."""
    keys = meta.get("log_keys")
    n = meta.get("rows")
    if not keys or not isinstance(n, int) or n <= 0:
        return _fields(meta)
    return (f" It is a log whose lines have fields: the variable `rows` holds its {n:,} lines parsed, one dict per line "
            f"with the keys {', '.join(str(k) for k in keys[:12])} (numbers parsed, e.g. rows[0]['{keys[0]}']): "
            "filter and count over `rows`." + _fields({"field_values": meta.get("log_values")}))


def _fields(meta: dict[str, Any]) -> str:
    """" Fields that take few values: word 2 (INFO, WARN, ERROR); region (north, south)." or ""."""
    fields = meta.get("field_values") or {}
    if not isinstance(fields, dict) or not fields:
        return ""
    parts = [f"{name} ({', '.join(str(v) for v in list(values)[:12])})" for name, values in list(fields.items())[:6] if isinstance(values, list)]
    return " Fields that take only a few values, as written in the data: " + "; ".join(parts) + "." if parts else ""


def task_prompt(query: str, meta: dict[str, Any]) -> str:
    """The first user turn: the question and the context's metadata with a short preview."""
    return TASK_PROMPT.format(query=query, description=describe_context(meta), preview=str(meta.get("preview", ""))[:400])


#: The worker's notes write this where the run's question belongs (the worker does not know it); the
#: output shown to the model has the question itself there, so the code in the note can be run as it is.
QUESTION_SLOT = '"<the question>"'


def output_message(cell: int, stdout: str, stderr: str, error: str | None, vars_: dict[str, str] | None,
                   query: str | None = None) -> str:
    """The user turn that shows one cell's (already truncated) output."""
    if query:
        stdout, stderr = stdout.replace(QUESTION_SLOT, repr(query)), stderr.replace(QUESTION_SLOT, repr(query))
    parts = [stdout.rstrip("\n")] if stdout.strip() else []
    if stderr.strip():
        parts.append(stderr.rstrip("\n"))
    if error:
        parts.append(error)
    body = "\n".join(parts) if parts else "(no output; print() a value to see it)"
    return OUTPUT_TEMPLATE.format(marker=OUTPUT_MARKER, cell=cell, body=body)
