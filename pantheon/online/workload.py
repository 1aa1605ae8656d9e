"""Workloads: generate the reference protobuf ``Workloads`` from an app file or spec, show, validate.

Inputs (:func:`pantheon.formats.app.load_app`): our app YAML (``deploy/apps/<app>.yaml``)
or the reference workload spec JSON (``{"workloads": [{"model_name", "deadline",
"period", "start", "end", "shape", "lambda"?}]}``, times in us).

Generation, per stream (as the reference generator does):

* periodic: nominal releases ``start + k * period`` while ``< end``; each gets a uniform
  integer jitter in ``[-jitter, +jitter]`` us (1000 by default; a release that would
  fall before 0 gets none); ``deadline = release + relative deadline``.
* Poisson (``lambda`` set): ``t += period * Exp(scale=1/lambda)`` while ``< end``; with
  ``period`` = 1 s, ``lambda`` is the mean rate in jobs per second.
* ``deadline_x`` / ``period_x`` are multiples of the task's full-model latency in the
  repository (``--repo``), for machine-dependent demos.
* ``load_factor`` divides every period (2.0 = twice the arrival rate).

Jobs are sorted by release; ``id`` is the index of the job's stream in the app's stream
list (the reference numbers its workload entries the same way: the traffic app's four
cameras are ids 0..3, whatever their tasks) and ``shape`` the input dims (from the stream,
else the repository). Readers map a job to its task by ``model_name``, never by ``id``.

Validation (:func:`validate`, before anything runs) checks every job against the
repository (task, deadline, input shape) and its stream id against the app's streams: an
id must be ``0 <= id < number of streams``, and, when the app is given explicitly, name a
stream of the job's task. The app is the one given (``pantheon workload --show F --spec
APP``) or else the repository's own app when its file resolves by name and plans the same
tasks (:func:`repository_app`).

Example::

    ws = generate(load_app("digits"), repo=read_repository(dir), seed=0)
    write_workloads("workload.bin", ws)
    show(ws, repo)   # {"jobs": 600, "per_task": {...}, "per_stream": [...], "span_us": ..., "load": 0.72}
"""

from __future__ import annotations

import math
import statistics
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from pantheon.errors import PantheonError, UsageError, WorkloadError
from pantheon.formats import Workloads
from pantheon.formats.app import App, Stream, load_app
from pantheon.formats.store import PathLike, Store

if TYPE_CHECKING:
    from pantheon.online.repository import Repository

#: Default bounds of a generated workload, checked before any job is generated (override with
#: ``--max-jobs`` / ``--max-span``): a million jobs is ~30 MB of protobuf; a day of releases.
MAX_JOBS = 1_000_000
MAX_SPAN_S = 86_400.0
#: Releases and deadlines are uint64 us on the wire; keep them exact in a float (2**53).
_HARD_SPAN_US = float(2 ** 53)


class JobSpec:
    """One job of a workload, validated against a repository; ``stream`` is its workload ``id``."""

    __slots__ = ("index", "task", "release", "deadline", "stream")

    def __init__(self, index: int, task: str, release: int, deadline: int, stream: int = 0) -> None:
        self.index = index
        self.task = task
        self.release = release
        self.deadline = deadline
        self.stream = stream

    def __repr__(self) -> str:
        return f"JobSpec({self.index}, {self.task!r}, {self.release}, {self.deadline}, stream={self.stream})"


def _resolve(s: Stream, repo: Optional[Repository], what: str) -> float:
    us = getattr(s, f"{what}_us")
    x = getattr(s, f"{what}_x")
    if x is not None:
        if repo is None:
            raise UsageError(f"stream of {s.task} sets {what}_x (a multiple of its model latency): pass --repo DIR")
        return float(x) * repo.task(s.task).full_latency
    if us is None:
        raise UsageError(f"stream of {s.task} has no {what}")
    return float(us)


