"""The multi-exit model: sliced backbone blocks plus one exit after each block.

Numbering (CONTRIBUTING.md): slicing gives ``n`` chunks; chunks ``0..B-1`` (``B = n-1``)
are the *blocks*, chunk ``n-1`` is the original head. Exit ``j`` follows block ``j``:
exits ``0..B-2`` are trained branches built by the zoo's exit-head builder, exit
``B-1`` is the original head. The backbone (blocks and original head) is frozen and
always in eval mode; only the branches train.

Also here: loading ``--pretrain`` weights with a one-line :class:`WeightsError`, the
device choice (``--gpu_id``, CUDA when present), and per-exit evaluation.

Example::

    >>> task = get_task("digits_resnet18")
    >>> mx = build_multi_exit(task, task.build_model())
    >>> outs = mx(torch.zeros(2, 3, 32, 32))      # one output per exit
    >>> len(outs) == mx.num_blocks
    True
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence

import torch
from torch import Tensor, nn

from pantheon.errors import ModelError, UsageError, WeightsError


class MultiExitModel(nn.Module):
    """Blocks ``0..B-1`` and exits ``0..B-1``; ``forward`` returns every exit's output."""

    def __init__(self, blocks: Sequence[nn.Module], exits: Sequence[nn.Module], anchors: Optional[List[Tensor]] = None):
        super().__init__()
        if len(blocks) != len(exits) or not blocks:
            raise ModelError(f"a multi-exit model needs as many exits as blocks (got {len(blocks)} and {len(exits)})")
        self.blocks = nn.ModuleList(blocks)
        self.exits = nn.ModuleList(exits)
        self.anchors: List[Optional[Tensor]] = list(anchors) if anchors else [None] * len(blocks)
        self.freeze_backbone()

    @property
    def num_blocks(self) -> int:
        return len(self.blocks)

    @property
    def trained_exits(self) -> List[nn.Module]:
        """The branches (exits ``0..B-2``); the last exit is the frozen original head."""
        return list(self.exits)[:-1]

    def freeze_backbone(self) -> None:
        for module in list(self.blocks) + [self.exits[-1]]:
            for p in module.parameters():
                p.requires_grad_(False)

    def exit_parameters(self) -> List[nn.Parameter]:
        return [p for e in self.trained_exits for p in e.parameters()]

    def exit_state(self) -> Dict[str, Tensor]:
        """State (parameters and buffers) of the trained branches only."""
        return {k: v for k, v in self.state_dict().items() if k.startswith("exits.") and
                int(k.split(".")[1]) < self.num_blocks - 1}

    def train(self, mode: bool = True) -> MultiExitModel:
        super().train(mode)
        for module in list(self.blocks) + [self.exits[-1]]:
            module.eval()  # frozen: batch-norm statistics must not move
        return self

    def forward(self, x: Tensor) -> List[Any]:
        outs: List[Any] = []
        for block, exit_ in zip(self.blocks, self.exits):
            x = block(x)
            outs.append(exit_(x))
        return outs

    def forward_exit(self, x: Tensor, j: int) -> Any:
        """Blocks ``0..j`` then exit ``j`` (what the runtime runs for exit ``j``)."""
        for block in list(self.blocks)[: j + 1]:
            x = block(x)
        return self.exits[j](x)


def block_out_shapes(blocks: Sequence[nn.Module], input_shape: Sequence[int]) -> List[List[int]]:
    """Output shape (no batch dim) of every block for one input of ``input_shape``."""
    shapes: List[List[int]] = []
    x = torch.zeros(1, *input_shape)
    with torch.no_grad():
        for b in blocks:
            x = b(x)
            if not isinstance(x, Tensor):
                raise ModelError(f"block {len(shapes)} returns {type(x).__name__}, not one tensor")
            shapes.append(list(x.shape[1:]))
    return shapes


def build_multi_exit(task: Any, model: nn.Module, merge: bool = True, seed: int = 0) -> MultiExitModel:
    """Slice ``model`` (the task's backbone, weights loaded) and add freshly initialised exits.

    Args:
        task: the zoo task (its exit-head builder, input shape, kind).
        model: the task's model.
        merge: merge light chunks (``--no-merge`` keeps every critical-node cut).
        seed: seeds the exits' initialisation.

    Raises:
        TraceError: the model cannot be traced (from the slicer, naming the op).
        ModelError: slicing gave fewer than two chunks.
    """
    from pantheon.offline.slice import slice_model

    model.eval()
    res = slice_model(model, torch.zeros(1, *task.input_shape), merge=merge, check=True)
    chunks = list(res.chunks)
    if len(chunks) < 2:
        raise ModelError(f"{task.name}: slicing gave {len(chunks)} chunk(s); exits need at least two")
    blocks, head = chunks[:-1], chunks[-1]
    shapes = block_out_shapes(blocks, task.input_shape)
    gen_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    branches = [task.build_exit(s) for s in shapes[:-1]]
    torch.random.set_rng_state(gen_state)
    anchors = exit_anchors(task, model, branches) if task.is_detection else None
    return MultiExitModel(blocks, branches + [head], anchors)


