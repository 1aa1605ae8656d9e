"""The board-side profiler: a TCP server that times TorchScript chunks on the board's GPU.

The desktop (``pantheon profile``) sends one request per chunk or exit branch: the
TorchScript file, its sha256 and the input shape. The server checks the sum, loads
the module on CUDA when present (else CPU), warms it up, times ``repeat`` runs the way
the runtime runs chunks (:func:`~pantheon.online.timing.time_module`) and answers mean/p50/p99/max latency in
microseconds, the device name, how the chunk was run (CUDA graph or eager) and the
runtime's per-dispatch overhead on this device (``pantheon/formats/profiler.proto``).

The wire protocol (framing, messages, version) is :mod:`pantheon.formats.profiler_wire`,
shared with the client. One reply per request, in order, on a connection that stays open
until the client closes it or the idle timeout expires. A bad request (garbage,
wrong version or token, bad sum, a module that fails) gets an error reply and the
server keeps serving; an oversized length prefix gets an error reply without the
body being read, then the connection is closed. Timing is serialised by a lock so
two clients never measure at the same time.

Authentication before the body: a client serializes ``version`` (field 1) and ``token``
(field 2) first, as every protobuf encoder does, so with ``--token`` set the server reads
only those few leading bytes of a message, checks the token, and refuses a missing or
wrong one (an AUTH reply, then the connection is closed) without reading the rest: an
unauthenticated peer cannot make it buffer a large body. The wire format is unchanged
(protocol 1). ``--max-connections`` bounds the open connections (an extra one gets a LIMIT
reply and is closed), ``--read-timeout`` bounds the time to receive one whole message.

:func:`pantheon.online.timing.time_module` times the chunks; ``pantheon profile --local``
uses it too, so local and remote figures come from the same code.

Example::

    pantheon profiler-server --host 0.0.0.0 --port 8765 --token s3cret   # on the board
    pantheon profile --task digits_resnet18 --host board.local --token s3cret
"""

from __future__ import annotations

import hashlib
import hmac
import math
import os
import re
import signal
import socket
import socketserver
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from google.protobuf import message as _message

from pantheon import __version__
from pantheon.errors import ConnectionLostError, ProfilerError, UsageError
from pantheon.formats.profiler_wire import (
    DEFAULT_PORT,
    PROTOCOL_VERSION,
    ErrorKind,
    ProfileReply,
    ProfileRequest,
    recv_header,
    send_msg,
)
from pantheon.online.repository import load_torchscript
from pantheon.online.timing import Timing, device_name, pick_device, time_module

DEFAULT_MAX_BYTES = 256 << 20  # a ResNet/MobileNet/SSDlite chunk is a few MB; VGG16's fc6 (~400 MB) needs --max-bytes
DEFAULT_MAX_CONNECTIONS = 32
MAX_TIMEOUT_S = 86_400.0
MAX_REPEAT = 100_000
MAX_WARMUP = 10_000
MAX_ELEMENTS = 1 << 28  # 1 GiB of float32 input
MAX_DIMS = 8



# ------------------------------------------------------------------------------------------------
# The server
# ------------------------------------------------------------------------------------------------


@dataclass
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = DEFAULT_PORT
    warmup: int = 10
    repeat: int = 100
    token: Optional[str] = None
    max_bytes: int = DEFAULT_MAX_BYTES
    idle_timeout: float = 300.0  # s without a new request before a connection is closed
    read_timeout: float = 60.0  # s to receive one announced message
    max_connections: int = DEFAULT_MAX_CONNECTIONS  # open connections at once; more get a LIMIT reply
    threads: Optional[int] = None  # CPU intra-op threads (default 1, as the runtime: configure_cpu_threads)
    insecure: bool = False  # serve a non-loopback address without a token (the caller said so)


def is_loopback(host: str) -> bool:
    """Whether ``host`` (an address or a name) only accepts connections from this machine."""
    import ipaddress

    h = host.strip("[]")
    if h in ("localhost", "ip6-localhost"):
        return True
    try:
        return ipaddress.ip_address(h).is_loopback
    except ValueError:
        try:
            return all(ipaddress.ip_address(a[4][0]).is_loopback for a in socket.getaddrinfo(h, None))
        except (OSError, ValueError):
            return False


