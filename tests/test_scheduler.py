"""Scheduler policies: hand-computed decisions and properties against a plain transcription."""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pantheon.errors import UsageError
from pantheon.online.repository import TaskProfile
from pantheon.online.scheduler import (
    BLOCK,
    DEFAULT_MARGIN,
    DOWNGRADES,
    DROP_RULES,
    DROPPED,
    EXIT,
    POLICIES,
    QUEUED,
    Job,
    Scheduler,
    TaskState,
    configure_static,
    reference_refresh,
    rtmdl_exits,
)

# Three tasks with two exits each. full[m] = blocks 0..exit_block + exit latency:
#   C: exits after block 0 (3000+1000 = 4000 us, acc .80) and block 1 (7000 us, acc .90)
#   A: exits after block 1 (8000+1000 = 9000 us, acc .85) and block 2 (13000 us, acc .95)
#   B: exits after block 1 (10000+1000 = 11000 us, acc .88) and block 2 (16000 us, acc .92)


def three_tasks():
    c = TaskProfile("C", [3000, 3000], [(0, 1000, 0.80), (1, 1000, 0.90)], index=0)
    a = TaskProfile("A", [4000, 4000, 4000], [(1, 1000, 0.85), (2, 1000, 0.95)], index=1)
    b = TaskProfile("B", [5000, 5000, 5000], [(1, 1000, 0.88), (2, 1000, 0.92)], index=2)
    return a, b, c


def test_profile_tables():
    a, b, c = three_tasks()
    assert a.full == (9000, 13000) and b.full == (11000, 16000) and c.full == (4000, 7000)
    a, b, c = (TaskState(t) for t in (a, b, c))  # the scheduler's tables
    assert a.full == [9000, 13000] and b.full == [11000, 16000] and c.full == [4000, 7000]
    assert a.prefix == [0, 4000, 8000, 12000]
    assert a.remaining(2, 0) == 1000  # blocks 0,1 done: only exit 0's branch is left
    # a job whose first undispatched block is 3 already ran block 2: exit 0 (after block 1) is gone
    assert a.lo_for_nb == [0, 0, 0, 1]
    assert a.loss[1] == pytest.approx(1 - 0.85 / 0.95)


def test_three_task_example_deadlines_20_30_10_ms():
    """A (20 ms), B (30 ms), C (10 ms) released together.

    EDF order C, A, B. With original exits C ends at 7 ms, A at 20 ms (just in time),
    B at 36 ms > 30 ms: B is the first to miss. Relative losses of the next smaller exit:
    C 1-.80/.90 = .111, A 1-.85/.95 = .105, B 1-.88/.92 = .043 -> B goes down first
    (B ends at 31 ms: still late; B is now at its smallest exit), then A (.105 < .111):
    A ends at 16 ms, B at 27 ms. Two downgrades; C keeps its original exit.
    """
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon", downgrade="relative", margin=0)
    ja, jb, jc = Job(0, a, 0, 20_000), Job(1, b, 0, 30_000), Job(2, c, 0, 10_000)
    s.arrive(ja, 0)
    s.arrive(jb, 0)
    assert s.downgrades == 0 and [j.exit for j in (ja, jb)] == [1, 1]
    assert s.arrive(jc, 0) == 3
    assert [j.id for j in s.queue] == [2, 0, 1]
    assert s.downgrades == 2 and list(s.dropped) == []
    assert (jc.exit, ja.exit, jb.exit) == (1, 0, 0)
    # the whole schedule: C b0 b1 exit1, A b0 b1 exit(after block 1), B b0 b1 exit(after block 1)
    t, seq = 0, []
    while True:
        act = s.next_action(t)
        if act is None:
            break
        kind, job, idx, lat, pre = act
        assert pre is None
        seq.append((job.task.name, "b" if kind == BLOCK else "x", idx if kind == BLOCK else job.task.exit_blocks[idx]))
        t += lat
        if kind == EXIT:
            assert t <= job.deadline
    assert seq == [("C", "b", 0), ("C", "b", 1), ("C", "x", 1),
                   ("A", "b", 0), ("A", "b", 1), ("A", "x", 1),
                   ("B", "b", 0), ("B", "b", 1), ("B", "x", 1)]
    assert t == 27_000


