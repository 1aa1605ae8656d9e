"""Platform facts of a Jetson board: L4T release, model, power modes, clocks, base images.

One function per fact, each overridable by an environment variable, each parser
with a real sample of its input quoted above it. Local readers look under
``$PANTHEON_BOARD_ROOT`` (default ``/``) so tests can point them at a stand-in
board root; ``pantheon-deploy`` builds the same paths for the remote side with
:func:`board_path` and :func:`command_path`.

Board commands (``nvpmodel``, ``jetson_clocks``) live at fixed places on L4T:
``/usr/sbin/nvpmodel`` and ``/usr/bin/jetson_clocks``. With a board root other
than ``/`` they are looked up as ``$PANTHEON_BOARD_ROOT/usr/sbin/nvpmodel`` and
``$PANTHEON_BOARD_ROOT/usr/bin/jetson_clocks``; with ``/`` the plain name is run
(through ``sudo -n`` where it needs root), so the code path is the same.

Example::

    parse_nv_tegra_release("# R35 (release), REVISION: 3.1, GCID: 32790763, BOARD: t186ref, ...")
    # -> "35.3.1"
    l4t_pytorch_base_for("35.4.1")   # -> "dustynv/l4t-pytorch:r35.4.1"
    image_compatible("35.3.1", "35.2.1")   # -> True (any r35 image runs on an r35 host)
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pantheon.errors import BoardError, UsageError

ENV_BOARD_ROOT = "PANTHEON_BOARD_ROOT"
ENV_L4T = "PANTHEON_L4T_VERSION"  # override of the board's release; L4T_VERSION (jetson-containers) too
ENV_MODEL = "PANTHEON_BOARD_MODEL"
ENV_BASE_IMAGE = "PANTHEON_L4T_BASE_IMAGE"  # forces the l4t-pytorch base chosen for any release
ENV_NVPMODEL = "PANTHEON_NVPMODEL"  # "MODE_20W_6CORE:8": the host's mode, passed into containers
ENV_CLOCKS = "PANTHEON_JETSON_CLOCKS"  # "1"/"0": clocks pinned on the host, passed into containers

# Image label carrying the L4T release of the base an image was built FROM (set by Dockerfile.jetson
# from its L4T_VERSION build argument); `pantheon-deploy` compares it with the board before running.
L4T_LABEL = "org.pantheon.l4t"

NV_TEGRA_RELEASE = "/etc/nv_tegra_release"
DEVICE_TREE_MODEL = "/proc/device-tree/model"
JTOP_SOCKET = "/run/jtop.sock"  # the jetson-stats service's socket (under the board root: board_path)
# devfreq of_node names of the Jetson integrated GPUs (TX2, Xavier, Orin; "gpu" on newer kernels).
GPU_NODE_NAMES = ("gv11b", "gp10b", "ga10b", "gpu")

# Where L4T installs the board commands (absolute, so sudo's secure_path does not matter).
COMMAND_DIRS = {"nvpmodel": "/usr/sbin", "jetson_clocks": "/usr/bin"}

# L4T release -> JetPack (NVIDIA's release tables).
JETPACK = {
    "32.7.1": "4.6.1",
    "32.7.4": "4.6.4",
    "35.1.0": "5.0.2",
    "35.2.1": "5.1",
    "35.3.1": "5.1.1",
    "35.4.1": "5.1.2",
    "35.5.0": "5.1.3",
    "35.6.0": "5.1.4",
    "36.2.0": "6.0 DP",
    "36.3.0": "6.0",
    "36.4.0": "6.1",
    "36.4.3": "6.2",
}

# PyTorch base images we know to exist, per L4T release: NVIDIA's NGC l4t-pytorch for JetPack 5.1
# (PyTorch 2.0) and the jetson-containers community builds for later releases.
L4T_PYTORCH_BASES = {
    "35.2.1": "nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3",
    "35.4.1": "dustynv/l4t-pytorch:r35.4.1",
    "36.2.0": "dustynv/l4t-pytorch:r36.2.0",
    "36.4.0": "dustynv/l4t-pytorch:r36.4.0",
}
DEFAULT_R35_BASE = L4T_PYTORCH_BASES["35.2.1"]


# --------------------------------------------------------------------------------------------
# Paths under the board root
# --------------------------------------------------------------------------------------------


def board_root() -> Path:
    """``$PANTHEON_BOARD_ROOT`` or ``/``: where platform files are read (a stand-in root in tests)."""
    return Path(os.environ.get(ENV_BOARD_ROOT) or "/")


def board_path(path: str, root: Optional[str] = None) -> str:
    """``/etc/nv_tegra_release`` under ``root`` (a string, so it also serves remote paths).

    Example: ``board_path("/etc/nv_tegra_release", "/tmp/fake")`` -> ``/tmp/fake/etc/nv_tegra_release``.
    """
    root = str(board_root()) if root is None else (root or "/")
    if root in ("", "/"):
        return path
    return root.rstrip("/") + "/" + path.lstrip("/")


def command_path(name: str, root: Optional[str] = None) -> str:
    """How to invoke board command ``name``: the plain name, or its L4T location under a board root."""
    root = str(board_root()) if root is None else (root or "/")
    if root in ("", "/"):
        return name
    return board_path(f"{COMMAND_DIRS.get(name, '/usr/bin')}/{name}", root)


def _read(path: str) -> Optional[str]:
    try:
        return Path(board_path(path)).read_text(errors="replace")
    except OSError:
        return None


# --------------------------------------------------------------------------------------------
# L4T release and board model
# --------------------------------------------------------------------------------------------

# First line of /etc/nv_tegra_release on JetPack 5.1.1 (Xavier NX):
#   # R35 (release), REVISION: 3.1, GCID: 32790763, BOARD: t186ref, EABI: aarch64, DATE: Fri Mar 17 22:36:03 UTC 2023
# and on JetPack 6.2:
#   # R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, DATE: Wed Jan  8 01:49:37 UTC 2025
_NV_TEGRA_RE = re.compile(r"#\s*R(\d+)\s*\(release\),\s*REVISION:\s*(\d+)(?:\.(\d+))?")


def parse_nv_tegra_release(text: str) -> Optional[str]:
    """``/etc/nv_tegra_release`` contents -> ``"35.3.1"``; None when it is not one."""
    m = _NV_TEGRA_RE.search(text or "")
    if not m:
        return None
    return f"{int(m.group(1))}.{int(m.group(2))}.{int(m.group(3) or 0)}"


# `dpkg-query --show nvidia-l4t-core` on JetPack 5.1.1:
#   nvidia-l4t-core	35.3.1-20230319081403
_DPKG_RE = re.compile(r"(?:^|\s)(\d+)\.(\d+)\.(\d+)-\d+")


def l4t_from_dpkg(text: str) -> Optional[str]:
    """``dpkg-query --show nvidia-l4t-core`` output -> ``"35.3.1"``; None when the package is absent."""
    m = _DPKG_RE.search(text or "")
    return f"{int(m.group(1))}.{int(m.group(2))}.{int(m.group(3))}" if m else None


def l4t_release() -> Optional[str]:
    """This board's L4T release: ``$PANTHEON_L4T_VERSION``/``$L4T_VERSION``, the release file, dpkg."""
    for env in (ENV_L4T, "L4T_VERSION"):
        value = os.environ.get(env)
        if value:
            return normalize_release(value)
    text = _read(NV_TEGRA_RELEASE)
    if text is not None:
        rel = parse_nv_tegra_release(text)
        if rel:
            return rel
    if str(board_root()) == "/" and shutil.which("dpkg-query"):
        try:
            out = subprocess.run(
                ["dpkg-query", "--show", "nvidia-l4t-core"], capture_output=True, text=True, timeout=10
            )
            return l4t_from_dpkg(out.stdout) if out.returncode == 0 else None
        except (OSError, subprocess.SubprocessError):
            return None
    return None