def _finite(value: float, option: str, *, positive: bool = True) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise UsageError(f"{option} must be a number, got {value!r}") from None
    if not math.isfinite(x):
        raise UsageError(f"{option} must be a finite number, got {value!r}")
    if positive and x <= 0:
        raise UsageError(f"{option} must be positive, got {value!r}")
    return x


def check_options(seed: Optional[int], duration_s: Optional[float], load_factor: float, max_jobs: int,
                  max_span_s: float) -> None:
    """Refuse option values that are not finite / in range (UsageError naming the option)."""
    _finite(load_factor, "--load-factor")
    if seed is not None and (isinstance(seed, bool) or int(seed) < 0):
        raise UsageError(f"--seed must be a non-negative integer, got {seed}")
    if duration_s is not None:
        _finite(duration_s, "--duration")
    _finite(max_span_s, "--max-span")
    if max_jobs is None or int(max_jobs) <= 0:
        raise UsageError(f"--max-jobs must be a positive integer, got {max_jobs}")


def estimate_jobs(period: float, start: float, end: float, lam: Optional[float]) -> int:
    """Jobs one stream releases in ``[start, end)`` (the expectation for a Poisson stream)."""
    if end <= start:
        return 0
    n = (end - start) / period
    if lam is not None:
        n *= lam
    return int(math.ceil(n))


def generate(app: App, repo: Optional[Repository] = None, seed: Optional[int] = None,
             duration_s: Optional[float] = None, load_factor: float = 1.0,
             max_jobs: int = MAX_JOBS, max_span_s: float = MAX_SPAN_S) -> Workloads:
    """Jobs of every stream of ``app`` as a reference ``Workloads`` message.

    Args:
        app: the application (streams, jitter, duration, seed).
        repo: resolves ``deadline_x``/``period_x`` and fills input shapes; also checks
            that every stream's task is in it.
        seed: overrides the app's seed.
        duration_s: overrides the app's duration (streams without their own ``end``).
        load_factor: divides every period.
        max_jobs, max_span_s: bounds checked on every stream before anything is generated
            (a :class:`WorkloadError` names the stream and the override).

    Raises:
        UsageError: a duration, load factor or seed that is not finite/positive.
        WorkloadError: a workload over the bounds, or one without any job.
    """
    if not app.streams:
        raise WorkloadError(f"{app.source or app.name} defines no workload streams")
    check_options(seed, duration_s, load_factor, max_jobs, max_span_s)
    max_span_us = min(float(max_span_s) * 1e6, _HARD_SPAN_US)
    rng = np.random.default_rng(app.seed if seed is None else seed)
    end_default = float(duration_s if duration_s is not None else app.duration_s) * 1e6
    jitter = int(round(app.jitter_us))
    plans = []
    total = 0
    where = app.source or app.name
    for s in app.streams:
        if repo is not None:
            repo.task(s.task)
        period = _resolve(s, repo, "period") / load_factor
        rel_deadline = _resolve(s, repo, "deadline")
        if not (math.isfinite(period) and math.isfinite(rel_deadline)) or period <= 0 or rel_deadline <= 0:
            raise WorkloadError(f"stream of {s.task}: period and deadline must be positive and finite")
        end = float(s.end_us) if s.end_us is not None else end_default
        if not math.isfinite(end) or not math.isfinite(float(s.start_us)):
            raise WorkloadError(f"{where}: stream of {s.task} has a start or end that is not finite")
        if end + rel_deadline + jitter > max_span_us:
            raise WorkloadError(
                f"{where}: stream of {s.task} runs to {end / 1e6:g} s (+ deadline), over the limit of "
                f"{max_span_us / 1e6:g} s; shorten end/--duration or raise --max-span SECONDS"
            )
        n = estimate_jobs(period, float(s.start_us), end, s.lam)
        total += n
        if total > max_jobs:
            raise WorkloadError(
                f"{where}: the workload would hold about {total} jobs or more (stream of {s.task}: period "
                f"{period:g} us over {max(0.0, end - s.start_us) / 1e6:g} s), over the limit of {max_jobs}; "
                f"lengthen the period, shorten --duration, or raise --max-jobs N"
            )
        plans.append((s, period, rel_deadline, end))
    rows: List[Tuple[int, int, int, str, List[int]]] = []
    for si, (s, period, rel_deadline, end) in enumerate(plans):
        shape = list(s.shape) if s.shape else (repo.dims(s.task) if repo is not None else [])
        for rel in _releases(s, period, end, jitter, rng):
            rows.append((rel, si, int(rel + rel_deadline), s.task, shape))
            if len(rows) > max_jobs:  # a Poisson stream above its expectation
                raise WorkloadError(f"{where}: the workload holds more than {max_jobs} jobs; raise --max-jobs N")
    if not rows:
        raise WorkloadError(
            f"{where}: the workload holds no jobs (every stream ends before it starts); check --duration and "
            f"the streams' start/end"
        )
    rows.sort(key=lambda r: (r[0], r[1]))
    msg = Workloads()
    for rel, si, dl, task, shape in rows:
        w = msg.workload.add()
        w.model_name = task
        w.release = rel
        w.deadline = dl
        w.shape[:] = shape
        w.id = si  # the stream's index in the app, as the reference numbers its streams
    return msg


