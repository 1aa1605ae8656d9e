"""The live preemptive runtime: one real-time worker, chunk-granular preemption, exit switching.

Threads:

* **release** (workload replay): sleeps until each job's release on an absolute schedule
  from the monotonic clock (coarse sleep, then a short GIL-yielding spin), then admits it.
* **admission** (the releasing thread, or the caller of :meth:`Runtime.submit`): stores
  the job's input in the memory manager and, under the scheduler lock, refreshes the
  queue (the scheduling decision; its duration is logged).
* **real-time worker**: under the lock, takes the next action from the scheduler (the
  next block of the head job, or its exit branch) and advances that job's ``next_block``
  pointer there, so a block never runs twice or is skipped when a decision reorders the
  queue; then, outside the lock, consumes the job's tensor, runs the chunk, stores the
  output. After the job's last needed block its exit runs and its future resolves.
* **best-effort** (``best_effort=[(task, rate)]``): releases jobs of a repository task
  at ``rate`` per second and runs them whole through the original exit. On CUDA they go
  to a low-priority stream (the real-time worker uses a high-priority one,
  ``torch.cuda.Stream(priority=...)`` from ``Stream.priority_range()``); on the CPU a
  best-effort chunk starts only while no real-time job is queued or running.
* **telemetry** (optional): samples into the same log.

On CUDA every block and exit is captured once as a CUDA graph at start
(:mod:`pantheon.online.graphs`; eager TorchScript for a chunk that cannot be captured,
with ``cuda_graphs=False`` and on the CPU) and replayed on the high-priority stream. At
most ``max_inflight`` real-time chunks are queued on the stream, counted at every launch
(the worker waits for the oldest only when the window is full), so the worker regains
control after every chunk and preemption stays chunk-granular. The CUDA-specific part is
:class:`CudaExecutor`; the rest is the CPU-tested core.

Cost model: a chunk takes ``dispatch overhead + s x profiled latency``. The overhead is
the runtime's own fixed cost per dispatched chunk (scheduler step, memory manager, log
line, launch, event), measured at start on a null chunk through the same code path
(:meth:`Runtime._measure_dispatch`) and logged in the ``start`` event; ``s`` is fitted
online per task (:meth:`Runtime._observe`). A task whose jobs are all dropped measures
nothing, so its ``s`` decays back towards the profile until jobs run again; a task that
cannot meet its deadline even alone at its smallest exit is reported ``starved``.

Example::

    with Runtime("pantheon-data/apps/digits/repository", device="cpu", log="run1") as rt:
        fut = rt.submit("digits_resnet18", torch.randn(1, 3, 32, 32), relative_deadline_us=20_000)
        res = fut.result()        # JobResult(task=..., exit=..., met=True, output=tensor)
    # or replay a workload file:
    summary = run("repo", "workload.bin", "logs/run1", policy="pantheon", device="cpu")
"""

from __future__ import annotations

import collections
import contextlib
import functools
import itertools
import json
import math
import os
import shutil
import signal
import sys
import threading
import time
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Deque, Dict, List, Optional, Sequence, Tuple, Union

from pantheon.errors import PantheonError, RuntimeFault, UsageError
from pantheon.formats.events import Clock, EventLog, NullLog, events_path
from pantheon.metrics import DROPPED as DROPPED_JOB
from pantheon.metrics import LATE, MET, JobRecord, summarize
from pantheon.online.memory import MemoryManager
from pantheon.online.repository import (
    LoadedTask,
    Repository,
    configure_cpu_threads,
    load_modules,
    read_repository,
    resolve_device,
    torch_error_line,
    warm_up,
)
from pantheon.online.scheduler import (
    BLOCK,
    DEFAULT_MARGIN,
    DOWNGRADES,
    DROP_RULES,
    DROPPED,
    EXIT,
    Job,
    Scheduler,
    check_choice,
    check_margin,
    check_policy,
)
from pantheon.online.workload import JobSpec, task_timing, validate
from pantheon.platform import jetson
from pantheon.platform import telemetry as tm

PathLike = Union[str, "os.PathLike[str]"]

CAL_EVERY = 32  # chunks of a task between two calibration updates
CAL_ALPHA = 0.3  # weight of the newest fitted scale
SCALE_RANGE = (0.1, 8.0)  # a fitted scale is clamped to this range
DECAY_AFTER = 8  # jobs of a task dropped in a row, with nothing measured, before its scale decays
DECAY_KEEP = 0.5  # fraction of (scale - 1) kept by one decay step
PROBE_JOBS = 24  # null jobs of the start-up dispatch-overhead measurement...
PROBE_BLOCKS = 8  # ...each of this many null blocks plus an exit
TELEMETRY = ("off",) + tm.BACKENDS


@dataclass(frozen=True)
class JobResult:
    """What a submitted job's future resolves to: its :class:`~pantheon.metrics.JobRecord`, the
    exit's output (None when dropped) and why it was dropped."""

    record: JobRecord
    output: Any = None
    reason: str = ""

    job = property(lambda self: self.record.job)
    task = property(lambda self: self.record.task)
    met = property(lambda self: self.record.outcome == MET)
    dropped = property(lambda self: self.record.outcome == DROPPED_JOB)
    exit = property(lambda self: self.record.exit if self.record.finished else None)
    accuracy = property(lambda self: self.record.accuracy)
    relative_accuracy = property(lambda self: self.record.relative_accuracy)
    release_us = property(lambda self: self.record.release)
    deadline_us = property(lambda self: self.record.deadline)
    finish_us = property(lambda self: self.record.finish if self.record.finished else None)
    response_us = property(lambda self: self.record.response)


def check_runtime_options(max_inflight: int, dispatch_overhead_us: Optional[float] = None,
                          time_scale: float = 1.0) -> None:
    """One-line usage errors for the runtime's numeric options (before anything loads)."""
    if isinstance(max_inflight, bool) or not isinstance(max_inflight, int) or max_inflight < 1:
        raise UsageError(f"--max-inflight must be an integer >= 1, got {max_inflight}")
    if dispatch_overhead_us is not None and (not math.isfinite(dispatch_overhead_us) or dispatch_overhead_us < 0):
        raise UsageError(f"--dispatch-us must be a finite number >= 0, got {dispatch_overhead_us}")
    if not math.isfinite(time_scale) or time_scale <= 0:
        raise UsageError(f"--time-scale must be a finite positive number, got {time_scale}")


