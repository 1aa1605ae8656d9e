"""Workload generation (reference JSON spec, app YAML, Poisson), --show, validation, reference .bin."""

from __future__ import annotations

import json
import math
import statistics

import pytest
from _repo import TaskSpec, build_repository
from _wire import reference_workloads
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import UsageError, WorkloadError
from pantheon.formats import Workloads, read_workloads, write_workloads
from pantheon.formats.app import load_app, parse_app
from pantheon.online.repository import read_repository
from pantheon.online.workload import generate, show, task_timing, validate

runner = CliRunner()

SPEC = {
    "workloads": [
        {"model_name": "sign", "deadline": 31000, "period": 33333, "start": 0, "end": 3_000_000, "shape": [1, 3, 16, 16]},
        {"model_name": "det", "deadline": 20000, "period": 33333, "start": 0, "end": 3_000_000, "shape": [1, 3, 16, 16]},
        {"model_name": "sign", "deadline": 31000, "period": 50000, "start": 1_000_000, "end": 2_000_000},
    ]
}


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    d = tmp_path_factory.mktemp("wlrepo")
    spec = {
        "det": TaskSpec(widths=[4, 4], exits={0: 0.5, 1: 0.6}, latencies=[3000, 2000], exit_latencies={0: 100, 1: 500}),
        "sign": TaskSpec(widths=[4], exits={0: 0.9}, latencies=[1000], exit_latencies={0: 200}),
    }
    return build_repository(d / "repo", spec)


def test_reference_spec_periodic_jobs_have_bounded_jitter(tmp_path):
    ws = generate(parse_app(SPEC, where="spec.json"), seed=3)
    jobs = list(ws.workload)
    assert [j.release for j in jobs] == sorted(j.release for j in jobs)
    sign0 = [j for j in jobs if j.model_name == "sign" and j.deadline - j.release == 31000]
    det = [j for j in jobs if j.model_name == "det"]
    assert len(det) == math.ceil(3_000_000 / 33333) == 91
    assert len(sign0) == 91 + 20  # the third stream: 1 s at 50 ms
    nominal = sorted(k * 33333 for k in range(91))
    for j, n in zip(sorted(det, key=lambda j: j.release), nominal):
        assert abs(j.release - n) <= 1000 and j.deadline - j.release == 20000
        assert j.id == 1 and list(j.shape) == [1, 3, 16, 16]  # id = the stream's index in the spec
    assert {j.id for j in jobs if j.model_name == "sign"} == {0, 2}
    third = [j for j in jobs if j.id == 2]  # the second stream of sign: 1 s at 50 ms
    assert len(third) == 20 and all(999_000 <= j.release <= 1_951_000 for j in third)
    jit = [j.release - n for j, n in zip(sorted(det, key=lambda j: j.release)[1:], nominal[1:])]
    assert min(jit) < -500 and max(jit) > 500  # uniform over +-1000 us, not a constant offset
    assert all(j.release >= 0 for j in jobs)
    again = generate(parse_app(SPEC, where="spec.json"), seed=3)
    assert again == ws and generate(parse_app(SPEC, where="spec.json"), seed=4) != ws


def test_poisson_rate_matches_lambda():
    spec = {"workloads": [{"model_name": "a", "deadline": 30000, "period": 1_000_000, "start": 0,
                           "end": 60_000_000, "lambda": 20}]}
    ws = generate(parse_app(spec, where="p.json"), seed=1)
    n = len(ws.workload)
    assert abs(n - 1200) < 5 * math.sqrt(1200)
    gaps = [b.release - a.release for a, b in zip(ws.workload, ws.workload[1:])]
    assert statistics.mean(gaps) == pytest.approx(50_000, rel=0.1)
    assert statistics.stdev(gaps) == pytest.approx(50_000, rel=0.15)  # exponential: sd == mean
    assert all(w.deadline - w.release == 30000 for w in ws.workload)


def test_app_yaml_multiples_of_model_latency_need_a_repository(repo_dir, tmp_path):
    app_file = tmp_path / "mini.yaml"
    app_file.write_text(
        "name: mini\ntasks: {det: {}, sign: {}}\n"
        "workload:\n  duration_s: 1\n  jitter_us: 0\n  streams:\n"
        "    - {task: det, period_x: 4, deadline_x: 2}\n"
        "    - {task: sign, period_ms: 10, deadline_ms: 8}\n"
    )
    with pytest.raises(UsageError, match="--repo"):
        generate(load_app(app_file))
    repo = read_repository(repo_dir)
    ws = generate(load_app(app_file), repo=repo)
    det = [w for w in ws.workload if w.model_name == "det"]
    full = 3000 + 2000 + 500
    assert repo.tasks["det"].full_latency == full
    assert len(det) == math.ceil(1_000_000 / (4 * full))
    assert all(w.deadline - w.release == 2 * full and w.id == 0 for w in det)
    assert det[1].release - det[0].release == 4 * full  # no jitter
    assert list(det[0].shape) == [1, 3, 16, 16]
    double = generate(load_app(app_file), repo=repo, load_factor=2.0)
    assert len(double.workload) == pytest.approx(2 * len(ws.workload), abs=2)


