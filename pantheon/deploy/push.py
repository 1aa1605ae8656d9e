"""``pantheon-deploy push``: put an app's deployment bundle on a board, atomically and incrementally.

The bundle of app ``A`` is what the runtime container reads under ``/data/apps/A/``:
``repository/`` (the planned model repository), ``workload/`` (the workload files),
``app.yaml`` (the application file) and a ``manifest.json`` (kind ``bundle``) listing every
file with its sha256, so ``store.verify`` works on the board too.

On the board (data root ``R``, default ``/var/lib/pantheon/data``)::

    R/apps/A -> .bundles/A@<id>          a relative symlink: the current bundle
    R/apps/.bundles/A@<id>/              a complete, verified bundle (<id>: its manifest's sha256)
    R/apps/.bundles/A@<id>.partial/      an upload in progress (kept when interrupted)

Protocol (each step one ssh command, all recorded):

1. *probe* (read-only): ``sha256sum`` of every file of the current bundle, of a complete
   bundle with the new id and of its partial upload;
2. *stage*: in ``.partial``, hard-link (or copy) files whose sums match a file already on the
   board, delete stale ones;
3. *send* only the rest, as a tar stream over ssh (``tar -x`` on the board);
4. *verify* every sha256 on the board (``sha256sum -c``) and the file count;
5. *switch*: rename ``.partial`` to the complete name, point ``A`` at it with an atomic
   ``rename(2)`` of a new symlink, then delete older bundles of ``A``.

An interruption anywhere before step 5 leaves ``R/apps/A`` on the previous bundle; a re-run
finds the partial upload and sends only what is missing or wrong. An unchanged re-push sends
nothing.

Example::

    bundle = local_bundle("digits")
    push_bundle(ctx, session, bundle)   # -> {"files_sent": 0, "bytes_sent": 0, ...} when up to date
"""

from __future__ import annotations

import hashlib
import io
import re
import tarfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from pantheon import __version__, console
from pantheon.deploy.fleet import Ctx
from pantheon.deploy.ssh import SHA256_TREE, Session, check_name, last_line, q, qjoin, sha256sum_line
from pantheon.errors import ArtifactError, DeployError, UsageError
from pantheon.formats import torchscript
from pantheon.formats.store import MANIFEST, FileEntry, Manifest, Store, sha256_file, verify

_SAFE_REL = re.compile(r"^[A-Za-z0-9_.+-]+(?:/[A-Za-z0-9_.+-]+)*$")
BUNDLE_KIND = "bundle"


# --------------------------------------------------------------------------------------------
# The local bundle
# --------------------------------------------------------------------------------------------


@dataclass
class BundleFile:
    rel: str
    sha256: str
    size: int
    src: Optional[Path] = None  # a file of the store, or None for generated content
    data: Optional[bytes] = None


@dataclass
class Bundle:
    app: str
    files: List[BundleFile]
    bundle_id: str
    sources: Dict[str, str] = field(default_factory=dict)

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    def by_rel(self) -> Dict[str, BundleFile]:
        return {f.rel: f for f in self.files}


def _files_of(directory: Path, prefix: str, manifest: Manifest) -> List[BundleFile]:
    """The files of a verified artifact directory: its manifest's entries (sums already checked) and
    the manifest itself; a file the manifest does not list is not part of the bundle."""
    out = [BundleFile(f"{prefix}/{rel}", e.sha256, e.size, src=directory / rel) for rel, e in manifest.files.items()]
    m = directory / MANIFEST
    out.append(BundleFile(f"{prefix}/{MANIFEST}", sha256_file(m), m.stat().st_size, src=m))
    return sorted(out, key=lambda f: f.rel)


ENV_APP = "PANTHEON_APP"  # the same variable compose.yaml's trainer reads


def store_apps(store: Optional[Store] = None) -> List[str]:
    """The apps of the local store that have a model repository (``<root>/apps/<app>/repository``)."""
    apps = (store or Store()).root / "apps"
    if not apps.is_dir():
        return []
    return sorted(d.name for d in apps.iterdir()
                  if not d.name.startswith(".") and (d / "repository" / MANIFEST).is_file())


