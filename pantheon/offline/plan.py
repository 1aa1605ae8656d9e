"""``pantheon plan``: choose which exits of every task of an application to deploy.

Formulation (the reference implementation's constraints; two objectives, ``--objective``):

- Decision: ``x[t, j]`` in {0, 1}, keep exit ``j`` of task ``t`` (exit ``j`` follows block ``j``;
  exit ``B-1`` is the original head and may be dropped too).
- (acc) every kept exit loses at most ``max_delta_accuracy`` (absolute fraction) against the
  task's *reference accuracy*: ``ref - acc[j] <= delta``.
- (par) every kept exit is on the task's latency/accuracy frontier, latency of exit ``j`` =
  ``sum(block[0..j]) + branch[j]``.
- (full) one of the task's most accurate admissible exits (acc+par) is kept, as in the
  reference (its ``max(kept accuracy) == max accuracy`` constraint). This implies "each
  task keeps at least one exit" and prevents the degenerate plan "keep only the earliest
  admissible exit", which the objectives below would otherwise favour.
- (mem) ``sum_t [sum(block_mem[0..last kept]) + sum(branch_mem[kept])] <= max_memory``.

For a job whose next block is ``j``, ``T(j) = sum(block[j..k]) + branch[k]`` with ``k`` the
nearest kept exit at or after ``j`` -- the time to finish from a preemption point at block
``j``; blocks after the last kept exit are not deployed and count 0 (the reference's
definition). ``mean(T_t)`` is the mean over all ``B_t`` blocks of task ``t``.

The two objectives (:data:`OBJECTIVES`) differ in four rules:

- ``reference`` (default; the reference implementation's rules):
  (acc) the drop is measured against the task's *best* accuracy (``ref = max_j acc[j]``);
  (par) weak frontier: exit ``j`` is off only when an exit no slower is strictly more
  accurate, so an exit that ties in accuracy with a faster one stays;
  (full) any one of the most accurate candidates (ties included) is kept;
  objective: maximise ``sum_t 1 / mean(T_t)`` (1/ms).
- ``mean-time`` (Pantheon's earlier rules):
  (acc) the drop is measured against the *last* (original) exit (``ref = acc[B-1]``);
  (par) strict frontier: exit ``j`` is off when another is no slower and no less accurate
  and strictly better in one (ties with a faster exit are dropped);
  (full) the earliest most accurate candidate is kept;
  objective: minimise ``sum_t mean(T_t)`` (ms).

Both objectives are sums of per-task terms that are monotone in ``mean(T_t)``, so the same
solvers serve both: every solver minimises ``sum_t g(mean(T_t))`` with ``g(m) = -1/m``
(``reference``) or ``g(m) = m`` (``mean-time``).

(acc), (par) and (full) are per-exit filters; a repair operator applies them (keeping one
most accurate exit per task and nothing after it, which could only add time and memory)
and drops random optional exits until (mem) holds, so the GA effectively searches over
the optional candidate exits. ``exhaustive=True`` enumerates every subset of the
candidates (<= 20 in total) with the same vectorised evaluation; :func:`solve_exact`
(a per-task Pareto DP plus a merge over tasks) gives the optimum for larger instances.

Example::

    res = plan("deploy/apps/digits.yaml")          # reads <root>/variants/<task>/profile.csv
    res.exits["digits_resnet18"], res.objective_value, res.objective_ms, res.memory_mb
"""

from __future__ import annotations

import json
import math
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np

from pantheon import console
from pantheon.errors import ArtifactExistsError, InfeasibleError, PlanError, UsageError
from pantheon.formats import ModelBlockProfile, ModelConfig, model_config_to_text, store
from pantheon.formats import store as store_mod
from pantheon.formats.app import App, load_app

MAX_EXHAUSTIVE = 20
EPS = 1e-9
REFERENCE = "reference"
MEAN_TIME = "mean-time"
OBJECTIVES = (REFERENCE, MEAN_TIME)
DEFAULT_OBJECTIVE = REFERENCE


