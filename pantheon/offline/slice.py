"""Slice a DNN into chunks at its critical nodes (``pantheon slice``).

A *critical node* is a node that every path from the model's input to its
output passes through. Cutting right after a critical node means exactly one
tensor crosses the cut, so a job preempted there keeps one intermediate tensor.

The stage is a chain of torch.fx passes, each a function on a ``GraphModule``:

1. :func:`trace` the model (eval mode) into a ``GraphModule``;
2. :func:`find_critical_nodes` (tensor-valued dominators of the output);
   optionally :func:`choose_cuts` keeps about ``k`` of them, evenly spread, each the
   critical node with the smallest crossing tensor within half the ideal spacing of its
   target (see :func:`snap_positions`);
3. :func:`split_at` those nodes: one chunk between consecutive cuts, each chunk
   a ``GraphModule`` with exactly one placeholder;
4. :func:`merge_light_chunks`: fold every chunk without conv/linear into the
   compute-heavy chunk before it (keeps conv+BN+ReLU together for fusion);
5. check that :func:`run_chunks` reproduces the original output.

:func:`slice_model` is the driver. Example::

    >>> import torch, torchvision
    >>> from pantheon.offline.slice import slice_model, run_chunks
    >>> res = slice_model(torchvision.models.resnet18(), torch.randn(1, 3, 64, 64))
    >>> len(res.chunks), res.max_abs_diff
    (10, 0.0)
    >>> out = run_chunks(res.chunks, torch.randn(1, 3, 64, 64))
"""

from __future__ import annotations

import linecache
import os
import traceback
from dataclasses import asdict, dataclass, field
from typing import Any, Callable, Dict, List, Optional, Sequence, Set

import torch
import torch.fx
from torch.fx.passes.shape_prop import ShapeProp

from pantheon.errors import ModelError, TraceError, UsageError
from pantheon.online.memory import module_bytes
from pantheon.zoo.models import build_arch

# "0 or within 1e-5 relative": max |chunked - original| <= REL_TOL * max |original|
REL_TOL = 1e-5

# Modules and functions that make a chunk "compute-heavy" (merging keeps them as anchors).
_COMPUTE_MODULES = (
    torch.nn.modules.conv._ConvNd,
    torch.nn.Linear,
    torch.nn.Bilinear,
    torch.nn.MultiheadAttention,
    torch.nn.RNNBase,
)
_COMPUTE_FUNCTIONS = {
    torch.nn.functional.conv1d,
    torch.nn.functional.conv2d,
    torch.nn.functional.conv3d,
    torch.nn.functional.conv_transpose1d,
    torch.nn.functional.conv_transpose2d,
    torch.nn.functional.conv_transpose3d,
    torch.nn.functional.linear,
    torch.nn.functional.bilinear,
    torch.conv1d,
    torch.conv2d,
    torch.conv3d,
    torch.matmul,
    torch.mm,
    torch.bmm,
    torch.addmm,
    torch.baddbmm,
    torch.einsum,
}
_COMPUTE_METHODS = {"matmul", "mm", "bmm", "addmm", "baddbmm"}
_OP_KINDS = ("call_module", "call_function", "call_method")


@dataclass
class ChunkInfo:
    """What one chunk costs.

    ``out_shape`` is the chunk's output shape on the example input, batch dimension
    included (a list of shapes when the chunk returns several tensors);
    ``out_bytes`` is the size of that output; ``param_bytes`` counts the parameters
    and buffers the chunk holds (:func:`pantheon.online.memory.module_bytes`).
    """

    index: int
    n_ops: int
    param_bytes: int
    out_bytes: int
    out_shape: list
    has_compute: bool


@dataclass
class SliceResult:
    """Chunks of a sliced model and the evidence that they are equivalent to it.

    ``chunks[i]`` takes exactly one tensor; the last chunk returns whatever the model
    returns (a tensor, a tuple, a dict). ``max_abs_diff`` compares the chained chunks
    with the original model on a random input (``nan`` when the check was skipped).
    ``critical_nodes`` names every critical node, ``cut_nodes`` those the model was cut
    at (all of them, or the ones :func:`choose_cuts` picked), before merging.
    """

    chunks: List[torch.fx.GraphModule]
    info: List[ChunkInfo]
    max_abs_diff: float
    critical_nodes: List[str]
    input_shape: List[int] = field(default_factory=list)
    merged: bool = True
    ref_max_abs: float = float("nan")  # max |original output|: the scale of the relative tolerance
    arch: Optional[str] = None
    task: Optional[str] = None
    cut_nodes: List[str] = field(default_factory=list)

    @property
    def exact(self) -> bool:
        """Bit-identical outputs."""
        return self.max_abs_diff == 0.0

    @property
    def equivalent(self) -> bool:
        """Outputs equal, or within ``REL_TOL`` relative to the largest output magnitude."""
        return within_tolerance(self.max_abs_diff, self.ref_max_abs)

    @property
    def total_param_bytes(self) -> int:
        return sum(i.param_bytes for i in self.info)

    def to_json(self) -> Dict[str, Any]:
        """The machine-readable report (``pantheon slice --json``)."""
        out: Dict[str, Any] = {}
        if self.arch is not None:
            out["arch"] = self.arch
        if self.task is not None:
            out["task"] = self.task
        out.update(
            {
                "input_shape": list(self.input_shape),
                "merged": self.merged,
                "n_chunks": len(self.chunks),
                "n_critical": len(self.critical_nodes),
                "chunks": [asdict(i) for i in self.info],
                "total_param_bytes": self.total_param_bytes,
                "max_abs_diff": self.max_abs_diff,
                "ref_max_abs": self.ref_max_abs,
                "rel_tol": REL_TOL,
                "exact": self.exact,
                "equivalent": self.equivalent,
                "critical_nodes": list(self.critical_nodes),
                "cut_nodes": list(self.cut_nodes),
            }
        )
        return out


