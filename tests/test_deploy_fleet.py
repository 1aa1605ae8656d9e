"""Fleets: inventory files, parallel push/setup/status, one board failing without stopping the others."""

from __future__ import annotations

import json

import pytest
from _deploy import conn_args, make_app, ssh_settings, stand_in_board_root, write_inventory
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.deploy.fleet import Connection, load_inventory, select_boards
from pantheon.errors import FormatError, UsageError
from pantheon.formats.store import verify

runner = CliRunner()


@pytest.fixture(autouse=True)
def _wide_tables(monkeypatch):
    monkeypatch.setenv("COLUMNS", "250")  # rich folds tables at 80 columns without a terminal


def test_inventory_format_and_precedence(tmp_path):
    key = tmp_path / "keys" / "id"
    key.parent.mkdir()
    key.write_text("k")
    inv = write_inventory(tmp_path / "boards.yaml", [
        {"name": "nx-1", "host": "10.0.0.1", "labels": {"site": "lab"}, "preset": "xavier-nx"},
        {"name": "nx-2", "host": "10.0.0.2", "user": "ubuntu", "port": 2200, "labels": {"site": "field"}},
    ], defaults={"user": "nvidia", "identity": "keys/id", "remote_root": "/srv/pantheon"})
    boards = load_inventory(inv, Connection(port=22))
    assert [(b.name, b.user, b.port, b.identity, b.remote_root) for b in boards] == [
        ("nx-1", "nvidia", 22, str(key), "/srv/pantheon"),      # defaults; CLI port over nothing
        ("nx-2", "ubuntu", 2200, str(key), "/srv/pantheon"),    # the board's own entry wins
    ]
    assert [b.name for b in select_boards([], inv, Connection(), ["site=field"])] == ["nx-2"]
    assert select_boards(["root@h:1"], None, Connection(user="x"))[0].user == "root"  # spec over --user
    # CLI listing, no connection made.
    r = runner.invoke(deploy_app, ["boards", "--inventory", str(inv)])
    assert r.exit_code == 0 and "nvidia@10.0.0.1" in r.stdout and "ubuntu@10.0.0.2:2200" in r.stdout


@pytest.mark.parametrize("content,message", [
    ("boards: []", "non-empty list"),
    ("boards:\n  - {name: a}", "needs a 'host'"),
    ("boards:\n  - {host: a, pasword: x}", "unknown keys"),
    ("[1, 2", "not valid YAML"),
    ("- just a list", "'boards' list"),
])
def test_bad_inventories(tmp_path, content, message):
    p = tmp_path / "inv.yaml"
    p.write_text(content)
    with pytest.raises(FormatError, match=message):
        load_inventory(p)


def test_duplicate_and_missing_boards(tmp_path):
    inv = write_inventory(tmp_path / "i.yaml", [{"name": "a", "host": "h1"}, {"name": "a", "host": "h2"}])
    with pytest.raises(UsageError, match="two boards are named 'a'"):
        load_inventory(inv)
    r = runner.invoke(deploy_app, ["status"])
    assert r.exit_code == 2 and "no board given" in r.output


@pytest.mark.ssh
def test_fleet_push_setup_status_with_one_unreachable_board(tmp_path, monkeypatch, _isolated_store):
    ssh = ssh_settings()
    apps = tmp_path / "app-files"
    monkeypatch.setenv("PANTHEON_APPS", str(apps))
    make_app(_isolated_store, apps)
    roots = {n: stand_in_board_root(tmp_path / f"root-{n}") for n in ("a", "b")}
    entries = [{"name": f"board-{n}", "host": ssh["host"], "port": int(ssh["port"]), "user": ssh["user"],
                "remote_root": str(tmp_path / f"data-{n}"), "env": {"PANTHEON_BOARD_ROOT": str(roots[n])},
                "labels": {"group": "loopback"}} for n in ("a", "b")]
    entries.append({"name": "board-down", "host": ssh["host"], "port": 1, "user": ssh["user"],
                    "remote_root": str(tmp_path / "data-down")})
    inv = write_inventory(tmp_path / "boards.yaml", entries)
    common = ["--inventory", str(inv), *conn_args(ssh, tmp_path / "unused"), "--jobs", "3"]

    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image-source", "skip", *common])
    assert r.exit_code == 1, r.output
    rows = {line.split("│")[1].strip(): line for line in r.stdout.splitlines() if "board-" in line}
    assert "ok" in rows["board-a"] and "ok" in rows["board-b"] and "FAILED" in rows["board-down"]
    assert "cannot reach" in r.stdout
    for n in ("a", "b"):  # both reachable boards got the whole bundle despite the third failing
        verify(tmp_path / f"data-{n}" / "apps" / "tinyapp", kind="bundle")

    r = runner.invoke(deploy_app, ["setup", "--nvpmodel", "8", "--jetson-clocks", "--json", *common])
    assert r.exit_code == 1
    res = {d["board"]: d for d in json.loads(r.stdout)}
    assert res["board-a"]["ok"] and res["board-b"]["ok"] and not res["board-down"]["ok"]
    assert res["board-a"]["after"] == "MODE_20W_6CORE (8)"
    for n in ("a", "b"):
        assert (roots[n] / "var/lib/stand-in/nvpmodel").read_text().strip() == "8"

    # Selecting by label leaves the unreachable board out: everything succeeds, exit code 0.
    r = runner.invoke(deploy_app, ["status", "--json", "--label", "group=loopback", *common])
    assert r.exit_code == 0, r.output
    res = {d["board"]: d for d in json.loads(r.stdout)}
    assert set(res) == {"board-a", "board-b"}
    assert all(d["nvpmodel"]["id"] == 8 and d["bundles"][0]["app"] == "tinyapp" for d in res.values())
