"""Scheduling policies shared by the live runtime and the simulator (pure Python, no torch).

Vocabulary (CONTRIBUTING.md): a task has blocks ``0..B-1`` and kept exits; exit ``j``
follows block ``j``, so a job that leaves through exit ``j`` runs blocks ``0..j`` then
``branch_j``. The highest kept exit is the task's original head. All times are integer
microseconds on one clock.

One :class:`Scheduler` serves every policy. The caller (runtime or simulator) drives it:

* :meth:`Scheduler.arrive` adds a job and refreshes the queue (the scheduling decision);
* :meth:`Scheduler.next_action` pops the next piece of work: the next block of the head
  job, or its exit branch after its last needed block. A job's ``next_block`` pointer is
  advanced here, under the caller's lock, so no block runs twice or is skipped however
  often the order changes;
* :meth:`Scheduler.idle` tells it the device is free (keeps its busy estimate honest).

Policies (``--policy``):

``pantheon``
    EDF order; every job reset to its largest exit; scan with finishing times
    ``r_i = r_{i-1} + remaining latency of job i`` (from its first undispatched block through
    its chosen exit); at the first job ``k`` that misses its deadline, lower by one step the
    exit of the job among ``1..k`` whose next smaller exit loses the least accuracy, until
    ``k`` fits (ties: the earliest in EDF order). ``--downgrade absolute`` (default, as the
    reference runtime) ranks by ``acc[original] - acc[next]``, ``relative`` by
    ``1 - acc[next] / acc[original]``: they differ across tasks of different accuracy.
    An exit is eligible only if it follows a block at or after the job's last dispatched
    block, and useful only if it is faster than every larger exit: a step down goes to the
    next useful exit, and a job's smallest exit is its first eligible useful one.
    If ``k`` cannot fit even with ``1..k`` at their smallest exits it is *hopeless*; what
    happens then is the drop rule (``--drop-rule``), tested up front with a running sum of
    minimum remaining latencies:

    * ``shed`` (default): set aside the job among ``1..k`` with the largest remaining
      latency at its smallest exit (ties: the latest in EDF order, so ``k`` itself when it
      is as long), then rescan from the start without it. This is Moore-Hodgson's rule
      (drop the longest job of a late prefix), which minimises the number of late jobs of
      a set released together with fixed latencies; under overload it drops one long job
      where the other rules would drop several short ones behind it.
    * ``skip``: set aside ``k`` itself and continue the scan; the others lose no accuracy.
    * ``keep`` (the reference runtime's rule): lower every job of ``1..k`` to its smallest
      exit, and keep ``k``'s time (at its smallest exit) in the scan of the later jobs
      (the reference then runs ``k``; here it is set aside as with the other rules).

    Safety margin (``--margin``, a fraction ``g``, default :data:`DEFAULT_MARGIN`): the
    downgrades aim at finishing job ``k`` by ``d_k - g x (r_k - now)`` rather than ``d_k``,
    so a plan made under overload keeps a little slack against latency noise instead of
    filling every microsecond with accuracy (a plan with zero slack misses whenever the
    chunks run a little slow, and the job that pays is the last one). The margin never
    drops a job: a job that fits only without the margin keeps its smallest exits. The same
    noise may also run the chunks a little fast, so ``k`` is hopeless only when it misses
    ``d_k + g x (r_k - now)`` at the smallest exits: a plan may keep one job late by at most
    the margin there (the *bet*) instead of giving it up. Giving it up loses that job for
    sure; the bet loses it only when the chunks do not run fast enough, and no other job:
    a plan with a bet in which another kept job is at risk too (finishing after
    ``d - g x (r - now)``: one slow chunk would make both miss), or which sets any job
    aside, is made again with no bet. At dispatch the same margin lets a late head job with
    nothing queued behind it run (at its smallest exit) when it is late by at most ``g`` x
    its remaining latency: the device would idle otherwise, any arrival re-plans (and drops
    it when hopeless), and the noise may still bring it in. A bet reaches the head that way
    or is dropped there, and a running bet is dropped as soon as it is sure to miss.
    Measured in ``bench/policies.py`` with 5% chunk noise on the reference's profiles: the
    robot and UAV apps sit exactly at the serial lower bound (0.3 and 0.8 points above it
    with ``g = 0``); on traffic the bet takes pantheon from 0.1 points above rtmdl to 2.0
    points below it, and 0.9 below the bound, which holds for the profiled latencies only.
    ``g = 0`` plans to the deadline and takes no bet.

    Set-aside jobs are dropped (``--drop-late``) or run last, in EDF order, at their
    smallest exits (``--no-drop-late``). Measured in ``bench/drop_rule.py``: ``shed`` had the
    fewest misses on random overloads and on the paper apps, and meets the serial lower
    bound (the fewest misses with every job at its smallest exit) on the reference's
    profiles and workloads, where ``skip`` missed 9 points more on the robot app.
``pantheon-wo-ee``
    As ``pantheon``, but a job's exit is frozen once its first block ran.
``pantheon-wo-ee-pr``
    As ``pantheon-wo-ee``, and no chunk-level preemption: a started job runs to its end.
``edf``
    Chunk-preemptive EDF, always the original exit.
``fifo`` / ``rms`` / ``dms``
    Model-level non-preemptive (a started job runs to its end), original exit; order by
    arrival / static priority (shorter period first, ties shorter execution time) / static
    priority (shorter relative deadline first, ties shorter execution time).
``rtmdl``
    Non-preemptive, deadline-monotonic static priorities, and one static exit per task
    chosen offline (:func:`rtmdl_exits`): start from the original exits and, while the
    task set's utilisation ``sum(C_i / T_i)`` exceeds 1, lower the exit of the task that
    loses the least relative accuracy per unit of utilisation saved.

Fallback exits (``fallback=True``, ``pantheon`` policy only, off by default): a job that
moved past a kept exit (it dispatched the block after the one that exit follows) may still
finish through it, at the cost of its branch alone: the memory manager keeps the tensor
there (the latest such exit per job). In the scan that exit is one more step down below
the job's smallest exit ahead, taken only when its branch is cheaper; at dispatch a late
head job that no exit ahead can save falls back to it when its branch still meets the
deadline. ``Scheduler.fallbacks`` counts the jobs that left that way.

Dropping late jobs (``drop_late``, default on): before a job's first block is dispatched,
a job that can no longer meet its deadline (``start + remaining latency > deadline``) is
dropped instead of run. The pantheon policies first try the largest eligible exit that
still meets the deadline and, being deadline-driven, also apply the check to the head job
before each of its later blocks (a job that is sure to miss is dropped, as the paper's
scheduler skips it). With ``drop_late=False`` nothing is ever dropped; late jobs run.

The hot path (:meth:`Scheduler.arrive` under ``pantheon``) is written for speed: per-task
tables (prefix sums of block latencies, full latency and downgrade delta per exit, smallest
eligible exit per next-block) make a job's remaining latency ``full[m] - prefix[nb]``; a
downgrade of job ``i`` shifts ``r_i..r_k`` by a known delta, so only ``r_k`` is updated;
the least-loss candidate is ``min`` over a list of precomputed next-loss values; a job
shed restarts the scan (rare: only under overload).
:func:`reference_refresh` is the plain transcription (full rescan per downgrade) that
the tests compare it against.

Example::

    t = TaskProfile("a", blocks=[3000, 3000, 4000], exits=[(1, 500, 0.90), (2, 800, 0.95)])
    s = Scheduler([t], "pantheon")          # builds its own TaskState of "a" (s.states["a"])
    s.arrive(Job(0, t, release=0, deadline=8000), now=0)
    s.next_action(0)      # (BLOCK, job 0, 0, 3000, None)
"""