def within_tolerance(max_abs_diff: float, ref_max_abs: float) -> bool:
    """``max_abs_diff`` is 0 or at most ``REL_TOL`` times the reference magnitude."""
    if max_abs_diff == 0.0:
        return True
    return max_abs_diff <= REL_TOL * max(ref_max_abs, 1e-12)  # nan compares False: not equivalent


# ------------------------------------------------------------------------------------------------
# 1. tracing
# ------------------------------------------------------------------------------------------------


class _PathTracer(torch.fx.Tracer):
    """A tracer that remembers which submodule it is inside, to name it when tracing breaks."""

    def __init__(self) -> None:
        super().__init__()
        self.where: List[str] = []  # stack of "path (Type)" of the modules being traced
        self.failed_in: Optional[str] = None

    def call_module(self, m, forward, args, kwargs):
        try:
            path = self.path_of_module(m)
        except NameError:  # a module that is not a submodule of the root
            path = ""
        self.where.append(f"{path} ({type(m).__name__})" if path else type(m).__name__)
        try:
            return super().call_module(m, forward, args, kwargs)
        except Exception:
            self.failed_in = self.failed_in or self.where[-1]  # innermost module, kept past unwinding
            raise
        finally:
            self.where.pop()


def _user_frame(exc: BaseException) -> str:
    """``file:line `code``` of the innermost frame outside torch: the line that broke tracing."""
    torch_dir = os.path.dirname(torch.__file__)
    found = ""
    for frame in traceback.extract_tb(exc.__traceback__):
        if frame.filename.startswith(torch_dir) or frame.filename == __file__:
            continue
        code = (frame.line or linecache.getline(frame.filename, frame.lineno or 0)).strip()
        found = f"{os.path.basename(frame.filename)}:{frame.lineno} in {frame.name}() `{code}`"
    return found


def trace(model: torch.nn.Module, concrete_args: Optional[Dict[str, Any]] = None) -> torch.fx.GraphModule:
    """Symbolically trace ``model`` with torch.fx.

    Args:
        model: the module; trace it in the mode you want baked in (use ``model.eval()``).
        concrete_args: arguments to specialise (passed to the fx tracer).

    Returns:
        The traced ``GraphModule`` (sharing the model's submodules).

    Raises:
        TraceError: one line naming the submodule and source line that broke tracing.

    Example::

        >>> gm = trace(torchvision.models.resnet18().eval())
    """
    tracer = _PathTracer()
    try:
        graph = tracer.trace(model, concrete_args=concrete_args)
    except Exception as exc:
        where = tracer.failed_in or type(model).__name__
        line = _user_frame(exc)
        msg = " ".join(str(exc).split()) or type(exc).__name__
        hint = (
            "make the model fx-traceable: no branching on tensor values"
            if "control flow" in msg
            else "make the model fx-traceable: wrap the op with torch.fx.wrap or keep it in a leaf module"
        )
        raise TraceError(
            f"cannot trace {type(model).__name__} with torch.fx: in module {where}"
            + (f" at {line}" if line else "")
            + f": {msg} ({hint})"
        ) from exc
    name = model.__class__.__name__ if isinstance(model, torch.nn.Module) else model.__name__
    return torch.fx.GraphModule(tracer.root, graph, name)


def input_node(gm: torch.fx.GraphModule) -> torch.fx.Node:
    """The single input placeholder (placeholders with a default come from ``concrete_args``)."""
    inputs = [n for n in gm.graph.nodes if n.op == "placeholder" and not n.args]
    if len(inputs) != 1:
        names = ", ".join(n.name for n in inputs) or "none"
        raise ModelError(
            f"slicing needs a model with exactly one tensor input; the graph has {len(inputs)}: {names}"
        )
    return inputs[0]


