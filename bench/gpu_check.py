"""GPU check: real-time DMR must not move as best-effort load rises on CUDA.

ONE prepared script for a borrowed GPU (H100/H200, a few minutes). It needs torch and the
pantheon package with its core dependencies only (``pip install -e .``; no torchvision).

What it does:

1. builds a small deployment repository on the fly: TorchScript conv stacks at 3x224x224
   whose chunks take about 1-3 ms each on the GPU (calibrated at start: convs per block are
   chosen from one measured conv), two real-time tasks with early exits, a paper-like
   best-effort task (AlexNet-sized next to them: ~10% of the GPU at 25 jobs/s) and a heavy
   one (~60% of the GPU at 25 jobs/s); latencies profiled on the device;
2. replays a real-time workload (two periodic streams, about 50% GPU utilisation, deadlines
   2.5x the model latency) on the live runtime (``pantheon`` policy, CUDA, high-priority
   stream for real-time chunks, at most 2 in flight), once per best-effort rate 0, 5, 15 and
   25 jobs/s (the best-effort task runs whole on the low-priority stream);
3. a control run at 25 jobs/s with both streams at the same priority, to show whether the
   check can see interference at all, and an overload record with the heavy best-effort task
   at 25 jobs/s (real time + best effort > 100% of the GPU: where stream priorities stop);
4. checks: real-time DMR at every best-effort rate within max(2 points, 3 binomial sigma)
   of the rate-0 DMR; every real-time chunk launched on the high-priority stream; the
   best-effort task completed jobs; prints JSON and writes it to ``--out``.

Usage::

    python bench/gpu_check.py                       # on the GPU machine (about 3 minutes)
    python bench/gpu_check.py --device cpu --quick  # dry run of the same code on a CPU
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from pantheon.bench import benchmarks as B
from pantheon.online.repository import read_repository
from pantheon.online.runtime import Runtime
from pantheon.online.timing import time_calls
from pantheon.online.workload import JobSpec

RATES = [0, 5, 15, 25]
DEFAULT_OUT = Path(__file__).resolve().parent / "results" / "gpu_check.json"


def log(msg: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def conv_depth(device: str, channels: int, hw: int, target_us: float) -> int:
    """Convs per block so that one block takes about ``target_us`` on ``device``."""
    conv = torch.nn.Conv2d(channels, channels, 3, padding=1).to(device).eval()
    x = torch.randn(1, channels, hw, hw, device=device)
    with torch.inference_mode():
        sync = torch.cuda.synchronize if device.startswith("cuda") else None
        (samples,) = time_calls([lambda: conv(x)], 20, warmup=5, sync=sync)
    one = min(samples) / 1e3  # the fastest run: robust to other load on the machine
    return max(1, min(48, round(target_us / max(one, 1.0))))


def build(dest: Path, device: str, quick: bool) -> Dict[str, Any]:
    """Two real-time tasks, a paper-like best-effort task ``be`` (AlexNet-sized next to the
    real-time models: about 4 ms, i.e. ~10% of the GPU at 25 jobs/s) and a heavy one
    ``be_heavy`` (8 blocks of 3 ms with kernels twice as wide: ~60% of the GPU at 25 jobs/s,
    which with the real-time load oversubscribes the GPU) to show where priorities stop."""
    if quick:  # dry run: fixed small sizes (no calibration), a few hundred microseconds per block
        hw, rt_c, hv_c, d_rt, d_be, d_hv = 64, 16, 16, 4, 4, 8
    else:  # about 1.5 ms per real-time block and 3 ms per heavy best-effort block on the GPU
        hw, rt_c, hv_c = 224, 64, 128
        d_rt = conv_depth(device, rt_c, hw, 1500.0)
        d_be = conv_depth(device, rt_c, hw, 1000.0)
        d_hv = conv_depth(device, hv_c, hw, 3000.0)
    spec = {
        "rt_a": {"blocks": 6, "channels": rt_c, "depth": d_rt, "hw": hw, "exits": [3, 4, 5], "acc": [0.90, 0.93, 0.95]},
        "rt_b": {"blocks": 4, "channels": rt_c, "depth": d_rt, "hw": hw, "exits": [2, 3], "acc": [0.88, 0.91]},
        "be": {"blocks": 4, "channels": rt_c, "depth": d_be, "hw": hw, "exits": [3], "acc": [0.5]},
        "be_heavy": {"blocks": 8, "channels": hv_c, "depth": d_hv, "hw": hw, "exits": [7], "acc": [0.5]},
    }
    B.build_conv_repository(dest, spec, device=device)
    return {"hw": hw, "channels": {"rt": rt_c, "be": rt_c, "be_heavy": hv_c},
            "convs_per_block": {"rt": d_rt, "be": d_be, "be_heavy": d_hv}}


def drop_timeline(logdir: Path, seconds: float) -> Dict[str, int]:
    """Missed or dropped real-time jobs in the first second vs the rest (a start-up transient shows here)."""
    first = rest = 0
    path = logdir / "events.jsonl"
    if not path.is_file():
        return {}
    releases: Dict[int, int] = {}
    with open(path) as f:
        for line in f:
            ev = json.loads(line)
            if ev.get("ev") == "release":
                releases[ev["job"]] = ev["release"]
            elif (ev.get("ev") == "drop") or (ev.get("ev") == "exit" and not ev.get("met")):
                rel = releases.get(ev.get("job"), ev["t"])
                if rel < 1_000_000:
                    first += 1
                else:
                    rest += 1
    return {"missed_first_1s": first, "missed_after_1s": rest}


def workload(repo, seconds: float, utilisation: float = 0.5, deadline_x: float = 2.5) -> List[JobSpec]:
    """Two periodic real-time streams, each half of ``utilisation``, deadlines ``deadline_x`` x the model latency."""
    jobs = []
    k = 0
    for name in ("rt_a", "rt_b"):
        full = repo.tasks[name].full_latency
        period = full / (utilisation / 2)
        t = 0.0 if name == "rt_a" else period / 3
        while t < seconds * 1e6:
            jobs.append(JobSpec(k, name, int(t), int(t + deadline_x * full)))
            k += 1
            t += period
    jobs.sort(key=lambda j: (j.release, j.index))
    return [JobSpec(i, j.task, j.release, j.deadline) for i, j in enumerate(jobs)]


def run_config(repo_dir: Path, device: str, jobs: List[JobSpec], rate: float, logdir: Path,
               priorities=None, be_task: str = "be") -> Dict[str, Any]:
    repo = read_repository(repo_dir)
    be = [(be_task, float(rate))] if rate > 0 else []
    rt = Runtime(repo, device=device, policy="pantheon", best_effort=be, log=logdir / "events.jsonl",
                 cuda_priorities=priorities)
    s = rt.run_workload(jobs)
    out = {k: s[k] for k in ("jobs", "dmr", "relative_accuracy", "dropped", "late", "preempted_jobs",
                             "response_p50_us", "response_p99_us")}
    out["best_effort_task"] = be_task
    out["best_effort_rate"] = rate
    out["best_effort_completed"] = s["best_effort"].get(be_task, {}).get("jobs", 0)
    out["best_effort_response_p50_us"] = s["best_effort"].get(be_task, {}).get("response_p50_us")
    out.update(drop_timeline(logdir, 0))
    out["scheduler_p50_us"] = s["scheduler"]["p50_us"]
    if "cuda" in s:
        out["cuda"] = s["cuda"]
    ex = rt.executor
    if hasattr(ex, "describe"):
        out["executor"] = ex.describe()
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", default="cuda", help="cuda (default) or cpu (dry run)")
    ap.add_argument("--quick", action="store_true", help="small models and 3 s per configuration")
    ap.add_argument("--seconds", type=float, default=None, help="workload length per configuration")
    ap.add_argument("--no-control", action="store_true", help="skip the equal-priority control run")
    ap.add_argument("--out", type=Path, default=DEFAULT_OUT)
    args = ap.parse_args()
    device = args.device
    if device.startswith("cuda") and not torch.cuda.is_available():
        print(json.dumps({"ok": False, "error": "torch sees no CUDA device"}))
        return 2
    seconds = args.seconds or (3.0 if args.quick else 20.0)
    t_start = time.monotonic()
    result: Dict[str, Any] = {
        "benchmark": "gpu_check",
        "device": device,
        "machine": {"host": platform.node(), "python": platform.python_version(), "torch": torch.__version__,
                    "cuda": torch.version.cuda, "gpu": torch.cuda.get_device_name(0) if device.startswith("cuda") else None,
                    "cpus": os.cpu_count(), "date": time.strftime("%Y-%m-%dT%H:%M:%S%z")},
        "settings": {"seconds_per_config": seconds, "best_effort_rates": RATES, "policy": "pantheon",
                     "max_inflight": 2, "utilisation": 0.5, "deadline": "2.5x model latency"},
    }
    if device.startswith("cuda"):
        least, greatest = torch.cuda.Stream.priority_range()
        result["stream_priority_range"] = {"least": least, "greatest": greatest}
    with tempfile.TemporaryDirectory() as d:
        d = Path(d)
        log(f"building the repository on {device}")
        result["models"] = build(d / "repo", device, args.quick)
        repo = read_repository(d / "repo")
        result["models"]["full_latency_us"] = {n: t.full_latency for n, t in repo.tasks.items()}
        result["models"]["block_latency_us"] = {n: list(t.costs()[0]) for n, t in repo.tasks.items()}
        # the CPU dry run is lighter with looser deadlines: a shared CPU is far noisier than a GPU
        util, dl_x = (0.2, 6.0) if args.quick else (0.5, 2.5)
        result["settings"].update(utilisation=util, deadline=f"{dl_x}x model latency")
        jobs = workload(repo, seconds, util, dl_x)
        result["settings"]["rt_jobs_per_config"] = len(jobs)
        runs = []
        for rate in RATES:
            log(f"real-time workload ({len(jobs)} jobs) with best effort at {rate} jobs/s")
            runs.append(run_config(d / "repo", device, jobs, rate, d / f"be{rate}"))
            log(f"  DMR {100 * runs[-1]['dmr']:.2f}%, best-effort completed {runs[-1]['best_effort_completed']}")
        result["runs"] = runs
        if device.startswith("cuda") and not args.no_control:
            log("control: best effort at 25 jobs/s on a stream of the same priority as real time")
            least, _ = torch.cuda.Stream.priority_range()
            result["control_equal_priority"] = run_config(d / "repo", device, jobs, RATES[-1], d / "control",
                                                          priorities=(least, least))
            log("overload record: the heavy best-effort task at 25 jobs/s (GPU oversubscribed)")
            result["heavy_best_effort_25"] = run_config(d / "repo", device, jobs, RATES[-1], d / "heavy",
                                                        be_task="be_heavy")
    base = runs[0]
    n = max(1, base["jobs"])
    p = max(base["dmr"], 1.0 / n)
    tol = max(0.02, 3 * math.sqrt(p * (1 - p) / n))
    checks: Dict[str, Any] = {
        "rt_dmr_tolerance": round(tol, 4),
        "rt_dmr_stable": all(r["dmr"] - base["dmr"] <= tol for r in runs[1:]),
        "rt_dmr_by_rate": {str(r["best_effort_rate"]): r["dmr"] for r in runs},
        "best_effort_ran": all(r["best_effort_completed"] > 0 for r in runs[1:]),
    }
    if "heavy_best_effort_25" in result:
        checks["heavy_best_effort_dmr"] = result["heavy_best_effort_25"]["dmr"]
    if device.startswith("cuda"):
        ok_stream = all(r.get("cuda", {}).get("rt_launches", 0) > 0
                        and r["cuda"]["rt_launches_off_high_priority_stream"] == 0 for r in runs)
        ex = runs[0].get("executor", {})
        distinct = result["stream_priority_range"]["least"] != result["stream_priority_range"]["greatest"]
        checks["rt_on_high_priority_stream"] = ok_stream and (
            not distinct or ex.get("rt_stream_priority", 0) < ex.get("be_stream_priority", 0))
        checks["max_inflight_seen"] = max(r.get("cuda", {}).get("max_inflight_seen", 0) for r in runs)
        if "control_equal_priority" in result:
            checks["control_dmr_equal_priority"] = result["control_equal_priority"]["dmr"]
    else:
        checks["rt_on_high_priority_stream"] = "n/a on cpu (best effort runs only while no real-time job is queued)"
    result["checks"] = checks
    stream_ok = checks["rt_on_high_priority_stream"] is True if device.startswith("cuda") else True
    result["ok"] = bool(checks["rt_dmr_stable"] and checks["best_effort_ran"] and stream_ok)
    result["wall_s"] = round(time.monotonic() - t_start, 1)
    text = json.dumps(result, indent=2, default=str)
    print(text)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text + "\n")
    log(f"wrote {args.out} in {result['wall_s']} s: ok={result['ok']}")
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
