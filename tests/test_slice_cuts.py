"""Choosing k cuts among the critical nodes: the smallest crossing tensor within a window.

``snap_positions`` on hand-made positions (the rule itself), ``choose_cuts`` /
``slice_model(n_cuts=...)`` on real torch models: a small branchy net where the nearest
critical node and the smallest one in the window differ, and torchvision's GoogLeNet.
The bytes a cut keeps are checked against the tensors the chunks really pass on."""

from __future__ import annotations

import random
from typing import Dict, List

import pytest
import torch
import torch.fx

from pantheon.errors import UsageError
from pantheon.offline import slice as sl


def _nbytes(t: torch.Tensor) -> int:
    return t.untyped_storage().nbytes()


# ------------------------------------------------------------------------------------------------
# the rule on positions
# ------------------------------------------------------------------------------------------------


def test_window_takes_smallest_not_nearest():
    # 12 ops, k = 2: s = 4, targets 4 and 8, windows (2, 6] and (6, 10]
    crit, cost = [3, 5, 8, 10], {3: 40, 5: 10, 8: 90, 10: 20}
    assert sl.snap_positions(12, 2, crit, cost, "nearest") == [3, 8]
    assert sl.snap_positions(12, 2, crit, cost) == [5, 10]  # default: smallest in the window


def test_ties_go_to_the_nearest_then_the_earlier():
    # one cut: s = 5, target 5, window (2.5, 7.5]
    assert sl.snap_positions(9, 1, [3, 4, 7], {3: 8, 4: 8, 7: 8}) == [4]
    assert sl.snap_positions(9, 1, [4, 6], {4: 8, 6: 8}) == [4]


def test_window_edges_are_half_open():
    # s = 4: the first window is (2, 6], the second (6, 10]
    assert sl.snap_positions(12, 2, [2, 6, 7], {2: 1, 6: 5, 7: 9}) == [6, 7]


def test_empty_window_borrows_between_neighbours_or_gets_no_cut():
    # 20 ops, k = 3: s = 5, windows (2.5, 7.5], (7.5, 12.5], (12.5, 17.5]; the middle one is empty
    crit = [3, 7, 13, 16]
    # the first window picks 3: the middle target borrows 7, the critical node nearest it in (3, 13)
    assert sl.snap_positions(20, 3, crit, {3: 1, 7: 5, 13: 1, 16: 5}) == [3, 7, 13]
    # the first window picks 7: nothing lies strictly between 7 and 13, the middle target gets no cut
    assert sl.snap_positions(20, 3, crit, {3: 5, 7: 1, 13: 1, 16: 5}) == [7, 13]
    # two empty windows at the end: the first borrows 7 (after 3), the last finds nothing after 7
    assert sl.snap_positions(20, 3, [3, 7], {3: 1, 7: 1}) == [3, 7]


def test_cuts_are_strictly_increasing_and_in_their_windows():
    rng = random.Random(0)
    for _ in range(300):
        n_ops, k = rng.randint(3, 80), rng.randint(1, 15)
        crit = sorted(rng.sample(range(1, n_ops), rng.randint(1, n_ops - 1)))
        cost = {c: rng.choice([1, 2, 4, 8]) for c in crit}
        cuts = sl.snap_positions(n_ops, k, crit, cost)
        assert cuts == sorted(set(cuts)) and len(cuts) <= k and set(cuts) <= set(crit)
        s = n_ops / (k + 1)
        for j in range(1, k + 1):
            window = [c for c in crit if (j - 0.5) * s < c <= (j + 0.5) * s]
            inside = [c for c in cuts if c in window]
            if window:  # its own cut is the cheapest there (another target may borrow a node too)
                assert inside and min(cost[c] for c in inside) == min(cost[c] for c in window)
        n_windows = sum(any((j - 0.5) * s < c <= (j + 0.5) * s for c in crit) for j in range(1, k + 1))
        assert len(cuts) >= n_windows


def test_bad_arguments():
    with pytest.raises(UsageError, match="integer >= 1"):
        sl.snap_positions(10, 0, [3], {3: 1})
    with pytest.raises(UsageError, match="unknown snap rule 'middle'"):
        sl.snap_positions(10, 2, [3], {3: 1}, snap="middle")
    assert sl.snap_positions(10, 2, [], {}) == []


# ------------------------------------------------------------------------------------------------
# a small real model: the nearest critical node is a wide concat, a max-pool nearby is 4x smaller
# ------------------------------------------------------------------------------------------------


class Inception(torch.nn.Module):
    """Two branches concatenated: nothing inside is critical, the concat is."""

    def __init__(self, cin: int, cout: int) -> None:
        super().__init__()
        self.a = torch.nn.Conv2d(cin, cout, 1)
        self.b1 = torch.nn.Conv2d(cin, cout, 1)
        self.b2 = torch.nn.Conv2d(cout, cout, 3, padding=1)
        self.b3 = torch.nn.Conv2d(cout, cout, 3, padding=1)

    def forward(self, x):
        return torch.cat([self.a(x), self.b3(torch.relu(self.b2(torch.relu(self.b1(x)))))], 1)


