"""Exit-training speed on the digits demo: throughput and time to the first usable accuracy.

For each digits task: pretrain the backbone at its demo defaults (cached in a private
store), then ``construct`` the exits at the demo defaults (``--force``), and report

* ``images_per_s``: training images through the frozen backbone + all exits per second
  of training (validation and checkpoint writes excluded), mean over epochs;
* ``time_to_usable_s``: seconds of exit training (training + per-epoch validation) until
  the deepest *trained* exit (exit B-2) first reaches ``--usable`` (default 0.9) top-1 on
  the validation split; ``null`` when it never does;
* ``pretrain_s`` / ``construct_s``: wall time of the two stages (construct includes
  slicing, validation, checkpoints and the held-out test);
* the per-exit held-out test accuracy, to see that exits rise with depth.

CPU seconds (user + system of this process) are reported next to the wall times:
on a loaded machine they are the fairer figure.

Usage::

    python bench/training.py --json --save
    python bench/training.py --tasks digits_resnet18 --epochs 2
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon.formats.store import Store
from pantheon.offline.construct import ConstructConfig, construct
from pantheon.offline.pretrain import pretrain
from pantheon.zoo import DEMO_TASKS


def _cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def time_to_usable(history: List[Dict[str, Any]], exit_index: int, threshold: float) -> Optional[float]:
    """Training + validation seconds until ``history``'s val metric of ``exit_index`` reaches ``threshold``."""
    elapsed = 0.0
    for h in history:
        elapsed += float(h["seconds"])
        if h["val"][exit_index] >= threshold:
            return round(elapsed, 3)
    return None


def bench_task(task: str, store: Store, epochs: Optional[int], usable: float) -> Dict[str, Any]:
    c0, t0 = _cpu(), time.perf_counter()
    pre = pretrain(task, store=store)
    c1, t1 = _cpu(), time.perf_counter()
    run = construct(ConstructConfig(task=task, max_epochs=epochs, force=True), store=store).run_dir
    c2, t2 = _cpu(), time.perf_counter()
    history = json.loads((run / "history.json").read_text())
    metrics = json.loads((run / "metrics.json").read_text())
    pre_metrics = json.loads((pre / "metrics.json").read_text())
    n_exits = len(metrics["test"])
    rates = [h["samples"] / h["train_seconds"] for h in history if h["train_seconds"] > 0]
    return {
        "task": task,
        "blocks": n_exits,
        "epochs": len(history),
        "images_per_s": round(sum(rates) / len(rates), 1) if rates else None,
        "time_to_usable_s": time_to_usable(history, n_exits - 2, usable),
        "usable_threshold": usable,
        "pretrain_s": round(t1 - t0, 2),
        "pretrain_cpu_s": round(c1 - c0, 2),
        "pretrain_test_top1": pre_metrics["test"],
        "construct_s": round(t2 - t1, 2),
        "construct_cpu_s": round(c2 - c1, 2),
        "exit_test_top1": [round(a, 4) for a in metrics["test"]],
        "val_deepest_trained_per_epoch": [round(h["val"][n_exits - 2], 4) for h in history],
    }


def main(argv: Optional[List[str]] = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tasks", default=",".join(DEMO_TASKS), help="comma-separated digits tasks")
    ap.add_argument("--epochs", type=int, default=None, help="exit-training epochs (default: the demo's)")
    ap.add_argument("--usable", type=float, default=0.9, help="validation top-1 that counts as usable")
    ap.add_argument("--data-root", default=None, help="artifact store to use (default: a temporary one)")
    ap.add_argument("--json", action="store_true", help="print JSON")
    ap.add_argument("--save", action="store_true", help="record bench/results/training.json")
    args = ap.parse_args(argv)
    os.environ.setdefault("PANTHEON_PROGRESS", "0")
    load_before = os.getloadavg()[0]
    # the stages print their tables on stdout: keep stdout for the JSON
    with tempfile.TemporaryDirectory(prefix="pantheon-bench-training-") as tmp, contextlib.redirect_stdout(sys.stderr):
        store = Store(args.data_root or tmp)
        rows = [bench_task(t.strip(), store, args.epochs, args.usable) for t in args.tasks.split(",") if t.strip()]
    result = {
        "rows": rows,
        "load_avg_1m": [round(load_before, 2), round(os.getloadavg()[0], 2)],  # other processes skew the times
        "total_pretrain_s": round(sum(r["pretrain_s"] for r in rows), 2),
        "total_construct_s": round(sum(r["construct_s"] for r in rows), 2),
        "definition": "time_to_usable_s: exit-training seconds (train + per-epoch validation) until the deepest "
                      "trained exit reaches the usable validation top-1",
    }
    emit("training", result, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
