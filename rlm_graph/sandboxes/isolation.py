"""The worker's bubblewrap sandbox: whether bubblewrap runs here, and the command line it runs under.

:class:`~rlm_graph.sandboxes.local.LocalTransport` puts :func:`_bwrap_argv` in front of the
worker's own command line when its isolation is ``"bwrap"``. From the kernel's namespaces the
worker then gets:

- no network: a network namespace with only a loopback interface of its own, so a server on the
  host's loopback (such as the embedded model server) is out of reach;
- no host processes: its own PID namespace and ``/proc``, so it can't read another process's
  environment;
- a read-only system: ``/usr`` and the worker's Python (its prefix and the venv's) bound
  read-only, a few files of ``/etc`` (not ``/etc/shadow``), nothing of ``/root`` or ``/home``;
- a private ``/tmp`` (an empty tmpfs) and one writable folder, the work dir;
- the contexts in a read-only inbox, so a cell can't change what a replay reloads;
- an unprivileged user (uid 65534) in its own user namespace, with no capabilities and no way
  to create further namespaces; ``--die-with-parent`` ends the whole tree when the host dies.

:func:`bwrap_status` says whether that works on this host (probed once per process), and why not.
"""

from __future__ import annotations

import functools
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from rlm_graph.errors import SandboxError

#: The user the worker runs as inside bubblewrap's user namespace ("nobody").
SANDBOX_UID = 65534

# The parts of /etc a Python worker may want; the rest (shadow, ssh keys, ...) stays hidden.
_ETC_KEEP = (
    "ld.so.cache", "ld.so.conf", "ld.so.conf.d", "alternatives", "passwd", "group", "nsswitch.conf",
    "localtime", "timezone", "mime.types", "ssl", "ca-certificates", "fonts", "os-release", "debian_version",
)  # fmt: skip


@functools.lru_cache(maxsize=1)
def bwrap_status() -> tuple[bool, str]:
    """Whether bubblewrap can run a sandbox here (probed once per process), and why not."""
    exe = shutil.which("bwrap")
    if not exe:
        return False, "bubblewrap (bwrap) is not installed"
    with tempfile.TemporaryDirectory(prefix="rlm-bwrap-probe-") as tmp:
        argv = _bwrap_argv(Path(tmp), Path(tmp), sys.executable, ()) + ["true"]
        try:
            proc = subprocess.run(argv, timeout=15, capture_output=True, text=True)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return False, f"bubblewrap cannot run here ({exc})"
    if proc.returncode != 0:
        return False, f"bubblewrap cannot run here ({proc.stderr.strip()[-300:] or f'exit code {proc.returncode}'})"
    return True, "bubblewrap works"


@functools.lru_cache(maxsize=1)
def _bwrap_supports(flag: str) -> bool:
    try:
        return flag in subprocess.run(["bwrap", "--help"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.TimeoutExpired):
        return False


@functools.lru_cache(maxsize=8)
def _python_roots(python: str) -> tuple[str, ...]:
    """Host folders a Python needs to run and import its packages: its prefixes and venv."""
    if os.path.realpath(python) == os.path.realpath(sys.executable):
        roots = {sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix}
    else:
        code = "import sys; print(sys.prefix, sys.base_prefix, sys.exec_prefix, sys.base_exec_prefix, sep='\\n')"
        try:
            out = subprocess.run([python, "-s", "-c", code], capture_output=True, text=True, timeout=30).stdout
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise SandboxError(f"cannot run the worker's Python {python}: {exc}") from exc
        roots = set(out.split())
    roots.add(str(Path(python).resolve().parent.parent))
    # A venv's python is a link into the base installation: both must be visible.
    return tuple(sorted({os.path.realpath(r) for r in roots if r}))


def _bwrap_argv(
    work_dir: Path, inbox: Path, python: str, ro_paths: Sequence[str | os.PathLike[str]], tmpfs_mb: int = 256
) -> list[str]:
    """The bubblewrap command line that precedes the worker's own."""
    argv = ["bwrap", "--unshare-all", "--unshare-user", "--uid", str(SANDBOX_UID), "--gid", str(SANDBOX_UID)]
    if _bwrap_supports("--disable-userns"):
        argv.append("--disable-userns")
    argv += ["--die-with-parent", "--new-session", "--hostname", "sandbox"]
    # tmpfs lives in RAM outside any rlimit: size it, and make the rest of /dev read-only.
    size = ["--size", str(tmpfs_mb * 1024 * 1024)] if _bwrap_supports("--size") else []
    argv += ["--proc", "/proc", "--dev", "/dev", *size, "--tmpfs", "/dev/shm", "--remount-ro", "/dev"]
    argv += [*size, "--tmpfs", "/tmp"]
    argv += ["--ro-bind", "/usr", "/usr"]
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        path = f"/{name}"
        if os.path.islink(path):  # merged /usr: keep the link
            argv += ["--symlink", os.readlink(path), path]
        elif os.path.isdir(path):
            argv += ["--ro-bind", path, path]
    for name in _ETC_KEEP:
        argv += ["--ro-bind-try", f"/etc/{name}", f"/etc/{name}"]
    system = ("/usr/", "/bin/", "/lib/", "/lib64/")
    for root in (*_python_roots(python), *(os.path.realpath(p) for p in ro_paths)):
        if not (root + "/").startswith(system):
            argv += ["--ro-bind", root, root]
    argv += ["--ro-bind", str(inbox), str(inbox), "--bind", str(work_dir), str(work_dir)]
    # The root bwrap builds is a tmpfs: read-only too, so /tmp and the work dir are the only scratch.
    argv += ["--remount-ro", "/", "--chdir", str(work_dir)]
    return argv
