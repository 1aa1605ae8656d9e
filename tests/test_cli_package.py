"""The CLI package's shared parts: one store from ``--data-root`` handed down (no environment
writes), choices built from the library registries, the deploy board options declared once,
errors caught once in the root group, app files found as package data."""

from __future__ import annotations

import json
import os

import pytest
from _repo import TaskSpec, build_repository, write_workload
from typer.main import get_command
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.deploy.cli import BOARD_OPTIONS
from pantheon.deploy.cli import app as deploy_app
from pantheon.formats import store
from pantheon.online.scheduler import POLICIES
from pantheon.platform.telemetry import BACKENDS

runner = CliRunner()

BOARD_COMMANDS = ("build", "push", "setup", "run", "collect", "bench", "status")


def _options(cli, name):
    cmd = get_command(cli).commands[name]
    return {p.name: p for p in cmd.params if p.param_type_name == "option"}


@pytest.fixture()
def tiny(tmp_path):
    repo = build_repository(tmp_path / "repo", {
        "a": TaskSpec(widths=[4, 4], exits={0: 0.6, 1: 0.7}, latencies=[1000, 1000], exit_latencies={0: 100, 1: 100}),
    }, app="tinyapp")
    wl = write_workload(tmp_path / "w.bin", [("a", k * 3000, k * 3000 + 2500) for k in range(10)],
                        dims={"a": [1, 3, 16, 16]})
    return repo, wl


def test_data_root_reaches_the_library_without_touching_the_environment(tiny, tmp_path, monkeypatch):
    repo, wl = tiny
    monkeypatch.delenv(store.ENV_ROOT, raising=False)
    root = tmp_path / "root"
    res = runner.invoke(app, ["--data-root", str(root), "simulate", "--repo", str(repo), "--workload", str(wl),
                              "--out", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    assert store.ENV_ROOT not in os.environ  # the root went down as an argument
    logs = list((root / "logs" / "tinyapp").iterdir())  # --out without --log: the log lands in that store
    assert len(logs) == 1 and (logs[0] / "events.jsonl").is_file()
    assert not (tmp_path / "pantheon-data").exists()


def test_the_environment_variable_still_names_the_store(tiny, tmp_path, monkeypatch):
    repo, wl = tiny
    monkeypatch.setenv(store.ENV_ROOT, str(tmp_path / "envroot"))
    res = runner.invoke(app, ["report", "--help"])
    assert res.exit_code == 0
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--out", str(tmp_path / "r")])
    assert res.exit_code == 0, res.output
    assert len(list((tmp_path / "envroot" / "logs" / "tinyapp").iterdir())) == 1


def test_policy_and_telemetry_choices_come_from_the_registries():
    for cli, cmd in ((app, "runtime"), (app, "simulate"), (deploy_app, "run")):
        assert _options(cli, cmd)["policy"].metavar == "[" + "|".join(POLICIES) + "]"
    for cli, cmd in ((app, "runtime"), (app, "bench"), (deploy_app, "run"), (deploy_app, "bench")):
        assert _options(cli, cmd)["telemetry"].metavar == "[" + "|".join((*BACKENDS, "off")) + "]"
    assert "nvml" in BACKENDS


def test_deploy_accepts_every_telemetry_backend_and_refuses_others_in_one_line():
    res = runner.invoke(deploy_app, ["run", "--telemetry", "tegrastats", "--board", "x@127.0.0.1", "--dry-run"])
    assert res.exit_code == 2 and "unknown telemetry backend 'tegrastats'" in res.output
    assert "Traceback" not in res.output and len(res.output.strip().splitlines()) == 1
    res = runner.invoke(deploy_app, ["run", "--policy", "lottery", "--board", "x@127.0.0.1", "--dry-run"])
    assert res.exit_code == 2 and "unknown policy 'lottery'" in res.output


def test_every_board_command_has_the_same_board_options():
    flags = {name: opt.opts for name, _, opt in [(n, a, _options(deploy_app, "push")[n]) for n, a, _ in BOARD_OPTIONS]}
    for cmd in BOARD_COMMANDS:
        opts = _options(deploy_app, cmd)
        for name, _, _ in BOARD_OPTIONS:
            if cmd == "status" and name == "dry_run":
                assert name not in opts  # status only reads
                continue
            assert opts[name].opts == flags[name], (cmd, name)


def test_bench_policies_take_a_comma_separated_list():
    res = runner.invoke(app, ["bench", "--app", "nosuchapp", "--policies", "edf,sjf"])
    assert res.exit_code == 2 and "unknown policy 'sjf'" in res.output


def test_errors_of_any_command_are_one_line(tmp_path):
    res = runner.invoke(app, ["report", str(tmp_path / "missing")])
    assert res.exit_code != 0 and "Traceback" not in res.output
    assert len(res.output.strip().splitlines()) == 1


def test_click_usage_errors_keep_their_exit_code_and_message(tiny):
    repo, wl = tiny
    res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--seed", "abc"])
    assert res.exit_code == 2 and "Invalid value for '--seed'" in res.output
    assert "error: unexpected" not in res.output  # click's own error, not turned into "unexpected BadParameter"


def test_deploy_data_root_is_the_store_of_the_board_commands(tmp_path, monkeypatch):
    monkeypatch.delenv(store.ENV_ROOT, raising=False)
    monkeypatch.delenv("PANTHEON_APP", raising=False)
    root = tmp_path / "deploystore"
    res = runner.invoke(deploy_app, ["--data-root", str(root), "push", "--board", "x@127.0.0.1", "--dry-run"])
    assert res.exit_code == 2 and f"no app in the store {root / 'apps'}" in res.output, res.output


def test_app_files_are_package_data():
    from pantheon.formats.app import load_app, packaged_apps_dir

    d = packaged_apps_dir()
    assert (d / "digits.yaml").is_file()
    assert load_app(d / "digits.yaml").name == "digits"


def test_workload_show_json_is_the_library_result(tiny, tmp_path):
    _, wl = tiny
    res = runner.invoke(app, ["workload", "--show", str(wl), "--json"])
    assert res.exit_code == 0, res.output
    info = json.loads(res.stdout)
    assert info["jobs"] == 10 and info["per_task"] == {"a": 10} and info["file"] == str(wl)


def test_the_cli_runs_without_click_installed():
    """The runtime image locks no click (typer >= 0.20 carries its own copy): the CLI must not need it."""
    import subprocess
    import sys

    code = ("import sys; sys.modules['click'] = None\n"
            "import typer\n"
            "if not hasattr(typer, '_click'):\n    print('pantheon 0 (typer uses click itself)'); raise SystemExit(0)\n"
            "from pantheon.cli import main\nsys.argv = ['pantheon', '--version']\nmain()\n")
    res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0 and res.stdout.startswith("pantheon "), res.stderr[-2000:]
