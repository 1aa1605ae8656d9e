"""pantheon-deploy and the board's Docker engine, reached over the loopback sshd (real engine, real ssh).

Small images only (built FROM scratch with labels): the L4T check, the NVIDIA-runtime check,
boards without Docker, image transfer by save -> spool -> load. The full runtime image is
exercised by tests/test_deploy_e2e.py.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import tarfile
import tempfile
from pathlib import Path

import pytest
from _deploy import conn_args, make_app, make_board, ssh_settings, stand_in_board_root, write_inventory
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.errors import PantheonError

runner = CliRunner()
pytestmark = [pytest.mark.ssh, pytest.mark.docker]


def _require(reason: str) -> None:
    if os.environ.get("PANTHEON_REQUIRE_DOCKER") == "1":
        pytest.fail(f"PANTHEON_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def remote_docker():
    """A docker client for the engine that the loopback board's sessions reach (through ssh)."""
    from pantheon.deploy.engine import RemoteEngine
    from pantheon.deploy.ssh import Session

    ssh = ssh_settings()
    board = make_board(ssh, Path(tempfile.gettempdir()) / "pantheon-unused")
    session = Session(board)
    engine = RemoteEngine(session)
    try:
        client = engine.client
    except PantheonError as exc:
        session.close()
        _require(f"the loopback board has no Docker engine ({exc}); source .ci/docker.sh before .ci/sshd.sh")
    yield ssh, client
    engine.close()
    session.close()


def _tiny_image(client, tag: str, l4t: str, payload: bytes = b"") -> str:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        df = f"FROM scratch\nLABEL org.pantheon.l4t={l4t}\n" + ("COPY payload /payload\n" if payload else "")
        for name, data in (("Dockerfile", df.encode()), ("payload", payload)):
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    buf.seek(0)
    img, _ = client.images.build(fileobj=buf, custom_context=True, tag=tag, rm=True)
    return img.id


@pytest.fixture
def jetson_inventory(tmp_path, remote_docker):
    ssh, _ = remote_docker
    base = Path(tempfile.mkdtemp(prefix="pantheon-standin-"))
    os.chmod(base, 0o755)
    root = stand_in_board_root(base / "root")

    def make(env=None, name="nx"):
        entry = {"name": name, "host": ssh["host"], "port": int(ssh["port"]), "user": ssh["user"],
                 "env": dict({"PANTHEON_BOARD_ROOT": str(root)}, **(env or {})), "remote_root": str(tmp_path / "data")}
        return write_inventory(tmp_path / f"{name}.yaml", [entry])

    yield make
    shutil.rmtree(base, ignore_errors=True)


def test_l4t_mismatch_is_refused_before_running(remote_docker, jetson_inventory, tmp_path):
    ssh, client = remote_docker
    _tiny_image(client, "pantheon-jetson:t-r36", "36.2.0")
    _tiny_image(client, "pantheon-jetson:t-r35", "35.2.1")
    inv = jetson_inventory()
    args = ["--inventory", str(inv), *conn_args(ssh, tmp_path / "unused")]
    r = runner.invoke(deploy_app, ["status", "--json", *args])
    assert r.exit_code == 0, r.output
    imgs = {tag: i for i in json.loads(r.stdout)["images"] for tag in i["tags"]}
    assert imgs["pantheon-jetson:t-r36"]["compatible"] is False and imgs["pantheon-jetson:t-r36"]["l4t"] == "36.2.0"
    assert imgs["pantheon-jetson:t-r35"]["compatible"] is True
    before = len(client.containers.list(all=True))
    r = runner.invoke(deploy_app, ["run", "--app", "tinyapp", "--image", "pantheon-jetson:t-r36",
                                   "--no-nvidia-runtime", *args])
    assert r.exit_code == 1
    assert "refusing to run" in r.output and "L4T r36.2.0" in r.output and "runs r35.3.1" in r.output
    assert "nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3" in r.output
    assert len(client.containers.list(all=True)) == before, "nothing may start on a mismatch"


