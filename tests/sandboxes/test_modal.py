"""ModalTransport through the real Modal SDK, its App.lookup and Sandbox.create replaced by the
local stand-in (fake_modal.py); the contract suite runs it too (``backend`` "modal" in conftest.py)."""

from __future__ import annotations

import gc
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

pytest.importorskip("modal", reason="the Modal SDK is not installed: pip install -e '.[test]'")

import modal  # noqa: E402

from rlm_graph.errors import SandboxError, WorkerCrashed  # noqa: E402
from rlm_graph.sandboxes import transport_factory  # noqa: E402
from rlm_graph.sandboxes.modal import STDIN_CHUNK, ModalTransport, modal_token_configured  # noqa: E402
from rlm_graph.sandboxes.protocol import CellResult, SubRequest  # noqa: E402
from rlm_graph.sandboxes.session import SandboxSession  # noqa: E402
from tests.sandboxes.conftest import check_llm_query_round_trip, modal_stand_in, session_starter  # noqa: E402
from tests.sandboxes.fake_modal import FakeModal  # noqa: E402


@pytest.fixture
def fake(tmp_path: Path) -> Iterator[FakeModal]:
    with modal_stand_in(tmp_path) as stand_in:
        yield stand_in


@pytest.fixture
def open_session(fake: FakeModal, tmp_path: Path) -> Iterator[Callable[..., SandboxSession]]:
    """Start sessions (SandboxSession options) on the stand-in; the sandbox's work dir is a real
    folder under tmp_path."""
    with session_starter(lambda **kw: ModalTransport(work_dir=str(tmp_path / "sandbox"), **kw)) as start:
        yield start


def test_trivial_cell_in_a_sandbox_with_no_network(open_session: Callable[..., SandboxSession], fake: FakeModal) -> None:
    session = open_session()
    assert session.kind == "modal"
    out = session.step(0, "x = 6 * 7\nx")
    assert isinstance(out, CellResult) and out.stdout == "42\n" and out.vars == {"x": "int"}
    (sbx,) = fake.sandboxes
    assert sbx.options["block_network"] is True
    assert sbx.options["app"] is fake.apps["rlm-graph"]
    assert isinstance(sbx.options["image"], modal.Image)  # the SDK's own debian_slim image, by default
    (proc,) = sbx.processes
    assert proc.proc.args[:4] == ["python3", "-s", "-u", "worker.py"]


def test_sandbox_options_reach_modal(fake: FakeModal, tmp_path: Path) -> None:
    transport = ModalTransport(
        "python:3.12-slim", app_name="my-app", timeout=600, cpu=2.0, memory_mb=4096, region="us-east",
        work_dir=str(tmp_path / "w"),
    )
    try:
        opts = fake.sandboxes[-1].options
        assert (opts["timeout"], opts["cpu"], opts["memory"], opts["region"]) == (600, 2.0, 4096, "us-east")
        assert isinstance(opts["image"], modal.Image) and opts["app"] is fake.apps["my-app"]
    finally:
        transport.close()


def test_context_is_uploaded_once_and_long_lines_arrive_whole(
    open_session: Callable[..., SandboxSession], fake: FakeModal, tmp_path: Path
) -> None:
    session = open_session(max_output_chars=50_000)
    path = tmp_path / "big.txt"
    path.write_text("zeile ünïcode €\n" * 20_000, encoding="utf-8")
    meta = session.load_context(path)
    assert meta["type"] == "str" and meta["lines"] == 20_000
    for cell in range(3):  # cells read the sandbox's copy: nothing more goes up
        out = session.step(cell, "context.count('€')")
        assert isinstance(out, CellResult) and out.stdout == "20000\n"
    (sbx,) = fake.sandboxes
    remote = str(tmp_path / "sandbox" / "context.txt")
    assert [u for u in sbx.uploads if u[0] == str(path)] == [(str(path), remote, path.stat().st_size)]
    # A cell can change the sandbox's copy; a second load sends the file again instead of trusting it.
    session.step(3, f"open({remote!r}, 'w').write('tampered')")
    assert session.load_context(path)["lines"] == 20_000
    assert len([u for u in sbx.uploads if u[0] == str(path)]) == 2
    # One result line of ~60 kB of multi-byte text arrives in many 1000-byte chunks.
    out = session.step(4, "print('€' * 20_000)")
    assert isinstance(out, CellResult) and out.stdout == "€" * 20_000 + "\n"


