"""The liveness measure behind bench/slicing.py, on a small model whose answer is known by hand."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest
import torch

from pantheon.offline import slice as sl

BENCH = Path(__file__).resolve().parent.parent / "bench" / "slicing.py"


@pytest.fixture(scope="module")
def bench():
    spec = importlib.util.spec_from_file_location("pantheon_bench_slicing", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


class Skip(torch.nn.Module):
    """x -> a=conv1 -> b=conv2 -> c=a+b -> d=relu -> e=conv3: a is live across the cut after b."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(4, 2, 1)

    def forward(self, x):
        a = self.conv1(x)
        b = self.conv2(a)
        return self.conv3(torch.relu(a + b))


def _live(bench, x):
    gm = sl.trace(Skip().eval())
    sl.propagate_shapes(gm, x)
    return gm, bench.Liveness(gm, x)


def test_bytes_across_cuts(bench):
    x = torch.randn(1, 3, 5, 5)
    gm, live = _live(bench, x)
    names = [n.name for n in live.nodes]
    assert names == ["x", "conv1", "conv2", "add", "relu", "conv3", "output"]
    fmap = 4 * 5 * 5 * 4  # one 4x5x5 float32 feature map
    assert live.across(names.index("conv1")) == fmap  # only a
    assert live.across(names.index("conv2")) == 2 * fmap  # a and b: conv2 is not critical
    assert live.across(names.index("add")) == fmap
    crit = [n.name for n in sl.find_critical_nodes(gm)]
    assert crit == ["conv1", "add", "relu"]


def test_chunk_peak_holds_inputs(bench):
    x = torch.randn(1, 3, 5, 5)
    _, live = _live(bench, x)
    fmap = 4 * 5 * 5 * 4
    # chunk = [conv2] after a cut at conv1: input a held, plus conv2's output b
    assert live.chunk_peak(2, 2) == 2 * fmap
    # chunk = [add, relu] entered by a and b (uniform cut after conv2): while relu runs,
    # a and b are still held by the caller, the sum is its input and relu makes a new map
    assert live.chunk_peak(3, 4) == 4 * fmap
    # the same ops after the critical cut at add: only the sum enters
    assert live.chunk_peak(4, 4) == 2 * fmap


def test_snap_rules(bench):
    crit = [3, 10, 20]
    assert sl.snap_positions(21, 3, crit, {}, "nearest") == [3, 10, 20]  # targets 5, 10, 16
    assert bench.side_snap([6, 16], crit, "previous") == [3, 10]
    assert bench.side_snap([6, 16], crit, "next") == [10, 20]
    assert bench.side_snap([4, 6], crit, "previous") == [3]  # two targets, one cut
    assert sl.uniform_positions(10, 4) == [2, 4, 6, 8]