def test_show_counts_span_and_load(repo_dir):
    repo = read_repository(repo_dir)
    ws = Workloads()
    for task, rel, dl in (("det", 0, 10_000), ("sign", 2000, 6000), ("det", 20_000, 40_000)):
        w = ws.workload.add()
        w.model_name, w.release, w.deadline = task, rel, dl
    info = show(ws, repo)
    assert info["jobs"] == 3 and info["per_task"] == {"det": 2, "sign": 1}
    assert info["span_us"] == 40_000
    assert info["load"] == pytest.approx((5500 * 2 + 1200) / 40_000, abs=1e-4)
    assert "load" not in show(ws)
    timing = task_timing(validate(ws, repo))
    assert timing["det"] == (20_000.0, 15_000.0) and timing["sign"] == (None, 4000.0)


def test_validate_refuses_bad_jobs(repo_dir):
    repo = read_repository(repo_dir)
    for task, rel, dl, shape, msg in (
        ("ghost", 0, 10, [], "names task 'ghost'"),
        ("det", 500, 400, [], "at or before its release"),
        ("det", 500, 500, [], "at or before its release"),
        ("det", 0, 900, [1, 3, 8, 8], "input shape mismatch"),
    ):
        ws = Workloads()
        w = ws.workload.add()
        w.model_name, w.release, w.deadline = task, rel, dl
        w.shape[:] = shape
        with pytest.raises(WorkloadError, match=msg):
            validate(ws, repo)
    with pytest.raises(WorkloadError, match="no jobs"):
        validate(Workloads(), repo)


def test_cli_show_reads_a_reference_encoded_bin(repo_dir, tmp_path):
    """Bytes laid out from the reference field numbers by hand (no generated code)."""
    data = reference_workloads([("det", 0, 20000, (1, 3, 16, 16), 0), ("sign", 100, 31100, (1, 3, 16, 16), 1)])
    path = tmp_path / "ref.bin"
    path.write_bytes(data)
    res = runner.invoke(app, ["workload", "--show", str(path), "--repo", str(repo_dir), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["jobs"] == 2 and info["per_task"] == {"det": 1, "sign": 1} and info["span_us"] == 31100
    assert info["load"] == pytest.approx((5500 + 1200) / 31100, abs=1e-4)


def test_cli_generate_from_reference_json_and_app_names(repo_dir, tmp_path):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(SPEC))
    out = tmp_path / "w.bin"
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--seed", "1"])
    assert res.exit_code == 0, res.output
    ws = read_workloads(out)
    assert len(ws.workload) == 91 * 2 + 20
    assert "total" in res.output and "202" in res.output
    # an app by name, written into the store (workload.bin + workload.json + manifest)
    res = runner.invoke(app, ["workload", "--spec", "traffic", "--duration", "1"])
    assert res.exit_code == 0, res.output
    from pantheon.formats import store

    wdir = store.Store().workload_dir("traffic")
    store.verify(wdir, kind="workload")
    traffic = read_workloads(wdir / "workload.bin")
    counts = show(traffic)["per_task"]
    # 2 streams of each task at 33333 us over 1 s, all from 0: releases 0..999990 (31 each)
    assert counts == {"object_detection": 62, "sign_recognition": 62}
    per_stream = {w.id: set() for w in traffic.workload}
    for w in traffic.workload:
        per_stream[w.id].add(w.model_name)
    # four cameras, four ids, in the app's stream order (the reference's)
    assert per_stream == {0: {"sign_recognition"}, 1: {"sign_recognition"}, 2: {"object_detection"},
                          3: {"object_detection"}}


def test_cli_workload_usage_errors(tmp_path):
    res = runner.invoke(app, ["workload"])
    assert res.exit_code == 2 and "pass --spec APP (generate) or --show" in res.output
    bad = tmp_path / "bad.bin"
    bad.write_bytes(b"\x0a\xff\xff")
    res = runner.invoke(app, ["workload", "--show", str(bad)])
    assert res.exit_code == 1 and "not a Workloads protobuf" in res.output
    spec = tmp_path / "s.json"
    spec.write_text(json.dumps(SPEC))
    out = tmp_path / "x.bin"
    write_workloads(out, Workloads())
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--no-force"])
    assert res.exit_code == 1 and "already exists" in res.output
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out), "--load-factor", "0"])
    assert res.exit_code == 2 and "--load-factor" in res.output
    before = out.read_bytes()
    res = runner.invoke(app, ["workload", "--show", str(out), "--out", str(out), "--force"])
    assert res.exit_code == 2 and "drop --out" in res.output and out.read_bytes() == before
    res = runner.invoke(app, ["workload", "--show", str(out), "--spec", str(tmp_path / "s.json"), "--out", str(out)])
    assert res.exit_code == 2 and out.read_bytes() == before
