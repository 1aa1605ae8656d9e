"""``pantheon demo``: the whole pipeline with the bundled ``digits`` application (CPU, or the GPU when present).

Stages (each recorded in the artifact store with its manifest; a re-run skips the stages
whose inputs are unchanged and says so, ``force`` redoes them):

1. pretrain the three digits backbones (scikit-learn's bundled digits, held-out test split);
2. slice them, add and train the early exits, export chunks and exits to TorchScript;
3. start ``pantheon profiler-server`` on 127.0.0.1 as a separate process and profile every
   chunk and exit through it (real TCP), then stop it;
4. plan the exits with ``deploy/apps/digits.yaml`` (pymoo);
5. generate the workload and run the live runtime (``device``: the GPU when one is present
   with ``auto``, else the CPU) with ``pantheon`` and every baseline policy (same workload,
   same repository), and simulate the same workload under each policy;
6. compare the policies (policy, live DMR next to the simulated one, relative accuracy,
   preempted jobs, p99 response: :attr:`DemoResult.rows`) and write the report folder (PNG
   plots, markdown, JSON).

The demo prints no results itself: it returns a :class:`DemoResult` and hands every pipeline
stage to ``on_stage`` as it finishes and the pipeline's result to ``on_pipeline`` (the CLI
prints them there).

The profiler server times the chunks on the device the runtime then uses (on ``cpu`` its
process is started with no visible GPU), so plan, simulator and live run share one cost model.

Example::

    result = demo(quick=True)
    result.report          # <root>/reports/digits/demo/
"""

from __future__ import annotations

import contextlib
import json
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, Iterator, List, Optional, Sequence, Union

from pantheon import __version__, console
from pantheon.formats import store as st

if TYPE_CHECKING:
    from pantheon.offline.pipeline import PipelineResult, StageResult
    from pantheon.online.profiler_server import ServerProcess

APP = "digits"


@dataclass
class DemoSettings:
    """What ``--quick`` changes: fewer pretraining and exit epochs, a shorter workload."""

    pretrain_epochs: Optional[int]
    construct_epochs: Optional[int]
    duration_s: float
    limit: Optional[int] = None

    @classmethod
    def for_mode(cls, quick: bool) -> DemoSettings:
        if quick:
            return cls(pretrain_epochs=4, construct_epochs=3, duration_s=4.0)
        return cls(pretrain_epochs=None, construct_epochs=None, duration_s=8.0)


@dataclass(frozen=True)
class DemoResult:
    """What :func:`demo` returns: the store root and the artifacts of the run, ``logs`` (one live
    event log per policy), ``rows`` (one comparison row per policy,
    :func:`pantheon.analysis.report.compare_row` with the simulated DMR), the report folder, the
    device the chunks ran on, the pipeline's stages and the wall time."""

    root: Path
    repository: Path
    workload: Path
    logs: Dict[str, Path]
    rows: List[Dict[str, Any]]
    report: Path
    device: str
    stages: List[StageResult] = field(default_factory=list)
    seconds: float = 0.0


# -- the profiler server as a separate process ---------------------------------------------


@contextlib.contextmanager
def profiler_server(log_dir: Path, device: str = "auto") -> Iterator[ServerProcess]:
    """A profiler server process on a free port of 127.0.0.1, stopped when the block ends
    (``device="cpu"``: started with no visible GPU, so it times on the CPU)."""
    from pantheon.online.profiler_server import ServerProcess

    server = ServerProcess(log_dir, env={"CUDA_VISIBLE_DEVICES": ""} if device == "cpu" else None)
    try:
        yield server
    finally:
        server.stop()


# -- stages ----------------------------------------------------------------------------------


def _pretrain_all(tasks: Sequence[str], s: DemoSettings, force: bool, store: st.Store) -> List[List[str]]:
    from pantheon.offline.pretrain import pretrain, pretrained_metrics

    rows = []
    for task in tasks:
        dest = store.pretrained_dir(task)
        before = (dest / st.MANIFEST).read_text() if (dest / st.MANIFEST).is_file() else None
        pretrain(task, epochs=s.pretrain_epochs, force=force, store=store, limit=s.limit)
        after = (dest / st.MANIFEST).read_text()
        status = "skipped (up to date)" if before == after else "trained"
        acc = pretrained_metrics(task, store).get("test")
        rows.append([task, status, "-" if acc is None else f"{100 * acc:.2f}%"])
        console.info(f"pretrain {task}: {status}, held-out test accuracy {rows[-1][2]}")
    return rows