def _output_node(gm: torch.fx.GraphModule) -> torch.fx.Node:
    return next(n for n in reversed(gm.graph.nodes) if n.op == "output")


def _input_dependent(gm: torch.fx.GraphModule) -> Set[torch.fx.Node]:
    """Nodes whose value depends on the input (forward reachability from the placeholder)."""
    seen = {input_node(gm)}
    for n in gm.graph.nodes:  # graph order is topological
        if n not in seen and any(a in seen for a in n.all_input_nodes):
            seen.add(n)
    return seen


def _reaches_output(gm: torch.fx.GraphModule) -> Set[torch.fx.Node]:
    """Nodes whose value the output depends on (backward reachability)."""
    out = _output_node(gm)
    seen = {out}
    for n in reversed(gm.graph.nodes):
        if n in seen:
            seen.update(n.all_input_nodes)
    return seen


def path_nodes(gm: torch.fx.GraphModule) -> List[torch.fx.Node]:
    """Nodes on some input-to-output path, in topological order (input first, output last).

    These are the activations: parameters, constants and dead code are left out.
    """
    fwd, bwd = _input_dependent(gm), _reaches_output(gm)
    return [n for n in gm.graph.nodes if n in fwd and n in bwd]


# ------------------------------------------------------------------------------------------------
# 2. critical nodes
# ------------------------------------------------------------------------------------------------


def dominators_of_output(gm: torch.fx.GraphModule) -> List[torch.fx.Node]:
    """All nodes on every input-to-output path (input and output excluded), in order.

    In a topological order a node ``v`` lies on every path iff no edge ``u -> w`` between
    path nodes jumps over it (``pos(u) < pos(v) < pos(w)``): such an edge would give a path
    around ``v``, and any path around ``v`` has such an edge. One sweep over the edges.
    """
    nodes = path_nodes(gm)
    pos = {n: i for i, n in enumerate(nodes)}
    cover = [0] * (len(nodes) + 1)  # difference array: how many edges jump over position i
    for w in nodes:
        for u in w.all_input_nodes:
            if u in pos and pos[w] - pos[u] > 1:
                cover[pos[u] + 1] += 1
                cover[pos[w]] -= 1
    crit, running = [], 0
    for i, n in enumerate(nodes):
        running += cover[i]
        if 0 < i < len(nodes) - 1 and running == 0:
            crit.append(n)
    return crit


def _is_tensor_node(n: torch.fx.Node) -> bool:
    """True when shape propagation saw one tensor here (or has not run: unknown, assume yes)."""
    seen = n.meta.get("type")  # set by ShapeProp (propagate_shapes) for every node it ran
    return seen is None or issubclass(seen, torch.Tensor)


def find_critical_nodes(gm: torch.fx.GraphModule) -> List[torch.fx.Node]:
    """The cut points: nodes every input-to-output path passes through that produce one tensor.

    Run :func:`propagate_shapes` first so nodes producing tuples, sizes or ints (which
    cannot be a chunk's single tensor output) are left out.

    Args:
        gm: a traced single-input ``GraphModule``.

    Returns:
        Critical nodes in topological order, without the input placeholder and output.

    Example::

        >>> gm = trace(model.eval()); propagate_shapes(gm, torch.randn(1, 3, 64, 64))
        >>> [n.name for n in find_critical_nodes(gm)][:3]
        ['conv1', 'bn1', 'relu']
    """
    crit = [n for n in dominators_of_output(gm) if _is_tensor_node(n)]
    out_args = _output_node(gm).all_input_nodes
    if crit and out_args == [crit[-1]]:  # a cut there would leave an empty last chunk
        crit.pop()
    return crit


class _ModelFailed(BaseException):
    """The model's own error on the example input, carried out of :class:`_SizedShapeProp`.

    A ``BaseException`` so that it passes ``ShapeProp.run_node``'s ``except Exception``, which
    would print a traceback to stderr before re-raising (the CLI shows one line, never a
    traceback); :func:`propagate_shapes` turns it into a :class:`ModelError`.
    """

    def __init__(self, node: torch.fx.Node, error: Exception) -> None:
        super().__init__(str(error))
        self.node, self.error = node, error


