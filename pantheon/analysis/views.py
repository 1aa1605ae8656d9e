"""Per-job, per-window and per-block views of a run, written as CSV files of its report.

:func:`pantheon.analysis.report.analyze` reads the event log once and builds one
:class:`~pantheon.metrics.JobRecord` per job; this module turns them into the report's tables:

* ``trace.csv``: one row per job (stream, task, job id, release, absolute deadline,
  first dispatch, finish, exit taken, accuracy, outcome, response time, preemptions
  suffered), sorted by stream, then release time.
* ``dmr_windows.csv``: the deadline miss rate per time window. A job belongs to the
  window holding its (scheduled) release time, windows are ``[k*W, (k+1)*W)`` on the
  log's clock, from the window holding the first release to the one holding the last,
  empty windows included. Rows for all jobs (scope ``all``), for each task (``task``)
  and for each stream (``stream``). A job is missed when it did not finish by its
  deadline (finished late, dropped, never finished), as in the overall DMR, so the
  windows' ``missed`` and ``jobs`` add up to the run's.
* ``preemptions.csv``: ``task, block, preemptions``: how often a job of the task was
  displaced from the head of the queue right after that block (the last block it had
  handed to the device before the ``preempt`` event; it resumes at the next block).
  Every block the log's ``start`` event lists for the task gets a row, zeros included
  (block -1: the log holds no dispatch of the job before its ``preempt`` event).

Streams: a ``release`` event may carry ``stream`` (the workload stream the job came
from; several streams may run the same task). Logs without it are read as one stream
per task, numbered by the task's index in the ``start`` event.

Example::

    data = analyze("logs/run1")
    traces = data["series"]["jobs"]
    write_trace_csv(Path("trace.csv"), traces)
    write_windows_csv(Path("dmr_windows.csv"), window_dmr(traces, 1_000_000))
"""

from __future__ import annotations

import csv
import io
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

from pantheon.errors import UsageError
from pantheon.metrics import MET, JobRecord

DEFAULT_WINDOW_MS = 1000.0
MAX_WINDOWS = 100_000  # per scope: keeps a tiny --window-ms on a long run from filling memory

# summary status (met/late/dropped/lost) -> the trace's outcome
OUTCOME = {"met": "met", "late": "missed", "dropped": "dropped", "lost": "lost"}

TRACE_COLUMNS = ("stream", "task", "job", "release_us", "deadline_us", "start_us", "finish_us", "exit", "accuracy",
                 "outcome", "response_us", "preemptions")
WINDOW_COLUMNS = ("window_start_us", "window_end_us", "scope", "name", "jobs", "missed", "dmr")
PREEMPTION_COLUMNS = ("task", "block", "preemptions")


def trace_row(r: JobRecord) -> List[Any]:
    """One ``trace.csv`` row of a job (:data:`TRACE_COLUMNS`); empty cells for what it never reached.

    ``outcome``: ``met``, ``missed`` (finished after its deadline), ``dropped``, ``lost``
    (released but never finished: the run stopped, or never released at all when the report
    was given the workload). ``exit``/``accuracy``/``finish``/``response`` only for a finished job.
    """
    done = r.finished
    return ["" if v is None else v for v in (
        r.stream, r.task, r.job, r.release, r.deadline, r.start, r.finish if done else None,
        r.exit if done else None, r.accuracy if done else None, OUTCOME[r.outcome], r.response, r.preemptions)]


@dataclass(frozen=True)
class Window:
    """Jobs released in ``[start_us, end_us)`` of one scope (``all``, a task, a stream) and how many missed."""

    scope: str
    name: str
    start_us: int
    end_us: int
    jobs: int
    missed: int

    @property
    def dmr(self) -> Optional[float]:
        return self.missed / self.jobs if self.jobs else None

    def row(self) -> List[Any]:
        d = self.dmr
        return [self.start_us, self.end_us, self.scope, self.name, self.jobs, self.missed,
                "" if d is None else f"{d:.6f}"]


def task_streams(tasks: Mapping[str, Any], names: Iterable[str]) -> Dict[str, int]:
    """Stream of each task for a log without ``stream`` fields: one stream per task.

    The task's ``index`` in the ``start`` event's ``tasks`` when every task has a distinct
    one, else the tasks' sorted order.
    """
    every = sorted(set(tasks) | set(names))
    idx: Dict[str, int] = {}
    for t in every:
        info = tasks.get(t)
        i = info.get("index") if isinstance(info, dict) else None
        if isinstance(i, int) and not isinstance(i, bool):
            idx[t] = i
    if len(idx) == len(every) and len(set(idx.values())) == len(idx):
        return idx
    return {t: i for i, t in enumerate(every)}


