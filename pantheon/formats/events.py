"""The runtime/simulator event log (``events.jsonl``): schema, a fast thread-safe writer, a reader.

One JSON object per line. ``t`` is an integer number of microseconds since the run
start on a monotonic clock (the simulator uses its simulated clock); ``ev`` names the
event. The first line is ``start``, the last ``end``. Job ids are the workload index
(or the submission number of the Python API); ``task`` is the task name; block and exit
ids are CONTRIBUTING.md's (exit ``j`` follows block ``j``).

======================  =============================================================
``ev``                  fields (besides ``t`` and ``ev``)
======================  =============================================================
``start``               ``mode`` ("live"/"sim"), ``policy``, ``device``, ``repository``,
                        ``workload``, ``app``, ``run_id``, ``version``, ``drop_late``,
                        ``tasks``: ``{name: {"index", "exits": [block ids],
                        "acc": [accuracy per exit], "blocks": [block latency us],
                        "exit_lat": [us], "original": exit block id}}``, and free-form
                        extras (``time_scale``, ``telemetry`` backend, ``board`` facts
                        from :func:`pantheon.platform.jetson.board_facts`, CUDA stream
                        priorities ``rt_stream_priority``/``be_stream_priority``...)
``release``             ``job``, ``task``, ``release`` (scheduled release, us),
                        ``deadline`` (absolute, us), ``stream`` (the workload ``id``:
                        the job's stream in the app; -1 for jobs submitted through the
                        Python API)
``schedule``            ``job`` (the arrival that triggered it), ``n`` (queue length the
                        decision worked on), ``dur`` (decision time, us, 0.1 precision;
                        0 in the simulator unless measured), ``down`` (exit downgrades),
                        ``drop`` (jobs dropped)
``dispatch``            ``job``, ``block`` (a block was handed to the device) or
                        ``exit`` (exit block id: its branch was handed to the device)
``done``                ``job``, ``block``: that block finished
``exit``                ``job``, ``task``, ``exit`` (exit block id), ``acc`` (its accuracy),
                        ``rel`` (acc / original acc), ``response`` (finish - release, us),
                        ``met`` (finished by the deadline)
``drop``                ``job``, ``task``, ``reason`` ("unschedulable": the scheduler's
                        skip; "late": could not meet the deadline when it would run;
                        "shutdown": still queued when the run stopped), ``started``
``preempt``             ``job`` (displaced from the head while started), ``by`` (new head)
``be``                  best-effort completion: ``task``, ``job``, ``response`` (us)
``telemetry``           a sample of :mod:`pantheon.platform.telemetry` (``gpu_load_pct``,
                        ``power_mw``, ``cpu_pct``, ...)
``calibrate``           live runs: ``task``, ``scale`` (the fitted ``s`` of the cost model
                        ``chunk = dispatch overhead + s x profiled latency``, smoothed; the
                        scheduler now plans with it), ``n`` (chunks measured so far),
                        ``why`` ("fit": from measured chunks; "decay": moved back towards
                        the profile because the task's jobs were all dropped meanwhile)
``starved``             live runs: ``task`` cannot meet its relative deadline ``deadline``
                        (us) even alone at its smallest exit (``smallest_us`` as planned
                        now); logged when a task becomes starved, again if it recovers and
                        starves anew
``fallback``            live runs on CUDA: ``task``, ``chunk`` (file name) runs eager instead
                        of as a CUDA graph, ``reason``; once per chunk at start
``end``                 ``summary``: ``{"jobs", "met", "missed", "dropped", "dmr",
                        "relative_accuracy", ...}``
======================  =============================================================

Example::

    log = EventLog("run/events.jsonl")
    log.start(policy="pantheon", mode="live", tasks={...})
    log.release(t, job=0, task="a", release=0, deadline=20000, stream=0)
    log.close(summary={"jobs": 1, "dmr": 0.0})
    for ev in read_events("run/events.jsonl"): ...
"""

from __future__ import annotations

import atexit
import json
import os
import threading
import time
import weakref
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Union

from pantheon.errors import FormatError

PathLike = Union[str, "os.PathLike[str]"]


class Clock:
    """Microseconds since construction on the monotonic ``perf_counter`` clock."""

    __slots__ = ("t0_ns",)

    def __init__(self) -> None:
        self.t0_ns = time.perf_counter_ns()

    def now(self) -> int:
        return (time.perf_counter_ns() - self.t0_ns) // 1000


def _name(task: str) -> str:
    return json.dumps(task)


_open_logs: weakref.WeakSet[EventLog] = weakref.WeakSet()