class _SizedShapeProp(ShapeProp):
    """``torch.fx``'s ``ShapeProp`` that also records the bytes each node's value keeps allocated."""

    def run_node(self, n: torch.fx.Node) -> Any:
        self._running = n
        value = super().run_node(n)
        storages = {t.untyped_storage().data_ptr(): t.untyped_storage().nbytes() for t in tensors_of(value)}
        n.meta["nbytes"] = sum(storages.values())  # a view keeps its whole base alive
        return value

    def _guarded(self, op: Callable[..., Any], target: Any, args: Any, kwargs: Any) -> Any:
        try:
            return op(target, args, kwargs)
        except Exception as exc:
            raise _ModelFailed(self._running, exc) from exc

    def call_module(self, target: Any, args: Any, kwargs: Any) -> Any:
        return self._guarded(super().call_module, target, args, kwargs)

    def call_function(self, target: Any, args: Any, kwargs: Any) -> Any:
        return self._guarded(super().call_function, target, args, kwargs)

    def call_method(self, target: Any, args: Any, kwargs: Any) -> Any:
        return self._guarded(super().call_method, target, args, kwargs)


def propagate_shapes(gm: torch.fx.GraphModule, example_input: torch.Tensor) -> None:
    """Run ``gm`` once on ``example_input`` with ``torch.fx``'s ``ShapeProp``, recording in ``node.meta``.

    ShapeProp sets ``"type"`` (the value's type) and, for values holding tensors,
    ``"tensor_meta"`` (shape, dtype, stride, ...; a tuple/list/dict of them for a structure).
    ``"nbytes"`` is added: the bytes of the distinct storages the value's tensors use (a view
    counts its whole base storage: that is what holding the value keeps allocated).

    Raises:
        ModelError: the model fails on this input (e.g. an image too small for it),
            naming the node where it failed.
    """
    placeholders = [n for n in gm.graph.nodes if n.op == "placeholder"]
    args = [example_input if not n.args else n.args[0] for n in placeholders]
    try:
        with torch.no_grad():
            _SizedShapeProp(gm).propagate(*args)
        return
    except _ModelFailed as failed:
        error: Exception = failed.error
        at = f" at {failed.node.name} ({failed.node.op} {_target_name(failed.node)})"
    except Exception as exc:  # the run itself failed, not one of the model's ops
        error, at = exc, ""
    msg = " ".join(str(error).split("\n")[0].split())
    raise ModelError(
        f"{type(gm).__name__} fails on an input of shape {list(example_input.shape)}{at}: {msg}"
        " (check --input: channel count and a large enough image)"
    ) from error


def _target_name(n: torch.fx.Node) -> str:
    owner = n.graph.owning_module
    if n.op == "call_module" and owner is not None and isinstance(n.target, str):
        return type(_fetch_attr(owner, n.target)).__name__
    return getattr(n.target, "__name__", str(n.target))


# ------------------------------------------------------------------------------------------------
# 2b. choosing k cuts among the critical nodes
# ------------------------------------------------------------------------------------------------

SNAP_RULES = ("smallest", "nearest")


def crossing_bytes(node: torch.fx.Node) -> int:
    """Bytes live across a cut right after critical ``node``: the storage of its one output.

    Needs :func:`propagate_shapes` to have run on the graph.
    """
    if "nbytes" not in node.meta:
        raise UsageError(f"no size recorded for node {node.name!r}: run propagate_shapes(gm, x) first")
    return int(node.meta["nbytes"])


def uniform_positions(n_ops: int, k: int) -> List[int]:
    """The uniform cut positions: ``round(j * s)`` for ``j = 1..k``, ``s = n_ops / (k + 1)``.

    Positions number the ops ``1..n_ops`` in topological order (0 is the input); a cut at
    position ``p`` falls right after op ``p``, so ``p`` is kept within ``1..n_ops-1``.
    Distinct and increasing (fewer than ``k`` when ops are fewer than cuts).
    """
    last = max(1, n_ops - 1)
    return sorted({max(1, min(last, round(j * n_ops / (k + 1)))) for j in range(1, k + 1)})