def parse_best_effort(items: Sequence[str]) -> List[Tuple[str, float]]:
    """``["alexnet:20"]`` -> ``[("alexnet", 20.0)]``; a bad item is a usage error."""
    out = []
    for item in items:
        task, sep, rate = item.rpartition(":")
        try:
            r = float(rate)
        except ValueError:
            r = -1.0
        if not sep or not task or not math.isfinite(r) or r <= 0:
            raise UsageError(f"--best-effort expects TASK:RATE with a positive rate in jobs/s, got {item!r}")
        out.append((task, r))
    return out


# -- executors -------------------------------------------------------------------------------


class CpuExecutor:
    """Runs each chunk synchronously; a chunk is complete when the call returns."""

    name = "cpu"

    def __init__(self, clock: Clock) -> None:
        self.clock = clock

    def launch(self, mod: Any, x: Any, tag: Any) -> Tuple[Any, List[Tuple[Any, Any, int]]]:
        """Run ``mod(x)``; return its output and the chunks now known complete (this one)."""
        y = mod(x)
        return y, [(tag, y, self.clock.now())]

    def poll(self) -> List[Tuple[Any, Any, int]]:
        return []

    def drain(self) -> List[Tuple[Any, Any, int]]:
        return []

    def pending(self) -> int:
        return 0

    def describe(self) -> Dict[str, Any]:
        return {"executor": "cpu"}


class InflightWindow:
    """At most ``limit`` launched items not known to be complete (CUDA events or stand-ins).

    The launcher calls :meth:`make_room` before each launch (it waits for the oldest
    items only while ``limit`` are outstanding, so the count never exceeds ``limit``),
    then :meth:`push`. :meth:`poll` returns the items already complete without waiting.
    Items are ``(event, tag, output)``; an event needs ``query()`` and ``synchronize()``.
    A completed event is stamped, then handed to ``release`` (an event pool) when given.
    """

    def __init__(self, limit: int, stamp: Callable[[Any], int],
                 release: Optional[Callable[[Any], None]] = None) -> None:
        if limit < 1:
            raise UsageError(f"--max-inflight must be >= 1, got {limit}")
        self.limit = limit
        self.stamp = stamp
        self.release = release
        self.items: Deque[Tuple[Any, Any, Any]] = collections.deque()
        self.max_seen = 0

    def _done(self, item: Tuple[Any, Any, Any]) -> Tuple[Any, Any, int]:
        ev, tag, out = item
        t = self.stamp(ev)
        if self.release is not None:
            self.release(ev)
        return tag, out, t

    def make_room(self) -> List[Tuple[Any, Any, int]]:
        """Wait until fewer than ``limit`` items are outstanding; return those completed."""
        done = self.poll()
        while len(self.items) >= self.limit:
            self.items[0][0].synchronize()
            done.append(self._done(self.items.popleft()))
        return done

    def push(self, event: Any, tag: Any, out: Any) -> None:
        """Count a launched item (after :meth:`make_room`)."""
        self.items.append((event, tag, out))
        if len(self.items) > self.max_seen:
            self.max_seen = len(self.items)

    def poll(self) -> List[Tuple[Any, Any, int]]:
        done = []
        while self.items and self.items[0][0].query():
            done.append(self._done(self.items.popleft()))
        return done

    def drain(self) -> List[Tuple[Any, Any, int]]:
        done = []
        while self.items:
            self.items[0][0].synchronize()
            done.append(self._done(self.items.popleft()))
        return done


class CudaExecutor:
    """Real-time chunks on a high-priority CUDA stream, at most ``max_inflight`` outstanding.

    The worker thread makes :attr:`rt` its current stream once (:meth:`bind`); each
    launch is then the chunk's call (a CUDA-graph replay or an eager module) plus one
    event from a pool.
    """

    name = "cuda"

    def __init__(self, clock: Clock, torch: Any, max_inflight: int = 2, device: str = "cuda",
                 priorities: Optional[Tuple[int, int]] = None) -> None:
        self.torch = torch
        self.clock = clock
        least, greatest = torch.cuda.Stream.priority_range()  # lower number = higher priority
        rt_prio, be_prio = priorities if priorities is not None else (greatest, least)
        self.rt = torch.cuda.Stream(device=device, priority=rt_prio)
        self.be = torch.cuda.Stream(device=device, priority=be_prio)
        self.ref = torch.cuda.Event(enable_timing=True)
        self.ref.record(self.rt)
        self.ref.synchronize()
        self.t_ref = clock.now()
        self._free: List[Any] = [torch.cuda.Event(enable_timing=True) for _ in range(max_inflight + 2)]
        self.events_made = len(self._free)
        self.window = InflightWindow(max_inflight, self._stamp, self._free.append)
        self.rt_launches = 0
        self.rt_wrong_stream = 0
        self.graphs = 0
        self.eager = 0

    def _stamp(self, ev: Any) -> int:
        return self.t_ref + int(self.ref.elapsed_time(ev) * 1000.0)

    def bind(self) -> None:
        """Make the real-time stream the calling thread's current stream."""
        self.torch.cuda.set_stream(self.rt)

    def _event(self) -> Any:
        if self._free:
            return self._free.pop()
        self.events_made += 1
        return self.torch.cuda.Event(enable_timing=True)

    def launch(self, mod: Any, x: Any, tag: Any) -> Tuple[Any, List[Tuple[Any, Any, int]]]:
        """Queue ``mod(x)`` on the high-priority stream; return its (future) output and the
        chunks now known complete (waiting for the oldest only while the window is full)."""
        done = self.window.make_room()
        if self.rt_launches & 63 == 0 and self.torch.cuda.current_stream() != self.rt:
            self.rt_wrong_stream += 1  # sampled: the check costs a stream object per call
        y = mod(x)
        ev = self._event()
        ev.record(self.rt)
        self.window.push(ev, tag, y)
        self.rt_launches += 1
        return y, done

    def poll(self) -> List[Tuple[Any, Any, int]]:
        return self.window.poll()

    def drain(self) -> List[Tuple[Any, Any, int]]:
        return self.window.drain()

    def pending(self) -> int:
        return len(self.window.items)

    def describe(self) -> Dict[str, Any]:
        least, greatest = self.torch.cuda.Stream.priority_range()
        return {
            "executor": "cuda",
            "gpu": self.torch.cuda.get_device_name(0),
            "stream_priority_range": [least, greatest],
            "rt_stream_priority": self.rt.priority,
            "be_stream_priority": self.be.priority,
            "max_inflight": self.window.limit,
        }


def null_chunk(torch: Any) -> Any:
    """The cheapest chunk there is (``x + 0`` as TorchScript): what the dispatch probe runs."""

    cu = torch.jit.CompilationUnit("def null_chunk(x: Tensor) -> Tensor:\n    return x + 0\n")
    return cu.null_chunk