class RequestFailed(Exception):
    """A request the server answers with an error reply (then keeps serving)."""

    def __init__(self, kind: ErrorKind, msg: str) -> None:
        super().__init__(msg)
        self.kind = kind


def _error_reply(kind: ErrorKind, msg: str) -> ProfileReply:
    return ProfileReply(
        ok=False,
        error=" ".join(str(msg).split()),
        error_kind=kind,
        version=PROTOCOL_VERSION,
        server_version=__version__,
    )


def check_request(req: ProfileRequest, cfg: ServerConfig) -> Tuple[int, int, List[int]]:
    """Validate version, token, sum and limits; return (warmup, repeat, shape)."""
    if req.version != PROTOCOL_VERSION:
        raise RequestFailed(
            ErrorKind.PROTOCOL,
            f"protocol version {req.version} is not supported (server speaks {PROTOCOL_VERSION}); "
            "use the same pantheon version on both ends",
        )
    if cfg.token is not None and not hmac.compare_digest(req.token.encode(), cfg.token.encode()):
        raise RequestFailed(ErrorKind.AUTH, "wrong or missing token (pass --token or set PANTHEON_TOKEN)")
    if req.ping:
        return 0, 0, []
    digest = hashlib.sha256(req.file).hexdigest()
    if not hmac.compare_digest(digest, req.sha256.lower()):
        raise RequestFailed(
            ErrorKind.CHECKSUM, f"sha256 of {req.file_name or 'the file'} is {digest[:12]}..., request says {req.sha256[:12]}..."
        )
    shape = [int(d) for d in req.input_shape]
    if not shape or len(shape) > MAX_DIMS or any(d <= 0 for d in shape):
        raise RequestFailed(ErrorKind.LIMIT, f"bad input shape {shape}: 1..{MAX_DIMS} positive dimensions")
    if math.prod(shape) > MAX_ELEMENTS:
        raise RequestFailed(ErrorKind.LIMIT, f"input shape {shape} has more than {MAX_ELEMENTS} elements")
    warmup = int(req.warmup) or cfg.warmup
    repeat = int(req.repeat) or cfg.repeat
    if warmup > MAX_WARMUP or repeat > MAX_REPEAT:
        raise RequestFailed(ErrorKind.LIMIT, f"warmup {warmup} / repeat {repeat} exceed {MAX_WARMUP} / {MAX_REPEAT}")
    return warmup, repeat, shape


