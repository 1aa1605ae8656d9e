"""Report: numbers recomputed independently from the log, plots, markdown, compare, no-matplotlib path."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pantheon.analysis import report as rep
from pantheon.cli import app
from pantheon.errors import FormatError
from pantheon.formats import Workloads, store, write_workloads
from pantheon.formats.events import EventLog
from pantheon.online.repository import Repository, TaskProfile
from pantheon.online.simulate import simulate

runner = CliRunner()


def _setup():
    big = TaskProfile("big", [2000, 2000, 2000], [(1, 200, 0.8), (2, 200, 0.9)], index=0)
    small = TaskProfile("small", [500, 500], [(1, 100, 0.7)], index=1)
    repo = Repository(Path("."), {"big": big, "small": small}, app="rapp")
    ws = Workloads()
    # every 6 ms: big (deadline 5.5 ms; 6.2 ms at its original exit, 4.2 ms at exit 1) and small (1.1 ms,
    # released 1 ms later, deadline 2.5 ms): pantheon fits both (big through exit 1), edf cannot
    for k in range(60):
        for task, off, dl in (("big", 0, 5500), ("small", 1000, 2500)):
            w = ws.workload.add()
            w.model_name, w.release, w.deadline = task, k * 6000 + off, k * 6000 + off + dl
    return repo, ws


@pytest.fixture()
def sim_log(tmp_path):
    repo, ws = _setup()
    path = tmp_path / "events.jsonl"
    simulate(repo, ws, "pantheon", jitter=0.2, seed=4, log=EventLog(path), start_fields={"run_id": "r1"})
    return path, ws


def _by_hand(path):
    """DMR and relative accuracy straight from the JSON lines."""
    rel, met, released, acc = {}, set(), set(), {}
    start = None
    for line in path.read_text().splitlines():
        ev = json.loads(line)
        if ev["ev"] == "start":
            start = ev
        elif ev["ev"] == "release":
            released.add(ev["job"])
            rel[ev["job"]] = ev["task"]
        elif ev["ev"] == "exit" and ev["met"]:
            met.add(ev["job"])
            orig = start["tasks"][ev["task"]]["acc"][-1]
            acc[ev["job"]] = start["tasks"][ev["task"]]["acc"][start["tasks"][ev["task"]]["exits"].index(ev["exit"])] / orig
    n = len(released)
    return (n - len(met)) / n, sum(acc.values()) / n, n


def test_report_numbers_match_the_log(sim_log, tmp_path):
    path, _ = sim_log
    out, summary = rep.write_report(path, out=tmp_path / "report")
    dmr, racc, n = _by_hand(path)
    assert summary["jobs"] == n == 120
    assert summary["dmr"] == pytest.approx(dmr, abs=1e-6)
    assert summary["relative_accuracy"] == pytest.approx(racc, abs=1e-5)
    assert 0 < summary["dmr"] < 1  # the 20% latency noise makes some jobs miss
    assert summary["per_task"]["big"]["jobs"] == 60
    assert set(summary["per_task"]["big"]["exits"]) <= {"1", "2"}
    assert summary["scheduler"]["decisions"] == 120
    assert set(summary["scheduler"]["by_queue_length"]) <= {"1", "2", "3"}
    files = {p.name for p in out.iterdir()}
    assert {"report.md", "report.json", "manifest.json", "response_time.png", "accuracy.png", "exit_usage.png",
            "scheduler_latency.png"} <= files
    store.verify(out, kind="report")
    assert json.loads((out / "report.json").read_text())["dmr"] == summary["dmr"]
    md = (out / "report.md").read_text()
    assert f"{100 * summary['dmr']:.2f}%" in md and "| big |" in md and "![response_time](response_time.png)" in md
    assert (out / "response_time.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_report_cli_default_folder_and_json(sim_log):
    path, _ = sim_log
    res = runner.invoke(app, ["report", str(path), "--json", "--no-plots"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert s["policy"] == "pantheon" and s["mode"] == "sim"
    folder = store.Store().report_dir("rapp", "r1")
    assert (folder / "report.md").is_file() and not list(folder.glob("*.png"))


def test_report_without_matplotlib_writes_markdown_json_csv_and_warns_once(sim_log, tmp_path, monkeypatch, capsys):
    path, _ = sim_log
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # as on a board image without it
    monkeypatch.delitem(sys.modules, "pantheon.analysis.plots", raising=False)
    monkeypatch.delattr(sys.modules["pantheon.analysis"], "plots", raising=False)  # no import finds it
    monkeypatch.setattr(rep, "_warned_matplotlib", False)
    out1, _ = rep.write_report(path, out=tmp_path / "a")
    out2, _ = rep.write_report(path, out=tmp_path / "b")
    err = capsys.readouterr().err
    assert err.count("matplotlib is not installed") == 1
    for out in (out1, out2):
        assert {p.name for p in out.iterdir()} == {"report.md", "report.json", "manifest.json", "trace.csv",
                                                   "dmr_windows.csv", "preemptions.csv"}
        store.verify(out, kind="report")


def test_workload_counts_jobs_never_released_and_truncated_log_is_read(sim_log, tmp_path):
    path, ws = sim_log
    lines = path.read_text().splitlines(keepends=True)
    # cut the run short: keep the first 100 lines and half of the 101st (a run killed mid-write)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:100]) + lines[100][: len(lines[100]) // 2])
    wl = tmp_path / "w.bin"
    write_workloads(wl, ws)
    data = rep.analyze(cut, workload=wl)
    s = data["summary"]
    assert s["complete"] is False and s["jobs"] == 120
    released = sum(1 for ln in lines[:100] if '"ev":"release"' in ln)
    assert s["unreleased"] == 120 - released
    assert s["lost"] >= 120 - released


def test_compare_builds_one_table(tmp_path):
    repo, ws = _setup()
    logs = []
    for policy in ("pantheon", "edf", "fifo"):
        p = tmp_path / f"{policy}.jsonl"
        simulate(repo, ws, policy, log=EventLog(p))
        logs.append(p)
    rows = rep.compare(logs)
    assert [r["policy"] for r in rows] == ["pantheon", "edf", "fifo"]
    assert rows[0]["dmr"] == 0.0 and rows[1]["dmr"] == 0.5  # edf drops every big job: 6.2 > 5.5 ms
    md = rep.compare_markdown(rows)
    assert md.splitlines()[0].startswith("| policy | jobs | DMR") and md.count("\n") == 5


def test_telemetry_lines_are_summarised_and_plotted(tmp_path):
    log = EventLog(tmp_path / "t.jsonl")
    log.start(0, mode="live", policy="edf", tasks={"x": {"exits": [0], "acc": [0.5]}}, app="tele", run_id="t1")
    log.release(10, 0, "x", 10, 1000)
    log.exit(500, 0, "x", 0, 0.5, 1.0, 490, True)
    for k in range(5):
        log.telemetry(100 * k, {"gpu_load_pct": 10.0 * k, "power_mw": 5000.0 + k, "cpu_pct": 3.0})
    log.close(600, summary={})
    out, s = rep.write_report(tmp_path / "t.jsonl", out=tmp_path / "rt")
    assert s["telemetry"]["n"] == 5 and s["telemetry"]["max_gpu_load_pct"] == 40.0
    assert (out / "telemetry.png").is_file() and "## Telemetry" in (out / "report.md").read_text()


def test_not_a_log_is_a_clear_error(tmp_path):
    bad = tmp_path / "x.jsonl"
    bad.write_text('{"t": 0, "ev": "release"}\n')
    with pytest.raises(FormatError, match="does not begin with a 'start' event"):
        rep.analyze(bad)
    res = runner.invoke(app, ["report", str(tmp_path / "nope.jsonl")])
    assert res.exit_code == 1 and "cannot read event log" in res.output
