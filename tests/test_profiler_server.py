"""The profiler server as a real process on 127.0.0.1, spoken to over real TCP."""

from __future__ import annotations

import hashlib
import signal
import socket
import struct
import threading

import pytest
from _profiling import ServerProcess, script_bytes, server
from torch import nn

from pantheon.errors import AuthError, ProtocolError
from pantheon.formats import profiler_wire as wire
from pantheon.metrics import percentile
from pantheon.offline.profile import ProfilerClient
from pantheon.online import timing

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")

CONV = script_bytes(nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU()))


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with server(tmp_path_factory.mktemp("srv"), "--warmup", "2", "--repeat", "7", "--max-bytes", "200000") as s:
        yield s


def _req(data=CONV, shape=(1, 3, 16, 16), **kw):
    return wire.ProfileRequest(
        version=wire.PROTOCOL_VERSION, file_name="conv.pt", file=data,
        sha256=hashlib.sha256(data).hexdigest(), input_shape=list(shape), **kw,
    )


def _exchange(sock, req):
    wire.send_msg(sock, req)
    return _read_reply(sock)


def _read_reply(sock):
    n = wire.recv_header(sock)
    assert n is not None, "server closed without a reply"
    return wire.ProfileReply.FromString(wire.recv_exact(sock, n))


def _connect(s):
    sock = socket.create_connection(("127.0.0.1", s.port), timeout=30)
    return sock


def test_times_a_real_torchscript_chunk(srv):
    with _connect(srv) as sock:
        r = _exchange(sock, _req())
        assert r.ok, r.error
        assert r.repeat == 7 and r.warmup == 2  # the server's defaults
        assert 0 < r.min_us <= r.p50_us <= r.p99_us <= r.max_us
        assert r.min_us <= r.mean_us <= r.max_us
        assert r.device.startswith("cpu") and r.version == wire.PROTOCOL_VERSION
        r2 = _exchange(sock, _req(repeat=3, warmup=1))  # a request may override, same connection
        assert r2.ok and r2.repeat == 3 and r2.warmup == 1


def test_bad_requests_get_error_replies_and_the_connection_keeps_serving(srv):
    with _connect(srv) as sock:
        bad_sum = _req()
        bad_sum.sha256 = hashlib.sha256(b"other").hexdigest()
        r = _exchange(sock, bad_sum)
        assert not r.ok and r.error_kind == wire.ErrorKind.CHECKSUM and "sha256" in r.error

        sock.sendall(struct.pack(">Q", 6) + b"\xff\xff\xff\xff\xff\xff")  # framed garbage
        r = _read_reply(sock)
        assert not r.ok and r.error_kind == wire.ErrorKind.PROTOCOL

        r = _exchange(sock, _req(b"not a zip archive"))
        assert not r.ok and r.error_kind == wire.ErrorKind.MODEL and "TorchScript" in r.error

        r = _exchange(sock, _req(shape=(1, 5, 16, 16)))  # wrong channel count for the conv
        assert not r.ok and r.error_kind == wire.ErrorKind.MODEL and "[1, 5, 16, 16]" in r.error

        r = _exchange(sock, _req(shape=(1, 0, 4)))
        assert not r.ok and r.error_kind == wire.ErrorKind.LIMIT

        old = _req()
        old.version = wire.PROTOCOL_VERSION + 1
        r = _exchange(sock, old)
        assert not r.ok and r.error_kind == wire.ErrorKind.PROTOCOL and "version" in r.error

        assert _exchange(sock, _req()).ok  # still serving on the same connection


def test_oversized_prefix_and_raw_garbage_close_only_that_connection(srv):
    with _connect(srv) as sock:
        sock.sendall(struct.pack(">Q", 1 << 40))  # announces 1 TiB, never sent
        r = _read_reply(sock)
        assert not r.ok and r.error_kind == wire.ErrorKind.PROTOCOL and "exceeds" in r.error
        assert sock.recv(1) == b""  # closed without reading a body
    with _connect(srv) as sock:
        sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n")  # not our protocol at all
        r = _read_reply(sock)
        assert not r.ok and "exceeds" in r.error
    big = script_bytes(nn.Conv2d(64, 128, 3))  # ~295 kB > --max-bytes 200000
    with ProfilerClient("127.0.0.1", srv.port, retries=0) as c:
        with pytest.raises(ProtocolError, match="exceeds the server limit"):
            c.time_bytes(big, [1, 64, 8, 8])
    with ProfilerClient("127.0.0.1", srv.port) as c:  # the next client is served
        assert c.time_bytes(CONV, [1, 3, 8, 8]).mean_us > 0


def test_concurrent_clients_are_all_served(srv):
    results, errors = [], []

    def work():
        try:
            with ProfilerClient("127.0.0.1", srv.port) as c:
                for _ in range(2):
                    results.append(c.time_bytes(CONV, [1, 3, 8, 8], repeat=5).repeat)
        except Exception as exc:  # pragma: no cover - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(3)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors and results == [5] * 6


