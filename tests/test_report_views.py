"""Report views: per-job trace, DMR per window, preemptions per block, per-stream grouping.

Every number is recounted straight from the event log's JSON lines and compared with the
CSV files the report folder holds.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from pantheon.analysis import report as rep
from pantheon.cli import app
from pantheon.formats import Workloads, store, write_workloads
from pantheon.formats.events import EventLog
from pantheon.online.repository import Repository, TaskProfile
from pantheon.online.simulate import simulate

runner = CliRunner()
PERIOD = 10_000
PERIODS = 20


def _setup():
    """Every 10 ms: ``big`` (3 blocks of 2 ms, loose deadline) on stream 0, and two streams of ``small``
    (1.1 ms, 3 ms deadline) arriving 1 ms and 3.5 ms later. Without noise each ``small`` job
    takes the device from ``big`` at a block boundary: once after big's block 0 (at 2 ms), once
    after its block 1 (at 5.1 ms), so every period has one preemption at each of those blocks."""
    big = TaskProfile("big", [2000, 2000, 2000], [(1, 200, 0.8), (2, 200, 0.9)], index=0)
    small = TaskProfile("small", [500, 500], [(1, 100, 0.7)], index=1)
    repo = Repository(Path("."), {"big": big, "small": small}, app="vapp")
    ws = Workloads()
    for k in range(PERIODS):
        for stream, task, off, dl in ((0, "big", 0, 20000), (1, "small", 1000, 3000), (2, "small", 3500, 3000)):
            w = ws.workload.add()
            w.id, w.model_name, w.release, w.deadline = stream, task, k * PERIOD + off, k * PERIOD + off + dl
    return repo, ws


def _events(path):
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line.strip()]


def _csv(path):
    with open(path, newline="") as f:
        return list(csv.DictReader(f))


@pytest.fixture()
def clean_log(tmp_path):
    repo, ws = _setup()
    path = tmp_path / "clean.jsonl"
    simulate(repo, ws, "pantheon", log=EventLog(path), start_fields={"run_id": "clean"})
    return path


@pytest.fixture(params=[True, False], ids=["drop-late", "run-late"])
def noisy_log(request, tmp_path):
    """The same workload with 40% latency noise: some jobs are dropped (``drop_late``) or finish late."""
    repo, ws = _setup()
    path = tmp_path / "noisy.jsonl"
    simulate(repo, ws, "pantheon", jitter=0.4, seed=3, drop_late=request.param, log=EventLog(path),
             start_fields={"run_id": "noisy"})
    return path, ws


def _preempt_blocks(events):
    """(task, block) -> preempt events, the block being the job's last dispatched block before it."""
    task, last, counts = {}, {}, Counter()
    for ev in events:
        if ev["ev"] == "release":
            task[ev["job"]] = ev["task"]
        elif ev["ev"] == "dispatch" and "block" in ev:
            last[ev["job"]] = ev["block"]
        elif ev["ev"] == "preempt":
            counts[(task[ev["job"]], last[ev["job"]])] += 1
    return counts


def test_preemptions_per_block_equal_the_preempt_events_of_that_block(clean_log, tmp_path):
    events = _events(clean_log)
    out, summary = rep.write_report(clean_log, out=tmp_path / "r", plots=False)
    by_hand = _preempt_blocks(events)
    assert by_hand == {("big", 0): PERIODS, ("big", 1): PERIODS}  # the timeline of _setup
    rows = _csv(out / "preemptions.csv")
    table = {(r["task"], int(r["block"])): int(r["preemptions"]) for r in rows}
    # every block of both tasks has a row, zeros included, and each count is the log's
    assert set(table) == {("big", 0), ("big", 1), ("big", 2), ("small", 0), ("small", 1)}
    for key, n in table.items():
        assert n == by_hand.get(key, 0), key
    n_preempt = sum(1 for ev in events if ev["ev"] == "preempt")
    assert summary["preemptions"] == n_preempt == sum(table.values())
    assert summary["preemptions_by_task"] == {"big": 2 * PERIODS, "small": 0}
    assert summary["preemptions_per_block"] == {"big": {"0": PERIODS, "1": PERIODS}}
    md = (out / "report.md").read_text()
    assert "## Preemptions" in md and f"| big | {2 * PERIODS} | 0: {PERIODS}, 1: {PERIODS} |" in md


