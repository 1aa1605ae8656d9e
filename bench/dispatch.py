"""Runtime per-chunk dispatch overhead vs calling the same TorchScript chunks directly.

One task of N conv blocks (16 channels at 16x16: tens of microseconds each, so the overhead
is not hidden by compute) plus an exit. Direct: the chain called in a Python loop. Runtime:
the same job submitted one at a time through :class:`pantheon.online.runtime.Runtime`
(scheduler decision, memory manager, event log, worker hand-off); its span is the log's
first ``dispatch`` to its ``exit``. Overhead per chunk = (median span - median direct
chain) / chunks. Rounds of direct and runtime runs are interleaved so machine load
affects both. On CUDA the runtime replays CUDA graphs (and, with ``--compare-eager``, runs
eager TorchScript too, the before/after comparison); the direct chain of graph replays is
reported beside the eager one. Targets: <= 30 us per chunk (median) on an H100/H200,
<= 15 us on a CPU.

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

from pantheon.bench import benchmarks as B

TARGET_US = 30.0  # H100/H200
CPU_TARGET_US = 15.0


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chunks", type=int, default=8, help="blocks per job (plus the exit)")
    ap.add_argument("--jobs", type=int, default=400)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--compare-eager", action="store_true", help="CUDA: also run the runtime with eager TorchScript")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    modes = (True, False) if args.compare_eager and args.device.startswith("cuda") else (True,)
    rows = [B.dispatch_overhead(chunks=args.chunks, jobs=args.jobs, device=args.device, depth=d, cuda_graphs=g)
            for g in modes for d in (1, 4)]
    target = TARGET_US if args.device.startswith("cuda") else CPU_TARGET_US
    result = {
        "rows": rows,
        "target_us": target,
        "met": all(r["overhead_per_chunk_median_us"] <= target for r in rows if r["cuda_graphs"] or len(modes) == 1),
        "note": "depth = convs per block (1: ~tens of us per chunk, 4: larger chunks)",
        "load_average_1min": os.getloadavg()[0],  # a shared machine: context for the figures
    }
    emit("dispatch", result, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