def check_window_ms(window_ms: float) -> int:
    """``--window-ms`` as whole microseconds (UsageError unless a finite number >= 0.001)."""
    try:
        w = float(window_ms)
    except (TypeError, ValueError):
        w = float("nan")
    if not math.isfinite(w) or w < 0.001:
        raise UsageError(f"--window-ms must be a finite number of milliseconds >= 0.001, got {window_ms}")
    return max(1, int(round(w * 1000)))


def window_dmr(traces: Sequence[JobRecord], window_us: int) -> List[Window]:
    """DMR per release-time window for all jobs, each task and each stream (module docstring).

    Raises UsageError when the run spans more than :data:`MAX_WINDOWS` windows.
    """
    if window_us < 1:
        raise UsageError(f"the DMR window must be at least 1 us, got {window_us}")
    if not traces:
        return []
    first = min(t.release for t in traces) // window_us
    last = max(t.release for t in traces) // window_us
    count = last - first + 1
    if count > MAX_WINDOWS:
        raise UsageError(f"--window-ms {window_us / 1000:g} cuts this run into {count} windows (at most "
                         f"{MAX_WINDOWS}): pick a larger window")
    scopes: List[Tuple[str, str, List[int], List[int]]] = []
    groups: Dict[Tuple[str, str], Tuple[List[int], List[int]]] = {}

    def bucket(scope: str, name: str) -> Tuple[List[int], List[int]]:
        g = groups.get((scope, name))
        if g is None:
            g = groups[(scope, name)] = ([0] * count, [0] * count)
            scopes.append((scope, name, g[0], g[1]))
        return g

    bucket("all", "")
    for task in sorted({t.task for t in traces}):
        bucket("task", task)
    for stream in sorted({t.stream for t in traces}):
        bucket("stream", str(stream))
    for t in traces:
        k = t.release // window_us - first
        for key in (("all", ""), ("task", t.task), ("stream", str(t.stream))):
            jobs, missed = groups[key]
            jobs[k] += 1
            if t.outcome != MET:
                missed[k] += 1
    out = []
    for scope, name, jobs, missed in scopes:
        for k in range(count):
            start = (first + k) * window_us
            out.append(Window(scope, name, start, start + window_us, jobs[k], missed[k]))
    return out


def window_summary(windows: Sequence[Window], window_us: int) -> Dict[str, Any]:
    """``{"window_ms", "windows", "worst": {"start_us", "end_us", "jobs", "missed", "dmr"}}`` over all jobs."""
    overall = [w for w in windows if w.scope == "all"]
    used = [w for w in overall if w.jobs]
    out: Dict[str, Any] = {"window_ms": window_us / 1000, "windows": len(overall), "worst": None}
    if used:
        worst = max(used, key=lambda w: (w.missed / w.jobs, w.jobs))
        out["worst"] = {"start_us": worst.start_us, "end_us": worst.end_us, "jobs": worst.jobs,
                        "missed": worst.missed, "dmr": round(worst.missed / worst.jobs, 6)}
    return out


def preemption_table(counts: Mapping[Tuple[str, int], int], blocks: Mapping[str, int]) -> List[Tuple[str, int, int]]:
    """``(task, block, preemptions)`` rows: every block of every task (``blocks``: task -> block count), zeros
    included, plus any (task, block) the log counted outside them; sorted by task, then block."""
    keys = {(t, b) for t, n in blocks.items() for b in range(n)} | set(counts)
    return [(t, b, int(counts.get((t, b), 0))) for t, b in sorted(keys)]


def _csv_text(columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    w.writerow(columns)
    w.writerows(rows)
    return buf.getvalue()


def write_trace_csv(path: Path, traces: Sequence[JobRecord]) -> None:
    """``trace.csv``: :data:`TRACE_COLUMNS`, one row per job, by stream then release time."""
    rows = sorted(traces, key=lambda t: (t.stream, t.release, t.job))
    path.write_text(_csv_text(TRACE_COLUMNS, (trace_row(t) for t in rows)))


def write_windows_csv(path: Path, windows: Sequence[Window]) -> None:
    """``dmr_windows.csv``: :data:`WINDOW_COLUMNS`; ``dmr`` is empty for a window without jobs."""
    path.write_text(_csv_text(WINDOW_COLUMNS, (w.row() for w in windows)))


def write_preemptions_csv(path: Path, table: Sequence[Tuple[str, int, int]]) -> None:
    """``preemptions.csv``: :data:`PREEMPTION_COLUMNS`."""
    path.write_text(_csv_text(PREEMPTION_COLUMNS, table))