def _workload(app: Any, repo_dir: Path, s: DemoSettings, force: bool, store: st.Store) -> Path:
    """The demo's workload: the app's streams for ``duration_s`` (shorter with --quick)."""
    from pantheon.formats import write_workloads
    from pantheon.online.repository import read_repository
    from pantheon.online.workload import generate

    dest = store.app_dir(app.name) / f"workload-demo-{s.duration_s:g}s"
    inputs = {"app": st.fingerprint(Path(app.source)) if app.source else app.name,
              "repository": st.sha256_file(repo_dir / st.MANIFEST), "seed": app.seed, "duration_s": s.duration_s}
    if not force and st.is_complete(dest, inputs):
        console.info(f"workload: skipped (up to date) -> {dest}")
        return dest / "workload.bin"
    ws = generate(app, repo=read_repository(repo_dir), duration_s=s.duration_s)
    with st.write_artifact(dest, kind="workload", inputs=inputs, force=True,
                           meta={"app": app.name, "jobs": len(ws.workload), "duration_s": s.duration_s}) as tmp:
        write_workloads(tmp / "workload.bin", ws)
    console.info(f"workload: {len(ws.workload)} jobs over {s.duration_s:.0f} s -> {dest}")
    return dest / "workload.bin"


def _run_policies(repo_dir: Path, workload: Path, policies: Sequence[str], force: bool,
                  store: st.Store, device: str = "cpu") -> Dict[str, Path]:
    """One live run per policy on ``device``; a run whose repository, workload, policy and device are
    unchanged is reused."""
    from pantheon.online.runtime import run

    logs: Dict[str, Path] = {}
    base = store.logs_dir(APP) / "demo"
    with console.progress() as bar:
        t = bar.add_task("live runs", total=len(policies))
        for policy in policies:
            dest = base / policy
            inputs = {"repository": st.sha256_file(repo_dir / st.MANIFEST), "workload": st.sha256_file(workload),
                      "policy": policy, "version": __version__, "device": device}
            bar.update(t, description=f"live run: {policy}")
            if not force and st.is_complete(dest, inputs):
                console.info(f"runtime {policy}: skipped (up to date) -> {dest}")
            else:
                with st.write_artifact(dest, kind="demo-run", inputs=inputs, force=True,
                                       meta={"policy": policy, "device": device}) as tmp:
                    summary = run(repo_dir, workload, tmp / "run", policy=policy, device=device,
                                  telemetry="psutil", progress=False, handle_signals=False)
                console.info(f"runtime {policy}: DMR {100 * summary['dmr']:.2f}%, "
                             f"relative accuracy {100 * summary['relative_accuracy']:.2f}%")
            logs[policy] = dest / "run"
            bar.advance(t)
    return logs


def _policy_plot(rows: Sequence[Dict[str, Any]], folder: Path) -> Optional[str]:
    try:
        from pantheon.analysis.plots import plt, save_figure  # pyplot on the Agg backend
    except ImportError:
        return None
    names = [r["policy"] for r in rows]
    fig, axes = plt.subplots(1, 2, figsize=(11, 3.8))
    axes[0].bar(names, [100 * r["dmr"] for r in rows], color="#c0504d")
    axes[0].set_ylabel("deadline miss rate (%)")
    axes[1].bar(names, [100 * r["relative_accuracy"] for r in rows], color="#4f81bd")
    axes[1].set_ylabel("relative accuracy (%)")
    for ax in axes:
        plt.setp(ax.get_xticklabels(), rotation=30, ha="right")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle("digits demo: the same workload under every policy (live)")
    return save_figure(fig, folder, "policies.png")


