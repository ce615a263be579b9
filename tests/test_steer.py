"""Steering saved runs from Python: follow-up questions, fork and rewind, history, the manifest."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM, ConfigurationError, RunNotFoundError
from tests.conftest import repl

FIRST = [repl("words = context.split()\nn = len(words)\nprint(n)"), "FINAL(n)"]


def _turn(messages: list[dict[str, Any]]) -> int:
    return sum(m["role"] == "assistant" for m in messages)


def test_a_follow_up_answers_the_new_question_with_the_old_variables(scripted: Any, tmp_path: Path) -> None:
    # The follow-up's first reply is prose: before, the old stop state ended the run at once
    # with the previous answer. Each question also gets max_iterations turns of its own.
    script = [*FIRST, "I will look at the words again.", repl("second = words[1]\nprint(second)"), "FINAL(second)"]
    srv = scripted(lambda m: script[_turn(m)])
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0, max_iterations=3)
    first = rlm.completion("alpha beta gamma", "How many words?", thread_id="talk")
    assert first.answer == "3"
    second = rlm.completion(query="What is the second word?", thread_id="talk")
    assert second.answer == "beta" and second.stopped_by == "final"
    assert second.iterations == 5 and second.cells == 4
    roots = srv.root_requests()
    assert len(roots) == 5  # the first question's two turns were not asked again
    follow = roots[2]["conversation"]
    assert "Question: How many words?" in follow and "New question: What is the second word?" in follow
    assert "no code to run" in roots[3]["prompt"]  # the prose reply was answered with a note, not the old FINAL
    values = rlm.graph.get_state({"configurable": {"thread_id": "talk"}}).values
    assert [(t["query"], t.get("answer")) for t in values["tasks"]] == [("How many words?", "3"), ("What is the second word?", None)]


def test_ask_is_refused_on_an_unfinished_or_unknown_thread(scripted: Any) -> None:
    broken = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        if _turn(messages) == 1 and broken["on"]:
            return {"status": 503, "body": {"error": {"message": "overloaded"}}}
        return FIRST[_turn(messages)]

    srv = scripted(root)
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0)
    with pytest.raises(Exception):
        rlm.completion("alpha beta", "q", thread_id="half")
    with pytest.raises(ConfigurationError, match="has not finished.*rlm-graph resume half"):
        rlm.ask("half", "another?")
    with pytest.raises(RunNotFoundError):
        rlm.ask("nobody", "another?")
    broken["on"] = False
    assert rlm.resume("half").answer == "2"
    with pytest.raises(ConfigurationError, match="already has its context"):
        rlm.completion("other text", "another?", thread_id="half")
    with pytest.raises(ConfigurationError, match="give a new one"):
        rlm.completion(thread_id="half")


FOUR = [
    repl("words = context.split()\nprint(len(words))"),
    repl("label = llm_query('name this: ' + words[0])\nprint(label)"),
    repl("result = label + ':' + str(len(words))\nprint(result)"),
    "FINAL(result)",
]


@pytest.fixture
def four(scripted: Any) -> tuple[RLM, Any]:
    """A finished 4-iteration run on thread 'orig' whose cell 2 made a sub-call."""
    srv = scripted(lambda m: FOUR[min(_turn(m), 3)], sub=lambda p: "LABEL-" + p.split()[-1])
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0)
    result = rlm.completion("alpha beta gamma", "Label and count", thread_id="orig")
    assert result.answer == "LABEL-alpha:3" and result.iterations == 4
    assert len(srv.root_requests()) == 4 and len(srv.sub_requests()) == 1
    return rlm, srv


def test_fork_at_iteration_3_asks_only_iterations_3_and_4_again(four: tuple[RLM, Any]) -> None:
    rlm, srv = four
    original = rlm.graph.get_state({"configurable": {"thread_id": "orig"}})
    forked = rlm.fork("orig", at=3, thread_id="branch")
    assert forked.thread_id == "branch" and forked.answer == "LABEL-alpha:3"  # cell 1-2 variables, rebuilt by replay
    roots = srv.root_requests()
    assert [r["turn"] for r in roots[4:]] == [2, 3]  # only iterations 3 and 4 were asked again
    assert len(srv.sub_requests()) == 1  # cell 2's sub-call was served from the record
    assert forked.iterations == 4 and forked.stopped_by == "final"
    after = rlm.graph.get_state({"configurable": {"thread_id": "orig"}})
    assert after.config == original.config and after.values == original.values  # the original is untouched
    assert forked.run_id != after.values["run_id"]


def test_fork_with_code_and_a_note(four: tuple[RLM, Any]) -> None:
    rlm, srv = four
    forked = rlm.fork("orig", at=3, code="result = label.lower() + '!' + words[2]\nprint(result)", note="lower case please")
    assert forked.answer == "label-alpha!gamma"
    roots = srv.root_requests()
    assert [r["turn"] for r in roots[4:]] == [3]  # iteration 3 was the given code: no model call
    assert "A note from the user: lower case please" in roots[4]["conversation"]
    assert len(srv.sub_requests()) == 1


def test_fork_errors_are_one_clear_line(four: tuple[RLM, Any]) -> None:
    rlm, _ = four
    with pytest.raises(ConfigurationError, match=r"run 'orig' has no iteration 9 to fork at \(its iterations: 1 to 4\)"):
        rlm.fork("orig", at=9)
    with pytest.raises(ConfigurationError, match="already exists"):
        rlm.fork("orig", at=2, thread_id="orig")
    with pytest.raises(RunNotFoundError):
        rlm.fork("nobody", at=1)


def test_history_lists_iterations_with_cells_time_and_tokens(four: tuple[RLM, Any]) -> None:
    rlm, srv = four
    rows = rlm.history("orig")
    assert [r.iteration for r in rows] == [1, 2, 3, 4]
    assert [r.cells for r in rows] == [[0], [1], [2], [3]]
    assert rows[1].code == "label = llm_query('name this: ' + words[0])"
    assert rows[3].reply == "FINAL(result)"
    assert all(r.seconds is not None and r.seconds >= 0 and r.started for r in rows)
    sent = sum(r["usage"]["total_tokens"] for r in srv.requests)
    assert sum(r.tokens for r in rows) == sent  # every token the server counted, in some iteration
    per_turn = [r["usage"]["total_tokens"] for r in srv.root_requests()]
    assert [r.tokens for r in rows] == [per_turn[0], per_turn[1] + srv.sub_requests()[0]["usage"]["total_tokens"], per_turn[2], per_turn[3]]


# -- the manifest: resume as recorded, changes refused or allowed and recorded --------------------

THREE = [repl("words = context.split()\nprint(len(words))"), repl("first = words[0]\nprint(first)"), "FINAL(first)"]


def _failing_at_turn_1(srv_script: list[str]) -> tuple[Any, dict[str, bool]]:
    broken = {"on": True}

    def root(messages: list[dict[str, Any]]) -> Any:
        if _turn(messages) == 1 and broken["on"]:
            return {"status": 503, "body": {"error": {"message": "overloaded"}}}
        return srv_script[min(_turn(messages), len(srv_script) - 1)]

    return root, broken


def _state(thread_id: str) -> dict[str, Any]:
    return RLM(checkpointer=None).graph.get_state({"configurable": {"thread_id": thread_id}}).values


def test_the_manifest_records_what_the_run_is_and_never_a_key(scripted: Any, tmp_path: Path) -> None:
    import hashlib

    from rlm_graph import __version__
    from rlm_graph.sandboxes.protocol import PROTOCOL_VERSION

    data = tmp_path / "c.txt"
    data.write_text("alpha beta gamma\n")
    srv = scripted(THREE)
    secret = "sk-never-stored-4f7a9c"
    rlm = RLM("scripted", base_url=srv.base_url, api_key=secret, max_iterations=7, max_subcalls=40,
              sandbox_options={"isolation": "none"}, grounding_guard=False)
    assert rlm.completion(str(data), "first word?", thread_id="m1").answer == "alpha"
    m = _state("m1")["manifest"]
    assert m["settings"]["model"] == "scripted" and m["settings"]["base_url"] == srv.base_url
    assert m["settings"]["sub_model"] is None and m["settings"]["sandbox"] == "local"
    assert m["settings"]["sandbox_options"] == {"isolation": "none"} and m["settings"]["grounding_guard"] is False
    assert m["limits"]["max_iterations"] == 7 and m["limits"]["max_subcalls"] == 40
    assert m["models"]["root"] == {"label": "scripted", "object": None} and m["models"]["sub"]["label"] == "scripted"
    body = data.read_bytes()
    assert m["context"] == {"path": str(data.resolve()), "size": len(body), "sha256": hashlib.sha256(body).hexdigest(), "format": "text"}
    assert m["rlm_graph"] == __version__ and m["protocol"] == PROTOCOL_VERSION
    assert len(m["prompts_sha256"]) == 64 and len(m["worker_sha256"]) == 64 and m["changes"] == []
    stored = b"".join(p.read_bytes() for p in (tmp_path / ".rlm").glob("checkpoints.sqlite*"))
    assert b"isolation" in stored and secret.encode() not in stored  # the manifest is in there; the key is not


def test_resume_with_no_options_carries_on_as_recorded(scripted: Any) -> None:
    # The reported bug: a run started on a server, resumed with nothing given, tried the default model.
    root, broken = _failing_at_turn_1(THREE)
    srv = scripted(root)
    with pytest.raises(Exception):
        RLM("scripted", base_url=srv.base_url, max_retries=0, max_iterations=5).completion("alpha beta", "first?", thread_id="r1")
    broken["on"] = False
    result = RLM().resume("r1")
    assert result.answer == "alpha" and result.stopped_by == "final" and result.limits["max_iterations"] == 5
    assert [r["turn"] for r in srv.root_requests() if r["status"] == 200] == [0, 1, 2]  # turn 0 was not asked again
    assert {r["model"] for r in srv.requests} == {"scripted"}


def test_resume_with_a_different_model_is_refused_then_allowed_and_recorded(scripted: Any) -> None:
    root, _ = _failing_at_turn_1(THREE)
    first = scripted(root)
    other = scripted(lambda m: THREE[min(_turn(m), 2)])
    with pytest.raises(Exception):
        RLM("scripted", base_url=first.base_url, max_retries=0).completion("alpha beta", "first?", thread_id="r2")
    switched = RLM("other", base_url=other.base_url, max_iterations=9)
    with pytest.raises(ConfigurationError) as refused:
        switched.resume("r2")
    line = str(refused.value)
    assert "\n" not in line and "--allow-change" in line
    assert f"model 'scripted' -> 'other'; base_url {first.base_url!r} -> {other.base_url!r}; max_iterations 30 -> 9" in line
    assert other.requests == []  # refused before any call
    result = switched.resume("r2", allow_change=True)
    assert result.answer == "alpha" and result.limits["max_iterations"] == 9
    assert [r["turn"] for r in other.root_requests()] == [1, 2] and {r["model"] for r in other.requests} == {"other"}
    changes = _state("r2")["manifest"]["changes"]
    assert [(c["how"], c["iteration"], c["changed"]) for c in changes] == [
        ("resume", 1, {"model": ["scripted", "other"], "base_url": [first.base_url, other.base_url], "max_iterations": [30, 9]})
    ]
    assert _state("r2")["manifest"]["settings"]["model"] == "other"


def _limited_script(messages: list[dict[str, Any]]) -> str:
    last = str(messages[-1].get("content"))
    if "You have no more" in last:
        return "FINAL(forced guess)"
    cells = sum(1 for m in messages if m["role"] == "assistant" and "```repl" in str(m["content"]))
    script = [repl("words = context.split()\nprint(len(words))"), repl("second = words[1]\nprint(second)"), repl("third = words[2]\nprint(third)"), "FINAL(third)"]
    return script[min(cells, 3)]


def test_raising_a_limit_lets_a_stopped_run_go_on(scripted: Any) -> None:
    srv = scripted(_limited_script)
    stopped = RLM("scripted", base_url=srv.base_url, max_iterations=2).completion("alpha beta gamma", "third word?", thread_id="s1")
    assert stopped.stopped_by == "max_iterations" and stopped.answer == "forced guess"
    calls = len(srv.requests)
    assert RLM().resume("s1").answer == "forced guess" and len(srv.requests) == calls  # nothing given: the result stands
    with pytest.raises(ConfigurationError, match=r"\(max_iterations 2 -> 4; recorded -> given\): add --allow-change"):
        RLM(max_iterations=4).resume("s1")
    with pytest.raises(ConfigurationError, match=r"stopped by max_iterations \(2 iterations taken\).*raise max_iterations further"):
        RLM(max_iterations=1).resume("s1", allow_change=True)
    assert len(srv.requests) == calls
    result = RLM(max_iterations=4).resume("s1", allow_change=True)
    assert result.answer == "gamma" and result.stopped_by == "final" and result.iterations == 4
    resumed = srv.root_requests()[3:]
    assert len(resumed) == 2 and "more room (max_iterations 2 -> 4)" in resumed[0]["conversation"]
    assert len(srv.sub_requests()) == 0
    values = _state("s1")
    assert values["limits"]["max_iterations"] == 4 and values["manifest"]["changes"][0]["changed"] == {"max_iterations": [2, 4]}
    assert [r.iteration for r in RLM().history("s1")] == [1, 2, 3, 4]


def test_a_moved_context_is_accepted_only_with_the_same_sha256(scripted: Any, tmp_path: Path) -> None:
    from rlm_graph import ContextError

    data = tmp_path / "c.txt"
    data.write_text("alpha beta gamma")
    root, broken = _failing_at_turn_1(THREE)
    srv = scripted(root)
    with pytest.raises(Exception):
        RLM("scripted", base_url=srv.base_url, max_retries=0).completion(str(data), "first?", thread_id="c1")
    broken["on"] = False
    (tmp_path / "elsewhere").mkdir()
    moved = data.rename(tmp_path / "elsewhere" / "copy.txt")
    with pytest.raises(ContextError, match=r"c\.txt, which is not there; give its new place with --context NEWPATH"):
        RLM().resume("c1")
    (tmp_path / "other.txt").write_text("alpha beta delta")
    with pytest.raises(ContextError, match=r"other\.txt is not the context of run 'c1': its SHA-256 is"):
        RLM().resume("c1", context=str(tmp_path / "other.txt"))
    data.write_text("alpha beta gamma!")  # a file at the old place, but not the same one
    with pytest.raises(ContextError, match="has changed since the run started"):
        RLM().resume("c1")
    assert len(srv.root_requests()) == 2
    result = RLM().resume("c1", context=str(moved))
    assert result.answer == "alpha"
    values = _state("c1")
    assert values["context_path"] == str(moved) and values["manifest"]["context"]["path"] == str(moved)
    assert values["manifest"]["changes"][0]["context"] == [str(data), str(moved)]


def test_fork_and_follow_up_with_no_options_use_the_manifest(four: tuple[RLM, Any]) -> None:
    _, srv = four
    forked = RLM().fork("orig", at=3, thread_id="b2")
    assert forked.answer == "LABEL-alpha:3" and len(srv.sub_requests()) == 1
    entry = _state("b2")["manifest"]["changes"][-1]
    assert (entry["how"], entry["source"], entry["fork_at"], entry["changed"]) == ("fork", "orig", 3, {})
    with pytest.raises(ConfigurationError, match=r"model 'scripted' -> 'else'"):
        RLM("else", base_url=srv.base_url).fork("orig", at=2)
    asked = RLM().ask("orig", "count again?")
    assert asked.stopped_by is not None and {r["model"] for r in srv.requests} == {"scripted"}


def test_a_run_started_with_a_model_object_needs_it_again(scripted: Any) -> None:
    from langchain_openai import ChatOpenAI

    srv = scripted(lambda m: (THREE + ["FINAL(again)"])[min(_turn(m), 3)])
    model = ChatOpenAI(model="obj", base_url=srv.base_url, api_key="none", max_retries=0)  # type: ignore[arg-type]
    assert RLM(model).completion("alpha beta", "first?", thread_id="o1").answer == "alpha"
    assert _state("o1")["manifest"]["models"]["root"] == {"label": "obj", "object": "ChatOpenAI"}
    with pytest.raises(ConfigurationError, match=r"chat model object \(ChatOpenAI 'obj'\).*pass it again"):
        RLM().ask("o1", "again?")
    assert RLM(model).ask("o1", "again?").answer == "again"


def test_the_rlm_that_gave_a_run_its_own_limits_resumes_it_without_a_change(scripted: Any) -> None:
    # completion(limits=...) (a served request's limits) replaces the RLM's own for one run; the
    # same RLM, options unchanged, carries the run on with the run's limits.
    root, broken = _failing_at_turn_1(THREE)
    srv = scripted(root)
    rlm = RLM("scripted", base_url=srv.base_url, max_retries=0, max_iterations=20)
    with pytest.raises(Exception):
        rlm.completion("alpha beta", "first?", thread_id="p1", limits={"max_iterations": 3})
    broken["on"] = False
    result = rlm.resume("p1")
    assert result.answer == "alpha" and result.limits["max_iterations"] == 3
    assert _state("p1")["manifest"]["changes"] == []
    with pytest.raises(ConfigurationError, match=r"max_iterations 3 -> 25"):
        RLM(max_iterations=25).ask("p1", "again?")


def test_a_run_with_tools_needs_the_same_tools_again(scripted: Any) -> None:
    def shout(text: str) -> str:
        """Upper-case a text."""
        return text.upper()

    script = [repl("loud = shout(context)\nprint(loud)"), "FINAL(loud)", repl("print(loud.lower())"), "FINAL(done)"]
    srv = scripted(lambda m: script[min(_turn(m), 3)])
    assert RLM("scripted", base_url=srv.base_url, tools={"shout": shout}).completion("hey", "shout it", thread_id="t1").answer == "HEY"
    assert _state("t1")["manifest"]["tools"] == ["shout"]
    with pytest.raises(ConfigurationError, match=r"started with tools \(shout\): give the same again, --tools MODULE:ATTR"):
        RLM().ask("t1", "and quietly?")
    with pytest.raises(ConfigurationError, match=r'tools \["shout"\] -> \["whisper"\]'):
        RLM(tools={"whisper": shout}).ask("t1", "and quietly?")
    assert RLM(tools={"shout": shout}).ask("t1", "and quietly?").answer == "done"


def test_a_run_killed_before_its_first_step_resumes_as_it_began(scripted: Any) -> None:
    # The input checkpoint is all a run killed in its first moment leaves: it holds the manifest too.
    srv = scripted(THREE)
    rlm = RLM("scripted", base_url=srv.base_url, max_iterations=4)
    config = {"configurable": {"thread_id": "k0"}}
    rlm.graph.invoke(rlm._with_manifest(rlm._input("alpha beta", "first?", "k0")), config, interrupt_before=["prepare"])
    saved = rlm.graph.get_state(config)
    assert saved.next == ("prepare",) and saved.values["manifest"]["settings"]["model"] == "scripted"
    assert srv.requests == []
    result = RLM().resume("k0")
    assert result.answer == "alpha" and result.limits["max_iterations"] == 4
    assert _state("k0")["manifest"]["context"]["size"] == len("alpha beta")  # prepare completed it
