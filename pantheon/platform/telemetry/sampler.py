"""Choosing a backend, sampling it on a fixed schedule, and summarising the samples.

:func:`open_sampler` opens ``auto|jtop|sysfs|nvml|psutil``: ``auto`` picks the first that
works in that order (jtop when its socket exists, sysfs on a Jetson, NVML, else psutil
alone). A jtop socket that exists but cannot be used (service stopped, permission denied, a
directory Docker created in its place) falls back with one warning line. Every device
backend is combined with psutil's CPU and memory keys.

Example::

    sampler = open_sampler("auto")
    thread = TelemetryThread(sampler, emit=samples.append, interval_s=0.02)
    thread.start(); ...; thread.stop(); sampler.close()
    summarize(samples)   # {"n": 500, "mean_power_mw": 7210.0, "mean_gpu_load_pct": 61.3, ...}
"""

from __future__ import annotations

import os
import threading
import time
from typing import Any, Callable, Dict, Iterable, List, Optional

from pantheon.errors import TelemetryError
from pantheon.platform.jetson import JTOP_SOCKET, board_path, is_jetson
from pantheon.platform.telemetry.base import Sample, Sampler
from pantheon.platform.telemetry.jtop import JtopSampler
from pantheon.platform.telemetry.nvml import NvmlSampler
from pantheon.platform.telemetry.psutil import PsutilSampler
from pantheon.platform.telemetry.sysfs import SysfsSampler

BACKENDS = ("auto", "jtop", "sysfs", "nvml", "psutil")


class CombinedSampler(Sampler):
    """A device backend (jtop/sysfs/nvml) plus psutil's CPU and memory keys."""

    def __init__(self, device: Optional[Sampler], host: PsutilSampler) -> None:
        self.device, self.host = device, host
        self.name = device.name if device is not None else host.name
        self.min_interval_s = device.min_interval_s if device is not None else host.min_interval_s

    def sample(self) -> Sample:
        out = self.host.sample()
        if self.device is not None:
            out.update(self.device.sample())
        return out

    def close(self) -> None:
        if self.device is not None:
            self.device.close()



def _open_device(backend: str, warn: Callable[[str], None]) -> Optional[Sampler]:
    if backend == "jtop":
        return JtopSampler()
    if backend == "sysfs":
        return SysfsSampler()
    if backend == "nvml":
        return NvmlSampler()
    if backend == "psutil":
        return None
    # auto: jtop if its socket is there, then sysfs on a Jetson, then NVML, then psutil only.
    if os.path.lexists(board_path(JTOP_SOCKET)):
        try:
            return JtopSampler()
        except TelemetryError as exc:
            fallback = "sysfs" if is_jetson() else "psutil"
            warn(f"telemetry: jtop unavailable ({exc}); falling back to {fallback}")
    if is_jetson():
        try:
            return SysfsSampler()
        except TelemetryError:
            pass
    try:
        return NvmlSampler()
    except TelemetryError:
        return None


def open_sampler(backend: str = "auto", warn: Optional[Callable[[str], None]] = None) -> Sampler:
    """Open a telemetry sampler.

    Args:
        backend: ``auto`` (jtop -> sysfs -> nvml -> psutil), or one of those names to insist on it.
        warn: where the one fallback warning line goes (default: the console's warning line).

    Returns:
        A :class:`Sampler` whose ``name`` is the device backend in use.

    Raises:
        TelemetryError: an explicitly requested backend is unavailable (one line saying why),
            or an unknown backend name.

    Example::

        with open_sampler("auto") as s:
            print(s.name, s.sample())   # psutil {'cpu_pct': 3.1, 'ram_used_mb': 2210.4}
    """
    if backend not in BACKENDS:
        raise TelemetryError(f"unknown telemetry backend {backend!r}: choose one of {', '.join(BACKENDS)}")
    if warn is None:
        from pantheon import console

        warn = console.warn
    return CombinedSampler(_open_device(backend, warn), PsutilSampler())


