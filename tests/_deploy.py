"""Test helpers for pantheon-deploy: the loopback "board" of .ci/sshd.sh, stand-in board roots, app bundles.

The board is the real sshd that ``.ci/sshd.sh`` starts on 127.0.0.1:2222 (throwaway keys; its
sessions reach the test Docker engine). Without it the tests skip with the reason, unless
``PANTHEON_REQUIRE_SSH=1`` (set by ``.ci/run``), where they fail instead.

Jetson-only parts run against a *stand-in* board root: a copy of ``tests/fixtures/board_root``
(fake ``/etc/nv_tegra_release``, ``/proc/device-tree/model``, sysfs) plus the stand-in
``nvpmodel``/``jetson_clocks`` scripts of ``tests/fixtures/stand-in-bin`` at their L4T places.
"""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path
from typing import Dict, List, Optional, Sequence

import pytest

FIXTURES = Path(__file__).resolve().parent / "fixtures"


def ssh_settings() -> Dict[str, str]:
    """The loopback sshd's settings, or skip (fail under PANTHEON_REQUIRE_SSH=1)."""
    keys = ("HOST", "PORT", "USER", "KEY", "KNOWN_HOSTS")
    env = {k.lower(): os.environ.get(f"PANTHEON_TEST_SSH_{k}", "") for k in keys + ("NOSUDO_USER",)}
    missing = [k for k in keys if not env[k.lower()]]
    if missing or not Path(env["key"]).is_file():
        reason = "no loopback sshd (source .ci/sshd.sh first; CI runs it via .ci/run)"
        if os.environ.get("PANTHEON_REQUIRE_SSH") == "1":
            pytest.fail(f"PANTHEON_REQUIRE_SSH=1 but {reason}")
        pytest.skip(reason)
    return env


def board_spec(s: Dict[str, str], user: Optional[str] = None) -> str:
    return f"{user or s['user']}@{s['host']}:{s['port']}"


def board_args(s: Dict[str, str], remote_root: Path, user: Optional[str] = None) -> List[str]:
    """CLI options that reach the loopback board with its data root at ``remote_root``."""
    return ["--board", board_spec(s, user), "--identity", s["key"], "--known-hosts", s["known_hosts"],
            "--remote-root", str(remote_root), "--connect-timeout", "3"]


def conn_args(s: Dict[str, str], remote_root: Path) -> List[str]:
    """The same without --board (for --inventory runs)."""
    return ["--identity", s["key"], "--known-hosts", s["known_hosts"], "--remote-root", str(remote_root),
            "--connect-timeout", "3"]


def make_board(s: Dict[str, str], remote_root: Path, **kw: object):
    from pantheon.deploy.ssh import parse_board

    values = dict(identity=s["key"], known_hosts=s["known_hosts"], remote_root=str(remote_root), connect_timeout=3,
                  port=int(s["port"]), user=s["user"])
    values.update(kw)
    return parse_board(s["host"], **values)


def stand_in_board_root(dest: Path, release_line: Optional[str] = None) -> Path:
    """A writable stand-in Jetson root: the fixture board root + stand-in nvpmodel/jetson_clocks."""
    shutil.copytree(FIXTURES / "board_root", dest)
    for name, d in (("nvpmodel", "usr/sbin"), ("jetson_clocks", "usr/bin")):
        (dest / d).mkdir(parents=True, exist_ok=True)
        shutil.copy2(FIXTURES / "stand-in-bin" / name, dest / d / name)
    if release_line is not None:
        (dest / "etc" / "nv_tegra_release").write_text(release_line + "\n")
    os.chmod(dest, 0o755)
    return dest


def write_inventory(path: Path, boards: Sequence[Dict[str, object]], defaults: Optional[Dict[str, object]] = None) -> Path:
    import yaml

    path.write_text(yaml.safe_dump({"defaults": defaults or {}, "boards": list(boards)}, sort_keys=False))
    return path


def make_app(store_root: Path, apps_dir: Path, app: str = "tinyapp", *, widths: Sequence[int] = (8, 8),
             big: int = 0, jobs: int = 6, period_us: int = 20_000) -> Dict[str, Path]:
    """A small real app in the store: repository (TorchScript chunks), workload and app file.

    ``big`` > 0 adds a task whose single block is a ``big``-channel conv (a ~``9*big*big*4``-byte
    file), to make transfers long enough to interrupt.
    """
    from _repo import TaskSpec, build_repository, write_workload

    from pantheon.formats.store import Store, write_artifact

    store = Store(store_root)
    tasks = {"short": TaskSpec(widths=list(widths), exits={0: 0.8, len(widths) - 1: 0.9},
                               latencies=[200] * len(widths), exit_latencies={0: 50, len(widths) - 1: 50})}
    if big:
        tasks["large"] = TaskSpec(widths=[big], exits={0: 0.9}, input=(big, 4, 4), latencies=[500],
                                  exit_latencies={0: 50})
    repo = build_repository(store.repository_dir(app), tasks, app=app, force=True)
    with write_artifact(store.workload_dir(app), kind="workload", force=True) as tmp:
        write_workload(tmp / "workload.bin", [("short", i * period_us, i * period_us + 15_000) for i in range(jobs)],
                       dims={"short": [1, 3, 16, 16]})
    apps_dir.mkdir(parents=True, exist_ok=True)
    streams = [{"task": "short", "period_ms": period_us / 1000, "deadline_ms": 15}]
    app_file = apps_dir / f"{app}.yaml"
    app_file.write_text(json.dumps({"name": app, "tasks": {t: {"max_delta_accuracy": 0.05} for t in tasks},
                                    "workload": {"duration_s": 0.2, "streams": streams}}, indent=2))
    return {"repository": repo, "workload": store.workload_dir(app), "app_file": app_file}