from __future__ import annotations

import math
from operator import attrgetter
from typing import Callable, Dict, List, Mapping, Optional, Sequence, Tuple, Union, cast

from pantheon.errors import UsageError
from pantheon.online.repository import TaskProfile, check_dispatch_us

POLICIES = ("pantheon", "pantheon-wo-ee", "pantheon-wo-ee-pr", "edf", "fifo", "rms", "dms", "rtmdl")
PANTHEON_FAMILY = ("pantheon", "pantheon-wo-ee", "pantheon-wo-ee-pr")
NON_PREEMPTIVE = ("pantheon-wo-ee-pr", "fifo", "rms", "dms", "rtmdl")
DROP_RULES = ("shed", "skip", "keep")  # what the pantheon refresh does with a hopeless job (first: default)
DOWNGRADES = ("absolute", "relative")  # how it ranks exit downgrades (first: default)
DEFAULT_MARGIN = 0.04  # the pantheon refresh's safety margin, a fraction of the planned horizon
MAX_MARGIN = 0.5

BLOCK = 0  # action kinds returned by Scheduler.next_action
EXIT = 1

QUEUED = 0  # job states
DISPATCHED = 1  # its exit branch was handed to the device
DROPPED = 2

INF = math.inf
_NONE: Tuple = ()  # "no job dropped", without allocating a list per call


def check_choice(value: str, choices: Sequence[str], option: str) -> str:
    """Return ``value`` if it is one of ``choices``, else raise a :class:`UsageError` naming ``option``."""
    if value not in choices:
        raise UsageError(f"unknown {option} {value!r}: choose one of {', '.join(choices)}")
    return value


def check_margin(margin: float) -> float:
    """``margin`` as a float, or a one-line error unless it is finite and in ``[0, MAX_MARGIN]``."""
    g = float(margin)
    if not (math.isfinite(g) and 0.0 <= g <= MAX_MARGIN):
        raise UsageError(f"--margin must be a fraction between 0 and {MAX_MARGIN}, got {margin}")
    return g


