"""Chunks as CUDA graphs: capture once at load time, replay with one launch per chunk.

A batch-1 chunk of a small model is launch-bound: calling its TorchScript module launches
tens of kernels from Python, which costs more CPU time than the GPU spends on them.
:func:`capture` records the module's kernels once into a ``torch.cuda.CUDAGraph`` (fixed
input shape, static input and output buffers) and :class:`GraphChunk` replays them with
one launch:

* the input is copied into the graph's static input (allocated outside the graph pool,
  so no other graph's replay can overwrite it);
* the graph is replayed on the current stream (the runtime's high-priority stream);
* the static output is cloned into a fresh tensor owned by the caller, so a job's
  intermediate tensor survives other jobs' replays of the same graph.

Every graph of a runtime shares one memory pool (``torch.cuda.graph_pool_handle()``).
That is safe because replays are serialised on one stream and every output is copied out
before the next replay starts.

A module that cannot be captured (a host sync such as ``.item()``, data-dependent
shapes, a CPU op) stays eager: :func:`compile_chunks` returns the callables to use and
one :class:`Fallback` per chunk left eager, with its reason.

Example::

    pool = torch.cuda.graph_pool_handle()
    g = capture(torch.jit.load("block_00.pt").cuda(), [1, 3, 32, 32], pool)
    y = g(torch.randn(1, 3, 32, 32, device="cuda"))     # same values as the module's
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable, List, Optional, Sequence, Tuple

WARMUP = 3  # eager runs before capture (TorchScript profiling runs, cuDNN algorithm choice)


@dataclass
class Fallback:
    """A chunk that runs eager instead of as a CUDA graph, and why."""

    name: str
    reason: str


def _clone(out: Any) -> Any:
    if isinstance(out, tuple):
        return tuple(o.clone() for o in out)
    if isinstance(out, list):
        return [o.clone() for o in out]
    return out.clone()


class GraphChunk:
    """A captured chunk: ``chunk(x)`` copies ``x`` in, replays the graph, returns a copy of the output.

    Calls go to the current CUDA stream; the caller orders them (the runtime issues every
    replay from one thread on one stream).
    """

    graph_mode = True

    def __init__(self, graph: Any, static_in: Any, static_out: Any, module: Any) -> None:
        self.graph = graph
        self.static_in = static_in
        self.static_out = static_out
        self.module = module  # the eager module, for callers that need it (warm-up, best effort)

    def __call__(self, x: Any) -> Any:
        self.static_in.copy_(x)
        self.graph.replay()
        return _clone(self.static_out)


def capture(module: Any, shape: Sequence[int], pool: Any = None, *, torch: Any = None) -> GraphChunk:
    """Capture ``module`` on an input of ``shape`` as a CUDA graph (in ``pool`` when given).

    The warm-up runs with CUDA's sync debug mode set to "error", so a module that
    synchronises with the host (``.item()``, ``nonzero``, a copy to the CPU), the usual
    reason a capture fails, raises there, before any capture starts: a capture that fails
    half-way leaves torch's CUDA random-number generator in capture state for the rest of
    the process. Raises whatever torch raises (the caller falls back to eager).
    """
    if torch is None:
        import torch
    dev = torch.device("cuda", torch.cuda.current_device())
    static_in = torch.randn(*[int(d) for d in shape], device=dev)  # outside the graph pool
    side = torch.cuda.Stream(device=dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    with torch.inference_mode():
        mode = torch.cuda.get_sync_debug_mode()
        torch.cuda.set_sync_debug_mode("error")
        try:
            with torch.cuda.stream(side):  # warm-up off the default stream, as torch's docs require
                for _ in range(WARMUP):
                    module(static_in)
        finally:
            torch.cuda.set_sync_debug_mode(mode)
        torch.cuda.current_stream(dev).wait_stream(side)
        torch.cuda.synchronize(dev)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, pool=pool):
            static_out = module(static_in)
        graph.replay()  # a first replay proves the graph runs
        torch.cuda.synchronize(dev)
    return GraphChunk(graph, static_in, static_out, module)


Capture = Callable[[Any, Sequence[int], Any], Any]


def compile_chunks(items: Sequence[Tuple[str, Any, Sequence[int]]], pool: Any = None,
                   capture_fn: Optional[Capture] = None) -> Tuple[List[Any], List[Fallback]]:
    """Capture every ``(name, module, input_shape)``; return the callables and the fallbacks.

    A chunk whose capture raises keeps its eager module and gets a :class:`Fallback`
    (reason: the exception's first line). ``capture_fn`` replaces :func:`capture` (tests
    without a GPU pass a stand-in).
    """
    fn = capture_fn or capture
    out: List[Any] = []
    fallbacks: List[Fallback] = []
    for name, module, shape in items:
        try:
            out.append(fn(module, shape, pool))
        except Exception as exc:  # any capture failure: run this chunk eager
            fallbacks.append(Fallback(name, reason(exc)))
            out.append(module)
    return out, fallbacks


def reason(exc: BaseException) -> str:
    """One line saying why: the exception's own line (a TorchScript error's last line, which
    names the failing operation, rather than its generic first one)."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    line = lines[-1] if len(lines) > 1 and "TorchScript interpreter" in lines[0] else (lines[0] if lines else "")
    return f"{exc.__class__.__name__}: {line[:200]}" if line else exc.__class__.__name__


def chain_items(blocks: Sequence[Any], exits: Sequence[Any], exit_blocks: Sequence[int], dims: Sequence[int],
                device: Any, torch: Any = None) -> List[Tuple[str, Any, List[int]]]:
    """``(name, module, input_shape)`` of every block and exit of one task, for :func:`compile_chunks`.

    The blocks are run once on a random input of ``dims``: block ``b`` takes block ``b-1``'s
    output, and the exit after block ``e`` takes block ``e``'s output.
    """
    if torch is None:
        import torch
    x = torch.randn(*[int(d) for d in dims], device=device)
    ins: List[List[int]] = []
    with torch.inference_mode():
        for blk in blocks:
            ins.append(list(x.shape))
            x = blk(x)
    outs = ins[1:] + [list(x.shape)]
    return ([(f"block_{b:02d}", m, ins[b]) for b, m in enumerate(blocks)]
            + [(f"branch_{e:02d}", m, outs[e]) for m, e in zip(exits, exit_blocks)])


def is_graph(chunk: Any) -> bool:
    """Whether ``chunk`` replays a CUDA graph (else it is an eager module)."""
    return bool(getattr(chunk, "graph_mode", False))