class ProfilerServer(socketserver.ThreadingMixIn, socketserver.TCPServer):
    """Threaded TCP server; measurements are serialised by ``timing_lock``."""

    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, cfg: ServerConfig, log: Callable[[str], None] = lambda s: None) -> None:
        self.cfg = cfg
        self.log = log
        self.timing_lock = threading.Lock()
        self.device = pick_device()
        self.device_label = device_name(self.device)
        self.served = 0
        self._dispatch_us: Optional[float] = None
        self._active = 0
        self._active_lock = threading.Lock()
        super().__init__((cfg.host, cfg.port), _Handler)

    def process_request(self, request: Any, client_address: Any) -> None:
        """Start a handler thread, unless ``max_connections`` are open: then a LIMIT reply and close."""
        with self._active_lock:
            busy = self._active >= self.cfg.max_connections
            if not busy:
                self._active += 1
        if busy:
            self.log(f"{client_address[0]}:{client_address[1]}: {self.cfg.max_connections} connections open "
                     f"(--max-connections); refused")
            try:
                request.settimeout(1.0)
                send_msg(request, _error_reply(
                    ErrorKind.LIMIT, f"the server already has {self.cfg.max_connections} open connections "
                                     f"(--max-connections); try again later"))
            except OSError:
                pass
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._release()

    def _release(self) -> None:
        with self._active_lock:
            self._active -= 1

    @property
    def address(self) -> Tuple[str, int]:
        host, port = self.server_address[:2]
        return str(host), int(port)

    def dispatch_overhead_us(self) -> float:
        """The runtime's per-chunk dispatch overhead on this device, measured on first use."""
        if self._dispatch_us is None:
            from pantheon.online.runtime import dispatch_overhead_here

            self._dispatch_us = round(dispatch_overhead_here(self.device), 2)
            self.log(f"runtime dispatch overhead on {self.device_label}: {self._dispatch_us:.1f} us per chunk")
        return self._dispatch_us

    def handle_request_msg(self, req: ProfileRequest) -> ProfileReply:
        """Answer one parsed request (never raises)."""
        try:
            warmup, repeat, shape = check_request(req, self.cfg)
            if req.ping:
                return ProfileReply(ok=True, device=self.device_label, version=PROTOCOL_VERSION, server_version=__version__)
            t = self._measure(req, shape, warmup, repeat)
        except RequestFailed as exc:
            self.log(f"rejected {req.file_name or '<request>'}: {exc}")
            return _error_reply(exc.kind, str(exc))
        except Exception as exc:  # the server must outlive any one bad request
            self.log(f"internal error on {req.file_name or '<request>'}: {exc.__class__.__name__}: {exc}")
            return _error_reply(ErrorKind.INTERNAL, f"{exc.__class__.__name__}: {exc}")
        self.served += 1
        self.log(
            f"{req.file_name or '<module>'} {shape}: mean {t.mean_us:.1f} us, p99 {t.p99_us:.1f} us "
            f"({t.repeat} runs, {t.device})"
        )
        return ProfileReply(
            ok=True,
            mean_us=t.mean_us,
            p50_us=t.p50_us,
            p99_us=t.p99_us,
            max_us=t.max_us,
            min_us=t.min_us,
            device=t.device,
            repeat=t.repeat,
            warmup=t.warmup,
            version=PROTOCOL_VERSION,
            server_version=__version__,
            executor=t.executor,
            fallback_reason=t.fallback_reason,
            dispatch_overhead_us=t.dispatch_overhead_us or 0.0,
        )

    def _measure(self, req: ProfileRequest, shape: List[int], warmup: int, repeat: int) -> Timing:
        with self.timing_lock:  # one measurement at a time: concurrent runs would skew each other
            try:
                module = load_torchscript(req.file, self.device)
            except Exception as exc:
                raise RequestFailed(ErrorKind.MODEL, f"{req.file_name or 'file'} is not a loadable TorchScript module: {exc}") from exc
            try:
                t = time_module(module, shape, warmup=warmup, repeat=repeat, device=self.device)
                t.dispatch_overhead_us = self.dispatch_overhead_us()
                return t
            except Exception as exc:
                raise RequestFailed(ErrorKind.MODEL, f"{req.file_name or 'module'} fails on input {shape}: {exc}") from exc
            finally:
                del module
                if self.device.type == "cuda":
                    import torch

                    torch.cuda.empty_cache()


