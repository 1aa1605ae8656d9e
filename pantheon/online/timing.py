"""How a chunk is timed, the way the runtime runs it: the profiler server and ``pantheon profile --local``.

:func:`time_module` warms a TorchScript module up and times ``repeat`` runs on a random input:
on CUDA as a CUDA-graph replay on a high-priority stream (GPU time, the launch being the
separately measured dispatch overhead), on the CPU as one call with cold caches. The result is
a :class:`Timing` (microseconds). The profiler server answers with these figures and
``pantheon profile --local`` computes them in-process, so both come from this one function.

Example::

    t = time_module(torch.jit.load("block_00.pt"), [1, 3, 32, 32], repeat=50)
    t.mean_us, t.p99_us, t.executor
"""

from __future__ import annotations

import platform
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, List, Optional, Sequence

from pantheon.metrics import percentile


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
        p50_us=percentile(values, 50),
        p99_us=percentile(values, 99),
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
    samples: List[int] = []
    with torch.inference_mode():
        for _ in range(max(0, warmup)):
            module(x)
        for _ in range(repeat):
            flush.add_(1)  # evict the chunk's weights, as the chunks of other jobs do live
            t0 = time.perf_counter_ns()
            module(x)
            samples.append(time.perf_counter_ns() - t0)
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
        stream = torch.cuda.Stream(device=device, priority=torch.cuda.Stream.priority_range()[1])
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
