"""Benchmarks: answer quality (``quality``) and framework cost (``overhead``), side by side with ``rlms``.

- :mod:`rlm_graph.bench.tasks`: seeded task generators and scorers (S-NIAH, OOLONG, structured, smoke).
- :mod:`rlm_graph.bench.quality`: rlm-graph, one plain call, and the reference library on those tasks.
- :mod:`rlm_graph.bench.overhead`: per-iteration cost, fan-out, context load and resume on a
  scripted loopback server (:mod:`rlm_graph.bench.loopback`).
- :mod:`rlm_graph.bench.jobs`: one benchmark job in its own process; the ``rlms`` virtual environment.
- :mod:`rlm_graph.bench.cli`: ``rlm-graph bench quality | overhead``.

Nothing here asserts a number: benchmarks measure and report.
"""