def snap_positions(
    n_ops: int,
    k: int,
    critical: Sequence[int],
    cost: Dict[int, int],
    snap: str = "smallest",
) -> List[int]:
    """Place ``k`` cuts evenly over ``n_ops`` ops and move each onto a critical position.

    Positions number the ops ``1..n_ops`` in topological order; a cut at ``p`` falls right
    after op ``p``. The ideal spacing between cuts is ``s = n_ops / (k + 1)`` and cut ``j``
    (``j = 1..k``) aims at ``t_j = j * s``.

    * ``"smallest"`` (default): cut ``j`` may only land in its window, the critical
      positions ``c`` with ``(j - 1/2) * s < c <= (j + 1/2) * s`` (plus or minus half the
      ideal spacing, in op order). It takes the one with the smallest ``cost[c]`` (bytes
      live across the cut), ties broken by ``|c - t_j|``, then by the earlier position.
      A window holding no critical position then borrows the critical position nearest
      ``t_j`` (ties: the earlier) strictly between the cuts chosen for the targets
      before and after it; when there is none, that target gets no cut. The windows are
      disjoint and ordered and a borrowed cut lies between its neighbours, so the cuts
      are strictly increasing and distinct (at most ``k``).
    * ``"nearest"``: each uniform position (:func:`uniform_positions`) moves to the nearest
      critical position (ties: the earlier); targets that land on the same critical
      position share one cut. Ignores ``cost``.

    Args:
        n_ops: number of ops between the model's input and output.
        k: how many cuts to aim for (>= 1).
        critical: the critical positions, increasing, within ``1..n_ops-1``.
        cost: bytes live across a cut at each critical position (used by ``"smallest"``).
        snap: ``"smallest"`` or ``"nearest"``.

    Returns:
        The cut positions, strictly increasing (at most ``k``; none without critical positions).

    Raises:
        UsageError: ``k < 1`` or an unknown ``snap`` rule.

    Example::

        >>> snap_positions(12, 2, [3, 5, 8, 10], {3: 40, 5: 10, 8: 90, 10: 20})  # s = 4
        [5, 10]
        >>> snap_positions(12, 2, [3, 5, 8, 10], {}, snap="nearest")  # targets 4, 8
        [3, 8]
    """
    if isinstance(k, bool) or not isinstance(k, int) or k < 1:
        raise UsageError(f"number of cuts must be an integer >= 1, got {k!r}")
    if snap not in SNAP_RULES:
        raise UsageError(f"unknown snap rule {snap!r}: use one of {', '.join(SNAP_RULES)}")
    if not critical:
        return []
    if snap == "nearest":
        chosen = {min(critical, key=lambda c: (abs(c - t), c)) for t in uniform_positions(n_ops, k)}
        return sorted(chosen)
    s = n_ops / (k + 1)
    picks: List[Optional[int]] = []
    for j in range(1, k + 1):
        window = [c for c in critical if (j - 0.5) * s < c <= (j + 0.5) * s]
        picks.append(min(window, key=lambda c: (cost[c], abs(c - j * s), c)) if window else None)
    for i, pick in enumerate(picks):  # empty windows, left to right: borrow between the neighbours
        if pick is None:
            lo = max((p for p in picks[:i] if p is not None), default=0)
            hi = min((p for p in picks[i + 1 :] if p is not None), default=n_ops + 1)
            gap = [c for c in critical if lo < c < hi]
            if gap:
                picks[i] = min(gap, key=lambda c: (abs(c - (i + 1) * s), c))
    return [p for p in picks if p is not None]


def choose_cuts(gm: torch.fx.GraphModule, k: int, snap: str = "smallest") -> List[torch.fx.Node]:
    """``k`` cut nodes spread evenly over ``gm``'s ops, each on a critical node.

    The op positions are those of :func:`path_nodes`; the rule is :func:`snap_positions`
    with the bytes of each critical node's output as the cost (``"smallest"``: within
    plus or minus half the ideal spacing of each target, the critical node whose crossing
    tensor is smallest). Run :func:`propagate_shapes` first.

    Returns:
        At most ``k`` critical nodes, in topological order, ready for :func:`split_at`.

    Example::

        >>> gm = trace(model.eval()); propagate_shapes(gm, torch.randn(1, 3, 224, 224))
        >>> chunks = split_at(gm, choose_cuts(gm, 8))
    """
    nodes = path_nodes(gm)
    pos = {n: i for i, n in enumerate(nodes)}
    crit = find_critical_nodes(gm)
    cost = {pos[c]: crossing_bytes(c) for c in crit} if snap == "smallest" else {}
    return [nodes[p] for p in snap_positions(len(nodes) - 2, k, [pos[c] for c in crit], cost, snap)]


# ------------------------------------------------------------------------------------------------
# 3. splitting
# ------------------------------------------------------------------------------------------------


def _attr_root(owner: torch.nn.Module, graph: torch.fx.Graph) -> Dict[str, Any]:
    """Only the submodules/parameters/buffers ``graph`` uses, by qualified name."""
    root: Dict[str, Any] = {}
    for n in graph.nodes:
        if n.op in ("call_module", "get_attr") and n.target not in root:
            root[n.target] = _fetch_attr(owner, n.target)
    return root


def _fetch_attr(owner: torch.nn.Module, target: str) -> Any:
    obj: Any = owner
    for part in target.split("."):
        obj = getattr(obj, part)
    return obj


def _finish(root: Dict[str, Any], graph: torch.fx.Graph, name: str) -> torch.fx.GraphModule:
    graph.lint()
    gm = torch.fx.GraphModule(root, graph, name)
    check_single_input(gm)
    return gm


def check_single_input(chunk: torch.fx.GraphModule) -> None:
    """A chunk must take exactly one value (the one tensor crossing its cut)."""
    n_in = sum(1 for n in chunk.graph.nodes if n.op == "placeholder")
    if n_in != 1:
        raise ModelError(
            f"chunk {chunk.__class__.__name__} takes {n_in} inputs; a chunk must take exactly one"
        )


