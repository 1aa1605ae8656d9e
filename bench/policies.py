"""Policy comparison: DMR and relative accuracy of every policy on the paper apps and the digits demo.

Paper apps (traffic, robot, uav), in the simulator:

* latency profiles: each task's model is sliced and given exits as ``pantheon construct``
  does, every block and exit is timed on this CPU, and the task's profile is scaled so its
  full model takes the paper board's latency (Xavier NX figures of the reference artifact,
  ``pantheon.bench.paper.PAPER_FULL_US``): the paper's load. Exit accuracies are
  MODELLED (``pantheon.bench.paper.modelled_accuracy``), exits placed by the real planner (GA) under the app's
  accuracy and memory limits;
* workloads: the app's YAML (30 fps streams, +-1 ms jitter), several seeds; chunk latency
  noise ``--jitter`` (log-normal, mean 1) in the simulator;
* sweeps: load factor 0.5-2.0 (multiplies every chunk latency: the burst each 30 fps frame
  releases is what loads these apps, and a longer period would not change it) and Poisson
  arrivals, lambda 10-25 jobs/s per stream.

Paper apps again, with the reference artifact's own inputs (``--profiles reference``):
its published per-chunk latencies (us, measured on the authors' Jetson) and exit accuracies
(``bench/reference/profiles/<app>/<task>/config.pbtxt``, read as a profiles-only repository)
and its workloads (``bench/reference/settings/workload/<app>.bin``, jobs mapped to tasks by
``model_name``). Those configs are the reference planner's output (``exit_profile`` lists only
the kept exits), so no planning runs; its deploy settings (``settings/deploy/<app>.json``:
memory limit, ``max_delta_accuracy``) are recorded, and every kept exit is checked to lie
within the accuracy limit. The fixed ``.bin`` is replayed once per seed (the seed drives the
latency noise; every policy meets the same noise on the same chunk of the same job). Besides
the policies, ``pantheon (margin 0)`` is pantheon planning to the deadline (``--margin 0``),
and each app names its best baseline (every other policy) and pantheon's DMR minus it.

Serial lower bound on DMR (both profile sets): give every job its cheapest kept exit
(``min(full)``: blocks up to the exit plus the exit, with the per-chunk overhead the
scheduler charges) and ask how many jobs must miss on ANY serial executor, even an ideally
preemptive one that knows the future. For an interval ``[t1, t2]``, the jobs released at
or after ``t1`` with deadlines at or before ``t2`` need their work inside it; if it exceeds
``t2 - t1``, at least ``k`` of them miss, ``k`` = how many of the largest must be removed for
the rest to fit. Disjoint intervals add up, so the best set of disjoint intervals (weighted
interval scheduling over ``t1`` = a release, ``t2`` = a deadline within ``BOUND_HORIZON_US``)
gives a lower bound ``lower``. An achievable schedule gives an upper value ``achieved``:
preemptive EDF on cheapest exits that, whenever the ready jobs cannot all finish in time
(checked in deadline order), drops the one with the most remaining work among those up to
the first overflowing deadline. When ``lower == achieved`` (``exact``), that is the minimum
DMR of an ideal preemptive serial executor, and a lower bound for every policy here (whose
executor is only preemptible between chunks).

Digits (demo), when ``<root>/apps/digits/repository`` exists: measured profiles and
accuracies, simulated and executed live on the CPU for every policy.

Also measures the simulator's speed (jobs simulated per second).

Usage::

    python bench/policies.py --json
    python bench/policies.py --save            # records bench/results/policies.json
    python bench/policies.py --apps traffic --no-live
    python bench/policies.py --profiles reference --save   # records bench/results/policies_reference.json

``--save`` writes ``policies.json`` when the modelled profiles ran and ``policies_reference.json``
(the paper's numbers, ours with modelled and with reference profiles, the serial bounds) when
the reference profiles ran.
"""

