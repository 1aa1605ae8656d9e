"""The ``sysfs`` backend: a Jetson's own files, read directly (no jtop service needed).

* GPU load: the devfreq node whose ``device/of_node/name`` is one of
  :data:`~pantheon.platform.jetson.GPU_NODE_NAMES` (``gv11b``/``gp10b``/``ga10b``/``gpu``),
  its ``device/load`` in per mille; ``/sys/devices/gpu.0/load`` on older kernels.
* Power rails: the INA3221 monitors found by scanning ``/sys/bus/i2c/devices/*/name``:
  hwmon ``in{N}_input`` mV x ``curr{N}_input`` mA on JetPack 5+, iio ``in_power{N}_input``
  mW on JetPack 4. ``VDD_IN`` (or ``POM_5V_IN``) is the module's input, i.e. the total.
* Temperatures: ``/sys/class/thermal/thermal_zone*/{type,temp}`` (milli-degrees).

Every path is read under the board root ``$PANTHEON_BOARD_ROOT`` (default ``/``), so tests
point it at a stand-in board root holding these layouts (``tests/fixtures/board_root``; its
values are in these formats, not measurements)::

    sys/class/devfreq/17000000.gv11b/device/of_node/name   gv11b
    sys/class/devfreq/17000000.gv11b/device/load           537      (per mille: 53.7 %)
    sys/bus/i2c/devices/7-0040/name                        ina3221
    sys/bus/i2c/devices/7-0040/hwmon/hwmon4/in1_label      VDD_IN
    sys/bus/i2c/devices/7-0040/hwmon/hwmon4/in1_input      19032    (mV)
    sys/bus/i2c/devices/7-0040/hwmon/hwmon4/curr1_input    392      (mA)
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Dict, List, Optional, Tuple

from pantheon.errors import TelemetryError
from pantheon.platform.jetson import GPU_NODE_NAMES, board_root
from pantheon.platform.telemetry.base import Sample, Sampler, sample_key

# The rail that measures the whole module's input power, when the board has one.
TOTAL_RAILS = ("VDD_IN", "POM_5V_IN")


def _read(path: Path) -> str:
    """A sysfs file's text without the trailing NUL/newline of device-tree and sysfs strings."""
    return path.read_bytes().decode(errors="replace").strip("\x00\n\r\t ")


def _read_num(path: Path) -> Optional[float]:
    try:
        return float(_read(path).split()[0])
    except (OSError, ValueError, IndexError):
        return None



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



class SysfsSampler(Sampler):
    """Reads the Jetson's sysfs files directly (no jtop service needed)."""

    name = "sysfs"

    def __init__(self, root: Optional[Path] = None) -> None:
        root = root or board_root()
        self.gpu_load = find_gpu_load_file(root)
        self.rails = find_power_rails(root)
        self.zones = find_thermal_zones(root)
        # sample keys worked out once: sample() runs every 20 ms beside the real-time worker
        self._rail_keys = {label: (f"power_{sample_key(label)}_mw", label.upper() in TOTAL_RAILS) for label in self.rails}
        self._zone_keys = {kind: f"temp_{sample_key(kind.replace('-therm', ''))}_c" for kind in self.zones}
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

