"""What every command of ``pantheon`` and ``pantheon-deploy`` shares.

* :class:`ErrorHandlingGroup`: the root command group of both programs. Errors are caught
  once, around the whole invocation: a :class:`~pantheon.errors.PantheonError` becomes one
  red line on stderr and its exit code (1, or 2 for usage errors); an :class:`OSError`, a
  refused value or an unexpected exception also becomes one line and exit code 1; Ctrl-C is
  exit code 130. ``PANTHEON_DEBUG=1`` lets the traceback through.
* :func:`get_store`: the one :class:`~pantheon.formats.store.Store` made from ``--data-root``
  by the root callback and handed down to the library calls.
* :class:`RegistryChoice`: an option whose choices come from a library registry
  (:data:`~pantheon.online.scheduler.POLICIES`, the telemetry backends), refused with the
  registry's own one-line usage error.

Annotations use ``typing.Optional``/``List``: typer evaluates them at run time and the board
image may run Python 3.8.
"""

from __future__ import annotations

import contextlib
import errno
import importlib
import os
import sys
from pathlib import Path
from typing import Any, Callable, Dict, Iterator, List, Optional, Sequence, Tuple, Type

import typer
from typer.core import TyperGroup

from pantheon.errors import PantheonError, UsageError
from pantheon.formats.store import Store

# Help text is plain: option synopses such as "[--host H]" or "[user@]host[:port]" must not be
# read as rich markup.
TYPER_SETTINGS: dict = {
    "no_args_is_help": True,
    "rich_markup_mode": None,
    "context_settings": {"help_option_names": ["-h", "--help"]},
}

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
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError, AttributeError):
        pass


def _click_exits() -> Tuple[Type[BaseException], ...]:
    """click's own exceptions (usage errors, exits, aborts): of click, and of the copy of click
    that newer typer releases carry inside (``typer._click``). Either may be absent: typer < 0.20
    uses click itself, newer ones do not depend on it (the runtime image locks no click)."""
    mods: List[Any] = []
    for name in ("click.exceptions", "typer._click.exceptions"):
        try:
            mods.append(importlib.import_module(name))
        except ImportError:
            pass
    names = ("ClickException", "Exit", "Abort")  # the vendored copy raises typer.Exit/typer.Abort
    return tuple(getattr(m, n) for m in mods for n in names if hasattr(m, n))


_CLICK_EXITS = _click_exits()


@contextlib.contextmanager
def errors_to_exit_codes(record_interrupts: bool = True) -> Iterator[None]:
    """Turn every error raised inside into one line on stderr and a non-zero exit code.

    ``record_interrupts``: also record SIGINT, so that a Ctrl-C library code swallows is not
    lost (see :mod:`pantheon.errors`). ``pantheon-deploy`` handles Ctrl-C itself (stop the
    board's container, then collect what it wrote), so it does not record.
    """
    from pantheon import console
    from pantheon.errors import clear_interrupt, interrupt_pending, recorded_interrupts

    debug = bool(os.environ.get("PANTHEON_DEBUG"))
    passthrough: Tuple[Type[BaseException], ...] = (*_CLICK_EXITS, typer.Exit, typer.Abort, SystemExit)
    try:
        with recorded_interrupts() if record_interrupts else contextlib.nullcontext():
            try:
                yield
            except passthrough:
                raise
            except Exception:
                if interrupt_pending():  # an error a swallowed Ctrl-C caused: report the interrupt
                    raise KeyboardInterrupt from None
                raise
        if interrupt_pending():  # swallowed, and nothing sealed since: still an interrupted command
            raise KeyboardInterrupt
    except passthrough:
        raise  # click's own usage errors and exits keep their meaning
    except PantheonError as exc:
        if debug:
            raise
        console.error_line(_user_paths(str(exc)))
        raise typer.Exit(exc.exit_code) from None
    except KeyboardInterrupt:
        clear_interrupt()
        console.error_line("interrupted")
        raise typer.Exit(130) from None
    except BrokenPipeError:  # `pantheon ... --json | head`: the reader left; stay quiet on exit
        _silence_stdout()
        console.error_line("output closed early (broken pipe); nothing else to do")
        raise typer.Exit(1) from None
    except OSError as exc:  # read-only, full, is-a-directory, not-a-directory, permission...
        if debug:
            raise
        console.error_line(os_error_line(exc))
        raise typer.Exit(1) from None
    except (ValueError, OverflowError) as exc:  # a value a parser refused (bad number, bad text)
        if debug:
            raise
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        console.error_line(f"invalid value: {msg} (check the options and input files of this command)")
        raise typer.Exit(1) from None
    except Exception as exc:  # a bug or an unwrapped third-party error: still one line
        if debug:
            raise
        msg = " ".join(str(exc).split()) or exc.__class__.__name__
        console.error_line(f"unexpected {exc.__class__.__name__}: {msg} (set PANTHEON_DEBUG=1 for a traceback)")
        raise typer.Exit(1) from None


