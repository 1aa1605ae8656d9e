"""Exit construction and training on the digits demo: run directory, determinism, resume, bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import TraceError
from pantheon.formats import store as st
from pantheon.offline import construct as con
from pantheon.offline.construct import ConstructConfig, construct
from pantheon.zoo import get_task

TASK = "digits_resnet18"
QUICK = {"limit": 96, "batch_size": 32}


@pytest.fixture(scope="module")
def backbone(tmp_path_factory) -> Path:
    """A real state dict of the task's architecture (random weights: mechanics, not accuracy)."""
    path = tmp_path_factory.mktemp("weights") / "resnet18_digits.pt"
    torch.manual_seed(0)
    torch.save(get_task(TASK).build_model().state_dict(), path)
    return path


def _cfg(backbone: Path, log: Path, **kw) -> ConstructConfig:
    args = dict(task=TASK, pretrain=str(backbone), log=str(log), max_epochs=1, **QUICK)
    args.update(kw)
    return ConstructConfig(**args)


def _exit_state(run_dir: Path):
    ckpt = con.load_checkpoint(run_dir)
    return {k: v for k, v in ckpt["model"].items() if k.startswith("exits.") and not k.startswith("exits.8.")}


def test_cli_construct_writes_a_verified_run_and_skips_a_rerun(backbone, tmp_path):
    argv = ["construct", "--task", TASK, "--pretrain", str(backbone), "--log", str(tmp_path), "--max_epochs", "1",
            "--batch_size", "32", "--limit", "96", "--data-dir", str(tmp_path / "unused")]
    res = CliRunner().invoke(app, argv)
    assert res.exit_code == 0, res.output
    run_dir = Path(res.stdout.strip().splitlines()[-1])
    assert run_dir.parent == tmp_path / TASK
    manifest = st.verify(run_dir, kind="run")
    assert manifest.meta["complete"] and manifest.meta["num_blocks"] == 9
    ckpt = con.load_checkpoint(run_dir)
    assert {"model", "optimizer", "scheduler", "epoch", "config"} <= set(ckpt)
    assert ckpt["config"]["learning_rate"] == get_task(TASK).defaults.learning_rate  # Table 3 default
    assert ckpt["optimizer"]["param_groups"][0]["momentum"] == 0.9
    history = json.loads((run_dir / "history.json").read_text())
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert len(history) == 1 and len(history[0]["val"]) == 9 and len(metrics["test"]) == 9
    assert "exits (held-out test split" in res.output and "original head" in res.output
    # frozen backbone: the blocks and the original head are the pretrained weights, untouched
    pre = torch.load(backbone)
    assert torch.equal(ckpt["model"]["blocks.0.conv1.weight"], pre["conv1.weight"])
    assert torch.equal(ckpt["model"]["exits.8.fc.weight"], pre["fc.weight"])
    before = (run_dir / "checkpoint.pt").stat().st_mtime_ns
    again = CliRunner().invoke(app, argv)
    assert again.exit_code == 0 and "skipped: up to date" in again.output
    assert (run_dir / "checkpoint.pt").stat().st_mtime_ns == before


def test_construct_prints_nothing_and_returns_what_the_cli_prints(backbone, tmp_path, capsys):
    from pantheon.cli.offline import print_construct

    res = construct(_cfg(backbone, tmp_path, max_epochs=2))
    assert capsys.readouterr().out == ""  # the library reports progress on stderr, never results
    assert not res.skipped and res.task == TASK and res.metric_name == "top-1"
    assert res.history == json.loads((res.run_dir / "history.json").read_text())
    assert res.test == json.loads((res.run_dir / "metrics.json").read_text())["test"]
    assert [h["epoch"] for h in res.history] == [1, 2] and len(res.test) == len(res.history[-1]["val"]) == 9
    print_construct(res)
    table = capsys.readouterr().out
    assert "val e1" in table and "val e2" in table and "8 (original head)" in table
    assert all(f"{t:.3f}" in table for t in res.test)
    again = construct(_cfg(backbone, tmp_path, max_epochs=2))  # up to date: read back, not retrained
    assert capsys.readouterr().out == ""
    assert again.skipped and again.run_dir == res.run_dir
    assert again.history == res.history and again.test == res.test
    print_construct(again)  # as `pantheon construct` on an up-to-date run: no table
    assert capsys.readouterr().out == ""


def test_same_seed_same_weights_other_seed_other_weights(backbone, tmp_path):
    a = construct(_cfg(backbone, tmp_path / "a", max_epochs=2)).run_dir
    b = construct(_cfg(backbone, tmp_path / "b", max_epochs=2)).run_dir
    c = construct(_cfg(backbone, tmp_path / "c", max_epochs=2, seed=1)).run_dir
    sa, sb, sc = _exit_state(a), _exit_state(b), _exit_state(c)
    assert sa.keys() == sb.keys() and all(torch.equal(sa[k], sb[k]) for k in sa)
    assert any(not torch.equal(sa[k], sc[k]) for k in sa if sa[k].is_floating_point())
    # training moved the exits away from their (seeded) initialisation
    from pantheon.offline.exits import build_multi_exit

    init = build_multi_exit(get_task(TASK), get_task(TASK).build_model(), seed=0).exit_state()
    assert init.keys() == sa.keys()
    assert all(not torch.equal(init[k], sa[k]) for k in init if k.endswith(".weight"))