def check_objective(objective: str) -> str:
    """``objective`` if it is one of :data:`OBJECTIVES`, else a one-line :class:`UsageError`."""
    if objective not in OBJECTIVES:
        raise UsageError(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    return objective


def objective_terms(mean_ms: np.ndarray, objective: str) -> np.ndarray:
    """The minimised per-task term ``g(mean(T))``: ``-1/mean(T)`` (reference) or ``mean(T)`` (mean-time)."""
    if objective == MEAN_TIME:
        return mean_ms
    with np.errstate(divide="ignore"):
        return -1.0 / mean_ms


def objective_value(score: float, objective: str) -> float:
    """The objective as reported: ``sum 1/mean(T)`` (1/ms, reference) or ``sum mean(T)`` (ms, mean-time)."""
    return -score if objective == REFERENCE else score


# ------------------------------------------------------------------------------------------------
# Inputs
# ------------------------------------------------------------------------------------------------


@dataclass
class ExitProfile:
    """The profile of one task's exits plus its plan limit (arrays indexed by block/exit ``j``).

    The filters take the objective (:data:`OBJECTIVES`), whose rules differ: see the module
    docstring.
    """

    name: str
    block_ms: np.ndarray
    branch_ms: np.ndarray
    block_mb: np.ndarray
    branch_mb: np.ndarray
    accuracy: np.ndarray
    max_delta_accuracy: float = 0.01
    input_shape: List[int] = field(default_factory=list)
    variants: Optional[Path] = None

    def __post_init__(self) -> None:
        for name in ("block_ms", "branch_ms", "block_mb", "branch_mb", "accuracy"):
            setattr(self, name, np.asarray(getattr(self, name), dtype=float))
        if not 0.0 <= self.max_delta_accuracy <= 1.0:
            raise UsageError(f"max_delta_accuracy of {self.name} must lie in [0, 1], got {self.max_delta_accuracy}")

    @property
    def num_blocks(self) -> int:
        return len(self.block_ms)

    @property
    def exit_ms(self) -> np.ndarray:
        """Latency from the input through exit ``j``."""
        return np.cumsum(self.block_ms) + self.branch_ms

    def reference_accuracy(self, objective: str = DEFAULT_OBJECTIVE) -> float:
        """What (acc) measures the drop against: the best exit's accuracy (reference) or the last exit's."""
        return float(self.accuracy.max() if objective == REFERENCE else self.accuracy[-1])

    def acc_ok(self, objective: str = DEFAULT_OBJECTIVE) -> np.ndarray:
        return np.asarray(self.reference_accuracy(objective) - self.accuracy <= self.max_delta_accuracy + EPS)

    def pareto(self, objective: str = DEFAULT_OBJECTIVE) -> np.ndarray:
        """Exits on the latency/accuracy frontier: weak (reference) or strict (mean-time)."""
        lat, acc = self.exit_ms, self.accuracy
        no_slower = lat[None, :] <= lat[:, None]  # [i, k]: exit k is no slower than exit i
        if objective == REFERENCE:  # off only when an exit no slower is strictly more accurate
            return np.asarray(~(no_slower & (acc[None, :] > acc[:, None])).any(axis=1))
        no_worse = no_slower & (acc[None, :] >= acc[:, None])
        better = (lat[None, :] < lat[:, None]) | (acc[None, :] > acc[:, None])
        return np.asarray(~(no_worse & better).any(axis=1))

    def candidates(self, objective: str = DEFAULT_OBJECTIVE) -> np.ndarray:
        return self.acc_ok(objective) & self.pareto(objective)

    def best(self, objective: str = DEFAULT_OBJECTIVE) -> int:
        """The most accurate candidate exit (the earliest among equals); -1 when there is none."""
        cand = np.flatnonzero(self.candidates(objective))
        if cand.size == 0:
            return -1
        return int(cand[np.argmax(self.accuracy[cand])])

    def tops(self, objective: str = DEFAULT_OBJECTIVE) -> List[int]:
        """(full): the exits of which the plan keeps at least one.

        Reference: every candidate as accurate as the best one (ties count); mean-time: only
        :meth:`best`. Empty when the task has no candidate.
        """
        b = self.best(objective)
        if b < 0 or objective == MEAN_TIME:
            return [] if b < 0 else [b]
        cand = np.flatnonzero(self.candidates(objective))
        return [int(j) for j in cand if self.accuracy[j] >= self.accuracy[b] - EPS]

    def solo_memory(self, j: int) -> float:
        """Memory (MB) of the plan that keeps exit ``j`` only."""
        return float(self.block_mb[: j + 1].sum() + self.branch_mb[j])

    def cost_and_memory(self, X: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """``mean(T)`` (ms) and memory (MB) of every row of ``X`` (N x B, bool)."""
        n, b = X.shape
        T = np.zeros(n)
        covered = np.zeros(n, dtype=bool)
        total = np.zeros(n)
        mem = np.zeros(n)
        for j in range(b - 1, -1, -1):  # T(j) = block[j] + (branch[j] if kept else T(j+1))
            keep = X[:, j]
            T = self.block_ms[j] + np.where(keep, self.branch_ms[j], T)
            covered = covered | keep
            total += np.where(covered, T, 0.0)
            mem += np.where(covered, self.block_mb[j], 0.0) + np.where(keep, self.branch_mb[j], 0.0)
        return total / b, mem


def load_task_profile(variants_dir: Path, task: str, max_delta_accuracy: float) -> ExitProfile:
    from pantheon.offline.profile import PROFILE_CSV, load_variants, read_profile_csv

    v = load_variants(variants_dir)
    if not (variants_dir / PROFILE_CSV).is_file():
        raise PlanError(f"{variants_dir} has no {PROFILE_CSV}; run `pantheon profile --task {task}` first")
    rows = read_profile_csv(variants_dir / PROFILE_CSV, v.num_blocks)
    return ExitProfile(
        name=task,
        block_ms=np.array([r.block_ms for r in rows], dtype=float),
        branch_ms=np.array([r.branch_ms for r in rows], dtype=float),
        block_mb=np.array([r.block_mb for r in rows], dtype=float),
        branch_mb=np.array([r.branch_mb for r in rows], dtype=float),
        accuracy=np.array([r.accuracy for r in rows], dtype=float),
        max_delta_accuracy=max_delta_accuracy,
        input_shape=v.input_shape,
        variants=variants_dir,
    )


def load_profiles(app: App, base: Path) -> List[ExitProfile]:
    """The profile of every task of ``app`` from ``<base>/<task>/``."""
    out = []
    for name, lim in app.tasks.items():
        d = base / name
        if not d.is_dir():
            raise PlanError(
                f"setting {app.source or app.name} names task {name!r} but {d} holds no variants; "
                f"run `pantheon export --task {name}` and `pantheon profile --task {name}`"
            )
        out.append(load_task_profile(d, name, lim.max_delta_accuracy))
    return out


# ------------------------------------------------------------------------------------------------
# The pymoo problem
# ------------------------------------------------------------------------------------------------



class _Layout:
    """Where each task's exits sit in the flat decision vector, and the objective's filters.

    ``tops[i]``: the flat indices of task ``i``'s (full) exits (keep at least one);
    ``minimal``: one top per task, the one needing least memory alone (the smallest plan);
    ``optional``: candidates the repair may drop (every candidate but the tops).
    """

    def __init__(self, tasks: Sequence[ExitProfile], max_memory: Optional[float], objective: str = DEFAULT_OBJECTIVE) -> None:
        self.tasks = list(tasks)
        self.objective = check_objective(objective)
        self.max_memory = math.inf if max_memory is None else float(max_memory)
        self.offsets = np.cumsum([0] + [t.num_blocks for t in tasks])
        self.n_var = int(self.offsets[-1])
        self.acc_ok = np.concatenate([t.acc_ok(objective) for t in tasks])
        self.pareto = np.concatenate([t.pareto(objective) for t in tasks])
        self.candidate = self.acc_ok & self.pareto
        self.tops = [np.array([off + j for j in t.tops(objective)], dtype=int) for off, t in zip(self.offsets, tasks)]
        self.minimal = np.array([off + min(t.tops(objective), key=lambda j: (t.solo_memory(j), j)) if t.tops(objective) else -1
                                 for off, t in zip(self.offsets, tasks)], dtype=int)
        self.is_top = np.zeros(self.n_var, dtype=bool)
        for tp in self.tops:
            self.is_top[tp] = True
        self.optional = self.candidate & ~self.is_top

    def split(self, X: np.ndarray) -> List[np.ndarray]:
        return [X[:, a:b] for a, b in zip(self.offsets[:-1], self.offsets[1:])]

    def measure(self, X: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """Per-task ``mean(T)`` (N x tasks, ms) and total memory (N, MB) of every row."""
        means = np.zeros((len(X), len(self.tasks)))
        M = np.zeros(len(X))
        for i, (t, Xt) in enumerate(zip(self.tasks, self.split(X))):
            means[:, i], m = t.cost_and_memory(Xt)
            M += m
        return means, M

    def evaluate(self, X: np.ndarray) -> Tuple[np.ndarray, np.ndarray]:
        """(minimised score ``sum_t g(mean(T_t))``, memory) of every row."""
        means, M = self.measure(X)
        return objective_terms(means, self.objective).sum(axis=1), M

    def full_ok(self, X: np.ndarray) -> np.ndarray:
        """N x tasks: does the row keep one of the task's tops."""
        return np.column_stack([X[:, tp].any(axis=1) for tp in self.tops])


def make_problem(layout: _Layout) -> Any:
    """The pymoo Problem: binary keep/drop per exit, G <= 0 feasible."""
    from pymoo.core.problem import Problem

    class ExitPlacement(Problem):
        def __init__(self) -> None:
            super().__init__(n_var=layout.n_var, n_obj=1, n_ieq_constr=3 + len(layout.tasks), xl=0, xu=1, vtype=bool)

        def _evaluate(self, X: np.ndarray, out: Dict[str, Any], *args: Any, **kwargs: Any) -> None:
            X = X.astype(bool)
            F, M = layout.evaluate(X)
            out["F"] = F[:, None]
            out["G"] = np.column_stack(
                [
                    (X & ~layout.acc_ok).sum(axis=1),  # (acc) kept exits that lose too much
                    (X & ~layout.pareto).sum(axis=1),  # (par) kept exits off the frontier
                    M - layout.max_memory - EPS,  # (mem)
                    1 - layout.full_ok(X).astype(int),  # (full) one column per task
                ]
            )

    return ExitPlacement()


def make_repair(layout: _Layout, seed: int) -> Any:
    """Apply the per-exit filters, keep one top exit per task, drop optional exits until (mem) holds."""
    from pymoo.core.repair import Repair

    own_rng = np.random.default_rng(seed)

    class PlacementRepair(Repair):
        def _do(self, problem: Any, X: np.ndarray, **kwargs: Any) -> np.ndarray:
            rng = kwargs.get("random_state") or own_rng
            return repair(layout, X, rng)

    return PlacementRepair()


def repair(layout: _Layout, X: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Make every row feasible without making it worse.

    Exits off the candidates go; a task keeping none of its tops gets its ``minimal`` one;
    exits after a task's first kept top go (they only add time after it and memory); then,
    while a row is over budget, one random optional exit per pass is dropped; a row with
    nothing left to drop becomes the smallest plan (feasible after :func:`check_feasible`).
    """
    X = X.astype(bool) & layout.candidate
    for i, (tp, a, b) in enumerate(zip(layout.tops, layout.offsets[:-1], layout.offsets[1:])):
        kept = X[:, tp]
        none = ~kept.any(axis=1)
        X[none, layout.minimal[i]] = True
        first = np.where(none, layout.minimal[i], tp[kept.argmax(axis=1)])  # first kept top (tops are sorted)
        cols = np.arange(a, b)
        X[:, a:b] &= cols[None, :] <= first[:, None]
    if math.isinf(layout.max_memory):
        return X
    over = layout.evaluate(X)[1] > layout.max_memory + EPS
    while over.any():  # each pass drops one random optional exit from every row still over budget
        rows = np.flatnonzero(over)
        droppable = X[rows] & layout.optional
        keys = np.where(droppable, rng.random(droppable.shape), -1.0)
        col = keys.argmax(axis=1)
        has = keys[np.arange(len(rows)), col] >= 0
        X[rows[has], col[has]] = False
        stuck = rows[~has]
        X[stuck] = False
        X[np.ix_(stuck, layout.minimal)] = True
        over[stuck] = False
        over[rows[has]] = layout.evaluate(X[rows[has]])[1] > layout.max_memory + EPS
    return X


# ------------------------------------------------------------------------------------------------
# Solvers
# ------------------------------------------------------------------------------------------------


@dataclass
class Solution:
    x: np.ndarray  # flat bool vector
    score: float  # the minimised sum_t g(mean(T_t))
    memory_mb: float
    solver: str
    evaluations: int = 0


def _solution(layout: _Layout, x: np.ndarray, solver: str, evaluations: int = 0) -> Solution:
    F, M = layout.evaluate(x[None, :])
    return Solution(x, float(F[0]), float(M[0]), solver, evaluations)


def check_feasible(layout: _Layout) -> None:
    """Raise :class:`InfeasibleError` naming the binding constraint and the smallest budget that works."""
    for t, m in zip(layout.tasks, layout.minimal):
        if m < 0:
            which = "best" if layout.objective == REFERENCE else "original"
            raise InfeasibleError(
                f"accuracy: task {t.name} has no exit within max_delta_accuracy {t.max_delta_accuracy} "
                f"of its {which} accuracy {t.reference_accuracy(layout.objective):.4f}"
            )
    x = np.zeros((1, layout.n_var), dtype=bool)
    x[0, layout.minimal] = True
    if layout.objective == REFERENCE:  # 1/mean(T) needs mean(T) > 0 for every plan: T(0) = latency of the first kept exit
        for t, a in zip(layout.tasks, layout.offsets[:-1]):
            zero = [int(j) for j in np.flatnonzero(layout.candidate[a:a + t.num_blocks]) if t.exit_ms[j] <= 0]
            if zero:
                raise PlanError(f"task {t.name}: exit {zero[0]} has latency 0 ms in its profile; the reference objective "
                                f"(sum of 1/mean time) needs positive latencies (or use --objective {MEAN_TIME})")
    need = float(layout.evaluate(x)[1][0])
    if need > layout.max_memory + EPS:
        parts = ", ".join(
            f"{t.name} {float(t.cost_and_memory(x[:, a:b])[1][0]):.2f} MB"
            for t, a, b in zip(layout.tasks, layout.offsets[:-1], layout.offsets[1:])
        )
        raise InfeasibleError(
            f"memory: max_memory {layout.max_memory:g} MB is too small; the smallest feasible budget is "
            f"{math.ceil(need * 100) / 100:.2f} MB (each task's most accurate admissible exit and its blocks: {parts})"
        )


def solve_ga(layout: _Layout, *, generations: int = 100, pop_size: int = 100, seed: int = 0) -> Solution:
    """pymoo GA over the flat binary vector (seeded sampling, two-point crossover, bit flips, repair)."""
    from pymoo.algorithms.soo.nonconvex.ga import GA, comp_by_cv_and_fitness
    from pymoo.core.duplicate import DefaultDuplicateElimination
    from pymoo.core.mating import Mating
    from pymoo.operators.crossover.pntx import TwoPointCrossover
    from pymoo.operators.mutation.bitflip import BitflipMutation
    from pymoo.operators.selection.tournament import TournamentSelection
    from pymoo.optimize import minimize

    rng = np.random.default_rng(seed)
    init = rng.random((pop_size, layout.n_var)) < 0.5
    init[0] = layout.candidate  # everything admissible (the best plan when memory is no issue)
    init[1] = False  # repaired to the smallest plan (always feasible after check_feasible)
    rep = make_repair(layout, seed)
    init = repair(layout, init, rng)
    n_opt = max(int(layout.optional.sum()), 1)
    dedup = DefaultDuplicateElimination()
    # few retries for non-duplicate offspring: small instances have few distinct plans, and
    # pymoo's default (100 mating rounds per generation) would spend its time re-drawing them
    mating = Mating(
        TournamentSelection(func_comp=comp_by_cv_and_fitness),
        TwoPointCrossover(),
        BitflipMutation(prob=1.0, prob_var=min(0.5, 1.0 / n_opt)),
        repair=rep,
        eliminate_duplicates=dedup,
        n_max_iterations=5,
    )
    algorithm = GA(pop_size=pop_size, sampling=init, repair=rep, eliminate_duplicates=dedup, mating=mating)
    res = minimize(make_problem(layout), algorithm, ("n_gen", max(1, generations)), seed=seed, verbose=False)
    if res.X is None:
        raise InfeasibleError("the GA found no feasible placement (this should not happen after the feasibility check)")
    x = np.asarray(res.X, dtype=bool).reshape(-1)
    return _solution(layout, x, "ga", int(res.algorithm.evaluator.n_eval))


def solve_exhaustive(layout: _Layout, chunk: int = 1 << 15) -> Solution:
    """Enumerate every subset of the candidate exits (<= 20 candidates in total).

    A task's only top exit is always kept; with several tops (reference ties) they are
    enumerated too and subsets keeping none of them are skipped. Among equal scores the
    first subset in enumeration order wins.
    """
    n_cand = int(layout.candidate.sum())
    if n_cand > MAX_EXHAUSTIVE:
        raise UsageError(f"--exhaustive handles at most {MAX_EXHAUSTIVE} candidate exits, this setting has {n_cand}; drop --exhaustive")
    forced = np.concatenate([tp for tp in layout.tops if len(tp) == 1] + [np.zeros(0, dtype=int)])
    free = np.flatnonzero(layout.candidate & ~np.isin(np.arange(layout.n_var), forced))
    n = 1 << len(free)
    best: Optional[Tuple[float, float, np.ndarray]] = None
    for start in range(0, n, chunk):
        codes = np.arange(start, min(n, start + chunk), dtype=np.int64)
        X = np.zeros((len(codes), layout.n_var), dtype=bool)
        X[:, forced] = True
        X[:, free] = (codes[:, None] >> np.arange(len(free))) & 1 == 1
        F, M = layout.evaluate(X)
        F = np.where((M <= layout.max_memory + EPS) & layout.full_ok(X).all(axis=1), F, np.inf)
        i = int(np.argmin(F))
        if np.isfinite(F[i]) and (best is None or F[i] < best[0] - EPS):
            best = (float(F[i]), float(M[i]), X[i].copy())
    if best is None:
        raise InfeasibleError("no placement meets max_memory")
    return Solution(best[2], best[0], best[1], "exhaustive", n)


def _prune(points: List[Tuple[float, float, Tuple[int, ...]]]) -> List[Tuple[float, float, Tuple[int, ...]]]:
    """Keep the (memory, cost) Pareto set."""
    out: List[Tuple[float, float, Tuple[int, ...]]] = []
    for m, c, s in sorted(points, key=lambda p: (p[0], p[1])):
        if not out or c < out[-1][1] - EPS:
            out.append((m, c, s))
    return out


def task_frontier(t: ExitProfile, limit: float = math.inf,
                  objective: str = DEFAULT_OBJECTIVE) -> List[Tuple[float, float, Tuple[int, ...]]]:
    """Exact (memory, mean(T), kept exits) Pareto set of one task, by DP over its candidates in order.

    A state is "the last kept exit so far is ``k``"; its memory counts blocks ``0..k`` and
    the kept branches, its cost the sum of ``T(j)`` for ``j <= k``. A plan ends at one of the
    task's tops (exits after the first kept top only add time and memory, so no optimum
    keeps them).
    """
    tops = t.tops(objective)
    if not tops:
        return []
    cand = [int(j) for j in np.flatnonzero(t.candidates(objective)) if j <= max(tops)]
    b = t.num_blocks

    def seg(prev: int, k: int) -> float:  # sum over blocks prev+1..k of the time to finish at exit k
        return sum(float(t.block_ms[j : k + 1].sum()) + float(t.branch_ms[k]) for j in range(prev + 1, k + 1))

    states: Dict[int, List[Tuple[float, float, Tuple[int, ...]]]] = {-1: [(0.0, 0.0, ())]}
    done: List[Tuple[float, float, Tuple[int, ...]]] = []
    for k in cand:
        pts = [(m + float(t.block_mb[p + 1 : k + 1].sum()) + float(t.branch_mb[k]), c + seg(p, k), s + (k,))
               for p, fr in states.items() for m, c, s in fr]
        pts = _prune([q for q in pts if q[0] <= limit + EPS])
        if k in tops:
            done += [(m, c / b, s) for m, c, s in pts]
        else:
            states[k] = pts
    return _prune(done)


def solve_exact(layout: _Layout) -> Solution:
    """Exact optimum for any size: per-task Pareto DP, then a (memory, score) merge across tasks."""
    total: List[Tuple[float, float, Tuple[int, ...]]] = [(0.0, 0.0, ())]
    for t, off in zip(layout.tasks, layout.offsets[:-1]):
        fr = [(m, float(objective_terms(np.array(c), layout.objective)), s)
              for m, c, s in task_frontier(t, layout.max_memory, layout.objective)]
        total = _prune(
            [(m1 + m2, c1 + c2, s1 + tuple(int(off) + j for j in s2)) for m1, c1, s1 in total for m2, c2, s2 in fr
             if m1 + m2 <= layout.max_memory + EPS]
        )
    if not total:
        raise InfeasibleError("no placement meets max_memory")
    m, c, s = min(total, key=lambda p: p[1])
    x = np.zeros(layout.n_var, dtype=bool)
    x[list(s)] = True
    return _solution(layout, x, "exact-dp")


# ------------------------------------------------------------------------------------------------
# The plan and the repository
# ------------------------------------------------------------------------------------------------


@dataclass
class PlanResult:
    """A plan: kept exits per task and what they cost.

    ``objective`` names the rules the plan was made with (:data:`OBJECTIVES`) and
    ``objective_value`` is that objective's value: ``sum_t 1/mean(T_t)`` in 1/ms
    (``reference``, higher is better) or ``sum_t mean(T_t)`` in ms (``mean-time``, lower is
    better). ``objective_ms`` is always ``sum_t mean(T_t)`` (ms), whichever objective chose it.
    ``skipped`` (not part of ``plan.json``): :func:`plan` found the repository up to date and
    read this plan back instead of solving.
    """

    app: str
    exits: Dict[str, List[int]]
    candidates: Dict[str, List[int]]
    objective_ms: float
    memory_mb: float
    max_memory: Optional[float]
    solver: str
    per_task: Dict[str, Dict[str, Any]]
    repository: Optional[Path] = None
    dispatch_overhead_us: Optional[float] = None  # measured where the chunks were profiled
    min_chunk_us: float = 0.0  # blocks were merged into chunks of at least this profiled latency
    chunks: Dict[str, List[List[int]]] = field(default_factory=dict)  # deployed chunk -> original blocks
    profile_device: Optional[str] = None  # where the profiles were measured ("cuda (...)", "cpu (...)")
    objective: str = MEAN_TIME  # plans written before the choice existed used mean-time
    objective_value: Optional[float] = None
    skipped: bool = False

    @classmethod
    def from_json(cls, d: Dict[str, Any]) -> PlanResult:
        names = ("app", "exits", "candidates", "objective_ms", "memory_mb", "max_memory", "solver", "per_task")
        optional = ("dispatch_overhead_us", "min_chunk_us", "chunks", "profile_device", "objective", "objective_value")
        extra = {k: d[k] for k in optional if k in d}
        return cls(**{k: d[k] for k in names}, **extra)

    def to_json(self) -> Dict[str, Any]:
        d = asdict(self)
        del d["skipped"]  # how this call went, not part of the plan
        d["tasks"] = list(self.exits)  # task order = task index in workloads
        d["repository"] = str(self.repository) if self.repository else None
        return d


def optimise(
    tasks: Sequence[ExitProfile],
    max_memory: Optional[float],
    *,
    generations: int = 100,
    pop_size: int = 100,
    seed: int = 0,
    exhaustive: bool = False,
    app: str = "app",
    objective: str = DEFAULT_OBJECTIVE,
) -> PlanResult:
    """Solve the placement for ``tasks`` under ``objective`` (no files touched).

    ``objective="reference"`` maximises ``sum_t 1/mean(T_t)`` with the allowed accuracy drop
    measured against each task's best exit and ties kept on the frontier;
    ``objective="mean-time"`` minimises ``sum_t mean(T_t)`` against the last exit with a
    strict frontier (see the module docstring).
    """
    check_objective(objective)
    if generations < 1 or pop_size < 2:
        raise UsageError("--ga-gen must be >= 1 and --pop >= 2")
    if max_memory is not None and max_memory <= 0:
        raise UsageError(f"max_memory must be positive, got {max_memory}")
    layout = _Layout(tasks, max_memory, objective)
    check_feasible(layout)
    sol = solve_exhaustive(layout) if exhaustive else solve_ga(layout, generations=generations, pop_size=pop_size, seed=seed)
    exits, cands, per_task = {}, {}, {}
    means, _ = layout.measure(sol.x[None, :])
    for t, a, b in zip(layout.tasks, layout.offsets[:-1], layout.offsets[1:]):
        xt = sol.x[a:b]
        f, m = t.cost_and_memory(xt[None, :])
        exits[t.name] = [int(j) for j in np.flatnonzero(xt)]
        cands[t.name] = [int(j) for j in np.flatnonzero(t.candidates(objective))]
        per_task[t.name] = {
            "num_blocks": t.num_blocks,
            "mean_time_ms": float(f[0]),
            "objective_term": objective_value(float(objective_terms(f, objective)[0]), objective),
            "memory_mb": float(m[0]),
            "max_delta_accuracy": t.max_delta_accuracy,
            "reference_accuracy": t.reference_accuracy(objective),
            "original_accuracy": float(t.accuracy[-1]),
            "exit_accuracy": {str(j): float(t.accuracy[j]) for j in exits[t.name]},
            "exit_latency_ms": {str(j): float(t.exit_ms[j]) for j in exits[t.name]},
        }
    return PlanResult(app, exits, cands, float(means.sum()), sol.memory_mb, max_memory, sol.solver, per_task,
                      objective=objective, objective_value=objective_value(sol.score, objective))


def chunk_groups(t: ExitProfile, exits: Sequence[int], min_chunk_us: float) -> List[List[int]]:
    """Blocks ``0..max(exits)`` grouped into deployed chunks of at least ``min_chunk_us``.

    Adjacent blocks are merged while their profiled latency together is below
    ``min_chunk_us``, so that no chunk costs more to dispatch than to run. A chunk always
    ends at a kept exit (a job can only leave between chunks) and at the last block; the
    last chunk of a run may stay shorter. ``min_chunk_us = 0`` keeps every block alone.
    """
    kept = set(int(j) for j in exits)
    last = max(kept)
    groups: List[List[int]] = []
    cur: List[int] = []
    acc = 0.0
    for j in range(last + 1):
        cur.append(j)
        acc += float(t.block_ms[j]) * 1000.0
        if j in kept or acc >= min_chunk_us or j == last:
            groups.append(cur)
            cur, acc = [], 0.0
    return groups


def model_config(t: ExitProfile, exits: Sequence[int], groups: Optional[Sequence[Sequence[int]]] = None) -> ModelConfig:
    """``config.pbtxt`` of task ``t`` with the kept ``exits`` (latencies in us).

    With ``groups`` (:func:`chunk_groups`), block ``g`` of the config is the merged chunk
    ``groups[g]`` (its latency the sum of its blocks') and an exit's id is the chunk it follows.
    """
    groups = groups or [[j] for j in range(max(exits) + 1)]
    cfg = ModelConfig(name=t.name, dims=[1, *t.input_shape])
    for g, blocks in enumerate(groups):
        lat = sum(int(round(t.block_ms[j] * 1000)) for j in blocks)
        cfg.block_profile.append(ModelBlockProfile(id=g, latency=lat))
    chunk_of = {grp[-1]: g for g, grp in enumerate(groups)}
    for j in sorted(exits):
        cfg.exit_profile.append(
            ModelBlockProfile(id=chunk_of[j], latency=int(round(t.branch_ms[j] * 1000)), accuracy=float(t.accuracy[j]))
        )
    return cfg


def merge_chunks(paths: Sequence[Path], dest: Path) -> None:
    """Save the TorchScript blocks ``paths`` as one TorchScript chunk that runs them in order."""
    import torch

    from pantheon.online.repository import load_torchscript

    mods = [load_torchscript(p, "cpu") for p in paths]
    merged = torch.jit.script(torch.nn.Sequential(*mods)).eval()
    store.save_torch(lambda f: torch.jit.save(merged, f), dest)


def write_repository(res: PlanResult, tasks: Sequence[ExitProfile], dest: Path, *, inputs: Dict[str, Any], force: bool) -> Path:
    """Write the deployment model repository (config.pbtxt, model_files/, plan.json, manifest).

    Blocks are merged per :attr:`PlanResult.chunks` (the merged chunk named after its
    position in the repository); the manifest's ``meta`` carries the dispatch overhead the
    profiles were measured with, which the scheduler and simulator charge per chunk.
    """
    from pantheon.offline.profile import load_variants
    from pantheon.online.repository import chunk_file

    meta = {"app": res.app, "tasks": list(res.exits), "dispatch_overhead_us": res.dispatch_overhead_us or 0.0,
            "min_chunk_us": res.min_chunk_us, "profile_device": res.profile_device}
    with store.write_artifact(dest, kind="repository", inputs=inputs, meta=meta, force=force) as tmp:
        for t in tasks:
            exits = res.exits[t.name]
            groups = res.chunks.get(t.name) or [[j] for j in range(max(exits) + 1)]
            v = load_variants(t.variants) if t.variants else None
            files = tmp / t.name / "model_files"
            files.mkdir(parents=True)
            (tmp / t.name / "config.pbtxt").write_text(model_config_to_text(model_config(t, exits, groups)))
            if v is None:
                continue
            width = 3 if len(groups) > 100 else 2
            for g, blocks in enumerate(groups):
                out = files / f"block_{g:0{width}d}.pt"
                if len(blocks) == 1:
                    shutil.copy2(v.block(blocks[0]), out)
                else:
                    merge_chunks([v.block(j) for j in blocks], out)
            for g, blocks in enumerate(groups):
                if blocks[-1] in exits:
                    shutil.copy2(v.branch(blocks[-1]), files / f"branch_{g:0{width}d}.pt")
        for t in tasks:  # every deployed file is where the runtime looks for it
            for g in range(len(res.chunks.get(t.name) or [])):
                if t.variants and chunk_file(tmp / t.name / "model_files", "block", g) is None:
                    raise PlanError(f"{t.name}: chunk {g} was not written")
        (tmp / "plan.json").write_text(json.dumps(res.to_json(), indent=2) + "\n")
    return dest


def profile_facts(tasks: Sequence[ExitProfile]) -> Tuple[Optional[float], Optional[str]]:
    """The per-chunk dispatch overhead measured with the tasks' profiles (the largest; None:
    unknown) and the device they were measured on (the first recorded)."""
    found: List[float] = []
    devices: List[str] = []
    for t in tasks:
        if t.variants is None or not (t.variants / "profile.json").is_file():
            continue
        try:
            record = json.loads((t.variants / "profile.json").read_text())
        except (OSError, ValueError):
            continue
        if not isinstance(record, dict):
            continue
        v = record.get("dispatch_overhead_us")
        if isinstance(v, (int, float)) and math.isfinite(v) and v >= 0:
            found.append(float(v))
        if isinstance(record.get("device"), str):
            devices.append(record["device"])
    return (max(found) if found else None), (devices[0] if devices else None)


def plan(
    setting: str,
    *,
    base: Optional[Path] = None,
    save: Optional[Path] = None,
    generations: int = 100,
    pop_size: int = 100,
    seed: int = 0,
    exhaustive: bool = False,
    force: bool = False,
    min_chunk_us: Optional[float] = None,
    objective: str = DEFAULT_OBJECTIVE,
    store: Optional[store_mod.Store] = None,
) -> PlanResult:
    """Plan the exits of application ``setting`` (name, YAML app file or reference settings JSON).

    Args:
        setting: ``digits``, ``deploy/apps/traffic.yaml`` or ``settings.json``.
        base: directory holding ``<task>/`` variants dirs (default ``<root>/variants``).
        save: repository destination (default ``<root>/apps/<app>/repository``).
        generations, pop_size, seed: the GA; ``exhaustive`` enumerates instead.
        force: replace an existing repository made from other inputs (one made from the
            same variants, profiles, limits, objective and solver options is kept: "skipped (up to date)").
        min_chunk_us: merge adjacent blocks into deployed chunks of at least this profiled
            latency (:func:`chunk_groups`); default: the per-dispatch overhead measured with
            the profiles (0 when they carry none), so no chunk costs more to launch than to run.
        objective: ``reference`` (default: maximise ``sum 1/mean(T)``, allowed drop against
            each task's best accuracy, ties with a faster exit kept) or ``mean-time``
            (minimise ``sum mean(T)``, drop against the last exit, ties dropped).
        store: the artifact store of the defaults above and of app copies (default: the one at
            ``$PANTHEON_DATA``).

    Returns: the :class:`PlanResult` (``repository`` = where it was written; ``skipped``: it
    was up to date and read back).
    """
    check_objective(objective)
    st = store or store_mod.Store()
    app = load_app(setting, st)
    base = Path(base) if base is not None else st.root / "variants"
    dest = Path(save) if save is not None else st.repository_dir(app.name)
    if min_chunk_us is not None and (not math.isfinite(min_chunk_us) or min_chunk_us < 0):
        raise UsageError(f"--min-chunk-us must be a finite number >= 0, got {min_chunk_us}")
    tasks = load_profiles(app, base)
    overhead, device = profile_facts(tasks)
    threshold = float(min_chunk_us) if min_chunk_us is not None else float(overhead or 0.0)
    inputs = {
        "app": app.name,
        "variants": {
            t.name: store_mod.fingerprint({k: e.sha256 for k, e in store_mod.read_manifest(t.variants).files.items()})
            for t in tasks if t.variants
        },
        "limits": {t.name: t.max_delta_accuracy for t in tasks},
        "max_memory": app.max_memory,
        "solver": {"exhaustive": exhaustive, "ga_gen": generations, "pop": pop_size, "seed": seed},
        "min_chunk_us": threshold,
        "objective": objective,
    }
    if dest.exists() and not force:  # decided before the solver runs
        if store_mod.is_complete(dest, inputs) and (dest / "plan.json").is_file():
            res = PlanResult.from_json(json.loads((dest / "plan.json").read_text()))
            res.repository = dest
            res.skipped = True
            console.info(f"plan {app.name}: skipped (up to date): {dest}")
            return res
        raise ArtifactExistsError(f"{dest} already exists; pass --force to replace it")
    res = optimise(tasks, app.max_memory, generations=generations, pop_size=pop_size, seed=seed, exhaustive=exhaustive, app=app.name,
                   objective=objective)
    res.dispatch_overhead_us = overhead
    res.profile_device = device
    res.min_chunk_us = threshold
    res.chunks = {t.name: chunk_groups(t, res.exits[t.name], threshold) for t in tasks}
    res.repository = write_repository(res, tasks, dest, inputs=inputs, force=force)
    return res


def objective_line(res: PlanResult) -> str:
    """The summary of a plan's objective, e.g. ``objective reference: sum 1/mean(T) 0.5000 /ms (sum mean(T) 4.000 ms)``."""
    total = f"sum mean(T) {res.objective_ms:.3f} ms"
    if res.objective == REFERENCE and res.objective_value is not None:
        return f"objective {REFERENCE} (maximise): sum 1/mean(T) {res.objective_value:.4f} /ms ({total})"
    return f"objective {res.objective} (minimise): {total}"
