"""CUDA-graph compilation of chunks: the fallback rule, run on the CPU with a stand-in for the capture.

The capture itself needs CUDA (checked on a GPU by bench/gpu_graphs.py); what is tested here is
the bookkeeping every runtime relies on: a chunk whose capture fails keeps its eager module, in
its place, with one fallback record naming the chunk and the reason.
"""

from __future__ import annotations

import pytest
import torch

from pantheon.online import graphs


class StandInGraphChunk:
    """Stands in for a captured graph (CUDA cannot exist here): marks itself as a graph chunk."""

    graph_mode = True

    def __init__(self, module):
        self.module = module

    def __call__(self, x):
        return self.module(x)


def stand_in_capture(module, shape, pool):
    if getattr(module, "host_sync", False):
        raise RuntimeError("operation not permitted when stream is capturing\nsecond line")
    return StandInGraphChunk(module)


def test_a_chunk_that_cannot_be_captured_stays_eager_with_one_reason():
    good = torch.nn.ReLU()
    bad = torch.nn.Identity()
    bad.host_sync = True
    out, fallbacks = graphs.compile_chunks([("block_00", good, [1, 4]), ("block_01", bad, [1, 4]),
                                            ("branch_01", good, [1, 4])], pool=None, capture_fn=stand_in_capture)
    assert [graphs.is_graph(c) for c in out] == [True, False, True]
    assert out[1] is bad  # the eager module, in its place
    assert len(fallbacks) == 1 and fallbacks[0].name == "block_01"
    assert fallbacks[0].reason == "RuntimeError: operation not permitted when stream is capturing"


def test_a_torchscript_failure_is_reported_by_its_last_line():
    exc = RuntimeError("The following operation failed in the TorchScript interpreter.\nTraceback of TorchScript:\n"
                       "  x.item()\nRuntimeError: called a synchronizing CUDA operation\n")
    assert graphs.reason(exc) == "RuntimeError: RuntimeError: called a synchronizing CUDA operation"


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA (run on a GPU machine)")
def test_a_captured_chunk_matches_eager_and_survives_other_replays():
    conv = torch.nn.Conv2d(3, 8, 3).cuda().eval()
    g = graphs.capture(torch.jit.script(conv), [1, 3, 16, 16], torch.cuda.graph_pool_handle())
    a, b = torch.randn(1, 3, 16, 16, device="cuda"), torch.randn(1, 3, 16, 16, device="cuda")
    ya = g(a)
    yb = g(b)  # a second replay must not change the first job's tensor
    with torch.no_grad():
        assert torch.allclose(ya, conv(a), atol=1e-5) and torch.allclose(yb, conv(b), atol=1e-5)


def test_chain_items_give_each_chunk_the_shape_it_is_fed():
    """Block b gets block b-1's output; the exit after block e gets block e's output (real modules, CPU)."""
    blocks = [torch.nn.Conv2d(3, 8, 3, stride=2), torch.nn.Conv2d(8, 4, 3), torch.nn.Flatten()]
    exits = [torch.nn.Identity(), torch.nn.Identity()]
    items = graphs.chain_items(blocks, exits, [0, 2], [1, 3, 17, 17], "cpu")
    assert [(n, sh) for n, _m, sh in items] == [
        ("block_00", [1, 3, 17, 17]), ("block_01", [1, 8, 8, 8]), ("block_02", [1, 4, 6, 6]),
        ("branch_00", [1, 8, 8, 8]), ("branch_02", [1, 144])]
    assert items[3][1] is exits[0] and items[1][1] is blocks[1]