class TelemetryThread:
    """Samples ``sampler`` every ``interval_s`` seconds on a monotonic schedule and calls ``emit``.

    Ticks fall at ``start + k * interval_s``; a tick that is already past when the previous
    one finishes is skipped rather than run late (no bursts). The period is never shorter than
    the sampler's ``min_interval_s`` (jtop: the service's interval). ``emit`` gets the sample dict
    (the runtime adds ``t`` and ``ev``). An exception in ``emit`` or ``sample`` stops the
    thread, is kept in ``error`` and is reported once through ``warn`` (default: the console's
    warning line), so a dead source is never silent.

    Example::

        t = TelemetryThread(open_sampler(), emit=samples.append, interval_s=0.02)
        t.start(); time.sleep(1); t.stop()
    """

    def __init__(self, sampler: Sampler, emit: Callable[[Sample], None], interval_s: float = 0.02,
                 warn: Optional[Callable[[str], None]] = None) -> None:
        if not interval_s > 0:
            raise TelemetryError(f"telemetry interval must be positive, got {interval_s}")
        self.sampler, self.emit = sampler, emit
        self.interval_s = max(float(interval_s), float(getattr(sampler, "min_interval_s", 0.0) or 0.0))
        self.warn = warn
        self.error: Optional[BaseException] = None
        self.count = 0
        self.skipped = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="pantheon-telemetry", daemon=True)

    def start(self) -> TelemetryThread:
        self._thread.start()
        return self

    def stop(self, timeout: float = 2.0) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> TelemetryThread:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop()

    def _run(self) -> None:
        t0 = time.monotonic()
        k = 0
        while not self._stop.is_set():
            try:
                self.emit(self.sampler.sample())
            except BaseException as exc:  # keep it for the caller; a dead sensor must not kill the run
                self.error = exc
                self._report(exc)
                return
            self.count += 1
            k += 1
            now = time.monotonic()
            behind = int((now - t0) / self.interval_s) - k
            if behind >= 0:  # the sample took longer than an interval: skip the ticks we missed
                self.skipped += behind + 1
                k += behind + 1
            self._stop.wait(max(0.0, t0 + k * self.interval_s - time.monotonic()))


    def _report(self, exc: BaseException) -> None:
        warn = self.warn
        if warn is None:
            from pantheon import console

            warn = console.warn
        try:
            warn(f"telemetry stopped after {self.count} samples: {' '.join(str(exc).split()) or type(exc).__name__}")
        except Exception:  # reporting must not raise in the sampling thread
            pass


def _mean(values: List[float]) -> Optional[float]:
    return round(sum(values) / len(values), 3) if values else None


def summarize(samples: Iterable[Dict[str, Any]]) -> Dict[str, Any]:
    """Summary of telemetry samples (dicts as emitted, or ``telemetry`` log lines).

    Returns ``{"n", "mean_power_mw", "max_power_mw", "mean_gpu_load_pct", "max_gpu_load_pct",
    "mean_cpu_pct", "max_ram_used_mb", "energy_j"}``; a value is None when no sample had
    its key. ``energy_j`` integrates ``power_mw`` over ``t`` (microseconds, trapezoids)
    when the samples carry ``t``.
    """
    rows = [s for s in samples if s.get("ev", "telemetry") == "telemetry"]

    def col(key: str) -> List[float]:
        return [float(s[key]) for s in rows if isinstance(s.get(key), (int, float))]

    power, gpu = col("power_mw"), col("gpu_load_pct")
    timed = [(float(s["t"]), float(s["power_mw"])) for s in rows if "t" in s and "power_mw" in s]
    energy = None
    if len(timed) >= 2:
        timed.sort()
        energy = sum((t1 - t0) * 1e-6 * (p0 + p1) / 2 * 1e-3 for (t0, p0), (t1, p1) in zip(timed, timed[1:]))
        energy = round(energy, 4)
    ram = col("ram_used_mb")
    return {
        "n": len(rows),
        "mean_power_mw": _mean(power),
        "max_power_mw": max(power) if power else None,
        "mean_gpu_load_pct": _mean(gpu),
        "max_gpu_load_pct": max(gpu) if gpu else None,
        "mean_cpu_pct": _mean(col("cpu_pct")),
        "max_ram_used_mb": max(ram) if ram else None,
        "energy_j": energy,
    }