def test_reset_to_largest_exit_on_every_decision():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon", downgrade="relative", margin=0)
    ja, jb, jc = Job(0, a, 0, 20_000), Job(1, b, 0, 30_000), Job(2, c, 0, 10_000)
    for j in (ja, jb, jc):
        s.arrive(j, 0)
    assert (ja.exit, jb.exit) == (0, 0)
    s.queue.remove(jc)  # C gone: A and B fit at their original exits again (13 + 16 = 29 ms)
    s.arrive(Job(3, c, 0, 60_000), 0)
    assert (ja.exit, jb.exit) == (1, 1) and s.downgrades == 0


def test_unschedulable_job_is_dropped_without_costing_others_accuracy():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon")
    ja = Job(0, a, 0, 20_000)
    s.arrive(ja, 0)
    hopeless = Job(1, c, 0, 3_000)  # C needs at least 4 ms even through exit 0
    s.arrive(hopeless, 0)
    assert s.dropped == [hopeless] and hopeless.state == DROPPED
    assert s.queue == [ja] and ja.exit == 1 and s.downgrades == 0


def test_no_drop_late_sets_unschedulable_jobs_aside_at_their_smallest_exit():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon", drop_late=False)
    ja = Job(0, a, 0, 20_000)
    hopeless = Job(1, c, 0, 3_000)
    s.arrive(ja, 0)
    s.arrive(hopeless, 0)
    assert list(s.dropped) == [] and s.queue == [ja, hopeless] and hopeless.exit == 0


def test_remaining_latency_counts_from_next_block_and_exits_before_it_are_ineligible():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon")
    ja = Job(0, a, 0, 100_000)
    s.arrive(ja, 0)
    for _ in range(3):  # blocks 0, 1, 2 dispatched: the job can only leave through exit 2
        assert s.next_action(0)[0] == BLOCK
    assert ja.next_block == 3
    # urgent C at t=12 ms with deadline 12 + 8 ms: A's remaining (exit 2 branch, 1 ms) + C (7 ms) = 8 ms
    jc = Job(1, c, 12_000, 20_000)
    s.arrive(jc, 12_000)
    assert [j.id for j in s.queue] == [1, 0] and s.downgrades == 0
    # EDF: A (deadline 14 ms) first: 12 + 1 = 13 ms; C (deadline 17.5 ms) at its original exit would end
    # at 20 ms. A is already at its smallest eligible exit (exit 0 precedes block 2), so C goes down to exit 0:
    # 13 + 4 = 17 ms.
    s2 = Scheduler([a, b, c], "pantheon")
    ja2 = Job(0, a, 0, 14_000)
    s2.arrive(ja2, 0)
    for _ in range(3):
        s2.next_action(0)
    s2.idle(12_000)
    jc2 = Job(1, c, 12_000, 17_500)
    s2.arrive(jc2, 12_000)
    assert [j.id for j in s2.queue] == [0, 1]
    assert (ja2.exit, jc2.exit, s2.downgrades, list(s2.dropped)) == (1, 0, 1, [])


def test_started_job_remaining_uses_the_in_flight_estimate():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon")
    ja = Job(0, a, 0, 100_000)
    s.arrive(ja, 0)
    kind, job, idx, lat, _ = s.next_action(0)
    assert (kind, idx, lat) == (BLOCK, 0, 4000) and s.busy_until == 4000
    # C arrives at t=1 ms while A's block 0 runs until 4 ms: C can start at 4 ms at the earliest.
    jc = Job(1, c, 1000, 1000 + 9_500)  # 4 + 7 = 11 ms > 10.5 ms: must take exit 0 (4 + 4 = 8 ms)
    s.arrive(jc, 1000)
    assert jc.exit == 0 and s.queue[0] is jc