def _releases(s: Stream, period: float, end: float, jitter: int, rng: np.random.Generator) -> List[int]:
    out: List[int] = []
    t = float(s.start_us)
    if s.lam is not None:
        while True:
            t += period * rng.exponential(1.0 / s.lam)
            if t >= end:
                return out
            out.append(int(t))
    k = 0
    while True:
        nominal = s.start_us + k * period
        if nominal >= end:
            return out
        d = int(rng.integers(-jitter, jitter + 1)) if jitter > 0 else 0
        if nominal + d < 0:
            d = 0
        out.append(int(round(nominal)) + d)
        k += 1


def repository_app(repo: Repository) -> Optional[App]:
    """The app ``repo`` was planned for, when its file resolves by name and plans the same tasks.

    The repository records its app's name (``plan.json``); the app file gives the streams
    that number a workload's ids. None when the name does not resolve, the file does not
    load, it defines no streams, or its tasks are not exactly the repository's (a
    different app of the same name): stream ids are then only checked to be >= 0.
    """
    name = repo.app
    if not name:
        return None
    try:
        app = load_app(name)
    except PantheonError:
        return None
    if not app.streams or set(app.tasks) != set(repo.tasks):
        return None
    return app


def check_stream_ids(ws: Workloads, app: Optional[App], where: str = "workload", *, match_tasks: bool = True) -> None:
    """Refuse a job whose stream id is negative or not a stream of ``app``.

    With ``app``: ``id`` must lie in ``0 .. len(app.streams) - 1`` and, with
    ``match_tasks``, that stream must be of the job's task (a file generated from another
    app, or with the streams in another order, is refused at its first such job).

    Raises:
        WorkloadError: naming the job, its task, its id and the valid range.
    """
    n = len(app.streams) if app is not None else None
    for i, w in enumerate(ws.workload):
        sid = int(w.id)
        if sid < 0 or (n is not None and sid >= n):
            valid = f"app {app.name} has {n} streams, ids 0..{len(app.streams) - 1}" if app is not None else "ids are >= 0"
            raise WorkloadError(f"{where}: job {i} ({w.model_name}) has stream id {sid}, out of range ({valid}); "
                                f"generate the workload from this app with `pantheon workload --spec`")
        if app is not None and match_tasks and app.streams[sid].task != w.model_name:
            raise WorkloadError(f"{where}: job {i} names task {w.model_name!r} but its stream id {sid} is a stream "
                                f"of {app.streams[sid].task!r} in app {app.name} (streams in another order, or "
                                f"another app's workload)")


