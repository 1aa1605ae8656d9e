"""The ``pantheon-deploy`` command line (typer).

Every board command takes ``--board [user@]host[:port]`` (repeatable) or ``--inventory FILE``,
acts on all boards in parallel (``--jobs``) and ends with a per-board table; ``--dry-run``
prints each action as the equivalent ``ssh``/``docker`` command instead of running it (reads
that plan the actions still run). Real runs save those commands as ``commands.sh`` under
``<store>/deploy/<board>/`` (and, for ``run``, beside the collected logs).

Command bodies only gather options and call the library modules, imported lazily. The board
options are declared once (:data:`BOARD_OPTIONS`, added by :func:`board_options`); errors are
caught once, in the root group (:class:`~pantheon.cli.common.ErrorHandlingGroup`); the
``--data-root`` callback makes the one local store the commands hand down.
"""

from __future__ import annotations

import enum
import functools
import inspect
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple, TypeVar

import typer

from pantheon import __version__
from pantheon.cli.common import (
    TYPER_SETTINGS,
    DeployErrorHandlingGroup,
    get_store,
    policies_help,
    policy_choice,
    store_callback,
    telemetry_backends,
    telemetry_choice,
)

F = TypeVar("F", bound=Callable[..., Any])

app = typer.Typer(
    name="pantheon-deploy",
    help="Build, push and run Pantheon containers on Jetson boards over SSH.",
    cls=DeployErrorHandlingGroup,
    pretty_exceptions_enable=False,
    **TYPER_SETTINGS,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pantheon-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
    data_root: Optional[Path] = typer.Option(
        None, "--data-root", envvar="PANTHEON_DATA",
        help="Local artifact store (default ./pantheon-data, where `docker compose up trainer` writes).",
    ),
) -> None:
    """Build, push and run Pantheon containers on Jetson boards over SSH.

    Typical sequence (board at 192.168.55.1, user nvidia):

      pantheon-deploy build --board nvidia@192.168.55.1

      pantheon-deploy push --board nvidia@192.168.55.1

      pantheon-deploy setup --board nvidia@192.168.55.1 --nvpmodel 8 --jetson-clocks

      pantheon-deploy run --board nvidia@192.168.55.1

    The app defaults to --app, else $PANTHEON_APP, else the only app in the local store.
    """
    store_callback(ctx, data_root)


# ---------------------------------------------------------------------------------------------
# Options shared by the board commands
# ---------------------------------------------------------------------------------------------

# (parameter name, annotation, typer option): the connection and fleet options of every board command.
BOARD_OPTIONS: Tuple[Tuple[str, Any, Any], ...] = (
    ("board", List[str], typer.Option([], "--board", "-b", help="Board as [user@]host[:port]; repeat for several boards.")),
    ("inventory", Optional[Path], typer.Option(None, "--inventory", "-I", help="Inventory YAML of boards (host, user, port, identity, labels).")),
    ("label", List[str], typer.Option([], "--label", "-l", help="Only inventory boards with this KEY=VALUE label; repeatable.")),
    ("user", Optional[str], typer.Option(None, "--user", "-u", help="SSH user (default: from the board spec or your ssh config).")),
    ("port", Optional[int], typer.Option(None, "--port", "-p", help="SSH port (default 22 or your ssh config).")),
    ("identity", Optional[Path], typer.Option(None, "--identity", "-i", help="Private key file (ssh -i); else your agent and default keys.")),
    ("known_hosts", Optional[Path], typer.Option(None, "--known-hosts", help="known_hosts file to check host keys against (default ssh's).")),
    ("accept_new_host_key", bool, typer.Option(False, "--accept-new-host-key", help="Record the host key of a board seen for the first time.")),
    ("connect_timeout", int, typer.Option(5, "--connect-timeout", help="Seconds to wait for a board to answer.")),
    ("remote_root", Optional[str], typer.Option(None, "--remote-root", help="Data root on the board, bind-mounted at /data (default /var/lib/pantheon/data).")),
    ("jobs", int, typer.Option(4, "--jobs", "-j", help="Boards worked on at once.")),
    ("dry_run", bool, typer.Option(False, "--dry-run", help="Print every action as its ssh/docker command instead of running it.")),
)
LABEL = BOARD_OPTIONS[2][2]
IMAGE = typer.Option("pantheon-jetson:latest", "--image", help="Runtime image tag on the board.")


