"""The trajectory viewer in real headless Chromium (Debian's ``chromium``, driven by Playwright).

Needs ``pip install playwright`` (no ``playwright install``: the system Chromium is used) and
``apt-get install chromium``; skips with the reason when either is missing. Screenshots go to
``test-artifacts/`` at the repository root.
"""

from __future__ import annotations

import json
import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.graph.state import total_tokens
from rlm_graph.logging import read_trajectory
from tests.conftest import repl

DATA = Path(__file__).parent / "data"
ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync", "--no-first-run"]


def _chromium_path() -> str:
    path = os.environ.get("RLM_GRAPH_CHROMIUM") or shutil.which("chromium") or shutil.which("chromium-browser")
    if path is None:
        pytest.skip("Chromium is not installed (Debian: apt-get install chromium; or set RLM_GRAPH_CHROMIUM)")
    return path


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api", reason="playwright is not installed (pip install playwright)")
    with sync_api.sync_playwright() as p:
        b = p.chromium.launch(executable_path=_chromium_path(), args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture
def page(browser: Any) -> Iterator[Any]:
    page = browser.new_page(viewport={"width": 1300, "height": 1000})
    errors: list[str] = []
    page.on("pageerror", lambda exc: errors.append(str(exc)))
    page.on("console", lambda msg: errors.append(msg.text) if msg.type == "error" else None)
    page.on("request", lambda req: errors.append(f"off-server request {req.url}") if not req.url.startswith(("http://127.0.0.1", "data:", "blob:")) else None)
    yield page
    page.close()
    assert errors == [], errors


def screenshot(page: Any, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    page.evaluate("window.scrollTo(0, 0)")
    path = ARTIFACTS / name
    page.screenshot(path=str(path), full_page=True)
    return path


def stat(page: Any, name: str) -> str:
    return str(page.get_by_test_id(f"stat-{name}").locator(".value").inner_text())


def by_question(scripts: dict[str, list[str]]) -> Any:
    def reply(messages: list[dict[str, Any]]) -> str:
        task = str(messages[1].get("content")) if len(messages) > 1 else ""
        key = next(k for k in scripts if f"Question: {k}" in task)
        turn = sum(1 for m in messages if m.get("role") == "assistant")
        return scripts[key][turn] if turn < len(scripts[key]) else "FINAL(script exhausted)"

    return reply


SCRIPTS = {
    "How many words?": [
        repl("words = context.split()\nprint(len(words), words[:3])", "First I look at the data."),
        repl(
            "# delegate: one helper RLM, two sub-model calls\n"
            "half = rlm_query('Count the words', context=' '.join(words[:4]))\n"
            "checks = llm_query_batched(['Is \"alpha\" a word?', 'Is \"beta\" a word?'])\n"
            "print(half, checks)",
            "Now ask a helper and the sub-model.",
        ),
        "Both agree. FINAL(6)",
    ],
    "Count the words": [repl("n = len(context.split())\nprint(n)"), 'FINAL("4")'],
}


def make_log(rlm_for: Any, tmp_path: Path) -> tuple[Path, Any]:
    rlm, _ = rlm_for(by_question(SCRIPTS), sub=lambda p: "yes", log_dir=tmp_path / "logs")
    result = rlm.completion("alpha beta gamma delta epsilon zeta", "How many words?")
    assert result.answer == "6"
    (path,) = (tmp_path / "logs").glob("*.jsonl")
    return path, result


def test_viewer_shows_a_run_and_its_sub_call_tree(page: Any, serve: Any, rlm_for: Any, tmp_path: Path) -> None:
    path, result = make_log(rlm_for, tmp_path)
    log = read_trajectory(path)
    srv = serve(path.parent)
    page.goto(srv.url)
    page.get_by_test_id("stat-iterations").wait_for()

    # the summary's numbers are the log's
    iterations = log["iterations"]
    assert stat(page, "iterations") == str(len(iterations)) == "3"
    assert stat(page, "code-blocks") == str(sum(len(it["code_blocks"]) for it in iterations))
    assert stat(page, "sub-calls") == str(result.subcalls) == "3"
    assert stat(page, "tokens") == f"{total_tokens(result.usage):,}"
    assert stat(page, "answer") == "6"
    assert page.get_by_test_id("question").inner_text() == "Question: How many words?" or "How many words?" not in json.dumps(iterations[0]["prompt"])
    row = page.locator("[data-testid=models] tr[data-model=scripted] td").all_inner_texts()
    usage = result.usage["scripted"]
    assert row[:4] == ["scripted", str(usage["calls"]), f"{usage['input_tokens']:,}", f"{usage['output_tokens']:,}"]

    # the timeline has one step per iteration, the chart one bar each, with the turn's tokens
    assert page.locator("[data-testid=timeline] button").count() == 3
    bars = page.locator("[data-testid=chart] g.bar")
    assert [int(bars.nth(i).get_attribute("data-tokens")) for i in range(3)] == [it["total_tokens"] for it in iterations]

    # pick iteration 2 (by keyboard), then open the rlm_query call
    page.keyboard.press("ArrowRight")
    assert page.get_by_test_id("iteration-title").inner_text() == "Iteration 2 of 3"
    assert "Now ask a helper" in page.get_by_test_id("response").first.inner_text()
    assert page.locator("#iteration .tok-rlm", has_text="rlm_query").count() >= 1  # highlighted
    calls = page.locator("#iteration details.call")
    assert calls.count() == 3
    rlm_call = page.locator("#iteration details.call[data-kind=rlm]")
    expected_call = iterations[1]["code_blocks"][0]["result"]["rlm_calls"][0]
    assert rlm_call.get_by_test_id("call-tokens").inner_text() == f"{expected_call['prompt_tokens'] + expected_call['completion_tokens']:,} tok"
    assert not rlm_call.get_by_test_id("child-run").is_visible()
    rlm_call.locator(":scope > summary").click()
    child = rlm_call.get_by_test_id("child-run")
    assert child.is_visible()
    assert "Child RLM · depth 1" in child.inner_text() and "2 iterations" in child.inner_text()
    child_iters = child.locator("details.child-iter")
    assert child_iters.count() == len(expected_call["metadata"]["iterations"]) == 2
    child_iters.first.locator(":scope > summary").click()
    if expected_call["metadata"]["run_metadata"].get("partial"):
        assert "replies were not in the run's stream" in child.inner_text()
    else:
        assert "n = len(context.split())" in child_iters.first.get_by_test_id("response").inner_text()
    if expected_call["metadata"]["iterations"][0]["code_blocks"]:
        assert "len(context.split())" in child_iters.first.inner_text()
        assert child_iters.first.get_by_test_id("stdout").inner_text().strip() == "4"
    shot = screenshot(page, "viewer.png")
    assert shot.stat().st_size > 10_000


def test_viewer_opens_a_reference_rlms_log_from_the_file_picker(page: Any, serve: Any, tmp_path: Path) -> None:
    ref = DATA / "rlms_reference.jsonl"
    records = [json.loads(line) for line in ref.read_text().splitlines()]
    iterations = [r for r in records if r["type"] == "iteration"]
    calls = [c for it in iterations for b in it["code_blocks"] for c in b["result"]["rlm_calls"]]
    (child,) = [c for c in calls if c.get("metadata")]

    (tmp_path / "empty").mkdir()
    srv = serve(tmp_path / "empty")
    page.goto(srv.url)
    assert page.get_by_test_id("empty").is_visible()
    page.get_by_test_id("file-input").set_input_files(str(ref))
    page.get_by_test_id("stat-iterations").wait_for()
    assert "reference rlms log" in page.get_by_test_id("source").inner_text()
    assert stat(page, "iterations") == str(len(iterations)) == "3"
    assert stat(page, "sub-calls") == str(len(calls)) == "2"
    assert stat(page, "answer") == iterations[-1]["final_answer"] == "20"
    assert page.get_by_test_id("question").inner_text() == "Question: How many numbers are there?"
    sub_tokens = sum(m["total_input_tokens"] + m["total_output_tokens"] for c in calls for m in c["usage_summary"]["model_usage_summaries"].values())
    assert stat(page, "tokens") == f"{sub_tokens:,}"

    page.locator("[data-testid=timeline] button[data-iter='1']").click()
    rlm_call = page.locator("#iteration details.call[data-kind=rlm]")
    rlm_call.locator(":scope > summary").click()
    child_run = rlm_call.get_by_test_id("child-run")
    assert "Child RLM · depth 1" in child_run.inner_text()
    assert child_run.locator("details.child-iter").count() == len(child["metadata"]["iterations"]) == 2
    child_run.locator("details.child-iter").last.locator(":scope > summary").click()
    assert child_run.get_by_test_id("final").last.inner_text().endswith(child["response"])
    screenshot(page, "viewer-reference.png")


def test_viewer_opens_a_dropped_file(page: Any, serve: Any, tmp_path: Path) -> None:
    (tmp_path / "empty").mkdir()
    srv = serve(tmp_path / "empty")
    page.goto(srv.url)
    text = (DATA / "rlms_reference.jsonl").read_text()
    page.evaluate(
        """(text) => {
            const dt = new DataTransfer();
            dt.items.add(new File([text], "dropped.jsonl", { type: "application/x-ndjson" }));
            document.dispatchEvent(new DragEvent("dragenter", { dataTransfer: dt, bubbles: true }));
            document.dispatchEvent(new DragEvent("drop", { dataTransfer: dt, bubbles: true }));
        }""",
        text,
    )
    page.get_by_test_id("stat-iterations").wait_for()
    assert stat(page, "iterations") == "3"
    assert "dropped.jsonl" in page.get_by_test_id("source").inner_text()
    assert page.locator("#drop").is_hidden()


def test_log_content_is_shown_as_text_never_run(page: Any, serve: Any, tmp_path: Path) -> None:
    hostile = "<img src=x onerror=\"window.__pwned=1\"><script>window.__pwned=2</script>"
    record = {
        "type": "iteration", "iteration": 1, "prompt": [{"role": "user", "content": hostile}], "response": hostile,
        "code_blocks": [{"code": f"print('{hostile}')", "result": {"stdout": hostile, "stderr": hostile, "locals": {hostile: hostile}, "execution_time": 0.1,
                         "rlm_calls": [{"prompt": hostile, "response": hostile, "execution_time": 0.1}]}}],
        "final_answer": hostile, "iteration_time": 1.0,
    }
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "x.jsonl").write_text(json.dumps({"type": "metadata", "root_model": hostile}) + "\n" + json.dumps(record) + "\nnot json\n")
    srv = serve(tmp_path / "logs")
    page.goto(srv.url)
    page.get_by_test_id("stat-iterations").wait_for()
    page.locator("#iteration details.call > summary").click()
    assert page.evaluate("window.__pwned") is None
    assert page.locator("main img, main script").count() == 0
    assert hostile in page.get_by_test_id("response").first.inner_text()
    assert "1 unreadable line(s) skipped" in page.get_by_test_id("source").inner_text()


def test_a_file_that_is_not_a_log_says_so(page: Any, serve: Any, tmp_path: Path) -> None:
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "bad.jsonl").write_text("hello\nworld\n")
    srv = serve(tmp_path / "logs")
    page.goto(srv.url)
    page.get_by_test_id("error").wait_for()
    assert "no trajectory records" in page.get_by_test_id("error").inner_text()


