"""The artifact store: one directory layout that the desktop and board images share.

The root is ``--data-root`` / ``$PANTHEON_DATA`` / ``./pantheon-data`` (``/data``
in the containers). Layout (every artifact directory carries ``manifest.json``)::

    <root>/
      datasets/<name>/                      datasets in their standard on-disk format
      pretrained/<task>/                    pretrained backbone weights (weights.pt)
      runs/<task>/<run-id>/                 exit training: checkpoint.pt, history.json
      variants/<task>/                      export: block_XX.pt, branch_XX.pt, variants.json,
                                            profile.csv (added by `pantheon profile`)
      apps/<app>/repository/                plan: <task>/config.pbtxt, <task>/model_files/*.pt, plan.json
      apps/<app>/workload/                  workload.bin (+ workload.json, the spec it came from)
      logs/<app>/<run-id>/                  runtime/simulator: events.jsonl, run.json
      reports/<app>/<run-id>/               report: report.md, report.json, *.png
      bench/<name>/<run-id>/                benchmark results
      deploy/<board>/<run-id>-<verb>/       pantheon-deploy: commands.sh, result.json

Writing is atomic: :func:`write_artifact` yields a temporary directory beside the
destination; when the block ends without error, the manifest (schema version,
producer command and version, creation time, inputs fingerprint, every file with
sha256 and size) is written, verified, and the directory is renamed into place.
An error leaves the destination as it was. Readers call :func:`verify`, which
refuses a missing manifest, a missing file, a sum mismatch or a file the manifest does
not list (manifests are closed) with one clear line.

Example::

    with write_artifact(store.variants_dir("digits_resnet18"), kind="variants") as tmp:
        (tmp / "block_00.pt").write_bytes(data)
    verify(store.variants_dir("digits_resnet18"))
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import errno
import hashlib
import io
import json
import os
import shutil
import sys
import tempfile
import uuid
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, Iterator, Mapping, Optional, Union

from pantheon import __version__
from pantheon.errors import (
    ArtifactError,
    ArtifactExistsError,
    ChecksumError,
    ManifestError,
    check_interrupt,
    signals_held,
)

SCHEMA_VERSION = 1
MANIFEST = "manifest.json"
ENV_ROOT = "PANTHEON_DATA"
DEFAULT_ROOT = "pantheon-data"

PathLike = Union[str, "os.PathLike[str]"]


def data_root(root: Optional[PathLike] = None) -> Path:
    """The store root: ``root`` if given, else ``$PANTHEON_DATA``, else ``./pantheon-data``."""
    if root is not None and str(root) != "":
        return Path(root).expanduser()
    env = os.environ.get(ENV_ROOT)
    if env:
        return Path(env).expanduser()
    return Path.cwd() / DEFAULT_ROOT


def sha256_file(path: PathLike, bufsize: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(bufsize)
            if not chunk:
                break
            h.update(chunk)
    return h.hexdigest()


def fingerprint(*parts: Any) -> str:
    """A stable sha256 over JSON-able values and files (``Path`` values are hashed by content)."""
    h = hashlib.sha256()
    for part in parts:
        if isinstance(part, Path):
            if part.is_dir():
                for f in sorted(p for p in part.rglob("*") if p.is_file()):
                    h.update(str(f.relative_to(part)).encode())
                    h.update(sha256_file(f).encode())
            elif part.exists():
                h.update(sha256_file(part).encode())
            else:
                h.update(b"<missing>" + str(part).encode())
        else:
            h.update(json.dumps(part, sort_keys=True, default=str).encode())
        h.update(b"\0")
    return h.hexdigest()


def producer_command() -> str:
    """The command line that is running, with the program's basename."""
    argv = list(sys.argv) or ["python"]
    argv[0] = os.path.basename(argv[0])
    return " ".join(argv)


@dataclass
class FileEntry:
    sha256: str
    size: int