def test_pantheon_preempts_at_chunk_boundary_and_reports_it():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon")
    ja = Job(0, a, 0, 100_000)
    s.arrive(ja, 0)
    s.next_action(0)
    s.idle(4000)
    jc = Job(1, c, 4000, 20_000)
    s.arrive(jc, 4000)
    kind, job, idx, _, pre = s.next_action(4000)
    assert job is jc and (kind, idx) == (BLOCK, 0) and pre is ja
    # A resumes at block 1 (its pointer), never block 0 again
    t = 7000
    while True:
        act = s.next_action(t)
        if act[1] is ja:
            break
        t += act[3]
    assert act[0] == BLOCK and act[2] == 1 and act[4] is None  # C had finished: no preemption


def test_wo_ee_freezes_the_exit_of_started_jobs():
    a, b, c = three_tasks()
    for policy, a_exit in (("pantheon", 0), ("pantheon-wo-ee", 1)):
        s = Scheduler([a, b, c], policy, margin=0)
        ja = Job(0, a, 0, 15_000)
        s.arrive(ja, 0)
        s.next_action(0)  # A started at its original exit
        s.idle(4000)
        jc = Job(1, c, 4000, 11_000)  # C (7 ms) ends at 11 ms; A (9 ms left) then at 20 ms > 15 ms
        s.arrive(jc, 4000)
        assert ja.exit == a_exit, policy
        if policy == "pantheon":
            # EDF C, A: 4 + 7 + 9 = 20 > 15 ms; A (loss .105) goes first (16 ms), then C (.111): 13 ms
            assert list(s.dropped) == [] and jc.exit == 0
        else:
            # A's exit is frozen: even C at exit 0 gives 4 + 4 + 9 = 17 > 15 ms: A is unschedulable,
            # and C keeps its original exit
            assert s.dropped == [ja] and jc.exit == 1


def test_wo_ee_pr_runs_a_started_job_to_its_end():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon-wo-ee-pr")
    ja = Job(0, a, 0, 100_000)
    s.arrive(ja, 0)
    s.next_action(0)
    jc = Job(1, c, 1000, 50_000)
    s.arrive(jc, 1000)
    assert s.queue[0] is ja
    order = []
    t = 4000
    while (act := s.next_action(t)) is not None:
        order.append(act[1].id)
        assert act[4] is None
        t += act[3]
    assert order == [0, 0, 0, 1, 1, 1]


@pytest.mark.parametrize("policy", ["fifo", "rms", "dms", "rtmdl"])
def test_model_level_non_preemptive_policies(policy):
    a, b, c = three_tasks()
    timing = {"A": (30_000, 25_000), "B": (20_000, 35_000), "C": (40_000, 15_000)}  # (period, deadline)
    s = Scheduler([a, b, c], policy, timing=timing)
    ja = Job(0, a, 0, 200_000)
    s.arrive(ja, 0)
    s.next_action(0)  # A started: it runs to its end under every one of these policies
    jb, jc = Job(1, b, 100, 200_000), Job(2, c, 200, 200_000)
    s.arrive(jb, 100)
    s.arrive(jc, 200)
    ids = []
    t = 4000
    while (act := s.next_action(t)) is not None:
        if not ids or ids[-1] != act[1].id:
            ids.append(act[1].id)
        t += act[3]
    expected = {"fifo": [0, 1, 2], "rms": [0, 1, 2], "dms": [0, 2, 1], "rtmdl": [0, 2, 1]}[policy]
    assert ids == expected
    assert s.downgrades == 0


def test_rms_ties_break_by_shorter_execution_time():
    a, b, c = (TaskState(t, period_us=33_333) for t in three_tasks())
    configure_static([a, b, c], "rms")
    assert sorted([a, b, c], key=lambda t: t.priority) == [c, a, b]  # 7 < 13 < 16 ms


