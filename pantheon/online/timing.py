"""The one timing loop: wall time of calls, round-robin, for the profiler and the benchmarks.

:func:`time_calls` is what every measurement of a module's latency runs: the profiler
server's CPU samples (``time_module``), ``pantheon profile --local`` through it, the zoo
profiles and conv repositories of the benchmarks, and the ``bench/`` scripts. Callers differ
only in what they do with the samples (fastest, median, percentiles) and in the hooks they
pass: ``sync`` to count queued GPU work (``torch.cuda.synchronize``), ``before_sample`` to
evict caches, ``rotate`` and ``budget_s`` for long interleaved comparisons.

Board-safe: no torch import; the hooks bring whatever they need.

Example::

    with torch.inference_mode():
        (a, b) = time_calls([lambda: block(x), lambda: head(y)], repeat=20, warmup=3)
    min(a) / 1000.0   # fastest run of block, microseconds
"""

from __future__ import annotations

import time
from typing import Any, Callable, List, Optional, Sequence

#: Timed rounds run before ``budget_s`` may stop :func:`time_calls`.
MIN_BUDGET_ROUNDS = 3


def time_calls(
    calls: Sequence[Callable[[], Any]],
    repeat: int,
    *,
    warmup: int = 0,
    sync: Optional[Callable[[], Any]] = None,
    before_sample: Optional[Callable[[], Any]] = None,
    rotate: bool = False,
    budget_s: Optional[float] = None,
    on_round: Optional[Callable[[int], Any]] = None,
) -> List[List[int]]:
    """Time each of ``calls`` ``repeat`` times, round-robin; nanoseconds per call.

    The rule: ``warmup`` untimed rounds, then ``repeat`` timed rounds; a round calls every
    callable once, in list order (with ``rotate``, round ``r`` starts at call ``r mod n``,
    warm-up rounds counted, so none is always first). Interleaving means a busy spell of a
    shared machine hits one round of every call, not every round of one call.

    A sample is the ``perf_counter_ns`` wall time of one call. ``sync`` (e.g.
    ``torch.cuda.synchronize``) runs before the clock starts and before it stops, so work
    the call queued on a GPU counts in its own sample; ``before_sample`` runs untimed before
    each timed call (e.g. writing a buffer that evicts the caches). With ``budget_s``, no
    further round starts once ``budget_s`` seconds have passed since the first round began
    and at least :data:`MIN_BUDGET_ROUNDS` timed rounds ran, so lists may be shorter than
    ``repeat``. ``on_round(r)`` is called after each round, warm-up included.

    Args:
        calls: zero-argument callables (bind the module and its input with a lambda).
        repeat: timed rounds (>= 1).

    Returns:
        One list per call, its samples in round order (nanoseconds).

    Raises:
        ValueError: ``repeat`` < 1.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    n = len(calls)
    samples: List[List[int]] = [[] for _ in range(n)]
    warmup = max(0, warmup)
    start = time.perf_counter()
    for r in range(warmup + repeat):
        timed = r >= warmup
        if budget_s is not None and r - warmup >= MIN_BUDGET_ROUNDS and time.perf_counter() - start > budget_s:
            break
        first = r % n if rotate and n else 0
        for i in list(range(first, n)) + list(range(first)):
            if not timed:
                calls[i]()
                continue
            if before_sample is not None:
                before_sample()
            if sync is not None:
                sync()
            t0 = time.perf_counter_ns()
            calls[i]()
            if sync is not None:
                sync()
            samples[i].append(time.perf_counter_ns() - t0)
        if on_round is not None:
            on_round(r)
    return samples
