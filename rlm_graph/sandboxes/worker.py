"""The in-sandbox REPL worker. Standard library only: it runs unchanged in a local subprocess,
a Docker container or an E2B sandbox, started as ``python3 -u worker.py``.

It speaks JSON lines. Host -> worker::

    {"type": "load_context", "path": "...", "format": "text|json|jsonl|csv|auto"}
    {"type": "exec", "cell": 3, "code": "...", "timeout": 60, "max_output_chars": 4000}
    {"type": "answer", "id": 7, "texts": ["..."], "error": null}
    {"type": "tools", "names": ["lookup"]}     (define host tools: stubs that send "tool" requests)
    {"type": "shutdown"}

Worker -> host::

    {"type": "ready", "pid": 123, "python": "3.11.7"}
    {"type": "loaded", "meta": {...}}
    {"type": "request", "id": 7, "kind": "llm|rlm|tool", "prompts": ["..."], "contexts": [...]}
    {"type": "result", "cell": 3, "stdout": "...", "stderr": "...", "error": "...",
     "final": null, "vars": {"name": "type"}, "timed_out": false}

The protocol channel is a private copy of the original stdin and stdout; file descriptor 0 is
pointed at /dev/null and 1 at stderr, so that a cell that reads stdin, closes descriptor 0 or 1,
or runs C extensions or child processes that write to them cannot touch the channel.

``llm_query`` and its kin may be called from threads a cell starts: one call at a time goes to the
host and gets its own answer. Calls from a thread that outlived its cell (one still running after
the cell ended, or started by an earlier cell) raise a ``RuntimeError``: the host only answers the
cell it is running. Nothing sent may be longer than the host reads (:data:`_MAX_MESSAGE`).
"""

from __future__ import annotations

import ast
import collections
import csv
import io
import itertools
import json
import os
import re
import signal
import sys
import threading
import time
import traceback

_PROTO = None  # the protocol output stream, set in main()
_IN = None  # the protocol input stream
_REQ_ID = 0
#: The longest line the host reads (rlm_graph.sandboxes.protocol.MAX_MESSAGE_BYTES).
_MAX_MESSAGE = 64 << 20
#: Most characters of a FINAL answer, of a cell's error, and of a variable's name the host is sent.
_MAX_FINAL = 1_000_000
_MAX_NAME = 100
_ASK_LOCK = threading.Lock()  # one sub-call request in flight at a time, each matched to its answer
_STASH: list = []  # host messages read while waiting for an answer, for the main loop
_RESERVED = (
    "context",
    "llm_query",
    "llm_query_batched",
    "rlm_query",
    "rlm_query_batched",
    "FINAL",
    "FINAL_VAR",
    "Final",
    "SHOW_VARS",
    "search",
    "judge",
    "classify",
)


class CellTimeout(BaseException):
    """Raised inside a cell when its time is up. A BaseException so `except Exception` can't eat it."""


class _Capped(io.TextIOBase):
    """A text sink that keeps the head and the tail of what is written, in bounded memory."""

    def __init__(self, limit: int) -> None:
        self.limit = max(int(limit), 200)
        self.half = self.limit // 2
        self.head: list[str] = []
        self.head_len = 0
        self.tail = ""
        self.total = 0

    def writable(self) -> bool:
        return True

    def write(self, s: str) -> int:
        if not isinstance(s, str):
            s = str(s)
        n = len(s)
        self.total += n
        if self.head_len < self.half:
            take = s[: self.half - self.head_len]
            self.head.append(take)
            self.head_len += len(take)
            s = s[len(take) :]
        if s:
            self.tail = (self.tail + s)[-self.half :]
        return n

    def getvalue(self) -> str:
        head = "".join(self.head)
        shown = len(head) + len(self.tail)
        if self.total <= shown:
            return head + self.tail
        omitted = self.total - shown
        return head + "\n... [%d characters omitted] ...\n" % omitted + self.tail


class _Channel:
    def __init__(self) -> None:
        self.final = None
        self.timer_left = 0.0
        self.cell_open = False  # a cell runs: its threads may make sub-calls
        self.old_threads: set = set()  # threads alive when it started (earlier cells' threads)


_CH = _Channel()
_NS: dict = {}
_CONTEXT_SOURCE: dict = {}


def _send(msg: dict) -> None:
    _PROTO.write(json.dumps(msg, ensure_ascii=False) + "\n")
    _PROTO.flush()


def _read() -> dict | None:
    line = _IN.readline()
    if not line:
        return None
    return json.loads(line)


def _pause_timer() -> None:
    # Time spent waiting for the host's sub-call answers does not count against the cell.
    left, _ = signal.getitimer(signal.ITIMER_REAL)
    _CH.timer_left = left
    signal.setitimer(signal.ITIMER_REAL, 0)


def _resume_timer() -> None:
    if _CH.timer_left > 0:
        signal.setitimer(signal.ITIMER_REAL, _CH.timer_left)


def _ask(kind: str, prompts: list, contexts: list | None = None) -> list:
    global _REQ_ID
    with _ASK_LOCK:
        me = threading.current_thread()
        if not _CH.cell_open or (me is not threading.main_thread() and me.ident in _CH.old_threads):
            raise RuntimeError(
                "%s_query was called from a thread that outlived its cell; sub-calls are only answered for the "
                "cell that is running: start the threads (or the ThreadPoolExecutor) in the cell that uses them "
                "and wait for them before it ends" % kind
            )
        _REQ_ID += 1
        rid = _REQ_ID
        msg = {"type": "request", "id": rid, "kind": kind, "prompts": prompts}
        if contexts is not None:
            msg["contexts"] = contexts
        line = json.dumps(msg, ensure_ascii=False)
        size = len(line.encode("utf-8", "surrogatepass"))
        if size >= _MAX_MESSAGE:
            raise ValueError(
                "%s_query: the prompts%s add up to %d bytes, more than the %d a request may carry; send fewer or shorter ones"
                % (kind, " and contexts" if contexts is not None else "", size, _MAX_MESSAGE)
            )
        _pause_timer()
        try:
            _PROTO.write(line + "\n")
            _PROTO.flush()
            while True:
                reply = _read()
                if reply is None or reply.get("type") == "shutdown":
                    os._exit(0)  # host went away
                if reply.get("type") == "answer" and reply.get("id") == rid:
                    break
                if reply.get("type") in ("exec", "load_context", "ping"):
                    _STASH.append(reply)  # not for this call: the main loop takes it next
        finally:
            _resume_timer()
    if reply.get("error"):
        raise RuntimeError(reply["error"])
    return list(reply.get("texts") or [])


def _as_prompt(p) -> str:
    return p if isinstance(p, str) else json.dumps(p, ensure_ascii=False, default=str) if isinstance(p, (list, dict)) else str(p)


def llm_query(prompt) -> str:
    """Ask a sub-LM one question and return its answer as a string."""
    return _ask("llm", [_as_prompt(prompt)])[0]


def llm_query_batched(prompts) -> list:
    """Ask a sub-LM many questions in parallel; answers come back in the same order."""
    prompts = [_as_prompt(p) for p in list(prompts)]
    if not prompts:
        return []
    return _ask("llm", prompts)


#: At most this many items go to one judge() call (one sub-call each).
_JUDGE_MAX = 2000
_JUDGE_PROMPT = (
    "Item:\n{item}\n\nQuestion about a collection of such items: {question}\n"
    "Does this item count toward the answer? Answer yes or no."
)
#: A sentence of the question that only says how to format the answer ("Reply with just the number."):
#: left in, the sub-model answered it (a number) instead of yes or no, and judge() kept nothing.
_FORMAT_SENTENCE = re.compile(r"\s*\b(?:Reply|Answer|Respond|Give only|Give just|List them|Separate)\b[^.?!]*[.?!]?", re.IGNORECASE)


#: judge() first asks the sub-model to turn the collection's question into one about a single item:
#: with "Is this ticket about money?" instead of "How many tickets are about money ...? Does this item
#: count toward the answer?", the 1.5B sub-model judged 93.5% of held-out items right instead of 80.6%.
_ONE_ITEM_PROMPT = (
    "Question about a collection of items: {question}\n\nRewrite it as a yes/no question about ONE item "
    "(for example 'How many reviews are positive?' becomes 'Is this review positive?'). Reply with the question only."
)
_JUDGE_ONE_PROMPT = "Item:\n{item}\n\n{question} Answer yes or no."
_ONE_ITEM_SHAPE = re.compile(r"(?:Is|Are|Does|Do|Did|Was|Were|Has|Have|Can|Could|Would|Should|Will) this\b[^\n?]{3,200}\?")
_ONE_ITEM: dict = {}


def _one_item_question(question):
    """The yes/no question about one item the sub-model rewrites `question` into ("Is this ticket about
    money?"), or None when its reply is not one (a question about the whole collection, "Are there
    any ...?", is not): judge() then asks with the question itself. Asked once per question."""
    if question not in _ONE_ITEM:
        reply = llm_query(_ONE_ITEM_PROMPT.format(question=question))
        found = _ONE_ITEM_SHAPE.search(str(reply))
        _ONE_ITEM[question] = found.group(0) if found else None
    return _ONE_ITEM[question]


def judge(items, question=None):
    """The items that count toward `question`, as the sub-LM judges them one by one.

    `items`: a list, a dict (its entries are judged as "key: value" and a dict of those that count is
    returned) or a text (its non-empty lines). Each item goes to llm_query with the question; those
    whose reply starts with "yes" are returned in their order. For a count, print(len(judge(context,
    "How many reviews are positive?"))). Use it for judgements code cannot make (sentiment, topic,
    kind); filter by plain conditions (a date, a user, a field) with code first. With no question,
    the run's own question is asked.
    """
    if question is None:
        question = _CONTEXT_SOURCE.get("question") or None  # the run's question
    if not isinstance(question, str) or not question.strip():
        raise TypeError("judge(items, question): question must be a non-empty string")
    keys, texts = _items_of(items, "judge")
    if not texts:
        return {} if isinstance(items, dict) else []
    asked = _FORMAT_SENTENCE.sub("", question).strip() or question.strip()
    target = _asked_label(asked)
    if target:  # "... one of: positive, negative, neutral. How many have the label 'neutral'?"
        keep = [label == target for label in classify(texts, _question_labels(asked))]
    else:
        single = _one_item_question(asked)
        if single:
            replies = llm_query_batched([_JUDGE_ONE_PROMPT.format(question=single, item=t[:2000]) for t in texts])
        else:
            replies = llm_query_batched([_JUDGE_PROMPT.format(question=asked, item=t[:2000]) for t in texts])
        keep = [re.sub(r"^[^a-z]*", "", str(r).lower()).startswith("yes") for r in replies]
    if isinstance(items, dict):
        return {k: items[k] for k, ok in zip(keys, keep) if ok}
    return [k for k, ok in zip(keys, keep) if ok]


#: What the labels mean first, then the item, then the names on one line: on 72 trivia questions and
#: 36 reviews (seeded like the dev split) the 1.5B sub-model labelled 90% and 92% right this way, 78%
#: and 83% with the item first and the names as a list below the meaning (it called most people
#: "entity" and a third of the plain facts "positive").
_CLASSIFY_PROMPT = "{about}Item: {item}\n\nWhich label fits this item: {labels}? Reply with the label only."


def _items_of(items, what):
    """(keys, texts) of a judge()/classify() argument: a dict's entries, a text's non-empty lines, a list's items."""
    if isinstance(items, dict):
        keys = list(items)
        texts = ["%s: %s" % (k, items[k]) for k in keys]
    elif isinstance(items, str):
        keys = [line for line in items.splitlines() if line.strip()]
        texts = keys
    else:
        keys = list(items)
        texts = [it if isinstance(it, str) else _as_prompt(it) for it in keys]
    if len(texts) > _JUDGE_MAX:
        raise ValueError("%s(): %d items is too many for one call (at most %d, one sub-call each); "
                         "filter them with code first" % (what, len(texts), _JUDGE_MAX))
    return keys, texts


def _pick_label(reply, names):
    """The label a reply names: the one whose name appears first in it (whole word, any case); else the
    one whose name starts the reply's first word; else "unknown"."""
    text = str(reply).lower()
    best, where = "unknown", len(text) + 1
    for name in names:
        m = re.search(r"(?<![a-z0-9])%s(?![a-z0-9])" % re.escape(str(name).lower()), text)
        if m and m.start() < where:
            best, where = name, m.start()
    if best == "unknown":
        first = re.sub(r"[^a-z0-9 ]", " ", text).split()
        for name in names:
            if first and str(name).lower().startswith(first[0]) and len(first[0]) >= 3:
                return name
    return best


class Labels(list):
    """classify()'s result: a plain list of labels that prints how many items got each label first
    (a long list is cut in the middle when shown; the counts are what a question about labels needs)."""

    def __repr__(self):
        counts = collections.Counter(self).most_common()
        return "labels of %d items: %s; %s" % (len(self), ", ".join("%s %d" % (k, n) for k, n in counts), list.__repr__(self))

    __str__ = __repr__


def _labels_described(question, names):
    """The sentences of `question` that name two or more of the labels (where the task says what they
    mean: "A text's label is its sentiment, one of: positive, negative, neutral (a plain statement of
    fact)."). Given those, the 1.5B sub-model labelled 83% of oolong-style items right instead of 70%;
    given the whole question, which names the label it counts, it picked that label for most items."""
    out = []
    for sentence in re.split(r"(?<=[.?!])\s+", str(question or "")):
        named = sum(1 for n in names if re.search(r"(?<![a-z0-9])%s(?![a-z0-9])" % re.escape(n.lower()), sentence.lower()))
        if named >= 2:
            out.append(sentence.strip())
    return " ".join(out)[:2000]