def measure_dispatch(ex: Any, torch: Any, device: str, *, cuda_graphs: bool = True, pool: Any = None,
                     lock: Any = None) -> float:
    """The runtime's fixed cost per dispatched chunk, in us, measured on null chunks.

    ``PROBE_JOBS`` jobs of a probe task (``PROBE_BLOCKS`` blocks and an exit, each ``x + 0``,
    a CUDA graph when ``ex`` is a :class:`CudaExecutor` and ``cuda_graphs``) go through the
    worker's own per-chunk path (:meth:`Runtime._launch`): a scheduler decision under
    ``lock``, the memory manager, a log line (formatted, written to the null device), the
    launch and its event. The mean wall time per chunk is what every real chunk costs on
    top of its own work. The profiler server calls this too, so a profile carries the
    overhead of the board it was measured on.
    """
    from pantheon.online.repository import TaskProfile

    cuda = isinstance(ex, CudaExecutor)
    null = null_chunk(torch)
    if cuda and cuda_graphs:
        from pantheon.online import graphs as G

        try:
            null = G.capture(null, [1, 8], pool)
        except Exception:  # measured eager then, like a chunk that could not be captured
            pass
    probe = TaskProfile("probe", [0] * PROBE_BLOCKS, [(PROBE_BLOCKS - 1, 0, 1.0)], dims=[1, 8])
    chunks = {"probe": ([null] * PROBE_BLOCKS, [null])}
    log = EventLog(os.devnull, buffer_lines=1 << 30, flush_interval_s=1e9)
    x0 = torch.zeros(1, 8, device=device)
    ctx = torch.cuda.stream(ex.rt) if cuda else contextlib.nullcontext()
    lock = lock if lock is not None else threading.Lock()
    per_chunk = []
    try:
        with ctx, torch.inference_mode():
            for _ in range(2):  # the first round warms the path up
                sched = Scheduler([probe], "edf", drop_late=False)
                mem = MemoryManager()
                for j in range(PROBE_JOBS):
                    sched.arrive(Job(j, probe, 0, 1 << 60), 0)
                    mem.store(j, x0)
                n = 0
                t0 = time.perf_counter_ns()
                while True:
                    with lock:
                        act = sched.next_action(0)
                        if act is None:
                            break
                        x = mem.consume(act[1].id)
                    for (_k, job, idx, _t), _o, t_end in Runtime._launch(act, x, 0, log, mem, ex, chunks):
                        log.done(t_end, job.id, idx)
                    n += 1
                ex.drain()
                per_chunk.append((time.perf_counter_ns() - t0) / 1000.0 / max(1, n))
    finally:
        log.close()
    if cuda:
        ex.rt_launches = 0
        ex.window.max_seen = 0
    return float(per_chunk[-1])


def dispatch_overhead_here(device: Any, cuda_graphs: bool = True) -> float:
    """:func:`measure_dispatch` with a fresh executor on ``device`` (the profiler's use)."""
    import torch

    dev = str(device)
    ex: Any = CudaExecutor(Clock(), torch, 2, dev) if dev.startswith("cuda") else CpuExecutor(Clock())
    pool = torch.cuda.graph_pool_handle() if dev.startswith("cuda") and cuda_graphs else None
    return measure_dispatch(ex, torch, dev, cuda_graphs=cuda_graphs, pool=pool)


# -- the runtime -----------------------------------------------------------------------------


