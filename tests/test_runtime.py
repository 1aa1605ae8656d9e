"""The live runtime on the CPU with real TorchScript chunks: preemption, memory, API, CLI, bad input.

Timing on this shared 2-core machine is noisy: workloads are underloaded and preemption
is asserted from the order of events in the log, not from durations.
"""

from __future__ import annotations

import json
import os
import pickle
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
from _repo import TaskSpec, build_repository, write_workload
from typer.testing import CliRunner

from pantheon.cli import app
from pantheon.errors import ChecksumError, RepositoryError, RuntimeFault, UsageError
from pantheon.formats import read_workloads
from pantheon.formats.events import read_events
from pantheon.formats.store import write_artifact
from pantheon.online.memory import MemoryManager
from pantheon.online.repository import read_repository
from pantheon.online.runtime import InflightWindow, Runtime, parse_best_effort
from pantheon.online.simulate import simulate
from pantheon.online.workload import validate

runner = CliRunner()
DIMS = {"long": [1, 3, 48, 48], "short": [1, 3, 16, 16]}


@pytest.fixture(scope="module")
def repo_dir(tmp_path_factory):
    """long: 6 real conv blocks of 32 channels at 48x48; short: 2 tiny blocks. Latencies measured here."""
    d = tmp_path_factory.mktemp("rtrepo")
    spec = {
        "long": TaskSpec(widths=[32] * 6, depth=[2] * 6, exits={3: 0.85, 5: 0.9}, input=(3, 48, 48)),
        "short": TaskSpec(widths=[8, 8], exits={0: 0.7, 1: 0.8}, input=(3, 16, 16)),
    }
    return build_repository(d / "repo", spec)


def _wait_started(rt, timeout=30.0):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with rt._lock:
            j = rt.sched.last_job
            if j is not None and j.next_block >= 1:
                return j
        time.sleep(0.0005)
    raise AssertionError("the long job never started")


def test_urgent_job_preempts_a_long_one_at_a_chunk_boundary(repo_dir, tmp_path):
    with Runtime(repo_dir, device="cpu", policy="pantheon", log=tmp_path / "run") as rt:
        f_long = rt.submit("long", torch.randn(*DIMS["long"]), relative_deadline_us=120_000_000)
        _wait_started(rt)
        f_short = rt.submit("short", torch.randn(*DIMS["short"]), relative_deadline_us=60_000_000)
        r_short, r_long = f_short.result(60), f_long.result(120)
    assert r_short.met and r_long.met and not r_long.dropped
    assert r_long.exit == 5 and r_short.exit == 1 and tuple(r_short.output.shape) == (1, 10)
    evs = list(read_events(tmp_path / "run"))
    assert evs[0]["ev"] == "start" and evs[-1]["ev"] == "end"
    seq = [(e["ev"], e["job"], e.get("block", e.get("exit"))) for e in evs if e["ev"] in ("dispatch", "done", "preempt")]
    long_blocks = [b for ev, j, b in seq if ev == "dispatch" and j == 0]
    assert long_blocks == [0, 1, 2, 3, 4, 5, 5]  # blocks 0..5 once each, then exit 5
    first_short = next(i for i, (ev, j, _) in enumerate(seq) if ev == "dispatch" and j == 1)
    # the urgent job started right after one of the long job's blocks finished, before the next one...
    before = [x for x in seq[:first_short] if x[0] != "preempt"]
    assert before[-1][0] == "done" and before[-1][1] == 0
    k = before[-1][2]
    assert k < 5
    after_long = [x for x in seq[first_short:] if x[1] == 0 and x[0] == "dispatch"]
    assert after_long[0][2] == k + 1  # ...and the long job resumed exactly at its next block
    # ...and the log says so
    assert ("preempt", 0, None) in seq
    # the short job ran entirely while the long one waited
    short_span = [i for i, x in enumerate(seq) if x[1] == 1]
    assert not any(seq[i][1] == 0 for i in range(short_span[0], short_span[-1]))
    assert rt.summary["preempted_jobs"] == 0.5 and rt.summary["dmr"] == 0.0


