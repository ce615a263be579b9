"""Answer checks that need no model: a non-answer ("not found"), the value inside a sentence, and
the question's likeliest search words.

The embedded 1.5B model's commonest wrong ending was a prose non-answer after a filter that
missed (a capitalised literal compared with lower-cased text, a phrase whose words sit apart);
these functions let check_final send such an answer back with a search that would find the value.
"""

from __future__ import annotations

import re
from collections import Counter

_NUMBER = re.compile(r"(?<![\w.])-?\d[\d,]*(?:\.\d+)?(?![\w])")

#: A reply that says the value is not there. The question presupposes a value (the bench's and the
#: users' questions do), so this is almost always a filter that missed, not a missing value.
_NON_ANSWER = re.compile(
    r"\b(?:not (?:found|present|mentioned|stated|given|available|specified|provided|listed|known|included|in the (?:context|data|text|output))"
    r"|(?:does|do|did)(?: not|n't) (?:contain|mention|appear|exist|include|say|state|specify|provide|show|have)"
    r"|no (?:such|mention|information|data|record|records|match|matches|matching|results?|value|lines?|entries|entry)\b"
    r"|(?:cannot|can't|could not|couldn't|unable to|impossible to) (?:be )?(?:find|found|determine|determined|answer|answered|locate|identify|tell)"
    r"|unknown|unclear|none found|nothing found|n/a)\b",
    re.IGNORECASE,
)
_COUNT_QUESTION = re.compile(r"\b(?:how many|how much|number of|count|total|sum|combined|average|mean|maximum|minimum|largest|biggest|greatest|"
                             r"smallest|highest|lowest)\b", re.IGNORECASE)
_STOP = frozenset(
    "a an the of in on at to for from by with about what which who whom whose when where why how is are was were be "
    "do does did many much number count total sum average mean list give name tell find value context text data "
    "that this these those it its and or not no any all each every there their they he she his her as than then "
    "lines line items item records record mentioned mention say says said stated according answer reply only just please".split()
)
#: Words that name nothing in the data (a question's frame), for readers outside this module.
STOP_WORDS = _STOP


#: Words a small model copies from an example or a template instead of a value.
_PLACEHOLDERS = frozenset(["total", "answer", "value", "result", "the answer", "your answer", "none", "None", "null", "nan", "x", "...", "(empty reply)"])
#: A snake_case name (``east_stock_items``): a variable's name given instead of its value.
_IDENTIFIER = re.compile(r"[a-z][a-z0-9]*(?:_[a-z0-9]+)+")
#: A reply that describes what code would do instead of answering.
_DESCRIBES = re.compile(r"^\s*(?:the output (?:will|would|should)|this (?:code|will)|the code (?:will|would))\b", re.IGNORECASE)


def non_answer(answer: str) -> bool:
    """True if ``answer`` says the value is not there ("not found", "the context does not contain
    ...") or is a placeholder copied instead of a value ("total", "answer")."""
    text = answer.strip()
    bare = text.strip("'\"` ")
    if not text or bare in _PLACEHOLDERS or _IDENTIFIER.fullmatch(bare) or _DESCRIBES.match(text):
        return True
    return bool(_NON_ANSWER.search(text)) and len(text) < 400


#: Answers that are an empty result: a lookup answered with one found nothing.
EMPTY_ANSWERS = frozenset(["0", "0.0", "[]", "{}", "()", "set()", "''", '""'])


def empty_lookup(query: str, answer: str) -> bool:
    """True if a lookup (a code, a name, a place) is answered with an empty result: ``0`` or ``[]``.

    The 1.5B model filtered for "Beacon Generator" (the data writes "Beacon-Generator"), printed
    nothing, and answered 0 to "what are the serial numbers of the Beacon Generator?".
    """
    return answer.strip() in EMPTY_ANSWERS and is_lookup(query)


def asks_yes_no(query: str) -> bool:
    """Yes/no questions ("is there ...?", "does X ...?") may rightly be answered "no"."""
    head = query.strip().split(None, 1)[0].lower() if query.strip() else ""
    return head in ("is", "are", "does", "do", "did", "was", "were", "has", "have", "can") or bool(re.search(r"\bwhether\b", query, re.I))