def check_policy(policy: str) -> str:
    """Return ``policy`` if known, else raise a :class:`UsageError` listing the choices."""
    if policy not in POLICIES:
        raise UsageError(f"unknown policy {policy!r}: choose one of {', '.join(POLICIES)}")
    return policy


class TaskState:
    """One task's tables for one run, built by the :class:`Scheduler` from a frozen profile.

    A profile (:class:`~pantheon.online.repository.TaskProfile`) is what was measured; a
    state is what this run makes of it: the cost of every chunk (``dispatch_us + scale x
    profiled latency``), the tables the hot path reads (prefix sums, full latency and
    downgrade step per exit, smallest eligible exit per next block) and what the static
    policies need from the workload (period, relative deadline, priority, static exit).
    Only :meth:`rescale` (the runtime's online calibration) and :func:`configure_static`
    change it; the profile is never written.

    Args:
        profile: the task's profile.
        scale: latency factor (1.0: the profile).
        dispatch_us: per-chunk dispatch overhead (default: the profile's).
        period_us, rel_deadline_us: the task's period and relative deadline in the
            workload (None: unknown; see :func:`pantheon.online.workload.task_timing`).
    """

    __slots__ = (
        "profile", "name", "index", "dims", "blocks", "exit_blocks", "exit_lat", "exit_acc", "prefix", "full",
        "top", "loss", "delta", "lo_for_nb", "rel_acc", "period_us", "rel_deadline_us", "static_exit",
        "priority", "base_blocks", "base_exit_lat", "scale", "dispatch_us", "loss_abs", "down", "rank",
        "exit_after",
    )

    def __init__(self, profile: TaskProfile, scale: float = 1.0, dispatch_us: Optional[float] = None,
                 period_us: Optional[float] = None, rel_deadline_us: Optional[float] = None) -> None:
        self.profile = profile
        self.name = profile.name
        self.index = profile.index
        self.dims = list(profile.dims)
        self.base_blocks = list(profile.blocks)
        self.exit_blocks = list(profile.exit_blocks)
        self.base_exit_lat = list(profile.exit_lat)
        self.exit_acc = list(profile.exit_acc)
        self.top = len(self.exit_blocks) - 1
        # exit_after[b]: the exit that follows block b (-1: none), for the fallback exits
        self.exit_after = [-1] * len(self.base_blocks)
        for m, b in enumerate(self.exit_blocks):
            self.exit_after[b] = m
        a_top = self.exit_acc[-1]
        self.rel_acc = [a / a_top for a in self.exit_acc]
        self.dispatch_us = profile.dispatch_us
        self.rescale(scale, dispatch_us)
        self.period_us = period_us
        self.rel_deadline_us = rel_deadline_us
        self.static_exit = self.top
        self.priority = 0

    def rescale(self, factor: float, dispatch_us: Optional[float] = None) -> None:
        """Plan with ``dispatch_us + factor x profiled latency`` per chunk (the cost model).

        ``factor`` is the runtime's online calibration (1.0: the profile); ``dispatch_us``
        the fixed per-chunk launch cost (None keeps the current one). Recomputes the latency
        tables (blocks, exits, prefix sums, full latency per exit, downgrade deltas);
        accuracies and exit eligibility do not change. Not thread-safe: the runtime calls
        it under the lock that guards scheduling decisions.
        """
        if dispatch_us is not None:
            self.dispatch_us = check_dispatch_us(dispatch_us)
        if not math.isfinite(factor) or factor <= 0:
            raise UsageError(f"a latency scale must be finite and positive, got {factor}")
        self.scale = float(factor)
        o = self.dispatch_us
        self.blocks = [int(round(o + x * factor)) for x in self.base_blocks]
        self.exit_lat = [int(round(o + x * factor)) for x in self.base_exit_lat]
        self.prefix = [0]
        for lat in self.blocks:
            self.prefix.append(self.prefix[-1] + lat)
        # full[m]: latency of blocks 0..exit_blocks[m] plus exit m, from scratch.
        self.full = [self.prefix[b + 1] + lat for b, lat in zip(self.exit_blocks, self.exit_lat)]
        # An exit no faster than a larger one is never worth choosing: downgrades skip it.
        # down[m]: the next smaller exit that is faster than every larger one (-1: none);
        # rank[m]: how many such steps lie below m.
        n = len(self.exit_blocks)
        fastest = INF  # smallest full latency among exits above m
        useful = [False] * n
        for m in range(n - 1, -1, -1):
            if self.full[m] < fastest:
                useful[m] = True
                fastest = self.full[m]
        self.down = []
        self.rank = []
        below = -1
        steps = 0
        for m in range(n):
            self.down.append(below)
            self.rank.append(steps)
            if useful[m]:
                below = m
                steps += 1
        # delta[m] / loss[m] / loss_abs[m]: latency saved / relative (vs the original) and absolute
        # accuracy lost by moving from exit m down to down[m].
        a_top = self.exit_acc[-1]
        self.delta = [0 if d < 0 else self.full[m] - self.full[d] for m, d in enumerate(self.down)]
        self.loss = [INF if d < 0 else 1.0 - self.exit_acc[d] / a_top for d in self.down]
        self.loss_abs = [INF if d < 0 else a_top - self.exit_acc[d] for d in self.down]
        # lo_for_nb[nb]: smallest exit a job whose first undispatched block is nb may use (the
        # first that follows block nb-1 or later), moved up to the first useful one: the fastest.
        self.lo_for_nb = []
        for nb in range(self.exit_blocks[-1] + 2):
            m = 0
            while self.exit_blocks[m] < nb - 1 or not useful[m]:
                m += 1
            self.lo_for_nb.append(m)

    def remaining(self, next_block: int, m: int) -> int:
        """Latency (us) of a job at ``next_block`` still to run through exit index ``m``."""
        return self.full[m] - self.prefix[next_block]

    @property
    def full_latency(self) -> int:
        """Latency of the whole original model (all blocks through the original exit)."""
        return self.full[self.top]

    def __repr__(self) -> str:
        return f"TaskState({self.name!r}, blocks={len(self.blocks)}, exits={self.exit_blocks}, scale={self.scale})"


