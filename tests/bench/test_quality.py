"""The quality runner against a scripted OpenAI-compatible server: per-task JSON, scores, the base
method's window, failures recorded as results."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.bench.quality import (
    QualityConfig,
    load_tasks,
    parse_size,
    parse_task_spec,
    result_path,
    run_quality,
    summarize,
)
from rlm_graph.errors import ConfigurationError
from tests.conftest import repl


def test_parse_sizes_and_specs() -> None:
    assert [parse_size(s) for s in ("8k", "1m", "512000", "1.5M", "1g")] == [8000, 1_000_000, 512_000, 1_500_000, 10**9]
    assert parse_task_spec("sniah:8k,128k") == ("sniah", [8000, 128_000])
    assert parse_task_spec("smoke") == ("smoke", None)
    with pytest.raises(ConfigurationError):
        parse_task_spec("nope:8k")
    with pytest.raises(ConfigurationError):
        parse_size("big")


def test_load_tasks_n_per_size_and_smoke_prefix() -> None:
    tasks = load_tasks(["smoke", "sniah:8k,16k"], n=2, seed=0)
    assert [t.id for t in tasks] == ["smoke-0-sum", "smoke-1-hidden_number", "sniah-8k-0", "sniah-8k-1", "sniah-16k-0", "sniah-16k-1"]


def _answer_from_context(messages: list[dict[str, Any]]) -> str:
    """A root model that looks, then answers the needle it was shown (or 'unknown')."""
    turn = sum(1 for m in messages if m["role"] == "assistant")
    if turn == 0:
        return repl("import re\nm = re.search(r'is: (\\d+)', context)\nprint(m.group(1) if m else 'none')")
    return repl("FINAL(m.group(1) if m else 'unknown')")


def test_rlm_and_base_write_one_json_per_task(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(_answer_from_context, sub=lambda prompt: "1234567")
    out = tmp_path / "q"
    cfg = QualityConfig(methods=["rlm", "base"], tasks=["sniah:8k"], n=2, model="scripted", base_url=srv.base_url, out=out)
    steps: list[tuple[int, int]] = []
    records = run_quality(cfg, progress=lambda _: None, steps=lambda done, total: steps.append((done, total)))
    assert len(records) == 4
    assert steps == [(k, 4) for k in range(5)]  # 2 tasks x 2 methods: the start, then after each run
    for rec in records:
        saved = json.loads((out / rec["method"] / f"{rec['task']}.json").read_text())
        assert saved == json.loads(json.dumps(rec, default=str))
        assert {"answer", "score", "seconds", "iterations", "subcalls", "tokens", "gold"} <= set(saved)
    rlm = [r for r in records if r["method"] == "rlm"]
    assert all(r["score"] == 1.0 and r["iterations"] == 2 for r in rlm)  # it read the needle from the context
    base = [r for r in records if r["method"] == "base"]
    assert all(r["score"] == 0.0 and r["answer"] == "1234567" and r["iterations"] == 1 for r in base)
    rows = summarize(records)
    assert {(r["method"], r["size_chars"], r["mean_score"]) for r in rows} == {("rlm", 8000, 1.0), ("base", 8000, 0.0)}


def test_skip_existing_keeps_results(scripted: Any, tmp_path: Path) -> None:
    srv = scripted(_answer_from_context, sub=lambda prompt: "x")
    cfg = QualityConfig(methods=["base"], tasks=["smoke"], n=1, model="scripted", base_url=srv.base_url, out=tmp_path, skip_existing=True)
    first = run_quality(cfg, progress=lambda _: None)
    calls = len(srv.requests)
    steps: list[tuple[int, int]] = []
    again = run_quality(cfg, progress=lambda _: None, steps=lambda done, total: steps.append((done, total)))
    assert len(srv.requests) == calls and again == json.loads(json.dumps(first))
    assert steps == [(0, 1), (1, 1)]  # a kept result counts as done


def test_base_shrinks_the_cut_until_the_server_accepts_it(scripted: Any, tmp_path: Path) -> None:
    too_long = {"status": 400, "body": {"error": {"message": "Requested tokens (9000) exceed context window of 8192"}}}
    srv = scripted([], sub=lambda prompt: too_long if len(prompt) > 10_000 else "7")
    cfg = QualityConfig(methods=["base"], tasks=["sniah:64k"], n=1, model="scripted", base_url=srv.base_url, out=tmp_path)
    (rec,) = run_quality(cfg, progress=lambda _: None)
    assert rec["answer"] == "7" and rec["overflow_retries"] >= 1
    assert 8_000 < rec["shown_chars"] <= 10_000
    assert rec["calls"] == rec["overflow_retries"] + 1


def test_a_failed_run_is_recorded_with_score_zero(tmp_path: Path) -> None:
    cfg = QualityConfig(methods=["base"], tasks=["smoke"], n=1, model="m", base_url="http://127.0.0.1:9/v1", out=tmp_path, timeout=5)
    (rec,) = run_quality(cfg, progress=lambda _: None)
    assert rec["score"] == 0.0 and rec["answer"] is None and "ModelError" in rec["error"]
    assert result_path(tmp_path, "base", load_tasks(["smoke"], 1, 0)[0]).exists()


def test_unknown_method_and_missing_model_name_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError):
        run_quality(QualityConfig(methods=["magic"], out=tmp_path))
    with pytest.raises(ConfigurationError):
        run_quality(QualityConfig(methods=["base"], base_url="http://127.0.0.1:9/v1", out=tmp_path))


# -- the generalisation families ---------------------------------------------------------------------------------------


def test_config_tasks_for_a_split_families_and_ids() -> None:
    from rlm_graph.bench.quality import config_tasks

    tasks = config_tasks(QualityConfig(split="test", families=["judge", "oolong"]))
    assert len(tasks) == 8 and {t.kind for t in tasks} == {"judge", "oolong"} and all(t.id.startswith("test-") for t in tasks)
    (one,) = config_tasks(QualityConfig(split="dev", task_ids=[tasks[0].id.replace("test-", "dev-").replace("s103000", "s3000")]))
    assert one.id == "dev-judge-reviews-list-1500-s3000"
    with pytest.raises(ConfigurationError, match="unknown family"):
        config_tasks(QualityConfig(split="dev", families=["nope"]))
    with pytest.raises(ConfigurationError, match="bad task id"):
        config_tasks(QualityConfig(task_ids=["dev-judge"]))


def test_family_tasks_record_their_split_and_family_and_score(scripted: Any, tmp_path: Path) -> None:
    from rlm_graph.bench.quality import config_tasks
    from rlm_graph.bench.scoreboard import family_scores, format_table, read_records

    cfg = QualityConfig(methods=["base"], split="dev", families=["judge", "oolong"], model="scripted", out=tmp_path)
    golds = {t.query: t.gold for t in config_tasks(cfg)}

    def answer(prompt: str) -> str:  # the gold of the judge tasks, a wrong label for the oolong ones
        query = prompt.rsplit("Question: ", 1)[1].split("\nReply with only the answer.")[0]
        gold = golds[query]
        return "Answer: " + (", ".join(map(str, gold)) if isinstance(gold, list) else str(gold) if "label" not in query else "none")

    srv = scripted([], sub=answer)
    cfg.base_url = srv.base_url
    records = run_quality(cfg, progress=lambda _: None)
    assert len(records) == 8 and len(srv.requests) == 8
    for r in records:
        assert r["split"] == "dev" and r["family"] == r["kind"] and r["generator"] and r["shape"] and r["seed"] < 10_000
    scores = family_scores(read_records(tmp_path, split="dev"))
    fams = scores[("dev", "base")]["families"]
    assert fams["judge"]["score"] == 1.0 and fams["oolong"]["score"] == 0.0 and scores[("dev", "base")]["mean"] == 0.5
    table = format_table(records)
    assert "judge" in table and "1.00 (4)" in table and "0.500" in table
    again = run_quality(QualityConfig(methods=["base"], split="dev", families=["judge", "oolong"], skip_existing=True, out=tmp_path,
                                      model="m", base_url="http://127.0.0.1:9/v1"), progress=lambda _: None)
    assert again == json.loads(json.dumps(records))  # kept results need no server


def test_rlm_runs_a_family_task_end_to_end(scripted: Any, tmp_path: Path) -> None:
    """One family task through rlm-graph against a scripted root that computes the answer in the REPL."""
    from rlm_graph.bench.families import task_from_id

    task = task_from_id("dev-sets-diff_count-records-8k-s4300")
    first, second = task.metadata["first"], task.metadata["second"]
    code = (f"a = {{[v for k, v in r.items() if k != 'list'][0] for r in context if r['list'] == {first!r}}}\n"
            f"b = {{[v for k, v in r.items() if k != 'list'][0] for r in context if r['list'] == {second!r}}}\n"
            "print(len(a - b))")
    srv = scripted([repl(code), repl("FINAL(len(a - b))")])
    cfg = QualityConfig(methods=["rlm"], task_ids=[task.id], model="scripted", base_url=srv.base_url, out=tmp_path)
    (rec,) = run_quality(cfg, progress=lambda _: None)
    assert rec["score"] == 1.0 and str(rec["answer"]) == str(task.gold) and rec["family"] == "sets"
    assert (tmp_path / "rlm" / f"{task.id}.json").exists()


def test_each_task_on_the_embedded_servers_starts_from_a_rewound_prompt_cache(
        scripted: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before each task the embedded servers get their first request again (models.local.rewind), so a
    score does not hang on which task ran before; an endpoint given by URL is never sent it."""
    from rlm_graph.bench import quality

    srv = scripted(_answer_from_context, sub=lambda prompt: "1234567")
    monkeypatch.setattr(quality, "resolve_endpoint", lambda cfg: quality.Endpoint("scripted", srv.base_url, srv.base_url, embedded=True))
    cfg = QualityConfig(methods=["rlm"], tasks=["sniah:8k"], n=2, model="scripted", out=tmp_path / "q")
    records = run_quality(cfg, progress=lambda _: None)
    assert [r["score"] for r in records] == [1.0, 1.0]
    rewinds = [i for i, r in enumerate(srv.requests) if r["prompt"] == "hi" and r["max_tokens"] == 1]
    assert len(rewinds) == 2 and rewinds[0] == 0  # one per task (root and sub share the URL: sent once)
    assert len(srv.requests) == 2 + 2 * 2 and rewinds[1] == 3  # each task's two turns follow its rewind
    monkeypatch.undo()
    before = len(srv.requests)
    run_quality(QualityConfig(methods=["rlm"], tasks=["sniah:8k"], n=1, model="scripted", base_url=srv.base_url, out=tmp_path / "r"),
                progress=lambda _: None)
    assert not any(r["prompt"] == "hi" for r in srv.requests[before:])


def test_rewind_names_a_server_that_does_not_answer() -> None:
    from rlm_graph.errors import ModelError
    from rlm_graph.models import local

    with pytest.raises(ModelError, match="did not answer"):
        local.rewind(["http://127.0.0.1:9/v1"], timeout=2)
