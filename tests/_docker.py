"""Docker helpers for the container tests (and the deploy tests): a real engine or a visible skip.

* :func:`docker_client` -> a pinged ``docker.DockerClient`` from ``$DOCKER_HOST``, or None.
* :func:`require_docker` -> the client; without an engine the test is SKIPPED with the
  reason, or FAILS when ``PANTHEON_REQUIRE_DOCKER=1`` (set by ``.ci/run``).
* :func:`local_base_image` -> the local Debian base (``$PANTHEON_TEST_BASE_IMAGE``, made by
  ``.ci/docker.sh`` with debootstrap + ``docker import``), standing in for l4t-pytorch.
* :func:`test_wheelhouse` -> the folder with the CPU torch wheel (``$PANTHEON_TEST_WHEELHOUSE``).
* :func:`built_jetson_image` / :func:`built_desktop_image` -> the image tag, built once per
  test process with ``make image-<target>`` and the same arguments CI and people use.

Nothing here mocks Docker: without an engine there is nothing to test, hence the skip.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import re
import subprocess
import tarfile
import time
import uuid
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import pytest

REPO = Path(__file__).resolve().parents[1]
ENV_REQUIRE = "PANTHEON_REQUIRE_DOCKER"
ENV_BASE = "PANTHEON_TEST_BASE_IMAGE"
ENV_WHEELHOUSE = "PANTHEON_TEST_WHEELHOUSE"
DEFAULT_BASE = "pantheon-test-base:bookworm"
JETSON_TEST_TAG = "pantheon-jetson:test"
DESKTOP_TEST_TAG = "pantheon-desktop:test"
HOW = "run `source .ci/docker.sh` (as root) first, or set DOCKER_HOST"


def required() -> bool:
    return os.environ.get(ENV_REQUIRE, "") not in ("", "0")


def unavailable(reason: str) -> None:
    """Skip with ``reason`` or, when Docker is required, fail with it."""
    if required():
        pytest.fail(f"{ENV_REQUIRE}=1 but {reason}", pytrace=False)
    pytest.skip(f"{reason}; {HOW}")


@functools.lru_cache(maxsize=None)
def _client() -> Tuple[Any, str]:
    try:
        import docker
    except ImportError:
        return None, "the docker Python package is not installed (pip install 'pantheon[deploy]')"
    try:
        client = docker.from_env(timeout=600)
        client.ping()
    except Exception as exc:  # DockerException, connection refused, permission denied
        where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
        return None, f"no Docker engine at {where} ({' '.join(str(exc).split())[:160]})"
    return client, ""


def docker_client() -> Optional[Any]:
    """A pinged ``docker.DockerClient`` for ``$DOCKER_HOST`` (or the default socket), else None."""
    return _client()[0]


def require_docker() -> Any:
    """The Docker client, or skip/fail the calling test with the reason there is none."""
    client, reason = _client()
    if client is None:
        unavailable(reason)
    return client


def local_base_image() -> str:
    """The local test base image (python3 + pip, no torch), present in the engine."""
    client = require_docker()
    name = os.environ.get(ENV_BASE) or DEFAULT_BASE
    try:
        client.images.get(name)
    except Exception:
        unavailable(f"the local base image {name} is not in the engine ({ENV_BASE})")
    return name


def test_wheelhouse() -> Path:
    """A folder holding a CPU torch wheel for the base image's Python."""
    wh = os.environ.get(ENV_WHEELHOUSE)
    if not wh or not any(Path(wh).glob("torch-*.whl")):
        unavailable(f"no wheelhouse with a torch wheel ({ENV_WHEELHOUSE}={wh or ''})")
    return Path(wh)


test_wheelhouse.__test__ = False  # a helper, not a test, despite its name


def docker_env() -> Dict[str, str]:
    """Environment for docker CLI subprocesses (same engine as the SDK)."""
    return dict(os.environ)