from __future__ import annotations

import argparse
import bisect
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import RESULTS, emit, machine_info

from pantheon import console
from pantheon.bench import benchmarks as B
from pantheon.formats.app import load_app
from pantheon.online.scheduler import POLICIES

PAPER_APPS = ["traffic", "robot", "uav"]
LOAD_FACTORS = [0.5, 0.75, 1.0, 1.25, 1.5, 2.0]
LAMBDAS = [10, 15, 20, 25]

REFERENCE = Path(__file__).resolve().parent / "reference"
REFERENCE_NAMES = {"traffic": "indoor_smart_traffic", "robot": "robot", "uav": "uav"}
# The paper's overall comparison (Han, Zhou, Li, MobiSys 2024; Jetson Xavier NX): DMR per policy
# and Pantheon's relative accuracy, as fractions.
PAPER = {
    "traffic": {"rms": 0.416, "dms": 0.639, "rtmdl": 0.024, "pantheon": 0.004, "pantheon_relative_accuracy": 0.988},
    "robot": {"rms": 0.612, "dms": 0.745, "rtmdl": 0.304, "pantheon": 0.008, "pantheon_relative_accuracy": 0.984},
    "uav": {"rms": 0.581, "dms": 0.762, "rtmdl": 0.318, "pantheon": 0.011, "pantheon_relative_accuracy": 0.990},
}
BOUND_HORIZON_US = 200_000  # longest interval the bound considers (6 frames at 30 fps)


# -- serial lower bound on DMR (see the module docstring) -------------------------------------

Job = Tuple[int, int, float]  # release, absolute deadline, cheapest work (us)


def cheapest_jobs(repo, ws) -> List[Job]:
    """Every job of ``ws`` with its task's cheapest kept exit (tasks looked up by ``model_name``)."""
    cost = {n: float(min(t.full)) for n, t in repo.tasks.items()}
    return sorted((int(w.release), int(w.deadline), cost[w.model_name]) for w in ws.workload)


def demand_lower_bound(jobs: Sequence[Job], horizon: int = BOUND_HORIZON_US) -> int:
    """Jobs that must miss on any serial executor: disjoint overloaded intervals, summed."""
    rel = [j[0] for j in jobs]
    found: List[Tuple[int, int, int]] = []  # (t2, t1, k)
    for t1 in sorted(set(rel)):
        lo, hi = bisect.bisect_left(rel, t1), bisect.bisect_right(rel, t1 + horizon)
        inside = sorted((d, c) for _, d, c in jobs[lo:hi] if d <= t1 + horizon)
        costs: List[float] = []
        for i, (d, c) in enumerate(inside):
            bisect.insort(costs, c)
            if i + 1 < len(inside) and inside[i + 1][0] == d:
                continue  # all jobs due at d first
            total, k = sum(costs), 0
            while total > d - t1:  # remove the largest until the rest fits
                k += 1
                total -= costs[-k]
            if k:
                found.append((d, t1, k))
    found.sort()
    ends = [f[0] for f in found]
    best = [0] * (len(found) + 1)  # weighted interval scheduling
    for i, (_d, t1, k) in enumerate(found):
        best[i + 1] = max(best[i], best[bisect.bisect_right(ends, t1, 0, i)] + k)
    return best[-1]


def edf_drop_largest(jobs: Sequence[Job]) -> int:
    """Misses of an achievable schedule: preemptive EDF on cheapest exits, dropping the largest
    remaining job of the first overflowing deadline prefix until the ready set is feasible."""
    n, i, t, missed = len(jobs), 0, 0.0, 0
    ready: List[List[float]] = []  # [deadline, index, remaining]
    while i < n or ready:
        if not ready:
            t = max(t, jobs[i][0])
        while i < n and jobs[i][0] <= t:
            ready.append([jobs[i][1], i, jobs[i][2]])
            i += 1
        ready.sort()
        while ready:
            cum, bad = 0.0, -1
            for k, (d, _, rem) in enumerate(ready):
                cum += rem
                if t + cum > d:
                    bad = k
                    break
            if bad < 0:
                break
            ready.pop(max(range(bad + 1), key=lambda k: ready[k][2]))
            missed += 1
        if not ready:
            continue
        run = min(ready[0][2], (jobs[i][0] if i < n else float("inf")) - t)
        t += run
        ready[0][2] -= run
        if ready[0][2] <= 1e-9:
            ready.pop(0)
    return missed