@dataclass
class Manifest:
    kind: str
    files: Dict[str, FileEntry]
    producer: Dict[str, str] = field(default_factory=dict)
    created: str = ""
    inputs: Dict[str, Any] = field(default_factory=dict)
    meta: Dict[str, Any] = field(default_factory=dict)
    schema_version: int = SCHEMA_VERSION

    def to_json(self) -> str:
        data = asdict(self)
        data["files"] = {k: asdict(v) for k, v in sorted(self.files.items())}
        order = ["schema_version", "kind", "producer", "created", "inputs", "meta", "files"]
        return json.dumps({k: data[k] for k in order}, indent=2, sort_keys=False, default=str) + "\n"

    @classmethod
    def from_json(cls, text: str, where: str = "manifest.json") -> Manifest:
        try:
            data = json.loads(text)
            version = int(data.get("schema_version", 0))
            if version > SCHEMA_VERSION:
                raise ManifestError(
                    f"{where}: schema version {version} is newer than this pantheon understands "
                    f"({SCHEMA_VERSION}); upgrade pantheon"
                )
            files = {k: FileEntry(sha256=str(v["sha256"]), size=int(v["size"])) for k, v in data["files"].items()}
            return cls(
                kind=str(data["kind"]),
                files=files,
                producer=dict(data.get("producer", {})),
                created=str(data.get("created", "")),
                inputs=dict(data.get("inputs", {})),
                meta=dict(data.get("meta", {})),
                schema_version=version,
            )
        except ManifestError:
            raise
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise ManifestError(f"{where} is not a valid pantheon manifest ({exc.__class__.__name__}: {exc})") from exc


def _scan(directory: Path) -> Dict[str, FileEntry]:
    files: Dict[str, FileEntry] = {}
    for p in sorted(directory.rglob("*")):
        if p.is_file() and p.name != MANIFEST:
            rel = p.relative_to(directory).as_posix()
            files[rel] = FileEntry(sha256=sha256_file(p), size=p.stat().st_size)
    return files


def build_manifest(
    directory: PathLike,
    *,
    kind: str,
    command: Optional[str] = None,
    inputs: Optional[Mapping[str, Any]] = None,
    meta: Optional[Mapping[str, Any]] = None,
) -> Manifest:
    """Describe every file under ``directory`` (recursively) in a new manifest."""
    return Manifest(
        kind=kind,
        files=_scan(Path(directory)),
        producer={"name": "pantheon", "version": __version__, "command": command or producer_command()},
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        inputs=dict(inputs or {}),
        meta=dict(meta or {}),
    )


def read_manifest(directory: PathLike) -> Manifest:
    directory = Path(directory)
    path = directory / MANIFEST
    if not directory.is_dir():
        raise ManifestError(f"{directory} does not exist or is not a directory")
    if not path.is_file():
        raise ManifestError(f"{directory} has no {MANIFEST}: it was not written by pantheon or is incomplete")
    try:
        text = path.read_text()
    except OSError as exc:
        raise ManifestError(f"cannot read {path}: {exc.strerror or exc}") from exc
    return Manifest.from_json(text, where=str(path))


def verify(directory: PathLike, *, kind: Optional[str] = None, required: Iterable[str] = ()) -> Manifest:
    """Check every file of ``directory`` against its manifest; return the manifest.

    Raises :class:`ChecksumError` naming the first missing, resized or altered file,
    and :class:`ManifestError` when the manifest is absent, unreadable, of another
    ``kind`` or lacks a ``required`` file.
    """
    directory = Path(directory)
    manifest = read_manifest(directory)
    if kind is not None and manifest.kind != kind:
        raise ManifestError(f"{directory} holds a '{manifest.kind}' artifact, expected '{kind}'")
    for name in required:
        if name not in manifest.files:
            raise ManifestError(f"{directory} is incomplete: its manifest lists no {name}")
    for rel, entry in manifest.files.items():
        p = directory / rel
        if not p.is_file():
            raise ChecksumError(f"{p} is listed in {directory / MANIFEST} but missing")
        size = p.stat().st_size
        if size != entry.size:
            raise ChecksumError(f"{p} has {size} bytes, manifest says {entry.size}: the file was altered")
        if sha256_file(p) != entry.sha256:
            raise ChecksumError(f"checksum mismatch for {p}: the file was altered after it was written")
    extra = unlisted(directory, manifest)
    if extra:
        raise ChecksumError(
            f"{directory / extra[0]} is not listed in {directory / MANIFEST}"
            f"{f' (nor {len(extra) - 1} more)' if len(extra) > 1 else ''}: it was added after the artifact was "
            f"written; remove it or rewrite the artifact"
        )
    return manifest