def test_rtmdl_picks_largest_exits_with_utilisation_at_most_one():
    a, b, c = (TaskState(t) for t in three_tasks())
    # utilisation with original exits: 13/20 + 16/40 + 7/70 = 0.65 + 0.4 + 0.1 = 1.15 > 1
    a.period_us, b.period_us, c.period_us = 20_000, 40_000, 70_000
    # lowering A saves 4/20 = 0.2 for 1-.85/.95 = .105 of accuracy: .526 per unit
    # lowering B saves 5/40 = 0.125 for 1-.88/.92 = .0435: .348 per unit  <- cheapest
    # after B: 1.025 > 1; then C saves 3/70 = .043 for .111: 2.59 per unit; A (.526) is next -> 0.825
    assert rtmdl_exits([a, b, c]) == {"A": 0, "B": 0, "C": 1}
    a.period_us = 100_000  # 0.13 + 0.4 + 0.1 fits
    assert rtmdl_exits([a, b, c]) == {"A": 1, "B": 1, "C": 1}


def test_edf_never_downgrades_and_drops_only_jobs_late_at_start():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "edf")
    ja = Job(0, a, 0, 20_000)
    jb = Job(1, b, 0, 30_000)
    jc = Job(2, c, 0, 10_000)
    for j in (ja, jb, jc):
        s.arrive(j, 0)
    assert [j.exit for j in (ja, jb, jc)] == [1, 1, 1] and s.downgrades == 0
    t, done = 0, []
    while (act := s.next_action(t)) is not None:
        t += act[3]
        if act[0] == EXIT:
            done.append((act[1].id, t))
    # C 7, A 20; B would end at 36 > 30 when it would start at 20: dropped, not run
    assert done == [(2, 7000), (0, 20_000)] and jb.state == DROPPED
    s2 = Scheduler([a, b, c], "edf", drop_late=False)
    for j in (Job(0, a, 0, 20_000), Job(1, b, 0, 30_000), Job(2, c, 0, 10_000)):
        s2.arrive(j, 0)
    t = 0
    while (act := s2.next_action(t)) is not None:
        t += act[3]
    assert t == 36_000


def test_pantheon_lowers_the_exit_of_a_late_head_job_before_dropping_it():
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon")
    ja = Job(0, a, 0, 10_000)
    s.arrive(ja, 0)  # decided at t=0: 9 ms through exit 0 fits 10 ms
    assert ja.exit == 0
    s.queue[0].exit = 1  # pretend an older decision kept the original exit
    act = s.next_action(0)
    assert act[1] is ja and ja.exit == 0
    # at t=2 ms nothing fits any more: 2 + 9 > 10 -> dropped
    s2 = Scheduler([a, b, c], "pantheon")
    jb = Job(0, a, 0, 10_000)
    s2.arrive(jb, 0)
    assert s2.next_action(2000) is None and s2.dropped == [jb]


def test_unknown_policy_is_a_usage_error():
    with pytest.raises(UsageError, match="unknown policy 'sjf'.*pantheon"):
        Scheduler([], "sjf")
    assert "rtmdl" in POLICIES


# -- properties ------------------------------------------------------------------------------


@st.composite
def task_sets(draw):
    n_tasks = draw(st.integers(1, 3))
    tasks = []
    for i in range(n_tasks):
        nb = draw(st.integers(1, 5))
        blocks = draw(st.lists(st.integers(100, 5000), min_size=nb, max_size=nb))
        ex_blocks = sorted(set(draw(st.lists(st.integers(0, nb - 1), min_size=0, max_size=nb))) | {nb - 1})
        accs = sorted(draw(st.lists(st.floats(0.3, 0.99), min_size=len(ex_blocks), max_size=len(ex_blocks),
                                    unique=True)))
        lats = draw(st.lists(st.integers(10, 800), min_size=len(ex_blocks), max_size=len(ex_blocks)))
        tasks.append(TaskProfile(f"t{i}", blocks, list(zip(ex_blocks, lats, accs)), index=i))
    return tasks


