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
    add_completion=False,
    pretty_exceptions_enable=False,
    context_settings={"help_option_names": ["-h", "--help"]},
)


def handle_errors(fn: F) -> F:
    """Turn library errors into one line on stderr and a non-zero exit code."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        from pantheon import console

        try:
            return fn(*args, **kwargs)
        except PantheonError as exc:
            if os.environ.get("PANTHEON_DEBUG"):
                raise
            console.error_line(str(exc))
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            console.error_line("interrupted")
            raise typer.Exit(130) from None
        except (typer.Exit, typer.Abort, SystemExit):
            raise
        except Exception as exc:  # a bug or an unwrapped third-party error: still one line
            if os.environ.get("PANTHEON_DEBUG"):
                raise
            msg = " ".join(str(exc).split()) or exc.__class__.__name__
            console.error_line(f"unexpected {exc.__class__.__name__}: {msg} (set PANTHEON_DEBUG=1 for a traceback)")
            raise typer.Exit(1) from None

    return wrapper  # type: ignore[return-value]


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


def parse_shape(text: str) -> List[int]:
    """``"3,224,224"`` -> ``[3, 224, 224]``; a bad shape is a usage error."""
    try:
        dims = [int(x) for x in text.replace("x", ",").split(",") if x.strip()]
    except ValueError:
        raise UsageError(f"bad shape {text!r}: expected comma-separated integers such as 3,224,224") from None
    if not dims or any(d <= 0 for d in dims):
        raise UsageError(f"bad shape {text!r}: every dimension must be a positive integer")
    return dims


# ---------------------------------------------------------------------------------------------
# Offline, on the desktop: zoo, slice, pretrain, construct, export        (issue 2)
# ---------------------------------------------------------------------------------------------


@app.command("zoo")
@handle_errors
def zoo_cmd(
    as_json: bool = typer.Option(False, "--json", help="Print JSON instead of a table."),
) -> None:
    """List the tasks of the zoo with their backbone, input shape, classes and training defaults.

    Example: pantheon zoo
    """
    raise UsageError("zoo: not implemented yet")


# ---------------------------------------------------------------------------------------------
# Profiling and planning: profiler-server, profile, plan, pipeline          (issue 3)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# Online: workload, runtime, simulate, report, bench                       (issue 4 / 5)
# ---------------------------------------------------------------------------------------------


# ---------------------------------------------------------------------------------------------
# The end-to-end demo                                                      (issue 7)
# ---------------------------------------------------------------------------------------------


def main() -> None:
    """Console-script entry point."""
    app()


if __name__ == "__main__":
    main()