class Job:
    """One inference request. ``exit`` is an index into its task's exit list.

    ``task`` is the task's :class:`TaskState` in the scheduler that runs the job; a job
    made with the task's profile (or another scheduler's state) is bound to this
    scheduler's state by :meth:`Scheduler.arrive`.
    """

    __slots__ = (
        "id", "task", "release", "deadline", "next_block", "exit", "started", "state", "seq", "payload",
        "fb", "fb_save", "fb_loss",
    )

    def __init__(self, id: int, task: Union[TaskState, TaskProfile], release: int, deadline: int,
                 payload: object = None) -> None:
        self.id = id
        self.task = cast(TaskState, task)  # a profile is bound to the run's TaskState by Scheduler.arrive
        self.release = int(release)
        self.deadline = int(deadline)
        self.next_block = 0  # first undispatched block
        self.exit = task.top
        self.started = False
        self.state = QUEUED
        self.seq = id
        self.payload = payload
        self.fb = -1  # the passed exit it may still finish through (Scheduler fallback=True), -1: none
        self.fb_save = 0  # latency that exit saves over the job's smallest exit ahead (this refresh)
        self.fb_loss = INF  # accuracy lost by taking it (this refresh)

    def __repr__(self) -> str:
        return (
            f"Job({self.id}, {self.task.name}, d={self.deadline}, nb={self.next_block}, "
            f"exit={self.task.exit_blocks[self.exit]})"
        )


_EDF_KEY = attrgetter("deadline", "seq")


def _static_key(job: Job) -> Tuple[int, int, int]:
    return (job.task.priority, job.release, job.seq)


def _fifo_key(job: Job) -> int:
    return job.seq


def rtmdl_exits(tasks: Sequence[TaskState]) -> Dict[str, int]:
    """RT-mDL-style static exit per task: the largest exits whose utilisation fits (<= 1).

    Utilisation is ``sum(full[e_i] / period_i)`` over tasks with a known period. Starting
    from the original exits, repeatedly lower by one the exit of the task with the least
    relative accuracy lost per unit of utilisation saved, until the set fits or every task
    is at its smallest exit. Returns ``{task: exit index}``.
    """
    chosen = {t.name: t.top for t in tasks}
    timed = [(t, float(t.period_us)) for t in tasks if t.period_us]

    def util() -> float:
        return sum(t.full[chosen[t.name]] / period for t, period in timed)

    u = util()
    while u > 1.0:
        best = None
        for t, period in timed:
            m = chosen[t.name]
            if m == 0:
                continue
            saved = (t.full[m] - t.full[m - 1]) / period
            if saved <= 0:
                continue
            cost = (t.rel_acc[m] - t.rel_acc[m - 1]) / saved
            if best is None or cost < best[0] or (cost == best[0] and t.name < best[1].name):
                best = (cost, t)
        if best is None:
            break
        chosen[best[1].name] -= 1
        u = util()
    return chosen


