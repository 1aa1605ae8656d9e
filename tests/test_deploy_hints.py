"""Every command that a pantheon-deploy error suggests parses against the real CLI.

Each error is triggered for real (a real store, the loopback board of .ci/sshd.sh where one is
needed); the commands named in its one line are then parsed by the CLI tree (``_clitree``), so a
hint naming a missing option or a command that no longer exists fails here.
"""

from __future__ import annotations

import pytest
from _clitree import check_command, commands_in
from _deploy import board_args, make_app
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.platform import jetson as pb

runner = CliRunner()


def _hints(output: str, expect: int = 1):
    line = " ".join(output.split())
    cmds = commands_in(line)
    assert len(cmds) >= expect, f"expected {expect} suggested command(s) in: {line}"
    for c in cmds:
        check_command(c)
    return cmds


@pytest.fixture
def apps_dir(tmp_path, monkeypatch):
    d = tmp_path / "app-files"
    monkeypatch.setenv("PANTHEON_APPS", str(d))
    monkeypatch.delenv("PANTHEON_APP", raising=False)
    return d


def test_checker_refuses_what_the_issue_found():
    """The checker itself fails on the hints the issue quotes (so a passing hint means something)."""
    for bad in ("pantheon plan digits", "pantheon workload --app digits", "pantheon-deploy build --board",
                "pantheon-deploy push --app"):
        with pytest.raises(AssertionError, match="does not parse"):
            check_command(bad)
    check_command("pantheon plan --setting digits")


def test_push_without_repository_or_workload(apps_dir, _isolated_store, tmp_path):
    args = ["push", "--app", "tinyapp", "--image-source", "skip", "--board", "127.0.0.1", "--dry-run"]
    r = runner.invoke(deploy_app, args)
    assert r.exit_code == 1 and "has no deployment bundle" in r.output
    assert _hints(r.output) == ["pantheon plan --setting tinyapp"]
    # A repository but no workload: the workload hint, with the repository the spec needs.
    paths = make_app(_isolated_store, apps_dir)
    import shutil

    shutil.rmtree(paths["workload"])
    r = runner.invoke(deploy_app, args)
    assert r.exit_code == 1 and "its workload" in r.output
    (cmd,) = _hints(r.output)
    assert cmd.startswith("pantheon workload --spec tinyapp --repo ") and str(paths["repository"]) in cmd


def test_app_defaults_none_and_several(apps_dir, _isolated_store, monkeypatch):
    args = ["push", "--image-source", "skip", "--board", "127.0.0.1", "--dry-run"]
    r = runner.invoke(deploy_app, args)
    assert r.exit_code == 2, r.output
    assert "no app in the store" in r.output and "Missing option" not in r.output
    assert "pantheon pipeline --app digits" in _hints(r.output)
    make_app(_isolated_store, apps_dir, "alpha")
    make_app(_isolated_store, apps_dir, "beta")
    r = runner.invoke(deploy_app, args)
    assert r.exit_code == 2 and len(r.output.strip().splitlines()) == 1
    assert "several apps" in r.output and "alpha, beta" in r.output and "--app NAME" in r.output
    monkeypatch.setenv("PANTHEON_APP", "beta")
    from pantheon.deploy.push import resolve_app

    assert resolve_app(None) == ("beta", "from $PANTHEON_APP")
    assert resolve_app("alpha") == ("alpha", "")


def test_image_compatibility_hints():
    for problem in (pb.compatibility_problem("35.3.1", None, "pantheon-jetson:x", board="--board nvidia@10.0.0.2"),
                    pb.compatibility_problem("35.3.1", "36.4.0", "pantheon-jetson:x", board="--board nx-1"),
                    pb.compatibility_problem("36.4.3", "36.2.0", "img")):
        cmds = _hints(problem)
        assert all(c.startswith("pantheon-deploy build --board ") for c in cmds), cmds


@pytest.mark.ssh
def test_run_hints_on_a_real_board(ssh, apps_dir, _isolated_store, tmp_path):
    """Missing image and missing bundle on the loopback board: the suggested push/build parse, and
    carry the board and its data root."""
    remote = tmp_path / "board-data"
    make_app(_isolated_store, apps_dir)
    r = runner.invoke(deploy_app, ["run", "--image", "pantheon-jetson:no-such-tag", "--no-nvidia-runtime",
                                   "--device", "cpu", *board_args(ssh, remote)])
    assert r.exit_code == 1, r.output
    assert "app tinyapp (the only app in" in r.output
    assert "is not on board" in r.output
    cmds = _hints(r.output, expect=2)
    assert any(c.startswith("pantheon-deploy push --board") and f"--remote-root {remote}" in c for c in cmds)
    assert any(c.startswith("pantheon-deploy build --board") for c in cmds)
    # No bundle on the board (checked right after the image): the push hint names board and root.
    from _deploy import make_board

    from pantheon.deploy.run import _bundle_present
    from pantheon.deploy.ssh import Session
    from pantheon.errors import DeployError

    with Session(make_board(ssh, remote)) as s, pytest.raises(DeployError) as err:
        _bundle_present(s, "tinyapp")
    (cmd,) = _hints(str(err.value))
    assert cmd.startswith("pantheon-deploy push --board") and cmd.endswith("--app tinyapp")


def test_a_missing_repository_names_a_command_that_parses(tmp_path):
    from pantheon.cli import app as pantheon_app

    wl = tmp_path / "w.bin"
    wl.write_bytes(b"")
    r = runner.invoke(pantheon_app, ["simulate", "--repo", str(tmp_path / "nope"), "--workload", str(wl)])
    assert r.exit_code != 0 and "does not exist" in r.output
    assert _hints(r.output) == ["pantheon plan --setting APP"]


def test_bench_passes_the_workload_bounds_its_hint_names(apps_dir, _isolated_store):
    """``pantheon bench`` on the board refuses an oversized workload with a hint naming
    ``--max-jobs``/``--max-span``; ``pantheon-deploy bench`` takes both, and the command it
    has the container run parses against the real ``pantheon`` CLI with them. A bad value is
    one line before anything reaches a board."""
    from pantheon.deploy.run import bench_command

    cmd = bench_command("tinyapp", "/data/bench/tinyapp/r1", policies=["pantheon", "edf"], duration=5,
                        max_jobs=5_000_000, max_span_s=172_800)
    assert cmd[cmd.index("--max-jobs") + 1] == "5000000" and cmd[cmd.index("--max-span") + 1] == "172800"
    check_command("pantheon " + " ".join(cmd))
    assert "--max-jobs" not in bench_command("tinyapp", "/data/x")
    make_app(_isolated_store, apps_dir)
    for bad, msg in ((["--max-jobs", "0"], "--max-jobs must be a positive integer"),
                     (["--max-span", "nan"], "--max-span must be a finite number")):
        r = runner.invoke(deploy_app, ["bench", "--app", "tinyapp", "--board", "127.0.0.1", *bad])
        assert r.exit_code != 0 and msg in r.output, r.output
        assert len(r.output.strip().splitlines()) == 1 and "cannot reach" not in r.output