@st.composite
def queues(draw):
    """``(profiles, jobs, now)``: jobs on tables built from the profiles (a scheduler binds them to its own)."""
    tasks = draw(task_sets())
    states = [TaskState(p) for p in tasks]
    n = draw(st.integers(1, 10))
    jobs = []
    for k in range(n):
        t = draw(st.sampled_from(states))
        j = Job(k, t, 0, draw(st.integers(500, 40_000)))
        j.next_block = draw(st.integers(0, t.exit_blocks[-1] + 1))
        j.started = j.next_block > 0
        if j.started:
            j.exit = draw(st.integers(t.lo_for_nb[j.next_block], t.top))
        jobs.append(j)
    last = jobs[-1]  # the arriving job has not started
    last.next_block, last.started, last.exit = 0, False, last.task.top
    return tasks, jobs, draw(st.integers(0, 3000))


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(queues(), st.sampled_from(["pantheon", "pantheon-wo-ee"]), st.booleans(), st.sampled_from(DROP_RULES),
       st.sampled_from(DOWNGRADES), st.sampled_from([0.0, DEFAULT_MARGIN, 0.3]))
def test_optimised_refresh_matches_plain_transcription(q, policy, drop_late, rule, downgrade, margin):
    tasks, jobs, now = q
    frozen = {j.id: j.exit for j in jobs}
    s = Scheduler(tasks, policy, drop_late=drop_late, drop_rule=rule, downgrade=downgrade, margin=margin)
    s.queue = [s.bind(j) for j in jobs[:-1]]
    s.arrive(jobs[-1], now)
    fast = ([(j.id, j.exit) for j in s.queue], [j.id for j in s.dropped], s.downgrades)
    for j in jobs:
        j.state = QUEUED
        j.exit = frozen[j.id]
    order, dropped, down = reference_refresh(jobs, now, fix_started=policy == "pantheon-wo-ee", drop_late=drop_late,
                                             drop_rule=rule, downgrade=downgrade, margin=margin)
    assert fast == ([(j.id, j.exit) for j in order], [j.id for j in dropped], down)
    # every kept job is at an eligible exit and meets its deadline in the decided schedule, but
    # for at most one bet: late by at most the margin, and then the plan's only job at risk
    r = now
    late, at_risk = [], []
    for j in order:
        assert j.task.lo_for_nb[j.next_block] <= j.exit <= j.task.top
        if drop_late:
            r += j.task.remaining(j.next_block, j.exit)
            assert r <= j.deadline + margin * (r - now)
            if r > j.deadline:
                late.append(j)
            if r > j.deadline - margin * (r - now):
                at_risk.append(j)
    assert len(late) <= 1
    assert not late or at_risk == late


@settings(max_examples=200, deadline=None)
@given(queues())
def test_no_downgrade_when_edf_with_original_exits_is_feasible(q):
    tasks, jobs, now = q
    for j in jobs:
        j.exit = j.task.top
    edf = sorted(jobs, key=lambda j: (j.deadline, j.seq))
    r, feasible = now, True
    for j in edf:
        r += j.task.remaining(j.next_block, j.task.top)
        feasible &= r <= j.deadline
    s = Scheduler(tasks, "pantheon")
    s.queue = [s.bind(j) for j in jobs[:-1]]
    s.arrive(jobs[-1], now)
    if feasible:
        assert s.downgrades == 0 and list(s.dropped) == []
        assert all(j.exit == j.task.top for j in jobs)


def test_rescale_scales_every_latency_table_and_keeps_accuracies():
    p = TaskProfile("a", blocks=[3000, 3000, 4000], exits=[(1, 500, 0.90), (2, 800, 0.95)])
    t = TaskState(p)
    assert (t.full, t.delta, t.remaining(1, 1)) == ([6500, 10800], [0, 4300], 7800)
    t.rescale(1.5)
    assert t.blocks == [4500, 4500, 6000] and t.exit_lat == [750, 1200]
    assert t.prefix == [0, 4500, 9000, 15000]
    assert t.full == [9750, 16200] and t.delta == [0, 6450]
    assert t.remaining(1, 1) == 11700 and t.full_latency == 16200
    assert t.rel_acc == [0.90 / 0.95, 1.0] and t.loss[1] == pytest.approx(1 - 0.90 / 0.95)
    t.rescale(1.0)
    assert t.full == [6500, 10800] and t.base_blocks == [3000, 3000, 4000]
    assert p == TaskProfile("a", blocks=[3000, 3000, 4000], exits=[(1, 500, 0.90), (2, 800, 0.95)])  # untouched