class Scheduler:
    """The run queue and one policy. Not thread-safe: the runtime calls it under its own lock.

    Args:
        tasks: the profile of every task jobs may belong to. The scheduler builds its own
            :class:`TaskState` per task from it (:attr:`states`); the profiles are not changed.
        policy: one of :data:`POLICIES`.
        drop_late: drop jobs that can no longer meet their deadline when they would start.
        drop_rule, downgrade: the pantheon refresh's rules (:data:`DROP_RULES`, :data:`DOWNGRADES`).
        margin: the pantheon refresh's safety margin (a fraction; see the module docstring).
        fallback: let the ``pantheon`` policy finish a job through an exit it already passed.
        timing: per task ``(period_us, relative_deadline_us)`` in the workload, which the
            static policies rank tasks by (see :meth:`set_timing`).
        dispatch_us: per-chunk dispatch overhead to plan with (default: each profile's).

    Attributes:
        states: this run's :class:`TaskState` per task name (:attr:`tasks`: the same, in order).
        queue: the jobs in their decided order (head first).
        dropped: jobs dropped by the last :meth:`arrive`/:meth:`next_action` call.
        downgrades: exit downgrades made by the last refresh.
    """

    def __init__(self, tasks: Sequence[TaskProfile], policy: str = "pantheon", drop_late: bool = True,
                 drop_rule: str = DROP_RULES[0], downgrade: str = DOWNGRADES[0], fallback: bool = False,
                 timing: Optional[Mapping[str, Tuple[Optional[float], float]]] = None,
                 dispatch_us: Optional[float] = None, margin: float = DEFAULT_MARGIN) -> None:
        self.policy = check_policy(policy)
        self.margin = check_margin(margin)
        self.tasks = [TaskState(p, dispatch_us=dispatch_us) for p in tasks]
        self.states: Dict[str, TaskState] = {t.name: t for t in self.tasks}
        self.drop_late = bool(drop_late)
        self.drop_rule = check_choice(drop_rule, DROP_RULES, "drop rule")
        self.downgrade = check_choice(downgrade, DOWNGRADES, "downgrade ranking")
        self._rule = DROP_RULES.index(drop_rule)
        self._abs = downgrade == "absolute"
        self.fallback = bool(fallback) and policy == "pantheon"
        self.fallbacks = 0  # jobs finished through a passed exit
        self.queue: List[Job] = []
        self.dropped: Sequence[Job] = _NONE
        self.downgrades = 0
        self.busy_until = 0
        self.last_job: Optional[Job] = None
        self.locked: Optional[Job] = None  # the started job a non-preemptive policy must finish
        self.ee = policy in PANTHEON_FAMILY
        self.fix_started = policy in ("pantheon-wo-ee", "pantheon-wo-ee-pr")
        self.preemptive = policy not in NON_PREEMPTIVE
        self.set_timing(timing or {})

    def set_timing(self, timing: Mapping[str, Tuple[Optional[float], float]]) -> None:
        """Give the tasks their ``(period_us, relative_deadline_us)`` and rank them again.

        Tasks absent from ``timing`` keep theirs (None at first: they rank last under the
        static policies, see :func:`configure_static`).
        """
        for name, (period, rel) in timing.items():
            t = self.states.get(name)
            if t is not None:
                t.period_us = period
                t.rel_deadline_us = rel
        configure_static(self.tasks, self.policy)

    def bind(self, job: Job) -> Job:
        """Point ``job`` at this scheduler's state of its task; return it."""
        t = self.states.get(job.task.name)
        if t is None:
            raise UsageError(f"task {job.task.name!r} is not scheduled here (tasks: {', '.join(self.states)})")
        job.task = t
        return job

    # -- arrivals -------------------------------------------------------------------------

    def arrive(self, job: Job, now: int) -> int:
        """Queue ``job`` (released at ``now``) and refresh the order and exits.

        The job is first bound to this scheduler's state of its task (:meth:`bind`).
        Returns the queue length the decision worked on; dropped jobs are in :attr:`dropped`.
        """
        t = self.states.get(job.task.name)
        if t is None or t is not job.task:
            t = self.bind(job).task
        job.exit = t.static_exit if self.policy == "rtmdl" else t.top
        self.queue.append(job)
        n = len(self.queue)
        self.refresh(now)
        return n

    def refresh(self, now: int) -> None:
        """Recompute the queue order (and, for the pantheon policies, every job's exit)."""
        self.dropped = _NONE
        self.downgrades = 0
        if self.ee:
            self._refresh_ee(max(now, self.busy_until))
            return
        q = self.queue
        if self.policy == "edf":
            q.sort(key=_EDF_KEY)
        elif self.policy == "fifo":
            q.sort(key=_fifo_key)
        else:
            q.sort(key=_static_key)
        locked = self.locked
        if locked is not None and q[0] is not locked:
            q.remove(locked)
            q.insert(0, locked)

    def _refresh_ee(self, now: int) -> None:
        q = self.queue
        q.sort(key=_EDF_KEY)
        locked = self.locked
        if locked is not None and q[0] is not locked:
            q.remove(locked)
            q.insert(0, locked)
        fix_started = self.fix_started
        drop_late = self.drop_late
        fallback = self.fallback
        rule = self._rule  # 0 shed, 1 skip, 2 keep (DROP_RULES)
        use_abs = self._abs
        g = self.margin
        shed: List[Job] = []  # jobs shed by earlier passes (rule "shed" rescans without them)
        bet_ok = True  # the plan may keep one job late within the margin (cleared when that fails)
        while True:
            order: List[Job] = []
            nl: List[float] = []  # next-loss of each job in `order`
            los: List[int] = []  # its smallest eligible exit
            mns: List[int] = []  # its remaining latency at that exit
            aside: List[Job] = list(shed)
            victim = None
            r = now  # finishing time of the last job in `order`
            rmin = now  # the same with every job at its smallest eligible exit
            ndown = 0
            bet = bet_ok  # the bet is still to take in this pass
            atrisk = 0  # jobs kept finishing after d - g x horizon (at their smallest exits)
            for job in q:
                t = job.task
                nb = job.next_block
                full = t.full
                base = t.prefix[nb]
                if fix_started and job.started:
                    m = job.exit
                    lo = m
                    loss = INF
                else:
                    m = t.top
                    lo = t.lo_for_nb[nb]
                    loss = (t.loss_abs if use_abs else t.loss)[m] if m > lo else INF
                rem = full[m] - base
                mn = full[lo] - base
                if fallback and job.fb >= 0:
                    fc = t.exit_lat[job.fb]
                    if fc < mn:  # its passed exit is the cheapest way out: one more step down
                        job.fb_save = mn - fc
                        a = t.exit_acc[job.fb]
                        job.fb_loss = t.exit_acc[-1] - a if use_abs else 1.0 - a / t.exit_acc[-1]
                        mn = fc
                        if m == lo:
                            loss = job.fb_loss
                    else:
                        job.fb_loss = INF
                r += rem
                rmin += mn
                d = job.deadline
                job.exit = m
                if r > d - g * (r - now):  # late for the deadline less the margin
                    if rmin > d and not (bet and rmin <= d + g * (rmin - now)):  # hopeless, no bet left
                        if rule == 0:  # shed the job among 1..k with the largest minimum remaining latency
                            best = mn
                            vi = -1
                            for i in range(len(mns) - 1, -1, -1):
                                if mns[i] > best:
                                    best = mns[i]
                                    vi = i
                            if vi >= 0:
                                victim = order[vi]
                                break
                        elif rule == 2:  # keep: 1..k go to their smallest exits, k still takes its time
                            for i, j in enumerate(order):
                                if nl[i] != INF:
                                    tj = j.task
                                    if j.exit >= los[i]:
                                        ndown += tj.rank[j.exit] - tj.rank[los[i]]
                                        j.exit = los[i]
                                    if fallback and j.fb_loss != INF:
                                        ndown += 1
                                        j.exit = j.fb
                                    nl[i] = INF
                            ndown += t.rank[m] - t.rank[lo]
                            job.exit = lo
                            if fallback and job.fb >= 0 and job.fb_loss != INF:
                                ndown += 1
                                job.exit = job.fb
                            r = rmin
                            aside.append(job)
                            continue
                        r -= rem
                        rmin -= mn
                        aside.append(job)
                        continue
                    order.append(job)
                    nl.append(loss)
                    los.append(lo)
                    mns.append(mn)
                    while r > d - g * (r - now):
                        v = min(nl)
                        if v == INF and (r <= d or (bet and r <= d + g * (r - now))):
                            atrisk += 1  # fits only without the margin, or is the plan's bet: keep it so
                            if r > d:
                                bet = False
                            break
                        if v == INF:  # only with exits slower than larger ones: give k up
                            order.pop()
                            nl.pop()
                            los.pop()
                            mns.pop()
                            r -= job.task.full[job.exit] - base
                            rmin -= mn
                            aside.append(job)
                            break
                        i = nl.index(v)
                        j = order[i]
                        tj = j.task
                        mj = j.exit
                        ndown += 1
                        if mj == los[i]:  # at its smallest exit ahead: finish through the passed one
                            r -= j.fb_save
                            j.exit = j.fb
                            nl[i] = INF
                            continue
                        r -= tj.delta[mj]
                        mj = tj.down[mj]
                        j.exit = mj
                        if mj > los[i]:
                            nl[i] = (tj.loss_abs if use_abs else tj.loss)[mj]
                        else:
                            nl[i] = j.fb_loss if fallback and j.fb >= 0 else INF
                else:
                    order.append(job)
                    nl.append(loss)
                    los.append(lo)
                    mns.append(mn)
            if bet_ok and not bet and (atrisk > 1 or victim is not None or len(aside) > len(shed)):
                bet_ok = False  # the bet rides on another job at risk, or costs one: plan without it
                continue
            if victim is None:
                break
            q.remove(victim)
            shed.append(victim)
        self.downgrades = ndown
        if aside:
            if len(aside) > 1:
                aside.sort(key=_EDF_KEY)
            if drop_late:
                locked_dropped = False
                for job in aside:
                    job.state = DROPPED
                    if job is locked:
                        locked_dropped = True
                self.dropped = aside
                if locked_dropped:
                    self.locked = None
            else:
                for job in aside:  # run last, as cheaply as allowed
                    if not (fix_started and job.started):
                        job.exit = job.task.lo_for_nb[job.next_block]
                order.extend(aside)
        self.queue = order

    # -- dispatch -------------------------------------------------------------------------

    def next_action(self, now: int) -> Optional[Tuple[int, Job, int, int, Optional[Job]]]:
        """Pop the next piece of work: ``(kind, job, index, latency_us, preempted_job)``.

        ``kind`` is :data:`BLOCK` (``index`` = block id, the job's pointer moves past it) or
        :data:`EXIT` (``index`` = exit index into the task's exits; the job leaves the queue).
        ``preempted_job`` is the previously served job when it is started, unfinished and no
        longer at the head. Returns None when the queue is empty. Jobs dropped on the way
        are in :attr:`dropped`.
        """
        q = self.queue
        dropped = None
        start = now if now > self.busy_until else self.busy_until
        drop_late = self.drop_late
        while q:
            job = q[0]
            t = job.task
            m = job.exit
            nb = job.next_block
            eb = t.exit_blocks[m]
            rem = t.exit_lat[m] if nb > eb + 1 else t.full[m] - t.prefix[nb]  # a passed exit: its branch
            if drop_late and start + rem > job.deadline:
                if not self._rescue(job, start):
                    q.pop(0)
                    job.state = DROPPED
                    if dropped is None:
                        dropped = []
                    dropped.append(job)
                    if self.locked is job:
                        self.locked = None
                    continue
                m = job.exit
                eb = t.exit_blocks[m]
            prev = self.last_job
            if prev is job:
                pre = None
            else:
                pre = prev if (prev is not None and prev.started and prev.state == QUEUED) else None
                self.last_job = job
            self.dropped = dropped or _NONE
            if nb <= eb:
                if self.fallback and nb > 0 and t.exit_after[nb - 1] >= 0:
                    job.fb = t.exit_after[nb - 1]  # block nb-1's output stays: its exit remains a way out
                job.next_block = nb + 1
                job.started = True
                if not self.preemptive:
                    self.locked = job
                lat = t.blocks[nb]
                self.busy_until = start + lat
                return (BLOCK, job, nb, lat, pre)
            q.pop(0)
            job.state = DISPATCHED
            if self.locked is job:
                self.locked = None
            if nb > eb + 1:
                self.fallbacks += 1
            lat = t.exit_lat[m]
            self.busy_until = start + lat
            return (EXIT, job, m, lat, pre)
        self.dropped = dropped or _NONE
        return None

    def run_ahead(self, job: Job, end: int, horizon: float,
                  noise: Optional[Callable[[int, int, int], int]] = None) -> int:
        """Simulator fast path: dispatch ``job``'s next blocks back to back while nothing arrives.

        ``job`` is the head whose block just ran until ``end``; while ``end < horizon`` (the
        next arrival) it stays the head, so its next block starts at ``end`` exactly as
        :meth:`next_action` would start it. Stops before the exit branch, or at a block whose
        start fails the late check (:meth:`next_action` then drops or re-exits the job).
        ``noise(job id, block, latency)`` turns a profiled latency into the simulated one
        (called once per block, like the simulator's generic path). Returns the end time of
        the last block.
        """
        t = job.task
        eb = t.exit_blocks[job.exit]
        blocks = t.blocks
        prefix = t.prefix
        left = job.deadline - t.full[job.exit]  # late when start > deadline - (full[m] - prefix[nb])
        drop_late = self.drop_late
        after = t.exit_after if self.fallback else None
        nb = job.next_block
        while end < horizon and nb <= eb:
            if drop_late and end - prefix[nb] > left:
                break
            if after is not None and nb > 0 and after[nb - 1] >= 0:
                job.fb = after[nb - 1]
            lat = blocks[nb]
            nb += 1
            self.busy_until = end + lat
            end += lat if noise is None else noise(job.id, nb - 1, lat)
        job.next_block = nb
        return end

    def _rescue(self, job: Job, start: int) -> bool:
        """Whether the late head ``job`` may still run (after lowering its exit if allowed)."""
        t = job.task
        nb = job.next_block
        if self.ee and not (self.fix_started and job.started):
            slack = job.deadline - start + t.prefix[nb]  # full latency the job may still afford
            for m in range(job.exit - 1, t.lo_for_nb[nb] - 1, -1):
                if t.full[m] <= slack:
                    job.exit = m
                    return True
            fb = job.fb
            if self.fallback and fb >= 0 and fb != job.exit and start + t.exit_lat[fb] <= job.deadline:
                job.exit = fb
                return True
            if len(self.queue) == 1:  # nothing waits: run it if late by at most the margin
                m = t.lo_for_nb[nb]
                rem = t.full[m] - t.prefix[nb]
                if start + rem <= job.deadline + self.margin * rem:
                    job.exit = m
                    return True
            return False
        # Classical policies only refuse to *start* a late job; pantheon's also stop a hopeless one.
        return job.started and not self.ee

    def idle(self, now: int) -> None:
        """The device finished everything dispatched so far at ``now``."""
        self.busy_until = now

    def remove(self, job: Job) -> None:
        """Take ``job`` out of the queue (e.g. at shutdown)."""
        if job in self.queue:
            self.queue.remove(job)
        if self.locked is job:
            self.locked = None


