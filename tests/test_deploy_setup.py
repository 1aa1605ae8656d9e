"""pantheon-deploy setup and status against the loopback sshd and a stand-in Jetson board root.

The board-side commands are the real ones (``sudo -n <root>/usr/sbin/nvpmodel -m 8``); only
``nvpmodel``/``jetson_clocks`` themselves are stand-in scripts (tests/fixtures/stand-in-bin)
that keep their state in files under the stand-in root.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import pytest
from _deploy import board_args, conn_args, stand_in_board_root, write_inventory
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app

runner = CliRunner()
pytestmark = pytest.mark.ssh


@pytest.fixture
def jetson(tmp_path):
    """A stand-in Xavier NX root, readable by every user (the no-sudo user reads it too)."""
    base = Path(tempfile.mkdtemp(prefix="pantheon-standin-"))
    os.chmod(base, 0o755)
    root = stand_in_board_root(base / "root")
    yield root
    shutil.rmtree(base, ignore_errors=True)


def inventory(tmp_path, ssh, root, user=None, name="nx"):
    entry = {"name": name, "host": ssh["host"], "port": int(ssh["port"]), "user": user or ssh["user"],
             "env": {"PANTHEON_BOARD_ROOT": str(root)}, "remote_root": str(tmp_path / f"data-{name}")}
    return write_inventory(tmp_path / f"boards-{name}.yaml", [entry])


def state(root: Path, name: str) -> str:
    p = root / "var/lib/stand-in" / name
    return p.read_text().strip() if p.exists() else ""


def setup(tmp_path, ssh, inv, *extra):
    return runner.invoke(deploy_app, ["setup", "--inventory", str(inv), *conn_args(ssh, tmp_path / "unused"), *extra])


def test_setup_sets_verifies_and_restores(ssh, jetson, tmp_path):
    inv = inventory(tmp_path, ssh, jetson)
    r = setup(tmp_path, ssh, inv)
    assert r.exit_code == 0, r.output
    assert "MODE_20W_6CORE" in r.output and "MODE_15W_6CORE (2)" in r.output  # listed, and the active one
    assert state(jetson, "nvpmodel") == "" and state(jetson, "jetson_clocks") == ""  # nothing changed

    r = setup(tmp_path, ssh, inv, "--nvpmodel", "8", "--jetson-clocks", "--json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["after"] == "MODE_20W_6CORE (8)" and data["clocks_locked"] is True
    assert data["before"] == "MODE_15W_6CORE (2)"
    assert state(jetson, "nvpmodel") == "8" and state(jetson, "jetson_clocks") == "1"
    assert (jetson / "var/lib/pantheon-setup/nvpmodel.id").read_text().strip() == "2"
    record = sorted(Path(os.environ["PANTHEON_DATA"], "deploy", "nx").rglob("commands.sh"))[-1].read_text()
    assert f"sudo -n {jetson}/usr/sbin/nvpmodel -m 8" in record and f"sudo -n {jetson}/usr/bin/jetson_clocks" in record

    # A second setup keeps the state from before the first one.
    r = setup(tmp_path, ssh, inv, "--nvpmodel", "MODE_10W_4CORE")
    assert r.exit_code == 0 and state(jetson, "nvpmodel") == "4"
    assert (jetson / "var/lib/pantheon-setup/nvpmodel.id").read_text().strip() == "2"

    r = setup(tmp_path, ssh, inv, "--restore", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["after"] == "MODE_15W_6CORE (2)"
    assert state(jetson, "nvpmodel") == "2" and state(jetson, "jetson_clocks") == "0"
    assert not (jetson / "var/lib/pantheon-setup").exists()
    r = setup(tmp_path, ssh, inv, "--restore")
    assert r.exit_code == 1 and "nothing to restore" in r.output


def test_setup_bench_preset_and_bad_mode(ssh, jetson, tmp_path):
    inv = inventory(tmp_path, ssh, jetson)
    r = setup(tmp_path, ssh, inv, "--nvpmodel", "bench", "--json")
    assert r.exit_code == 0, r.output
    assert json.loads(r.stdout)["after"] == "MODE_20W_6CORE (8)"  # the xavier-nx preset's bench_mode
    r = setup(tmp_path, ssh, inv, "--nvpmodel", "42")
    assert r.exit_code == 2 and "no power mode '42'" in r.output and "8=MODE_20W_6CORE" in r.output


def test_setup_dry_run_changes_nothing(ssh, jetson, tmp_path):
    inv = inventory(tmp_path, ssh, jetson)
    r = setup(tmp_path, ssh, inv, "--nvpmodel", "8", "--jetson-clocks", "--dry-run")
    assert r.exit_code == 0, r.output
    assert f"sudo -n {jetson}/usr/sbin/nvpmodel -m 8" in r.stdout
    assert state(jetson, "nvpmodel") == "" and not (jetson / "var/lib/pantheon-setup").exists()


def test_setup_refuses_a_board_that_is_not_a_jetson(ssh, tmp_path):
    r = runner.invoke(deploy_app, ["setup", "--nvpmodel", "8", *board_args(ssh, tmp_path / "data")])
    assert r.exit_code == 1
    assert "is not a Jetson" in r.output and "nv_tegra_release" in r.output


def test_setup_without_sudo_says_so(ssh, jetson, tmp_path):
    if not ssh.get("nosudo_user"):
        pytest.skip("the loopback sshd has no unprivileged user")
    inv = inventory(tmp_path, ssh, jetson, user=ssh["nosudo_user"])
    r = setup(tmp_path, ssh, inv, "--nvpmodel", "8")
    assert r.exit_code == 1
    assert "cannot sudo without a password" in r.output and "NOPASSWD" in r.output
    assert state(jetson, "nvpmodel") == ""


def test_status_reports_the_jetson_side(ssh, jetson, tmp_path):
    inv = inventory(tmp_path, ssh, jetson)
    assert setup(tmp_path, ssh, inv, "--nvpmodel", "8", "--jetson-clocks").exit_code == 0
    r = runner.invoke(deploy_app, ["status", "--inventory", str(inv), *conn_args(ssh, tmp_path / "u"), "--json"])
    assert r.exit_code == 0, r.output
    d = json.loads(r.stdout)
    assert d["l4t"] == "35.3.1" and d["jetpack"] == "5.1.1" and d["model"] == "NVIDIA Jetson Xavier NX Developer Kit"
    assert d["nvpmodel"] == {"id": 8, "name": "MODE_20W_6CORE"} and d["jetson_clocks"] is True
    assert d["preset"] == "xavier-nx" and d["jtop"] is False and d["disk_free_kb"] > 0
    assert d["bundles"] == []
    # The table form names the same facts.
    r = runner.invoke(deploy_app, ["status", "--inventory", str(inv), *conn_args(ssh, tmp_path / "u")])
    assert r.exit_code == 0 and "MODE_20W_6CORE (8)" in r.stdout and "r35.3.1 / 5.1.1" in r.stdout


STAND_IN_JTOP = Path(__file__).parent / "fixtures" / "stand-in-jtop"


def test_setup_through_the_jtop_service_needs_no_sudo(ssh, jetson, tmp_path):
    """With the jtop service on the board, mode and clocks go through jetson-stats (the stand-in client
    keeps the stand-in scripts' state), as the user WITHOUT sudo rights; --restore undoes it."""
    import socket

    if not ssh.get("nosudo_user"):
        pytest.skip("the loopback sshd has no unprivileged user")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    (jetson / "run").mkdir(exist_ok=True)
    sock.bind(str(jetson / "run" / "jtop.sock"))  # the service's socket (facts check it with -S)
    home = jetson.parent / "home"
    for d in (jetson / "var/lib/stand-in", home):
        d.mkdir(parents=True, exist_ok=True)
        os.chmod(d, 0o777)
    entry = {"name": "nx", "host": ssh["host"], "port": int(ssh["port"]), "user": ssh["nosudo_user"],
             "env": {"PANTHEON_BOARD_ROOT": str(jetson), "PYTHONPATH": str(STAND_IN_JTOP), "HOME": str(home)},
             "remote_root": str(jetson.parent / "data")}
    inv = write_inventory(tmp_path / "boards-jtop.yaml", [entry])
    try:
        r = setup(tmp_path, ssh, inv, "--nvpmodel", "bench", "--jetson-clocks", "--json")
        assert r.exit_code == 0, r.output
        data = json.loads(r.stdout)
        assert data["via"] == "jtop 4.2.12" and data["after"] == "MODE_20W_6CORE (8)" and data["clocks_locked"] is True
        assert state(jetson, "nvpmodel") == "8" and state(jetson, "jetson_clocks") == "1"
        assert (home / ".local/state/pantheon-setup/nvpmodel.id").read_text().strip() == "2"
        record = sorted(Path(os.environ["PANTHEON_DATA"], "deploy", "nx").rglob("commands.sh"))[-1].read_text()
        assert "nvpmodel -m" not in record and "sudo -n " + str(jetson) not in record and "j.nvpmodel = MODE" in record
        r = setup(tmp_path, ssh, inv, "--restore", "--json")
        assert r.exit_code == 0, r.output
        assert json.loads(r.stdout)["after"] == "MODE_15W_6CORE (2)"
        assert state(jetson, "nvpmodel") == "2" and state(jetson, "jetson_clocks") == "0"
        assert not (home / ".local/state/pantheon-setup").exists()
    finally:
        sock.close()
