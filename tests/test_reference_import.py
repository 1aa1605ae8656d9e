"""`pantheon repository import`: a reference-shaped repository (traced TorchScript saved as
`.pth`, config.pbtxt, no manifest) becomes a verified repository that simulate and runtime accept.

The source repositories are built here the way the reference artifact writes them: real
conv modules, ``torch.jit.trace`` then ``torch.jit.save`` to ``model_files/block_XX.pth`` /
``branch_XX.pth``, and a ``ModelConfig`` text file.
"""

from __future__ import annotations

import json
import os
import warnings
from pathlib import Path
from typing import Dict, List

import pytest
import torch
from _repo import write_workload
from torch import nn
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.formats import ModelConfig, model_config_to_text, store
from pantheon.online.reference import import_reference
from pantheon.online.repository import load_modules, read_repository

runner = CliRunner()

# task -> (input [C, H, W], block widths, exits {block: accuracy})
TASKS = {
    "detect": ([3, 16, 16], [4, 6, 8], {1: 0.8, 2: 0.9}),
    "classify": ([1, 12, 12], [5, 5], {0: 0.6, 1: 0.7}),
}


def _modules(c_in: int, widths: List[int], exits: Dict[int, float], seed: int = 0):
    torch.manual_seed(seed)
    blocks = []
    for w in widths:
        blocks.append(nn.Sequential(nn.Conv2d(c_in, w, 3, padding=1), nn.ReLU()).eval())
        c_in = w
    branches = {b: nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(widths[b], 7)).eval() for b in exits}
    return blocks, branches


def _save_traced(mod: nn.Module, x: torch.Tensor, path: Path) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        torch.jit.save(torch.jit.trace(mod, x), str(path))  # as the reference's export.py


def build_reference(root: Path, tasks=TASKS, unused_branch: bool = True) -> Path:
    """A reference-shaped repository: `<task>/config.pbtxt`, `<task>/model_files/*.pth`, no manifest."""
    for name, (shape, widths, exits) in tasks.items():
        mdir = root / name / "model_files"
        mdir.mkdir(parents=True)
        blocks, branches = _modules(shape[0], widths, exits)
        x = torch.randn(1, *shape)
        cfg = ModelConfig(name=name, dims=[1, *shape])
        with torch.no_grad():
            for b, blk in enumerate(blocks):
                _save_traced(blk, x, mdir / f"block_{b:02d}.pth")
                cfg.block_profile.add(id=b, latency=100 * (b + 1))
                x = blk(x)
                if b in branches:
                    _save_traced(branches[b], x, mdir / f"branch_{b:02d}.pth")
                    cfg.exit_profile.add(id=b, latency=10, accuracy=exits[b])
                elif unused_branch:  # the reference keeps branches of exits the plan dropped
                    head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten()).eval()
                    _save_traced(head, x, mdir / f"branch_{b:02d}.pth")
        (root / name / "config.pbtxt").write_text(model_config_to_text(cfg))
    return root


def _import(src: Path, out: Path, *extra: str):
    return runner.invoke(app, ["repository", "import", str(src), "--out", str(out), *extra])


def _leftovers(parent: Path) -> List[str]:
    return [p for p in os.listdir(parent) if p.startswith(".")]


def test_import_writes_a_verified_repository_whose_chunks_match_the_sources(tmp_path):
    src = build_reference(tmp_path / "traffic")
    dest = tmp_path / "out" / "repository"
    res = _import(src, dest, "--json")
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["chunks"] == 3 + 2 + 2 + 2 and info["app"] == "traffic"
    assert info["skipped"] == ["detect/model_files/branch_00.pth"]  # no exit_profile names it
    manifest = store.verify(dest, kind="repository")
    assert manifest.meta["source"] == "reference"
    assert sorted(manifest.files) == sorted(
        ["plan.json", "classify/config.pbtxt", "detect/config.pbtxt"]
        + [f"detect/model_files/{f}.pt" for f in ("block_00", "block_01", "block_02", "branch_01", "branch_02")]
        + [f"classify/model_files/{f}.pt" for f in ("block_00", "block_01", "branch_00", "branch_01")])
    for rel in ("detect/model_files/block_02.pt", "classify/model_files/branch_01.pt"):  # bytes unchanged
        assert (dest / rel).read_bytes() == (src / rel).with_suffix(".pth").read_bytes()
    repo = read_repository(dest)
    assert repo.names == ["classify", "detect"] and repo.app == "traffic" and not repo.profiles_only
    assert repo.tasks["detect"].exit_blocks == (1, 2) and repo.tasks["detect"].blocks == (100, 200, 300)
    # the imported chunks compute what the source modules compute
    blocks, branches = _modules(3, [4, 6, 8], {1: 0.8, 2: 0.9})
    x = torch.randn(1, 3, 16, 16)
    loaded = load_modules(repo, "cpu", warmup=1)["detect"]
    with torch.inference_mode():
        ref = branches[2](blocks[2](blocks[1](blocks[0](x))))
        assert torch.allclose(loaded.run_exit(x, -1), ref, atol=1e-5)


