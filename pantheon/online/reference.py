"""Import a model repository of the reference artifact as a verified repository of ours.

The reference artifact ships a repository per app as::

    <src>/<task>/config.pbtxt                  the same ModelConfig text format as ours
    <src>/<task>/model_files/block_XX.pth      TorchScript (torch.jit.trace + torch.jit.save),
    <src>/<task>/model_files/branch_XX.pth     loaded by its runtime with torch::jit::load

with no manifest. Its runtime loads every block that ``block_profile`` lists and the branch
of every exit that ``exit_profile`` lists, so those are the files an import needs.

:func:`import_reference` builds the repository in a temporary folder beside ``dest``:

1. every task's ``config.pbtxt`` is parsed and checked as :func:`read_repository` checks it;
2. every chunk it lists is read, loaded once with ``torch.jit.load`` on ``device`` and run:
   block 0 on a random input of the config's ``dims``, block ``i + 1`` on block ``i``'s output,
   the branch of exit ``j`` on block ``j``'s output (the chunks must chain);
3. the chunk bytes are written unchanged as ``model_files/<kind>_XX.pt`` (our name for the
   same TorchScript format), with the config, a ``plan.json`` (app, task order, source) and
   the manifest; the folder is read back with :func:`read_repository` and renamed into place.

Any failure (a missing ``.pth``, a config that does not parse, a file that is not TorchScript,
chunks that do not chain) is one error naming the source file, and nothing is written. Files
the config does not name (unused ``.pth``, notes) are left out and listed in the result.

Example::

    res = import_reference("Pantheon/experiments/model_repositories/indoor_smart_traffic",
                           "pantheon-data/apps/indoor_smart_traffic/repository")
    read_repository(res.dest).names     # ['object_detection', 'sign_recognition']
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple, Union

from pantheon.errors import RepositoryError, UsageError

PathLike = Union[str, "os.PathLike[str]"]


@dataclass
class ImportResult:
    """What :func:`import_reference` wrote."""

    dest: Path
    app: str
    tasks: Dict[str, Dict[str, Any]]  # per task: blocks, exits, dims
    chunks: int  # chunk files written (and loaded, and run)
    skipped: List[str] = field(default_factory=list)  # source files the configs do not name

    def to_json(self) -> Dict[str, Any]:
        return {"dest": str(self.dest), "app": self.app, "tasks": self.tasks, "chunks": self.chunks,
                "skipped": self.skipped}


def reference_chunk(model_dir: Path, kind: str, idx: int) -> Optional[Path]:
    """``model_dir/<kind>_XX.pth`` as the reference names it (two digits; three from 100 on)."""
    for width in (2, 3):
        p = model_dir / f"{kind}_{idx:0{width}d}.pth"
        if p.is_file():
            return p
    return None


def _task_dirs(src: Path) -> List[Path]:
    if not src.is_dir():
        raise RepositoryError(f"reference repository {src} does not exist or is not a folder")
    from pantheon.formats import store

    if (src / store.MANIFEST).exists():
        raise UsageError(f"{src} already has a {store.MANIFEST}: it is a pantheon repository, nothing to import")
    dirs = [p for p in sorted(src.iterdir()) if (p / "config.pbtxt").is_file()]
    if not dirs:
        raise RepositoryError(f"{src} holds no task (no <task>/config.pbtxt): not a reference model repository")
    return dirs


def _needed(task_dir: Path, index: int) -> Tuple[Any, List[Tuple[str, int, Path]]]:
    """The task's profile and the chunk files its config names: ``(kind, id, source path)``."""
    from pantheon.online.repository import _profile

    profile = _profile(task_dir, index)
    mdir = task_dir / "model_files"
    files: List[Tuple[str, int, Path]] = []
    for kind, ids in (("block", range(len(profile.blocks))), ("branch", profile.exit_blocks)):
        for i in ids:
            p = reference_chunk(mdir, kind, i)
            if p is None:
                what = f"block {i} is in block_profile" if kind == "block" else f"exit {i} is in exit_profile"
                raise RepositoryError(f"{mdir / f'{kind}_{i:02d}.pth'} is missing ({what} of {task_dir / 'config.pbtxt'}, "
                                      f"and the reference runtime loads it)")
            files.append((kind, i, p))
    return profile, files


