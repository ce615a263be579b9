"""Run one scripted RLM in a fresh process (LangSmith reads its settings once per process).

    python -m tests.logging.trace_runner BASE_URL

Prints the answer. The test that starts it sets the LANGSMITH_* variables and serves BASE_URL.
"""

from __future__ import annotations

import sys

from rlm_graph import RLM


def main(base_url: str) -> None:
    rlm = RLM("scripted", base_url=base_url, max_retries=0, checkpointer=False, max_depth=1)
    print(rlm.completion("1 2 3 4", "How many numbers?").answer, flush=True)


if __name__ == "__main__":
    main(sys.argv[1])
