"""Fixtures shared by the sandbox tests: a Docker engine, the fake envd, the Modal stand-in, and every
backend in turn.

``session_starter`` gives the session-starting fixtures (``sandbox`` here, ``open_session`` in
test_docker.py and test_e2b.py) their one way to start sessions and close them after the test.

``backend`` is parametrized over the installed backends, module-scoped so that each module runs
all its tests on one backend before starting the next (the fake envd's ports are fixed, so its
tests must never overlap): ``local`` (isolation none), ``bwrap`` (the local backend under
bubblewrap), ``docker`` (marked ``docker``), ``e2b`` (the real E2B SDK against the fake envd) and
``modal`` (ModalTransport with the real Modal SDK, its ``App.lookup`` and ``Sandbox.create``
replaced by the local stand-in in fake_modal.py).
"""

from __future__ import annotations

import contextlib
import itertools
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rlm_graph.sandboxes.base import Transport
from rlm_graph.sandboxes.protocol import CellResult, SubRequest
from rlm_graph.sandboxes.session import SandboxSession

ROOT = Path(__file__).resolve().parents[2]

#: Written at the end of the big context; a search must find it.
NEEDLE = "NEEDLE-\u00e9-7f3a9c"
BIG_CONTEXT_MB = 100
#: The big context is this line, repeated (64 characters: 16384 lines a megabyte).
BIG_CONTEXT_LINE = "the quick brown fox jumps over the lazy dog 0123456789 abcdefgh\n"


@pytest.fixture(scope="session")
def docker_engine() -> None:
    """A running engine with the sandbox image, or a skip that says why none can be had."""
    proc = subprocess.run(
        ["bash", str(ROOT / "scripts" / "docker-setup.sh")],
        env={**os.environ, "PYTHON": sys.executable},
        capture_output=True,
        text=True,
        timeout=280,
    )
    if proc.returncode == 2:
        pytest.skip(f"no Docker engine can be started here: {proc.stderr.strip()}")
    if proc.returncode != 0:
        pytest.fail(f"scripts/docker-setup.sh failed with exit code {proc.returncode}:\n{proc.stderr}")


@pytest.fixture(scope="module")
def fake_envd() -> Iterator[Any]:
    """The fake envd on its fixed ports, for one module at a time."""
    from tests.sandboxes.fake_e2b import FakeEnvd

    with FakeEnvd() as fake:
        yield fake


@dataclass(frozen=True)
class Backend:
    """One way to run the worker, as the contract and security tests see it."""

    name: str  # "local", "bwrap", "docker", "e2b" or "modal"
    make: Callable[..., Transport]  # transport options -> a started worker
    isolated: bool  # network, filesystem and process isolation apply (checked by test_security)
    why_not_isolated: str = ""


_NOT_ISOLATED = {
    "local": "isolation=none does not isolate: the worker is a plain subprocess of the host user",
    "e2b": (
        "the fake envd runs the worker as a plain host process; a real E2B sandbox is a separate VM, "
        "which cannot be tested offline"
    ),
    "modal": (
        "the Modal stand-in runs the worker as a plain host process; a real Modal sandbox is a separate "
        "container with block_network=True, which cannot be tested offline (tests/sandboxes/test_modal_live.py)"
    ),
}


@contextlib.contextmanager
def modal_stand_in(root: Path) -> Iterator[Any]:
    """The Modal SDK's ``App.lookup`` and ``Sandbox.create`` replaced by the stand-in (fake_modal.py),
    with a dummy token set (the transport checks one is configured; nothing is sent anywhere)."""
    from tests.sandboxes.fake_modal import FakeModal

    mp = pytest.MonkeyPatch()
    mp.setenv("MODAL_TOKEN_ID", "ak-offline-stand-in")
    mp.setenv("MODAL_TOKEN_SECRET", "as-offline-stand-in")
    fake = FakeModal(root).install(mp)
    try:
        yield fake
    finally:
        fake.close()
        mp.undo()