# /proc/device-tree/model on a Xavier NX dev kit (NUL-terminated):
#   NVIDIA Jetson Xavier NX Developer Kit\0
def parse_device_tree_model(text: str) -> Optional[str]:
    """The device-tree model string without its trailing NUL; None when empty."""
    model = (text or "").replace("\x00", "").strip()
    return model or None


def board_model() -> Optional[str]:
    """``$PANTHEON_BOARD_MODEL`` or ``/proc/device-tree/model``; None off a device-tree board."""
    value = os.environ.get(ENV_MODEL)
    if value:
        return value
    for path in (DEVICE_TREE_MODEL, HOST_MODEL):  # the second: the host's, mounted by compose
        text = _read(path)
        model = parse_device_tree_model(text) if text is not None else None
        if model:
            return model
    return None


def is_jetson() -> bool:
    """True when this machine (or its stand-in root) is a Jetson: an L4T release can be read, or
    the board root has a Jetson GPU devfreq node (a container that sees sysfs but not the release).

    Never raises: a malformed ``$PANTHEON_L4T_VERSION`` says nothing about the hardware.
    """
    try:
        if l4t_release() is not None:
            return True
    except UsageError:
        pass
    return find_gpu_devfreq(board_root()) is not None


def jtop_socket() -> Optional[str]:
    """The jtop service socket when it exists (mount it into containers only then)."""
    p = board_path(JTOP_SOCKET)
    return p if os.path.exists(p) else None


