"""ModalTransport against Modal itself: runs only with a Modal token and the internet.

Marked ``live`` (deselected by default): ``pytest -m live tests/sandboxes/test_modal_live.py``.
Without a token it is skipped with a reason that says so. It creates real sandboxes in the app
``rlm-graph-tests`` (billed to the token's workspace, a few seconds each) and terminates them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rlm_graph.sandboxes.protocol import CellResult
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import check_llm_query_round_trip, run, session_starter

pytestmark = pytest.mark.live


@pytest.fixture
def open_session() -> Iterator[Callable[..., SandboxSession]]:
    pytest.importorskip("modal", reason="the Modal SDK is not installed: pip install 'rlm-graph[modal]'")
    from rlm_graph.sandboxes.modal import ModalTransport, modal_token_configured

    if not modal_token_configured():
        pytest.skip(
            "no Modal token configured (MODAL_TOKEN_ID and MODAL_TOKEN_SECRET, or `modal token new`): "
            "the live Modal test did not run"
        )
    with session_starter(lambda **kw: ModalTransport(app_name="rlm-graph-tests", timeout=600, **kw), startup_timeout=300) as start:
        yield start


def test_the_worker_in_a_real_modal_sandbox(open_session: Callable[..., SandboxSession], tmp_path: Path) -> None:
    session = open_session(cell_timeout=60)
    assert session.kind == "modal"
    path = tmp_path / "ctx.txt"
    path.write_text("zeile ünïcode €\n" * 50_000, encoding="utf-8")
    meta = session.load_context(path, "text")
    assert meta["type"] == "str" and meta["lines"] == 50_000
    assert run(session, 0, "context.count('€')").stdout == "50000\n"
    check_llm_query_round_trip(session)
    # block_network: not even a name resolves.
    out = run(session, 1, "import socket\ntry:\n    socket.getaddrinfo('example.com', 443)\n    print('resolved')\nexcept OSError as e:\n    print('blocked')")
    assert out.stdout == "blocked\n"


def test_a_long_output_line_and_a_crash(open_session: Callable[..., SandboxSession]) -> None:
    from rlm_graph.errors import WorkerCrashed

    session = open_session(max_output_chars=50_000)
    out = session.step(0, "print('€' * 20_000)")
    assert isinstance(out, CellResult) and out.stdout == "€" * 20_000 + "\n"
    with pytest.raises(WorkerCrashed, match="exit code 3"):
        session.step(1, "import os\nos._exit(3)")
