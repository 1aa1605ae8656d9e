"""Discrete-event simulator: replay a workload on one device with the profiled latencies.

It drives the very :class:`~pantheon.online.scheduler.Scheduler` the live runtime uses:
jobs arrive at their release times (each arrival is a scheduling decision), the device
runs one chunk at a time for its profiled latency (times an optional noise factor), an
arrival during a chunk is decided at its release time but can only take the device when
the chunk ends (chunk-granular preemption). It writes the same event log as the runtime,
so ``pantheon report`` reads both.

Cost model: the scheduler plans with ``dispatch overhead + profiled latency`` per chunk,
the runtime's model before it calibrates. The overhead is the one the repository's
profiles were measured with (``Repository.dispatch_us``) unless ``dispatch_us`` replaces
it (for example with the value a live run logged, to replay that run). The simulated
device runs a chunk for that long (serial model). ``pipelined=True`` models the ideal
CUDA executor instead: the CPU launches the next chunk while the GPU runs the current
one, so a chunk that follows another back to back takes ``max(overhead, profiled
latency)`` and only a chunk that starts an idle device pays both. On an H200 the serial
model was the closer (and the pessimistic) one under overload, where the runtime's own
decisions keep the CPU busy: the pipelined one predicted 0-1% DMR where edf and fifo
missed 25% live (``bench/results/gpu_live_vs_sim_h200*.json``), so it is not the default.

Noise model (``jitter``): every chunk's latency is multiplied by a log-normal factor with
mean 1 and shape ``jitter`` (about ``jitter`` relative standard deviation). The factor is a
function of the seed, the job and the chunk (block ``b`` or the exit after block ``b``)
only, not of the order chunks run in: every policy replayed with one seed meets the same
latency for the same chunk of the same job (common random numbers), so their difference
is the policies' and not the luck of the draw. The same seed gives the same run. The
scheduler itself always sees the profiled latencies, as on the device. ``schedule`` events carry the measured
wall time of each decision in Python on this machine.

Example::

    repo = read_repository("pantheon-data/apps/traffic/repository")
    summary = simulate(repo, read_workloads("traffic.bin"), "pantheon", jitter=0.05, seed=1)
    summary["dmr"], summary["relative_accuracy"]
"""

from __future__ import annotations

import functools
import math
import random
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Sequence, Tuple

from pantheon.errors import UsageError
from pantheon.formats import Workloads
from pantheon.formats.events import EventLog, NullLog
from pantheon.formats.store import PathLike, Store
from pantheon.metrics import DROPPED as DROPPED_JOB
from pantheon.metrics import LATE, MET, JobRecord, summarize
from pantheon.online.repository import Repository
from pantheon.online.scheduler import (
    BLOCK,
    DEFAULT_MARGIN,
    DOWNGRADES,
    DROP_RULES,
    Job,
    Scheduler,
    check_choice,
    check_margin,
    check_policy,
)
from pantheon.online.workload import JobSpec, task_timing, validate

INF = math.inf


