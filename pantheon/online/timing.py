"""How a chunk is timed, the way the runtime runs it: the profiler server and ``pantheon profile --local``.

:func:`time_module` warms a TorchScript module up and times ``repeat`` runs on a random input:
on CUDA as a CUDA-graph replay on a high-priority stream (GPU time, the launch being the
separately measured dispatch overhead), on the CPU as one call with cold caches. The result is
a :class:`Timing` (microseconds). The profiler server answers with these figures and
``pantheon profile --local`` computes them in-process, so both come from this one function.

:func:`time_calls` is the one wall-clock timing loop: round-robin over zero-argument calls,
nanoseconds per call. ``time_module``'s CPU samples, the benchmarks' zoo profiles and conv
repositories (:mod:`pantheon.bench.benchmarks`) and the ``bench/`` scripts all run it; they
differ only in what they keep of the samples (fastest, median, percentiles) and in the hooks
they pass: ``sync`` to count queued GPU work (``torch.cuda.synchronize``), ``before_sample`` to
evict caches, ``rotate`` and ``budget_s`` for long interleaved comparisons. (CUDA samples of
``time_module`` are CUDA-event intervals of back-to-back replays, not wall time.)

Example::

    t = time_module(torch.jit.load("block_00.pt"), [1, 3, 32, 32], repeat=50)
    t.mean_us, t.p99_us, t.executor
    with torch.inference_mode():
        a, b = time_calls([lambda: block(x), lambda: head(y)], repeat=20, warmup=3)
    min(a) / 1000.0   # fastest run of block, microseconds
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, List, Optional, Sequence

from pantheon.metrics import percentile_nonempty

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



@dataclass
class Timing:
    """Latency statistics of one module, in microseconds."""

    mean_us: float
    p50_us: float
    p99_us: float
    max_us: float
    min_us: float
    repeat: int
    warmup: int
    device: str
    executor: str = "eager"  # "cuda-graph" or "eager": how the chunk was run
    fallback_reason: str = ""  # why a CUDA chunk ran eager
    dispatch_overhead_us: Optional[float] = None  # the runtime's per-chunk cost on this device


def stats_us(samples_ns: Sequence[float], warmup: int, device: str, executor: str = "eager",
             fallback_reason: str = "") -> Timing:
    values = sorted(s / 1000.0 for s in samples_ns)
    return Timing(
        mean_us=sum(values) / len(values),
        p50_us=percentile_nonempty(values, 50),
        p99_us=percentile_nonempty(values, 99),
        max_us=values[-1],
        min_us=values[0],
        repeat=len(values),
        warmup=warmup,
        device=device,
        executor=executor,
        fallback_reason=fallback_reason,
    )


def pick_device() -> Any:
    """CUDA when present (the board), else CPU."""
    import torch

    return torch.device("cuda:0") if torch.cuda.is_available() else torch.device("cpu")


def device_name(device: Any = None) -> str:
    import torch

    device = device or pick_device()
    if device.type == "cuda":
        return f"cuda ({torch.cuda.get_device_name(device)})"
    return f"cpu ({platform.machine()}, {torch.get_num_threads()} threads)"


def time_module(module: Any, input_shape: Sequence[int], *, warmup: int = 10, repeat: int = 100, device: Any = None,
                cuda_graphs: bool = True) -> Timing:
    """Warm ``module`` up, then time ``repeat`` runs on a random input of ``input_shape``,
    the way the runtime runs chunks.

    On CUDA the module is captured as a CUDA graph (:func:`pantheon.online.graphs.capture`;
    eager when capture fails or ``cuda_graphs`` is False) and run back to back on a
    high-priority stream, each run bracketed by CUDA events: a graph's sample is its GPU
    time (input copied in, replay, output copied out), since the runtime's CPU cost of
    launching it is the separately measured dispatch overhead. The stream is held by a
    spin kernel while the runs are queued so the CPU stays ahead of the GPU. An eager
    run is timed without that hold: its launch cost is part of what it costs. On the
    CPU each sample is the wall time of one call made with cold caches: the runtime runs
    a chunk after other chunks (other tasks' weights) went through the caches, which made
    live chunks 1.3-2x slower than back-to-back calls of the same chunk, so a buffer the
    size of the last-level cache is written between samples (:func:`cache_flush_bytes`).

    Example::

        t = time_module(torch.jit.load("block_00.pt"), [1, 3, 32, 32], repeat=50)
        t.mean_us, t.p99_us, t.executor
    """
    import torch

    device = device or pick_device()
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    shape = [int(d) for d in input_shape]
    if device.type == "cuda":
        return _time_cuda(module, shape, warmup, repeat, device, cuda_graphs)
    x = torch.randn(*shape, device=device)
    flush = torch.zeros(cache_flush_bytes(), dtype=torch.uint8)
    with torch.inference_mode():
        # before each sample, evict the chunk's weights, as the chunks of other jobs do live
        (samples,) = time_calls([lambda: module(x)], repeat, warmup=warmup, before_sample=lambda: flush.add_(1))
    return stats_us(samples, warmup, device_name(device))


def cache_flush_bytes() -> int:
    """Bytes written between two CPU samples: the largest CPU cache (sysfs), 8-64 MiB."""
    sizes = []
    for f in Path("/sys/devices/system/cpu/cpu0/cache").glob("index*/size"):
        try:
            text = f.read_text().strip().upper()
            sizes.append(int(text[:-1]) * {"K": 1 << 10, "M": 1 << 20}[text[-1]] if text[-1] in "KM" else int(text))
        except (OSError, ValueError, KeyError, IndexError):
            continue
    return int(min(max(max(sizes, default=32 << 20), 8 << 20), 64 << 20))


def _time_cuda(module: Any, shape: List[int], warmup: int, repeat: int, device: Any, cuda_graphs: bool) -> Timing:
    import torch

    from pantheon.online import graphs

    chunk, executor, reason = module, "eager", "" if cuda_graphs else "cuda graphs off"
    with torch.cuda.device(device):
        if cuda_graphs:
            try:
                chunk, executor = graphs.capture(module, shape), "cuda-graph"
            except Exception as exc:  # timed eager, as the runtime would run it
                reason = graphs.reason(exc)
        # priority_range is a staticmethod, but torch's stub declares it on the instance
        stream = torch.cuda.Stream(device=device, priority=torch.cuda.Stream.priority_range()[1])  # type: ignore[call-arg]
        x = torch.randn(*shape, device=device)
        events = [torch.cuda.Event(enable_timing=True) for _ in range(repeat + 1)]
        with torch.inference_mode(), torch.cuda.stream(stream):
            for _ in range(max(1, warmup)):
                chunk(x)
            stream.synchronize()
            if executor == "cuda-graph":
                torch.cuda._sleep(int(2e7 + 5e4 * repeat))  # GPU spin (~25 us a run): the queue fills meanwhile
            events[0].record(stream)
            for i in range(repeat):
                chunk(x)
                events[i + 1].record(stream)
            stream.synchronize()
    samples = [events[i].elapsed_time(events[i + 1]) * 1e6 for i in range(repeat)]  # ms -> ns
    return stats_us(samples, warmup, device_name(device), executor, reason)
