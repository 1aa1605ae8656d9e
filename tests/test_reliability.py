"""Issue 13: bad input, full disks and Ctrl-C end cleanly (one line, non-zero exit, nothing half-written)."""

from __future__ import annotations

import glob
import json
import os
import time

import pytest
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.formats import profiler_wire as wire

runner = CliRunner()

SPEC = {"workloads": [{"model_name": "sign", "deadline": 31000, "period": 33333, "start": 0, "end": 1_000_000,
                       "shape": [1, 3, 16, 16]}]}


def _spec(tmp_path, **over):
    d = json.loads(json.dumps(SPEC))
    d["workloads"][0].update(over)
    p = tmp_path / "spec.json"
    p.write_text(json.dumps(d))
    return p


def _terminal_sigint():
    """In a child before exec: SIGINT as a terminal's Ctrl-C delivers it, even where the test runner ignores it."""
    import signal

    signal.signal(signal.SIGINT, signal.SIG_DFL)


def _one_line(res):
    lines = [ln for ln in res.output.splitlines() if ln.strip()]
    assert "Traceback" not in res.output and "unexpected" not in res.output, res.output
    return lines


def _error_line(res):
    """The one ``error: ...`` line, the last of the output (training commands report progress first)."""
    lines = [ln for ln in _one_line(res) if ln.startswith("error")]
    assert len(lines) == 1 and res.output.rstrip().endswith(lines[0]), res.output
    return lines[0]


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


# -- items 10 and 16: profiler server timeouts, authentication before the body, connection limit --


@pytest.mark.parametrize("args, fragment", [
    (["--idle-timeout", "nan"], "--idle-timeout"),
    (["--idle-timeout", "inf"], "--idle-timeout"),
    (["--read-timeout", "nan"], "--read-timeout"),
    (["--read-timeout", "-1"], "--read-timeout"),
    (["--port", "-1"], "--port"),
    (["--port", "70000"], "--port"),
    (["--max-connections", "0"], "--max-connections"),
])
def test_profiler_server_refuses_bad_limits(args, fragment):
    res = runner.invoke(app, ["profiler-server", *args])
    assert res.exit_code == 2, res.output
    assert fragment in res.output
    _one_line(res)


def _profiler_bits():
    import hashlib
    import socket
    import struct

    from pantheon.online import profiler_server as ps

    def connect(s):
        return socket.create_connection(("127.0.0.1", s.port), timeout=10)

    def read_reply(sock):
        n = wire.recv_header(sock)
        assert n is not None, "server closed without a reply"
        return wire.ProfileReply.FromString(wire.recv_exact(sock, n))

    def request(token, data=b"x" * 100):
        return wire.ProfileRequest(version=wire.PROTOCOL_VERSION, token=token, file_name="m.pt", file=data,
                                   sha256=hashlib.sha256(data).hexdigest(), input_shape=[1, 4], ping=False)

    return ps, connect, read_reply, request, struct, socket


def test_profiler_token_is_checked_before_the_body_is_read(tmp_path):
    from _profiling import server

    ps, connect, read_reply, request, struct, _ = _profiler_bits()
    assert ps.DEFAULT_MAX_BYTES == 256 << 20 and ps.ServerConfig().max_bytes == 256 << 20
    with server(tmp_path, "--repeat", "2", "--max-bytes", str(1 << 30), env={"PANTHEON_TOKEN": "s3cret"}) as s:
        for token in ("wrong!", "", "s3cre", "s3cret-and-more"):
            body = request(token).SerializeToString()
            with connect(s) as sock:
                # announce 512 MiB but send only the first bytes: the server must answer from them alone
                sock.sendall(struct.pack(">Q", 512 << 20) + body[:40])
                r = read_reply(sock)
                assert not r.ok and r.error_kind == wire.ErrorKind.AUTH and "token" in r.error
                assert sock.recv(1) == b""  # closed, the body never read
        # the right token: the whole request is read and answered as before (a module that does not load)
        with connect(s) as sock:
            wire.send_msg(sock, request("s3cret"))
            r = read_reply(sock)
            assert not r.ok and r.error_kind == wire.ErrorKind.MODEL
            wire.send_msg(sock, wire.ProfileRequest(version=wire.PROTOCOL_VERSION, token="s3cret", ping=True))
            assert read_reply(sock).ok
        assert "wrong or missing token" in s.logs()
    with server(tmp_path, "--repeat", "2") as s, connect(s) as sock:  # default --max-bytes: 256 MiB
        sock.sendall(struct.pack(">Q", 300 << 20))
        r = read_reply(sock)
        assert not r.ok and "exceeds the server limit of 268435456" in r.error


def test_profiler_read_timeout_bounds_a_whole_message(tmp_path):
    from _profiling import server

    ps, connect, read_reply, request, struct, socket = _profiler_bits()
    with server(tmp_path, "--repeat", "2", "--read-timeout", "1") as s, connect(s) as sock:
        sock.sendall(struct.pack(">Q", 100))
        t0 = time.monotonic()
        closed = False
        for _ in range(40):  # one byte every 0.2 s: each recv is quick, the message never completes
            try:
                sock.sendall(b"\x00")
            except OSError:
                closed = True
                break
            time.sleep(0.2)
            sock.setblocking(False)
            try:
                if sock.recv(1) == b"":
                    closed = True
                    break
            except BlockingIOError:
                pass
            finally:
                sock.setblocking(True)
        assert closed and time.monotonic() - t0 < 4
        assert "timed out" in s.logs()


def test_profiler_server_limits_concurrent_connections(tmp_path):
    from _profiling import server

    ps, connect, read_reply, request, struct, _ = _profiler_bits()
    with server(tmp_path, "--repeat", "2", "--max-connections", "2") as s:
        a, b = connect(s), connect(s)
        ping = wire.ProfileRequest(version=wire.PROTOCOL_VERSION, ping=True)
        for sock in (a, b):
            wire.send_msg(sock, ping)
            assert read_reply(sock).ok
        with connect(s) as c:
            r = read_reply(c)
            assert not r.ok and r.error_kind == wire.ErrorKind.LIMIT and "--max-connections" in r.error
            assert c.recv(1) == b""
        a.close()
        deadline = time.monotonic() + 10
        while True:  # the slot frees once the server sees the close
            with connect(s) as d:
                wire.send_msg(d, ping)
                r = read_reply(d)
            if r.ok or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert r.ok
        b.close()


# -- item 13: simulate --jitter bounded, --log all-or-nothing on a full disk ----------------------


@pytest.fixture(scope="module")
def sim_inputs(tmp_path_factory):
    from _repo import TaskSpec, build_repository, write_workload

    d = tmp_path_factory.mktemp("simrepo")
    repo = build_repository(d / "repo", {
        "a": TaskSpec(widths=[4, 4], exits={0: 0.6, 1: 0.9}, latencies=[300, 200], exit_latencies={0: 50, 1: 80}),
        "b": TaskSpec(widths=[4], exits={0: 0.8}, latencies=[400], exit_latencies={0: 60}),
    })
    jobs = [("a" if k % 3 else "b", k * 500, k * 500 + 1500) for k in range(600)]
    wl = write_workload(d / "w.bin", jobs)
    other = write_workload(d / "other.bin", [("b", k * 700, k * 700 + 900) for k in range(50)])
    return repo, wl, other


@pytest.mark.parametrize("jitter", ["nan", "inf", "-inf", "50", "1e300", "-0.1", "2.5"])
def test_simulate_refuses_a_jitter_that_is_not_finite_and_bounded(sim_inputs, tmp_path, jitter):
    repo, wl, _ = sim_inputs
    log = tmp_path / "log"
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--jitter", jitter,
                              "--log", str(log)])
    assert res.exit_code == 2, res.output
    assert "--jitter must be a finite number in [0, 2]" in res.output
    _one_line(res)
    assert not log.exists()