def unlisted(directory: PathLike, manifest: Manifest) -> list:
    """Files (and links) under ``directory`` that ``manifest`` does not list: a manifest is closed."""
    directory = Path(directory)
    out = []
    for p in sorted(directory.rglob("*")):
        if p.is_dir() and not p.is_symlink():
            continue
        rel = p.relative_to(directory).as_posix()
        if p.name != MANIFEST and rel not in manifest.files:  # nested manifests are not listed (_scan)
            out.append(rel)
    return out


def is_complete(directory: PathLike, inputs: Optional[Mapping[str, Any]] = None) -> bool:
    """True when ``directory`` verifies and (if given) was produced from the same ``inputs``."""
    try:
        manifest = verify(directory)
    except (ManifestError, ChecksumError):
        return False
    if inputs is not None and manifest.inputs != json.loads(json.dumps(dict(inputs), default=str)):
        return False
    return True


def _swap_into_place(tmp: Path, dest: Path) -> None:
    old = None
    if dest.exists():
        old = dest.with_name(f".{dest.name}.old-{uuid.uuid4().hex[:8]}")
        os.rename(dest, old)
    try:
        os.rename(tmp, dest)
    except OSError:
        if old is not None:
            os.rename(old, dest)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _make_parents(directory: Path) -> list:
    """``mkdir -p directory``; return the folders it created, outermost first (to undo on failure)."""
    created = []
    p = directory
    while not p.exists() and p != p.parent:
        created.append(p)
        p = p.parent
    directory.mkdir(parents=True, exist_ok=True)
    return created[::-1]


def _remove_created(created: list) -> None:
    """Remove the folders :func:`_make_parents` created, if still empty: a failed write leaves nothing."""
    for p in reversed(created):
        with contextlib.suppress(OSError):
            p.rmdir()


def _tmp_dir_for(dest: Path, created: Optional[list] = None) -> Path:
    made = _make_parents(dest.parent)
    if created is not None:
        created += made
    try:
        return Path(tempfile.mkdtemp(prefix=f".{dest.name}.tmp-", dir=dest.parent))
    except BaseException:
        _remove_created(made)
        raise


_WRITE_HINTS = {
    errno.ENOSPC: "the disk is full: free some space or pick another destination",
    errno.EDQUOT: "the disk quota is exceeded: free some space or pick another destination",
    errno.EROFS: "the file system is read-only: pick a writable destination",
    errno.EACCES: "permission denied: pick a writable destination or fix the permissions",
    errno.EPERM: "operation not permitted: pick a writable destination or fix the permissions",
    errno.ENOTDIR: "a part of the path is a file, not a directory: pick another destination",
    errno.EISDIR: "it is a directory: pass a file name",
}


def check_replaceable(dest: PathLike, what: str = "destination") -> None:
    """Refuse to replace what pantheon did not write: ``dest`` may be missing, an empty folder, or an
    artifact folder (it has a manifest); a file or a folder of other files is an :class:`ArtifactExistsError`."""
    dest = Path(dest)
    if dest.is_symlink() or (dest.exists() and not dest.is_dir()):
        raise ArtifactExistsError(f"{what} {dest} is a file, not a folder pantheon wrote; pass a new folder name")
    if dest.is_dir() and not (dest / MANIFEST).is_file() and any(dest.iterdir()):
        raise ArtifactExistsError(f"{what} {dest} is a folder holding other files (no {MANIFEST}); pass a new or "
                                  f"empty folder, or one pantheon wrote, to replace")