def _report(rows: List[Dict[str, Any]], logs: Dict[str, Path], analyses: Dict[str, Dict[str, Any]],
            pretrain_rows: List[List[str]], store: st.Store, device: str = "cpu") -> Path:
    from pantheon.analysis import report as rp

    dest = store.report_dir(APP, "demo")
    with st.write_artifact(dest, kind="report", force=True,
                           inputs={p: st.sha256_file(log / "events.jsonl") for p, log in logs.items()}) as tmp:
        plots: List[str] = []
        name = _policy_plot(rows, tmp)
        if name:
            plots.append(name)
        main = "pantheon" if "pantheon" in logs else next(iter(logs))
        data = analyses[main]
        try:
            from pantheon.analysis import plots as P

            plots += [f"{main}/{p}" for p in P.draw_all(data, _mkdir(tmp / main))]
        except ImportError:
            console.warn("matplotlib is not installed: the report has no PNG plots")
        summaries = {p: a["summary"] for p, a in analyses.items()}
        (tmp / "report.json").write_text(json.dumps(
            {"app": APP, "version": __version__, "pretrain": pretrain_rows, "comparison": rows,
             "summaries": summaries}, indent=2, default=str) + "\n")
        where = "the CPU" if device == "cpu" else f"the GPU ({device})"
        lines = [f"# Pantheon demo: digits on {where}", "",
                 f"Three digit classifiers (ResNet18, MobileNetV2, GoogLeNet) share {where}. The same workload",
                 "was replayed live under every policy and simulated with the plan's cost model (profiled",
                 "latency + measured dispatch overhead per chunk); accuracies were measured on held-out digits.", "",
                 "## Policies", "", rp.compare_markdown(rows),
                 "## Backbones (held-out test accuracy)", "", "| task | this run | accuracy |", "|---|---|---|"]
        lines += [f"| {a} | {b} | {c} |" for a, b, c in pretrain_rows]
        lines += ["", f"## The `{main}` run in detail", "", rp.markdown(summaries[main], title=f"{main} policy")]
        lines += ["## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
        (tmp / "report.md").write_text("\n".join(lines) + "\n")
    return dest


def _mkdir(p: Path) -> Path:
    p.mkdir(parents=True, exist_ok=True)
    return p


def demo(out: Union[None, Path, st.Store] = None, *, quick: bool = False, force: bool = False,
         policies: Optional[Sequence[str]] = None, settings: Optional[DemoSettings] = None,
         device: str = "auto", on_stage: Optional[Callable[[StageResult], None]] = None,
         on_pipeline: Optional[Callable[[PipelineResult], None]] = None) -> DemoResult:
    """Run the whole digits demo; see the module docstring.

    Args:
        out: the artifact store of the demo, or its root (default: the store at ``$PANTHEON_DATA`` /
            ``./pantheon-data``).
        quick: fewer epochs and a shorter workload (about 3 minutes once installed).
        force: redo every stage even when its inputs are unchanged.
        policies: policies to compare (default: every policy of the scheduler).
        settings: epochs, workload length and sample limit instead of ``quick``'s (tests use
            the smallest sizes).
        device: where the chunks are profiled and run live: ``auto`` (the GPU when present),
            ``cuda`` or ``cpu``.
        on_stage: called with every pipeline stage as it finishes (:func:`pantheon.offline.pipeline.pipeline`).
        on_pipeline: called with the pipeline's result once it is done, before the live runs.
    """
    from pantheon.formats.app import load_app
    from pantheon.offline.pipeline import PipelineOptions, pipeline
    from pantheon.online.repository import resolve_device
    from pantheon.online.scheduler import POLICIES, check_policy

    t0 = time.monotonic()
    device = resolve_device(device)
    store = out if isinstance(out, st.Store) else st.Store(Path(out).resolve() if out is not None else None)
    chosen = [check_policy(p) for p in (policies or POLICIES)]
    settings = settings or DemoSettings.for_mode(quick)
    app = load_app(APP, store)
    tasks = list(app.tasks)
    console.info(f"[bold]Pantheon demo[/bold] ({'quick' if quick else 'full'}): app {app.name}, tasks "
                 f"{', '.join(tasks)}, device {device}; artifact store {store.root}")

    console.info("[bold]1. pretrain the backbones[/bold]")
    pretrain_rows = _pretrain_all(tasks, settings, force, store)

    console.info("[bold]2-4. slice, train exits, export, profile through the profiler server, plan[/bold]")
    with tempfile.TemporaryDirectory(prefix="pantheon-demo-") as tmp, profiler_server(Path(tmp), device) as server:
        console.info(f"profiler server (pid {server.proc.pid}) listening on 127.0.0.1:{server.port}")
        piped = pipeline(app.name, PipelineOptions(board=f"127.0.0.1:{server.port}", force=force,
                                                   epochs=settings.construct_epochs, limit=settings.limit),
                         store=store, on_stage=on_stage)
    if on_pipeline is not None:
        on_pipeline(piped)
    repo_dir = store.repository_dir(app.name)

    console.info(f"[bold]5. live runtime on {device}, every policy, the same workload (and simulated)[/bold]")
    workload = _workload(app, repo_dir, settings, force, store)
    logs = _run_policies(repo_dir, workload, chosen, force, store, device)

    console.info("[bold]6. report[/bold]")
    from pantheon.analysis.report import analyze, compare_row, with_simulated
    from pantheon.formats import read_workloads
    from pantheon.online.repository import read_repository
    from pantheon.online.simulate import simulate

    analyses = {p: analyze(logs[p], workload) for p in chosen}  # each log read once
    ws = read_workloads(workload)
    rows = [with_simulated(compare_row(analyses[p]["summary"], logs[p]), simulate(read_repository(repo_dir), ws, p))
            for p in chosen]
    report = _report(rows, logs, analyses, pretrain_rows, store, device)
    return DemoResult(store.root, repo_dir, workload, logs, rows, report, device, piped.stages, time.monotonic() - t0)