# --------------------------------------------------------------------------------------------
# Versions, JetPack, base images and compatibility
# --------------------------------------------------------------------------------------------


def release_tuple(release: Optional[str]) -> Optional[Tuple[int, int, int]]:
    """``"r35.3.1"``/``"35.3.1"``/``"35.3"`` -> ``(35, 3, 1)``; None when unparsable."""
    if not release:
        return None
    m = re.match(r"^\s*[rR]?(\d+)(?:\.(\d+))?(?:\.(\d+))?", str(release))
    if not m:
        return None
    return int(m.group(1)), int(m.group(2) or 0), int(m.group(3) or 0)


def _dotted(t: Tuple[int, int, int]) -> str:
    return ".".join(str(x) for x in t)


def normalize_release(release: str) -> str:
    """``"r35.3"`` -> ``"35.3.0"``; a value that is no release is a usage error."""
    t = release_tuple(release)
    if t is None:
        raise UsageError(f"{release!r} is not an L4T release (expected e.g. 35.3.1)")
    return _dotted(t)


def jetpack_for(release: Optional[str]) -> Optional[str]:
    """The JetPack version of an L4T release, when known."""
    t = release_tuple(release)
    return JETPACK.get(_dotted(t)) if t else None


def l4t_pytorch_base_for(release: str) -> str:
    """The l4t-pytorch base image that runs on a board with L4T ``release``.

    ``$PANTHEON_L4T_BASE_IMAGE`` overrides. An exact match from :data:`L4T_PYTORCH_BASES` wins;
    any r35 board takes NVIDIA's r35.2.1 PyTorch 2.0 image (r35 hosts run any r35 image); r36
    boards take the image on their side of 36.4. Older or unknown releases raise
    :class:`BoardError` naming ``--base-image`` as the way out.

    Example: ``l4t_pytorch_base_for("35.3.1")`` -> ``nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3``
    """
    override = os.environ.get(ENV_BASE_IMAGE)
    if override:
        return override
    t = release_tuple(release)
    if t is None:
        raise BoardError(f"cannot choose a base image: {release!r} is not an L4T release")
    key = _dotted(t)
    if key in L4T_PYTORCH_BASES:
        return L4T_PYTORCH_BASES[key]
    if t[0] == 35:
        return DEFAULT_R35_BASE
    if t[0] == 36:
        return L4T_PYTORCH_BASES["36.4.0"] if t[:2] >= (36, 4) else L4T_PYTORCH_BASES["36.2.0"]
    if t[0] < 35:
        raise BoardError(
            f"L4T r{key} (JetPack {jetpack_for(key) or '4.x'}) is too old: Pantheon needs PyTorch 2.0, "
            f"i.e. JetPack 5.1+ (L4T r35); upgrade the board or pass --base-image"
        )
    raise BoardError(f"no known l4t-pytorch base for L4T r{key}; pass --base-image IMAGE built for it")