def classify(items, labels=None, about=None):
    """One label per item, as the sub-LM reads each item (one sub-call per item).

    `items`: a list, a dict (returns a dict key -> label) or a text (its non-empty lines). `labels`:
    the label names, a list (["positive", "negative", "neutral"]) or a dict name -> what it means.
    `about`: words on what the labels mean; by default the sentences of the run's question that name
    two or more of the labels (none: the names alone). Returns
    a list of labels in the items' order (printed, it shows how many items got each label first); a
    reply naming no label gives "unknown". Count them with collections.Counter(classify(items, labels)).
    With no labels, those the run's question lists ("its sentiment, one of: positive, negative, neutral").
    """
    if labels is None:
        labels = _question_labels()
        if not labels:
            raise ValueError("classify(items, labels): the question lists no labels; give the label names, e.g. "
                             "['positive', 'negative']")
    if isinstance(labels, str):
        labels = [x.strip() for x in re.split(r"[,|/]", labels) if x.strip()]
    if isinstance(labels, dict):
        names = [str(k) for k in labels]
        listing = ", ".join("%s (%s)" % (k, v) for k, v in labels.items())
    else:
        names = [str(x) for x in labels]
        listing = ", ".join(names)
    if len(names) < 2:
        raise ValueError("classify(items, labels): give at least two label names, e.g. ['positive', 'negative']")
    keys, texts = _items_of(items, "classify")
    if not texts:
        return {} if isinstance(items, dict) else []
    if about is None:  # what the run's question says the labels mean, if it says
        about = _labels_described(_CONTEXT_SOURCE.get("question"), names)
    about = str(about or "").strip()
    head = (about + "\n\n") if about else ""
    replies = llm_query_batched([_CLASSIFY_PROMPT.format(item=t[:2000], about=head, labels=listing) for t in texts])
    picked = [_pick_label(r, names) for r in replies]
    if isinstance(items, dict):
        return dict(zip(keys, picked))
    return Labels(picked)


def _ctx_payload(ctx):
    if ctx is None:
        return None
    try:
        json.dumps(ctx)
        return ctx
    except (TypeError, ValueError):
        return str(ctx)


def rlm_query(prompt, context=None) -> str:
    """Ask a child RLM (one level deeper) a question over `context` (default: the prompt itself)."""
    return _ask("rlm", [_as_prompt(prompt)], [_ctx_payload(context)])[0]


def rlm_query_batched(prompts, contexts=None) -> list:
    """Run several child RLMs in parallel; `contexts` is an optional list of the same length."""
    prompts = [_as_prompt(p) for p in list(prompts)]
    if not prompts:
        return []
    if contexts is None:
        contexts = [None] * len(prompts)
    contexts = list(contexts)
    if len(contexts) != len(prompts):
        raise ValueError("rlm_query_batched: contexts must have the same length as prompts")
    return _ask("rlm", prompts, [_ctx_payload(c) for c in contexts])


def _tool_stub(name: str):
    """A REPL function that asks the host to run its tool ``name``; arguments and result are JSON."""

    def tool(*args, **kwargs):
        try:
            call = json.dumps({"tool": name, "args": list(args), "kwargs": kwargs}, ensure_ascii=False)
        except (TypeError, ValueError) as exc:
            raise TypeError("%s: arguments must be JSON values (str, numbers, lists, dicts): %s" % (name, exc)) from None
        return json.loads(_ask("tool", [call])[0])

    tool.__name__ = tool.__qualname__ = name
    tool.__doc__ = "Host tool %s: runs outside the sandbox (see the system prompt)." % name
    return tool


def _define_tools(names) -> None:
    for name in names if isinstance(names, list) else []:
        if isinstance(name, str) and name.isidentifier() and not name.startswith("_") and name not in _FUNCS:
            _FUNCS[name] = _tool_stub(name)
    _restore()


def FINAL(answer, *more) -> None:
    """Finish the run with this answer. Several values, FINAL(327, 708, 824), are one answer, "327, 708,
    824" (the 1.5B model wrote that after printing the ids, got a TypeError and repeated it until the loop
    guard stopped the run)."""
    if more:
        answer = ", ".join(str(a) for a in (answer,) + more)
    if isinstance(answer, float) and answer.is_integer() and abs(answer) < 1e16:
        answer = int(answer)  # 42.0 -> 42
    _CH.final = answer if isinstance(answer, str) else str(answer) if isinstance(answer, (int, float)) else repr(answer)
    print("FINAL answer recorded: %s" % _short(_CH.final))


def FINAL_VAR(name) -> None:
    """Finish the run with the value of the variable called `name`."""
    if isinstance(name, str) and name.strip().isidentifier():
        key = name.strip()
        if key in _NS and key not in _RESERVED:
            value = _NS[key]
            _CH.final = value if isinstance(value, str) else str(value)
            print("FINAL answer recorded from variable %s: %s" % (key, _short(_CH.final)))
            return
        if key in _NS:
            raise NameError("FINAL_VAR(%r): that is a REPL function, not a variable" % key)
        raise NameError(
            "FINAL_VAR(%r): no such variable. Defined variables: %s. To answer with the text itself, write FINAL(%r)."
            % (key, ", ".join(_user_vars()) or "none", key)
        )
    # Small models often pass the value itself: accept it.
    FINAL(name)


def SHOW_VARS() -> dict:
    """Return the variables defined so far, with their types."""
    return _user_vars()


def search(pattern, window=150, text=None, regex=False, case=False, fields=True) -> list:
    """Find `pattern` in `context` (or in `text`) and return the text around every match.

    A match in a short line gives the whole line (once per line); a match in a long line (or in a
    text with no line breaks) gives `window` characters either side of it. The search ignores case
    unless `case=True`; `regex=True` reads `pattern` as a regular expression. On a list the items
    are searched one by one, on a dict its "key: value" pairs.

    A phrase that matches nothing is tried again, with a printed note saying so: first as its words
    in the same order with other endings and punctuation between them ("magic number for" finds
    "magic numbers, for"), then as its rarest word if that word is rare (at most 20 matches).
    Otherwise the note gives how often each word occurs.

    When the context's lines or records have fields that take a few values (a log's level and
    service, a table's region), a word naming one of those values means the field: search("warning")
    returns the lines whose level is WARN, search("error catalog") those whose level is ERR and
    whose service is CatalogService (other words must appear in the line). A note says so and how
    many lines merely mention the words; `fields=False` searches the text only.
    """
    if not isinstance(pattern, str) or not pattern.strip():
        raise TypeError("search(pattern): pattern must be a non-empty string, got %r" % (pattern,))
    if fields and text is None and not regex:
        try:
            by_field = _search_fields(pattern)
        except Exception:  # help, never a failure of the search
            by_field = None
        if by_field:
            return by_field
    source = (_records() or _NS.get("context")) if text is None else text
    window = max(0, int(window))
    flags = 0 if case else re.IGNORECASE
    keyed = isinstance(source, dict)
    if keyed:
        source = _entries(source)
    elif not isinstance(source, (str, list, tuple)):
        source = str(source)
    compiled = re.compile(pattern if regex else re.escape(pattern), flags)
    hits = _find(compiled, source, window)
    if keyed and len(hits) > 1:
        # the entry a name is the key of first: search("Yarholm") -> the city's own entry, then the
        # hundreds of people who live there
        hits.sort(key=lambda h: compiled.search(h.split(": ", 1)[0]) is None)
    words = [] if regex else list(dict.fromkeys(_WORD.findall(pattern)))
    if hits or len(words) < 2:
        return hits
    loose = r"\W+".join(re.escape(w) + r"\w{0,3}" for w in words)
    hits = _find(re.compile(loose, flags), source, window)
    if hits:
        print("search(%r): no exact match; %d with its words in this order, other endings or punctuation between:"
              % (pattern, len(hits)))
        return hits
    counts = [(w, _count(w, source, flags)) for w in words[:8] if len(w) > 2]
    found = [(n, w) for w, n in counts if n]
    if counts and not found:
        print("search(%r) found nothing, nor any of its words alone: the data says it another way. Search "
              "another word of the question, or a synonym." % (pattern,))
        return hits
    if found and min(found)[0] <= 20:
        n, word = min(found)
        print("search(%r) found nothing; here are the matches (%d) of its rarest word %r:" % (pattern, n, word))
        return _find(re.compile(re.escape(word), flags), source, window)
    if counts:
        print("search(%r) found nothing. Each word alone is found: %s. Search a shorter text."
              % (pattern, ", ".join("%r %s" % (w, "1000+" if n >= 1000 else n) for w, n in counts)))
    return hits


def _entries(value: dict) -> list:
    """A dict as one "key: value" text per entry; a value that is itself a dict of dicts (a table
    keyed by name: ``{"people": {"Maya Novak": {"city": ...}}}``) gives one text per inner entry,
    ``context['people']['Maya Novak']: {'city': ...}`` on the context. The 1.5B model's search for a
    name in such a dict returned a window cut out of one 1 MB "people: {...}" text."""
    is_context = value is _CONTEXT_SOURCE.get("value") and value is _NS.get("context")
    if is_context and _CONTEXT_SOURCE.get("entries_text") is not None:
        return _CONTEXT_SOURCE["entries_text"]
    out = []
    for key, inner in value.items():
        if isinstance(inner, dict) and inner and all(isinstance(v, dict) for v in itertools.islice(inner.values(), 50)):
            head = "context[%r]" % (key,) if is_context else str(key)
            out.extend("%s[%r]: %s" % (head, k, v) for k, v in inner.items())
        else:
            out.append("%s: %s" % (key, inner))
    if is_context:
        _CONTEXT_SOURCE["entries_text"] = out
    return out


class _RecordText(str):
    """A record as search() returns it: its text, which also reads like the record (hit['amount'],
    hit.get('region'), hit.items()). The 1.5B model filtered search()'s hits over a JSON table with
    ``row['category'] == 'Clothing'`` and got "string indices must be integers" five times in a row."""

    def __new__(cls, record):
        self = str.__new__(cls, str(record))
        self.record = record
        return self

    def __getitem__(self, key):
        if isinstance(key, str):
            return self.record[key]
        return str.__getitem__(self, key)

    def get(self, key, default=None):
        return self.record.get(key, default)

    def keys(self):
        return self.record.keys()

    def values(self):
        return self.record.values()

    def items(self):
        return self.record.items()


def _records():
    """The context's records as one text each, when the worker parsed a table that is not lines of
    text (JSON text, a dict of columns) into `rows`, else None. search() returns whole records there:
    on a one-line JSON text it used to return a window cut mid-record, and the 1.5B model answered
    the largest Books order with the amount of the record before the match."""
    table = _CONTEXT_SOURCE.get("records")
    if table is None or _NS.get("context") is not _CONTEXT_SOURCE.get("value"):
        return None
    if _CONTEXT_SOURCE.get("records_text") is None:
        _CONTEXT_SOURCE["records_text"] = [_RecordText(r) if isinstance(r, dict) else str(r) for r in table]
    return _CONTEXT_SOURCE["records_text"]


def _norm(s: str) -> str:
    return re.sub(r"[^a-z0-9]", "", s.lower())


_SEARCH_STOP = frozenset("a an the of in on at to for from by with and or lines line entries entry logged items records".split())


def _value_part(v: str) -> str:
    """A field value as it names something: "error" of "level=error" (a key=value log's word)."""
    return v.split("=", 1)[1] if "=" in v[1:] else v


def _field_of(word: str):
    """(field name, value) when ``word`` names exactly one value of one field, else None."""
    p = _norm(word)
    if len(p) < 3:
        return None
    for name, values in (_CONTEXT_SOURCE.get("fields") or {}).items():
        match = [v for v in values if len(_norm(_value_part(v))) >= 3
                 and (_norm(_value_part(v)).startswith(p) or p.startswith(_norm(_value_part(v))))]
        if len(match) == 1:
            return name, match[0]
    return None


def _has(name: str, v: str, row, header) -> bool:
    """True if ``row`` (a line, or a record) has the value ``v`` in the field ``name``."""
    if isinstance(row, dict):
        return row.get(name) == v
    if name.startswith("word ") and name[5:].isdigit():
        pos = int(name[5:]) - 1
        return [_field_word(w) for w in row.split()[pos:pos + 1]] == [v]
    if header and name in header:
        col = header.index(name)
        return [c.strip() for c in row.split(_CONTEXT_SOURCE.get("separator") or ",")][col:col + 1] == [v]
    return False


