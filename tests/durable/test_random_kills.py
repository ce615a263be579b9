"""50 seeded trials: SIGKILL or SIGTERM the runner at a random moment, resume, check nothing was lost.

"Lost" is a cell or an answer that had been saved and is not in the final run, or a model call
made again although its answer had been saved. A call in flight at the moment of the kill has
no saved answer and is made again: no runner can avoid that without the provider's help.
"""

from __future__ import annotations

import json
import os
import random
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from tests.durable.test_kill_resume import Harness, _wait

#: 16 in the default suite (about a minute); `make test-slow` runs the 50 of the reliability report.
TRIALS = int(os.environ.get("RLM_GRAPH_KILL_TRIALS", "16"))


def _trial(seed: int, root: Path) -> str | None:
    rng = random.Random(seed)
    tmp = root / f"trial-{seed}"
    tmp.mkdir()
    h = Harness(tmp, sleep=0.3)
    try:
        proc = h.run()
        time.sleep(rng.uniform(0.5, 6.0))
        if proc.poll() is None:
            os.kill(proc.pid, rng.choice([signal.SIGKILL, signal.SIGTERM]))
        _wait(proc)
        saved = h.saved()
        code, out, err = _wait(h.run(resume=True))
        if code != 0:
            return f"seed {seed}: resume failed: {err[-800:]}"
        result = json.loads(out)
        if result["answer"] != "20" or result["stopped_by"] != "final":
            return f"seed {seed}: wrong result {result['answer']!r} ({result['stopped_by']})"
        # A call whose answer was in flight when the process died is made again (its answer was
        # never saved); one whose answer had been saved must never be.
        repeated = h.repeated_after_save(saved)
        if repeated:
            return f"seed {seed}: calls repeated although saved: {repeated}"
        cells = result["cells"]
        if cells < 4:
            return f"seed {seed}: lost cells ({cells})"
        return None
    finally:
        h.close()


def test_random_kills_never_lose_work_or_repeat_calls(tmp_path: Path) -> None:
    with ThreadPoolExecutor(max_workers=4) as pool:
        failures = [f for f in pool.map(lambda s: _trial(s, tmp_path), range(TRIALS)) if f]
    assert not failures, "\n".join(failures)