@pytest.fixture(
    scope="module",
    params=["local", "bwrap", pytest.param("docker", marks=pytest.mark.docker), "e2b", "modal"],
)
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    """Each installed backend in turn; one that cannot run here is skipped with the reason."""
    name = request.param
    if name == "local":
        from rlm_graph.sandboxes.local import LocalTransport

        yield Backend(name, lambda **kw: LocalTransport(isolation="none", **kw), False, _NOT_ISOLATED[name])
    elif name == "bwrap":
        from rlm_graph.sandboxes.local import LocalTransport, bwrap_status

        ok, why = bwrap_status()
        if not ok:
            pytest.skip(f"{why} (install bubblewrap: scripts/ci-setup.sh)")
        yield Backend(name, lambda **kw: LocalTransport(isolation="bwrap", **kw), True)
    elif name == "docker":
        request.getfixturevalue("docker_engine")
        from rlm_graph.sandboxes.docker import DockerTransport

        yield Backend(name, lambda **kw: DockerTransport(**kw), True)
    elif name == "modal":
        pytest.importorskip("modal", reason="the Modal SDK is not installed: pip install -e '.[test]'")
        from rlm_graph.sandboxes.modal import ModalTransport

        root = tmp_path_factory.mktemp("modal-sandboxes")
        counter = itertools.count()
        with modal_stand_in(root):
            yield Backend(
                name,
                lambda **kw: ModalTransport(work_dir=str(root / f"sbx{next(counter)}"), **kw),
                False,
                _NOT_ISOLATED[name],
            )
    else:
        pytest.importorskip("e2b")
        request.getfixturevalue("fake_envd")
        from rlm_graph.sandboxes.e2b import E2BTransport

        root = tmp_path_factory.mktemp("e2b-sandboxes")
        counter = itertools.count()
        mp = pytest.MonkeyPatch()
        mp.setenv("E2B_DEBUG", "true")  # the SDK talks to the fake envd on localhost
        try:
            yield Backend(
                name,
                lambda **kw: E2BTransport(work_dir=str(root / f"sbx{next(counter)}"), **kw),
                False,
                _NOT_ISOLATED[name],
            )
        finally:
            mp.undo()


#: The options ``start`` (from :func:`session_starter`) passes to SandboxSession, not to the transport.
_SESSION_OPTIONS = ("cell_timeout", "max_output_chars")


@contextlib.contextmanager
def session_starter(make: Callable[..., Transport], **defaults: Any) -> Iterator[Callable[..., SandboxSession]]:
    """Yield ``start(**options)``, which starts a SandboxSession on ``make(**transport_options)``.

    ``cell_timeout`` and ``max_output_chars`` go to the session (over ``defaults``), every other
    option to ``make``. All the sessions started are closed on exit.
    """
    sessions: list[SandboxSession] = []

    def start(**options: Any) -> SandboxSession:
        settings = {**defaults, **{k: options.pop(k) for k in _SESSION_OPTIONS if k in options}}
        session = SandboxSession(lambda: make(**options), **settings)
        sessions.append(session)
        session.start()
        return session

    try:
        yield start
    finally:
        for session in sessions:
            session.close()


@pytest.fixture
def sandbox(backend: Backend) -> Iterator[Callable[..., SandboxSession]]:
    """``sandbox(cell_timeout=..., max_output_chars=..., **transport_options)`` starts a session on
    the current backend; all are closed after the test."""
    with session_starter(backend.make, cell_timeout=20.0, max_output_chars=4000) as start:
        yield start


@pytest.fixture(scope="session")
def big_context(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A text file of about 100 MB whose last line holds NEEDLE; readable by any user."""
    path = tmp_path_factory.mktemp("big") / "big.txt"
    block = BIG_CONTEXT_LINE * (1024 * 1024 // len(BIG_CONTEXT_LINE))
    with open(path, "w", encoding="utf-8") as f:
        for _ in range(BIG_CONTEXT_MB):
            f.write(block)
        f.write(NEEDLE + "\n")
    path.chmod(0o644)
    yield path
    path.unlink(missing_ok=True)


def run(session: SandboxSession, cell: int, code: str) -> CellResult:
    """Run a cell that makes no sub-calls."""
    out = session.step(cell, code)
    assert isinstance(out, CellResult), out
    return out


def check_llm_query_round_trip(session: SandboxSession) -> None:
    """A cell with one ``llm_query`` and one ``llm_query_batched`` call, answered in turn."""
    code = "a = llm_query('ping')\nb = llm_query_batched(['x', 'y'])\nprint(a.upper(), b)"
    req = session.step(0, code)
    assert isinstance(req, SubRequest) and req.kind == "llm" and req.prompts == ["ping"]
    session.answer(req, ["pong"])
    req = session.step(0, code)
    assert isinstance(req, SubRequest) and req.prompts == ["x", "y"]
    session.answer(req, ["X!", "Y!"])
    out = session.step(0, code)
    assert isinstance(out, CellResult) and out.stdout == "PONG ['X!', 'Y!']\n"
