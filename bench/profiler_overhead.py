"""Profiler overhead: the latency the server reports vs timing the same module in-process.

Chunks are real: the digits ResNet18 of the zoo is sliced and given exits as
``pantheon construct`` does, and a small, a middle and a large block (by FLOPs) plus
one exit branch are saved as TorchScript. For each, a real ``pantheon profiler-server``
process on 127.0.0.1 times it (``--repeat`` runs) and this process times the same
file with the same :func:`time_module`. Rounds alternate server / in-process to
spread machine noise over both; the reported figure is the median over rounds of
each side's p50 (other processes on a shared CPU inflate means; the means are listed
too). Both sides use the same number of torch threads (``--threads``, default 1).
Goal: |server - in-process| <= max(5%, 20 us). On the board this compares CUDA timings.

Usage::

    python bench/profiler_overhead.py --json
    python bench/profiler_overhead.py --save --rounds 7 --repeat 200
"""

from __future__ import annotations

import argparse
import io
import statistics
import sys
import tempfile
import warnings
from pathlib import Path
from typing import Any, Dict, List

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon import console
from pantheon.offline.profile import ProfilerClient
from pantheon.online import profiler_server as ps
from pantheon.online import timing
from pantheon.online.repository import load_torchscript


def chunks() -> List[Dict[str, Any]]:
    """(name, TorchScript bytes, input shape) of real sliced blocks of the digits ResNet18."""
    from pantheon.offline.exits import build_multi_exit
    from pantheon.zoo import get_task

    task = get_task("digits_resnet18")
    torch.manual_seed(0)
    mx = build_multi_exit(task, task.build_model()).eval()
    x = torch.zeros(1, *task.input_shape)
    items = []
    for j, (block, exit_) in enumerate(zip(mx.blocks, mx.exits)):
        items.append({"name": f"block_{j:02d}", "module": block, "shape": list(x.shape)})
        with torch.no_grad():
            x = block(x)
        if j == 1:
            items.append({"name": f"branch_{j:02d}", "module": exit_, "shape": list(x.shape)})
    from torch.utils.flop_counter import FlopCounterMode

    for it in items:
        with FlopCounterMode(display=False) as fc, torch.no_grad():
            it["module"](torch.zeros(it["shape"]))
        it["mflops"] = fc.get_total_flops() / 1e6
    blocks = sorted((i for i in items if i["name"].startswith("block")), key=lambda i: i["mflops"])
    picked = [blocks[0], blocks[len(blocks) // 2], blocks[-1]] + [i for i in items if i["name"].startswith("branch")]
    for it in picked:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            buf = io.BytesIO()
            torch.jit.save(torch.jit.trace(it["module"], torch.zeros(it["shape"])), buf)
        it["bytes"] = buf.getvalue()
    return picked


def start_server(log_dir: Path, threads: int) -> Any:
    srv = ps.ServerProcess(log_dir, "--threads", str(threads), env={"OMP_NUM_THREADS": str(threads)})
    return srv.proc, srv.port


def compare(it: Dict[str, Any], remote: List[timing.Timing], local: List[timing.Timing]) -> Dict[str, Any]:
    """Median over rounds of each side's p50 (robust to other processes) and mean."""
    srv = statistics.median(t.p50_us for t in remote)
    inproc = statistics.median(t.p50_us for t in local)
    diff = srv - inproc
    return {
        "chunk": it["name"], "input_shape": it["shape"], "mflops": round(it["mflops"], 2),
        "file_kb": round(len(it["bytes"]) / 1024, 1),
        "server_p50_us": round(srv, 2), "in_process_p50_us": round(inproc, 2),
        "diff_us": round(diff, 2), "diff_pct": round(100 * diff / inproc, 2),
        "server_mean_us": round(statistics.median(t.mean_us for t in remote), 2),
        "in_process_mean_us": round(statistics.median(t.mean_us for t in local), 2),
        "server_rounds_p50_us": [round(t.p50_us, 1) for t in remote],
        "in_process_rounds_p50_us": [round(t.p50_us, 1) for t in local],
        "goal_ok": abs(diff) <= max(0.05 * inproc, 20.0),
        "device": remote[0].device,
    }


def main(argv: List[str]) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--repeat", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--threads", type=int, default=1, help="torch CPU threads on both sides (the same on both)")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    items = chunks()
    device = timing.pick_device()
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        proc, port = start_server(Path(tmp), args.threads)
        try:
            with ProfilerClient("127.0.0.1", port) as client, console.progress() as bar:
                t = bar.add_task("rounds", total=args.rounds * len(items))
                for it in items:
                    remote, local = [], []
                    for _ in range(args.rounds):
                        remote.append(client.time_bytes(it["bytes"], it["shape"], name=it["name"], warmup=args.warmup,
                                                        repeat=args.repeat))
                        module = load_torchscript(it["bytes"], device)  # fresh each round, as the server does
                        local.append(timing.time_module(module, it["shape"], warmup=args.warmup, repeat=args.repeat, device=device))
                        bar.advance(t)
                    results.append(compare(it, remote, local))
        finally:
            proc.terminate()
            proc.wait(30)
    if not args.json:
        console.print_table("profiler overhead (median over rounds of the per-round p50)",
                            ["chunk", "MFLOPs", "server p50 us", "in-process p50 us", "diff us", "diff %", "goal"],
                            [[r["chunk"], r["mflops"], r["server_p50_us"], r["in_process_p50_us"], r["diff_us"],
                              r["diff_pct"], "ok" if r["goal_ok"] else "MISS"] for r in results], to_stderr=True)
    emit("profiler_overhead", {
        "goal": "server-reported latency within 5% or 20 us of in-process timing",
        "statistic": "median over rounds of the per-round p50 (means are listed too; the shared CPU makes them noisy)",
        "rounds": args.rounds, "repeat": args.repeat, "warmup": args.warmup, "threads": args.threads,
        "chunks": results, "all_goals_met": all(r["goal_ok"] for r in results),
    }, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
