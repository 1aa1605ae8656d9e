"""Test helper: build small but real deployment repositories and workload files.

Chunks are real TorchScript modules (``torch.jit.script`` of small conv stacks whose
sizes set their latency), written with ``config.pbtxt``, ``plan.json`` and a manifest
through ``store.write_artifact``, exactly as ``pantheon plan`` lays them out. Latencies in
``config.pbtxt`` are measured on this machine unless given.

Example::

    spec = {"short": TaskSpec(widths=[8, 8], exits={0: 0.8, 1: 0.9})}
    repo_dir = build_repository(tmp_path / "repo", spec)
    write_workload(tmp_path / "w.bin", [("short", 0, 20_000)], repo_dir)
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import Dict, List, Optional, Sequence, Tuple

import torch
from torch import nn

from pantheon.formats import ModelConfig, Workloads, model_config_to_text, write_workloads
from pantheon.formats.store import write_artifact
from pantheon.online.timing import time_calls


@dataclass
class TaskSpec:
    """A toy task: block ``b`` is ``depth[b]`` 3x3 convs of ``widths[b]`` channels."""

    widths: List[int]
    exits: Dict[int, float]  # block id -> accuracy of the exit after it
    input: Tuple[int, int, int] = (3, 16, 16)
    depth: Optional[List[int]] = None
    num_classes: int = 10
    latencies: Optional[List[int]] = None  # block latencies (us); measured when None
    exit_latencies: Optional[Dict[int, int]] = None
    extra: Dict[str, object] = field(default_factory=dict)


def make_chunks(spec: TaskSpec) -> Tuple[List[nn.Module], Dict[int, nn.Module]]:
    torch.manual_seed(0)
    blocks: List[nn.Module] = []
    c_in = spec.input[0]
    for b, w in enumerate(spec.widths):
        layers: List[nn.Module] = []
        for d in range((spec.depth or [1] * len(spec.widths))[b]):
            layers += [nn.Conv2d(c_in if d == 0 else w, w, 3, padding=1), nn.ReLU()]
        blocks.append(nn.Sequential(*layers).eval())
        c_in = w
    exits = {
        b: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(spec.widths[b], spec.num_classes)).eval()
        for b in spec.exits
    }
    return blocks, exits


def _time_us(mod: nn.Module, x: torch.Tensor, repeat: int = 7) -> int:
    with torch.inference_mode():  # 3 warm-up runs: TorchScript's profiling executor optimises after the first
        (times,) = time_calls([lambda: mod(x)], repeat, warmup=3)
    return max(1, int(min(times) / 1000))  # the uncontended latency: robust on a busy machine


def build_repository(dest: Path, tasks: Dict[str, TaskSpec], app: str = "testapp", force: bool = False) -> Path:
    """Write a repository with real TorchScript chunks for ``tasks`` at ``dest``."""
    dest = Path(dest)
    with warnings.catch_warnings(), write_artifact(dest, kind="repository", force=force, meta={"app": app}) as tmp:
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit is deprecated in new torch, current in 2.0
        for name, spec in tasks.items():
            blocks, exits = make_chunks(spec)
            top = max(spec.exits)
            mdir = tmp / name / "model_files"
            mdir.mkdir(parents=True)
            x = torch.randn(1, *spec.input)
            feats = []
            lat_b: List[int] = []
            with torch.inference_mode():
                for b in range(top + 1):
                    sm = torch.jit.script(blocks[b])
                    torch.jit.save(sm, str(mdir / f"block_{b:02d}.pt"))
                    lat_b.append(spec.latencies[b] if spec.latencies else _time_us(sm, x))
                    x = blocks[b](x)
                    feats.append(x)
            cfg = ModelConfig(name=name, dims=[1, *spec.input])
            for b, lat in enumerate(lat_b):
                cfg.block_profile.add(id=b, latency=int(lat))
            for e in sorted(spec.exits):
                sm = torch.jit.script(exits[e])
                torch.jit.save(sm, str(mdir / f"branch_{e:02d}.pt"))
                lat = (spec.exit_latencies or {}).get(e) or _time_us(sm, feats[e])
                cfg.exit_profile.add(id=e, latency=int(lat), accuracy=spec.exits[e])
            (tmp / name / "config.pbtxt").write_text(model_config_to_text(cfg))
        (tmp / "plan.json").write_text(json.dumps({"app": app, "tasks": list(tasks)}, indent=2))
    return dest


def write_workload(path: Path, jobs: Sequence[Tuple[str, int, int]], dims: Optional[Dict[str, List[int]]] = None,
                   ids: Optional[Dict[str, int]] = None) -> Path:
    """Write ``(task, release_us, deadline_us)`` jobs as a Workloads ``.bin``."""
    msg = Workloads()
    for task, rel, dl in jobs:
        w = msg.workload.add()
        w.model_name = task
        w.release = int(rel)
        w.deadline = int(dl)
        if dims and task in dims:
            w.shape[:] = dims[task]
        w.id = (ids or {}).get(task, 0)
    write_workloads(path, msg)
    return Path(path)
