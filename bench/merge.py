"""CPU latency of a model run as merged vs unmerged chunks (default vgg16, 3x224x224).

Variants, all on the same input, under ``torch.no_grad`` in eval mode:

* ``eager``: the fx chunks run one after another;
* ``script``: each chunk ``torch.jit.script``-ed;
* ``frozen``: scripted, ``torch.jit.freeze``-d and ``optimize_for_inference``-d (folds
  conv+BN and lets oneDNN fuse conv+ReLU, but only inside one chunk).

Repeats are interleaved (one run of every variant per round, order rotating) so load
from other processes hits all variants alike. The per-call overhead of an empty chunk is
measured too, to explain the gap (or its absence) with numbers.

Usage::

    python bench/merge.py --json --save
"""

from __future__ import annotations

import argparse
import functools
import os
import statistics
import sys
import warnings
from pathlib import Path
from typing import Any, Callable, Dict, List, Sequence

import torch
import torch.fx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon import console
from pantheon.offline import slice as sl
from pantheon.online.timing import time_calls

GOAL = 0.10  # merged >= 10% faster (paper: +10.3% on Xavier NX, VGG)
MODES = ("eager", "script", "frozen")
Runner = Callable[[torch.Tensor], Any]


def _chain(chunks: Sequence[Callable[[Any], Any]]) -> Runner:
    return lambda x: sl.run_chunks(chunks, x)


def _frozen(chunk: torch.fx.GraphModule) -> torch.jit.ScriptModule:
    return torch.jit.optimize_for_inference(torch.jit.freeze(torch.jit.script(chunk).eval()))


def build_variants(model: torch.nn.Module, x: torch.Tensor) -> Dict[str, Any]:
    """``{name: (runner, n_chunks)}`` for every variant; checks each against the model."""
    merged = sl.slice_model(model, x).chunks
    unmerged = sl.slice_model(model, x, merge=False).chunks
    variants: Dict[str, Any] = {}
    for tag, chunks in (("merged", merged), ("unmerged", unmerged)):
        variants[f"eager_{tag}"] = (_chain(chunks), len(chunks))
        variants[f"script_{tag}"] = (_chain([torch.jit.script(c) for c in chunks]), len(chunks))
        variants[f"frozen_{tag}"] = (_chain([_frozen(c) for c in chunks]), len(chunks))
    with torch.no_grad():
        ref = model(x)
        for name, (run, _) in variants.items():
            diff = sl.max_abs_diff(ref, run(x))
            if diff > 1e-4 * sl.tensors_of(ref)[0].abs().max().item():  # frozen graphs fold BN: not bit-exact
                raise RuntimeError(f"{name} differs from the model by {diff}")
    return variants


def time_variants(
    variants: Dict[str, Any], x: torch.Tensor, repeats: int, warmup: int, budget_s: float
) -> Dict[str, List[float]]:
    """Milliseconds per run of each variant, interleaved round by round.

    Stops early (keeping whole rounds) once ``budget_s`` seconds are spent, so a loaded
    machine still finishes in time; the caller reports how many rounds ran.
    """
    names = list(variants)
    with torch.no_grad(), console.progress() as bar:
        job = bar.add_task("timing", total=warmup + repeats)
        samples = time_calls(
            [functools.partial(variants[n][0], x) for n in names], repeats, warmup=warmup, rotate=True,
            budget_s=budget_s, on_round=lambda r: bar.advance(job),
        )
    return {n: [ns / 1e6 for ns in s] for n, s in zip(names, samples)}


def call_overhead_us(n: int = 2000) -> Dict[str, float]:
    """Median cost of calling one chunk that does nothing (x -> x + 0 on a 1-element tensor)."""
    gm = torch.fx.symbolic_trace(torch.nn.Sequential(torch.nn.Identity(), torch.nn.ReLU()))
    x = torch.zeros(1)
    out = {}
    with torch.no_grad():
        for name, fn in (("eager", gm), ("script", torch.jit.script(gm)), ("frozen", _frozen(gm))):
            (samples,) = time_calls([functools.partial(fn, x)], n)
            out[name] = statistics.median(samples) / 1e3
    return out


def _stats(xs: Sequence[float]) -> Dict[str, float]:
    s = sorted(xs)
    return {
        "median_ms": statistics.median(s),
        "p90_ms": s[min(len(s) - 1, int(round(0.9 * (len(s) - 1))))],
        "mean_ms": statistics.mean(s),
        "min_ms": s[0],
    }