def simulate(
    repo: Repository,
    workload: Workloads,
    policy: str = "pantheon",
    *,
    jitter: float = 0.0,
    seed: int = 0,
    drop_late: bool = True,
    log: Optional[EventLog] = None,
    start_fields: Optional[Dict[str, Any]] = None,
    jobs: Optional[Sequence[JobSpec]] = None,
    dispatch_us: Optional[float] = None,
    pipelined: bool = False,
    drop_rule: str = DROP_RULES[0],
    downgrade: str = DOWNGRADES[0],
    fallback: bool = False,
    margin: float = DEFAULT_MARGIN,
) -> Dict[str, Any]:
    """Simulate ``workload`` on ``repo`` under ``policy``; return the run summary.

    Args:
        repo: profiles (from :func:`~pantheon.online.repository.read_repository`).
        workload: the jobs (validated against ``repo`` first).
        policy: a scheduling policy name.
        jitter: latency noise (relative standard deviation of the log-normal factor).
        seed: seed of the noise generator.
        drop_late: drop jobs that can no longer meet their deadline when they would start.
        log: where to write events (default: nowhere).
        start_fields: extra fields for the ``start`` event.
        jobs: already validated jobs (skips validation).
        dispatch_us: per-chunk dispatch overhead instead of the repository's.
        pipelined: model an ideal overlap of launch and execution (see above; default False).
        drop_rule, downgrade: the pantheon refresh's rules (:class:`~pantheon.online.scheduler.Scheduler`).
        fallback: let the pantheon policy finish a job through an exit it already passed.
        margin: the pantheon refresh's safety margin (:class:`~pantheon.online.scheduler.Scheduler`).

    Returns:
        The summary (:func:`pantheon.metrics.summarize`), with ``dmr`` and
        ``relative_accuracy`` as fractions, plus ``sim_wall_s`` and ``jobs_per_s``.
    """
    check_policy(policy)
    check_jitter(jitter)
    if dispatch_us is not None:
        if not math.isfinite(dispatch_us) or dispatch_us < 0:
            from pantheon.errors import UsageError

            raise UsageError(f"--dispatch-us must be a finite number >= 0, got {dispatch_us}")
        repo = repo.with_dispatch_overhead(dispatch_us)
    specs = list(jobs) if jobs is not None else validate(workload, repo)
    sched = Scheduler(list(repo.tasks.values()), policy, drop_late=drop_late, drop_rule=drop_rule,
                      downgrade=downgrade, fallback=fallback, timing=task_timing(specs), margin=margin)
    log = log or NullLog()
    meta = {"mode": "sim", "policy": policy, "device": "simulated", "app": repo.app, "drop_late": drop_late,
            "drop_rule": drop_rule, "downgrade": downgrade, "margin": sched.margin}
    pipe = bool(pipelined)
    log.start(0, **meta, repository=str(repo.path), jitter=jitter, seed=seed, tasks=repo.describe(),
              dispatch_overhead_us=repo.dispatch_us, pipelined=pipe, **(start_fields or {}))
    wall0, cpu0 = time.perf_counter(), time.process_time()
    res = _run(sched, repo, specs, log, jitter, seed, pipe)
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    records, decisions, preemptions, downgrades, t_end = res
    summary = summarize(records, decisions, (), preemptions, meta)
    summary["downgrades"] = downgrades
    if sched.fallback:
        summary["fallback_exits"] = sched.fallbacks
    summary["dispatch_overhead_us"] = repo.dispatch_us
    summary["pipelined"] = pipe
    summary["sim_wall_s"] = round(wall, 4)
    summary["sim_cpu_s"] = round(cpu, 4)
    summary["jobs_per_s"] = round(len(specs) / wall, 1) if wall > 0 else None
    summary["jobs_per_cpu_s"] = round(len(specs) / cpu, 1) if cpu > 0 else None
    log.close(t_end, summary=summary)
    return summary


# Noise table: one factor per (job, chunk) hashed into a table of _NOISE_SIZE draws.
_NOISE_SIZE = 1 << 18
_NOISE_MASK = _NOISE_SIZE - 1
_MIX_JOB = 2654435761  # Knuth's multiplicative hash constant (odd, so jobs spread over the table)
_MIX_CHUNK = 40503
EXIT_CHUNK = 1 << 12  # chunk key of the exit after block b: EXIT_CHUNK + b (blocks are their index)


@functools.lru_cache(maxsize=8)
def noise_table(jitter: float, seed: int) -> Tuple[float, ...]:
    """The log-normal factors (mean 1, shape ``jitter``) the simulator draws chunk noise from."""
    rng = random.Random(seed)
    mu = -0.5 * jitter * jitter
    return tuple(math.exp(mu + jitter * rng.gauss(0.0, 1.0)) for _ in range(_NOISE_SIZE))


def chunk_latency(factors: Sequence[float], job: int, chunk: int, lat: int) -> int:
    """The simulated latency of ``job``'s ``chunk`` (block index, or ``EXIT_CHUNK`` + the block
    an exit follows) whose profiled latency is ``lat``, with the factors of :func:`noise_table`
    (rounded to the nearest microsecond: truncating would make every chunk 0.5 us fast on average)."""
    return int(lat * factors[(job * _MIX_JOB + chunk * _MIX_CHUNK) & _NOISE_MASK] + 0.5)


MAX_JITTER = 2.0  # a log-normal shape of 2 already gives a factor above 7x one chunk in 20


def check_jitter(jitter: float) -> None:
    """``--jitter`` must be a finite number in [0, MAX_JITTER] (UsageError otherwise)."""
    from pantheon.errors import UsageError

    try:
        ok = math.isfinite(float(jitter)) and 0.0 <= float(jitter) <= MAX_JITTER
    except (TypeError, ValueError):
        ok = False
    if not ok:
        raise UsageError(f"--jitter must be a finite number in [0, {MAX_JITTER:g}] (relative std of the "
                         f"latency noise), got {jitter}")


