"""Discrete-event simulator: schedule invariants (hypothesis), determinism, log == summary, CLI."""

from __future__ import annotations

import dataclasses
import json
import pickle
from pathlib import Path

import pytest
from _repo import TaskSpec, build_repository, write_workload
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from typer.testing import CliRunner

from pantheon.analysis.report import analyze
from pantheon.cli import app
from pantheon.errors import UsageError
from pantheon.formats import Workloads
from pantheon.formats.events import EventLog, NullLog, read_events
from pantheon.online.repository import Repository, TaskProfile
from pantheon.online.scheduler import POLICIES
from pantheon.online.simulate import simulate

runner = CliRunner()


class RecordingLog(NullLog):
    """Keeps the scheduling events in memory (for the invariants below)."""

    writes = True

    def __init__(self) -> None:
        super().__init__()
        self.events = []

    def release(self, t, job, task, release, deadline, stream=-1):
        self.events.append(("release", t, job, task))

    def dispatch_block(self, t, job, block):
        self.events.append(("block", t, job, block))

    def dispatch_exit(self, t, job, exit_block):
        self.events.append(("exit_dispatch", t, job, exit_block))

    def done(self, t, job, block):
        self.events.append(("done", t, job, block))

    def exit(self, t, job, task, exit_block, acc, rel, response, met):
        self.events.append(("exit", t, job, exit_block, met))

    def drop(self, t, job, task, reason, started):
        self.events.append(("drop", t, job, reason))

    def schedule(self, t, job, n, dur, down, drop):
        self.events.append(("schedule", t, job, down))


def _workloads(jobs):
    msg = Workloads()
    for task, rel, dl in jobs:
        w = msg.workload.add()
        w.model_name, w.release, w.deadline = task, rel, dl
    return msg


@st.composite
def scenarios(draw):
    tasks = {}
    for i in range(draw(st.integers(1, 3))):
        nb = draw(st.integers(1, 5))
        blocks = draw(st.lists(st.integers(100, 4000), min_size=nb, max_size=nb))
        ex = sorted(set(draw(st.lists(st.integers(0, nb - 1), max_size=nb))) | {nb - 1})
        accs = sorted(draw(st.lists(st.floats(0.3, 0.99), min_size=len(ex), max_size=len(ex), unique=True)))
        lats = draw(st.lists(st.integers(10, 600), min_size=len(ex), max_size=len(ex)))
        tasks[f"t{i}"] = TaskProfile(f"t{i}", blocks, list(zip(ex, lats, accs)), index=i)
    jobs = []
    for _ in range(draw(st.integers(1, 14))):
        name = draw(st.sampled_from(sorted(tasks)))
        rel = draw(st.integers(0, 30_000))
        jobs.append((name, rel, rel + draw(st.integers(300, 40_000))))
    jobs.sort(key=lambda j: j[1])
    return Repository(Path("."), tasks, app="prop"), _workloads(jobs)


def _check_invariants(repo, ws, log):
    per_job = {}
    busy_until = -1
    for ev in log.events:
        kind, t, job = ev[0], ev[1], ev[2]
        rec = per_job.setdefault(job, {"blocks": [], "exit": None, "drop": 0, "exits": 0, "released": 0})
        if kind == "release":
            rec["released"] += 1
        elif kind in ("block", "exit_dispatch"):
            assert rec["exit"] is None and rec["drop"] == 0, f"job {job} ran after it finished"
            assert t >= busy_until, "two chunks on the device at once"
            if kind == "block":
                rec["blocks"].append(ev[3])
            else:
                rec["exit"] = ev[3]
        elif kind == "done":
            busy_until = t
        elif kind == "exit":
            rec["exits"] += 1
            busy_until = t
        elif kind == "drop":
            rec["drop"] += 1
    assert sorted(per_job) == list(range(len(ws.workload)))
    for jid, rec in per_job.items():
        task = repo.tasks[ws.workload[jid].model_name]
        assert rec["released"] == 1
        # no block twice, none skipped: the blocks run are exactly 0..k in order
        assert rec["blocks"] == list(range(len(rec["blocks"])))
        # every job exits exactly once or is dropped
        assert rec["exits"] + rec["drop"] == 1, (jid, rec)
        if rec["exits"]:
            # the exit used is a kept exit and needs exactly the blocks that ran
            assert rec["exit"] in task.exit_blocks
            assert rec["blocks"] and rec["blocks"][-1] == rec["exit"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios(), st.sampled_from(POLICIES), st.booleans(), st.sampled_from([0.0, 0.3]))
