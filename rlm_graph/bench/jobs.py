"""Running one benchmark job in its own process, for rlm-graph or for the reference library ``rlms``.

rlm-graph jobs run ``python -m rlm_graph.bench.probe`` with this interpreter. ``rlms`` jobs run
``_rlms_driver.py`` with the interpreter of a separate virtual environment that holds ``rlms``
from PyPI (created on first use by :func:`ensure_rlms`), so the two never share dependencies.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
import venv
from pathlib import Path
from typing import Any

from rlm_graph.bench import DEFAULT_RLMS_VENV, LIBRARIES
from rlm_graph.errors import ConfigurationError, RLMError

#: The version of the reference library the benchmarks were written against (its API was read from it).
RLMS_VERSION = "0.1.3"

DRIVER = Path(__file__).with_name("_rlms_driver.py")


class JobError(RLMError):
    """A benchmark job's process failed; the message holds its stderr tail."""


def _venv_python(directory: Path) -> Path:
    return directory / "bin" / "python"


def installed_rlms(directory: Path) -> str | None:
    """The ``rlms`` version installed in the venv at ``directory`` (None when there is none)."""
    python = _venv_python(directory)
    if not python.exists():
        return None
    probe = "import importlib.metadata as m; print(m.version('rlms'))"
    done = subprocess.run([str(python), "-c", probe], capture_output=True, text=True)
    return done.stdout.strip() or None if done.returncode == 0 else None


def ensure_rlms(directory: str | os.PathLike[str] | None = None, *, version: str = RLMS_VERSION, quiet: bool = True) -> Path:
    """A virtual environment with ``rlms==version`` from PyPI; created when missing. Returns its python.

    Raises:
        ConfigurationError: the environment could not be created or pip failed.
    """
    target = Path(directory or DEFAULT_RLMS_VENV).expanduser()
    if installed_rlms(target) == version:
        return _venv_python(target)
    if not _venv_python(target).exists():
        print(f"rlm-graph bench: creating a virtual environment for rlms in {target}", file=sys.stderr)
        try:
            venv.EnvBuilder(with_pip=True, clear=False).create(target)
        except (OSError, subprocess.CalledProcessError) as exc:
            raise ConfigurationError(f"could not create a virtual environment in {target}: {exc}") from exc
    print(f"rlm-graph bench: pip install rlms=={version} into {target}", file=sys.stderr)
    cmd = [str(_venv_python(target)), "-m", "pip", "install", *(["-q"] if quiet else []), f"rlms=={version}"]
    done = subprocess.run(cmd, capture_output=quiet, text=True)
    if done.returncode != 0 or installed_rlms(target) != version:
        tail = (done.stderr or "")[-1500:] if quiet else ""
        raise ConfigurationError(f"pip could not install rlms=={version} into {target}: {tail}")
    return _venv_python(target)


def command(library: str, *, rlms_python: Path | None = None) -> list[str]:
    """The argv that runs one job of ``library`` (the job file's path is appended)."""
    if library == "rlm-graph":
        return [sys.executable, "-m", "rlm_graph.bench.probe"]
    if library == "rlms":
        return [str(rlms_python or ensure_rlms()), str(DRIVER)]
    raise ConfigurationError(f"unknown library {library!r}: use one of {', '.join(LIBRARIES)}")


def _env(extra: dict[str, str] | None = None) -> dict[str, str]:
    env = {**os.environ, **(extra or {})}
    env["LANGSMITH_TRACING"] = "false"  # a benchmark must not wait on a tracing endpoint
    env.setdefault("PYTHONHASHSEED", "0")
    return env


def start(library: str, job: dict[str, Any], *, rlms_python: Path | None = None, env: dict[str, str] | None = None,
          cwd: str | None = None) -> subprocess.Popen[str]:
    """Start a job's process (``env``: variables to add; ``cwd``: where it runs, which ``-m``
    puts first on its path: an older checkout there is the rlm-graph it runs); read its result
    with :func:`finish`.

    The job goes in a file named on the command line (a large job would fill a pipe before the
    process reads it).
    """
    fd, path = tempfile.mkstemp(prefix="rlm-bench-job-", suffix=".json")
    with os.fdopen(fd, "w") as f:
        json.dump(job, f)
    proc = subprocess.Popen(
        [*command(library, rlms_python=rlms_python), path],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(env),
        cwd=cwd,
    )
    proc.job_file = path  # type: ignore[attr-defined]
    return proc


def finish(proc: subprocess.Popen[str], timeout: float | None = None) -> dict[str, Any]:
    """Wait for a job's process and parse its result.

    Raises:
        JobError: the process failed, timed out, or printed no result.
    """
    try:
        out, err = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        proc.communicate()
        raise JobError(f"the job did not finish within {timeout:.0f} s") from exc
    finally:
        job_file = getattr(proc, "job_file", None)
        if job_file:
            Path(job_file).unlink(missing_ok=True)
    if proc.returncode != 0:
        raise JobError(f"the job's process failed (exit {proc.returncode}): {err.strip()[-1500:]}")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (IndexError, json.JSONDecodeError) as exc:
        raise JobError(f"the job printed no result; stderr: {err.strip()[-1500:]}") from exc


def run(library: str, job: dict[str, Any], *, rlms_python: Path | None = None, timeout: float | None = None,
        env: dict[str, str] | None = None, cwd: str | None = None) -> dict[str, Any]:
    """Run one job to the end and return its result."""
    return finish(start(library, job, rlms_python=rlms_python, env=env, cwd=cwd), timeout=timeout)