def test_simulate_and_runtime_accept_the_imported_repository(tmp_path):
    src = build_reference(tmp_path / "ref")
    dest = tmp_path / "repo"
    assert _import(src, dest).exit_code == 0
    dims = {"detect": [1, 3, 16, 16], "classify": [1, 1, 12, 12]}
    wl = write_workload(tmp_path / "w.bin", [("detect", 0, 500_000), ("classify", 1_000, 500_000),
                                             ("detect", 2_000, 600_000)], dims)
    res = runner.invoke(app, ["simulate", "--repo", str(dest), "--workload", str(wl), "--json"])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["jobs"] == 3 and summary["dmr"] == 0.0 and summary["profiles_only"] is False
    res = runner.invoke(app, ["runtime", str(dest), str(wl), str(tmp_path / "live"), "--device", "cpu", "--json",
                              "--telemetry", "off"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout)["jobs"] == 3


def test_the_reference_repository_itself_is_refused_with_the_import_hint(tmp_path):
    src = build_reference(tmp_path / "ref")
    wl = write_workload(tmp_path / "w.bin", [("detect", 0, 50_000)])
    res = runner.invoke(app, ["simulate", "--repo", str(src), "--workload", str(wl)])
    assert res.exit_code == 1 and "pantheon repository import" in res.output
    assert len(res.output.strip().splitlines()) == 1


def _missing_pth(src: Path) -> str:
    (src / "detect" / "model_files" / "block_01.pth").unlink()
    return "block_01.pth is missing"


def _bad_config(src: Path) -> str:
    (src / "classify" / "config.pbtxt").write_text('name: "classify"\ndims: [1, 1, 12\nblock_profile {')
    return "config.pbtxt"


def _no_chain(src: Path) -> str:  # block_01 built for 9 input channels; block_00 gives 4
    _save_traced(nn.Conv2d(9, 6, 3, padding=1).eval(), torch.randn(1, 9, 16, 16),
                 src / "detect" / "model_files" / "block_01.pth")
    return "block_01 fails on block_00's output"


def _branch_no_chain(src: Path) -> str:  # branch_00 expects a wider feature than block_00's
    _save_traced(nn.Sequential(nn.Flatten(), nn.Linear(99, 7)).eval(), torch.randn(1, 99),
                 src / "classify" / "model_files" / "branch_00.pth")
    return "branch_00 fails on block_00's output"


def _not_torchscript(src: Path) -> str:  # a state dict, as torch.save writes it: not what the runtime loads
    torch.save(nn.Conv2d(3, 4, 3).state_dict(), src / "detect" / "model_files" / "block_00.pth")
    return "is not a TorchScript file"


@pytest.mark.parametrize("breakage", [_missing_pth, _bad_config, _no_chain, _branch_no_chain, _not_torchscript])
def test_bad_reference_repositories_fail_in_one_line_and_write_nothing(tmp_path, breakage):
    src = build_reference(tmp_path / "ref", unused_branch=False)
    expected = breakage(src)
    out_parent = tmp_path / "out"
    out_parent.mkdir()
    res = _import(src, out_parent / "repository")
    assert res.exit_code == 1, res.output
    assert expected in res.output and len(res.output.strip().splitlines()) == 1
    assert "Traceback" not in res.output
    assert os.listdir(out_parent) == []  # no repository, no temporary folder left behind


def test_an_existing_destination_is_kept_unless_forced(tmp_path):
    src = build_reference(tmp_path / "ref")
    dest = tmp_path / "repo"
    assert _import(src, dest).exit_code == 0
    before = store.read_manifest(dest).created
    res = _import(src, dest)
    assert res.exit_code != 0 and "--force" in res.output
    assert store.read_manifest(dest).created == before and _leftovers(tmp_path) == []
    (src / "detect" / "config.pbtxt").write_text((src / "detect" / "config.pbtxt").read_text()
                                                  .replace("latency: 100", "latency: 150", 1))
    assert _import(src, dest, "--force").exit_code == 0
    assert read_repository(dest).tasks["detect"].blocks[0] == 150


def test_a_pantheon_repository_is_not_imported_again(tmp_path):
    src = build_reference(tmp_path / "ref")
    dest = tmp_path / "repo"
    res1 = import_reference(src, dest)
    assert res1.chunks == 9
    res = _import(dest, tmp_path / "again")
    assert res.exit_code != 0 and "already has a manifest.json" in res.output
    assert not (tmp_path / "again").exists()



def test_the_default_destination_is_the_apps_repository_in_the_store(tmp_path, _isolated_store):
    src = build_reference(tmp_path / "uav")
    res = runner.invoke(app, ["repository", "import", str(src), "--app", "drones"])
    assert res.exit_code == 0, res.output
    dest = _isolated_store / "apps" / "drones" / "repository"
    assert str(dest) in res.stdout and "left out 1 file(s)" in res.stderr
    assert read_repository(dest).app == "drones"


# -- the serial lower bound on DMR of bench/policies.py ------------------------------------------


def _policies_bench():
    import importlib.util
    import sys

    path = Path(__file__).resolve().parent.parent / "bench" / "policies.py"
    spec = importlib.util.spec_from_file_location("bench_policies", path)
    mod = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("bench_policies", mod)
    spec.loader.exec_module(mod)
    return mod


def _edf_feasible(jobs) -> bool:
    """Preemptive EDF meets every deadline iff any serial schedule does (one machine, releases)."""
    import heapq

    jobs, t, i, ready = sorted(jobs), 0.0, 0, []
    while i < len(jobs) or ready:
        if not ready:
            t = max(t, jobs[i][0])
        while i < len(jobs) and jobs[i][0] <= t:
            heapq.heappush(ready, [jobs[i][1], jobs[i][2]])
            i += 1
        run = min(ready[0][1], (jobs[i][0] if i < len(jobs) else float("inf")) - t)
        t += run
        ready[0][1] -= run
        if ready[0][1] <= 1e-9:
            if t > ready[0][0] + 1e-9:
                return False
            heapq.heappop(ready)
    return True


def test_the_serial_bound_brackets_the_true_minimum_of_missed_jobs():
    import itertools
    import random

    pol = _policies_bench()
    rng = random.Random(0)
    tight = 0
    for _ in range(150):
        n = rng.randint(2, 7)
        jobs = sorted((r, r + rng.randint(5, 30), float(rng.randint(2, 15)))
                      for r in (rng.randint(0, 40) for _ in range(n)))
        best = min(n - k for k in range(n, -1, -1) for keep in itertools.combinations(jobs, k)
                   if _edf_feasible(list(keep)))
        lower, achieved = pol.demand_lower_bound(jobs), pol.edf_drop_largest(jobs)
        assert lower <= best <= achieved, (jobs, lower, best, achieved)
        tight += lower == achieved
    assert tight > 100, tight  # mostly exact on small instances


def test_the_reference_robot_profiles_miss_a_quarter_even_at_the_cheapest_exits():
    from pantheon.formats import read_workloads

    pol = _policies_bench()
    repo = read_repository(pol.REFERENCE / "profiles" / "robot", profiles_only_ok=True)
    ws = read_workloads(pol.REFERENCE / "settings" / "workload" / "robot.bin")
    b = pol.serial_bound(repo, ws)
    # 4 streams at 30 fps need 38.4 ms of cheapest exits per 33.3 ms frame: one job in four must go
    assert b["exact"] and b["lower"] == b["achieved"] == 0.25
    assert b["cheapest_exit_us"]["face_detection"] == 14061