@atexit.register
def _flush_all() -> None:  # an interpreter exit still leaves complete lines on disk
    for log in list(_open_logs):
        try:
            log.flush()
        except Exception:
            pass


class EventLog:
    """Buffered, thread-safe JSON-lines writer of the events above.

    Lines are appended to an in-memory buffer under a lock and written when the buffer
    holds ``buffer_lines`` lines, when ``flush_interval_s`` passed since the last write,
    on :meth:`flush`/:meth:`close`, and at interpreter exit. The hot events have
    dedicated methods that format their line directly (no ``json.dumps``).

    Args:
        path: the ``events.jsonl`` file (parent directories are created; truncated).
        buffer_lines: lines kept before a write.
        flush_interval_s: longest time a line waits in the buffer (checked on each event).
    """

    writes = True  # False for NullLog: hot loops may skip their calls entirely

    def __init__(self, path: PathLike, buffer_lines: int = 2048, flush_interval_s: float = 1.0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "w", encoding="utf-8")
        self._buf: List[str] = []
        self._lock = threading.Lock()
        self._limit = int(buffer_lines)
        self._interval = float(flush_interval_s)
        self._last = time.monotonic()
        self._names: Dict[str, str] = {}
        self.closed = False
        self.lines = 0
        _open_logs.add(self)

    # -- plumbing -------------------------------------------------------------------------

    def _put(self, line: str) -> None:
        with self._lock:
            self._buf.append(line)
            self.lines += 1
            if len(self._buf) >= self._limit or time.monotonic() - self._last > self._interval:
                self._write_locked()

    def _write_locked(self) -> None:
        if self._buf and not self.closed:
            self._f.write("".join(self._buf))
            self._f.flush()
            self._buf.clear()
        self._last = time.monotonic()

    def flush(self) -> None:
        """Write buffered lines to the file."""
        with self._lock:
            self._write_locked()

    def _task(self, task: str) -> str:
        s = self._names.get(task)
        if s is None:
            s = self._names[task] = _name(task)
        return s

    def event(self, ev: str, t: int, **fields: Any) -> None:
        """Any event as ``{"t": t, "ev": ev, **fields}`` (generic, slower path)."""
        d: Dict[str, Any] = {"t": int(t), "ev": ev}
        d.update(fields)
        self._put(json.dumps(d, separators=(",", ":"), default=str) + "\n")

    # -- the events -----------------------------------------------------------------------

    def start(self, t: int = 0, **fields: Any) -> None:
        self.event("start", t, **fields)

    def release(self, t: int, job: int, task: str, release: int, deadline: int, stream: int = -1) -> None:
        self._put(f'{{"t":{t},"ev":"release","job":{job},"task":{self._task(task)},'
                  f'"release":{release},"deadline":{deadline},"stream":{int(stream)}}}\n')

    def schedule(self, t: int, job: int, n: int, dur: float, down: int, drop: int) -> None:
        self._put(f'{{"t":{t},"ev":"schedule","job":{job},"n":{n},"dur":{dur:.1f},"down":{down},"drop":{drop}}}\n')

    def dispatch_block(self, t: int, job: int, block: int) -> None:
        self._put(f'{{"t":{t},"ev":"dispatch","job":{job},"block":{block}}}\n')

    def dispatch_exit(self, t: int, job: int, exit_block: int) -> None:
        self._put(f'{{"t":{t},"ev":"dispatch","job":{job},"exit":{exit_block}}}\n')

    def done(self, t: int, job: int, block: int) -> None:
        self._put(f'{{"t":{t},"ev":"done","job":{job},"block":{block}}}\n')

    def exit(self, t: int, job: int, task: str, exit_block: int, acc: float, rel: float, response: int,
             met: bool) -> None:
        self._put(f'{{"t":{t},"ev":"exit","job":{job},"task":{self._task(task)},"exit":{exit_block},'
                  f'"acc":{acc},"rel":{rel},"response":{response},"met":{"true" if met else "false"}}}\n')

    def drop(self, t: int, job: int, task: str, reason: str, started: bool) -> None:
        self._put(f'{{"t":{t},"ev":"drop","job":{job},"task":{self._task(task)},"reason":"{reason}",'
                  f'"started":{"true" if started else "false"}}}\n')

    def preempt(self, t: int, job: int, by: int) -> None:
        self._put(f'{{"t":{t},"ev":"preempt","job":{job},"by":{by}}}\n')

    def best_effort(self, t: int, task: str, job: int, response: int) -> None:
        self._put(f'{{"t":{t},"ev":"be","task":{self._task(task)},"job":{job},"response":{response}}}\n')

    def calibrate(self, t: int, task: str, scale: float, n: int, why: str = "fit") -> None:
        self._put(f'{{"t":{t},"ev":"calibrate","task":{self._task(task)},"scale":{scale:.4f},"n":{n},'
                  f'"why":"{why}"}}\n')

    def telemetry(self, t: int, sample: Dict[str, Any]) -> None:
        d: Dict[str, Any] = {"t": int(t), "ev": "telemetry"}
        d.update(sample)
        self._put(json.dumps(d, separators=(",", ":"), default=str) + "\n")

    def close(self, t: Optional[int] = None, summary: Optional[Dict[str, Any]] = None) -> None:
        """Write the ``end`` line (when ``t`` is given), flush and close. Idempotent."""
        if self.closed:
            return
        try:
            if t is not None:
                self.event("end", t, summary=summary or {})
            with self._lock:
                self._write_locked()
        finally:  # a failed write (a full disk) still closes the file, once
            with self._lock:
                self.closed = True
                self._buf.clear()
                try:
                    self._f.close()
                finally:
                    _open_logs.discard(self)

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class NullLog(EventLog):
    """An :class:`EventLog` that writes nothing (the simulator without ``--log``)."""

    writes = False

    def __init__(self) -> None:
        self.closed = False
        self.lines = 0
        self.path = Path(os.devnull)
        self._names = {}  # for any event method this class does not override

    def _put(self, line: str) -> None:
        pass

    def flush(self) -> None:
        pass

    def event(self, ev: str, t: int, **fields: Any) -> None:
        pass

    def release(self, t: int, job: int, task: str, release: int, deadline: int, stream: int = -1) -> None:
        pass

    def schedule(self, t: int, job: int, n: int, dur: float, down: int, drop: int) -> None:
        pass

    def dispatch_block(self, t: int, job: int, block: int) -> None:
        pass

    def dispatch_exit(self, t: int, job: int, exit_block: int) -> None:
        pass

    def done(self, t: int, job: int, block: int) -> None:
        pass

    def preempt(self, t: int, job: int, by: int) -> None:
        pass

    def calibrate(self, t: int, task: str, scale: float, n: int, why: str = "fit") -> None:
        pass

    def exit(self, t: int, job: int, task: str, exit_block: int, acc: float, rel: float, response: int,
             met: bool) -> None:
        pass

    def drop(self, t: int, job: int, task: str, reason: str, started: bool) -> None:
        pass

    def best_effort(self, t: int, task: str, job: int, response: int) -> None:
        pass

    def telemetry(self, t: int, sample: Dict[str, Any]) -> None:
        pass

    def close(self, t: Optional[int] = None, summary: Optional[Dict[str, Any]] = None) -> None:
        self.closed = True


