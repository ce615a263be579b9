"""Words the families share: filler prose, names of people, places and things, surface variants (stdlib only).

Filler never holds a digit run longer than two, nor any of the words the facts are keyed on (codes, passwords,
gates, rooms, serials, teams, managers, "lives in"), so a fact can only be found where it was put.
"""

from __future__ import annotations

import random

FIRST = ["Anna", "Ben", "Clara", "David", "Elena", "Farid", "Grace", "Hugo", "Iris", "Jonas", "Kara", "Liam",
         "Maya", "Nils", "Olga", "Pablo", "Quinn", "Rosa", "Sami", "Tara", "Umar", "Vera", "Wes", "Yuki", "Zoe",
         "Aiden", "Bianca", "Carlos", "Dalia", "Emil", "Freya", "Gianni", "Hana", "Ivan", "Jade", "Kofi",
         "Lena", "Marco", "Nadia", "Oscar", "Priya", "Rafael", "Sofia", "Tomas", "Ulla", "Victor", "Wanda"]
LAST = ["Berg", "Costa", "Dube", "Evans", "Fischer", "Garcia", "Hansen", "Ito", "Jensen", "Kowalski", "Lopez",
        "Moreau", "Novak", "Okafor", "Petrov", "Quist", "Rossi", "Silva", "Tanaka", "Ueda", "Varga", "Weber",
        "Abbott", "Brandt", "Castillo", "Dawson", "Eriksen", "Ferreira", "Grant", "Holm", "Iqbal", "Jovanovic",
        "Keller", "Lindqvist", "Mendes", "Nakamura", "Ortiz", "Pereira", "Ruiz", "Sato", "Torres", "Vogel"]
#: Proper words naming things: "the Orion vault", "the Lyra ferry".
PROPER = ["Orion", "Lyra", "Vega", "Cedar", "Juniper", "Falcon", "Marlow", "Halcyon", "Sable", "Quill", "Rowan",
          "Ember", "Aster", "Briar", "Cobalt", "Everest", "Fjord", "Granite", "Indigo", "Jasper", "Kestrel",
          "Linden", "Meridian", "Nimbus", "Onyx", "Pinnacle", "Quartz", "Raven", "Sierra", "Topaz", "Umber",
          "Zephyr", "Alder", "Beacon", "Corvid", "Dune", "Elm", "Fennel", "Garnet", "Heron"]
CITY_A = ["Ash", "Bel", "Cor", "Dun", "El", "Fen", "Gar", "Hol", "Ivy", "Kel", "Lor", "Mar", "Nor", "Ost",
          "Pen", "Ros", "Sel", "Tor", "Ul", "Ver", "Wyn", "Yar", "Brom", "Cal", "Dray", "Esk"]
CITY_B = ["ford", "haven", "mere", "stead", "wick", "dale", "bury", "holm", "gate", "ton", "moor", "crest",
          "field", "port", "well", "minster"]
COUNTRIES = ["France", "Brazil", "Canada", "Kenya", "India", "Sweden", "Mexico", "Egypt", "Japan", "Poland",
             "Argentina", "Vietnam", "Turkey", "Ireland", "Australia", "Chile", "Norway", "Ghana", "Peru",
             "Portugal", "Morocco", "Nepal", "Hungary", "Iceland"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August", "September", "October",
          "November", "December"]

_SUBJECTS = ["The old mill", "A quiet street", "The village choir", "Our neighbour", "The morning train",
             "A gentle breeze", "The river", "The school garden", "A stray cat", "The market square",
             "The night shift", "A travelling band", "The lighthouse keeper", "The bakery", "The orchard",
             "A young painter", "The museum guide", "The fishing fleet", "The hill path", "The reading club"]
_VERBS = ["drifted past", "looked out over", "waited beside", "wandered through", "returned to",
          "lingered near", "hurried along", "rested under", "circled around", "settled into", "leaned against",
          "followed", "brightened", "crossed", "filled"]
_OBJECTS = ["the harbour wall", "the empty platform", "a field of barley", "the stone bridge", "the town hall",
            "a row of poplars", "the chapel steps", "the frozen pond", "the narrow lane", "the rooftops",
            "an old barn", "the tram stop", "the sand dunes", "a patch of clover", "the bus shelter"]
_TAILS = ["before the rain began", "as the bells rang", "long after sunset", "in the early light",
          "while the kettle boiled", "on a windy afternoon", "without a sound", "as it did every spring",
          "just after lunch", "under a pale sky", "for a while", "with some reluctance", "", "", ""]
_REMARKS = ["Nobody seemed to mind.", "It had been a long week.", "The weather was mild for the season.",
            "Someone hummed a tune in the distance.", "The air smelled of cut grass.",
            "Few people noticed the change.", "It was the same as the year before.", "Later, everyone agreed.",
            "Tea was served in the garden.", "The shops closed early.", "Children chased each other home.",
            "A letter arrived on time for once.", "The clouds thinned by evening."]


def filler_sentence(rng: random.Random) -> str:
    """One sentence of neutral prose."""
    if rng.random() < 0.2:
        return rng.choice(_REMARKS)
    tail = rng.choice(_TAILS)
    if rng.random() < 0.15:
        tail = f"{tail} for about {rng.randint(2, 60)} minutes".strip()
    return f"{rng.choice(_SUBJECTS)} {rng.choice(_VERBS)} {rng.choice(_OBJECTS)}{' ' + tail if tail else ''}."


def filler_pool(rng: random.Random, n: int = 600) -> list[str]:
    """``n`` filler sentences to draw from (drawing from a pool keeps 10M-character contexts fast)."""
    return [filler_sentence(rng) for _ in range(n)]


def cities(rng: random.Random, n: int) -> list[str]:
    """``n`` distinct made-up city names (at most 416)."""
    every = [a + b for a in CITY_A for b in CITY_B]
    return rng.sample(every, min(n, len(every)))


def thing_forms(first: str, second: str) -> dict[str, str]:
    """Ways to write a two-word name: 'Orion vault', 'Orion Vault', 'Orion-vault', 'ORION VAULT' ..."""
    return {"plain": f"{first} {second.lower()}", "title": f"{first} {second.title()}",
            "hyphen": f"{first}-{second.lower()}", "hyphen_title": f"{first}-{second.title()}",
            "upper": f"{first} {second}".upper(), "lower": f"{first} {second}".lower()}


def person_forms(first: str, last: str, title: str = "") -> dict[str, str]:
    """Ways to write a person's name: 'Dr. Maya Novak', 'Dr Maya Novak', 'MAYA NOVAK', 'maya novak' ..."""
    t = f"{title} " if title else ""
    return {"plain": f"{t}{first} {last}", "no_dot": f"{t.replace('.', '')}{first} {last}",
            "bare": f"{first} {last}", "upper": f"{first} {last}".upper(), "lower": f"{first} {last}".lower()}


def pick_forms(rng: random.Random, forms: dict[str, str], text_keys: list[str]) -> tuple[str, str, str, str]:
    """(text form key, text form, question form key, question form): the question writes the name otherwise."""
    tk = rng.choice(text_keys)
    qk = rng.choice([k for k in forms if forms[k] != forms[tk]])
    return tk, forms[tk], qk, forms[qk]
