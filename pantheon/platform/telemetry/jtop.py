"""The ``jtop`` backend: the jetson-stats service, through its socket ``/run/jtop.sock``.

jetson-stats is AGPL-3.0: it is imported lazily, only inside :class:`JtopSampler`, and only
installed by the ``jetson`` extra. The socket is :data:`pantheon.platform.jetson.JTOP_SOCKET`
under the board root; :func:`check_jtop_socket` says in one line why it cannot be used (absent,
a directory Docker created in its place, a stale socket, permission denied).
"""

from __future__ import annotations

import re
import socket
import stat
from pathlib import Path
from typing import Any, Dict, Optional

from pantheon.errors import TelemetryError
from pantheon.platform.jetson import JTOP_SOCKET, board_path
from pantheon.platform.telemetry.base import Sample, Sampler, sample_key


def check_jtop_socket(path: Optional[Path] = None) -> None:
    """Raise :class:`TelemetryError` saying why ``path`` (default: the board's) is not a usable jtop socket."""
    path = path or Path(board_path(JTOP_SOCKET))
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
                import jtop  # AGPL-3.0: imported only here, only when asked for
            except ImportError as exc:
                raise TelemetryError(
                    "the jtop socket exists but jetson-stats is not installed in this environment "
                    "(pip install 'pantheon[jetson]', same version as the host's jtop service)"
                ) from exc
            module = jtop
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
            out[f"power_{sample_key(k[6:])}_mw"] = value
        elif k.startswith("Temp "):
            out[f"temp_{sample_key(k[5:].replace('-therm', ''))}_c"] = value
    return out