def serial_bound(repo, ws) -> Dict[str, Any]:
    """``lower`` / ``achieved`` DMR with every job at its cheapest exit (``exact`` when equal)."""
    jobs = cheapest_jobs(repo, ws)
    lo, hi = demand_lower_bound(jobs), edf_drop_largest(jobs)
    return {"jobs": len(jobs), "lower": round(lo / len(jobs), 6), "achieved": round(hi / len(jobs), 6),
            "exact": lo == hi, "cheapest_exit_us": {n: min(t.full) for n, t in repo.tasks.items()}}


def reference_app(name: str, policies: Sequence[str], seeds: Sequence[int], jitter: float) -> Dict[str, Any]:
    """Every policy on the reference's own profiles and workload, in the simulator."""
    import statistics

    from pantheon.formats import read_workloads
    from pantheon.online.repository import read_repository
    from pantheon.online.simulate import simulate

    ref = REFERENCE_NAMES[name]
    repo = read_repository(REFERENCE / "profiles" / ref, profiles_only_ok=True)
    ws = read_workloads(REFERENCE / "settings" / "workload" / f"{ref}.bin")
    deploy = json.loads((REFERENCE / "settings" / "deploy" / f"{ref}.json").read_text())
    within = {n: round(t.exit_acc[-1] - t.exit_acc[0], 6) <= deploy.get(n, {}).get("max_delta_accuracy", 1.0)
              for n, t in repo.tasks.items()}
    table: Dict[str, Any] = {}
    # pantheon planning to the deadline (no safety margin): what the margin buys under noise
    for p, kw in [(p, {}) for p in policies] + [(NO_MARGIN, {"margin": 0.0})]:
        runs = [simulate(repo, ws, p.split(" ")[0], jitter=jitter, seed=seed, **kw) for seed in seeds]
        table[p] = {"jobs": sum(r["jobs"] for r in runs),
                    **{k: round(statistics.fmean(r[k] or 0.0 for r in runs), 6)
                       for k in ("dmr", "relative_accuracy", "preempted_jobs", "response_p99_us")}}
    span = max(w.release for w in ws.workload) - min(w.release for w in ws.workload)
    load = sum(repo.tasks[w.model_name].full_latency for w in ws.workload) / max(span, 1)
    return {"profiles": f"bench/reference/profiles/{ref}", "workload": f"bench/reference/settings/workload/{ref}.bin",
            "deploy_settings": deploy, "kept_exits_within_max_delta_accuracy": within,
            "utilisation_original_exits": round(load, 3),
            "tasks": {n: {"blocks": len(t.blocks), "exits": t.exit_blocks, "full_us": t.full_latency,
                          "exit_full_us": t.full, "exit_accuracy": t.exit_acc} for n, t in repo.tasks.items()},
            "table": table, "serial_bound": serial_bound(repo, ws)}


def modelled_bound(repo, app, seeds: Sequence[int], duration: float) -> Dict[str, Any]:
    """:func:`serial_bound` on the modelled profiles, over the app's generated workloads (mean)."""
    from pantheon.online.workload import generate

    runs = [serial_bound(repo, generate(app, repo=repo, seed=s, duration_s=duration)) for s in seeds]
    return {"jobs": sum(r["jobs"] for r in runs), "lower": round(sum(r["lower"] for r in runs) / len(runs), 6),
            "achieved": round(sum(r["achieved"] for r in runs) / len(runs), 6), "exact": all(r["exact"] for r in runs),
            "cheapest_exit_us": runs[0]["cheapest_exit_us"]}


