"""The ``nvml`` backend: desktop NVIDIA GPUs through ``pynvml`` (package ``nvidia-ml-py``), imported lazily."""

from __future__ import annotations

from pantheon.errors import TelemetryError
from pantheon.platform.telemetry.base import Sample, Sampler


class NvmlSampler(Sampler):
    """GPU 0 through NVML (``pip install nvidia-ml-py``; part of the ``offline`` extra)."""

    name = "nvml"

    def __init__(self, index: int = 0) -> None:
        try:
            import pynvml
        except ImportError as exc:
            raise TelemetryError("NVML telemetry needs pynvml: pip install nvidia-ml-py") from exc
        self._nv = pynvml
        try:
            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
        except pynvml.NVMLError as exc:
            raise TelemetryError(f"NVML is not usable here: {exc} (no NVIDIA driver or GPU {index})") from exc

    def sample(self) -> Sample:
        nv, h = self._nv, self._handle
        out: Sample = {}
        try:
            out["gpu_load_pct"] = float(nv.nvmlDeviceGetUtilizationRates(h).gpu)
            out["power_mw"] = float(nv.nvmlDeviceGetPowerUsage(h))
            out["temp_gpu_c"] = float(nv.nvmlDeviceGetTemperature(h, nv.NVML_TEMPERATURE_GPU))
            out["gpu_mem_used_mb"] = round(nv.nvmlDeviceGetMemoryInfo(h).used / 2**20, 1)
        except nv.NVMLError:
            pass  # e.g. power readings unsupported on this card: keep what we got
        return out

    def close(self) -> None:
        try:
            self._nv.nvmlShutdown()
        except Exception:
            pass
