"""Telemetry: GPU load, power rails, CPU, memory and temperatures, sampled at a fixed interval.

One :class:`Sampler` interface, several backends (``--telemetry auto|jtop|sysfs|nvml|psutil``):

* ``jtop``: the jetson-stats service through its socket ``/run/jtop.sock``. jetson-stats
  is AGPL-3.0: it is imported lazily, only inside this backend, and only installed by
  the ``jetson`` extra.
* ``sysfs``: a Jetson without jtop. GPU load from the devfreq node whose
  ``device/of_node/name`` is ``gv11b``/``gp10b``/``ga10b``/``gpu`` (or
  ``/sys/devices/gpu.0/load``), power rails from the INA3221 monitors found by scanning
  ``/sys/bus/i2c/devices/*/name`` (hwmon ``in{N}_input`` mV x ``curr{N}_input`` mA on
  JetPack 5+, iio ``in_power{N}_input`` mW on JetPack 4), temperatures from
  ``/sys/class/thermal``.
* ``nvml``: desktop NVIDIA GPUs through ``pynvml`` (package ``nvidia-ml-py``), imported lazily.
* ``psutil``: everywhere; CPU and memory. Every other backend adds these keys too.

``auto`` picks the first that works in that order. A jtop socket that exists but cannot
be used (service stopped, permission denied, a directory Docker created in its place)
falls back with one warning line.

Every sysfs/proc path goes through the board root ``$PANTHEON_BOARD_ROOT`` (default
``/``), so tests point it at a fake board root holding the documented layouts.

Sample keys (all floats): ``gpu_load_pct``, ``power_mw`` (board total),
``power_<rail>_mw``, ``cpu_pct``, ``ram_used_mb``, ``temp_<zone>_c``.

Example::

    sampler = open_sampler("auto")
    thread = TelemetryThread(sampler, emit=lambda s: log.write(s), interval_s=0.02)
    thread.start(); ...; thread.stop(); sampler.close()
    summarize(samples)   # {"n": 500, "mean_power_mw": 7210.0, "mean_gpu_load_pct": 61.3, ...}
"""

from __future__ import annotations

import os
import re
import socket
import stat
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Tuple

from pantheon.errors import TelemetryError
from pantheon.platform.jetson import ENV_BOARD_ROOT as ENV_BOARD_ROOT  # re-exported (stand-in roots)
from pantheon.platform.jetson import board_root

BACKENDS = ("auto", "jtop", "sysfs", "nvml", "psutil")
JTOP_SOCKET = "run/jtop.sock"
# devfreq of_node names of the Jetson integrated GPUs (TX2, Xavier, Orin; "gpu" on newer kernels).
GPU_NODE_NAMES = ("gv11b", "gp10b", "ga10b", "gpu")
# The rail that measures the whole module's input power, when the board has one.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")

Sample = Dict[str, float]


def board_path(rel: str) -> Path:
    """``rel`` (e.g. ``"sys/class/devfreq"``) under :func:`board_root`."""
    return board_root() / rel.lstrip("/")


def _key(text: str) -> str:
    """``"VDD_CPU_GPU_CV"`` -> ``"vdd_cpu_gpu_cv"``: sample keys are lower-case identifiers."""
    return re.sub(r"[^0-9a-z]+", "_", text.strip().lower()).strip("_") or "x"


def _read(path: Path) -> str:
    """A sysfs file's text without the trailing NUL/newline of device-tree and sysfs strings."""
    return path.read_bytes().decode(errors="replace").strip("\x00\n\r\t ")


