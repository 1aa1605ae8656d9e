"""The desktop-to-board journey over one data root, with real parts throughout.

1. *desktop*: a container with the ``trainer`` service's ``/data`` mount of compose.yaml (the bind of
   ``$PANTHEON_DATA_DIR``, default ``./pantheon-data``) runs a pipeline stage (``pantheon workload``)
   that completes the app's bundle in that folder;
2. ``pantheon-deploy push --board HOST`` (no ``--app``) reads the same folder and puts the bundle on
   the loopback board of .ci/sshd.sh (data root ``R``);
3. *board*: a container with the ``runtime`` service's command, environment and ``/data`` mount
   (``$PANTHEON_BOARD_DATA`` = ``R``, default ``/var/lib/pantheon/data``) replays the pushed bundle.

The images: the CI's jetson test image stands in for both (the desktop image is not built in CI; the
stage run here needs nothing beyond the board image's packages). No Compose CLI is installable here,
so the services are read from compose.yaml and run with the Docker SDK, as tests/test_images.py does.
"""

from __future__ import annotations

import json
import os
import shutil

import pytest
from _deploy import board_args, make_app
from _docker import built_jetson_image, compose_service, require_docker, run_container
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.formats.store import verify

pytestmark = [pytest.mark.docker, pytest.mark.ssh, pytest.mark.slow, pytest.mark.timeout(1800)]
runner = CliRunner()


def _data_mount(svc):
    (mount,) = [v for v in svc["volumes"] if v["target"] == "/data"]
    assert mount["type"] == "bind"
    return {mount["source"]: {"bind": "/data", "mode": "rw"}}


def test_trainer_folder_push_and_board_runtime_share_one_root(ssh, tmp_path, monkeypatch):
    client = require_docker()
    image = built_jetson_image()
    desktop = tmp_path / "pantheon-data"
    board_root = tmp_path / "board-data"
    monkeypatch.delenv("PANTHEON_APP", raising=False)
    monkeypatch.setenv("PANTHEON_DATA", str(desktop))

    # What the earlier pipeline stages left: the planned repository and the app file (store copy).
    paths = make_app(desktop, tmp_path / "app-files")
    shutil.rmtree(paths["workload"])
    shutil.copy2(paths["app_file"], desktop / "apps" / "tinyapp" / "app.yaml")
    monkeypatch.setenv("PANTHEON_APPS", str(tmp_path / "no-app-files"))  # push must use the store's copy
    for p in [desktop, *desktop.rglob("*")]:
        os.chown(p, 1000, 1000)  # `mkdir -p pantheon-data` by the desktop user (uid 1000)

    # 1. The trainer's mount: the workload stage writes into the desktop folder. (As root: the CI base's
    # debootstrap rootfs has a 0700 top folder, so no other user can run anything in images built on it.)
    trainer = compose_service("trainer", {"PANTHEON_DATA_DIR": str(desktop)})
    assert trainer["environment"]["PANTHEON_DATA"] == "/data"
    c, code, out, err = run_container(
        client, image, ["workload", "--spec", "tinyapp", "--repo", "/data/apps/tinyapp/repository"],
        volumes=_data_mount(trainer), environment=trainer["environment"])
    c.remove(force=True)
    assert code == 0, err[-2000:]
    verify(desktop / "apps" / "tinyapp" / "workload", kind="workload")

    # 2. push as typed: the only app of the folder the trainer wrote.
    r = runner.invoke(deploy_app, ["push", "--image-source", "skip", "--json", *board_args(ssh, board_root)])
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["app"] == "tinyapp"
    verify(board_root / "apps" / "tinyapp", kind="bundle")

    # 3. The board's runtime service sees the pushed bundle through its /data bind.
    runtime = compose_service("runtime", {"PANTHEON_BOARD_DATA": str(board_root), "PANTHEON_APP": "tinyapp",
                                          "PANTHEON_RUN_ID": "journey"})
    assert runtime["runtime"] == "nvidia"  # not available here: the CPU trial of the same service
    c, code, out, err = run_container(client, image, runtime["command"], volumes=_data_mount(runtime),
                                      environment=runtime["environment"])
    c.remove(force=True)
    assert code == 0, (out + err)[-2000:]
    log = board_root / "logs" / "tinyapp" / "journey"
    verify(log)
    events = [json.loads(line) for line in (log / "events.jsonl").read_text().splitlines()]
    assert events[0]["ev"] == "start" and events[-1]["ev"] == "end"
    assert "/data/apps/tinyapp/repository" in json.dumps(events[0])