def board_options(dry_run: bool = True) -> Callable[[F], F]:
    """Give a command the board options of :data:`BOARD_OPTIONS` and pass them as one ``common``.

    The decorated function declares ``common`` (a :class:`~pantheon.deploy.fleet.Common`) in
    place of the twelve options; its typer signature gets them back, after its own options, so
    the command lines users type are those of every other board command. ``dry_run=False``
    leaves ``--dry-run`` out (commands that only read).
    """

    def deco(fn: F) -> F:
        sig = inspect.signature(fn)
        own = [p for p in sig.parameters.values() if p.name != "common"]
        shared = [inspect.Parameter(name, inspect.Parameter.KEYWORD_ONLY, default=opt, annotation=ann)
                  for name, ann, opt in BOARD_OPTIONS if dry_run or name != "dry_run"]
        names = [p.name for p in shared]
        # typer hands the invocation's context (and so its store) to a parameter typed typer.Context
        context = inspect.Parameter("board_ctx", inspect.Parameter.KEYWORD_ONLY, annotation=typer.Context)

        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            values = {n: kwargs.pop(n) for n in names}
            kwargs["common"] = _common(store=get_store(kwargs.pop("board_ctx")), **values)
            return fn(*args, **kwargs)

        wrapper.__signature__ = sig.replace(parameters=[*own, context, *shared])  # type: ignore[attr-defined]
        return wrapper  # type: ignore[return-value]

    return deco


APP_HELP = "App (store apps/<app>/); default $PANTHEON_APP, else the only app in the local store."


def _app(app_name: Optional[str], store: Any) -> str:
    """``--app``, ``$PANTHEON_APP`` or the store's only app; says which when it chose."""
    from pantheon import console
    from pantheon.deploy.push import resolve_app

    name, how = resolve_app(app_name, store)
    if how:
        console.info(f"app {name} ({how})")
    return name


class Target(str, enum.Enum):
    jetson = "jetson"
    desktop = "desktop"


class ImageSource(str, enum.Enum):
    auto = "auto"
    load = "load"
    build = "build"
    skip = "skip"


def _telemetry_help() -> str:
    return "Telemetry backend in the container: " + ", ".join(telemetry_backends()) + "."


def _common(board: List[str], inventory: Optional[Path], label: List[str], user: Optional[str], port: Optional[int],
            identity: Optional[Path], known_hosts: Optional[Path], accept_new_host_key: bool, connect_timeout: int,
            remote_root: Optional[str], jobs: int, dry_run: bool = False, store: Any = None) -> Any:
    from pantheon.deploy.fleet import Common, Connection

    conn = Connection(user=user, port=port, identity=str(identity) if identity else None,
                      known_hosts=str(known_hosts) if known_hosts else None,
                      accept_new_host_key=accept_new_host_key, connect_timeout=connect_timeout, remote_root=remote_root)
    return Common(boards=board, inventory=inventory, labels=label, conn=conn, jobs=jobs, dry_run=dry_run,
                  store=store)


def _on_boards(name: str, common: Any, fn: Callable[..., Tuple[str, Dict[str, Any]]], as_json: bool = False) -> None:
    """Open a session per board, run ``fn(ctx, session)``, exit with the fleet's code."""
    from pantheon.deploy.fleet import execute
    from pantheon.deploy.ssh import Session

    def verb(ctx: Any) -> Tuple[str, Dict[str, Any]]:
        with Session(ctx.board, ctx.recorder) as session:
            return fn(ctx, session)

    code = execute(name, common, verb, as_json=as_json)
    if code:
        raise typer.Exit(code)


# ---------------------------------------------------------------------------------------------
# Commands
# ---------------------------------------------------------------------------------------------