def test_every_policy_runs_each_block_once_and_each_job_ends_once(sc, policy, drop_late, jitter):
    repo, ws = sc
    log = RecordingLog()
    s = simulate(repo, ws, policy, drop_late=drop_late, jitter=jitter, seed=1, log=log)
    _check_invariants(repo, ws, log)
    assert s["jobs"] == len(ws.workload) == s["met"] + s["late"] + s["dropped"] + s["lost"]
    assert s["lost"] == 0
    if not drop_late:
        assert s["dropped"] == 0
    if policy in ("edf", "fifo", "rms", "dms"):
        assert s["downgrades"] == 0


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(scenarios())
def test_pantheon_downgrades_nothing_when_plain_edf_meets_every_deadline(sc):
    repo, ws = sc
    edf = simulate(repo, ws, "edf")
    if edf["dmr"] > 0:
        return
    log_e, log_p = RecordingLog(), RecordingLog()
    simulate(repo, ws, "edf", log=log_e)
    p = simulate(repo, ws, "pantheon", log=log_p)
    assert p["downgrades"] == 0 and p["dmr"] == 0 and p["relative_accuracy"] == 1.0
    ends = [e for e in log_e.events if e[0] == "exit"]
    assert ends == [e for e in log_p.events if e[0] == "exit"]


def _overloaded():
    # two tasks: a long one with exits halfway, a short urgent one; arrivals overlap
    long = TaskProfile("long", [3000] * 6, [(2, 300, 0.80), (3, 300, 0.86), (4, 300, 0.90), (5, 300, 0.92)], index=0)
    short = TaskProfile("short", [800, 800], [(0, 100, 0.7), (1, 100, 0.75)], index=1)
    repo = Repository(Path("."), {"long": long, "short": short}, app="overload")
    jobs = []
    for k in range(200):
        base = k * 16_000
        jobs.append(("long", base, base + 16_000))
        jobs.append(("short", base + 2_000, base + 5_500))
        jobs.append(("short", base + 9_000, base + 12_500))
    return repo, _workloads(sorted(jobs, key=lambda j: j[1]))


def test_pantheon_beats_classical_policies_on_an_overloaded_mix():
    """18.3 ms of original-model work every 16 ms: something must give."""
    repo, ws = _overloaded()
    res = {p: simulate(repo, ws, p) for p in POLICIES}
    assert res["pantheon"]["dmr"] < 0.05 and res["pantheon"]["relative_accuracy"] > 0.9
    for p in ("fifo", "rms", "dms", "edf"):
        assert res[p]["dmr"] > 5 * max(res["pantheon"]["dmr"], 0.01), p
    assert res["pantheon"]["dmr"] <= res["pantheon-wo-ee"]["dmr"] <= res["pantheon-wo-ee-pr"]["dmr"]
    assert res["pantheon"]["per_task"]["long"]["exits"].keys() - {"5"}  # some long jobs left early


def test_deterministic_for_a_seed(tmp_path):
    repo, ws = _overloaded()
    a = simulate(repo, ws, "pantheon", jitter=0.2, seed=7, log=EventLog(tmp_path / "a.jsonl"))
    b = simulate(repo, ws, "pantheon", jitter=0.2, seed=7, log=EventLog(tmp_path / "b.jsonl"))
    c = simulate(repo, ws, "pantheon", jitter=0.2, seed=8)

    def strip(lines):  # decision durations are wall-clock measurements; the rest must match
        out = []
        for ev in lines:
            ev.pop("dur", None)
            for key in ("scheduler", "sim_wall_s", "sim_cpu_s", "jobs_per_s", "jobs_per_cpu_s"):  # timings
                ev.get("summary", {}).pop(key, None)
            out.append(ev)
        return out

    assert strip(list(read_events(tmp_path / "a.jsonl"))) == strip(list(read_events(tmp_path / "b.jsonl")))
    assert (a["dmr"], a["response_p99_us"]) == (b["dmr"], b["response_p99_us"])
    assert a["response_p99_us"] != c["response_p99_us"]