def exit_anchors(task: Any, model: nn.Module, branches: Sequence[nn.Module]) -> List[Tensor]:
    """Anchors of every exit of a detection task (branches' own, then the original head's)."""
    from pantheon.zoo import heads, models

    hw = (task.input_shape[1], task.input_shape[2])
    own = []
    for b in branches:
        if not isinstance(b, heads.DetectionExit):
            raise ModelError(f"{task.name}: a detection task needs detection exits, not {type(b).__name__}")
        own.append(heads.exit_anchors((b.out_h, b.out_w), hw))
    if not isinstance(model, models.SSDRaw):
        raise ModelError(f"{task.name}: a detection task's model is an SSDRaw, not {type(model).__name__}")
    return own + [models.ssd_anchors(model, task.input_shape)]


# ---------------------------------------------------------------------------------------------
# weights
# ---------------------------------------------------------------------------------------------


def read_state_dict(path: Any) -> Dict[str, Tensor]:
    """A state dict from a ``.pt`` file (plain, or a checkpoint with ``model``/``state_dict``).

    Raises:
        WeightsError: the file is missing, not a torch file, or holds no state dict.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise WeightsError(f"weights file {p} does not exist")
    try:
        obj = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as exc:  # the unpickler raises anything (IndexError, KeyError, ...) on a foreign file
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else exc.__class__.__name__
        raise WeightsError(f"{p} is not a PyTorch weights file ({exc.__class__.__name__}: {first[:160]})") from exc
    if isinstance(obj, Mapping):
        for key in ("model", "state_dict", "model_state_dict"):
            if key in obj and isinstance(obj[key], Mapping):
                obj = obj[key]
                break
    if not isinstance(obj, Mapping) or not obj or not all(isinstance(v, Tensor) for v in obj.values()):
        raise WeightsError(f"{p} does not hold a state dict (a mapping of parameter names to tensors)")
    # weights saved from a DDP-wrapped model carry a "module." prefix
    return {(k[7:] if k.startswith("module.") else k): v for k, v in obj.items()}


def load_weights(model: nn.Module, path: Any, arch: str = "") -> None:
    """Load ``path`` into ``model`` strictly; :class:`WeightsError` names the first mismatch."""
    state = read_state_dict(path)
    own = model.state_dict()
    what = f"{Path(path)} is not a state dict for {arch or type(model).__name__}"
    for key in own:
        if key not in state:
            raise WeightsError(f"{what}: missing key {key!r}")
    for key, value in state.items():
        if key not in own:
            raise WeightsError(f"{what}: unexpected key {key!r}")
        if tuple(own[key].shape) != tuple(value.shape):
            raise WeightsError(
                f"{what}: {key!r} has shape {list(value.shape)}, the model expects {list(own[key].shape)}"
            )
    model.load_state_dict(state, strict=True)


# ---------------------------------------------------------------------------------------------
# device and evaluation
# ---------------------------------------------------------------------------------------------


def pick_device(gpu_id: Optional[int] = None, local_rank: Optional[int] = None) -> torch.device:
    """``cuda:<local_rank or gpu_id>`` when CUDA exists, the CPU otherwise."""
    if not torch.cuda.is_available():
        return torch.device("cpu")
    index = local_rank if local_rank is not None else (gpu_id or 0)
    if index >= torch.cuda.device_count():
        raise UsageError(f"--gpu_id {index}: this machine has {torch.cuda.device_count()} CUDA device(s)")
    return torch.device(f"cuda:{index}")


def to_device(batch: Any, device: torch.device) -> Any:
    if isinstance(batch, Tensor):
        return batch.to(device, non_blocking=True)
    if isinstance(batch, dict):
        return {k: to_device(v, device) for k, v in batch.items()}
    if isinstance(batch, (list, tuple)):
        return type(batch)(to_device(v, device) for v in batch)
    return batch


def task_loss(task: Any, output: Any, target: Any, anchors: Optional[Tensor] = None) -> Tensor:
    """The task's training loss of one exit output."""
    if task.is_detection:
        from pantheon.zoo.metrics import ssd_loss

        if anchors is None:
            raise ModelError(f"{task.name}: the loss of a detection exit needs the exit's anchors")
        return ssd_loss(output[0], output[1], anchors, target)
    return nn.functional.cross_entropy(output, target)


@torch.no_grad()
def evaluate_exits(
    task: Any, model: MultiExitModel, loader: Iterable[Any], device: torch.device, exits: Optional[Sequence[int]] = None
) -> List[float]:
    """The task metric (top-1 or mAP@0.5) of each exit over ``loader``."""
    from pantheon.zoo.metrics import make_metric

    model.eval()
    which = list(range(model.num_blocks)) if exits is None else list(exits)
    metrics = {j: make_metric(task, model.anchors[j]) for j in which}
    for images, targets in loader:
        outs = model(to_device(images, device))
        for j in which:
            metrics[j].update(outs[j], targets if task.is_detection else targets.to(outs[j].device))
    return [metrics[j].compute() for j in which]


def set_threads() -> None:
    """Respect OMP_NUM_THREADS when set (DDP on CPU: one thread per rank keeps ranks fair)."""
    n = os.environ.get("OMP_NUM_THREADS")
    if n and n.isdigit():
        torch.set_num_threads(int(n))
