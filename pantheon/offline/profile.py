"""``pantheon profile``: memory, accuracy and latency of every block and exit of a variants dir.

For an exported variants directory (``block_XX.pt``, ``branch_XX.pt``, ``variants.json``;
see CONTRIBUTING.md) this measures, per block ``j`` and the exit ``j`` that follows it:

- memory (MB = 2**20 bytes): parameters + buffers of the TorchScript module;
- latency (ms): on the board, through ``pantheon profiler-server`` (one request per
  file, batch 1, the input shape of block ``j`` is the output shape of block ``j-1``),
  or in this process with ``local=True`` using the server's own :func:`~pantheon.online.timing.time_module`;
- accuracy (fraction): exit ``j`` on the task's test split (blocks ``0..j`` then
  branch ``j``), top-1 or mAP@0.5 through the zoo's metric.

and writes ``profile.csv`` (header ``block latency,branch latency,block mem,branch mem,
accuracy``) plus ``profile.json`` (all latency statistics, device, options) into the
variants directory with :func:`pantheon.formats.store.update_artifact` (atomic: an
error leaves the directory as it was, never a partial ``profile.csv``).

Example::

    res = profile("digits_resnet18", host="127.0.0.1", port=8765)
    res.rows[0].block_ms, res.rows[-1].accuracy
"""

from __future__ import annotations

import csv
import hashlib
import io
import json
import math
import socket
import time
import zipfile
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional, Sequence, Tuple

from pantheon import console
from pantheon.errors import (
    ArtifactError,
    AuthError,
    ConnectionLostError,
    FormatError,
    ProfilerError,
    ProtocolError,
    UsageError,
)
from pantheon.formats import profiler_wire as wire
from pantheon.formats import store
from pantheon.formats.store import Store, check_writable
from pantheon.online import timing
from pantheon.online.memory import module_bytes
from pantheon.online.repository import load_torchscript

PROFILE_CSV = "profile.csv"
PROFILE_JSON = "profile.json"
# How chunks are timed (CUDA-graph replay / cold-cache CPU calls, plus the dispatch overhead):
# a profile made by an older method is re-measured by the pipeline.
TIMING_METHOD = 2
VARIANTS_JSON = "variants.json"


def file_name(prefix: str, j: int, num_blocks: int) -> str:
    """``block_07.pt``: two digits, three when there are more than 100 blocks."""
    width = 3 if num_blocks > 100 else 2
    return f"{prefix}_{j:0{width}d}.pt"


COLUMNS = ("block latency", "branch latency", "block mem", "branch mem", "accuracy")
MB = float(1 << 20)


# ------------------------------------------------------------------------------------------------
# The variants directory
# ------------------------------------------------------------------------------------------------


@dataclass
class Variants:
    """A verified variants directory (see CONTRIBUTING.md, "Exported variants directory")."""

    path: Path
    task: str
    arch: str
    kind: str
    input_shape: List[int]
    num_blocks: int
    block_out_shapes: List[List[int]]
    original_exit: int
    meta: Dict[str, Any] = field(default_factory=dict)

    def block_name(self, j: int) -> str:
        return file_name("block", j, self.num_blocks)

    def branch_name(self, j: int) -> str:
        return file_name("branch", j, self.num_blocks)

    def block(self, j: int) -> Path:
        return self.path / self.block_name(j)

    def branch(self, j: int) -> Path:
        return self.path / self.branch_name(j)

    def block_input(self, j: int) -> List[int]:
        """Batch-1 input shape of block ``j``."""
        return [1, *(self.input_shape if j == 0 else self.block_out_shapes[j - 1])]

    def branch_input(self, j: int) -> List[int]:
        return [1, *self.block_out_shapes[j]]


def _shape(value: Any, what: str, where: Path) -> List[int]:
    if not isinstance(value, (list, tuple)) or not value or not all(isinstance(d, int) and d > 0 for d in value):
        raise FormatError(f"{where}: {what} must be a list of positive integers, got {value!r}")
    return [int(d) for d in value]