def resolve_app(app: Optional[str], store: Optional[Store] = None) -> Tuple[str, str]:
    """The app a command acts on and why: ``--app``, else ``$PANTHEON_APP``, else the only app in the store.

    Returns ``(app, how)`` where ``how`` is empty for ``--app``. Raises :class:`UsageError` with one
    line listing the store's apps when there are none or several.
    """
    import os

    if app:
        return check_name("app", app), ""
    env = os.environ.get(ENV_APP, "").strip()
    if env:
        return check_name("app", env), f"from ${ENV_APP}"
    store = store or Store()
    apps = store_apps(store)
    if len(apps) == 1:
        return apps[0], f"the only app in {store.root / 'apps'}"
    if not apps:
        raise UsageError(
            f"no app in the store {store.root / 'apps'}: make one on the desktop first "
            f"(docker compose up trainer, or pantheon pipeline --app digits), or name the store with --data-root"
        )
    raise UsageError(f"several apps in {store.root / 'apps'} ({', '.join(apps)}): pass --app NAME "
                     f"(or set {ENV_APP})")


def local_bundle(app: str, store: Optional[Store] = None) -> Bundle:
    """Collect and verify app ``app``'s deployment bundle from the local artifact store.

    Raises :class:`DeployError` when the app has no repository or workload yet (naming the
    command that makes it) or when a file no longer matches its manifest.
    """
    from pantheon.formats.app import resolve_app_path

    check_name("app", app)
    store = store or Store()
    repo, workload = store.repository_dir(app), store.workload_dir(app)
    for what, d, how in (("model repository", repo, f"pantheon plan --setting {app}"),
                         ("workload", workload, f"pantheon workload --spec {app} --repo {repo}")):
        if not (d / MANIFEST).is_file():
            raise DeployError(
                f"app {app} has no deployment bundle: its {what} {d} is missing; make it on the desktop "
                f"first ({how}, or the whole pipeline: docker compose up trainer)"
            )
    try:
        repo_manifest = verify(repo)
        workload_manifest = verify(workload)
    except ArtifactError as exc:
        raise DeployError(f"the deployment bundle of app {app} is damaged: {exc}") from exc
    try:
        app_file = resolve_app_path(app, store)
    except UsageError as exc:
        raise DeployError(f"app {app}: no application file to send ({exc})") from exc
    files = _files_of(repo, "repository", repo_manifest) + _files_of(workload, "workload", workload_manifest)
    app_bytes = app_file.read_bytes()
    files.append(BundleFile("app.yaml", hashlib.sha256(app_bytes).hexdigest(), len(app_bytes), src=app_file))
    for f in files:
        if not _SAFE_REL.fullmatch(f.rel):
            raise DeployError(f"refusing to push {f.rel!r}: bundle file names must be plain (letters, digits, ._+-)")
    # Deterministic bundle manifest: same files -> same bytes -> same id (a re-push moves nothing).
    manifest = Manifest(
        kind=BUNDLE_KIND,
        files={f.rel: FileEntry(f.sha256, f.size) for f in files},
        producer={"name": "pantheon-deploy", "version": __version__, "command": "pantheon-deploy push"},
        created=repo_manifest.created,
        meta={"app": app},
    )
    text = manifest.to_json().encode()
    files.append(BundleFile(MANIFEST, hashlib.sha256(text).hexdigest(), len(text), data=text))
    bundle_id = hashlib.sha256(text).hexdigest()[:12]
    return Bundle(app, files, bundle_id, {"repository": str(repo), "workload": str(workload), "app": str(app_file)})


# --------------------------------------------------------------------------------------------
# The remote side
# --------------------------------------------------------------------------------------------


@dataclass
class RemotePaths:
    apps: str
    current: str
    bundles: str
    final: str
    stage: str
    link_name: str  # relative target of the symlink

    @classmethod
    def of(cls, remote_root: str, app: str, bundle_id: str) -> RemotePaths:
        apps = f"{remote_root.rstrip('/')}/apps"
        name = f"{app}@{bundle_id}"
        return cls(apps, f"{apps}/{app}", f"{apps}/.bundles", f"{apps}/.bundles/{name}",
                   f"{apps}/.bundles/{name}.partial", f".bundles/{name}")


def _probe_script(p: RemotePaths, app: str) -> str:
    return f"""apps={q(p.apps)}; app={q(app)}
if [ ! -d "$apps" ]; then echo "NOAPPS"; exit 0; fi
cur=""
if [ -L "$apps/$app" ]; then cur="$apps/$(readlink "$apps/$app")"; elif [ -d "$apps/$app" ]; then cur="$apps/$app"; fi
echo "CUR $cur"
seen=" "
for d in "$cur" {q(p.final)} {q(p.stage)}; do
  case "$seen" in *" $d "*) continue ;; esac
  seen="$seen$d "
  if [ -n "$d" ] && [ -d "$d" ]; then
    echo "DIR $d"
    (cd "$d" && {SHA256_TREE})
  fi
done
"""


@dataclass
class RemoteState:
    current: str = ""
    sums: Dict[str, Dict[str, str]] = field(default_factory=dict)  # dir -> rel -> sha


def parse_probe(text: str) -> RemoteState:
    """Parse the probe's output (``CUR``/``DIR`` headers, then ``sha256sum`` lines)."""
    st = RemoteState()
    d: Optional[str] = None
    for line in text.splitlines():
        if line.startswith("CUR "):
            st.current = line[4:].strip()
        elif line.startswith("DIR "):
            d = line[4:].strip()
            st.sums.setdefault(d, {})
        elif d is not None and (entry := sha256sum_line(line)):
            st.sums[d][entry[0]] = entry[1]
    return st


@dataclass
class Plan:
    up_to_date: bool = False
    final_complete: bool = False  # a verified bundle with the new id exists: switch only
    keep: List[str] = field(default_factory=list)  # already right in the partial upload
    link: List[Tuple[str, str]] = field(default_factory=list)  # (absolute source on the board, rel)
    send: List[BundleFile] = field(default_factory=list)
    remove: List[str] = field(default_factory=list)  # stale files in the partial upload

    @property
    def bytes_to_send(self) -> int:
        return sum(f.size for f in self.send)


def make_plan(bundle: Bundle, p: RemotePaths, st: RemoteState) -> Plan:
    """Decide per file: keep, hard-link from a file already on the board, or send."""
    want = {f.rel: f.sha256 for f in bundle.files}
    plan = Plan()
    if st.sums.get(st.current) == want and st.current == p.final:
        plan.up_to_date = True
        return plan
    if st.sums.get(p.final) == want:
        plan.final_complete = True
        return plan
    staged = st.sums.get(p.stage, {})
    by_sha: Dict[str, str] = {}
    for d in (p.final, st.current):
        for rel, sha in st.sums.get(d, {}).items():
            by_sha.setdefault(sha, f"{d}/{rel}")
    for f in bundle.files:
        if staged.get(f.rel) == f.sha256:
            plan.keep.append(f.rel)
        elif f.sha256 in by_sha:
            plan.link.append((by_sha[f.sha256], f.rel))
        else:
            plan.send.append(f)
    plan.remove = sorted(set(staged) - set(plan.keep))
    return plan


def _explain(stderr: str, p: RemotePaths, user: Optional[str]) -> str:
    lines = [ln.strip() for ln in (stderr or "").splitlines() if ln.strip() and "Exiting with failure" not in ln]
    keys = ("No space left", "Disk quota", "Permission denied", "Read-only file system")
    line = next((ln for ln in lines if any(k in ln for k in keys)), lines[-1] if lines else last_line(stderr) or "no output")
    root = p.apps.rsplit("/apps", 1)[0]
    if "No space left" in stderr or "Disk quota" in stderr:
        return f"{line}: the board's disk is full (df -h {root}); free space or pass --remote-root"
    if "Permission denied" in stderr or "Read-only file system" in stderr:
        who = user or "the ssh user"
        return (f"{line}: {who} may not write {root}; create it once on the board "
                f"(sudo mkdir -p {root} && sudo chown {who} {root}) or pass --remote-root")
    return line


def _stage_script(p: RemotePaths, plan: Plan, bundle: Bundle) -> str:
    dirs = sorted({f.rel.rsplit("/", 1)[0] for f in bundle.files if "/" in f.rel})
    lines = ["set -e", f"mkdir -p {q(p.stage)}", f"cd {q(p.stage)}"]
    if dirs:
        lines.append("mkdir -p " + qjoin(dirs))
    stale = plan.remove + [rel for _, rel in plan.link] + [f.rel for f in plan.send]
    for i in range(0, len(stale), 200):
        lines.append("rm -f -- " + qjoin(stale[i : i + 200]))
    for src, rel in plan.link:
        lines.append(f"ln -- {q(src)} {q(rel)} 2>/dev/null || cp -p -- {q(src)} {q(rel)}")
    return "\n".join(lines) + "\n"


def _verify_script(p: RemotePaths, bundle: Bundle) -> str:
    sums = "\n".join(f"{f.sha256}  ./{f.rel}" for f in bundle.files)
    n = len(bundle.files)
    return (
        f"cd {q(p.stage)} || exit 3\n"
        f"sha256sum -c --quiet --strict <<'PANTHEON_SUMS' || exit 3\n{sums}\nPANTHEON_SUMS\n"
        f'n=$(find . -type f | wc -l); if [ "$n" -ne {n} ]; then '
        f'echo "{p.stage} holds $n files, the bundle {n}" >&2; exit 3; fi\n'
    )


def _switch_script(p: RemotePaths, app: str, from_stage: bool) -> str:
    tag = time.strftime("%Y%m%dT%H%M%S")
    lines = ["set -e", f"cd {q(p.apps)}"]
    if from_stage:
        lines += [f"rm -rf -- {q(p.final)}", f"mv -T -- {q(p.stage)} {q(p.final)}"]
    lines += [
        # A plain directory left by an older tool is kept aside until the switch is done.
        f"if [ -d {q(app)} ] && [ ! -L {q(app)} ]; then mv -T -- {q(app)} {q(f'.bundles/{app}@previous-{tag}')}; fi",
        f"ln -sfn -- {q(p.link_name)} {q(f'.{app}.link-{tag}')}",
        f"mv -Tf -- {q(f'.{app}.link-{tag}')} {q(app)}",
        f'for d in .bundles/{q(app)}@*; do [ "$d" = {q(p.link_name)} ] || rm -rf -- "$d"; done',
    ]
    return "\n".join(lines) + "\n"