NO_MARGIN = "pantheon (margin 0)"


def best_baseline(table: Dict[str, Any]) -> Dict[str, Any]:
    """The baseline (every other policy, ablations included) with the lowest DMR, and pantheon's lead on it."""
    name = min((p for p in table if p not in ("pantheon", NO_MARGIN)), key=lambda p: table[p]["dmr"])
    return {"policy": name, "dmr": table[name]["dmr"],
            "pantheon_minus_baseline": round(table["pantheon"]["dmr"] - table[name]["dmr"], 6)}


def comparison(result: Dict[str, Any]) -> Dict[str, Any]:
    """Per app: the paper's Pantheon DMR, ours (modelled / reference profiles), the serial bounds."""
    out: Dict[str, Any] = {}
    for name in PAPER_APPS:
        m, r = result["apps"].get(name), result.get("reference", {}).get(name)
        if m is None and r is None:
            continue
        out[name] = {
            "paper_pantheon_dmr": PAPER[name]["pantheon"],
            "modelled_pantheon_dmr": m["table"]["pantheon"]["dmr"] if m else None,
            "reference_pantheon_dmr": r["table"]["pantheon"]["dmr"] if r else None,
            "modelled_serial_bound": m["serial_bound"]["lower"] if m else None,
            "reference_serial_bound": r["serial_bound"]["lower"] if r else None,
            "reference_bound_exact": r["serial_bound"]["exact"] if r else None,
            "reference_best_baseline": best_baseline(r["table"]) if r else None,
            "modelled_best_baseline": best_baseline(m["table"]) if m else None,
        }
    return out


def paper_app(name: str) -> Dict[str, Any]:
    app = load_app(name)
    tasks = list(app.tasks)
    measured = B.zoo_profiles(tasks, cache=RESULTS / "zoo_profiles_cpu.json",
                              progress=lambda n: console.info(f"timing the zoo's {n} on this CPU"))
    profiles, notes = B.paper_profiles(measured, {t: app.tasks[t].max_delta_accuracy for t in tasks},
                                       app.max_memory, app=name)
    repo = B.repository_from_profiles(profiles, tasks, name)
    load = sum(repo.tasks[s.task].full_latency / s.period_us for s in app.streams)
    return {"app": app, "repo": repo, "notes": notes, "utilisation_original_exits": round(load, 3),
            "tasks": {n: {"blocks": len(t.blocks), "exits": t.exit_blocks, "full_us": t.full_latency,
                          "exit_full_us": t.full, "exit_relative_accuracy": [round(x / t.exit_acc[-1], 4) for x in t.exit_acc]}
                      for n, t in repo.tasks.items()}}


def checks(table: Dict[str, Dict[str, Any]]) -> Dict[str, Any]:
    p = table["pantheon"]
    floor = max(p["dmr"], 1e-3)
    return {
        "pantheon_dmr_le_1pct": p["dmr"] <= 0.01,
        "pantheon_relative_accuracy_ge_98pct": p["relative_accuracy"] >= 0.98,
        "rms_dms_fifo_dmr_ge_10x_pantheon": all(table[q]["dmr"] >= 10 * floor for q in ("rms", "dms", "fifo")),
        "ablation_order_pantheon_lt_wo_ee_lt_wo_ee_pr": p["dmr"] < table["pantheon-wo-ee"]["dmr"]
        < table["pantheon-wo-ee-pr"]["dmr"],
    }