def _recv_until(sock: socket.socket, n: int, deadline: float) -> bytes:
    """Exactly ``n`` bytes before ``deadline`` (monotonic): ``socket.timeout`` past it, however slowly they drip."""
    chunks = []
    left = n
    while left > 0:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise socket.timeout("read deadline passed")
        sock.settimeout(remaining)
        chunk = sock.recv(min(left, 1 << 20))
        if not chunk:
            raise ConnectionLostError(f"connection closed after {n - left} of {n} bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def _read_varint(read: Callable[[int], bytes]) -> int:
    value, shift = 0, 0
    for _ in range(10):
        b = read(1)[0]
        value |= (b & 0x7F) << shift
        if not b & 0x80:
            return value
        shift += 7
    raise ValueError("varint longer than 10 bytes")


def read_authenticated(sock: socket.socket, n: int, token: str, deadline: float) -> Tuple[bool, bytes]:
    """Read the leading ``version`` and ``token`` fields of an ``n``-byte request; check the token.

    Returns ``(ok, prefix)``: ``ok`` is False (and nothing more is read) when the token is
    missing or wrong; the caller then reads the other ``n - len(prefix)`` bytes.
    """
    got = bytearray()
    want = token.encode()

    def read(k: int) -> bytes:
        if len(got) + k > n:
            raise ValueError("message ends inside its header")
        data = _recv_until(sock, k, deadline)
        got.extend(data)
        return data

    try:
        tag = _read_varint(read)
        if tag == (1 << 3) | 0:  # version (varint)
            _read_varint(read)
            tag = _read_varint(read)
        if tag != (2 << 3) | 2:  # token (length-delimited) must come next
            return False, bytes(got)
        length = _read_varint(read)
        if length != len(want):
            return False, bytes(got)
        return hmac.compare_digest(read(length), want), bytes(got)
    except (ValueError, IndexError):
        return False, bytes(got)


class _Handler(socketserver.BaseRequestHandler):
    server: ProfilerServer

    def handle(self) -> None:
        sock: socket.socket = self.request
        cfg = self.server.cfg
        peer = f"{self.client_address[0]}:{self.client_address[1]}"
        while True:
            try:
                sock.settimeout(cfg.idle_timeout)
                n = recv_header(sock)
                if n is None:
                    return
                if n > cfg.max_bytes:
                    # never read an oversized body: answer and drop the connection
                    self.server.log(f"{peer}: message of {n} bytes exceeds --max-bytes {cfg.max_bytes}; closing")
                    send_msg(sock, _error_reply(ErrorKind.PROTOCOL, f"message of {n} bytes exceeds the server limit of {cfg.max_bytes} bytes (--max-bytes)"))
                    return
                deadline = time.monotonic() + cfg.read_timeout
                prefix = b""
                if cfg.token is not None:
                    ok, prefix = read_authenticated(sock, n, cfg.token, deadline)
                    if not ok:  # never read (or buffer) the body of an unauthenticated request
                        self.server.log(f"{peer}: rejected a request of {n} bytes: wrong or missing token; closing")
                        send_msg(sock, _error_reply(ErrorKind.AUTH, "wrong or missing token (pass --token or set PANTHEON_TOKEN)"))
                        return
                body = prefix + _recv_until(sock, n - len(prefix), deadline)
            except socket.timeout:
                self.server.log(f"{peer}: timed out, closing")
                return
            except (OSError, ConnectionLostError) as exc:
                self.server.log(f"{peer}: connection lost ({exc})")
                return
            try:
                req = ProfileRequest.FromString(body)
            except _message.DecodeError as exc:
                reply = _error_reply(ErrorKind.PROTOCOL, f"not a ProfileRequest ({n} bytes): {exc}")
                self.server.log(f"{peer}: garbage message of {n} bytes")
            else:
                reply = self.server.handle_request_msg(req)
            try:
                send_msg(sock, reply)
            except OSError:
                return


def serve(cfg: ServerConfig, *, ready: Optional[Callable[[str, int], None]] = None, log: Optional[Callable[[str], None]] = None) -> int:
    """Run the server until SIGINT/SIGTERM; return the number of requests served.

    ``ready(host, port)`` is called once the socket listens (``port=0`` picks a free port).
    """
    log = log or (lambda s: print(s, file=sys.stderr, flush=True))
    check_server_config(cfg)
    from pantheon.online.repository import configure_cpu_threads

    configure_cpu_threads(pick_device().type, cfg.threads)
    try:
        server = ProfilerServer(cfg, log=log)
    except OSError as exc:
        raise ProfilerError(f"cannot listen on {cfg.host}:{cfg.port}: {exc.strerror or exc}") from exc
    stop = threading.Event()

    def _on_signal(signum: int, frame: Any) -> None:  # shutdown() blocks until serve_forever returns
        if not stop.is_set():
            stop.set()
            threading.Thread(target=server.shutdown, daemon=True).start()

    old = {}
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGINT, signal.SIGTERM):
            old[sig] = signal.signal(sig, _on_signal)
    try:
        host, port = server.address
        log(f"profiler server {__version__} (protocol {PROTOCOL_VERSION}) on {server.device_label}; "
            f"warmup {cfg.warmup}, repeat {cfg.repeat}, token {'required' if cfg.token else 'off'}")
        if ready is not None:
            ready(host, port)
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        for sig, handler in old.items():
            signal.signal(sig, handler)
    log(f"profiler server stopped after {server.served} measurements")
    return server.served


