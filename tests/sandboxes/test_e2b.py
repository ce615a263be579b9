"""E2BTransport through the real E2B SDK in debug mode (E2B_DEBUG=true), against the local fake envd.

The fake listens on the fixed port 49983 the SDK uses in debug mode: keep every test that needs it
in this module, and never run it in parallel with itself.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rlm_graph.errors import SandboxError, WorkerCrashed
from rlm_graph.sandboxes.e2b import E2BTransport
from rlm_graph.sandboxes.protocol import CellResult
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import check_llm_query_round_trip, session_starter
from tests.sandboxes.fake_e2b import FakeEnvd


@pytest.fixture
def open_session(fake_envd: FakeEnvd, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., SandboxSession]]:
    """Start sessions (SandboxSession options) on the fake envd; the sandbox's work dir is a real
    folder under tmp_path."""
    monkeypatch.setenv("E2B_DEBUG", "true")
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with session_starter(lambda: E2BTransport(work_dir=str(tmp_path / "sandbox"))) as start:
        yield start


def test_trivial_cell(open_session: Callable[..., SandboxSession]) -> None:
    session = open_session()
    assert session.kind == "e2b"
    out = session.step(0, "x = 6 * 7\nx")
    assert isinstance(out, CellResult) and out.stdout == "42\n" and out.vars == {"x": "int"}


def test_context_upload_and_long_lines(open_session: Callable[..., SandboxSession], tmp_path: Path) -> None:
    session = open_session(max_output_chars=50_000)
    path = tmp_path / "big.txt"
    path.write_text("zeile ünïcode €\n" * 20_000, encoding="utf-8")  # uploaded as a stream
    meta = session.load_context(path)
    assert meta["type"] == "str" and meta["lines"] == 20_000
    # One result line of ~60 kB of multi-byte text arrives in many 1000-byte chunks.
    out = session.step(0, "print('€' * 20_000)")
    assert isinstance(out, CellResult) and out.stdout == "€" * 20_000 + "\n"
    out = session.step(1, "context.count('€')")
    assert isinstance(out, CellResult) and out.stdout == "20000\n"


def test_llm_query_round_trip(open_session: Callable[..., SandboxSession]) -> None:
    check_llm_query_round_trip(open_session())


def test_worker_exit_is_reported(open_session: Callable[..., SandboxSession]) -> None:
    session = open_session()
    with pytest.raises(WorkerCrashed, match="exit code 3"):
        session.step(0, "import os\nos._exit(3)")


def test_close_stops_the_worker(open_session: Callable[..., SandboxSession], fake_envd: FakeEnvd) -> None:
    session = open_session()
    transport = session.transport
    assert isinstance(transport, E2BTransport) and transport._handle is not None
    pid = transport._handle.pid
    transport.close()  # a kill, without the session's polite shutdown message
    deadline = time.monotonic() + 10
    while pid in fake_envd.service.procs and time.monotonic() < deadline:
        time.sleep(0.05)
    assert pid not in fake_envd.service.procs
    with pytest.raises(OSError):
        os.kill(pid, 0)


def test_missing_api_key_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.delenv("E2B_API_KEY", raising=False)
    with pytest.raises(SandboxError, match="E2B_API_KEY"):
        E2BTransport()


@pytest.fixture
def through_the_api(fake_envd: FakeEnvd, monkeypatch: pytest.MonkeyPatch) -> FakeEnvd:
    """The SDK outside debug mode: its create and kill requests go to the fake's API routes, and the
    sandbox's envd calls to the fake envd (both on the fake's port)."""
    url = f"http://127.0.0.1:{fake_envd.port}"
    monkeypatch.delenv("E2B_DEBUG", raising=False)
    monkeypatch.setenv("E2B_API_KEY", "e2b_0000000000000000000000000000000000000000")
    monkeypatch.setenv("E2B_API_URL", url)
    monkeypatch.setenv("E2B_SANDBOX_URL", url)
    return fake_envd


def test_the_sandbox_is_a_code_interpreter_from_its_default_template(through_the_api: FakeEnvd, tmp_path: Path) -> None:
    import e2b_code_interpreter

    before = len(through_the_api.api.created)
    session = SandboxSession(lambda: E2BTransport(work_dir=str(tmp_path / "sandbox"), timeout=1800))
    session.start()
    try:
        transport = session.transport
        assert isinstance(transport, E2BTransport) and isinstance(transport._sbx, e2b_code_interpreter.Sandbox)
        (created,) = through_the_api.api.created[before:]
        assert created["templateID"] == e2b_code_interpreter.Sandbox.default_template == "code-interpreter-v1"
        assert created["timeout"] == 1800
        out = session.step(0, "x = 6 * 7\nx")  # the worker runs in the sandbox the API answered with
        assert isinstance(out, CellResult) and out.stdout == "42\n"
    finally:
        session.close()
    assert through_the_api.api.killed[-1] == transport._sbx.sandbox_id == f"fake-sandbox-{before + 1}"


def test_template_overrides_the_code_interpreter_default(through_the_api: FakeEnvd, tmp_path: Path) -> None:
    before = len(through_the_api.api.created)
    transport = E2BTransport("my-team/python-tools", work_dir=str(tmp_path / "sandbox"))
    transport.close()
    (created,) = through_the_api.api.created[before:]
    assert created["templateID"] == "my-team/python-tools"
