"""The ``pantheon`` command line.

The CLI is the only layer (with :mod:`pantheon.deploy.cli`) that imports typer. It is one root
app joined from sub-apps, one module per side of the pipeline:

* :mod:`pantheon.cli.offline`: zoo, pretrain, construct, export, slice, profiler-server,
  profile, plan, pipeline (the desktop);
* :mod:`pantheon.cli.online`: workload, runtime, simulate, report, repository, bench (the
  board and the analysis);
* here: the root options (``--version``, ``--data-root``) and ``demo``; :func:`_join` puts
  the sub-apps' commands at the top level.

The root callback makes the invocation's one :class:`~pantheon.formats.store.Store` from
``--data-root``/``$PANTHEON_DATA``; commands hand it down to the library. Errors are caught
once, in the root group (:class:`~pantheon.cli.common.ErrorHandlingGroup`): one red line on
stderr and exit code 1 (2 for usage errors); nothing prints a traceback unless
``PANTHEON_DEBUG=1``.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, List, Optional

import typer

from pantheon import __version__
from pantheon.cli import offline, online
from pantheon.cli.common import (
    TYPER_SETTINGS,
    ErrorHandlingGroup,
    get_store,
    os_error_line,
    parse_shape,
    policy_choice,
    store_callback,
)

if TYPE_CHECKING:
    from pantheon.demo import DemoResult

__all__ = ["app", "main", "os_error_line", "parse_shape"]

app = typer.Typer(
    name="pantheon",
    help="Pantheon: slice DNNs, add early exits, plan exits, and run them preemptively on one GPU.",
    cls=ErrorHandlingGroup,
    pretty_exceptions_enable=False,
    **TYPER_SETTINGS,
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pantheon {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
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
    store_callback(ctx, data_root)


demo_app = typer.Typer(**TYPER_SETTINGS)


@demo_app.command("demo")
def demo_cmd(
    ctx: typer.Context,
    out: Optional[Path] = typer.Option(
        None, "--out", help="Artifact-store root for the demo (default $PANTHEON_DATA or ./pantheon-data)."
    ),
    quick: bool = typer.Option(False, "--quick", help="Fewer epochs and a shorter workload (~3 min)."),
    force: bool = typer.Option(False, "--force", help="Redo every stage even when its inputs are unchanged."),
    policies: Optional[List[str]] = typer.Option(
        None, "--policy", **policy_choice(), help="Compare only these policies (repeatable; default: all)."
    ),
    device: str = typer.Option("auto", "--device", help="auto (the GPU when present), cuda or cpu."),
) -> None:
    """Run the whole pipeline with the bundled digits app: pretrain, slice, exits, export, profile
    through a real profiler server, plan, live runtime under every policy next to the simulator, report.

    Example: pantheon demo --quick
    """
    from pantheon.demo import demo
    from pantheon.formats.store import Store

    store = Store(out) if out is not None else get_store(ctx)
    print_demo(demo(store, quick=quick, force=force, policies=policies, device=device,
                    on_stage=offline.print_stage, on_pipeline=offline.print_pipeline))


def print_demo(res: DemoResult) -> None:
    """The policies side by side (live DMR next to the simulated one) and where the report went."""
    from pantheon import console
    from pantheon.analysis.report import columns, compare_rows

    console.print_table(f"digits demo: {res.rows[0]['jobs']} jobs, live on {res.device} (and simulated)",
                        columns(res.rows), compare_rows(res.rows))
    console.out.print(f"report: {res.report / 'report.md'} (plots: {res.report}/*.png)")
    console.info(f"demo finished in {res.seconds:.0f} s")




def _join(root: typer.Typer, *parts: typer.Typer) -> None:
    """Put the commands and groups of ``parts`` at the top level of ``root`` (``pantheon slice``, not
    ``pantheon offline slice``). Done by hand, not with a nameless ``add_typer``: typer merges those
    only since 0.15, and the board images may carry an older one."""
    for part in parts:
        root.registered_commands.extend(part.registered_commands)
        root.registered_groups.extend(part.registered_groups)


_join(app, offline.app, online.app, demo_app)


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
