"""Context a preempted job keeps: cuts at critical nodes vs uniform cuts.

For each architecture and k = 4, 8, 12 cuts:

* **uniform**: k cuts evenly spaced over the topological order of the activation
  nodes (every node on an input-to-output path), ``slice.uniform_positions``;
* **critical** (the library's default, ``slice.choose_cuts(gm, k)``): cut j aims at
  ``j * s`` (``s`` = ops / (k + 1)) and takes, among the critical nodes within plus or
  minus ``s / 2`` of it, the one whose output tensor is smallest (ties: nearest);
* **nearest** (``snap="nearest"``, the former rule): each uniform cut moved to the
  nearest critical node;
* **previous** / **next**: each uniform cut moved to the critical node at or before /
  at or after it (sensitivity only).

Every rule's mean counts each distinct cut once (two targets snapped to one node give
one cut, as in the sliced model). The library chooses cuts by the size it recorded for
each critical node's output; the bytes below are measured independently, and
``library_bytes_match`` says whether the two agree at every chosen cut.

Measured from one recorded forward pass (every value kept, so storages are never
reused and a view and its base count once):

* bytes live across a cut: distinct storages of values produced before the cut and
  consumed after it (what a job preempted there must keep);
* per-chunk peak activation memory: walking each chunk's nodes in order, the most bytes
  alive at once while it runs, counting every value that enters the chunk (held by the
  caller until the chunk returns), the values made inside it that are still needed, and
  the node's own output. Parameters are not counted.

Usage::

    python bench/slicing.py --json            # all architectures, 3x224x224
    python bench/slicing.py --arch googlenet --save
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Sequence, Tuple

import torch
import torch.fx

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

from pantheon import console
from pantheon.offline import slice as sl

ARCHS = sl.CHECKED_ARCHS
KS = (4, 8, 12)
PAPER_REDUCTION = 0.607  # GoogLeNet, per-chunk memory, critical-node vs uniform slicing (paper)
GOAL = {"arch": "googlenet", "min_reduction": 0.40, "rule": "smallest"}

Storages = Dict[int, int]  # storage data_ptr -> bytes


class _Recorder(torch.fx.Interpreter):
    """Runs the graph keeping every value, noting the storages each node's value uses."""

    def __init__(self, gm: torch.fx.GraphModule) -> None:
        super().__init__(gm, garbage_collect_values=False)
        self.storages: Dict[torch.fx.Node, Storages] = {}

    def run_node(self, n: torch.fx.Node) -> Any:
        value = super().run_node(n)
        self.storages[n] = {
            t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in sl.tensors_of(value)
        }
        return value


class Liveness:
    """Positions, last uses and storages of the activation nodes of one traced model."""

    def __init__(self, gm: torch.fx.GraphModule, x: torch.Tensor) -> None:
        rec = _Recorder(gm)
        with torch.no_grad():
            rec.run(x)
        self.nodes = sl.path_nodes(gm)  # input first, output last
        self.pos = {n: i for i, n in enumerate(self.nodes)}
        self.storages = [rec.storages.get(n, {}) for n in self.nodes]
        self.last_use = [
            max((self.pos[u] for u in n.users if u in self.pos), default=i) for i, n in enumerate(self.nodes)
        ]

    @staticmethod
    def _bytes(parts: Sequence[Storages]) -> int:
        merged: Storages = {}
        for p in parts:
            merged.update(p)
        return sum(merged.values())

    def across(self, cut: int) -> int:
        """Bytes live across a cut placed right after position ``cut``."""
        return self._bytes([self.storages[i] for i in range(cut + 1) if self.last_use[i] > cut])

    def chunk_peak(self, start: int, end: int) -> int:
        """Peak bytes alive while running positions ``start..end`` (inputs held for the whole chunk)."""
        held = [self.storages[i] for i in range(start) if self.last_use[i] >= start]
        peak = 0
        for n in range(start, end + 1):
            inside = [self.storages[i] for i in range(start, n + 1) if self.last_use[i] >= n or i == n]
            peak = max(peak, self._bytes(held + inside))
        return peak

    def chunk_peaks(self, cuts: Sequence[int]) -> List[int]:
        """Peak of every chunk between sorted distinct ``cuts`` (chunks cover positions 1..N-2)."""
        bounds = [0, *cuts, len(self.nodes) - 2]
        return [self.chunk_peak(a + 1, b) for a, b in zip(bounds, bounds[1:])]


