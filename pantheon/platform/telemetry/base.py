"""What every telemetry backend is: a :class:`Sampler` returning one :data:`Sample` per call.

Sample keys (all floats): ``gpu_load_pct``, ``power_mw`` (board total), ``power_<rail>_mw``,
``cpu_pct``, ``ram_used_mb``, ``temp_<zone>_c``; a backend leaves out the keys it cannot read.
"""

from __future__ import annotations

import re
from typing import Any, Dict

Sample = Dict[str, float]


def sample_key(text: str) -> str:
    """``"VDD_CPU_GPU_CV"`` -> ``"vdd_cpu_gpu_cv"``: sample keys are lower-case identifiers."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_") or "x"


class Sampler:
    """A telemetry source. ``sample()`` returns one reading; keys a backend lacks are absent."""

    name = "base"
    # The shortest useful sampling period: a source that updates every 0.5 s (the jtop service)
    # gives nothing new when polled every 20 ms; :class:`TelemetryThread` never samples faster.
    min_interval_s = 0.0

    def sample(self) -> Sample:
        raise NotImplementedError

    def close(self) -> None:
        """Release what the backend holds (a jtop connection, NVML)."""

    def __enter__(self) -> Sampler:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