def simulator_speed(repo, app, seconds: float = 120.0) -> Dict[str, Any]:
    """Jobs simulated per second (best of 3): the event loop alone and end to end (validation,
    summary), by wall clock and by process CPU time (the machine is shared: CPU time is the
    figure that does not depend on other processes)."""
    import os

    from pantheon.online.simulate import simulate
    from pantheon.online.workload import generate

    ws = generate(app, repo=repo, seed=0, duration_s=seconds)
    n = len(ws.workload)
    out: Dict[str, Any] = {"jobs": n, "workload": f"{app.name}, {seconds:.0f} s, no log",
                           "chunks_per_job": round(sum(repo.tasks[w.model_name].exit_blocks[-1] + 2
                                                       for w in ws.workload) / n, 1),
                           "load_average_1min": os.getloadavg()[0], "cpus": os.cpu_count()}
    for policy in ("pantheon", "edf", "fifo"):
        best = {"loop_wall": float("inf"), "loop_cpu": float("inf"), "wall": float("inf"), "cpu": float("inf")}
        for _ in range(3):
            c0, w0 = time.process_time(), time.perf_counter()
            s = simulate(repo, ws, policy)
            best["cpu"] = min(best["cpu"], time.process_time() - c0)
            best["wall"] = min(best["wall"], time.perf_counter() - w0)
            best["loop_wall"] = min(best["loop_wall"], s["sim_wall_s"])
            best["loop_cpu"] = min(best["loop_cpu"], s["sim_cpu_s"])
        out[policy] = {"event_loop_jobs_per_s_wall": round(n / best["loop_wall"]),
                       "event_loop_jobs_per_s_cpu": round(n / best["loop_cpu"]),
                       "end_to_end_jobs_per_s_wall": round(n / best["wall"]),
                       "end_to_end_jobs_per_s_cpu": round(n / best["cpu"])}
    out["target_jobs_per_s"] = 100_000
    return out


