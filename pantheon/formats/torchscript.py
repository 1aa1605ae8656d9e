"""TorchScript files across torch versions: what a chunk file needs from the torch that loads it.

The desktop exports chunks with its torch (2.14 in the venv, 2.5 in the desktop image); the
board loads them with the torch of its l4t-pytorch image (2.0.0a0+nv23 on JetPack 5). Two
things decide whether a file loads:

* the *file format version*, the ``<archive>/version`` record of the zip that
  ``torch.jit.save`` (and ``torch.save``) writes. It is 3 unless an operator with a changed
  schema bumps it; every torch from 2.0 to 2.14 reads up to :data:`MAX_READABLE_FORMAT` and
  refuses anything newer ("Attempted to read a PyTorch file with version 11, but the maximum
  supported version for reading is 10").
* the operators the serialized code calls. The exporter uses only ``torch.jit.script`` /
  ``torch.jit.trace`` of the zoo's layers (no ``torch.export`` archives, which 2.0 cannot
  read), and ``tests/test_torchscript_compat.py`` loads real exports with the oldest torch
  the runtime image supports (:data:`OLDEST_BOARD_TORCH`) and compares their outputs.

This module reads the zip records only (no torch import), so the deploy side can check a
bundle against a board's torch version before sending it.

Example::

    needs = needs_of(Path("repository"))          # TorchNeeds(format_version=3, files=42)
    problem = refusal(needs, "2.0.0a0+ec3941ad.nv23.02")   # None: it loads
"""

from __future__ import annotations

import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Optional, Tuple

from pantheon.errors import ArtifactError

#: The oldest torch the runtime image supports (l4t-pytorch r35.2.1, JetPack 5).
OLDEST_BOARD_TORCH: Tuple[int, int] = (2, 0)
#: The newest file format version every torch from OLDEST_BOARD_TORCH on reads (measured on
#: 2.0.1 and 2.14.1: both read 10 and refuse 11).
MAX_READABLE_FORMAT = 10

_RELEASE = re.compile(r"^\s*(\d+)\.(\d+)")


def torch_release(version: str) -> Tuple[int, int]:
    """``"2.0.0a0+ec3941ad.nv23.02"`` -> ``(2, 0)``: NVIDIA's pre-release builds count as their release.

    Raises ValueError for a string that does not start with ``major.minor``.
    """
    m = _RELEASE.match(version)
    if not m:
        raise ValueError(f"not a torch version: {version!r}")
    return int(m.group(1)), int(m.group(2))


def file_format_version(path: Path) -> int:
    """The file format version recorded in a ``torch.jit.save`` / ``torch.save`` zip.

    Raises ArtifactError when the file is not a torch zip archive.
    """
    try:
        with zipfile.ZipFile(path) as z:
            records = [n for n in z.namelist() if n.count("/") == 1 and n.endswith("/version")]
            if not records:
                raise ArtifactError(f"{path} is not a torch archive (no version record)")
            return int(z.read(records[0]).decode().strip())
    except (zipfile.BadZipFile, ValueError, OSError) as exc:
        raise ArtifactError(f"{path} is not a readable torch archive: {exc}") from exc


@dataclass(frozen=True)
class TorchNeeds:
    """What a set of torch files needs from the torch that loads them."""

    format_version: int  # the highest file format version among the files
    files: int  # how many torch files were read
    newest: str = ""  # the file with that version (for messages)


def needs_of(paths: Iterable[Path]) -> TorchNeeds:
    """The needs of the ``.pt`` files among ``paths`` (directories are searched recursively)."""
    files = []
    for p in paths:
        p = Path(p)
        files.extend(sorted(p.rglob("*.pt")) if p.is_dir() else [p] if p.suffix == ".pt" else [])
    best, newest = 0, ""
    for f in files:
        v = file_format_version(f)
        if v > best:
            best, newest = v, f.name
    return TorchNeeds(best, len(files), newest)


def refusal(needs: TorchNeeds, board_torch: Optional[str]) -> Optional[str]:
    """Why a torch of version ``board_torch`` cannot load files with ``needs``; None when it can.

    ``board_torch`` None (no torch found) is a refusal too.
    """
    oldest = ".".join(map(str, OLDEST_BOARD_TORCH))
    if not board_torch:
        return "the board's image has no torch"
    try:
        release = torch_release(board_torch)
    except ValueError:
        return f"the board's image reports torch {board_torch!r}, which is not a version"
    if release < OLDEST_BOARD_TORCH:
        return (f"the board's image has torch {board_torch}, older than {oldest}, the oldest the runtime supports: "
                f"build the runtime image FROM an l4t-pytorch with torch >= {oldest} (JetPack 5 or later)")
    if needs.format_version > MAX_READABLE_FORMAT:
        return (f"{needs.newest} is TorchScript file format {needs.format_version}; torch {board_torch} on the board "
                f"reads up to {MAX_READABLE_FORMAT}: export with a torch that writes format <= {MAX_READABLE_FORMAT}")
    return None