def _load(path: Path, data: bytes, device: str) -> Any:
    from pantheon.online.repository import load_torchscript, torch_error_line

    try:
        return load_torchscript(data, device)
    except (RuntimeError, ValueError, OSError) as exc:
        msg = torch_error_line(exc, 160).split(". ")[0]
        raise RepositoryError(f"{path} is not a TorchScript file (the reference saves chunks with torch.jit.save "
                              f"and loads them with torch::jit::load): {msg}") from exc


def import_reference(src: PathLike, dest: PathLike, *, app: Optional[str] = None, device: str = "cpu",
                     force: bool = False) -> ImportResult:
    """Import the reference repository ``src`` into the verified repository ``dest``.

    Args:
        src: ``<task>/config.pbtxt`` and ``<task>/model_files/{block,branch}_XX.pth`` folders.
        dest: the repository to write (an existing one only with ``force``).
        app: app name recorded in ``plan.json`` (default: ``src``'s folder name).
        device: where the chunks are loaded and run for the check (``cpu``, ``cuda``, ``auto``).
        force: replace an existing ``dest``.

    Returns:
        An :class:`ImportResult`. Raises :class:`RepositoryError` / :class:`FormatError`
        (nothing written) when ``src`` is not a complete, chaining reference repository.
    """
    import torch

    from pantheon.formats import store
    from pantheon.online.repository import LoadedTask, read_repository, resolve_device, warm_up

    src, dest = Path(src), Path(dest)
    if dest.resolve() == src.resolve():
        raise UsageError(f"--out {dest} is the source folder: pick another destination")
    if dest.exists() and not force:
        raise UsageError(f"{dest} already exists; pass --force to replace it")
    dev = resolve_device(device)
    task_dirs = _task_dirs(src)
    app_name = app or src.name
    needed = [_needed(d, i) for i, d in enumerate(task_dirs)]  # every config parses and every file is there
    used = {p.resolve() for _, files in needed for _, _, p in files}
    used |= {(d / "config.pbtxt").resolve() for d in task_dirs}
    skipped = sorted(p.relative_to(src).as_posix() for p in src.rglob("*") if p.is_file() and p.resolve() not in used)
    meta = {"app": app_name, "source": "reference", "imported_from": str(src.resolve()), "check_device": dev}
    summary: Dict[str, Dict[str, Any]] = {}
    chunks = 0
    with store.write_artifact(dest, kind="repository", force=force, meta=meta,
                              inputs={"source": store.fingerprint(src)}) as tmp:
        for task_dir, (profile, files) in zip(task_dirs, needed):
            out_dir = tmp / task_dir.name / "model_files"
            out_dir.mkdir(parents=True)
            blocks: List[Any] = []
            exits: Dict[int, Any] = {}
            for kind, i, path in files:
                data = path.read_bytes()
                mod = _load(path, data, dev)
                if kind == "block":
                    blocks.append(mod)
                else:
                    exits[i] = mod
                store.write_file(out_dir / (path.stem + ".pt"), data)
                chunks += 1
            lt = LoadedTask(profile, blocks, [exits[e] for e in profile.exit_blocks], dev)
            try:
                warm_up(lt, 1, torch)  # block i feeds block i+1; exit j takes block j's output
            except RepositoryError as exc:
                raise RepositoryError(f"{src}: {exc} (the chunks do not chain)") from None
            store.write_file(tmp / task_dir.name / "config.pbtxt", (task_dir / "config.pbtxt").read_bytes())
            summary[task_dir.name] = {"dims": list(profile.dims), "blocks": len(profile.blocks),
                                      "exits": list(profile.exit_blocks)}
        plan = {"app": app_name, "tasks": [d.name for d in task_dirs],
                "source": {"kind": "reference", "path": str(src.resolve()), "skipped": skipped}}
        (tmp / "plan.json").write_text(json.dumps(plan, indent=2) + "\n")
        read_repository(tmp, verify=False)  # the layout our runtime and simulator read
    return ImportResult(dest=dest, app=app_name, tasks=summary, chunks=chunks, skipped=skipped)