def test_trace_has_one_row_per_released_job_with_the_logged_times(noisy_log, tmp_path):
    path, _ = noisy_log
    events = _events(path)
    out, summary = rep.write_report(path, out=tmp_path / "r", plots=False)
    rows = _csv(out / "trace.csv")
    released = [ev for ev in events if ev["ev"] == "release"]
    assert len(rows) == len(released) == summary["jobs"] == 3 * PERIODS
    assert list(rows[0]) == ["stream", "task", "job", "release_us", "deadline_us", "start_us", "finish_us", "exit",
                             "accuracy", "outcome", "response_us", "preemptions"]
    first_dispatch, exits, drops, pre = {}, {}, {}, Counter()
    for ev in events:
        if ev["ev"] == "dispatch":
            first_dispatch.setdefault(ev["job"], ev["t"])
        elif ev["ev"] == "exit":
            exits[ev["job"]] = ev
        elif ev["ev"] == "drop":
            drops[ev["job"]] = ev
        elif ev["ev"] == "preempt":
            pre[ev["job"]] += 1
    rel = {ev["job"]: ev for ev in released}
    outcomes = Counter()
    for r in rows:
        job = int(r["job"])
        outcomes[r["outcome"]] += 1
        assert int(r["release_us"]) == rel[job]["release"] and int(r["deadline_us"]) == rel[job]["deadline"]
        assert r["task"] == rel[job]["task"]
        assert r["start_us"] == str(first_dispatch.get(job, ""))
        assert int(r["preemptions"]) == pre[job]
        if job in exits:
            e = exits[job]
            assert r["outcome"] == ("met" if e["met"] else "missed")
            assert int(r["finish_us"]) == e["t"] and int(r["exit"]) == e["exit"]
            assert float(r["accuracy"]) == e["acc"] and int(r["response_us"]) == e["response"]
            assert int(r["finish_us"]) - int(r["release_us"]) == e["response"]
        else:
            assert job in drops and r["outcome"] == "dropped"
            assert r["finish_us"] == r["exit"] == r["accuracy"] == r["response_us"] == ""
    assert outcomes["met"] == summary["met"] and outcomes["missed"] == summary["late"]
    assert outcomes["dropped"] == summary["dropped"]
    assert outcomes["dropped"] + outcomes["missed"] > 0  # the noise made some jobs miss
    # sorted by stream, then release time; the simulator logs each job's workload stream
    keys = [(int(r["stream"]), int(r["release_us"])) for r in rows]
    assert keys == sorted(keys)
    assert {(r["stream"], r["task"]) for r in rows} == {("0", "big"), ("1", "small"), ("2", "small")}


def test_window_dmr_adds_up_to_the_overall_dmr(noisy_log, tmp_path):
    path, _ = noisy_log
    events = _events(path)
    window_ms = 7  # does not divide the 10 ms period: windows hold different numbers of jobs
    out, summary = rep.write_report(path, out=tmp_path / "r", plots=False, window_ms=window_ms)
    rows = _csv(out / "dmr_windows.csv")
    assert 0 < summary["dmr"] < 1
    released = {ev["job"]: ev for ev in events if ev["ev"] == "release"}
    met = {ev["job"] for ev in events if ev["ev"] == "exit" and ev["met"]}
    last = max(ev["release"] for ev in released.values())
    w_us = window_ms * 1000
    overall = [r for r in rows if r["scope"] == "all"]
    assert len(overall) == last // w_us + 1
    for r in overall:  # each window recounted from the log
        lo, hi = int(r["window_start_us"]), int(r["window_end_us"])
        assert hi - lo == w_us
        inside = [j for j, ev in released.items() if lo <= ev["release"] < hi]
        assert int(r["jobs"]) == len(inside)
        assert int(r["missed"]) == sum(1 for j in inside if j not in met)
        assert r["dmr"] == ("" if not inside else f"{int(r['missed']) / len(inside):.6f}")
    jobs = sum(int(r["jobs"]) for r in overall)
    missed = sum(int(r["missed"]) for r in overall)
    assert jobs == summary["jobs"] and missed / jobs == pytest.approx(summary["dmr"], abs=1e-6)
    for task, b in summary["per_task"].items():
        mine = [r for r in rows if r["scope"] == "task" and r["name"] == task]
        assert len(mine) == len(overall)
        j = sum(int(r["jobs"]) for r in mine)
        assert j == b["jobs"] and sum(int(r["missed"]) for r in mine) / j == pytest.approx(b["dmr"], abs=1e-6)
    for stream, b in summary["per_stream"].items():
        mine = [r for r in rows if r["scope"] == "stream" and r["name"] == stream]
        assert sum(int(r["jobs"]) for r in mine) == b["jobs"]
    worst = max((int(r["missed"]) / int(r["jobs"]), int(r["jobs"])) for r in overall if int(r["jobs"]))
    assert summary["dmr_windows"]["worst"]["dmr"] == pytest.approx(worst[0], abs=1e-6)
    assert summary["dmr_windows"]["window_ms"] == window_ms