def _run(sched: Scheduler, repo: Repository, specs: Sequence[JobSpec], log: EventLog, jitter: float,
         seed: int, pipelined: bool = False):
    sigma = float(jitter)
    factors = noise_table(sigma, seed) if sigma else ()
    perf = time.perf_counter_ns
    logging = log.writes  # skip the calls entirely when nothing is written
    tasks = sched.states
    n = len(specs)
    rel = [s.release for s in specs]
    size = max(s.index for s in specs) + 1 if specs else 0
    out: List[Optional[JobRecord]] = [None] * size  # by job id, once it finished or was dropped
    preempted = [0] * size
    stream = [-1] * size  # by job id: its workload stream
    for s in specs:
        stream[s.index] = s.stream
    decisions: List[Any] = []
    dec_append = decisions.append
    arrive = sched.arrive
    next_action = sched.next_action
    run_ahead = sched.run_ahead

    def noise(jid: int, chunk: int, lat: int) -> int:
        return chunk_latency(factors, jid, chunk, lat)

    def chained(o: float) -> Callable[[int, int, int], int]:
        """Duration of a chunk launched while the previous one still runs (pipelined executor)."""
        def cost(jid: int, chunk: int, lat: int) -> int:
            d = noise(jid, chunk, lat) if sigma else lat
            return int(max(o, d - o))
        return cost

    costs = {name: chained(t.dispatch_us) for name, t in tasks.items()} if pipelined else {}
    prev_end = -1  # end of the last chunk: a chunk starting then follows it back to back

    preemptions = 0
    downgrades = 0
    dropped_reason = "unschedulable" if sched.ee else "late"
    t = 0
    i = 0

    def admit(k: int, now: int) -> int:
        s = specs[k]
        jid = s.index
        job = Job(jid, tasks[s.task], s.release, s.deadline)
        if logging:
            log.release(now, jid, s.task, s.release, s.deadline, stream=s.stream)
        t0 = perf()
        qlen = arrive(job, now)
        dur = (perf() - t0) / 1000.0
        dec_append((qlen, dur))
        dropped = sched.dropped
        if logging:
            log.schedule(now, jid, qlen, dur, sched.downgrades, len(dropped))
        if dropped:
            for d in dropped:
                out[d.id] = JobRecord(d.id, d.task.name, stream[d.id], d.release, d.deadline, DROPPED_JOB,
                                      finish=now, preemptions=preempted[d.id])
                if logging:
                    log.drop(now, d.id, d.task.name, dropped_reason, d.started)
        return sched.downgrades

    while True:
        while i < n and rel[i] <= t:
            downgrades += admit(i, t)
            i += 1
        act = next_action(t)
        if sched.dropped:
            for d in sched.dropped:
                out[d.id] = JobRecord(d.id, d.task.name, stream[d.id], d.release, d.deadline, DROPPED_JOB,
                                      finish=t, preemptions=preempted[d.id])
                if logging:
                    log.drop(t, d.id, d.task.name, "late", d.started)
        if act is None:
            if i >= n:
                break
            t = rel[i]
            continue
        kind, job, idx, lat, pre = act
        if pre is not None:
            preemptions += 1
            preempted[pre.id] += 1
            if logging:
                log.preempt(t, pre.id, job.id)
        chunk = idx if kind == BLOCK else EXIT_CHUNK + job.task.exit_blocks[idx]
        if pipelined and t == prev_end:
            lat = costs[job.task.name](job.id, chunk, lat)
        elif sigma:
            lat = noise(job.id, chunk, lat)
        end = t + lat
        if kind == BLOCK and not logging and (i >= n or rel[i] > end):
            # nothing arrives before this block ends: the job keeps the device for its next blocks
            step = costs[job.task.name] if pipelined else (noise if sigma else None)
            end = run_ahead(job, end, rel[i] if i < n else INF, step)
        if logging:
            if kind == BLOCK:
                log.dispatch_block(t, job.id, idx)
            else:
                log.dispatch_exit(t, job.id, job.task.exit_blocks[idx])
        while i < n and rel[i] < end:  # decided at release, served when the chunk ends
            downgrades += admit(i, rel[i])
            i += 1
        t = end
        prev_end = end
        sched.busy_until = t  # the device is free again
        if kind == BLOCK:
            if logging:
                log.done(t, job.id, idx)
        else:
            tp = job.task
            resp = t - job.release
            met = t <= job.deadline
            acc = tp.exit_acc[idx]
            r = tp.rel_acc[idx]
            out[job.id] = JobRecord(job.id, tp.name, stream[job.id], job.release, job.deadline,
                                    MET if met else LATE, tp.exit_blocks[idx], acc, r if met else 0.0,
                                    finish=t, preemptions=preempted[job.id])
            if logging:
                log.exit(t, job.id, tp.name, tp.exit_blocks[idx], acc, r, resp, met)
    records = [out[s.index] or JobRecord(s.index, s.task, s.stream, s.release, s.deadline) for s in specs]
    return records, decisions, preemptions, downgrades, t


