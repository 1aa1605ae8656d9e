"""TorchScript export: files, round trip, loadable without pantheon, refusal and tamper detection."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import ArtifactExistsError, ChecksumError, ModelError
from pantheon.formats import store as st
from pantheon.offline import export as ex
from pantheon.offline.construct import ConstructConfig, construct, load_checkpoint
from pantheon.zoo import get_task
from pantheon.zoo.datasets import digits_split

TASK = "digits_googlenet"


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory) -> Path:
    """A finished construct run of a digits task (small: 1 epoch on 160 samples per split)."""
    root = tmp_path_factory.mktemp("export-run")
    weights = root / "backbone.pt"
    torch.manual_seed(0)
    torch.save(get_task(TASK).build_model().state_dict(), weights)
    return construct(ConstructConfig(task=TASK, pretrain=str(weights), log=str(root / "runs"), max_epochs=1,
                                     limit=160, batch_size=40)).run_dir


@pytest.fixture(scope="module")
def variants(run_dir, tmp_path_factory) -> Path:
    return ex.export(TASK, weights=str(run_dir), save=str(tmp_path_factory.mktemp("v") / "variants")).path


def test_variants_directory_follows_the_contract(variants, run_dir):
    manifest = st.verify(variants, kind="variants")
    info = json.loads((variants / "variants.json").read_text())
    B = info["num_blocks"]
    assert B >= 6 and info["original_exit"] == B - 1
    assert info["task"] == TASK and info["arch"] == "googlenet" and info["kind"] == "classification"
    assert info["input_shape"] == list(get_task(TASK).input_shape) and info["num_classes"] == 10
    assert len(info["block_out_shapes"]) == B
    expected = {f"block_{j:02d}.pt" for j in range(B)} | {f"branch_{j:02d}.pt" for j in range(B)}
    assert expected | {"variants.json"} == set(manifest.files)
    assert set(info["export_modes"]) == expected and set(info["export_modes"].values()) <= {"script", "trace"}
    assert info["exit_accuracy"] == json.loads((run_dir / "metrics.json").read_text())["test"]
    assert max(info["round_trip_max_abs_diff"]) <= 1e-5


def test_files_load_without_pantheon_and_reproduce_the_eager_exits(variants, run_dir, tmp_path):
    info = json.loads((variants / "variants.json").read_text())
    B = info["num_blocks"]
    x = torch.randn(3, *get_task(TASK).input_shape, generator=torch.Generator().manual_seed(5))
    torch.save(x, tmp_path / "x.pt")
    script = (
        "import sys, torch\n"
        "sys.modules['pantheon'] = None  # importing pantheon now fails: the files must not need it\n"
        f"d = {str(variants)!r}; x = torch.load({str(tmp_path / 'x.pt')!r})\n"
        "outs = []\n"
        f"for j in range({B}):\n"
        "    x = torch.jit.load(f'{d}/block_{j:02d}.pt')(x)\n"
        "    outs.append(torch.jit.load(f'{d}/branch_{j:02d}.pt')(x))\n"
        f"torch.save(outs, {str(tmp_path / 'outs.pt')!r})\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, cwd=tmp_path, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    outs = torch.load(tmp_path / "outs.pt")
    mx = ex._rebuild(get_task(TASK), load_checkpoint(run_dir))
    with torch.no_grad():
        for j in range(B):
            ref = mx.forward_exit(x, j)
            assert outs[j].shape == (3, 10)
            assert float((outs[j] - ref).abs().max()) <= 1e-5 * max(1.0, float(ref.abs().max()))


def test_exported_exits_score_the_run_metrics_on_held_out_digits(variants, run_dir):
    info = json.loads((variants / "variants.json").read_text())
    test = torch.utils.data.Subset(digits_split(get_task(TASK), "test"), range(160))  # the run used --limit 160
    x = torch.stack([test[i][0] for i in range(len(test))])
    y = torch.tensor([test[i][1] for i in range(len(test))])
    accs = []
    with torch.no_grad():
        h = x
        for j in range(info["num_blocks"]):
            h = torch.jit.load(str(variants / f"block_{j:02d}.pt"))(h)
            logits = torch.jit.load(str(variants / f"branch_{j:02d}.pt"))(h)
            accs.append(float((logits.argmax(1) == y).float().mean()))
    assert accs == pytest.approx(info["exit_accuracy"], abs=1.5 / len(y))


def test_existing_directory_is_refused_unless_force_and_same_inputs_skip(variants, run_dir, tmp_path):
    again = ex.export(TASK, weights=str(run_dir), save=str(variants))  # same run: up to date
    assert again.path == variants and again.skipped
    other = tmp_path / "occupied"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    with pytest.raises(ArtifactExistsError, match="already exists; pass --force"):
        ex.export(TASK, weights=str(run_dir), save=str(other))
    assert (other / "keep.txt").read_text() == "mine"
    res = CliRunner().invoke(app, ["export", "--task", TASK, "--weights", str(run_dir), "--save", str(other)])
    assert res.exit_code == 1 and "already exists" in res.output
    res = CliRunner().invoke(
        app, ["export", "--task", TASK, "--weights", str(run_dir / "checkpoint.pt"), "--save", str(other), "--force"]
    )
    assert res.exit_code == 0, res.output
    assert not (other / "keep.txt").exists() and st.verify(other, kind="variants")


def test_tampered_run_directory_is_a_checksum_error(run_dir, tmp_path):
    import shutil

    copy = tmp_path / "run"
    shutil.copytree(run_dir, copy)
    history = copy / "history.json"
    history.write_text(history.read_text().replace('"epoch": 1', '"epoch": 7'))
    dest = tmp_path / "variants"
    res = CliRunner().invoke(app, ["export", "--task", TASK, "--weights", str(copy), "--save", str(dest)])
    assert res.exit_code == 1 and "history.json" in res.output and "altered" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not dest.exists()
    with pytest.raises(ChecksumError):
        ex.export(TASK, weights=str(copy), save=str(dest))


def test_a_failing_round_trip_is_loud_and_writes_nothing(run_dir, tmp_path, monkeypatch):
    real = ex.to_torchscript
    count = {"n": 0}

    def wrong_branch(module, example):
        count["n"] += 1
        if count["n"] == 4:  # branch_01 gets another exit's weights
            module = type(module)(list(example.shape[1:]), 10)
        return real(module, example)

    monkeypatch.setattr(ex, "to_torchscript", wrong_branch)
    dest = tmp_path / "variants"
    with pytest.raises(ModelError, match="exported exit 1 differs from the eager model"):
        ex.export(TASK, weights=str(run_dir), save=str(dest))
    assert not dest.exists()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".variants")]


def test_export_without_a_finished_run_says_what_to_run():
    # the store has no run for this task: a clear usage error naming the command to run
    res = CliRunner().invoke(app, ["export", "--task", TASK])
    assert res.exit_code == 2 and "pantheon construct --task digits_googlenet" in res.output


@pytest.mark.slow
def test_detection_task_exports_raw_heads_and_anchors(tmp_path):
    """object_detection on a tiny VOC folder: construct 1 epoch, export, decode a TorchScript exit."""
    from PIL import Image

    from pantheon.zoo.metrics import decode_detections

    base = tmp_path / "data" / "traffic_lights"
    (base / "Annotations").mkdir(parents=True)
    (base / "JPEGImages").mkdir()
    (base / "ImageSets" / "Main").mkdir(parents=True)
    for i in range(3):
        Image.new("RGB", (160, 120), (30 * i, 90, 10)).save(base / "JPEGImages" / f"{i}.jpg")
        (base / "Annotations" / f"{i}.xml").write_text(
            f"<annotation><filename>{i}.jpg</filename><size><width>160</width><height>120</height></size>"
            "<object><name>red</name><bndbox><xmin>20</xmin><ymin>10</ymin><xmax>80</xmax><ymax>90</ymax>"
            "</bndbox></object></annotation>"
        )
    for split in ("train", "val", "test"):
        (base / "ImageSets" / "Main" / f"{split}.txt").write_text("0\n1\n2\n")
    task = get_task("object_detection")
    weights = tmp_path / "ssd.pt"
    torch.manual_seed(0)
    torch.save(task.build_model().state_dict(), weights)
    run = construct(ConstructConfig(task=task.name, data_dir=str(tmp_path / "data"), pretrain=str(weights),
                                    log=str(tmp_path / "runs"), max_epochs=1, batch_size=3)).run_dir
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["metric"] == "mAP@0.5" and all(0.0 <= m <= 1.0 for m in metrics["test"])
    out = ex.export(task.name, weights=str(run), save=str(tmp_path / "variants")).path
    info = json.loads((out / "variants.json").read_text())
    B = info["num_blocks"]
    assert info["kind"] == "detection" and len(info["anchors"]) == B
    x = torch.randn(1, *task.input_shape)
    with torch.no_grad():
        h = x
        for j in range(B):
            h = torch.jit.load(str(out / f"block_{j:02d}.pt"))(h)
        cls, box = torch.jit.load(str(out / f"branch_{B - 1:02d}.pt"))(h)
        anchors = torch.load(out / info["anchors"][-1])
        assert cls.shape == (1, anchors.shape[0], task.num_classes) and box.shape == (1, anchors.shape[0], 4)
        dets = decode_detections(cls, box, anchors, (320, 320))
        assert dets[0]["boxes"].shape[1] == 4
        h = torch.jit.load(str(out / "block_00.pt"))(x)
        cls0, _ = torch.jit.load(str(out / "branch_00.pt"))(h)
        assert cls0.shape[1] == torch.load(out / info["anchors"][0]).shape[0]