def test_simulate_jitter_two_still_runs(sim_inputs):
    repo, wl, _ = sim_inputs
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--jitter", "2", "--json"])
    assert res.exit_code == 0, res.output
    assert json.loads(res.stdout[res.stdout.index("{"):])["jobs"] == 600


class _FullDisk:
    """A real file whose writes fail with ENOSPC once ``room`` bytes were written (a full disk)."""

    def __init__(self, f, room):
        self._f, self.room = f, room

    def write(self, text):
        import errno

        if len(text) > self.room:
            self._f.write(text[: self.room])
            self.room = 0
            raise OSError(errno.ENOSPC, "No space left on device")
        self.room -= len(text)
        return self._f.write(text)

    def __getattr__(self, name):
        return getattr(self._f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self._f.close()


def _fill_disk_after(monkeypatch, module, room):
    import builtins

    real_open = builtins.open

    def fake_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return _FullDisk(f, room) if "w" in mode else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


@pytest.mark.parametrize("target", ["run", "run.jsonl"])
def test_simulate_log_on_a_full_disk_leaves_nothing(sim_inputs, tmp_path, monkeypatch, target):
    from pantheon.formats import events

    repo, wl, _ = sim_inputs
    out_dir = tmp_path / "logs"
    out_dir.mkdir()
    log = out_dir / target
    _fill_disk_after(monkeypatch, events, 3000)
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(log)])
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.output and "cannot write" in res.output and str(log) in res.output
    _one_line(res)
    assert os.listdir(out_dir) == []  # no truncated events.jsonl, no temp file or folder
    monkeypatch.undo()
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(log)])
    assert res.exit_code == 0, res.output
    if target == "run":
        from pantheon.formats import store

        store.verify(log, kind="log", required=["events.jsonl", "run.json"])
    else:
        assert os.listdir(out_dir) == ["run.jsonl"]


# -- items 3, 4, 11: closed manifests, verified run folders, the run's own workload ----------------


def _reports_written():
    from pantheon.formats import store

    d = store.Store().root / "reports"
    return sorted(p.name for p in d.rglob("*")) if d.exists() else []


def test_report_verifies_the_run_folder_first(sim_inputs, tmp_path):
    repo, wl, _ = sim_inputs
    run = tmp_path / "run"
    assert runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(run)]).exit_code == 0
    ok = runner.invoke(app, ["report", str(run), "--json", "--no-plots"])
    assert ok.exit_code == 0, ok.output
    written = _reports_written()
    events = run / "events.jsonl"
    text = events.read_text()
    assert text.count('"met":true') >= 10
    events.write_text(text.replace('"met":true', '"met":false', 10))  # a tampered log
    for target in (run, events):
        res = runner.invoke(app, ["report", str(target), "--no-plots"])
        assert res.exit_code == 1 and "altered" in res.output, res.output
        _one_line(res)
    assert _reports_written() == written  # no new sealed report
    events.write_text(text)
    (run / "manifest.json").unlink()  # an unsealed folder (a run that did not finish)
    res = runner.invoke(app, ["report", str(run), "--no-plots"])
    assert res.exit_code == 1 and "has no manifest.json" in res.output
    assert _reports_written() == written


def test_an_unlisted_task_in_a_repository_is_refused(sim_inputs, tmp_path):
    import shutil

    from pantheon.formats import store

    repo, wl, _ = sim_inputs
    copy = tmp_path / "repo"
    shutil.copytree(repo, copy)
    assert runner.invoke(app, ["simulate", "--repo", str(copy), "--workload", str(wl)]).exit_code == 0
    shutil.copytree(copy / "b", copy / "zz_extra")  # a task the manifest does not list
    res = runner.invoke(app, ["simulate", "--repo", str(copy), "--workload", str(wl)])
    assert res.exit_code == 1 and "zz_extra" in res.output and "not listed" in res.output, res.output
    _one_line(res)
    shutil.rmtree(copy / "zz_extra")
    (copy / "a" / "model_files" / "block_09.pt").write_bytes(b"x")  # one extra file is enough
    with pytest.raises(Exception, match="block_09.pt is not listed"):
        store.verify(copy, kind="repository")
    assert not store.is_complete(copy)


def test_report_refuses_a_workload_the_run_did_not_replay(sim_inputs, tmp_path):
    repo, wl, other = sim_inputs
    log = tmp_path / "run.jsonl"
    assert runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(log)]).exit_code == 0
    res = runner.invoke(app, ["report", str(log), "--workload", str(other), "--no-plots", "--out", str(tmp_path / "r")])
    assert res.exit_code == 1 and "not the workload of this run" in res.output, res.output
    _one_line(res)
    assert not (tmp_path / "r").exists()
    from _repo import write_workload

    same_count = write_workload(tmp_path / "w600.bin", [("b", k * 500, k * 500 + 1500) for k in range(600)])
    res = runner.invoke(app, ["report", str(log), "--workload", str(same_count), "--no-plots"])
    assert res.exit_code == 1 and "not the workload of this run" in res.output
    res = runner.invoke(app, ["report", str(log), "--workload", str(wl), "--no-plots", "--json"])
    assert res.exit_code == 0, res.output


# -- items 6 and 8: construct --run-id is a plain name; float options finite -----------------------


@pytest.mark.parametrize("args, fragment", [
    (["--run-id", "../../../escaped"], "--run-id must be a plain name"),
    (["--run-id", "/abs/path"], "--run-id must be a plain name"),
    (["--run-id", "a/b"], "--run-id must be a plain name"),
    (["--run-id", ".."], "--run-id must be a plain name"),
    (["--run-id", "x..y"], "--run-id must be a plain name"),
    (["--learning_rate", "nan"], "--learning_rate must be a finite number"),
    (["--learning_rate", "inf"], "--learning_rate must be a finite number"),
    (["--learning_rate", "-0.1"], "--learning_rate must be positive"),
    (["--weight_decay", "nan"], "--weight_decay must be a finite number"),
    (["--seed", "-1"], "--seed must be >= 0"),
])
def test_construct_refuses_bad_run_ids_and_floats_before_training(tmp_path, args, fragment):
    from pantheon.formats import store

    root = store.Store().root
    res = runner.invoke(app, ["construct", "--task", "digits_resnet18", "--log", str(tmp_path / "runs"), *args])
    assert res.exit_code == 2, res.output
    assert fragment in res.output
    _one_line(res)
    assert not (tmp_path / "runs").exists() and not (tmp_path / "escaped").exists()
    assert not (root / "runs").exists() and not (root / "pretrained").exists()


# -- item 1: export on a full disk ------------------------------------------------------------------


@pytest.fixture(scope="module")
def construct_run(tmp_path_factory):
    import torch

    from pantheon.offline.construct import ConstructConfig, construct
    from pantheon.zoo import get_task

    root = tmp_path_factory.mktemp("export-run")
    weights = root / "backbone.pt"
    torch.manual_seed(0)
    torch.save(get_task("digits_googlenet").build_model().state_dict(), weights)
    return construct(ConstructConfig(task="digits_googlenet", pretrain=str(weights), log=str(root / "runs"),
                                     max_epochs=1, limit=64, batch_size=32)).run_dir


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_export_on_a_full_disk_is_one_line_and_leaves_nothing(construct_run, tmp_path, monkeypatch):
    from pantheon.formats import store

    parent = tmp_path / "out"
    parent.mkdir()
    dest = parent / "variants"
    _fill_disk_after(monkeypatch, store, 20_000)  # the first chunk files fit, then the disk is full
    res = runner.invoke(app, ["export", "--task", "digits_googlenet", "--weights", str(construct_run),
                              "--save", str(dest)])
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.output and str(parent) in res.output
    assert "c10::Error" not in res.output
    _one_line(res)
    assert os.listdir(parent) == []  # no .variants.tmp-XXXX left behind
    monkeypatch.undo()
    res = runner.invoke(app, ["export", "--task", "digits_googlenet", "--weights", str(construct_run),
                              "--save", str(dest)])
    assert res.exit_code == 0, res.output
    store.verify(dest, kind="variants")


