"""`pantheon bench` (the board image's reproducible benchmark) on this machine, with a small real app.

The same command runs in the container in tests/test_images.py; here: the results folder,
its manifest meta, fixed seeds, and bad input.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from _repo import TaskSpec, build_repository
from typer.testing import CliRunner

from pantheon.bench.suite import bench
from pantheon.cli import app as cli_app
from pantheon.formats import read_workloads, store

FIXTURE_ROOT = Path(__file__).parent / "fixtures" / "board_root"

APP_YAML = """\
name: {name}
description: two tiny conv tasks (bench tests)
tasks:
  fast: {{max_delta_accuracy: 0.05}}
  slow: {{max_delta_accuracy: 0.05}}
workload:
  duration_s: 0.4
  jitter_us: 500
  seed: 3
  streams:
    - {{task: fast, period_ms: 20, deadline_ms: 15}}
    - {{task: slow, period_ms: 25, deadline_ms: 22, start_ms: 3}}
"""

TASKS = {
    # latencies fixed (us) so the workload timing does not depend on this machine's speed
    "fast": TaskSpec(widths=[8, 8], exits={0: 0.8, 1: 0.9}, latencies=[800, 800], exit_latencies={0: 100, 1: 100}),
    "slow": TaskSpec(widths=[8, 8, 8], exits={1: 0.85, 2: 0.92}, latencies=[1500, 1500, 1500],
                     exit_latencies={1: 100, 2: 100}),
}


def make_app(root: Path, apps_dir: Path, name: str = "tinybench") -> str:
    """A real app YAML in ``apps_dir`` and its deployed repository under ``root``."""
    apps_dir.mkdir(parents=True, exist_ok=True)
    (apps_dir / f"{name}.yaml").write_text(APP_YAML.format(name=name))
    build_repository(store.Store(root).repository_dir(name), TASKS, app=name)
    return name


@pytest.fixture
def tiny_app(_isolated_store, tmp_path, monkeypatch):
    monkeypatch.setenv("PANTHEON_APPS", str(tmp_path / "apps"))
    monkeypatch.setenv("PANTHEON_BOARD_ROOT", str(FIXTURE_ROOT))  # a stand-in Jetson: sysfs telemetry + facts
    monkeypatch.setenv("PANTHEON_IMAGE_DIGEST", "sha256:feedface")
    monkeypatch.setenv("PANTHEON_NVPMODEL", "MODE_20W_6CORE:8")
    return make_app(_isolated_store, tmp_path / "apps")


def test_bench_writes_a_verified_results_folder_with_the_environment(tiny_app, _isolated_store):
    res = bench(tiny_app, policies=["pantheon", "fifo"], seed=1, device="cpu", telemetry="auto",
                decisions=50, dispatch_jobs=20)
    dest = Path(res["path"])
    assert dest.parent == store.Store().bench_dir(tiny_app)
    manifest = store.verify(dest, kind="bench", required=["results.json", "table.md", "workload.bin"])
    meta = manifest.meta
    assert meta["image_digest"] == "sha256:feedface"
    assert meta["pantheon_version"] and meta["git_commit"]
    assert meta["board"]["l4t"] == "35.3.1" and meta["board"]["model"].startswith("NVIDIA Jetson Xavier NX")
    assert meta["board"]["nvpmodel"] == {"id": 8, "name": "MODE_20W_6CORE"}
    # telemetry: the stand-in board's sysfs values, sampled during the live runs
    assert meta["telemetry"]["n"] > 0
    assert meta["telemetry"]["mean_gpu_load_pct"] == pytest.approx(53.7)
    assert meta["telemetry"]["mean_power_mw"] > 0

    results = json.loads((dest / "results.json").read_text())
    jobs = len(read_workloads(dest / "workload.bin").workload)
    assert set(results["policies"]) == {"pantheon", "fifo"}
    for policy, summary in results["policies"].items():
        assert summary["jobs"] == jobs, policy
        assert 0.0 <= summary["dmr"] <= 1.0
        assert (dest / "runs" / policy / "events.jsonl").is_file()
    assert [r["queue_length"] for r in results["scheduler_latency"]] == list(range(1, 12))
    assert results["dispatch_overhead"]["jobs"] >= 20  # whole batches of the benchmark
    assert results["dispatch_overhead"]["overhead_per_chunk_median_us"] is not None
    table = (dest / "table.md").read_text()
    assert "| pantheon |" in table and "| fifo |" in table and "53.7" in table


def test_same_seed_same_workload_other_seed_differs(tiny_app, tmp_path):
    def workload(seed, out):
        res = bench(tiny_app, policies=["edf"], seed=seed, device="cpu", telemetry="off", decisions=0,
                    dispatch_jobs=0, out=tmp_path / out)
        return (Path(res["path"]) / "workload.bin").read_bytes()

    assert workload(5, "a") == workload(5, "b")
    assert workload(5, "a2") != workload(6, "c")


def test_bench_cli_without_a_repository_names_the_missing_path(tmp_path, monkeypatch, _isolated_store):
    apps = tmp_path / "apps"
    apps.mkdir()
    (apps / "ghost.yaml").write_text(APP_YAML.format(name="ghost"))
    monkeypatch.setenv("PANTHEON_APPS", str(apps))
    r = CliRunner().invoke(cli_app, ["bench", "--app", "ghost", "--device", "cpu"])
    assert r.exit_code == 1
    expected = str(store.Store().repository_dir("ghost"))
    assert expected in r.output and "Traceback" not in r.output
    assert not store.Store().bench_dir("ghost").exists()  # nothing half-written


def test_bench_cli_rejects_an_unknown_policy(tiny_app):
    r = CliRunner().invoke(cli_app, ["bench", "--app", tiny_app, "--policies", "pantheon,lottery"])
    assert r.exit_code == 2 and "unknown policy 'lottery'" in r.output
