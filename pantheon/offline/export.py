"""Export a trained multi-exit model to TorchScript (``pantheon export``).

Takes the reference artifact's export options (``--task``, ``--save``, ``--weights``).
Reads a construct run (verified against its manifest), rebuilds the multi-exit model,
and writes the variants directory (CONTRIBUTING.md)::

    <root>/variants/<task>/            (or --save DIR)
      block_00.pt .. block_{B-1}.pt    TorchScript, one per block
      branch_00.pt .. branch_{B-1}.pt  TorchScript, exit j follows block j; branch_{B-1} = original head
      anchors_XX.pt                    detection only: each exit's anchors [A, 4] (torch.save'd tensor)
      variants.json                    shapes, numbering, how each file was made, exit accuracies
      manifest.json                    kind "variants", sha256 of every file

Each module is compiled with ``torch.jit.script``; where scripting fails it falls back
to ``torch.jit.trace`` and ``variants.json`` records which. Before anything is moved
into place, the files written are loaded back with ``torch.jit.load`` and, for every
exit ``j``, blocks ``0..j`` + ``branch_j`` must reproduce the eager model's exit ``j``
output within 1e-5 relative (else :class:`ModelError`, nothing written). The files
need only torch to load: ``torch.jit.load("block_00.pt")``.

The boards load these files with an older torch (2.0 on JetPack 5), so the export path is
TorchScript (``torch.jit.save``; ``torch.export`` archives do not load there) and the files'
format version must be one every supported board torch reads
(:mod:`pantheon.formats.torchscript`; else :class:`ModelError`, nothing written).
``variants.json`` records the writer's torch version and the format version.

Example::

    >>> from pantheon.offline.export import export
    >>> res = export("digits_resnet18")          # newest finished run of the task
    >>> json.loads((res.path / "variants.json").read_text())["num_blocks"]
"""

from __future__ import annotations

import functools
import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

import torch

from pantheon import console
from pantheon.errors import ArtifactExistsError, ModelError, UsageError
from pantheon.formats import store as st
from pantheon.formats import torchscript
from pantheon.offline.profile import VARIANTS_JSON, file_name

KIND = "variants"
FORMAT = 1


@dataclass(frozen=True)
class ExportResult:
    """What :func:`export` returns: the variants directory and, per exit ``j``, what was written.

    ``block_out_shapes[j]`` is block ``j``'s output shape, ``modes[j]`` how block and branch
    ``j`` were compiled (``script/trace``), ``accuracy[j]`` the run's held-out test metric
    (None when the run recorded none). ``skipped``: the directory was already up to date.
    """

    path: Path
    task: str
    metric_name: str
    block_out_shapes: List[List[int]]
    modes: List[str]
    accuracy: Optional[List[float]]
    max_abs_diff: float  # largest round-trip difference over the exits
    traced: List[str]  # files that fell back to torch.jit.trace
    skipped: bool = False

    @classmethod
    def from_info(cls, path: Path, info: Dict[str, Any], skipped: bool = False) -> ExportResult:
        """The result recorded in a ``variants.json`` (``info``) written by :func:`export`."""
        B = int(info["num_blocks"])
        modes = info["export_modes"]
        names = [(file_name("block", j, B), file_name("branch", j, B)) for j in range(B)]
        return cls(path, info["task"], info["metric"], info["block_out_shapes"],
                   [f"{modes[b]}/{modes[e]}" for b, e in names], info["exit_accuracy"],
                   max(info["round_trip_max_abs_diff"]), sorted(k for k, v in modes.items() if v == "trace"), skipped)


def to_torchscript(module: torch.nn.Module, example: torch.Tensor) -> Tuple[Any, str]:
    """TorchScript of ``module``: scripted, or traced on ``example`` when scripting fails."""
    module.eval()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # torch.jit's deprecation and tracer notices are not the user's business
        try:
            return torch.jit.script(module), "script"
        except Exception as script_exc:  # scripting rejects some Python constructs: trace instead
            try:
                with torch.no_grad():
                    return torch.jit.trace(module, example, check_trace=True), "trace"
            except Exception as exc:
                raise ModelError(
                    f"cannot export {type(module).__name__} to TorchScript: script failed "
                    f"({str(script_exc).splitlines()[0][:120]}), trace failed ({str(exc).splitlines()[0][:120]})"
                ) from exc


def _rebuild(task: Any, ckpt: Dict[str, Any]) -> Any:
    """The multi-exit model of a checkpoint (same slicing, same exits), in eval mode."""
    from pantheon.offline.exits import build_multi_exit

    cfg = ckpt["config"]
    torch.manual_seed(int(cfg.get("seed", 0)))
    model = task.build_model()
    mx = build_multi_exit(task, model, merge=bool(cfg.get("merge", True)), seed=int(cfg.get("seed", 0)))
    try:
        mx.load_state_dict(ckpt["model"], strict=True)
    except RuntimeError as exc:
        raise ModelError(f"the checkpoint does not fit {task.name}'s multi-exit model: "
                         f"{str(exc).splitlines()[0][:200]}") from exc
    return mx.eval()