def load_variants(path: Path) -> Variants:
    """Verify ``path`` (manifest kind ``variants``) and read its ``variants.json``.

    Raises :class:`ArtifactError` naming every missing block/branch file.
    """
    path = Path(path)
    if not path.is_dir():
        raise ArtifactError(f"variants directory {path} does not exist (run `pantheon export` first)")
    store.verify(path, kind="variants")
    vj = path / VARIANTS_JSON
    if not vj.is_file():
        raise ArtifactError(f"{path} has no {VARIANTS_JSON}; re-run `pantheon export`")
    try:
        meta = json.loads(vj.read_text())
    except (OSError, ValueError) as exc:
        raise FormatError(f"{vj} is not valid JSON: {exc}") from exc
    try:
        n = int(meta["num_blocks"])
        v = Variants(
            path=path,
            task=str(meta["task"]),
            arch=str(meta.get("arch", "")),
            kind=str(meta.get("kind", "classification")),
            input_shape=_shape(meta["input_shape"], "input_shape", vj),
            num_blocks=n,
            block_out_shapes=[_shape(s, f"block_out_shapes[{i}]", vj) for i, s in enumerate(meta["block_out_shapes"])],
            original_exit=int(meta.get("original_exit", n - 1)),
            meta=meta,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise FormatError(f"{vj} lacks or mangles a field ({exc.__class__.__name__}: {exc})") from exc
    if n < 1 or len(v.block_out_shapes) != n:
        raise FormatError(f"{vj}: num_blocks {n} but {len(v.block_out_shapes)} block_out_shapes")
    missing = [name for j in range(n) for name in (v.block_name(j), v.branch_name(j)) if not (path / name).is_file()]
    if missing:
        shown = ", ".join(missing[:6]) + (f" and {len(missing) - 6} more" if len(missing) > 6 else "")
        raise ArtifactError(f"variants directory {path} is missing {shown}; re-run `pantheon export --task {v.task} --force`")
    return v


# ------------------------------------------------------------------------------------------------
# Memory
# ------------------------------------------------------------------------------------------------


def load_module(path: Path, device: Any = "cpu") -> Any:
    try:
        return load_torchscript(path, device)
    except Exception as exc:
        raise ArtifactError(f"{path} is not a loadable TorchScript file: {exc}") from exc


def archive_tensor_bytes(path: Path) -> int:
    """Bytes of the tensor records in a TorchScript archive (counts constants of frozen modules)."""
    with zipfile.ZipFile(path) as zf:
        return sum(i.file_size for i in zf.infolist() if "/data/" in i.filename and not i.filename.endswith("/"))


def file_memory_mb(path: Path) -> float:
    """Parameter + buffer memory of a TorchScript file in MB (2**20 bytes).

    A frozen module has no parameters left (they became constants): then the
    tensor records stored in the archive are counted instead.
    """
    n = module_bytes(load_module(path))
    if n == 0:
        try:
            n = archive_tensor_bytes(path)
        except zipfile.BadZipFile:
            n = 0
    return n / MB


# ------------------------------------------------------------------------------------------------
# Latency: the client of `pantheon profiler-server`
# ------------------------------------------------------------------------------------------------


class ProfilerClient:
    """A connection to a profiler server with bounded reconnects.

    Every request is retried up to ``retries`` times on connection loss (reconnecting
    with a growing pause); then :class:`ConnectionLostError`. Error replies are not
    retried: they raise :class:`AuthError`, :class:`ProtocolError` or
    :class:`ProfilerError` with the server's message.

    Example::

        with ProfilerClient("127.0.0.1", 8765) as c:
            t = c.time_file(Path("block_00.pt"), [1, 3, 32, 32])
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        token: Optional[str] = None,
        retries: int = 3,
        backoff_s: float = 0.5,
        timeout_s: float = 600.0,
        buffer: int = 1 << 20,
    ) -> None:
        self.host, self.port, self.token = host, int(port), token or ""
        self.retries, self.backoff_s, self.timeout_s, self.buffer = retries, backoff_s, timeout_s, buffer
        self.sock: Optional[socket.socket] = None
        self.device = ""

    def __enter__(self) -> ProfilerClient:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def _connect(self) -> socket.socket:
        sock = socket.create_connection((self.host, self.port), timeout=min(self.timeout_s, 10.0))
        sock.settimeout(self.timeout_s)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, self.buffer)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return sock

    def _exchange(self, req: wire.ProfileRequest) -> wire.ProfileReply:
        if self.sock is None:
            self.sock = self._connect()
        wire.send_msg(self.sock, req)
        n = wire.recv_header(self.sock, self.buffer)
        if n is None:
            raise ConnectionLostError("the server closed the connection")
        return wire.ProfileReply.FromString(wire.recv_exact(self.sock, n, self.buffer))

    def request(self, req: wire.ProfileRequest) -> wire.ProfileReply:
        """Send ``req`` and return a successful reply (reconnecting on connection loss)."""
        req.version = wire.PROTOCOL_VERSION
        req.token = self.token
        last: Optional[BaseException] = None
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * attempt)
            try:
                reply = self._exchange(req)
            except (OSError, ConnectionLostError) as exc:  # refused, reset, timed out, closed
                last = exc
                self.close()
                continue
            except Exception as exc:  # an undecodable reply: not a pantheon profiler
                self.close()
                raise ProtocolError(f"{self.host}:{self.port} answered something that is not a ProfileReply: {exc}") from exc
            return self._check(reply, req)
        raise ConnectionLostError(
            f"lost the profiler server at {self.host}:{self.port} after {self.retries} retries "
            f"({last.__class__.__name__}: {last}); is `pantheon profiler-server` running there?"
        )

    def _check(self, reply: wire.ProfileReply, req: wire.ProfileRequest) -> wire.ProfileReply:
        if reply.ok:
            self.device = reply.device or self.device
            return reply
        what = f"profiler server {self.host}:{self.port}"
        if reply.error_kind == wire.ErrorKind.AUTH:
            raise AuthError(f"{what} refused the request: {reply.error}")
        if reply.error_kind in (wire.ErrorKind.PROTOCOL, wire.ErrorKind.CHECKSUM):
            raise ProtocolError(f"{what}: {reply.error}")
        raise ProfilerError(f"{what} could not time {req.file_name or 'the module'}: {reply.error}")

    def ping(self) -> wire.ProfileReply:
        """Check reachability, protocol version and token; returns the reply (device name)."""
        return self.request(wire.ProfileRequest(ping=True))

    def time_bytes(self, data: bytes, shape: Sequence[int], *, name: str = "", warmup: int = 0, repeat: int = 0) -> timing.Timing:
        req = wire.ProfileRequest(
            file_name=name,
            file=data,
            sha256=hashlib.sha256(data).hexdigest(),
            input_shape=[int(d) for d in shape],
            warmup=warmup,
            repeat=repeat,
        )
        r = self.request(req)
        return timing.Timing(r.mean_us, r.p50_us, r.p99_us, r.max_us, r.min_us, r.repeat, r.warmup, r.device,
                         r.executor or "eager", r.fallback_reason,
                         r.dispatch_overhead_us if r.dispatch_overhead_us > 0 else None)  # 0: an older server

    def time_file(self, path: Path, shape: Sequence[int], *, warmup: int = 0, repeat: int = 0) -> timing.Timing:
        return self.time_bytes(Path(path).read_bytes(), shape, name=Path(path).name, warmup=warmup, repeat=repeat)


@dataclass
class Item:
    """One file to time: block ``j`` or branch ``j``."""

    kind: str  # "block" | "branch"
    index: int
    path: Path
    shape: List[int]


def latency_items(v: Variants) -> List[Item]:
    items = []
    for j in range(v.num_blocks):
        items.append(Item("block", j, v.block(j), v.block_input(j)))
        items.append(Item("branch", j, v.branch(j), v.branch_input(j)))
    return items


Timer = Callable[[Item], timing.Timing]


def remote_timer(client: ProfilerClient, warmup: int = 0, repeat: int = 0) -> Timer:
    return lambda item: client.time_file(item.path, item.shape, warmup=warmup, repeat=repeat)


def local_timer(warmup: int = 10, repeat: int = 100) -> Timer:
    """Time in this process with the server's own :func:`~pantheon.online.timing.time_module` (same code path)."""
    from pantheon.online.repository import configure_cpu_threads
    from pantheon.online.runtime import dispatch_overhead_here

    device = timing.pick_device()
    configure_cpu_threads(device.type)
    overhead: List[float] = []

    def run(item: Item) -> timing.Timing:
        module = load_torchscript(item.path.read_bytes(), device)
        try:
            t = timing.time_module(module, item.shape, warmup=warmup or 10, repeat=repeat or 100, device=device)
            if not overhead:  # once, as a profiler server does
                overhead.append(round(dispatch_overhead_here(device), 2))
            t.dispatch_overhead_us = overhead[0]
            return t
        except Exception as exc:
            raise ProfilerError(f"{item.path.name} fails on input {item.shape}: {exc}") from exc

    return run


# ------------------------------------------------------------------------------------------------
# Accuracy
# ------------------------------------------------------------------------------------------------


def exit_outputs(blocks: Sequence[Any], branches: Sequence[Any], x: Any) -> List[Any]:
    """Outputs of every exit on batch ``x``: one pass through the blocks, one branch per block."""
    outs = []
    h = x
    for block, branch in zip(blocks, branches):
        h = block(h)
        outs.append(branch(h))
    return outs


def exit_accuracies(
    blocks: Sequence[Any],
    branches: Sequence[Any],
    batches: Iterable[Tuple[Any, Any]],
    metrics: Sequence[Any],
    *,
    total: Optional[int] = None,
) -> List[float]:
    """Metric of every exit over ``batches`` of ``(inputs, targets)``.

    ``metrics[j]`` accumulates exit ``j``: ``update(outputs, targets)`` then
    ``compute() -> float`` (the zoo's top-1 or mAP@0.5).
    """
    import torch

    seen = 0
    with console.progress() as bar, torch.inference_mode():
        task = bar.add_task("accuracy", total=total)
        for x, y in batches:
            for m, out in zip(metrics, exit_outputs(blocks, branches, x)):
                m.update(out, y)
            seen += len(x)
            bar.advance(task)
    if seen == 0:
        raise ProfilerError("the test split is empty: no accuracy can be measured")
    return [float(m.compute()) for m in metrics]


def exit_anchors(v: Variants) -> List[Any]:
    """Per-exit anchor boxes of a detection task (``anchors_XX.pt`` written by export), else Nones."""
    if v.kind != "detection":
        return [None] * v.num_blocks
    import torch

    names = v.meta.get("anchors") or [file_name("anchors", j, v.num_blocks) for j in range(v.num_blocks)]
    if len(names) != v.num_blocks:
        raise FormatError(f"{v.path / VARIANTS_JSON} lists {len(names)} anchor files for {v.num_blocks} exits")
    out = []
    for name in names:
        path = v.path / name
        if not path.is_file():
            raise ArtifactError(f"{v.path} is a detection task without {name}; re-run `pantheon export --task {v.task} --force`")
        out.append(torch.load(str(path), map_location="cpu"))
    return out


def task_accuracies(
    v: Variants,
    task: str,
    *,
    data_dir: Optional[Path] = None,
    batch_size: int = 64,
    num_workers: int = 0,
    max_samples: Optional[int] = None,
) -> List[float]:
    """Accuracy of every exit of ``v`` on the test split of zoo task ``task`` (the zoo's metric)."""
    from torch.utils.data import DataLoader

    from pantheon.zoo import get_task
    from pantheon.zoo.datasets import collate, subset
    from pantheon.zoo.metrics import make_metric

    spec = get_task(task)
    ds = subset(spec.load_split("test", str(data_dir) if data_dir else None), max_samples)
    loader = DataLoader(ds, batch_size=batch_size, shuffle=False, num_workers=num_workers, collate_fn=collate(spec))
    blocks = [load_module(v.block(j)) for j in range(v.num_blocks)]
    branches = [load_module(v.branch(j)) for j in range(v.num_blocks)]
    metrics = [make_metric(spec, a) for a in exit_anchors(v)]
    return exit_accuracies(blocks, branches, loader, metrics, total=len(loader))


# ------------------------------------------------------------------------------------------------
# The profile
# ------------------------------------------------------------------------------------------------


@dataclass
class ProfileRow:
    block_ms: float
    branch_ms: float
    block_mb: float
    branch_mb: float
    accuracy: float


@dataclass(frozen=True)
class ProfileResult:
    """What :func:`profile` returns: one :class:`ProfileRow` per block (and the exit after it),
    measured on ``device`` through ``source`` (``HOST:PORT`` or ``local``); ``timings`` holds
    every item's latency statistics (as in ``profile.json``)."""

    path: Path
    task: str
    device: str
    source: str
    rows: List[ProfileRow]
    timings: Dict[str, Dict[str, Any]]
    dispatch_overhead_us: Optional[float] = None  # the runtime's per-chunk cost where it was profiled


def profile_csv_text(rows: Sequence[ProfileRow]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(COLUMNS)
    for r in rows:
        w.writerow([f"{x:.10g}" for x in (r.block_ms, r.branch_ms, r.block_mb, r.branch_mb, r.accuracy)])
    return buf.getvalue()


def read_profile_csv(path: Path, num_blocks: Optional[int] = None) -> List[ProfileRow]:
    """Parse ``profile.csv``; a missing column, a NaN, a negative or a wrong row count is a FormatError."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as exc:
        raise FormatError(f"cannot read {path}: {exc.strerror or exc} (run `pantheon profile` first)") from exc
    reader = csv.reader(io.StringIO(text))
    try:
        header = [h.strip() for h in next(reader)]
    except StopIteration:
        raise FormatError(f"{path} is empty") from None
    missing = [c for c in COLUMNS if c not in header]
    if missing:
        raise FormatError(f"{path} lacks the column(s) {', '.join(repr(m) for m in missing)} (expected {','.join(COLUMNS)})")
    idx = [header.index(c) for c in COLUMNS]
    rows = []
    for lineno, rec in enumerate(reader, start=2):
        if not rec or all(not c.strip() for c in rec):
            continue
        vals = []
        for col, i in zip(COLUMNS, idx):
            try:
                x = float(rec[i])
            except (IndexError, ValueError):
                raise FormatError(f"{path} line {lineno}: {col!r} is not a number") from None
            if math.isnan(x) or math.isinf(x):
                raise FormatError(f"{path} line {lineno}: {col!r} is {x}; re-run `pantheon profile`")
            if x < 0 or (col == "accuracy" and x > 1):
                raise FormatError(f"{path} line {lineno}: {col!r} = {x} is out of range")
            vals.append(x)
        rows.append(ProfileRow(*vals))
    if not rows:
        raise FormatError(f"{path} has a header but no rows")
    if num_blocks is not None and len(rows) != num_blocks:
        raise FormatError(f"{path} has {len(rows)} rows but the variants have {num_blocks} blocks; re-run `pantheon profile`")
    return rows


def profile_inputs(v: Variants, source: str, warmup: int, repeat: int, max_samples: Optional[int]) -> Dict[str, Any]:
    """What a profile depends on (the pipeline re-profiles when this changes)."""
    files = {name: e.sha256 for name, e in store.read_manifest(v.path).files.items() if name.endswith(".pt")}
    # The board, not the port its server happened to listen on, decides whether a profile is current.
    where = source if source == "local" else source.rsplit(":", 1)[0]
    return {"files": store.fingerprint(files), "source": where, "warmup": warmup, "repeat": repeat, "max_samples": max_samples,
            "timing": TIMING_METHOD}


def profile(
    task: Optional[str] = None,
    weights: Optional[Path] = None,
    *,
    data_dir: Optional[Path] = None,
    host: str = "127.0.0.1",
    port: int = wire.DEFAULT_PORT,
    local: bool = False,
    token: Optional[str] = None,
    buffer: int = 1 << 20,
    batch_size: int = 64,
    num_workers: int = 0,
    retries: int = 3,
    warmup: int = 0,
    repeat: int = 0,
    max_samples: Optional[int] = None,
    accuracies: Optional[Sequence[float]] = None,
    variants: Optional[Variants] = None,
    store: Optional[Store] = None,
) -> ProfileResult:
    """Profile the variants of ``task`` (in ``weights`` or the store) and write ``profile.csv``.

    Args:
        task: zoo task name (default: the one in ``variants.json``).
        weights: the variants directory (default ``<root>/variants/<task>``).
        host, port, token, retries, buffer: the profiler server (ignored with ``local``).
        local: time in this process instead (same timing code as the server).
        warmup, repeat: 0 = the server's defaults (10, 100).
        max_samples: evaluate accuracy on at most this many test samples.
        accuracies: library use only: known exit accuracies (skip the evaluation).
        variants: library use only: ``weights`` as :func:`load_variants` just read (and verified) it.
        store: the artifact store of the default ``weights`` (default: the one at ``$PANTHEON_DATA``).

    Returns: the :class:`ProfileResult`; ``profile.csv`` and ``profile.json`` are in the
    variants directory and its manifest is updated.
    """
    if weights is None:
        if task is None:
            raise UsageError("pass --task or --weights")
        weights = (store or Store()).variants_dir(task)
    v = variants if variants is not None and variants.path == Path(weights) else load_variants(Path(weights))
    if task is not None and task != v.task:
        raise UsageError(f"--task {task} but {weights} holds variants of {v.task}")
    task = v.task
    for name, val in (("batch_size", batch_size), ("buffer", buffer)):
        if val < 1:
            raise UsageError(f"--{name} must be positive, got {val}")
    if retries < 0:
        raise UsageError(f"--retries must be >= 0, got {retries}")

    items = latency_items(v)
    check_writable(v.path / PROFILE_CSV)  # a read-only or full disk is refused before the timing
    mem = _measure_memory(items)
    if local:
        source = "local"
        timings = _measure_latency(items, local_timer(warmup, repeat))
    else:
        source = f"{host}:{port}"
        with ProfilerClient(host, port, token=token, retries=retries, buffer=buffer) as client:
            console.info(f"profiler server {source}: {client.ping().device}")
            timings = _measure_latency(items, remote_timer(client, warmup, repeat))
    if accuracies is None:
        accuracies = task_accuracies(v, task, data_dir=data_dir, batch_size=batch_size, num_workers=num_workers, max_samples=max_samples)
    if len(accuracies) != v.num_blocks:
        raise ProfilerError(f"{len(accuracies)} accuracies for {v.num_blocks} exits")

    rows = [
        ProfileRow(
            block_ms=timings[v.block_name(j)].mean_us / 1000.0,
            branch_ms=timings[v.branch_name(j)].mean_us / 1000.0,
            block_mb=mem[v.block_name(j)],
            branch_mb=mem[v.branch_name(j)],
            accuracy=float(accuracies[j]),
        )
        for j in range(v.num_blocks)
    ]
    device = next(iter(timings.values())).device
    overheads = [t.dispatch_overhead_us for t in timings.values() if t.dispatch_overhead_us is not None]
    result = ProfileResult(v.path, task, device, source, rows, {k: asdict(t) for k, t in timings.items()},
                           max(overheads) if overheads else None)
    _write(v, result, profile_inputs(v, source, warmup, repeat, max_samples))
    return result


def _measure_memory(items: Sequence[Item]) -> Dict[str, float]:
    out = {}
    with console.progress() as bar:
        t = bar.add_task("memory", total=len(items))
        for it in items:
            out[it.path.name] = file_memory_mb(it.path)
            bar.advance(t)
    return out


def _measure_latency(items: Sequence[Item], timer: Timer) -> Dict[str, timing.Timing]:
    out = {}
    with console.progress() as bar:
        t = bar.add_task("latency", total=len(items))
        for it in items:
            out[it.path.name] = timer(it)
            bar.advance(t)
    return out


def _write(v: Variants, res: ProfileResult, inputs: Dict[str, Any]) -> None:
    record = {
        "task": res.task,
        "device": res.device,
        "source": res.source,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "columns": list(COLUMNS),
        "units": {"latency": "ms (mean)", "mem": "MB (2**20 bytes, parameters + buffers)", "accuracy": "fraction"},
        "timings_us": res.timings,
        "dispatch_overhead_us": res.dispatch_overhead_us,
        "executors": sorted({str(t.get("executor", "eager")) for t in res.timings.values()}),
    }
    store.update_artifact(
        v.path,
        {PROFILE_CSV: profile_csv_text(res.rows), PROFILE_JSON: json.dumps(record, indent=2) + "\n"},
        meta={"profile": {"device": res.device, "source": res.source, "inputs": inputs,
                          "dispatch_overhead_us": res.dispatch_overhead_us}},
    )