def _search_fields(pattern: str):
    """The lines (or records) whose fields have the values the pattern's words name, or None."""
    value = _NS.get("context")
    if value is not _CONTEXT_SOURCE.get("value") or not _CONTEXT_SOURCE.get("fields"):
        return None
    words = [w for w in _WORD.findall(pattern) if w.lower() not in _SEARCH_STOP]
    conds, rest = [], []
    for w in words:
        hit = _field_of(w)
        if hit and all(hit[0] != c[0] for c in conds):
            conds.append(hit)
        else:
            rest.append(w.lower())
    if not conds:
        return None
    header = None
    if _CONTEXT_SOURCE.get("records") is not None:
        value = rows = _CONTEXT_SOURCE["records"]
    elif isinstance(value, str):
        rows = value.splitlines()
        if _CONTEXT_SOURCE.get("separator") and rows:
            header = [c.strip() for c in rows[0].split(_CONTEXT_SOURCE["separator"])]
            rows = rows[1:]
    elif isinstance(value, list):
        rows = value
    else:
        return None
    out, kept = [], []
    for row in rows:
        if not isinstance(row, (str, dict)):
            continue
        if all(_has(name, v, row, header) for name, v in conds):
            shown = row if isinstance(row, str) else _RecordText(row)
            kept.append(shown)
            if all(r in shown.lower() for r in rest):
                out.append(shown)
    # a word the data never writes cannot pick lines ("come" in "How many WARNING lines come from
    # SEARCH?", "service" where the data writes "search-api"): it is left out, and the note says so
    texts = value if not isinstance(value, list) else [r if isinstance(r, str) else str(r) for r in value]
    absent = [r for r in rest if not any(r in shown.lower() for shown in kept) and _count(r, texts, re.IGNORECASE, cap=1) == 0]
    if not out and absent and kept:
        out = [shown for shown in kept if all(r in shown.lower() for r in rest if r not in absent)]
    else:
        absent = []
    if not out:
        return None
    said = " and ".join("%s is %r" % (name if not name.startswith("word ") else name.replace("word", "word") + " of the line", v) for name, v in conds)
    plain = len(_find(re.compile(re.escape(pattern), re.IGNORECASE), texts, 150))
    unit = "records" if isinstance(value, list) and value and isinstance(value[0], dict) else "lines"
    left = " (%s: not in the data, left out)" % ", ".join(repr(r) for r in absent) if absent else ""
    print("search(%r): the %d %s where %s (a field's value%s)%s; %d %s contain the text %r itself: "
          "search(%r, fields=False) returns those." % (pattern, len(out), unit, said, "s" if len(conds) > 1 else "", left, plain, unit, pattern, pattern))
    return out


#: A word of a search phrase: letters and digits, with inner hyphens or apostrophes.
_WORD = re.compile(r"[^\W_](?:[\w'-]*[^\W_])?")


def _find(compiled, source, window: int) -> list:
    """The snippets around every match of ``compiled`` in a str, or in each item of a list."""
    if isinstance(source, (list, tuple)):
        hits = []
        for item in source:
            record = item if isinstance(item, _RecordText) else _RecordText(item) if isinstance(item, dict) else None
            found = _find(compiled, item if isinstance(item, str) else str(item), window)
            # a hit that is the whole record is the record's text that also indexes like it
            hits.extend(record if record is not None and hit == record else hit for hit in found)
        return hits
    hits, last_line = [], -1
    for m in compiled.finditer(source):
        start = source.rfind("\n", 0, m.start()) + 1
        end = source.find("\n", m.end())
        end = len(source) if end < 0 else end
        if end - start <= 2 * window + (m.end() - m.start()):
            if start != last_line:
                hits.append(source[start:end])
                last_line = start
        else:
            # In a long line (prose, a one-line haystack): the sentence holding the match, cut to
            # `window` characters either side. A 1.5B model misread whole paragraphs ("Kofi Vogel
            # collects maps. ... Zoe lives in Elwick" -> Elwick) but reads one sentence right.
            lo, hi = max(start, m.start() - window), min(end, m.end() + window)
            left = max(source.rfind(". ", lo, m.start()), source.rfind("? ", lo, m.start()), source.rfind("! ", lo, m.start()))
            right = min((i for i in (source.find(". ", m.end(), hi), source.find("? ", m.end(), hi), source.find("! ", m.end(), hi)) if i >= 0), default=-1)
            lo = left + 2 if left >= 0 else lo
            hi = right + 1 if right >= 0 else hi
            hits.append(source[lo:hi].strip())
    return hits


def _count(word: str, source, flags: int, cap: int = 1000) -> int:
    """How often ``word`` occurs in a str or a list's items, counting up to ``cap``."""
    n = 0
    for part in source if isinstance(source, (list, tuple)) else (source,):
        for _ in re.finditer(re.escape(word), part if isinstance(part, str) else str(part), flags):
            n += 1
            if n >= cap:
                return n
    return n


#: An output line that reads as an empty result: 0, [], {}, set(), '' or None.
#: An output line that says a filter kept nothing: 0, 0.0, [], {}, None, "0 of 120", or one of these
#: after a short label ("total: 0", "Count = 0.00").
_EMPTY_LINE = re.compile(r"^\s*(?:[\w ()'\"-]{0,40}[:=]\s*)?(?:\(?0(?:\.0+)?\)?|\[\]|\{\}|set\(\)|''|\"\"|None|0 of \d+)\s*$", re.MULTILINE)
_LOWERED: dict = {}


def _found_nothing(stdout: str) -> bool:
    """True if a cell printed nothing, or a line that reads as an empty result (see _EMPTY_LINE)."""
    return not stdout.strip() or _EMPTY_LINE.search(stdout) is not None


def _context_text():
    """The context as one string to look literals up in (None for shapes other than text or a list of texts)."""
    value = _NS.get("context")
    if isinstance(value, str):
        return value
    if isinstance(value, (list, dict)) and value:
        key = ("joined", id(value), len(value))
        if _LOWERED.get("joined_key") != key:
            items = value.items() if isinstance(value, dict) else enumerate(value)
            _LOWERED.update(joined_key=key, joined="\n".join(
                x if isinstance(x, str) else "%s: %s" % (k, x) if isinstance(value, dict) else json.dumps(x, default=str, ensure_ascii=False)
                for k, x in items))
        return _LOWERED["joined"]
    return None


def _lowered(text: str) -> str:
    key = (id(text), len(text))
    if _LOWERED.get("key") != key:
        _LOWERED.update(key=key, text=text.lower())
    return _LOWERED["text"]


def _is_lower_call(node) -> bool:
    return isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr in ("lower", "casefold")


def _str_const(node) -> bool:
    return isinstance(node, ast.Constant) and isinstance(node.value, str)


def _is_field(node) -> bool:
    """True for a row's field, maybe cleaned: ``row["k"]``, ``parts[2].strip().lower()``, ``r.get("k")``."""
    while isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
        if node.func.attr == "get":
            return True
        node = node.func.value
    return isinstance(node, ast.Subscript)


def _filter_literals(tree, with_fields: bool = True) -> list:
    """The string literals a cell filters the data by, each with whether the text it is compared
    with was lower-cased: ``"x" in line``, ``row["k"] == "x"`` (either side), ``s.startswith("x")``
    (or a tuple of prefixes; ``endswith`` alike)."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and len(node.ops) == 1:
            left, op, right = node.left, node.ops[0], node.comparators[0]
            if isinstance(op, (ast.In, ast.NotIn)) and _str_const(left):
                found.append((left.value, _is_lower_call(right)))
            elif with_fields and isinstance(op, (ast.Eq, ast.NotEq)):  # only a field of a row: a reply == "yes" is not about the data
                if _str_const(right) and _is_field(left):
                    found.append((right.value, _is_lower_call(left)))
                elif _str_const(left) and _is_field(right):
                    found.append((left.value, _is_lower_call(right)))
        elif (with_fields and isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr in ("startswith", "endswith") and node.args):
            arg = node.args[0]
            consts = [arg] if _str_const(arg) else [e for e in arg.elts if _str_const(e)] if isinstance(arg, ast.Tuple) else []
            found.extend((c.value, _is_lower_call(node.func.value)) for c in consts)
    return found


def _audit(code: str, stdout: str, error=None, skip=()) -> list:
    """Notes on a cell's text filters that cannot match: the commonest silent mistake of a small
    model is ``"ERROR" in line.lower()`` (never true) or a literal the data spells otherwise. The
    notes name the cause and the call that would find it; they never change what the cell did.
    Literals in ``skip`` (label names the runner has already answered, see _label_rerun) get none."""
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return []
    notes, literals = (_helper_keys(tree) + _column_as_rows(tree, error) + _rows_replaced(tree, stdout) + _typed_literals(tree, stdout)
                       + _sliced_text(tree) + _unasked_tests(tree, stdout)), []
    # a cell that asks a model compares replies ("yes"), not the data: only its `in` tests are read
    asks = re.search(r"\b(?:llm_query|llm_query_batched|rlm_query|rlm_query_batched|judge|classify)\(", code) is not None
    for lit, lowered in _filter_literals(tree, with_fields=not asks):
        if lowered and lit != lit.lower():
            notes.append("note: %r has capital letters but is compared with lower-cased text (.lower()), so it never "
                         "matches: write %r, or use search(%r)." % (lit, lit.lower(), lit))
        elif len(lit.strip()) >= 2 and lit.strip().lower() not in {x.lower() for x in skip}:
            literals.append((lit, lowered))
    if not literals or not _found_nothing(stdout):
        return notes[:3]
    text = _context_text()
    if text is None:
        return notes[:3]
    for lit, lowered in list(dict.fromkeys(literals))[:3]:
        if lit in text or (lowered and lit in _lowered(text)):
            continue
        if lit.lower() in _lowered(text):
            notes.append("note: %r is not in `context` with these capitals, only with others: compare lower-cased "
                         "text with %r, or use search(%r), which ignores case." % (lit, lit.lower(), lit))
        elif _iso_month_of(lit, text):
            # The 1.5B model summed the orders whose date holds 'May 2024' (dates are 2024-05-23 there) and got 0.
            month = _iso_month_of(lit, text)
            notes.append("note: %r does not occur in `context` as written: the data writes dates as %s: test the month as "
                         "it does, e.g. row['date'].startswith(%r)." % (lit, _DAY_IN_TEXT.search(text[:200000]).group(0), month))
        else:
            notes.append("note: %r does not occur in `context` as written. search(%r) also finds other endings, "
                         "punctuation and word order; or look for one word of it." % (lit, lit))
    missing = [lit for lit, _ in literals if any(n.startswith("note: %r does not occur" % lit) for n in notes)]
    if missing and _short_texts() and not all(_NAME_LIKE.search(lit) for lit in missing):
        # The 1.5B model filtered reviews for "satisfied" and tickets for "bug" (words the texts never
        # use), found 0 and searched the question's other words until the loop guard stopped it.
        notes.append("note: `context` is a collection of short texts: whether a text is about something (a feeling, a "
                     "topic, a kind) is not a word to look for. Ask the model about each one: kept = judge(context, "
                     "\"<the question>\")")  # the host writes the run's question in its place
    return notes[:4]


_DAY_IN_TEXT = re.compile(r"\b\d{4}-\d{2}-\d{2}\b")


def _iso_month_of(lit: str, text: str):
    """'2024-05' for a literal that writes a month by its name and year ('May 2024', 'may 2024') in a
    text whose dates are ISO days (2024-05-23), else None. A month's name alone ('May', 'sep') takes
    the year the run's question gives it ("in May 2024"): the 1.5B model, told that 'May 2024' is not
    how the data writes the month, tested 'May' in row['date'] next, and got 0 again."""
    if _DAY_IN_TEXT.search(text[:200000]) is None:
        return None
    starts = [x[:3] for x in _MONTH_NAMES]
    m = _MONTH_WORDS.fullmatch(lit.strip())
    if m is not None and m.group(1):
        return "%s-%02d" % (m.group(2), starts.index(m.group(1).lower()[:3]) + 1)
    name = lit.strip().rstrip(".").lower()
    if len(name) < 3 or not any(full.startswith(name) for full in _MONTH_NAMES):
        return None
    years = {q.group(2) for q in _MONTH_WORDS.finditer(str(_CONTEXT_SOURCE.get("question") or ""))
             if q.group(1) and q.group(1).lower()[:3] == name[:3]}
    return "%s-%02d" % (years.pop(), starts.index(name[:3]) + 1) if len(years) == 1 else None


#: A literal that names one thing (a hyphenated or numbered name, two capitalised words: "Fennel-compressor",
#: "SN-48", "Elm Clipper"): a lookup's key, not a topic a judge() call could decide. The 1.5B model,
#: told to judge() 178 posts after 'Fennel-compressor' matched nothing, ran out of time.
_NAME_LIKE = re.compile(r"[A-Za-z]\w*-\w|\d|\b[A-Z]\w*\s+[A-Z]")

#: "A text's label is its sentiment, one of: positive, negative, neutral (a plain statement ...)." The
#: names a question says a label is one of (parentheses dropped first).
_ONE_OF = re.compile(r"\bone of\b:?\s*([^.?!;]*)", re.IGNORECASE)
#: At most this many distinct texts are labelled for one label re-run (one sub-call each).
_LABEL_RERUN_MAX = 150


def _question_labels(question=None) -> list:
    """The label names a question (by default the run's) lists after "one of" (at least two), else []."""
    if question is None:
        question = _CONTEXT_SOURCE.get("question")
    question = re.sub(r"\([^)]*\)", "", str(question or ""))
    for m in _ONE_OF.finditer(question):
        names = [re.sub(r"^(?:or|and)\s+", "", part.strip()).strip(" '\"") for part in re.split(r",|\bor\b", m.group(1))]
        names = [n for n in names if re.fullmatch(r"[A-Za-z][A-Za-z0-9_ -]{0,30}", n)]
        if len(names) >= 2:
            return list(dict.fromkeys(names))
    return []


def _asked_label(question: str):
    """The one label a question that lists its labels asks about ("... one of: positive, negative,
    neutral. How many reviews have the label 'neutral'?" -> "neutral"), else None. Asked "Is this
    review labelled neutral?" item by item, the 1.5B sub-model said yes to most items; asked which
    label fits, it was right on 9 in 10 (see _CLASSIFY_PROMPT)."""
    names = _question_labels(question)
    if not names:
        return None
    rest = _ONE_OF.sub(" ", re.sub(r"\([^)]*\)", "", question))
    named = [n for n in names if re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(n.lower()), rest.lower())]
    return named[0] if len(named) == 1 else None


