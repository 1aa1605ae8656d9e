"""``pantheon-deploy collect``: bring run logs (and bench results) from a board into the local store.

A run folder on the board, ``R/logs/<app>/<run-id>/`` (``events.jsonl`` with the telemetry
samples, ``run.json``, ``manifest.json`` written by ``pantheon runtime``), comes back as a
tar stream over ssh into ``<store>/logs/<app>/<run-id>/``. Every file is checked against the
sha256 computed on the board (``sha256sum``) and, when the runtime finished its manifest,
against that manifest too (kept as ``board-manifest.json``). ``pantheon-deploy`` adds
``board.json`` (model, L4T, power mode, clocks), ``container.json``/``container.log``
(image, exit code, output) and ``commands.sh``. The folder is written atomically with a
new manifest, so ``pantheon report`` reads it like a local run.

A run that failed before writing anything still comes back with what ``pantheon-deploy``
knows (container output and exit code).
"""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tarfile
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pantheon.deploy.fleet import Ctx
from pantheon.deploy.ssh import SHA256_TREE, Session, check_name, q, sha256sum_line
from pantheon.errors import ArtifactError, DeployError
from pantheon.formats.store import MANIFEST, Manifest, sha256_file, write_artifact

REMOTE_MANIFEST = "board-manifest.json"


def remote_sums(session: Session, remote_dir: str) -> Optional[Dict[str, str]]:
    """``rel -> sha256`` of every file under ``remote_dir`` on the board; None when it does not exist."""
    res = session.run(
        f"cd {q(remote_dir)} 2>/dev/null || {{ echo MISSING; exit 0; }}; {SHA256_TREE}",
        what=f"hashing {remote_dir}",
    )
    if res.stdout.strip() == "MISSING":
        return None
    return dict(filter(None, map(sha256sum_line, res.stdout.splitlines())))