def test_a_rescaled_task_changes_the_decision():
    """A deadline the profile says the original exit meets; at 1.5x the same queue needs a downgrade."""
    t = TaskProfile("a", blocks=[3000, 3000, 4000], exits=[(1, 500, 0.90), (2, 800, 0.95)])
    s = Scheduler([t], "pantheon")
    s.arrive(Job(0, t, release=0, deadline=12_000), now=0)
    assert s.queue[0].exit == 1  # 10.8 ms fits 12 ms
    s2 = Scheduler([t], "pantheon")
    s2.states["a"].rescale(1.5)  # this run's calibration: neither the profile nor the other run sees it
    s2.arrive(Job(1, t, release=0, deadline=12_000), now=0)
    assert s2.queue[0].exit == 0  # 16.2 ms does not; exit 0 at 9.75 ms does
    assert s.states["a"].full == [6500, 10800] and t.full == (6500, 10800)
    s.arrive(Job(2, t, release=0, deadline=12_000), now=0)
    assert s.queue[-1].task is s.states["a"] and s2.queue[0].task is s2.states["a"]


def test_the_dispatch_overhead_is_charged_once_per_chunk():
    """Cost model: chunk = overhead + scale x profile, for blocks and exit branches alike."""
    t = TaskState(TaskProfile("a", blocks=[3000, 3000, 4000], exits=[(1, 500, 0.90), (2, 800, 0.95)], dispatch_us=100))
    assert t.blocks == [3100, 3100, 4100] and t.exit_lat == [600, 900]
    assert t.full == [6800, 11200]  # exit 1: 2 blocks + branch = 3 dispatches; exit 2: 4 dispatches
    t.rescale(2.0)  # keeps the overhead
    assert t.blocks == [6100, 6100, 8100] and t.exit_lat == [1100, 1700] and t.dispatch_us == 100
    t.rescale(1.0, 0)
    assert t.full == [6500, 10800]
    for bad in (float("nan"), -1.0):
        with pytest.raises(UsageError):
            t.rescale(1.0, bad)
    with pytest.raises(UsageError):
        t.rescale(float("inf"))


# -- drop rules and downgrade rankings ---------------------------------------------------------


def test_downgrade_ranking_absolute_and_relative_pick_different_jobs():
    """P loses 0.05 absolute (10% relative) by going down, Q 0.07 absolute (7.4% relative).

    Both released at 0, deadline 1500 us: the original exits take 1600 us together, either
    downgrade (200 us saved) makes it fit. Absolute ranking lowers P, relative lowers Q.
    """
    p = TaskProfile("P", [300, 500], [(0, 100, 0.45), (1, 100, 0.50)], index=0)
    q = TaskProfile("Q", [300, 500], [(0, 100, 0.88), (1, 100, 0.95)], index=1)
    chosen = {}
    for ranking in DOWNGRADES:
        s = Scheduler([p, q], "pantheon", downgrade=ranking)
        jp, jq = Job(0, p, 0, 1_500), Job(1, q, 0, 1_600)
        s.arrive(jp, 0)
        s.arrive(jq, 0)
        assert s.downgrades == 1 and list(s.dropped) == []
        chosen[ranking] = "P" if jp.exit == 0 else "Q"
        assert (jp.exit, jq.exit).count(0) == 1
    assert chosen == {"absolute": "P", "relative": "Q"}


