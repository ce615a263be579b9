"""Build the Docker sandbox image without a registry: ``python -m rlm_graph.sandboxes.docker_image``.

The image is a tiny root filesystem, a few kilobytes, imported with the engine's import endpoint:
``/etc/passwd`` and ``/etc/group`` (root and nobody), empty ``/tmp``, ``/work`` and ``/rlm``, and
the host's top-level links such as ``/bin -> usr/bin``. It holds no Python. Its labels tell
:class:`~rlm_graph.sandboxes.docker.DockerTransport` to bind-mount the host's ``/usr`` (plus
``/lib``, ``/lib64``, ``/bin``, ``/sbin`` where the host has real directories there) read-only
and to run the host's ``/usr/bin/python3``; the worker needs nothing beyond the standard library.

Why this and not the alternatives, for CI on a fresh machine:

- It builds in well under a second and downloads nothing, and a sandbox container is up with its
  worker ready in about 0.2 s.
- A ``debootstrap --variant=minbase --include=python3`` rootfs is self-contained but takes about a
  minute and 260 MB from the Debian mirror on every fresh machine.
- A Dockerfile ``FROM python:3.x-slim`` needs a registry, which these machines cannot reach.

The price: the sandbox sees the host's ``/usr`` read-only (programs and libraries; on a Debian
machine secrets live in the environment, ``/etc``, ``/root`` and ``/home``, none of which is
mounted), and the engine must run on this machine, which the transport needs anyway for its
bind-mounted work directory. Any other image with ``python3`` on its PATH works too, for example
``DockerTransport("python:3.12-slim")`` where a registry is reachable: without these labels the
transport mounts nothing from the host.
"""

from __future__ import annotations

import argparse
import io
import os
import sys
import tarfile
import time
from typing import TYPE_CHECKING, Any

from rlm_graph.errors import SandboxError

if TYPE_CHECKING:
    import docker

#: The image the docker backend uses by default.
IMAGE = "rlm-graph-sandbox:latest"
#: Label naming the host directories to bind-mount read-only (comma-separated absolute paths).
LABEL_HOST_MOUNTS = "org.rlm-graph.host-mounts"
#: Label naming the interpreter that runs the worker inside the container.
LABEL_PYTHON = "org.rlm-graph.python"
#: The unprivileged user the worker runs as when the host runs as root ("nobody").
SANDBOX_UID = 65534

_TOP_LEVEL = ("bin", "lib", "lib32", "lib64", "libx32", "sbin")
_PASSWD = "root:x:0:0:root:/root:/usr/sbin/nologin\nnobody:x:65534:65534:nobody:/work:/usr/sbin/nologin\n"
_GROUP = "root:x:0:\nnogroup:x:65534:\n"


def docker_client(timeout: float = 120.0) -> docker.DockerClient:
    """A client for the local Docker engine, or a SandboxError saying what is missing."""
    try:
        import docker
        from requests.exceptions import RequestException
    except ImportError as exc:
        raise SandboxError("the docker sandbox needs the Docker SDK: pip install 'rlm-graph[docker]'") from exc
    try:
        client = docker.from_env(timeout=int(timeout))
        client.ping()
    except (docker.errors.DockerException, RequestException, OSError) as exc:
        raise SandboxError(
            f"cannot reach the Docker engine ({exc}); start one with scripts/docker-setup.sh, "
            "or point DOCKER_HOST at a local engine"
        ) from exc
    return client


def _rootfs(host_root: str = "/") -> tuple[bytes, list[str]]:
    """The tiny root filesystem as a tar archive, and the host directories it expects mounted."""
    mounts = ["/usr"]
    buf = io.BytesIO()
    now = time.time()
    with tarfile.open(fileobj=buf, mode="w") as tar:

        def add(name: str, kind: bytes, mode: int, data: bytes = b"", link: str = "") -> None:
            info = tarfile.TarInfo(name)
            info.type, info.mode, info.mtime, info.linkname, info.size = kind, mode, now, link, len(data)
            tar.addfile(info, io.BytesIO(data) if data else None)

        for d in ("etc", "usr", "work", "rlm", "proc", "sys", "dev"):
            add(d, tarfile.DIRTYPE, 0o755)
        add("tmp", tarfile.DIRTYPE, 0o1777)
        add("etc/passwd", tarfile.REGTYPE, 0o644, _PASSWD.encode())
        add("etc/group", tarfile.REGTYPE, 0o644, _GROUP.encode())
        for name in _TOP_LEVEL:  # mirror the host: a merged-/usr link stays a link, a real dir is mounted
            path = os.path.join(host_root, name)
            if os.path.islink(path):
                add(name, tarfile.SYMTYPE, 0o777, link=os.readlink(path))
            elif os.path.isdir(path):
                add(name, tarfile.DIRTYPE, 0o755)
                mounts.append("/" + name)
    return buf.getvalue(), mounts


def image_exists(client: docker.DockerClient, name: str = IMAGE) -> bool:
    """True if the engine has an image called ``name``."""
    import docker

    try:
        client.images.get(name)
    except docker.errors.ImageNotFound:
        return False
    return True


def build_image(name: str = IMAGE, *, python: str = "/usr/bin/python3", force: bool = False) -> str:
    """Import the sandbox image into the local engine (no registry, no download); return its id.

    Args:
        name: image name and tag.
        python: the host interpreter the worker will run; it must live under ``/usr``.
        force: rebuild even if the image exists.

    Example::

        from rlm_graph.sandboxes.docker_image import build_image
        build_image()  # then DockerTransport() uses it
    """
    if not os.path.realpath(python).startswith("/usr/") or not os.access(python, os.X_OK):
        raise SandboxError(
            f"the sandbox image runs the host's {python}, which is missing or not under /usr: "
            "install it (apt-get install python3-minimal) or pass python=..."
        )
    client = docker_client()
    try:
        if not force and image_exists(client, name):
            return str(client.images.get(name).id)
        data, mounts = _rootfs()
        repo, tag = name.rsplit(":", 1) if ":" in name.rsplit("/", 1)[-1] else (name, "latest")
        changes = [
            f"LABEL {LABEL_HOST_MOUNTS}={','.join(mounts)} {LABEL_PYTHON}={python}",
            "ENV PATH=/usr/local/bin:/usr/bin:/bin LANG=C.UTF-8",
            "WORKDIR /work",
            f"USER {SANDBOX_UID}:{SANDBOX_UID}",
        ]
        result: Any = client.api.import_image_from_data(data, repository=repo, tag=tag, changes=changes)
        if isinstance(result, dict) and result.get("error"):
            raise SandboxError(f"docker import failed: {result['error']}")
        return str(client.images.get(name).id)
    except SandboxError:
        raise
    except Exception as exc:  # docker.errors.APIError and transport errors
        raise SandboxError(f"could not build the sandbox image {name}: {exc}") from exc
    finally:
        client.close()


def main(argv: list[str] | None = None) -> int:
    """Command line: build the image if it is missing (``--force`` to rebuild)."""
    parser = argparse.ArgumentParser(prog="python -m rlm_graph.sandboxes.docker_image", description=__doc__.splitlines()[0])
    parser.add_argument("--name", default=IMAGE, help=f"image name (default {IMAGE})")
    parser.add_argument("--python", default="/usr/bin/python3", help="host interpreter the worker runs")
    parser.add_argument("--force", action="store_true", help="rebuild even if the image exists")
    args = parser.parse_args(argv)
    try:
        image_id = build_image(args.name, python=args.python, force=args.force)
    except SandboxError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name} {image_id}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
