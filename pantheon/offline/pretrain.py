"""Train a task's full backbone briefly (``pantheon pretrain``) and cache it in the store.

The paper starts from pretrained models; we cannot download any, so the digits demo
tasks train theirs here in seconds (SGD with Nesterov momentum, cosine schedule,
deterministic seed), and a paper task can be trained the same way when its dataset is
given with ``--data_dir``. Result: ``<root>/pretrained/<task>/`` with ``weights.pt``
(the model's state dict, what ``construct --pretrain`` reads), ``metrics.json`` (val
and held-out test metric) and a manifest whose ``inputs`` fingerprint (task, epochs,
seed, hyper-parameters, dataset) makes a re-run print ``skipped: up to date``.

Example::

    >>> from pantheon.offline.pretrain import pretrain
    >>> path = pretrain("digits_resnet18")          # ~10 s on 2 CPU cores
    >>> json.loads((path / "metrics.json").read_text())["test"]
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

import torch
from torch.utils.data import DataLoader

from pantheon import console
from pantheon.errors import UsageError
from pantheon.formats import store as st

KIND = "pretrained"
WEIGHTS = "weights.pt"


def _evaluate(task: Any, model: torch.nn.Module, loader: DataLoader, anchors: Any, device: torch.device) -> float:
    from pantheon.offline.exits import to_device
    from pantheon.zoo.metrics import make_metric

    model.eval()
    metric = make_metric(task, anchors)
    with torch.no_grad():
        for images, targets in loader:
            metric.update(model(images.to(device)), to_device(targets, device))
    return metric.compute()


def pretrain(
    task: str,
    data_dir: Optional[str] = None,
    epochs: Optional[int] = None,
    seed: int = 0,
    force: bool = False,
    store: Optional[st.Store] = None,
    limit: Optional[int] = None,
    num_workers: int = 0,
    gpu_id: Optional[int] = None,
) -> Path:
    """Train ``task``'s full model and record it under ``pretrained/<task>/``; returns that directory.

    Args:
        task: a zoo task name.
        data_dir: root of the datasets (not needed for the digits tasks).
        epochs: training epochs (default: the task's pretrain default).
        seed: seeds initialisation and shuffling (same seed, same weights).
        force: retrain even when the store holds weights made from the same inputs.
        store: the artifact store (default ``$PANTHEON_DATA``).
        limit: use at most this many samples per split (quick runs).
        num_workers: DataLoader workers for file datasets.
        gpu_id: CUDA device to train on when CUDA exists (the CPU otherwise).

    Raises:
        UnknownTaskError, DataError (missing/corrupt dataset), UsageError (bad epochs).
    """
    from pantheon.offline.exits import pick_device, set_threads, task_loss, to_device
    from pantheon.zoo import get_task
    from pantheon.zoo.datasets import dataset_len, fingerprint_inputs, load_splits

    set_threads()
    t = get_task(task)
    d = t.pretrain_defaults
    n_epochs = d.epochs if epochs is None else int(epochs)
    if n_epochs <= 0:
        raise UsageError(f"--epochs must be positive, got {epochs}")
    if limit is not None and limit <= 0:
        raise UsageError(f"--limit must be positive (samples per split), got {limit}")
    if seed < 0:
        raise UsageError(f"--seed must be >= 0, got {seed}")
    if num_workers < 0:
        raise UsageError(f"--num_workers must be >= 0, got {num_workers}")
    s = store or st.Store()
    dest = s.pretrained_dir(t.name)
    inputs = {
        "task": t.name,
        "arch": t.arch,
        "input_shape": list(t.input_shape),
        "epochs": n_epochs,
        "seed": seed,
        "hparams": {"lr": d.learning_rate, "batch_size": d.batch_size, "weight_decay": d.weight_decay},
        "limit": limit,
        "data": fingerprint_inputs(t, data_dir),
    }
    if not force and st.is_complete(dest, inputs):
        acc = json.loads((dest / "metrics.json").read_text()).get("test")
        console.info(f"pretrain {t.name}: skipped: up to date (test {t.metric_name} {acc:.3f}, {dest})")
        return dest
    st.check_writable(dest)  # a read-only or full disk is refused before the training, not after it
    splits, kw = load_splits(t, data_dir, limit, d.batch_size, num_workers)

    torch.manual_seed(seed)
    device = pick_device(gpu_id)
    model = t.build_model()
    anchors = None
    if t.is_detection:
        from pantheon.zoo.models import ssd_anchors

        anchors = ssd_anchors(model, t.input_shape)
    model.to(device)
    opt = torch.optim.SGD(model.parameters(), lr=d.learning_rate, momentum=0.9, nesterov=True,
                          weight_decay=d.weight_decay)
    steps_per_epoch = -(-dataset_len(splits["train"]) // d.batch_size)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=n_epochs * steps_per_epoch)  # stepped per batch
    history: List[Dict[str, Any]] = []
    val_loader = DataLoader(splits["val"], shuffle=False, **kw)
    t0 = time.perf_counter()
    with console.progress() as bar:
        job = bar.add_task(f"pretrain {t.name}", total=n_epochs * steps_per_epoch)
        for epoch in range(n_epochs):
            g = torch.Generator().manual_seed(seed * 1000 + epoch)
            model.train()
            total = 0.0
            for images, targets in DataLoader(splits["train"], shuffle=True, generator=g, **kw):
                loss = task_loss(t, model(images.to(device)), to_device(targets, device), anchors)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                opt.step()
                sched.step()
                total += float(loss.detach())
                bar.advance(job)
            val = _evaluate(t, model, val_loader, anchors, device)
            history.append({"epoch": epoch + 1, "loss": total / steps_per_epoch, "val": val})
    test = _evaluate(t, model, DataLoader(splits["test"], shuffle=False, **kw), anchors, device)
    seconds = round(time.perf_counter() - t0, 2)
    metrics = {"task": t.name, "metric": t.metric_name, "val": history[-1]["val"], "test": test,
               "epochs": n_epochs, "seconds": seconds, "history": history}
    with st.write_artifact(dest, kind=KIND, inputs=inputs, force=True,
                           meta={"task": t.name, "arch": t.arch, "test": test}) as tmp:
        state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
        st.save_torch(lambda f: torch.save(state, f), tmp / WEIGHTS)
        (tmp / "metrics.json").write_text(json.dumps(metrics, indent=2) + "\n")
    console.info(f"pretrain {t.name}: test {t.metric_name} {test:.3f} after {n_epochs} epochs ({seconds:.1f} s) -> {dest}")
    return dest


def pretrained_metrics(task: str, store: Optional[st.Store] = None) -> Dict[str, Any]:
    """``metrics.json`` of the store's pretrained weights of ``task`` (verified)."""
    dest = (store or st.Store()).pretrained_dir(task)
    st.verify(dest, kind=KIND, required=[WEIGHTS, "metrics.json"])
    return json.loads((dest / "metrics.json").read_text())