def key_terms(query: str, n: int = 3) -> list[str]:
    """The question's words most likely to be written in the data: quoted phrases, names with
    capitals, words with digits or inner punctuation, then the longest other words."""
    terms: list[str] = []
    for quoted in re.findall(r"[\"'“‘]([^\"'”’]{2,60})[\"'”’]", query):
        terms.append(quoted.strip())
    words = re.findall(r"[A-Za-z0-9][\w.'-]*[A-Za-z0-9]|\w", query)
    # names of several capitalised words ("Beacon Generator", "Kofi Vogel"), not the first word
    for m in re.finditer(r"(?<![.?!]\s)(?<!^)\b([A-Z][\w.'-]*(?:\s+[A-Z][\w.'-]*)+)", query):
        phrase = re.split(r"(?<!\b[A-Z])[.?!,;:]\s", m.group(1))[0].rstrip(".?!,;:")  # not across sentences ("CATALOG. Reply"); initials stay ("S. Petrov")
        if " " not in phrase:
            continue
        if phrase.split()[0].lower() not in _STOP or len(phrase.split()) > 2:
            terms.append(" ".join(w for w in phrase.split() if w.lower() not in _STOP or w != phrase.split()[0]))
    for i, w in enumerate(words):
        if w.lower() in _STOP or len(w) < 2:
            continue
        if (w[0].isupper() and i > 0) or any(c.isdigit() for c in w) or "_" in w or "-" in w or w.isupper():
            terms.append(w)
    rest = sorted((w for w in words if w.lower() not in _STOP and len(w) > 3), key=len, reverse=True)
    terms.extend(rest)
    out: list[str] = []
    for t in (re.sub(r"['’]s$", "", t) for t in terms):
        if t.lower() not in (o.lower() for o in out):
            out.append(t)
    return out[:n]


def search_hint(query: str) -> str:
    """``search("Word")`` for the question's likeliest key word, or a generic hint."""
    terms = key_terms(query, 1)
    return f'search("{terms[0]}")' if terms else 'search("word")'


def extract_value(query: str, answer: str, seen: str) -> str:
    """The number in a sentence answer to a how-many question ("There are 42 errors." -> "42").

    Only when the sentence holds one number the REPL output (``seen``) showed, or one number at
    all; a sentence with several candidates is left as it is.
    """
    text = answer.strip()
    if not _COUNT_QUESTION.search(query) or _NUMBER.fullmatch(text.replace(" ", "")) or len(text.split()) < 3:
        return answer
    numbers = list(dict.fromkeys(n.rstrip(",") for n in _NUMBER.findall(text)))
    if not numbers:
        return answer
    shown = set(_NUMBER.findall(seen))
    grounded = [n for n in numbers if n in shown or n.replace(",", "") in shown]
    pick = grounded if grounded else numbers
    return pick[-1].replace(",", "") if len(pick) == 1 else answer


def stated_value(prose: str, seen: str) -> str | None:
    """The last number in a prose reply that the REPL output (``seen``) showed: "The total is 540000." after
    an output of 540000 is an answer the small model forgot to wrap in FINAL. Not for a reply that
    pasted output into a code block: its numbers are the output's, not an answer."""
    if "```" in prose:
        return None
    shown = set(_NUMBER.findall(seen))
    for raw in reversed(_NUMBER.findall(prose)):
        number = raw.rstrip(",")
        if number in shown or number.replace(",", "") in shown:
            return number.replace(",", "")
    return None


#: Words that ask for a number computed over values (not a count of items).
_COMPUTED = r"sum|total|combined|average|mean"
_HOW_MANY = re.compile(rf"\b(?:how many|how much|number of|count|{_COMPUTED})\b", re.IGNORECASE)
_COMPUTED_QUESTION = re.compile(rf"\b(?:{_COMPUTED})\b", re.IGNORECASE)


_EXTREME = re.compile(r"\b(?:largest|biggest|maximum|max|highest|smallest|minimum|min|lowest)\b", re.IGNORECASE)
_DECIMAL = re.compile(r"(?<![\w.])-?\d[\d,]*\.\d+(?![\w.])")


def _agree(value: float, places: int, printed: str) -> bool:
    """True if ``value`` (written with ``places`` decimals) and the printed decimal are one number at the
    fewer of their decimals: 1014530.17 and 1014530.1700000002, 5.857142857142857 and 5.86."""
    digits = min(places, len(printed.split(".")[1]))
    return abs(float(printed) - value) <= 0.5 * 10 ** -digits + 1e-9


