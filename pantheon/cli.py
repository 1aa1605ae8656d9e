"""The ``pantheon`` command line.

This is the only module (with :mod:`pantheon.deploy.cli`) that imports typer.
Command bodies are a few lines: they import the library module of their stage
lazily (the board image has no torchvision) and call it. A
:class:`~pantheon.errors.PantheonError` becomes one red line on stderr and exit
code 1 (2 for usage errors); nothing prints a traceback unless
``PANTHEON_DEBUG=1``.

Annotations use ``typing.Optional``/``List``: typer evaluates them at run time
and the board image may run Python 3.8.
"""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path
from typing import Any, Callable, List, Optional, TypeVar

import typer

from pantheon import __version__
from pantheon.errors import PantheonError, UsageError

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="pantheon",
    help="Pantheon: slice DNNs, add early exits, plan exits, and run them preemptively on one GPU.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    # Help text is plain: option synopses such as "[--host H]" must not be read as rich markup.
    rich_markup_mode=None,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pantheon import console
        from pantheon.errors import clear_interrupt, interrupt_pending, recorded_interrupts

        try:
            with recorded_interrupts():  # a Ctrl-C that library code swallows is not lost (errors.py)
                try:
                    result = fn(*args, **kwargs)
                except Exception:
                    if interrupt_pending():  # an error a swallowed Ctrl-C caused: report the interrupt
                        raise KeyboardInterrupt from None
                    raise
            if interrupt_pending():  # swallowed, and nothing sealed since: still an interrupted command
                raise KeyboardInterrupt
            return result
        except PantheonError as exc:
            if os.environ.get("PANTHEON_DEBUG"):
                raise
            console.error_line(_user_paths(str(exc)))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            clear_interrupt()
            console.error_line("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except BrokenPipeError:  # `pantheon ... --json | head`: the reader left; stay quiet on exit
            _silence_stdout()
            console.error_line("output closed early (broken pipe); nothing else to do")
            raise typer.Exit(1) from None
        except OSError as exc:  # read-only, full, is-a-directory, not-a-directory, permission...
            if os.environ.get("PANTHEON_DEBUG"):
                raise
            console.error_line(os_error_line(exc))
            raise typer.Exit(1) from None
        except (ValueError, OverflowError) as exc:  # a value a parser refused (bad number, bad text)
            if os.environ.get("PANTHEON_DEBUG"):
                raise
            msg = " ".join(str(exc).split()) or exc.__class__.__name__
            console.error_line(f"invalid value: {msg} (check the options and input files of this command)")
            raise typer.Exit(1) from None
        except Exception as exc:  # a bug or an unwrapped third-party error: still one line
            if os.environ.get("PANTHEON_DEBUG"):
                raise
            msg = " ".join(str(exc).split()) or exc.__class__.__name__
            console.error_line(f"unexpected {exc.__class__.__name__}: {msg} (set PANTHEON_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


_OS_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or pick another destination (--out/--save/--data-root)",
    errno.EDQUOT: "the disk quota is exceeded: free some space or pick another destination",
    errno.EROFS: "the file system is read-only: pick a writable destination (--out/--save/--data-root)",
    errno.EACCES: "permission denied: pick a writable destination or fix the permissions",
    errno.EPERM: "operation not permitted: pick another destination or fix the permissions",
    errno.EISDIR: "it is a directory: pass a file name",
    errno.ENOTDIR: "a part of the path is a file, not a directory: pick another path",
    errno.EEXIST: "it already exists as a file: pick another path",
    errno.ENOENT: "no such file or directory",
    errno.ENAMETOOLONG: "the name is too long",
}


def _user_paths(text: str) -> str:
    """Show the user's path, not the temporary ``.NAME.tmp-XXXX`` written beside it (and removed)."""
    import re

    return re.sub(r"(^|[/\s])\.([^/\s]+)\.tmp-[A-Za-z0-9_]+", r"\1\2", text)


def os_error_line(exc: OSError) -> str:
    """One line for an :class:`OSError`: the path(s), what went wrong, what to do."""
    where = f" {_user_paths(str(exc.filename))}" if exc.filename is not None else ""
    if exc.filename2 is not None:
        where += f" -> {_user_paths(str(exc.filename2))}"
    reason = exc.strerror or exc.__class__.__name__
    hint = _OS_HINTS.get(exc.errno or -1)
    text = f"cannot use{where}: {reason}" + (f" ({hint})" if hint and hint != reason.lower() else "")
    return " ".join(text.split())


def _silence_stdout() -> None:
    """Point stdout at /dev/null so the interpreter's final flush does not fail again."""
    import sys

    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pantheon {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    data_root: Optional[Path] = typer.Option(
        None,
        "--data-root",
        envvar="PANTHEON_DATA",
        help="Artifact store root (default ./pantheon-data; /data in the containers).",
    ),
) -> None:
    """Pantheon: preemptible multi-DNN inference on edge GPUs."""
    if data_root is not None:
        os.environ["PANTHEON_DATA"] = str(data_root)


MAX_SHAPE_ELEMENTS = 1 << 28  # 1 GiB of float32, as the profiler server's limit


def parse_shape(text: str) -> List[int]:
    """``"3,224,224"`` -> ``[3, 224, 224]``; a bad shape is a usage error."""
    try:
        dims = [int(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"bad shape {text!r}: expected comma-separated integers such as 3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"bad shape {text!r}: every dimension must be a positive integer")
    n = 1
    for d in dims:
        n *= d
    if n > MAX_SHAPE_ELEMENTS:
        raise UsageError(f"bad shape {text!r}: {n} elements, more than the {MAX_SHAPE_ELEMENTS} a model input may have")
    return dims


# ---------------------------------------------------------------------------------------------
# Offline, on the desktop: zoo, slice, pretrain, construct, export
# ---------------------------------------------------------------------------------------------


@app.command("zoo")
@handle_errors
def zoo_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the tasks of the zoo with their backbone, input shape, classes and training defaults.

    Example: pantheon zoo
    """
    from pantheon.zoo.tasks import print_zoo

    print_zoo(as_json)


@app.command("pretrain")
@handle_errors
def pretrain_cmd(
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

    typer.echo(pretrain(task, data_dir, epochs, seed, force, limit=limit, num_workers=num_workers, gpu_id=gpu_id))


@app.command("construct")
@handle_errors
def construct_cmd(
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
    run_dir = construct(cfg)
    if int(os.environ.get("RANK", "0")) == 0:
        typer.echo(run_dir)


@app.command("export")
@handle_errors
def export_cmd(
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

    typer.echo(export(task, weights, save, force))


@app.command("slice")
@handle_errors
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
    slicing.print_report(res, as_json)


# ---------------------------------------------------------------------------------------------
# Profiling and planning: profiler-server, profile, plan, pipeline
# ---------------------------------------------------------------------------------------------


@app.command("profiler-server")
@handle_errors
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
@handle_errors
def profile_cmd(
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

    profile(task, weights, data_dir=data_dir, host=host, port=port, local=local, token=token, buffer=buffer,
            batch_size=batch_size, num_workers=num_workers, retries=retries, warmup=warmup, repeat=repeat,
            max_samples=max_samples)


@app.command("plan")
@handle_errors
def plan_cmd(
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

    plan(setting, base=base, save=save, generations=ga_gen, pop_size=pop, seed=seed, exhaustive=exhaustive, force=force,
         min_chunk_us=min_chunk_us, objective=objective)


@app.command("pipeline")
@handle_errors
def pipeline_cmd(
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
) -> None:
    """construct -> export -> profile -> plan (-> workload) for every task of an app; up-to-date stages are skipped.

    Example: pantheon pipeline --app digits --board-profiler 192.168.55.1:8765
    """
    from pantheon.offline.pipeline import PipelineOptions, pipeline

    if board_profiler and local:
        raise UsageError("pass either --board-profiler HOST:PORT or --local, not both")
    pipeline(app_name, PipelineOptions(data_dir=data_dir, board=board_profiler, force=force, epochs=epochs, limit=limit,
                                       token=token, repeat=repeat, min_chunk_us=min_chunk_us))


# ---------------------------------------------------------------------------------------------
# Online: workload, runtime, simulate, report, bench
# ---------------------------------------------------------------------------------------------

# -- workload, runtime, simulate, report --


@app.command("workload")
@handle_errors
def workload_cmd(
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
    from pantheon.online.workload import workload_command

    workload_command(spec, out, show, repo, seed, duration, load_factor, force, as_json,
                     max_jobs=max_jobs, max_span_s=max_span)


@app.command("runtime")
@handle_errors
def runtime_cmd(
    repo: Path = typer.Argument(..., help="Deployment model repository folder."),
    workload: Path = typer.Argument(..., help="Workloads .bin to replay."),
    log: Path = typer.Argument(..., help="Run folder (events.jsonl, run.json, manifest) or an .jsonl file."),
    policy: str = typer.Option("pantheon", "--policy", help="pantheon, pantheon-wo-ee, pantheon-wo-ee-pr, edf, fifo, rms, dms, rtmdl."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu or auto."),
    best_effort: Optional[List[str]] = typer.Option(None, "--best-effort", help="TASK:RATE (jobs/s) on the low-priority side; repeatable."),
    telemetry: str = typer.Option("auto", "--telemetry", help="auto, jtop, sysfs, nvml, psutil, or off."),
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
    drop_rule: str = typer.Option("shed", "--drop-rule", help="pantheon policies, a hopeless job: shed (drop the job that frees the most time), skip (drop it), keep (the reference's)."),
    downgrade: str = typer.Option("absolute", "--downgrade", help="pantheon policies: lower first the exit losing the least absolute or relative accuracy."),
    as_json: bool = typer.Option(False, "--json", help="Print the run summary as JSON."),
) -> None:
    """Replay a workload live on the device with the preemptive scheduler; write the event log.

    Example: pantheon runtime pantheon-data/apps/digits/repository w.bin logs/run1 --policy pantheon --device cpu
    """
    from pantheon.online.runtime import runtime_command

    summary = runtime_command(repo, workload, log, policy, device, best_effort or [], telemetry, drop_late,
                              time_scale, max_inflight, as_json, threads, calibrate, cuda_graphs, dispatch_us,
                              drop_rule, downgrade)
    if summary.get("interrupted"):
        raise typer.Exit(130)


@app.command("simulate")
@handle_errors
def simulate_cmd(
    repo: Path = typer.Option(..., "--repo", help="Deployment model repository (its profiled latencies are used)."),
    workload: Path = typer.Option(..., "--workload", help="Workloads .bin to replay."),
    policy: str = typer.Option("pantheon", "--policy", help="pantheon, pantheon-wo-ee, pantheon-wo-ee-pr, edf, fifo, rms, dms, rtmdl."),
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
    drop_rule: str = typer.Option("shed", "--drop-rule", help="pantheon policies, a hopeless job: shed (drop the job that frees the most time), skip (drop it), keep (the reference's)."),
    downgrade: str = typer.Option("absolute", "--downgrade", help="pantheon policies: lower first the exit losing the least absolute or relative accuracy."),
) -> None:
    """Replay a workload in the discrete-event simulator with the runtime's scheduler.

    Example: pantheon simulate --repo pantheon-data/apps/digits/repository --workload w.bin --policy edf --json
    """
    from pantheon.online.simulate import simulate_command

    summary = simulate_command(repo, workload, policy, jitter, seed, drop_late, log, out, as_json, dispatch_us,
                               pipelined, drop_rule, downgrade)
    if out is not None:
        from pantheon import console
        from pantheon.analysis.report import write_report

        folder, _ = write_report(summary["log_path"], out=out)
        console.info(f"report written to {folder}")


@app.command("report")
@handle_errors
def report_cmd(
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
    from pantheon.analysis.report import report_command

    report_command(log, workload, out, plots, as_json, window_ms)


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
@handle_errors
def repository_import_cmd(
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
    import json

    from pantheon import console
    from pantheon.formats import store
    from pantheon.online.reference import import_reference

    dest = out if out is not None else store.Store().repository_dir(app_name or src.name)
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
@handle_errors
def bench_cmd(
    app_name: str = typer.Option(..., "--app", envvar="PANTHEON_APP", help="App whose deployed repository to benchmark."),
    policies: Optional[List[str]] = typer.Option(None, "--policies", help="Policies to compare live (comma-separated or repeated; default all)."),
    out: Optional[Path] = typer.Option(None, "--out", help="Results folder (default <root>/bench/<app>/<run-id>)."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of workload (default: the app's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the workload and the scheduler microbenchmark."),
    device: str = typer.Option("auto", "--device", help="cuda, cpu or auto."),
    telemetry: str = typer.Option("auto", "--telemetry", help="off, auto, jtop, sysfs, nvml or psutil."),
    decisions: int = typer.Option(1000, "--decisions", help="Scheduler decisions timed per queue length (0: skip)."),
    force: bool = typer.Option(False, "--force", help="Replace an existing --out folder."),
    drop_rule: str = typer.Option("shed", "--drop-rule", help="pantheon policies, a hopeless job: shed (drop the job that frees the most time), skip (drop it), keep (the reference's)."),
    downgrade: str = typer.Option("absolute", "--downgrade", help="pantheon policies: lower first the exit losing the least absolute or relative accuracy."),
    as_json: bool = typer.Option(False, "--json", help="Print the results as JSON."),
) -> None:
    """Policy comparison live on the device + scheduler microbenchmark, with fixed seeds, into one results folder.

    Example: pantheon bench --app digits --policies pantheon,edf,rtmdl --duration 10 --seed 0
    """
    from pantheon.bench.suite import bench_command

    bench_command(app_name, policies, out, duration, seed, device, telemetry, decisions, force, as_json, drop_rule,
                  downgrade)


# ---------------------------------------------------------------------------------------------
# The end-to-end demo
# ---------------------------------------------------------------------------------------------


@app.command("demo")
@handle_errors
def demo_cmd(
    out: Optional[Path] = typer.Option(
        None, "--out", help="Artifact-store root for the demo (default $PANTHEON_DATA or ./pantheon-data)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Fewer epochs and a shorter workload (~3 min)."),
    force: bool = typer.Option(False, "--force", help="Redo every stage even when its inputs are unchanged."),
    policies: Optional[List[str]] = typer.Option(
        None, "--policy", help="Compare only these policies (repeatable; default: all)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (the GPU when present), cuda or cpu."),
) -> None:
    """Run the whole pipeline with the bundled digits app: pretrain, slice, exits, export, profile
    through a real profiler server, plan, live runtime under every policy next to the simulator, report.

    Example: pantheon demo --quick
    """
    from pantheon.demo import demo

    demo(out, quick=quick, force=force, policies=policies, device=device)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