class Branchy(torch.nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.stem = torch.nn.Conv2d(3, 8, 3, padding=1)
        self.inc1 = Inception(8, 8)
        self.pool1 = torch.nn.MaxPool2d(2)
        self.inc2 = Inception(16, 16)
        self.pool2 = torch.nn.MaxPool2d(2)
        self.inc3 = Inception(32, 16)
        self.head = torch.nn.Linear(32, 5)

    def forward(self, x):
        x = self.pool1(self.inc1(torch.relu(self.stem(x))))
        x = self.pool2(self.inc2(x))
        return self.head(self.inc3(x).mean((2, 3)))


X = torch.randn(1, 3, 16, 16)


@pytest.fixture(scope="module")
def branchy():
    torch.manual_seed(0)
    model = Branchy().eval()
    gm = sl.trace(model)
    sl.propagate_shapes(gm, X)
    return model, gm


def _chunk_out_bytes(chunks: List[torch.fx.GraphModule], x: torch.Tensor) -> List[int]:
    """What each chunk but the last really hands to the next (the tensor crossing its cut)."""
    out = []
    with torch.no_grad():
        for c in chunks[:-1]:
            x = c(x)
            out.append(_nbytes(x))
    return out


def test_branchy_nearest_and_smallest_differ(branchy):
    model, gm = branchy
    near, small = sl.choose_cuts(gm, 2, snap="nearest"), sl.choose_cuts(gm, 2)
    assert [n.name for n in near] != [n.name for n in small]
    crit = set(sl.find_critical_nodes(gm))
    assert set(near) <= crit and set(small) <= crit
    # measured on the chunks themselves, not on the recorded sizes the rule used
    near_bytes = _chunk_out_bytes(sl.split_at(gm, near), X)
    small_bytes = _chunk_out_bytes(sl.split_at(gm, small), X)
    assert near_bytes == [sl.crossing_bytes(n) for n in near]
    assert small_bytes == [sl.crossing_bytes(n) for n in small]
    assert sum(small_bytes) < sum(near_bytes)
    for a, b, n in zip(small_bytes, near_bytes, near):
        assert a <= b
        if a < b:  # where they differ, the nearest cut was a concat and the smallest its max-pool
            assert n.name.startswith("cat")


def test_branchy_chunks_chain_and_reproduce(branchy):
    model, _ = branchy
    for snap in sl.SNAP_RULES:
        res = sl.slice_model(model, X, merge=False, n_cuts=2, snap=snap)
        assert len(res.chunks) == len(res.cut_nodes) + 1 == 3
        assert set(res.cut_nodes) < set(res.critical_nodes)
        x = torch.randn(2, 3, 16, 16)
        with torch.no_grad():
            assert sl.max_abs_diff(model(x), sl.run_chunks(res.chunks, x)) == 0.0
        assert res.to_json()["cut_nodes"] == res.cut_nodes
    default = sl.slice_model(model, X, merge=False)
    assert default.cut_nodes == default.critical_nodes  # without n_cuts: every critical node


def test_choose_cuts_needs_recorded_sizes():
    gm = sl.trace(Branchy().eval())
    with pytest.raises(UsageError, match="propagate_shapes"):
        sl.choose_cuts(gm, 2)
    assert sl.choose_cuts(gm, 2, snap="nearest")  # the nearest rule does not look at sizes


# ------------------------------------------------------------------------------------------------
# GoogLeNet (random weights)
# ------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def googlenet():
    torch.manual_seed(0)
    model = sl.build_arch("googlenet").eval()
    x = torch.randn(1, 3, 64, 64)
    gm = sl.trace(model)
    sl.propagate_shapes(gm, x)
    return model, gm, x


def test_googlenet_smallest_keeps_less_than_nearest(googlenet):
    _, gm, _ = googlenet
    means: Dict[str, List[float]] = {"smallest": [], "nearest": []}
    for k in (4, 8, 12):
        for snap in sl.SNAP_RULES:
            cuts = sl.choose_cuts(gm, k, snap=snap)
            means[snap].append(sum(map(sl.crossing_bytes, cuts)) / len(cuts))
        assert len(sl.choose_cuts(gm, k)) >= len(sl.choose_cuts(gm, k, snap="nearest")) - 1
    assert all(a <= b for a, b in zip(means["smallest"], means["nearest"]))
    assert means["smallest"][1] < 0.8 * means["nearest"][1]  # k = 8: concats traded for max-pools


def test_googlenet_cut_chunks_reproduce(googlenet):
    model, gm, x = googlenet
    cuts = sl.choose_cuts(gm, 8)
    chunks = sl.split_at(gm, cuts)
    assert _chunk_out_bytes(chunks, x) == [sl.crossing_bytes(n) for n in cuts]
    res = sl.slice_model(model, x, n_cuts=8)  # merged, checked against the model inside
    assert res.exact and res.cut_nodes == [n.name for n in cuts]
    y = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert sl.max_abs_diff(model(y), sl.run_chunks(res.chunks, y)) == 0.0