def _is_write_error(exc: OSError, tmp: Path) -> bool:
    """An error of writing the artifact (full/read-only disk, or a file under ``tmp``), not of reading an input."""
    if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EROFS):
        return True
    return exc.filename is None or str(exc.filename).startswith(str(tmp))


def write_failed(dest: PathLike, exc: OSError) -> ArtifactError:
    """The one-line error for an ``OSError`` met while writing ``dest``: names ``dest`` (the
    user's path, not a temporary one), the reason and what to do; nothing was written."""
    hint = _WRITE_HINTS.get(exc.errno or -1, "pick another destination")
    return ArtifactError(f"cannot write {dest}: {exc.strerror or exc} ({hint}); nothing was written")


def check_writable(dest: PathLike) -> None:
    """Fail now, not after the work that produces ``dest``: create its parent folders and a 4 KiB file
    beside it, fsync, then remove both. A read-only or full disk is the :func:`write_failed` line
    naming ``dest``; nothing is left behind. A disk that fills up later is still caught when writing."""
    dest = Path(dest)
    created: list = []
    try:
        created = _make_parents(dest.parent)
        fd, probe = tempfile.mkstemp(prefix=f".{dest.name}.probe-", dir=dest.parent)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(b"\0" * 4096)
                f.flush()
                os.fsync(f.fileno())
        finally:
            with contextlib.suppress(OSError):
                os.unlink(probe)
    except OSError as exc:
        raise write_failed(dest, exc) from exc
    finally:
        _remove_created(created)


@contextlib.contextmanager
def write_artifact(
    dest: PathLike,
    *,
    kind: str,
    command: Optional[str] = None,
    inputs: Optional[Mapping[str, Any]] = None,
    meta: Optional[Mapping[str, Any]] = None,
    force: bool = False,
    seed_from: Optional[PathLike] = None,
) -> Iterator[Path]:
    """Yield a temporary directory; on success, manifest + verify + rename it to ``dest``.

    ``dest`` existing is an :class:`ArtifactExistsError` unless ``force``. A caller that replaces
    by default (no ``--force`` asked for) checks :func:`check_replaceable` first.
    ``seed_from`` copies an existing artifact's files (not its manifest) into the
    temporary directory first, to update an artifact in place atomically.
    """
    dest = Path(dest)
    if dest.exists() and not force:
        raise ArtifactExistsError(f"{dest} already exists; pass --force to replace it")
    created: list = []
    tmp: Optional[Path] = None
    try:
        with signals_held():  # a Ctrl-C arrives before the temporary folder exists or once `tmp` names it
            tmp = _tmp_dir_for(dest, created)
        if seed_from is not None:
            src = Path(seed_from)
            for p in src.rglob("*"):
                if p.is_file() and p.name != MANIFEST:
                    target = tmp / p.relative_to(src)
                    target.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copy2(p, target)
        yield tmp
        check_interrupt()  # a Ctrl-C Python could not raise earlier: seal nothing
        manifest = build_manifest(tmp, kind=kind, command=command, inputs=inputs, meta=meta)
        atomic_write_text(tmp / MANIFEST, manifest.to_json())
        verify(tmp, kind=kind)
        with signals_held():  # never stop between the renames: dest is the old artifact or the new one
            _swap_into_place(tmp, dest)
    except BaseException as exc:
        if tmp is not None:
            shutil.rmtree(tmp, ignore_errors=True)
        _remove_created(created)
        if isinstance(exc, OSError) and (tmp is None or _is_write_error(exc, tmp)):  # name dest, not tmp
            raise write_failed(dest, exc) from exc
        if tmp is not None and isinstance(exc, ArtifactError) and str(tmp) in str(exc):
            raise type(exc)(str(exc).replace(str(tmp), str(dest))) from exc
        raise