def _check_round_trip(mx: Any, tmp: Path, names: List[Tuple[str, str]], input_shape: List[int], seed: int = 0
                      ) -> List[float]:
    """Load the written files and compare every exit with the eager model; returns the diffs."""
    from pantheon.offline.slice import max_abs_diff, tensors_of, within_tolerance

    blocks = [torch.jit.load(str(tmp / b)) for b, _ in names]
    branches = [torch.jit.load(str(tmp / e)) for _, e in names]
    x = torch.randn(2, *input_shape, generator=torch.Generator().manual_seed(seed))
    diffs = []
    with torch.no_grad():
        h = x
        for j, (block, branch) in enumerate(zip(blocks, branches)):
            h = block(h)
            got = branch(h)
            ref = mx.forward_exit(x, j)
            diff = max_abs_diff(ref, got)
            scale = max(float(t.abs().max()) for t in tensors_of(ref))
            if not within_tolerance(diff, scale):
                raise ModelError(
                    f"exported exit {j} differs from the eager model: max abs diff {diff:.3g} "
                    f"(tolerance 1e-5 x {scale:.3g}); nothing was written"
                )
            diffs.append(diff)
    return diffs


def export(
    task: str,
    weights: Optional[str] = None,
    save: Optional[str] = None,
    force: bool = False,
    store: Optional[st.Store] = None,
) -> ExportResult:
    """Export a construct run of ``task`` to TorchScript; returns the variants directory and what it holds.

    Args:
        task: zoo task name.
        weights: the run directory (or its ``checkpoint.pt``); default: the task's newest finished run.
        save: the variants directory (default ``<root>/variants/<task>``).
        force: replace an existing directory.
        store: the artifact store (default ``$PANTHEON_DATA``).

    Raises:
        ChecksumError / ManifestError: the run directory was tampered with or is incomplete.
        ArtifactExistsError: ``save`` exists and holds something else, without ``force``.
        ModelError: a module cannot be compiled, or the round trip check fails.
    """
    from pantheon.offline.construct import RUN_KIND, find_run, load_checkpoint
    from pantheon.zoo import get_task

    s = store or st.Store()
    t = get_task(task)
    run_dir = find_run(t.name, weights, s)
    manifest = st.verify(run_dir, kind=RUN_KIND, required=["checkpoint.pt"])
    dest = Path(save).expanduser() if save else s.variants_dir(t.name)
    inputs = {"task": t.name, "run_checkpoint": manifest.files["checkpoint.pt"].sha256, "format": FORMAT}
    if dest.exists() and not force:
        if st.is_complete(dest, inputs):
            console.info(f"export {t.name}: skipped: up to date ({dest})")
            return ExportResult.from_info(dest, json.loads((dest / VARIANTS_JSON).read_text()), skipped=True)
        raise ArtifactExistsError(f"{dest} already exists; pass --force to replace it")
    ckpt = load_checkpoint(run_dir)
    if ckpt.get("task") != t.name:
        raise UsageError(f"{run_dir} is a run of {ckpt.get('task')!r}, not {t.name!r}")
    if not ckpt.get("complete"):
        console.warn(f"{run_dir} is unfinished (epoch {int(ckpt['epoch']) + 1}); exporting its last checkpoint")
    mx = _rebuild(t, ckpt)
    B = mx.num_blocks
    metrics_path = run_dir / "metrics.json"
    accuracy = json.loads(metrics_path.read_text()).get("test") if metrics_path.is_file() else None
    modes: Dict[str, str] = {}
    names = [(file_name("block", j, B), file_name("branch", j, B)) for j in range(B)]
    with warnings.catch_warnings(), st.write_artifact(
        dest, kind=KIND, inputs=inputs, force=True, meta={"task": t.name, "num_blocks": B, "source_run": str(run_dir)}
    ) as tmp:
        warnings.simplefilter("ignore", FutureWarning)  # torch.jit.save/load deprecation notices
        x = torch.zeros(1, *t.input_shape)
        shapes: List[List[int]] = []
        with console.progress() as bar:
            job = bar.add_task(f"export {t.name}", total=2 * B)
            with torch.no_grad():
                for j, (bname, ename) in enumerate(names):
                    scripted, modes[bname] = to_torchscript(mx.blocks[j], x)
                    st.save_torch(functools.partial(torch.jit.save, scripted), tmp / bname)
                    x = mx.blocks[j](x)
                    shapes.append(list(x.shape[1:]))
                    bar.advance(job)
                    scripted, modes[ename] = to_torchscript(mx.exits[j], x)
                    st.save_torch(functools.partial(torch.jit.save, scripted), tmp / ename)
                    bar.advance(job)
        anchors = []
        if t.is_detection:
            for j, a in enumerate(mx.anchors):
                anchors.append(file_name("anchors", j, B))
                st.save_torch(functools.partial(torch.save, a.clone()), tmp / anchors[-1])
        diffs = _check_round_trip(mx, tmp, names, list(t.input_shape))
        needs = torchscript.needs_of([tmp])
        if needs.format_version > torchscript.MAX_READABLE_FORMAT:
            raise ModelError(
                f"torch {torch.__version__} wrote {needs.newest} in TorchScript file format {needs.format_version}; "
                f"the boards' torch (>= {'.'.join(map(str, torchscript.OLDEST_BOARD_TORCH))}) reads up to "
                f"{torchscript.MAX_READABLE_FORMAT}: export with an older torch; nothing was written")
        info = {
            "format": FORMAT,
            "task": t.name,
            "arch": t.arch,
            "kind": t.kind,
            "input_shape": list(t.input_shape),
            "num_classes": t.num_classes,
            "num_blocks": B,
            "block_out_shapes": shapes,
            "original_exit": B - 1,
            "merge": bool(ckpt["config"].get("merge", True)),
            "metric": t.metric_name,
            "exit_accuracy": accuracy,
            "export_modes": modes,
            "round_trip_max_abs_diff": diffs,
            "anchors": anchors or None,
            "source_run": str(run_dir),
            "torch": {"writer": torch.__version__, "format_version": needs.format_version},
        }
        (tmp / VARIANTS_JSON).write_text(json.dumps(info, indent=2) + "\n")
    return ExportResult.from_info(dest, info)