def test_shed_drops_the_job_that_frees_the_most_time_skip_drops_the_hopeless_one():
    """A long job L (1000 us, deadline 1000) then three short ones (100 us, deadlines 1050-1070).

    After L the first short job is hopeless. ``skip`` drops it, then the next two (each
    still behind L): three misses. ``shed`` drops L instead (the largest smallest-exit
    latency among the first k) and all three short jobs fit: one miss.
    """
    big = TaskProfile("L", [900], [(0, 100, 0.9)], index=0)
    small = TaskProfile("S", [50], [(0, 50, 0.9)], index=1)
    kept = {}
    for rule in ("skip", "shed"):
        s = Scheduler([big, small], "pantheon", drop_rule=rule)
        jobs = [Job(0, big, 0, 1_000)] + [Job(i, small, 0, 1_040 + 10 * i) for i in (1, 2, 3)]
        s.queue = [s.bind(j) for j in jobs[:-1]]
        s.arrive(jobs[-1], 0)
        kept[rule] = ([j.id for j in s.queue], sorted(j.id for j in s.dropped))
    assert kept["skip"] == ([0], [1, 2, 3])
    assert kept["shed"] == ([1, 2, 3], [0])


def test_drop_rule_and_downgrade_are_checked():
    with pytest.raises(UsageError, match="drop rule 'never'.*shed"):
        Scheduler([], "pantheon", drop_rule="never")
    with pytest.raises(UsageError, match="downgrade ranking 'best'.*absolute"):
        Scheduler([], "pantheon", downgrade="best")


def test_downgrades_skip_an_exit_no_faster_than_a_larger_one():
    """Exit 1 (after block 1, branch 300: 700 us) is slower than exit 2 (600 us): never chosen."""
    t = TaskProfile("T", [200, 200, 150], [(0, 50, 0.5), (1, 300, 0.7), (2, 50, 0.9)])
    ts = TaskState(t)
    assert ts.full == [250, 700, 600]
    assert ts.down == [-1, 0, 0] and ts.lo_for_nb == [0, 0, 2, 2]  # after block 1: exit 2 is the faster
    s = Scheduler([t], "pantheon")
    j = Job(0, t, 0, 500)
    s.arrive(j, 0)
    assert j.exit == 0 and s.downgrades == 1


def test_each_scheduler_binds_jobs_to_its_own_task_state():
    """Two schedulers of one profile keep separate tables; a job of a task a scheduler does not
    know is refused in one line."""
    a, b, c = three_tasks()
    s1, s2 = Scheduler([a, b], "edf"), Scheduler([a, b], "edf")
    assert s1.states["A"] is not s2.states["A"] and s1.states["A"].profile is a is s2.states["A"].profile
    j = Job(0, a, 0, 20_000)
    s1.arrive(j, 0)
    assert j.task is s1.states["A"] and s1.tasks == [s1.states["A"], s1.states["B"]]
    with pytest.raises(UsageError, match="task 'C' is not scheduled here"):
        s1.arrive(Job(1, c, 0, 20_000), 0)


# -- the safety margin ----------------------------------------------------------------------------


def run_device(margin, jobs, factors):
    """Serve ``jobs`` ``[(task, deadline)]`` (released at 0); chunk ``i`` takes ``factors[i]`` x
    its profiled latency (a float: every chunk). Returns the ids of the jobs that finished in
    time, and of those dropped."""
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon", margin=margin)
    made = [Job(i, {"A": a, "B": b, "C": c}[name], 0, deadline) for i, (name, deadline) in enumerate(jobs)]
    for j in made:
        s.arrive(j, 0)
    t, met, dropped, n = 0, set(), {j.id for j in s.dropped}, 0
    while True:
        act = s.next_action(t)
        dropped |= {j.id for j in s.dropped}
        if act is None:
            return met, dropped
        kind, job, _, lat, _ = act
        t += round(lat * (factors if isinstance(factors, float) else factors[n]))
        n += 1
        s.idle(t)
        if kind == EXIT and t <= job.deadline:
            met.add(job.id)


