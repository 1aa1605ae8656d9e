"""One way to build the images: the ``docker build`` arguments of ``make image-jetson``/``image-desktop``.

CI, the container tests, ``pantheon-deploy``'s builds and people all go through
:func:`build_args` (directly or through the Makefile, which runs this module), so an
image is built the same way everywhere::

    spec = build_args("jetson", base_image="pantheon-test-base:bookworm", tag="pantheon-jetson:test",
                      wheelhouse="/opt/wheels")
    spec.argv()          # ['docker', 'build', '--network', 'host', '-f', 'Dockerfile.jetson', ...]
    spec.sdk_kwargs()    # the same for docker-py: client.images.build(**spec.sdk_kwargs())
    with staged_wheelhouse(spec):   # links the wheelhouse's wheels into the build context
        ...

From the shell (what the Makefile runs; stdlib only, so the board's plain python3 can run it
from a checkout without installing anything)::

    PYTHONPATH=. python3 -m pantheon.deploy.images jetson --base-image IMG --tag TAG --wheelhouse DIR

Build arguments: ``BASE_IMAGE``, ``L4T_VERSION`` (jetson; the ``org.pantheon.l4t`` label that
``pantheon-deploy`` compares with the board), ``PANTHEON_GIT_COMMIT`` (baked in for the bench
manifest) and ``PIP_INDEX`` (the one package index of the build; a base's own pip settings, like
the often-down index of JetPack 6 bases, are ignored). Builds use ``--network host``: engines without a bridge network (CI's) need it, and
it changes nothing elsewhere.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Sequence, Union

from pantheon.errors import DockerError, UsageError

REPO = Path(__file__).resolve().parents[2]  # the checkout, when pantheon runs from one
TARGETS = {"jetson": "Dockerfile.jetson", "desktop": "Dockerfile.desktop"}
DEFAULT_TAGS = {"jetson": "pantheon-jetson:latest", "desktop": "pantheon-desktop:latest"}
# The Dockerfiles' own defaults (kept here to infer the L4T label when no base is given).
DEFAULT_BASES = {
    "jetson": "nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3",
    "desktop": "pytorch/pytorch:2.5.1-cuda12.4-cudnn9-runtime",
}
WHEELHOUSE_DIR = "deploy/wheelhouse"  # inside the build context; see its README
_L4T_TAG_RE = re.compile(r":r(\d+\.\d+(?:\.\d+)?)")


def data_dir() -> Path:
    """pantheon-deploy's package data (``pantheon/deploy/data``): board presets, app files, the Dockerfiles
    and what a build context needs. Symlinks to the originals in a checkout, copies in a wheel."""
    try:
        from importlib.resources import files  # Python 3.9+
    except ImportError:  # 3.8: a regular (non-zip) install has its data beside the modules
        return Path(__file__).resolve().parent / "data"
    return Path(str(files("pantheon.deploy") / "data"))


def is_checkout(path: Path) -> bool:
    """Whether ``path`` is a pantheon source tree (what ``docker build`` needs as its context)."""
    return all((path / f).is_file() for f in ("pyproject.toml", *TARGETS.values())) and \
        (path / "pantheon" / "__init__.py").is_file()


_CONTEXTS: Dict[str, Path] = {}


def default_context() -> Path:
    """The build context: this checkout, or (pantheon installed from a wheel, e.g. in the desktop image)
    one assembled once per process from the installed package and its data, in a temporary folder.

    The assembled context has what the Dockerfiles COPY: ``pyproject.toml``, ``README.md``, ``pantheon/``
    (without caches), ``deploy/apps``, ``deploy/boards`` and an empty ``deploy/wheelhouse``.
    """
    if is_checkout(REPO):
        return REPO
    if "ctx" in _CONTEXTS and is_checkout(_CONTEXTS["ctx"]):
        return _CONTEXTS["ctx"]
    import atexit
    import tempfile

    data = data_dir()
    missing = [f for f in ("pyproject.toml", "README.md", *TARGETS.values()) if not (data / f).is_file()]
    if missing:
        raise UsageError(f"this pantheon install has no {', '.join(missing)} in {data}: reinstall it from a "
                         f"wheel or source tree (pip install pantheon[deploy]), or run from a checkout")
    ctx = Path(tempfile.mkdtemp(prefix="pantheon-build-context-"))
    atexit.register(shutil.rmtree, str(ctx), True)
    package = Path(__file__).resolve().parents[1]
    shutil.copytree(package, ctx / "pantheon", ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for f in ("pyproject.toml", "README.md", *TARGETS.values()):
        shutil.copy2(data / f, ctx / f)
    for d in ("apps", "boards"):
        shutil.copytree(data / d, ctx / "deploy" / d)
    (ctx / WHEELHOUSE_DIR).mkdir(parents=True)
    (ctx / WHEELHOUSE_DIR / "README.md").write_text("Wheels offered to pip in the image build.\n")
    _CONTEXTS["ctx"] = ctx
    return ctx


@dataclass
class BuildSpec:
    """Everything one ``docker build`` needs; render it with :meth:`argv` or :meth:`sdk_kwargs`."""

    target: str
    dockerfile: str
    context: Path
    tag: str
    buildargs: Dict[str, str] = field(default_factory=dict)
    wheelhouse: Optional[Path] = None
    network: str = "host"

    def argv(self, docker: str = "docker") -> List[str]:
        """The ``docker build`` command line (the context is the last argument)."""
        # --force-rm: no stopped step containers left behind by a failed build (legacy builder)
        args = [docker, "build", "--network", self.network, "--force-rm", "-f", self.dockerfile, "-t", self.tag]
        for key, value in self.buildargs.items():
            args += ["--build-arg", f"{key}={value}"]
        return args + [str(self.context)]

    def sdk_kwargs(self) -> Dict[str, Any]:
        """Keyword arguments for docker-py's ``client.images.build``."""
        return {
            "path": str(self.context),
            "dockerfile": self.dockerfile,
            "tag": self.tag,
            "buildargs": dict(self.buildargs),
            "network_mode": self.network,
            "rm": True,
            "forcerm": True,
        }

    def shell(self, docker: str = "docker") -> str:
        """:meth:`argv` as one copy-pasteable shell line."""
        import shlex

        return shlex.join(self.argv(docker))