class _LabelTests(ast.NodeTransformer):
    """Rewrites each test of a text for a label name (``"neutral" in line.lower()``,
    ``row["text"] == "entity"``, ``t.startswith("location")``) into ``_label_is(<the text>, "<name>")``."""

    def __init__(self, names) -> None:
        self.names = {n.lower(): n for n in names}
        self.found: list = []

    def _name(self, node):
        return self.names.get(node.value.strip().lower()) if _str_const(node) else None

    def _swap(self, node, subject, name, negate=False):
        self.found.append(name)
        call = ast.Call(ast.Name("_label_is", ast.Load()), [subject, ast.Constant(name)], [])
        return ast.copy_location(ast.UnaryOp(ast.Not(), call) if negate else call, node)

    def visit_Compare(self, node):
        self.generic_visit(node)
        if len(node.ops) != 1:
            return node
        left, op, right = node.left, node.ops[0], node.comparators[0]
        if isinstance(op, (ast.In, ast.NotIn)) and self._name(left):
            return self._swap(node, right, self._name(left), isinstance(op, ast.NotIn))
        if isinstance(op, (ast.Eq, ast.NotEq)):
            for const, other in ((right, left), (left, right)):
                if self._name(const) and not _str_const(other):
                    return self._swap(node, other, self._name(const), isinstance(op, ast.NotEq))
        return node

    def visit_Call(self, node):
        self.generic_visit(node)
        if (isinstance(node.func, ast.Attribute) and node.func.attr in ("startswith", "endswith")
                and len(node.args) == 1 and self._name(node.args[0])):
            return self._swap(node, node.func.value, self._name(node.args[0]))
        return node


def _last_shown(tree):
    """(the module without its last statement, that statement's expression) when the last statement is
    an expression, whose value a cell shows as the REPL would; else (the module, None)."""
    if tree.body and isinstance(tree.body[-1], ast.Expr):
        return ast.Module(body=tree.body[:-1], type_ignores=[]), ast.Expression(tree.body[-1].value)
    return tree, None


def _run_quietly(tree, g: dict, timeout: float, limit: int) -> tuple:
    """Run ``tree`` in the names ``g``: (what it printed, the FINAL it gave or None, the error or None)."""
    out, said = _Capped(limit), []
    g["FINAL"] = lambda a: said.append(str(a))
    g["FINAL_VAR"] = lambda n: said.append(str(g.get(str(n).strip("'\" "), n)))
    old = sys.stdout, sys.stderr
    sys.stdout = sys.stderr = out
    error = None
    if timeout and timeout > 0:
        signal.setitimer(signal.ITIMER_REAL, float(timeout))
    module, last = _last_shown(tree)  # the value of a last expression is shown, as in a cell
    try:
        exec(compile(module, "<label re-run>", "exec"), g)
        if last is not None:
            value = eval(compile(last, "<label re-run>", "eval"), g)
            if value is not None:
                out.write(repr(value) + "\n")
    except BaseException as exc:  # the model's code: anything can happen, timeouts included
        error = "%s: %s" % (type(exc).__name__, exc)
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        sys.stdout, sys.stderr = old
    return out.getvalue(), (said[-1] if said else None), error


def _label_rerun(code: str, stdout: str, timeout: float, limit: int) -> tuple:
    """A cell that tests texts for a label word (the question says each text's label is "one of:
    positive, negative, neutral", and the cell counts lines containing "neutral") finds nothing: the
    labels are judgements, never written in the texts. The 1.5B model did this on every OOLONG-style
    task and, told so, wrote the same filter again. So the runner runs the cell once more, each
    label test answered by classify() over the texts the cell tested, in a copy of the REPL's names.
    Returns (the literals it answered, the note with what that run printed), or ((), None)."""
    names = _question_labels()
    if not names or not _found_nothing(stdout):
        return (), None
    try:
        tree = ast.parse(code)
    except (SyntaxError, ValueError):
        return (), None
    if _writes_context_literal(tree):  # the cell was not run: its texts are made up
        return (), None
    tests = _LabelTests(names)
    tree = ast.fix_missing_locations(tests.visit(tree))
    text = _context_text()
    asked = [n for n in dict.fromkeys(tests.found) if text is None or n.lower() not in _lowered(text)]
    if not asked:
        return (), None
    seen: dict = {}

    def probe(subject, name):
        seen.setdefault(str(subject), None)
        return False

    g = dict(_NS)
    g["_label_is"] = probe
    _run_quietly(tree, g, timeout, limit)  # pass 1: only which texts the label tests see
    texts = list(seen)
    if not texts or len(texts) > _LABEL_RERUN_MAX:
        return (), None
    got = dict(zip(texts, classify(texts, names)))
    g = dict(_NS)
    g["_label_is"] = lambda subject, name: got.get(str(subject)) == name
    printed, final, error = _run_quietly(tree, g, timeout, limit)
    counts = ", ".join("%s %d" % kv for kv in collections.Counter(got.values()).most_common())
    shown = printed.strip()[-1500:] or (final or "")
    note = ("note: %s %s a label the model gives each text, not a word written in it. The runner ran this cell "
            "again with each label test answered by classify() over the %d texts it tested (%s). It printed:\n%s"
            % (", ".join(repr(n) for n in asked), "is" if len(asked) == 1 else "are", len(texts), counts,
               shown or "(nothing)"))
    if error:
        note += "\n(it stopped on %s)" % _short(error, 200)
    value = final or (shown.splitlines()[-1].strip() if shown else "")
    if value and re.fullmatch(r"-?\d[\d,]*(?:\.\d+)?", value):
        note += "\nIf this answers the question, reply FINAL(%s)." % value
    return tuple(asked), note


def _helper_keys(tree) -> list:
    """A note for each REPL variable the cell read as a key of `context` (``context['rows']``): the
    1.5B model, told "the variable `rows` holds the table", wrote context['rows'], got a KeyError and
    then printed that the data has no rows until the loop guard stopped it."""
    ctx = _NS.get("context")
    notes = []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "context"
                and _str_const(node.slice) and node.slice.value in ("rows", "lists") and node.slice.value in _NS
                and not (isinstance(ctx, dict) and node.slice.value in ctx)):
            name = node.slice.value
            note = ("note: `%s` is a variable of its own, not a key of `context`: write %s, not context[%r]."
                    % (name, name, name))
            if note not in notes:
                notes.append(note)
    return notes


def _rows_replaced(tree, stdout: str) -> list:
    """A note when the cell assigns its own `rows` over the table the worker parsed and finds nothing
    (or fails); `rows` is put back. Seen on the 1.5B model (dev-logs-status-text): told `rows` holds an access log's
    lines parsed, it wrote ``rows = [dict(zip(keys, line.split())) ...]`` (the method under 'client',
    a date under 'method'), counted 0 and answered 0."""
    table = _CONTEXT_SOURCE.get("rows")
    if table is None or not table or not _found_nothing(stdout):
        return []
    assigned = any(isinstance(node, (ast.Assign, ast.AnnAssign, ast.AugAssign))
                   and any(isinstance(t, ast.Name) and t.id == "rows" for t in (node.targets if isinstance(node, ast.Assign) else [node.target]))
                   for node in tree.body)
    if not assigned:
        return []
    _NS["rows"] = table
    keys = ", ".join(str(k) for k in list(table[0])[:12]) if isinstance(table[0], dict) else ""
    return ["note: your cell builds its own `rows` and found nothing, but `rows` already held the context parsed, "
            "%s dicts with the keys %s (numbers parsed): it holds them now. Filter `rows` as it is, without "
            "parsing the text." % (format(len(table), ","), keys)]


def _sliced_text(tree) -> list:
    """A note when the cell reads a slice of the context's text (``print(context[:100])``) while `rows`
    holds the same table parsed: one whole row, so the columns need no more reading. The 1.5B model
    printed context[0:100], context[100:200], ... "to get more information about the columns" of a
    CSV or JSON table until the loop guard stopped it, and never used `rows`."""
    table, ctx = _CONTEXT_SOURCE.get("rows"), _NS.get("context")
    if not table or not isinstance(ctx, str) or _NS.get("rows") is not table or not isinstance(table[0], dict):
        return []
    for node in ast.walk(tree):
        if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "context"
                and isinstance(node.slice, ast.Slice)):
            return ["note: that is a piece of the raw text. The whole table is already parsed in `rows`, %s dicts "
                    "like rows[0] = %s: filter and compute over `rows` instead of reading the text."
                    % (format(len(table), ","), _short(repr(table[0]), 300))]
    return []


#: A question that asks for a count or an aggregate over rows.
_AGGREGATE = re.compile(r"\b(?:how many|how much|number of|count|total|sum|combined|average|mean|maximum|minimum|largest|biggest|"
                        r"greatest|smallest|highest|lowest)\b", re.IGNORECASE)


def _unasked_tests(tree, stdout: str) -> list:
    """A note when a filter that found nothing tests a row's text field for a value the question
    never names, while the question names others (see _named_values). The 1.5B model, told to keep
    the orders of customer 'Northwind Retail', added region == 'Central' (the region of the one row
    it had seen), found none and answered []."""
    named = _CONTEXT_SOURCE.get("named_values") or []
    table = _CONTEXT_SOURCE.get("rows") or (_NS.get("context") if isinstance(_NS.get("context"), list) else None)
    if not named or not table or not isinstance(table[0], dict) or not _found_nothing(stdout):
        return []
    if not _AGGREGATE.search(str(_CONTEXT_SOURCE.get("question") or "")):
        return []  # a lookup's second step tests a value the question does not write (the team it found)
    asked = {str(v).strip().lower() for _, v, _ in named}
    # (as the host's notes write them: a path names a prefix, "/api/orders" and its sub-paths)
    stated = " and ".join("%s %s %s" % (k, "in" if kind == "month" else "starting with" if kind == "prefix" else "==",
                                        v if kind == "number" else repr(v)) for k, v, kind in named)
    notes = []
    for key, lit in _field_compares(tree, (ast.Eq,)):
        if not _str_const(lit):
            continue
        want = lit.value.strip().lower()
        if not isinstance(table[0].get(key), str) or not want or any(want in a or a in want for a in asked):
            continue
        note = ("note: the question does not name %s == %r: that test is your own, and with it the filter never "
                "matched. Test only the conditions the question states: %s." % (key, lit.value, stated))
        if note not in notes:
            notes.append(note)
    return notes[:2]


def _field_compares(tree, ops: tuple):
    """(key, literal node) for each ``row['key'] <op> <constant>`` of the cell (either side), op one of ``ops``."""
    for node in ast.walk(tree):
        if not isinstance(node, ast.Compare) or len(node.ops) != 1 or not isinstance(node.ops[0], ops):
            continue
        for field, lit in ((node.left, node.comparators[0]), (node.comparators[0], node.left)):
            if isinstance(field, ast.Subscript) and _str_const(field.slice) and isinstance(lit, ast.Constant):
                yield field.slice.value, lit


def _typed_literals(tree, stdout: str) -> list:
    """A note when the cell compared a record field that holds numbers with a text of digits
    (``row['status'] == '503'``), or one that holds text with a number, and found nothing. Seen on
    the 1.5B model over a parsed access log: it counted 0 requests with status '503' and answered 0."""
    if not _found_nothing(stdout):
        return []
    table = _NS.get("rows") if isinstance(_NS.get("rows"), list) else _NS.get("context")
    if not isinstance(table, list) or not table or not isinstance(table[0], dict):
        return []
    notes = []
    for key, lit in _field_compares(tree, (ast.Eq, ast.NotEq)):
        value = next((r.get(key) for r in itertools.islice(table, 200) if isinstance(r, dict) and r.get(key) is not None), None)
        number = isinstance(value, (int, float)) and not isinstance(value, bool)
        if number and isinstance(lit.value, str) and isinstance(_number(lit.value.strip()), (int, float)):
            note = ("note: %r holds numbers (e.g. %r), not text: compare it with %s, not %r; the filter never matched."
                    % (key, value, lit.value.strip(), lit.value))
        elif isinstance(value, str) and isinstance(lit.value, (int, float)) and not isinstance(lit.value, bool):
            note = ("note: %r holds text (e.g. %r), not numbers: compare it with %r, not %r; the filter never matched."
                    % (key, value, str(lit.value), lit.value))
        else:
            continue
        if note not in notes:
            notes.append(note)
    return notes[:2]


def _column_as_rows(tree, error) -> list:
    """A note when a cell that failed with a TypeError looped over one column of a table of columns
    as if it held rows (``for row in context['order_id']: row['date']``): seen on the 1.5B model,
    which then ran the same loop until the loop guard stopped it."""
    ctx = _NS.get("context")
    if not error or "TypeError" not in str(error) or not isinstance(ctx, dict) or _NS.get("rows") is None:
        return []
    for node in ast.walk(tree):
        column = _context_column(node.iter, ctx) if isinstance(node, (ast.For, ast.comprehension)) else None
        if column is not None:
            return ["note: context[%r] is one column, a list of plain values, not of rows. The rows are in "
                    "`rows`, a list of dicts: for row in rows: row['<column>']." % column]
    return []


def _context_column(node, columns):
    """The key when ``node`` is ``context['<key>']`` with a key of ``columns``, else None."""
    if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == "context"
            and _str_const(node.slice) and node.slice.value in columns):
        return node.slice.value
    return None