def test_a_long_line_to_the_worker_goes_in_pieces(open_session: Callable[..., SandboxSession], fake: FakeModal) -> None:
    session = open_session()
    code = "a = llm_query('big?')\nprint(len(a), a[:3], a[-3:])"
    req = session.step(0, code)
    assert isinstance(req, SubRequest)
    answer = "abc" + "x" * (20 << 20) + "xyz"  # a 20 MB answer: more than the SDK's 16 MiB stdin buffer
    session.answer(req, [answer])
    out = session.step(0, code)
    assert isinstance(out, CellResult) and out.stdout == f"{len(answer)} abc xyz\n"
    stdin = fake.sandboxes[0].processes[0].stdin
    assert stdin.largest_drain == STDIN_CHUNK < len(answer)


def test_llm_query_round_trip(open_session: Callable[..., SandboxSession]) -> None:
    check_llm_query_round_trip(open_session())


def test_worker_exit_is_reported(open_session: Callable[..., SandboxSession]) -> None:
    session = open_session()
    with pytest.raises(WorkerCrashed, match="exit code 3"):
        session.step(0, "import sys\nprint('dying', file=sys.stderr)\nimport os\nos._exit(3)")


def test_close_terminates_the_sandbox(open_session: Callable[..., SandboxSession], fake: FakeModal) -> None:
    session = open_session()
    transport = session.transport
    assert isinstance(transport, ModalTransport)
    (sbx,) = fake.sandboxes
    (pid,) = sbx.running()
    transport.close()  # a terminate, without the session's polite shutdown message
    transport.close()  # twice is fine
    assert sbx.terminated and sbx.running() == []
    with pytest.raises(OSError):
        os.kill(pid, 0)
    with pytest.raises(WorkerCrashed, match="closed"):
        transport.send("{}")


def test_an_unclosed_transport_is_terminated_when_collected(fake: FakeModal, tmp_path: Path) -> None:
    transport = ModalTransport(work_dir=str(tmp_path / "w"))
    sbx = fake.sandboxes[-1]
    del transport
    deadline = time.monotonic() + 10
    while not sbx.terminated and time.monotonic() < deadline:
        gc.collect()
        time.sleep(0.05)
    assert sbx.terminated


def test_a_failed_create_is_one_clear_error(fake: FakeModal) -> None:
    fake.create_error = modal.exception.AuthError("Token ak-123 is invalid\nsee the docs")
    with pytest.raises(SandboxError, match=r"^could not create the Modal sandbox: Token ak-123 is invalid see the docs$"):
        ModalTransport()


def test_bad_names_are_refused(fake: FakeModal, tmp_path: Path) -> None:
    with pytest.raises(SandboxError, match="absolute path"):
        ModalTransport(work_dir="relative/dir")
    transport = ModalTransport(work_dir=str(tmp_path / "w"))
    try:
        for name in ("../escape", "worker.py", ".."):
            with pytest.raises(SandboxError, match="invalid sandbox file name"):
                transport.put_file(tmp_path, name)
    finally:
        transport.close()


