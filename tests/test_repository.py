"""Model repository loader: profiles from config.pbtxt, manifest checks, bad configs, TorchScript loading,
profiles-only folders."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import torch
from _repo import TaskSpec, build_repository, make_chunks, write_workload
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import ChecksumError, ManifestError, RepositoryError, UsageError
from pantheon.formats import read_model_config, read_workloads, write_model_config
from pantheon.formats.events import read_events
from pantheon.formats.store import write_artifact
from pantheon.online.repository import (
    chunk_file,
    is_profiles_only,
    load_modules,
    read_repository,
    resolve_device,
)
from pantheon.online.scheduler import TaskState

SPEC = {
    "zeta": TaskSpec(widths=[4, 6, 8], exits={1: 0.7, 2: 0.75}, latencies=[100, 200, 300], exit_latencies={1: 10, 2: 20}),
    "alpha": TaskSpec(widths=[4, 4], exits={0: 0.5, 1: 0.6}, input=(1, 12, 12), latencies=[50, 60],
                      exit_latencies={0: 5, 1: 6}),
}


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    return build_repository(tmp_path_factory.mktemp("repo") / "repository", SPEC, app="myapp")


def _reseal(src, dest, edit):
    """Copy a repository, let ``edit`` change it, and write a fresh, consistent manifest."""
    with write_artifact(dest, kind="repository") as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
        (tmp / "manifest.json").unlink()
        edit(tmp)
    return dest


def test_profiles_follow_config_and_plan_order(repo_dir):
    repo = read_repository(repo_dir)
    assert repo.names == ["zeta", "alpha"]  # plan.json order, not alphabetical
    assert repo.app == "myapp"
    z = repo.tasks["zeta"]
    assert z.index == 0 and z.dims == (1, 3, 16, 16) and repo.dims("zeta") == [1, 3, 16, 16]
    assert z.blocks == (100, 200, 300) and z.exit_blocks == (1, 2) and z.exit_lat == (10, 20)
    assert z.full == (310, 620) and z.full_latency == 620
    assert z.exit_acc == (0.7, 0.75) and TaskState(z).rel_acc[-1] == 1.0
    d = repo.describe()["alpha"]
    assert d == {"index": 1, "dims": [1, 1, 12, 12], "exits": [0, 1], "acc": [0.5, 0.6], "blocks": [50, 60],
                 "exit_lat": [5, 6], "original": 1, "full_us": 116, "dispatch_us": 0.0}


def test_loaded_chunks_reproduce_the_eager_modules(repo_dir):
    repo = read_repository(repo_dir)
    models = load_modules(repo, "cpu", warmup=1)
    blocks, exits = make_chunks(SPEC["zeta"])
    x = torch.randn(1, 3, 16, 16)
    with torch.inference_mode():
        for m, e in enumerate(repo.tasks["zeta"].exit_blocks):
            ref = x
            for b in range(e + 1):
                ref = blocks[b](ref)
            ref = exits[e](ref)
            assert torch.allclose(models["zeta"].run_exit(x, m), ref, atol=1e-6)
    assert len(models["zeta"].blocks) == 3 and len(models["alpha"].exits) == 2


def test_three_digit_chunk_names_are_found(tmp_path):
    (tmp_path / "block_104.pt").write_bytes(b"x")
    (tmp_path / "block_05.pt").write_bytes(b"x")
    assert chunk_file(tmp_path, "block", 104).name == "block_104.pt"
    assert chunk_file(tmp_path, "block", 5).name == "block_05.pt"
    assert chunk_file(tmp_path, "branch", 5) is None


def test_manifest_problems(repo_dir, tmp_path):
    nomani = tmp_path / "nomani"
    shutil.copytree(repo_dir, nomani)
    (nomani / "manifest.json").unlink()
    with pytest.raises(ManifestError, match="no manifest.json"):
        read_repository(nomani)
    tampered = tmp_path / "tampered"
    shutil.copytree(repo_dir, tampered)
    cfg = tampered / "alpha" / "config.pbtxt"
    cfg.write_text(cfg.read_text().replace("latency: 50", "latency: 51"))
    with pytest.raises(ChecksumError, match="config.pbtxt"):
        read_repository(tampered)
    with pytest.raises(RepositoryError, match="does not exist"):
        read_repository(tmp_path / "nowhere")


def _edit_cfg(task, fn):
    def edit(tmp):
        cfg = read_model_config(tmp / task / "config.pbtxt")
        fn(cfg)
        write_model_config(tmp / task / "config.pbtxt", cfg)
    return edit


@pytest.mark.parametrize("name, fn, msg", [
    ("gap", lambda c: c.block_profile[1].__setattr__("id", 2), "without gaps"),
    ("far", lambda c: c.exit_profile[1].__setattr__("id", 7), "not profiled"),
    ("acc", lambda c: c.exit_profile[0].__setattr__("accuracy", 1.5), "fraction"),
    ("batch", lambda c: c.dims.__setitem__(0, 4), "batch 1"),
    ("name", lambda c: c.__setattr__("name", "other"), "names task 'other'"),
    ("noexit", lambda c: c.ClearField("exit_profile"), "keeps no exit"),
])
def test_bad_configs_are_refused(repo_dir, tmp_path, name, fn, msg):
    bad = _reseal(repo_dir, tmp_path / name, _edit_cfg("alpha", fn))
    with pytest.raises(RepositoryError, match=msg):
        read_repository(bad)


def test_a_chunk_that_is_not_torchscript_is_refused(repo_dir, tmp_path):
    bad = _reseal(repo_dir, tmp_path / "junk", lambda t: (t / "alpha" / "model_files" / "branch_01.pt").write_bytes(b"no"))
    repo = read_repository(bad)  # the files are all there and match the manifest...
    with pytest.raises(RepositoryError, match="branch_01.pt is not a loadable TorchScript file"):
        load_modules(repo, "cpu")  # ...but one is not a module


def test_a_chunk_removed_after_reading_is_named(repo_dir, tmp_path):
    copy = tmp_path / "copy"
    shutil.copytree(repo_dir, copy)
    repo = read_repository(copy)
    (copy / "alpha" / "model_files" / "block_01.pt").unlink()
    with pytest.raises(RepositoryError, match=r"model_files lacks block_01.pt"):
        load_modules(repo, "cpu")


def test_devices():
    assert resolve_device("cpu") == "cpu"
    assert resolve_device("auto") == ("cuda" if torch.cuda.is_available() else "cpu")
    with pytest.raises(UsageError, match="unknown device"):
        resolve_device("tpu")
    if not torch.cuda.is_available():
        with pytest.raises(UsageError, match="no CUDA device"):
            resolve_device("cuda")


# -- profiles-only folders (config.pbtxt files alone: what the simulator needs) -----------------

REFERENCE_PROFILES = Path(__file__).resolve().parent.parent / "bench" / "reference" / "profiles"
REFERENCE_WORKLOADS = Path(__file__).resolve().parent.parent / "bench" / "reference" / "settings" / "workload"


def _profiles_only(repo_dir, dest):
    for task in ("zeta", "alpha"):
        (dest / task).mkdir(parents=True)
        shutil.copy2(repo_dir / task / "config.pbtxt", dest / task / "config.pbtxt")
    return dest


def test_a_profiles_only_folder_is_read_only_when_asked(repo_dir, tmp_path):
    folder = _profiles_only(repo_dir, tmp_path / "profiles")
    assert is_profiles_only(folder)
    with pytest.raises(ManifestError, match="holds profiles only .* no manifest.json"):
        read_repository(folder)  # the runtime's call: chunks are needed
    repo = read_repository(folder, profiles_only_ok=True)
    assert repo.profiles_only and repo.names == ["alpha", "zeta"] and repo.dispatch_us == 0.0
    assert repo.tasks["zeta"].blocks == (100, 200, 300) and repo.tasks["zeta"].exit_lat == (10, 20)
    assert not read_repository(repo_dir, profiles_only_ok=True).profiles_only  # a normal one stays normal


@pytest.mark.parametrize("damage", [
    lambda d: (d / "zeta" / "model_files").mkdir(),                           # chunks expected
    lambda d: (d / "zeta" / "block_00.pth").write_bytes(b"x"),                 # a stray chunk
    lambda d: (d / "manifest.json").write_text("{}"),                          # a (broken) manifest
])
def test_a_folder_with_any_sign_of_chunks_is_not_profiles_only(repo_dir, tmp_path, damage):
    folder = _profiles_only(repo_dir, tmp_path / "profiles")
    damage(folder)
    assert not is_profiles_only(folder)
    with pytest.raises(ManifestError):
        read_repository(folder, profiles_only_ok=True)


def test_a_repository_that_lost_its_manifest_is_still_refused_by_simulate(repo_dir, tmp_path):
    nomani = tmp_path / "nomani"
    shutil.copytree(repo_dir, nomani)
    (nomani / "manifest.json").unlink()
    wl = write_workload(tmp_path / "w.bin", [("alpha", 0, 50_000)])
    res = CliRunner().invoke(app, ["simulate", "--repo", str(nomani), "--workload", str(wl)])
    assert res.exit_code == 1 and "no manifest.json" in res.output


def test_simulate_runs_the_reference_profiles_and_says_so(tmp_path):
    res = CliRunner().invoke(app, ["simulate", "--repo", str(REFERENCE_PROFILES / "robot"), "--workload",
                                   str(REFERENCE_WORKLOADS / "robot.bin"), "--policy", "edf", "--json",
                                   "--log", str(tmp_path / "run")])
    assert res.exit_code == 0, res.output
    summary = json.loads(res.stdout)
    assert summary["profiles_only"] is True and "profiles-only" in res.stderr
    assert summary["jobs"] == len(read_workloads(REFERENCE_WORKLOADS / "robot.bin").workload)
    assert set(summary["per_task"]) == {"face_detection", "age_classification", "gender_classification",
                                        "emotion_classification"}
    start = next(iter(read_events(tmp_path / "run" / "events.jsonl")))
    assert start["profiles_only"] is True
    assert json.loads((tmp_path / "run" / "run.json").read_text())["profiles_only"] is True


def test_the_runtime_refuses_a_profiles_only_folder(repo_dir, tmp_path):
    folder = _profiles_only(repo_dir, tmp_path / "profiles")
    wl = write_workload(tmp_path / "w.bin", [("alpha", 0, 50_000)])
    res = CliRunner().invoke(app, ["runtime", str(folder), str(wl), str(tmp_path / "log"), "--device", "cpu"])
    assert res.exit_code == 1 and "holds profiles only" in res.output and not (tmp_path / "log").exists()