def test_jobs_never_released_are_lost_rows_of_the_trace(noisy_log, tmp_path):
    path, ws = noisy_log
    lines = path.read_text().splitlines(keepends=True)
    cut = tmp_path / "cut.jsonl"
    cut.write_text("".join(lines[:120]))
    wl = tmp_path / "w.bin"
    write_workloads(wl, ws)
    out, summary = rep.write_report(cut, out=tmp_path / "r", workload=wl, plots=False)
    rows = _csv(out / "trace.csv")
    assert len(rows) == len(ws.workload) == summary["jobs"]
    unreleased = [r for r in rows if r["start_us"] == "" and r["outcome"] == "lost"]
    assert len(unreleased) >= summary["unreleased"] > 0
    windows = [r for r in _csv(out / "dmr_windows.csv") if r["scope"] == "all"]
    assert sum(int(r["missed"]) for r in windows) / summary["jobs"] == pytest.approx(summary["dmr"], abs=1e-6)


def _two_camera_log(path, with_streams=True):
    """A hand-written log: task ``cam`` on streams 0 and 1, ``mic`` on stream 2. Stream 0 meets every
    deadline, stream 1 misses half of its jobs, ``mic`` misses none; ``mic`` is task index 0."""
    log = EventLog(path)
    tasks = {"cam": {"index": 1, "exits": [0], "acc": [0.9], "blocks": [1000]},
             "mic": {"index": 0, "exits": [0], "acc": [0.8], "blocks": [500]}}
    log.start(0, mode="live", policy="edf", tasks=tasks, app="cams", run_id="s1")
    job = 0
    for k in range(4):
        for stream, task, met in ((0, "cam", True), (1, "cam", k % 2 == 0), (2, "mic", True)):
            rel = k * 10_000 + stream * 100
            fields = {"job": job, "task": task, "release": rel, "deadline": rel + 5000}
            if with_streams:
                fields["stream"] = stream
            log.event("release", rel, **fields)
            log.dispatch_block(rel + 10, job, 0)
            resp = 3000 if met else 6000
            log.exit(rel + resp, job, task, 0, tasks[task]["acc"][0], 1.0, resp, met)
            job += 1
    log.close(50_000, summary={})
    return path