def validate(ws: Workloads, repo: Repository, where: str = "workload", app: Optional[App] = None) -> List[JobSpec]:
    """Check every job against ``repo`` before anything runs; return them sorted by release.

    Stream ids are checked against ``app`` (range and task), else against the
    repository's own app (:func:`repository_app`; range only, as an app file may have
    been edited since), else only to be non-negative.

    Raises:
        WorkloadError: no jobs, a task missing from the repository, a deadline not after
            its release, an input shape that differs from the task's dims, or a stream id
            out of range.
    """
    if not ws.workload:
        raise WorkloadError(f"{where} holds no jobs")
    out: List[JobSpec] = []
    tasks = repo.tasks
    for i, w in enumerate(ws.workload):
        name = w.model_name
        t = tasks.get(name)
        if t is None:
            raise WorkloadError(
                f"{where}: job {i} names task {name!r}, which the repository {repo.path} lacks "
                f"(it has: {', '.join(repo.names)})"
            )
        rel, dl = w.release, w.deadline
        if dl <= rel:
            raise WorkloadError(f"{where}: job {i} ({name}) has its deadline {dl} us "
                                f"at or before its release {rel} us")
        shape = w.shape
        if len(shape) and list(shape) != list(t.dims):
            raise WorkloadError(f"{where}: job {i} ({name}) has input shape {list(shape)}, "
                                f"but the repository's model takes {list(t.dims)} (input shape mismatch)")
        out.append(JobSpec(i, name, rel, dl, int(w.id)))
    if app is not None:
        check_stream_ids(ws, app, where)
    else:
        check_stream_ids(ws, repository_app(repo), where, match_tasks=False)
    out.sort(key=lambda j: (j.release, j.index))
    return out


def task_timing(jobs: Sequence[JobSpec]) -> Dict[str, Tuple[Optional[float], float]]:
    """Per task: ``(period_us, relative_deadline_us)`` seen in a workload.

    The period is the mean gap between the task's releases (with several streams of one
    task this is the effective period, 1 / rate); None for a task with one job.
    """
    by: Dict[str, List[JobSpec]] = {}
    for j in jobs:
        by.setdefault(j.task, []).append(j)
    out: Dict[str, Tuple[Optional[float], float]] = {}
    for task, js in by.items():
        rel = sorted(j.release for j in js)
        period = (rel[-1] - rel[0]) / (len(rel) - 1) if len(rel) > 1 and rel[-1] > rel[0] else None
        out[task] = (period, float(statistics.median(j.deadline - j.release for j in js)))
    return out


def stream_rows(ws: Workloads) -> List[Dict[str, Any]]:
    """One row per stream (workload ``id``) and task, in id order.

    ``period_us`` is the mean gap between the stream's releases (None with one job),
    ``deadline_us`` the median relative deadline, ``start_us``/``end_us`` its first and
    last release. A file that gives several tasks one id (written without stream ids)
    gets one row per task of that id.
    """
    by: Dict[Tuple[int, str], List[Tuple[int, int]]] = {}
    for w in ws.workload:
        by.setdefault((int(w.id), w.model_name), []).append((int(w.release), int(w.deadline)))
    rows: List[Dict[str, Any]] = []
    for (sid, task), jobs in sorted(by.items()):
        rel = sorted(r for r, _ in jobs)
        period = round((rel[-1] - rel[0]) / (len(rel) - 1), 1) if len(rel) > 1 else None
        rows.append({"stream": sid, "task": task, "jobs": len(jobs), "period_us": period,
                     "deadline_us": float(statistics.median(d - r for r, d in jobs)),
                     "start_us": rel[0], "end_us": rel[-1]})
    return rows


