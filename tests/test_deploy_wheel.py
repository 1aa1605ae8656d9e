"""pantheon-deploy installed from a wheel (not editable), as in the desktop image or `pip install pantheon`.

The wheel is built from this checkout and installed with ``pip install --no-deps --target DIR``;
its console script runs from a folder outside the checkout with ``PYTHONPATH=DIR`` (which comes
before the venv's editable install), and the test checks that the installed copy is what ran.
Board presets, app files and the Dockerfiles must then come from the package data, and a build
context must be assembled from the installed package.
"""

from __future__ import annotations

import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from _deploy import conn_args, stand_in_board_root, write_inventory

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def installed(tmp_path_factory):
    work = tmp_path_factory.mktemp("wheel")
    wheels, target = work / "dist", work / "site"
    # An out-of-tree copy of the sources, so the build leaves nothing in the checkout (build/, egg-info).
    src = work / "src"
    import shutil

    shutil.copytree(REPO, src, symlinks=True, ignore=shutil.ignore_patterns(
        ".git", ".venv", "*.egg-info", "build", "dist", "pantheon-data", "bench", "tests", "__pycache__",
        ".pytest_cache", ".ruff_cache", ".hypothesis"))
    pip = [sys.executable, "-m", "pip", "--disable-pip-version-check", "-q"]
    r = subprocess.run([*pip, "wheel", "--no-deps", "--no-build-isolation", "-w", str(wheels), str(src)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    (whl,) = wheels.glob("pantheon-*.whl")
    r = subprocess.run([*pip, "install", "--no-deps", "--no-index", "--target", str(target), str(whl)],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr[-2000:]
    env = dict(os.environ, PYTHONPATH=str(target), PANTHEON_APPS="", PANTHEON_PROGRESS="0")
    env.pop("PANTHEON_DEBUG", None)
    cwd = work / "elsewhere"  # not the checkout: no ./deploy/apps, no source tree on sys.path
    cwd.mkdir()
    return {"target": target, "env": env, "cwd": cwd, "whl": whl}


def deploy(installed, *args, timeout=120):
    exe = installed["target"] / "bin" / "pantheon-deploy"
    return subprocess.run([str(exe), *args], capture_output=True, text=True, cwd=installed["cwd"],
                          env=installed["env"], timeout=timeout)


def test_the_wheel_carries_its_data(installed):
    import zipfile

    names = set(zipfile.ZipFile(installed["whl"]).namelist())
    for f in ("pantheon/deploy/data/Dockerfile.jetson", "pantheon/deploy/data/Dockerfile.desktop",
              "pantheon/deploy/data/pyproject.toml", "pantheon/deploy/data/boards/xavier-nx.yaml",
              "pantheon/deploy/data/apps/digits.yaml"):
        assert f in names, f
    probe = ("import pantheon, pantheon.formats.app as a, pantheon.deploy.remote as r; "
             "print(pantheon.__file__); print(sorted(r.load_presets())); print(a.resolve_app_path('digits'))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=installed["cwd"],
                         env=installed["env"], timeout=60)
    assert out.returncode == 0, out.stderr
    where, presets, digits = out.stdout.splitlines()
    assert where.startswith(str(installed["target"])), f"the checkout's pantheon ran, not the wheel's: {where}"
    assert presets == "['agx-orin', 'orin-nano', 'xavier-nx']"
    assert digits.startswith(str(installed["target"]))


def test_build_dry_run_from_the_wheel(installed):
    for target in ("jetson", "desktop"):
        r = deploy(installed, "build", "--target", target, "--dry-run")
        assert r.returncode == 0, r.stderr
        (line,) = [ln for ln in r.stdout.splitlines() if ln.startswith("docker build")]
        argv = shlex.split(line)
        ctx = Path(argv[-1])
        assert argv[argv.index("-f") + 1] == f"Dockerfile.{target}"
        assert not str(ctx).startswith(str(REPO)), "the context must not be the checkout"
        assert "dry run: 1 action listed" in r.stderr
        # The context existed while the command ran and is removed afterwards.
        assert not ctx.exists()


def test_build_context_from_the_wheel_is_complete(installed):
    """What `docker build` would get: enough for `pip install /src` (an sdist-free wheel build)."""
    probe = ("from pantheon.deploy import images; c = images.default_context(); import os; "
             "print(c); print(images.is_checkout(c)); print(sorted(os.listdir(c / 'deploy')))")
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, cwd=installed["cwd"],
                         env=installed["env"], timeout=60)
    assert out.returncode == 0, out.stderr
    ctx, ok, deploy_dirs = out.stdout.splitlines()
    assert ok == "True" and deploy_dirs == "['apps', 'boards', 'wheelhouse']"


@pytest.mark.ssh
def test_setup_dry_run_from_the_wheel(installed, ssh, tmp_path):
    """`setup --nvpmodel bench --dry-run` on the loopback board (stand-in Xavier NX root): the preset
    that names the bench mode comes from the wheel's package data."""
    root = stand_in_board_root(tmp_path / "root")
    inv = write_inventory(tmp_path / "boards.yaml", [{
        "name": "nx", "host": ssh["host"], "port": int(ssh["port"]), "user": ssh["user"],
        "env": {"PANTHEON_BOARD_ROOT": str(root)}, "remote_root": str(tmp_path / "data")}])
    r = deploy(installed, "setup", "--inventory", str(inv), *conn_args(ssh, tmp_path / "unused"),
               "--nvpmodel", "bench", "--jetson-clocks", "--dry-run")
    assert r.returncode == 0, r.stderr
    assert f"{root}/usr/sbin/nvpmodel -m 8" in r.stdout  # the xavier-nx preset's bench_mode, printed only
    assert "preset xavier-nx" in r.stderr and "dry run:" in r.stderr
    assert not (root / "var/lib/stand-in/nvpmodel").exists(), "a dry run changes nothing"