def _read_num(path: Path) -> Optional[float]:
    try:
        return float(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None


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


# ---------------------------------------------------------------------------------------------
# psutil: CPU and memory, everywhere
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# sysfs: Jetson GPU load, INA3221 rails, thermal zones
# ---------------------------------------------------------------------------------------------


def find_gpu_load_file(root: Optional[Path] = None) -> Optional[Path]:
    """The integrated GPU's ``load`` file (per mille), found by scanning devfreq; None if absent."""
    root = root or board_root()
    devfreq = root / "sys/class/devfreq"
    if devfreq.is_dir():
        for node in sorted(devfreq.iterdir()):
            try:
                name = _read(node / "device/of_node/name")
            except OSError:
                continue
            load = node / "device/load"
            if name in GPU_NODE_NAMES and load.is_file():
                return load
    legacy = root / "sys/devices/gpu.0/load"  # Xavier NX and older kernels
    return legacy if legacy.is_file() else None


def _hwmon_rails(hwmon: Path) -> List[Tuple[str, Path, Path]]:
    """``(label, in{N}_input mV, curr{N}_input mA)`` for every labelled, connected channel."""
    rails = []
    for label_file in sorted(hwmon.glob("in*_label")):
        m = re.match(r"in(\d+)_label$", label_file.name)
        label = _read(label_file)
        # Channel 7 is the "sum of shunt voltages" on Orin; "NC" channels are not connected.
        if not m or m.group(1) == "7" or label.upper().startswith("NC") or "sum of shunt" in label.lower():
            continue
        n = m.group(1)
        volts, amps = hwmon / f"in{n}_input", hwmon / f"curr{n}_input"
        if volts.is_file() and amps.is_file():
            rails.append((label, volts, amps))
    return rails


def _iio_rails(iio: Path) -> List[Tuple[str, Path]]:
    """JetPack 4: ``(rail_name_N, in_powerN_input mW)``."""
    rails = []
    for name_file in sorted(iio.glob("rail_name_*")):
        n = name_file.name[len("rail_name_") :]
        power = iio / f"in_power{n}_input"
        if power.is_file():
            rails.append((_read(name_file), power))
    return rails


def find_power_rails(root: Optional[Path] = None) -> Dict[str, Tuple[str, Tuple[Path, ...]]]:
    """Every INA3221 rail: ``{label: ("vi", (volts, amps)) | ("mw", (power,))}``.

    Found by scanning ``sys/bus/i2c/devices/*/name`` for ``ina3221`` (``ina3221x`` on
    JetPack 4), then the device's ``hwmon/hwmon*/`` or ``iio:device*/`` folders.
    """
    root = root or board_root()
    rails: Dict[str, Tuple[str, Tuple[Path, ...]]] = {}
    i2c = root / "sys/bus/i2c/devices"
    if not i2c.is_dir():
        return rails
    for dev in sorted(i2c.iterdir()):
        try:
            if "ina3221" not in _read(dev / "name"):
                continue
        except OSError:
            continue
        for hwmon in sorted(dev.glob("hwmon/hwmon*")):
            for label, volts, amps in _hwmon_rails(hwmon):
                rails.setdefault(label, ("vi", (volts, amps)))
        for iio in sorted(dev.glob("iio:device*")):
            for label, power in _iio_rails(iio):
                rails.setdefault(label, ("mw", (power,)))
    return rails


def find_thermal_zones(root: Optional[Path] = None) -> Dict[str, Path]:
    """``{zone type: temp file}`` from ``sys/class/thermal/thermal_zone*``."""
    root = root or board_root()
    zones: Dict[str, Path] = {}
    for zone in sorted((root / "sys/class/thermal").glob("thermal_zone*")):
        try:
            kind = _read(zone / "type")
        except OSError:
            continue
        if (zone / "temp").is_file():
            zones.setdefault(kind, zone / "temp")
    return zones


def is_jetson(root: Optional[Path] = None) -> bool:
    """True when the board root looks like a Jetson (an L4T release file or a Tegra GPU node)."""
    root = root or board_root()
    return (root / "etc/nv_tegra_release").is_file() or find_gpu_load_file(root) is not None


class SysfsSampler(Sampler):
    """Reads the Jetson's sysfs files directly (no jtop service needed)."""

    name = "sysfs"

    def __init__(self, root: Optional[Path] = None) -> None:
        root = root or board_root()
        self.gpu_load = find_gpu_load_file(root)
        self.rails = find_power_rails(root)
        self.zones = find_thermal_zones(root)
        # sample keys worked out once: sample() runs every 20 ms beside the real-time worker
        self._rail_keys = {label: (f"power_{_key(label)}_mw", label.upper() in TOTAL_RAILS) for label in self.rails}
        self._zone_keys = {kind: f"temp_{_key(kind.replace('-therm', ''))}_c" for kind in self.zones}
        if self.gpu_load is None and not self.rails:
            raise TelemetryError(
                f"no Jetson GPU load node or INA3221 power monitor under {root / 'sys'}: "
                "not a Jetson (or sysfs is not mounted); use --telemetry psutil or nvml"
            )

    def _rail_mw(self, how: str, files: Tuple[Path, ...]) -> Optional[float]:
        if how == "mw":
            return _read_num(files[0])
        volts, amps = (_read_num(f) for f in files)
        if volts is None or amps is None:
            return None
        return volts * amps / 1000.0  # mV x mA = uW -> mW

    def sample(self) -> Sample:
        out: Sample = {}
        if self.gpu_load is not None:
            load = _read_num(self.gpu_load)
            if load is not None:
                out["gpu_load_pct"] = load / 10.0  # the file is per mille
        total, rails_sum, rails_read = None, 0.0, False
        for label, (how, files) in self.rails.items():
            mw = self._rail_mw(how, files)
            if mw is None:
                continue
            key, is_total = self._rail_keys[label]
            out[key] = round(mw, 1)
            rails_sum += out[key]
            rails_read = True
            if is_total:
                total = mw
        if rails_read:
            out["power_mw"] = round(total if total is not None else rails_sum, 1)
        for kind, path in self.zones.items():
            milli = _read_num(path)
            if milli is not None:
                out[self._zone_keys[kind]] = milli / 1000.0
        return out


# ---------------------------------------------------------------------------------------------
# jtop: the jetson-stats service (AGPL-3.0, imported lazily here only)
# ---------------------------------------------------------------------------------------------


def jtop_socket() -> Path:
    return board_path(JTOP_SOCKET)


def check_jtop_socket(path: Optional[Path] = None) -> None:
    """Raise :class:`TelemetryError` saying why ``path`` is not a usable jtop socket."""
    path = path or jtop_socket()
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        raise TelemetryError(f"{path} does not exist: the jtop service is not installed or not running") from None
    if stat.S_ISDIR(mode):
        raise TelemetryError(
            f"{path} is a directory, not the jtop socket (Docker creates one when the host has no "
            "jtop service; mount /run/jtop.sock only when it exists)"
        )
    if not stat.S_ISSOCK(mode):
        raise TelemetryError(f"{path} is not a socket")
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(1.0)
    try:
        s.connect(str(path))
    except OSError as exc:
        hint = " (add the container user to group jtop: --group-add jtop)" if isinstance(exc, PermissionError) else ""
        raise TelemetryError(f"cannot connect to {path}: {exc.strerror or exc}{hint}") from exc
    finally:
        s.close()


_JTOP_VERSIONS = re.compile(r"service[^\[]*\[([^\]]+)\][^\[]*client[^\[]*\[([^\]]+)\]", re.I | re.S)


def jtop_start_problem(message: str, client_version: Optional[str]) -> str:
    """One line for a failed ``jtop.start()``; a client/service version mismatch names the fix.

    jetson-stats refuses a client whose version differs from the host service's ("Mismatch version
    jtop service: [4.2.9] and client: [4.2.12]"): the image must carry the service's version.
    """
    text = " ".join(str(message).split())
    m = _JTOP_VERSIONS.search(text)
    if m or "mismatch version" in text.lower():
        service, client = (m.group(1), m.group(2)) if m else ("?", client_version or "?")
        return (f"jetson-stats {client} here does not match the board's jtop service {service}: install the "
                f"same version (pip install jetson-stats=={service}; images: make image-jetson "
                f"JETSON_STATS_VERSION={service})")
    return f"jtop: {text}"


class JtopSampler(Sampler):
    """Stats from the jetson-stats service, read as its documentation says: each sample waits for
    the service's next update (``jetson.ok()``), so samples come at the service's own interval
    (``min_interval_s``), never faster; ``ok()`` returning False (the service stopped or hangs)
    ends the telemetry with an error instead of repeating the last values."""

    name = "jtop"

    def __init__(self, interval_s: float = 0.1, module: Any = None) -> None:
        check_jtop_socket()
        if module is None:
            try:
                import jtop as module  # AGPL-3.0: imported only here, only when asked for
            except ImportError as exc:
                raise TelemetryError(
                    "the jtop socket exists but jetson-stats is not installed in this environment "
                    "(pip install 'pantheon[jetson]', same version as the host's jtop service)"
                ) from exc
        self.client_version = getattr(module, "__version__", None)
        self._jtop = module.jtop(interval=max(interval_s, 0.1))
        try:
            self._jtop.start()
        except Exception as exc:  # JtopException: service inactive, version mismatch, permission
            raise TelemetryError(jtop_start_problem(str(exc), self.client_version)) from exc
        # The period the service really runs at (the first client sets it; later ones share it).
        periods = [getattr(self._jtop, a, None) for a in ("interval", "_server_interval")]
        self.min_interval_s = max([float(p) for p in periods if isinstance(p, (int, float)) and p > 0] or [0.1])

    def sample(self) -> Sample:
        try:
            alive = self._jtop.ok()
        except Exception as exc:  # the client thread's error (lost connection), re-raised by ok()
            raise TelemetryError(f"jtop: lost the jetson-stats service ({' '.join(str(exc).split())})") from exc
        if not alive:
            raise TelemetryError(
                f"jtop: no update from the jetson-stats service in {3 * self.min_interval_s:.1f} s "
                f"(jetson.ok() is False): it stopped or hangs (sudo systemctl restart jtop.service)"
            )
        return jtop_stats_to_sample(dict(self._jtop.stats))

    def close(self) -> None:
        try:
            self._jtop.close()
        except Exception:  # closing a dead connection is not worth an error
            pass


def jtop_stats_to_sample(stats: Dict[str, Any]) -> Sample:
    """jtop's flat ``stats`` dict (``GPU``, ``Power TOT``, ``Power <rail>``, ``Temp <name>``) -> a sample."""
    out: Sample = {}

    def num(v: Any) -> Optional[float]:
        try:
            return float(v)
        except (TypeError, ValueError):
            return None

    for k, v in stats.items():
        value = num(v)
        if value is None:
            continue
        if k == "GPU":
            out["gpu_load_pct"] = value
        elif k == "Power TOT":
            out["power_mw"] = value
        elif k.startswith("Power "):
            out[f"power_{_key(k[6:])}_mw"] = value
        elif k.startswith("Temp "):
            out[f"temp_{_key(k[5:].replace('-therm', ''))}_c"] = value
    return out


# ---------------------------------------------------------------------------------------------
# NVML: desktop NVIDIA GPUs
# ---------------------------------------------------------------------------------------------


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


# ---------------------------------------------------------------------------------------------
# Choosing a backend
# ---------------------------------------------------------------------------------------------


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
    if os.path.lexists(jtop_socket()):
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


def board_facts() -> Dict[str, Any]:
    """Board model, L4T release, nvpmodel mode and clocks state, read once for the run manifest.

    Delegates to :func:`pantheon.platform.jetson.board_facts` (same board root); never raises.
    """
    from pantheon.platform.jetson import board_facts as _facts

    return _facts()


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


def main(argv: Optional[List[str]] = None) -> int:
    """``python -m pantheon.online.telemetry [BACKEND] [COUNT] [INTERVAL_S]``: print samples as JSON lines.

    A diagnostic for a board or container (which backend is picked, which rails are found).
    """
    import json
    import sys

    args = list(sys.argv[1:] if argv is None else argv)
    backend = args[0] if args else "auto"
    count = int(args[1]) if len(args) > 1 else 5
    interval = float(args[2]) if len(args) > 2 else 0.2
    try:
        sampler = open_sampler(backend)
    except TelemetryError as exc:
        from pantheon import console

        console.error_line(str(exc))
        return 1
    rows: List[Sample] = []
    with sampler:
        thread = TelemetryThread(sampler, emit=rows.append, interval_s=interval).start()
        while len(rows) < count and thread.error is None:
            time.sleep(interval / 4)
        thread.stop()
    for row in rows[:count]:
        print(json.dumps({"backend": sampler.name, **row}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
