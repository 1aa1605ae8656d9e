"""One job record from the workload to the report: the runtime, the simulator and the report
write the same :class:`~pantheon.metrics.JobRecord` and summarise it with the same code."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import torch
from _repo import TaskSpec, build_repository, write_workload

from pantheon.analysis.report import analyze
from pantheon.formats import read_workloads
from pantheon.metrics import DROPPED, LATE, LOST, MET, JobRecord, percentile, percentile_nonempty, summarize
from pantheon.online.repository import read_repository
from pantheon.online.runtime import Runtime
from pantheon.online.simulate import simulate


def test_a_record_derives_response_and_relative_deadline_and_is_frozen():
    r = JobRecord(3, "a", 1, release=1000, deadline=9000, outcome=MET, exit=2, accuracy=0.9, relative_accuracy=1.0,
                  start=1200, finish=6000, preemptions=2)
    assert (r.response, r.relative_deadline, r.finished, r.preempted) == (5000, 8000, True, True)
    dropped = JobRecord(4, "a", 1, 1000, 9000, DROPPED, finish=2000)
    assert dropped.response is None and not dropped.finished and not dropped.preempted
    with pytest.raises(dataclasses.FrozenInstanceError):
        r.deadline = 1  # type: ignore[misc]


def test_summarize_counts_every_outcome_against_the_definitions():
    recs = [
        JobRecord(0, "a", 0, 0, 100, MET, 1, 0.9, 1.0, finish=40),
        JobRecord(1, "a", 0, 100, 200, MET, 0, 0.6, 0.6 / 0.9, finish=170, preemptions=1),
        JobRecord(2, "b", 1, 0, 50, LATE, 0, 0.5, 0.0, finish=80),
        JobRecord(3, "b", 1, 50, 100, DROPPED, finish=60),
        JobRecord(4, "b", 2, 100, 150),  # lost
    ]
    s = summarize(recs, per_stream=True)
    assert (s["jobs"], s["met"], s["late"], s["dropped"], s["lost"]) == (5, 2, 1, 1, 1)
    assert s["dmr"] == pytest.approx(3 / 5) and s["preempted_jobs"] == pytest.approx(1 / 5)
    assert s["relative_accuracy"] == pytest.approx((1.0 + 0.6 / 0.9) / 5, abs=1e-6)
    assert s["response_p50_us"] == pytest.approx(np.percentile([40, 70, 80], 50))
    assert s["per_task"]["b"]["dmr"] == 1.0 and s["per_task"]["a"]["exits"] == {"0": 1, "1": 1}
    assert s["per_stream"]["1"]["tasks"] == ["b"] and s["per_stream"]["2"]["lost"] == 1
    assert s["per_task"]["a"]["relative_deadline_us"] == 100.0
    assert percentile([], 50) is None and percentile([3.0], 99) == 3.0
    assert percentile_nonempty([1.0, 3.0], 50) == 2.0
    with pytest.raises(ValueError, match="empty"):
        percentile_nonempty([], 50)


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    spec = {"t": TaskSpec(widths=[8, 8, 8], exits={0: 0.7, 2: 0.9}, input=(3, 16, 16))}
    return build_repository(tmp_path_factory.mktemp("m") / "repo", spec)


def test_a_live_job_has_the_same_record_in_its_future_and_in_the_report(repo_dir, tmp_path):
    with Runtime(repo_dir, device="cpu", log=tmp_path / "run") as rt:
        futs = [rt.submit("t", torch.randn(1, 3, 16, 16), relative_deadline_us=60_000_000) for _ in range(3)]
        results = [f.result(60) for f in futs]
    by_job = {r.job: r for r in analyze(tmp_path / "run")["series"]["jobs"]}
    for res in results:
        live = res.record
        assert isinstance(live, JobRecord) and live.outcome == MET and res.met and res.output is not None
        assert live.deadline - live.release == 60_000_000  # absolute in the record, relative given to submit
        assert by_job[live.job] == live  # the report reads back exactly what the runtime recorded


def test_simulated_jobs_summarise_the_same_from_the_simulator_and_from_its_log(repo_dir, tmp_path):
    wl = tmp_path / "w.bin"
    write_workload(wl, [("t", i * 3000, i * 3000 + 2500) for i in range(40)], dims={"t": [1, 3, 16, 16]})
    summary = simulate(read_repository(repo_dir), read_workloads(wl), "pantheon", jitter=0.3, seed=1,
                       log=_log(tmp_path / "sim.jsonl"))
    data = analyze(tmp_path / "sim.jsonl")
    recs = data["series"]["jobs"]
    assert len(recs) == 40 and all(isinstance(r, JobRecord) for r in recs)
    assert {r.outcome for r in recs} <= {MET, LATE, DROPPED, LOST}
    for key in ("jobs", "met", "late", "dropped", "lost", "dmr", "relative_accuracy", "response_p99_us"):
        assert data["summary"][key] == summary[key], key


def _log(path):
    from pantheon.formats.events import EventLog

    return EventLog(path)