def events_path(log: PathLike) -> Path:
    """``events.jsonl`` inside ``log`` when it is a directory (or has no ``.jsonl`` suffix)."""
    p = Path(log)
    if p.suffix in (".jsonl", ".json", ".log") and not p.is_dir():
        return p
    return p / "events.jsonl"


def read_events(log: PathLike, *, strict: bool = True) -> Iterator[Dict[str, Any]]:
    """Yield the events of a log file or log directory.

    A truncated last line (a run killed mid-write) is skipped; any other undecodable line,
    or a first line that is not ``start``, is a :class:`FormatError` when ``strict``.
    """
    path = events_path(log)
    try:
        f = open(path, encoding="utf-8")
    except OSError as exc:
        raise FormatError(f"cannot read event log {path}: {exc.strerror or exc}") from exc
    with f:
        try:
            lines = f.read().split("\n")
        except UnicodeDecodeError as exc:
            raise FormatError(f"{path} is not a pantheon event log (not UTF-8 text: {exc.reason} at byte "
                              f"{exc.start})") from exc
    last = len(lines) - 1
    while last >= 0 and not lines[last].strip():
        last -= 1
    for i, line in enumerate(lines[: last + 1]):
        if not line.strip():
            continue
        try:
            ev = json.loads(line)
        except json.JSONDecodeError as exc:
            if i == last:  # killed mid-line: the rest is still a valid log
                return
            if strict:
                raise FormatError(f"{path}:{i + 1} is not a JSON event line: {exc}") from exc
            continue
        if not isinstance(ev, dict) or "ev" not in ev or "t" not in ev:
            if strict:
                raise FormatError(f"{path}:{i + 1} is not an event (needs 't' and 'ev')")
            continue
        if i == 0 and ev["ev"] != "start" and strict:
            raise FormatError(f"{path} does not begin with a 'start' event: not a pantheon event log")
        yield ev
