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
        n = ps.recv_header(sock)
        assert n is not None, "server closed without a reply"
        return ps.ProfileReply.FromString(ps.recv_exact(sock, n))

    def request(token, data=b"x" * 100):
        return ps.ProfileRequest(version=ps.PROTOCOL_VERSION, token=token, file_name="m.pt", file=data,
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
                assert not r.ok and r.error_kind == ps.ErrorKind.AUTH and "token" in r.error
                assert sock.recv(1) == b""  # closed, the body never read
        # the right token: the whole request is read and answered as before (a module that does not load)
        with connect(s) as sock:
            ps.send_msg(sock, request("s3cret"))
            r = read_reply(sock)
            assert not r.ok and r.error_kind == ps.ErrorKind.MODEL
            ps.send_msg(sock, ps.ProfileRequest(version=ps.PROTOCOL_VERSION, token="s3cret", ping=True))
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
        ping = ps.ProfileRequest(version=ps.PROTOCOL_VERSION, ping=True)
        for sock in (a, b):
            ps.send_msg(sock, ping)
            assert read_reply(sock).ok
        with connect(s) as c:
            r = read_reply(c)
            assert not r.ok and r.error_kind == ps.ErrorKind.LIMIT and "--max-connections" in r.error
            assert c.recv(1) == b""
        a.close()
        deadline = time.monotonic() + 10
        while True:  # the slot frees once the server sees the close
            with connect(s) as d:
                ps.send_msg(d, ping)
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


def _fill_disk_after(monkeypatch, module, room):
    import builtins

    real_open = builtins.open

    def fake_open(path, mode="r", *a, **kw):
        f = real_open(path, mode, *a, **kw)
        return _FullDisk(f, room) if "w" in mode else f

    monkeypatch.setattr(module, "open", fake_open, raising=False)


@pytest.mark.parametrize("target", ["run", "run.jsonl"])
def test_simulate_log_on_a_full_disk_leaves_nothing(sim_inputs, tmp_path, monkeypatch, target):
    from pantheon.online import events

    repo, wl, _ = sim_inputs
    out_dir = tmp_path / "logs"
    out_dir.mkdir()
    log = out_dir / target
    _fill_disk_after(monkeypatch, events, 3000)
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--log", str(log)])
    assert res.exit_code == 1, res.output
    assert "No space left on device" in res.output and "cannot write the event log" in res.output
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
