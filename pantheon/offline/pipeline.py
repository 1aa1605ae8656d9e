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

Example::

    results = pipeline("digits", board="192.168.55.1:8765")
    [(r.task, r.stage, r.status) for r in results]
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Callable, List, Optional, Tuple

from pantheon import console
from pantheon.errors import ArtifactError, ArtifactExistsError, UsageError
from pantheon.formats import store as st
from pantheon.formats.app import App, load_app

DONE = "done"
SKIPPED = "skipped (up to date)"


@dataclass
class StageResult:
    task: str
    stage: str
    status: str
    seconds: float
    path: Optional[Path] = None


def _manifest_text(directory: Path) -> Optional[str]:
    p = directory / st.MANIFEST
    return p.read_text() if p.is_file() else None


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


def _pretrain(task: str, o: PipelineOptions, s: st.Store) -> Tuple[Path, bool]:
    from pantheon.offline.pretrain import pretrain

    dest = s.pretrained_dir(task)
    try:
        st.verify(dest, kind="pretrained", required=["weights.pt"])
        return dest, True  # present: never overwrite backbone weights from here
    except ArtifactError as exc:  # absent, or altered after it was written: (re)train it
        if dest.exists():
            console.warn(f"retraining the backbone of {task}: {exc}")
    return pretrain(task, o.data_dir, limit=o.limit, force=True, store=s), False


def _construct(task: str, o: PipelineOptions, s: st.Store) -> Tuple[Path, bool]:
    from pantheon.offline.construct import ConstructConfig, construct

    runs = s.runs_dir(task)
    before = {d: _manifest_text(d) for d in runs.iterdir()} if runs.is_dir() else {}
    run = construct(ConstructConfig(task=task, data_dir=o.data_dir, max_epochs=o.epochs, force=o.force, limit=o.limit), s)
    return run, before.get(run) is not None and before.get(run) == _manifest_text(run)


def _export(task: str, run: Path, o: PipelineOptions, s: st.Store) -> Tuple[Path, bool]:
    from pantheon.offline.export import export

    dest = s.variants_dir(task)
    before = _manifest_text(dest)
    try:
        out = export(task, str(run), str(dest), force=o.force, store=s)
    except ArtifactExistsError:  # variants of an older run: replace them
        out = export(task, str(run), str(dest), force=True, store=s)
    return out, before is not None and before == _manifest_text(out)


def _profile(task: str, variants: Path, o: PipelineOptions) -> Tuple[Path, bool]:
    from pantheon.offline.profile import PROFILE_CSV, load_variants, profile, profile_inputs

    v = load_variants(variants)
    host, port = parse_board(o.board) if o.board else ("127.0.0.1", 0)
    source = f"{host}:{port}" if o.board else "local"
    inputs = json.loads(json.dumps(profile_inputs(v, source, o.warmup, o.repeat, o.limit)))
    m = st.read_manifest(variants)
    if not o.force and PROFILE_CSV in m.files and m.meta.get("profile", {}).get("inputs") == inputs:
        return variants, True
    profile(task, variants, data_dir=Path(o.data_dir) if o.data_dir else None, host=host, port=port, local=not o.board,
            token=o.token, retries=o.retries, warmup=o.warmup, repeat=o.repeat, max_samples=o.limit, variants=v)
    return variants, False


def _plan(app: App, o: PipelineOptions, s: st.Store) -> Tuple[Path, bool]:
    from pantheon.offline.plan import plan

    dest = s.repository_dir(app.name)
    before = _manifest_text(dest)
    setting = str(app.source)
    try:
        res = plan(setting, force=o.force, min_chunk_us=o.min_chunk_us, store=s)
    except ArtifactExistsError:  # a repository planned from older profiles or limits
        res = plan(setting, force=True, min_chunk_us=o.min_chunk_us, store=s)
    assert res.repository is not None
    return res.repository, before is not None and before == _manifest_text(res.repository)


def workload_available() -> bool:
    try:
        from pantheon.online import workload  # noqa: F401
    except ImportError:
        return False
    return True


def _workload(app: App, repo: Path, o: PipelineOptions, s: st.Store) -> Tuple[Path, bool]:
    from pantheon.formats import write_workloads
    from pantheon.online.repository import read_repository
    from pantheon.online.workload import MAX_JOBS, MAX_SPAN_S, generate

    dest = s.workload_dir(app.name)
    inputs = {
        "app": st.fingerprint(Path(app.source)) if app.source else app.name,
        "repository": st.sha256_file(repo / st.MANIFEST),
        "seed": app.seed,
    }
    if o.duration_s is not None:  # recorded only when set: workloads made before keep their inputs
        inputs["duration_s"] = o.duration_s
    if not o.force and st.is_complete(dest, inputs):
        return dest / "workload.bin", True
    ws = generate(app, repo=read_repository(repo), duration_s=o.duration_s,
                  max_jobs=MAX_JOBS if o.max_jobs is None else o.max_jobs,
                  max_span_s=MAX_SPAN_S if o.max_span_s is None else o.max_span_s)
    with st.write_artifact(dest, kind="workload", inputs=inputs, force=True, meta={"app": app.name, "jobs": len(ws.workload)}) as tmp:
        write_workloads(tmp / "workload.bin", ws)
        (tmp / "workload.json").write_text(json.dumps(app.raw, indent=2, default=str) + "\n")
    return dest / "workload.bin", False


def _run(results: List[StageResult], task: str, stage: str, fn: Callable[[], Tuple[Path, bool]]) -> Path:
    console.info(f"[bold]{stage}[/bold] {task}")
    t0 = time.perf_counter()
    path, skipped = fn()
    r = StageResult(task, stage, SKIPPED if skipped else DONE, round(time.perf_counter() - t0, 2), path)
    results.append(r)
    console.info(f"{stage} {task}: {r.status} ({r.seconds:.1f} s) -> {path}")
    return path


def pipeline(app_name: str, options: Optional[PipelineOptions] = None, *, show: bool = True,
             store: Optional[st.Store] = None) -> List[StageResult]:
    """Run construct -> export -> profile for every task of ``app_name``, then plan and workload.

    Args:
        app_name: an app name (``digits``) or app file; see :func:`pantheon.formats.app.load_app`.
        options: data dir, board profiler (``HOST:PORT``; None = time locally), force, epochs, limit.
        show: print the table of stages at the end.
        store: the artifact store every stage reads and writes (default: the one at ``$PANTHEON_DATA``).

    Returns: one :class:`StageResult` per stage and task, in the order they ran.
    """
    from pantheon.zoo import get_task

    o = options or PipelineOptions()
    s = store or st.Store()
    app = load_app(app_name, s)
    if o.board:
        parse_board(o.board)
    for task in app.tasks:  # an unknown task fails now, not after an hour of training
        get_task(task)
    results: List[StageResult] = []
    for task in app.tasks:
        _run(results, task, "pretrain", partial(_pretrain, task, o, s))
        run = _run(results, task, "construct", partial(_construct, task, o, s))
        variants = _run(results, task, "export", partial(_export, task, run, o, s))
        _run(results, task, "profile", partial(_profile, task, variants, o))
    repo = _run(results, app.name, "plan", partial(_plan, app, o, s))
    if workload_available():
        _run(results, app.name, "workload", partial(_workload, app, repo, o, s))
    else:
        console.warn("pantheon.online.workload is not available: no workload file generated")
    if show:
        console.print_table(f"pipeline {app.name}", ["task", "stage", "status", "seconds", "artifact"],
                            [[r.task, r.stage, r.status, f"{r.seconds:.1f}", r.path] for r in results])
    return results