def test_pretrain_refuses_a_zero_limit():
    res = runner.invoke(app, ["pretrain", "--task", "digits_resnet18", "--limit", "0"])
    assert res.exit_code == 2 and "--limit must be positive" in res.output
    _one_line(res)


# -- item 2: bench under SIGINT stops, exits 130 and seals nothing ---------------------------------


def test_bench_sigint_stops_exits_130_and_seals_nothing(tmp_path):
    import glob
    import signal
    import subprocess
    import sys

    from _repo import TaskSpec, build_repository

    root = tmp_path / "data"
    build_repository(root / "apps" / "tiny" / "repository",
                     {"a": TaskSpec(widths=[4, 4], exits={0: 0.6, 1: 0.9}, latencies=[300, 300],
                                    exit_latencies={0: 50, 1: 80})}, app="tiny")
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "tiny.yaml").write_text("name: tiny\ntasks: {a: {}}\nworkload: {duration_s: 8, jitter_us: 0, streams: "
                                    "[{task: a, period_ms: 20, deadline_ms: 40}]}\n")
    out = tmp_path / "B"
    env = dict(os.environ, PANTHEON_DATA=str(root), PANTHEON_APPS=str(apps), PANTHEON_PROGRESS="0")
    proc = subprocess.Popen(
        [sys.executable, "-m", "pantheon.cli", "bench", "--app", "tiny", "--policies", "fifo,edf", "--duration", "8",
         "--decisions", "0", "--out", str(out), "--device", "cpu", "--telemetry", "off"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True,
        preexec_fn=_terminal_sigint)
    try:
        deadline = time.monotonic() + 120
        pattern = str(tmp_path / ".B.tmp-*" / "runs" / "fifo" / "events.jsonl")
        while not glob.glob(pattern):  # the first live run has started
            assert proc.poll() is None, proc.communicate()
            assert time.monotonic() < deadline, "bench did not start its first live run"
            time.sleep(0.1)
        time.sleep(1.0)
        proc.send_signal(signal.SIGINT)
        stdout, stderr = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, stderr
    assert "interrupted" in stderr and "Traceback" not in stderr and "Exception ignored" not in stderr
    assert not out.exists()
    assert sorted(os.listdir(tmp_path)) == ["apps", "data"]  # no temp folder either
    assert "edf" not in stdout


# -- item 17: a skipped plan does not say it wrote ---------------------------------------------------


def test_plan_up_to_date_does_not_say_wrote(tmp_path):
    from _profiling import make_variants

    csv = "block latency,branch latency,block mem,branch mem,accuracy\n1.0,0.2,2.0,0.1,0.80\n1.0,0.3,2.0,0.2,0.90\n"
    base = tmp_path / "variants"
    make_variants(base / "ta", "ta", n_blocks=2, profile_csv=csv)
    y = tmp_path / "mini.yaml"
    y.write_text("name: mini\ntasks:\n  ta: {max_delta_accuracy: 0.2}\n")
    args = ["plan", "--setting", str(y), "--base", str(base), "--exhaustive"]
    first = runner.invoke(app, args)
    assert first.exit_code == 0 and "wrote " in first.output, first.output
    again = runner.invoke(app, args)
    assert again.exit_code == 0 and "skipped (up to date)" in again.output
    assert "wrote " not in again.output


# -- item 14: one CLI boundary: OSError, BrokenPipeError and bad values are one line naming the path --


def test_output_paths_under_a_file_are_one_line_naming_the_path(sim_inputs, tmp_path, monkeypatch):
    repo, wl, _ = sim_inputs
    blocker = tmp_path / "file.txt"
    blocker.write_text("not a folder")
    spec = _spec(tmp_path)
    cases = [
        (["workload", "--spec", str(spec), "--out", str(blocker / "w.bin")], str(blocker)),
        (["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(blocker / "run")], str(blocker)),
        (["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(blocker / "x" / "run.jsonl")],
         str(blocker)),
    ]
    for args, fragment in cases:
        res = runner.invoke(app, args)
        assert res.exit_code == 1, (args, res.output)
        assert fragment in res.output, res.output
        _one_line(res)
    monkeypatch.setenv("PANTHEON_DATA", str(blocker))  # a data root that is a file
    res = runner.invoke(app, ["workload", "--spec", str(spec)])
    assert res.exit_code == 1 and str(blocker) in res.output, res.output
    _one_line(res)
    assert blocker.read_text() == "not a folder"


@pytest.mark.parametrize("content, fragment", [
    ({"workloads": 5}, "'workloads' must be a list"),
    ({"workloads": [{"model_name": "a", "deadline": 10, "period": 10, "shape": "abc"}]}, "shape must be a list"),
    ({"name": "x", "tasks": {"a": {}}, "workload": {"seed": -1, "streams": []}}, "seed must be a non-negative"),
    ({"name": "x", "tasks": {"a": {}}, "workload": {"streams": {"task": "a"}}}, "must be a list of streams"),
])
def test_workload_spec_type_errors_are_one_line(tmp_path, content, fragment):
    spec = tmp_path / "spec.json"
    spec.write_text(json.dumps(content))
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(tmp_path / "w.bin")])
    assert res.exit_code == 1 and fragment in res.output, res.output
    _one_line(res)
    assert not (tmp_path / "w.bin").exists()


def test_binary_event_log_and_huge_slice_input_are_one_line(tmp_path):
    log = tmp_path / "events.jsonl"
    log.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe\x00binary")
    res = runner.invoke(app, ["report", str(log), "--no-plots"])
    assert res.exit_code == 1 and "not a pantheon event log" in res.output and str(log) in res.output
    _one_line(res)
    res = runner.invoke(app, ["slice", "--arch", "resnet18", "--input", "3,100000,100000"])
    assert res.exit_code == 2 and "elements" in res.output
    _one_line(res)


def test_json_into_a_closed_pipe_is_one_line(tmp_path):
    import subprocess
    import sys

    r, w = os.pipe()
    os.close(r)  # the reader (`| head`) is gone before anything is written
    try:
        proc = subprocess.run([sys.executable, "-m", "pantheon.cli", "zoo", "--json"], stdout=w,
                              stderr=subprocess.PIPE, text=True, timeout=120)
    finally:
        os.close(w)
    assert proc.returncode == 1, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "broken pipe" in lines[0], proc.stderr
    assert "unexpected" not in proc.stderr and "Exception ignored" not in proc.stderr


# -- item 12: a runtime refused at its options leaves no sealed log -----------------------------------


@pytest.mark.parametrize("args", [["--time-scale", "nan"], ["--best-effort", "a:nan"], ["--max-inflight", "0"]])
def test_runtime_bad_options_leave_no_log(sim_inputs, tmp_path, args):
    repo, wl, _ = sim_inputs
    log = tmp_path / "run"
    res = runner.invoke(app, ["runtime", str(repo), str(wl), str(log), "--device", "cpu", "--telemetry", "off", *args])
    assert res.exit_code == 2, res.output
    assert args[0] in res.output
    _one_line(res)
    assert not log.exists()


def test_workload_on_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch):
    spec = _spec(tmp_path)
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    real_fdopen = os.fdopen

    def full_fdopen(fd, mode="r", *a, **kw):
        f = real_fdopen(fd, mode, *a, **kw)
        return _FullDisk(f, 10) if "w" in mode else f

    monkeypatch.setattr(os, "fdopen", full_fdopen)
    res = runner.invoke(app, ["workload", "--spec", str(spec), "--out", str(out_dir / "w.bin")])
    monkeypatch.undo()
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.output and str(out_dir / "w.bin") in res.output
    _one_line(res)
    assert os.listdir(out_dir) == []


def test_simulate_log_into_a_foreign_folder_is_refused(sim_inputs, tmp_path):
    repo, wl, _ = sim_inputs
    folder = tmp_path / "mine"
    folder.mkdir()
    (folder / "notes.txt").write_text("keep me")
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(folder)])
    assert res.exit_code == 2 and "holding other files" in res.output, res.output
    assert os.listdir(folder) == ["notes.txt"] and sorted(os.listdir(tmp_path)) == ["mine"]
    empty = tmp_path / "empty"
    empty.mkdir()
    for _ in range(2):  # an empty folder, then the run folder it became, are (re)written
        res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(empty)])
        assert res.exit_code == 0, res.output
        assert sorted(os.listdir(empty)) == ["events.jsonl", "manifest.json", "run.json"]