def test_margin_leaves_slack_that_saves_the_last_job_when_chunks_run_slow():
    """A (deadline 20 ms) and B (24.2 ms) at 0. To the deadline: A keeps 13 ms, B goes to its
    11 ms exit (24 ms: 0.2 ms to spare); chunks 3% slow end B at 24.7 ms, so B is dropped.
    With the 4% margin B must end by 24.2 - 0.04 x 24 ms, so A goes down to 9 ms too, and both
    meet their deadlines on the slow device (9.3 + 11.3 ms)."""
    jobs = [("A", 20_000), ("B", 24_200)]
    assert run_device(0.0, jobs, 1.03) == ({0}, {1})
    assert run_device(DEFAULT_MARGIN, jobs, 1.03) == ({0, 1}, set())
    # on time, the margin costs accuracy only, never a job
    assert run_device(DEFAULT_MARGIN, jobs, 1.0) == ({0, 1}, set())


def test_margin_lets_a_lone_slightly_late_job_run():
    """B alone, deadline 11.1 ms, at its 11 ms exit. Its first block runs 6% slow (5.3 ms):
    it is then 0.2 ms late on the profile, within 4% of the 6 ms left. Alone, it runs on, and
    the next chunks, a little fast, bring it in at 11.07 ms; planning to the deadline drops
    it. With another job queued behind it, the margin does not apply: dropped."""
    factors = [1.06, 0.96, 0.97]
    assert run_device(0.0, [("B", 11_100)], factors) == (set(), {0})
    assert run_device(DEFAULT_MARGIN, [("B", 11_100)], factors) == ({0}, set())
    met, dropped = run_device(DEFAULT_MARGIN, [("B", 11_100), ("C", 40_000)], factors + [1.0] * 3)
    assert 0 in dropped and 1 in met


def test_the_bet_keeps_a_job_late_within_the_margin_and_noise_can_bring_it_in():
    """A (deadline 15 ms) and B (19.7 ms) at 0: at their smallest exits they end at 9 and 20 ms,
    so B is late by 0.3 ms on the profile, within 4% of the 20 ms planned. Planning to the
    deadline sheds B up front (it frees the most time). With the margin the plan keeps B as its
    bet: chunks 3% fast bring it in at 19.4 ms; on time it is dropped once it is sure to miss
    (after its first block), the same one job lost."""
    jobs = [("A", 15_000), ("B", 19_700)]
    assert run_device(0.0, jobs, 0.97) == ({0}, {1})
    assert run_device(DEFAULT_MARGIN, jobs, 0.97) == ({0, 1}, set())
    assert run_device(DEFAULT_MARGIN, jobs, 1.0) == ({0}, {1})
    # late by more than the margin (0.9 ms of 20 ms): hopeless, shed as before
    assert run_device(DEFAULT_MARGIN, [("A", 15_000), ("B", 19_100)], 0.97) == ({0}, {1})


@pytest.mark.parametrize("a_deadline, b_dropped", [(9_100, True), (10_000, False)])
def test_the_bet_is_called_off_when_another_kept_job_is_at_risk(a_deadline, b_dropped):
    """B (deadline 19.8 ms) is late by 0.2 ms at its smallest exit behind A's 9 ms. When A itself
    ends within the margin of its deadline (9.1 ms: 0.1 ms to spare), both would miss together
    if the chunks ran slow, so the plan takes no bet and sheds B; with A safe (10 ms), B is the
    plan's one bet and is kept."""
    a, b, c = three_tasks()
    s = Scheduler([a, b, c], "pantheon")
    s.arrive(Job(0, a, 0, a_deadline), 0)
    s.arrive(Job(1, b, 0, 19_800), 0)
    assert [j.id for j in s.dropped] == ([1] if b_dropped else [])
    assert [j.id for j in s.queue] == ([0] if b_dropped else [0, 1])
    assert s.queue[0].exit == 0


@pytest.mark.parametrize("bad", [-0.1, float("nan"), float("inf"), 0.9])
def test_margin_must_be_a_small_fraction(bad):
    with pytest.raises(UsageError, match="--margin"):
        Scheduler(list(three_tasks()), "pantheon", margin=bad)
