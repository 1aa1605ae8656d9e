"""The pantheon policies in the simulator against a plain, slow transcription of their stated rules.

The transcription below shares no code with ``pantheon/online/scheduler.py``: it keeps raw
profiles (block latencies, ``(block, branch latency, accuracy)`` exits), recomputes every
latency by summing blocks, rescans the whole queue after every downgrade, and replays a
workload with the simulator's timing (a decision at each release, planned from the end of
the chunk in flight; a chunk runs for its profiled latency, times the simulator's noise
factor of that job's chunk when there is latency noise, so that jobs turn late between
decisions and the dispatch rules are exercised). It follows the scheduler's module docstring:

* EDF order (a non-preemptive policy's started job first), every job reset to its original
  exit (``pantheon-wo-ee*``: a started job keeps its exit); at the first job k that misses,
  lower by one useful exit the job among 1..k losing the least accuracy (absolute or
  relative to its original exit; ties: earliest); an exit is useful when it is faster
  than every larger exit, eligible when it follows the last dispatched block or a later one;
* a job k late even with 1..k at their smallest exits is hopeless: ``shed`` sets aside the
  job among 1..k with the largest smallest-exit remaining latency (ties: the latest) and
  rescans without it, ``skip`` sets aside k, ``keep`` lowers 1..k to their smallest exits
  and leaves k's time in the scan; set-aside jobs are dropped, or (no drop-late) run last
  in EDF order at their smallest exits;
* margin ``g``: "misses" above means ends after ``deadline - g x (its end - now)``; a job that
  misses only so (it meets the deadline itself) once 1..k are all at their smallest exits
  is kept there and not checked again; so is, once per plan (the bet), a job late there by
  at most ``g x (its end - now)``, which is then not hopeless; a plan with a bet that keeps
  another job that way or sets any job aside is made again with no bet;
* at dispatch the head job, if it would end after its deadline, takes its largest smaller
  eligible exit that still meets it, or, alone in the queue and not frozen, its smallest
  exit when it is late there by at most ``g x`` that exit's remaining latency, or is
  dropped (a frozen started job is dropped);
* fallback (``pantheon`` only, when enabled): a job that dispatched the block after a kept
  exit may still leave through the latest such exit, paying its branch only; in the scan it
  is one step below the smallest exit ahead when its branch is cheaper, and at dispatch
  the last resort of a late head job.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pantheon.formats import Workloads
from pantheon.formats.events import NullLog
from pantheon.online.repository import Repository, TaskProfile
from pantheon.online.simulate import EXIT_CHUNK, chunk_latency, noise_table, simulate

RULES = ("shed", "skip", "keep")
RANKINGS = ("absolute", "relative")
POLICIES = ("pantheon", "pantheon-wo-ee", "pantheon-wo-ee-pr")
MARGINS = (0.0, 0.04, 0.25)
JITTERS = (0.0, 0.1, 0.4)  # chunk latency noise (the simulator's factors, shared by both sides)


# -- the transcription --------------------------------------------------------------------------


class PlainTask:
    def __init__(self, name, blocks, exits):
        self.name = name
        self.blocks = list(blocks)
        self.exits = sorted(exits)  # (block, branch latency, accuracy)
        self.top = len(self.exits) - 1

    def cost(self, nb, m):
        """Latency from block ``nb`` through exit ``m``."""
        b, lat, _ = self.exits[m]
        return sum(self.blocks[nb:b + 1]) + lat

    def useful(self, m):
        return all(self.cost(0, m) < self.cost(0, x) for x in range(m + 1, len(self.exits)))

    def smallest(self, nb):
        return min(m for m in range(len(self.exits)) if self.exits[m][0] >= nb - 1 and self.useful(m))

    def lower(self, m):
        return max(x for x in range(m) if self.useful(x))

    def loss(self, m, ranking):
        top = self.exits[-1][2]
        low = self.exits[self.lower(m)][2]
        return top - low if ranking == "absolute" else 1 - low / top


class PlainJob:
    def __init__(self, jid, task, release, deadline):
        self.id, self.task, self.release, self.deadline = jid, task, release, deadline
        self.nb = 0
        self.exit = task.top
        self.started = False
        self.fb = None  # the latest exit it passed

    def cost(self, m):
        """Remaining latency through exit ``m``: its branch alone once the job passed it."""
        b, lat, _ = self.task.exits[m]
        return lat if b < self.nb - 1 else self.task.cost(self.nb, m)


class Plain:
    def __init__(self, policy, rule, ranking, drop_late, fallback=False, margin=0.0):
        self.policy, self.rule, self.ranking, self.drop_late = policy, rule, ranking, drop_late
        self.margin = margin
        self.fallback = fallback and policy == "pantheon"
        self.queue = []
        self.busy = 0
        self.locked = None

    def frozen(self, j):
        return self.policy != "pantheon" and j.started

    def uses_fallback(self, j):
        """Whether the passed exit is a step below the smallest exit ahead (cheaper branch)."""
        return (self.fallback and j.fb is not None
                and j.task.exits[j.fb][1] < j.task.cost(j.nb, j.task.smallest(j.nb)))

    def floor(self, j):
        if self.frozen(j):
            return j.exit
        return j.fb if self.uses_fallback(j) else j.task.smallest(j.nb)

    def lower(self, j):
        if j.exit == j.task.smallest(j.nb):
            return j.fb
        return j.task.lower(j.exit)

    def loss(self, j):
        top = j.task.exits[-1][2]
        low = j.task.exits[self.lower(j)][2]
        return top - low if self.ranking == "absolute" else 1 - low / top

    def refresh(self, now):
        """Returns (dropped jobs, downgrades) and sets the queue."""
        edf = sorted(self.queue, key=lambda j: (j.deadline, j.id))
        if self.locked in edf:
            edf.remove(self.locked)
            edf.insert(0, self.locked)
        shed = []
        bets = True
        while True:
            kept = [j for j in edf if j not in shed]
            for j in kept:
                if not self.frozen(j):
                    j.exit = j.task.top
            hopeless, aside, risky, downs, restart, bet = [], [], [], 0, False, None
            while True:
                t, k = now, None
                for i, j in enumerate(kept):
                    t += j.cost(j.exit)
                    if t > j.deadline - self.margin * (t - now) and j not in hopeless and j not in risky:
                        k = i
                        break
                if k is None:
                    break
                jk = kept[k]
                floor_end = now + sum(j.cost(self.floor(j)) for j in kept[:k + 1])
                may_bet = bets and bet is None and floor_end <= jk.deadline + self.margin * (floor_end - now)
                if floor_end > jk.deadline and not may_bet:
                    if self.rule == "shed":
                        mins = [j.cost(self.floor(j)) for j in kept[:k + 1]]
                        victim = kept[max(i for i in range(k + 1) if mins[i] == max(mins))]
                        if victim is not jk:
                            if bet is None:
                                shed.append(victim)
                            restart = True
                            break
                    if self.rule == "keep":
                        for j in kept[:k + 1]:
                            while j.exit != self.floor(j):
                                j.exit = self.lower(j)
                                downs += 1
                        hopeless.append(jk)
                        continue
                    aside.append(jk)
                    kept.remove(jk)
                    continue
                pick = None
                for j in kept[:k + 1]:
                    if j.exit != self.floor(j) and (pick is None or self.loss(j) < self.loss(pick)):
                        pick = j
                if pick is None:  # all of 1..k at their floors: k meets its deadline, not the margin
                    assert t <= jk.deadline or may_bet
                    if t > jk.deadline:
                        bet = jk
                    risky.append(jk)
                    continue
                pick.exit = self.lower(pick)
                downs += 1
            if bet is not None and (len(risky) > 1 or restart or aside or hopeless):
                bets = False  # the bet rides on another risky job, or costs one: plan again without one
                continue
            if not restart:
                break
        order = [j for j in kept if j not in hopeless]
        out = sorted(shed + aside + hopeless, key=lambda j: (j.deadline, j.id))
        if self.drop_late:
            self.queue = order
            if self.locked in out:
                self.locked = None
            return out, downs
        for j in out:
            if not self.frozen(j):
                j.exit = j.task.smallest(j.nb)
        self.queue = order + out
        return [], downs

    def dispatch(self, now):
        """The next chunk ``(kind, job, latency)`` or None; also the jobs dropped on the way."""
        start = max(now, self.busy)
        dropped = []
        while self.queue:
            j = self.queue[0]
            task = j.task
            if self.drop_late and start + j.cost(j.exit) > j.deadline:
                fits = None
                if not self.frozen(j):
                    first = min(m for m in range(len(task.exits)) if task.exits[m][0] >= j.nb - 1)
                    fits = next((m for m in range(j.exit - 1, first - 1, -1)
                                 if start + task.cost(j.nb, m) <= j.deadline), None)
                    if (fits is None and self.fallback and j.fb is not None and j.fb != j.exit
                            and start + task.exits[j.fb][1] <= j.deadline):
                        fits = j.fb
                    c = task.cost(j.nb, task.smallest(j.nb))
                    if fits is None and len(self.queue) == 1 and start + c <= j.deadline + self.margin * c:
                        fits = task.smallest(j.nb)
                if fits is None:
                    self.queue.pop(0)
                    dropped.append(j)
                    if self.locked is j:
                        self.locked = None
                    continue
                j.exit = fits
            if j.nb <= task.exits[j.exit][0]:
                lat = task.blocks[j.nb]
                if self.fallback and any(b == j.nb - 1 for b, _, _ in task.exits):
                    j.fb = next(m for m, (b, _, _) in enumerate(task.exits) if b == j.nb - 1)
                j.nb += 1
                j.started = True
                if self.policy == "pantheon-wo-ee-pr":
                    self.locked = j
                self.busy = start + lat
                return ("block", j, lat), dropped
            self.queue.pop(0)
            if self.locked is j:
                self.locked = None
            lat = task.exits[j.exit][1]
            self.busy = start + lat
            return ("exit", j, lat), dropped
        return None, dropped


def plain_run(tasks, jobs, policy, rule, ranking, drop_late, fallback=False, margin=0.0, jitter=0.0):
    """Replay ``jobs`` ``[(task, release, deadline)]``; returns (decisions, outcomes) by job id."""
    plain = {n: PlainTask(n, b, e) for n, (b, e) in tasks.items()}
    specs = sorted(((rel, i, n, dl) for i, (n, rel, dl) in enumerate(jobs)))
    p = Plain(policy, rule, ranking, drop_late, fallback, margin)
    factors = noise_table(jitter, 0) if jitter else []
    decisions, outcome = [], {}

    def admit(k, now):
        rel, jid, name, dl = specs[k]
        p.queue.append(PlainJob(jid, plain[name], rel, dl))
        dropped, downs = p.refresh(max(now, p.busy))
        decisions.append((now, jid, downs))
        for d in dropped:
            outcome[d.id] = ("dropped", now)

    t, i, n = 0, 0, len(specs)
    while True:
        while i < n and specs[i][0] <= t:
            admit(i, t)
            i += 1
        act, dropped = p.dispatch(t)
        for d in dropped:
            outcome[d.id] = ("dropped", t)
        if act is None:
            if i >= n:
                break
            t = specs[i][0]
            continue
        kind, job, lat = act
        if jitter:
            chunk = job.nb - 1 if kind == "block" else EXIT_CHUNK + job.task.exits[job.exit][0]
            lat = chunk_latency(factors, job.id, chunk, lat)
        end = t + lat
        while i < n and specs[i][0] < end:
            admit(i, specs[i][0])
            i += 1
        t = end
        p.busy = t
        if kind == "exit":
            outcome[job.id] = ("met" if t <= job.deadline else "late", t, job.task.exits[job.exit][0])
    return decisions, outcome


# -- the fast scheduler in the simulator ----------------------------------------------------------


class Recorder(NullLog):
    writes = True

    def __init__(self):
        super().__init__()
        self.decisions, self.outcome = [], {}

    def schedule(self, t, job, n, dur, down, drop):
        self.decisions.append((t, job, down))

    def drop(self, t, job, task, reason, started):
        self.outcome[job] = ("dropped", t)

    def exit(self, t, job, task, exit_block, acc, rel, response, met):
        self.outcome[job] = ("met" if met else "late", t, exit_block)


def fast_run(tasks, jobs, policy, rule, ranking, drop_late, log=None, fallback=False, margin=0.0, jitter=0.0):
    profiles = {n: TaskProfile(n, b, e, index=i) for i, (n, (b, e)) in enumerate(tasks.items())}
    ws = Workloads()
    for name, rel, dl in jobs:
        w = ws.workload.add()
        w.model_name, w.release, w.deadline = name, rel, dl
    return simulate(Repository(Path("."), profiles, app="prop"), ws, policy, drop_late=drop_late, drop_rule=rule,
                    downgrade=ranking, log=log, fallback=fallback, margin=margin, jitter=jitter, seed=0)


def check_same(tasks, jobs, policy, rule, ranking, drop_late, fallback=False, margin=0.0, jitter=0.0):
    rec = Recorder()
    fast_run(tasks, jobs, policy, rule, ranking, drop_late, log=rec, fallback=fallback, margin=margin, jitter=jitter)
    decisions, outcome = plain_run(tasks, jobs, policy, rule, ranking, drop_late, fallback, margin, jitter)
    assert rec.decisions == decisions
    assert rec.outcome == outcome
    # the simulator's fast path (no log: blocks run back to back) ends every job the same way
    s = fast_run(tasks, jobs, policy, rule, ranking, drop_late, fallback=fallback, margin=margin, jitter=jitter)
    assert s["met"] == sum(o[0] == "met" for o in outcome.values())
    assert s["dropped"] == sum(o[0] == "dropped" for o in outcome.values())
    return outcome


# -- the case where the rules part ways -----------------------------------------------------------

# One task, blocks 80/40/60/80 us; exits after block 0 (branch 20, acc .6), block 2 (50, .9),
# block 3 (20, .9): 100, 230 and 280 us from scratch.
CASE_TASKS = {"a": ([80, 40, 60, 80], [(0, 20, 0.6), (2, 50, 0.9), (3, 20, 0.9)])}
CASE_JOBS = [("a", 70, 370), ("a", 140, 180), ("a", 160, 330), ("a", 210, 270)]


@pytest.mark.parametrize("rule", RULES)
def test_four_job_case_outcomes_per_rule(rule):
    """Job 0 runs block 0 (70-150). Job 1 (deadline 180) arrives at 140: hopeless (150 + 100).

    ``skip``/``shed`` drop job 1 alone; job 0 keeps its original exit and runs block 1
    (150-190); job 2 (deadline 330) arrives at 160: planned from 190, job 2 fits at its
    first exit (290) but job 0, past block 1, can no longer take exit 0 (400 > 370) and is
    the one with the larger remaining latency: dropped. Job 3 (210, deadline 270) is
    hopeless behind job 2's block 0; job 2 ends at 290 through exit 0.
    ``keep`` lowers job 0 to its first exit while deciding job 1 (job 1's time stays in the
    scan), so job 0 ends at 170; job 2 starts at 170 at its first exit; job 3 at 210 is
    hopeless and its time (planned from 250) pushes job 2 past 330: both dropped.
    """
    outcome = check_same(CASE_TASKS, CASE_JOBS, "pantheon", rule, "absolute", True)
    if rule == "keep":
        assert outcome == {1: ("dropped", 140), 0: ("met", 170, 0), 3: ("dropped", 210), 2: ("dropped", 210)}
    else:
        assert outcome == {1: ("dropped", 140), 0: ("dropped", 160), 3: ("dropped", 210), 2: ("met", 290, 0)}


# -- random task sets and workloads ---------------------------------------------------------------


@st.composite
def cases(draw):
    tasks = {}
    for i in range(draw(st.integers(1, 3))):
        nb = draw(st.integers(1, 5))
        blocks = draw(st.lists(st.integers(1, 12).map(lambda x: 10 * x), min_size=nb, max_size=nb))
        ex = sorted(set(draw(st.lists(st.integers(0, nb - 1), max_size=nb))) | {nb - 1})
        accs = sorted(draw(st.lists(st.integers(30, 99), min_size=len(ex), max_size=len(ex), unique=True)))
        lats = draw(st.lists(st.integers(0, 15).map(lambda x: 10 * x), min_size=len(ex), max_size=len(ex)))
        tasks[f"t{i}"] = (blocks, [(b, lat, a / 100) for b, lat, a in zip(ex, lats, accs)])
    jobs = []
    t = 0
    for _ in range(draw(st.integers(1, 10))):
        t += draw(st.integers(0, 15)) * 10
        name = draw(st.sampled_from(sorted(tasks)))
        jobs.append((name, t, t + draw(st.integers(1, 60)) * 10))
    return tasks, jobs


@settings(max_examples=500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases(), st.sampled_from(POLICIES), st.sampled_from(RULES), st.sampled_from(RANKINGS), st.booleans(),
       st.booleans(), st.sampled_from(MARGINS), st.sampled_from(JITTERS))
def test_simulated_runs_match_the_plain_transcription(case, policy, rule, ranking, drop_late, fallback, margin,
                                                      jitter):
    tasks, jobs = case
    check_same(tasks, jobs, policy, rule, ranking, drop_late, fallback, margin, jitter)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(cases())
def test_every_rule_matches_on_the_same_case(case):
    """Each rule on the same random case (so every rule sees the overloaded ones)."""
    tasks, jobs = case
    for rule in RULES:
        check_same(tasks, jobs, "pantheon", rule, "absolute", True)
        check_same(tasks, jobs, "pantheon", rule, "absolute", True, fallback=True)