def fetch_dir(session: Session, remote_dir: str, dest: Path) -> int:
    """``ssh board tar -c -C DIR .`` extracted into ``dest`` (regular files and folders only)."""
    proc = session.popen(f"tar -c -f - -C {q(remote_dir)} .", stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    if proc is None:
        return 0
    total = 0
    try:
        with tarfile.open(fileobj=proc.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name[2:] if member.name.startswith("./") else member.name
                if not name or name == ".":
                    continue
                target = (dest / name).resolve()
                if not str(target).startswith(str(dest.resolve()) + "/") or ".." in Path(name).parts:
                    raise DeployError(f"refusing {member.name!r} from board {session.board.name}: it points outside the run")
                if member.isdir():
                    target.mkdir(parents=True, exist_ok=True)
                elif member.isfile():
                    target.parent.mkdir(parents=True, exist_ok=True)
                    src = tar.extractfile(member)
                    assert src is not None  # a regular file's member always has contents
                    with open(target, "wb") as out:
                        shutil.copyfileobj(src, out)
                    total += member.size
    except tarfile.TarError as exc:
        raise DeployError(f"fetching {remote_dir} from board {session.board.name} failed: {exc}") from exc
    finally:
        err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
        proc.wait()
    if proc.returncode != 0:
        raise DeployError(f"fetching {remote_dir} from board {session.board.name} failed: {err.strip() or proc.returncode}")
    return total


def check_fetched(tmp: Path, sums: Dict[str, str], where: str) -> Optional[Manifest]:
    """Every fetched file must match the board's sha256 and the run's own manifest (when it has one)."""
    for rel, sha in sums.items():
        p = tmp / rel
        if not p.is_file() or sha256_file(p) != sha:
            raise DeployError(f"collected {rel} from {where} does not match its sha256 on the board: re-run collect")
    manifest = None
    if (tmp / MANIFEST).is_file():
        manifest = Manifest.from_json((tmp / MANIFEST).read_text(), where=f"{where}/{MANIFEST}")
        for rel, entry in manifest.files.items():  # `sums` were just checked against the fetched files
            if sums.get(rel) != entry.sha256:
                raise DeployError(f"{where}: {rel} differs from the run's manifest (changed after the run wrote it)")
        (tmp / MANIFEST).rename(tmp / REMOTE_MANIFEST)
    return manifest


def collect_dir(
    ctx: Ctx,
    session: Session,
    remote_dir: str,
    local_dir: Path,
    *,
    kind: str,
    extras: Optional[Dict[str, Any]] = None,
    meta: Optional[Dict[str, Any]] = None,
) -> Dict[str, Any]:
    """Fetch ``remote_dir`` into ``local_dir`` (atomic, verified) adding ``extras`` (name -> text/bytes/JSON)."""
    sums = remote_sums(session, remote_dir)
    if ctx.dry_run:
        session.popen(f"tar -c -f - -C {q(remote_dir)} .", note=f"extracted into {local_dir}")
        return {"local": str(local_dir), "dry_run": True}
    if sums is None and not extras:
        raise DeployError(f"board {session.board.name} has no {remote_dir}")
    info: Dict[str, Any] = {"local": str(local_dir), "remote": remote_dir, "files": len(sums or {}), "bytes": 0,
                            "complete": False}
    meta = dict(meta or {}, board=session.board.name, remote=remote_dir)
    try:
        with write_artifact(local_dir, kind=kind, force=True, meta=meta) as tmp:
            if sums:
                info["bytes"] = fetch_dir(session, remote_dir, tmp)
                manifest = check_fetched(tmp, sums, f"{session.board.name}:{remote_dir}")
                info["complete"] = manifest is not None
            for name, value in (extras or {}).items():
                data = value if isinstance(value, (bytes, str)) else json.dumps(value, indent=2, default=str) + "\n"
                (tmp / name).write_bytes(data.encode() if isinstance(data, str) else data)
    except ArtifactError as exc:
        raise DeployError(f"collecting {remote_dir}: {exc}") from exc
    return info


# --------------------------------------------------------------------------------------------
# collect: runs on the board not yet in the local store
# --------------------------------------------------------------------------------------------

_RUN_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


def list_remote_runs(session: Session) -> List[Tuple[str, str]]:
    """``(app, run_id)`` of every run folder under the board's ``logs/``."""
    logs = f"{session.board.remote_root}/logs"
    res = session.run(f"cd {q(logs)} 2>/dev/null || exit 0; for d in */*/; do [ -d \"$d\" ] && echo \"$d\"; done",
                      what="listing runs")
    out = []
    for line in res.stdout.splitlines():
        parts = line.strip().strip("/").split("/")
        if len(parts) == 2 and all(_RUN_RE.fullmatch(p) for p in parts):
            out.append((parts[0], parts[1]))
    return sorted(out, key=lambda x: x[1])


def collect_runs(ctx: Ctx, session: Session, run_id: Optional[str] = None, app: Optional[str] = None,
                 extras: Optional[Dict[str, Any]] = None) -> List[Dict[str, Any]]:
    """Collect run ``run_id`` (of ``app`` if given), or every run not yet in the local store."""
    store = ctx.store
    runs = list_remote_runs(session)
    if run_id is not None:
        check_name("run id", run_id)
        runs = [r for r in runs if r[1] == run_id and (app is None or r[0] == app)]
        if not runs:
            raise DeployError(f"board {session.board.name} has no run {run_id} under {session.board.remote_root}/logs")
    else:
        runs = [r for r in runs if (app is None or r[0] == app) and not (store.logs_dir(r[0], r[1]) / MANIFEST).is_file()]
    out = []
    for a, rid in runs:
        remote = f"{session.board.remote_root}/logs/{a}/{rid}"
        info = collect_dir(ctx, session, remote, store.logs_dir(a, rid), kind="log",
                           extras=dict(extras or {}), meta={"run_id": rid, "app": a, "collected_by": "pantheon-deploy"})
        info.update(app=a, run_id=rid)
        ctx.log(f"collected {a}/{rid} -> {info['local']}")
        out.append(info)
    return out


def collect_command(ctx: Ctx, session: Session, run_id: Optional[str], app: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """``pantheon-deploy collect`` on one board."""
    from pantheon.deploy.remote import read_facts
    from pantheon.deploy.setup import board_state

    extras = {"board.json": board_state(session, read_facts(session))}
    runs = collect_runs(ctx, session, run_id, app, extras=extras)
    if not runs:
        return "nothing new to collect", {"runs": []}
    return f"collected {len(runs)} run(s): " + ", ".join(f"{r['app']}/{r['run_id']}" for r in runs), {"runs": runs}