def make_image(target: str, base_image: str, tag: str, wheelhouse: Optional[Path] = None,
               timeout: float = 1800) -> subprocess.CompletedProcess:
    """``make image-<target> BASE_IMAGE=... TAG=... WHEELHOUSE=...`` (output captured, not checked)."""
    args = ["make", "--no-print-directory", f"image-{target}", f"BASE_IMAGE={base_image}", f"TAG={tag}",
            f"WHEELHOUSE={wheelhouse or ''}"]
    return subprocess.run(args, cwd=REPO, env=docker_env(), capture_output=True, text=True, timeout=timeout)


# What a JetPack 6 base (dustynv/l4t-pytorch:r36.x) carries: pip pointed at an index of its own, here one
# that is down. The jetson test image is built FROM the local base plus these, so every jetson image
# test also checks that Dockerfile.jetson's build ignores a base's pip index (JetPack 6 bases point pip at an index of their own).
DEAD_PIP_INDEX = {"PIP_INDEX_URL": "http://127.0.0.1:9/jp6/cu126", "PIP_EXTRA_INDEX_URL": "http://127.0.0.1:9/extra",
                  "PIP_TRUSTED_HOST": "127.0.0.1"}


@functools.lru_cache(maxsize=None)
def jetson_test_base() -> str:
    """The local base plus a dead pip index in its environment (an ENV-only layer: no filesystem copy)."""
    client = require_docker()
    base = local_base_image()
    env = " ".join(f"{k}={v}" for k, v in DEAD_PIP_INDEX.items())
    tag = f"{base.split(':')[0]}:dead-pip-index"
    client.images.build(fileobj=io.BytesIO(f"FROM {base}\nENV {env}\n".encode()), tag=tag, rm=True,
                        network_mode="host")
    return tag


@functools.lru_cache(maxsize=None)
def _built(target: str, tag: str) -> Tuple[str, str, Tuple[str, ...]]:
    from pantheon.deploy.images import git_commit

    client = require_docker()
    base, wh = (jetson_test_base() if target == "jetson" else local_base_image()), test_wheelhouse()
    old = _image_id(client, tag)
    t0 = time.monotonic()
    before = git_commit(REPO)
    proc = make_image(target, base, tag, wh)
    commits = (before, git_commit(REPO))  # the checkout may move while the image builds
    if proc.returncode != 0:
        return "", (proc.stdout + proc.stderr)[-3000:], commits
    remove_stale_builds(client, tag, old)
    return tag, f"built in {time.monotonic() - t0:.0f} s", commits


def _image_id(client: Any, ref: str) -> Optional[str]:
    try:
        return client.images.get(ref).id
    except Exception:
        return None


def remove_stale_builds(client: Any, tag: str, old_id: Optional[str]) -> None:
    """Free the disk of earlier test builds (vfs keeps every layer as a full copy).

    Removes the image ``tag`` pointed to before this build, and every throwaway build stage of the
    images but the newest (dangling images made by the Dockerfiles' pip step), keeping the local
    base and the build cache of this build.
    """
    if old_id and old_id != _image_id(client, tag):
        with contextlib.suppress(Exception):
            client.images.remove(old_id)
    stages = []
    for img in client.images.list(filters={"dangling": True}):
        cmd = " ".join((img.attrs.get("ContainerConfig") or {}).get("Cmd") or [])
        if "/opt/pantheon/bin/pantheon --version" in cmd:  # the last step of both build stages
            stages.append(img)
    for img in sorted(stages, key=lambda i: i.attrs.get("Created", ""))[:-1]:
        with contextlib.suppress(Exception):
            client.images.remove(img.id)


def remove_descendants(client: Any, image_id: str) -> None:
    """Remove the intermediate images a (failed) build left on top of ``image_id``, then it."""
    for img in client.images.list(all=True):
        if img.id != image_id and any(h.get("Id") == image_id for h in img.history()):
            with contextlib.suppress(Exception):
                client.images.remove(img.id, force=True)
    with contextlib.suppress(Exception):
        client.images.remove(image_id, force=True)


