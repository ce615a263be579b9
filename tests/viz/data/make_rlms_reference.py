"""How ``rlms_reference.jsonl`` was made: the reference ``rlms`` library (0.1.3) run against the
scripted OpenAI-compatible server, writing with its own ``RLMLogger``. Not run by the tests (they
must not need ``rlms``); rerun it by hand to refresh the fixture::

    python -m venv /tmp/rlmsvenv && /tmp/rlmsvenv/bin/pip install rlms==0.1.3
    PYTHONPATH=. /tmp/rlmsvenv/bin/python tests/viz/data/make_rlms_reference.py OUT_DIR

The run: 3 root iterations; the second asks a child RLM (2 iterations of its own) and a sub-model.
"""

from __future__ import annotations

import sys

from rlm import RLM  # type: ignore[import-not-found]
from rlm.logger import RLMLogger  # type: ignore[import-not-found]

from tests.scripted_server import ScriptedServer

FENCE = "```"
SCRIPT = [
    f"Let me look at the data first.\n{FENCE}repl\nwords = context.split()\nprint(len(words), words[:5])\n{FENCE}",
    (
        f"Now ask a helper and a sub-model.\n{FENCE}repl\nhalf = rlm_query('Count the words in: ' + ' '.join(words[:10]))\n"
        f"kind = llm_query('Is this a list of numbers? ' + ' '.join(words[:5]))\nprint(half, kind)\n{FENCE}"
    ),
    # the child RLM's two turns (its system prompt mentions the REPL too, so it reads this script)
    f"{FENCE}repl\nn = len(context.split())\nprint(n)\n{FENCE}",
    f"{FENCE}repl\nanswer['content'] = str(n)\nanswer['ready'] = True\n{FENCE}",
    # back at the root
    f"The helper agrees. Done.\n{FENCE}repl\nanswer['content'] = str(len(words))\nanswer['ready'] = True\n{FENCE}",
]


def main(out_dir: str) -> None:
    srv = ScriptedServer(SCRIPT, sub=lambda p: "yes").start()
    try:
        rlm = RLM(
            backend="openai",
            backend_kwargs={"model_name": "scripted", "base_url": srv.base_url, "api_key": "none"},
            environment="local",
            max_depth=2,
            max_iterations=6,
            logger=RLMLogger(log_dir=out_dir),
        )
        print(rlm.completion(" ".join(str(i) for i in range(20)), root_prompt="How many numbers are there?").response)
    finally:
        srv.stop()


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "reference-logs")