def digits_live(policies, duration: float, seeds) -> Dict[str, Any]:
    from pantheon.formats import store
    from pantheon.formats.workload_pb2 import Workloads  # noqa: F401 - protobuf import check
    from pantheon.online.repository import read_repository
    from pantheon.online.runtime import run
    from pantheon.online.workload import generate

    repo_dir = store.Store().repository_dir("digits")
    if not (repo_dir / "manifest.json").is_file():
        return {"skipped": f"no digits repository at {repo_dir} (run the demo or `pantheon plan` first)"}
    repo = read_repository(repo_dir)
    app = load_app("digits")
    sim = B.policy_table(repo, app, policies, seeds=seeds, duration_s=duration)
    live: Dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as d:
        ws = generate(app, repo=repo, seed=seeds[0], duration_s=duration)
        from pantheon.formats import write_workloads

        wl = Path(d) / "digits.bin"
        write_workloads(wl, ws)
        for p in policies:
            s = run(repo_dir, wl, Path(d) / p, policy=p, device="cpu", progress=False, handle_signals=False)
            live[p] = {k: s[k] for k in ("jobs", "dmr", "relative_accuracy", "preempted_jobs", "response_p99_us")}
    return {"repository": str(repo_dir), "accuracy": "measured (held-out digits)", "duration_s": duration,
            "simulated": sim, "live_cpu": live,
            "tasks": {n: {"full_us": t.full_latency, "exits": t.exit_blocks} for n, t in repo.tasks.items()}}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--apps", nargs="*", default=PAPER_APPS)
    ap.add_argument("--profiles", nargs="*", choices=["modelled", "reference"], default=["modelled", "reference"],
                    help="profile sets to run the paper apps with (default both)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=10.0, help="seconds of workload per seed")
    ap.add_argument("--jitter", type=float, default=0.05, help="chunk latency noise in the simulator")
    ap.add_argument("--no-sweeps", action="store_true")
    ap.add_argument("--no-live", action="store_true", help="skip the live digits runs")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    seeds = list(range(args.seeds))
    modelled, reference = "modelled" in args.profiles, "reference" in args.profiles
    result: Dict[str, Any] = {
        "policies": list(POLICIES),
        "settings": {"seeds": seeds, "duration_s": args.duration, "jitter": args.jitter,
                     "load_factors": LOAD_FACTORS, "poisson_lambdas": LAMBDAS, "profiles": args.profiles},
        "accuracy_note": "paper apps: exit accuracies are MODELLED (a_orig * (1 - 0.3 (1 - f)^3), anchored on the "
                         "reference's sign_recognition profile); digits: measured",
        "apps": {},
    }
    for name in args.apps if modelled else []:
        pa = paper_app(name)
        console.info(f"{name}: simulating {len(POLICIES)} policies x {len(seeds)} seeds")
        kw = {"seeds": seeds, "duration_s": args.duration, "jitter": args.jitter}
        table = B.policy_table(pa["repo"], pa["app"], POLICIES, **kw)
        entry = {"profiles": pa["notes"], "utilisation_original_exits": pa["utilisation_original_exits"],
                 "tasks": pa["tasks"], "table": table, "checks": checks(table),
                 "serial_bound": modelled_bound(pa["repo"], pa["app"], seeds, args.duration)}
        if not args.no_sweeps:
            entry["sweeps"] = B.sweep(pa["repo"], pa["app"], POLICIES, LOAD_FACTORS, LAMBDAS,
                                      seeds=seeds[:1], duration_s=args.duration, jitter=args.jitter)
        result["apps"][name] = entry
        if name == "traffic":
            result["simulator_speed"] = simulator_speed(pa["repo"], pa["app"])
    if reference:
        result["reference"] = {}
        for name in args.apps:
            console.info(f"{name}: the reference's profiles and workload, {len(POLICIES)} policies x {len(seeds)} seeds")
            result["reference"][name] = reference_app(name, POLICIES, seeds, args.jitter)
        result["comparison"] = comparison(result)
        result["paper"] = {n: PAPER[n] for n in args.apps}
    if modelled and not args.no_live:
        result["digits"] = digits_live(POLICIES, duration=min(args.duration, 6.0), seeds=seeds[:1])
    if not args.json:
        sections = [("modelled", result["apps"]), ("reference", result.get("reference", {}))]
        for kind, apps in sections:
            for name, e in apps.items():
                b = e["serial_bound"]
                console.print_table(f"{name}, {kind} profiles (simulated, utilisation {e['utilisation_original_exits']} "
                                    f"at original exits; serial bound {100 * b['lower']:.1f}%)",
                                    ["policy", "DMR", "relative accuracy", "preempted", "p99 ms"],
                                    [(p, f"{100 * v['dmr']:.2f}%", f"{100 * v['relative_accuracy']:.2f}%",
                                      f"{100 * v['preempted_jobs']:.1f}%", f"{v['response_p99_us'] / 1000:.1f}")
                                     for p, v in e["table"].items()])
        if "comparison" in result:
            def pct(x: Any) -> str:
                return "-" if x is None else f"{100 * x:.1f}%"

            console.print_table("pantheon DMR: the paper vs ours, and the serial lower bound",
                                ["app", "paper", "modelled", "reference profiles", "bound (modelled)",
                                 "bound (reference)"],
                                [(n, pct(c["paper_pantheon_dmr"]), pct(c["modelled_pantheon_dmr"]),
                                  pct(c["reference_pantheon_dmr"]), pct(c["modelled_serial_bound"]),
                                  pct(c["reference_serial_bound"])) for n, c in result["comparison"].items()])
    emit("policies", result, as_json=args.json, save=args.save and modelled)
    if reference and args.save:
        keep = ("comparison", "paper", "reference", "settings", "policies")
        data = {"benchmark": "policies_reference", "machine": machine_info(), **{k: result[k] for k in keep}}
        (RESULTS / "policies_reference.json").write_text(json.dumps(data, indent=2, default=str) + "\n")
        console.info(f"recorded {RESULTS / 'policies_reference.json'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