def _build_chunk(
    gm: torch.fx.GraphModule,
    body: Sequence[torch.fx.Node],
    entry: torch.fx.Node,
    exit_: Optional[torch.fx.Node],
    dependent: Set[torch.fx.Node],
    name: str,
) -> torch.fx.GraphModule:
    """One chunk: placeholder for ``entry``, copies of ``body``, output ``exit_`` (None: the model's).

    Input-independent values (get_attr, constants computed from parameters) are copied
    into the chunk that uses them; any other value from outside the chunk means more than
    one tensor would cross the cut, which is refused.
    """
    graph = torch.fx.Graph()
    env: Dict[torch.fx.Node, torch.fx.Node] = {}
    ph = graph.placeholder(entry.name if entry.op != "placeholder" else str(entry.target))
    ph.meta = dict(entry.meta)
    env[entry] = ph
    inside = set(body)

    def lookup(a: torch.fx.Node) -> torch.fx.Node:
        if a in env:
            return env[a]
        if a in dependent or a in inside or a.op == "placeholder":
            raise ModelError(
                f"cut before {name}: value {a.name!r} crosses the cut besides {entry.name!r};"
                " cut only at critical nodes"
            )
        env[a] = graph.node_copy(a, lookup)  # an input-independent constant: travels with its user
        return env[a]

    for n in body:
        env[n] = graph.node_copy(n, lookup)
    if exit_ is None:
        graph.output(torch.fx.node.map_arg(_output_node(gm).args[0], lookup))
    else:
        graph.output(lookup(exit_))
    return _finish(_attr_root(gm, graph), graph, name)


def split_at(gm: torch.fx.GraphModule, cut_nodes: Sequence[torch.fx.Node]) -> List[torch.fx.GraphModule]:
    """Split ``gm`` right after each of ``cut_nodes``: ``len(cut_nodes) + 1`` chunks.

    Chunk ``i`` takes the value of cut ``i-1`` (chunk 0 the model input) and returns the
    value of cut ``i`` (the last chunk returns the model's output structure).

    Raises:
        ModelError: a cut node is not critical, so a second value would cross it.

    Example::

        >>> chunks = split_at(gm, find_critical_nodes(gm))
        >>> out = run_chunks(chunks, x)
    """
    nodes = path_nodes(gm)
    pos = {n: i for i, n in enumerate(nodes)}
    for c in cut_nodes:
        if c not in pos or pos[c] in (0, len(nodes) - 1):
            raise ModelError(f"cannot cut at {c.name!r}: not between the model's input and output")
    cuts = sorted(set(cut_nodes), key=lambda c: pos[c])
    dependent = set(nodes) | _input_dependent(gm)
    bounds = [0] + [pos[c] for c in cuts] + [len(nodes) - 1]  # body i = nodes (bounds[i], bounds[i+1]]
    chunks = []
    for i in range(len(bounds) - 1):
        last = i == len(bounds) - 2
        body = nodes[bounds[i] + 1 : bounds[i + 1] + (0 if last else 1)]  # the output node is not copied
        exit_ = None if last else nodes[bounds[i + 1]]
        chunks.append(_build_chunk(gm, body, nodes[bounds[i]], exit_, dependent, f"Chunk{i}"))
    return chunks


# ------------------------------------------------------------------------------------------------
# 4. merging
# ------------------------------------------------------------------------------------------------


def has_compute(chunk: torch.fx.GraphModule) -> bool:
    """True when the chunk holds a conv, linear, matmul or attention op."""
    for n in chunk.graph.nodes:
        if n.op == "call_module" and isinstance(_fetch_attr(chunk, n.target), _COMPUTE_MODULES):
            return True
        if n.op == "call_function" and n.target in _COMPUTE_FUNCTIONS:
            return True
        if n.op == "call_method" and n.target in _COMPUTE_METHODS:
            return True
    return False


def concat_chunks(first: torch.fx.GraphModule, second: torch.fx.GraphModule) -> torch.fx.GraphModule:
    """One chunk computing ``second(first(x))``, sharing both chunks' submodules."""
    graph = torch.fx.Graph()
    env: Dict[torch.fx.Node, torch.fx.Node] = {}
    root: Dict[str, Any] = {}
    carried: Any = None
    for part in (first, second):
        for n in part.graph.nodes:
            if n.op == "placeholder":
                env[n] = graph.placeholder(n.target) if carried is None else carried
                if carried is None:
                    env[n].meta = dict(n.meta)
            elif n.op == "output":
                carried = torch.fx.node.map_arg(n.args[0], lambda a: env[a])
            else:
                env[n] = graph.node_copy(n, lambda a: env[a])
        for target, obj in _attr_root(part, part.graph).items():
            if root.setdefault(target, obj) is not obj:
                raise ModelError(f"cannot merge chunks from different models: {target!r} differs")
    graph.output(carried)
    return _finish(root, graph, first.__class__.__name__)


