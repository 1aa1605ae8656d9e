"""The images against a real Docker engine: build, runtime, profiler server, bench, bad input.

Dockerfile.jetson is built once per session with ``make image-jetson`` from the local Debian
base (python3, no torch; ``.ci/docker.sh``) and the wheelhouse holding the CPU torch wheel,
exactly as CI and people build it. One long-lived container runs the ``profiler-cpu`` service
of compose.yaml on a named volume holding a small real repository; the ``runtime-cpu`` and
``bench-cpu`` commands run in it with ``docker exec``, and the runtime's bad input gets a
container of its own (with the vfs storage driver every container copies the whole image).
Without an engine every test here is skipped with the reason (failed under
``PANTHEON_REQUIRE_DOCKER=1``). Dockerfile.desktop's build is opt-in
(``PANTHEON_TEST_DESKTOP_IMAGE=1`` / ``make test-images``): see docs/containers.md for why.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
from _docker import (
    DEAD_PIP_INDEX,
    JETSON_TEST_TAG,
    REPO,
    built_commits,
    built_desktop_image,
    built_jetson_image,
    compose_service,
    extract,
    jetson_test_base,
    make_image,
    remove_descendants,
    require_docker,
    run_container,
    tar_of,
    test_wheelhouse,
    unavailable,
    unique,
)
from _profiling import make_variants
from test_images_bench import APP_YAML, TASKS

from pantheon import __version__
from pantheon.formats import read_workloads, store, write_workloads

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(1800)]

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "board_root"
HWMON = FIXTURE_ROOT / "sys/bus/i2c/devices/7-0040/hwmon/hwmon4"
APP = "tinyimg"


@pytest.fixture(scope="module")
def client():
    return require_docker()


@pytest.fixture(scope="module")
def image(client):
    return built_jetson_image()


@pytest.fixture
def volume(client):
    vol = client.volumes.create(unique("pantheon-test-data"))
    yield vol.name
    vol.remove(force=True)


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory):
    """``apps/<APP>/{app.yaml, repository/, workload/workload.bin}`` built on the host, as the trainer would."""
    from _repo import build_repository

    from pantheon.formats.app import load_app
    from pantheon.online.repository import read_repository
    from pantheon.online.workload import generate

    root = tmp_path_factory.mktemp("volume")
    app_dir = root / "apps" / APP
    app_dir.mkdir(parents=True)
    (app_dir / "app.yaml").write_text(APP_YAML.format(name=APP))
    build_repository(app_dir / "repository", TASKS, app=APP)
    ws = generate(load_app(str(app_dir / "app.yaml")), repo=read_repository(app_dir / "repository"), seed=0)
    (app_dir / "workload").mkdir()
    write_workloads(app_dir / "workload" / "workload.bin", ws)
    return root


@pytest.fixture(scope="module")
def board(client, image, data_dir, tmp_path_factory):
    """One container of the image running the profiler-cpu service of compose.yaml on a fresh volume.

    The tiny app's repository and workload are in its volume; a stand-in board root is at
    /board (a copy of tests/fixtures/board_root whose jtop socket path is a directory: what
    Docker makes of ``-v /run/jtop.sock:...`` on a host without jtop). The other services'
    commands run in it with ``docker exec`` (one container instead of one per service: each
    container costs a full copy of the image with the vfs storage driver).
    """
    port = _free_port()
    # compose passes PANTHEON_TOKEN through: the server refuses 0.0.0.0 without one
    svc = compose_service("profiler-cpu", {"PANTHEON_PROFILER_PORT": str(port), "PANTHEON_TOKEN": BOARD_TOKEN})
    assert svc["network_mode"] == "host"
    vol = client.volumes.create(unique("pantheon-test-data"))
    stand_in = tmp_path_factory.mktemp("board") / "board"
    shutil.copytree(FIXTURE_ROOT, stand_in)
    (stand_in / "run" / "jtop.sock").mkdir(parents=True)
    c = client.containers.create(image, svc["command"], environment=svc["environment"], network_mode="host",
                                 volumes={vol.name: {"bind": "/data", "mode": "rw"}})
    try:
        c.put_archive("/data", tar_of(data_dir / "apps", "apps"))
        c.put_archive("/", tar_of(stand_in, "board"))
        c.start()
        deadline = time.monotonic() + 600
        while f"listening on 0.0.0.0:{port}" not in c.logs().decode():
            c.reload()
            assert c.status in ("created", "running"), c.logs().decode()
            assert time.monotonic() < deadline, "the profiler server did not start"
            time.sleep(0.5)
        yield c, port
    finally:
        c.remove(force=True)
        vol.remove(force=True)


def _exec(container, argv, env):
    """Run ``argv`` in ``container``; returns (exit code, stdout, stderr)."""
    code, (out, err) = container.exec_run(argv, environment=env, demux=True)
    return code, (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")


def _one_line_error(stderr: str) -> str:
    lines = [ln for ln in stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, stderr
    assert "Traceback" not in stderr
    return lines[0]


BOARD_TOKEN = "test-board-token"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_jetson_image_metadata_and_contents(client, image, board):
    cfg = client.images.get(image).attrs["Config"]
    labels = cfg["Labels"]
    assert cfg["Entrypoint"] == ["pantheon"]
    env = dict(e.split("=", 1) for e in cfg["Env"])
    assert env["PANTHEON_DATA"] == "/data" and env["PANTHEON_APPS"] == "/opt/pantheon/apps"
    assert labels["org.opencontainers.image.revision"] == env["PANTHEON_GIT_COMMIT"]
    assert env["PANTHEON_GIT_COMMIT"] in built_commits("jetson", JETSON_TEST_TAG)
    assert labels["org.opencontainers.image.base.name"] == jetson_test_base()
    assert "org.opencontainers.image.base.digest" in labels  # empty here: an imported base has no registry digest
    # The base points pip at an index that is down (as JetPack 6 bases do): the build got past it.
    assert all(env[k] == v for k, v in DEAD_PIP_INDEX.items())
    assert labels["org.pantheon.l4t"] == ""  # a Debian base carries no L4T release
    # Only what the board needs: core + jetson-stats, torch from the wheelhouse, no training deps.
    probe = (
        "import importlib.util as u, torch, pantheon; "
        "print(pantheon.__version__, torch.__version__, "
        "[m for m in ('torchvision', 'pymoo', 'sklearn', 'matplotlib', 'docker', 'jtop') if u.find_spec(m)])"
    )
    code, out, err = _exec(board[0], ["python", "-c", probe], {})
    assert code == 0, err
    version, torch_version, present = out.split(" ", 2)
    assert version == __version__
    assert torch_version.endswith("+cpu")  # the wheelhouse's wheel, not a CUDA one from PyPI
    assert present.strip() == "['jtop']"
    assert sorted(p.name for p in (REPO / "deploy" / "apps").glob("*.yaml")) == sorted(
        _exec(board[0], ["ls", "/opt/pantheon/apps"], {})[1].split())


def test_runtime_service_replays_a_workload_with_stand_in_telemetry(board, data_dir, tmp_path):
    # The runtime-cpu service's command and environment, with the stand-in board root.
    svc = compose_service("runtime-cpu", {"PANTHEON_APP": APP, "PANTHEON_RUN_ID": "run1"})
    code, out, err = _exec(board[0], ["pantheon", *svc["command"]], {**svc["environment"], "PANTHEON_BOARD_ROOT": "/board"})
    assert code == 0, err
    logs = extract(board[0], f"/data/logs/{APP}/run1", tmp_path / "out")
    warnings = [ln for ln in err.splitlines() if "warning" in ln]
    assert len(warnings) == 1 and "jtop" in warnings[0] and "falling back to sysfs" in warnings[0], err
    assert "pantheon on cpu" in out

    events = [json.loads(ln) for ln in (logs / "events.jsonl").read_text().splitlines()]
    jobs = len(read_workloads(data_dir / "apps" / APP / "workload" / "workload.bin").workload)
    assert events[0]["ev"] == "start" and events[-1]["ev"] == "end"
    assert len({e["job"] for e in events if e["ev"] in ("exit", "drop")}) == jobs
    facts = events[0]["board"]  # board facts, read once into the start event
    assert facts["model"] == "NVIDIA Jetson Xavier NX Developer Kit" and facts["l4t"] == "35.3.1"
    tele = [e for e in events if e["ev"] == "telemetry"]
    assert len(tele) >= 3
    vdd_in = float((HWMON / "in1_input").read_text()) * float((HWMON / "curr1_input").read_text()) / 1000
    assert all(e["gpu_load_pct"] == pytest.approx(53.7) and e["power_mw"] == pytest.approx(vdd_in, abs=0.1)
               for e in tele)
    assert [e["t"] for e in tele] == sorted(e["t"] for e in tele)  # same clock as the scheduler events
    store.verify(logs, kind="log")

    # The report of that log (on the host, which has matplotlib for the plots).
    from pantheon.analysis.report import write_report

    workload = data_dir / "apps" / APP / "workload" / "workload.bin"
    folder, summary = write_report(logs, out=tmp_path / "report", workload=workload)
    assert summary["jobs"] == jobs and 0.0 <= summary["dmr"] <= 1.0
    assert summary["telemetry"]["mean_gpu_load_pct"] == pytest.approx(53.7)
    assert json.loads((folder / "report.json").read_text())["jobs"] == jobs
    assert (folder / "telemetry.png").stat().st_size > 0  # GPU load and power beside the response times
    store.verify(folder, kind="report")


def test_runtime_container_on_a_volume_without_repository_names_the_path(client, image, volume):
    # A container of its own: the service's exit status is the container's.
    svc = compose_service("runtime-cpu", {"PANTHEON_APP": "nothing-here"})
    c, code, out, err = run_container(client, image, svc["command"], environment=svc["environment"],
                                      volumes={volume: {"bind": "/data", "mode": "rw"}})
    c.remove(force=True)
    assert code == 1
    line = _one_line_error(err)
    assert "/data/apps/nothing-here/repository" in line and "does not exist" in line


def test_profiler_service_in_a_container_profiles_from_the_host(board, tmp_path):
    from pantheon.offline.profile import profile

    container, port = board
    variants, _, _ = make_variants(tmp_path / "variants", task="tiny", n_blocks=3)
    res = profile(weights=variants, host="127.0.0.1", port=port, warmup=2, repeat=10, token=BOARD_TOKEN,
                  accuracies=[0.5, 0.6, 0.7])
    assert res.source == f"127.0.0.1:{port}"
    assert len(res.rows) == 3 and all(r.block_ms > 0 and r.branch_ms > 0 for r in res.rows)
    assert {t["repeat"] for t in res.timings.values()} == {10}  # the request's counts reached the server
    store.verify(variants, kind="variants", required=["profile.csv"])
    container.reload()
    assert container.status == "running"


def test_bench_service_writes_results_with_the_image_provenance(client, image, board, tmp_path):
    img = client.images.get(image)
    svc = compose_service("bench-cpu", {"PANTHEON_APP": APP, "PANTHEON_SEED": "7", "PANTHEON_IMAGE_DIGEST": img.id})
    command = ["pantheon", *svc["command"], "--policies", "pantheon,edf", "--decisions", "100"]
    code, out, err = _exec(board[0], command, svc["environment"])
    assert code == 0, err
    bench_root = extract(board[0], f"/data/bench/{APP}", tmp_path / "out")
    (run,) = [p for p in bench_root.iterdir() if p.is_dir()]
    manifest = store.verify(run, kind="bench", required=["results.json", "workload.bin"])
    meta = manifest.meta
    assert meta["image_digest"] == img.id
    assert meta["git_commit"] == img.labels["org.opencontainers.image.revision"]  # baked in at build time
    assert meta["pantheon_version"] == __version__
    assert meta["board"]["l4t"] is None and meta["settings"]["seed"] == 7
    assert meta["telemetry"]["n"] > 0 and meta["telemetry"]["mean_cpu_pct"] is not None
    results = json.loads((run / "results.json").read_text())
    assert set(results["policies"]) == {"pantheon", "edf"}
    assert len(results["scheduler_latency"]) == 11 and results["dispatch_overhead"]["jobs"] > 0
    assert "results written to /data/bench/" + APP in err


def test_profiler_container_stops_cleanly(board):
    # Last of the board tests: SIGTERM (docker stop) ends the served container with status 0.
    container, _ = board
    container.stop(timeout=30)
    assert container.wait(timeout=60)["StatusCode"] == 0


def _nopython_image(client, tmp_path) -> str:
    """An image with /bin/sh (dash and its libraries, from this host) and nothing else: no python3."""
    root = tmp_path / "rootfs"
    sh = Path(os.path.realpath(shutil.which("dash") or "/bin/sh"))
    libs = re.findall(r"(/\S+\.so[.\d]*)", subprocess.run(["ldd", str(sh)], capture_output=True, text=True).stdout)
    for src in [str(sh), *libs]:
        dest = root / src.lstrip("/")
        dest.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(os.path.realpath(src), dest)
    (root / "bin").mkdir(exist_ok=True)
    if not (root / "bin" / "sh").exists():
        os.symlink(str(sh), root / "bin" / "sh")
    repo, tag = "pantheon-test-nopython", unique("t")
    tar = subprocess.run(["tar", "-C", str(root), "-cf", "-", "."], capture_output=True, check=True).stdout
    client.api.import_image_from_data(tar, repository=repo, tag=tag)
    return f"{repo}:{tag}"


def test_a_base_without_python3_fails_with_the_dockerfiles_message(client, tmp_path):
    base = _nopython_image(client, tmp_path)
    tag = "pantheon-jetson:test-nopython"
    try:
        proc = make_image("jetson", base, tag)
        assert proc.returncode != 0
        expected = f"error: base image {base} has no python3"
        assert expected in proc.stdout + proc.stderr
        # the wrapper's own one-line error repeats the Dockerfile's message
        assert any(ln.startswith("error: docker build of") and expected in ln for ln in proc.stderr.splitlines())
        import docker

        with pytest.raises(docker.errors.ImageNotFound):
            client.images.get(tag)
    finally:
        remove_descendants(client, client.images.get(base).id)


@pytest.mark.skipif(os.environ.get("PANTHEON_TEST_DESKTOP_IMAGE", "") in ("", "0"),
                    reason="the desktop image build installs torchvision, pymoo, scikit-learn, scipy and matplotlib "
                           "(minutes, ~1 GB more): run `make test-images` or set PANTHEON_TEST_DESKTOP_IMAGE=1")
def test_desktop_image_builds_and_runs_as_a_user(client):
    wheels = [p.name for p in test_wheelhouse().glob("torchvision-*.whl")]
    if not wheels:
        # PyPI's x86 torchvision is a CUDA build whose ops do not load beside a CPU torch: the
        # Dockerfile's smoke test stops such a build ("operator torchvision::nms does not exist").
        unavailable("the desktop build on a bare base needs a CPU torchvision wheel matching the wheelhouse's "
                    "torch (download.pytorch.org/whl/cpu) in PANTHEON_TEST_WHEELHOUSE")
    image = built_desktop_image()
    cfg = client.images.get(image).attrs["Config"]
    assert cfg["Entrypoint"] == ["pantheon"] and cfg["Cmd"] == ["pipeline", "--app", "digits"]
    assert cfg["User"] == "1000"
    probe = "import os, torchvision, pymoo, sklearn, matplotlib, docker; print(os.getuid())"
    out = client.containers.run(image, ["-c", probe], entrypoint="python", remove=True, network_mode="host")
    assert out.decode().strip() == "1000"