class Runtime:
    """The live runtime over one repository on one device.

    Args:
        repo: a repository folder or a :class:`Repository` (verified when read here).
        device: ``cpu``, ``cuda`` or ``auto``.
        policy: a scheduling policy (see :mod:`pantheon.online.scheduler`).
        drop_late: drop jobs that can no longer meet their deadline when they would start.
        log: a run folder (``events.jsonl`` + ``run.json`` + manifest), an ``.jsonl`` file,
            an :class:`EventLog`, or None.
        best_effort: ``[(task, jobs_per_second)]`` run on the low-priority side.
        telemetry: ``off`` or a backend of :mod:`pantheon.platform.telemetry`.
        max_inflight: CUDA chunks allowed on the stream at once.
        warmup: warm-up runs per exit path at start.
        cuda_priorities: ``(real-time, best-effort)`` stream priorities instead of the highest
            and lowest of ``torch.cuda.Stream.priority_range()`` (for control experiments).
        threads: CPU intra-op threads (default 1 or ``$PANTHEON_CPU_THREADS``, the profiler
            server's default too; see :func:`~pantheon.online.repository.configure_cpu_threads`).
        calibrate: fit the cost model's per-task scale to the measured chunk latencies as
            the run goes (``calibrate`` events in the log); see :meth:`_observe`.
        cuda_graphs: on CUDA, replay every chunk as a CUDA graph captured at start (False:
            eager TorchScript everywhere).
        dispatch_overhead_us: the per-chunk dispatch overhead to plan with instead of the
            one measured at start (None: measure it).
        start_fields: extra fields for the ``start`` event.
        drop_rule, downgrade: the pantheon refresh's rules (:class:`~pantheon.online.scheduler.Scheduler`).
        fallback: let the pantheon policy finish a job through a kept exit it already passed (the
            memory manager keeps the tensor there; see :mod:`pantheon.online.memory`).
        margin: the pantheon refresh's safety margin (:class:`~pantheon.online.scheduler.Scheduler`).
    """

    def __init__(
        self,
        repo: Union[PathLike, Repository],
        device: str = "auto",
        policy: str = "pantheon",
        *,
        drop_late: bool = True,
        log: Union[None, PathLike, EventLog] = None,
        best_effort: Sequence[Tuple[str, float]] = (),
        telemetry: str = "off",
        telemetry_interval_s: float = 0.02,
        max_inflight: int = 2,
        warmup: int = 3,
        start_fields: Optional[Dict[str, Any]] = None,
        cuda_priorities: Optional[Tuple[int, int]] = None,
        threads: Optional[int] = None,
        calibrate: bool = True,
        cuda_graphs: bool = True,
        dispatch_overhead_us: Optional[float] = None,
        drop_rule: str = DROP_RULES[0],
        downgrade: str = DOWNGRADES[0],
        fallback: bool = False,
        margin: float = DEFAULT_MARGIN,
    ) -> None:
        check_runtime_options(max_inflight, dispatch_overhead_us)
        repo = repo if isinstance(repo, Repository) else read_repository(repo)
        # The profiles are frozen: calibration, workload timing and static priorities live in
        # the scheduler's per-run task states (self.sched.states), never in the repository.
        self.repo = repo
        self.policy = check_policy(policy)
        if telemetry not in TELEMETRY:
            raise UsageError(f"unknown telemetry backend {telemetry!r}: choose one of {', '.join(TELEMETRY)}")
        for task, _ in best_effort:
            self.repo.task(task)
        self.device = resolve_device(device)
        self.drop_late = drop_late
        self.best_effort = list(best_effort)
        self.telemetry = telemetry
        self.telemetry_interval_s = telemetry_interval_s
        self.max_inflight = max_inflight
        self.warmup = warmup
        self.cuda_priorities = cuda_priorities
        self.threads = threads
        self.calibrate = calibrate
        self.cuda_graphs = cuda_graphs
        self.dispatch_us = dispatch_overhead_us
        self.chunks: Dict[str, Tuple[List[Any], List[Any]]] = {}
        self.fallbacks: List[Tuple[str, str, str]] = []  # (task, chunk file, reason)
        self._cal: Dict[str, List[Any]] = {}
        self._unmeasured_drops: Dict[str, int] = {}
        self._starved_now: set = set()
        self._starved_jobs: Dict[str, int] = {}
        self._last_end = 0
        self._fallback_exits = 0
        self.start_fields = dict(start_fields or {})
        self._log_arg = log
        self.log: EventLog = NullLog()  # until start() opens the run's log
        self.run_dir: Optional[Path] = None
        self.models: Dict[str, LoadedTask] = {}
        self.memory = MemoryManager()
        self.sched = Scheduler(list(self.repo.tasks.values()), policy, drop_late=drop_late, drop_rule=drop_rule,
                               downgrade=downgrade, fallback=fallback, margin=margin)
        self._lock = threading.Lock()
        self._cv = threading.Condition(self._lock)
        self._rt_idle = threading.Event()
        self._rt_idle.set()
        self._closing = False
        self._abort = False
        self._interrupted = False
        self._started = False
        self._stopped = False
        self._ids = itertools.count()
        self._futures: Dict[int, Future] = {}
        self._records: Dict[int, JobRecord] = {}
        self._preempted: Dict[int, int] = {}  # job -> times displaced from the head after it started
        self._started_at: Dict[int, int] = {}  # job -> its first dispatch
        self._streams: Dict[int, int] = {}  # job -> its workload stream (-1: submitted through the API)
        self._preemptions = 0
        self._decisions: List[Tuple[int, float]] = []
        self._be_done: List[Tuple[str, int]] = []
        self._threads: List[threading.Thread] = []
        self._ready: List[threading.Event] = []
        self._errors: List[BaseException] = []
        self._outstanding = 0
        self._all_done = threading.Condition(threading.Lock())
        self.summary: Optional[Dict[str, Any]] = None
        self._sampler: Any = None
        self._tthread: Any = None
        self.clock = Clock()
        self._spin_us = 0

    # -- lifecycle ------------------------------------------------------------------------

    def start(self) -> Runtime:
        """Load and warm up the chunks, open the log, start the worker threads."""
        if self._started:
            return self
        import torch

        self._torch = torch
        configure_cpu_threads(self.device, self.threads)
        self.models = load_modules(self.repo, self.device, warmup=self.warmup)
        self._inputs = {n: torch.randn(*self.repo.dims(n), device=self.device) for n in self.repo.names}
        if self.device.startswith("cuda"):
            torch.cuda.synchronize()  # the inputs exist before other streams read them
        self.clock = Clock()
        # The release thread's final spin (time.sleep(0) in a loop) hands the GIL back and forth
        # with the worker: on a CPU device that slowed chained chunks by up to 50% while it ran,
        # so there it only sleeps (timer slack ~60 us); on CUDA the worker waits on the GPU.
        self._spin_us = 200 if self.device.startswith("cuda") else 0
        if self.device.startswith("cuda"):
            self.executor: Any = CudaExecutor(self.clock, torch, self.max_inflight, self.device,
                                              self.cuda_priorities)
        else:
            self.executor = CpuExecutor(self.clock)
        self._pool = None
        self._compile_chunks()
        measured = self._measure_dispatch()
        if self.dispatch_us is None:
            self.dispatch_us = measured
        for tp in self.sched.tasks:  # every run starts from the profile, plus its own overhead
            tp.rescale(1.0, self.dispatch_us)
        self.start_fields.setdefault("dispatch_overhead_us", round(self.dispatch_us, 1))
        self.start_fields.setdefault("dispatch_overhead_measured_us", round(measured, 1))
        self.start_fields.setdefault("profile_dispatch_overhead_us", self.repo.dispatch_us)
        if self.telemetry != "off":  # an unavailable backend fails here, before the log exists
            self._sampler = tm.open_sampler(self.telemetry)
            self.start_fields.setdefault("telemetry_backend", getattr(self._sampler, "name", self.telemetry))
            self.start_fields.setdefault("board", jetson.board_facts())  # into the start event
        self._open_log()
        self._old_switch = sys.getswitchinterval()
        sys.setswitchinterval(0.0005)  # hand the GIL over quickly between release and worker
        self._started = True
        self._ready = [threading.Event() for _ in range(1 + len(self.best_effort))]
        self._spawn(self._worker, "pantheon-rt-worker")
        for k, (task, rate) in enumerate(self.best_effort):
            self._spawn(functools.partial(self._best_effort, task, rate, k), f"pantheon-be-{task}")
        self._wait_ready()
        self._start_telemetry()
        return self

    def _compile_chunks(self) -> None:
        """The callables the worker dispatches: CUDA graphs on CUDA (eager where capture fails,
        each fallback logged once), the TorchScript modules elsewhere."""
        cuda = isinstance(self.executor, CudaExecutor)
        if not (cuda and self.cuda_graphs):
            self.chunks = {n: (lt.blocks, lt.exits) for n, lt in self.models.items()}
            if cuda:
                self.fallbacks = [(n, "*", "--no-cuda-graphs") for n in self.repo.names]
                self.executor.eager = sum(len(b) + len(e) for b, e in self.chunks.values())
            return
        from pantheon.online import graphs as G

        torch = self._torch
        self._pool = torch.cuda.graph_pool_handle()
        for name, lt in self.models.items():
            tp = lt.profile
            items = G.chain_items(lt.blocks, lt.exits, tp.exit_blocks, tp.dims, self.device, torch)
            out, fb = G.compile_chunks(items, self._pool)
            self.chunks[name] = (out[:len(lt.blocks)], out[len(lt.blocks):])
            self.fallbacks += [(name, f.name, f.reason) for f in fb]
        ex = self.executor
        ex.graphs = sum(G.is_graph(c) for b, e in self.chunks.values() for c in b + e)
        ex.eager = sum(len(b) + len(e) for b, e in self.chunks.values()) - ex.graphs
        from pantheon import console

        for task, chunk, reason in self.fallbacks:  # once per chunk, here and in the log
            console.warn(f"{task}/{chunk} runs eager (no CUDA graph): {reason}")

    def _measure_dispatch(self) -> float:
        """This runtime's fixed cost per dispatched chunk (see :func:`measure_dispatch`)."""
        return measure_dispatch(self.executor, self._torch, self.device, cuda_graphs=self.cuda_graphs,
                                pool=self._pool, lock=self._cv)

    def _warm_here(self, names: Sequence[str], stream: Any) -> None:
        """Warm chunks up again in the calling thread, on its stream: cuDNN handles, the
        caching allocator's per-stream pools and oneDNN caches are per thread/stream, and
        paying for them on the first real jobs costs deadlines."""
        torch = self._torch
        ctx = torch.cuda.stream(stream) if stream is not None else contextlib.nullcontext()
        with ctx:
            for n in names:
                warm_up(self.models[n], 2, torch)

    def _wait_ready(self, timeout: float = 300.0) -> None:
        deadline = time.monotonic() + timeout
        for ev in self._ready:
            while not ev.wait(0.05):
                if self._errors or time.monotonic() > deadline:
                    return  # stop() surfaces the error

    def _spawn(self, fn: Callable[[], None], name: str) -> None:
        def body() -> None:
            try:
                fn()
            except BaseException as exc:  # surfaced by stop(); the run must still end cleanly
                self._errors.append(exc)
                self._closing = True
                self._abort = True
                with self._cv:
                    self._cv.notify_all()
                with self._all_done:
                    self._all_done.notify_all()

        th = threading.Thread(target=body, name=name, daemon=True)
        th.start()
        self._threads.append(th)

    def _open_log(self) -> None:
        from pantheon import __version__
        from pantheon.formats import store

        arg = self._log_arg
        if isinstance(arg, EventLog):
            self.log = arg
        elif arg is not None:
            path = events_path(arg)
            if path.name == "events.jsonl":
                self.run_dir = path.parent
            self.log = EventLog(path)
        else:
            self.log = NullLog()
        fields = {
            "mode": "live",
            "policy": self.policy,
            "device": self.device,
            "app": self.repo.app,
            "run_id": self.start_fields.pop("run_id", None) or store.new_run_id(),
            "version": __version__,
            "drop_late": self.drop_late,
            "drop_rule": self.sched.drop_rule, "margin": self.sched.margin,
            "downgrade": self.sched.downgrade,
            "repository": str(self.repo.path),
            "tasks": self.repo.describe(self.dispatch_us),
            "best_effort": [{"task": t, "rate": r} for t, r in self.best_effort],
            "telemetry": self.telemetry,
        }
        fields.update(self.executor.describe())
        fields.update(self.start_fields)
        self.run_id = fields["run_id"]
        self.log.start(0, **fields)
        for task, chunk, reason in self.fallbacks:
            self.log.event("fallback", 0, task=task, chunk=chunk, reason=reason)

    def _start_telemetry(self) -> None:
        if self._sampler is None:
            return
        log, clock = self.log, self.clock
        self._tthread = tm.TelemetryThread(
            self._sampler, emit=lambda s: log.telemetry(clock.now(), s), interval_s=self.telemetry_interval_s
        )
        self._tthread.start()

    def __enter__(self) -> Runtime:
        return self.start()

    def __exit__(self, *exc: Any) -> None:
        self.stop(drain=exc[0] is None)

    # -- admission ------------------------------------------------------------------------

    def submit(self, task: str, tensor: Any, relative_deadline_us: int, *, release_us: Optional[int] = None) -> Future:
        """Queue one inference of ``task`` on ``tensor`` (shape = the task's dims, batch 1).

        Args:
            task: a task of the repository.
            tensor: the input.
            relative_deadline_us: the deadline in microseconds after the release (now, or ``release_us``);
                the job's record and the log carry the absolute one.
            release_us: release time on the runtime clock (default: now).

        Returns:
            A future resolving to a :class:`JobResult` (``dropped=True`` when the job was
            dropped; ``output`` holds the exit's output otherwise).
        """
        if not self._started or self._closing:
            raise RuntimeFault("the runtime is not running (use `with Runtime(...)` or call start())")
        t = self.repo.task(task)
        shape = list(getattr(tensor, "shape", []))
        if shape != list(t.dims):
            raise UsageError(f"input shape mismatch: task {task} takes {list(t.dims)}, got {shape}")
        if relative_deadline_us <= 0:
            raise UsageError(f"deadline must be positive (us from release), got {relative_deadline_us}")
        if str(getattr(tensor, "device", "cpu")) != str(self._inputs[task].device):
            tensor = tensor.to(self._inputs[task].device)
        if isinstance(self.executor, CudaExecutor):  # made on the caller's stream, read on the real-time one
            self.executor.rt.wait_stream(self._torch.cuda.current_stream())
            tensor.record_stream(self.executor.rt)
        rel = self.clock.now() if release_us is None else int(release_us)
        fut: Future = Future()
        self._admit(next(self._ids), task, rel, rel + int(relative_deadline_us), tensor, fut)
        return fut

    def _admit(self, jid: int, task: str, release: int, deadline: int, tensor: Any, fut: Optional[Future],
               stream: int = -1) -> None:
        log = self.log
        job = Job(jid, self.sched.states[task], release, deadline)
        self._streams[jid] = stream
        self.memory.store(jid, tensor)
        if fut is not None:
            self._futures[jid] = fut
        with self._all_done:
            self._outstanding += 1
        now = self.clock.now()
        log.release(now, jid, task, release, deadline, stream=stream)
        with self._cv:
            self._rt_idle.clear()
            t0 = time.perf_counter_ns()
            n = self.sched.arrive(job, now)
            dur = (time.perf_counter_ns() - t0) / 1000.0
            dropped = self.sched.dropped
            # logged under the lock: the decision's line precedes any dispatch it leads to
            log.schedule(now, jid, n, dur, self.sched.downgrades, len(dropped))
            self._cv.notify()
        self._decisions.append((n, dur))
        if dropped:
            self._dropped(dropped, now, "unschedulable" if self.sched.ee else "late")

    def _dropped(self, jobs: Sequence[Job], now: int, reason: str) -> None:
        for job in jobs:
            if reason != "shutdown":
                self._after_drop(job, now)
            self.memory.release(job.id)
            self.log.drop(now, job.id, job.task.name, reason, job.started)
            self._finish(job, JobResult(self._record(job, outcome=DROPPED_JOB, finish=now), reason=reason))

    def _record(self, job: Job, **outcome: Any) -> JobRecord:
        return JobRecord(job.id, job.task.name, self._stream_of(job), job.release, job.deadline,
                         start=self._started_at.get(job.id), preemptions=self._preempted.get(job.id, 0), **outcome)

    def _stream_of(self, job: Job) -> int:
        return self._streams.get(job.id, -1)

    def _finish(self, job: Job, result: JobResult) -> None:
        self._records[job.id] = result.record
        fut = self._futures.pop(job.id, None)
        if fut is not None:
            fut.set_result(result)
        with self._all_done:
            self._outstanding -= 1
            self._all_done.notify_all()

    # -- the real-time worker -------------------------------------------------------------

    def _worker(self) -> None:
        torch = self._torch
        sched, clock, log, mem, ex = self.sched, self.clock, self.log, self.memory, self.executor
        chunks = self.chunks
        ready = self._ready[0]
        self._warm_here([n for n in self.repo.names if n not in dict(self.best_effort)], getattr(ex, "rt", None))
        if isinstance(ex, CudaExecutor):
            ex.bind()
        ready.set()
        with torch.inference_mode():
            while True:
                with self._cv:
                    while True:
                        now = clock.now()
                        act = sched.next_action(now)
                        dropped = sched.dropped
                        if act is not None or dropped or ex.pending():
                            break
                        self._rt_idle.set()
                        if self._closing or self._abort:
                            return
                        self._cv.wait(0.05)
                    if act is not None:  # taken with the action: a decision may drop the job meanwhile
                        x = self._input(act, mem)
                if dropped:
                    self._dropped(dropped, now, "late")
                if act is None:
                    if self._abort:
                        return
                    self._completed(ex.drain())
                    continue
                kind, job, idx, _lat, pre = act
                t = clock.now()
                if pre is not None:
                    self._preemptions += 1
                    self._preempted[pre.id] = self._preempted.get(pre.id, 0) + 1
                    log.preempt(t, pre.id, job.id)
                self._started_at.setdefault(job.id, t)
                done = self._launch(act, x, t, log, mem, ex, chunks)
                del x
                self._completed(done)
                if self._abort:
                    return

    def _input(self, act: Tuple[Any, ...], mem: MemoryManager) -> Any:
        """The tensor ``act`` runs on; keeps or frees the job's tensor at a passed exit (fallback)."""
        kind, job, idx = act[0], act[1], act[2]
        tp = job.task
        if kind == EXIT:
            if job.next_block > tp.exit_blocks[idx] + 1:  # finishing through an exit it passed
                x = mem.take_kept(job.id)
                mem.release(job.id)  # the tensor ahead is not needed any more
                self._fallback_exits += 1
                return x
            if self.sched.fallback:
                mem.discard_kept(job.id)
            return mem.consume(job.id)
        x = mem.consume(job.id)
        if self.sched.fallback and idx > 0 and tp.exit_after[idx - 1] >= 0:
            mem.keep(job.id, x)  # the scheduler may still send the job out through that exit
        return x

    @staticmethod
    def _launch(act: Tuple[Any, ...], x: Any, t: int, log: Any, mem: MemoryManager, ex: Any,
                chunks: Dict[str, Tuple[List[Any], List[Any]]]) -> List[Tuple[Any, Any, int]]:
        """Dispatch one action taken from the scheduler; return the chunks known complete."""
        kind, job, idx, _lat, _pre = act
        blocks, exits = chunks[job.task.name]
        if kind == BLOCK:
            log.dispatch_block(t, job.id, idx)
            y, done = ex.launch(blocks[idx], x, (BLOCK, job, idx, t))
            mem.store(job.id, y)  # before any later chunk of this job can be taken
            if job.state == DROPPED:  # dropped by a decision while its block ran
                mem.release(job.id)
            return done
        log.dispatch_exit(t, job.id, job.task.exit_blocks[idx])
        return ex.launch(exits[idx], x, (EXIT, job, idx, t))[1]

    def _completed(self, done: Sequence[Tuple[Any, Any, int]]) -> None:
        log = self.log
        for (kind, job, idx, t_disp), out, t_end in done:
            start = t_disp if t_disp > self._last_end else self._last_end  # device busy until the last end
            self._last_end = t_end
            tp = job.task
            if kind == BLOCK:
                log.done(t_end, job.id, idx)
                if self.calibrate:
                    self._observe(tp, tp.base_blocks[idx], t_end - start, t_end)
                continue
            if self.calibrate:
                self._observe(tp, tp.base_exit_lat[idx], t_end - start, t_end)
            if tp.name in self._starved_now and t_end <= job.deadline:
                self._starved_now.discard(tp.name)
            resp = t_end - job.release
            met = t_end <= job.deadline
            acc, rel, eb = tp.exit_acc[idx], tp.rel_acc[idx], tp.exit_blocks[idx]
            log.exit(t_end, job.id, tp.name, eb, acc, rel, resp, met)
            record = self._record(job, outcome=MET if met else LATE, exit=eb, accuracy=acc,
                                  relative_accuracy=rel if met else 0.0, finish=t_end)
            self._finish(job, JobResult(record, output=out))
        if done and not self.executor.pending():
            self.sched.idle(done[-1][2])

    def _observe(self, tp: Any, base: int, dur: int, t: int) -> None:
        """Online calibration: fit ``s`` in ``chunk = overhead + s x profiled latency``.

        Profiles time each chunk alone and hot; live, chained and with caches cooled between
        jobs, chunks can run slower (1.3-2x on a CPU), and a scheduler that believes the
        profile downgrades too little. Every ``CAL_EVERY`` chunks of a task, ``s`` moves
        towards ``sum(measured - overhead) / sum(profiled)`` over those chunks (exponential
        smoothing after the first window), clamped to ``SCALE_RANGE``. Chunks profiled at
        0 us carry no information about ``s`` and are skipped.
        """
        self._unmeasured_drops[tp.name] = 0
        if base <= 0:
            return
        c = self._cal.get(tp.name)
        if c is None:
            c = self._cal[tp.name] = [0.0, 0.0, 0, 0]
        c[0] += dur - self.dispatch_us  # type: ignore[operator]
        c[1] += base
        c[2] += 1
        c[3] += 1
        if c[2] < CAL_EVERY:
            return
        fit = max(c[0], 0.0) / c[1]
        scale = fit if c[3] <= CAL_EVERY else (1.0 - CAL_ALPHA) * tp.scale + CAL_ALPHA * fit
        scale = min(max(scale, SCALE_RANGE[0]), SCALE_RANGE[1])
        c[0], c[1], c[2] = 0.0, 0.0, 0
        with self._cv:
            tp.rescale(scale)
        self.log.calibrate(t, tp.name, scale, c[3])

    def _after_drop(self, job: Job, now: int) -> None:
        """A job was dropped: decay its task's scale when nothing of it ran for a while, and
        report the task starved when not even its smallest exit fits its relative deadline."""
        tp = job.task
        k = self._unmeasured_drops.get(tp.name, 0) + 1
        if k >= DECAY_AFTER and tp.scale > 1.0:  # its jobs are all dropped: nothing re-measures it
            scale = 1.0 + (tp.scale - 1.0) * DECAY_KEEP
            scale = 1.0 if scale < 1.02 else scale
            with self._cv:
                tp.rescale(scale)
            self.log.calibrate(now, tp.name, scale, (self._cal.get(tp.name) or [0, 0, 0, 0])[3],
                               "decay")
            k = 0
        self._unmeasured_drops[tp.name] = k
        rel = job.deadline - job.release
        if tp.full[0] > rel:  # hopeless even alone, at the smallest exit, as planned now
            self._starved_jobs[tp.name] = self._starved_jobs.get(tp.name, 0) + 1
            if tp.name not in self._starved_now:
                self._starved_now.add(tp.name)
                self.log.event("starved", now, task=tp.name, deadline=rel, smallest_us=tp.full[0])

    # -- best effort ----------------------------------------------------------------------

    def _best_effort(self, task: str, rate: float, k: int) -> None:
        torch = self._torch
        lt = self.models[task]
        x0 = self._inputs[task]
        top = lt.profile.top
        chunks = lt.blocks[: lt.profile.exit_blocks[top] + 1] + [lt.exits[top]]
        period = int(1e6 / rate)
        clock = self.clock
        nxt = clock.now() + period // 2 + k * 997  # stagger several best-effort tasks
        pending: Deque[Tuple[int, int]] = collections.deque()
        seq = 0
        cuda = isinstance(self.executor, CudaExecutor)
        ready = self._ready[1 + k]
        self._warm_here([task], self.executor.be if cuda else None)
        ready.set()
        with torch.inference_mode():
            while not self._closing:
                now = clock.now()
                while nxt <= now:
                    pending.append((seq, nxt))
                    seq += 1
                    nxt += period
                if not pending:
                    _sleep_until(clock, nxt, lambda: self._closing, self._spin_us)
                    continue
                jid, rel = pending.popleft()
                if cuda:
                    ex = self.executor
                    with torch.cuda.stream(ex.be):
                        lt.run_exit(x0, top)
                        ev = torch.cuda.Event()
                        ev.record(ex.be)
                    ev.synchronize()
                else:
                    y = x0
                    for c in chunks:
                        while not self._rt_idle.wait(0.05):  # real-time work first
                            if self._closing:
                                return
                        y = c(y)
                t = clock.now()
                self._be_done.append((task, t - rel))
                self.log.best_effort(t, task, jid, t - rel)

    # -- workload replay and shutdown -----------------------------------------------------

    def run_workload(self, jobs: Sequence[JobSpec], *, time_scale: float = 1.0, lead_us: int = 50_000,
                     progress: bool = False, interrupt: Optional[threading.Event] = None) -> Dict[str, Any]:
        """Replay validated ``jobs`` (their release/deadline in workload us), wait, stop.

        Job ids in the log are the workload indices. ``time_scale`` stretches every
        workload time. ``interrupt`` (set by a signal handler) ends the run early: the
        release stops, queued jobs are dropped ("shutdown") and the log is closed.
        Returns the run summary.
        """
        check_runtime_options(self.max_inflight, self.dispatch_us, time_scale)
        with self._cv:  # the periods and deadlines the static policies rank tasks by
            self.sched.set_timing(task_timing(jobs))
        self.start()
        origin = self.clock.now() + lead_us
        replay_done = threading.Event()

        def replay() -> None:
            clock = self.clock
            for s in jobs:
                rel = origin + int(s.release * time_scale)
                _sleep_until(clock, rel, lambda: self._closing, self._spin_us)
                if self._closing:
                    break
                self._admit(s.index, s.task, rel, origin + int(s.deadline * time_scale), self._inputs[s.task], None,
                            stream=s.stream)
            replay_done.set()

        self._spawn(replay, "pantheon-release")
        total = len(jobs)
        bar = None
        if progress:
            from pantheon import console

            bar = console.progress(transient=True)
            bar.start()
            task_id = bar.add_task(f"{self.policy} on {self.device}", total=total)
        try:
            while True:
                if interrupt is not None and interrupt.is_set():
                    break
                if self._errors:
                    break
                with self._all_done:
                    if replay_done.is_set() and self._outstanding == 0:
                        break
                    self._all_done.wait(0.1)
                if bar is not None:
                    bar.update(task_id, completed=len(self._records))
        finally:
            if bar is not None:
                bar.stop()
        self._interrupted = interrupt is not None and interrupt.is_set()
        return self.stop(drain=not self._interrupted)

    def stop(self, drain: bool = True, timeout: float = 60.0) -> Dict[str, Any]:
        """Stop the threads (after the queue empties when ``drain``), close the log, summarise."""
        if self._stopped:
            return self.summary or {}
        if not self._started:
            self._stopped = True
            return {}
        if drain and not self._errors:
            deadline = time.monotonic() + timeout
            with self._all_done:
                while self._outstanding > 0 and not self._errors and time.monotonic() < deadline:
                    self._all_done.wait(0.1)
        self._closing = True
        self._abort = not drain or bool(self._errors)
        with self._cv:
            self._cv.notify_all()
        for th in self._threads:
            th.join(timeout=10.0)
        if self._tthread is not None:
            self._tthread.stop()
        if self._sampler is not None:
            self._sampler.close()
        now = self.clock.now()
        with self._cv:
            left = list(self.sched.queue)
            for job in left:
                self.sched.remove(job)
        self._completed(self.executor.drain())
        self._dropped(left, now, "shutdown")
        self.memory.clear()
        sys.setswitchinterval(self._old_switch)
        self.summary = self._summary()
        if self._errors:
            err = self._errors[0]
            self.summary["failed"] = f"{err.__class__.__name__}: {torch_error_line(err)}"
        self.log.close(self.clock.now(), summary=self.summary)
        self._write_run_dir()
        self._stopped = True
        if self._errors:
            err = self._errors[0]
            if isinstance(err, PantheonError):
                raise err
            kept = f"; its log {self.run_dir} is kept, unsealed" if self.run_dir is not None else ""
            raise RuntimeFault(f"the runtime failed: {err.__class__.__name__}: {torch_error_line(err)}{kept}") from err
        return self.summary

    def _summary(self) -> Dict[str, Any]:
        records = [r for _, r in sorted(self._records.items())]
        meta = {"mode": "live", "policy": self.policy, "device": self.device, "app": self.repo.app,
                "run_id": self.run_id, "drop_late": self.drop_late, "drop_rule": self.sched.drop_rule,
                "downgrade": self.sched.downgrade, "margin": self.sched.margin}
        s = summarize(records, self._decisions, self._be_done, self._preemptions, meta)
        s["interrupted"] = self._interrupted
        s["memory_peak_bytes"] = self.memory.peak_bytes
        s["memory_peak_tensors"] = self.memory.peak_tensors
        if self.sched.fallback:
            s["fallback_exits"] = self._fallback_exits
            s["memory_kept_peak_tensors"] = self.memory.kept_peak_tensors
            s["memory_kept_peak_bytes"] = self.memory.kept_peak_bytes
        s["dispatch_overhead_us"] = None if self.dispatch_us is None else round(self.dispatch_us, 1)
        s["starved"] = dict(sorted(self._starved_jobs.items()))
        s["scales"] = {n: round(t.scale, 4) for n, t in sorted(self.sched.states.items())}
        if isinstance(self.executor, CudaExecutor):
            ex = self.executor
            s["cuda"] = {"rt_launches": ex.rt_launches,
                         "rt_launches_off_high_priority_stream": ex.rt_wrong_stream,
                         "max_inflight_seen": ex.window.max_seen, "max_inflight": ex.window.limit,
                         "graph_chunks": ex.graphs, "eager_chunks": ex.eager, "events_made": ex.events_made}
        return s

    def _write_run_dir(self) -> None:
        """``run.json`` and, for a run that did not fail, the manifest that seals the run folder.

        A failed run keeps its events and its ``run.json`` (with ``failed``: what went wrong)
        to debug from, but stays unsealed, so no reader takes it for a complete run.
        """
        summary = self.summary
        if self.run_dir is None or summary is None:
            return
        from pantheon.formats import store

        (self.run_dir / "run.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        if summary.get("failed"):
            return
        manifest = store.build_manifest(self.run_dir, kind="log", meta={"run_id": self.run_id})
        store.atomic_write_text(self.run_dir / store.MANIFEST, manifest.to_json())


def _sleep_until(clock: Clock, target_us: int, stop: Callable[[], bool], spin_us: int = 600) -> None:
    """Sleep until ``target_us`` on ``clock``: coarse sleeps, then a GIL-yielding spin."""
    while True:
        rem = target_us - clock.now()
        if rem <= 0 or stop():
            return
        if rem > spin_us + 200:
            time.sleep(min(rem - spin_us, 50_000) / 1e6)
        else:
            time.sleep(0)


def summary_line(s: Dict[str, Any]) -> str:
    """One line: jobs, DMR, relative accuracy, dropped, preempted."""
    return (("interrupted: " if s.get("interrupted") else "")
            + f"{s.get('policy')} on {s.get('device')}: {s['jobs']} jobs, DMR {100 * s['dmr']:.2f}%, "
            f"relative accuracy {100 * s['relative_accuracy']:.2f}%, dropped {s['dropped']}, "
            f"preempted {100 * s['preempted_jobs']:.1f}%, response p99 "
            f"{(s['response_p99_us'] or 0) / 1000:.2f} ms")


def run(repo: PathLike, workload: PathLike, log: PathLike, *, policy: str = "pantheon", device: str = "auto",
        best_effort: Sequence[str] = (), telemetry: str = "off", drop_late: bool = True, time_scale: float = 1.0,
        progress: bool = True, handle_signals: bool = True, max_inflight: int = 2,
        threads: Optional[int] = None, calibrate: bool = True, cuda_graphs: bool = True,
        dispatch_overhead_us: Optional[float] = None, drop_rule: str = DROP_RULES[0],
        downgrade: str = DOWNGRADES[0], fallback: bool = False,
        margin: float = DEFAULT_MARGIN) -> Dict[str, Any]:
    """``pantheon runtime``: validate everything, replay ``workload`` live, write the log.

    Every input is checked before a job runs (policy, repository manifest and chunks,
    workload tasks/deadlines/shapes, best-effort tasks). SIGINT/SIGTERM end the run
    cleanly: queued jobs are dropped as "shutdown", the log is flushed and closed.
    """
    from pantheon.formats import read_workloads

    check_policy(policy)
    check_choice(drop_rule, DROP_RULES, "--drop-rule")
    check_choice(downgrade, DOWNGRADES, "--downgrade")
    check_margin(margin)
    check_runtime_options(max_inflight, dispatch_overhead_us, time_scale)
    be = parse_best_effort(best_effort)
    repository = read_repository(repo)
    ws = read_workloads(workload)
    jobs = validate(ws, repository, where=str(workload))
    log_path = events_path(log)
    new_log = log_path.parent if log_path.name == "events.jsonl" else log_path
    created = not new_log.exists()  # removed again if the disk refuses the log
    try:
        rt = Runtime(repository, device=device, policy=policy, drop_late=drop_late, log=log, best_effort=be,
                     telemetry=telemetry, max_inflight=max_inflight, threads=threads, calibrate=calibrate,
                     cuda_graphs=cuda_graphs, dispatch_overhead_us=dispatch_overhead_us, drop_rule=drop_rule,
                     downgrade=downgrade, fallback=fallback, margin=margin,
                     start_fields={"workload": str(workload), "time_scale": time_scale, "jobs": len(jobs)})
        stop = threading.Event()
        old: Dict[signal.Signals, Any] = {}
        if handle_signals and threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                old[sig] = signal.signal(sig, lambda *_: stop.set())
        try:
            return rt.run_workload(jobs, time_scale=time_scale, progress=progress, interrupt=stop)
        finally:
            for sig, h in old.items():
                signal.signal(sig, h)
            if not rt._stopped:
                rt.stop(drain=False)
    except (OSError, RuntimeFault) as exc:
        cause = exc if isinstance(exc, OSError) else exc.__cause__
        if not isinstance(cause, OSError):
            raise
        from pantheon.formats import store

        if created and new_log.is_dir():  # a log the disk refused is no log: nothing of it stays
            shutil.rmtree(new_log, ignore_errors=True)
        elif created:
            new_log.unlink(missing_ok=True)
        raise store.write_failed(log, cause) from exc
