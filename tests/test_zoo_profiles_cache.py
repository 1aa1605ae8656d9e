"""The benchmarks' cache of measured zoo profiles is reused only for the task's current backbone."""

from __future__ import annotations

import json

import torch

from pantheon.bench.benchmarks import zoo_profiles
from pantheon.zoo import get_task


def test_cached_profiles_of_another_backbone_or_input_are_measured_again(tmp_path):
    key = f"torch {torch.__version__}, 1 thread, round-robin"
    task = get_task("sign_recognition")
    current = {"name": task.name, "arch": task.arch, "dims": [1, *task.input_shape], "block_us": [1.0],
               "exit_us": [2.0], "block_mb": [0.1], "exit_mb": [0.1], "key": key}
    cache = tmp_path / "profiles.json"
    cache.write_text(json.dumps({"tasks": {task.name: current}}))
    assert zoo_profiles([task.name], cache=cache)[task.name] == current  # same backbone: reused as is
    for stale in ({"arch": "resnet18"}, {"dims": [1, 3, 320, 320]}):
        cache.write_text(json.dumps({"tasks": {task.name: dict(current, **stale)}}))
        got = zoo_profiles([task.name], cache=cache)[task.name]
        assert (got["arch"], got["dims"]) == (task.arch, [1, 3, 32, 32])
        assert len(got["block_us"]) > 1 and got["block_us"] != [1.0]  # measured on the real model
        assert json.loads(cache.read_text())["tasks"][task.name]["arch"] == task.arch