@app.command("build")
@board_options()
def build_cmd(
    target: Target = typer.Option(Target.jetson, "--target", help="Which image: jetson (runtime) or desktop (trainer)."),
    base_image: Optional[str] = typer.Option(None, "--base-image", help="BASE_IMAGE (default: chosen from the board's L4T)."),
    tag: Optional[str] = typer.Option(None, "--tag", help="Image tag (default pantheon-<target>:latest)."),
    wheelhouse: Optional[Path] = typer.Option(None, "--wheelhouse", help="Folder of wheels offered to pip in the build."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-board results as JSON on stdout."),
    common: Any = None,
) -> None:
    """Build the runtime image locally, or with --board on the board's own engine over SSH.

    On a board the l4t-pytorch base matching its /etc/nv_tegra_release is chosen unless --base-image is given. Same build arguments as `make image-jetson` / `make image-desktop`.

    Examples:

      pantheon-deploy build --board nvidia@192.168.55.1

      pantheon-deploy build --target desktop --tag pantheon-desktop:latest

      pantheon-deploy build --base-image pantheon-test-base:bookworm --wheelhouse /opt/wheels --tag pantheon-jetson:test
    """
    from pantheon.deploy import build

    w = str(wheelhouse) if wheelhouse else None
    dry_run = common.dry_run
    if not common.boards and common.inventory is None:
        from pantheon import console
        from pantheon.deploy.fleet import Ctx
        from pantheon.deploy.ssh import Board, Recorder

        ctx = Ctx(Board(host="localhost", name="local"), Recorder(dry_run=dry_run), dry_run, store=common.store)
        res = build.build_local(ctx, target.value, base_image, tag, w)
        console.info(f"built {res['tag']}" if not dry_run else "dry run: 1 action listed")
        return
    _on_boards("build", common, lambda ctx, s: build.build_on_board(ctx, s, target.value, base_image, tag, w),
               as_json=as_json)


@app.command("push")
@board_options()
def push_cmd(
    app_name: Optional[str] = typer.Option(None, "--app", "-a", help=APP_HELP),
    image: str = IMAGE,
    image_source: ImageSource = typer.Option(ImageSource.auto, "--image-source",
                                             help="auto, load (docker save|load), build (on the board) or skip."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-board results as JSON on stdout."),
    common: Any = None,
) -> None:
    """Put the runtime image and an app's deployment bundle on the board(s).

    The bundle (model repository, workload, app file, manifests) is uploaded into a temporary folder, every sha256 is verified on the board, then it is switched into place; files that are already there are not sent again, and an interrupted push leaves the previous bundle.

    Examples:

      pantheon-deploy push --board nvidia@192.168.55.1 --app digits

      pantheon-deploy push --inventory boards.yaml --app traffic --jobs 8

      pantheon-deploy push --board nvidia@192.168.55.1 --app digits --image-source skip --dry-run
    """
    from pantheon.deploy import push

    bundle = push.local_bundle(_app(app_name, common.store), common.store)
    _on_boards("push", common, lambda ctx, s: push.push_to_board(ctx, s, bundle, image, image_source.value),
               as_json=as_json)


@app.command("setup")
@board_options()
def setup_cmd(
    nvpmodel: Optional[str] = typer.Option(None, "--nvpmodel", help="Power mode id or name (or 'bench': the preset's)."),
    jetson_clocks: bool = typer.Option(False, "--jetson-clocks/--no-jetson-clocks", help="Pin clocks to the mode's maximum."),
    restore: bool = typer.Option(False, "--restore", help="Undo: restore the stored mode and clocks."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-board results as JSON on stdout."),
    common: Any = None,
) -> None:
    """Set the Jetson power mode (nvpmodel) and pin clocks (jetson_clocks) through sudo; verify.

    Lists the board's modes (nvpmodel -p --verbose); stores the current mode and clocks before the first change, so --restore can undo it. Without options it only shows the modes.

    Examples:

      pantheon-deploy setup --board nvidia@192.168.55.1 --nvpmodel 8 --jetson-clocks

      pantheon-deploy setup --board nvidia@192.168.55.1 --nvpmodel MODE_20W_6CORE

      pantheon-deploy setup --board nvidia@192.168.55.1 --restore
    """
    from pantheon.deploy import setup

    _on_boards("setup", common, lambda ctx, s: setup.setup_board(ctx, s, nvpmodel, jetson_clocks, restore),
               as_json=as_json)


@app.command("run")
@board_options()
def run_cmd(
    app_name: Optional[str] = typer.Option(None, "--app", "-a", help=APP_HELP),
    policy: str = typer.Option("pantheon", "--policy", **policy_choice(),
                               help="Scheduling policy: " + policies_help() + "."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of workload (default: the pushed workload)."),
    telemetry: str = typer.Option("auto", "--telemetry", **telemetry_choice(), help=_telemetry_help()),
    nvidia_runtime: bool = typer.Option(True, "--nvidia-runtime/--no-nvidia-runtime",
                                        help="Run with --runtime nvidia (off: a CPU trial)."),
    device: str = typer.Option("auto", "--device", help="Runtime device: auto, cuda or cpu."),
    image: str = IMAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the per-board results as JSON on stdout."),
    common: Any = None,
) -> None:
    """Run an app's workload in the runtime container on the board; collect logs and print the report.

    The container gets --runtime nvidia, --network host, the data root at /data, /etc/nv_tegra_release (read-only) and /run/jtop.sock when present; never --privileged. Ctrl-C stops it and still collects what it wrote.

    Examples:

      pantheon-deploy run --board nvidia@192.168.55.1 --app digits

      pantheon-deploy run --board nvidia@192.168.55.1 --app traffic --policy edf --duration 30

      pantheon-deploy run --board 10.0.0.5 --app digits --no-nvidia-runtime --device cpu
    """
    from pantheon.deploy import run

    name = _app(app_name, common.store)
    _on_boards("run", common, lambda ctx, s: run.run_app(ctx, s, name, policy=policy, duration=duration,
                                                         telemetry=telemetry, image=image, nvidia=nvidia_runtime,
                                                         device=device), as_json=as_json)


@app.command("collect")
@board_options()
def collect_cmd(
    run_id: Optional[str] = typer.Option(None, "--run", help="Run id to collect (default: every run not yet here)."),
    app_name: Optional[str] = typer.Option(None, "--app", "-a", help="Only runs of this app."),
    as_json: bool = typer.Option(False, "--json", help="Print the per-board results as JSON on stdout."),
    common: Any = None,
) -> None:
    """Bring run logs (events, telemetry, summary, manifest) from the board into the local store.

    Every file is checked against its sha256 on the board; the result lands in <store>/logs/<app>/<run-id>/, ready for `pantheon report`.

    Examples:

      pantheon-deploy collect --board nvidia@192.168.55.1

      pantheon-deploy collect --board nvidia@192.168.55.1 --run 20250101T120000Z-1a2b3c
    """
    from pantheon.deploy import collect

    _on_boards("collect", common, lambda ctx, s: collect.collect_command(ctx, s, run_id, app_name),
               as_json=as_json)


@app.command("bench")
@board_options()
def bench_cmd(
    app_name: Optional[str] = typer.Option(None, "--app", "-a", help=APP_HELP),
    policies: List[str] = typer.Option([], "--policies", "--policy", **policy_choice(split=True),
                                       help="Policies to compare; repeatable (default all): " + policies_help() + "."),
    duration: Optional[float] = typer.Option(None, "--duration", help="Seconds of workload per policy (default: the app's)."),
    seed: int = typer.Option(0, "--seed", help="Seed of the workload and the scheduler microbenchmark."),
    max_jobs: Optional[int] = typer.Option(None, "--max-jobs", help="Raise the workload's job limit (pantheon bench's)."),
    max_span: Optional[float] = typer.Option(None, "--max-span", help="Raise the workload's span limit, seconds."),
    telemetry: str = typer.Option("auto", "--telemetry", **telemetry_choice(), help=_telemetry_help()),
    nvidia_runtime: bool = typer.Option(True, "--nvidia-runtime/--no-nvidia-runtime",
                                        help="Run with --runtime nvidia (off: a CPU trial)."),
    device: str = typer.Option("auto", "--device", help="Device in the container: auto, cuda or cpu."),
    image: str = IMAGE,
    as_json: bool = typer.Option(False, "--json", help="Print the per-board results as JSON on stdout."),
    common: Any = None,
) -> None:
    """Run the reproducible benchmark container (`pantheon bench --app APP`) and collect its results.

    Examples:

      pantheon-deploy bench --board nvidia@192.168.55.1 --app digits

      pantheon-deploy bench --board nvidia@192.168.55.1 --app traffic --policies pantheon --policies edf
    """
    from pantheon.deploy import run

    name = _app(app_name, common.store)
    run.bench_command(name, "/data", duration=duration, seed=seed, max_jobs=max_jobs, max_span_s=max_span)  # checks
    _on_boards("bench", common, lambda ctx, s: run.bench_app(
        ctx, s, name, policies=policies, image=image, nvidia=nvidia_runtime, device=device,
        telemetry=telemetry, duration=duration, seed=seed, max_jobs=max_jobs, max_span_s=max_span), as_json=as_json)


@app.command("status")
@board_options(dry_run=False)
def status_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of tables."),
    common: Any = None,
) -> None:
    """Engine, images (ids, digests, L4T fit), L4T, power mode, clocks, jtop, disk and bundles of the board(s).

    Examples:

      pantheon-deploy status --board nvidia@192.168.55.1

      pantheon-deploy status --inventory boards.yaml --json
    """
    from pantheon.deploy import status

    _on_boards("status", common, status.board_status, as_json=as_json)


@app.command("boards")
def boards_cmd(
    inventory: Path = typer.Option(..., "--inventory", "-I", help="Inventory YAML of boards."),
    label: List[str] = LABEL,
) -> None:
    """List the boards of an inventory as they will be reached (no connection is made).

    Example: pantheon-deploy boards --inventory boards.yaml --label site=lab
    """
    from rich.markup import escape

    from pantheon import console
    from pantheon.deploy.fleet import Connection, select_boards

    rows = [(b.name, escape(b.address), b.identity or "", b.remote_root, ",".join(f"{k}={v}" for k, v in b.labels.items()),
             b.preset or "") for b in select_boards([], inventory, Connection(), label)]
    console.print_table("boards", ["name", "address", "identity", "remote root", "labels", "preset"], rows)


def main() -> None:
    app()


if __name__ == "__main__":
    main()