def test_report_of_the_simulator_log_matches_its_summary(tmp_path):
    repo, ws = _overloaded()
    s = simulate(repo, ws, "pantheon", jitter=0.1, seed=2, log=EventLog(tmp_path / "sim.jsonl"))
    r = analyze(tmp_path / "sim.jsonl")["summary"]
    for key in ("jobs", "met", "late", "dropped", "dmr", "relative_accuracy", "preempted_jobs",
                "response_p50_us", "response_p99_us", "per_task"):
        assert r[key] == s[key], key
    assert r["mode"] == "sim" and r["complete"] is True


@pytest.fixture(scope="module")
def tiny_repo(tmp_path_factory):
    d = tmp_path_factory.mktemp("simrepo")
    spec = {
        "a": TaskSpec(widths=[4, 4, 4], exits={1: 0.8, 2: 0.9}, latencies=[2000, 2000, 2000],
                      exit_latencies={1: 200, 2: 200}),
        "b": TaskSpec(widths=[4, 4], exits={0: 0.6, 1: 0.7}, latencies=[1000, 1000], exit_latencies={0: 100, 1: 100}),
    }
    return build_repository(d / "repo", spec)


def test_cli_simulate_json_log_and_report(tiny_repo, tmp_path):
    # per 6 ms: a (deadline 5.5 ms) and b (deadline 2.5 ms, released 1 ms later)
    jobs = sorted([("a", k * 6000, k * 6000 + 5500) for k in range(40)]
                  + [("b", k * 6000 + 1000, k * 6000 + 3500) for k in range(40)], key=lambda j: j[1])
    wl = write_workload(tmp_path / "w.bin", jobs, dims={"a": [1, 3, 16, 16], "b": [1, 3, 16, 16]})
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--policy", "pantheon",
                              "--log", str(tmp_path / "run"), "--out", str(tmp_path / "rep"), "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.stdout)
    assert 0.0 <= s["dmr"] <= 1.0 and 0.0 <= s["relative_accuracy"] <= 1.0 and s["jobs"] == 80
    # a needs 6.2 ms through its original exit > 5.5 ms: exit 1 (4.2 ms). b preempts a after a's block 0
    # (at 2 ms) and must end by 3.5 ms: exit 0 (2 + 1.1 ms). a then ends at 3.1 + 2.2 = 5.3 ms.
    assert s["dmr"] == 0.0
    assert s["per_task"]["a"]["exits"] == {"1": 40} and s["per_task"]["b"]["exits"] == {"0": 40}
    assert s["preempted_jobs"] == 0.5
    edf = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--policy", "edf", "--json"])
    assert json.loads(edf.stdout)["dmr"] > s["dmr"]
    assert (tmp_path / "run" / "events.jsonl").is_file()
    assert {"report.md", "report.json", "manifest.json"} <= {p.name for p in (tmp_path / "rep").iterdir()}


def test_cli_simulate_bad_inputs(tiny_repo, tmp_path):
    wl = write_workload(tmp_path / "w.bin", [("a", 0, 9000)])
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--policy", "sjf"])
    assert res.exit_code == 2 and "unknown policy 'sjf'" in res.output and "Traceback" not in res.output
    missing = write_workload(tmp_path / "m.bin", [("a", 0, 9000), ("ghost", 10, 9000)])
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(missing)])
    assert res.exit_code == 1 and "'ghost'" in res.output and "lacks" in res.output
    early = write_workload(tmp_path / "e.bin", [("a", 5000, 4000)])
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(early)])
    assert res.exit_code == 1 and "before its release" in res.output
    trunc = tmp_path / "t.bin"
    trunc.write_bytes(wl.read_bytes()[:-3])
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(trunc)])
    assert res.exit_code == 1 and "not a Workloads protobuf" in res.output
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--jitter", "-1"])
    assert res.exit_code == 2 and "--jitter" in res.output
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--drop-rule", "never"])
    assert res.exit_code == 2 and "unknown --drop-rule 'never'" in res.output and "shed, skip, keep" in res.output
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--downgrade", "best"])
    assert res.exit_code == 2 and "unknown --downgrade 'best'" in res.output