def test_missing_nvidia_runtime_names_the_fix(remote_docker, jetson_inventory, tmp_path):
    ssh, client = remote_docker
    if "nvidia" in (client.info().get("Runtimes") or {}):
        pytest.skip("this engine has the NVIDIA runtime")
    inv = jetson_inventory()
    r = runner.invoke(deploy_app, ["run", "--app", "tinyapp", "--image", "pantheon-jetson:t-r35", "--inventory",
                                   str(inv), *conn_args(ssh, tmp_path / "unused")])
    assert r.exit_code == 1
    assert "no 'nvidia' runtime" in r.output and "nvidia-container" in r.output and "--no-nvidia-runtime" in r.output


def _path_without_docker(dest: Path) -> str:
    """A PATH like the board's, minus docker: links to every other command of the usual folders."""
    dest.mkdir(parents=True, exist_ok=True)
    os.chmod(dest.parent, 0o755)
    for d in ("/usr/local/bin", "/usr/bin", "/bin"):
        for p in Path(d).iterdir() if Path(d).is_dir() else []:
            if not p.name.startswith("docker") and not (dest / p.name).exists():
                (dest / p.name).symlink_to(p)
    return f"{dest}:/usr/sbin:/sbin"


@pytest.mark.parametrize("what,message", [("no-docker-cli", "has no docker command"),
                                          ("engine-down", "does not answer")])
def test_board_without_docker(remote_docker, jetson_inventory, tmp_path, monkeypatch, _isolated_store, what, message):
    ssh, _ = remote_docker
    if what == "no-docker-cli":
        env = {"PATH": _path_without_docker(tmp_path / "bin-without-docker")}
    else:
        env = {"DOCKER_HOST": "unix:///nonexistent/docker.sock"}
    inv = jetson_inventory(env)
    args = ["--inventory", str(inv), *conn_args(ssh, tmp_path / "unused")]
    r = runner.invoke(deploy_app, ["status", "--json", *args])
    assert r.exit_code == 0, r.output  # status reports it; the rest of the board is still shown
    d = json.loads(r.stdout)
    assert d["engine"] is None and message in d["engine_error"] and d["l4t"] == "35.3.1"
    monkeypatch.setenv("PANTHEON_APPS", str(tmp_path / "apps"))
    make_app(_isolated_store, tmp_path / "apps")
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", *args])
    assert r.exit_code == 1 and message in r.output and "Traceback" not in r.output


def test_image_moves_by_save_spool_load(remote_docker, tmp_path, monkeypatch, _isolated_store):
    """docker save (local) -> temporary file -> docker load (board) through ssh; then 'present'."""
    ssh, client = remote_docker
    try:
        import docker

        local = docker.from_env()
        local.ping()
    except Exception as exc:  # no local engine: nothing to send from
        _require(f"no local Docker engine (DOCKER_HOST): {exc}")
    payload = os.urandom(256 * 1024)
    image_id = _tiny_image(local, "pantheon-jetson:t-load", "35.2.1", payload)
    monkeypatch.setenv("PANTHEON_APPS", str(tmp_path / "apps"))
    make_app(_isolated_store, tmp_path / "apps")
    args = ["--board", f"{ssh['user']}@{ssh['host']}:{ssh['port']}", *conn_args(ssh, tmp_path / "data")]
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image", "pantheon-jetson:t-load",
                                   "--image-source", "load", "--json", *args])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["image"]["action"] == "loaded" and d["image"]["id"] == image_id and d["image"]["bytes"] > len(payload)
    assert client.images.get("pantheon-jetson:t-load").id == image_id
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image", "pantheon-jetson:t-load", "--json", *args])
    assert r.exit_code == 0 and json.loads(r.stdout)["image"]["action"] == "present"
    assert json.loads(r.stdout)["up_to_date"] is True
