"""Drop rules and downgrade rankings of the pantheon policy, measured in the simulator.

What the pantheon refresh does with a hopeless job (``--drop-rule``, see
``pantheon/online/scheduler.py``): ``shed`` sets aside the job among the first k whose smallest
remaining latency is the largest and rescans, ``skip`` sets aside the hopeless job itself,
``keep`` lowers every earlier job to its smallest exit and keeps the hopeless one's time in
the scan (the reference runtime's rule). ``--downgrade`` ranks exit downgrades by absolute
(the reference) or relative accuracy lost.

Data sets:

``default+fallback`` is the default rules with the fallback to a passed exit (the scheduler's
``fallback=True``).

* ``random``: many small random task sets and workloads (1-3 tasks, 4-12 jobs, tight
  deadlines), every rule on each; how many cases the rules decide differently;
* ``modelled``: the paper apps with modelled profiles (``bench/policies.py``'s ``paper_app``:
  zoo chunks timed on this CPU, scaled to the paper board, modelled accuracies, GA plan) and
  their YAML workloads (3 seeds, 10 s, 5% latency noise);
* ``reference``: the reference artifact's own profiles (``bench/reference/profiles/<app>/*/
  config.pbtxt``, read with :func:`pantheon.formats.read_model_config`) and workloads
  (``bench/reference/settings/workload/<app>.bin``, jobs mapped to tasks by ``model_name``),
  every policy, no noise; next to the serial lower bound: the fewest jobs that must miss
  with every job at its smallest exit on one preemptive serial device (exact: each group of
  jobs that cannot interact is searched exhaustively once Moore-Hodgson gives a first answer).

Usage::

    python bench/drop_rule.py --json
    python bench/drop_rule.py --save          # records bench/results/drop_rule.json
    python bench/drop_rule.py --only reference
"""

from __future__ import annotations

import argparse
import itertools
import random
import sys
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon import console
from pantheon.formats import Workloads, read_model_config, read_workloads
from pantheon.online.repository import Repository, TaskProfile
from pantheon.online.scheduler import DOWNGRADES, DROP_RULES, POLICIES
from pantheon.online.simulate import simulate
from pantheon.online.workload import JobSpec, validate

REFERENCE = Path(__file__).resolve().parent / "reference"
REFERENCE_APPS = {"traffic": "indoor_smart_traffic", "robot": "robot", "uav": "uav"}


# -- the reference's profiles and workloads -----------------------------------------------------


def reference_repository(app: str) -> Tuple[Repository, Workloads]:
    """Task profiles from the reference's ``config.pbtxt`` files and its ``<app>.bin`` workload."""
    ref = REFERENCE_APPS[app]
    ws = read_workloads(REFERENCE / "settings" / "workload" / f"{ref}.bin")
    order: List[str] = []
    for w in ws.workload:
        if w.model_name not in order:
            order.append(w.model_name)
    tasks = {}
    for i, name in enumerate(order):
        cfg = read_model_config(REFERENCE / "profiles" / ref / name / "config.pbtxt")
        blocks = [b.latency for b in sorted(cfg.block_profile, key=lambda b: b.id)]
        exits = [(e.id, e.latency, round(float(e.accuracy), 6)) for e in cfg.exit_profile]
        tasks[name] = TaskProfile(name, blocks, exits, index=i, dims=list(cfg.dims))
    return Repository(Path(f"<reference {ref} profiles>"), tasks, app=app), ws


def _edf_feasible(jobs: Sequence[Tuple[int, int, int]]) -> bool:
    """Whether preemptive EDF meets every deadline of ``(release, deadline, work)`` jobs."""
    import heapq

    js = sorted(jobs)
    t = 0
    i = 0
    ready: List[Tuple[int, int]] = []  # (deadline, work left)
    while i < len(js) or ready:
        if not ready:
            t = max(t, js[i][0])
        while i < len(js) and js[i][0] <= t:
            heapq.heappush(ready, (js[i][1], js[i][2]))
            i += 1
        d, w = heapq.heappop(ready)
        nxt = js[i][0] if i < len(js) else None
        if nxt is not None and t + w > nxt:
            heapq.heappush(ready, (d, w - (nxt - t)))
            t = nxt
            continue
        t += w
        if t > d:
            return False
    return True