def test_cli_simulate_takes_the_drop_rule_and_ranking(tiny_repo, tmp_path):
    wl = write_workload(tmp_path / "w.bin", [("a", 0, 9000), ("b", 0, 2500)])
    res = runner.invoke(app, ["simulate", "--repo", str(tiny_repo), "--workload", str(wl), "--drop-rule", "keep",
                              "--downgrade", "relative", "--json"])
    assert res.exit_code == 0, res.output
    s = json.loads(res.output)
    assert s["drop_rule"] == "keep" and s["downgrade"] == "relative"


@pytest.mark.parametrize("policy", ["pantheon", "pantheon-wo-ee-pr", "edf", "rtmdl"])
def test_fast_path_without_a_log_gives_the_same_run(policy):
    """Without a log the simulator runs a job's blocks back to back between arrivals; same results."""
    repo, ws = _overloaded()
    fast = simulate(repo, ws, policy, jitter=0.3, seed=5)
    slow = simulate(repo, ws, policy, jitter=0.3, seed=5, log=RecordingLog())
    for key in ("dmr", "relative_accuracy", "preempted_jobs", "response_p50_us", "response_p99_us", "per_task",
                "downgrades", "preemptions"):
        assert fast[key] == slow[key], key


def test_the_simulator_charges_the_dispatch_overhead_per_chunk():
    """A per-chunk overhead turns the overloaded mix worse for EDF, is logged, and leaves the caller's
    repository as it was."""
    repo, ws = _overloaded()
    base = simulate(repo, ws, "edf")
    heavy = simulate(repo, ws, "edf", dispatch_us=300)
    assert heavy["response_p50_us"] > base["response_p50_us"] + 300
    assert heavy["dispatch_overhead_us"] == 300 and base["dispatch_overhead_us"] == 0
    assert all(t.dispatch_us == 0 for t in repo.tasks.values())
    same = simulate(repo.with_dispatch_overhead(300), ws, "edf")
    assert (same["dmr"], same["response_p50_us"]) == (heavy["dmr"], heavy["response_p50_us"])
    with pytest.raises(UsageError, match="--dispatch-us"):
        simulate(repo, ws, "edf", dispatch_us=float("nan"))


@pytest.mark.parametrize("policy", ["pantheon", "rtmdl", "dms"])
def test_simulating_twice_on_one_repository_gives_the_same_run_and_leaves_it_unchanged(policy):
    """The profiles are frozen: the workload's timing (static policies), the dispatch overhead and the
    scheduler's tables live in the run, so one Repository object serves any number of runs."""
    repo, ws = _overloaded()
    before = pickle.dumps(repo)
    runs = [simulate(repo, ws, policy, dispatch_us=d) for d in (None, 200, None)]
    assert pickle.dumps(repo) == before
    timed = ("sim_wall_s", "sim_cpu_s", "jobs_per_s", "jobs_per_cpu_s", "scheduler")  # this machine's speed
    timeless = [{k: v for k, v in r.items() if k not in timed} for r in runs]
    assert timeless[0] == timeless[2] and timeless[1]["dispatch_overhead_us"] == 200
    with pytest.raises(dataclasses.FrozenInstanceError):
        repo.tasks["long"].blocks = (1,)  # type: ignore[misc]


