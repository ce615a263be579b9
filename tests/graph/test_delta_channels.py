"""The growing channels (messages, cells, answers) as delta channels: storage that grows linearly,
and the checkpoint features that rebuild them from saved writes: history, forks from an older
checkpoint (by ``invoke`` and by ``update_state``), and the Postgres saver."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from rlm_graph import RLM
from tests.conftest import repl
from tests.durable.test_kill_resume import _postgres_url, forget_threads

#: A cell whose output is 1,000 characters that differ from turn to turn.
WIDE = "print(''.join(chr(97 + (i * 7 + {t}) % 26) for i in range(1000)))"


def _loop(n: int) -> Any:
    """``n`` turns of wide cells, then a FINAL."""

    def root(messages: list[dict[str, Any]]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        return repl(WIDE.format(t=turn)) if turn < n else repl("result = 'done'\nFINAL(result)")

    return root


def _stored_bytes(path: Path) -> int:
    con = sqlite3.connect(path)
    try:
        (ck,) = con.execute("select sum(length(checkpoint) + length(metadata)) from checkpoints").fetchone()
        (wr,) = con.execute("select sum(length(value)) from writes").fetchone()
        return int(ck) + int(wr)
    finally:
        con.close()


def test_checkpoint_storage_grows_linearly(scripted: Any, tmp_path: Path) -> None:
    """Four times the turns store at most 5x the bytes (whole channels at every step stored ~11x)."""
    sizes = {}
    for n in (8, 32):
        srv = scripted(_loop(n))
        path = tmp_path / f"ck{n}.sqlite"
        rlm = RLM("scripted", base_url=srv.base_url, checkpointer=path, max_retries=0, max_iterations=n + 5)
        result = rlm.completion("ctx", "q", thread_id="t")
        assert result.answer == "done" and result.cells == n + 1
        state = rlm.graph.get_state({"configurable": {"thread_id": "t"}}).values
        assert len(state["cells"]) == n + 1 and len(state["messages"]) == 2 * (n + 1)
        assert all(isinstance(m, dict) and set(m) == {"role", "content"} for m in state["messages"])
        sizes[n] = _stored_bytes(path)
    assert sizes[32] <= 5 * sizes[8], sizes


@pytest.fixture(params=["sqlite", "postgres"])
def checkpoint(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A SQLite file, then the Postgres server (skipped when none is reachable)."""
    if request.param == "sqlite":
        yield str(tmp_path / "cp.sqlite")
        return
    url = _postgres_url()
    if url is None:
        pytest.skip("no PostgreSQL server reachable at 127.0.0.1:5432 (set RLM_GRAPH_TEST_POSTGRES)")
    forget_threads(url, "delta-%")
    yield url
    forget_threads(url, "delta-%")


def _forkable_script() -> tuple[Any, list[int]]:
    """x0, x1, x2 in three cells, then the sum; turn 2 asked a second time (on a fork) sets x2 = 100."""
    asked: list[int] = []

    def root(messages: list[dict[str, Any]]) -> str:
        turn = sum(1 for m in messages if m["role"] == "assistant")
        asked.append(turn)
        if turn < 3:
            value = 100 if turn == 2 and asked.count(2) > 1 else turn + 1
            return repl(f"x{turn} = {value}\nprint(x{turn})")
        return repl("total = x0 + x1 + x2\nprint(total)\nFINAL(total)")

    return root, asked


def _after_cells(rlm: RLM, thread: str, n: int) -> Any:
    """The checkpoint where ``n`` cells are done and the next turn is to be asked."""
    for snap in rlm.graph.get_state_history({"configurable": {"thread_id": thread}}):
        if snap.next == ("generate",) and len(snap.values.get("cells") or []) == n:
            return snap
    raise AssertionError(f"no checkpoint with {n} cells before generate")


def test_history_and_fork_from_an_older_checkpoint(scripted: Any, checkpoint: str) -> None:
    root, _ = _forkable_script()
    srv = scripted(root)
    rlm = RLM("scripted", base_url=srv.base_url, checkpointer=checkpoint, max_retries=0)
    assert rlm.completion("ctx", "q", thread_id="delta-fork").answer == "6"
    config = {"configurable": {"thread_id": "delta-fork"}}
    history = list(rlm.graph.get_state_history(config))
    # every checkpoint rebuilds its own prefix of the growing channels
    counts = [len(s.values.get("cells") or []) for s in history]
    assert counts == sorted(counts, reverse=True) and counts[0] == 4 and counts[-1] == 0
    assert all(len(s.values.get("messages") or []) >= len(s.values.get("cells") or []) for s in history)

    old = _after_cells(rlm, "delta-fork", 2)
    assert [c["stdout"] for c in old.values["cells"]] == ["1\n", "2\n"]
    calls = len(srv.requests)
    out = rlm.graph.invoke(None, old.config, context=rlm.settings)
    # the fork ran turn 2 again (x2 = 100) in a sandbox rebuilt by replay of the first two cells
    assert out["final_answer"] == "103" and [c["stdout"].split()[0] for c in out["cells"]] == ["1", "2", "100", "103"]
    assert len(srv.requests) == calls + 2  # two new turns; the replay repeated no call
    # the original branch is still there, whole
    original = rlm.graph.get_state(history[0].config).values
    assert original["final_answer"] == "6" and len(original["cells"]) == 4 and len(original["messages"]) == 8
    latest = rlm.graph.get_state(config).values
    assert latest["final_answer"] == "103" and len(latest["messages"]) == 8


def test_update_state_on_an_older_checkpoint_forks_with_the_edit(scripted: Any, checkpoint: str) -> None:
    root, _ = _forkable_script()
    srv = scripted(root)
    rlm = RLM("scripted", base_url=srv.base_url, checkpointer=checkpoint, max_retries=0)
    assert rlm.completion("ctx", "q", thread_id="delta-edit").answer == "6"
    old = _after_cells(rlm, "delta-edit", 1)
    hint = {"role": "user", "content": "HINT: x1 should be large."}
    forked = rlm.graph.update_state(old.config, {"messages": (hint,)}, as_node="check_final")
    values = rlm.graph.get_state(forked).values
    assert len(values["cells"]) == 1 and values["messages"][-1] == hint and len(values["messages"]) == 3
    out = rlm.graph.invoke(None, forked, context=rlm.settings)
    assert out["final_answer"] == "103" and len(out["cells"]) == 4  # turn 2 asked again: x2 = 100
    seen = srv.root_requests()[-3]["conversation"]  # the first turn after the edit saw the hint ...
    assert "HINT: x1 should be large." in seen and "x2" not in seen  # ... and nothing of the abandoned branch
    final = rlm.graph.get_state({"configurable": {"thread_id": "delta-edit"}}).values
    assert sum(1 for m in final["messages"] if m == hint) == 1 and len(final["messages"]) == 9


def test_nodes_write_turns_as_plain_dicts(scripted: Any, tmp_path: Path) -> None:
    """A message-shaped dict written in a list would reach the loggers as a LangChain message."""
    srv = scripted([repl("x = 1\nprint(x)\nprint(y)"), "no code here", repl("FINAL(x)")])
    rlm = RLM("scripted", base_url=srv.base_url, checkpointer=tmp_path / "cp.sqlite", max_retries=0)
    written = [m for ev in rlm.stream("ctx", "q") for m in (ev["update"] or {}).get("messages") or () if ev["node"] != "__values__"]
    assert len(written) >= 4 and all(type(m) is dict and set(m) == {"role", "content"} for m in written), written