def _max_feasible(group: List[Tuple[int, int, int]]) -> Tuple[int, bool]:
    """Most jobs of ``group`` that can all meet their deadlines; (count, exact)."""
    if _edf_feasible(group):
        return len(group), True
    # Moore-Hodgson on EDF order (optimal without release times): a first, feasible answer.
    kept: List[Tuple[int, int, int]] = []
    for j in sorted(group, key=lambda j: (j[1], j[0])):
        kept.append(j)
        while kept and not _edf_feasible(kept):
            kept.remove(max(kept, key=lambda k: k[2]))
    best = len(kept)
    if len(group) > 16:
        return best, False
    for size in range(len(group) - 1, best, -1):  # is there a larger feasible subset?
        if any(_edf_feasible(list(c)) for c in itertools.combinations(group, size)):
            return size, True
    return best, True


def serial_lower_bound(repo: Repository, specs: Sequence[JobSpec]) -> Dict[str, Any]:
    """Fewest deadline misses with every job at its smallest exit on a preemptive serial device."""
    jobs = sorted((s.release, s.deadline, repo.tasks[s.task].full[0]) for s in specs)
    groups: List[List[Tuple[int, int, int]]] = []
    horizon = -1
    for j in jobs:  # a job released after every earlier deadline cannot interact with them
        if j[0] >= horizon:
            groups.append([])
        groups[-1].append(j)
        horizon = max(horizon, j[1])
    kept, exact = 0, True
    for g in groups:
        k, e = _max_feasible(g)
        kept += k
        exact = exact and e
    return {"dmr": round(1 - kept / len(jobs), 4), "jobs": len(jobs), "largest_group": max(map(len, groups)),
            "exact": exact}


def reference_set(apps: Sequence[str]) -> Dict[str, Any]:
    out: Dict[str, Any] = {}
    for app in apps:
        repo, ws = reference_repository(app)
        specs = validate(ws, repo, where=app)
        row: Dict[str, Any] = {"jobs": len(specs), "serial_lower_bound": serial_lower_bound(repo, specs),
                               "pantheon": {}, "baselines": {}}
        for rule in DROP_RULES:
            for down in DOWNGRADES:
                s = simulate(repo, ws, "pantheon", jobs=specs, drop_rule=rule, downgrade=down)
                row["pantheon"][f"{rule}/{down}"] = {"dmr": s["dmr"], "relative_accuracy": s["relative_accuracy"]}
        s = simulate(repo, ws, "pantheon", jobs=specs, fallback=True)
        row["pantheon"]["default+fallback"] = {"dmr": s["dmr"], "relative_accuracy": s["relative_accuracy"],
                                               "fallback_exits": s["fallback_exits"]}
        for p in POLICIES[1:]:
            s = simulate(repo, ws, p, jobs=specs)
            row["baselines"][p] = {"dmr": s["dmr"], "relative_accuracy": s["relative_accuracy"]}
        default = row["pantheon"][f"{DROP_RULES[0]}/{DOWNGRADES[0]}"]["dmr"]
        row["default_within_2_points_of_bound"] = default <= row["serial_lower_bound"]["dmr"] + 0.02
        row["default_not_above_any_baseline"] = all(default <= b["dmr"] for b in row["baselines"].values())
        out[app] = row
        console.info(f"reference {app}: bound {row['serial_lower_bound']['dmr']}, pantheon {default}")
    return out


# -- random small cases -------------------------------------------------------------------------


def random_case(rng: random.Random) -> Tuple[Repository, Workloads]:
    tasks = {}
    for i in range(rng.randint(1, 3)):
        nb = rng.randint(2, 6)
        blocks = [rng.randint(2, 10) * 10 for _ in range(nb)]
        ex = sorted(set(rng.sample(range(nb - 1), rng.randint(0, nb - 1))) | {nb - 1})
        accs = sorted(rng.sample(range(40, 99), len(ex)))
        tasks[f"t{i}"] = TaskProfile(f"t{i}", blocks, [(b, rng.randint(1, 5) * 10, a / 100) for b, a in zip(ex, accs)],
                                     index=i)
    ws = Workloads()
    t = 0
    names = list(tasks)
    for _ in range(rng.randint(4, 12)):
        t += rng.randint(0, 120)
        task = tasks[rng.choice(names)]
        w = ws.workload.add()
        w.model_name = task.name
        w.release = t
        w.deadline = t + int(task.full_latency * rng.uniform(0.4, 2.5))
    return Repository(Path("<random>"), tasks, app="random"), ws


