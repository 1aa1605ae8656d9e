"""The ``psutil`` backend: CPU load and used memory, on any machine.

Every other backend is combined with this one (:class:`~pantheon.platform.telemetry.sampler.CombinedSampler`),
so ``cpu_pct`` and ``ram_used_mb`` are in every sample.
"""

from __future__ import annotations

from pantheon.platform.telemetry.base import Sample, Sampler


class PsutilSampler(Sampler):
    name = "psutil"

    def __init__(self) -> None:
        import psutil

        self._psutil = psutil
        psutil.cpu_percent(interval=None)  # the first call only primes the counters

    def sample(self) -> Sample:
        vm = self._psutil.virtual_memory()
        return {
            "cpu_pct": float(self._psutil.cpu_percent(interval=None)),
            "ram_used_mb": round((vm.total - vm.available) / 2**20, 1),
        }

