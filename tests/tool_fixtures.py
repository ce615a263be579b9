"""Host tools for tests/test_tools.py, imported by ``--tools tests.tool_fixtures:TOOLS`` in a subprocess."""

from __future__ import annotations

import os
from pathlib import Path

_API_KEY = "sk-host-only-secret"  # the sandbox must never see this


def record_sale(region: str, amount: int = 1) -> dict:
    """Record a sale and return the region's running total.

    Each call appends a line to $TOOL_LOG, so a test can count the calls.
    """
    log = Path(os.environ["TOOL_LOG"])
    with log.open("a") as f:
        f.write(f"{region} {amount} {_API_KEY[:3]}\n")
    lines = [line.split() for line in log.read_text().splitlines()]
    return {"region": region, "total": sum(int(n) for r, n, _ in lines if r == region), "calls": len(lines)}


TOOLS = {"record_sale": record_sale}
