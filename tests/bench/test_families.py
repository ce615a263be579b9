"""The generalisation families: determinism, ids, the dev/test splits and their composition, sizes."""

from __future__ import annotations

import json

import pytest

from rlm_graph.bench import families as F
from rlm_graph.bench.families.spec import TaskSpec, parse_size_label, size_label, split_of
from rlm_graph.bench.tasks import context_size

EVERY = [(fam.name, gen, shape) for fam in F.FAMILIES.values() for gen in fam.generators for shape in fam.shapes]


def _small(family: str) -> int:
    return {"judge": 2_000, "oolong": 6_000}.get(family, 12_000)


@pytest.mark.parametrize("family, generator, shape", EVERY)
def test_every_generator_is_deterministic(family: str, generator: str, shape: str) -> None:
    size = _small(family)
    a = F.make_task(TaskSpec(family, generator, shape, size, 7))
    b = F.make_task(TaskSpec(family, generator, shape, size, 7))
    c = F.make_task(TaskSpec(family, generator, shape, size, 8))
    assert a == b
    assert json.dumps(a.context) != json.dumps(c.context)
    assert a.kind == family and a.size_chars == context_size(a.context)
    assert a.metadata["split"] == "dev" and a.metadata["seed"] == 7 and a.metadata["requested_size"] == size
    assert a.query.strip() and a.gold not in (None, "", [], 0)


def test_the_same_id_gives_the_same_task_in_a_fresh_interpreter() -> None:
    import subprocess
    import sys

    task_id = "test-needle-gate-docs-32k-s100123"
    code = ("import hashlib, json; from rlm_graph.bench.families import task_from_id as t; x = t(%r); "
            "print(hashlib.sha256(json.dumps([x.context, x.query, x.gold]).encode()).hexdigest())" % task_id)
    here = F.task_from_id(task_id)
    import hashlib

    want = hashlib.sha256(json.dumps([here.context, here.query, here.gold]).encode()).hexdigest()
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={"PYTHONHASHSEED": "123", "PATH": ""})
    assert out.stdout.strip() == want


def test_ids_round_trip_and_encode_everything() -> None:
    spec = TaskSpec("logs", "status", "text", 1_000_000, 1200)
    assert spec.id == "dev-logs-status-text-1m-s1200"
    assert TaskSpec.parse(spec.id) == spec
    spec = F.split_specs("test", ["sets"])[2]
    assert spec.id.startswith("test-sets-diff_items-files-128k-s") and F.task_from_id(spec.id).id == spec.id
    assert [size_label(n) for n in (8_000, 2_000_000, 1_500, 10_000_000)] == ["8k", "2m", "1500", "10m"]
    assert parse_size_label("1500") == 1500 and parse_size_label("10m") == 10_000_000


@pytest.mark.parametrize("bad", ["dev-logs-status-text-1m-s100200",  # a test seed under a dev id
                                 "test-logs-status-text-1m-s12", "dev-logs-status-text-1m", "dev-logs-nope-text-8k-s1",
                                 "dev-logs-status-sideways-8k-s1", "dev-nope-status-text-8k-s1", "dev-logs-status-text-50m-s1",
                                 "prod-logs-status-text-8k-s1"])
def test_bad_ids_are_refused(bad: str) -> None:
    with pytest.raises(ValueError):
        F.task_from_id(bad)


def test_seed_ranges() -> None:
    assert split_of(0) == split_of(9_999) == "dev"
    assert split_of(100_000) == split_of(199_999) == "test"
    for seed in (-1, 10_000, 99_999, 200_000):
        with pytest.raises(ValueError):
            split_of(seed)


def test_composition_is_fixed_and_the_same_in_both_splits() -> None:
    dev, test = F.split_specs("dev"), F.split_specs("test")
    assert len(dev) == len(test) == 29
    assert [(s.family, s.generator, s.shape, s.size) for s in dev] == [(s.family, s.generator, s.shape, s.size) for s in test]
    for name, fam in F.FAMILIES.items():
        slots = F.COMPOSITION[name]
        assert 4 <= len(slots) <= 5
        assert {g for g, _, _ in slots} == set(fam.generators) or len(fam.generators) > len(slots)
        assert len({sh for _, sh, _ in slots}) >= min(len(fam.shapes), len(slots)) - 1
        assert all(fam.min_size <= size <= fam.max_size for _, _, size in slots)
    assert sum(1 for s in dev if s.size >= 10_000_000) == 1
    assert {s.size for s in dev if s.family == "needle"} >= {32_000, 2_000_000}


