"""Create (or check) the virtual environment that holds the reference library ``rlms``, and run it.

    python bench/rlms_env.py                      # create/check ~/.cache/rlm-graph/rlms-venv, print its python
    python bench/rlms_env.py --venv .bench-venv   # somewhere else
    python bench/rlms_env.py --run job.json       # run one benchmark job with rlms (see rlm_graph/bench/probe.py)

``rlm-graph bench`` does the same on first use; this script is for setting it up ahead of time or
poking at the reference library by hand. ``rlms`` is installed from PyPI with pip, never into
rlm-graph's own environment, and none of its code is copied here.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from rlm_graph.bench import jobs


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--venv", type=Path, default=jobs.DEFAULT_RLMS_VENV)
    p.add_argument("--version", default=jobs.RLMS_VERSION)
    p.add_argument("--run", type=Path, help="a job JSON file to run with rlms; prints its result")
    a = p.parse_args()
    python = jobs.ensure_rlms(a.venv, version=a.version, quiet=False)
    if a.run:
        print(json.dumps(jobs.run("rlms", json.loads(a.run.read_text()), rlms_python=python), indent=1))
    else:
        print(python)
    return 0


if __name__ == "__main__":
    sys.exit(main())