def test_simulate_sigint_exits_130_and_leaves_no_log(sim_inputs, tmp_path):
    import glob
    import signal
    import subprocess
    import sys

    from _repo import write_workload

    repo, _, _ = sim_inputs
    big = write_workload(tmp_path / "big.bin", [("a" if k % 3 else "b", k * 400, k * 400 + 1500)
                                                for k in range(500_000)])
    out_dir = tmp_path / "logs"
    out_dir.mkdir()
    for target in ("run", "run.jsonl"):
        proc = subprocess.Popen([sys.executable, "-m", "pantheon.cli", "simulate", "--repo", str(repo), "--workload",
                                 str(big), "--log", str(out_dir / target)],
                                stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                env=dict(os.environ, PANTHEON_PROGRESS="0"), preexec_fn=_terminal_sigint)
        try:
            deadline = time.monotonic() + 120
            while not glob.glob(str(out_dir / ".run*")):  # the temporary log exists: the run is under way
                assert proc.poll() is None, proc.communicate()
                assert time.monotonic() < deadline
                time.sleep(0.05)
            time.sleep(0.3)
            proc.send_signal(signal.SIGINT)
            _, stderr = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert proc.returncode == 130, stderr
        assert "interrupted" in stderr and "Traceback" not in stderr
        assert os.listdir(out_dir) == []


# -- items 1, 13, 14: real read-only and full file systems, one line per writing command ------------


def _mount_tmpfs(path, options):
    import subprocess

    path.mkdir(parents=True, exist_ok=True)
    try:
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", options, "tmpfs", str(path)], capture_output=True,
                             text=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        pytest.skip(f"cannot run mount here ({exc}): real read-only and full disks need root (or CAP_SYS_ADMIN)")
    if res.returncode != 0:
        pytest.skip(f"mounting a tmpfs is not permitted here ({res.stderr.strip() or res.returncode}): "
                    f"run as root (or with CAP_SYS_ADMIN) to test real read-only and full disks")


def _umount(path):
    import subprocess

    try:
        subprocess.run(["umount", "-l", str(path)], capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pass


def _reference_repository(root, tasks=1, blocks=2, size=16):
    """A reference-artifact repository (what ``pantheon repository import`` reads): per task ``config.pbtxt``
    and traced conv blocks and exits saved as ``model_files/*.pth``, no manifest. Every task holds the same
    chunks (copied), so many tasks cost little to build."""
    import shutil
    import warnings

    import torch
    from torch import nn

    from pantheon.formats import ModelConfig, model_config_to_text

    torch.manual_seed(0)
    first = root / "t000" / "model_files"
    first.mkdir(parents=True)
    x = torch.randn(1, 3, size, size)
    c_in, profile = 3, []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        for b in range(blocks):
            block = nn.Sequential(nn.Conv2d(c_in, 8, 3, padding=1), nn.ReLU()).eval()
            torch.jit.save(torch.jit.trace(block, x), str(first / f"block_{b:02d}.pth"))
            x, c_in = block(x), 8
            head = nn.Sequential(nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(8, 10)).eval()
            torch.jit.save(torch.jit.trace(head, x), str(first / f"branch_{b:02d}.pth"))
            profile.append(b)
    for t in range(tasks):
        name = f"t{t:03d}"
        if t:
            shutil.copytree(first, root / name / "model_files")
        cfg = ModelConfig(name=name, dims=[1, 3, size, size])
        for b in profile:
            cfg.block_profile.add(id=b, latency=100 * (b + 1))
            cfg.exit_profile.add(id=b, latency=10, accuracy=0.5 + 0.1 * b)
        (root / name / "config.pbtxt").write_text(model_config_to_text(cfg))
    return root


def _mini_app(folder, duration_s=2):
    """A one-task digits app (``pantheon pipeline`` runs it in about 10 s on 2 cores)."""
    path = folder / "pipeline-mini.yaml"
    path.write_text(f"name: mini\nmax_memory: 100\ntasks:\n  digits_resnet18: {{max_delta_accuracy: 0.5}}\n"
                    f"workload: {{duration_s: {duration_s}, streams: [{{task: digits_resnet18, period_ms: 50, "
                    f"deadline_ms: 40}}]}}\n")
    return path


@pytest.fixture(scope="module")
def hostile_disks(tmp_path_factory):
    """Two real file systems: ``ro`` (read-only, holding an empty ``sub/``) and ``full`` (no byte left,
    holding an empty ``sub/``), plus the inputs of every cheap writing command."""
    import errno
    import subprocess

    from _profiling import make_variants
    from _repo import TaskSpec, build_repository, write_workload

    d = tmp_path_factory.mktemp("disks")
    ro, full = d / "ro", d / "full"
    _mount_tmpfs(ro, "size=1m")
    try:
        (ro / "sub").mkdir()
        make_variants(ro / "variants", "digits_mobilenet_v2", n_blocks=2, hw=32)  # profile writes into its variants
        res = subprocess.run(["mount", "-o", "remount,ro", str(ro)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"remounting read-only is not permitted here: {res.stderr.strip()}")
        _mount_tmpfs(full, "size=256k,nr_inodes=64")
        (full / "sub").mkdir()
        make_variants(full / "variants", "digits_mobilenet_v2", n_blocks=2, hw=32)
        fd = os.open(full / "ballast", os.O_WRONLY | os.O_CREAT)
        try:
            while True:
                os.write(fd, b"\0" * 512)
        except OSError as exc:
            assert exc.errno == errno.ENOSPC
        finally:
            os.close(fd)
        inputs = d / "in"
        repo = build_repository(inputs / "repo", {
            "a": TaskSpec(widths=[4, 4], exits={0: 0.6, 1: 0.9}, latencies=[300, 200], exit_latencies={0: 50, 1: 80}),
        })
        wl = write_workload(inputs / "w.bin", [("a", k * 500, k * 500 + 1500) for k in range(400)])
        spec = _spec(inputs)
        run = inputs / "run"
        assert runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(run)]
                             ).exit_code == 0
        csv = "block latency,branch latency,block mem,branch mem,accuracy\n1.0,0.2,2.0,0.1,0.80\n1.0,0.3,2.0,0.2,0.90\n"
        make_variants(inputs / "variants" / "ta", "ta", n_blocks=2, profile_csv=csv)
        setting = inputs / "mini.yaml"
        setting.write_text("name: mini\ntasks:\n  ta: {max_delta_accuracy: 0.2}\n")
        import torch

        from pantheon.zoo import get_task

        torch.manual_seed(0)
        torch.save(get_task("digits_resnet18").build_model().state_dict(), inputs / "backbone.pt")
        build_repository(inputs / "bench-data" / "apps" / "tiny" / "repository", {
            "a": TaskSpec(widths=[4], exits={0: 0.8}, latencies=[300], exit_latencies={0: 50})}, app="tiny")
        (inputs / "apps").mkdir()
        (inputs / "apps" / "tiny.yaml").write_text("name: tiny\ntasks: {a: {}}\nworkload: {duration_s: 1, streams: "
                                                   "[{task: a, period_ms: 50, deadline_ms: 40}]}\n")
        yield {"ro": ro, "full": full, "repo": repo, "wl": wl, "spec": spec, "run": run,
               "variants": inputs / "variants", "setting": setting, "weights": inputs / "backbone.pt",
               "bench_data": inputs / "bench-data", "apps": inputs / "apps",
               "reference": _reference_repository(inputs / "reference"), "mini": _mini_app(inputs)}
    finally:
        _umount(ro)
        _umount(full)