def test_memory_manager_keeps_one_tensor_per_job_and_frees_it():
    mm = MemoryManager()
    x = torch.zeros(1, 4, 8, 8)
    mm.store(1, x)
    assert mm.bytes_held == 4 * 4 * 64 and len(mm) == 1
    with pytest.raises(RuntimeFault, match="already holds"):
        mm.store(1, x)
    y = mm.consume(1)
    assert y is x and mm.bytes_held == 0 and not mm.holds(1)
    with pytest.raises(RuntimeFault, match="holds no tensor"):
        mm.consume(1)
    mm.store(2, x)
    mm.store(3, torch.zeros(10))
    assert mm.release(2) and not mm.release(2) and mm.bytes_held == 40
    assert mm.peak_tensors == 2 and mm.clear() == 1 and mm.bytes_held == 0


def test_runtime_holds_nothing_after_a_run_and_peaks_at_one_tensor_per_queued_job(repo_dir, tmp_path):
    with Runtime(repo_dir, device="cpu", log=tmp_path / "r.jsonl") as rt:
        futs = [rt.submit("short" if k % 2 else "long", torch.randn(*DIMS["short" if k % 2 else "long"]),
                          relative_deadline_us=120_000_000) for k in range(6)]
        results = [f.result(120) for f in futs]
    assert all(r.met for r in results)
    assert rt.memory.bytes_held == 0 and len(rt.memory) == 0
    assert 1 <= rt.memory.peak_tensors <= 6
    assert rt.memory.stores == 6 + 3 * 6 + 3 * 2  # inputs + one output per block run (long: 6, short: 2)


def test_submit_api_checks_and_drops(repo_dir):
    rt = Runtime(repo_dir, device="cpu")
    with pytest.raises(RuntimeFault, match="not running"):
        rt.submit("short", torch.zeros(*DIMS["short"]), 1000)
    with rt:
        with pytest.raises(UsageError, match="input shape mismatch"):
            rt.submit("short", torch.zeros(1, 3, 17, 16), 1000)
        with pytest.raises(RepositoryError, match="'ghost'"):
            rt.submit("ghost", torch.zeros(1), 1000)
        res = rt.submit("long", torch.zeros(*DIMS["long"]), relative_deadline_us=1).result(30)  # hopeless
    assert res.dropped and not res.met and res.output is None and res.reason == "unschedulable"


def test_inflight_window_bounds_outstanding_chunks():
    """The CUDA executor's window, driven by stand-in events (named as such): at most `limit` outstanding."""

    class StandInEvent:
        def __init__(self):
            self.done = False
            self.synced = False

        def query(self):
            return self.done

        def synchronize(self):
            self.synced = True
            self.done = True

    released = []
    w = InflightWindow(2, stamp=lambda ev: 1, release=released.append)
    evs = [StandInEvent() for _ in range(5)]
    assert w.make_room() == []
    w.push(evs[0], "a", None)
    assert w.make_room() == []
    w.push(evs[1], "b", None)
    done = w.make_room()  # a third launch must first wait for the oldest: never 3 outstanding
    assert [t for t, _, _ in done] == ["a"] and evs[0].synced and not evs[1].synced
    w.push(evs[2], "c", None)
    assert w.max_seen == 2 and released == [evs[0]]  # the completed event went back to its pool
    evs[1].done = True
    assert [t for t, _, _ in w.poll()] == ["b"]
    assert [t for t, _, _ in w.drain()] == ["c"] and w.max_seen == 2 and released == evs[:3]
    for bad in (0, -1):
        with pytest.raises(UsageError, match="--max-inflight"):
            InflightWindow(bad, stamp=lambda ev: 0)


def test_parse_best_effort():
    assert parse_best_effort(["alexnet:20", "a:b:2.5"]) == [("alexnet", 20.0), ("a:b", 2.5)]
    for bad in ("alexnet", "alexnet:", ":3", "x:-1", "x:fast"):
        with pytest.raises(UsageError, match="TASK:RATE"):
            parse_best_effort([bad])


