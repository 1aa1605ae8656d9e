"""What happened to each job, and the figures of a run: one record type for runtime, simulator and report.

A job is born in a workload (``.bin``: release and absolute deadline on the run's clock, in
microseconds), is scheduled by the live runtime or the simulator, and ends in one of four
outcomes. Both write the same :class:`JobRecord` per job, and :func:`summarize` turns a run's
records into its summary, so a live run, its simulation and the report of its event log are
computed by the same code.

Definitions:

* **DMR** (deadline miss rate) = jobs that did not finish by their deadline (finished late,
  dropped, or never finished) / jobs released.
* **Relative accuracy** = accuracy of the exit a job used / accuracy of its task's original
  exit, counted 0 for a job that missed its deadline; averaged over jobs.
* **Preempted jobs** = fraction of jobs displaced from the head of the queue at least once
  after they started.
* **Response time** = finish - release, over finished jobs.

Times are absolute on the run's clock everywhere; the relative deadline is derived in one
place, :attr:`JobRecord.relative_deadline`.

Example::

    r = JobRecord(job=0, task="a", stream=0, release=0, deadline=8000, outcome=MET, exit=2,
                  accuracy=0.9, relative_accuracy=1.0, start=10, finish=6500)
    r.response, r.relative_deadline      # (6500, 8000)
    summarize([r])["dmr"]                # 0.0
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple

import numpy as np

#: Outcomes of a job.
MET = "met"  # finished by its deadline
LATE = "late"  # finished after its deadline
DROPPED = "dropped"  # given up by the scheduler
LOST = "lost"  # released but never finished (the run stopped), or never released
OUTCOMES = (MET, LATE, DROPPED, LOST)


@dataclass(frozen=True)
class JobRecord:
    """One job of a run (times in microseconds on the run's clock).

    ``exit`` is the exit block it left through, ``accuracy`` that exit's accuracy and
    ``relative_accuracy`` the ratio to the task's original exit (both 0 unless it finished);
    ``start`` is its first dispatch and ``finish`` the end of its exit (or the time it was
    dropped); None when it never got that far. ``preemptions`` counts how often it was
    displaced from the head of the queue after it started.
    """

    job: int
    task: str
    stream: int
    release: int
    deadline: int  # absolute
    outcome: str = LOST
    exit: int = -1
    accuracy: float = 0.0
    relative_accuracy: float = 0.0
    start: Optional[int] = None
    finish: Optional[int] = None
    preemptions: int = 0

    @property
    def relative_deadline(self) -> int:
        return self.deadline - self.release

    @property
    def finished(self) -> bool:
        """It ran to an exit (on time or late)."""
        return self.outcome in (MET, LATE)

    @property
    def response(self) -> Optional[int]:
        """finish - release for a finished job, else None."""
        return self.finish - self.release if self.finished and self.finish is not None else None

    @property
    def preempted(self) -> bool:
        return self.preemptions > 0


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Percentile ``q`` (0..100) of ``values``, linearly interpolated; None when empty."""
    if len(values) == 0:
        return None
    return float(np.percentile(np.asarray(values, dtype=float), q))


def percentile_nonempty(values: Sequence[float], q: float) -> float:
    """:func:`percentile` of a sample that cannot be empty (timings of at least one run).

    Raises:
        ValueError: ``values`` is empty, which is a bug in the caller.
    """
    p = percentile(values, q)
    if p is None:
        raise ValueError("percentile of an empty sample")
    return p


def _r(x: Optional[float], nd: int = 4) -> Optional[float]:
    return None if x is None else round(float(x), nd)


def _block(rs: Sequence[JobRecord]) -> Dict[str, Any]:
    k = len(rs)
    counts = {o: 0 for o in OUTCOMES}
    rel_sum = acc_sum = 0.0
    resp: List[int] = []
    exits: Dict[int, int] = {}
    pre = 0
    for r in rs:
        counts[r.outcome if r.outcome in counts else LOST] += 1
        if r.outcome == MET:
            rel_sum += r.relative_accuracy
            acc_sum += r.accuracy
        if r.finished:
            resp.append(r.response or 0)
            exits[r.exit] = exits.get(r.exit, 0) + 1
        pre += r.preempted
    return {
        "jobs": k,
        "met": counts[MET],
        "late": counts[LATE],
        "dropped": counts[DROPPED],
        "lost": counts[LOST],
        "dmr": _r((k - counts[MET]) / k if k else 0.0, 6),
        "relative_accuracy": _r(rel_sum / k if k else 0.0, 6),
        "accuracy": _r(acc_sum / k if k else 0.0, 6),
        "preempted_jobs": _r(pre / k if k else 0.0, 6),
        "response_p50_us": _r(percentile(resp, 50), 1),
        "response_p99_us": _r(percentile(resp, 99), 1),
        "exits": {str(e): c for e, c in sorted(exits.items())},
        "relative_deadline_us": _r(percentile([r.relative_deadline for r in rs], 50), 1),
    }


def decisions_summary(decisions: Sequence[Tuple[int, float]]) -> Dict[str, Any]:
    """Scheduler decision latency from ``(queue length, microseconds)`` pairs: count, p50/p99,
    and the same per queue length."""
    durs = [d for _, d in decisions]
    by: Dict[int, List[float]] = {}
    for q, d in decisions:
        by.setdefault(int(q), []).append(d)
    return {
        "decisions": len(durs),
        "p50_us": _r(percentile(durs, 50), 2),
        "p99_us": _r(percentile(durs, 99), 2),
        "by_queue_length": {
            str(q): {"count": len(v), "p50_us": _r(percentile(v, 50), 2), "p99_us": _r(percentile(v, 99), 2)}
            for q, v in sorted(by.items())
        },
    }


def summarize(
    records: Iterable[JobRecord],
    decisions: Sequence[Tuple[int, float]] = (),
    best_effort: Sequence[Tuple[str, int]] = (),
    preemptions: int = 0,
    meta: Optional[Mapping[str, Any]] = None,
    per_stream: bool = False,
) -> Dict[str, Any]:
    """The summary dict of a run from its job records.

    Top-level keys: ``jobs, met, late, dropped, lost, dmr, relative_accuracy, accuracy,
    preempted_jobs, preemptions, response_p50_us, response_p99_us, exits, scheduler, per_task,
    best_effort, jobs_total`` plus ``meta``'s items (policy, mode...). With ``per_stream``,
    also ``per_stream``: the same figures for each stream's jobs, with the ``tasks`` it ran.
    """
    recs = list(records)
    by_task: Dict[str, List[JobRecord]] = {}
    for r in recs:
        by_task.setdefault(r.task, []).append(r)
    out: Dict[str, Any] = dict(meta or {})
    top = _block(recs)
    top.pop("relative_deadline_us")
    out.update(top)
    out["preemptions"] = int(preemptions)
    out["per_task"] = {t: _block(rs) for t, rs in sorted(by_task.items())}
    if per_stream:
        by_stream: Dict[int, List[JobRecord]] = {}
        for r in recs:
            by_stream.setdefault(r.stream, []).append(r)
        out["per_stream"] = {
            str(k): {"tasks": sorted({r.task for r in rs}), **_block(rs)} for k, rs in sorted(by_stream.items())
        }
    out["scheduler"] = decisions_summary(decisions)
    be: Dict[str, List[int]] = {}
    for task, resp in best_effort:
        be.setdefault(task, []).append(resp)
    out["best_effort"] = {
        t: {"jobs": len(v), "response_p50_us": _r(percentile(v, 50), 1)} for t, v in sorted(be.items())
    }
    out["jobs_total"] = len(recs)
    return out