class ErrorHandlingGroup(TyperGroup):
    """The root group: the one place where errors of any command become exit codes."""

    record_interrupts = True

    def invoke(self, ctx: Any) -> Any:
        with errors_to_exit_codes(self.record_interrupts):
            return super().invoke(ctx)


class DeployErrorHandlingGroup(ErrorHandlingGroup):
    """``pantheon-deploy``'s root group: its commands handle Ctrl-C themselves (stop, collect)."""

    record_interrupts = False


class RegistryChoice:
    """The parser of a string option whose values are a library registry's names.

    ``check`` is the library's own validator: a refused value raises the one-line usage
    error users already know (``unknown policy 'sjf': choose one of ...``), turned into exit
    code 2 by :class:`ErrorHandlingGroup`. ``split`` accepts comma-separated lists
    (``--policies pantheon,edf``). :meth:`option` gives the keyword arguments of
    ``typer.Option``: the parser, a ``[a|b|...]`` metavar and shell completion.
    """

    __name__ = "choice"  # click names the parameter type after its parser

    def __init__(self, choices: Sequence[str], check: Callable[[str], Any], split: bool = False) -> None:
        self.choices = tuple(choices)
        self.check = check
        self.split = split

    def __call__(self, value: str) -> str:
        for part in (p.strip() for p in str(value).split(",")) if self.split else [str(value)]:
            if part:
                self.check(part)
        return value

    def complete(self, incomplete: str) -> List[str]:
        return [c for c in self.choices if c.startswith(incomplete)]

    def option(self) -> Dict[str, Any]:
        return {"parser": self, "metavar": "[" + "|".join(self.choices) + "]", "autocompletion": self.complete}


def _check_in(choices: Sequence[str], what: str) -> Callable[[str], str]:
    def check(value: str) -> str:
        if value not in choices:
            raise UsageError(f"unknown {what} {value!r}: choose one of {', '.join(choices)}")
        return value

    return check


def policy_choice(split: bool = False) -> Dict[str, Any]:
    """``typer.Option`` arguments for the policies of :data:`pantheon.online.scheduler.POLICIES`."""
    from pantheon.online.scheduler import POLICIES, check_policy

    return RegistryChoice(POLICIES, check_policy, split=split).option()


def policies_help() -> str:
    from pantheon.online.scheduler import POLICIES

    return ", ".join(POLICIES)


def telemetry_backends() -> tuple:
    """The telemetry backends of :mod:`pantheon.platform.telemetry`, then ``off``."""
    from pantheon.platform.telemetry.sampler import BACKENDS

    return (*BACKENDS, "off")


def telemetry_choice() -> Dict[str, Any]:
    """``typer.Option`` arguments for the telemetry backends (:func:`telemetry_backends`)."""
    backends = telemetry_backends()
    return RegistryChoice(backends, _check_in(backends, "telemetry backend")).option()


def scheduler_choice(which: str) -> Dict[str, Any]:
    """``typer.Option`` arguments for ``drop-rule`` or ``downgrade``, the pantheon policies' knobs."""
    from pantheon.online.scheduler import DOWNGRADES, DROP_RULES, check_choice

    choices = DROP_RULES if which == "drop-rule" else DOWNGRADES
    return RegistryChoice(choices, lambda v: check_choice(v, choices, f"--{which}")).option()


def margin_option() -> Any:
    """``--margin``: the pantheon refresh's safety margin (checked by the library: one line)."""
    from pantheon.online.scheduler import DEFAULT_MARGIN

    return typer.Option(DEFAULT_MARGIN, "--margin", help=(
        "pantheon policies: plan each job to finish by its deadline less this fraction of the planned "
        "time ahead, and keep at most one job late by no more than it rather than drop it (slack, and a "
        "bet, against latency noise; 0: plan to the deadline, no bet)."))


def store_callback(ctx: typer.Context, data_root: Optional[Path]) -> None:
    """Make the one store of this invocation from ``--data-root`` (or ``$PANTHEON_DATA``)."""
    ctx.obj = Store(data_root)


def get_store(ctx: Any) -> Store:
    """The store the root callback made (``ctx`` is the command's ``typer.Context``)."""
    obj = ctx.find_object(Store)
    return obj if obj is not None else Store()


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
