"""The demo pipeline end to end at its smallest size: real training, a real profiler
server process over TCP, real pymoo, the live CPU runtime; then the report is checked against
the event logs it was made from."""

from __future__ import annotations

import contextlib
import io
import json
from pathlib import Path

import pytest

from pantheon.formats import store as st
from pantheon.formats.events import read_events

pytestmark = pytest.mark.slow

TINY = dict(pretrain_epochs=1, construct_epochs=1, duration_s=1.0, limit=240)
POLICIES = ["pantheon", "edf"]


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory):
    from pantheon.demo import DemoSettings, demo

    root = tmp_path_factory.mktemp("demo-store")
    printed = io.StringIO()
    stages: list = []
    with contextlib.redirect_stdout(printed):  # the library prints no results: the CLI does
        first = demo(root, settings=DemoSettings(**TINY), policies=POLICIES, on_stage=stages.append)
        second = demo(root, settings=DemoSettings(**TINY), policies=POLICIES)
    assert printed.getvalue() == ""
    assert stages == first.stages  # handed over one by one as the pipeline ran
    return root, first, second


def test_the_cli_prints_the_policies_next_to_each_other(demo_run, capsys, monkeypatch):
    from pantheon.cli import print_demo

    _, first, _ = demo_run
    monkeypatch.setenv("COLUMNS", "300")
    print_demo(first)
    out = capsys.readouterr().out
    assert out.startswith(f"digits demo: {first.rows[0]['jobs']} jobs, live on {first.device} (and simulated)\n")
    rows = {ln.strip("│").split("│")[0].strip() for ln in out.splitlines() if ln.startswith("│")}
    assert rows == set(POLICIES)
    assert out.endswith(f"report: {first.report / 'report.md'} (plots: {first.report}/*.png)\n")


def _from_log(log: Path) -> dict:
    """DMR and relative accuracy recomputed from the raw events, independently of the report code."""
    released, met, rel = set(), 0, 0.0
    for ev in read_events(log):
        if ev["ev"] == "release":
            released.add(ev["job"])
        elif ev["ev"] == "exit" and ev["met"]:
            met += 1
            rel += ev["rel"]
    n = len(released)
    return {"jobs": n, "dmr": (n - met) / n, "relative_accuracy": rel / n}


def test_every_stage_left_a_verified_artifact(demo_run):
    root, first, _ = demo_run
    s = st.Store(root)
    tasks = ["digits_resnet18", "digits_mobilenet_v2", "digits_googlenet"]
    for task in tasks:
        st.verify(s.pretrained_dir(task), kind="pretrained", required=["weights.pt"])
        m = st.verify(s.variants_dir(task), kind="variants", required=["profile.csv", "block_00.pt", "branch_00.pt"])
        assert any(name.startswith("branch_") for name in m.files)
    repo = st.verify(first.repository, kind="repository")
    assert {f.split("/")[0] for f in repo.files if f.endswith("config.pbtxt")} == set(tasks)
    st.verify(first.workload.parent, kind="workload", required=["workload.bin"])
    for policy in POLICIES:
        st.verify(first.logs[policy].parent, kind="demo-run")
    report = st.verify(first.report, kind="report", required=["report.md", "report.json", "policies.png"])
    assert any(f.endswith(".png") and f.startswith("pantheon/") for f in report.files)


def test_report_numbers_match_the_logs(demo_run):
    _, first, _ = demo_run
    data = json.loads((first.report / "report.json").read_text())
    rows = {r["policy"]: r for r in data["comparison"]}
    assert set(rows) == set(POLICIES)
    for policy in POLICIES:
        want = _from_log(first.logs[policy])
        assert want["jobs"] > 10
        assert rows[policy]["jobs"] == want["jobs"]
        assert rows[policy]["dmr"] == pytest.approx(want["dmr"], abs=1e-6)
        assert rows[policy]["relative_accuracy"] == pytest.approx(want["relative_accuracy"], abs=1e-4)
    md = (first.report / "report.md").read_text()
    for policy in POLICIES:
        assert f"| {policy} | {rows[policy]['jobs']} | {100 * rows[policy]['dmr']:.2f}% |" in md


def test_backbone_accuracies_are_measured_not_assumed(demo_run):
    root, first, _ = demo_run
    data = json.loads((first.report / "report.json").read_text())
    for task, _status, shown in data["pretrain"]:
        metrics = json.loads((st.Store(root).pretrained_dir(task) / "metrics.json").read_text())
        assert shown == f"{100 * metrics['test']:.2f}%"


def test_rerun_skips_every_stage_and_reuses_the_runs(demo_run):
    _, first, second = demo_run
    assert second.stages and all(r.status.startswith("skipped") for r in second.stages), [
        (r.task, r.stage, r.status) for r in second.stages
    ]
    for policy in POLICIES:
        assert (second.logs[policy] / "events.jsonl").read_bytes() == (first.logs[policy] / "events.jsonl").read_bytes()
    assert second.rows == first.rows


def test_the_table_puts_the_simulated_dmr_next_to_the_live_one(demo_run):
    """Each row's simulated DMR is the simulator's verdict on the same workload and repository, and the
    repository carries the dispatch overhead the profiler server measured (the simulator charges it)."""
    from pantheon.formats import read_workloads
    from pantheon.online.repository import read_repository
    from pantheon.online.simulate import simulate

    _, first, _ = demo_run
    repo = read_repository(first.repository)
    profile = json.loads((Path(first.root) / "variants" / "digits_resnet18" / "profile.json").read_text())
    assert profile["dispatch_overhead_us"] > 0 and profile["executors"] == ["eager"]
    assert repo.dispatch_us == pytest.approx(max(
        json.loads((Path(first.root) / "variants" / t / "profile.json").read_text())["dispatch_overhead_us"]
        for t in repo.names))
    ws = read_workloads(first.workload)
    for row in first.rows:
        assert row["sim_dmr"] == pytest.approx(simulate(read_repository(first.repository), ws, row["policy"])["dmr"])
    md = (first.report / "report.md").read_text()
    assert "| simulated DMR | live - simulated |" in md