class _ColumnLoops(ast.NodeTransformer):
    """Loops over one column of a table of columns whose variable is read as a row go over `rows`.

    ``for row in context['order_id']: row['date']`` (or ``for row in context``) fails on every
    table of columns: a column holds plain values and the dict's keys are strings. The 1.5B model
    wrote that loop, was told the rows are in `rows`, and ran the same loop until the loop guard
    stopped it. What it meant is clear, so the runner runs it over `rows` and says so.
    """

    def __init__(self, columns) -> None:
        self.columns = columns
        self.swapped = []

    def _source(self, it, target, parts):
        """``it`` as the model wrote it when the loop must go over `rows` instead, else None."""
        if not isinstance(target, ast.Name):
            return None
        column = _context_column(it, self.columns)
        if column is not None:
            source = "context[%r]" % column
        elif isinstance(it, ast.Name) and it.id == "context":
            source = "context"
        else:
            return None
        for part in parts:
            for node in ast.walk(part):
                if (isinstance(node, ast.Subscript) and isinstance(node.value, ast.Name) and node.value.id == target.id
                        and _str_const(node.slice) and node.slice.value in self.columns):
                    return source
        return None

    def _swap(self, holder, source):
        holder.iter = ast.copy_location(ast.Name("rows", ast.Load()), holder.iter)
        if source not in self.swapped:
            self.swapped.append(source)

    def visit_For(self, node):
        self.generic_visit(node)
        source = self._source(node.iter, node.target, node.body + node.orelse)
        if source:
            self._swap(node, source)
        return node

    def _comprehension(self, node):
        self.generic_visit(node)
        parts = [node.key, node.value] if isinstance(node, ast.DictComp) else [node.elt]
        for gen in node.generators:
            source = self._source(gen.iter, gen.target, parts + gen.ifs + [g for g in node.generators if g is not gen])
            if source:
                self._swap(gen, source)
        return node

    visit_ListComp = visit_SetComp = visit_GeneratorExp = visit_DictComp = _comprehension


def _loops_over_rows(tree) -> tuple:
    """The cell with its row loops over a column moved to `rows` (see :class:`_ColumnLoops`), and notes."""
    ctx, table = _NS.get("context"), _CONTEXT_SOURCE.get("rows")
    if (not isinstance(ctx, dict) or table is None or _NS.get("rows") is not table or ctx is not _CONTEXT_SOURCE.get("value")
            or not all(isinstance(v, list) and v and not isinstance(v[0], dict) for v in ctx.values())):
        return tree, []
    swap = _ColumnLoops(set(ctx))
    tree = ast.fix_missing_locations(swap.visit(tree))
    notes = ["note: %s holds %s, not the rows, so the runner ran your loop over `rows` (the same table, one "
             "dict per row: row['<column>']). Write `for row in rows:` yourself." % (
                 source, "one column's plain values" if source != "context" else "the column names")
             for source in swap.swapped]
    return tree, notes


#: The notes of this cell's own `rows = ...` / `lists = ...` that failed (see _kept_helpers).
_KEPT_NOTES: list = []


def _rlm_kept(name: str, exc):
    """The runner's `rows` or `lists`, in place of the cell's own assignment (that raised ``exc``, if not None)."""
    kept = _CONTEXT_SOURCE.get(name)
    if exc is None:
        return kept
    if name == "lists":
        shown = ", ".join("%r (%s lines)" % (k, format(len(v), ",")) for k, v in itertools.islice(kept.items(), 6))
        what, use = "the sections the runner split from the text, by title: %s" % shown, "Use lists[<title>] as it is."
    else:
        keys = ", ".join(str(k) for k in list(kept[0])[:12]) if isinstance(kept[0], dict) else ""
        what = "the context parsed, %s dicts with the keys %s (numbers parsed)" % (format(len(kept), ","), keys)
        use = "Filter `rows` as it is."
    note = ("note: your own `%s = ...` failed (%s: %s), so `%s` still holds %s, and the rest of the cell ran with it. %s"
            % (name, type(exc).__name__, _short(str(exc), 80), name, what, use))
    if note not in _KEPT_NOTES:
        _KEPT_NOTES.append(note)
    return kept


def _kept_helpers(tree) -> None:
    """Wrap each top-level ``rows = ...`` / ``lists = ...`` of the cell so that, if it raises, the name
    keeps the runner's parsed value (with a note) and the cell goes on. The 1.5B model, told `lists`
    holds a text's titled sections, rebuilt it with ``context.split('=== West ===')[2]``, got an
    IndexError, and sent the same cell until the loop guard stopped it; the lines after the
    assignment (set(lists['East']) & set(lists['West'])) were right."""
    _KEPT_NOTES.clear()
    names = {n for n in ("rows", "lists") if _CONTEXT_SOURCE.get(n)}
    if not names:
        return
    body = []
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id in names):
            name = stmt.targets[0].id
            kept = _CONTEXT_SOURCE[name]
            if (name == "lists" and isinstance(stmt.value, ast.Dict) and stmt.value.keys
                    and all(_str_const(k) and kept.resolve(k.value) is not None for k in stmt.value.keys)):
                # its own split of the sections the runner split already (by lines it counted, by a
                # title's text): the names are the runner's, so are the lists
                _KEPT_NOTES.append("note: `lists` already held the sections %s, split by the runner, so your cell's "
                                   "own `lists = {...}` was skipped and the rest of the cell ran with the runner's."
                                   % ", ".join(repr(kept.resolve(k.value)) for k in stmt.value.keys))
                body.append(ast.copy_location(ast.parse("lists = _rlm_kept('lists', None)").body[0], stmt))
                continue
            handler = ast.parse("try:\n    pass\nexcept Exception as _rlm_exc:\n    %s = _rlm_kept(%r, _rlm_exc)\n" % (name, name)).body[0]
            handler.body = [stmt]
            stmt = ast.copy_location(handler, stmt)
        body.append(stmt)
    tree.body = body
    ast.fix_missing_locations(tree)
    _NS["_rlm_kept"] = _rlm_kept


def _key_written_otherwise(exc) -> str:
    """A note for a KeyError whose key the context's dicts hold in other capitals or spacing
    (``context['people']['GIANNI S. PETROV']`` where the data has 'Gianni S. Petrov'): the question
    writes names in any case, and the 1.5B model copies them as written there."""
    key = exc.args[0] if exc.args else None
    ctx = _NS.get("context")
    if not isinstance(key, str) or not key.strip() or not isinstance(ctx, dict):
        return ""
    want = " ".join(key.lower().split())
    places = [("context", ctx)] + [("context[%r]" % k, v) for k, v in itertools.islice(ctx.items(), 50) if isinstance(v, dict)]
    for where, table in places:
        if key in table:
            continue
        for name in table:
            if isinstance(name, str) and " ".join(name.lower().split()) == want:
                return "\nnote: the data writes the key %r as %r: %s[%r]." % (key, name, where, name)
    return ""


def _short_texts() -> bool:
    """True if `context` is a collection of at most _TEXT_ITEMS_MAX short texts (known since its load)."""
    return bool(_CONTEXT_SOURCE.get("short_texts"))


def _short(s: str, n: int = 200) -> str:
    s = str(s)
    return s if len(s) <= n else s[:n] + "..."


def _user_vars() -> dict:
    out = {}
    for k, v in _NS.items():
        if k.startswith("_") or k in _RESERVED or k == "__builtins__":
            continue
        if type(v).__name__ in ("module", "function", "builtin_function_or_method", "type") and k in (
            getattr(v, "__name__", None),
        ):
            continue
        out[k[:_MAX_NAME]] = type(v).__name__[:_MAX_NAME]
        if len(out) >= 200:
            break
    return out


_FUNCS = {
    "llm_query": llm_query,
    "llm_query_batched": llm_query_batched,
    "rlm_query": rlm_query,
    "rlm_query_batched": rlm_query_batched,
    "FINAL": FINAL,
    "FINAL_VAR": FINAL_VAR,
    # the 1.5B model wrote Final(absent_items) after printing the right items, and got a NameError
    "Final": FINAL,
    "SHOW_VARS": SHOW_VARS,
    "search": search,
    "judge": judge,
    "classify": classify,
}


def _restore() -> list:
    """Put back REPL functions the code overwrote or deleted; return the names restored."""
    restored = []
    for name, fn in _FUNCS.items():
        if _NS.get(name) is not fn:
            if name in _NS or _NS.get("__rlm_installed__"):
                restored.append(name)
            _NS[name] = fn
    if _CONTEXT_SOURCE and ("context" not in _NS or _NS["context"] is not _CONTEXT_SOURCE.get("value")):
        # Small models paste the preview into `context = """..."""` and then search that: the
        # name always means the whole data. (A cell may still bind other names to it.)
        _NS["context"] = _CONTEXT_SOURCE["value"]
        restored.append("context")
    _NS["__rlm_installed__"] = True
    return restored


def _number(s: str):
    try:
        return int(s)
    except ValueError:
        try:
            return float(s)
        except ValueError:
            return s


#: How much of a text context is read at a time (the loader's extra memory, about).
_LOAD_CHUNK = 8 << 20
#: For each width of str (0: ASCII, 1: Latin-1, 2: UCS-2, 4: UCS-4): its largest character and
#: the codec that gives its characters' bytes as CPython stores them.
_MAXCHAR = {0: 0x7F, 1: 0xFF, 2: 0xFFFF, 4: 0x10FFFF}
_LAYOUT_CODEC = {0: "ascii", 1: "latin-1", 2: "utf-16-le", 4: "utf-32-le"}
_STR_LAYOUT: list = []  # [(PyUnicode_New, data offset of an ASCII str, of any other)], or [None]


def _read_text(path: str, chunk: int = _LOAD_CHUNK) -> str:
    """The file as ``open(path, encoding="utf-8", errors="replace").read()`` returns it, in about
    half the peak memory.

    That read holds the file's bytes and the str decoded from them at once: twice the file. Here
    the str is allocated once at its final size (CPython, through ctypes) and filled from reads of
    ``chunk`` bytes, so the peak is the str and a chunk or two. An ASCII file without carriage
    returns is copied in as it is read; any other (non-ASCII, invalid UTF-8, CR or CRLF line ends)
    is decoded twice with the decoders ``open`` uses: once to learn the str's length and width,
    once to fill it. Anything unexpected (another Python, no ctypes, a str layout that fails its
    check, a file that changes while it is read) falls back to the plain read.
    """
    try:
        text = _read_text_in_place(path, max(int(chunk), 1))
    except Exception:
        text = None
    if text is None:
        with open(path, encoding="utf-8", errors="replace") as f:
            return f.read()
    return text


def _read_text_in_place(path: str, chunk: int):
    layout = _str_layout()
    if layout is None:
        return None
    with open(path, "rb") as f:
        text = _fill_ascii(f, layout, os.fstat(f.fileno()).st_size, chunk)
        if text is None:
            f.seek(0)
            text = _fill_decoded(f, layout, chunk)
    return text


def _fill_ascii(f, layout, size: int, chunk: int):
    """A str of the file's ``size`` bytes if they are ASCII without a CR, else None."""
    if size <= 0:
        return "" if not f.read(1) else None
    text = layout[0](size, _MAXCHAR[0])
    view = _str_data(text, layout[1], size)
    buf = bytearray(min(chunk, size))
    mem = memoryview(buf)
    pos = 0
    try:
        while True:
            n = f.readinto(buf)
            if not n:
                break
            # The whole buffer is checked rather than a copy of its first n bytes: past n it holds
            # bytes that passed this same check before (or the zeros it started with).
            if pos + n > size or not buf.isascii() or b"\r" in buf:
                return None
            view[pos : pos + n] = mem[:n]
            pos += n
    finally:
        mem.release()
        view.release()
    return text if pos == size else None


def _fill_decoded(f, layout, chunk: int):
    """The file decoded and its line ends translated as ``open`` does, written into a str allocated
    at its final length and width (learnt by a first pass); None if the two passes disagree."""
    total = width = 0
    for piece in _decoded(f, chunk):
        total += len(piece)
        if width < 4:
            width = max(width, _str_width(piece))
    if not total:
        return ""
    size = max(width, 1)
    end = total * size
    text = layout[0](total, _MAXCHAR[width])
    view = _str_data(text, layout[1] if width == 0 else layout[2], end)
    codec = _LAYOUT_CODEC[width]
    f.seek(0)
    pos = seen = 0
    try:
        for piece in _decoded(f, chunk):
            if seen < width:
                seen = max(seen, _str_width(piece))
            data = piece.encode(codec)  # fails, or has the wrong length, on a wider character
            if len(data) != len(piece) * size or pos + len(data) > end:
                return None
            view[pos : pos + len(data)] = data
            pos += len(data)
    finally:
        view.release()
    # The str must be exactly as wide as its widest character, or it would not equal the same text.
    return text if pos == end and seen == width else None


def _decoded(f, chunk: int):
    """The text of binary file ``f`` in pieces, decoded and newline-translated as ``open`` does."""
    import codecs

    decoder = io.IncrementalNewlineDecoder(codecs.getincrementaldecoder("utf-8")("replace"), translate=True)
    while True:
        data = f.read(chunk)
        piece = decoder.decode(data, final=not data)
        if piece:
            yield piece
        if not data:
            return


def _str_width(s: str) -> int:
    """Bytes per character CPython needs for ``s``: 0 (ASCII), 1, 2 or 4."""
    if s.isascii():
        return 0
    try:
        s.encode("latin-1")
        return 1
    except UnicodeEncodeError:
        pass
    return 2 if len(s.encode("utf-16-le")) == 2 * len(s) else 4