def update_artifact(
    dest: PathLike,
    files: Mapping[str, Union[bytes, str, Path]],
    *,
    command: Optional[str] = None,
    meta: Optional[Mapping[str, Any]] = None,
) -> Manifest:
    """Add or replace ``files`` in the verified artifact ``dest`` atomically; keep its kind and inputs."""
    dest = Path(dest)
    old = verify(dest)
    new_meta = dict(old.meta)
    new_meta.update(meta or {})
    with write_artifact(
        dest, kind=old.kind, command=command, inputs=old.inputs, meta=new_meta, force=True, seed_from=dest
    ) as tmp:
        for name, content in files.items():
            target = tmp / name
            target.parent.mkdir(parents=True, exist_ok=True)
            if isinstance(content, Path):
                shutil.copy2(content, target)
            elif isinstance(content, str):
                target.write_text(content)
            else:
                target.write_bytes(content)
    return read_manifest(dest)


def atomic_write_bytes(path: PathLike, data: bytes) -> None:
    """Write ``data`` to a temporary file beside ``path``, fsync, then rename over it."""
    path = Path(path)
    created: list = []
    tmp: Optional[str] = None
    try:
        with signals_held():  # a Ctrl-C arrives before the temporary file exists or once `tmp` names it
            created += _make_parents(path.parent)
            fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.tmp-", dir=path.parent)
            f = os.fdopen(fd, "wb")
        with f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        check_interrupt()
        os.replace(tmp, path)
    except BaseException as exc:
        if tmp is not None:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
        _remove_created(created)
        if isinstance(exc, OSError):  # a write error names no file, or the temporary one: name path
            raise write_failed(path, exc) from exc
        raise


def write_file(path: PathLike, data: bytes) -> None:
    """Write ``data`` to ``path`` from Python, so a full or read-only disk is one :class:`ArtifactError`
    naming the path (inside :func:`write_artifact`, whose temporary directory is then removed)."""
    path = Path(path)
    try:
        with open(path, "wb") as f:
            f.write(data)
    except OSError as exc:
        raise write_failed(path, exc) from exc


def save_torch(save: Callable[[Any], None], path: PathLike) -> None:
    """``save(buffer)`` (``torch.save``/``torch.jit.save`` into memory), then :func:`write_file`.

    torch's C++ file writer aborts the process on a full disk (``c10::Error ... unexpected
    pos``); serializing in memory first keeps the failure a Python error.
    """
    buf = io.BytesIO()
    save(buf)
    write_file(path, buf.getvalue())


def atomic_write_text(path: PathLike, text: str) -> None:
    atomic_write_bytes(path, text.encode())


def new_run_id() -> str:
    """A sortable, unique run id: UTC time plus 6 random hex digits."""
    now = _dt.datetime.now(_dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ")
    return f"{now}-{uuid.uuid4().hex[:6]}"


class Store:
    """Paths of the layout above, under one root. Creating a ``Store`` writes nothing."""

    def __init__(self, root: Optional[PathLike] = None) -> None:
        self.root = data_root(root)

    def __repr__(self) -> str:
        return f"Store({str(self.root)!r})"

    def dataset_dir(self, name: str) -> Path:
        return self.root / "datasets" / name

    def pretrained_dir(self, task: str) -> Path:
        return self.root / "pretrained" / task

    def runs_dir(self, task: str) -> Path:
        return self.root / "runs" / task

    def run_dir(self, task: str, run_id: str) -> Path:
        return self.runs_dir(task) / run_id

    def variants_dir(self, task: str) -> Path:
        return self.root / "variants" / task

    def app_dir(self, app: str) -> Path:
        return self.root / "apps" / app

    def repository_dir(self, app: str) -> Path:
        return self.app_dir(app) / "repository"

    def workload_dir(self, app: str) -> Path:
        return self.app_dir(app) / "workload"

    def logs_dir(self, app: str, run_id: Optional[str] = None) -> Path:
        base = self.root / "logs" / app
        return base / run_id if run_id else base

    def report_dir(self, app: str, run_id: str) -> Path:
        return self.root / "reports" / app / run_id

    def bench_dir(self, name: str, run_id: Optional[str] = None) -> Path:
        base = self.root / "bench" / name
        return base / run_id if run_id else base