WRITING_COMMANDS = {
    "workload --out": ["workload", "--spec", "{spec}", "--out", "{D}/w.bin"],
    "workload --out in a folder": ["workload", "--spec", "{spec}", "--out", "{D}/sub/w.bin"],
    "workload --out in a new folder": ["workload", "--spec", "{spec}", "--out", "{D}/new/w.bin"],
    "workload into the store": ["--data-root", "{D}/data", "workload", "--spec", "{spec}"],
    "simulate --log folder": ["simulate", "--repo", "{repo}", "--workload", "{wl}", "--log", "{D}/run"],
    "simulate --log file": ["simulate", "--repo", "{repo}", "--workload", "{wl}", "--log", "{D}/sub/run.jsonl"],
    "simulate --out": ["simulate", "--repo", "{repo}", "--workload", "{wl}", "--out", "{D}/rep"],
    "report --out": ["report", "{run}", "--no-plots", "--out", "{D}/sub/rep"],
    "report into the store": ["--data-root", "{D}/data", "report", "{run}", "--no-plots"],
    "plan --save": ["plan", "--setting", "{setting}", "--base", "{variants}", "--exhaustive", "--save", "{D}/repo"],
    "pretrain into the store": ["--data-root", "{D}/data", "pretrain", "--task", "digits_resnet18", "--epochs", "1",
                                "--limit", "64"],
    "construct --log": ["construct", "--task", "digits_resnet18", "--pretrain", "{weights}", "--max_epochs", "1",
                        "--limit", "64", "--log", "{D}/sub/runs"],
    "runtime log folder": ["runtime", "{repo}", "{wl}", "{D}/rt", "--device", "cpu"],
    "runtime log file": ["runtime", "{repo}", "{wl}", "{D}/sub/rt.jsonl", "--device", "cpu"],
    "bench --out": ["--data-root", "{bench_data}", "bench", "--app", "tiny", "--policies", "fifo", "--decisions", "0",
                    "--device", "cpu", "--telemetry", "off", "--out", "{D}/B"],
    "profile into its variants": ["profile", "--weights", "{D}/variants", "--local", "--repeat", "2", "--max-samples",
                                  "32"],
    "repository import --out": ["repository", "import", "{reference}", "--out", "{D}/sub/repo"],
    "repository import into the store": ["--data-root", "{D}/data", "repository", "import", "{reference}"],
    "demo --quick": ["demo", "--quick", "--out", "{D}/demo", "--policy", "fifo", "--device", "cpu"],
    "pipeline into the store": ["--data-root", "{D}/data", "pipeline", "--app", "{mini}", "--local", "--limit", "32",
                                "--epochs", "1"],
}


@pytest.mark.parametrize("disk", ["ro", "full"])
@pytest.mark.parametrize("command", list(WRITING_COMMANDS))
def test_writing_commands_on_read_only_and_full_disks_are_one_line(hostile_disks, disk, command, monkeypatch):
    monkeypatch.setenv("PANTHEON_APPS", str(hostile_disks["apps"]))
    mount = hostile_disks[disk]
    values = {k: str(v) for k, v in hostile_disks.items()}
    args = [a.format(D=mount, **values) for a in WRITING_COMMANDS[command]]
    before = sorted(p.relative_to(mount).as_posix() for p in mount.rglob("*"))
    res = runner.invoke(app, args)
    assert res.exit_code == 1, (args, res.output)
    errors = [ln for ln in _one_line(res) if ln.startswith("error")]  # training commands report progress first
    assert len(errors) == 1 and res.output.rstrip().endswith(errors[0]), res.output
    line = errors[0]
    assert str(mount) in line and ".tmp-" not in line, line  # the user's path, not a temporary one
    if disk == "ro":
        assert "read-only" in line.lower() and "pick" in line, line
    else:
        assert "No space left on device" in line and ("free" in line or "pick" in line), line
    assert sorted(p.relative_to(mount).as_posix() for p in mount.rglob("*")) == before


@pytest.mark.timeout(120)  # without the check, the 1000 epochs below run for hours
def test_pretrain_on_a_full_disk_is_refused_before_the_training(hostile_disks):
    """The destination is tried first (a small file written and removed), so a full disk is one line at once, as
    it is for ``demo`` and ``pipeline``, whose first stage this is."""
    full = hostile_disks["full"]
    before = _tree(full)
    t0 = time.monotonic()
    res = runner.invoke(app, ["--data-root", str(full / "data"), "pretrain", "--task", "digits_resnet18", "--epochs",
                              "1000"])
    assert res.exit_code == 1, res.output
    assert time.monotonic() - t0 < 60
    line = _error_line(res)
    assert "No space left on device" in line, line
    assert f"cannot write {full / 'data' / 'pretrained' / 'digits_resnet18'}:" in line, line
    assert _tree(full) == before  # the probe and the folders made for it are gone


@pytest.mark.timeout(120)  # without the check, 10^8 timed calls per chunk run for hours
def test_profile_on_a_full_disk_is_refused_before_the_timing(hostile_disks):
    """``profile`` (minutes when a board times the chunks) tries its destination first, as pretrain does."""
    full = hostile_disks["full"]
    before = _tree(full)
    t0 = time.monotonic()
    res = runner.invoke(app, ["profile", "--weights", str(full / "variants"), "--local", "--repeat", "100000000"])
    assert res.exit_code == 1, res.output
    assert time.monotonic() - t0 < 60
    line = _error_line(res)
    assert "No space left on device" in line and f"cannot write {full / 'variants' / 'profile.csv'}:" in line, line
    assert _tree(full) == before


# -- item 2: a Ctrl-C Python cannot raise (inside a weakref callback) is neither noise nor lost ------


def test_an_interrupt_swallowed_in_a_weakref_callback_is_quiet_and_seals_nothing(tmp_path, capfd):
    import gc
    import sys
    import weakref

    from pantheon import errors
    from pantheon.formats import store

    class Thing:
        pass

    def callback(_ref):
        raise KeyboardInterrupt  # what SIGINT does when it lands while a WeakSet entry is removed

    old = sys.unraisablehook
    try:
        errors.install_interrupt_hook()
        thing = Thing()
        ref = weakref.ref(thing, callback)
        del thing
        gc.collect()
        assert ref() is None
        assert errors.interrupt_pending()
        assert "Exception ignored" not in capfd.readouterr().err
        dest = tmp_path / "artifact"
        with pytest.raises(KeyboardInterrupt):
            with store.write_artifact(dest, kind="bench") as tmp:
                (tmp / "results.json").write_text("{}")
        assert os.listdir(tmp_path) == []  # nothing sealed, no temporary folder
        assert not errors.interrupt_pending()  # raised once, then cleared
        with store.write_artifact(dest, kind="bench") as tmp:
            (tmp / "results.json").write_text("{}")
        store.verify(dest, kind="bench")
    finally:
        sys.unraisablehook = old


