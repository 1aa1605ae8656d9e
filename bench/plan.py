"""Exit placement: plan time of the four apps and the GA's gap to the optimum.

Profiles are built from the zoo's real architectures (no training, no board):

* the task's model is sliced and given exits exactly as ``pantheon construct`` does
  (``build_multi_exit``); memory = parameters + buffers of every block and exit (MB);
* latency is **modelled**: FLOP-proportional (torch's FlopCounterMode) plus 0.05 ms
  per chunk (kernel-launch overhead), scaled so the full model takes 40% of the task's
  tightest deadline in the app (the paper's 20-31 ms);
* accuracy is **modelled**: a rising curve in the FLOP fraction reached at exit j,
  ``a_j = a_orig * (1 - 0.4 * (1 - f_j) ** 1.5)`` plus seeded noise of 0.3 points, with
  the original head at a plausible ``a_orig`` per task.

Each app is planned with the GA at the CLI defaults (100 generations, population 100),
once at the app's memory budget and once at a tight budget (halfway between the smallest
placement and keeping every admissible exit, where the memory knapsack binds), and
once more with max_delta_accuracy 0.10 for every task (many candidates), and
compared with the optimum: exhaustive enumeration when the admissible candidates
number at most 20, else the exact Pareto DP (``solve_exact``). When the app's memory
budget is below the smallest placement of these (untrained, zoo-sized) models, the
infeasibility message is recorded and the plan is run at 1.2x that smallest budget.

Every case is planned under both objectives (``pantheon plan --objective``): ``reference``
(maximise sum 1/mean(T); drop against the best accuracy; ties kept on the frontier) and
``mean-time`` (minimise sum mean(T); drop against the last exit; ties dropped), at the same
budget (computed with the mean-time rules, whose smallest placement is never below the
reference's). ``reference_value_of_mean_time_plan`` scores the mean-time plan by the
reference objective, and ``mean_time_plan_loss_pct`` is how much lower that is than the
reference optimum: what planning with the earlier rules costs by the reference's measure.

Usage::

    python bench/plan.py --json
    python bench/plan.py --save       # records bench/results/plan.json
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
import time
from pathlib import Path
from typing import Any, Dict, List

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon import console
from pantheon.errors import InfeasibleError
from pantheon.formats.app import load_app
from pantheon.offline import plan as pl

APPS = ["traffic", "robot", "uav", "digits"]
ORIGINAL_ACC = {  # plausible original accuracies (fractions); mAP@0.5 for the detectors
    "object_detection": 0.72, "sign_recognition": 0.98, "face_detection": 0.90, "age_classification": 0.60,
    "gender_classification": 0.88, "emotion_classification": 0.70, "wildfire_detection": 0.80,
    "wildlife_recognition": 0.92, "scene_recognition": 0.88, "digits_resnet18": 0.97,
    "digits_mobilenet_v2": 0.95, "digits_googlenet": 0.96,
}
LAUNCH_MS = 0.05
FULL_SHARE = 0.4
LOOSE_DELTA = 0.10


def _flops(module: torch.nn.Module, x: torch.Tensor) -> Any:
    from torch.utils.flop_counter import FlopCounterMode

    with FlopCounterMode(display=False) as fc, torch.no_grad():
        out = module(x)
    return fc.get_total_flops(), out


def _mb(module: torch.nn.Module) -> float:
    from pantheon.online.memory import module_bytes

    return module_bytes(module) / float(1 << 20)


def task_profile(name: str, deadline_ms: float, delta: float, seed: int) -> Dict[str, Any]:
    """Sliced zoo model -> (block/branch memory, modelled latency and accuracy) per exit."""
    from pantheon.offline.exits import build_multi_exit
    from pantheon.zoo import get_task

    task = get_task(name)
    torch.manual_seed(seed)
    mx = build_multi_exit(task, task.build_model()).eval()
    x = torch.zeros(1, *task.input_shape)
    block_f, branch_f = [], []
    for block, exit_ in zip(mx.blocks, mx.exits):
        f, x = _flops(block, x)
        block_f.append(float(f))
        branch_f.append(float(_flops(exit_, x)[0]))
    block_f_arr, branch_f_arr = np.array(block_f), np.array(branch_f)
    full = block_f_arr.sum() + branch_f_arr[-1]
    scale = (FULL_SHARE * deadline_ms - LAUNCH_MS * (len(block_f) + 1)) / full
    frac = np.cumsum(block_f_arr) / block_f_arr.sum()
    rng = np.random.default_rng(seed)
    a0 = ORIGINAL_ACC.get(name, 0.9)
    acc = a0 * (1 - 0.4 * (1 - frac) ** 1.5) + rng.normal(0, 0.003, len(frac))
    acc[-1] = a0
    return {
        "profile": pl.ExitProfile(
            name, block_ms=block_f_arr * scale + LAUNCH_MS, branch_ms=branch_f_arr * scale + LAUNCH_MS,
            block_mb=[_mb(b) for b in mx.blocks], branch_mb=[_mb(e) for e in mx.exits],
            accuracy=np.clip(acc, 0, 1), max_delta_accuracy=delta,
        ),
        "arch": task.arch,
        "gflops": float(full / 1e9),
    }


def bench_app(name: str, seed: int) -> Dict[str, Any]:
    app = load_app(name)
    deadlines: Dict[str, float] = {}
    for s in app.streams:
        d = (s.deadline_us or 0) / 1000 or 31.0  # deadline_x streams (digits): the paper's loosest deadline
        deadlines[s.task] = min(deadlines.get(s.task, d), d)
    built = {t: task_profile(t, deadlines.get(t, 31.0), lim.max_delta_accuracy, seed) for t, lim in app.tasks.items()}
    tasks = [b["profile"] for b in built.values()]
    out = {"app": name, "tasks": {t: {"arch": b["arch"], "blocks": b["profile"].num_blocks, "gflops": round(b["gflops"], 3),
                                      "model_mb": round(float(b["profile"].block_mb.sum() + b["profile"].branch_mb[-1]), 2)}
                                  for t, b in built.items()}}
    layout = pl._Layout(tasks, None, pl.MEAN_TIME)
    x = np.zeros((1, layout.n_var), bool)
    x[0, layout.minimal] = True
    smallest = float(layout.evaluate(x)[1][0])
    everything = float(layout.evaluate(layout.candidate[None, :])[1][0])
    note = None
    budget = app.max_memory
    try:
        pl.check_feasible(pl._Layout(tasks, budget, pl.MEAN_TIME))
    except InfeasibleError as exc:
        note = str(exc)
        budget = round(1.2 * smallest, 2)
    out["app_budget"] = run_both(tasks, budget, seed, name)
    out["app_budget"]["infeasible_at_app_budget"] = note
    out["app_budget"]["max_memory_app"] = app.max_memory
    # the app budget rarely binds for these models: also plan with memory halfway between
    # the smallest placement and "every admissible exit", where the knapsack is real
    out["tight_budget"] = run_both(tasks, round(smallest + 0.5 * (everything - smallest), 4), seed, name)
    # and with every task allowed to lose 10 points: many more candidates (the DP is the referee)
    loose = [dataclasses.replace(t, max_delta_accuracy=LOOSE_DELTA) for t in tasks]
    lay = pl._Layout(loose, None, pl.MEAN_TIME)
    everything = float(lay.evaluate(lay.candidate[None, :])[1][0])
    out["loose_alpha"] = run_both(loose, round(smallest + 0.5 * (everything - smallest), 4), seed, name)
    return out


def run_both(tasks: List[pl.ExitProfile], budget: float, seed: int, name: str) -> Dict[str, Any]:
    """One case under both objectives, and the mean-time plan scored by the reference objective."""
    out: Dict[str, Any] = {"max_memory_used_for_plan": budget}
    plans = {}
    for objective in pl.OBJECTIVES:
        out[objective], plans[objective] = run_case(tasks, budget, seed, name, objective)
    mt = plans[pl.MEAN_TIME]
    value = float(sum(1.0 / mt.per_task[t.name]["mean_time_ms"] for t in tasks))
    best = out[pl.REFERENCE]["optimum_objective"]
    out["reference_value_of_mean_time_plan"] = value
    out["mean_time_plan_loss_pct"] = round(100.0 * (best - value) / best, 3)
    return out


def run_case(tasks: List[pl.ExitProfile], budget: float, seed: int, name: str, objective: str) -> Any:
    layout = pl._Layout(tasks, budget, objective)
    n_cand = int(layout.candidate.sum())
    t0, c0 = time.perf_counter(), time.process_time()
    ga = pl.optimise(tasks, budget, seed=seed, app=name, objective=objective)
    ga_s, ga_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    if n_cand <= pl.MAX_EXHAUSTIVE:
        opt, method = pl.solve_exhaustive(layout), "exhaustive"
    else:
        opt, method = pl.solve_exact(layout), "exact-dp"
    opt_s = time.perf_counter() - t0
    best = pl.objective_value(opt.score, objective)
    return {
        "objective": objective,
        "unit": "1/ms, sum of 1/mean(T), higher is better" if objective == pl.REFERENCE else "ms, sum of mean(T), lower is better",
        "candidates": {t.name: ga.candidates[t.name] for t in tasks},
        "kept": ga.exits,
        "n_candidates": n_cand,
        "ga_time_s": round(ga_s, 3),
        "ga_cpu_s": round(ga_cpu, 3),  # this process's CPU time: what a shared, loaded machine does not inflate
        "ga_objective": ga.objective_value,
        "optimum_objective": best,
        "optimum_method": method,
        "optimum_time_s": round(opt_s, 4),
        "gap": abs(best - ga.objective_value),
        "sum_mean_time_ms": ga.objective_ms,
        "memory_mb": round(ga.memory_mb, 3),
        "goal_time_ok": ga_s <= 10.0,
        "goal_gap_ok": (ga.objective_value >= best - 1e-9) if objective == pl.REFERENCE else (ga.objective_value <= best + 1e-9),
    }, ga


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apps", nargs="*", default=APPS)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, torch.get_num_threads()))
    results = []
    with console.progress() as bar:
        t = bar.add_task("apps", total=len(args.apps))
        for name in args.apps:
            results.append(bench_app(name, args.seed))
            bar.advance(t)
    cases = [(r["app"], k, o, r[k][o], r[k]) for r in results for k in ("app_budget", "tight_budget", "loose_alpha")
             for o in pl.OBJECTIVES]
    if not args.json:
        console.print_table(
            "plan benchmark (modelled latency/accuracy, real architectures; reference in 1/ms, mean-time in ms)",
            ["app", "budget", "objective", "cands", "GA s", "GA", "optimum", "method", "gap", "MB used", "MB budget",
             "mean-time plan loss %"],
            [[a, k.split("_")[0], o, c["n_candidates"], c["ga_time_s"], f"{c['ga_objective']:.4f}",
              f"{c['optimum_objective']:.4f}", c["optimum_method"], f"{c['gap']:.2g}", c["memory_mb"],
              case["max_memory_used_for_plan"], case["mean_time_plan_loss_pct"] if o == pl.REFERENCE else ""]
             for a, k, o, c, case in cases],
            to_stderr=True,
        )
    emit("plan", {
        "goal": "GA plan time <= 10 s per case and gap to the optimum = 0, under both objectives",
        "objectives": {"reference": "maximise sum of 1/mean(T); drop vs best accuracy; ties kept on the frontier",
                       "mean-time": "minimise sum of mean(T); drop vs the last exit; ties dropped"},
        "model": "memory from the sliced zoo architectures; latency FLOP-proportional (modelled), accuracy modelled",
        "ga": {"generations": 100, "pop": 100, "seed": args.seed},
        "apps": results,
        "all_goals_met": all(c["goal_time_ok"] and c["goal_gap_ok"] for _, _, _, c, _ in cases),
    }, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