def merge_light_chunks(chunks: Sequence[torch.fx.GraphModule]) -> List[torch.fx.GraphModule]:
    """Fold each chunk without conv/linear into the compute-heavy chunk before it.

    Light chunks before the first compute chunk fold forward into it; a model without
    any compute op becomes a single chunk.

    Example::

        >>> merged = merge_light_chunks(split_at(gm, find_critical_nodes(gm)))
        >>> all(has_compute(c) for c in merged)
        True
    """
    out: List[torch.fx.GraphModule] = []
    pending: Optional[torch.fx.GraphModule] = None  # light chunks seen before any compute chunk
    for c in chunks:
        if has_compute(c):
            if pending is not None:
                c, pending = concat_chunks(pending, c), None
            out.append(c)
        elif out:
            out[-1] = concat_chunks(out[-1], c)
        else:
            pending = c if pending is None else concat_chunks(pending, c)
    if pending is not None:
        out.append(pending)
    return [_renamed(c, f"Chunk{i}") for i, c in enumerate(out)]


def _renamed(chunk: torch.fx.GraphModule, name: str) -> torch.fx.GraphModule:
    if chunk.__class__.__name__ == name:
        return chunk
    return torch.fx.GraphModule(_attr_root(chunk, chunk.graph), chunk.graph, name)


# ------------------------------------------------------------------------------------------------
# 5. running and checking
# ------------------------------------------------------------------------------------------------


def run_chunks(chunks: Sequence[Callable[[Any], Any]], x: Any) -> Any:
    """Run the chunks in order, each on the previous one's output; returns the last output."""
    for c in chunks:
        x = c(x)
    return x


def tensors_of(value: Any) -> List[torch.Tensor]:
    """The tensors inside an output structure (tensor, tuple/list, dict, named tuple), in order."""
    if isinstance(value, torch.Tensor):
        return [value]
    if isinstance(value, dict):
        return [t for v in value.values() for t in tensors_of(v)]
    if isinstance(value, (list, tuple)):
        return [t for v in value for t in tensors_of(v)]
    return []


def max_abs_diff(a: Any, b: Any) -> float:
    """Largest absolute difference between two output structures (``inf`` if they differ in shape)."""
    ta, tb = tensors_of(a), tensors_of(b)
    if len(ta) != len(tb) or any(x.shape != y.shape for x, y in zip(ta, tb)):
        return float("inf")
    diffs = [(x.double() - y.double()).abs().max().item() for x, y in zip(ta, tb) if x.numel()]
    return max(diffs, default=0.0)


def _max_abs(value: Any) -> float:
    return max((t.double().abs().max().item() for t in tensors_of(value) if t.numel()), default=0.0)


def _shape_of(value: Any) -> list:
    ts = tensors_of(value)
    if isinstance(value, torch.Tensor):
        return list(value.shape)
    return [list(t.shape) for t in ts]


def _describe(chunks: Sequence[torch.fx.GraphModule], x: torch.Tensor) -> tuple:
    """Run the chunks on ``x``; returns ``(per-chunk info, final output)``."""
    infos = []
    with torch.no_grad():
        for i, c in enumerate(chunks):
            x = c(x)
            infos.append(
                ChunkInfo(
                    index=i,
                    n_ops=sum(1 for n in c.graph.nodes if n.op in _OP_KINDS),
                    param_bytes=module_bytes(c),
                    out_bytes=sum(t.numel() * t.element_size() for t in tensors_of(x)),
                    out_shape=_shape_of(x),
                    has_compute=has_compute(c),
                )
            )
    return infos, x