def asks_aggregate(query: str) -> bool:
    """True if the question asks for a count, a total, an average, or a largest or smallest value."""
    return _HOW_MANY.search(query) is not None or _EXTREME.search(query) is not None


def uncounted(query: str, answer: str, seen: str) -> bool:
    """True if a how-many (or sum, total, average, largest, smallest) question is answered with a
    number no output printed as a result.

    A small model shown ``hits[:10]`` answered 4 or 10 (the hits it could see). A count it computed
    shows up on a short output line of its own ("94", "count: 94", "94 of 1056"), not only inside
    printed data (a list of lines, a timestamp), so such an answer goes back to be counted with code.
    A decimal answer is a result when a short line shows it, rounded or not (1014530.1700000002 is
    1014530.17): asked for the largest order to the North region, the 1.5B model answered one amount it
    read in a printed list of records, 1478.45 (the largest was 3027.69).
    """
    text = answer.strip().replace(",", "")
    if not asks_aggregate(query):
        return False
    if re.fullmatch(r"-?\d+\.\d+", text):
        value, places = float(text), len(text.split(".")[1])
        token = None
    elif re.fullmatch(r"\d+", text):
        token = re.compile(rf"(?<![\w.:/-]){re.escape(text)}(?:\.0+)?(?![\w:/-]|\.\d)")  # 80120.0 printed is 80120
    else:
        return False
    for line in seen.splitlines():
        for part in line.split("; "):  # the worker's notes put a count first: "note: 94 lines have ...; ..."
            part = part.strip()
            if not part or len(part) > 120 or part[0] in "[{(":
                continue
            if token is not None and token.search(part):
                return False
            if token is None and any(_agree(value, places, n.replace(",", "")) for n in _DECIMAL.findall(part)):
                return False
    return True


#: Words of a how-many question that only frame it: a question made of these and of words that name
#: field values ("How many WARNING lines come from INVENTORY?") is a count by those fields alone.
_FRAME = frozenset(
    "how many much number count counted total the a an of in on at by from to with were was are is be been "
    "did does do there have has had logged log logs lines line entries entry records record items item rows row "
    "events event messages message come comes came written occur occurred appear appeared all whole overall "
    "reply answer give only just with as digits figure integer please service services level levels severity".split()
)


def _norm(word: str) -> str:
    return re.sub(r"[^a-z0-9]", "", word.lower())


def field_terms(query: str, field_values: dict[str, list[str]] | None) -> list[str] | None:
    """The question's words that name field values, when they are all the question asks about.

    "Count the errors logged by CATALOG." over a log whose level field takes ``[Err]`` and whose
    service field takes ``CatalogService`` gives ``["errors", "CATALOG"]``: counting the lines with
    those two values answers it. A word that names no value and does not merely frame a count
    ("March", "/api/orders") means the fields alone do not answer, and gives None; so do
    two words naming one field. A word names a value as the worker's field search reads it: one of
    the two starts with the other (letters and digits only, at least 3 of them), and no other value
    of any field matches.
    """
    if not field_values or not _HOW_MANY.search(query) or _COMPUTED_QUESTION.search(query):
        return None
    terms: list[str] = []
    used: set[str] = set()
    names = {_norm(name) for name in field_values}  # "region" in "orders in region east" names a field
    unit = re.search(r"\b(?:how many|number of|count(?: the| of)?)\s+([a-z]+)", query, re.IGNORECASE)
    names |= {_norm(unit.group(1))} if unit else set()  # what is counted: "How many orders ..."
    # (a key=value log's word names its value: "errors" is "level=error")
    named = [(name, v, _norm(str(v).split("=", 1)[1] if "=" in str(v)[1:] else str(v))) for name, values in field_values.items() for v in values]
    for word in _WORD.findall(query):
        p = _norm(word)
        hits = [(name, v) for name, v, n in named if len(n) >= 3 and len(p) >= 3 and (n.startswith(p) or p.startswith(n))]
        if len(hits) == 1:
            if hits[0][0] in used:
                return None
            used.add(hits[0][0])
            terms.append(word)
        elif p and p not in _FRAME and p not in _STOP and p.rstrip("s") not in {n.rstrip("s") for n in names}:
            return None
    return terms or None