def side_snap(cuts: Sequence[int], critical: Sequence[int], rule: str) -> List[int]:
    """Each cut moved to the critical position at or before it (``previous``: roll back to the
    last finished boundary) or at or after it (``next``: finish the running block first);
    distinct, sorted."""
    if rule == "previous":
        moved = {max((c for c in critical if c <= cut), default=critical[0]) for cut in cuts}
    else:
        moved = {min((c for c in critical if c >= cut), default=critical[-1]) for cut in cuts}
    return sorted(moved)


def _mean(xs: Sequence[int]) -> float:
    return float(statistics.mean(xs)) if xs else 0.0


RULES = ("smallest", "nearest", "previous", "next")


def analyse(arch: str, shape: Tuple[int, ...]) -> Dict[str, Any]:
    """Rows for one architecture (see the module docstring)."""
    t0 = time.perf_counter()
    torch.manual_seed(0)
    model = sl.build_arch(arch).eval()
    gm = sl.trace(model)
    x = torch.randn(1, *shape)
    sl.propagate_shapes(gm, x)
    live = Liveness(gm, x)
    crit_nodes = sl.find_critical_nodes(gm)
    critical = [live.pos[n] for n in crit_nodes]
    recorded = {live.pos[n]: sl.crossing_bytes(n) for n in crit_nodes}
    n_ops = len(live.nodes) - 2
    rows = []
    for k in KS:
        uni = sl.uniform_positions(n_ops, k)
        u_bytes = [live.across(c) for c in uni]
        cuts = {
            "smallest": sl.snap_positions(n_ops, k, critical, recorded, "smallest"),
            "nearest": sl.snap_positions(n_ops, k, critical, recorded, "nearest"),
            "previous": side_snap(uni, critical, "previous"),
            "next": side_snap(uni, critical, "next"),
        }
        assert [live.nodes[p] for p in cuts["smallest"]] == sl.choose_cuts(gm, k), "bench and library differ"
        row: Dict[str, Any] = {
            "k": k,
            "uniform_cuts": len(uni),
            "uniform_mean_bytes": _mean(u_bytes),
            "uniform_max_bytes": max(u_bytes),
        }
        match = True
        for rule in RULES:
            measured = [live.across(c) for c in cuts[rule]]
            match = match and all(recorded[c] == b for c, b in zip(cuts[rule], measured))
            prefix = "critical" if rule == "smallest" else rule
            row[f"{prefix}_cuts"] = len(cuts[rule])
            row[f"{prefix}_mean_bytes"] = _mean(measured)
            row[f"{prefix}_max_bytes"] = max(measured, default=0)
            key = "reduction" if rule == "smallest" else f"reduction_{rule}"
            row[key] = 1 - _mean(measured) / _mean(u_bytes)
        row["critical_cut_nodes"] = [live.nodes[p].name for p in cuts["smallest"]]
        row["nearest_cut_nodes"] = [live.nodes[p].name for p in cuts["nearest"]]
        row["library_bytes_match"] = match
        u_peaks, c_peaks = live.chunk_peaks(uni), live.chunk_peaks(cuts["smallest"])
        row.update(
            {
                "uniform_chunk_peak_mean_bytes": _mean(u_peaks),
                "critical_chunk_peak_mean_bytes": _mean(c_peaks),
                "chunk_peak_reduction": 1 - _mean(c_peaks) / _mean(u_peaks),
            }
        )
        rows.append(row)
    return {
        "activation_nodes": len(live.nodes),
        "critical_nodes": len(critical),
        "rows": rows,
        "seconds": round(time.perf_counter() - t0, 2),
    }