def random_set(cases: int, seed: int) -> Dict[str, Any]:
    rng = random.Random(seed)
    keys = [f"{r}/{d}" for r in DROP_RULES for d in DOWNGRADES] + ["default+fallback"]
    tot = {k: {"missed": 0, "acc": 0.0} for k in keys}
    jobs = 0
    differ = {f"{a} vs {b}": 0 for a, b in itertools.combinations(DROP_RULES, 2)}
    better = {f"{a} vs {b}": [0, 0] for a, b in itertools.combinations(DROP_RULES, 2)}
    for _ in range(cases):
        repo, ws = random_case(rng)
        jobs += len(ws.workload)
        dmr = {}
        for k in keys:
            r, d = k.split("/") if "/" in k else (DROP_RULES[0], DOWNGRADES[0])
            s = simulate(repo, ws, "pantheon", drop_rule=r, downgrade=d, fallback=k == "default+fallback")
            tot[k]["missed"] += round(s["dmr"] * s["jobs"])
            tot[k]["acc"] += s["relative_accuracy"] * s["jobs"]
            dmr[k] = s["dmr"]
        for a, b in itertools.combinations(DROP_RULES, 2):
            x, y = dmr[f"{a}/absolute"], dmr[f"{b}/absolute"]
            if x != y:
                differ[f"{a} vs {b}"] += 1
                better[f"{a} vs {b}"][0 if x < y else 1] += 1
    return {"cases": cases, "jobs": jobs,
            "per_rule": {k: {"dmr": round(v["missed"] / jobs, 4), "relative_accuracy": round(v["acc"] / jobs, 4)}
                         for k, v in tot.items()},
            "cases_with_different_dmr_absolute": differ,
            "fewer_misses_first_vs_second": better}


# -- paper apps, modelled profiles ---------------------------------------------------------------


def modelled_set(apps: Sequence[str], seeds: Sequence[int], duration: float, jitter: float) -> Dict[str, Any]:
    from policies import paper_app

    from pantheon.online.workload import generate

    out: Dict[str, Any] = {}
    for name in apps:
        pa = paper_app(name)
        repo, app = pa["repo"], pa["app"]
        row: Dict[str, Any] = {}
        for rule in DROP_RULES:
            for down in DOWNGRADES:
                d, a = [], []
                for seed in seeds:
                    ws = generate(app, repo=repo, seed=seed, duration_s=duration)
                    s = simulate(repo, ws, "pantheon", jitter=jitter, seed=seed, drop_rule=rule, downgrade=down)
                    d.append(s["dmr"])
                    a.append(s["relative_accuracy"])
                row[f"{rule}/{down}"] = {"dmr": round(sum(d) / len(d), 4), "relative_accuracy": round(sum(a) / len(a), 4)}
        out[name] = {"utilisation_original_exits": pa["utilisation_original_exits"], "pantheon": row}
        console.info(f"modelled {name}: done")
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", choices=["random", "modelled", "reference"], action="append")
    ap.add_argument("--cases", type=int, default=2000, help="random cases")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0)
    ap.add_argument("--jitter", type=float, default=0.05)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    parts = args.only or ["random", "modelled", "reference"]
    result: Dict[str, Any] = {"drop_rules": list(DROP_RULES), "downgrades": list(DOWNGRADES),
                              "default": f"{DROP_RULES[0]}/{DOWNGRADES[0]}"}
    if "random" in parts:
        result["random"] = random_set(args.cases, seed=0)
    if "modelled" in parts:
        result["modelled"] = modelled_set(list(REFERENCE_APPS), list(range(args.seeds)), args.duration, args.jitter)
        result["modelled_settings"] = {"seeds": args.seeds, "duration_s": args.duration, "jitter": args.jitter}
    if "reference" in parts:
        result["reference"] = reference_set(list(REFERENCE_APPS))
    emit("drop_rule", result, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