_WORD = re.compile(r"[^\W_](?:[\w'/-]*[^\W_])?")


def is_lookup(query: str) -> bool:
    """A question about one fact (a code, a place, a name), not a count, an aggregate or a yes/no."""
    return not _COUNT_QUESTION.search(query) and not asks_yes_no(query)


def _loose(term: str) -> re.Pattern[str]:
    """``term`` with any run of spaces, hyphens or underscores between its words, ignoring case."""
    words = [re.escape(w) for w in re.split(r"[\s_-]+", term.strip()) if w]
    return re.compile(r"[\s_-]*".join(words), re.IGNORECASE)


def never_looked(query: str, looked_at: str) -> list[str] | None:
    """The question's key terms when none of them occurs in ``looked_at`` (the code the model ran
    and what it printed), else None.

    An answer to a lookup question from code that never named what the question names ("what is the
    boarding gate of the elm clipper?" answered 22, the number of paragraphs starting with "The") is
    not an answer to it, whatever its form.
    """
    terms = key_terms(query, 4)
    if not terms or not is_lookup(query):
        return None
    return None if mentions_any(looked_at, terms) else terms


def mentions_any(text: str, terms: list[str]) -> bool:
    """True if ``text`` holds one of ``terms`` (ignoring case; spaces, hyphens and underscores alike)."""
    return any(_loose(t).search(text) for t in terms)


_LINK = re.compile(r"\b[A-Z][\w'-]*[a-z0-9][\w'-]*\b|\b[A-Z]{2,}[\w-]*\b|\b\w*\d\w*\b")


def grounding_lines(query: str, seen: str, limit: int = 8) -> list[str] | None:
    """The output lines a lookup's answer should come from, or None when there is nothing to check.

    Those are the lines that name one of the question's key words, and the lines that name a
    capitalised word or a code of those (a second step: "Kofi Vogel lives in Penwick", then
    "Penwick lies in Brazil"). None when the question is not a lookup or no output line names a key
    word (the model found nothing to read, so there is nothing to point at).
    """
    if not is_lookup(query):
        return None
    terms = key_terms(query, 4)
    lines = [line.strip() for line in seen.splitlines() if line.strip() and not line.lstrip().startswith(("search(", "note:"))]
    first = [line for line in lines if mentions_any(line, terms)]
    if not terms or not first:
        return None
    words = {w for line in first for w in _LINK.findall(line) if len(w) > 2} - {w for t in terms for w in t.split()}
    second = [line for line in lines if line not in first and any(re.search(rf"\b{re.escape(w)}\b", line) for w in words)]
    return (first + second)[: max(limit, len(first))]


def snippets(line: str, terms: list[str], window: int = 150, most: int = 3) -> list[str]:
    """The parts of a long output line around its first matches of ``terms`` (the whole line if short)."""
    if len(line) <= 2 * window:
        return [line]
    spans = sorted({m.start() for t in terms for m in _loose(t).finditer(line)})[:most]
    return [("..." if s > window else "") + line[max(0, s - window): s + window] + ("..." if s + window < len(line) else "") for s in spans] or [line[: 2 * window]]



_RELATION_WORD = re.compile(r"[a-z]{4,}")
#: Where a sentence ends: not after an initial ("Gianni S. Petrov"); a printed list's items end one too.
SENTENCE_END = re.compile(r"(?<=[a-z0-9)\]}][.!?])['\"]?(?:,\s*['\"]|\s+)|\n")


def sentences(text: str) -> list[str]:
    """A text's sentences (and a printed list's items), stripped of quotes and brackets."""
    return [x.strip(" '\"[]") for x in SENTENCE_END.split(text) if x.strip(" '\"[]")]


def _relation(sentence: str, skip: set[str]) -> frozenset[str]:
    """What a sentence says, without its names: the stems of its lowercase words ("home" in
    "Yuki Ferreira's home is in Selstead")."""
    return frozenset(_stems(re.sub(r"\b[A-Z][\w'-]*", " ", sentence)) - skip)


def _stems(text: str) -> set[str]:
    """The words of four letters or more, cut to four ("managed" and "manages", "lived" and "lives" alike)."""
    return {w[:4] for w in _RELATION_WORD.findall(text.lower())}


