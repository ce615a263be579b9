"""Benchmarks: answer quality (``quality``) and framework cost (``overhead``), side by side with ``rlms``.

- :mod:`rlm_graph.bench.tasks`: seeded task suites (S-NIAH, OOLONG, structured, smoke).
- :mod:`rlm_graph.bench.families`: the generalisation families (needle, logs, tables, judge, sets,
  multihop, oolong) with a dev split and a test split.
- :mod:`rlm_graph.bench.scoring`: the scorers; :mod:`rlm_graph.bench.scoreboard`: per-family scores.
- :mod:`rlm_graph.bench.quality`: rlm-graph, one plain call, and the reference library on those tasks.
- :mod:`rlm_graph.bench.overhead`: per-iteration cost, fan-out, context load and resume on a
  scripted loopback server (:mod:`rlm_graph.bench.loopback`).
- :mod:`rlm_graph.bench.jobs`: one benchmark job in its own process; the ``rlms`` virtual environment.
- :mod:`rlm_graph.bench.cli`: ``rlm-graph bench quality | scores | overhead``.

Nothing here asserts a number: benchmarks measure and report.
"""

from pathlib import Path

# The choices the ``bench`` parser offers, here so that building the ``rlm-graph`` parser imports
# no benchmark module (``rlm-graph --help`` stays fast).

#: Methods ``bench quality`` can score.
METHODS = ("rlm", "base", "rlms")

#: Scenarios ``bench overhead`` can measure.
SCENARIOS = ("iterations", "fanout", "context", "resume", "checkpoints")

#: The PostgreSQL ``bench overhead`` uses (skipped when unreachable).
DEFAULT_POSTGRES = "postgresql://postgres@127.0.0.1:5432/test"

#: Libraries the benchmarks compare.
LIBRARIES = ("rlm-graph", "rlms")

#: Where the reference library's own virtual environment is made (see :mod:`rlm_graph.bench.jobs`).
DEFAULT_RLMS_VENV = Path("~/.cache/rlm-graph/rlms-venv").expanduser()

#: A task slower than this (seconds) counts as over the time budget (``bench quality``, ``bench scores``).
SLOW_SECONDS = 300.0