def l4t_of_base(base_image: str) -> Optional[str]:
    """``"nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3"`` -> ``"35.2.1"``; None for a non-L4T tag."""
    m = _L4T_TAG_RE.search(base_image or "")
    if not m:
        return None
    parts = m.group(1).split(".")
    return ".".join((parts + ["0"])[:3])


def git_commit(repo: Path = REPO) -> str:
    """``repo``'s HEAD as 12 hex digits, ``-dirty`` when tracked files differ; ``unknown`` without git."""

    def git(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(["git", *args], cwd=str(repo), capture_output=True, text=True, timeout=10)

    try:
        head = git("rev-parse", "--short=12", "HEAD")
        if head.returncode != 0 or not head.stdout.strip():
            return "unknown"
        dirty = git("diff-index", "--quiet", "HEAD", "--").returncode != 0
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head.stdout.strip() + ("-dirty" if dirty else "")


def build_args(
    target: str,
    base_image: Optional[str] = None,
    tag: Optional[str] = None,
    wheelhouse: Optional[Union[str, os.PathLike[str]]] = None,
    *,
    l4t: Optional[str] = None,
    commit: Optional[str] = None,
    context: Optional[Union[str, os.PathLike[str]]] = None,
    pip_index: Optional[str] = None,
    jetson_stats: Optional[str] = None,
    base_digest: Optional[str] = None,
) -> BuildSpec:
    """The build of image ``target`` (``jetson`` or ``desktop``).

    Args:
        target: which Dockerfile (``Dockerfile.<target>``).
        base_image: ``BASE_IMAGE`` (None/empty: the Dockerfile's default).
        tag: image name (default ``pantheon-<target>:latest``).
        wheelhouse: a folder of wheels offered to pip in the build (see :func:`staged_wheelhouse`).
        l4t: jetson only, the L4T release of the base; inferred from an ``:rXX.Y.Z`` tag, else empty
            (a non-L4T base, e.g. the CI's Debian one: the image then carries no L4T).
        commit: ``PANTHEON_GIT_COMMIT`` (default: :func:`git_commit` of the context).
        context: the build context (default: this checkout, else :func:`default_context`).
        pip_index: ``PIP_INDEX``, the only package index pip uses in the build (default: the
            Dockerfile's, PyPI); a base image's own index settings are ignored either way.
        jetson_stats: jetson only, ``JETSON_STATS_VERSION``: pin jetson-stats to the board's jtop
            service version (its client refuses any other).
        base_digest: ``BASE_DIGEST``, the base's ``repo@sha256:...`` (label and environment of the image).

    Raises:
        UsageError: unknown target, or a wheelhouse that is not a folder.
    """
    if target not in TARGETS:
        raise UsageError(f"unknown image target {target!r}: choose {' or '.join(TARGETS)}")
    ctx = Path(context) if context else default_context()
    if not (ctx / TARGETS[target]).is_file():
        raise UsageError(f"{ctx / TARGETS[target]} not found: the build context must be a pantheon checkout")
    wh = Path(wheelhouse).expanduser().resolve() if wheelhouse else None
    if wh is not None and not wh.is_dir():
        raise UsageError(f"wheelhouse {wh} is not a folder")
    buildargs: Dict[str, str] = {}
    if base_image:
        buildargs["BASE_IMAGE"] = base_image
    if target == "jetson":
        buildargs["L4T_VERSION"] = l4t or l4t_of_base(base_image or DEFAULT_BASES["jetson"]) or ""
    buildargs["PANTHEON_GIT_COMMIT"] = commit or git_commit(ctx)
    if pip_index:
        buildargs["PIP_INDEX"] = pip_index
    if base_digest:
        buildargs["BASE_DIGEST"] = base_digest
    if jetson_stats and target == "jetson":
        if not re.fullmatch(r"[0-9][0-9A-Za-z.+-]*", jetson_stats):
            raise UsageError(f"bad jetson-stats version {jetson_stats!r}")
        buildargs["JETSON_STATS_VERSION"] = jetson_stats
    return BuildSpec(
        target=target,
        dockerfile=TARGETS[target],
        context=ctx,
        tag=tag or DEFAULT_TAGS[target],
        buildargs=buildargs,
        wheelhouse=wh,
    )


@contextlib.contextmanager
def staged_wheelhouse(spec: BuildSpec) -> Iterator[List[Path]]:
    """Link (or copy) the wheelhouse's ``*.whl`` into ``<context>/deploy/wheelhouse`` for one build.

    Yields the staged files; they are removed afterwards, so a later build without a
    wheelhouse sees only the folder's README.
    """
    dest = spec.context / WHEELHOUSE_DIR
    dest.mkdir(parents=True, exist_ok=True)
    staged: List[Path] = []
    try:
        if spec.wheelhouse is not None and spec.wheelhouse != dest.resolve():
            for whl in sorted(spec.wheelhouse.glob("*.whl")):
                target = dest / whl.name
                if target.exists():
                    target.unlink()
                try:
                    os.link(whl, target)  # same filesystem: no copy of a 200 MB wheel
                except OSError:
                    shutil.copy2(whl, target)
                staged.append(target)
        yield staged
    finally:
        for p in staged:
            with contextlib.suppress(OSError):
                p.unlink()


def base_digest_of(image: str, docker: str = "docker") -> Optional[str]:
    """``repo@sha256:...`` of a base already in the local engine (``docker image inspect``); None otherwise
    (not pulled yet, built locally without a registry digest, or no docker CLI)."""
    if "@sha256:" in image:
        return image
    try:
        out = subprocess.run([docker, "image", "inspect", "-f", "{{json .RepoDigests}}", image],
                             capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        return None
    try:
        import json

        digests = json.loads(out.stdout) if out.returncode == 0 else []
    except ValueError:
        return None
    return digests[0] if digests else None


def build(spec: BuildSpec, docker: Optional[str] = None, quiet: bool = False) -> None:
    """Run ``docker build`` for ``spec`` with the wheelhouse staged; docker's output passes through.

    ``BASE_DIGEST`` is filled from the local engine when the spec has none and the base is there.

    Raises:
        DockerError: the docker CLI is missing or the build failed (naming the last error line).
    """
    docker = docker or os.environ.get("DOCKER", "docker")
    if shutil.which(docker) is None:
        raise DockerError(f"{docker} not found: install the Docker CLI (apt-get install docker.io)")
    base = spec.buildargs.get("BASE_IMAGE") or DEFAULT_BASES.get(spec.target, "")
    if "BASE_DIGEST" not in spec.buildargs and base:
        digest = base_digest_of(base, docker)
        if digest:
            spec.buildargs["BASE_DIGEST"] = digest
    with staged_wheelhouse(spec):
        print("+ " + spec.shell(docker), file=sys.stderr, flush=True)
        proc = subprocess.Popen(spec.argv(docker), stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        tail: List[str] = []
        assert proc.stdout is not None
        for line in proc.stdout:
            if not quiet:
                sys.stderr.write(line)
            tail = (tail + [line.rstrip()])[-40:]
        code = proc.wait()
    if code != 0:
        raise DockerError(f"docker build of {spec.tag} failed (exit {code}): {_reason(tail)}")


_OWN_ERROR = re.compile(r"^(?:#\d+ [\d.]+ )?(error: .*)$")  # legacy builder / BuildKit step output
_ANSI = re.compile(r"\x1b\[[0-9;]*m")  # the legacy builder colours a step's stderr


_PY_ERROR = re.compile(r"^[A-Za-z_][\w.]*(?:Error|Exception)\b.*")  # a Python exception's last line


def _reason(lines: Sequence[str]) -> str:
    """The most useful line of a failed build's output: our Dockerfile's own ``error:`` line,
    else a Python exception (e.g. a smoke test's), else the last line."""
    clean = [_ANSI.sub("", line).strip() for line in lines]
    for pattern in (_OWN_ERROR, _PY_ERROR):
        for line in reversed(clean):
            m = pattern.match(line)
            if m:
                return m.group(1) if pattern is _OWN_ERROR else line
    for line in reversed(clean):
        if line:
            return line
    return "no output"


# --- inside the build: pantheon's requirements over a base that ships torch --------------------------

_NAME = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)")
_EXTRA = re.compile(r"""extra\s*==\s*["']([^"']+)["']""")
_FLOOR = re.compile(r">=\s*([0-9][0-9.]*)")


def _canon(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _req_name(req: str) -> str:
    """The project name a requirement line starts with (the line itself when it has none)."""
    m = _NAME.match(req)
    return m.group(1) if m else req


def _release(version: str) -> tuple:
    """``"2.0.0a0+ec3941ad.nv23.02"`` -> ``(2, 0, 0)``: the release part, pre/local labels ignored."""
    m = re.match(r"\s*(\d+(?:\.\d+)*)", version)
    parts = tuple(int(x) for x in m.group(1).split(".")) if m else ()
    while parts and parts[-1] == 0:
        parts = parts[:-1]
    return parts


def _installed(name: str) -> Optional[str]:
    from importlib import metadata

    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def requirements(
    dist: str = "pantheon",
    extras: Sequence[str] = (),
    keep: Sequence[str] = ("torch",),
    prefer: Sequence[str] = ("numpy", "torchvision"),
    installed: Any = _installed,
    requires: Optional[Sequence[str]] = None,
) -> List[str]:
    """The requirement lines of ``dist`` (core + ``extras``) to install over the base image.

    NVIDIA's torch wheels carry pre-release versions (``2.0.0a0+ec3941ad.nv23.02`` in
    l4t-pytorch r35.2.1), which ``torch>=2.0`` rejects, so pip would replace the base's CUDA
    torch with a CPU wheel from PyPI. Instead: a ``keep`` package installed in the base is
    pinned to its installed version after checking its release against the requirement's
    floor (pre-release and local labels ignored); a ``prefer`` package is pinned the same way
    when it meets the floor and left to pip otherwise; the rest pass through, their
    ``extra == ...`` markers dropped.

    Raises:
        DockerError: a ``keep`` package of the base is older than the requirement's floor.
    """
    from importlib import metadata

    reqs = list(requires if requires is not None else (metadata.requires(dist) or []))
    keep_c, prefer_c = {_canon(k) for k in keep}, {_canon(p) for p in prefer}
    out: List[str] = []
    for req in reqs:
        spec, _, marker = (part.strip() for part in req.partition(";"))
        m = _EXTRA.search(marker)
        if m:
            if m.group(1) not in extras:
                continue
            marker = re.sub(r"(\s*and\s*)?" + _EXTRA.pattern + r"(\s*and\s*)?", " ", marker).strip()
        name = _req_name(spec)
        have = installed(name) if _canon(name) in keep_c | prefer_c else None
        if have is not None:
            floor = _FLOOR.search(spec)
            ok = floor is None or _release(have) >= _release(floor.group(1))
            if ok:
                out.append(f"{name}=={have}")
                continue
            if _canon(name) in keep_c:
                raise DockerError(f"the base image's {name} {have} is older than pantheon's {spec}: "
                                  f"build FROM a base with {name} {floor.group(1) if floor else ''} or newer")
        out.append(spec + (f"; {marker}" if marker else ""))
    return out


# --- the lock file of the runtime image: exact versions and hashes per Python ------------------------

#: Where the runtime image's lock files live (one per Python the l4t-pytorch bases ship).
LOCK_DIR = "deploy/lock"
#: JetPack 5 (r35, l4t-pytorch) ships Python 3.8, JetPack 6 (r36) 3.10; 3.11 is the test base (Debian 12).
LOCK_PYTHONS = ("3.8", "3.10", "3.11")
#: Hashes are collected for the boards' wheels and for x86_64 (CI builds the image on the test base).
LOCK_PLATFORMS = (("manylinux2014_aarch64", "manylinux_2_17_aarch64", "manylinux_2_28_aarch64"),
                  ("manylinux2014_x86_64", "manylinux_2_17_x86_64", "manylinux_2_28_x86_64"))
#: Not locked: the base's torch and numpy are kept (see :func:`requirements`), and jetson-stats must
#: equal the board's jtop service version (``JETSON_STATS_VERSION``).
LOCK_SKIP = ("torch", "numpy", "torchvision", "jetson-stats")


def _resolve(reqs: Sequence[str], python: str, platforms: Sequence[str], pip: Sequence[str]) -> Dict[str, Any]:
    """``pip install --dry-run --report`` for another Python and platform: name -> (version, sha256)."""
    import json as _json
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        report = Path(d) / "report.json"
        cmd = [*pip, "install", "--dry-run", "--ignore-installed", "--quiet", "--only-binary=:all:",
               "--implementation", "cp", "--python-version", python, "--report", str(report)]
        for plat in platforms:
            cmd += ["--platform", plat]
        res = subprocess.run([*cmd, *reqs], capture_output=True, text=True)
        if res.returncode != 0:
            tail = (res.stderr.strip().splitlines() or ["no output"])[-1]
            raise DockerError(f"cannot resolve the lock for Python {python} ({platforms[0]}): {tail}")
        items = _json.loads(report.read_text())["install"]
    out: Dict[str, Any] = {}
    for it in items:
        name = _canon(it["metadata"]["name"])
        sha = it["download_info"].get("archive_info", {}).get("hashes", {}).get("sha256")
        if not sha:
            raise DockerError(f"the index gave no sha256 for {name} (Python {python}, {platforms[0]})")
        out[name] = (it["metadata"]["version"], sha)
    return out


def lock_lines(python: str, reqs: Sequence[str], pip: Sequence[str] = (sys.executable, "-m", "pip")) -> List[str]:
    """The lock file of the runtime image for ``python``: ``name==version --hash=sha256:...`` lines.

    Versions are resolved for the boards (aarch64); the same versions are then resolved for
    x86_64 and both wheels' hashes kept, so ``pip install --require-hashes`` accepts either.
    """
    reqs = [r for r in reqs if _canon(_req_name(r)) not in LOCK_SKIP]
    board = _resolve(reqs, python, LOCK_PLATFORMS[0], pip)
    pinned = [f"{n}=={v}" for n, (v, _) in board.items() if n not in LOCK_SKIP]
    hashes = {n: {sha} for n, (_, sha) in board.items()}
    for plats in LOCK_PLATFORMS[1:]:
        for n, (_, sha) in _resolve(pinned, python, plats, pip).items():
            if n in hashes:
                hashes[n].add(sha)
    lines = [f"# pantheon runtime image, Python {python}: `make lock` writes this file (exact versions, sha256 of",
             "# the aarch64 and x86_64 wheels). torch, numpy: the base image's; jetson-stats: the board's jtop version."]
    for n in sorted(hashes):
        if n in LOCK_SKIP:
            continue
        lines.append(f"{n}=={board[n][0]} " + " ".join(f"--hash=sha256:{h}" for h in sorted(hashes[n])))
    return lines


def main(argv: Optional[Sequence[str]] = None) -> int:
    """``python -m pantheon.deploy.images {jetson,desktop} [--base-image] [--tag] [--wheelhouse] [--l4t] [--dry-run]``.

    Inside the images' build stage: ``python -m pantheon.deploy.images requirements --extras jetson``
    prints :func:`requirements` one per line.
    """
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["requirements"]:
        return _requirements_main(argv[1:])
    if argv[:1] == ["lock"]:
        return _lock_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m pantheon.deploy.images", description="Build a Pantheon image.")
    p.add_argument("target", choices=sorted(TARGETS))
    p.add_argument("--base-image", default="", help="BASE_IMAGE (empty: the Dockerfile's default)")
    p.add_argument("--tag", default="", help="image tag (default pantheon-<target>:latest)")
    p.add_argument("--wheelhouse", default="", help="folder of wheels offered to pip in the build")
    p.add_argument("--l4t", default="", help="L4T release of the base (jetson; default: from the base's tag)")
    p.add_argument("--pip-index", default="", help="PIP_INDEX: the package index of the build (default PyPI)")
    p.add_argument("--jetson-stats", default="", help="JETSON_STATS_VERSION: the board's jtop service version")
    p.add_argument("--dry-run", action="store_true", help="print the docker command and stop")
    args = p.parse_args(argv)
    try:
        spec = build_args(args.target, args.base_image or None, args.tag or None, args.wheelhouse or None,
                          l4t=args.l4t or None, pip_index=args.pip_index or None,
                          jetson_stats=args.jetson_stats or None)
        if args.dry_run:
            print(spec.shell(os.environ.get("DOCKER", "docker")))
            return 0
        build(spec)
    except (UsageError, DockerError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    print(f"built {spec.tag}", file=sys.stderr)
    return 0


def _requirements_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m pantheon.deploy.images requirements")
    p.add_argument("--extras", default="", help="comma-separated extras (jetson, offline, deploy)")
    p.add_argument("--keep", default="torch", help="the base's packages to keep (checked against the floor)")
    p.add_argument("--prefer", default="numpy,torchvision", help="the base's packages to keep when recent enough")
    args = p.parse_args(argv)
    split = lambda text: [x for x in text.split(",") if x]  # noqa: E731
    try:
        lines = requirements(extras=split(args.extras), keep=split(args.keep), prefer=split(args.prefer))
    except DockerError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print("\n".join(lines))
    return 0


def _lock_main(argv: Sequence[str]) -> int:
    p = argparse.ArgumentParser(prog="python -m pantheon.deploy.images lock",
                                description="Write the runtime image's lock files (deploy/lock/jetson-py<X.Y>.txt).")
    p.add_argument("--out", default=LOCK_DIR, help="folder of the lock files")
    p.add_argument("--python", default=",".join(LOCK_PYTHONS), help="comma-separated Python versions")
    args = p.parse_args(argv)
    reqs = requirements(extras=["jetson"], keep=(), prefer=())
    try:
        for py in [x for x in args.python.split(",") if x]:
            path = Path(args.out) / f"jetson-py{py}.txt"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text("\n".join(lock_lines(py, reqs)) + "\n")
            print(f"wrote {path}", file=sys.stderr)
    except (DockerError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
