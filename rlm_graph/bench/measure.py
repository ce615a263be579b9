"""What a benchmark records besides time: peak memory of a process tree, and the machine it ran on."""

from __future__ import annotations

import os
import platform
import threading
import time
from pathlib import Path
from typing import Any


def _status(pid: int) -> dict[str, int]:
    """VmRSS and VmHWM of ``pid`` in bytes (empty once it has exited)."""
    out: dict[str, int] = {}
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(("VmRSS:", "VmHWM:")):
                key, value = line.split(":", 1)
                out[key] = int(value.split()[0]) * 1024
    except (OSError, ValueError):
        pass
    return out


def _children(pid: int) -> list[int]:
    kids: list[int] = []
    try:
        for task in os.listdir(f"/proc/{pid}/task"):
            text = Path(f"/proc/{pid}/task/{task}/children").read_text()
            kids.extend(int(x) for x in text.split())
    except OSError:
        pass
    return kids


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants alive now."""
    seen, todo = [], [pid]
    while todo:
        p = todo.pop()
        if p in seen:
            continue
        seen.append(p)
        todo.extend(_children(p))
    return seen


class TreeMemory:
    """Sample the resident memory of a process and its descendants until :meth:`stop`.

    ``peak_sum`` is the largest sum of RSS seen in one sample (a lower bound of the true peak).
    ``hwm_sum`` adds each process's own high-water mark (VmHWM) as last seen: an upper bound,
    exact when the processes peak at the same time.
    """

    def __init__(self, pid: int, interval: float = 0.01) -> None:
        self.pid = pid
        self.interval = interval
        self.peak_sum = 0
        self.hwm: dict[int, int] = {}
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.sample()
            self._stop.wait(self.interval)

    def sample(self) -> None:
        total = 0
        for p in process_tree(self.pid):
            st = _status(p)
            total += st.get("VmRSS", 0)
            if st.get("VmHWM"):
                self.hwm[p] = max(self.hwm.get(p, 0), st["VmHWM"])
        self.peak_sum = max(self.peak_sum, total)

    @property
    def hwm_sum(self) -> int:
        return sum(self.hwm.values())

    def start(self) -> "TreeMemory":
        self._thread.start()
        return self

    def stop(self) -> dict[str, Any]:
        self._stop.set()
        self._thread.join()
        return {"peak_rss_bytes": self.peak_sum, "hwm_sum_bytes": self.hwm_sum, "processes": len(self.hwm)}


def machine() -> dict[str, Any]:
    """CPU, cores, memory, OS and Python of this machine, and its load when asked."""
    cpu = platform.processor() or platform.machine()
    mem = 0
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) * 1024
                break
    except OSError:
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "memory_gib": round(mem / 2**30, 1),
        "os": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
        "loadavg": [round(x, 2) for x in os.getloadavg()],
        "date": time.strftime("%Y-%m-%d %H:%M:%S %Z"),
    }


def versions(*names: str) -> dict[str, str | None]:
    """Installed versions of the named distributions (None when missing)."""
    from importlib.metadata import PackageNotFoundError, version

    out: dict[str, str | None] = {}
    for n in names:
        try:
            out[n] = version(n)
        except PackageNotFoundError:
            out[n] = None
    return out


def source_revision() -> dict[str, Any] | None:
    """The git commit rlm-graph runs from, and the files of the package changed since (None outside a checkout)."""
    import subprocess

    root = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=10)
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--", "rlm_graph"], capture_output=True, text=True, timeout=10)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if head.returncode != 0:
        return None
    return {"commit": head.stdout.strip(), "changed": [line[3:] for line in dirty.stdout.splitlines()]}
