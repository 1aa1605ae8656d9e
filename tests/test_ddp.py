"""Exit training under torchrun: 2 CPU processes, gloo backend, DistributedSampler, rank 0 writes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from pantheon.formats import store as st
from pantheon.offline.construct import load_checkpoint
from pantheon.zoo import get_task

TASK = "digits_resnet18"


@pytest.mark.slow
def test_torchrun_two_gloo_ranks_train_identical_exits(tmp_path, _isolated_store):
    weights = tmp_path / "backbone.pt"
    torch.manual_seed(0)
    torch.save(get_task(TASK).build_model().state_dict(), weights)
    log = _isolated_store / "runs"  # (no --log: torchrun's own parser would take it for --log-dir)
    env = dict(os.environ, OMP_NUM_THREADS="1", PANTHEON_PROGRESS="0", PANTHEON_DATA=str(_isolated_store))
    env.pop("CUDA_VISIBLE_DEVICES", None)
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "pantheon.cli", "construct", "--task", TASK, "--pretrain", str(weights),
        "--max_epochs", "2", "--batch_size", "16", "--limit", "64",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    runs = list((log / TASK).iterdir())
    assert len(runs) == 1, runs  # only rank 0 wrote, once
    run_dir = runs[0]
    st.verify(run_dir, kind="run")
    lines = proc.stdout.strip().splitlines()
    assert lines[-1] == str(run_dir) and lines.count(str(run_dir)) == 1  # rank 0 printed it, rank 1 did not
    assert proc.stdout.count("exits (held-out test split") == 1
    metrics = json.loads((run_dir / "metrics.json").read_text())
    ddp = metrics["ddp"]
    assert ddp["world_size"] == 2
    assert len(ddp["exit_checksums"]) == 2 and ddp["exit_checksums"][0] == ddp["exit_checksums"][1]
    ckpt = load_checkpoint(run_dir)
    assert ckpt["complete"] and ckpt["epoch"] == 1
    history = json.loads((run_dir / "history.json").read_text())
    assert [h["epoch"] for h in history] == [1, 2]
    assert all(h["samples"] == 32 for h in history)  # DistributedSampler: rank 0 saw half of the 64 samples
    assert Path(run_dir / "checkpoint.pt").stat().st_size > 0