@pytest.mark.parametrize("logged", [False, True])
def test_a_pipelined_executor_overlaps_launch_and_execution(tmp_path, logged):
    """The pipelined model: only the chunk that starts an idle device pays overhead + latency; chunks
    that follow back to back take max(overhead, latency). The scheduler still plans with overhead +
    latency. Both simulator paths (with a log, and the fast path without one) agree."""
    t = TaskProfile("a", [300, 50, 300], [(2, 200, 0.9)], index=0, dispatch_us=100)
    repo = Repository(Path("."), {"a": t}, app="pipe", dispatch_us=100)
    ws = _workloads([("a", 0, 100_000), ("a", 50_000, 150_000)])
    log = EventLog(tmp_path / "e.jsonl") if logged else None
    piped = simulate(repo, ws, "edf", log=log, pipelined=True)
    if log is not None:
        log.close()
    serial = simulate(repo, ws, "edf")
    # serial: 4 chunks at overhead + latency = 400 + 150 + 400 + 300
    assert serial["response_p50_us"] == 1250 and not serial["pipelined"]
    # pipelined: 400 (idle device) + max(100, 50) + max(100, 300) + max(100, 200)
    assert piped["response_p50_us"] == 400 + 100 + 300 + 200 and piped["pipelined"]
    assert all(tp.full_latency == 1250 for tp in repo.tasks.values())  # what the scheduler plans with


def test_a_job_is_saved_through_an_exit_it_already_passed():
    """T: four 100 us blocks, exits after block 0 (branch 10 us) and block 3 (10 us). Job 0
    (deadline 500) runs at its original exit and passes exit 0 at 100 us. Job 1 of U (210 us,
    deadline 420) arrives at 150, planned from 200: it fits, but job 0 can then only reach its
    original exit at 620 > 500, so it is dropped. With the fallback, job 0's block-0 output was
    kept and it leaves through exit 0's branch after job 1: 410 + 10 = 420 <= 500, both met."""
    t = TaskProfile("T", [100, 100, 100, 100], [(0, 10, 0.6), (3, 10, 0.9)], index=0)
    u = TaskProfile("U", [200], [(0, 10, 0.9)], index=1)
    repo = Repository(Path("."), {"T": t, "U": u}, app="fb")
    ws = _workloads([("T", 0, 500), ("U", 150, 420)])
    before = RecordingLog()
    s0 = simulate(repo, ws, "pantheon", log=before)
    assert s0["met"] == 1 and ("drop", 150, 0, "unschedulable") in before.events
    after = RecordingLog()
    s1 = simulate(repo, ws, "pantheon", log=after, fallback=True)
    assert s1["met"] == 2 and s1["fallback_exits"] == 1
    assert ("exit", 420, 0, 0, True) in after.events and ("exit", 410, 1, 0, True) in after.events
    # the no-log fast path (blocks back to back) saves it the same way
    assert simulate(repo, ws, "pantheon", fallback=True)["met"] == 2


def test_fallback_exits_on_the_command_line(tmp_path):
    """`--fallback-exits` reaches the scheduler: the case above, from a repository folder and a .bin."""
    import json as _json

    from _repo import TaskSpec, build_repository, write_workload
    from typer.testing import CliRunner

    from pantheon.cli import app

    repo = build_repository(tmp_path / "repo", {
        "T": TaskSpec(widths=[8, 8, 8, 8], exits={0: 0.6, 3: 0.9}, latencies=[100] * 4, exit_latencies={0: 10, 3: 10}),
        "U": TaskSpec(widths=[8], exits={0: 0.9}, latencies=[200], exit_latencies={0: 10}),
    })
    wl = write_workload(tmp_path / "w.bin", [("T", 0, 500), ("U", 150, 420)],
                        dims={"T": [1, 3, 16, 16], "U": [1, 3, 16, 16]})
    runner = CliRunner()
    out = {}
    for flag in ("--no-fallback-exits", "--fallback-exits"):
        res = runner.invoke(app, ["simulate", "--repo", str(repo), "--workload", str(wl), "--dispatch-us", "0",
                                  "--json", flag])
        assert res.exit_code == 0, res.output
        out[flag] = _json.loads(res.stdout)
    assert out["--no-fallback-exits"]["met"] == 1 and "fallback_exits" not in out["--no-fallback-exits"]
    assert out["--fallback-exits"]["met"] == 2 and out["--fallback-exits"]["fallback_exits"] == 1
