"""What code in a cell must not be able to do, per backend (see ``backend`` in conftest.py).

Every backend keeps the host's API keys out of the worker's environment. The isolated ones
(bubblewrap, docker) also hide the host's files and processes, have no network, allow writes only
in the work dir, and survive fork and memory bombs. ``local`` with isolation none and the fake
E2B envd isolate nothing of that kind: those checks skip with the reason, and
``test_isolation_none_is_documented_as_not_isolating`` pins down what isolation none really allows.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from rlm_graph.errors import WorkerCrashed
from rlm_graph.sandboxes.session import SandboxSession
from tests.sandboxes.conftest import ROOT, Backend, run

Start = Callable[..., SandboxSession]
SECRET = "sk-test-not-for-the-sandbox-1234"


def needs_isolation(backend: Backend) -> None:
    if not backend.isolated:
        pytest.skip(backend.why_not_isolated)


@pytest.fixture
def host_server() -> Iterator[int]:
    """A TCP server on the host's loopback, like the embedded model server; yields its port."""
    server = socket.create_server(("127.0.0.1", 0))
    server.settimeout(0.1)
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def host_process_with_secret() -> Iterator[int]:
    """A host process whose environment holds an API key (as the host's own would); yields its pid."""
    proc = subprocess.Popen(["sleep", "60"], env={"PATH": os.environ.get("PATH", ""), "OPENAI_API_KEY": SECRET})
    try:
        yield proc.pid
    finally:
        proc.kill()
        proc.wait()


@pytest.fixture
def host_secret_file(tmp_path: Path) -> Path:
    path = tmp_path / "host-secret.txt"
    path.write_text(SECRET)
    path.chmod(0o644)
    return path


def _connect_code(port: int) -> str:
    return (
        "import socket\n"
        "def reach(host, port):\n"
        "    try:\n"
        "        socket.create_connection((host, port), timeout=2).close()\n"
        "        return 'reached'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
        f"print(reach('127.0.0.1', {port}), reach('1.1.1.1', 53))"
    )


def _scan_proc_code(needle: str) -> str:
    return (
        "import os\n"
        "hits = []\n"
        "for pid in os.listdir('/proc'):\n"
        "    if pid.isdigit():\n"
        "        try:\n"
        f"            if {needle.encode()!r} in open(f'/proc/{{pid}}/environ', 'rb').read():\n"
        "                hits.append(pid)\n"
        "        except OSError:\n"
        "            pass\n"
        "print(len(hits))"
    )