def image_compatible(host_release: Optional[str], image_release: Optional[str]) -> bool:
    """Whether an image built for ``image_release`` can use the GPU on a ``host_release`` board.

    Rules (jetson-containers): an r35 host runs any r35 image; r36 images need the same side
    of 36.4 as the host; any other pair must match exactly. Unknown releases are incompatible.
    """
    h, i = release_tuple(host_release), release_tuple(image_release)
    if h is None or i is None or h[0] != i[0]:
        return False
    if h[0] == 35:
        return True
    if h[0] == 36:
        return (h[:2] >= (36, 4)) == (i[:2] >= (36, 4))
    return h == i


def compatibility_problem(host_release: Optional[str], image_release: Optional[str], image: str,
                          board: str = "--board BOARD") -> Optional[str]:
    """None when compatible, else one line naming the mismatch and the base to build from.

    ``board`` is the ``--board ...`` part of the suggested ``pantheon-deploy build`` command.
    """
    import shlex

    build = f"pantheon-deploy build {board} --tag {shlex.quote(image)}"
    if not image_release or release_tuple(image_release) is None:
        return (f"image {image} carries no {L4T_LABEL} label (built FROM a base without an L4T release): "
                f"rebuild it on the board with {build}")
    if host_release is None:
        return None  # not a Jetson: the caller decides (CPU trials)
    if image_compatible(host_release, image_release):
        return None
    try:
        base = l4t_pytorch_base_for(host_release)
        fix = f"rebuild on the board with {build} (base {base})"
    except BoardError as exc:
        fix = str(exc)
    return (
        f"image {image} was built for L4T r{normalize_release(image_release)} but the board runs "
        f"r{normalize_release(host_release)}: torch would not see the GPU; {fix}"
    )


# --------------------------------------------------------------------------------------------
# nvpmodel
# --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class PowerMode:
    id: int
    name: str

    def __str__(self) -> str:
        return f"{self.name} ({self.id})"


@dataclass
class PowerModes:
    modes: List[PowerMode] = field(default_factory=list)
    default: Optional[PowerMode] = None

    def resolve(self, id_or_name: str) -> PowerMode:
        """A mode by id (``"8"``) or name (``"MODE_20W_6CORE"``, case-insensitive).

        Raises :class:`UsageError` listing this board's modes when there is no such mode.
        """
        text = str(id_or_name).strip()
        for mode in self.modes:
            if text.isdigit() and mode.id == int(text):
                return mode
            if mode.name.lower() == text.lower():
                return mode
        known = ", ".join(f"{m.id}={m.name}" for m in self.modes) or "none listed"
        raise UsageError(f"no power mode {text!r} on this board; its modes: {known}")


# `nvpmodel -q` on Xavier NX (a NVPM WARN line may come first):
#   NVPM WARN: fan mode is not set!
#   NV Power Mode: MODE_20W_6CORE
#   8
# `nvpmodel -q --verbose` puts it as "NVPM VERB: Current mode: NV Power Mode: MODE_15W_6CORE" then "2".
_NVP_NAME_RE = re.compile(r"NV Power Mode:\s*(\S+)")


def parse_nvpmodel_query(text: str) -> Optional[PowerMode]:
    """``nvpmodel -q`` output -> the active :class:`PowerMode`; None when not found."""
    lines = (text or "").splitlines()
    for i, line in enumerate(lines):
        m = _NVP_NAME_RE.search(line)
        if not m:
            continue
        for nxt in lines[i + 1 :]:
            if nxt.strip().isdigit():
                return PowerMode(int(nxt.strip()), m.group(1))
        return None
    return None


# `nvpmodel -p --verbose` (excerpt, Jetson TX2; one POWER_MODEL line per mode, NVPM VERB prefixes):
#   NVPM VERB: Config file: /etc/nvpmodel.conf
#   NVPM VERB: parsing done for /etc/nvpmodel.conf
#   NVPM VERB: POWER_MODEL: ID=0 NAME=MAXN
#   NVPM VERB: PARAM CPU_ONLINE: ARG CORE_0: PATH /sys/devices/system/cpu/cpu0/online: REAL_VAL: 1 CONF_VAL: 1
#   ...
#   NVPM VERB: PM_CONFIG: DEFAULT=MAXP_CORE_ARM(3)
# (`nvpmodel -q --verbose` prints the same PM_CONFIG line; a Xavier NX lists IDs 0..8, 8 = MODE_20W_6CORE.)
_NVP_MODEL_RE = re.compile(r"POWER_MODEL:\s*ID=(\d+)\s+NAME=(\S+)")
_NVP_DEFAULT_RE = re.compile(r"PM_CONFIG:\s*DEFAULT=(\S+?)\((\d+)\)")