def test_token_is_required_when_set(tmp_path):
    with server(tmp_path, "--repeat", "2", "--warmup", "0", env={"PANTHEON_TOKEN": "s3cret"}) as s:
        with ProfilerClient("127.0.0.1", s.port, token="wrong") as c, pytest.raises(AuthError, match="token"):
            c.ping()
        with ProfilerClient("127.0.0.1", s.port) as c, pytest.raises(AuthError):
            c.time_bytes(CONV, [1, 3, 8, 8])
        with ProfilerClient("127.0.0.1", s.port, token="s3cret") as c:
            assert c.ping().device.startswith("cpu")
            assert c.time_bytes(CONV, [1, 3, 8, 8]).repeat == 2
        assert "rejected" in s.logs()


def test_sigterm_stops_the_server_cleanly(tmp_path):
    s = ServerProcess(tmp_path, "--repeat", "2")
    with ProfilerClient("127.0.0.1", s.port) as c:
        c.time_bytes(CONV, [1, 3, 8, 8])
    assert s.stop(signal.SIGTERM) == 0
    assert "stopped after 1 measurements" in s.logs()


def test_a_second_server_on_a_taken_port_is_one_clear_line(srv, tmp_path):
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-m", "pantheon.cli", "profiler-server", "--port", str(srv.port)],
        capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 1
    assert f"cannot listen on 127.0.0.1:{srv.port}" in out.stderr and "Traceback" not in out.stderr


def test_time_module_statistics_are_consistent():
    import torch

    t = timing.time_module(torch.jit.script(nn.Linear(4, 4)), [1, 4], warmup=1, repeat=9)
    assert t.repeat == 9 and t.min_us <= t.p50_us <= t.p99_us <= t.max_us
    assert percentile([1.0, 2.0, 3.0, 4.0], 50) == 2.5
    with pytest.raises(ValueError):
        timing.time_module(torch.jit.script(nn.Linear(4, 4)), [1, 4], repeat=0)


def test_idle_and_read_timeouts_close_only_that_connection(tmp_path):
    with server(tmp_path, "--repeat", "2", "--idle-timeout", "0.5", "--read-timeout", "0.5") as s:
        with _connect(s) as idle:
            idle.settimeout(10)
            assert idle.recv(1) == b""  # closed by the server after 0.5 s without a request
        with _connect(s) as slow:
            slow.settimeout(10)
            slow.sendall(struct.pack(">Q", 100) + b"only ten b")  # announces 100 bytes, sends 10
            assert slow.recv(1) == b""
        with ProfilerClient("127.0.0.1", s.port) as c:  # still serving
            assert c.time_bytes(CONV, [1, 3, 8, 8]).repeat == 2
        assert "timed out" in s.logs()


def test_a_network_bind_needs_a_token_or_an_explicit_insecure():
    """The server runs the TorchScript it is sent: on a non-loopback address only with a token."""
    from typer.testing import CliRunner

    from pantheon.cli import app
    from pantheon.errors import UsageError
    from pantheon.online.profiler_server import ServerConfig, check_server_config, is_loopback

    r = CliRunner().invoke(app, ["profiler-server", "--host", "0.0.0.0", "--port", "0"], env={"PANTHEON_TOKEN": ""})
    assert r.exit_code == 2 and "without a token" in r.output and "--insecure" in r.output
    with pytest.raises(UsageError, match="without a token"):
        check_server_config(ServerConfig(host="::"))
    check_server_config(ServerConfig(host="0.0.0.0", token="s3cret"))
    check_server_config(ServerConfig(host="0.0.0.0", insecure=True))
    check_server_config(ServerConfig(host="127.0.0.1"))  # loopback: no token needed
    assert is_loopback("localhost") and is_loopback("::1") and is_loopback("127.0.0.5")
    assert not is_loopback("0.0.0.0") and not is_loopback("192.168.1.10")


def test_the_client_speaks_the_protocol_without_the_server_module():
    """The wire protocol is a format (torch-free, server-free); `pantheon profile` never loads the server."""
    import subprocess
    import sys

    code = ("import sys, pantheon.formats.profiler_wire as w; "
            "print(sorted(m for m in sys.modules if m.startswith(('torch', 'pantheon.online', 'pantheon.analysis')))); "
            "import pantheon.offline.profile; print('pantheon.online.profiler_server' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["[]", "False"]
    # and a framed message round-trips through it
    a, b = socket.socketpair()
    with a, b:
        wire.send_msg(a, wire.ProfileRequest(version=wire.PROTOCOL_VERSION, token="t", ping=True))
        n = wire.recv_header(b)
        req = wire.ProfileRequest.FromString(wire.recv_exact(b, n))
        assert (req.version, req.token, req.ping) == (wire.PROTOCOL_VERSION, "t", True)
        a.close()
        assert wire.recv_header(b) is None  # a clean close before a header
