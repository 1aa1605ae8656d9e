"""``pantheon`` commands of the board side and the analysis: workload, runtime, simulate,
report, repository import, bench.

Command bodies gather options, call the library (which returns results) and print them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional

import typer

from pantheon.cli.common import (
    TYPER_SETTINGS,
    get_store,
    margin_option,
    policy_choice,
    scheduler_choice,
    telemetry_choice,
)
from pantheon.errors import UsageError

app = typer.Typer(**TYPER_SETTINGS)

@app.command("workload")
def workload_cmd(
    ctx: typer.Context,
    spec: Optional[str] = typer.Option(None, "--spec", help="App name (digits), app YAML, or reference workload JSON."),
    out: Optional[Path] = typer.Option(None, "--out", help="Workloads .bin to write (default <root>/apps/<app>/workload/)."),
    show: Optional[Path] = typer.Option(None, "--show", help="Print jobs per task and per stream, span and load of a .bin; with --repo/--spec, check it against them."),
    repo: Optional[Path] = typer.Option(None, "--repo", help="Repository: resolves deadline_x/period_x, shapes, load."),
    seed: Optional[int] = typer.Option(None, "--seed", help="Random seed (default: the app's)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of workload (default: the app's)."),
    load_factor: float = typer.Option(1.0, "--load-factor", help="Divide every period by this factor."),
    force: bool = typer.Option(False, "--force/--no-force", help="Replace an existing output."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    max_jobs: int = typer.Option(1_000_000, "--max-jobs", help="Refuse to generate more jobs than this (checked first)."),
    max_span: float = typer.Option(86_400.0, "--max-span", help="Refuse streams running longer than this (seconds)."),
) -> None:
    """Generate a reference-compatible Workloads .bin from an app or spec, or show one.

    Examples: pantheon workload --spec digits --repo pantheon-data/apps/digits/repository --out w.bin
              pantheon workload --show w.bin
              pantheon workload --show robot.bin --spec robot --repo pantheon-data/apps/robot/repository
    """
    from pantheon.online import workload as wl

    if spec is None and show is None:
        raise UsageError("pass --spec APP (generate) or --show FILE.bin (describe; with --spec APP, check its "
                         "stream ids against the app)")
    wl.check_options(seed, duration, load_factor, max_jobs, max_span)
    if show is not None:
        if out is not None:
            raise UsageError("--show describes a file and writes nothing: drop --out")
        info = wl.show_workload(show, spec, repo, store=get_store(ctx))
    else:
        info = wl.generate_workload(spec, get_store(ctx), out, repo, seed=seed, duration=duration,  # type: ignore[arg-type]
                                    load_factor=load_factor, force=force, max_jobs=max_jobs, max_span_s=max_span)
    if as_json:
        print(json.dumps(info, indent=2))
    else:
        print_workload(info)


def print_workload(info: Dict[str, Any]) -> None:
    """Jobs per task, per stream, span and load of a workload description."""
    from pantheon import console

    console.print_table(
        f"workload {info['file']}", ["task", "jobs"], list(info["per_task"].items()) + [("total", info["jobs"])]
    )
    console.print_table(
        "streams (workload id)", ["stream", "task", "jobs", "period ms", "deadline ms", "first release ms"],
        [(r["stream"], r["task"], r["jobs"], "-" if r["period_us"] is None else f"{r['period_us'] / 1000:.3f}",
          f"{r['deadline_us'] / 1000:g}", f"{r['start_us'] / 1000:.3f}") for r in info["per_stream"]],
    )
    load = f", load {info['load']:.3f}" if "load" in info else " (pass --repo for the load)"
    console.out.print(f"span {info['span_us'] / 1e6:.3f} s{load}")

@app.command("runtime")
def runtime_cmd(
    repo: Path = typer.Argument(..., help="Deployment model repository folder."),
    workload: Path = typer.Argument(..., help="Workloads .bin to replay."),
    log: Path = typer.Argument(..., help="Run folder (events.jsonl, run.json, manifest) or an .jsonl file."),
    policy: str = typer.Option("pantheon", "--policy", **policy_choice(), help="Scheduling policy."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu or auto."),
    best_effort: Optional[List[str]] = typer.Option(None, "--best-effort", help="TASK:RATE (jobs/s) on the low-priority side; repeatable."),
    telemetry: str = typer.Option("auto", "--telemetry", **telemetry_choice(),
                                  help="Telemetry backend (off: no sampling)."),
    drop_late: bool = typer.Option(True, "--drop-late/--no-drop-late", help="Drop jobs that can no longer meet their deadline."),
    time_scale: float = typer.Option(1.0, "--time-scale", help="Stretch every workload time by this factor."),
    max_inflight: int = typer.Option(2, "--max-inflight", help="CUDA chunks queued on the stream at once."),
    threads: Optional[int] = typer.Option(
        None, "--threads", envvar="PANTHEON_CPU_THREADS", help="CPU intra-op threads (default 1, as the profiler server)."
    ),
    calibrate: bool = typer.Option(
        True, "--calibrate/--no-calibrate",
        help="Fit chunk latency = dispatch overhead + scale x profile to the measured chunks as the run goes.",
    ),
    cuda_graphs: bool = typer.Option(
        True, "--cuda-graphs/--no-cuda-graphs", help="On CUDA, replay chunks as CUDA graphs captured at start."
    ),
    dispatch_us: Optional[float] = typer.Option(
        None, "--dispatch-us", help="Per-chunk dispatch overhead to plan with (default: measured at start)."
    ),
    drop_rule: str = typer.Option("shed", "--drop-rule", **scheduler_choice("drop-rule"), help="pantheon policies, a hopeless job: shed (drop the job that frees the most time), skip (drop it), keep (the reference's)."),
    downgrade: str = typer.Option("absolute", "--downgrade", **scheduler_choice("downgrade"), help="pantheon policies: lower first the exit losing the least absolute or relative accuracy."),
    margin: float = margin_option(),
    fallback: bool = typer.Option(False, "--fallback-exits/--no-fallback-exits", help="pantheon policy: a job may still finish through a kept exit it already passed (its branch only; keeps one extra tensor per job)."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Replay a workload live on the device with the preemptive scheduler; write the event log.

    Example: pantheon runtime pantheon-data/apps/digits/repository w.bin logs/run1 --policy pantheon --device cpu
    """
    from pantheon import console
    from pantheon.formats.events import events_path
    from pantheon.online.runtime import run, summary_line

    summary = run(repo, workload, log, policy=policy, device=device, best_effort=best_effort or [],
                  telemetry=telemetry, drop_late=drop_late, time_scale=time_scale, max_inflight=max_inflight,
                  progress=not as_json, threads=threads, calibrate=calibrate, cuda_graphs=cuda_graphs,
                  dispatch_overhead_us=dispatch_us, drop_rule=drop_rule, downgrade=downgrade, fallback=fallback,
                  margin=margin)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        console.out.print(summary_line(summary))
        console.info(f"log: {events_path(log)}")
    if summary.get("interrupted"):
        raise typer.Exit(130)