def parse_nvpmodel_modes(text: str) -> PowerModes:
    """``nvpmodel -p --verbose`` output -> the board's modes (by id) and its default mode."""
    modes: Dict[int, PowerMode] = {}
    default = None
    for line in (text or "").splitlines():
        m = _NVP_MODEL_RE.search(line)
        if m:
            modes.setdefault(int(m.group(1)), PowerMode(int(m.group(1)), m.group(2)))
        d = _NVP_DEFAULT_RE.search(line)
        if d:
            default = PowerMode(int(d.group(2)), d.group(1))
    return PowerModes(modes=[modes[k] for k in sorted(modes)], default=default)


# --------------------------------------------------------------------------------------------
# jetson_clocks
# --------------------------------------------------------------------------------------------

# `sudo jetson_clocks --show` on AGX Orin (excerpt):
#   SOC family:tegra234  Machine:Jetson AGX Orin
#   Online CPUs: 0-11
#   cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
#   GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
#   EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0
#   FAN Dynamic Speed control=active hwmon2_pwm1=55
#   NV Power Mode: MAXN
# (Orin Nano prints "cpu0:  Governor=..." without Online=.)
_KV_RE = re.compile(r"(\w+)=(\S+)")


def _pairs(text: str) -> Dict[str, str]:
    return {k: v for k, v in _KV_RE.findall(text)}


