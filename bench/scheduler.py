"""Scheduler decision latency vs queue length (1..16) on an overloaded robot-app mix.

The mix: the robot app's four tasks (face detection, age, gender, emotion) with the chunk
structure of the zoo's architectures as ``pantheon construct`` slices them, timed on this
CPU and scaled to the paper board's per-task latency, exits placed by the planner
(``pantheon.bench.benchmarks.paper_profiles``; accuracies modelled). Without the zoo
(torchvision missing) a documented synthetic stand-in with the reference's chunk counts is
used (``robot_like_tasks``). Each decision is :meth:`Scheduler.arrive` under ``pantheon`` on
a queue built by ``overloaded_queue``: random tasks, half of them already started, deadlines
a random 80-100% of the cumulative work before them, so most decisions must downgrade.
Each decision is timed 3 times on the same queue and its fastest run kept (this machine is
shared: that filters descheduling, not the spread between queues).
``downgrade_fraction`` reports how many did. The plain transcription (full rescan per
downgrade) is timed at 4, 8 and 11 jobs for comparison.

Targets: p50 <= 10 / 25 / 40 us at 4 / 8 / 11 queued jobs, p99 at most twice that.

Usage::

    python bench/scheduler.py --json      # prints the list of rows
    python bench/scheduler.py --save      # records bench/results/scheduler.json
"""

from __future__ import annotations

import argparse
import contextlib
import io
import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import RESULTS, emit

from pantheon import console
from pantheon.bench import benchmarks as B

TARGETS = {4: 10.0, 8: 25.0, 11: 40.0}
ROBOT = ["face_detection", "age_classification", "gender_classification", "emotion_classification"]


def robot_tasks(synthetic: bool):
    """Scheduler profiles of the robot app and a note saying where they come from."""
    if not synthetic:
        try:
            from pantheon.formats.app import load_app

            app = load_app("robot")
            with console.progress(transient=True) as bar:
                job = bar.add_task("timing zoo chunks", total=len(ROBOT))
                measured = B.zoo_profiles(ROBOT, cache=RESULTS / "zoo_profiles_cpu.json",
                                          progress=lambda n: bar.advance(job))
            profiles, notes = B.paper_profiles(measured, {t: app.tasks[t].max_delta_accuracy for t in ROBOT},
                                               app.max_memory, app="robot")
            return B.robot_like_tasks(profiles), {"profiles": "zoo", **notes}
        except ImportError as exc:
            console.warn(f"zoo unavailable ({exc}): using the synthetic robot-like profiles")
    return B.robot_like_tasks(), {"profiles": "synthetic stand-in (see robot_like_tasks)"}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--decisions", type=int, default=3000, help="decisions per queue length")
    ap.add_argument("--max-queue", type=int, default=16)
    ap.add_argument("--synthetic", action="store_true", help="use the synthetic profiles, not the zoo")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", action="store_true", help="print the rows as a JSON list")
    ap.add_argument("--save", action="store_true", help="record bench/results/scheduler.json")
    args = ap.parse_args()
    tasks, notes = robot_tasks(args.synthetic)
    with console.progress(transient=True) as bar:
        job = bar.add_task("decisions", total=args.max_queue)
        rows = B.scheduler_latency(tasks, range(1, args.max_queue + 1), args.decisions, args.seed,
                                   progress=lambda: bar.advance(job))
    checks = {}
    for n, target in TARGETS.items():
        row = next((r for r in rows if r["queue_length"] == n), None)
        if row:
            checks[str(n)] = {"p50_us": row["p50_us"], "p50_target_us": target, "p99_us": row["p99_us"],
                              "p99_target_us": 2 * target,
                              "met": row["p50_us"] <= target and row["p99_us"] <= 2 * target}
    result = {
        "rows": rows,
        "targets": checks,
        "mix": {"tasks": [{"name": t.name, "blocks": len(t.blocks), "exits": t.exit_blocks,
                           "full_us": t.full_latency} for t in tasks], **notes,
                "queue": "overloaded_queue: deadlines 80-100% of the cumulative work, half the jobs started",
                "timing": "fastest of 3 runs of each decision"},
    }
    if args.json:
        print(json.dumps(rows, indent=1))
    else:
        console.print_table("scheduler decision latency (pantheon policy)",
                            ["queue", "p50 us", "p99 us", "downgrade", "plain p50 us"],
                            [(r["queue_length"], r["p50_us"], r["p99_us"], r["downgrade_fraction"],
                              r.get("reference_p50_us", "")) for r in rows])
    if args.save:
        with contextlib.redirect_stdout(io.StringIO()):  # the rows or the table are already printed
            emit("scheduler", result, as_json=True, save=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