def run(arch: str, shape: Sequence[int], repeats: int, warmup: int, budget_s: float) -> Dict[str, Any]:
    load_before = os.getloadavg()[0]
    torch.manual_seed(0)
    model = sl.build_arch(arch).eval()
    x = torch.randn(1, *shape)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit deprecation notices
        variants = build_variants(model, x)
        overhead = call_overhead_us()
    times = time_variants(variants, x, repeats, warmup, budget_s)
    lat = {n: _stats(t) for n, t in times.items()}
    n_merged, n_unmerged = variants["eager_merged"][1], variants["eager_unmerged"][1]
    speedup = {m: 1 - lat[f"{m}_merged"]["median_ms"] / lat[f"{m}_unmerged"]["median_ms"] for m in MODES}
    speedup_min = {m: 1 - lat[f"{m}_merged"]["min_ms"] / lat[f"{m}_unmerged"]["min_ms"] for m in MODES}
    # run-to-run noise: how far p90 sits above the median, averaged over variants
    noise = statistics.mean((v["p90_ms"] - v["median_ms"]) / v["median_ms"] for v in lat.values())
    extra_calls = n_unmerged - n_merged
    result = {
        "arch": arch,
        "input_shape": [1, *shape],
        "repeats": len(times["eager_merged"]),
        "repeats_asked": repeats,
        "warmup": warmup,
        "load_avg_1min": {"before": load_before, "after": os.getloadavg()[0], "cores": os.cpu_count()},
        "n_chunks": {"merged": n_merged, "unmerged": n_unmerged},
        "latency": lat,
        "merged_speedup": speedup,
        "merged_speedup_of_min": speedup_min,
        "noise_p90_over_median": noise,
        "per_call_overhead_us": overhead,
        "goal": {
            "min_speedup": GOAL,
            "met_by_mode": {m: s >= GOAL for m, s in speedup.items()},
            # a speed-up inside the run-to-run spread is not evidence either way
            "significant_by_mode": {m: abs(s) > noise for m, s in speedup.items()},
        },
    }
    goal = result["goal"]
    goal["met"] = any(goal["met_by_mode"][m] and goal["significant_by_mode"][m] for m in MODES)
    result["explanation"] = _explain(lat, speedup, overhead, extra_calls, noise)
    load = result["load_avg_1min"]
    if max(load["before"], load["after"]) > (os.cpu_count() or 1):
        result["explanation"] += (
            f" The machine was oversubscribed while timing (1-min load {load['before']:.1f} -> {load['after']:.1f}"
            f" on {load['cores']} cores): treat these latencies as upper bounds and rerun on an idle machine."
        )
    return result


def _explain(
    lat: Dict[str, Any], speedup: Dict[str, float], overhead: Dict[str, float], extra: int, noise: float
) -> str:
    e_ms = extra * overhead["eager"] / 1e3
    total = lat["eager_unmerged"]["median_ms"]
    return (
        f"Unmerged runs {extra} more chunk calls than merged. One empty chunk call costs"
        f" {overhead['eager']:.0f} us eager / {overhead['script']:.0f} us scripted, so the extra calls account"
        f" for about {e_ms:.2f} ms of a {total:.0f} ms run ({e_ms / total:.2%}): on CPU the convolution kernels"
        f" dominate. Merged vs unmerged median speed-up: eager {speedup['eager']:+.1%}, scripted"
        f" {speedup['script']:+.1%}, frozen+optimize_for_inference {speedup['frozen']:+.1%}. Eager and"
        " scripted chunks run the same ATen kernels either way, so merging cannot help there; the paper's"
        " +10.3% on Xavier NX comes from TensorRT/cuDNN fusing conv+bias+ReLU (and the per-launch overhead"
        " of a small GPU), which only happens when conv and ReLU sit in the same chunk. Freezing +"
        " optimize_for_inference is the closest CPU analogue (BN folding and oneDNN layout conversion work"
        f" within one chunk; every chunk boundary converts layouts back). Run-to-run noise here: p90 is {noise:.0%} above the median on average, so speed-ups"
        " smaller than that are not significant."
    )


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", default="vgg16")
    ap.add_argument("--input", default="3,224,224", help="input shape C,H,W")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--budget-s", type=float, default=200, help="stop timing rounds after this many seconds")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--save", action="store_true", help="record bench/results/merge.json")
    args = ap.parse_args(list(argv) or None)
    shape = [int(v) for v in args.input.split(",")]
    emit(
        "merge",
        run(args.arch, shape, args.repeats, args.warmup, args.budget_s),
        as_json=args.json,
        save=args.save,
    )


if __name__ == "__main__":
    main(sys.argv[1:])
