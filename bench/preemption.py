"""Preemption wait: time from an urgent arrival to its first chunk start, vs chunk size.

A "long" task of 6 conv blocks is kept busy back to back on the live CPU runtime while
one-block "urgent" jobs (earlier deadlines) arrive at random moments; the wait is the
urgent job's first ``dispatch`` minus its ``release`` in the log. Chunk size grows with
the convs per block (``block_depth``). An arrival waits at most for the chunk in progress,
so the target is p99 wait <= the longest long-task chunk measured in the run + 0.2 ms.

Usage::

    python bench/preemption.py --json
    python bench/preemption.py --save      # records bench/results/preemption.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon.bench import benchmarks as B


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--depths", type=int, nargs="*", default=[1, 2, 4, 8], help="convs per long-task block")
    ap.add_argument("--urgent", type=int, default=60, help="urgent jobs per chunk size")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    rows = B.preemption_wait(args.depths, urgent_jobs=args.urgent, device=args.device)
    result = {"rows": rows, "met": all(r["meets_target"] for r in rows),
              "target": "p99 wait <= longest chunk + 200 us",
              "load_average_1min": os.getloadavg()[0]}  # a shared machine: context for the figures
    emit("preemption", result, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