def show(ws: Workloads, repo: Optional[Repository] = None) -> Dict[str, Any]:
    """Summary of a workload: job count, jobs per task and per stream, span, and load.

    ``per_stream`` is :func:`stream_rows`. ``span_us`` runs from the first release to the
    last deadline; ``load`` (with a repository) is the sum over jobs of the task's
    full-model latency divided by the span (1.0 = the device is busy all the time running
    original models).
    """
    if not ws.workload:
        raise WorkloadError("the workload holds no jobs")
    per: Dict[str, int] = {}
    for w in ws.workload:
        per[w.model_name] = per.get(w.model_name, 0) + 1
    first = min(w.release for w in ws.workload)
    last = max(w.deadline for w in ws.workload)
    span = max(1, last - first)
    out: Dict[str, Any] = {
        "jobs": len(ws.workload),
        "per_task": dict(sorted(per.items())),
        "per_stream": stream_rows(ws),
        "span_us": int(span),
        "first_release_us": int(first),
        "last_deadline_us": int(last),
    }
    if repo is not None:
        busy = 0
        for w in ws.workload:
            busy += repo.task(w.model_name).full_latency
        out["load"] = round(busy / span, 4)
    return out


def show_workload(show_path: PathLike, spec: Optional[str] = None, repo_dir: Optional[PathLike] = None,
                  store: Optional[Store] = None) -> Dict[str, Any]:
    """Describe a workload file (:func:`show`), checked against a repository and/or an app.

    With ``repo_dir`` the file is validated against the repository (tasks, input shapes,
    deadlines); with ``spec`` its stream ids are checked against the app's streams.
    """
    from pantheon.formats import read_workloads
    from pantheon.online.repository import read_repository

    repo = read_repository(repo_dir) if repo_dir is not None else None
    ws = read_workloads(show_path)
    shown_app = load_app(spec, store) if spec is not None else None
    if shown_app is not None and not shown_app.streams:
        raise UsageError(f"--spec {spec} defines no workload streams to check {show_path} against")
    if repo is not None:
        validate(ws, repo, where=str(show_path), app=shown_app)
    elif shown_app is not None:
        check_stream_ids(ws, shown_app, str(show_path))
    info = show(ws, repo)
    info["file"] = str(show_path)
    if shown_app is not None:
        info["app"] = shown_app.name
    return info


def generate_workload(spec: str, store: Store, out: Optional[PathLike] = None, repo_dir: Optional[PathLike] = None,
                      seed: Optional[int] = None, duration: Optional[float] = None, load_factor: float = 1.0,
                      force: bool = False, max_jobs: int = MAX_JOBS, max_span_s: float = MAX_SPAN_S) -> Dict[str, Any]:
    """Generate an app's workload into ``out`` (a .bin) or the store's workload artifact; describe it.

    Returns :func:`show`'s description with ``file``, the path written.
    """
    import json
    from pathlib import Path

    from pantheon.formats import store as st
    from pantheon.formats import write_workloads
    from pantheon.online.repository import read_repository

    check_options(seed, duration, load_factor, max_jobs, max_span_s)
    repo = read_repository(repo_dir) if repo_dir is not None else None
    app = load_app(spec, store=store)
    if out is not None and Path(out).is_dir():
        raise UsageError(f"--out {out} is a directory; pass a file name such as {Path(out) / 'workload.bin'}")
    if out is not None and Path(out).exists() and not force:
        from pantheon.errors import ArtifactExistsError

        raise ArtifactExistsError(f"{out} already exists; pass --force to replace it")
    ws = generate(app, repo=repo, seed=seed, duration_s=duration, load_factor=load_factor,
                  max_jobs=max_jobs, max_span_s=max_span_s)
    if out is None:
        dest = store.workload_dir(app.name)
        inputs = {"spec": str(app.source), "seed": seed, "duration": duration, "load_factor": load_factor}
        with st.write_artifact(dest, kind="workload", force=force, inputs=inputs) as tmp:
            write_workloads(tmp / "workload.bin", ws)
            (tmp / "workload.json").write_text(json.dumps(app.raw, indent=2, default=str) + "\n")
        out = dest / "workload.bin"
    else:
        write_workloads(out, ws)
    info = show(ws, repo)
    info["file"] = str(out)
    return info
