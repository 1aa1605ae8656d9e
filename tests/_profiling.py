"""Helpers for the profiler/profile/plan tests: real TorchScript variants and a real server process."""

from __future__ import annotations

import contextlib
import io
import json
import warnings
from pathlib import Path
from typing import Iterator, List, Optional, Sequence, Tuple

import torch
from torch import nn

from pantheon.formats import store
from pantheon.online.memory import module_bytes
from pantheon.online.profiler_server import ServerProcess as _LibServerProcess


def script_bytes(module: nn.Module) -> bytes:
    """A real TorchScript archive of ``module`` (torch.jit.script + torch.jit.save)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", FutureWarning)
        buf = io.BytesIO()
        torch.jit.save(torch.jit.script(module.eval()), buf)
    return buf.getvalue()


def tiny_blocks(n_blocks: int = 3, channels: int = 8, hw: int = 16, num_classes: int = 10, seed: int = 0):
    """``n_blocks`` conv blocks and one linear head per block (a small real CNN with exits)."""
    torch.manual_seed(seed)
    blocks: List[nn.Module] = []
    branches: List[nn.Module] = []
    shapes: List[List[int]] = []
    c_in, size = 3, hw
    for j in range(n_blocks):
        c = channels * (j + 1)
        pool = j % 2 == 1 and size > 2
        layers: List[nn.Module] = [nn.Conv2d(c_in, c, 3, padding=1), nn.BatchNorm2d(c), nn.ReLU()]
        if pool:
            layers.append(nn.MaxPool2d(2))
            size //= 2
        blocks.append(nn.Sequential(*layers))
        branches.append(nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(c, num_classes)))
        shapes.append([c, size, size])
        c_in = c
    return blocks, branches, shapes


def make_variants(
    dest: Path,
    task: str = "tiny",
    n_blocks: int = 3,
    channels: int = 8,
    hw: int = 16,
    *,
    skip: Sequence[str] = (),
    profile_csv: Optional[str] = None,
) -> Tuple[Path, list, list]:
    """Write a variants artifact (kind ``variants``) with real TorchScript blocks and branches."""
    blocks, branches, shapes = tiny_blocks(n_blocks, channels, hw)
    meta = {
        "task": task,
        "arch": "tiny_cnn",
        "kind": "classification",
        "input_shape": [3, hw, hw],
        "num_classes": 10,
        "num_blocks": n_blocks,
        "block_out_shapes": shapes,
        "original_exit": n_blocks - 1,
    }
    with store.write_artifact(dest, kind="variants", force=True) as tmp:
        for j, (b, h) in enumerate(zip(blocks, branches)):
            for name, mod in ((f"block_{j:02d}.pt", b), (f"branch_{j:02d}.pt", h)):
                if name not in skip:
                    (tmp / name).write_bytes(script_bytes(mod))
        (tmp / "variants.json").write_text(json.dumps(meta))
        if profile_csv is not None:
            (tmp / "profile.csv").write_text(profile_csv)
    return dest, blocks, branches


def param_mb(module: nn.Module) -> float:
    return module_bytes(module) / float(1 << 20)


class ServerProcess(_LibServerProcess):
    """A real ``pantheon profiler-server`` subprocess on 127.0.0.1 with a free port."""

    def __init__(self, log_dir: Path, *args: str, env: Optional[dict] = None) -> None:
        super().__init__(log_dir, *args, env=env, timeout=60.0)


@contextlib.contextmanager
def server(log_dir: Path, *args: str, env: Optional[dict] = None) -> Iterator[ServerProcess]:
    s = ServerProcess(log_dir, *args, env=env)
    try:
        yield s
    finally:
        s.stop()
