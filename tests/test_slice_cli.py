"""The ``pantheon slice`` command: reports, --no-merge, the googlenet done-when check, bad input."""

from __future__ import annotations

import json
import textwrap

import pytest
import torch
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import TraceError
from pantheon.offline import slice as sl

runner = CliRunner()


# ------------------------------------------------------------------------------------------------
# untraceable models and bad input
# ------------------------------------------------------------------------------------------------

_BAD_MODULE = textwrap.dedent(
    """
    import torch

    class Gate(torch.nn.Module):
        def forward(self, x):
            if x.sum() > 0:
                return x
            return -x

    class Net(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv2d(3, 3, 1)
            self.gate = Gate()

        def forward(self, x):
            return self.gate(self.conv(x))

    def make():
        return Net()
    """
)


@pytest.fixture
def bad_module(tmp_path, monkeypatch):
    (tmp_path / "pantheon_test_badnet.py").write_text(_BAD_MODULE)
    monkeypatch.syspath_prepend(str(tmp_path))
    return "pantheon_test_badnet:make"


def test_untraceable_model_names_the_op(bad_module):
    with pytest.raises(TraceError) as err:
        sl.slice_model(sl.build_arch(bad_module), torch.randn(1, 3, 8, 8))
    msg = str(err.value)
    assert "\n" not in msg and "gate (Gate)" in msg and "x.sum() > 0" in msg


def test_cli_untraceable_one_line(bad_module):
    r = runner.invoke(app, ["slice", "--arch", bad_module, "--input", "3,8,8"])
    assert r.exit_code == 1
    lines = [ln for ln in r.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "gate (Gate)" in lines[0] and "Traceback" not in r.output


def test_cli_unknown_arch():
    r = runner.invoke(app, ["slice", "--arch", "resnet19", "--input", "3,64,64"])
    assert r.exit_code == 2
    assert "unknown arch 'resnet19'" in r.output and "resnet18" in r.output


@pytest.mark.parametrize("bad", ["3,a,64", "3,0,64", "", "3;64;64"])
def test_cli_bad_input_shape(bad):
    r = runner.invoke(app, ["slice", "--arch", "resnet18", "--input", bad])
    assert r.exit_code == 2 and "bad shape" in r.output


def test_cli_image_too_small_or_wrong_channels():
    r = runner.invoke(app, ["slice", "--arch", "squeezenet1_0", "--input", "1,64,64"])
    assert r.exit_code == 1 and "expected input" in r.output and "Traceback" not in r.output
    r = runner.invoke(app, ["slice", "--arch", "squeezenet1_0", "--input", "3,8,8"])
    assert r.exit_code == 1 and "fails on an input of shape [1, 3, 8, 8]" in r.output


def test_cli_arch_and_task_exclusive():
    r = runner.invoke(app, ["slice", "--arch", "resnet18", "--task", "x"])
    assert r.exit_code == 2


# ------------------------------------------------------------------------------------------------
# CLI reports
# ------------------------------------------------------------------------------------------------


def _cli_json(*args: str) -> dict:
    r = runner.invoke(app, ["slice", *args, "--json"])
    assert r.exit_code == 0, r.output
    return json.loads(r.stdout)


def test_cli_no_merge_gives_more_chunks():
    merged = _cli_json("--arch", "vgg16_bn", "--input", "3,32,32")
    unmerged = _cli_json("--arch", "vgg16_bn", "--input", "3,32,32", "--no-merge")
    assert len(unmerged["chunks"]) > len(merged["chunks"]) > 1
    assert merged["merged"] and not unmerged["merged"]
    assert merged["total_param_bytes"] == unmerged["total_param_bytes"]


def test_cli_googlenet_json_done_when():
    rep = _cli_json("--arch", "googlenet", "--input", "3,224,224")
    assert len(rep["chunks"]) >= 10
    assert rep["max_abs_diff"] == 0.0 or rep["max_abs_diff"] <= 1e-5 * rep["ref_max_abs"]
    assert rep["equivalent"]
    assert [c["index"] for c in rep["chunks"]] == list(range(len(rep["chunks"])))
    assert rep["chunks"][0]["out_shape"] == [1, 64, 56, 56]  # conv1 (stride 2) + maxpool (stride 2)
    assert rep["chunks"][-1]["out_shape"] == [1, 1000]
    assert all(c["param_bytes"] > 0 and c["out_bytes"] > 0 for c in rep["chunks"])


def test_cli_table():
    r = runner.invoke(app, ["slice", "--arch", "alexnet", "--input", "3,64,64"])
    assert r.exit_code == 0, r.output
    assert "params MB" in r.stdout and "output KB" in r.stdout
    assert "max abs diff vs original: 0 (exact)" in r.stdout


def test_cli_task_uses_zoo_model_and_shape():
    zoo = pytest.importorskip("pantheon.zoo")
    if not hasattr(zoo, "get_task"):
        pytest.skip("pantheon.zoo has no get_task yet")
    task = zoo.get_task("digits_resnet18")
    rep = _cli_json("--task", "digits_resnet18")
    assert rep["task"] == "digits_resnet18" and rep["input_shape"] == [1, *task.input_shape]
    assert rep["chunks"][-1]["out_shape"] == [1, task.num_classes] and rep["equivalent"]
    r = runner.invoke(app, ["slice", "--task", "no_such_task"])
    assert r.exit_code == 2 and "no_such_task" in r.output