def test_host_api_keys_are_not_in_the_worker_environment(sandbox: Start, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", SECRET)
    monkeypatch.setenv("E2B_API_KEY", SECRET)
    s = sandbox()
    code = (
        "import os\n"
        "print(sorted(k for k in os.environ if 'KEY' in k or 'TOKEN' in k),\n"
        f"      {SECRET.encode()!r} in open('/proc/self/environ', 'rb').read())"
    )
    assert run(s, 0, code).stdout == "[] False\n"


def test_other_processes_environments_are_out_of_sight(backend: Backend, sandbox: Start, host_process_with_secret: int) -> None:
    needs_isolation(backend)
    s = sandbox()
    assert run(s, 0, _scan_proc_code(SECRET)).stdout == "0\n"
    # Its own process namespace: the host's pids are not there at all.
    assert run(s, 1, f"import os\nos.path.exists('/proc/{host_process_with_secret}')").stdout == "False\n"


def test_no_network(backend: Backend, sandbox: Start, host_server: int) -> None:
    needs_isolation(backend)
    s = sandbox()
    out = run(s, 0, _connect_code(host_server))
    assert "reached" not in out.stdout, out.stdout
    assert run(s, 1, "import socket\n[n for _, n in socket.if_nameindex()]").stdout == "['lo']\n"


def test_host_files_are_hidden(backend: Backend, sandbox: Start, host_secret_file: Path) -> None:
    needs_isolation(backend)
    s = sandbox()
    paths = [str(host_secret_file), str(ROOT / "pyproject.toml"), "/etc/shadow", "/root/.bash_history", "/home"]
    code = f"import os\n[os.path.exists(p) for p in {paths!r}]"
    assert run(s, 0, code).stdout == f"{[False] * len(paths)}\n"


def test_writes_only_in_the_work_dir(backend: Backend, sandbox: Start, host_secret_file: Path) -> None:
    needs_isolation(backend)
    s = sandbox()
    targets = [str(host_secret_file), str(host_secret_file.parent / "new.txt"), "/usr/rlm-probe", "/etc/rlm-probe",
               "/rlm-probe", sys.prefix + "/rlm-probe"]  # fmt: skip
    code = (
        "import os\n"
        "def write(p):\n"
        "    try:\n"
        "        with open(p, 'w') as f:\n"
        "            f.write('x')\n"
        "        return 'written'\n"
        "    except OSError as e:\n"
        "        return type(e).__name__\n"
        f"print([write(p) for p in {targets!r}])\n"
        "print(write('in-work-dir.txt'), open('in-work-dir.txt').read(), write(os.environ['TMPDIR'] + '/t'))"
    )
    out = run(s, 0, code).stdout.splitlines()
    assert "written" not in out[0], out[0]
    assert out[1] == "written x written"
    # The context inbox is read-only too: a cell cannot change what a replay reloads.
    s.load_context(host_secret_file, "text")
    code = (
        "import sys\n"
        "def append(p):\n"
        "    try:\n"
        "        open(p, 'a').close()\n"
        "        return 'writable'\n"
        "    except OSError:\n"
        "        return 'read-only'\n"
        "append(sys.modules['__main__']._CONTEXT_SOURCE['path']), append(sys.argv[0])"
    )
    assert run(s, 1, code).stdout == "('read-only', 'read-only')\n"
    assert host_secret_file.read_text() == SECRET
    assert not (host_secret_file.parent / "new.txt").exists() and not Path("/usr/rlm-probe").exists()
    assert not Path(sys.prefix, "rlm-probe").exists() and not Path("/etc/rlm-probe").exists()


def test_in_memory_folders_are_capped(backend: Backend, sandbox: Start) -> None:
    """/tmp is RAM that no rlimit counts: it has a size (``tmpfs_mb``), and /dev is read-only."""
    needs_isolation(backend)
    s = sandbox(tmpfs_mb=16)
    code = (
        "import errno\n"
        "def fill(p, mb):\n"
        "    try:\n"
        "        with open(p, 'wb') as f:\n"
        "            for _ in range(mb):\n"
        "                f.write(bytes(1 << 20))\n"
        "        return 'ok'\n"
        "    except OSError as e:\n"
        "        return errno.errorcode[e.errno]\n"
        "fill('/tmp/small', 1), fill('/tmp/big', 64), fill('/dev/rlm-probe', 1)"
    )
    out = run(s, 0, code).stdout
    assert out.startswith("('ok', 'ENOSPC', 'E"), out  # /dev: EROFS (bwrap) or EACCES (docker)


def test_a_fork_bomb_is_stopped_and_cleaned_up(backend: Backend, sandbox: Start) -> None:
    if backend.name not in ("bwrap", "docker"):
        pytest.skip(
            backend.why_not_isolated
            + "; the fork bomb runs only where a process cap is certain (as root, RLIMIT_NPROC does not apply)"
        )
    cap = 48
    s = sandbox(**({"max_processes": cap} if backend.name == "bwrap" else {"pids_limit": cap}))
    # Bounded by the loop too, so a missing cap costs 400 sleeping processes, not the host.
    code = (
        "import errno, os, signal, time\n"
        "kids, err = [], None\n"
        "try:\n"
        "    for _ in range(400):\n"
        "        pid = os.fork()\n"
        "        if pid == 0:\n"
        "            time.sleep(30)\n"
        "            os._exit(0)\n"
        "        kids.append(pid)\n"
        "except OSError as e:\n"
        "    err = errno.errorcode[e.errno]\n"
        "for pid in kids:\n"
        "    os.kill(pid, signal.SIGKILL)\n"
        "    os.waitpid(pid, 0)\n"
        "print(len(kids), err)"
    )
    out = run(s, 0, code)
    forked, err = out.stdout.split()
    assert 0 < int(forked) < cap and err == "EAGAIN", out
    assert run(s, 1, "6 * 7").stdout == "42\n"  # the worker is fine, and so is the host
    # Children left running (never reaped) go when the sandbox closes.
    run(s, 2, "import os, time\nfor _ in range(5):\n    if os.fork() == 0:\n        time.sleep(60)\n        os._exit(0)")
    gone = _all_gone_check(s)
    s.close()
    assert subprocess.run(["true"], check=False).returncode == 0
    assert gone()


def test_a_memory_bomb_ends_the_cell_or_the_worker(backend: Backend, sandbox: Start) -> None:
    if backend.name in ("e2b", "modal"):
        pytest.skip(backend.why_not_isolated + "; it has no memory limit to hit")
    s = sandbox(memory_mb=256)
    run(s, 0, "kept = 'before the bomb'")
    bomb = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    try:
        out = run(s, 1, bomb)
    except WorkerCrashed as exc:  # docker: the memory cgroup kills the worker; the session restarts it
        assert "out of memory" in str(exc)
        s.start()
        s.replay([{"index": 0, "code": "kept = 'before the bomb'"}], lambda r: [])
    else:  # local: RLIMIT_AS turns it into a MemoryError inside the cell
        assert "MemoryError" in (out.error or "")
        run(s, 2, "del chunks")
    assert run(s, 3, "kept, sum(range(10))").stdout == "('before the bomb', 45)\n"


def test_isolation_none_is_documented_as_not_isolating(
    backend: Backend, sandbox: Start, host_server: int, host_secret_file: Path, host_process_with_secret: int
) -> None:
    """What docs/sandboxes.md says about isolation none, checked: only the environment is scrubbed."""
    if backend.name != "local":
        pytest.skip("only the local backend has isolation none")
    s = sandbox()
    assert run(s, 0, _connect_code(host_server)).stdout.startswith("reached ")
    assert run(s, 1, f"open({str(host_secret_file)!r}).read()").stdout == f"{SECRET!r}\n"
    assert int(run(s, 2, _scan_proc_code(SECRET)).stdout) >= 1  # the same user's processes are readable


def _all_gone_check(session: SandboxSession) -> Callable[[], bool]:
    """A check, to call after closing ``session``, that none of its processes is left."""
    transport = session.transport
    container = getattr(transport, "_container", None)
    if container is not None:  # docker: the container and everything in it is removed
        import docker

        def container_gone() -> bool:
            client = docker.from_env()
            try:
                client.containers.get(container.id)
                return False
            except docker.errors.NotFound:
                return True
            finally:
                client.close()

        return container_gone
    # local: every process of the sandbox names its private folder on its command line
    marker = str(transport._box)  # type: ignore[union-attr]

    def processes_gone() -> bool:
        for entry in os.scandir("/proc"):
            try:
                if entry.name.isdigit() and marker.encode() in Path(entry.path, "cmdline").read_bytes():
                    return False
            except OSError:
                pass
        return True

    return processes_gone
