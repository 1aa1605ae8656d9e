"""Issue 13: bad input, full disks and Ctrl-C end cleanly (one line, non-zero exit, nothing half-written)."""

from __future__ import annotations

import json
import os
import time

import pytest
from typer.testing import CliRunner

from pantheon.cli import app

runner = CliRunner()

SPEC = {"workloads": [{"model_name": "sign", "deadline": 31000, "period": 33333, "start": 0, "end": 1_000_000,
                       "shape": [1, 3, 16, 16]}]}


def _spec(tmp_path, **over):
    d = json.loads(json.dumps(SPEC))
    d["workloads"][0].update(over)
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(d))
    return p


def _one_line(res):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "Traceback" not in res.output and "unexpected" not in res.output, res.output
    return lines


# -- items 5 and 9: workload bounds, checked before generation; no output on error ----------------


@pytest.mark.parametrize("args, code, fragment", [
    (["--duration", "nan"], 2, "--duration must be a finite number"),
    (["--duration", "inf"], 2, "--duration must be a finite number"),
    (["--duration", "-1"], 2, "--duration must be positive"),
    (["--duration", "0"], 2, "--duration must be positive"),
    (["--duration", "1e9"], 1, "--max-span"),
    (["--load-factor", "nan"], 2, "--load-factor"),
    (["--seed", "-1"], 2, "--seed"),
    (["--max-jobs", "0"], 2, "--max-jobs"),
])
def test_workload_bad_duration_is_refused_quickly_and_writes_nothing(tmp_path, args, code, fragment):
    spec = tmp_path / "s.yaml"
    spec.write_text("name: s\ntasks: {sign: {}}\nworkload: {duration_s: 1, streams: "
                    "[{task: sign, period_ms: 10, deadline_ms: 5}]}\n")
    out = tmp_path / "w.bin"
    t0 = time.monotonic()
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), *args])
    assert time.monotonic() - t0 < 10
    assert res.exit_code == code, res.output
    assert fragment in res.output
    _one_line(res)
    assert not out.exists() and sorted(os.listdir(tmp_path)) == ["s.yaml"]


@pytest.mark.parametrize("over, fragment", [
    ({"period": 0.0001}, "--max-jobs"),
    ({"end": 1e15}, "--max-span"),
])
def test_workload_spec_too_large_is_refused_before_generation(tmp_path, over, fragment):
    spec = _spec(tmp_path, **over)
    out = tmp_path / "w.bin"
    t0 = time.monotonic()
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out)])
    assert time.monotonic() - t0 < 10
    assert res.exit_code == 1 and fragment in res.output, res.output
    _one_line(res)
    assert not out.exists()


def test_workload_limits_can_be_raised(tmp_path):
    spec = _spec(tmp_path, period=100, end=2_000_000)  # 20,000 jobs
    out = tmp_path / "w.bin"
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--max-jobs", "1000"])
    assert res.exit_code == 1 and "20000 jobs" in res.output and not out.exists()
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--max-jobs", "20000"])
    assert res.exit_code == 0, res.output
    from pantheon.formats import read_workloads

    assert len(read_workloads(out).workload) == 20000


def test_workload_does_not_replace_without_force(tmp_path):
    spec = _spec(tmp_path)
    out = tmp_path / "w.bin"
    assert runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out)]).exit_code == 0
    before = out.read_bytes()
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--seed", "3"])
    assert res.exit_code == 1 and "--force" in res.output
    assert out.read_bytes() == before
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--seed", "3", "--force"])
    assert res.exit_code == 0 and out.read_bytes() != before


def test_workload_out_is_a_directory(tmp_path):
    spec = _spec(tmp_path)
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "is a directory" in res.output
    _one_line(res)
