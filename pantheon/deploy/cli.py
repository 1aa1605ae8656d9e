"""The ``pantheon-deploy`` command line (typer)."""

from __future__ import annotations

import typer

from pantheon import __version__

app = typer.Typer(
    name="pantheon-deploy",
    help="Build, push and run Pantheon containers on Jetson boards over SSH.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def _version_callback(value: bool) -> None:
    if value:
        typer.echo(f"pantheon-deploy {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    version: bool = typer.Option(
        False, "--version", callback=_version_callback, is_eager=True, help="Print the version and exit."
    ),
) -> None:
    """Build, push and run Pantheon containers on Jetson boards over SSH."""


def main() -> None:
    app()


if __name__ == "__main__":
    main()
