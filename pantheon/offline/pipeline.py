"""``pantheon pipeline``: the whole offline side of one application as one command.

For every task of the app: pretrain (only when the store has no backbone weights) ->
construct (train the exits) -> export (TorchScript variants) -> profile (memory,
accuracy, latency on the board's profiler server or locally); then for the app: plan
(the deployment model repository) -> workload (the ``Workloads`` .bin the runtime
replays). This is what the desktop container runs.

Every stage writes an artifact with a manifest (pantheon.formats.store) that records
its inputs; a stage whose artifact is complete and was made from the same inputs is
reported "skipped (up to date)" and left untouched. ``force`` redoes construct,
export, profile, plan and workload (backbones are kept: ``pantheon pretrain --force``
retrains one).

The library prints no results: :func:`pipeline` returns a :class:`PipelineResult` (one
:class:`StageResult` per stage, each with the stage's own result), and calls ``on_stage``
with every stage as it finishes (the CLI prints the stage's table there).

Example::

    res = pipeline("digits", PipelineOptions(board="192.168.55.1:8765"))
    [(r.task, r.stage, r.status) for r in res.stages]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple, Union

from pantheon import console
from pantheon.errors import ArtifactError, ArtifactExistsError, UsageError
from pantheon.formats import store as st
from pantheon.formats.app import App, load_app

if TYPE_CHECKING:
    from pantheon.offline.construct import ConstructResult
    from pantheon.offline.export import ExportResult
    from pantheon.offline.plan import PlanResult
    from pantheon.offline.profile import ProfileResult

DONE = "done"
SKIPPED = "skipped (up to date)"

#: What a stage function returns: its artifact, whether it was up to date, the stage's own result.
Outcome = Tuple[Path, bool, Union["ConstructResult", "ExportResult", "ProfileResult", "PlanResult", None]]


@dataclass(frozen=True)
class StageResult:
    """One stage of one task (or of the app: plan, workload).

    ``status`` is :data:`DONE` or :data:`SKIPPED`; ``path`` the artifact it wrote or found;
    ``result`` the stage function's own result (:class:`~pantheon.offline.construct.ConstructResult`,
    :class:`~pantheon.offline.export.ExportResult`, :class:`~pantheon.offline.profile.ProfileResult`,
    :class:`~pantheon.offline.plan.PlanResult`), None for pretrain, workload and a skipped profile.
    """

    task: str
    stage: str
    status: str
    seconds: float
    path: Optional[Path] = None
    result: Union[ConstructResult, ExportResult, ProfileResult, PlanResult, None] = None


@dataclass(frozen=True)
class PipelineResult:
    """What :func:`pipeline` returns: the app's name and its stages in the order they ran."""

    app: str
    stages: List[StageResult]


def parse_board(board: str) -> Tuple[str, int]:
    """``"192.168.55.1:8765"`` -> ``("192.168.55.1", 8765)``; a bare host gets the server's default port."""
    from pantheon.formats.profiler_wire import DEFAULT_PORT

    host, _, port = board.rpartition(":") if ":" in board else (board, "", str(DEFAULT_PORT))
    try:
        p = int(port)
    except ValueError:
        raise UsageError(f"--board-profiler {board!r}: expected HOST:PORT") from None
    if not host or not 0 < p < 65536:
        raise UsageError(f"--board-profiler {board!r}: expected HOST:PORT")
    return host, p


@dataclass
class PipelineOptions:
    data_dir: Optional[str] = None
    board: Optional[str] = None  # HOST:PORT of `pantheon profiler-server`; None = local timing
    force: bool = False
    epochs: Optional[int] = None  # construct epochs (default: the task's)
    limit: Optional[int] = None  # at most this many samples per split / for accuracy (quick runs)
    token: Optional[str] = None
    warmup: int = 0
    repeat: int = 0
    retries: int = 3
    min_chunk_us: Optional[float] = None  # plan: merge blocks below this latency (None: the dispatch overhead)
    duration_s: Optional[float] = None  # workload length (None: the app's duration_s)
    max_jobs: Optional[int] = None  # workload size bounds (None: the generator's defaults)
    max_span_s: Optional[float] = None


def _pretrain(task: str, o: PipelineOptions, s: st.Store) -> Outcome:
    from pantheon.offline.pretrain import pretrain

    dest = s.pretrained_dir(task)
    try:
        st.verify(dest, kind="pretrained", required=["weights.pt"])
        return dest, True, None  # present: never overwrite backbone weights from here
    except ArtifactError as exc:  # absent, or altered after it was written: (re)train it
        if dest.exists():
            console.warn(f"retraining the backbone of {task}: {exc}")
    return pretrain(task, o.data_dir, limit=o.limit, force=True, store=s), False, None


def _construct(task: str, o: PipelineOptions, s: st.Store) -> Outcome:
    from pantheon.offline.construct import ConstructConfig, construct

    res = construct(ConstructConfig(task=task, data_dir=o.data_dir, max_epochs=o.epochs, force=o.force, limit=o.limit), s)
    return res.run_dir, res.skipped, res


def _export(task: str, run: Path, o: PipelineOptions, s: st.Store) -> Outcome:
    from pantheon.offline.export import export

    dest = s.variants_dir(task)
    try:
        res = export(task, str(run), str(dest), force=o.force, store=s)
    except ArtifactExistsError:  # variants of an older run: replace them
        res = export(task, str(run), str(dest), force=True, store=s)
    return res.path, res.skipped, res