def _freqs(kv: Dict[str, str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for key, name in (("MinFreq", "min"), ("MaxFreq", "max"), ("CurrentFreq", "current")):
        if key in kv and kv[key].isdigit():
            out[name] = int(kv[key])
    return out


def parse_jetson_clocks_show(text: str) -> Dict[str, Any]:
    """``jetson_clocks --show`` output -> ``{"cpus", "gpu", "emc", "power_mode", "locked"}``.

    ``locked`` is True when the GPU and every online CPU run with MinFreq == MaxFreq (what
    ``jetson_clocks`` does); None when the output holds no clock lines.
    """
    cpus: Dict[str, Dict[str, Any]] = {}
    gpu: Dict[str, Any] = {}
    emc: Dict[str, Any] = {}
    power_mode = None
    for raw in (text or "").splitlines():
        line = raw.strip()
        m = re.match(r"cpu(\d+):(.*)$", line)
        if m:
            kv = _pairs(m.group(2).split("IdleStates:")[0])
            entry = _freqs(kv)
            entry["online"] = kv.get("Online", "1") == "1"
            if "Governor" in kv:
                entry["governor"] = kv["Governor"]
            cpus[m.group(1)] = entry
        elif line.startswith("GPU MinFreq"):
            gpu = _freqs(_pairs(line))
        elif line.startswith("EMC MinFreq"):
            kv = _pairs(line)
            emc = _freqs(kv)
            if "FreqOverride" in kv:
                emc["override"] = kv["FreqOverride"] == "1"
        else:
            pm = _NVP_NAME_RE.search(line)
            if pm:
                power_mode = pm.group(1)
    pinned = [c for c in cpus.values() if c.get("online")] + ([gpu] if gpu else [])
    locked: Optional[bool] = None
    if pinned:
        locked = all("min" in c and c.get("min") == c.get("max") for c in pinned)
    return {"cpus": cpus, "gpu": gpu, "emc": emc, "power_mode": power_mode, "locked": locked}


# --------------------------------------------------------------------------------------------
# Local facts, read once (telemetry and bench manifests)
# --------------------------------------------------------------------------------------------


def board_command(name: str) -> Optional[str]:
    """The executable of board command ``name`` here (under the board root), None when absent."""
    path = command_path(name)
    if os.path.isabs(path):
        return path if os.access(path, os.X_OK) else None
    return shutil.which(name, path=os.environ.get("PATH", "") + os.pathsep + "/usr/sbin:/sbin")


def _run_quiet(argv: List[str], timeout: float = 5.0) -> Optional[str]:
    try:
        out = subprocess.run(argv, capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.SubprocessError):
        return None
    return out.stdout if out.returncode == 0 else None


def power_mode() -> Optional[PowerMode]:
    """The active nvpmodel mode (``$PANTHEON_NVPMODEL`` = ``NAME:ID`` overrides); None off Jetson."""
    env = os.environ.get(ENV_NVPMODEL)
    if env and ":" in env:
        name, _, ident = env.rpartition(":")
        if ident.isdigit():
            return PowerMode(int(ident), name)
    exe = board_command("nvpmodel")
    text = _run_quiet([exe, "-q"]) if exe else None
    return parse_nvpmodel_query(text) if text else None


def clocks() -> Optional[Dict[str, Any]]:
    """``jetson_clocks --show`` parsed (needs root on a real board); None when unavailable.

    ``$PANTHEON_JETSON_CLOCKS`` (``1``/``0``, set by pantheon-deploy for containers, which
    cannot run the host's jetson_clocks) gives only ``{"locked": ...}``.
    """
    env = os.environ.get(ENV_CLOCKS)
    if env in ("0", "1"):
        return {"locked": env == "1", "source": ENV_CLOCKS}
    exe = board_command("jetson_clocks")
    text = _run_quiet([exe, "--show"]) if exe else None
    return parse_jetson_clocks_show(text) if text else None


# Host files a container cannot see where the host has them (Docker masks /proc/device-tree, and nvpmodel
# is not in the image): compose's bench/runtime services mount them read-only here (see compose.yaml).
HOST_FACTS_DIR = "/run/pantheon/host"
HOST_MODEL = HOST_FACTS_DIR + "/device-tree-model"  # <- /proc/device-tree/model
HOST_NVPMODEL_STATUS = HOST_FACTS_DIR + "/nvpmodel-status"  # <- /var/lib/nvpmodel/status ("pmode:0008 ...")
HOST_NVPMODEL_CONF = HOST_FACTS_DIR + "/nvpmodel.conf"  # <- /etc/nvpmodel.conf (mode names)

_PMODE_RE = re.compile(r"pmode:\s*0*(\d+)")
_CONF_MODE_RE = re.compile(r"<\s*POWER_MODEL\s+ID=(\d+)\s+NAME=(\S+?)\s*>")


def host_power_mode() -> Optional[PowerMode]:
    """The host's mode from its mounted ``/var/lib/nvpmodel/status`` (+ names from ``/etc/nvpmodel.conf``)."""
    status = _read(HOST_NVPMODEL_STATUS)
    m = _PMODE_RE.search(status or "")
    if not m:
        return None
    names = dict(_CONF_MODE_RE.findall(_read(HOST_NVPMODEL_CONF) or ""))
    return PowerMode(int(m.group(1)), names.get(m.group(1), f"mode {int(m.group(1))}"))


def _sysfs_khz(path: Path) -> Optional[int]:
    try:
        return int(path.read_text().strip())
    except (OSError, ValueError):
        return None


def clock_values() -> Dict[str, Any]:
    """The clocks as they are (sysfs, readable without root and inside containers): per online CPU and
    for the GPU ``{"cur", "min", "max"}`` (CPU kHz, GPU Hz); ``locked`` when every min equals its max."""
    root = board_root()
    out: Dict[str, Any] = {"cpus": {}, "gpu": {}}
    for d in sorted((root / "sys/devices/system/cpu").glob("cpu[0-9]*/cpufreq")):
        vals = {k: _sysfs_khz(d / f"scaling_{k}_freq") for k in ("cur", "min", "max")}
        if any(v is not None for v in vals.values()):
            out["cpus"][d.parent.name] = vals
    gpu = find_gpu_devfreq(root)
    if gpu is not None:
        out["gpu"] = {k: _sysfs_khz(gpu / f"{k}_freq") for k in ("cur", "min", "max")}
    entries = list(out["cpus"].values()) + ([out["gpu"]] if out["gpu"] else [])
    out["locked"] = (all(e.get("min") is not None and e.get("min") == e.get("max") for e in entries)
                     if entries else None)
    return out


def find_gpu_devfreq(root: Path) -> Optional[Path]:
    """The GPU's devfreq folder (one of :data:`GPU_NODE_NAMES` in its name or of_node)."""
    for d in sorted((root / "sys/class/devfreq").glob("*")):
        name = d.name.split(".")[-1]
        node = (_read_text(d / "device/of_node/name") or "").strip("\x00\n ")
        if name in GPU_NODE_NAMES or node in GPU_NODE_NAMES:
            return d
    return None


def _read_text(path: Path) -> Optional[str]:
    try:
        return path.read_text(errors="replace")
    except OSError:
        return None


def software_versions() -> Dict[str, Any]:
    """Kernel, Python, torch (+ its CUDA and cuDNN), CUDA toolkit, TensorRT and every installed Python
    distribution (a ``pip freeze``, from package metadata). Never raises; absent pieces are None."""
    import platform
    import sys

    try:
        from importlib import metadata
    except ImportError:  # pragma: no cover - Python < 3.8
        metadata = None  # type: ignore[assignment]
    out: Dict[str, Any] = {"kernel": platform.release(), "python": platform.python_version()}
    torch = sys.modules.get("torch")  # only when the caller already imported it (it is slow to import)
    out["torch"] = getattr(torch, "__version__", None) if torch else None
    out["torch_cuda"] = getattr(getattr(torch, "version", None), "cuda", None) if torch else None
    try:
        out["cudnn"] = torch.backends.cudnn.version() if torch and torch.backends.cudnn.is_available() else None
    except Exception:  # a broken CUDA install must not break a manifest
        out["cudnn"] = None
    cuda = _read("/usr/local/cuda/version.json") or _read("/usr/local/cuda/version.txt")
    m = re.search(r'"cuda"\s*:\s*\{[^}]*"version"\s*:\s*"([^"]+)"|CUDA Version (\S+)', cuda or "")
    out["cuda"] = (m.group(1) or m.group(2)) if m else None
    packages: Dict[str, str] = {}
    if metadata is not None:
        for dist in metadata.distributions():
            names = dist.metadata.get_all("Name") if dist.metadata else None
            name = names[0] if names else ""
            if name:
                packages[name.lower()] = dist.version
    out["tensorrt"] = packages.get("tensorrt")
    out["packages"] = dict(sorted(packages.items()))
    # The image, as baked in by the Dockerfiles (and the digest pantheon-deploy/compose pass at run time).
    out["image"] = {key: os.environ.get(env) or None for key, env in (
        ("base", "PANTHEON_BASE_IMAGE"), ("base_digest", "PANTHEON_BASE_DIGEST"),
        ("commit", "PANTHEON_GIT_COMMIT"), ("digest", "PANTHEON_IMAGE_DIGEST"))}
    return out


def board_facts() -> Dict[str, Any]:
    """Everything above in one JSON-able dict, for run and bench manifests. Never raises.

    In a container, what the host alone can tell comes from pantheon-deploy's environment variables
    (``PANTHEON_BOARD_MODEL``, ``PANTHEON_NVPMODEL``, ``PANTHEON_JETSON_CLOCKS``) or, under compose,
    from the host files mounted at ``/run/pantheon/host``; clock values come from sysfs either way.
    """
    try:
        release = l4t_release()
    except UsageError:
        release = None
    try:
        mode = (power_mode() or host_power_mode()) if release else None
        clk = clocks() if release else None
        values = clock_values() if release else None
    except Exception:  # never raises: a manifest without these beats no manifest
        mode, clk, values = None, None, None
    locked = clk.get("locked") if clk else (values or {}).get("locked")
    return {
        "model": board_model(),
        "l4t": release,
        "jetpack": jetpack_for(release),
        "nvpmodel": {"id": mode.id, "name": mode.name} if mode else None,
        "jetson_clocks": locked,
        "clock_values": values,
        "jtop_socket": jtop_socket() is not None,
        "software": software_versions(),
    }