def test_feature_cache_trains_the_same_exits_as_running_the_backbone(backbone, tmp_path, monkeypatch):
    cached = construct(_cfg(backbone, tmp_path / "cached", max_epochs=2)).run_dir
    assert all(h["feature_cache"] for h in json.loads((cached / "history.json").read_text()))
    monkeypatch.setattr(con, "FEATURE_CACHE_BYTES", 0)  # too small: run the frozen blocks every step
    direct = construct(_cfg(backbone, tmp_path / "direct", max_epochs=2)).run_dir
    assert not any(h["feature_cache"] for h in json.loads((direct / "history.json").read_text()))
    a, b = _exit_state(cached), _exit_state(direct)
    # same batches in the same order; only float rounding of the block outputs differs
    assert all(torch.allclose(a[k].float(), b[k].float(), atol=1e-4, rtol=1e-4) for k in a)


def test_interrupted_run_resumes_to_the_same_weights(backbone, tmp_path, monkeypatch):
    straight = construct(_cfg(backbone, tmp_path / "straight", max_epochs=2)).run_dir
    calls = {"n": 0}

    def interrupting(real):
        def second_epoch_raises(*args, **kwargs):
            calls["n"] += 1
            if calls["n"] == 2:
                raise KeyboardInterrupt  # Ctrl-C during epoch 2
            return real(*args, **kwargs)

        return second_epoch_raises

    for name in ("_train_epoch", "_train_epoch_cached"):  # whichever path the run takes
        monkeypatch.setattr(con, name, interrupting(getattr(con, name)))
    cfg = _cfg(backbone, tmp_path / "resumed", max_epochs=2)
    with pytest.raises(KeyboardInterrupt):
        construct(cfg)
    monkeypatch.undo()
    run_dir = next((tmp_path / "resumed" / TASK).iterdir())
    half = st.verify(run_dir, kind="run")
    assert half.meta["epoch"] == 1 and not half.meta["complete"]
    # --resume with the run directory continues from epoch 2 and ends where the straight run ended
    resumed = construct(ConstructConfig(task=TASK, resume=str(run_dir))).run_dir
    assert resumed == run_dir
    s1, s2 = _exit_state(straight), _exit_state(resumed)
    assert all(torch.equal(s1[k], s2[k]) for k in s1)
    assert json.loads((resumed / "history.json").read_text())[-1]["epoch"] == 2


def test_bad_pretrain_files_are_one_line_and_write_nothing(tmp_path):
    not_torch = tmp_path / "weights.pt"
    not_torch.write_text("this is not a checkpoint\n")
    res = CliRunner().invoke(app, ["construct", "--task", TASK, "--pretrain", str(not_torch), "--limit", "32"])
    assert res.exit_code == 1
    assert "is not a PyTorch weights file" in res.output and "Traceback" not in res.output
    other = tmp_path / "googlenet.pt"
    torch.save(get_task("digits_googlenet").build_model().state_dict(), other)
    res = CliRunner().invoke(app, ["construct", "--task", TASK, "--pretrain", str(other), "--limit", "32"])
    assert res.exit_code == 1
    assert f"{other} is not a state dict for resnet18: missing key 'conv1.weight'" in res.output
    assert len(res.output.strip().splitlines()) == 1
    assert not (st.Store().runs_dir(TASK)).exists()


def test_digits_without_pretrained_weights_says_what_to_run():
    res = CliRunner().invoke(app, ["construct", "--task", TASK])
    assert res.exit_code == 2 and "pantheon pretrain --task digits_resnet18" in res.output


def test_missing_dataset_folder_and_wrong_image_size(tmp_path):
    empty = tmp_path / "datasets"
    empty.mkdir()
    res = CliRunner().invoke(app, ["construct", "--task", "age_classification", "--data_dir", str(empty)])
    assert res.exit_code == 1 and f"dataset folder {empty / 'adience_age'} does not exist" in res.output
    res = CliRunner().invoke(app, ["construct", "--task", "age_classification", "--data_dir", str(tmp_path / "no")])
    assert res.exit_code == 1 and "does not exist" in res.output
    fer = empty / "fer2013" / "fer2013.csv"
    fer.parent.mkdir()
    fer.write_text("emotion,pixels,Usage\n3," + " ".join(["1"] * 2000) + ",Training\n")
    res = CliRunner().invoke(app, ["construct", "--task", "emotion_classification", "--data-dir", str(empty)])
    assert res.exit_code == 1 and "wrong image size, 2000 pixels instead of 48x48" in res.output
    assert not (st.Store().root / "runs").exists()