def run(archs: Sequence[str], shape: Tuple[int, ...]) -> Dict[str, Any]:
    results: Dict[str, Any] = {}
    with console.progress() as bar:
        job = bar.add_task("liveness", total=len(archs))
        for arch in archs:
            bar.update(job, description=arch)
            results[arch] = analyse(arch, shape)
            bar.advance(job)
    out: Dict[str, Any] = {"input_shape": list(shape), "ks": list(KS), "archs": results}
    if GOAL["arch"] in results:
        out["goal"], out["paper_comparison"] = _verdict(results[GOAL["arch"]]["rows"])
    return out


def _pct(xs: Sequence[float]) -> str:
    return "/".join(f"{x:.0%}" for x in xs)


_KEYS = {
    "smallest": "reduction",
    "nearest": "reduction_nearest",
    "previous": "reduction_previous",
    "next": "reduction_next",
}


def _verdict(rows: Sequence[Dict[str, Any]]) -> Tuple[Dict[str, Any], Dict[str, Any]]:
    """The googlenet goal (the default rule, and each other rule for comparison) and the paper's figure."""
    red = {rule: [r[key] for r in rows] for rule, key in _KEYS.items()}
    met = {rule: all(x >= GOAL["min_reduction"] for x in xs) for rule, xs in red.items()}
    peaks = [r["chunk_peak_reduction"] for r in rows]
    ks = [r["k"] for r in rows]
    goal = {
        **GOAL,
        "ks": ks,
        "reductions": red["smallest"],
        "met": met["smallest"],
        "verdict": "met" if met["smallest"] else "missed",
        "cuts": [r["critical_cuts"] for r in rows],
        "reductions_by_rule": red,
        "met_by_rule": met,
        "note": (
            f"k={ks}: cutting at the critical node with the smallest output within half the ideal spacing of"
            f" each target reduces the bytes live at the cuts by {_pct(red['smallest'])} vs uniform cuts"
            f" ({[r['critical_cuts'] for r in rows]} cuts);"
            f" the nearest critical node {_pct(red['nearest'])}, the previous {_pct(red['previous'])}, the next"
            f" {_pct(red['next'])}. Inside an inception block the nearest critical node is often the block's"
            " concat output rather than the max-pool a few nodes away, which is several times smaller."
        ),
    }
    paper = {
        "paper_per_chunk_memory_reduction": PAPER_REDUCTION,
        "ours_across_cut_reduction": red["smallest"],
        "ours_chunk_peak_reduction": peaks,
        "explanation": (
            f"The paper reports -{PAPER_REDUCTION:.1%} per-chunk memory on GoogLeNet (critical vs uniform"
            f" slicing). The context a preempted job keeps (bytes live across the cut) drops by"
            f" {_pct(red['smallest'])} here (smallest crossing tensor within the window; {_pct(red['nearest'])}"
            f" with the nearest critical node), the closest analogue of the paper's measure. Peak activation"
            f" memory while a chunk runs drops {_pct(peaks)}: the working set inside a chunk (an inception"
            " block's input plus its four branch outputs before the concat) is the same under both slicings,"
            " and only the extra tensors a uniform chunk carries across its cuts differ. The paper measured on"
            " the board (allocator granularity, its own cut placement), which a CPU liveness walk does not"
            " reproduce."
        ),
    }
    return goal, paper


def main(argv: Sequence[str] = ()) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--arch", action="append", help="architecture (repeatable); default: all")
    ap.add_argument("--input", default="3,224,224", help="input shape C,H,W")
    ap.add_argument("--json", action="store_true", help="print JSON only")
    ap.add_argument("--save", action="store_true", help="record bench/results/slicing.json")
    args = ap.parse_args(list(argv) or None)
    shape = tuple(int(v) for v in args.input.split(","))
    result = run(args.arch or ARCHS, shape)
    emit("slicing", result, as_json=args.json, save=args.save)


if __name__ == "__main__":
    main(sys.argv[1:])