def built_image(target: str, tag: str) -> str:
    """Build ``target`` from the local base + wheelhouse once per test process; fail with the log."""
    require_docker()
    image, log, _ = _built(target, tag)
    if not image:
        pytest.fail(f"make image-{target} failed:\n{log}", pytrace=False)
    return image


def built_commits(target: str, tag: str) -> Tuple[str, ...]:
    """The checkout's commit when :func:`built_image` started and ended its build."""
    return _built(target, tag)[2]


def built_jetson_image() -> str:
    return built_image("jetson", JETSON_TEST_TAG)


def built_desktop_image() -> str:
    return built_image("desktop", DESKTOP_TEST_TAG)


# --- volumes and files ----------------------------------------------------------------------------


def unique(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex[:8]}"


def tar_of(src: Path, arcname: str) -> bytes:
    """A tar archive of ``src`` (file or folder) stored under ``arcname``."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        tar.add(str(src), arcname=arcname)
    return buf.getvalue()


def extract(container: Any, path: str, dest: Path) -> Path:
    """Copy ``path`` out of ``container`` (running or stopped; volumes included) into ``dest``."""
    stream, _ = container.get_archive(path)
    buf = io.BytesIO(b"".join(stream))
    dest.mkdir(parents=True, exist_ok=True)
    with tarfile.open(fileobj=buf) as tar:
        if hasattr(tarfile, "data_filter"):  # Python 3.12 warns without a filter
            tar.extractall(dest, filter="data")
        else:
            tar.extractall(dest)
    return dest / Path(path).name


def run_container(client: Any, image: str, command: List[str], *, volumes: Optional[Dict[str, Dict[str, str]]] = None,
                  files: Optional[Dict[str, Path]] = None, environment: Optional[Dict[str, str]] = None,
                  timeout: float = 600, **kwargs: Any) -> Tuple[Any, int, str, str]:
    """Create a container, copy ``files`` (container dir -> host path) in, run it to the end.

    Returns ``(container, exit code, stdout, stderr)``; the caller removes the container.
    """
    c = client.containers.create(image, command=command, volumes=volumes or {}, environment=environment or {},
                                 network_mode="host", **kwargs)
    try:
        for target_dir, src in (files or {}).items():
            c.put_archive(target_dir, tar_of(src, src.name))
        c.start()
        code = c.wait(timeout=timeout)["StatusCode"]
    except BaseException:
        c.remove(force=True)
        raise
    out = c.logs(stdout=True, stderr=False).decode(errors="replace")
    err = c.logs(stdout=False, stderr=True).decode(errors="replace")
    return c, code, out, err


# --- compose.yaml as Compose would read it ----------------------------------------------------------

_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::?-([^}]*))?\}")


def interpolate(value: Any, env: Dict[str, str]) -> Any:
    """Compose's ``${VAR}`` / ``${VAR:-default}`` interpolation over strings, lists and dicts."""
    if isinstance(value, str):
        return _VAR.sub(lambda m: env.get(m.group(1)) or (m.group(2) or ""), value)
    if isinstance(value, list):
        return [interpolate(v, env) for v in value]
    if isinstance(value, dict):
        return {k: interpolate(v, env) for k, v in value.items()}
    return value


def load_compose(*files: str) -> Dict[str, Any]:
    """``compose.yaml`` (plus overrides, merged per service as Compose merges volumes) before interpolation."""
    import yaml

    merged: Dict[str, Any] = {}
    for name in files or ("compose.yaml",):
        doc = yaml.safe_load((REPO / name).read_text())
        if not merged:
            merged = doc
            continue
        for svc, extra in (doc.get("services") or {}).items():
            base = merged["services"][svc]
            for key, val in extra.items():
                if key == "volumes":
                    base["volumes"] = list(base.get("volumes", [])) + list(val)
                else:
                    base[key] = val
    return merged


def compose_service(name: str, env: Optional[Dict[str, str]] = None, *files: str) -> Dict[str, Any]:
    """One service of ``compose.yaml``, interpolated with ``env`` (defaults where unset)."""
    return interpolate(load_compose(*files)["services"][name], env or {})