def _underloaded_workload(repo, path, n=12, spacing=8):
    """Jobs of both tasks ``spacing`` x the two models' latency apart, deadlines 6x their model latency
    plus 50 ms (the profile is the uncontended latency; a shared CPU runs chunks several times slower)."""
    full_long = repo.tasks["long"].full_latency
    full_short = repo.tasks["short"].full_latency
    gap = spacing * (full_long + full_short)
    jobs = []
    for k in range(n):
        jobs.append(("long", k * gap, k * gap + 6 * full_long + 50_000))
        jobs.append(("short", k * gap + gap // 2, k * gap + gap // 2 + 6 * full_short + 50_000))
    return write_workload(path, jobs, dims=DIMS, ids={"long": 0, "short": 1})


def test_simulator_and_live_runtime_agree_on_an_underloaded_workload(repo_dir, tmp_path):
    repo = read_repository(repo_dir)
    wl = _underloaded_workload(repo, tmp_path / "w.bin")
    sim = simulate(repo, read_workloads(wl), "pantheon")
    res = runner.invoke(app, ["runtime", str(repo_dir), str(wl), str(tmp_path / "live"), "--device", "cpu",
                              "--telemetry", "psutil", "--json"])
    assert res.exit_code == 0, res.output
    live = json.loads(res.stdout)
    assert live["jobs"] == sim["jobs"] == 24
    assert sim["dmr"] == 0.0
    assert abs(live["dmr"] - sim["dmr"]) <= 0.1, live
    assert abs(live["relative_accuracy"] - sim["relative_accuracy"]) <= 0.1, live
    run = tmp_path / "live"
    assert {"events.jsonl", "run.json", "manifest.json"} <= {p.name for p in run.iterdir()}
    evs = list(read_events(run))
    assert sum(e["ev"] == "telemetry" for e in evs) >= 1 and "cpu_pct" in next(e for e in evs if e["ev"] == "telemetry")
    assert {e["ev"] for e in evs} >= {"start", "release", "schedule", "dispatch", "done", "exit", "end"}


def test_best_effort_runs_while_real_time_work_meets_deadlines(repo_dir, tmp_path):
    repo = read_repository(repo_dir)
    wl = _underloaded_workload(repo, tmp_path / "w.bin", n=6, spacing=12)  # idle time for best effort
    res = runner.invoke(app, ["runtime", str(repo_dir), str(wl), str(tmp_path / "be.jsonl"), "--device", "cpu",
                              "--best-effort", "short:50", "--json"])
    assert res.exit_code == 0, res.output
    live = json.loads(res.stdout)
    assert live["best_effort"]["short"]["jobs"] >= 1
    assert live["jobs"] == 12 and live["met"] + live["late"] + live["dropped"] == 12
    assert live["dmr"] <= 0.35  # underloaded: only a noisy shared CPU makes real-time jobs miss
    evs = list(read_events(tmp_path / "be.jsonl"))
    assert any(e["ev"] == "be" for e in evs)


# -- bad input: one clear line, non-zero exit, before any job runs ----------------------------


def _run_cli(repo, wl, log, *extra):
    return runner.invoke(app, ["runtime", str(repo), str(wl), str(log), "--device", "cpu", *extra])


def _assert_refused(res, log, code, *needles):
    assert res.exit_code == code, res.output
    assert "Traceback" not in res.output
    for n in needles:
        assert n in res.output, res.output
    assert not Path(log).exists(), "the run started before the input was checked"


def test_bad_inputs_are_refused_before_any_job_runs(repo_dir, tmp_path):
    good = write_workload(tmp_path / "good.bin", [("short", 0, 50_000)], dims=DIMS)
    log = tmp_path / "never"
    _assert_refused(_run_cli(repo_dir, good, log, "--policy", "lifo"), log, 2, "unknown policy 'lifo'")
    ghost = write_workload(tmp_path / "ghost.bin", [("short", 0, 50_000), ("ghost", 5, 50_000)])
    _assert_refused(_run_cli(repo_dir, ghost, log), log, 1, "'ghost'", "lacks")
    early = write_workload(tmp_path / "early.bin", [("short", 9000, 8000)])
    _assert_refused(_run_cli(repo_dir, early, log), log, 1, "before its release")
    trunc = tmp_path / "trunc.bin"
    trunc.write_bytes(good.read_bytes()[:-4])
    _assert_refused(_run_cli(repo_dir, trunc, log), log, 1, "not a Workloads protobuf")
    junk = tmp_path / "junk.bin"
    junk.write_text("this is not protobuf\n")
    _assert_refused(_run_cli(repo_dir, junk, log), log, 1, "Workloads")
    shape = write_workload(tmp_path / "shape.bin", [("short", 0, 50_000)], dims={"short": [1, 3, 32, 32]})
    _assert_refused(_run_cli(repo_dir, shape, log), log, 1, "input shape mismatch")
    _assert_refused(_run_cli(repo_dir, good, log, "--best-effort", "ghost:5"), log, 1, "'ghost'")


def test_tampered_or_missing_chunks_are_refused(repo_dir, tmp_path):
    import shutil

    good = write_workload(tmp_path / "good.bin", [("short", 0, 50_000)], dims=DIMS)
    log = tmp_path / "never"
    tampered = tmp_path / "tampered"
    shutil.copytree(repo_dir, tampered)
    f = tampered / "long" / "model_files" / "block_02.pt"
    data = bytearray(f.read_bytes())
    data[len(data) // 2] ^= 0xFF
    f.write_bytes(bytes(data))
    _assert_refused(_run_cli(tampered, good, log), log, 1, "checksum mismatch", "block_02.pt")
    with pytest.raises(ChecksumError):
        read_repository(tampered)
    missing = tmp_path / "missing"
    shutil.copytree(repo_dir, missing)
    (missing / "short" / "model_files" / "branch_00.pt").unlink()
    _assert_refused(_run_cli(missing, good, log), log, 1, "branch_00.pt", "missing")
    # a repository whose manifest is consistent but lacks a chunk its config needs
    resealed = tmp_path / "resealed"
    with write_artifact(resealed, kind="repository") as tmp:
        shutil.copytree(missing, tmp, dirs_exist_ok=True)
        (tmp / "manifest.json").unlink()
    _assert_refused(_run_cli(resealed, good, log), log, 1, "lacks branch_00.pt")


def test_model_that_does_not_take_the_configured_dims_is_refused(repo_dir, tmp_path):
    import shutil

    from pantheon.formats import read_model_config, write_model_config

    bad = tmp_path / "dims"
    with write_artifact(bad, kind="repository") as tmp:
        shutil.copytree(repo_dir, tmp, dirs_exist_ok=True)
        (tmp / "manifest.json").unlink()
        cfg = read_model_config(tmp / "short" / "config.pbtxt")
        del cfg.dims[:]
        cfg.dims.extend([1, 5, 16, 16])  # the first conv takes 3 channels
        write_model_config(tmp / "short" / "config.pbtxt", cfg)
    wl = write_workload(tmp_path / "w.bin", [("short", 0, 50_000)])
    log = tmp_path / "never"
    res = _run_cli(bad, wl, log)
    assert res.exit_code == 1 and "block_00 fails on the input dims [1, 5, 16, 16]" in res.output
    assert not log.exists()


def test_sigint_stops_the_run_cleanly(repo_dir, tmp_path):
    repo = read_repository(repo_dir)
    jobs = [("short", k * 20_000, k * 20_000 + 200_000) for k in range(1000)]  # 20 s of work
    wl = write_workload(tmp_path / "long.bin", jobs, dims=DIMS)
    log = tmp_path / "sig"
    env = dict(os.environ, PANTHEON_PROGRESS="0")
    proc = subprocess.Popen([sys.executable, "-m", "pantheon.cli", "runtime", str(repo_dir), str(wl), str(log),
                             "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)
    events = log / "events.jsonl"
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if events.exists() and '"ev":"exit"' in events.read_text():
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "interrupted" in out and "Traceback" not in err
    evs = list(read_events(log))
    assert evs[-1]["ev"] == "end" and evs[-1]["summary"]["interrupted"] is True
    released = {e["job"] for e in evs if e["ev"] == "release"}
    ended = {e["job"] for e in evs if e["ev"] in ("exit", "drop")}
    assert released == ended and 0 < len(released) < 1000
    assert (log / "run.json").is_file() and (log / "manifest.json").is_file()
    assert repo.tasks["short"].full_latency > 0


def test_calibration_learns_that_chunks_run_slower_than_profiled(tmp_path):
    """A repository whose config.pbtxt claims 1/4 of the measured latencies: the live run measures
    its blocks, logs `calibrate` events and plans with a scale well above 1; --no-calibrate does not."""
    spec = {"long": TaskSpec(widths=[32] * 4, depth=[2] * 4, exits={1: 0.8, 3: 0.9}, input=(3, 48, 48))}
    measured = build_repository(tmp_path / "measured", spec)
    blocks = read_repository(measured).tasks["long"].blocks
    spec["long"].latencies = [max(1, b // 4) for b in blocks]
    spec["long"].exit_latencies = {1: 1, 3: 1}
    repo_dir = build_repository(tmp_path / "optimistic", spec)
    full = sum(blocks)
    wl = write_workload(tmp_path / "w.bin", [("long", i * 3 * full, i * 3 * full + 20 * full) for i in range(80)],
                        dims={"long": [1, 3, 48, 48]})
    for cal in (True, False):
        callers = read_repository(repo_dir)
        before = pickle.dumps(callers)
        rt = Runtime(callers, device="cpu", log=tmp_path / f"run-{cal}", calibrate=cal)
        rt.start()
        rt.run_workload(read_workloads_jobs(repo_dir, wl))
        # the runtime calibrates its scheduler's tables of the task, never the caller's repository
        assert pickle.dumps(callers) == before and callers.tasks["long"].blocks == tuple(spec["long"].latencies)
        assert rt.sched.states["long"].profile is callers.tasks["long"]  # read, not copied
        evs = [e for e in read_events(tmp_path / f"run-{cal}") if e["ev"] == "calibrate"]
        if cal:
            assert evs, "no calibrate events"
            assert evs[-1]["task"] == "long" and evs[-1]["scale"] > 2.0, evs[-1]
            assert rt.sched.states["long"].scale == pytest.approx(evs[-1]["scale"], rel=1e-3)
        else:
            assert evs == [] and rt.sched.states["long"].scale == 1.0


def test_best_effort_runs_without_a_log(repo_dir):
    """The Python API with no log (a NullLog inside): best-effort completions must not break it."""
    with Runtime(repo_dir, device="cpu", best_effort=[("short", 200)]) as rt:
        res = rt.submit("short", torch.zeros(*DIMS["short"]), relative_deadline_us=60_000_000).result(60)
        end = time.monotonic() + 30
        while not rt._be_done and time.monotonic() < end:
            time.sleep(0.01)
    assert res.met
    assert rt.summary["best_effort"]["short"]["jobs"] >= 1


def test_static_policies_rank_tasks_by_the_replayed_workload(repo_dir, tmp_path):
    """run_workload gives rms/dms the workload's periods and deadlines itself (no caller step):
    long has the shorter period and deadline here, so it ranks first, against its longer latency."""
    repo = read_repository(repo_dir)
    full_long, full_short = repo.tasks["long"].full_latency, repo.tasks["short"].full_latency
    p_long, p_short = 40 * full_long, 80 * full_long
    jobs = [("long", k * p_long, k * p_long + 20 * full_long) for k in range(4)]
    jobs += [("short", k * p_short, k * p_short + 30 * full_long + full_short) for k in range(2)]
    wl = write_workload(tmp_path / "w.bin", sorted(jobs, key=lambda j: j[1]), dims=DIMS, ids={"long": 0, "short": 1})
    specs = validate(read_workloads(wl), repo, where=str(wl))
    before = pickle.dumps(repo)
    for policy in ("rms", "dms"):
        rt = Runtime(repo, device="cpu", policy=policy)
        states = rt.sched.states
        assert states["long"].priority > states["short"].priority  # before: by latency
        summary = rt.run_workload(specs)
        assert summary["jobs"] == 6
        assert states["long"].priority == 0 and states["short"].priority == 1, policy
        assert states["long"].period_us == p_long
    assert pickle.dumps(repo) == before  # the caller's repository is left as it was


def read_workloads_jobs(repo_dir, wl):
    from pantheon.online.workload import validate

    return validate(read_workloads(wl), read_repository(repo_dir), where=str(wl))


def test_a_task_whose_scale_makes_it_unschedulable_recovers(repo_dir, tmp_path):
    """A wrong calibration (scale 40: every job of `short` looks hopeless) used to starve the task for the
    whole run, since dropped jobs are never measured. Its scale now decays back towards the profile while
    its jobs are dropped, jobs run again, and the measured chunks pull the scale down."""
    log = tmp_path / "run"
    with Runtime(repo_dir, device="cpu", log=log) as rt:
        tp = rt.sched.states["short"]
        rel = 20 * tp.full_latency  # a deadline the task meets easily at its real cost, even on a busy machine
        smallest = tp.base_blocks[0] + tp.base_exit_lat[0]  # profiled, without the dispatch overhead
        with rt._lock:  # at least 40, and enough that even the smallest exit looks hopeless here
            tp.rescale(max(40.0, 1.5 * rel / smallest))
        assert tp.full[0] > rel  # planned as hopeless
        results = [rt.submit("short", torch.randn(*DIMS["short"]), relative_deadline_us=rel).result(60) for _ in range(60)]
    outcome = "".join("u" if r.reason == "unschedulable" else "m" if r.met else "x" for r in results)
    assert outcome.startswith("u") and "u" not in outcome[-20:], outcome  # dropped first, admitted again later
    assert outcome[-10:].count("m") >= 9, outcome  # and run to time: one late job allowed (a CPU hiccup)
    evs = [e for e in read_events(log) if e["ev"] == "calibrate" and e["task"] == "short"]
    assert evs and evs[0]["why"] == "decay" and evs[0]["scale"] < max(40.0, 1.5 * rel / smallest)
    assert rt.sched.states["short"].scale <= 8.0  # down from 40: the fitted range tops out at 8


def test_a_task_that_cannot_fit_even_alone_is_reported_starved(repo_dir, tmp_path):
    log = tmp_path / "run"
    with Runtime(repo_dir, device="cpu", log=log, dispatch_overhead_us=0.0) as rt:
        tp = rt.sched.states["short"]
        futs = [rt.submit("short", torch.randn(*DIMS["short"]), relative_deadline_us=max(1, tp.full[0] // 2)) for _ in range(3)]
        assert all(f.result(60).dropped for f in futs)
    starved = [e for e in read_events(log) if e["ev"] == "starved"]
    assert len(starved) == 1 and starved[0]["task"] == "short" and starved[0]["smallest_us"] > starved[0]["deadline"]
    assert rt.summary["starved"] == {"short": 3} and rt.summary["dispatch_overhead_us"] == 0.0


def test_the_dispatch_overhead_is_measured_at_start_logged_and_planned_with(repo_dir, tmp_path):
    log = tmp_path / "run"
    with Runtime(repo_dir, device="cpu", log=log) as rt:
        o = rt.dispatch_us
        tp = rt.sched.states["short"]
        assert o > 0 and tp.blocks == [round(o + b) for b in tp.base_blocks]
        assert rt.repo.tasks["short"].dispatch_us == 0.0  # the profile keeps its own overhead
    start = next(iter(read_events(log)))
    assert start["dispatch_overhead_us"] == round(o, 1) and start["profile_dispatch_overhead_us"] == 0.0
    assert start["tasks"]["short"]["dispatch_us"] == pytest.approx(o)  # what the scheduler plans with


@pytest.mark.parametrize("args, match", [(["--max-inflight", "0"], "--max-inflight"),
                                         (["--dispatch-us", "-3"], "--dispatch-us"),
                                         (["--time-scale", "nan"], "--time-scale"),
                                         (["--best-effort", "short:nan"], "TASK:RATE")])
def test_bad_runtime_numbers_are_one_line_errors(repo_dir, tmp_path, args, match):
    wl = write_workload(tmp_path / "w.bin", [("short", 0, 10_000_000)], dims=DIMS, ids={"short": 1})
    r = runner.invoke(app, ["runtime", str(repo_dir), str(wl), str(tmp_path / "log"), "--device", "cpu", *args])
    assert r.exit_code != 0 and match in r.output and "Traceback" not in r.output, r.output
    assert not (tmp_path / "log").exists()


class _Boom(torch.nn.Module):
    """A chunk that works ``after`` times, then raises (a fault in the middle of a run)."""

    def __init__(self, inner: torch.nn.Module, after: int) -> None:
        super().__init__()
        self.inner = inner
        self.calls = 0
        self.after = after

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self.calls += 1
        if self.calls > self.after:
            raise RuntimeError("chunk fault")
        return self.inner(x)


def test_a_run_that_fails_midway_leaves_an_unsealed_log_saying_why(tmp_path):
    from pantheon.formats.store import MANIFEST, update_artifact

    repo = build_repository(tmp_path / "repo", {"t": TaskSpec(widths=[8, 8], exits={1: 0.9}, input=(3, 16, 16),
                                                               latencies=[300, 300], exit_latencies={1: 50})})
    block = sorted((repo / "t" / "model_files").glob("block_01*.pt"))[0]
    boom = torch.jit.script(_Boom(torch.jit.load(str(block)), after=60))
    torch.jit.save(boom, str(tmp_path / "boom.pt"))
    update_artifact(repo, {str(block.relative_to(repo)): tmp_path / "boom.pt"})
    wl = write_workload(tmp_path / "w.bin", [("t", i * 2000, i * 2000 + 50_000) for i in range(200)],
                        dims={"t": [1, 3, 16, 16]})
    log = tmp_path / "run"
    res = runner.invoke(app, ["runtime", str(repo), str(wl), str(log), "--device", "cpu"])
    assert res.exit_code != 0 and "chunk fault" in res.output and "Traceback" not in res.output
    assert not (log / MANIFEST).exists()  # not sealed: no reader takes it for a complete run
    run = json.loads((log / "run.json").read_text())
    assert "chunk fault" in run["failed"] and run["jobs"] < 200
    rep = runner.invoke(app, ["report", str(log)])
    assert rep.exit_code != 0 and "manifest" in rep.output.lower()