# -- item 14: deploy inventory type errors are one line each ------------------------------------------


@pytest.mark.parametrize("content, fragment", [
    ({"boards": [{"host": "10.0.0.1", "port": [22]}]}, "bad port [22] for board 10.0.0.1: a whole number"),
    ({"boards": [{"host": "10.0.0.1", "port": 22.7}]}, "bad port 22.7 for board 10.0.0.1"),
    ({"boards": [{"host": "10.0.0.1", "env": "FOO=1"}]}, "'env' must be a mapping of NAME: value, got a string"),
    ({"boards": [{"host": "10.0.0.1", "labels": ["lab"]}]}, "'labels' must be a mapping of NAME: value, got a list"),
    ({"boards": {"nx-1": "10.0.0.1"}}, "board 'nx-1' must be a mapping of keys"),
    ({"boards": {"nx-1": {"host": "10.0.0.1", "env": {"A": {"b": 1}}}}}, "'env' entry 'A'"),
    ({"defaults": ["nvidia"], "boards": [{"host": "10.0.0.1"}]}, "'defaults' must be a mapping"),
    ({"defaults": {"user": 5}, "boards": [{"host": "10.0.0.1"}]}, "'user' must be a string, got a number"),
    ({"boards": [{"host": ["10.0.0.1"]}]}, "'host' must be a string, got a list"),
    ({"boards": [{"host": "10.0.0.1", "remote_root": 5}]}, "'remote_root' must be a string"),
])
def test_inventory_type_errors_are_one_line(tmp_path, content, fragment):
    import yaml

    from pantheon.deploy.cli import app as deploy_app

    inv = tmp_path / "boards.yaml"
    inv.write_text(yaml.safe_dump(content))
    res = runner.invoke(deploy_app, ["boards", "--inventory", str(inv)])
    assert res.exit_code in (1, 2), res.output
    assert fragment in res.output, res.output
    assert str(inv) in res.output or "bad port" in fragment, res.output
    lines = _one_line(res)
    assert len(lines) == 1, res.output


# -- item 14: --out never replaces a file or a folder pantheon did not write ----------------------------


def test_out_never_replaces_a_users_file_or_folder(sim_inputs, tmp_path):
    repo, wl, _ = sim_inputs
    run = tmp_path / "run.jsonl"
    assert runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(run)]).exit_code == 0
    a_file = tmp_path / "notes.txt"
    a_file.write_text("keep me")
    a_folder = tmp_path / "mine"
    a_folder.mkdir()
    (a_folder / "thesis.tex").write_text("keep me too")
    for target, fragment in ((a_file, "is a file"), (a_folder, "holding other files")):
        for args in (["simulate", "--repo", str(repo), "--workload", str(wl), "--out", str(target)],
                     ["report", str(run), "--no-plots", "--out", str(target)]):
            res = runner.invoke(app, args)
            assert res.exit_code == 1 and fragment in res.output and str(target) in res.output, (args, res.output)
            _one_line(res)
    assert a_file.read_text() == "keep me" and os.listdir(a_folder) == ["thesis.tex"]
    assert sorted(os.listdir(tmp_path)) == ["mine", "notes.txt", "run.jsonl"]
    rep = tmp_path / "rep"
    for _ in range(2):  # a new folder, then the report folder it became, are (re)written
        res = runner.invoke(app, ["report", str(run), "--no-plots", "--out", str(rep)])
        assert res.exit_code == 0, res.output


# -- item 2 / Deliver 4: construct and export under a real SIGINT exit 130 and leave nothing --------------