def next_hop_lines(query: str, answer: str, hits: list[str], most: int = 5) -> tuple[str, list[str]] | None:
    """Lines about a lookup's answer that say something else than what named it: a second step.

    ``hits`` are the context's lines (or windows) that mention ``answer``. The question's key words
    are tried in turn as its subject: the hits that name it are where the answer came from ("Kofi
    Vogel lives in Penwick"). Another hit that holds all the other words of one of those says the
    same thing about someone else ("Ana Silva lives in Penwick"); the rest say something else about
    the answer ("Penwick is a city in Brazil"). Returns the subject as a line writes it and those
    lines (fewest words shared with the subject's lines first, then most words of the question), or
    None: not a lookup, a number, a yes/no, an answer no subject's line holds (a second step already
    taken), or no such line.
    """
    text = answer.strip().strip("'\"")
    if not text or not is_lookup(query) or _NUMBER.fullmatch(text) or len(text.split()) > 4 or text.lower() in ("yes", "no"):
        return None
    # sentence by sentence: a line of prose holds other people's facts beside the answer's
    hits = list(dict.fromkeys(x for h in hits for x in (sentences(h) or [h]) if _loose(text).search(x)))
    for term in key_terms(query, 4):
        if _loose(term).search(text) or _loose(text).search(term):
            continue
        mine = [h for h in hits if _loose(term).search(h)]
        if not mine or len(mine) > max(2, len(hits) // 3):  # a subject is named in few of the hits
            continue
        named = _name_around(mine[0], term)
        if named is None:  # the data writes a subject as a name ("Kofi Vogel"), not a word ("country")
            continue
        skip = _stems(named) | _stems(text) | {w[:4] for w in _STOP}
        relations = [r for r in (_stems(h) - skip for h in mine) if r]
        asked = _stems(query) - skip
        other = []
        for h in hits:
            words = _stems(h)
            if h in mine or any(r <= words for r in relations):
                continue  # the subject's own line, or the same thing said about someone else
            shared = set().union(*relations) & words
            other.append((len(shared), _relation(h, skip), -len(asked & words), h))
        # a relation many lines share is the first step said of other people in other words ("X's
        # home is in Selstead" after "Zoe Vogel lives in Selstead"); the second step is said once
        said = Counter(rel for _, rel, _, _ in other)
        ranked = sorted(other, key=lambda x: (x[0], said[x[1]], x[2]))
        if ranked:
            return named, [h for _, _, _, h in ranked[:most]]
    return None


def _name_around(line: str, term: str) -> str | None:
    """``term`` as ``line`` writes it, widened to the capitalised words around it ("vogel" in "Kofi
    Vogel lives" gives "Kofi Vogel"); None when the line writes it without a capital."""
    m = _loose(term).search(line)
    if m is None or not m.group(0)[:1].isupper():
        return None
    start, end = m.start(), m.end()
    while True:
        left = re.search(r"(?:[A-Z][\w'-]*|[A-Z]\.)\s+$", line[:start])
        if not left:
            break
        start = left.start()
    while True:
        right = re.match(r"\s+(?:[A-Z][\w'-]*|[A-Z]\.)", line[end:])
        if not right:
            break
        end += right.end()
    return re.sub(r"['’]s$", "", line[start:end]).rstrip("'’-")  # (a quoted record value: 'Rafael Grant')


def names_the_subject(query: str, answer: str) -> bool:
    """True if a lookup is answered with what the question itself names ("Who manages the team that
    lena moreau works on?" answered "Lena Moreau"). Not for a question offering a choice ("... A or
    B?"), a yes/no, a number, or an answer of fewer than three letters."""
    text = " ".join(answer.strip().strip("'\"`.").split())
    if len(re.sub(r"[^A-Za-z]", "", text)) < 3 or _NUMBER.fullmatch(text) or not is_lookup(query):
        return False
    if re.search(r"\bor\b|\bwhich of\b|\bbetween\b|\bone of\b", query, re.IGNORECASE):
        return False  # "one of: positive, negative, neutral": a choice too
    if text.lower() in _STOP or text.lower() in {w.lower() for w in _FRAME}:
        return False
    return re.search(rf"(?<![\w-]){_loose(text).pattern}(?![\w-])", query, re.IGNORECASE) is not None
