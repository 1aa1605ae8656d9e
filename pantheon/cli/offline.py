"""``pantheon`` commands of the desktop side: zoo, pretrain, construct, export, slice,
profiler-server, profile, plan, pipeline.

Command bodies gather options, import their stage's library module lazily (the board image
has no torchvision), call it with the invocation's store and print what it returns.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional

import typer

from pantheon.cli.common import TYPER_SETTINGS, get_store, parse_shape
from pantheon.errors import UsageError

if TYPE_CHECKING:  # the stage modules need torch: imported where a command runs
    from pantheon.offline.construct import ConstructResult
    from pantheon.offline.export import ExportResult
    from pantheon.offline.pipeline import PipelineResult, StageResult
    from pantheon.offline.plan import PlanResult
    from pantheon.offline.profile import ProfileResult

app = typer.Typer(**TYPER_SETTINGS)

@app.command("zoo")
def zoo_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the tasks of the zoo with their backbone, input shape, classes and training defaults.

    Example: pantheon zoo
    """
    from pantheon.zoo.tasks import zoo_rows

    if as_json:
        print(json.dumps({"tasks": zoo_rows()}, indent=2))
    else:
        print_zoo()


def print_zoo() -> None:
    """The zoo as a table, then the dataset layout of every dataset."""
    from pantheon import console
    from pantheon.zoo.tasks import list_tasks

    rows = []
    for t in list_tasks():
        d = t.defaults
        rows.append([
            t.name + ("" if t.group == "paper" else f" ({t.group})"), t.arch.replace("_mobilenet_v3_large", ""),
            "x".join(map(str, t.input_shape)), t.num_classes, t.metric_name, t.data_format,
            f"{d.learning_rate:g} {d.batch_size} {d.weight_decay:g} {d.max_epochs}",
        ])
    cols = ["task", "backbone", "input", "classes", "metric", "data", "lr batch wd epochs"]
    console.print_table("Pantheon task zoo (training defaults of the reference artifact)", cols, rows)
    console.out.print("dataset layouts under --data_dir:")
    seen = set()
    for t in list_tasks():
        if (t.data_format, t.dataset) not in seen:
            seen.add((t.data_format, t.dataset))
            console.out.print(f"  {t.name}: {t.data_layout()}")

