"""Helpers shared by the benchmark scripts: machine description and JSON output.

Every ``bench/<name>.py`` accepts ``--json`` (print the result as JSON on stdout)
and ``--save`` (also write ``bench/results/<name>.json``), and puts
:func:`machine_info` in its result so recorded figures name the machine.
"""

from __future__ import annotations

import datetime as _dt
import json
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any, Dict

RESULTS = Path(__file__).resolve().parent / "results"


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _git_commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=Path(__file__).resolve().parent,
            capture_output=True,
            text=True,
            timeout=5,
        )
        return out.stdout.strip() or "unknown"
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def machine_info() -> Dict[str, Any]:
    """What the numbers were measured on."""
    info: Dict[str, Any] = {
        "hostname": platform.node(),
        "cpu": _cpu_model(),
        "cores": os.cpu_count(),
        "machine": platform.machine(),
        "python": platform.python_version(),
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "git_commit": _git_commit(),
    }
    try:
        import psutil

        info["memory_gb"] = round(psutil.virtual_memory().total / 2**30, 1)
    except ImportError:
        pass
    try:
        import torch

        info["torch"] = torch.__version__
        info["torch_threads"] = torch.get_num_threads()
        info["cuda"] = torch.cuda.get_device_name(0) if torch.cuda.is_available() else None
    except ImportError:
        pass
    return info


def emit(name: str, result: Dict[str, Any], *, as_json: bool, save: bool) -> None:
    """Print ``result`` (JSON or a short summary) and optionally record it under bench/results/."""
    result = dict(result)
    result.setdefault("benchmark", name)
    result.setdefault("machine", machine_info())
    text = json.dumps(result, indent=2, default=str)
    if as_json:
        print(text)
    else:
        print(text if len(text) < 4000 else text[:4000] + "\n...")
    if save:
        RESULTS.mkdir(parents=True, exist_ok=True)
        (RESULTS / f"{name}.json").write_text(text + "\n")
        print(f"recorded {RESULTS / (name + '.json')}", file=sys.stderr)