def _str_data(text: str, offset: int, nbytes: int) -> memoryview:
    """A writable view of the character data of ``text``, a str nothing else has seen yet."""
    import ctypes

    return memoryview((ctypes.c_char * nbytes).from_address(id(text) + offset)).cast("B")


def _str_layout():
    """How to build a str in place here, checked once: (PyUnicode_New, data offset of an ASCII str,
    data offset of any other str), or None when this Python does not allow it safely."""
    if not _STR_LAYOUT:
        try:
            _STR_LAYOUT.append(_probe_str_layout())
        except Exception:
            _STR_LAYOUT.append(None)
    return _STR_LAYOUT[0]


def _probe_str_layout():
    if sys.implementation.name != "cpython":
        return None
    import ctypes

    new = ctypes.PYFUNCTYPE(ctypes.py_object, ctypes.c_ssize_t, ctypes.c_uint32)(("PyUnicode_New", ctypes.pythonapi))
    # A compact str's characters follow its header; sys.getsizeof counts header + characters + NUL.
    ascii_at = sys.getsizeof("".join(("pro", "be"))) - 6
    other_at = sys.getsizeof("".join(("\xe9", "t\xe9"))) - 4
    layout = (new, ascii_at, other_at)
    for first in ("a", "\xe9", "\u20ac", "\U0001f600"):
        sample = "".join((first, "-probe-", first))  # built now: no cached UTF-8 copy, not interned
        width = _str_width(sample)
        data = sample.encode(_LAYOUT_CODEC[width])
        at = ascii_at if width == 0 else other_at
        if ctypes.string_at(id(sample) + at, len(data)) != data:
            return None
        built = new(len(sample), _MAXCHAR[width])
        view = _str_data(built, at, len(data))
        view[:] = data
        view.release()
        if built != sample or hash(built) != hash(sample) or sys.getsizeof(built) != sys.getsizeof(sample):
            return None
    return layout