@pytest.mark.parametrize("workers", ["0", "1"])
def test_corrupt_image_in_a_dataset_is_one_line_and_writes_nothing(tmp_path, workers):
    from PIL import Image

    base = tmp_path / "data" / "adience_age"
    for c in range(8):
        for i in range(3):
            path = base / "train" / f"age{c}" / f"{i}.png"
            path.parent.mkdir(parents=True, exist_ok=True)
            Image.new("RGB", (20, 20), (c * 30, 0, 0)).save(path)
        path = base / "test" / f"age{c}" / "0.png"
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.new("RGB", (20, 20), (c * 30, 0, 0)).save(path)
    broken = base / "train" / "age7" / "2.png"
    broken.write_bytes(b"\x89PNG but truncated")
    res = CliRunner().invoke(app, [
        "construct", "--task", "age_classification", "--data_dir", str(tmp_path / "data"), "--max_epochs", "1",
        "--batch_size", "8", "--num_workers", workers, "--log", str(tmp_path / "runs"),
    ])
    assert res.exit_code == 1
    lines = [ln for ln in res.output.strip().splitlines() if ln.startswith("error:")]
    assert len(lines) == 1 and f"cannot read image {broken}" in lines[0], res.output
    assert "Traceback" not in res.output and "worker process" not in res.output
    assert not (tmp_path / "runs").exists()


class _DataDependent(torch.nn.Module):
    """A model torch.fx cannot trace: Python control flow on a tensor value."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = torch.nn.Conv2d(3, 8, 3)
        self.fc = torch.nn.Linear(8, 10)

    def forward(self, x):
        x = self.conv(x)
        if x.sum() > 0:
            x = x.relu()
        return self.fc(x.mean((2, 3)))


def test_untraceable_model_names_the_op(monkeypatch, tmp_path):
    import pantheon.zoo.models as zm

    monkeypatch.setattr(zm, "build", lambda task: _DataDependent())
    weights = tmp_path / "w.pt"
    torch.save(_DataDependent().state_dict(), weights)
    with pytest.raises(TraceError, match="cannot trace _DataDependent"):
        construct(ConstructConfig(task=TASK, pretrain=str(weights), limit=32, max_epochs=1))
    res = CliRunner().invoke(app, ["construct", "--task", TASK, "--pretrain", str(weights), "--limit", "32"])
    assert res.exit_code == 1 and "cannot trace" in res.output and "x.sum() > 0" in res.output
    assert not (st.Store().runs_dir(TASK)).exists()


def test_bad_hyperparameters_are_usage_errors(backbone):
    res = CliRunner().invoke(app, ["construct", "--task", TASK, "--pretrain", str(backbone), "--max_epochs", "0"])
    assert res.exit_code == 2 and "--max_epochs must be positive" in res.output


@pytest.mark.slow
def test_exit_accuracy_rises_with_depth_on_held_out_digits():
    """Demo defaults: pretrain, then construct; the deepest exit clearly beats the shallowest."""
    runner = CliRunner()
    pre = runner.invoke(app, ["pretrain", "--task", TASK])
    assert pre.exit_code == 0, pre.output
    pretrained = json.loads((Path(pre.stdout.strip().splitlines()[-1]) / "metrics.json").read_text())
    assert pretrained["test"] >= 0.9
    res = runner.invoke(app, ["construct", "--task", TASK])
    assert res.exit_code == 0, res.output
    test = con.exit_accuracies(Path(res.stdout.strip().splitlines()[-1]))
    assert "test top-1" in res.output
    assert test[-1] >= 0.9
    assert test[-1] - test[0] >= 0.08, test
    # a rising trend: the deeper half of the exits beats the shallower half on average
    half = len(test) // 2
    assert sum(test[half:]) / (len(test) - half) > sum(test[:half]) / half + 0.03, test


def test_pretrain_caches_is_deterministic_and_needs_data_for_paper_tasks():
    from pantheon.offline.pretrain import pretrain, pretrained_metrics

    runner = CliRunner()
    argv = ["pretrain", "--task", "digits_googlenet", "--epochs", "1", "--limit", "128"]
    first = runner.invoke(app, argv)
    assert first.exit_code == 0, first.output
    dest = Path(first.stdout.strip().splitlines()[-1])
    manifest = st.verify(dest, kind="pretrained", required=["weights.pt", "metrics.json"])
    assert manifest.inputs["epochs"] == 1 and manifest.inputs["seed"] == 0
    metrics = pretrained_metrics("digits_googlenet")
    assert 0.0 <= metrics["test"] <= 1.0 and len(metrics["history"]) == 1
    sha = manifest.files["weights.pt"].sha256
    again = runner.invoke(app, argv)
    assert again.exit_code == 0 and "skipped: up to date" in again.output
    # --force retrains from scratch: same seed, bit-identical weights
    pretrain("digits_googlenet", epochs=1, limit=128, force=True)
    assert st.verify(dest).files["weights.pt"].sha256 == sha
    state = torch.load(dest / "weights.pt")
    get_task("digits_googlenet").build_model().load_state_dict(state)  # a state dict of the architecture
    res = runner.invoke(app, ["pretrain", "--task", "scene_recognition"])
    assert res.exit_code == 1 and "reads its dataset from --data_dir" in res.output
