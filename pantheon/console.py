"""Terminal output shared by every command: tables, progress bars, one-line errors.

Library code reports progress through :func:`progress` (a rich progress bar
that degrades to nothing when stderr is not a terminal and
``PANTHEON_PROGRESS=0``) and status lines through :func:`info`; it returns results,
which the CLI prints as tables through :func:`print_table`.
"""

from __future__ import annotations

import os
from typing import Any, Iterable, Optional, Sequence

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    SpinnerColumn,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.table import Table

out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)


def info(msg: str) -> None:
    """A status line on stderr (keeps stdout clean for --json)."""
    err.print(msg)


def warn(msg: str) -> None:
    err.print(f"[yellow]warning:[/yellow] {msg}")


def error_line(msg: str) -> None:
    """The one red line a failing command prints; ``msg`` is plain text (``[fe80::1]`` is no markup)."""
    from rich.text import Text

    err.print(Text.assemble(("error:", "bold red"), " ", msg), highlight=False)


def progress(transient: bool = False) -> Progress:
    """A rich progress bar on stderr. Use as a context manager; add tasks with ``add_task``."""
    disable = os.environ.get("PANTHEON_PROGRESS", "1") == "0"
    return Progress(
        SpinnerColumn(),
        TextColumn("[progress.description]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
        console=err,
        transient=transient,
        disable=disable,
    )


def make_table(title: Optional[str], columns: Sequence[str], rows: Iterable[Sequence[Any]]) -> Table:
    table = Table(title=title, show_lines=False)
    for c in columns:
        table.add_column(str(c), overflow="fold")
    for r in rows:
        table.add_row(*("" if v is None else str(v) for v in r))
    return table


def print_table(title: Optional[str], columns: Sequence[str], rows: Iterable[Sequence[Any]], to_stderr: bool = False) -> None:
    (err if to_stderr else out).print(make_table(title, columns, rows))
