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
{search_line}- `llm_query(prompt)`: asks a language model about a piece of text you put in the prompt (it cannot \
see `context`); returns a string. Use it for judgements code cannot make.
- `llm_query_batched(prompts)`: many llm_query calls at once, in parallel; returns a list of strings.
{rlm_line}- `FINAL(answer)`: gives your final answer. `FINAL_VAR("name")`: gives a variable's value as the answer.
- `print(...)`: shows values. Output longer than {max_output_chars} characters is cut.

Rules:
1. Look at the data first: {look_rule}.
2. Count, search and compute with code. Never guess a number.
3. Write one ```repl block per reply, then stop and wait for its output.
4. When the output shows the answer, call FINAL(answer) with only what the question asks for.

{find_example}

Example: judge pieces with llm_query
```repl
chunks = [context[i:i + 3000] for i in range(0, len(context), 3000)]
replies = llm_query_batched(["Is this text about sports? Answer yes or no.\\n" + c for c in chunks])
print(sum(r.strip().lower().startswith("yes") for r in replies), "of", len(chunks))
```

Example: answer
```repl
FINAL(total)
```
"""

#: The first example follows the context's shape. Text of few, long lines gets ``search`` (the
#: 1.5B model otherwise split a one-line haystack into lines and printed line numbers). Everything
#: else keeps the line filter, which the learning path passes: given the search example, the model
#: printed ``context[:10]`` of a column of numbers to add and echoed it back; given an item-filter
#: example on lists and dicts, it counted reviews containing "love" instead of asking llm_query.
FIND_IN_TEXT = """\
Example: find where something is mentioned
```repl
hits = search("error")
print(len(hits))
print(hits[:10])
```"""

FIND_LINES = """\
Example: find lines
```repl
hits = [line for line in context.splitlines() if "error" in line.lower()]
print(len(hits))
print(hits[:10])
```"""

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

OUTPUT_TEMPLATE = """\
{marker} (cell {cell}):
```
{body}
```"""

NO_CODE_NOTE = (
    "Your reply had no code to run (a block that only repeats output is not code) and no FINAL(...). Write a ```repl block to explore the context, "
    "or FINAL with the value if you know it, e.g. FINAL(42)."
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
    "question, reply with FINAL and the value now, e.g. FINAL(42); otherwise try a different approach."
)

GROUNDING_NOTE = (
    "You gave a final answer before seeing any output. Read the output above, check it, then reply with FINAL and the value it shows, e.g. FINAL(42)."
)

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


FORCED_FINAL_PROMPT = (
    "You have no more {what}. Using only what you found so far, answer the question now: "
    "reply with FINAL and the value itself, e.g. FINAL(42) or FINAL(\"Paris\"), and nothing else."
)

FORM_CHECK_PROMPT = """\
Question: {query}

What kind of value does this question ask for? Reply with one word from: number, name, word, list, date, text."""


SEARCH_LINE = (
    "- `search(text)`: finds `text` in `context` (ignoring case); returns a list with the text around each "
    "match (the whole line when lines are short).\n"
)
LOOK_AT_TEXT = "print the matching text itself (search shows it), not only how many matches there are"
LOOK_AT_LINES = "print the matching lines or items themselves, not only how many there are"

#: A text with at least this many lines gets the line-filter example.
MANY_LINES = 20


def system_prompt(*, max_output_chars: int, allow_rlm: bool, context_meta: dict[str, Any] | None = None) -> str:
    """The root model's system prompt; the context's metadata (its type and line count) picks the first example."""
    meta = context_meta or {}
    # Only the prompt whose example uses search lists it: with it listed, the model summed the
    # digits of a column of numbers one by one (learn_01, which the line-filter prompt passes).
    searching = meta.get("type", "str") == "str" and int(meta.get("lines") or 0) < MANY_LINES
    example = FIND_IN_TEXT if searching else FIND_LINES
    return SYSTEM_PROMPT.format(
        max_output_chars=max_output_chars,
        rlm_line=RLM_QUERY_LINE if allow_rlm else "",
        search_line=SEARCH_LINE if searching else "",
        look_rule=LOOK_AT_TEXT if searching else LOOK_AT_LINES,
        find_example=example,
    )


def describe_context(meta: dict[str, Any]) -> str:
    """One sentence about the context: its type and size, never its content."""
    kind = meta.get("type", "unknown")
    length = meta.get("length")
    if kind == "str":
        return f"a string of {length:,} characters in {meta.get('lines', 0):,} lines."
    if kind == "list":
        first = meta.get("chunk_lengths") or []
        extra = f" The first items' lengths: {first[:10]}." if first else ""
        return f"a list of {length:,} items (iterate over it: `for item in context`).{extra}"
    if kind == "dict":
        keys = ", ".join(meta.get("keys") or [])
        return f"a dict with {length:,} keys ({keys})."
    return f"a value of type {kind}."


def task_prompt(query: str, meta: dict[str, Any]) -> str:
    """The first user turn: the question and the context's metadata with a short preview."""
    return TASK_PROMPT.format(query=query, description=describe_context(meta), preview=str(meta.get("preview", ""))[:400])


def output_message(cell: int, stdout: str, stderr: str, error: str | None, vars_: dict[str, str] | None) -> str:
    """The user turn that shows one cell's (already truncated) output."""
    parts = [stdout.rstrip("\n")] if stdout.strip() else []
    if stderr.strip():
        parts.append(stderr.rstrip("\n"))
    if error:
        parts.append(error)
    body = "\n".join(parts) if parts else "(no output; print() a value to see it)"
    return OUTPUT_TEMPLATE.format(marker=OUTPUT_MARKER, cell=cell, body=body)