def test_no_token_is_one_line(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_OAUTH_REFRESH_TOKEN", "MODAL_OAUTH_CLIENT_ID", "MODAL_OAUTH_JWT_KEY"):
        monkeypatch.setenv(name, "")  # an empty variable wins over ~/.modal.toml
    monkeypatch.delenv("MODAL_IS_REMOTE", raising=False)
    with pytest.raises(SandboxError) as info:
        transport_factory("modal")()
    assert str(info.value) == (
        "the modal sandbox needs a Modal token: run `modal token new`, or set MODAL_TOKEN_ID and MODAL_TOKEN_SECRET"
    )
    monkeypatch.setenv("MODAL_TOKEN_ID", "ak-1")  # one half of a pair is not a token
    assert not modal_token_configured()
    monkeypatch.setenv("MODAL_TOKEN_SECRET", "as-1")
    assert modal_token_configured()


def test_missing_sdk_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [m for m in sys.modules if m == "modal" or m.startswith("modal.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "modal", None)  # `import modal` raises ImportError
    with pytest.raises(SandboxError, match=r"pip install 'rlm-graph\[modal\]'"):
        ModalTransport()


def test_an_rlm_run_whose_cell_calls_rlm_query(fake: FakeModal, tmp_path: Path, rlm_for: Callable[..., tuple]) -> None:
    """The whole path: RLM(sandbox="modal"), a cell's rlm_query starting a child run in its own sandbox."""
    from rlm_graph.sandboxes import POOL
    from tests.conftest import repl
    from tests.test_recursion_and_limits import by_question

    script = {
        "TOP": [repl("a = rlm_query('CHILD: count the words', context='x y z')\nprint(a)"), "FINAL(a)"],
        "CHILD": [repl("n = len(context.split())\nprint(n)"), "FINAL(n)"],
    }
    rlm, srv = rlm_for(by_question(script), max_depth=2, sandbox="modal", sandbox_options={"work_dir": str(tmp_path / "sbx")})
    result = rlm.completion("the parent's own context", "TOP question")
    assert result.answer == "3"
    assert len(fake.sandboxes) == 2  # the parent's and the child's
    assert all(s.options["block_network"] for s in fake.sandboxes)
    assert [Path(u[1]).name for s in fake.sandboxes for u in s.uploads] == ["worker.py", "context.txt"] * 2
    POOL.close_all()
    assert all(s.terminated and not s.running() for s in fake.sandboxes)


def test_cli_without_a_token_says_so_in_one_line(scripted: Callable[..., object], tmp_path: Path) -> None:
    from tests.test_cli import cli

    srv = scripted(["FINAL('never')"])
    (tmp_path / "ctx.txt").write_text("some text")
    env = {k: "" for k in ("MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_OAUTH_REFRESH_TOKEN", "MODAL_OAUTH_CLIENT_ID", "MODAL_OAUTH_JWT_KEY")}
    out = cli("run", "--context", str(tmp_path / "ctx.txt"), "--query", "q", "--model", "m", "--base-url",
              srv.base_url, "--sandbox", "modal", "--checkpoint", "none", env=env)  # type: ignore[attr-defined]
    assert out.returncode != 0, out
    assert "Traceback" not in out.stderr and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "needs a Modal token" in out.stderr and "MODAL_TOKEN_ID" in out.stderr


def test_a_big_context_asks_modal_for_the_memory_it_needs(tmp_path: Path) -> None:
    from rlm_graph.graph.bindings import Bindings, RunSettings
    from rlm_graph.graph.runtime import _sized_options
    from rlm_graph.graph.settings import RLMContext

    def settings(**options: object) -> RunSettings:
        return RunSettings(RLMContext(sandbox="modal", sandbox_options=dict(options)), Bindings())

    small, big = tmp_path / "small.txt", tmp_path / "big.txt"
    small.write_text("a few words")
    with open(big, "wb") as f:  # sparse: 1 GiB by its size, nothing on disk
        f.truncate(1 << 30)
    assert _sized_options(settings(), small) == {}  # Modal's default request
    assert _sized_options(settings(), big) == {"memory_mb": 2560 + 512}
    assert _sized_options(settings(memory_mb=8192), big) == {"memory_mb": 8192}