def check_server_config(cfg: ServerConfig) -> None:
    """Reject nonsensical limits before binding."""
    if cfg.warmup < 0 or cfg.warmup > MAX_WARMUP:
        raise UsageError(f"--warmup must lie in 0..{MAX_WARMUP}, got {cfg.warmup}")
    if cfg.repeat < 1 or cfg.repeat > MAX_REPEAT:
        raise UsageError(f"--repeat must lie in 1..{MAX_REPEAT}, got {cfg.repeat}")
    if cfg.max_bytes < 1024:
        raise UsageError(f"--max-bytes must be at least 1024, got {cfg.max_bytes}")
    for name, value in (("--idle-timeout", cfg.idle_timeout), ("--read-timeout", cfg.read_timeout)):
        if not (math.isfinite(value) and 0 < value <= MAX_TIMEOUT_S):
            raise UsageError(f"{name} must be a finite number of seconds in (0, {MAX_TIMEOUT_S:g}], got {value}")
    if not 0 <= cfg.port <= 65535:
        raise UsageError(f"--port must lie in 0..65535 (0 picks a free port), got {cfg.port}")
    if cfg.max_connections < 1:
        raise UsageError(f"--max-connections must be at least 1, got {cfg.max_connections}")
    if cfg.threads is not None and cfg.threads < 1:
        raise UsageError(f"--threads must be at least 1, got {cfg.threads}")
    if not cfg.token and not cfg.insecure and not is_loopback(cfg.host):
        # the server loads (runs) the TorchScript it is sent: never for anyone on the network
        raise UsageError(f"refusing to serve on {cfg.host} without a token: pass --token (or set PANTHEON_TOKEN) "
                         f"and the same on the desktop, or --insecure on a network you trust")


class ServerProcess:
    """``pantheon profiler-server`` in a child process on ``host`` (a free port by default).

    The demo profiles through one, and the tests and benchmarks start them the same way.
    ``port`` is the port it listens on once started; :meth:`stop` sends ``sig`` and waits.

    Example::

        srv = ServerProcess(Path("/tmp/logs"), "--repeat", "50")
        ...  # ProfilerClient("127.0.0.1", srv.port)
        srv.stop()
    """

    def __init__(self, log_dir: Path, *args: str, host: str = "127.0.0.1", port: int = 0,
                 env: Optional[Dict[str, str]] = None, timeout: float = 120.0) -> None:
        log_dir = Path(log_dir)
        log_dir.mkdir(parents=True, exist_ok=True)
        stem = f"profiler-server-{os.getpid()}-{time.monotonic_ns()}"
        self.out = log_dir / f"{stem}.out"
        self.log = log_dir / f"{stem}.log"
        cmd = [sys.executable, "-m", "pantheon.cli", "profiler-server", "--host", host, "--port", str(port), *args]
        full_env = {k: v for k, v in os.environ.items() if k != "PANTHEON_TOKEN"}  # only an explicit token
        full_env.update(PYTHONUNBUFFERED="1", **(env or {}))
        with open(self.out, "wb") as out, open(self.log, "wb") as err:
            self.proc = subprocess.Popen(cmd, stdout=out, stderr=err, env=full_env)
        self.port = self._wait_port(timeout)

    def _wait_port(self, timeout: float) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            m = re.search(r"listening on [\d.]+:(\d+)", self.out.read_text())
            if m:
                return int(m.group(1))
            if self.proc.poll() is not None:
                last = (self.logs().strip().splitlines() or ["(no output)"])[-1]
                raise ProfilerError(f"the profiler server exited with code {self.proc.returncode}: {last}")
            time.sleep(0.05)
        self.stop()
        raise ProfilerError(f"the profiler server did not start within {timeout:.0f} s (see {self.log})")

    def logs(self) -> str:
        return self.log.read_text()

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode
