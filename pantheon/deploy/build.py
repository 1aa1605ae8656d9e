"""``pantheon-deploy build`` and the image half of ``push``: build locally or on the board, move images.

Builds use :func:`pantheon.deploy.images.build_args`, the same arguments as
``make image-jetson``/``image-desktop``. With ``--board`` the build runs on the board's
own engine over SSH (Jetson images are built on the board): the build context goes up
through the Docker SDK, and the base is the l4t-pytorch image matching the board's
``/etc/nv_tegra_release`` unless ``--base-image`` is given.

``ensure_image`` (push) makes sure the runtime image is on the board:

* ``auto``: present with the same id as the local image -> nothing to do; present and no
  local image (or one for another CPU architecture) -> kept; missing -> loaded from the local
  image when its architecture matches the board, else built on the board;
* ``load``: ``docker save`` locally -> spooled to a temporary file -> ``docker load`` on the
  board (progress bar, one-hour read timeout): ``docker save IMG | ssh board docker load``;
* ``build``: build on the board; ``skip``: leave images alone.
"""

from __future__ import annotations

import tempfile
import time
from typing import Any, BinaryIO, Dict, List, Optional, Tuple

from pantheon import console
from pantheon.deploy import images
from pantheon.deploy.engine import RemoteEngine, local_client, normalize_arch
from pantheon.deploy.fleet import Ctx
from pantheon.deploy.remote import BoardFacts, read_facts
from pantheon.deploy.ssh import Session, last_line
from pantheon.errors import BoardError, DockerError, UsageError
from pantheon.platform import jetson as pb

IMAGE_SOURCES = ("auto", "load", "build", "skip")


def choose_base(facts: BoardFacts, base_image: Optional[str], board_name: str) -> Tuple[str, Optional[str]]:
    """The base image and its L4T release for a build on this board."""
    if base_image:
        return base_image, images.l4t_of_base(base_image) or facts.l4t
    if not facts.is_jetson:
        raise BoardError(
            f"board {board_name} is not a Jetson (no L4T release found), so no l4t-pytorch base fits it: "
            f"pass --base-image IMAGE to build there anyway"
        )
    base = pb.l4t_pytorch_base_for(facts.l4t or "")
    return base, images.l4t_of_base(base) or facts.l4t


def build_local(ctx: Ctx, target: str, base_image: Optional[str], tag: Optional[str],
                wheelhouse: Optional[str], l4t: Optional[str] = None) -> Dict[str, Any]:
    """``make image-<target>`` with these arguments, on the local engine."""
    spec = images.build_args(target, base_image, tag, wheelhouse, l4t=l4t)
    if not ctx.recorder.add(spec.shell(), note="with the wheelhouse staged in deploy/wheelhouse" if wheelhouse else ""):
        return {"tag": spec.tag, "dry_run": True}
    t0 = time.monotonic()
    images.build(spec, quiet=not ctx.show_progress)
    img = local_client().images.get(spec.tag)
    return {"tag": spec.tag, "id": img.id, "where": "local", "seconds": round(time.monotonic() - t0, 1),
            "l4t": spec.buildargs.get("L4T_VERSION") or None}


def build_remote(ctx: Ctx, session: Session, engine: RemoteEngine, target: str, base_image: Optional[str],
                 tag: Optional[str], wheelhouse: Optional[str], facts: Optional[BoardFacts] = None) -> Dict[str, Any]:
    """Build on the board's engine over SSH; the build context travels through the Docker SDK."""
    facts = facts or read_facts(session)
    base, l4t = choose_base(facts, base_image, session.board.name) if target == "jetson" else (base_image, None)
    # jetson-stats in the image must be the host jtop service's version (its client refuses any other).
    jtop_v = facts.jtop_version if target == "jetson" else None
    spec = images.build_args(target, base, tag, wheelhouse, l4t=l4t, jetson_stats=jtop_v,
                             base_digest=None if ctx.dry_run else _base_digest(engine, base or images.DEFAULT_BASES[target]))
    ctx.log(f"building {spec.tag} on {session.board.name} FROM {base or 'the Dockerfile default'}"
            + (f" (L4T r{l4t})" if l4t else ""))
    argv = spec.argv()
    if not engine.record(*argv[1:]):
        return {"tag": spec.tag, "base": base, "l4t": l4t, "dry_run": True}
    t0 = time.monotonic()
    api = engine.long_client().api
    tail: List[str] = []
    with images.staged_wheelhouse(spec):
        try:
            for chunk in api.build(decode=True, **spec.sdk_kwargs()):
                line = (chunk.get("stream") or chunk.get("status") or "").rstrip()
                if chunk.get("error"):
                    raise DockerError(f"build of {spec.tag} on board {session.board.name} failed: "
                                      f"{last_line(chunk['error'])}")
                if line:
                    tail = (tail + [line])[-20:]
                    if ctx.show_progress and line.startswith("Step "):
                        ctx.log(f"  {line}")
        except DockerError:
            raise
        except Exception as exc:
            raise DockerError(f"build of {spec.tag} on board {session.board.name} failed: "
                              f"{exc}") from exc
    img = engine.client.images.get(spec.tag)
    return {"tag": spec.tag, "id": img.id, "where": "board", "base": base, "l4t": l4t,
            "seconds": round(time.monotonic() - t0, 1)}