@app.command("simulate")
def simulate_cmd(
    ctx: typer.Context,
    repo: Path = typer.Option(..., "--repo", help="Deployment model repository (its profiled latencies are used)."),
    workload: Path = typer.Option(..., "--workload", help="Workloads .bin to replay."),
    policy: str = typer.Option("pantheon", "--policy", **policy_choice(), help="Scheduling policy."),
    jitter: float = typer.Option(0.0, "--jitter", help="Latency noise: relative std of a mean-1 log-normal factor."),
    seed: int = typer.Option(0, "--seed", help="Seed of the latency noise."),
    drop_late: bool = typer.Option(True, "--drop-late/--no-drop-late", help="Drop jobs that can no longer meet their deadline."),
    log: Optional[Path] = typer.Option(None, "--log", help="Write the event log here (.jsonl file or folder)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Also write the report folder here."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary (dmr, relative_accuracy, ...) as JSON."),
    dispatch_us: Optional[float] = typer.Option(
        None, "--dispatch-us", help="Per-chunk dispatch overhead (default: the one the repository was profiled with)."
    ),
    pipelined: bool = typer.Option(
        False, "--pipelined", help="Chunks after the first of a busy period take max(overhead, latency) (ideal CUDA overlap)."
    ),
    drop_rule: str = typer.Option("shed", "--drop-rule", **scheduler_choice("drop-rule"), help="pantheon policies, a hopeless job: shed (drop the job that frees the most time), skip (drop it), keep (the reference's)."),
    downgrade: str = typer.Option("absolute", "--downgrade", **scheduler_choice("downgrade"), help="pantheon policies: lower first the exit losing the least absolute or relative accuracy."),
    margin: float = margin_option(),
    fallback: bool = typer.Option(False, "--fallback-exits/--no-fallback-exits", help="pantheon policy: a job may still finish through a kept exit it already passed (its branch only; keeps one extra tensor per job)."),
) -> None:
    """Replay a workload in the discrete-event simulator with the runtime's scheduler.

    Example: pantheon simulate --repo pantheon-data/apps/digits/repository --workload w.bin --policy edf --json
    """
    from pantheon import console
    from pantheon.online.runtime import summary_line
    from pantheon.online.simulate import simulate_files

    summary = simulate_files(repo, workload, policy, get_store(ctx), jitter=jitter, seed=seed, drop_late=drop_late,
                             log=log, logged=out is not None, dispatch_us=dispatch_us, pipelined=pipelined,
                             drop_rule=drop_rule, downgrade=downgrade, fallback=fallback, margin=margin)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        note = ", profiles only" if summary["profiles_only"] else ""
        console.out.print(summary_line(summary) + f" ({summary['jobs_per_s']:.0f} jobs/s simulated{note})")
    if out is not None:
        from pantheon.analysis.report import write_report

        folder, _ = write_report(summary["log_path"], out=out, store=get_store(ctx))
        console.info(f"report written to {folder}")

@app.command("report")
def report_cmd(
    ctx: typer.Context,
    log: Path = typer.Argument(..., help="Run folder or events.jsonl of a runtime or simulator run."),
    workload: Optional[Path] = typer.Option(None, "--workload", help="The .bin the run replayed (counts jobs never released)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Report folder (default <root>/reports/<app>/<run-id>)."),
    plots: bool = typer.Option(True, "--plots/--no-plots", help="Draw PNG plots (needs matplotlib)."),
    as_json: bool = typer.Option(False, "--json", help="Print the summary as JSON."),
    window_ms: float = typer.Option(1000.0, "--window-ms", help="Width of the DMR-per-window view (ms of release time)."),
) -> None:
    """DMR, relative accuracy, preemptions, exits, response and scheduler latency of a run, with plots.

    Also per-job traces, DMR per time window and preemptions per block as CSV, by task and by stream.

    Example: pantheon report logs/run1 --out reports/run1 --window-ms 500
    """
    from pantheon.analysis.report import write_report

    folder, summary = write_report(log, out=out, workload=workload, plots=plots, window_ms=window_ms,
                                   store=get_store(ctx))
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        print_report(folder, summary)


def print_report(folder: Path, summary: Dict[str, Any]) -> None:
    """The report's comparison row, preemptions, worst window and files."""
    from pantheon import console
    from pantheon.analysis.report import COMPARE_COLUMNS, compare_rows

    console.print_table(
        f"{summary.get('policy', '?')} ({summary.get('mode', '?')})", COMPARE_COLUMNS,
        compare_rows([{**summary, "response_p99_us": summary["response_p99_us"]}]),
    )
    per_block = summary.get("preemptions_per_block") or {}
    where = "; ".join(f"{t} at " + ", ".join(f"block {b}: {n}" for b, n in bl.items())
                      for t, bl in per_block.items())
    console.info(f"preemptions: {summary['preemptions']}" + (f" ({where})" if where else ""))
    win = (summary.get("dmr_windows") or {}).get("worst")
    if win:
        console.info(f"worst {summary['dmr_windows']['window_ms']:g} ms window: DMR {100 * win['dmr']:.2f}% "
                     f"({win['missed']}/{win['jobs']}) from {win['start_us'] / 1e6:g} s")
    console.print_table(f"report written to {folder}", ("file", "contents"),
                        [[name, what] for name, what in summary.get("files", {}).items()])

# -- repository: model repositories from elsewhere --

repository_app = typer.Typer(
    name="repository",
    help="Model repositories: import one of the reference artifact.",
    no_args_is_help=True,
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)
app.add_typer(repository_app, name="repository")

@repository_app.command("import")
def repository_import_cmd(
    ctx: typer.Context,
    src: Path = typer.Argument(..., help="Reference repository: <task>/config.pbtxt and <task>/model_files/*.pth."),
    out: Optional[Path] = typer.Option(None, "--out", help="Repository to write (default <root>/apps/<app>/repository)."),
    app_name: Optional[str] = typer.Option(None, "--app", help="App name recorded in plan.json (default: SRC's name)."),
    device: str = typer.Option("cpu", "--device", help="Where the chunks are loaded and run for the check: cpu, cuda, auto."),
    force: bool = typer.Option(False, "--force", help="Replace an existing repository."),
    as_json: bool = typer.Option(False, "--json", help="Print what was imported as JSON."),
) -> None:
    """Turn a reference repository (.pth chunks, no manifest) into a verified one: every chunk is
    loaded and run, chained from the config's input dims, before the manifest is written.

    Example: pantheon repository import Pantheon/experiments/model_repositories/indoor_smart_traffic --out repo
    """
    from pantheon import console
    from pantheon.online.reference import import_reference

    dest = out if out is not None else get_store(ctx).repository_dir(app_name or src.name)
    res = import_reference(src, dest, app=app_name, device=device, force=force)
    if as_json:
        typer.echo(json.dumps(res.to_json(), indent=2))
        return
    if res.skipped:
        console.info(f"left out {len(res.skipped)} file(s) no config.pbtxt names: {', '.join(res.skipped[:5])}"
                     f"{' ...' if len(res.skipped) > 5 else ''}")
    typer.echo(f"imported {len(res.tasks)} task(s), {res.chunks} chunks, into {res.dest}")

# -- bench (the reproducible benchmark of the board image) --

@app.command("bench")
def bench_cmd(
    ctx: typer.Context,
    app_name: str = typer.Option(..., "--app", envvar="PANTHEON_APP", help="App whose deployed repository to benchmark."),
    policies: Optional[List[str]] = typer.Option(None, "--policies", **policy_choice(split=True), help="Policies to compare live (comma-separated or repeated; default all)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default <root>/bench/<app>/<run-id>)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of workload (default: the app's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the workload and the scheduler microbenchmark."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu or auto."),
    telemetry: str = typer.Option("auto", "--telemetry", **telemetry_choice(),
                                  help="Telemetry backend (off: no sampling)."),
    decisions: int = typer.Option(1000, "--decisions", help="Scheduler decisions timed per queue length (0: skip)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder."),
    drop_rule: str = typer.Option("shed", "--drop-rule", **scheduler_choice("drop-rule"), help="pantheon policies, a hopeless job: shed (drop the job that frees the most time), skip (drop it), keep (the reference's)."),
    downgrade: str = typer.Option("absolute", "--downgrade", **scheduler_choice("downgrade"), help="pantheon policies: lower first the exit losing the least absolute or relative accuracy."),
    margin: float = margin_option(),
    max_jobs: int = typer.Option(1_000_000, "--max-jobs", help="Refuse a workload of more jobs than this (checked first)."),
    max_span: float = typer.Option(86_400.0, "--max-span", help="Refuse streams running longer than this (seconds)."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Policy comparison live on the device + scheduler microbenchmark, with fixed seeds, into one results folder.

    Example: pantheon bench --app digits --policies pantheon,edf,rtmdl --duration 10 --seed 0
    """
    from pantheon.bench.suite import bench

    res = bench(app_name, store=get_store(ctx), policies=policies, out=out, duration_s=duration, seed=seed, device=device,
                telemetry=telemetry, decisions=decisions, force=force, drop_rule=drop_rule, downgrade=downgrade,
                margin=margin, max_jobs=max_jobs, max_span_s=max_span)
    if as_json:
        print(json.dumps(res, indent=2, default=str))
    else:
        print_bench(res)


def print_bench(res: Dict[str, Any]) -> None:
    """The policy comparison table, the scheduler's decision latency, telemetry and the folder."""
    from pantheon import console
    from pantheon.analysis.report import columns, compare_rows
    from pantheon.bench.suite import result_rows

    rows = result_rows(res)
    console.print_table(f"{res['app']}: policies live on {res['settings']['device']} (and simulated)", columns(rows),
                        compare_rows(rows))
    tele = res.get("telemetry") or {}
    if res.get("scheduler_latency"):
        by_n = {r["queue_length"]: r for r in res["scheduler_latency"]}
        parts = [f"{n} jobs {by_n[n]['p50_us']} us" for n in (4, 8, 11) if n in by_n]
        console.info("scheduler decision p50: " + ", ".join(parts))
    console.info(f"telemetry ({tele.get('n', 0)} samples): mean power {tele.get('mean_power_mw')} mW, "
                 f"mean GPU load {tele.get('mean_gpu_load_pct')} %")
    console.info(f"results written to {res['path']}")

