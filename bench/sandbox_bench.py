"""Measure each sandbox backend: start time, cell round trip, context load time, worker memory.

    python bench/sandbox_bench.py                      # every backend that can run here
    python bench/sandbox_bench.py --backends local,bwrap --sizes-mb 100

Backends: ``local`` (isolation none), ``bwrap`` (local under bubblewrap), ``docker`` (needs an
engine and the image: scripts/docker-setup.sh), ``e2b`` (the real SDK against the fake envd of
tests/sandboxes/fake_e2b.py on this machine: it measures the transport, not E2B's network) and
``modal`` (the real SDK with the stand-in of tests/sandboxes/fake_modal.py for its sandbox: the
transport's own cost, not Modal's network).

Per backend: the start time (a new worker until it says ready; median of ``--starts``), the round
trip of a trivial cell (median and p90 of ``--cells``), the time to load a text context of each
size (the files are written to /tmp and deleted after), and the worker's resident memory when idle
and at its peak (VmRSS and VmHWM from /proc: a container's, the fake envd's or the Modal stand-in's
worker is a process of this machine too). Prints a markdown table; writes bench/results/sandbox.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from rlm_graph.errors import SandboxError
from rlm_graph.sandboxes.base import Transport
from rlm_graph.sandboxes.protocol import CellResult
from rlm_graph.sandboxes.session import SandboxSession

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results" / "sandbox.json"
BACKENDS = ("local", "bwrap", "docker", "e2b", "modal")
LINE = "the quick brown fox jumps over the lazy dog 0123456789 abcdefgh\n"  # 64 characters


def _factory(name: str, stack: ExitStack, memory_mb: int) -> Callable[[], Transport]:
    """A zero-argument transport maker for ``name``, or SandboxError if it cannot run here."""
    if name in ("local", "bwrap"):
        from rlm_graph.sandboxes.local import LocalTransport, bwrap_status

        if name == "bwrap" and not bwrap_status()[0]:
            raise SandboxError(bwrap_status()[1])
        isolation = "none" if name == "local" else "bwrap"
        return lambda: LocalTransport(isolation=isolation, memory_mb=memory_mb)
    if name == "docker":
        from rlm_graph.sandboxes.docker import DockerTransport
        from rlm_graph.sandboxes.docker_image import IMAGE, docker_client, image_exists

        client = docker_client()
        try:
            if not image_exists(client, IMAGE):
                raise SandboxError(f"no image {IMAGE}: run scripts/docker-setup.sh")
        finally:
            client.close()
        return lambda: DockerTransport(memory_mb=memory_mb)
    if name == "e2b":
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))  # for tests.sandboxes.fake_e2b
        try:
            from tests.sandboxes.fake_e2b import FakeEnvd
        except ImportError as exc:
            raise SandboxError(f"the fake envd needs the test extras: {exc}") from exc
        from rlm_graph.sandboxes.e2b import E2BTransport

        stack.enter_context(FakeEnvd())
        os.environ["E2B_DEBUG"] = "true"
        box = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rlm-bench-e2b-")))
        counter = iter(range(1_000_000))
        return lambda: E2BTransport(work_dir=str(box / f"sbx{next(counter)}"))
    if name == "modal":
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))  # for tests.sandboxes.fake_modal
        try:
            from tests.sandboxes.conftest import modal_stand_in
        except ImportError as exc:
            raise SandboxError(f"the Modal stand-in needs the test extras: {exc}") from exc
        from rlm_graph.sandboxes.modal import ModalTransport

        box = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="rlm-bench-modal-")))
        stack.enter_context(modal_stand_in(box))
        counter = iter(range(1_000_000))
        return lambda: ModalTransport(work_dir=str(box / f"sbx{next(counter)}"), memory_mb=memory_mb)
    raise SandboxError(f"unknown backend {name}")


def _worker_pid(transport: Transport | None) -> int | None:
    """The host pid of the worker process itself (not bwrap, not the container's init)."""
    container = getattr(transport, "_container", None)
    if container is not None:
        container.reload()
        return int(container.attrs["State"]["Pid"])  # the boot script execs the worker: same pid
    handle = getattr(transport, "_handle", None)
    if handle is not None:
        return int(handle.pid)  # the fake envd runs it as a process of this machine
    proc = getattr(transport, "_proc", None)
    if proc is None:
        return None
    proc = getattr(proc, "proc", proc)  # the Modal stand-in's process wraps a local Popen
    pid = proc.pid
    while True:  # under bubblewrap the worker is the last of a chain of children
        try:
            kids = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
        except OSError:
            return pid
        if not kids:
            return pid
        pid = int(kids[0])


def _memory_mb(pid: int | None) -> dict[str, float | None]:
    fields: dict[str, float | None] = {"rss_mb": None, "peak_rss_mb": None}
    if pid is None:
        return fields
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                fields["rss_mb"] = round(int(line.split()[1]) / 1024, 1)
            elif line.startswith("VmHWM:"):
                fields["peak_rss_mb"] = round(int(line.split()[1]) / 1024, 1)
    except OSError:
        pass
    return fields


@contextmanager
def _context_file(size_mb: int) -> Iterator[Path]:
    """A text file of ``size_mb`` MiB in /tmp, deleted afterwards."""
    fd, name = tempfile.mkstemp(prefix=f"rlm-bench-{size_mb}mb-", suffix=".txt", dir="/tmp")
    block = (LINE * (1024 * 1024 // len(LINE))).encode()
    try:
        with os.fdopen(fd, "wb") as f:
            for _ in range(size_mb):
                f.write(block)
        os.chmod(name, 0o644)
        yield Path(name)
    finally:
        os.unlink(name)


def _cell(session: SandboxSession, index: int, code: str) -> CellResult:
    out = session.step(index, code)
    if not isinstance(out, CellResult) or out.error:
        raise SandboxError(f"cell {index} failed: {out}")
    return out


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 2)


def bench_backend(name: str, *, starts: int, cells: int, sizes_mb: list[int], memory_mb: int) -> dict[str, Any]:
    row: dict[str, Any] = {"backend": name}
    with ExitStack() as stack:
        factory = _factory(name, stack, memory_mb)
        # Start: warm once (imports, a first probe), then time fresh workers.
        warm = SandboxSession(factory)
        warm.start()
        warm.close()
        times = []
        for _ in range(starts):
            session = SandboxSession(factory)
            t0 = time.perf_counter()
            session.start()
            times.append(time.perf_counter() - t0)
            session.close()
        row["start_ms_median"] = _ms(statistics.median(times))
        row["start_ms_min"] = _ms(min(times))

        session = SandboxSession(factory, cell_timeout=600)
        session.start()
        try:
            row.update({f"idle_{k}": v for k, v in _memory_mb(_worker_pid(session.transport)).items()})
            row["worker_python"] = _cell(session, 0, "import sys\nprint(sys.executable, sys.version.split()[0])").stdout.strip()
            trips = []
            for i in range(1, cells + 1):
                t0 = time.perf_counter()
                _cell(session, i, "1")
                trips.append(time.perf_counter() - t0)
            trips.sort()
            row["cell_ms_median"] = _ms(statistics.median(trips))
            row["cell_ms_p90"] = _ms(trips[int(0.9 * (len(trips) - 1))])
        finally:
            session.close()

        for size in sizes_mb:
            with _context_file(size) as path:
                session = SandboxSession(factory, cell_timeout=600)
                session.start()
                try:
                    t0 = time.perf_counter()
                    meta = session.load_context(path, "text")
                    row[f"load_{size}mb_s"] = round(time.perf_counter() - t0, 3)
                    row[f"load_{size}mb_worker_s"] = meta.get("load_seconds")
                    t0 = time.perf_counter()
                    out = _cell(session, 0, "context.count('fox')")
                    row[f"scan_{size}mb_s"] = round(time.perf_counter() - t0, 3)
                    assert out.stdout.strip() == str(size * 16384), out.stdout
                    mem = _memory_mb(_worker_pid(session.transport))
                    row[f"peak_rss_{size}mb_mb"] = mem["peak_rss_mb"]
                except SandboxError as exc:
                    row[f"load_{size}mb_s"] = None
                    row[f"load_{size}mb_error"] = str(exc)[:300]
                finally:
                    session.close()
    return row


def _table(rows: list[dict[str, Any]], sizes_mb: list[int]) -> str:
    cols = [("backend", "backend"), ("start_ms_median", "start ms"), ("cell_ms_median", "cell ms (p50)"),
            ("cell_ms_p90", "cell ms (p90)"), ("idle_rss_mb", "idle RSS MB")]  # fmt: skip
    for size in sizes_mb:
        label = f"{size} MB" if size < 1024 else f"{size // 1024} GB"
        cols += [(f"load_{size}mb_s", f"load {label} s"), (f"scan_{size}mb_s", f"count() {label} s"),
                 (f"peak_rss_{size}mb_mb", f"peak RSS {label} MB")]  # fmt: skip
    lines = ["| " + " | ".join(c[1] for c in cols) + " |", "|" + "---|" * len(cols)]
    for row in rows:
        if row.get("skipped"):
            lines.append(f"| {row['backend']} | skipped: {row['skipped']} |" + " |" * (len(cols) - 2))
            continue
        cells = ["-" if row.get(k) is None else str(row[k]) for k, _ in cols]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backends", default=",".join(BACKENDS), help="comma-separated, from " + ", ".join(BACKENDS))
    parser.add_argument("--starts", type=int, default=10, help="worker starts timed per backend")
    parser.add_argument("--cells", type=int, default=200, help="trivial cells timed per backend")
    parser.add_argument("--sizes-mb", default="100,1024", help="context sizes in MiB")
    parser.add_argument("--memory-mb", type=int, default=6144, help="worker memory limit (a 1 GB context needs ~2.2 GB)")
    parser.add_argument("--out", type=Path, default=RESULTS)
    args = parser.parse_args(argv)
    sizes = [int(s) for s in args.sizes_mb.split(",") if s]
    rows = []
    for name in [b.strip() for b in args.backends.split(",") if b.strip()]:
        print(f"benchmarking {name} ...", file=sys.stderr, flush=True)
        try:
            rows.append(bench_backend(name, starts=args.starts, cells=args.cells, sizes_mb=sizes, memory_mb=args.memory_mb))
        except SandboxError as exc:
            print(f"  skipped: {exc}", file=sys.stderr)
            rows.append({"backend": name, "skipped": str(exc)[:300]})
    report = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "machine": {"cpus": os.cpu_count(), "kernel": platform.release(), "python": platform.python_version()},
        "settings": {"starts": args.starts, "cells": args.cells, "sizes_mb": sizes, "memory_mb": args.memory_mb},
        "rows": rows,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=2) + "\n")
    print(_table(rows, sizes))
    for row in rows:
        if row.get("worker_python"):
            print(f"- {row['backend']}: the worker runs {row['worker_python']}")
    print(f"\nwritten: {args.out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