def _base_digest(engine: RemoteEngine, base: str) -> Optional[str]:
    """The base's ``repo@sha256`` on the board's engine when it is there (recorded in the image)."""
    try:
        img = engine.client.images.get(base)
    except Exception:  # not pulled yet: the build pulls it; the digest is then unknown
        return None
    digests = img.attrs.get("RepoDigests") or []
    return digests[0] if digests else None


class _ReadProgress:
    """A readable file wrapper that advances a progress bar."""

    def __init__(self, fh: BinaryIO, advance: Any) -> None:
        self.fh, self.advance = fh, advance

    def read(self, n: int = -1) -> bytes:
        data = self.fh.read(n)
        self.advance(len(data))
        return data

    def __iter__(self) -> Any:
        while True:
            data = self.read(1 << 20)
            if not data:
                return
            yield data


def load_image(ctx: Ctx, engine: RemoteEngine, tag: str) -> Dict[str, Any]:
    """``docker save TAG`` locally, spooled to a temporary file, then ``docker load`` on the board."""
    local = local_client()
    shown = f"docker save {tag} | {engine.session.display('docker load')}"
    if not engine.session.recorder.add(shown, note="spooled through a temporary file"):
        return {"image": tag, "action": "load", "dry_run": True}
    img = local.images.get(tag)
    t0 = time.monotonic()
    with tempfile.TemporaryFile(prefix="pantheon-image-") as spool:
        with console.progress(transient=True) as bar:
            task = bar.add_task(f"saving {tag}", total=None, visible=ctx.show_progress)
            for chunk in img.save(named=True):
                spool.write(chunk)
                bar.advance(task, len(chunk))
            size = spool.tell()
            spool.seek(0)
            task2 = bar.add_task(f"loading {tag} on {engine.session.board.name}", total=size, visible=ctx.show_progress)
            try:
                for msg in engine.long_client().api.load_image(_ReadProgress(spool, lambda n: bar.advance(task2, n))):
                    if isinstance(msg, dict) and msg.get("error"):
                        raise DockerError(f"docker load of {tag} on board {engine.session.board.name} failed: "
                                          f"{last_line(str(msg['error']))}")
            except DockerError:
                raise
            except Exception as exc:
                raise DockerError(f"docker load of {tag} on board {engine.session.board.name} failed: "
                                  f"{exc}") from exc
    remote = engine.client.images.get(tag)
    if remote.id != img.id:
        raise DockerError(f"after loading, {tag} on board {engine.session.board.name} has id {remote.id}, not {img.id}")
    return {"image": tag, "action": "loaded", "id": img.id, "bytes": size, "seconds": round(time.monotonic() - t0, 1)}


def _get(client: Any, tag: str) -> Any:
    import docker

    try:
        return client.images.get(tag)
    except docker.errors.ImageNotFound:
        return None


def ensure_image(ctx: Ctx, session: Session, engine: RemoteEngine, tag: str, source: str = "auto",
                 facts: Optional[BoardFacts] = None, wheelhouse: Optional[str] = None) -> Dict[str, Any]:
    """Make sure image ``tag`` is on the board (see the module docstring for ``source``)."""
    if source not in IMAGE_SOURCES:
        raise UsageError(f"unknown --image-source {source!r}: choose {', '.join(IMAGE_SOURCES)}")
    if source == "skip":
        return {"image": tag, "action": "skipped"}
    if source == "build":
        return build_remote(ctx, session, engine, "jetson", None, tag, wheelhouse, facts)
    engine.record("image", "inspect", tag, mutating=False)
    remote = _get(engine.client, tag)
    local = None
    try:
        local = _get(local_client(), tag)
    except DockerError:
        if source == "load":
            raise
    board_arch = engine.architecture()
    local_arch = normalize_arch(local.attrs.get("Architecture", "")) if local is not None else None
    if source == "load":
        if local is None:
            raise DockerError(f"--image-source load: there is no local image {tag} to send")
        if local_arch != board_arch:
            raise DockerError(f"local image {tag} is {local_arch}, board {session.board.name} is {board_arch}: "
                              f"build it on the board instead (--image-source build)")
        return load_image(ctx, engine, tag)
    if remote is not None and (local is None or local_arch != board_arch or local.id == remote.id):
        return {"image": tag, "action": "present", "id": remote.id}
    if local is not None and local_arch == board_arch:
        return load_image(ctx, engine, tag)
    return build_remote(ctx, session, engine, "jetson", None, tag, wheelhouse, facts)


def build_on_board(ctx: Ctx, session: Session, target: str, base_image: Optional[str], tag: Optional[str],
                   wheelhouse: Optional[str]) -> Tuple[str, Dict[str, Any]]:
    """``pantheon-deploy build --board``: one board's build; the summary line and its result."""
    with RemoteEngine(session) as engine:
        res = build_remote(ctx, session, engine, target, base_image, tag, wheelhouse)
    if res.get("dry_run"):
        return f"dry run: would build {res['tag']} FROM {res.get('base')}", res
    return f"built {res['tag']} ({res['id'][7:19]}) FROM {res.get('base')} in {res['seconds']} s", res