def _load(path: str, fmt: str):
    if fmt == "auto":
        low = path.lower()
        fmt = "json" if low.endswith(".json") else "jsonl" if low.endswith(".jsonl") else "csv" if low.endswith(".csv") else "text"
    if fmt == "text":
        return _read_text(path)
    if fmt == "json":
        with open(path, encoding="utf-8") as f:
            return json.load(f)
    if fmt == "jsonl":
        with open(path, encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
    if fmt == "csv":
        with open(path, encoding="utf-8", newline="") as f:
            return [{k: _number(v) if isinstance(v, str) else v for k, v in row.items()} for row in csv.DictReader(f)]
    raise ValueError("unknown context format %r" % fmt)


def _preview(value, n: int = 300) -> str:
    if isinstance(value, str):
        return value[:n]
    if isinstance(value, list):
        parts = []
        for item in value[:3]:
            parts.append(_short(repr(item), 150))
        return "[" + ", ".join(parts) + (", ..." if len(value) > 3 else "") + "]"
    if isinstance(value, dict):
        keys = list(value)[:20]
        text = "keys: " + ", ".join(repr(k) for k in keys) + (", ..." if len(value) > 20 else "")
        for key, inner in itertools.islice(value.items(), 6):
            line = _inner(key, inner)
            if line is None or len(text) + len(line) > n + 100:
                break
            text += "\n" + line
        return text
    return _short(repr(value), n)


def _inner(key, inner):
    """One line on a dict of dicts' entry: ``context['people']: a dict of 9,120 entries, e.g.
    'Maya Novak': {'city': 'Yarholm', 'age': 33}``; None for any other value. Told only the keys
    'people' and 'cities', the 1.5B model wrote made-up people into `context` and filtered a list
    of city names it had invented."""
    if not isinstance(inner, dict) or not inner:
        return None
    k, v = next(iter(inner.items()))
    return "context[%r]: a dict of %s entries, e.g. %s: %s" % (key, format(len(inner), ","), _short(repr(k), 60), _short(repr(v), 100))


def _meta(value) -> dict:
    meta = {"type": type(value).__name__}
    if isinstance(value, str):
        meta["length"] = len(value)
        meta["lines"] = value.count("\n") + (1 if value and not value.endswith("\n") else 0)
    elif isinstance(value, (list, dict)):
        meta["length"] = len(value)
        sizes = [len(x) if isinstance(x, (str, list, dict)) else len(repr(x)) for x in (value if isinstance(value, list) else value.values())]
        meta["total_chars"] = sum(len(x) if isinstance(x, str) else len(json.dumps(x, default=str)) for x in (value if isinstance(value, list) else value.values())) if len(value) <= 100000 else None
        meta["chunk_lengths"] = sizes[:20]
        if isinstance(value, dict):
            meta["keys"] = [str(k) for k in list(value)[:20]]
    meta["preview"] = _preview(value)
    meta.update(_shape(value))
    texts, prose = _text_items(value)
    if texts:
        meta["text_items"] = texts
    if prose:
        meta["prose_items"] = True
    return meta


#: A collection of at most this many short texts is one whose items can be judged one by one.
_TEXT_ITEMS_MAX = 500


def _text_items(value) -> tuple:
    """(n, prose): n is how many items the context holds when it is a collection of at most
    _TEXT_ITEMS_MAX short texts (reviews, tickets, headlines: a list of sentences, records with one
    sentence field, a dict of sentences, or a text of sentence lines), else 0; such items can be
    judged one by one (judge()). prose is True when the first items are short sentences, however
    many there are (lines of a log of user posts: filter them with code, then judge or classify)."""
    if isinstance(value, str):
        items = [line for line in value[:200000].splitlines() if line.strip()]
        many = len(items) > _TEXT_ITEMS_MAX or value.count("\n") > 2 * _TEXT_ITEMS_MAX
    elif isinstance(value, (dict, list)):
        items = list(value.values()) if isinstance(value, dict) else value
        many = len(items) > _TEXT_ITEMS_MAX
    else:
        return 0, False
    if len(items) < 2:
        return 0, False
    sample = items[:50]

    def sentence(item) -> bool:
        if isinstance(item, dict):
            return any(isinstance(v, str) and sentence(v) for v in item.values())
        if not isinstance(item, str) or len(item) > 600:
            return False
        words = item.lower().split()
        return len(words) >= 5 and any(w.strip(".,!?;:") in _PROSE_WORDS for w in words)

    prose = sum(map(sentence, sample)) >= 0.8 * len(sample)
    return (0 if many or not prose else len(items)), prose


def _shape(value) -> dict:
    """Facts about the context's layout the model should parse by: a CSV header's columns, the
    keys of a list's records, and the few values a field takes (a log's levels and services).
    The small model chose its parsing from what the first message said, and it maps a question's
    "warning" to the data's "WARN" only when it has seen "WARN"."""
    if isinstance(value, str):
        parsed = _json_shape(value)
        if parsed:
            return parsed
        head = value[:4000].split("\n", 3)[:3]
        if len(head) >= 2:
            for sep in (",", "\t", ";", "|"):
                cols = [c.strip() for c in head[0].split(sep)]
                if len(cols) >= 2 and all(c and len(c) <= 40 and not isinstance(_number(c), (int, float)) for c in cols) and head[1].count(sep) == head[0].count(sep):
                    rows = [line.split(sep) for line in value[:400000].split("\n")[1:2001] if line.strip()]
                    fields = _few_values({c: [r[i].strip() for r in rows if len(r) == len(cols)] for i, c in enumerate(cols)})
                    return {"columns": cols[:30], "separator": sep, **({"field_values": fields} if fields else {})}
            lines = [line for line in value[:400000].split("\n")[:2000] if line.strip()]
            fields = _word_fields(lines)
            return {"field_values": fields} if fields else {}
        return {}
    if isinstance(value, list) and value and all(isinstance(x, str) for x in value[:50]):
        fields = _word_fields([x for x in value[:2000] if isinstance(x, str)])
        return {"field_values": fields} if fields else {}
    if isinstance(value, list) and value and isinstance(value[0], dict):
        items = [x for x in value[:2000] if isinstance(x, dict)]
        fields = _few_values({str(k): [str(x.get(k)) for x in items if isinstance(x.get(k), str)] for k in value[0]})
        return {"item_keys": [str(k) for k in list(value[0])[:30]], **({"field_values": fields} if fields else {})}
    if isinstance(value, dict) and value:
        first = next(iter(value.values()))
        if isinstance(first, list):
            return {"value_kind": "list", "value_items": len(first)}
    return {}


#: A JSON text up to this size is parsed at load to describe its layout.
_JSON_MAX = 20 << 20


def _json_shape(text: str) -> dict:
    """A text that is JSON: what ``json.loads(context)`` gives (a list of records and their keys, or
    a dict and its keys). The 1.5B model searched a JSON text's lines ("customer": "Northwind
    Retail" eight times) and answered 8 for the largest order; told it is JSON, it can parse it."""
    head = text[:1].strip() or text.lstrip()[:1]
    if head not in ("[", "{") or len(text) > _JSON_MAX:
        return {}
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    if isinstance(data, list) and data and isinstance(data[0], dict):
        items = [x for x in data[:2000] if isinstance(x, dict)]
        fields = _few_values({str(k): [str(x.get(k)) for x in items if isinstance(x.get(k), str)] for k in data[0]})
        return {"json": "list", "json_items": len(data), "item_keys": [str(k) for k in list(data[0])[:30]],
                **({"json_values": fields} if fields else {})}
    if isinstance(data, list):
        return {"json": "list", "json_items": len(data)}
    if isinstance(data, dict):
        return {"json": "dict", "json_items": len(data), "item_keys": [str(k) for k in list(data)[:30]]}
    return {}


#: Tables up to this many cells (or a text up to _JSON_MAX characters) get `rows`.
_ROWS_MAX_CELLS = 5_000_000


def _table_rows(value, meta: dict):
    """The context as a list of row dicts when it is a table in another form, else None.

    A dict of equal-length lists (columns), a CSV text (numbers parsed) or a JSON text holding a
    list of records. The 1.5B model indexed a column as if it held rows (``[o for o in
    context['region'] if o['date'] ...]``) and never counted; one list of dicts is what it handles.
    """
    if isinstance(value, dict) and len(value) >= 2 and all(isinstance(v, list) for v in value.values()):
        lengths = {len(v) for v in value.values()}
        n = lengths.pop() if len(lengths) == 1 else 0
        if n and n * len(value) <= _ROWS_MAX_CELLS:
            keys = list(value)
            return [dict(zip(keys, vals)) for vals in zip(*value.values())]
        return None
    if isinstance(value, list) and value and all(isinstance(x, str) for x in value[:200]):
        return _log_rows(value, meta)
    if not isinstance(value, str) or len(value) > _JSON_MAX:
        return None
    if meta.get("json") == "list":
        data = json.loads(value)
        return data if data and all(isinstance(x, dict) for x in data[:1000]) else None
    if meta.get("columns") is None:
        logged = _log_rows(value, meta)
        if logged is not None:
            return logged
    sep = meta.get("separator")
    if meta.get("columns") and sep:
        reader = csv.reader(io.StringIO(value), delimiter=sep)
        header = [c.strip() for c in next(reader, [])]
        out = []
        for row in reader:
            if len(row) == len(header):
                out.append({h: _number(c.strip()) for h, c in zip(header, row)})
            if len(out) * len(header) > _ROWS_MAX_CELLS:
                return None
        return out or None
    return None


#: A web server's access log line (the Common and Combined Log Formats).
_ACCESS_LINE = re.compile(r'^(\S+) \S+ (\S+) \[([^\]]+)\] "(\S+) (\S+)(?: [^"]*)?" (\d{3}) (\d+|-)(?: "([^"]*)" "([^"]*)")?\s*$')
_ACCESS_KEYS = ("client", "user", "time", "method", "path", "status", "bytes", "referrer", "agent")
#: A key=value pair of a logfmt line: level=error msg="disk full".
_KV_PAIR = re.compile(r'([A-Za-z_][\w.-]*)=("(?:[^"\\]|\\.)*"|\S*)')


#: A chat log line: "[2022-01-05] <48213> text" (a date or time in brackets, a nick in angle brackets).
_CHAT_LINE = re.compile(r"^\[([^\]]{4,40})\]\s*<([^<>\s]{1,40})>\s+(\S.*)$")
#: A field that names itself: "User: 48213", "Instance: What is ...".
_NAMED_FIELD = re.compile(r"^([A-Za-z][A-Za-z_ ]{0,20}?):\s*(.*)$", re.DOTALL)
#: A field written as a word and an id: "user 48213", "id 7".
_WORD_ID = re.compile(r"^([A-Za-z]{2,20})\s+#?(\d[\w.-]{0,30})$")
#: A day in the forms lines write: 2022-01-05 (a time may follow), Jan 05, 2022, 5 January 2022, 2022/01/05.
_DAY_FORMS = (re.compile(r"^(\d{4})-(\d{2})-(\d{2})(?:[T ][\d:.]+Z?)?$"),
              re.compile(r"^([A-Za-z]{3,9})\.? (\d{1,2}),? (\d{4})$"),
              re.compile(r"^(\d{1,2}) ([A-Za-z]{3,9})\.?,? (\d{4})$"),
              re.compile(r"^(\d{4})/(\d{2})/(\d{2})$"))


def _iso_day(text: str):
    """``text`` as an ISO day ("Jan 05, 2022" -> "2022-01-05"; an ISO date, with its time, as it is), or None."""
    text = text.strip()
    for k, form in enumerate(_DAY_FORMS):
        m = form.match(text)
        if not m:
            continue
        if k == 0:
            return text
        if k == 3:
            y, mo, d = m.groups()
        else:
            name, d, y = (m.group(1), m.group(2), m.group(3)) if k == 1 else (m.group(2), m.group(1), m.group(3))
            months = [x[:3] for x in _MONTH_NAMES]
            if name[:3].lower() not in months or (len(name) > 3 and not _MONTH_NAMES[months.index(name[:3].lower())].startswith(name.lower())):
                return None
            mo = months.index(name[:3].lower()) + 1
        if 1 <= int(mo) <= 12 and 1 <= int(d) <= 31:
            return "%s-%02d-%02d" % (y, int(mo), int(d))
    return None


def _field_line(line: str):
    """A line of metadata fields and a text as a dict, or None: "[2022-01-05] <48213> text" (date,
    user, text), "Date: Jan 05, 2022 || User: 48213 || Instance: text" (each field by its name), or
    "2022-01-05 | user 48213 | text" (a date, a word and its id, the text last). Days become ISO dates
    (so a month is a prefix: r['date'].startswith('2022-03')), ids numbers. The 1.5B model, asked about
    one user's lines, split such lines by hand and kept the wrong part; `rows` gives it r['user']."""
    m = _CHAT_LINE.match(line)
    if m:
        day = _iso_day(m.group(1))
        return {"date": day, "user": _number(m.group(2)), "text": m.group(3).strip()} if day else None
    sep = " || " if " || " in line else " | " if " | " in line else None
    if sep is None:
        return None
    parts = [part.strip() for part in line.strip().split(sep)]
    if len(parts) < 3:
        return None
    row: dict = {}
    all_named = True  # "Key: value" fields so far: the last is one too ("Instance: ..."), else it is the text
    for i, part in enumerate(parts):
        named, word_id = _NAMED_FIELD.match(part), _WORD_ID.match(part)
        day = _iso_day(part)
        last = i == len(parts) - 1
        if day and "date" not in row:
            key, value = "date", day
        elif word_id and not last:
            key, value = word_id.group(1).lower(), _number(word_id.group(2))
        elif named and (all_named or not last):
            key = re.sub(r"\s+", "_", named.group(1).strip().lower())
            value = named.group(2).strip()
            value = _iso_day(value) or value if "date" in key or key in ("day", "when") else _number(value)
        elif i >= 2 and row:
            key, value = "text", sep.join(parts[i:])  # the text may hold the separator itself
        else:
            return None
        if key in row:
            return None
        all_named = all_named and bool(named) and key != "text"
        row[key] = value
        if key == "text":
            break
    return row if len(row) >= 3 else None


def _log_line(line: str):
    """One log line as a dict of its fields (numbers parsed), or None when it has no known layout:
    an access log line (Common or Combined Log Format), logfmt (two or more key=value pairs that
    make up the line), or metadata fields and a text (see :func:`_field_line`)."""
    m = _ACCESS_LINE.match(line)
    if m:
        row = dict(zip(_ACCESS_KEYS, m.groups()))
        if row["referrer"] is None:
            del row["referrer"], row["agent"]
        if row["user"] == "-":
            del row["user"]
        row["status"] = int(row["status"])
        row["bytes"] = 0 if row["bytes"] == "-" else int(row["bytes"])
        return row
    pairs = _KV_PAIR.findall(line)
    if len(pairs) >= 2 and sum(len(k) + len(v) + 1 for k, v in pairs) >= 0.8 * len(line.replace(" ", "")):
        return {k: (v[1:-1] if v.startswith('"') and v.endswith('"') and len(v) >= 2 else _number(v)) for k, v in pairs}
    return _field_line(line)


def _log_rows(value, meta: dict):
    """A log's lines parsed into dicts (see :func:`_log_line`) when nearly every line parses the same
    way (their keys go into ``meta["log_keys"]``), else None. The 1.5B model counted "503" anywhere in an access log's lines (a byte count, a
    path) and could not tell a status from a 5xx; `rows` gives it r['status'] as a number."""
    lines = value.splitlines() if isinstance(value, str) else value
    sample = [line for line in itertools.islice((x for x in lines if isinstance(x, str) and x.strip()), 200)]
    if len(sample) < 20:
        return None
    parsed = [_log_line(line) for line in sample]
    if sum(p is not None for p in parsed) < 0.95 * len(sample) or len({tuple(p) for p in parsed if p}) > 3:
        return None
    out = []
    for line in lines:
        if isinstance(line, str) and line.strip():
            row = _log_line(line)
            if row is not None:
                out.append(row)
                if len(out) * len(row) > _ROWS_MAX_CELLS:
                    return None
    if out:
        meta["log_keys"] = list(out[0])
    return out or None


_MONTH_NAMES = ("january", "february", "march", "april", "may", "june", "july", "august", "september", "october",
                "november", "december")
#: A month the question names: "March 2024", "Mar 2024", "2024-03".
_MONTH_WORDS = re.compile(r"\b(?:(%s)[a-z]*\.?\s+(\d{4})|(\d{4})-(\d{2}))\b(?!-\d)" % "|".join(m[:3] for m in _MONTH_NAMES), re.IGNORECASE)
_ISO_DAY = re.compile(r"^\d{4}-\d{2}-\d{2}")
#: A path the question writes: "/api/orders".
_QUESTION_PATH = re.compile(r"(?<![\w/])/[\w.-]+(?:/[\w.-]+)*/?")
#: At most this many distinct texts of a field are looked for in the question.
_NAMED_MAX_VALUES = 500


def _named_values(table, question: str) -> list:
    """The conditions a question states on a table's fields: ``[field, value, "eq"]`` for a field's
    text value the question writes (in any case: "SUMMIT GOODS" for 'Summit Goods'), ``[field,
    "2024-03", "month"]`` for a month it names on a field of ISO dates, ``[field, "/api/cart",
    "prefix"]`` for a path it writes that starts some of a field's values, ``[field, "48213",
    "number"]`` for a whole number it writes after the field's name ("user 48213") that the field
    holds. At most six. The 1.5B
    model, asked for the orders "in region central placed by SUMMIT GOODS", filtered on the region
    alone and answered with the whole region's total."""
    q = " ".join(str(question or "").lower().split())
    if not q or not table or not isinstance(table[0], dict):
        return []
    months = []
    for m in _MONTH_WORDS.finditer(q):
        if m.group(1):
            months.append("%s-%02d" % (m.group(2), [x[:3] for x in _MONTH_NAMES].index(m.group(1).lower()[:3]) + 1))
        elif 1 <= int(m.group(4)) <= 12:
            months.append("%s-%s" % (m.group(3), m.group(4)))
    paths = [p.rstrip(".,;:?!)") for p in _QUESTION_PATH.findall(q)]
    sample = table[:5000]
    out = []
    for key in table[0]:
        # an id the question writes after the field's name: "user 48213", "user id 48213", "user #48213"
        named_ids = re.findall(r"(?<![\w-])%s(?:\s+id)?\s*[#:]?\s*(\d{1,18})(?![\w.-])" % re.escape(str(key).lower()), q)
        if named_ids:
            ids = {v for r in sample if isinstance(r, dict) and isinstance(v := r.get(key), int) and not isinstance(v, bool)}
            out += [[str(key), n, "number"] for n in dict.fromkeys(named_ids) if int(n) in ids]
        values = {v for r in sample if isinstance(r, dict) and isinstance(v := r.get(key), str) and v.strip()}
        if paths and values:
            # a path the question names, as the prefix of a field's values ("/api/cart" for /api/cart/123)
            lowered = [v.lower() for v in itertools.islice(values, 2000)]
            out += [[str(key), p, "prefix"] for p in dict.fromkeys(paths) if len(p) > 1 and any(v.startswith(p) for v in lowered)]
        if not values or len(values) > _NAMED_MAX_VALUES:
            continue
        if all(_ISO_DAY.match(v) for v in itertools.islice(values, 50)):
            out += [[str(key), month, "month"] for month in dict.fromkeys(months) if any(v.startswith(month) for v in values)]
            continue
        found = [v for v in values if len(v.strip()) >= 3
                 and re.search(r"(?<![\w-])%s(?![\w-])" % re.escape(" ".join(v.lower().split())), q)]
        found = [v for v in found if not any(v != w and v.lower() in w.lower() for w in found)]
        out += [[str(key), v, "eq"] for v in sorted(found)]
    return out[:6]


#: A section title line: "=== Title ===", "==> file.txt <==" (head's multi-file form), a markdown "# Title",
#: "--- file: east.txt ---" or "--- Title ---" (its "file:" dropped).
_SECTION = re.compile(r"^(?:={2,}>?\s*(.+?)\s*<?={2,}|#{1,3}\s+(.+?)\s*#*|-{3,}\s*(?:file:\s*)?(.*?\w.*?)\s*-{3,})\s*$")
#: A "Title:" line that opens a section: short, one colon, at its end.
_COLON_TITLE = re.compile(r"^\s*([^:\n]{1,80}?)\s*:\s*$")
#: At most this many sections or groups make `lists`.
_LISTS_MAX = 50


def _key_words(key) -> tuple:
    """A list's name as its words, lower-cased, a file name's extension dropped: 'east_stock.txt' -> ('east', 'stock')."""
    text = re.sub(r"\.(?:txt|csv|json|log|md|list)$", "", str(key).strip().lower())
    return tuple(re.findall(r"[a-z0-9]+", text))


class Sections(dict):
    """The context's named lists (``lists``): a dict whose lookups also take a near form of a name.

    ``lists['east_stock']`` finds 'east_stock.txt', ``lists['East']`` finds 'Stock at the East
    warehouse' when no other name has that word. The 1.5B model wrote lists['east_stock'] for a
    file section named 'east_stock.txt', got a KeyError, and gave up on `lists`."""

    def resolve(self, key):
        """The stored name ``key`` means, or None (no name, or more than one, fits)."""
        if key in self.keys():
            return key
        want = _key_words(key)
        if not want:
            return None
        same = [k for k in self.keys() if _key_words(k) == want]
        if len(same) == 1:
            return same[0]
        within = [k for k in self.keys() if set(want) <= set(_key_words(k))]
        return within[0] if len(within) == 1 else None

    def __missing__(self, key):
        name = self.resolve(key)
        if name is None:
            raise KeyError("%r is not one of the lists: %s" % (key, ", ".join(repr(k) for k in itertools.islice(self.keys(), 8))))
        return dict.__getitem__(self, name)

    def __contains__(self, key):
        return dict.__contains__(self, key) or self.resolve(key) is not None

    def get(self, key, default=None):
        return self[key] if key in self else default


def _named_lists(value):
    """The context's named lists, when it is made of them: ``{title: [lines]}`` for a text of titled
    sections ("=== Stock at the East warehouse ===", "==> east.txt <==", "Attendees 2024:" when the text
    opens with such a line), ``{value: [items]}`` for
    records of two keys one of which names the list they belong to ({"sku": ..., "list": "east"}).
    None otherwise. The 1.5B model never found the two lists of a set question in one text."""
    if isinstance(value, str):
        if len(value) > _JSON_MAX:
            return None
        out, title = {}, None
        lines = value.split("\n")
        # "Title:" lines are titles only when the text opens with one (a line of a list may end with a colon too)
        colon = _COLON_TITLE.match(next((x for x in lines if x.strip()), "")) is not None
        for line in lines:
            m = _SECTION.match(line) or (_COLON_TITLE.match(line) if colon else None)
            if m:
                title = next(g for g in m.groups() if g).strip()
                if title in out or len(out) >= _LISTS_MAX:
                    return None
                out[title] = []
            elif line.strip():
                if title is None:
                    return None  # text before the first title: not a text of sections
                out[title].append(line.strip())
        return out if len(out) >= 2 and all(len(v) >= 2 for v in out.values()) else None
    if isinstance(value, list) and len(value) >= 4 and all(isinstance(x, dict) and len(x) == 2 for x in value[:2000]):
        keys = list(value[0])
        for name in keys:
            other = [k for k in keys if k != name][0]
            groups = {}
            for x in value:
                label = x.get(name)
                if not isinstance(label, str) or other not in x:
                    groups = None
                    break
                groups.setdefault(label, []).append(x[other])
                if len(groups) > _LISTS_MAX:
                    groups = None
                    break
            if groups and 2 <= len(groups) < len(value) / 2:
                return groups
    return None


def _few_values(columns: dict) -> dict:
    """The columns (name -> sampled values) that take between 2 and 12 distinct text values."""
    out = {}
    for name, vals in columns.items():
        if len(vals) < 10:
            continue
        distinct = list(dict.fromkeys(v for v in vals if v))
        if 2 <= len(distinct) <= 12 and not all(isinstance(_number(v), (int, float)) for v in distinct):
            out[name] = [v[:40] for v in sorted(distinct, key=lambda v: -vals.count(v))]
        if len(out) >= 6:
            break
    return out


#: A process id after a program's name, as syslog writes it: "gateway-api[4008]:".
_PID = re.compile(r"\[\d+\]:?$")


def _field_word(word: str) -> str:
    """A line's word as a field value: "gateway-api" of "gateway-api[4008]:" (the pid differs on
    every line, so a syslog's program was no field; dev-logs-level_service-list), else as written."""
    return _PID.sub("", word)


def _word_fields(lines: list) -> dict:
    """Positions of the lines' leading words that take a few values: ``{"word 2": ["INFO", "WARN"]}``.

    Words are split on spaces and kept as written (``[Error]``, ``auth:``), so the model can
    filter on them exactly."""
    if len(lines) < 30:
        return {}
    columns = {}
    for pos in range(6):
        vals = []
        for line in lines:
            words = line.split()
            if len(words) > pos:
                vals.append(_field_word(words[pos]))
        if len(vals) >= 0.9 * len(lines) and all(any(c.isalpha() for c in v) for v in vals[:200]):
            distinct = set(vals)
            # prose starts with "The", "I", "What": a field's values are labels, not sentence words
            if len(distinct) <= 12 and not any(v.strip("\"'[](),.:;").lower() in _PROSE_WORDS for v in distinct):
                columns["word %d" % (pos + 1)] = vals
    return _few_values(columns)


_PROSE_WORDS = frozenset("the a an i my our your we you it this that what which how in on at who where why when very to of and is do does".split())


def _on_alarm(signum, frame):
    raise CellTimeout()


class _NotRun(Exception):
    """A cell refused before it runs (its message is the cell's error)."""


_LITERALS = (ast.Constant, ast.Dict, ast.List, ast.Tuple, ast.Set, ast.JoinedStr)


def _placeholder(node) -> bool:
    """True for a stand-in, not data: ``...``, ``None``, or a short one-line text ("your_context_here")."""
    if not isinstance(node, ast.Constant):
        return False
    v = node.value
    return v is Ellipsis or v is None or (isinstance(v, str) and "\n" not in v and len(v) <= 40 and " " not in v.strip())


def _drop_context_placeholders(tree) -> list:
    """Remove the cell's top-level ``context = ...`` / ``context = "your_context_here"`` lines (a
    stand-in where the model thought it must load the data: the REPL has loaded it); a note for each.
    The 1.5B model opened a cell with ``context = ...``, was told the cell was not run, and repeated
    it until the loop guard stopped it; the lines under it computed the answer from `lists`."""
    kept, notes = [], []
    for stmt in tree.body:
        if (isinstance(stmt, ast.Assign) and len(stmt.targets) == 1 and isinstance(stmt.targets[0], ast.Name)
                and stmt.targets[0].id == "context" and _placeholder(stmt.value)):
            notes.append("note: the line `context = %s` was skipped: `context` already holds the whole data, "
                         "loaded for you. The rest of the cell ran." % _short(ast.unparse(stmt.value), 40))
            continue
        kept.append(stmt)
    tree.body = kept
    return notes[:1]


def _writes_context_literal(tree) -> bool:
    """True if the code binds `context` to a literal written in it (``context = {...}``, ``context =
    \"\"\"...\"\"\"``): the 1.5B model wrote made-up pages into `context`, searched them, and
    answered with the room number it had invented. ``context = context.lower()`` is not a literal."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Assign) and isinstance(node.value, _LITERALS):
            if any(isinstance(t, ast.Name) and t.id == "context" for t in node.targets):
                return True
        elif isinstance(node, ast.AnnAssign) and isinstance(node.value, _LITERALS):
            if isinstance(node.target, ast.Name) and node.target.id == "context":
                return True
    return False


def _exec_cell(cell: int, code: str, timeout: float, limit: int) -> dict:
    out = _Capped(limit)
    err = _Capped(max(limit // 2, 200))
    error = None
    timed_out = False
    row_notes = []
    _CH.final = None
    filename = "<cell %d>" % cell
    old_out, old_err = sys.stdout, sys.stderr
    sys.stdout, sys.stderr = out, err
    with _ASK_LOCK:
        _CH.old_threads = {t.ident for t in threading.enumerate() if t is not threading.main_thread()}
        _CH.cell_open = True
    try:
        tree = ast.parse(code, filename, "exec")
        if _CONTEXT_SOURCE:
            try:
                row_notes = _drop_context_placeholders(tree)
            except Exception:  # a help, never a failure of the cell
                row_notes = []
        if _CONTEXT_SOURCE and _writes_context_literal(tree):
            raise _NotRun(
                "NotRun: this cell was not run: it sets `context` to data written in the code, and what it "
                "printed would be about that, not about the real data. `context` already holds the whole "
                "data: remove the assignment and search or compute over `context` as it is.")
        try:
            tree, loop_notes = _loops_over_rows(tree)
            row_notes = row_notes + loop_notes
        except Exception:  # a help, never a failure of the cell
            pass
        try:
            _kept_helpers(tree)
        except Exception:  # a help, never a failure of the cell
            _KEPT_NOTES.clear()
        tree, last = _last_shown(tree)
        if timeout and timeout > 0:
            signal.setitimer(signal.ITIMER_REAL, float(timeout))
        try:
            exec(compile(tree, filename, "exec"), _NS)
            if last is not None:
                value = eval(compile(last, filename, "eval"), _NS)
                if value is not None:
                    out.write(repr(value) + "\n")
        finally:
            signal.setitimer(signal.ITIMER_REAL, 0)
    except CellTimeout:
        timed_out = True
        error = "TimeoutError: the cell ran longer than %s s and was stopped. Variables assigned before that are kept." % timeout
    except SyntaxError as exc:
        error = "".join(traceback.format_exception_only(type(exc), exc)).strip()
    except _NotRun as exc:
        error = str(exc)
    except BaseException as exc:  # the cell's own errors, SystemExit and KeyboardInterrupt included
        tb = traceback.extract_tb(exc.__traceback__)
        frames = [f for f in tb if f.filename == filename]
        lines = traceback.format_list(frames[-5:]) if frames else []
        error = ("".join(lines) + "".join(traceback.format_exception_only(type(exc), exc))).strip()
        if isinstance(exc, KeyError):
            try:
                error += _key_written_otherwise(exc)
            except Exception:  # a note is help, never a failure of the cell
                pass
        if isinstance(exc, (AttributeError, TypeError)) and "list" in str(exc) and "_batched(" in code:
            # The 1.5B model called llm_query_batched([prompt]) once per item and then reply.lower()
            error += ("\nnote: llm_query_batched(prompts) and rlm_query_batched(...) return a list of strings, one "
                      "per prompt, not one string: call it once with all the prompts, then loop over the replies "
                      "(or take reply[0]).")
    finally:
        sys.stdout, sys.stderr = old_out, old_err
    labelled, label_note = (), None
    if not timed_out and _CONTEXT_SOURCE:
        try:  # its sub-calls belong to this cell (recorded with it, replayed with it)
            labelled, label_note = _label_rerun(code, out.getvalue(), timeout, limit)
        except Exception:  # a note is help, never a failure of the cell
            labelled, label_note = (), None
    with _ASK_LOCK:  # waits for a call a thread of this cell has in flight
        _CH.cell_open = False
    restored = _restore()
    stderr = err.getvalue()
    try:
        audit = _audit(code, out.getvalue(), error, skip=labelled)
    except Exception:  # a note is help, never a failure of the cell
        audit = []
    if label_note:
        audit.append(label_note)
    audit = row_notes + list(_KEPT_NOTES) + audit
    _KEPT_NOTES.clear()
    if audit:
        stderr += "\n".join(audit) + "\n"
    if restored:
        stderr += "note: %s %s restored: the REPL's own names cannot be replaced.%s\n" % (
            ", ".join(restored),
            "was" if len(restored) == 1 else "were",
            " `context` always holds the whole data: use it directly, or give your copy another name." if "context" in restored else "",
        )
    final = _CH.final
    _CH.final = None
    if final is not None and len(final) > _MAX_FINAL:
        stderr += "note: the FINAL answer was cut to its first %d of %d characters\n" % (_MAX_FINAL, len(final))
        final = final[:_MAX_FINAL]
    if error is not None and len(error) > limit:
        error = error[: limit // 2] + "\n... [%d characters omitted] ...\n" % (len(error) - limit) + error[-(limit // 2):]
    return {
        "type": "result",
        "cell": cell,
        "stdout": out.getvalue(),
        "stderr": stderr,
        "error": error,
        "final": final,
        "vars": _user_vars(),
        "timed_out": timed_out,
    }


def _watch_host(parent: int) -> None:
    """Exit when the host goes away, even in the middle of a long cell.

    The host's end of stdin hanging up covers pipes and sockets (and Docker, where the worker is
    PID 1 and has no parent to watch); the parent check covers the rest.
    """
    import select

    poller = select.poll()
    poller.register(_IN.fileno(), select.POLLHUP | getattr(select, "POLLRDHUP", 0))
    gone = select.POLLHUP | getattr(select, "POLLRDHUP", 0)
    while True:
        time.sleep(1.0)
        if parent > 1 and os.getppid() != parent:
            os._exit(0)
        if any(ev & gone for _, ev in poller.poll(0)):
            os._exit(0)


def main() -> None:
    global _PROTO, _IN
    proto_in, proto_out = os.dup(0), os.dup(1)  # not inherited by child processes
    os.dup2(2, 1)  # stray writes to fd 1 (C code, os.system) land on stderr, not on the channel
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)  # input() and child processes read nothing; closing fd 0 is harmless
    os.close(devnull)
    sys.stdin = open(os.devnull, encoding="utf-8")
    # A lone surrogate in a str is written as its \\udxxx escape, which is still valid JSON.
    _PROTO = os.fdopen(proto_out, "w", encoding="utf-8", errors="backslashreplace", buffering=1)
    _IN = io.TextIOWrapper(os.fdopen(proto_in, "rb"), encoding="utf-8")
    if os.environ.get("RLM_WATCH_PARENT", "1") == "1":
        threading.Thread(target=_watch_host, args=(os.getppid(),), daemon=True).start()
    sys.stdout = io.TextIOWrapper(os.fdopen(os.dup(2), "wb"), encoding="utf-8", line_buffering=True)
    signal.signal(signal.SIGALRM, _on_alarm)
    sys.setrecursionlimit(10000)
    _NS["__name__"] = "__main__"
    # modules a small model uses without importing them (it wrote re.findall with no import)
    import collections
    import math

    _NS.update(re=re, json=json, csv=csv, io=io, math=math, collections=collections, Counter=collections.Counter)
    _restore()
    _send({"type": "ready", "pid": os.getpid(), "python": sys.version.split()[0]})
    while True:
        try:
            msg = _STASH.pop(0) if _STASH else _read()
        except ValueError as exc:
            _send({"type": "protocol_error", "error": str(exc)})
            continue
        if msg is None or msg.get("type") == "shutdown":
            break
        kind = msg.get("type")
        if kind == "load_context":
            try:
                start = time.time()
                value = _load(msg["path"], msg.get("format", "auto"))
                _NS["context"] = value
                _CONTEXT_SOURCE.update(path=msg["path"], format=msg.get("format", "auto"), value=value,
                                       question=str(msg.get("question") or "")[:20000])
                meta = _meta(value)
                _CONTEXT_SOURCE["short_texts"] = bool(meta.get("text_items"))
                _NS.pop("rows", None)
                try:
                    table = _table_rows(value, meta)
                except Exception:  # a help, never a failure of the load
                    table = None
                _CONTEXT_SOURCE.update(records=None, records_text=None, entries_text=None)
                _CONTEXT_SOURCE["rows"] = table
                if table is not None:
                    _NS["rows"] = table
                    meta["rows"] = len(table)
                    if not meta.get("columns") and not meta.get("log_keys"):  # JSON text or columns: search() returns whole records
                        _CONTEXT_SOURCE["records"] = table
                    # a parsed log's fields by their keys (level: info, error), as `rows` writes them; a dict
                    # of columns: the few values its text columns take, as for records
                    key = "log_values" if meta.get("log_keys") else "field_values"
                    if key == "log_values" or (not meta.get("field_values") and not meta.get("json_values")):
                        items = table[:2000]
                        fields = _few_values({str(k): [x.get(k) for x in items if isinstance(x.get(k), str)] for k in table[0]})
                        if fields:
                            meta[key] = fields
                records = table if table is not None else value if isinstance(value, list) and value and isinstance(value[0], dict) else None
                if records is not None:
                    try:
                        named_values = _named_values(records, _CONTEXT_SOURCE["question"])
                    except Exception:  # a help, never a failure of the load
                        named_values = []
                    if named_values:
                        meta["named_values"] = named_values
                _CONTEXT_SOURCE["named_values"] = meta.get("named_values") or []
                _NS.pop("lists", None)
                _CONTEXT_SOURCE["lists"] = None
                try:
                    named = None if table is not None else _named_lists(value)
                except Exception:  # a help, never a failure of the load
                    named = None
                if named:
                    named = Sections(named)
                    _NS["lists"] = named
                    _CONTEXT_SOURCE["lists"] = named
                    meta["lists"] = {str(k)[:80]: len(v) for k, v in list(named.items())[:20]}
                _CONTEXT_SOURCE["fields"] = meta.get("field_values") or meta.get("json_values") or {}
                _CONTEXT_SOURCE["separator"] = meta.get("separator")
                meta["load_seconds"] = round(time.time() - start, 3)
                _send({"type": "loaded", "meta": meta})
            except Exception as exc:
                _send({"type": "loaded", "error": "%s: %s" % (type(exc).__name__, exc)})
        elif kind == "exec":
            result = _exec_cell(
                int(msg.get("cell", 0)),
                msg.get("code", ""),
                float(msg.get("timeout") or 0),
                int(msg.get("max_output_chars") or 4000),
            )
            _send(result)
        elif kind == "tools":
            _define_tools(msg.get("names"))
        elif kind == "ping":
            _send({"type": "pong"})
        elif kind == "answer":
            pass  # a late answer to a call that was refused or gave up: nobody waits for it
        else:
            _send({"type": "protocol_error", "error": "unknown message type %r" % kind})


if __name__ == "__main__":
    main()
