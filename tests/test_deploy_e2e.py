"""End to end on the loopback board: build the runtime image over SSH, push an app, run, collect, report.

Real parts only: the sshd of .ci/sshd.sh, the Docker engine of .ci/docker.sh (reached from the
SSH session through ``docker system dial-stdio``), ``Dockerfile.jetson`` built from the local
Debian base with the CPU torch wheel, an app with real TorchScript chunks, ``pantheon runtime``
in the container. CPU only (``--no-nvidia-runtime --device cpu``): this machine has no GPU.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from _deploy import board_args, make_app, make_board, ssh_settings
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.errors import PantheonError
from pantheon.formats.store import Store, verify

runner = CliRunner()
pytestmark = [pytest.mark.ssh, pytest.mark.docker, pytest.mark.slow]
TAG = "pantheon-jetson:deploy-e2e"


def _require(reason: str) -> None:
    if os.environ.get("PANTHEON_REQUIRE_DOCKER") == "1":
        pytest.fail(f"PANTHEON_REQUIRE_DOCKER=1 but {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="module")
def board(tmp_path_factory):
    """The loopback board with the runtime image built on it through `pantheon-deploy build --board`."""
    from pantheon.deploy.engine import RemoteEngine
    from pantheon.deploy.ssh import Session

    ssh = ssh_settings()
    base, wheelhouse = os.environ.get("PANTHEON_TEST_BASE_IMAGE"), os.environ.get("PANTHEON_TEST_WHEELHOUSE")
    if not base or not wheelhouse:
        _require("no PANTHEON_TEST_BASE_IMAGE/PANTHEON_TEST_WHEELHOUSE: source .ci/docker.sh before .ci/sshd.sh")
    work = tmp_path_factory.mktemp("e2e")
    with Session(make_board(ssh, work / "data")) as s, RemoteEngine(s) as eng:
        try:
            eng.client.images.get(base)
        except PantheonError as exc:
            _require(f"the loopback board reaches no Docker engine: {exc}")
        except Exception:
            _require(f"the board's engine has no base image {base}")
    mp = pytest.MonkeyPatch()
    mp.setenv("PANTHEON_DATA", str(work / "build-store"))
    t0 = time.monotonic()
    r = runner.invoke(deploy_app, ["build", "--board", f"{ssh['user']}@{ssh['host']}:{ssh['port']}", "--identity",
                                   ssh["key"], "--known-hosts", ssh["known_hosts"], "--base-image", base,
                                   "--wheelhouse", wheelhouse, "--tag", TAG, "--json"])
    mp.undo()
    assert r.exit_code == 0, r.output
    built = json.loads(r.stdout)
    built["build_s"] = time.monotonic() - t0
    return {"ssh": ssh, "built": built, "work": work}


@pytest.fixture
def pushed(board, tmp_path, monkeypatch, _isolated_store):
    ssh = board["ssh"]
    monkeypatch.setenv("PANTHEON_APPS", str(tmp_path / "app-files"))
    make_app(_isolated_store, tmp_path / "app-files", jobs=8, period_us=30_000)
    remote = tmp_path / "board-data"
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image", TAG, "--json", *board_args(ssh, remote)])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    assert data["image"]["action"] == "present" and data["image"]["id"] == board["built"]["id"]
    assert data["files_sent"] == data["files_total"]
    # The image's torch (the test wheelhouse's, read from the image on the board) loads the chunks.
    assert data["torch"]["checked"] is True and data["torch"]["files"] > 0
    wheel = next(Path(os.environ["PANTHEON_TEST_WHEELHOUSE"]).glob("torch-*.whl")).name
    assert data["torch"]["board_torch"].split("+")[0] == wheel.split("-")[1].split("+")[0]
    return {"ssh": ssh, "remote": remote, "store": _isolated_store}


def test_push_refuses_chunks_the_boards_torch_cannot_load(pushed, tmp_path):
    """A chunk in a TorchScript file format newer than the image's torch reads: one line, nothing sent."""
    import zipfile

    from pantheon.formats.store import Store, update_artifact

    repo = Store(pushed["store"]).repository_dir("tinyapp")
    chunk = sorted(repo.rglob("*.pt"))[0]
    src = zipfile.ZipFile(chunk)
    patched = tmp_path / "patched.pt"
    with zipfile.ZipFile(patched, "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            out.writestr(info, b"11\n" if info.filename.count("/") == 1 and info.filename.endswith("/version") else data)
    update_artifact(repo, {str(chunk.relative_to(repo)): patched})
    before = os.readlink(pushed["remote"] / "apps" / "tinyapp")
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image", TAG, *board_args(pushed["ssh"], pushed["remote"])])
    assert r.exit_code != 0
    line = r.output.strip().splitlines()[-1]
    assert "TorchScript file format 11" in line and chunk.name in line and "Traceback" not in r.output
    assert os.readlink(pushed["remote"] / "apps" / "tinyapp") == before  # the board keeps its bundle
    assert not list((pushed["remote"] / "apps" / ".bundles").glob("*.partial"))


def _run(p, *extra):
    return runner.invoke(deploy_app, ["run", "--app", "tinyapp", "--image", TAG, "--no-nvidia-runtime", "--device",
                                      "cpu", "--telemetry", "psutil", *extra, *board_args(p["ssh"], p["remote"])])


def test_build_on_the_board(board):
    b = board["built"]
    assert b["tag"] == TAG and b["where"] == "board" and b["id"].startswith("sha256:")
    assert b["base"] == os.environ["PANTHEON_TEST_BASE_IMAGE"]


def test_push_run_collect_report(pushed, monkeypatch):
    monkeypatch.setenv("COLUMNS", "200")
    r = _run(pushed, "--json")
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    local = Path(info["local"])
    run_id = info["run_id"]
    assert local == Store().logs_dir("tinyapp", run_id)
    manifest = verify(local, kind="log")
    for name in ("events.jsonl", "run.json", "board.json", "container.json", "container.log", "commands.sh",
                 "board-manifest.json"):
        assert name in manifest.files, f"{name} missing from the collected run"
    run = json.loads((local / "run.json").read_text())
    assert run["jobs"] == 8 == info["summary"]["jobs"]  # the 8 jobs of the pushed workload
    assert run["device"] == "cpu" and run["policy"] == "pantheon"
    container = json.loads((local / "container.json").read_text())
    assert container["exit_code"] == 0 and container["privileged"] is False and container["nvidia"] is False
    assert any(m.startswith(f"{pushed['remote']}:/data") for m in container["mounts"])
    assert container["network"] == "host" and container["runtime"] in (None, "runc")
    events = [json.loads(line) for line in (local / "events.jsonl").read_text().splitlines()]
    assert events[0]["ev"] == "start" and events[-1]["ev"] == "end"
    assert any(e["ev"] == "telemetry" for e in events), "psutil telemetry samples are in the log"
    # The report folder was written from the collected log, and agrees with the runtime's own summary.
    from pantheon.analysis.report import analyze

    report = json.loads((Store().report_dir("tinyapp", run_id) / "report.json").read_text())
    assert report["jobs"] == run["jobs"] and report["dmr"] == run["dmr"] == analyze(local)["summary"]["dmr"]
    # The board keeps its copy; collect brings it back again when the local one is gone.
    assert (pushed["remote"] / "logs" / "tinyapp" / run_id / "events.jsonl").is_file()
    import shutil

    shutil.rmtree(local)
    r = runner.invoke(deploy_app, ["collect", "--json", *board_args(pushed["ssh"], pushed["remote"])])
    assert r.exit_code == 0, r.output
    assert [x["run_id"] for x in json.loads(r.stdout)["runs"]] == [run_id]
    verify(local, kind="log")
    r = runner.invoke(deploy_app, ["collect", "--json", *board_args(pushed["ssh"], pushed["remote"])])
    assert r.exit_code == 0 and json.loads(r.stdout)["runs"] == []  # nothing new


def test_failed_run_is_collected_with_its_reason(pushed):
    # A policy pantheon does not know is refused before anything starts on the board.
    r = _run(pushed, "--policy", "no-such-policy")
    assert r.exit_code == 2 and "unknown policy 'no-such-policy'" in r.output
    logs = Store().logs_dir("tinyapp")
    assert not logs.exists() or not list(logs.iterdir())
    # A runtime that fails in the container (CUDA asked for on a board without a GPU) is collected.
    r = _run(pushed, "--device", "cuda")
    assert r.exit_code == 1
    assert "the container exited with" in r.output
    runs = sorted(logs.iterdir())
    assert len(runs) == 1
    verify(runs[0])
    container = json.loads((runs[0] / "container.json").read_text())
    assert container["exit_code"] not in (0, None)
    assert "no CUDA device" in (runs[0] / "container.log").read_text()


def test_ctrl_c_stops_the_container_and_collects(pushed, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: the remote container stops, logs come back."""
    cmd = [sys.executable, "-m", "pantheon.deploy.cli", "run", "--app", "tinyapp", "--image", TAG,
           "--no-nvidia-runtime", "--device", "cpu", "--telemetry", "psutil", "--duration", "60",
           *board_args(pushed["ssh"], pushed["remote"])]
    # SIGINT as a terminal delivers it (default disposition even when pytest itself ignores it).
    proc = subprocess.Popen(cmd, env=dict(os.environ), start_new_session=True, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    lines = []
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        line = proc.stderr.readline()
        if not line:
            break
        lines.append(line)
        if "is running" in line:
            break
    assert any("is running" in ln for ln in lines), "".join(lines)
    time.sleep(8)  # the runtime loads the repository and starts replaying the 60 s workload
    os.killpg(proc.pid, signal.SIGINT)
    out, err = proc.communicate(timeout=180)
    assert proc.returncode == 130, "".join(lines) + err
    runs = sorted(Store().logs_dir("tinyapp").iterdir())
    assert len(runs) == 1
    verify(runs[0], kind="log")
    container = json.loads((runs[0] / "container.json").read_text())
    assert container["interrupted"] is True
    events = (runs[0] / "events.jsonl").read_text().splitlines()
    assert json.loads(events[0])["ev"] == "start" and len(events) > 2
    from pantheon.deploy.engine import RemoteEngine
    from pantheon.deploy.ssh import Session

    with Session(make_board(pushed["ssh"], pushed["remote"])) as s, RemoteEngine(s) as eng:
        left = eng.client.containers.list(all=True, filters={"label": f"org.pantheon.run-id={container['run_id']}"})
    assert not left, "the stopped container is removed"


def test_bench_container_results_come_back(pushed, board):
    r = runner.invoke(deploy_app, ["bench", "--app", "tinyapp", "--image", TAG, "--policies", "pantheon",
                                   "--duration", "1", "--no-nvidia-runtime", "--device", "cpu", "--telemetry", "psutil",
                                   "--json", *board_args(pushed["ssh"], pushed["remote"])])
    assert r.exit_code == 0, r.output
    info = json.loads(r.stdout)
    local = Path(info["local"])
    assert local == Store().bench_dir("tinyapp", info["run_id"])
    verify(local, kind="bench")
    results = json.loads((local / "results.json").read_text())
    assert set(results["policies"]) == {"pantheon"} and results["policies"]["pantheon"]["jobs"] > 0
    # The bench's own manifest (checked on the way back) names the image it ran in.
    board_manifest = json.loads((local / "board-manifest.json").read_text())
    assert board["built"]["id"] in json.dumps(board_manifest["meta"])