def _sigint_when(args, env, ready, timeout=120, python=()):
    """Start ``pantheon ARGS``, wait until ``ready(stderr so far)`` (the work is under way), send SIGINT;
    return (rc, stderr). ``python``: interpreter flags (``-X importtime`` lists each module on stderr as it
    is imported: a stage's lazily imported module shows that the stage has started)."""
    import signal
    import subprocess
    import sys
    import threading

    proc = subprocess.Popen([sys.executable, *python, "-m", "pantheon.cli", *args], stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, env=env, text=True, preexec_fn=_terminal_sigint)
    lines: list = []
    reader = threading.Thread(target=lambda: lines.extend(iter(proc.stderr.readline, "")), daemon=True)
    reader.start()
    try:
        deadline = time.monotonic() + timeout
        while not ready("".join(lines)):
            assert proc.poll() is None, "".join(lines)[-3000:]
            assert time.monotonic() < deadline, "the command never got under way"
            time.sleep(0.05)
        time.sleep(0.5)
        assert proc.poll() is None, "the command ended before it could be interrupted"
        proc.send_signal(signal.SIGINT)
        proc.wait(timeout=60)
        reader.join(timeout=10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    stderr = "".join(ln for ln in lines if not ln.startswith("import time:"))
    return proc.returncode, stderr


def _interrupted(rc, stderr):
    """Exit status 130 and one line, ``error: interrupted``: no traceback, no second line of noise.

    The status is 130 as a shell sees it: ``exit(130)``, or death by SIGINT (``rc == -2`` here). CPython 3.11
    takes the second way by itself after a clean ``exit(130)`` when the Ctrl-C first surfaced inside code run
    by ``exec(<string>)`` (dataclass and namedtuple creation during an import do that): its ``exec`` marks the
    interrupt as unhandled even though the command handled it (seen under strace: ``kill(self, SIGINT)``
    at exit, after ``error: interrupted`` was written).
    """
    import signal

    assert rc in (130, -signal.SIGINT), stderr
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted", stderr


def _tree(root):
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*"))


@pytest.mark.filterwarnings("ignore::FutureWarning")
def test_construct_and_export_sigint_exit_130_and_leave_nothing(construct_run, tmp_path):
    import glob

    import torch

    from pantheon.formats import store
    from pantheon.zoo import get_task

    weights = tmp_path / "backbone.pt"
    torch.save(get_task("digits_resnet18").build_model().state_dict(), weights)
    data = tmp_path / "data"
    data.mkdir()
    env = dict(os.environ, PANTHEON_DATA=str(data), PANTHEON_PROGRESS="0")
    runs = tmp_path / "runs"
    rc, stderr = _sigint_when(["construct", "--task", "digits_resnet18", "--pretrain", str(weights), "--max_epochs",
                               "50", "--limit", "256", "--log", str(runs)], env,
                              lambda _: bool(glob.glob(str(runs / "digits_resnet18" / "*" / "manifest.json"))))
    assert rc == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in stderr, stderr
    # what is left is the last whole epoch's checkpoint, for --resume, marked unfinished; no temporary folder
    left = sorted((runs / "digits_resnet18").iterdir())
    assert len(left) == 1, left
    run = left[0]
    manifest = store.verify(run, kind="run")
    assert manifest.meta["complete"] is False and manifest.meta["epoch"] < 50
    assert not [p for p in runs.rglob("*") if ".tmp-" in p.name]
    out = tmp_path / "out"
    out.mkdir()
    rc, stderr = _sigint_when(["export", "--task", "digits_googlenet", "--weights", str(construct_run), "--save",
                               str(out / "variants")], env, lambda _: bool(glob.glob(str(out / ".variants.tmp-*"))))
    assert rc == 130, stderr
    assert stderr.strip().splitlines()[-1] == "error: interrupted" and "Traceback" not in stderr, stderr
    assert _tree(out) == [] and _tree(data) == []


# -- plan, profile, pipeline and repository import under a real SIGINT: exit 130, nothing sealed or half-written --


def _env(tmp_path, **extra):
    return dict(os.environ, PANTHEON_DATA=str(tmp_path / "data"), PANTHEON_PROGRESS="0", **extra)


def test_plan_sigint_in_the_solver_exits_130_and_writes_no_repository(tmp_path):
    from _profiling import make_variants

    base = tmp_path / "variants"
    blocks = 8
    rows = "".join(f"1.0,0.2,0.5,0.1,{0.5 + 0.05 * j:.2f}\n" for j in range(blocks))
    for task in ("ta", "tb", "tc"):  # 24 candidate exits: far too many for the solver to finish in a second
        make_variants(base / task, task, n_blocks=blocks, channels=2, hw=8,
                      profile_csv="block latency,branch latency,block mem,branch mem,accuracy\n" + rows)
    setting = tmp_path / "app.yaml"
    setting.write_text("name: three\ntasks: {ta: {max_delta_accuracy: 0.5}, tb: {max_delta_accuracy: 0.5}, "
                       "tc: {max_delta_accuracy: 0.5}}\n")
    variants = _tree(base)
    out = tmp_path / "out"
    rc, stderr = _sigint_when(["plan", "--setting", str(setting), "--base", str(base), "--save", str(out / "repo"),
                               "--ga-gen", "1000000", "--pop", "50"], _env(tmp_path),
                              lambda err: "pymoo.algorithms" in err, python=("-X", "importtime"))  # the GA runs
    _interrupted(rc, stderr)
    assert not out.exists() and not (tmp_path / "data").exists()  # no repository, no temporary folder
    assert _tree(base) == variants


def test_profile_sigint_exits_130_and_leaves_the_variants_as_they_were(tmp_path):
    from _profiling import make_variants

    from pantheon.formats import store

    parent = tmp_path / "v"
    vdir, _, _ = make_variants(parent / "variants", "digits_mobilenet_v2", n_blocks=2, hw=32)
    manifest, tree = (vdir / "manifest.json").read_bytes(), _tree(parent)
    rc, stderr = _sigint_when(["profile", "--weights", str(vdir), "--local", "--repeat", "1000000"], _env(tmp_path),
                              lambda err: "pantheon.offline.profile" in err, python=("-X", "importtime"))
    _interrupted(rc, stderr)
    assert _tree(parent) == tree and (vdir / "manifest.json").read_bytes() == manifest  # no profile.csv, no temp
    store.verify(vdir, kind="variants")
    assert not (tmp_path / "data").exists()


@pytest.fixture(scope="module")
def pipeline_store(tmp_path_factory):
    """A store where ``pantheon pipeline`` ran the one-task mini app to its end (pretrain ... workload)."""
    d = tmp_path_factory.mktemp("pipeline")
    app_file = _mini_app(d)
    res = runner.invoke(app, ["--data-root", str(d / "data"), "pretrain", "--task", "digits_resnet18", "--epochs", "1",
                              "--limit", "32"])  # the pipeline keeps a backbone it finds: one epoch is enough here
    assert res.exit_code == 0, res.output
    res = runner.invoke(app, ["--data-root", str(d / "data"), "pipeline", "--app", str(app_file), "--local", "--limit",
                              "32", "--epochs", "1", "--repeat", "1"])
    assert res.exit_code == 0, res.output
    return d / "data", app_file


def test_pipeline_sigint_in_a_stage_exits_130_and_keeps_the_sealed_stages(pipeline_store, tmp_path):
    data, app_file = pipeline_store
    tree = _tree(data)
    manifests = {p: p.read_bytes() for p in data.rglob("manifest.json")}
    # another --repeat changes the profile's inputs: pretrain, construct and export are up to date, profile reruns
    rc, stderr = _sigint_when(["--data-root", str(data), "pipeline", "--app", str(app_file), "--local", "--limit", "32",
                               "--epochs", "1", "--repeat", "1000000"], _env(tmp_path),
                              lambda err: "profile digits_resnet18\n" in err)
    _interrupted(rc, stderr)
    assert "export digits_resnet18: skipped" in stderr, stderr
    assert _tree(data) == tree  # no temporary folder, no new artifact
    assert {p: p.read_bytes() for p in data.rglob("manifest.json")} == manifests  # every sealed stage unchanged
    assert not (tmp_path / "data").exists()


def test_repository_import_sigint_exits_130_and_writes_nothing(tmp_path):
    # 300 tasks: about 3 s of loading and checking after the first task's files appear (60 tasks left only
    # ~0.5 s after the test's 0.5 s wait on an idle machine, and the SIGINT once met the finished command)
    src = _reference_repository(tmp_path / "ref", tasks=300)
    out = tmp_path / "out"
    out.mkdir()
    rc, stderr = _sigint_when(["repository", "import", str(src), "--out", str(out / "repo")], _env(tmp_path),
                              lambda _: bool(glob.glob(str(out / ".repo.tmp-*" / "t000" / "model_files" / "*.pt"))))
    _interrupted(rc, stderr)
    assert _tree(out) == [] and not (tmp_path / "data").exists()


def test_pretrain_sigint_exits_130_and_seals_no_backbone(tmp_path):
    data = tmp_path / "data"
    rc, stderr = _sigint_when(["--data-root", str(data), "pretrain", "--task", "digits_resnet18", "--epochs", "1000",
                               "--limit", "64"], _env(tmp_path), lambda err: "pantheon.zoo.datasets" in err,
                              python=("-X", "importtime"))  # the data loads, then the epochs run
    _interrupted(rc, stderr)
    assert not list(data.rglob("manifest.json")) and not list(data.rglob("*.tmp-*"))
    assert not list(data.rglob("*.pt"))


def test_demo_sigint_exits_130_and_seals_nothing(tmp_path):
    data = tmp_path / "data"
    rc, stderr = _sigint_when(["--data-root", str(data), "demo", "--quick"], _env(tmp_path),
                              lambda err: "pantheon.zoo.datasets" in err, python=("-X", "importtime"))
    _interrupted(rc, stderr)
    assert not list(data.rglob("manifest.json")) and not list(data.rglob("*.tmp-*"))


# -- an app's workload over the size bounds: the hint names options of the command that generates it ----------


def _options(*command):
    """Every option name of ``pantheon COMMAND...`` (from the real CLI tree)."""
    import typer.main

    cmd = typer.main.get_command(app)
    for name in command:
        cmd = cmd.commands[name]
    return {o for p in cmd.params for o in p.opts if o.startswith("--")}


def _check_size_hints(command, argv, seconds_per_job):
    """``argv`` + ``--duration`` over one day: the span hint; ``--max-span`` raised: the job-count hint; both name
    only options of ``command``, and the values given reach the check (the limit quoted is the one passed)."""
    import re

    accepted = _options(command)
    huge = ["--duration", "100000"]
    res = runner.invoke(app, [*argv, *huge])
    assert res.exit_code == 1, res.output
    line = _error_line(res)
    assert "over the limit of 86400 s" in line and "--max-span" in line, line
    named = set(re.findall(r"--[a-z][a-z-]*", line))
    assert named and named <= accepted, (named - accepted, line)
    res = runner.invoke(app, [*argv, *huge, "--max-span", "200000"])
    assert res.exit_code == 1, res.output
    line = _error_line(res)
    assert f"about {int(100000 / seconds_per_job)} jobs" in line and "over the limit of 1000000" in line, line
    named = set(re.findall(r"--[a-z][a-z-]*", line))
    assert "--max-jobs" in named and named <= accepted, (named - accepted, line)
    res = runner.invoke(app, [*argv, "--duration", "1", "--max-jobs", "7"])
    assert res.exit_code == 1 and "over the limit of 7;" in _error_line(res), res.output
    res = runner.invoke(app, [*argv, "--max-jobs", "0"])
    assert res.exit_code == 2 and "--max-jobs must be a positive integer" in _error_line(res), res.output


def test_workload_size_hints_name_workload_options(tmp_path):
    spec = tmp_path / "tiny.yaml"
    spec.write_text("name: tiny\ntasks: {a: {}}\nworkload: {duration_s: 1, streams: "
                    "[{task: a, period_ms: 20, deadline_ms: 40}]}\n")
    _check_size_hints("workload", ["workload", "--spec", str(spec), "--out", str(tmp_path / "w.bin")], 0.02)
    assert os.listdir(tmp_path) == ["tiny.yaml"]


def test_bench_workload_size_hints_name_bench_options(tmp_path, monkeypatch):
    from _repo import TaskSpec, build_repository

    root = tmp_path / "data"
    build_repository(root / "apps" / "tiny" / "repository",
                     {"a": TaskSpec(widths=[4], exits={0: 0.8}, latencies=[300], exit_latencies={0: 50})}, app="tiny")
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "tiny.yaml").write_text("name: tiny\ntasks: {a: {}}\nworkload: {duration_s: 1, streams: "
                                    "[{task: a, period_ms: 20, deadline_ms: 40}]}\n")
    monkeypatch.setenv("PANTHEON_APPS", str(apps))
    tree = _tree(tmp_path)
    _check_size_hints("bench", ["--data-root", str(root), "bench", "--app", "tiny", "--policies", "fifo", "--decisions",
                                "0", "--device", "cpu", "--telemetry", "off", "--out", str(tmp_path / "B")], 0.02)
    assert _tree(tmp_path) == tree  # nothing written


