"""The run manifest's pure parts: comparing options, applying changes, identities, versions."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.errors import ContextError
from rlm_graph.graph import manifest, prompts
from rlm_graph.graph.settings import Limits


def _manifest(**over: Any) -> dict[str, Any]:
    base = {
        "version": 1,
        **manifest.software(),
        "settings": {"model": "m", "base_url": "http://a/v1", "sub_model": None, "sub_base_url": None, "model_label": None,
                     "sub_model_label": None, "sandbox": "local", "sandbox_options": {"isolation": "none", "memory_mb": 2048},
                     "reply_tokens": 1024, "grounding_guard": True, "answer_check": False, "approve_code": False,
                     "prices": {"m": [1.0, 2.0]}},
        "limits": Limits(max_iterations=5).as_dict(),
        "per_run_limits": {},
        "models": {"root": {"label": "m", "object": None}, "sub": {"label": "m", "object": None}},
        "tools": [],
        "context": {"path": "/nowhere/c.txt", "size": 3, "sha256": "0" * 64, "format": "text"},
        "changes": [],
    }
    return {**base, **over}


def test_only_given_options_that_differ_are_changes() -> None:
    m = _manifest()
    given = manifest.requested_names({"model": "m", "base_url": None, "sandbox_options": {"isolation": "none"},
                                      "prices": {"m": (1.0, 2.0)}, "max_iterations": 5, "api_key": "k", "verbose": True})
    assert manifest.differences(m, given) == []  # tuples read back as lists; one sandbox option at a time; keys ignored
    changes = manifest.differences(m, manifest.requested_names({"max_iterations": 9, "model": "n", "sandbox_options": {"memory_mb": 1}}))
    assert [c.describe() for c in changes] == ["model 'm' -> 'n'", "sandbox_options.memory_mb 2048 -> 1", "max_iterations 5 -> 9"]
    line = manifest.refusal("t", changes)
    assert "\n" not in line and "(model 'm' -> 'n'; sandbox_options.memory_mb 2048 -> 1; max_iterations 5 -> 9; recorded -> given)" in line


def test_a_limit_the_runs_input_replaced_is_not_a_change_at_the_rlms_own_value() -> None:
    m = _manifest(per_run_limits={"max_iterations": [30, 5]})
    assert manifest.differences(m, {"max_iterations": 30}) == []
    assert [c.describe() for c in manifest.differences(m, {"max_iterations": 7})] == ["max_iterations 5 -> 7"]


def test_apply_records_the_change_and_settings_follow_it() -> None:
    m = _manifest(per_run_limits={"max_iterations": [30, 5]})
    changes = manifest.differences(m, {"model": "n", "max_iterations": 8})
    new = manifest.apply(m, changes, how="resume", iteration=4)
    assert m["changes"] == [] and m["settings"]["model"] == "m"  # a copy
    assert new["settings"]["model"] == "n" and new["limits"]["max_iterations"] == 8 and new["per_run_limits"] == {}
    assert new["models"]["root"] == {"label": None, "object": None}
    entry = new["changes"][0]
    assert (entry["how"], entry["iteration"], entry["changed"]) == ("resume", 4, {"model": ["m", "n"], "max_iterations": [5, 8]})
    ctx = manifest.settings_of(new, work_dir="/w")
    assert (ctx.model, ctx.base_url, ctx.limits.max_iterations, ctx.work_dir) == ("n", "http://a/v1", 8, "/w")
    assert ctx.sandbox_options == {"isolation": "none", "memory_mb": 2048}


def test_objects_and_tools_that_a_checkpoint_cannot_hold_must_be_given_again() -> None:
    m = _manifest(models={"root": {"label": "gpt", "object": "ChatOpenAI"}, "sub": {"label": "gpt", "object": None}}, tools=["look"])
    assert "chat model object (ChatOpenAI 'gpt')" in (manifest.missing_object("t", m, {}) or "")
    assert "started with tools (look)" in (manifest.missing_object("t", m, {"model": object()}) or "")
    assert manifest.missing_object("t", m, {"model": object(), "tools": ["look"]}) is None


def test_context_identity_and_a_moved_file(tmp_path: Path) -> None:
    data = tmp_path / "c.txt"
    data.write_bytes(b"abc" * 1_000_000)
    ident = manifest.file_identity(data)
    assert ident == {"path": str(data), "size": 3_000_000, "sha256": hashlib.sha256(data.read_bytes()).hexdigest()}
    m = _manifest(context={**ident, "format": "text"})
    assert manifest.check_context("t", m, None) is None
    copy = tmp_path / "copy.txt"
    copy.write_bytes(data.read_bytes())
    assert manifest.check_context("t", m, copy) == str(copy)
    assert manifest.check_context("t", m, data) is None  # the same place: not a move
    copy.write_bytes(b"abd" * 1_000_000)  # same size, other bytes
    with pytest.raises(ContextError, match="is not the context of run 't'"):
        manifest.check_context("t", m, copy)
    data.unlink()
    with pytest.raises(ContextError, match="which is not there"):
        manifest.check_context("t", m, None)


def test_software_notes_name_what_changed(monkeypatch: pytest.MonkeyPatch) -> None:
    m = _manifest()
    assert manifest.software_notes("t", m) == []
    before = manifest.prompts_digest()
    monkeypatch.setattr(prompts, "USER_NOTE", prompts.USER_NOTE + " (edited)")
    assert manifest.prompts_digest() != before
    notes = manifest.software_notes("t", {**m, "rlm_graph": "0.0.1"})
    assert notes[0].startswith("run 't' was started with rlm-graph 0.0.1, this is ") and any("the prompts" in n for n in notes)
