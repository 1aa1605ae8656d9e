"""Runtime per-chunk dispatch overhead vs calling the same TorchScript chunks directly.

One task of N conv blocks (16 channels at 16x16: tens of microseconds each, so the overhead
is not hidden by compute) plus an exit. Direct: the chain called in a Python loop. Runtime:
the same job submitted one at a time through :class:`pantheon.online.runtime.Runtime`
(scheduler decision, memory manager, event log, worker hand-off); its span is the log's
first ``dispatch`` to its ``exit``. Overhead per chunk = (median span - median direct
chain) / chunks. Rounds of direct and runtime runs are interleaved so machine load
affects both. Target: <= 30 us per chunk (median).

Usage::

    python bench/dispatch.py --json
    python bench/dispatch.py --save        # records bench/results/dispatch.json
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon.online import benchmarks as B

TARGET_US = 30.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=8, help="blocks per job (plus the exit)")
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    rows = [B.dispatch_overhead(chunks=args.chunks, jobs=args.jobs, device=args.device, depth=d) for d in (1, 4)]
    result = {
        "rows": rows,
        "target_us": TARGET_US,
        "met": all(r["overhead_per_chunk_median_us"] <= TARGET_US for r in rows),
        "note": "depth = convs per block (1: ~tens of us per chunk, 4: larger chunks)",
        "load_average_1min": os.getloadavg()[0],  # a shared machine: context for the figures
    }
    emit("dispatch", result, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
