"""Checking command lines against the real CLI trees of ``pantheon`` and ``pantheon-deploy``.

``check_command("pantheon-deploy push --board nvidia@10.0.0.1")`` parses the line the way the
console script would (typer/click, every option and required option checked, nothing run) and
raises ``AssertionError`` naming the command and click's complaint when it does not parse.
Used by the error-hint tests and by the README/docs command test.
"""

from __future__ import annotations

import re
import shlex
from typing import List, Sequence

PROGRAMS = ("pantheon", "pantheon-deploy")
# A command inside a message: the program name, then everything up to a clause boundary.
_PROSE = {"or", "and", "then", "first", "to", "on", "once", "with", "if", "again", "instead"}
_IN_TEXT = re.compile(r"(?<![\w/.-])(pantheon(?:-deploy)?)((?:\s+[^\s;,()`'\"]+)+)")


def _app(prog: str):
    if prog == "pantheon":
        from pantheon.cli import app
    elif prog == "pantheon-deploy":
        from pantheon.deploy.cli import app
    else:
        raise AssertionError(f"not a pantheon program: {prog}")
    return app


def check_argv(argv: Sequence[str], name_only: bool = False) -> None:
    """Parse ``argv`` (program first) against its CLI without running anything.

    ``name_only``: ``argv`` names a command (``pantheon export``) or only the program's own options
    (``pantheon-deploy --data-root DIR``): the command must exist and the options must parse, but a
    command's required options may be left out.
    """
    from typer.main import get_command

    prog, args = argv[0], list(argv[1:])
    cmd = get_command(_app(prog))
    name, parent = prog, None
    try:
        while True:
            if name_only and parent is not None:
                return  # the command exists (resolve_command found it)
            ctx = cmd.make_context(name, list(args), parent=parent)
            rest = [*(getattr(ctx, "_protected_args", None) or getattr(ctx, "protected_args", None) or []),
                    *ctx.args]
            if not hasattr(cmd, "resolve_command"):
                return
            if not rest:
                if name_only:
                    return
                raise AssertionError(f"`{shlex.join(argv)}` names no command of {prog}")
            name, cmd, args = cmd.resolve_command(ctx, rest)
            parent = ctx
    except AssertionError:
        raise
    except Exception as exc:  # click's UsageError/BadParameter/MissingParameter/NoSuchOption
        if type(exc).__name__ == "Exit" and getattr(exc, "exit_code", 1) == 0:  # --help, --version
            return
        msg = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        raise AssertionError(f"`{shlex.join(argv)}` does not parse: {msg}") from None


def check_command(line: str) -> None:
    check_argv(shlex.split(line))


def commands_in(text: str) -> List[str]:
    """Every ``pantheon ...``/``pantheon-deploy ...`` command line named in a message."""
    out = []
    for m in _IN_TEXT.finditer(text):
        words = m.group(2).split()
        # a sentence goes on after the command: stop at the first word that is plain prose
        keep: List[str] = []
        for w in words:
            if w in _PROSE:
                break
            keep.append(w.rstrip(".:"))
        out.append(" ".join([m.group(1), *keep]))
    return out
