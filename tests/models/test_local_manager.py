"""The embedded-model manager against a fake part package and a stand-in server: real processes, real HTTP."""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import signal
import subprocess
import sys
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from rlm_graph.errors import ConfigurationError, ModelError
from rlm_graph.models import local
from rlm_graph.models.local import ModelSpec, ensure_model, ensure_servers, status, stop

HERE = Path(__file__).parent
FAKE_SERVER = (sys.executable, str(HERE / "fake_llama_server.py"))
PART_SIZES = (70_001, 1, 123_457)
FakeModel = tuple[ModelSpec, bytes, Path]  # the spec, the bytes it must assemble to, the site directory


@pytest.fixture
def model(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeModel:
    """Three importable part packages of random bytes on sys.path, and a spec that matches them."""
    packages = tmp_path / "site"
    blobs = [os.urandom(size) for size in PART_SIZES]
    for n, blob in enumerate(blobs, start=1):
        data = packages / f"fakemodel_part{n}" / "data"
        data.mkdir(parents=True)
        (data.parent / "__init__.py").write_text("raise RuntimeError('the manager must not import a part')\n")
        (data / f"part{n:02d}.bin").write_bytes(blob)
    whole = b"".join(blobs)
    spec = ModelSpec("fakemodel-part", "fakemodel_part", 3, "0.1.0", len(whole),
                     hashlib.sha256(whole).hexdigest(), "fake-alias", "fake.gguf")
    monkeypatch.syspath_prepend(str(packages))
    return spec, whole, packages


@pytest.fixture
def cache(tmp_path: Path) -> Iterator[Path]:
    directory = tmp_path / "cache"
    yield directory
    if directory.exists():
        stop(cache=directory)


def chat(base_url: str, text: str) -> str:
    body = json.dumps({"model": "fake-alias", "messages": [{"role": "user", "content": text}]}).encode()
    request = urllib.request.Request(f"{base_url}/chat/completions", body, {"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=10) as response:
        return str(json.load(response)["choices"][0]["message"]["content"])


def pid_alive(pid: int) -> bool:
    return local._alive(pid)


def servers(cache: Path, spec: ModelSpec, roles: tuple[str, ...] = ("root",), **kwargs: object) -> dict[str, str]:
    models = {role: "fake" for role in roles}
    return ensure_servers(roles, models=models, cache=cache, catalog={"fake": spec}, command=FAKE_SERVER,
                          timeout=30, progress=None, **kwargs)


# --- assembly ---------------------------------------------------------------------------------

def test_assembles_the_parts_in_order_and_stamps_the_digest(model: FakeModel, cache: Path) -> None:
    spec, whole, _ = model
    messages: list[str] = []
    path = ensure_model("fake", cache=cache, catalog={"fake": spec}, progress=messages.append)
    assert path == cache / "fake.gguf"
    assert path.read_bytes() == whole
    assert (cache / "fake.gguf.sha256").read_text().strip() == spec.sha256
    assert len(messages) == 3 and all("assembling fake.gguf" in m for m in messages)
    assert not list(cache.glob("*.tmp"))


def test_a_stamped_file_is_returned_without_reading_the_parts(model: FakeModel, cache: Path) -> None:
    spec, _, packages = model
    path = ensure_model("fake", cache=cache, catalog={"fake": spec}, progress=None)
    for data in packages.glob("*/data/*.bin"):
        data.unlink()
    before = path.stat().st_mtime_ns
    assert ensure_model("fake", cache=cache, catalog={"fake": spec}, progress=None) == path
    assert path.stat().st_mtime_ns == before


def test_an_unstamped_file_is_verified_once_and_a_corrupt_one_rebuilt(model: FakeModel, cache: Path) -> None:
    spec, whole, _ = model
    cache.mkdir()
    target = cache / "fake.gguf"
    target.write_bytes(whole)
    messages: list[str] = []
    ensure_model("fake", cache=cache, catalog={"fake": spec}, progress=messages.append)
    assert messages == ["verifying fake.gguf"]
    assert (cache / "fake.gguf.sha256").read_text().strip() == spec.sha256

    target.write_bytes(bytes(len(whole)))  # same size, wrong bytes
    (cache / "fake.gguf.sha256").unlink()
    ensure_model("fake", cache=cache, catalog={"fake": spec}, progress=None)
    assert target.read_bytes() == whole


def test_a_digest_mismatch_raises_and_leaves_no_file(model: FakeModel, cache: Path) -> None:
    spec, _, _ = model
    wrong = dataclasses.replace(spec, sha256="0" * 64)
    with pytest.raises(ConfigurationError, match=r"does not match.*force-reinstall fakemodel-part"):
        ensure_model("fake", cache=cache, catalog={"fake": wrong}, progress=None)
    assert sorted(p.name for p in cache.iterdir()) == [".fake.gguf.lock"]


def test_missing_parts_are_named_with_the_install_command(model: FakeModel, cache: Path) -> None:
    spec, _, _ = model
    more = dataclasses.replace(spec, parts=5)
    with pytest.raises(ConfigurationError, match=r"fakemodel-part4, fakemodel-part5.*fakemodel-part\{1..5\}==0.1.0"):
        ensure_model("fake", cache=cache, catalog={"fake": more}, progress=None)
    assert not (cache / "fake.gguf").exists()


def test_unknown_model_and_cache_from_the_environment(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ConfigurationError, match=r"unknown embedded model 'nope'.*qwen2\.5-coder-1\.5b"):
        ensure_model("nope", cache=tmp_path, progress=None)
    monkeypatch.setenv("RLM_GRAPH_CACHE", str(tmp_path / "env-cache"))
    assert local.cache_dir() == tmp_path / "env-cache"
    assert local.cache_dir(tmp_path / "arg") == tmp_path / "arg"


# --- servers ----------------------------------------------------------------------------------

def test_starts_one_server_per_role_and_reuses_them(model: FakeModel, cache: Path) -> None:
    spec, whole, _ = model
    first = servers(cache, spec, ("root", "sub"))
    assert first["root"] != first["sub"]
    assert chat(first["root"], "hi") == f"echo: hi (model file {len(whole)} bytes)"
    pids = {row["role"]: row["pid"] for row in status(cache=cache)}

    assert servers(cache, spec, ("root", "sub")) == first
    rows = status(cache=cache)
    assert {row["role"]: row["pid"] for row in rows} == pids
    assert all(row["running"] and row["model"] == "fake" for row in rows)
    assert [row["base_url"] for row in rows] == [first["root"], first["sub"]]


def test_a_dead_pid_in_the_state_is_replaced(model: FakeModel, cache: Path) -> None:
    spec, _, _ = model
    servers(cache, spec)
    old = status(cache=cache)[0]
    os.kill(old["pid"], signal.SIGKILL)
    local._terminate(old["pid"])  # reaps the child

    new_url = servers(cache, spec)["root"]
    new = status(cache=cache)[0]
    assert new["pid"] != old["pid"] and new["running"]
    assert chat(new_url, "again").startswith("echo: again")


def test_a_recycled_pid_is_left_alone(model: FakeModel, cache: Path) -> None:
    spec, _, _ = model
    stranger = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        cache.mkdir()
        state = {"root": {"pid": stranger.pid, "port": 9, "model": "fake", "started_at": "x"}}
        (cache / "servers.json").write_text(json.dumps(state))
        assert not status(cache=cache)[0]["running"]

        servers(cache, spec)
        assert status(cache=cache)[0]["pid"] != stranger.pid
        stop(cache=cache)
        assert stranger.poll() is None
    finally:
        stranger.kill()
        stranger.wait()


def test_another_model_for_the_role_replaces_the_server(model: FakeModel, cache: Path) -> None:
    spec, _, _ = model
    other = dataclasses.replace(spec, alias="other-alias")
    servers(cache, spec)
    old_pid = status(cache=cache)[0]["pid"]
    ensure_servers(("root",), models={"root": "other"}, cache=cache, catalog={"fake": spec, "other": other},
                   command=FAKE_SERVER, timeout=30, progress=None)
    row = status(cache=cache)[0]
    assert row["model"] == "other" and row["pid"] != old_pid
    assert not pid_alive(old_pid)


def test_stop_kills_the_servers_and_clears_the_state(model: FakeModel, cache: Path) -> None:
    spec, _, _ = model
    servers(cache, spec, ("root", "sub"))
    pids = {row["role"]: row["pid"] for row in status(cache=cache)}

    assert stop("sub", cache=cache) == ["sub"]
    assert not pid_alive(pids["sub"]) and pid_alive(pids["root"])
    assert [row["role"] for row in status(cache=cache)] == ["root"]

    assert stop(cache=cache) == ["root"]
    assert not pid_alive(pids["root"])
    assert status(cache=cache) == []
    assert json.loads((cache / "servers.json").read_text()) == {}


def test_stop_falls_back_to_sigkill(model: FakeModel, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, _ = model
    monkeypatch.setenv("FAKE_SERVER_IGNORE_TERM", "1")
    monkeypatch.setattr(local, "_TERM_GRACE", 0.5)
    servers(cache, spec)
    pid = status(cache=cache)[0]["pid"]
    stop(cache=cache)
    assert not pid_alive(pid)


def test_a_server_that_dies_reports_its_log(model: FakeModel, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, _ = model
    monkeypatch.setenv("FAKE_SERVER_EXIT", "3")
    with pytest.raises(ModelError, match=r"(?s)exited with code 3.*failing on purpose"):
        servers(cache, spec)
    assert status(cache=cache) == []


def test_a_server_that_crashes_on_its_first_request_is_named_with_the_rebuild(
    model: FakeModel, cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    spec, _, _ = model
    monkeypatch.setenv("FAKE_SERVER_CRASH", "1")
    with pytest.raises(ModelError, match=r"(?s)crashed on its first request \(exit code -11\).*GGML_NATIVE=OFF.*crashing on the first"):
        servers(cache, spec)
    assert status(cache=cache) == []


def test_a_silent_server_times_out_and_is_killed(model: FakeModel, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, _ = model
    starts = cache.parent / "starts.txt"
    monkeypatch.setenv("FAKE_SERVER_DELAY", "60")
    monkeypatch.setenv("FAKE_SERVER_STARTS", str(starts))
    with pytest.raises(ModelError, match="did not answer within 1 s"):
        ensure_servers(("root",), models={"root": "fake"}, cache=cache, catalog={"fake": spec},
                       command=FAKE_SERVER, timeout=1, progress=None)
    assert not pid_alive(int(starts.read_text()))
    assert status(cache=cache) == []


def test_two_processes_at_once_start_one_server(model: FakeModel, cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    spec, _, packages = model
    starts = cache.parent / "starts.txt"
    monkeypatch.setenv("FAKE_SERVER_DELAY", "1.5")  # a slow load widens the race window
    monkeypatch.setenv("FAKE_SERVER_STARTS", str(starts))
    job = json.dumps({"packages": str(packages), "cache": str(cache), "spec": dataclasses.asdict(spec),
                      "command": list(FAKE_SERVER)})
    children = [subprocess.Popen([sys.executable, str(HERE / "ensure_in_child.py"), job], stdout=subprocess.PIPE)
                for _ in range(2)]
    outputs = [json.loads(child.communicate(timeout=60)[0]) for child in children]
    assert all(child.returncode == 0 for child in children)
    assert outputs[0] == outputs[1]
    assert len(starts.read_text().split()) == 1
    assert chat(outputs[0]["root"], "x").startswith("echo: x")


def test_the_real_server_must_be_installed(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(local, "is_llama_server_installed", lambda: False)
    with pytest.raises(ConfigurationError, match=r"pip install 'rlm-graph\[local\]'"):
        ensure_servers(cache=cache, progress=None)


@pytest.mark.model
def test_the_real_embedded_model_answers(tmp_path: Path) -> None:
    if not local.is_llama_server_installed():
        pytest.skip(local.INSTALL_HINT)
    try:
        url = ensure_servers(("root",), cache=tmp_path, progress=None)["root"]
        body = {"model": local.DEFAULT_ALIAS, "max_tokens": 8, "temperature": 0,
                "messages": [{"role": "user", "content": "What is 2+2? answer with a number"}]}
        request = urllib.request.Request(f"{url}/chat/completions", json.dumps(body).encode(),
                                         {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=300) as response:
            assert "4" in json.load(response)["choices"][0]["message"]["content"]
    finally:
        stop(cache=tmp_path)


# --- progress on a terminal -------------------------------------------------------------------

_ASSEMBLE = """
import dataclasses, json, sys
from rlm_graph.models.local import ModelSpec, ensure_model
spec = ModelSpec(**json.loads(sys.argv[1]))
print(ensure_model("fake", cache=sys.argv[2], catalog={"fake": spec}))
"""


def _assembly_child(model: FakeModel, cache: Path) -> tuple[list[str], dict[str, str]]:
    """The command and environment of a process that assembles the fake model with the default reporting."""
    spec, _, packages = model
    root = str(Path(__file__).resolve().parents[2])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(packages), root])}
    return [sys.executable, "-c", _ASSEMBLE, json.dumps(dataclasses.asdict(spec)), str(cache)], env


def test_on_a_terminal_the_assembly_shows_parts_k_of_n_with_an_eta(model: FakeModel, cache: Path) -> None:
    from tests.terminal import run_on_terminal

    spec, whole, _ = model
    argv, env = _assembly_child(model, cache)
    code, out, err = run_on_terminal(argv, env)
    assert code == 0, err
    assert Path(out.strip()).read_bytes() == whole
    # The bar is drawn at the start and after each part: 0/3, 1/3, 2/3, 3/3, in that order.
    seen = [err.find(f"{k}/3 parts") for k in range(4)]
    assert all(i >= 0 for i in seen) and seen == sorted(seen), err
    assert "assembling fake.gguf" in err and "ETA" in err
    assert "rlm-graph: assembling" not in err  # the bar replaces the per-part lines


def test_without_a_terminal_the_assembly_reports_plain_lines(model: FakeModel, cache: Path) -> None:
    argv, env = _assembly_child(model, cache)
    done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert lines == ["rlm-graph: assembling fake.gguf: 0/0 MiB"] * 3, done.stderr  # one per part, no bar, no escapes
