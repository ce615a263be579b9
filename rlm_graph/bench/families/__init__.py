"""Task families for measuring generalisation, with a **dev** split (tune on it) and a **test** split (report it).

Seven families (:data:`FAMILIES`), each with several generators that vary the shape of the context, the
wording of the question (its words differ from the text's), the size and where the answer sits:

- ``needle``: a key-value fact among same-kind facts about similar keys (8K-10M characters).
- ``logs``: counting log lines by level, service or HTTP status, with one or two conditions.
- ``tables``: sum, average, maximum or count over orders in CSV text, rows, JSON text or columns.
- ``judge``: 12-40 short items, each needing a semantic judgement (a count, or the ids).
- ``sets``: intersection and difference of two lists, as a count or as the items.
- ``multihop``: two facts found apart (person -> city -> country, employee -> team -> manager).
- ``oolong``: labelled lines with metadata; at most ~60 need a judgement, the rest are set aside by metadata.

A split is a fixed composition (:data:`COMPOSITION`: per family, 4-5 slots of generator, shape and size; 29
tasks) instantiated with the split's seeds: the same slots in both splits, so dev and test are two samples of
the same distribution; everything else (the wording, the keys and values, the answer's position, the
distractors, the line format) comes from the seed. Slot ``k`` of family ``f`` (in :data:`FAMILIES` order), repeat
``r`` has seed ``base + 1000 f + 100 k + r``, with base 0 for dev and 100000 for test.

    >>> from rlm_graph.bench.families import load_split, task_from_id
    >>> tasks = load_split("dev", families=["needle"])
    >>> task_from_id(tasks[0].id) == tasks[0]
    True
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

from rlm_graph.bench.families import judge, logs, multihop, needle, oolong, sets, tables
from rlm_graph.bench.families.spec import SPLITS, Family, TaskSpec, build_task, size_label, split_of
from rlm_graph.bench.tasks import Task

__all__ = ["FAMILIES", "COMPOSITION", "SPLITS", "TaskSpec", "load_split", "split_specs", "task_from_id", "make_task",
           "size_label", "split_of"]

FAMILIES: dict[str, Family] = {f.name: f for f in (needle.FAMILY, logs.FAMILY, tables.FAMILY, judge.FAMILY, sets.FAMILY,
                                                      multihop.FAMILY, oolong.FAMILY)}

#: family -> slots (generator, shape, size in characters). At most one 10M task per split.
COMPOSITION: dict[str, tuple[tuple[str, str, int], ...]] = {
    "needle": (("code", "line", 2_000_000), ("wifi", "lines", 10_000_000), ("gate", "docs", 128_000),
               ("room", "dictdocs", 512_000), ("serial", "records", 32_000)),
    "logs": (("level", "text", 64_000), ("level_service", "list", 256_000), ("status", "text", 1_000_000),
             ("level_service", "records", 8_000)),
    "tables": (("sum", "csv", 256_000), ("avg", "rows", 32_000), ("count", "columns", 1_000_000), ("max", "json", 8_000)),
    "judge": (("reviews", "list", 1_500), ("tickets", "records", 2_500), ("headlines", "lines", 2_000),
              ("reviews", "dict", 1_000)),
    "sets": (("common_count", "dict", 1_000_000), ("common_items", "sections", 32_000), ("diff_items", "files", 128_000),
             ("diff_count", "records", 8_000)),
    "multihop": (("person_country", "text", 128_000), ("employee_manager", "records", 32_000),
                 ("person_country", "dict", 1_000_000), ("employee_manager", "docs", 8_000)),
    "oolong": (("most_common", "lines", 4_000), ("label_count", "records", 4_000), ("user_count", "lines", 128_000),
               ("date_count", "list", 32_000)),
}

_BASE = {"dev": 0, "test": 100_000}


def _check_families(families: Iterable[str] | None) -> list[str]:
    names = list(families or FAMILIES)
    unknown = [f for f in names if f not in FAMILIES]
    if unknown:
        raise ValueError(f"unknown famil{'ies' if len(unknown) > 1 else 'y'} {', '.join(unknown)}: use {', '.join(FAMILIES)}")
    return names


def split_specs(split: str, families: Iterable[str] | None = None, per_slot: int = 1) -> list[TaskSpec]:
    """The specs of a split (in composition order), ``per_slot`` seeds per slot (1-100)."""
    if split not in _BASE:
        raise ValueError(f"unknown split {split!r}: use dev or test")
    if not 1 <= per_slot <= 100:
        raise ValueError(f"per_slot must be 1-100, not {per_slot}")
    wanted = set(_check_families(families))
    specs = []
    for f, (name, slots) in enumerate(COMPOSITION.items()):
        if name not in wanted:
            continue
        for k, (generator, shape, size) in enumerate(slots):
            specs += [TaskSpec(name, generator, shape, size, _BASE[split] + 1000 * f + 100 * k + r) for r in range(per_slot)]
    return specs


def make_task(spec: TaskSpec) -> Task:
    """Build the task a spec names."""
    if spec.family not in FAMILIES:
        raise ValueError(f"unknown family {spec.family!r}: use {', '.join(FAMILIES)}")
    return build_task(FAMILIES[spec.family], spec)


def task_from_id(task_id: str) -> Task:
    """Rebuild a task from its id, e.g. ``dev-logs-status-text-1m-s1200``."""
    return make_task(TaskSpec.parse(task_id))


def load_split(split: str, families: Iterable[str] | None = None, per_slot: int = 1) -> list[Task]:
    """The tasks of a split: ``dev`` or ``test``, optionally only some families."""
    return [make_task(s) for s in split_specs(split, families, per_slot)]


def load_ids(ids: Sequence[str]) -> list[Task]:
    """The tasks named by ids (blank entries and ``#`` comments skipped)."""
    return [task_from_id(i) for i in (x.split("#", 1)[0].strip() for x in ids) if i]
