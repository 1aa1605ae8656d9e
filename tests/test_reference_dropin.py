"""Drop-in for the reference artifact's files (bench/reference/): its workload specs, .bin files,
deploy settings and profiles against our apps (deploy/apps/), zoo and repositories built here."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _repo import TaskSpec, build_repository
from _wire import reference_workloads
from typer.testing import CliRunner

from pantheon.cli import app as cli
from pantheon.errors import WorkloadError
from pantheon.formats import Workloads, read_model_config, read_workloads, write_workloads
from pantheon.formats.app import load_app
from pantheon.formats.events import read_events
from pantheon.online.repository import read_repository
from pantheon.online.workload import generate, show, stream_rows, validate
from pantheon.zoo import get_task

REF = Path(__file__).resolve().parents[1] / "bench" / "reference"
# reference app name -> ours
APPS = {"indoor_smart_traffic": "traffic", "robot": "robot", "uav": "uav"}
runner = CliRunner()


def _one_line(res):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert len(lines) == 1 and "Traceback" not in res.output, res.output


@pytest.fixture(scope="module")
def repos(tmp_path_factory):
    """One small real repository per app, its tasks taking the zoo's input shapes (as `pantheon plan`
    writes dims = [1, *task.input_shape]); latencies given so the simulator is deterministic."""
    root = tmp_path_factory.mktemp("refrepos")
    out = {}
    for ours in APPS.values():
        app = load_app(ours)
        spec = {t: TaskSpec(widths=[2, 2], exits={0: 0.8, 1: 0.9}, input=get_task(t).input_shape,
                            latencies=[2000, 2000], exit_latencies={0: 300, 1: 500}) for t in app.tasks}
        out[ours] = build_repository(root / ours / "repository", spec, app=ours)
    return out


@pytest.mark.parametrize("ref_name", sorted(APPS))
def test_app_reproduces_the_reference_workload_spec_and_settings(ref_name):
    ref = load_app(REF / "settings" / "workload" / f"{ref_name}.json")
    ours = load_app(APPS[ref_name])
    assert load_app(ref_name).source == ours.source
    assert len(ours.streams) == len(ref.streams)
    for i, (a, b) in enumerate(zip(ours.streams, ref.streams)):
        end = a.end_us if a.end_us is not None else ours.duration_s * 1e6
        assert (a.task, a.period_us, a.deadline_us, a.start_us, end, a.lam) == (
            b.task, b.period_us, b.deadline_us, b.start_us, b.end_us, b.lam), f"stream {i}"
        # the reference's input shape is the zoo task's (our app leaves shapes to the repository)
        assert b.shape == [1, *get_task(a.task).input_shape], f"stream {i} ({a.task})"
    settings = load_app(REF / "settings" / "deploy" / f"{ref_name}.json")
    assert ours.max_memory == settings.max_memory
    assert {k: v.max_delta_accuracy for k, v in ours.tasks.items()} == {
        k: v.max_delta_accuracy for k, v in settings.tasks.items()}


@pytest.mark.parametrize("ref_name", sorted(APPS))
def test_reference_profiles_take_the_zoo_input_shapes(ref_name):
    for cfg_path in sorted((REF / "profiles" / ref_name).glob("*/config.pbtxt")):
        cfg = read_model_config(cfg_path)
        assert list(cfg.dims) == [1, *get_task(cfg.name).input_shape], cfg.name


@pytest.mark.parametrize("ref_name", sorted(APPS))
def test_reference_bin_matches_a_regeneration_stream_for_stream(ref_name):
    ref = read_workloads(REF / "settings" / "workload" / f"{ref_name}.bin")
    ours = load_app(APPS[ref_name])
    regen = generate(ours, seed=5)
    got, want = stream_rows(ref), stream_rows(regen)
    assert [r["stream"] for r in got] == list(range(len(ours.streams)))  # one row per id: one task each
    for a, b, s in zip(got, want, ours.streams):
        assert a["task"] == b["task"] == s.task
        assert a["jobs"] == b["jobs"] == 901  # k * 33333 < 30 s
        assert a["deadline_us"] == b["deadline_us"] == s.deadline_us
        # the mean gap is the period up to the +-1 ms jitter of the first and last releases
        assert abs(a["period_us"] - s.period_us) <= 2000 / 900 and abs(b["period_us"] - s.period_us) <= 2000 / 900
        assert 0 <= a["start_us"] <= 1000 and 0 <= b["start_us"] <= 1000
    for w in ref.workload:  # shapes as our zoo builds the tasks
        assert list(w.shape) == [1, *get_task(w.model_name).input_shape]


@pytest.mark.parametrize("ref_name", sorted(APPS))
def test_reference_bin_validates_against_a_repository_built_here(ref_name, repos, tmp_path):
    ours = APPS[ref_name]
    repo = read_repository(repos[ours])
    ref_bin = REF / "settings" / "workload" / f"{ref_name}.bin"
    ws = read_workloads(ref_bin)
    jobs = validate(ws, repo, app=load_app(ours))
    assert len(jobs) == len(ws.workload) and {j.stream for j in jobs} == set(range(len(load_app(ours).streams)))
    res = runner.invoke(cli, ["workload", "--show", str(ref_bin), "--repo", str(repos[ours]), "--spec", ref_name,
                              "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["app"] == ours and [r["stream"] for r in info["per_stream"]] == list(range(len(jobs) // 901))
    assert [r["task"] for r in info["per_stream"]] == [s.task for s in load_app(ours).streams]


def test_simulated_release_events_carry_the_stream(repos, tmp_path):
    ref_bin = REF / "settings" / "workload" / "indoor_smart_traffic.bin"
    ws = read_workloads(ref_bin)
    short = Workloads()
    short.workload.extend(ws.workload[:400])  # about 3.3 s: every camera has released
    wl = tmp_path / "short.bin"
    write_workloads(wl, short)
    log = tmp_path / "run.jsonl"
    res = runner.invoke(cli, ["simulate", "--repo", str(repos["traffic"]), "--workload", str(wl), "--log", str(log),
                              "--json"])
    assert res.exit_code == 0, res.output
    rel = [e for e in read_events(log) if e["ev"] == "release"]
    assert len(rel) == 400
    by_stream = {}
    for e in rel:
        by_stream.setdefault(e["stream"], set()).add(e["task"])
    assert by_stream == {0: {"sign_recognition"}, 1: {"sign_recognition"}, 2: {"object_detection"},
                         3: {"object_detection"}}
    assert all(e["stream"] == short.workload[e["job"]].id for e in rel)  # job = the index in the file


def _bad_bin(tmp_path, sid):
    dims = (1, *get_task("sign_recognition").input_shape)
    path = tmp_path / f"bad{sid}.bin"
    path.write_bytes(reference_workloads([("sign_recognition", 0, 31000, dims, 0),
                                          ("sign_recognition", 100, 31100, dims, sid)]))
    return path


@pytest.mark.parametrize("sid", [4, 99])
def test_stream_ids_out_of_range_are_one_line_and_write_nothing(repos, tmp_path, sid):
    bad = _bad_bin(tmp_path, sid)
    log = tmp_path / "run"
    res = runner.invoke(cli, ["simulate", "--repo", str(repos["traffic"]), "--workload", str(bad), "--log", str(log)])
    assert res.exit_code == 1, res.output
    assert f"stream id {sid}, out of range" in res.output and "traffic has 4 streams" in res.output
    _one_line(res)
    assert not log.exists()
    res = runner.invoke(cli, ["runtime", str(repos["traffic"]), str(bad), str(log), "--device", "cpu",
                              "--telemetry", "off"])
    assert res.exit_code == 1 and f"stream id {sid}" in res.output, res.output
    _one_line(res)
    assert not log.exists()
    res = runner.invoke(cli, ["workload", "--show", str(bad), "--spec", "traffic"])
    assert res.exit_code == 1 and "ids 0..3" in res.output, res.output
    _one_line(res)
    assert sorted(p.name for p in tmp_path.iterdir()) == [bad.name]


def test_negative_and_mismatched_stream_ids_are_refused(repos, tmp_path):
    repo = read_repository(repos["traffic"])
    ws = Workloads()
    w = ws.workload.add()
    w.model_name, w.release, w.deadline, w.id = "sign_recognition", 0, 31000, -1
    with pytest.raises(WorkloadError, match="stream id -1, out of range"):
        validate(ws, repo)
    w.id = 2  # in range, but stream 2 of traffic is a traffic-light camera
    assert validate(ws, repo)[0].stream == 2  # the repository's app: range only
    with pytest.raises(WorkloadError, match="stream id 2 is a stream of 'object_detection'"):
        validate(ws, repo, app=load_app("traffic"))
    write_workloads(tmp_path / "m.bin", ws)
    res = runner.invoke(cli, ["workload", "--show", str(tmp_path / "m.bin"), "--spec", "traffic"])
    assert res.exit_code == 1 and "is a stream of 'object_detection'" in res.output
    _one_line(res)


def test_show_groups_by_stream_and_by_task(tmp_path):
    ws = read_workloads(REF / "settings" / "workload" / "robot.bin")
    info = show(ws)
    assert info["per_task"] == {t: 901 for t in ("age_classification", "emotion_classification", "face_detection",
                                                 "gender_classification")}
    assert [(r["stream"], r["task"], r["deadline_us"]) for r in info["per_stream"]] == [
        (0, "face_detection", 20000), (1, "gender_classification", 31000), (2, "age_classification", 28000),
        (3, "emotion_classification", 31000)]
    res = runner.invoke(cli, ["workload", "--show", str(REF / "settings" / "workload" / "robot.bin")])
    assert res.exit_code == 0, res.output
    assert "streams (workload id)" in res.output and "gender_classification" in res.output


def test_live_release_events_carry_the_stream(repos, tmp_path):
    ws = read_workloads(REF / "settings" / "workload" / "indoor_smart_traffic.bin")
    short = Workloads()
    short.workload.extend(ws.workload[:12])  # the first three frames of the four cameras (~70 ms)
    wl = tmp_path / "w.bin"
    write_workloads(wl, short)
    run = tmp_path / "live"
    res = runner.invoke(cli, ["runtime", str(repos["traffic"]), str(wl), str(run), "--device", "cpu",
                              "--telemetry", "off", "--json"])
    assert res.exit_code == 0, res.output
    rel = [e for e in read_events(run) if e["ev"] == "release"]
    assert len(rel) == 12 and {e["stream"] for e in rel} == {0, 1, 2, 3}
    assert all(e["stream"] == short.workload[e["job"]].id for e in rel)


def test_api_submissions_have_no_stream(repos, tmp_path):
    import torch

    from pantheon.online.runtime import Runtime

    dims = [1, *get_task("sign_recognition").input_shape]
    with Runtime(repos["traffic"], device="cpu", policy="pantheon", log=tmp_path / "run", telemetry="off") as rt:
        assert rt.submit("sign_recognition", torch.zeros(*dims), relative_deadline_us=60_000_000).result(60).met
    rel = [e for e in read_events(tmp_path / "run") if e["ev"] == "release"]
    assert [e["stream"] for e in rel] == [-1]