def test_dev_and_test_share_no_seed_id_or_context() -> None:
    dev, test = F.split_specs("dev", per_slot=3), F.split_specs("test", per_slot=3)
    assert all(s.seed in range(10_000) for s in dev) and all(s.seed >= 100_000 for s in test)
    assert not {s.id for s in dev} & {s.id for s in test}
    assert len({s.id for s in dev}) == len(dev)
    small = [s for s in dev + test if s.size <= 200_000]  # every slot up to 200K characters, three seeds each
    ctx = {json.dumps(F.make_task(s).context) for s in small if s.split == "dev"}
    assert not ctx & {json.dumps(F.make_task(s).context) for s in small if s.split == "test"}


def test_load_split_filters_families_and_repeats_slots() -> None:
    tasks = F.load_split("dev", ["judge"], per_slot=2)
    assert [t.id for t in tasks][:2] == ["dev-judge-reviews-list-1500-s3000", "dev-judge-reviews-list-1500-s3001"]
    assert len(tasks) == 8 and {t.kind for t in tasks} == {"judge"}
    with pytest.raises(ValueError, match="unknown family"):
        F.load_split("dev", ["nope"])
    with pytest.raises(ValueError, match="unknown split"):
        F.load_split("train")
    with pytest.raises(ValueError):
        F.split_specs("dev", per_slot=0)
    assert [t.id for t in F.load_ids(["# a comment", "", tasks[1].id + "  # why"])] == [tasks[1].id]


@pytest.mark.parametrize("family, generator, shape", EVERY)
def test_sizes_are_near_the_request(family: str, generator: str, shape: str) -> None:
    size = {"judge": 2_000, "oolong": 30_000}.get(family, 40_000)
    t = F.make_task(TaskSpec(family, generator, shape, size, 3))
    low = 0.6 if family == "judge" else 0.85  # judge: whole items, and small pools of items without a product
    assert low * size <= t.size_chars <= 1.15 * size, (t.id, t.size_chars)


@pytest.mark.timeout(120)  # a hang guard, not a speed target (that is in `bench quality --list`)
def test_the_largest_task_generates() -> None:
    (spec,) = [s for s in F.split_specs("test") if s.size == 10_000_000]
    t = F.make_task(spec)
    assert abs(t.size_chars - 10_000_000) < 200_000
    assert t.gold in (t.context if isinstance(t.context, str) else json.dumps(t.context))


def test_the_documented_composition_is_the_code_s() -> None:
    from pathlib import Path

    doc = (Path(__file__).resolve().parents[2] / "docs" / "quality-bench.md").read_text()
    rows = [line.split("|")[5:7] for line in doc.splitlines() if line.startswith("| ") and "`dev-" in line]
    assert [(d.strip(" `"), t.strip(" `")) for d, t in rows] == [(d.id, t.id) for d, t in zip(F.split_specs("dev"), F.split_specs("test"))]


#: The splits' fingerprint (every task up to 1M characters: id, question, gold, context hash). Results are only
#: comparable across revisions while the tasks stay the same: a change to a generator must change this on purpose,
#: and the note that lands it says that earlier results no longer compare.
FINGERPRINT = "061c1a8d0a32e64a5001b79d0c6beaac2fe5e5a3a791158be122272c5b8bd2f4"


def test_the_splits_have_not_changed() -> None:
    import hashlib

    h = hashlib.sha256()
    for split in ("dev", "test"):
        for spec in F.split_specs(split):
            if spec.size <= 1_000_000:
                t = F.make_task(spec)
                h.update(json.dumps([t.id, t.query, t.gold, hashlib.sha256(json.dumps(t.context).encode()).hexdigest()]).encode())
    assert h.hexdigest() == FINGERPRINT