def slice_model(
    model: torch.nn.Module,
    example_input: torch.Tensor,
    merge: bool = True,
    check: bool = True,
    concrete_args: Optional[Dict[str, Any]] = None,
    seed: int = 0,
    on_step: Optional[Callable[[str], None]] = None,
    n_cuts: Optional[int] = None,
    snap: str = "smallest",
) -> SliceResult:
    """Slice ``model`` at its critical nodes (the ``pantheon slice`` stage).

    Args:
        model: a single-input, fx-traceable module; it is put in eval mode.
        example_input: an input with its batch dimension, e.g. ``torch.randn(1, 3, 224, 224)``.
        merge: fold chunks without conv/linear into the compute chunk before them.
        check: compare chained chunks with the model on a random input (seeded by ``seed``).
        concrete_args: passed to the tracer.
        on_step: called with the name of each pass before it runs (progress display).
        n_cuts: cut at about this many critical nodes chosen by :func:`choose_cuts`
            instead of at every critical node (None, the default).
        snap: how :func:`choose_cuts` picks each cut: ``"smallest"`` (the critical node
            with the smallest crossing tensor within half the ideal spacing of the
            target) or ``"nearest"`` (the critical node nearest the target).

    Returns:
        :class:`SliceResult` with the chunks, per-chunk info and ``max_abs_diff``.

    Raises:
        TraceError: the model is not fx-traceable (names the op that broke tracing).
        ModelError: the model fails on the input, or the chunks do not reproduce its output.

    Example::

        >>> res = slice_model(torchvision.models.vgg16(), torch.randn(1, 3, 64, 64))
        >>> [i.n_ops for i in res.info][:3]  # conv+relu, conv+relu+maxpool, conv+relu
        [2, 3, 2]
    """
    step = on_step or (lambda name: None)
    model.eval()
    step("trace")
    gm = trace(model, concrete_args)
    step("shapes")
    propagate_shapes(gm, example_input)
    step("split")
    crit = find_critical_nodes(gm)
    cuts = crit if n_cuts is None else choose_cuts(gm, n_cuts, snap)
    chunks = split_at(gm, cuts)
    step("merge")
    if merge:
        chunks = merge_light_chunks(chunks)
    step("check")
    # one chained run gives both the per-chunk report and the output to check
    x = example_input
    if check:
        x = torch.randn(
            example_input.shape, generator=torch.Generator().manual_seed(seed), dtype=example_input.dtype
        )
    info, got = _describe(chunks, x)
    diff, ref_abs = float("nan"), float("nan")
    if check:
        with torch.no_grad():
            ref = model(x)
        diff, ref_abs = max_abs_diff(ref, got), _max_abs(ref)
        if not within_tolerance(diff, ref_abs):
            raise ModelError(
                f"chained chunks differ from {type(model).__name__}: max abs diff {diff:.3g}"
                f" (tolerance {REL_TOL:g} x {ref_abs:.3g})"
            )
    return SliceResult(
        chunks=chunks,
        info=info,
        max_abs_diff=diff,
        critical_nodes=[n.name for n in crit],
        cut_nodes=[n.name for n in cuts],
        input_shape=list(example_input.shape),
        merged=merge,
        ref_max_abs=ref_abs,
    )


# ------------------------------------------------------------------------------------------------
# Model lookup for the CLI: torchvision names, ``ssdlite``, ``package.module:factory``
# (:func:`pantheon.zoo.models.build_arch`, the zoo's builders)
# ------------------------------------------------------------------------------------------------

# The architectures whose slicing is checked exactly in the tests and measured by bench/slicing.py.
CHECKED_ARCHS = (
    "resnet18",
    "resnet34",
    "resnet50",
    "vgg11",
    "vgg11_bn",
    "vgg16",
    "vgg16_bn",
    "mobilenet_v2",
    "mobilenet_v3_large",
    "mobilenet_v3_small",
    "googlenet",
    "densenet121",
    "efficientnet_b0",
    "regnet_x_400mf",
    "shufflenet_v2_x1_0",
    "squeezenet1_0",
    "alexnet",
    "ssdlite",
)

SLICE_STEPS = ("build", "trace", "shapes", "split", "merge", "check")


def slice_target(
    arch: Optional[str] = None,
    task: Optional[str] = None,
    input_shape: Optional[Sequence[int]] = None,
    merge: bool = True,
    on_step: Optional[Callable[[str], None]] = None,
) -> SliceResult:
    """Build a model by ``arch`` name or zoo ``task`` and slice it on a ``[1, *input_shape]`` input.

    ``input_shape`` defaults to the task's input shape, else ``3,224,224``.

    Example::

        >>> res = slice_target(arch="googlenet", input_shape=[3, 224, 224])
        >>> len(res.chunks) >= 10 and res.exact
        True
    """
    if (arch is None) == (task is None):
        raise UsageError("give exactly one of --arch NAME or --task NAME")
    step = on_step or (lambda name: None)
    step("build")
    if task is not None:
        model, default_shape, arch = _build_task(task)
    else:
        model, default_shape = build_arch(str(arch)), None
    shape = list(input_shape or default_shape or [3, 224, 224])
    res = slice_model(model, torch.randn(1, *shape), merge=merge, on_step=step)
    res.arch, res.task = arch, task
    return res


def _build_task(name: str) -> tuple:
    """``(model, input_shape, arch)`` of a zoo task, via ``pantheon.zoo.get_task`` (imported lazily)."""
    try:
        from pantheon.zoo import get_task
    except ImportError as exc:
        raise UsageError(
            f"--task needs pantheon.zoo.get_task, which this install lacks ({exc}); use --arch"
        ) from exc
    spec = get_task(name)
    shape = getattr(spec, "input_shape", None)
    return spec.build_model(), (list(shape) if shape else None), getattr(spec, "arch", None)