def test_pipeline_workload_size_hints_name_pipeline_options(pipeline_store, tmp_path):
    data, app_file = pipeline_store
    manifests = {p: p.read_bytes() for p in data.rglob("manifest.json")}
    tree = _tree(data)
    # every stage but the workload is up to date (the workload's --duration is one of its inputs)
    _check_size_hints("pipeline", ["--data-root", str(data), "pipeline", "--app", str(app_file), "--local", "--limit",
                                   "32", "--epochs", "1", "--repeat", "1"], 0.05)
    assert _tree(data) == tree and {p: p.read_bytes() for p in data.rglob("manifest.json")} == manifests
    res = runner.invoke(app, ["--data-root", str(data), "pipeline", "--app", str(app_file), "--local", "--limit", "32",
                              "--epochs", "1", "--repeat", "1", "--duration", "3", "--max-jobs", "60"])
    assert res.exit_code == 0, res.output
    from pantheon.formats import read_workloads, store

    wl = data / "apps" / "mini" / "workload"
    assert store.verify(wl, kind="workload").inputs["duration_s"] == 3
    assert len(read_workloads(wl / "workload.bin").workload) == 60  # 3 s of a 50 ms stream, the limit exactly


# -- Deliver 6: the bad-input table: (command, input) -> exit code, one line naming the fix, nothing written --

BAD_INPUTS = [
    # (case, argv with {repo} {wl} {spec} {dir} placeholders, exit code, fragment of the one line)
    ("workload duration nan", ["workload", "--spec", "{spec}", "--duration", "nan", "--out", "{dir}/w.bin"], 2,
     "--duration must be a finite number"),
    ("workload release 1e25", ["workload", "--spec", "{dir}/start.json", "--out", "{dir}/w.bin"], 1, "--max-span"),
    ("workload deadline text", ["workload", "--spec", "{dir}/text.json", "--out", "{dir}/w.bin"], 1,
     "deadline must be a number"),
    ("workload --out a folder", ["workload", "--spec", "{spec}", "--out", "{dir}"], 2, "is a directory"),
    ("workload --load-factor -1", ["workload", "--spec", "{spec}", "--load-factor", "-1", "--out", "{dir}/w.bin"], 2,
     "--load-factor must be positive"),
    ("simulate --jitter inf", ["simulate", "--repo", "{repo}", "--workload", "{wl}", "--jitter", "inf", "--log",
                               "{dir}/run"], 2, "--jitter must be a finite number"),
    ("simulate --dispatch-us nan", ["simulate", "--repo", "{repo}", "--workload", "{wl}", "--dispatch-us", "nan",
                                    "--log", "{dir}/run"], 2, "--dispatch-us must be a finite number"),
    ("simulate --policy", ["simulate", "--repo", "{repo}", "--workload", "{wl}", "--policy", "nope"], 2,
     "unknown policy 'nope'"),
    ("simulate workload is a folder", ["simulate", "--repo", "{repo}", "--workload", "{dir}", "--log", "{dir}/run"], 1,
     "Is a directory"),
    ("simulate --repo a workload", ["simulate", "--repo", "{wl}", "--workload", "{wl}"], 1, "{wl}"),
    ("report missing log", ["report", "{dir}/nothing", "--no-plots"], 1, "No such file or directory"),
    ("report --window-ms nan", ["report", "{dir}/nothing", "--window-ms", "nan"], 2, "--window-ms must be a finite"),
    ("runtime --threads 0", ["runtime", "{repo}", "{wl}", "{dir}/run", "--device", "cpu", "--threads", "0"], 2,
     "--threads must be at least 1"),
    ("runtime --dispatch-us -5", ["runtime", "{repo}", "{wl}", "{dir}/run", "--device", "cpu", "--dispatch-us", "-5"],
     2, "--dispatch-us must be a finite number >= 0"),
    ("runtime --time-scale nan", ["runtime", "{repo}", "{wl}", "{dir}/run", "--device", "cpu", "--time-scale", "nan"],
     2, "--time-scale"),
    ("profiler-server --port 70000", ["profiler-server", "--port", "70000"], 2, "--port"),
    ("slice huge input", ["slice", "--arch", "resnet18", "--input", "3,100000,100000"], 2, "elements"),
    ("slice zero input", ["slice", "--arch", "resnet18", "--input", "0"], 2, "every dimension must be a positive"),
    ("pretrain --limit 0", ["pretrain", "--task", "digits_resnet18", "--limit", "0"], 2, "--limit must be positive"),
    ("construct --learning_rate nan", ["construct", "--task", "digits_resnet18", "--learning_rate", "nan"], 2,
     "--learning_rate must be a finite number"),
    ("construct --run-id escape", ["construct", "--task", "digits_resnet18", "--run-id", "../../x"], 2,
     "--run-id must be a plain name"),
    ("export unknown task", ["export", "--task", "nope"], 2, "unknown task 'nope'"),
    ("export missing weights", ["export", "--task", "digits_resnet18", "--weights", "{dir}/none"], 1,
     "does not exist"),
    ("plan unknown app", ["plan", "--setting", "nope"], 2, "unknown application 'nope'"),
    ("repository import missing", ["repository", "import", "{dir}/none"], 1, "does not exist"),
    ("demo --policy", ["demo", "--policy", "nope", "--out", "{dir}/demo"], 2, "unknown policy 'nope'"),
]


@pytest.mark.parametrize("case, argv, code, fragment", BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_table(sim_inputs, tmp_path, case, argv, code, fragment):
    from pantheon.formats import store

    repo, wl, _ = sim_inputs
    _spec(tmp_path)
    (tmp_path / "start.json").write_text(json.dumps({"workloads": [dict(SPEC["workloads"][0], start=1e25,
                                                                        end=1e25)]}))
    (tmp_path / "text.json").write_text(json.dumps({"workloads": [dict(SPEC["workloads"][0], deadline="x")]}))
    values = {"repo": str(repo), "wl": str(wl), "spec": str(tmp_path / "spec.json"), "dir": str(tmp_path)}
    before = _tree(tmp_path)
    root = store.Store().root
    res = runner.invoke(app, [a.format(**values) for a in argv])
    assert res.exit_code == code, res.output
    lines = _one_line(res)
    assert len(lines) == 1 and lines[0].startswith("error: "), res.output
    assert fragment.format(**values) in lines[0], lines[0]
    assert _tree(tmp_path) == before  # nothing written, no temporary file
    assert not root.exists() or _tree(root) == []
