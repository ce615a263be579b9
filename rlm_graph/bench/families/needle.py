"""Needle family: one key-value fact hidden in filler, among facts of the same kind about other keys.

Generators are the kinds of fact (their values look different): ``code`` (a 5-digit access code for "the
Orion vault"), ``wifi`` (a password such as ``marigold47``), ``gate`` (a boarding gate such as ``B47``),
``room`` (the 4-digit office room of "Dr. Maya Novak"), ``serial`` (``SN-482133``). Each task has 4-9
distractor facts of the same kind whose keys share a word with the target key ("the Orion archive", "the
Lyra vault"; "Dr. Maya Berg") and whose values look like the gold (same length, same first characters),
plus sentences that name the target key without its value. The question writes the key differently from
the text (other casing, a hyphen, no "Dr.") and often names the attribute with another word ("PIN",
"WiFi key", "serial no.", a plural). The fact's depth is drawn uniformly in [0.02, 0.98].
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass

from rlm_graph.bench.families.packing import PROSE_SHAPES, Stream, pack
from rlm_graph.bench.families.prose import FIRST, LAST, PROPER, filler_pool, person_forms, pick_forms, thing_forms
from rlm_graph.bench.families.spec import Build, Built, Family, ask

_WORDS = ["marigold", "tangerine", "lavender", "saffron", "cinnamon", "bluebell", "hazelnut",
          "primrose", "thistle", "magnolia", "chestnut", "sorrel", "quince"]


def _digits(n: int) -> Callable[[random.Random], str]:
    return lambda rng: str(rng.randrange(10 ** (n - 1), 10 ** n))


def _near_digits(rng: random.Random, v: str) -> str:
    return v[:2] + "".join(rng.choice("0123456789") for _ in v[2:])


def _near_word(rng: random.Random, v: str) -> str:
    word = v.rstrip("0123456789")
    return (word if rng.random() < 0.5 else rng.choice(_WORDS)) + f"{rng.randint(10, 99)}"


def _near_gate(rng: random.Random, v: str) -> str:
    return (v[0] if rng.random() < 0.6 else rng.choice("ACDEFGH")) + f"{rng.randint(10, 59)}"


def _near_serial(rng: random.Random, v: str) -> str:
    return v[:6] + "".join(rng.choice("0123456789") for _ in range(3))


@dataclass(frozen=True)
class Fact:
    """One kind of fact: how the text states it, how the question asks for it, what its values look like."""

    nouns: tuple[str, ...]  # empty: the key is a person
    text: tuple[str, ...]
    mention: tuple[str, ...]
    ask: tuple[str, ...]
    value: Callable[[random.Random], str]
    near: Callable[[random.Random, str], str]
    form: str


FACTS: dict[str, Fact] = {
    "code": Fact(
        ("vault", "archive", "locker", "depot", "bunker", "strongroom"),
        ("The access code for the {e} is {v}.", "To open the {e}, enter the access code {v}.",
         "The {e} opens with access code {v}.", "Use {v} as the access code of the {e}."),
        ("The {e} was repainted last spring.", "Nobody has opened the {e} since the storm.",
         "The {e} sits at the end of the east corridor."),
        ("What is the access code for the {q}?", "Which PIN opens the {q}?", "What number opens the {q}?",
         "What are the access codes for the {q}?", "What code gets you into the {q}?"),
        _digits(5), _near_digits, "number"),
    "wifi": Fact(
        ("lodge", "cafe", "library", "studio", "hostel", "bakery"),
        ("The Wi-Fi password at the {e} is {v}.", "Guests at the {e} can join the Wi-Fi with the password {v}.",
         "At the {e}, the wireless password is {v}."),
        ("The {e} stays open late on Fridays.", "Locals say the {e} has the best view in town."),
        ("What is the wifi password for the {q}?", "What's the WiFi key at the {q}?",
         "Which password gets a guest online at the {q}?", "What are the Wi-Fi passwords of the {q}?"),
        lambda rng: f"{rng.choice(_WORDS)}{rng.randint(10, 99)}", _near_word, "code"),
    "gate": Fact(
        ("ferry", "express", "shuttle", "clipper", "sleeper"),
        ("Passengers for the {e} board at gate {v}.", "The {e} departs from gate {v}.",
         "Gate {v} is reserved for the {e}."),
        ("The {e} was delayed twice last week.", "Tickets for the {e} sold out early."),
        ("Which gate does the {q} leave from?", "What is the boarding gate of the {q}?",
         "From what gate do travellers catch the {q}?", "Where do passengers board the {q}? Give the gate."),
        lambda rng: f"{rng.choice('BCDEFGH')}{rng.randint(10, 59)}", _near_gate, "code"),
    "room": Fact(
        (),
        ("{e} has an office in room {v}.", "The office of {e} is room {v}.", "You can find {e} in room {v}."),
        ("{e} chaired the meeting on Thursday.", "{e} is away until the end of the month."),
        ("In which room is the office of {q}?", "What room number does {q} work in?",
         "Which room is {q}'s office?", "Where is the office of {q}? Give the room number."),
        _digits(4), _near_digits, "number"),
    "serial": Fact(
        ("turbine", "pump", "generator", "compressor", "boiler"),
        ("The serial number of the {e} is {v}.", "The {e} carries serial number {v}.",
         "Serial {v} belongs to the {e}."),
        ("The {e} was serviced in the autumn.", "The {e} hums loudly when it starts."),
        ("What is the serial no. of the {q}?", "Which serial is stamped on the {q}?",
         "What's the serial number for the {q}?", "What are the serial numbers of the {q}?"),
        lambda rng: f"SN-{rng.randrange(100_000, 1_000_000)}", _near_serial, "code"),
}

_LEAD = ["", "", "According to the context, ", "From the text: ", "Quick question: "]


def _keys(rng: random.Random, fact: Fact, n: int) -> tuple[list[dict[str, str]], list[str], list[str]]:
    """The target's name forms first, then ``n`` distractor keys sharing a word with it; the text form keys
    allowed, and the canonical names (target first)."""
    if fact.nouns:
        proper, noun = rng.choice(PROPER), rng.choice(fact.nouns)
        pairs = [(proper, noun)]
        while len(pairs) < n + 1:
            cand = (proper, rng.choice(fact.nouns)) if rng.random() < 0.5 else (rng.choice(PROPER), noun)
            if rng.random() < 0.25:
                cand = (rng.choice(PROPER), rng.choice(fact.nouns))
            if cand not in pairs:
                pairs.append(cand)
        return [thing_forms(p, q) for p, q in pairs], ["plain", "title", "hyphen_title"], [f"{p} {q}" for p, q in pairs]
    first, last = rng.choice(FIRST), rng.choice(LAST)
    people = [(first, last)]
    while len(people) < n + 1:
        cand = (first, rng.choice(LAST)) if rng.random() < 0.5 else (rng.choice(FIRST), last)
        if cand not in people:
            people.append(cand)
    return [person_forms(f, la, "Dr.") for f, la in people], ["plain", "no_dot"], [f"{f} {la}" for f, la in people]


def _build(kind: str, rng: random.Random, shape: str, size: int) -> Built:
    fact = FACTS[kind]
    pool = filler_pool(rng)
    forms, text_keys, names = _keys(rng, fact, rng.randint(4, 9))
    tk, text_name, qk, q_name = pick_forms(rng, forms[0], text_keys)
    value = fact.value(rng)
    values = [value]
    while len(values) < len(names):
        v = fact.near(rng, value)
        if v not in values:
            values.append(v)
    depth = round(rng.uniform(0.02, 0.98), 3)
    facts = [(depth, rng.choice(fact.text).format(e=text_name, v=value))]
    for f, v in zip(forms[1:], values[1:]):
        facts.append((rng.uniform(0.0, 1.0), rng.choice(fact.text).format(e=f[tk], v=v)))
    for _ in range(rng.randint(1, 3)):
        facts.append((rng.uniform(0.0, 1.0), rng.choice(fact.mention).format(e=text_name)))
    lead = rng.choice(_LEAD)
    question = rng.choice(fact.ask).format(q=q_name)
    query = ask(rng, lead + (question[0].lower() + question[1:] if lead else question), fact.form)
    context, layout = pack(shape, Stream(rng, pool, size, facts), size, rng)
    return Built(context, query, value, "exact",
                 {"key": names[0], "text_form": tk, "question_form": qk, "depth": depth,
                  "distractors": dict(zip(names[1:], values[1:])), "choices": values, **layout})


def _generator(kind: str) -> Build:
    def build(rng: random.Random, shape: str, size: int) -> Built:
        return _build(kind, rng, shape, size)
    build.__doc__ = f"A needle task whose fact is a {kind}."
    return build


FAMILY = Family("needle", __doc__.split("\n")[0], {k: _generator(k) for k in FACTS}, PROSE_SHAPES, 4_000, 10_000_000)