def _profile(task: str, variants: Path, o: PipelineOptions) -> Outcome:
    from pantheon.offline.profile import PROFILE_CSV, load_variants, profile, profile_inputs

    v = load_variants(variants)
    host, port = parse_board(o.board) if o.board else ("127.0.0.1", 0)
    source = f"{host}:{port}" if o.board else "local"
    inputs = json.loads(json.dumps(profile_inputs(v, source, o.warmup, o.repeat, o.limit)))
    m = st.read_manifest(variants)
    if not o.force and PROFILE_CSV in m.files and m.meta.get("profile", {}).get("inputs") == inputs:
        return variants, True, None
    res = profile(task, variants, data_dir=Path(o.data_dir) if o.data_dir else None, host=host, port=port,
                  local=not o.board, token=o.token, retries=o.retries, warmup=o.warmup, repeat=o.repeat,
                  max_samples=o.limit, variants=v)
    return variants, False, res


def _plan(app: App, o: PipelineOptions, s: st.Store) -> Outcome:
    from pantheon.offline.plan import plan

    dest = s.repository_dir(app.name)
    setting = str(app.source)
    try:
        res = plan(setting, force=o.force, min_chunk_us=o.min_chunk_us, store=s)
    except ArtifactExistsError:  # a repository planned from older profiles or limits
        res = plan(setting, force=True, min_chunk_us=o.min_chunk_us, store=s)
    return res.repository or dest, res.skipped, res


def workload_available() -> bool:
    try:
        from pantheon.online import workload  # noqa: F401
    except ImportError:
        return False
    return True


def _size_bounds(o: PipelineOptions) -> Dict[str, Any]:
    """The workload generator's ``max_jobs``/``max_span_s``: the options', or its defaults."""
    from pantheon.online.workload import MAX_JOBS, MAX_SPAN_S

    return {"max_jobs": MAX_JOBS if o.max_jobs is None else o.max_jobs,
            "max_span_s": MAX_SPAN_S if o.max_span_s is None else o.max_span_s}


def _workload(app: App, repo: Path, o: PipelineOptions, s: st.Store) -> Outcome:
    from pantheon.formats import write_workloads
    from pantheon.online.repository import read_repository
    from pantheon.online.workload import generate

    dest = s.workload_dir(app.name)
    inputs = {
        "app": st.fingerprint(Path(app.source)) if app.source else app.name,
        "repository": st.sha256_file(repo / st.MANIFEST),
        "seed": app.seed,
    }
    if o.duration_s is not None:  # recorded only when set: workloads made before keep their inputs
        inputs["duration_s"] = o.duration_s
    if not o.force and st.is_complete(dest, inputs):
        return dest / "workload.bin", True, None
    ws = generate(app, repo=read_repository(repo), duration_s=o.duration_s, **_size_bounds(o))
    with st.write_artifact(dest, kind="workload", inputs=inputs, force=True, meta={"app": app.name, "jobs": len(ws.workload)}) as tmp:
        write_workloads(tmp / "workload.bin", ws)
        (tmp / "workload.json").write_text(json.dumps(app.raw, indent=2, default=str) + "\n")
    return dest / "workload.bin", False, None


def _run(results: List[StageResult], task: str, stage: str, fn: Callable[[], Outcome],
         on_stage: Optional[Callable[[StageResult], None]]) -> Path:
    console.info(f"[bold]{stage}[/bold] {task}")
    t0 = time.perf_counter()
    path, skipped, detail = fn()
    r = StageResult(task, stage, SKIPPED if skipped else DONE, round(time.perf_counter() - t0, 2), path, detail)
    results.append(r)
    if on_stage is not None:
        on_stage(r)
    console.info(f"{stage} {task}: {r.status} ({r.seconds:.1f} s) -> {path}")
    return path


def pipeline(app_name: str, options: Optional[PipelineOptions] = None, *, store: Optional[st.Store] = None,
             on_stage: Optional[Callable[[StageResult], None]] = None) -> PipelineResult:
    """Run construct -> export -> profile for every task of ``app_name``, then plan and workload.

    Args:
        app_name: an app name (``digits``) or app file; see :func:`pantheon.formats.app.load_app`.
        options: data dir, board profiler (``HOST:PORT``; None = time locally), force, epochs, limit.
        store: the artifact store every stage reads and writes (default: the one at ``$PANTHEON_DATA``).
        on_stage: called with every :class:`StageResult` as soon as its stage finishes (the CLI
            prints the stage's result there); nothing is printed otherwise.

    Returns: the :class:`PipelineResult`: one :class:`StageResult` per stage and task, in the
    order they ran.
    """
    from pantheon.zoo import get_task

    o = options or PipelineOptions()
    if workload_available():  # the workload stage's options are checked now, not after the training
        from pantheon.online.workload import check_options

        bounds = _size_bounds(o)
        check_options(None, o.duration_s, 1.0, bounds["max_jobs"], bounds["max_span_s"])
    s = store or st.Store()
    app = load_app(app_name, s)
    if o.board:
        parse_board(o.board)
    for task in app.tasks:  # an unknown task fails now, not after an hour of training
        get_task(task)
    results: List[StageResult] = []
    run = partial(_run, results, on_stage=on_stage)
    for task in app.tasks:
        run(task, "pretrain", partial(_pretrain, task, o, s))
        run_dir = run(task, "construct", partial(_construct, task, o, s))
        variants = run(task, "export", partial(_export, task, run_dir, o, s))
        run(task, "profile", partial(_profile, task, variants, o))
    repo = run(app.name, "plan", partial(_plan, app, o, s))
    if workload_available():
        run(app.name, "workload", partial(_workload, app, repo, o, s))
    else:
        console.warn("pantheon.online.workload is not available: no workload file generated")
    return PipelineResult(app.name, results)
