"""DockerTransport against a real engine, driven through SandboxSession.

The ``docker_engine`` fixture (in tests/sandboxes/conftest.py) runs scripts/docker-setup.sh, which
installs docker.io, starts dockerd and builds the image as needed; the tests skip only when that
script says no engine can be started.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from rlm_graph.errors import SandboxError, SandboxTimeout, WorkerCrashed
from rlm_graph.sandboxes import docker as docker_module
from rlm_graph.sandboxes.docker import DockerTransport
from rlm_graph.sandboxes.protocol import CellResult, SubRequest
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import ROOT, check_llm_query_round_trip, run, session_starter

pytestmark = pytest.mark.docker


@pytest.fixture
def open_session(docker_engine: None) -> Iterator[Callable[..., SandboxSession]]:
    """Start sandbox sessions (``cell_timeout`` and DockerTransport options); close them all after."""
    with session_starter(DockerTransport, cell_timeout=30.0) as start:
        yield start


def container_exists(container_id: str) -> bool:
    import docker

    client = docker.from_env()
    try:
        client.containers.get(container_id)
        return True
    except docker.errors.NotFound:
        return False
    finally:
        client.close()


def test_start_and_trivial_cell(open_session: Callable[..., SandboxSession]) -> None:
    t0 = time.perf_counter()
    session = open_session()
    assert time.perf_counter() - t0 < 10
    assert session.kind == "docker"
    out = run(session, 0, "x = 6 * 7\nx")
    assert out.stdout == "42\n" and out.error is None and out.vars == {"x": "int"}
    assert run(session, 1, "import os; os.getuid(), os.getcwd()").stdout == "(65534, '/work')\n"


def test_load_context_file(open_session: Callable[..., SandboxSession], tmp_path: Path) -> None:
    session = open_session()
    path = tmp_path / "notes.txt"
    path.write_text("first line\nzweite Zeile – ünïcode\n", encoding="utf-8")
    path.chmod(0o600)  # unreadable to the container's user: the transport must copy it
    meta = session.load_context(path)
    assert meta["type"] == "str" and meta["lines"] == 2
    assert run(session, 0, "context.splitlines()[1]").stdout == "'zweite Zeile – ünïcode'\n"
    # The context is read-only: a cell cannot change what a replay would reload.
    out = run(session, 1, "open('/rlm/context.txt', 'a').write('x')")
    assert out.error and ("PermissionError" in out.error or "Read-only" in out.error)
    assert path.read_text(encoding="utf-8").endswith("ünïcode\n")


def test_llm_query_round_trip(open_session: Callable[..., SandboxSession]) -> None:
    check_llm_query_round_trip(open_session())


def test_cell_timeout_keeps_the_worker(open_session: Callable[..., SandboxSession]) -> None:
    session = open_session(cell_timeout=1)
    out = run(session, 0, "n = 1\nwhile True:\n    n += 1")
    assert out.timed_out and "TimeoutError" in (out.error or "")
    assert int(run(session, 1, "n").stdout) > 1  # variables assigned before the timeout survive


def test_cell_that_ignores_its_timeout_is_killed(open_session: Callable[..., SandboxSession]) -> None:
    session = open_session(cell_timeout=1)
    transport = session.transport
    assert isinstance(transport, DockerTransport) and transport._container is not None
    container_id = transport._container.id
    with pytest.raises(SandboxTimeout, match="did not stop"):
        session.step(0, "import signal\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\nwhile True:\n    pass")
    assert session.transport is None and not container_exists(container_id)


def test_no_network(open_session: Callable[..., SandboxSession]) -> None:
    # A server on the host's loopback, like the embedded model server: the sandbox must not reach it.
    server = socket.create_server(("127.0.0.1", 0))
    port = server.getsockname()[1]
    try:
        session = open_session()
        code = (
            "import os, socket\n"
            "routes = open('/proc/net/route').read().splitlines()[1:]\n"
            "try:\n"
            f"    socket.create_connection(('127.0.0.1', {port}), timeout=3)\n"
            "    reached = True\n"
            "except OSError:\n"
            "    reached = False\n"
            "print(sorted(os.listdir('/sys/class/net')), routes, reached)"
        )
        assert run(session, 0, code).stdout == "['lo'] [] False\n"
    finally:
        server.close()


def test_host_secrets_stay_out(open_session: Callable[..., SandboxSession], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-test-not-for-the-sandbox")
    session = open_session()
    code = (
        "import os\n"
        "print('OPENAI_API_KEY' in os.environ, b'sk-test' in open('/proc/self/environ', 'rb').read(),\n"
        f"      os.path.exists({str(ROOT)!r}), os.path.exists('/root'), os.path.exists('/etc/shadow'))"
    )
    assert run(session, 0, code).stdout == "False False False False False\n"


def test_memory_bomb_kills_only_the_worker(open_session: Callable[..., SandboxSession]) -> None:
    session = open_session(memory_mb=128)
    with pytest.raises(WorkerCrashed, match="out of memory"):
        session.step(0, "blob = 'x' * (1 << 30)")
    session.close()
    assert run(open_session(), 0, "sum(range(10))").stdout == "45\n"  # the host and engine are fine


def test_parallel_containers(open_session: Callable[..., SandboxSession], tmp_path: Path) -> None:
    def work(i: int) -> list[str]:
        session = open_session()
        path = tmp_path / f"ctx{i}.txt"
        path.write_text(f"context number {i}\n" * 1000)
        session.load_context(path)
        outs = [run(session, 0, "len(context.splitlines())").stdout]
        code = "r = llm_query(context[:16])\nprint(r)"
        req = session.step(1, code)
        assert isinstance(req, SubRequest)
        session.answer(req, [req.prompts[0].upper()])
        last = session.step(1, code)
        assert isinstance(last, CellResult)
        outs.append(last.stdout)
        outs += [run(session, c, f"{c} * {i}").stdout for c in range(2, 6)]
        return outs

    t0 = time.perf_counter()
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(work, range(4)))
    assert time.perf_counter() - t0 < 60
    for i, outs in enumerate(results):
        assert outs == ["1000\n", f"CONTEXT NUMBER {i}\n"] + [f"{c * i}\n" for c in range(2, 6)]


def test_missing_image_is_a_clear_error(docker_engine: None) -> None:
    with pytest.raises(SandboxError, match="not there: build it"):
        DockerTransport("rlm-graph-no-such-image:0")


_HOST = """
import sys
from rlm_graph.sandboxes.docker import DockerTransport
from rlm_graph.sandboxes.protocol import encode
t = DockerTransport()
assert '"ready"' in t.receive(30)
code = "import signal\\nsignal.signal(signal.SIGALRM, signal.SIG_IGN)\\nwhile True:\\n    pass"
t.send(encode({"type": "exec", "cell": 0, "code": code, "timeout": 1}))
print(t._container.id, flush=True)
sys.stdin.read()
"""


def test_a_killed_hosts_container_is_removed_by_the_next_host(docker_engine: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """SIGKILL runs no cleanup, and this cell never reads its input again: the container would run on."""
    host = subprocess.Popen([sys.executable, "-c", _HOST], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    assert host.stdout is not None
    container_id = host.stdout.readline().strip()
    host.kill()
    host.wait()
    time.sleep(2)  # past the cell's alarm, which it ignores
    assert container_exists(container_id)
    monkeypatch.setattr(docker_module, "_SWEPT", False)  # as in a new process
    DockerTransport().close()
    assert not container_exists(container_id)
