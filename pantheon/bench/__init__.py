"""Benchmarks: what ``pantheon bench`` and the ``bench/*.py`` scripts measure, and the paper's numbers.

* :mod:`pantheon.bench.suite` - ``pantheon bench --app APP``: the reproducible benchmark the
  board image runs (live policies next to the simulator, scheduler latency, dispatch overhead,
  telemetry), written as one results folder with its environment.
* :mod:`pantheon.bench.benchmarks` - the reusable measurements: scheduler decision latency,
  dispatch overhead, preemption wait, policy tables, zoo-measured paper profiles.
* :mod:`pantheon.bench.paper` - the paper's per-task latencies and accuracies and the exit
  accuracy model they are scaled with.

Top of the stack: it may import ``online/``, ``analysis/`` and (lazily) ``offline/``, ``zoo/``
and ``deploy/``; nothing below imports it. Board-safe at import time (core dependencies only).
"""
