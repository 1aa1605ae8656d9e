"""Slice a pretrained model, add early exits and train them (``pantheon construct``).

The reference artifact's construct step (its options and defaults), re-done as a library call:

1. load the task's model with the ``--pretrain`` weights (digits: the store's
   ``pretrained/<task>/weights.pt``);
2. slice it at critical nodes and add an exit after every chunk but the last two
   (:func:`pantheon.offline.exits.build_multi_exit`);
3. freeze the backbone and train all exits jointly on the summed task loss with SGD
   (momentum 0.9) and the task's Table 3 defaults, a cosine learning-rate schedule,
   a progress bar and per-exit validation accuracy every epoch;
4. after every epoch write the run directory ``runs/<task>/<run-id>/`` atomically
   (``checkpoint.pt`` with model, optimizer, scheduler, epoch and full config;
   ``config.json``; ``history.json``; manifest of kind ``run``); at the end measure
   every exit on the held-out test split (``metrics.json``).

With an in-memory dataset (digits) the frozen blocks run once and their outputs are
cached, so each epoch only runs the exits (:class:`FeatureCache`).

Deterministic with ``--seed``: the exits' initialisation, the shuffling and dropout of
epoch ``e`` are seeded from ``(seed, e)``, so a resumed run ends with the same weights
as an uninterrupted one. Launched by ``torchrun`` (``WORLD_SIZE`` > 1) it trains with
DistributedDataParallel (NCCL on CUDA, gloo on the CPU); only rank 0 writes, and the
ranks' exit weights are compared by checksum at the end.

The default run id is derived from the inputs, so running the same command twice
finds the finished run and says ``skipped: up to date`` (``--force`` retrains); an
interrupted run with the same inputs is resumed.

Example::

    >>> from pantheon.offline.construct import ConstructConfig, construct
    >>> res = construct(ConstructConfig(task="digits_resnet18", max_epochs=2))
    >>> res.run_dir, res.test            # the run directory, the held-out metric of every exit
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, Iterable, Iterator, List, Optional, Tuple

import torch
from torch.utils.data import DataLoader

from pantheon import console
from pantheon.errors import ManifestError, PantheonError, UsageError, WeightsError
from pantheon.formats import store as st

if TYPE_CHECKING:
    from torch.utils.data.distributed import DistributedSampler

CHECKPOINT = "checkpoint.pt"
RUN_KIND = "run"
CHECKPOINT_FORMAT = 1
MOMENTUM = 0.9
FEATURE_CACHE_BYTES = 2 << 30  # cache the frozen blocks' outputs when they fit in 2 GiB


@dataclass
class ConstructConfig:
    """Options of ``pantheon construct`` (Table 2 plus resume/seed/merge/run-id/limit).

    ``None`` hyper-parameters take the task's Table 3 defaults. ``log`` is the
    directory that holds the runs (default ``<root>/runs``); the run lives in
    ``<log>/<task>/<run_id>``. ``limit`` caps the samples per split (quick runs).
    """

    task: str
    data_dir: Optional[str] = None
    log: Optional[str] = None
    learning_rate: Optional[float] = None
    batch_size: Optional[int] = None
    weight_decay: Optional[float] = None
    max_epochs: Optional[int] = None
    num_workers: int = 0
    gpu_id: Optional[int] = None
    pretrain: Optional[str] = None
    resume: Optional[str] = None
    seed: int = 0
    merge: bool = True
    run_id: Optional[str] = None
    force: bool = False
    limit: Optional[int] = None
    data_root: Optional[str] = None

    def resolved(self, task: Any) -> ConstructConfig:
        """A copy with the task's defaults filled in."""
        d = task.defaults
        out = ConstructConfig(**asdict(self))
        out.learning_rate = d.learning_rate if self.learning_rate is None else float(self.learning_rate)
        out.batch_size = d.batch_size if self.batch_size is None else int(self.batch_size)
        out.weight_decay = d.weight_decay if self.weight_decay is None else float(self.weight_decay)
        out.max_epochs = d.max_epochs if self.max_epochs is None else int(self.max_epochs)
        return out

    def validate(self) -> None:
        import math
        import re

        for name in ("learning_rate", "weight_decay"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(float(value)):
                raise UsageError(f"--{name} must be a finite number, got {value}")
        for name in ("learning_rate", "batch_size", "max_epochs"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise UsageError(f"--{name} must be positive, got {value}")
        if self.weight_decay is not None and self.weight_decay < 0:
            raise UsageError(f"--weight_decay must be >= 0, got {self.weight_decay}")
        if self.seed < 0:
            raise UsageError(f"--seed must be >= 0, got {self.seed}")
        if self.run_id is not None and (
            not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}", self.run_id) or ".." in self.run_id
        ):
            raise UsageError(f"--run-id must be a plain name (letters, digits, '.', '_', '-'; no path separators "
                             f"or '..'), got {self.run_id!r}")
        if self.num_workers < 0:
            raise UsageError(f"--num_workers must be >= 0, got {self.num_workers}")
        if self.limit is not None and self.limit <= 0:
            raise UsageError(f"--limit must be positive, got {self.limit}")

    @classmethod
    def from_dict(cls, data: Dict[str, Any]) -> ConstructConfig:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    def hparams(self) -> Hparams:
        """The training hyper-parameters of a :meth:`resolved` config (UsageError while one is unset)."""
        lr, batch, wd, epochs = self.learning_rate, self.batch_size, self.weight_decay, self.max_epochs
        if lr is None or batch is None or wd is None or epochs is None:
            raise UsageError(f"{self.task}: the hyper-parameters are not resolved (learning rate {lr}, batch {batch}, "
                             f"weight decay {wd}, epochs {epochs})")
        return Hparams(float(lr), int(batch), float(wd), int(epochs))


@dataclass(frozen=True)
class Hparams:
    """The hyper-parameters training runs with (a resolved :class:`ConstructConfig`'s)."""

    learning_rate: float
    batch_size: int
    weight_decay: float
    max_epochs: int


@dataclass(frozen=True)
class ConstructResult:
    """What :func:`construct` returns: the run directory and how the exits scored.

    ``history`` holds one entry per epoch (``epoch``, ``loss``, ``val`` = the validation
    metric of every exit, ``lr``, ...; as in ``history.json``), ``test`` the held-out test
    metric of every exit (the last one is the original head). ``skipped``: an identical
    finished run was found and kept, nothing was trained.
    """

    run_dir: Path
    task: str
    metric_name: str
    history: List[Dict[str, Any]]
    test: List[float]
    skipped: bool = False


# ---------------------------------------------------------------------------------------------
# distributed helpers
# ---------------------------------------------------------------------------------------------


@dataclass
class Dist:
    rank: int = 0
    world_size: int = 1
    local_rank: Optional[int] = None

    @property
    def enabled(self) -> bool:
        return self.world_size > 1

    @property
    def is_main(self) -> bool:
        return self.rank == 0


def init_distributed() -> Dist:
    """Join the process group when launched by torchrun (``WORLD_SIZE`` > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return Dist()
    import torch.distributed as dist

    rank = int(os.environ.get("RANK", "0"))
    local = int(os.environ.get("LOCAL_RANK", str(rank)))
    if not dist.is_initialized():
        backend = "nccl" if torch.cuda.is_available() else "gloo"
        dist.init_process_group(backend=backend)
    return Dist(rank=rank, world_size=world, local_rank=local if torch.cuda.is_available() else None)


def _barrier(d: Dist) -> None:
    if d.enabled:
        import torch.distributed as dist

        dist.barrier()


def _sync_buffers(model: torch.nn.Module, d: Dist) -> None:
    """Rank 0's exit batch-norm statistics everywhere (each rank saw different batches)."""
    if d.enabled:
        import torch.distributed as dist

        for buf in model.buffers():
            dist.broadcast(buf.data, src=0)


def state_checksum(state: Dict[str, torch.Tensor]) -> str:
    """sha256 over a state dict's names and raw tensor bytes (cross-rank equality check)."""
    h = hashlib.sha256()
    for k in sorted(state):
        h.update(k.encode())
        h.update(state[k].detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def _gather_checksums(checksum: str, d: Dist) -> List[str]:
    if not d.enabled:
        return [checksum]
    import torch.distributed as dist

    out: List[Any] = [None] * d.world_size
    dist.all_gather_object(out, checksum)
    return [str(x) for x in out]


# ---------------------------------------------------------------------------------------------
# inputs, run directory, resume
# ---------------------------------------------------------------------------------------------


def _default_pretrain(task: Any, store: st.Store) -> Optional[Path]:
    """The store's pretrained weights of ``task`` (digits: required; others: when present)."""
    path = store.pretrained_dir(task.name)
    if (path / st.MANIFEST).is_file():
        st.verify(path, kind="pretrained", required=["weights.pt"])
        return path / "weights.pt"
    if task.data_format == "digits":
        raise UsageError(
            f"no pretrained weights for {task.name} in {path}; run `pantheon pretrain --task {task.name}` first"
            " or pass --pretrain FILE"
        )
    return None


def _inputs(cfg: ConstructConfig, task: Any, pretrain: Optional[Path]) -> Dict[str, Any]:
    from pantheon.zoo.datasets import fingerprint_inputs

    if pretrain is not None and not pretrain.is_file():
        raise WeightsError(f"weights file {pretrain} does not exist")
    keep = ("learning_rate", "batch_size", "weight_decay", "max_epochs", "seed", "merge", "limit")
    return {
        "task": task.name,
        "arch": task.arch,
        "input_shape": list(task.input_shape),
        "hparams": {k: getattr(cfg, k) for k in keep},
        "pretrain": st.sha256_file(pretrain) if pretrain else None,
        "data": fingerprint_inputs(task, cfg.data_dir),
    }


def _resolve_resume(path: str) -> Tuple[Path, Dict[str, Any]]:
    """(run dir, checkpoint) of ``--resume`` (a run directory or its checkpoint.pt), verified."""
    p = Path(path).expanduser()
    run_dir = p.parent if p.is_file() else p
    if not run_dir.exists():
        raise UsageError(f"--resume {p}: no such run directory or checkpoint")
    st.verify(run_dir, kind=RUN_KIND, required=[CHECKPOINT])
    return run_dir, load_checkpoint(run_dir)


def load_checkpoint(run_dir: Path) -> Dict[str, Any]:
    """The checkpoint dict of a verified run directory."""
    try:
        ckpt = torch.load(run_dir / CHECKPOINT, map_location="cpu", weights_only=False)
    except Exception as exc:  # a corrupt file that still matches its manifest: one line anyway
        raise ManifestError(f"{run_dir / CHECKPOINT} cannot be read: {exc.__class__.__name__}") from exc
    if not isinstance(ckpt, dict) or ckpt.get("format") != CHECKPOINT_FORMAT:
        raise ManifestError(f"{run_dir / CHECKPOINT} is not a pantheon construct checkpoint")
    return ckpt


def find_run(task: str, weights: Optional[str] = None, store: Optional[st.Store] = None) -> Path:
    """The run directory named by ``weights`` (a run dir or its checkpoint.pt), or the newest complete run."""
    s = store or st.Store()
    if weights:
        p = Path(weights).expanduser()
        return p.parent if p.is_file() else p
    runs = s.runs_dir(task)
    done = []
    for d in runs.iterdir() if runs.is_dir() else []:
        try:
            m = st.read_manifest(d)
        except ManifestError:
            continue
        if m.kind == RUN_KIND and m.meta.get("complete"):
            done.append((m.created, d.name, d))
    if not done:
        raise UsageError(f"no finished construct run for {task} under {runs}; run `pantheon construct --task {task}`")
    return sorted(done)[-1][2]


# ---------------------------------------------------------------------------------------------
# data
# ---------------------------------------------------------------------------------------------


@dataclass
class _TrainData:
    """The training split and how to load it; one DataLoader per epoch (seeded shuffles)."""

    dataset: Any
    sampler: Any
    loader_kw: Dict[str, Any]

    def loader(self, epoch: int, seed: int) -> DataLoader:
        if self.sampler is not None:
            self.sampler.set_epoch(epoch)
            return DataLoader(self.dataset, sampler=self.sampler, **self.loader_kw)
        order = epoch_order(len(self.dataset), epoch, seed)
        # a private generator: the loader's own seed draw must not consume the global RNG (dropout uses it)
        return DataLoader(self.dataset, sampler=order.tolist(), generator=torch.Generator().manual_seed(seed),
                          **self.loader_kw)


def epoch_order(n: int, epoch: int, seed: int) -> torch.Tensor:
    """The shuffle of epoch ``epoch``: a permutation that depends on ``(seed, epoch)`` only."""
    return torch.randperm(n, generator=torch.Generator().manual_seed(seed * 1000 + epoch))


def _loaders(cfg: ConstructConfig, task: Any, d: Dist) -> Tuple[_TrainData, DataLoader, DataLoader]:
    """Training data (DistributedSampler under torchrun), validation and test loaders."""
    from pantheon.zoo.datasets import load_splits

    splits, kw = load_splits(task, cfg.data_dir, cfg.limit, cfg.hparams().batch_size, cfg.num_workers)
    sampler: Optional[DistributedSampler[Any]] = None
    if d.enabled:
        from torch.utils.data.distributed import DistributedSampler

        sampler = DistributedSampler(splits["train"], num_replicas=d.world_size, rank=d.rank, shuffle=True,
                                     seed=cfg.seed, drop_last=False)
    val = DataLoader(splits["val"], shuffle=False, **kw)
    test = DataLoader(splits["test"], shuffle=False, **kw)
    return _TrainData(splits["train"], sampler, kw), val, test


@contextlib.contextmanager
def clean_worker_errors() -> Iterator[None]:
    """A DataLoader worker re-raises our error with its traceback in the text: keep the message line."""
    try:
        yield
    except PantheonError as exc:
        text = str(exc.args[0]) if exc.args else ""
        if "DataLoader worker" not in text:
            raise
        last = text.strip().splitlines()[-1]
        raise type(exc)(re.sub(r"^[\w.]+(Error|Fault): ", "", last)) from exc


# ---------------------------------------------------------------------------------------------
# training
# ---------------------------------------------------------------------------------------------


def _fmt(values: List[float]) -> str:
    return " ".join(f"{v:.3f}" for v in values)


def _total(losses: Iterable[torch.Tensor]) -> torch.Tensor:
    """The sum of the exits' losses, added left to right (as ``sum()``, without its ``0`` start)."""
    it = iter(losses)
    total = next(it)
    for loss in it:
        total = total + loss
    return total


def _train_epoch(task: Any, model: Any, net: Any, loader: DataLoader, opt: Any, device: torch.device,
                 bar: Any, bar_task: Any) -> Tuple[float, int]:
    from pantheon.offline.exits import to_device

    model.train()
    total, batches, samples = 0.0, 0, 0
    n_trained = model.num_blocks - 1
    for images, targets in loader:
        images = images.to(device)
        targets = to_device(targets, device)
        outs = net(images)
        loss = _total(task_loss_at(task, model, outs, targets, j) for j in range(n_trained))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
        batches += 1
        samples += int(images.shape[0])
        bar.advance(bar_task)
    return total / max(1, batches), samples


class FeatureCache:
    """Every block's output over a dataset, computed once.

    The backbone is frozen and in eval mode, so a block's output for an image never
    changes: with an in-memory dataset and no augmentation (the digits demo) the exits
    can train on cached features instead of re-running the backbone every epoch.
    """

    def __init__(self, mx: Any, dataset: Any, device: torch.device, batch_size: int = 256) -> None:
        feats: List[List[torch.Tensor]] = [[] for _ in range(mx.num_blocks)]
        labels = []
        mx.eval()
        with torch.no_grad():
            for images, targets in DataLoader(dataset, batch_size=batch_size, shuffle=False):
                x = images.to(device)
                for j, block in enumerate(mx.blocks):
                    x = block(x)
                    feats[j].append(x)
                labels.append(targets.to(device))
        self.feats = [torch.cat(f) for f in feats]
        self.labels = torch.cat(labels)

    def __len__(self) -> int:
        return int(self.labels.shape[0])

    @staticmethod
    def nbytes(shapes: List[List[int]], n: int) -> int:
        per_image = sum(int(torch.tensor(s).prod()) for s in shapes)
        return per_image * n * 4


def _train_epoch_cached(task: Any, mx: Any, cache: FeatureCache, batch_size: int, epoch: int, seed: int, opt: Any,
                        bar: Any, bar_task: Any) -> Tuple[float, int]:
    from pantheon.offline.exits import task_loss

    mx.train()
    perm = epoch_order(len(cache), epoch, seed).to(cache.labels.device)  # the batches of the uncached path
    total, batches = 0.0, 0
    for i in range(0, len(cache), batch_size):
        idx = perm[i : i + batch_size]
        y = cache.labels[idx]
        loss = _total(task_loss(task, mx.exits[j](cache.feats[j][idx]), y) for j in range(mx.num_blocks - 1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        total += float(loss.detach())
        batches += 1
        bar.advance(bar_task)
    return total / max(1, batches), len(cache)


@torch.no_grad()
def _evaluate_cached(task: Any, mx: Any, cache: FeatureCache, batch_size: int) -> List[float]:
    from pantheon.zoo.metrics import Top1

    mx.eval()
    metrics = [Top1() for _ in range(mx.num_blocks)]
    for i in range(0, len(cache), batch_size):
        y = cache.labels[i : i + batch_size]
        for j, m in enumerate(metrics):
            m.update(mx.exits[j](cache.feats[j][i : i + batch_size]), y)
    return [m.compute() for m in metrics]


def task_loss_at(task: Any, model: Any, outs: List[Any], targets: Any, j: int) -> torch.Tensor:
    from pantheon.offline.exits import task_loss

    return task_loss(task, outs[j], targets, model.anchors[j])


def construct(cfg: ConstructConfig, store: Optional[st.Store] = None) -> ConstructResult:
    """Build, train and record a multi-exit model; returns the run and its exits' scores.

    Args:
        cfg: the options (see :class:`ConstructConfig`).
        store: the artifact store (default: ``$PANTHEON_DATA``).

    Returns:
        a :class:`ConstructResult`: its ``run_dir`` is ``<log or root/runs>/<task>/<run-id>``
        holding ``checkpoint.pt``, ``config.json``, ``history.json``, ``metrics.json`` and
        ``manifest.json``; ``history`` and ``test`` are the per-epoch validation and final
        held-out test metrics of every exit.

    Raises:
        UnknownTaskError, DataError, WeightsError, TraceError, ChecksumError (a tampered
        ``--resume`` directory), ArtifactExistsError (an explicit ``--run-id`` holding
        another run, without ``--force``).

    Example::

        >>> res = construct(ConstructConfig(task="digits_googlenet", max_epochs=1, limit=128))
        >>> res.test == json.loads((res.run_dir / "metrics.json").read_text())["test"]
        True
    """
    from pantheon.offline.exits import set_threads
    from pantheon.zoo import get_task

    set_threads()
    cfg.validate()
    s = store or st.Store(cfg.data_root)
    ckpt: Optional[Dict[str, Any]] = None
    if cfg.resume:
        run_dir, ckpt = _resolve_resume(cfg.resume)
        saved = ConstructConfig.from_dict(ckpt["config"])
        saved.max_epochs = cfg.max_epochs or saved.max_epochs
        saved.num_workers, saved.gpu_id = cfg.num_workers, cfg.gpu_id
        cfg = saved
        task = get_task(cfg.task)
        pretrain = Path(cfg.pretrain) if cfg.pretrain else None
        inputs = dict(st.read_manifest(run_dir).inputs)
        inputs["hparams"] = dict(inputs.get("hparams", {}), max_epochs=cfg.max_epochs)
    else:
        task = get_task(cfg.task)
        cfg = cfg.resolved(task)
        pretrain = Path(cfg.pretrain).expanduser() if cfg.pretrain else _default_pretrain(task, s)
        cfg.pretrain = str(pretrain) if pretrain else None
        inputs = _inputs(cfg, task, pretrain)
        run_id = cfg.run_id or "r-" + st.fingerprint(inputs)[:12]
        cfg.run_id = run_id
        run_dir = (Path(cfg.log).expanduser() / task.name / run_id) if cfg.log else s.run_dir(task.name, run_id)
        ckpt = _existing(run_dir, inputs, cfg.force)
        if ckpt is not None and ckpt.get("complete"):
            console.info(f"construct {task.name}: skipped: up to date ({run_dir})")
            metrics = json.loads((run_dir / "metrics.json").read_text())
            return ConstructResult(run_dir, task.name, task.metric_name, list(ckpt["history"]),
                                   [float(x) for x in metrics["test"]], skipped=True)
    return _run(cfg, task, pretrain, inputs, run_dir, ckpt)


def _existing(run_dir: Path, inputs: Dict[str, Any], force: bool) -> Optional[Dict[str, Any]]:
    """The checkpoint of an earlier run with the same inputs (to skip or resume), else None."""
    if not run_dir.exists() or force:
        return None
    same = st.is_complete(run_dir, inputs)
    if not same:
        from pantheon.errors import ArtifactExistsError

        raise ArtifactExistsError(f"{run_dir} already holds a run with other inputs; pass --force to replace it")
    ckpt = load_checkpoint(run_dir)
    if not ckpt.get("complete"):
        console.info(f"construct: resuming the interrupted run in {run_dir} after epoch {ckpt['epoch'] + 1}")
    return ckpt


def _run(cfg: ConstructConfig, task: Any, pretrain: Optional[Path], inputs: Dict[str, Any], run_dir: Path,
         ckpt: Optional[Dict[str, Any]]) -> ConstructResult:
    from pantheon.offline.exits import (
        block_out_shapes,
        build_multi_exit,
        evaluate_exits,
        load_weights,
        pick_device,
    )

    hp = cfg.hparams()
    d = init_distributed()
    device = pick_device(cfg.gpu_id, d.local_rank)
    if device.type == "cuda":
        torch.backends.cudnn.deterministic = True
        torch.backends.cudnn.benchmark = False
    train, val, test = _loaders(cfg, task, d)  # data errors first: they are the most common and the cheapest
    torch.manual_seed(cfg.seed)
    model = task.build_model()
    if pretrain is not None:
        load_weights(model, pretrain, task.arch)
    elif d.is_main:
        console.warn(f"{task.name}: no --pretrain weights; training exits on a randomly initialised backbone")
    mx = build_multi_exit(task, model, merge=cfg.merge, seed=cfg.seed)
    if mx.num_blocks < 2:
        raise UsageError(f"{task.name}: the sliced model has {mx.num_blocks} block(s), no exit to train")
    opt = torch.optim.SGD(mx.exit_parameters(), lr=hp.learning_rate, momentum=MOMENTUM,
                          weight_decay=hp.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=hp.max_epochs)
    history: List[Dict[str, Any]] = []
    start = 0
    if ckpt is not None:
        mx.load_state_dict(ckpt["model"])
        opt.load_state_dict(ckpt["optimizer"])
        sched.load_state_dict(ckpt["scheduler"])
        sched.T_max = hp.max_epochs
        history, start = list(ckpt["history"]), int(ckpt["epoch"]) + 1
    shapes = block_out_shapes(list(mx.blocks), task.input_shape)
    mx.to(device)
    net: Any = mx
    if d.enabled:
        from torch.nn.parallel import DistributedDataParallel as DDP

        net = DDP(mx, device_ids=[device.index] if device.type == "cuda" else None)
    if d.is_main:
        console.info(
            f"construct {task.name}: {mx.num_blocks} blocks, {mx.num_blocks - 1} exits to train, "
            f"lr {hp.learning_rate:g}, batch {hp.batch_size}, wd {hp.weight_decay:g}, "
            f"{hp.max_epochs} epochs on {device}" + (f" x{d.world_size} ranks" if d.enabled else "")
        )
    from pantheon.zoo.datasets import dataset_len

    n_train = dataset_len(train.dataset)
    cache = None
    if (not d.enabled and task.data_format == "digits"  # in memory, no augmentation
            and FeatureCache.nbytes(shapes, n_train + dataset_len(val.dataset)) <= FEATURE_CACHE_BYTES):
        cache = (FeatureCache(mx, train.dataset, device), FeatureCache(mx, val.dataset, device))
        if d.is_main:
            console.info("construct: the frozen blocks' outputs are computed once and cached (in-memory dataset)")
    steps = len(train.loader(0, cfg.seed)) if cache is None else -(-n_train // hp.batch_size)
    with clean_worker_errors(), console.progress() as bar:
        job = bar.add_task(f"exits {task.name}", total=steps * (hp.max_epochs - start))
        for epoch in range(start, hp.max_epochs):
            t0 = time.perf_counter()
            torch.manual_seed(cfg.seed * 1000 + epoch)  # dropout of epoch e depends on (seed, e) only
            if cache is None:
                loss, seen = _train_epoch(task, mx, net, train.loader(epoch, cfg.seed), opt, device, bar, job)
            else:
                loss, seen = _train_epoch_cached(task, mx, cache[0], hp.batch_size, epoch, cfg.seed, opt, bar, job)
            t_train = time.perf_counter() - t0
            sched.step()
            _sync_buffers(mx, d)
            val_acc = evaluate_exits(task, mx, val, device) if cache is None else \
                _evaluate_cached(task, mx, cache[1], hp.batch_size)
            history.append({"epoch": epoch + 1, "loss": loss, "val": val_acc, "lr": opt.param_groups[0]["lr"],
                            "samples": seen, "train_seconds": round(t_train, 3), "feature_cache": cache is not None,
                            "seconds": round(time.perf_counter() - t0, 3)})
            if d.is_main:
                console.info(f"epoch {epoch + 1}/{hp.max_epochs}: loss {loss:.4f}; val {task.metric_name} "
                             f"per exit: {_fmt(val_acc)}")
                _write(run_dir, cfg, task, inputs, mx, opt, sched, epoch, history, shapes, complete=False)
            _barrier(d)
    with clean_worker_errors():
        test_acc = evaluate_exits(task, mx, test, device)
    checksums = _gather_checksums(state_checksum(mx.exit_state()), d)
    if d.is_main:
        extra = {"test": test_acc, "val": history[-1]["val"] if history else [],
                 "metric": task.metric_name, "block_out_shapes": shapes,
                 "ddp": {"world_size": d.world_size, "exit_checksums": checksums}}
        _write(run_dir, cfg, task, inputs, mx, opt, sched, hp.max_epochs - 1, history, shapes, complete=True,
               metrics=extra)
    _barrier(d)
    return ConstructResult(run_dir, task.name, task.metric_name, history, [float(x) for x in test_acc])


def _write(run_dir: Path, cfg: ConstructConfig, task: Any, inputs: Dict[str, Any], mx: Any, opt: Any, sched: Any,
           epoch: int, history: List[Dict[str, Any]], shapes: List[List[int]], complete: bool,
           metrics: Optional[Dict[str, Any]] = None) -> None:
    """Replace the run directory atomically with this epoch's checkpoint and logs."""
    ckpt = {
        "format": CHECKPOINT_FORMAT,
        "task": task.name,
        "model": {k: v.detach().cpu() for k, v in mx.state_dict().items()},
        "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(),
        "epoch": epoch,
        "config": asdict(cfg),
        "history": history,
        "block_out_shapes": shapes,
        "complete": complete,
    }
    meta = {"task": task.name, "epoch": epoch + 1, "max_epochs": cfg.max_epochs, "complete": complete,
            "num_blocks": mx.num_blocks, "merge": cfg.merge}
    with st.write_artifact(run_dir, kind=RUN_KIND, inputs=inputs, meta=meta, force=True) as tmp:
        st.save_torch(lambda f: torch.save(ckpt, f), tmp / CHECKPOINT)
        (tmp / "config.json").write_text(json.dumps(asdict(cfg), indent=2) + "\n")
        (tmp / "history.json").write_text(json.dumps(history, indent=2) + "\n")
        if metrics is not None:
            (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")


def exit_accuracies(run_dir: Path) -> List[float]:
    """The held-out test metric of every exit of a finished run."""
    st.verify(run_dir, kind=RUN_KIND, required=["metrics.json"])
    data = json.loads((Path(run_dir) / "metrics.json").read_text())
    return [float(x) for x in data["test"]]
