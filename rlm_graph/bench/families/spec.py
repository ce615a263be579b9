"""What a family task is made of: the generator contract, task ids, seed ranges (stdlib only).

A generator is ``build(rng, shape, size) -> Built``: from a seeded ``random.Random`` it makes one context of
about ``size`` characters in the given shape, the question (its wording chosen by ``rng``), the gold answer and
the scorer. A task id names everything that went into it, so the id alone rebuilds the task:

    <split>-<family>-<generator>-<shape>-<size>-s<seed>      e.g. dev-needle-code-lines-10m-s1201

The random generator is seeded with ``family|generator|shape|size|seed`` (str seeds are hashed with SHA-512,
so the same id gives the same task on any machine). The split is a function of the seed: **dev** seeds are
0-9999, **test** seeds are 100000-199999, so no dev task can ever be a test task.
"""

from __future__ import annotations

import random
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from rlm_graph.bench.tasks import Context, Task, context_size

SPLITS: dict[str, range] = {"dev": range(0, 10_000), "test": range(100_000, 200_000)}


@dataclass(frozen=True)
class Built:
    """A generator's output: context, question, gold answer, scorer and what the task is about."""

    context: Context
    query: str
    gold: Any
    scorer: str
    metadata: dict[str, Any] = field(default_factory=dict)


Build = Callable[[random.Random, str, int], Built]


@dataclass(frozen=True)
class Family:
    """A task family: its generators, the shapes every generator can make, and the sizes it supports."""

    name: str
    about: str
    generators: Mapping[str, Build]
    shapes: tuple[str, ...]
    min_size: int
    max_size: int


def split_of(seed: int) -> str:
    """'dev' or 'test' for a seed in their ranges; ValueError for any other seed."""
    for name, seeds in SPLITS.items():
        if seed in seeds:
            return name
    raise ValueError(f"seed {seed} is in no split: dev seeds are 0-9999, test seeds 100000-199999")


def size_label(size: int) -> str:
    """8000 -> '8k', 2000000 -> '2m', 1500 -> '1500'."""
    if size >= 1_000_000 and size % 1_000_000 == 0:
        return f"{size // 1_000_000}m"
    return f"{size // 1000}k" if size >= 1000 and size % 1000 == 0 else str(size)


def parse_size_label(text: str) -> int:
    """'8k' -> 8000, '2m' -> 2000000, '1500' -> 1500."""
    m = re.fullmatch(r"(\d+)([km]?)", text)
    if not m:
        raise ValueError(f"bad size {text!r}")
    return int(m.group(1)) * {"": 1, "k": 1_000, "m": 1_000_000}[m.group(2)]


_ID = re.compile(r"(dev|test)-([a-z_]+)-([a-z_0-9]+)-([a-z_]+)-(\d+[km]?)-s(\d+)")


@dataclass(frozen=True, order=True)
class TaskSpec:
    """Everything that determines a family task."""

    family: str
    generator: str
    shape: str
    size: int
    seed: int

    @property
    def split(self) -> str:
        return split_of(self.seed)

    @property
    def id(self) -> str:
        return f"{self.split}-{self.family}-{self.generator}-{self.shape}-{size_label(self.size)}-s{self.seed}"

    @classmethod
    def parse(cls, task_id: str) -> TaskSpec:
        """The spec of a task id; ValueError if the id is malformed or its split does not match its seed."""
        m = _ID.fullmatch(task_id.strip())
        if not m:
            raise ValueError(f"bad task id {task_id!r}: expected <split>-<family>-<generator>-<shape>-<size>-s<seed>")
        split, family, generator, shape, size, seed = m.groups()
        spec = cls(family, generator, shape, parse_size_label(size), int(seed))
        if spec.split != split:
            raise ValueError(f"task id {task_id!r}: seed {seed} belongs to the {spec.split} split, not {split}")
        return spec


def build_task(family: Family, spec: TaskSpec) -> Task:
    """Run the family's generator for ``spec`` and wrap the result as a :class:`Task`."""
    if spec.generator not in family.generators:
        raise ValueError(f"family {family.name!r} has no generator {spec.generator!r}: "
                         f"use one of {', '.join(family.generators)}")
    if spec.shape not in family.shapes:
        raise ValueError(f"family {family.name!r} has no shape {spec.shape!r}: use one of {', '.join(family.shapes)}")
    if not family.min_size <= spec.size <= family.max_size:
        raise ValueError(f"family {family.name!r} takes sizes {size_label(family.min_size)}-"
                         f"{size_label(family.max_size)}, not {size_label(spec.size)}")
    rng = random.Random(f"{spec.family}|{spec.generator}|{spec.shape}|{spec.size}|{spec.seed}")
    built = family.generators[spec.generator](rng, spec.shape, spec.size)
    meta = {**built.metadata, "split": spec.split, "family": spec.family, "generator": spec.generator,
            "shape": spec.shape, "seed": spec.seed, "requested_size": spec.size}
    return Task(spec.id, spec.family, built.context, built.query, built.gold, built.scorer,
                context_size(built.context), meta)


def ask(rng: random.Random, question: str, form: str) -> str:
    """The question with an answer-form instruction in one of a few wordings (or none)."""
    forms = {
        "number": ["Answer with the number only.", "Reply with just the number.", "Give only the number.", ""],
        "code": ["Answer with the code only.", "Reply with just the value.", "Give the exact value.", ""],
        "name": ["Answer with the name only.", "Reply with just the name.", ""],
        "list": ["List them, separated by commas.", "Answer with the list only.", "Give every one of them."],
        "label": ["Answer with the label only.", "Reply with one label.", ""],
    }
    tail = rng.choice(forms[form])
    return f"{question} {tail}".strip()