def _send(ctx: Ctx, session: Session, p: RemotePaths, bundle: Bundle, files: List[BundleFile], prelude: str) -> int:
    """Run ``prelude`` (staging) then stream ``files`` as a tar archive into the partial upload.

    Returns the bytes of file data sent.
    """
    import subprocess

    shown_files = qjoin([f.rel for f in files]) or "(no files)"
    proc = session.popen(
        f"{prelude}tar -x -f - --no-same-owner -C {q(p.stage)}",
        note=f"fed by: tar -c -f - {shown_files} (from {bundle.sources.get('repository', '')}/..)",
        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    if proc is None:  # dry run
        return 0
    total = sum(f.size for f in files)
    sent = 0
    with console.progress(transient=True) as bar:
        task = bar.add_task(f"sending {len(files)} files", total=total, visible=ctx.show_progress)
        try:
            with tarfile.open(fileobj=proc.stdin, mode="w|", format=tarfile.PAX_FORMAT) as tar:
                for f in files:
                    info = tarfile.TarInfo(f.rel)
                    info.size, info.mode, info.mtime = f.size, 0o644, int(time.time())
                    if f.data is not None:
                        tar.addfile(info, io.BytesIO(f.data))
                    else:
                        with open(f.src, "rb") as fh:  # type: ignore[arg-type]
                            tar.addfile(info, fh)
                    sent += f.size
                    bar.advance(task, f.size)
            proc.stdin.close()  # type: ignore[union-attr]
        except (BrokenPipeError, ConnectionResetError, ValueError, OSError) as exc:
            err = _finish(proc)
            raise DeployError(
                f"upload to board {session.board.name} failed after {sent} bytes: "
                f"{_explain(err, p, session.board.user) if err else exc}; the previous bundle is untouched, "
                f"re-run push to complete it"
            ) from None
        except BaseException:
            proc.kill()
            proc.wait()
            raise
    err = _finish(proc)
    if proc.returncode != 0:
        reason = "the transfer was killed" if proc.returncode < 0 else _explain(err, p, session.board.user)
        raise DeployError(
            f"upload to board {session.board.name} failed: {reason}; the previous bundle is untouched, "
            f"re-run push to complete it"
        )
    return sent


def _finish(proc: Any) -> str:
    try:
        proc.stdin.close()
    except (OSError, ValueError):
        pass
    err = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
    proc.wait()
    return err


def push_bundle(ctx: Ctx, session: Session, bundle: Bundle) -> Dict[str, Any]:
    """Make the board's ``apps/<app>`` the given bundle; return what moved (see module docstring)."""
    t0 = time.monotonic()
    p = RemotePaths.of(session.board.remote_root, bundle.app, bundle.bundle_id)
    probe = session.run(_probe_script(p, bundle.app), what="reading the bundles on the board")
    state = parse_probe(probe.stdout)
    plan = make_plan(bundle, p, state)
    result: Dict[str, Any] = {
        "app": bundle.app, "bundle_id": bundle.bundle_id, "remote": p.current, "files_total": len(bundle.files),
        "bytes_total": bundle.total_bytes, "files_sent": len(plan.send), "bytes_sent": 0,
        "model_bytes_sent": 0, "files_linked": len(plan.link), "files_kept": len(plan.keep),
        "up_to_date": plan.up_to_date, "send": [f.rel for f in plan.send],
    }
    if plan.up_to_date:
        result["seconds"] = round(time.monotonic() - t0, 3)
        return result
    from_stage = not plan.final_complete
    script = _switch_script(p, bundle.app, from_stage)
    if from_stage:
        # One ssh call stages (links, deletes) and receives the tar stream; one verifies and switches.
        result["bytes_sent"] = _send(ctx, session, p, bundle, plan.send, _stage_script(p, plan, bundle))
        result["model_bytes_sent"] = sum(f.size for f in plan.send if f.rel.endswith(".pt")) if not ctx.dry_run else 0
        script = _verify_script(p, bundle) + script
    res = session.run_script(script, check=False, what="verifying sha256 sums on the board and switching")
    if res.ran and res.returncode == 3:
        bad = [ln for ln in (res.stdout + res.stderr).splitlines() if "FAILED" in ln or "holds" in ln]
        raise DeployError(
            f"verification on board {session.board.name} failed: {(bad or [last_line(res.stderr)])[0]}; "
            f"the previous bundle is untouched, re-run push"
        )
    if res.ran and res.returncode != 0:
        raise DeployError(f"switching to the new bundle on board {session.board.name} failed: "
                          f"{_explain(res.stderr, p, session.board.user)}")
    result["seconds"] = round(time.monotonic() - t0, 3)
    return result


def summarize(result: Dict[str, Any]) -> str:
    """One line: what moved."""
    if result.get("up_to_date"):
        return f"{result['app']}: up to date ({result['files_total']} files, nothing sent, {result['seconds']:.2f} s)"
    return (
        f"{result['app']}: {result['files_sent']} of {result['files_total']} files sent "
        f"({human_bytes(result['bytes_sent'])}), {result['files_linked']} reused on the board, "
        f"{result['seconds']:.2f} s"
    )


def human_bytes(n: float) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if abs(n) < 1024 or unit == "GB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    return f"{n:.1f} GB"


class NoPython(DeployError):
    """The image runs no ``python3``: not a runtime image, so there is no torch to check."""


def image_torch(engine: Any, image: str) -> Optional[str]:
    """The torch version installed in ``image`` on the board (a short container reads its
    package metadata; torch is not imported); None when the image has no torch."""
    code = ("import importlib.metadata as m\n"
            "try:\n    print(m.version('torch'))\nexcept m.PackageNotFoundError:\n    print('')")
    engine.record("run", "--rm", "--entrypoint", "python3", image, "-c", "<torch version>", mutating=False)
    try:
        out = engine.client.containers.run(image, entrypoint=["python3", "-c", code], remove=True,
                                           network_disabled=True, stdout=True, stderr=False)
    except Exception as exc:  # docker.errors.ContainerError / ImageNotFound / APIError
        first = str(exc).splitlines()[0][:200] if str(exc) else exc.__class__.__name__
        if "executable file not found" in str(exc) or '"python3": no such file' in str(exc).lower():
            raise NoPython(f"image {image} has no python3") from exc
        raise DeployError(f"cannot read the torch version of image {image} on the board: {first}") from exc
    text = out.decode(errors="replace").strip() if isinstance(out, bytes) else str(out).strip()
    return text.splitlines()[-1] if text else None


def check_torch(ctx: Ctx, engine: Any, bundle: Bundle, image: str) -> Dict[str, Any]:
    """Refuse (DeployError, one line) a bundle whose chunk files the image's torch cannot load.

    The bundle's needs come from its files (:func:`pantheon.formats.torchscript.needs_of`); the
    board's torch from the image. Not checked in a dry run or when the image is not on the board
    yet (``--image-source skip`` before any build): the result says so.
    """
    needs = torchscript.needs_of(f.src for f in bundle.files if f.src is not None and f.rel.endswith(".pt"))
    result: Dict[str, Any] = {"format_version": needs.format_version, "files": needs.files}
    if ctx.dry_run:
        result["checked"] = False
        return result
    try:
        engine.client.images.get(image)
    except Exception as exc:  # no engine (DockerError) or no such image (docker.errors.ImageNotFound)
        why = str(exc).splitlines()[0][:160] if isinstance(exc, DeployError) else f"image {image} is not on the board yet"
        ctx.log(f"torch compatibility not checked: {why}")
        result.update(checked=False, why=why)
        return result
    try:
        board = image_torch(engine, image)
    except NoPython as exc:  # e.g. a stand-in image: warn, and leave it to `run` to fail
        ctx.log(f"torch compatibility not checked: {exc}")
        result.update(checked=False, why=str(exc))
        return result
    problem = torchscript.refusal(needs, board)
    if problem:
        raise DeployError(f"app {bundle.app} cannot run on {engine.session.board.name}: {problem}")
    result.update(checked=True, board_torch=board)
    ctx.log(f"torch {board} on the board loads the bundle's {needs.files} TorchScript files "
            f"(format {needs.format_version})")
    return result


def push_to_board(ctx: Ctx, session: Session, bundle: Bundle, image: str, image_source: str = "auto") -> Tuple[str, Dict[str, Any]]:
    """``pantheon-deploy push`` on one board: the runtime image (unless ``skip``), then the bundle."""
    from pantheon.deploy.build import ensure_image
    from pantheon.deploy.engine import RemoteEngine

    data: Dict[str, Any] = {}
    with RemoteEngine(session) as engine:
        if image_source != "skip":
            data["image"] = ensure_image(ctx, session, engine, image, image_source)
            ctx.log(f"image {image}: {data['image'].get('action', 'planned')}")
        data["torch"] = check_torch(ctx, engine, bundle, image)
    result = push_bundle(ctx, session, bundle)
    data.update(result)
    if ctx.dry_run:
        return f"dry run: {len(ctx.recorder.commands)} actions listed ({len(result.get('send', []))} files to send)", data
    return summarize(result), data