def test_report_groups_two_streams_of_one_task(tmp_path):
    log = _two_camera_log(tmp_path / "s.jsonl")
    res = runner.invoke(app, ["report", str(log), "--out", str(tmp_path / "r"), "--window-ms", "20"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "r"
    summary = json.loads((out / "report.json").read_text())
    per = summary["per_stream"]
    assert set(per) == {"0", "1", "2"}
    assert per["0"]["tasks"] == per["1"]["tasks"] == ["cam"] and per["2"]["tasks"] == ["mic"]
    assert [per[s]["jobs"] for s in ("0", "1", "2")] == [4, 4, 4]
    assert (per["0"]["dmr"], per["1"]["dmr"], per["2"]["dmr"]) == (0.0, 0.5, 0.0)
    assert summary["per_task"]["cam"]["jobs"] == 8 and summary["per_task"]["cam"]["dmr"] == 0.25
    trace = _csv(out / "trace.csv")
    assert Counter((r["stream"], r["task"]) for r in trace) == {("0", "cam"): 4, ("1", "cam"): 4, ("2", "mic"): 4}
    windows = _csv(out / "dmr_windows.csv")
    s1 = [r for r in windows if r["scope"] == "stream" and r["name"] == "1"]
    assert [(r["window_start_us"], r["jobs"], r["missed"]) for r in s1] == [("0", "2", "1"), ("20000", "2", "1")]
    md = (out / "report.md").read_text()
    assert "## Per stream" in md and "| 1 | cam | 4 | 50.00% |" in md
    # a second panel draws the streams, since there are more of them than tasks
    assert (out / "dmr_windows.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    from pantheon.analysis import plots

    scope, panels = plots._panels(rep.analyze(log))  # response_time.png: one panel per stream
    assert scope == "stream" and [title for title, _ in panels] == ["stream 0 (cam)", "stream 1 (cam)", "stream 2 (mic)"]
    assert [len(rows) for _, rows in panels] == [4, 4, 4]


@pytest.mark.parametrize("with_streams", [True, False])
def test_jobs_never_released_take_the_stream_of_their_workload_entry(tmp_path, with_streams):
    """With streams in the log, a job the run never released belongs to its workload id's stream (the id is
    the stream index); in an old log, to its task's stream."""
    log = _two_camera_log(tmp_path / "s.jsonl", with_streams=with_streams)
    ws = Workloads()
    for k in range(6):  # the log released the first 4 periods
        for stream, task in ((0, "cam"), (1, "cam"), (2, "mic")):
            w = ws.workload.add()
            rel = k * 10_000 + stream * 100
            w.id, w.model_name, w.release, w.deadline = stream, task, rel, rel + 5000
    write_workloads(tmp_path / "w.bin", ws)
    out, summary = rep.write_report(log, out=tmp_path / "r", workload=tmp_path / "w.bin", plots=False)
    lost = [r for r in _csv(out / "trace.csv") if r["outcome"] == "lost"]
    assert summary["unreleased"] == len(lost) == 6
    expected = {"0": "0", "1": "1", "2": "2"} if with_streams else {"0": "1", "1": "1", "2": "0"}
    assert [r["stream"] for r in lost] == [expected[str(int(r["job"]) % 3)] for r in lost]  # job = 3k + stream
    per = summary["per_stream"]
    if with_streams:
        assert (per["1"]["jobs"], per["1"]["dmr"]) == (6, pytest.approx(4 / 6, abs=1e-6))
    else:
        assert (per["1"]["jobs"], per["1"]["dmr"]) == (12, pytest.approx(6 / 12, abs=1e-6))


def test_old_log_without_streams_reads_one_stream_per_task(tmp_path):
    log = _two_camera_log(tmp_path / "old.jsonl", with_streams=False)
    out, summary = rep.write_report(log, out=tmp_path / "r", plots=False)
    per = summary["per_stream"]
    # the stream of a task is its index in the start event (mic 0, cam 1), not the names' order
    assert set(per) == {"0", "1"} and per["0"]["tasks"] == ["mic"] and per["1"]["tasks"] == ["cam"]
    assert per["1"]["jobs"] == 8 and per["1"]["dmr"] == 0.25
    assert {r["stream"] for r in _csv(out / "trace.csv") if r["task"] == "cam"} == {"1"}
    from pantheon.analysis import plots

    scope, panels = plots._panels(rep.analyze(log))
    assert scope == "task" and [title for title, _ in panels] == ["cam", "mic"]


def test_cli_lists_every_file_and_the_manifest_seals_them(clean_log, tmp_path):
    res = runner.invoke(app, ["report", str(clean_log), "--out", str(tmp_path / "r"), "--window-ms", "25"])
    assert res.exit_code == 0, res.output
    out = tmp_path / "r"
    manifest = store.verify(out, kind="report")
    written = {p.name for p in out.iterdir()} - {"manifest.json"}
    assert {"trace.csv", "dmr_windows.csv", "preemptions.csv", "dmr_windows.png", "report.md"} <= written
    assert written == set(manifest.files)
    for name in written:
        assert name in res.output  # the printed file table
    assert f"preemptions: {2 * PERIODS}" in res.output
    summary = json.loads((out / "report.json").read_text())
    assert set(summary["files"]) == written
    md = (out / "report.md").read_text()
    assert all(f"[{name}]({name})" in md for name in written)
    assert "DMR per 25 ms release window" in md


@pytest.mark.parametrize("value, message", [("0", "must be a finite number"), ("nan", "must be a finite number"),
                                            ("0.001", "windows (at most")])
def test_bad_window_is_one_line_and_writes_nothing(clean_log, tmp_path, value, message):
    out = tmp_path / "r"
    res = runner.invoke(app, ["report", str(clean_log), "--out", str(out), "--window-ms", value])
    assert res.exit_code == 2 and message in res.output and "Traceback" not in res.output
    assert not out.exists() and not list(tmp_path.glob(".r*"))


def test_plots_without_report_windows_draw_one_second_windows(clean_log, tmp_path):
    """The demo draws a run's plots from analyze() alone: the DMR plot falls back to 1 s windows."""
    from pantheon.analysis import plots

    names = plots.draw_all(rep.analyze(clean_log), tmp_path)
    assert "dmr_windows.png" in names and (tmp_path / "dmr_windows.png").stat().st_size > 0