def test_reload_picks_up_turns_a_running_log_has_added(page: Any, serve: Any, tmp_path: Path) -> None:
    def turn(n: int) -> str:
        block = {"code": f"print({n})", "result": {"stdout": f"{n}\n", "stderr": "", "locals": {}, "execution_time": 0.1, "rlm_calls": []}}
        record = {"type": "iteration", "iteration": n, "prompt": [], "response": f"turn {n}", "code_blocks": [block],
                  "final_answer": None, "iteration_time": 1.0, "namespace": [], "usage": {"m": {"calls": 1, "input_tokens": 10 * n, "output_tokens": n}}}
        return json.dumps(record) + "\n"

    (tmp_path / "logs").mkdir()
    log = tmp_path / "logs" / "live.jsonl"
    log.write_text(json.dumps({"type": "metadata", "root_model": "m", "library": "rlm-graph"}) + "\n" + turn(1))
    srv = serve(tmp_path / "logs")
    page.goto(srv.url)
    page.get_by_test_id("stat-iterations").wait_for()
    assert stat(page, "iterations") == "1" and stat(page, "answer") == "—"
    with log.open("a") as f:
        f.write(turn(2))
    page.get_by_test_id("reload").click()
    page.locator("[data-testid=timeline] button[data-iter='1']").wait_for()
    assert stat(page, "iterations") == "2" and stat(page, "tokens") == "33"
    page.locator("[data-testid=timeline] button[data-iter='1']").click()
    assert page.get_by_test_id("iteration-title").inner_text() == "Iteration 2 of 2"


def test_a_whole_trajectory_object_opens_too(page: Any, serve: Any, tmp_path: Path) -> None:
    """The reference also hands a run's trajectory back as one object (``completion.metadata``)."""
    records = [json.loads(line) for line in (DATA / "rlms_reference.jsonl").read_text().splitlines()]
    trajectory = {"run_metadata": records[0], "iterations": records[1:]}
    path = tmp_path / "trajectory.json"
    path.write_text(json.dumps(trajectory, indent=2))
    (tmp_path / "empty").mkdir()
    srv = serve(tmp_path / "empty")
    page.goto(srv.url)
    page.get_by_test_id("file-input").set_input_files(str(path))
    page.get_by_test_id("stat-iterations").wait_for()
    assert stat(page, "iterations") == "3" and stat(page, "answer") == "20"