@app.command("pretrain")
def pretrain_cmd(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", help="Zoo task (see `pantheon zoo`)."),
    data_dir: Optional[str] = typer.Option(
        None, "--data_dir", "--data-dir", help="Root of all datasets (not needed for the digits tasks)."
    ),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Training epochs (default: the task's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of initialisation and shuffling."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many samples per split (quick runs)."),
    num_workers: int = typer.Option(0, "--num_workers", "--num-workers", help="DataLoader workers (file datasets)."),
    gpu_id: Optional[int] = typer.Option(None, "--gpu_id", "--gpu-id", help="CUDA device (ignored without CUDA)."),
    force: bool = typer.Option(False, "--force", help="Retrain even when the store holds up-to-date weights."),
) -> None:
    """Train a task's full backbone briefly and cache it in the store (pretrained/<task>/).

    Example: pantheon pretrain --task digits_resnet18
    """
    from pantheon.offline.pretrain import pretrain

    typer.echo(pretrain(task, data_dir, epochs, seed, force, store=get_store(ctx), limit=limit,
                        num_workers=num_workers, gpu_id=gpu_id))

@app.command("construct")
def construct_cmd(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", help="Zoo task (see `pantheon zoo`)."),
    data_dir: Optional[str] = typer.Option(None, "--data_dir", "--data-dir", help="Root of all datasets."),
    log: Optional[str] = typer.Option(None, "--log", help="Directory holding the runs (default <root>/runs)."),
    learning_rate: Optional[float] = typer.Option(None, "--learning_rate", "--learning-rate", help="Default: Table 3."),
    batch_size: Optional[int] = typer.Option(None, "--batch_size", "--batch-size", help="Default: Table 3."),
    weight_decay: Optional[float] = typer.Option(None, "--weight_decay", "--weight-decay", help="Default: Table 3."),
    max_epochs: Optional[int] = typer.Option(None, "--max_epochs", "--max-epochs", help="Default: Table 3."),
    num_workers: int = typer.Option(0, "--num_workers", "--num-workers", help="DataLoader workers (file datasets)."),
    gpu_id: Optional[int] = typer.Option(None, "--gpu_id", "--gpu-id", help="CUDA device (ignored without CUDA)."),
    pretrain: Optional[str] = typer.Option(
        None, "--pretrain", help="Backbone state dict (digits default: the store's pretrained weights)."
    ),
    resume: Optional[str] = typer.Option(None, "--resume", help="Continue a run directory or its checkpoint.pt."),
    seed: int = typer.Option(0, "--seed", help="Seed: same seed, same exit weights."),
    merge: bool = typer.Option(True, "--merge/--no-merge", help="Merge chunks without conv/linear when slicing."),
    run_id: Optional[str] = typer.Option(None, "--run-id", help="Run directory name (default: from the inputs)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most this many samples per split (quick runs)."),
    force: bool = typer.Option(False, "--force", help="Retrain even when an identical finished run exists."),
) -> None:
    """Slice a pretrained model, add early exits and train them with the backbone frozen.

    Example: pantheon construct --task digits_resnet18 --max_epochs 4
    """
    from pantheon.offline.construct import ConstructConfig, construct

    cfg = ConstructConfig(
        task=task, data_dir=data_dir, log=log, learning_rate=learning_rate, batch_size=batch_size,
        weight_decay=weight_decay, max_epochs=max_epochs, num_workers=num_workers, gpu_id=gpu_id,
        pretrain=pretrain, resume=resume, seed=seed, merge=merge, run_id=run_id, force=force, limit=limit,
    )
    res = construct(cfg, get_store(ctx))
    if int(os.environ.get("RANK", "0")) == 0:  # under torchrun, rank 0 speaks for all
        print_construct(res)
        typer.echo(res.run_dir)


def print_construct(res: ConstructResult) -> None:
    """Per-exit table of a trained run: the validation metric of the last epochs and the held-out
    test metric; nothing for a run that was up to date."""
    from pantheon import console

    if res.skipped:
        return
    last = res.history[-5:]
    cols = ["exit"] + [f"val e{h['epoch']}" for h in last] + [f"test {res.metric_name}"]
    rows = []
    for j, t in enumerate(res.test):
        label = f"{j}" + (" (original head)" if j == len(res.test) - 1 else "")
        rows.append([label] + [f"{h['val'][j]:.3f}" for h in last] + [f"{t:.3f}"])
    console.print_table(f"{res.task}: exits (held-out test split in the last column)", cols, rows)
    console.info(f"construct {res.task}: wrote {res.run_dir}")

@app.command("export")
def export_cmd(
    ctx: typer.Context,
    task: str = typer.Option(..., "--task", help="Zoo task (see `pantheon zoo`)."),
    save: Optional[str] = typer.Option(None, "--save", help="Variants directory (default <root>/variants/<task>)."),
    weights: Optional[str] = typer.Option(
        None, "--weights", help="Construct run directory or its checkpoint.pt (default: the newest finished run)."
    ),
    force: bool = typer.Option(False, "--force", help="Replace an existing variants directory."),
) -> None:
    """Export every block and exit of a construct run as TorchScript, checked against the eager model.

    Example: pantheon export --task digits_resnet18
    """
    from pantheon.offline.export import export

    res = export(task, weights, save, force, store=get_store(ctx))
    print_export(res)
    typer.echo(res.path)


def print_export(res: ExportResult) -> None:
    """Per-exit table of what was exported and the round-trip line; nothing when it was up to date."""
    from pantheon import console

    if res.skipped:
        return
    B = len(res.modes)
    rows = [[j, "x".join(map(str, res.block_out_shapes[j])), res.modes[j],
             "" if res.accuracy is None else f"{res.accuracy[j]:.3f}"] for j in range(B)]
    console.print_table(f"{res.task}: exported exits (exit {B - 1} = original head)",
                        ["exit", "block output", "block/branch", f"test {res.metric_name}"], rows)
    console.info(
        f"export {res.task}: {B} blocks + {B} exits -> {res.path} (round trip max abs diff {res.max_abs_diff:.2g}"
        + (f"; traced: {', '.join(res.traced)}" if res.traced else "; all scripted") + ")"
    )

@app.command("slice")
def slice_cmd(
    arch: Optional[str] = typer.Option(
        None, "--arch", help="torchvision classification model name, 'ssdlite', or package.module:factory."
    ),
    task: Optional[str] = typer.Option(None, "--task", help="Slice a zoo task's model instead of --arch."),
    input_shape: Optional[str] = typer.Option(
        None, "--input", help="Input shape C,H,W without batch (default: the task's, else 3,224,224)."
    ),
    no_merge: bool = typer.Option(False, "--no-merge", help="Keep chunks without conv/linear separate."),
    as_json: bool = typer.Option(False, "--json", help="Print the JSON report on stdout."),
) -> None:
    """Slice a model at its critical nodes and check that the chained chunks reproduce it.

    Example: pantheon slice --arch googlenet --input 3,224,224
    """
    from pantheon import console
    from pantheon.offline import slice as slicing

    shape = parse_shape(input_shape) if input_shape is not None else None
    with console.progress(transient=True) as bar:
        job = bar.add_task(f"slicing {arch or task}", total=len(slicing.SLICE_STEPS))
        res = slicing.slice_target(arch, task, shape, merge=not no_merge, on_step=lambda s: bar.advance(job))
    if as_json:
        print(json.dumps(res.to_json(), indent=2))
    else:
        print_slices(res)


def print_slices(res: Any) -> None:
    """The per-chunk table of a :class:`~pantheon.offline.slice.SliceResult` and the equivalence line."""
    from pantheon import console

    def fmt_shape(shape: list) -> str:
        if shape and isinstance(shape[0], list):
            return " ".join("x".join(map(str, s)) for s in shape)
        return "x".join(map(str, shape))

    rows = [(i.index, i.n_ops, f"{i.param_bytes / 2**20:.2f}", fmt_shape(i.out_shape), f"{i.out_bytes / 2**10:.1f}")
            for i in res.info]
    name = f"{res.task} ({res.arch})" if res.task else (res.arch or "model")
    title = f"{name}: {len(res.chunks)} chunks ({'merged' if res.merged else 'not merged'})"
    console.print_table(title, ["index", "ops", "params MB", "output shape", "output KB"], rows)
    verdict = "exact" if res.exact else ("within 1e-5 relative" if res.equivalent else "NOT equivalent")
    console.out.print(f"max abs diff vs original: {res.max_abs_diff:.3g} ({verdict})")

# ---------------------------------------------------------------------------------------------
# Profiling and planning: profiler-server, profile, plan, pipeline
# ---------------------------------------------------------------------------------------------

@app.command("profiler-server")
def profiler_server_cmd(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to bind (0.0.0.0 to accept the desktop)."),
    port: int = typer.Option(8765, "--port", help="TCP port (0 picks a free one and prints it)."),
    warmup: int = typer.Option(10, "--warmup", help="Untimed runs before timing (a request may override)."),
    repeat: int = typer.Option(100, "--repeat", help="Timed runs per module (a request may override)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="PANTHEON_TOKEN", help="Shared secret clients must send."),
    max_bytes: int = typer.Option(256 << 20, "--max-bytes", help="Largest accepted message (bytes)."),
    max_connections: int = typer.Option(32, "--max-connections", help="Connections open at once (more are refused)."),
    idle_timeout: float = typer.Option(300.0, "--idle-timeout", help="Seconds an idle connection stays open."),
    read_timeout: float = typer.Option(60.0, "--read-timeout", help="Seconds to receive one announced message."),
    threads: Optional[int] = typer.Option(
        None, "--threads", envvar="PANTHEON_CPU_THREADS", help="CPU intra-op threads (default 1, as the runtime)."
    ),
    insecure: bool = typer.Option(
        False, "--insecure", help="Serve a non-loopback address without a token (the server runs what it is sent)."
    ),
) -> None:
    """Time TorchScript chunks sent by `pantheon profile` (run this on the board).

    Example: pantheon profiler-server --host 0.0.0.0 --port 8765 --token s3cret
    """
    from pantheon.online.profiler_server import ServerConfig, serve

    cfg = ServerConfig(host=host, port=port, warmup=warmup, repeat=repeat, token=token or None,
                       max_bytes=max_bytes, idle_timeout=idle_timeout, read_timeout=read_timeout, threads=threads,
                       max_connections=max_connections, insecure=insecure)
    serve(cfg, ready=lambda h, p: print(f"listening on {h}:{p}", flush=True))

@app.command("profile")
def profile_cmd(
    ctx: typer.Context,
    task: Optional[str] = typer.Option(None, "--task", help="Zoo task (default: the one in variants.json)."),
    weights: Optional[Path] = typer.Option(None, "--weights", help="Variants dir (default <root>/variants/<task>)."),
    data_dir: Optional[Path] = typer.Option(None, "--data_dir", "--data-dir", help="Root of the datasets."),
    host: str = typer.Option("127.0.0.1", "--host", help="Profiler server (the board)."),
    port: int = typer.Option(8765, "--port", help="Profiler server port."),
    local: bool = typer.Option(False, "--local", help="Time here instead of on a server (no board attached)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="PANTHEON_TOKEN", help="Shared secret of the server."),
    buffer: int = typer.Option(1 << 20, "--buffer", help="Socket buffer size in bytes."),
    batch_size: int = typer.Option(64, "--batch_size", "--batch-size", help="Batch size for accuracy."),
    num_workers: int = typer.Option(0, "--num_workers", "--num-workers", help="Data loader workers."),
    retries: int = typer.Option(3, "--retries", help="Reconnects on connection loss before giving up."),
    warmup: int = typer.Option(0, "--warmup", help="Untimed runs per item (0: the server's default)."),
    repeat: int = typer.Option(0, "--repeat", help="Timed runs per item (0: the server's default)."),
    max_samples: Optional[int] = typer.Option(None, "--max-samples", help="Evaluate accuracy on at most N test samples."),
) -> None:
    """Measure memory, accuracy and latency of every block and exit; write profile.csv.

    Example: pantheon profile --task digits_resnet18 --host 127.0.0.1 --port 8765
    """
    from pantheon.offline.profile import profile

    print_profile(profile(task, weights, data_dir=data_dir, host=host, port=port, local=local, token=token,
                          buffer=buffer, batch_size=batch_size, num_workers=num_workers, retries=retries,
                          warmup=warmup, repeat=repeat, max_samples=max_samples, store=get_store(ctx)))


def print_profile(res: ProfileResult) -> None:
    """Per-exit latency (block, branch, cumulative to the exit), memory and accuracy; the dispatch
    overhead and where profile.csv went on stderr."""
    from pantheon import console
    from pantheon.offline.profile import PROFILE_CSV

    rows = []
    to_block = 0.0
    for j, r in enumerate(res.rows):
        to_block += r.block_ms
        rows.append([j, f"{r.block_ms:.3f}", f"{r.branch_ms:.3f}", f"{to_block + r.branch_ms:.3f}",
                     f"{r.block_mb:.3f}", f"{r.branch_mb:.3f}", f"{r.accuracy:.4f}"])
    console.print_table(
        f"{res.task} on {res.device} ({res.source})",
        ["exit", "block ms", "branch ms", "to exit ms", "block MB", "branch MB", "accuracy"],
        rows,
    )
    if res.dispatch_overhead_us is not None:
        execs = sorted({str(t.get("executor", "eager")) for t in res.timings.values()})
        console.info(f"runtime dispatch overhead {res.dispatch_overhead_us:.1f} us per chunk; chunks timed as "
                     f"{', '.join(execs)}")
    console.info(f"wrote {res.path / PROFILE_CSV}")

@app.command("plan")
def plan_cmd(
    ctx: typer.Context,
    setting: str = typer.Option(..., "--setting", help="App name (digits), app YAML or reference settings JSON."),
    base: Optional[Path] = typer.Option(None, "--base", help="Folder of <task>/ variants dirs (default <root>/variants)."),
    save: Optional[Path] = typer.Option(None, "--save", help="Repository destination (default <root>/apps/<app>/repository)."),
    ga_gen: int = typer.Option(100, "--ga-gen", "--ga_gen", help="GA generations."),
    pop: int = typer.Option(100, "--pop", help="GA population size."),
    seed: int = typer.Option(0, "--seed", help="GA seed."),
    exhaustive: bool = typer.Option(False, "--exhaustive", help="Enumerate all placements (<= 20 candidate exits)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing repository."),
    min_chunk_us: Optional[float] = typer.Option(
        None, "--min-chunk-us",
        help="Merge adjacent blocks into chunks of at least this profiled latency (default: the measured dispatch overhead).",
    ),
    objective: str = typer.Option(
        "reference", "--objective",
        help="reference: maximise sum of 1/mean(T), accuracy drop vs each task's best exit, ties kept on the frontier; "
             "mean-time: minimise sum of mean(T), drop vs the last exit, ties dropped.",
    ),
) -> None:
    """Choose the exits of every task of an app (pymoo GA) and write the deployment model repository.

    Example: pantheon plan --setting deploy/apps/digits.yaml --force
    """
    from pantheon.offline.plan import plan

    print_plan(plan(setting, base=base, save=save, generations=ga_gen, pop_size=pop, seed=seed, exhaustive=exhaustive,
                    force=force, min_chunk_us=min_chunk_us, objective=objective, store=get_store(ctx)))


def print_plan(res: PlanResult) -> None:
    """The kept exits of every task with their accuracy, time and memory, the chunk merging, the
    objective and the memory budget (and, when it was written now, where the repository went)."""
    import math

    from pantheon import console
    from pantheon.offline.plan import objective_line

    rows = []
    for name, exits in res.exits.items():
        pt = res.per_task[name]
        mean_ms = float(pt.get("mean_time_ms", pt.get("objective_ms", math.nan)))
        groups = res.chunks.get(name) or [[j] for j in range(max(exits) + 1)]
        chunks = f"{max(exits) + 1} -> {len(groups)}"
        rows.append([name, " ".join(map(str, exits)), " ".join(map(str, res.candidates[name])),
                     " ".join(f"{pt['exit_accuracy'][str(j)]:.3f}" for j in exits), f"{pt['original_accuracy']:.3f}",
                     f"{pt.get('reference_accuracy', pt['original_accuracy']):.3f}", f"{mean_ms:.3f}",
                     f"{1.0 / mean_ms:.4f}" if mean_ms > 0 else "-", f"{pt['memory_mb']:.2f}", chunks])
    console.print_table(f"exit plan for {res.app} ({res.solver}, objective {res.objective})",
                        ["task", "kept exits", "candidates", "kept accuracy", "original", "drop from", "mean T ms",
                         "1/mean T", "memory MB", "chunks"], rows)
    if res.dispatch_overhead_us is not None or res.min_chunk_us:
        over = "unknown" if res.dispatch_overhead_us is None else f"{res.dispatch_overhead_us:.1f} us"
        console.out.print(f"dispatch overhead {over} per chunk; blocks merged into chunks of >= "
                          f"{res.min_chunk_us:.0f} us (chunks: blocks before -> deployed)")
    budget = "unlimited" if res.max_memory is None else f"{res.max_memory:g} MB"
    console.out.print(f"{objective_line(res)}; memory {res.memory_mb:.2f} MB of {budget}")
    if res.repository and not res.skipped:
        console.info(f"wrote {res.repository}")

@app.command("pipeline")
def pipeline_cmd(
    ctx: typer.Context,
    app_name: str = typer.Option(..., "--app", help="App name (digits, traffic, ...) or app YAML."),
    data_dir: Optional[str] = typer.Option(None, "--data_dir", "--data-dir", help="Root of the datasets."),
    board_profiler: Optional[str] = typer.Option(None, "--board-profiler", help="HOST:PORT of the board's profiler-server."),
    local: bool = typer.Option(False, "--local", help="Time the chunks on this machine (the default without a board)."),
    force: bool = typer.Option(False, "--force", help="Redo construct, export, profile, plan and workload."),
    epochs: Optional[int] = typer.Option(None, "--epochs", help="Exit-training epochs (default: the task's)."),
    limit: Optional[int] = typer.Option(None, "--limit", help="At most N samples per split (quick runs)."),
    token: Optional[str] = typer.Option(None, "--token", envvar="PANTHEON_TOKEN", help="Shared secret of the profiler server."),
    repeat: int = typer.Option(0, "--repeat", help="Timed runs per chunk (0: the profiler's default)."),
    min_chunk_us: Optional[float] = typer.Option(
        None, "--min-chunk-us", help="Plan: merge blocks into chunks of at least this latency (default: the dispatch overhead)."
    ),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of workload (default: the app's)."),
    max_jobs: int = typer.Option(1_000_000, "--max-jobs", help="Refuse a workload of more jobs than this (checked first)."),
    max_span: float = typer.Option(86_400.0, "--max-span", help="Refuse streams running longer than this (seconds)."),
) -> None:
    """construct -> export -> profile -> plan (-> workload) for every task of an app; up-to-date stages are skipped.

    Example: pantheon pipeline --app digits --board-profiler 192.168.55.1:8765
    """
    from pantheon.offline.pipeline import PipelineOptions, pipeline

    if board_profiler and local:
        raise UsageError("pass either --board-profiler HOST:PORT or --local, not both")
    res = pipeline(app_name, PipelineOptions(data_dir=data_dir, board=board_profiler, force=force, epochs=epochs,
                                             limit=limit, token=token, repeat=repeat, min_chunk_us=min_chunk_us,
                                             duration_s=duration, max_jobs=max_jobs, max_span_s=max_span),
                   store=get_store(ctx), on_stage=print_stage)
    print_pipeline(res)


def print_stage(r: StageResult) -> None:
    """What a stage's own command prints, as the stage finishes (pretrain and workload print nothing)."""
    from pantheon.offline.construct import ConstructResult
    from pantheon.offline.export import ExportResult
    from pantheon.offline.plan import PlanResult
    from pantheon.offline.profile import ProfileResult

    if isinstance(r.result, ConstructResult):
        print_construct(r.result)
    elif isinstance(r.result, ExportResult):
        print_export(r.result)
    elif isinstance(r.result, ProfileResult):
        print_profile(r.result)
    elif isinstance(r.result, PlanResult):
        print_plan(r.result)


def print_pipeline(res: PipelineResult) -> None:
    """One row per stage: task, stage, status, seconds, artifact."""
    from pantheon import console

    console.print_table(f"pipeline {res.app}", ["task", "stage", "status", "seconds", "artifact"],
                        [[r.task, r.stage, r.status, f"{r.seconds:.1f}", r.path] for r in res.stages])