def configure_static(tasks: Sequence[TaskState], policy: str) -> None:
    """Set each task's static priority (rms/dms/rtmdl) and static exit (rtmdl).

    Needs ``period_us``/``rel_deadline_us`` on the tasks (see
    :func:`pantheon.online.workload.task_timing`); tasks without them sort last.
    """
    big = float("inf")
    if policy == "rms":
        keyf = lambda t: (t.period_us or big, t.full_latency, t.name)  # noqa: E731
    else:
        keyf = lambda t: (t.rel_deadline_us or big, t.full_latency, t.name)  # noqa: E731
    for rank, t in enumerate(sorted(tasks, key=keyf)):
        t.priority = rank
    if policy == "rtmdl":
        chosen = rtmdl_exits(tasks)
        for t in tasks:
            t.static_exit = chosen[t.name]
    else:
        for t in tasks:
            t.static_exit = t.top


def reference_refresh(jobs: Sequence[Job], now: int, fix_started: bool = False, drop_late: bool = True,
                      locked: Optional[Job] = None, drop_rule: str = DROP_RULES[0],
                      downgrade: str = DOWNGRADES[0], margin: float = DEFAULT_MARGIN,
                      ) -> Tuple[List[Job], List[Job], int]:
    """The pantheon refresh as a plain transcription: full rescan after every downgrade.

    Returns ``(order, dropped_or_set_aside, downgrades)`` and sets each job's ``exit``.
    Kept for the tests (same decisions as :meth:`Scheduler._refresh_ee` without fallback
    exits) and the benchmark.
    """
    q = sorted(jobs, key=lambda j: (j.deadline, j.seq))
    if locked is not None and locked in q:
        q.remove(locked)
        q.insert(0, locked)

    def lo_of(j: Job) -> int:
        return j.exit if (fix_started and j.started) else j.task.lo_for_nb[j.next_block]

    def loss_of(j: Job) -> float:
        return (j.task.loss_abs if downgrade == "absolute" else j.task.loss)[j.exit]

    shed: List[Job] = []
    bet_ok = True  # may a pass keep one job late within the margin
    while True:  # one pass per job shed (and one more when a bet is called off)
        for j in q:
            if not (fix_started and j.started):
                j.exit = j.task.top
        kept = list(q)
        aside: List[Job] = []
        hopeless: List[Job] = []  # rule "keep": in the scan at their smallest exits, never checked
        risky: List[Job] = []  # fit their deadline only without the margin, at their smallest exits (or the bet)
        bet: Optional[Job] = None  # the one job kept although late (by at most the margin) at its smallest exits
        ndown = 0
        victim = None
        while True:
            r = now
            miss = None
            for k, j in enumerate(kept):
                r += j.task.remaining(j.next_block, j.exit)
                if r > j.deadline - margin * (r - now) and j not in hopeless and j not in risky:
                    miss = k
                    break
            if miss is None:
                break
            jk = kept[miss]
            best = now + sum(j.task.remaining(j.next_block, lo_of(j)) for j in kept[: miss + 1])
            can_bet = bet_ok and bet is None
            if best > jk.deadline and not (can_bet and best <= jk.deadline + margin * (best - now)):
                if drop_rule == "shed":
                    mins = [j.task.remaining(j.next_block, lo_of(j)) for j in kept[: miss + 1]]
                    top = max(mins)
                    victim = kept[max(i for i in range(miss + 1) if mins[i] == top)]
                    if victim is not jk:
                        break
                    victim = None
                if drop_rule == "keep":
                    for j in kept[: miss + 1]:
                        while j.exit > lo_of(j):
                            j.exit = j.task.down[j.exit]
                            ndown += 1
                    hopeless.append(jk)
                    continue
                aside.append(jk)
                del kept[miss]
                continue
            cand = None
            for i in range(miss + 1):
                j = kept[i]
                if j.exit > lo_of(j) and (cand is None or loss_of(j) < cand[0]):
                    cand = (loss_of(j), i)
            if cand is None:
                if r <= jk.deadline or (can_bet and r <= jk.deadline + margin * (r - now)):
                    if r > jk.deadline:
                        bet = jk
                    risky.append(jk)
                    continue
                aside.append(jk)
                del kept[miss]
                continue
            j = kept[cand[1]]
            j.exit = j.task.down[j.exit]
            ndown += 1
        if bet is not None and (len(risky) > 1 or victim is not None or aside or hopeless):
            bet_ok = False
            continue
        if victim is None:
            break
        q.remove(victim)
        shed.append(victim)
    kept = [j for j in kept if j not in hopeless]
    aside = sorted(shed + aside + hopeless, key=lambda j: (j.deadline, j.seq))
    if not drop_late:
        for j in aside:
            if not (fix_started and j.started):
                j.exit = j.task.lo_for_nb[j.next_block]
        return kept + aside, [], ndown
    return kept, aside, ndown