def _run_logged(run: Callable[[EventLog], Dict[str, Any]], log: Path, path: Path, run_id: str) -> Dict[str, Any]:
    """Run with an event log written all-or-nothing.

    A run folder (``--log DIR``) is an artifact of kind ``log`` (``events.jsonl``, ``run.json``,
    manifest; an existing run folder or an empty folder is replaced); a ``.jsonl`` file is
    written beside its destination and renamed over it. A failure (a full disk) leaves nothing.
    """
    import json
    import os
    import tempfile

    from pantheon.formats import store

    if path.parent == log:  # a run folder
        if log.exists() and not log.is_dir():
            raise UsageError(f"--log {log} is a file; pass a folder or a .jsonl file name")
        replace = log.is_dir() and (not any(log.iterdir()) or (log / store.MANIFEST).is_file())
        if log.is_dir() and not replace:
            raise UsageError(f"--log {log} is a folder holding other files (no run manifest); pass a new or empty "
                             f"folder, a run folder to replace, or a .jsonl file name")
        with store.write_artifact(log, kind="log", force=replace, meta={"run_id": run_id}) as tmp:
            summary = run(EventLog(tmp / path.name))
            (tmp / "run.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        return summary
    if path.is_dir():
        raise UsageError(f"--log {path} is a directory; pass a folder without a suffix or a .jsonl file name")
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
    os.close(fd)
    try:
        summary = run(EventLog(tmp_name))
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except OSError:
            pass
        raise
    return summary


def simulate_files(repo_dir: PathLike, workload: PathLike, policy: str, store: Store, *, jitter: float = 0.0,
                   seed: int = 0, drop_late: bool = True, log: Optional[PathLike] = None, logged: bool = False,
                   dispatch_us: Optional[float] = None, pipelined: bool = False,
                   drop_rule: str = DROP_RULES[0], downgrade: str = DOWNGRADES[0],
                   fallback: bool = False, margin: float = DEFAULT_MARGIN) -> Dict[str, Any]:
    """Validate a repository folder and a workload file, simulate, and write the event log.

    The log goes to ``log`` (a .jsonl file or a run folder), else, when ``logged``, to
    ``store``'s logs folder of the repository's app; ``summary["log_path"]`` then names it.
    ``summary["profiles_only"]`` says whether the repository held profiles alone.
    """
    from pantheon import console
    from pantheon.formats import read_workloads
    from pantheon.formats import store as store_mod
    from pantheon.formats.events import events_path
    from pantheon.online.repository import read_repository

    check_policy(policy)
    check_jitter(jitter)
    check_choice(drop_rule, DROP_RULES, "--drop-rule")
    check_choice(downgrade, DOWNGRADES, "--downgrade")
    check_margin(margin)
    repo = read_repository(repo_dir, profiles_only_ok=True)  # the simulator needs the profiles alone
    if repo.profiles_only:
        console.info(f"{repo_dir}: profiles-only repository (config.pbtxt files, no chunks, no manifest)")
    ws = read_workloads(workload)
    jobs = validate(ws, repo, where=str(workload))
    run_id = store_mod.new_run_id()
    if log is None and logged:
        log = store.logs_dir(repo.app, run_id)
    fields = {"workload": str(workload), "run_id": run_id, "jobs": len(jobs), "profiles_only": repo.profiles_only}

    def run(elog: Optional[EventLog]) -> Dict[str, Any]:
        try:
            summary = simulate(repo, ws, policy, jitter=jitter, seed=seed, drop_late=drop_late, log=elog, jobs=jobs,
                               dispatch_us=dispatch_us, pipelined=pipelined, start_fields=fields,
                               drop_rule=drop_rule, downgrade=downgrade, fallback=fallback, margin=margin)
        finally:
            if elog is not None:
                elog.close()
        summary["profiles_only"] = repo.profiles_only
        return summary

    log_path: Optional[Path] = None
    if log is None:
        summary = run(None)
    else:
        log_path = events_path(log)
        try:
            summary = _run_logged(run, Path(log), log_path, run_id)
        except OSError as exc:  # the user's --log path, with the errno's own hint (read-only, full, ...)
            raise store_mod.write_failed(log, exc) from exc
    if logged:
        summary["log_path"] = str(log_path)
    return summary
