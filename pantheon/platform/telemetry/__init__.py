"""Telemetry: GPU load, power rails, CPU, memory and temperatures, sampled at a fixed interval.

One :class:`Sampler` interface, one backend per module (``--telemetry auto|jtop|sysfs|nvml|psutil``):

* :mod:`~pantheon.platform.telemetry.jtop`: the jetson-stats service through ``/run/jtop.sock``
  (AGPL-3.0: imported lazily, only there, only installed by the ``jetson`` extra).
* :mod:`~pantheon.platform.telemetry.sysfs`: a Jetson without jtop; its devfreq GPU load,
  INA3221 power rails and thermal zones, read under ``$PANTHEON_BOARD_ROOT`` (default ``/``).
* :mod:`~pantheon.platform.telemetry.nvml`: desktop NVIDIA GPUs through ``pynvml``, imported lazily.
* :mod:`~pantheon.platform.telemetry.psutil`: everywhere; CPU and memory. Every other backend
  adds these keys too.

:mod:`~pantheon.platform.telemetry.sampler` chooses one (:func:`open_sampler`), samples it on a
monotonic schedule (:class:`TelemetryThread`) and summarises the samples (:func:`summarize`).
``python -m pantheon.platform.telemetry auto 5`` prints five samples as JSON lines.

Sample keys (all floats): ``gpu_load_pct``, ``power_mw`` (board total), ``power_<rail>_mw``,
``cpu_pct``, ``ram_used_mb``, ``temp_<zone>_c``.

Example::

    with open_sampler("auto") as sampler:
        thread = TelemetryThread(sampler, emit=samples.append, interval_s=0.02).start()
        ...
        thread.stop()
    summarize(samples)   # {"n": 500, "mean_power_mw": 7210.0, "mean_gpu_load_pct": 61.3, ...}
"""

from __future__ import annotations

from pantheon.platform.telemetry.base import Sample, Sampler
from pantheon.platform.telemetry.jtop import JtopSampler
from pantheon.platform.telemetry.nvml import NvmlSampler
from pantheon.platform.telemetry.psutil import PsutilSampler
from pantheon.platform.telemetry.sampler import (
    BACKENDS,
    CombinedSampler,
    TelemetryThread,
    open_sampler,
    summarize,
)
from pantheon.platform.telemetry.sysfs import SysfsSampler

__all__ = [
    "BACKENDS", "CombinedSampler", "JtopSampler", "NvmlSampler", "PsutilSampler", "Sample", "Sampler",
    "SysfsSampler", "TelemetryThread", "open_sampler", "summarize",
]
