"""Deployment model repositories: read profiles (no torch) and load TorchScript chunks (torch).

Layout (CONTRIBUTING.md, kind ``repository``)::

    <repo>/manifest.json
    <repo>/plan.json                       optional: app, chosen exits, task order,
                                           dispatch_overhead_us (also in the manifest's meta)
    <repo>/<task>/config.pbtxt             ModelConfig: name, dims [1,C,H,W], block_profile
                                           {id latency} for blocks 0..last kept exit,
                                           exit_profile {id latency accuracy} per kept exit
    <repo>/<task>/model_files/block_XX.pt  blocks 0..last kept exit
    <repo>/<task>/model_files/branch_XX.pt kept exits (XX = the block the exit follows)

:func:`read_repository` verifies the manifest and every config, and returns a
:class:`Repository` of :class:`TaskProfile` (what the simulator needs). A profile is
frozen: what was measured of a task, never what one run makes of it. It records the
per-dispatch overhead measured when the chunks were profiled (``dispatch_overhead_us`` in
the manifest's ``meta``; 0 when absent): the scheduler plans with ``overhead + profiled
latency`` per chunk, in its own per-run tables
(:class:`~pantheon.online.scheduler.TaskState`), so a repository read once can serve any
number of simulations and runtimes unchanged.
:func:`load_modules` then loads the chunks onto a device and warms
them up (what the runtime needs).

A *profiles-only* folder holds ``<task>/config.pbtxt`` files and nothing else that makes a
repository: no ``manifest.json``, no ``model_files`` folder and no ``.pt``/``.pth`` file
anywhere under it (for example the reference artifact's published profiles). The simulator
needs nothing more, so ``read_repository(path, profiles_only_ok=True)`` reads such a folder
(:attr:`Repository.profiles_only` is then True); anything else without a manifest is still
refused, and the runtime never passes that flag. A reference repository with chunks
(``model_files/*.pth``, no manifest) becomes one of ours with ``pantheon repository import``.

Example::

    repo = read_repository("pantheon-data/apps/digits/repository")
    repo.tasks["digits_resnet18"].full_latency        # us
    models = load_modules(repo, device="cpu")
    x = models["digits_resnet18"].run_exit(torch.zeros(repo.dims("digits_resnet18")), exit_index=-1)
"""

from __future__ import annotations

import json
import math
import os
import warnings
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from pantheon.errors import ArtifactError, FormatError, ManifestError, RepositoryError, UsageError

PathLike = Union[str, "os.PathLike[str]"]


@dataclass(frozen=True)
class TaskProfile:
    """What was measured of one task: block and exit latencies, exit accuracies, input dims.

    Immutable (a frozen dataclass of tuples): the scheduler builds its per-run tables from
    it (:class:`~pantheon.online.scheduler.TaskState`) and never writes back, so one profile
    may serve many runs at once.

    Args:
        name: task name.
        blocks: profiled latency (us) of blocks ``0..B-1`` (at least through the highest exit).
        exits: ``(block_id, latency_us, accuracy)`` per kept exit; sorted here by block id.
            Exit ``j`` follows block ``exit_blocks[j]``; the last one is the original head.
        index: the task's index (workload ``id``).
        dims: input dims (batch first).
        dispatch_us: fixed cost of dispatching one chunk (block or exit branch) measured with
            the profile; the cost model charges ``dispatch_us + latency`` per chunk.

    Raises:
        RepositoryError: no exit, an exit listed twice or following an unprofiled block, a
            negative latency, or an original exit of accuracy <= 0.
        UsageError: a negative or non-finite ``dispatch_us``.
    """

    name: str
    blocks: Sequence[int]  # stored as a tuple, as are exits and dims
    exits: Sequence[Tuple[int, int, float]]
    index: int = 0
    dims: Sequence[int] = ()
    dispatch_us: float = 0.0

    def __post_init__(self) -> None:
        name = self.name
        blocks = tuple(int(x) for x in self.blocks)
        if not self.exits:
            raise RepositoryError(f"task {name!r} has no exits")
        exits = tuple(sorted((int(b), int(lat), float(acc)) for b, lat, acc in self.exits))
        ids = [e[0] for e in exits]
        if len(set(ids)) != len(ids):
            raise RepositoryError(f"task {name!r} lists exit {ids} more than once")
        if ids[0] < 0 or ids[-1] >= len(blocks):
            raise RepositoryError(
                f"task {name!r}: exit {ids[-1] if ids[0] >= 0 else ids[0]} follows a block that is not "
                f"profiled (blocks 0..{len(blocks) - 1})"
            )
        if any(x < 0 for x in blocks) or any(e[1] < 0 for e in exits):
            raise RepositoryError(f"task {name!r} has a negative latency")
        if exits[-1][2] <= 0:
            raise RepositoryError(f"task {name!r}: the original exit's accuracy must be positive")
        check_dispatch_us(self.dispatch_us)
        object.__setattr__(self, "blocks", blocks)
        object.__setattr__(self, "exits", exits)
        object.__setattr__(self, "index", int(self.index))
        object.__setattr__(self, "dims", tuple(int(d) for d in (self.dims or ())))
        object.__setattr__(self, "dispatch_us", float(self.dispatch_us))

    @property
    def exit_blocks(self) -> Tuple[int, ...]:
        """The block each kept exit follows, ascending."""
        return tuple(e[0] for e in self.exits)

    @property
    def exit_lat(self) -> Tuple[int, ...]:
        """Profiled latency (us) of each kept exit's branch."""
        return tuple(e[1] for e in self.exits)

    @property
    def exit_acc(self) -> Tuple[float, ...]:
        """Accuracy of each kept exit."""
        return tuple(e[2] for e in self.exits)

    @property
    def top(self) -> int:
        """Index of the original exit (the highest kept one)."""
        return len(self.exits) - 1

    def costs(self, dispatch_us: Optional[float] = None) -> Tuple[Tuple[int, ...], Tuple[int, ...]]:
        """``(blocks, exits)``: what each chunk costs the scheduler, ``dispatch + profiled`` (us, rounded).

        ``dispatch_us`` defaults to the profile's own overhead.
        """
        o = self.dispatch_us if dispatch_us is None else check_dispatch_us(dispatch_us)
        return (tuple(int(round(o + x)) for x in self.blocks),
                tuple(int(round(o + e[1])) for e in self.exits))

    @property
    def full(self) -> Tuple[int, ...]:
        """Cost (us) of a job through each exit from scratch: its blocks and branch, each
        charged the dispatch overhead."""
        blocks, exits = self.costs()
        return tuple(sum(blocks[: b + 1]) + lat for b, lat in zip(self.exit_blocks, exits))

    @property
    def full_latency(self) -> int:
        """Cost (us) of the whole original model (all blocks through the original exit)."""
        return self.full[-1]


def check_dispatch_us(value: float) -> float:
    """``value`` as a float if it is a finite number >= 0 (a per-chunk overhead), else a UsageError."""
    if not math.isfinite(value) or value < 0:
        raise UsageError(f"the dispatch overhead must be a finite number >= 0 us, got {value}")
    return float(value)


def chunk_file(model_dir: Path, kind: str, idx: int) -> Optional[Path]:
    """``model_files/<kind>_XX.pt`` (two digits, or three in repositories with > 100 blocks)."""
    for width in (2, 3):
        p = model_dir / f"{kind}_{idx:0{width}d}.pt"
        if p.is_file():
            return p
    return None


@dataclass
class Repository:
    """A verified deployment repository: per-task profiles and where their chunks are."""

    path: Path
    tasks: Dict[str, TaskProfile]
    app: str = ""
    plan: Dict[str, Any] = field(default_factory=dict)
    dispatch_us: float = 0.0  # per-chunk dispatch overhead the profiles are charged with
    profile_device: str = ""  # where the profiles were measured ("cuda (NVIDIA H200)", "cpu (x86_64, 1 threads)")
    profiles_only: bool = False  # read from a folder of config.pbtxt files alone (no chunks, no manifest)

    def with_dispatch_overhead(self, dispatch_us: float) -> Repository:
        """A copy whose task profiles charge ``dispatch_us`` per chunk (this one is unchanged)."""
        d = check_dispatch_us(dispatch_us)
        tasks = {n: replace(t, dispatch_us=d) for n, t in self.tasks.items()}
        return Repository(self.path, tasks, self.app, dict(self.plan), d, self.profile_device, self.profiles_only)

    @property
    def names(self) -> List[str]:
        """Task names in task-index order."""
        return sorted(self.tasks, key=lambda n: self.tasks[n].index)

    def dims(self, task: str) -> List[int]:
        return list(self.tasks[task].dims)

    def task(self, name: str) -> TaskProfile:
        if name not in self.tasks:
            raise RepositoryError(
                f"task {name!r} is not in the repository {self.path} (it has: {', '.join(self.names)})"
            )
        return self.tasks[name]

    def model_dir(self, task: str) -> Path:
        return self.path / task / "model_files"

    def describe(self, dispatch_us: Optional[float] = None) -> Dict[str, Any]:
        """The ``tasks`` table written into the ``start`` event of a log.

        Latencies are what the scheduler charges per chunk: the profile's plus
        ``dispatch_us`` (default: each profile's own overhead).
        """
        out: Dict[str, Any] = {}
        for name in self.names:
            t = self.tasks[name]
            if dispatch_us is not None:
                t = replace(t, dispatch_us=dispatch_us)
            blocks, exit_lat = t.costs()
            out[name] = {
                "index": t.index,
                "dims": list(t.dims),
                "exits": list(t.exit_blocks),
                "acc": list(t.exit_acc),
                "blocks": list(blocks[: t.exit_blocks[-1] + 1]),
                "exit_lat": list(exit_lat),
                "original": t.exit_blocks[-1],
                "full_us": t.full_latency,
                "dispatch_us": t.dispatch_us,
            }
        return out


def _task_order(repo: Path, names: Sequence[str], plan: Dict[str, Any]) -> List[str]:
    listed = plan.get("tasks")
    if isinstance(listed, dict):
        listed = list(listed)
    order: List[str] = []
    if isinstance(listed, list):
        for item in listed:
            n = item.get("task") or item.get("name") if isinstance(item, dict) else item
            if isinstance(n, str) and n in names and n not in order:
                order.append(n)
    order += sorted(n for n in names if n not in order)
    return order


def _profile(task_dir: Path, index: int, dispatch_us: float = 0.0) -> TaskProfile:
    from pantheon.formats import read_model_config

    cfg_path = task_dir / "config.pbtxt"
    cfg = read_model_config(cfg_path)
    name = task_dir.name
    if cfg.name and cfg.name != name:
        raise RepositoryError(f"{cfg_path} names task {cfg.name!r} but lives in the folder {name!r}")
    dims = [int(d) for d in cfg.dims]
    if len(dims) < 2 or dims[0] != 1 or any(d <= 0 for d in dims):
        raise RepositoryError(f"{cfg_path}: dims must be [1, C, H, W] (batch 1), got {dims}")
    blocks = sorted((int(b.id), int(b.latency)) for b in cfg.block_profile)
    if [b for b, _ in blocks] != list(range(len(blocks))):
        raise RepositoryError(f"{cfg_path}: block_profile ids must be 0..N-1 without gaps, got {[b for b, _ in blocks]}")
    exits = [(int(e.id), int(e.latency), round(float(e.accuracy), 6)) for e in cfg.exit_profile]  # float32 noise off
    if not exits:
        raise RepositoryError(f"{cfg_path} keeps no exit (exit_profile is empty)")
    for b, _lat, acc in exits:
        if not 0.0 <= acc <= 1.0:
            raise RepositoryError(f"{cfg_path}: exit {b} has accuracy {acc}, expected a fraction in [0, 1]")
    try:
        return TaskProfile(name, [lat for _, lat in blocks], exits, index=index, dims=dims, dispatch_us=dispatch_us)
    except RepositoryError as exc:
        raise RepositoryError(f"{cfg_path}: {exc}") from None


def _check_files(repo: Path, t: TaskProfile) -> None:
    model_dir = repo / t.name / "model_files"
    for b in range(t.exit_blocks[-1] + 1):
        if chunk_file(model_dir, "block", b) is None:
            raise RepositoryError(f"{model_dir} lacks block_{b:02d}.pt (needed up to exit {t.exit_blocks[-1]})")
    for e in t.exit_blocks:
        if chunk_file(model_dir, "branch", e) is None:
            raise RepositoryError(f"{model_dir} lacks branch_{e:02d}.pt (exit {e} is kept in config.pbtxt)")


def is_profiles_only(path: PathLike) -> bool:
    """True when ``path`` is a folder of ``<task>/config.pbtxt`` profiles alone.

    The rule (explicit, so a damaged repository is never mistaken for one): no
    ``manifest.json`` at the top, at least one ``<task>/config.pbtxt``, and no ``model_files``
    folder, ``.pt`` or ``.pth`` file anywhere below.
    """
    from pantheon.formats import store

    repo = Path(path)
    if not repo.is_dir() or (repo / store.MANIFEST).exists():
        return False
    if not any((p / "config.pbtxt").is_file() for p in repo.iterdir()):
        return False
    for p in repo.rglob("*"):
        if p.name == "model_files" or p.suffix in (".pt", ".pth"):
            return False
    return True


def _has_reference_chunks(repo: Path) -> bool:
    return any(repo.glob("*/model_files/*.pth"))


def read_repository(path: PathLike, *, verify: bool = True, profiles_only_ok: bool = False) -> Repository:
    """Verify and read the deployment repository at ``path`` (no torch needed).

    Args:
        path: the repository folder.
        verify: check the manifest (sha256 of every file) first.
        profiles_only_ok: also accept a profiles-only folder (see :func:`is_profiles_only`;
            for the simulator, which needs no chunk). The result then has ``profiles_only``
            set, no chunk is looked for, and the dispatch overhead is 0 (no manifest ``meta``)
            unless a ``plan.json`` gives one.

    Raises:
        RepositoryError: no such folder, no task, a bad config.pbtxt, a missing chunk file.
        ArtifactError: a missing manifest or a file whose checksum differs (tampered chunk).
    """
    from pantheon.formats import store

    repo = Path(path)
    if not repo.is_dir():
        raise RepositoryError(f"model repository {repo} does not exist (make one with `pantheon plan --setting APP`)")
    profiles_only = profiles_only_ok and is_profiles_only(repo)
    meta: Dict[str, Any] = {}
    if verify and not profiles_only:
        if not (repo / store.MANIFEST).exists() and _has_reference_chunks(repo):
            raise ManifestError(
                f"model repository {repo} has no {store.MANIFEST} but holds reference chunks (model_files/*.pth): "
                f"import it first with `pantheon repository import {repo} --out DEST`"
            )
        if not (repo / store.MANIFEST).exists() and is_profiles_only(repo):
            raise ManifestError(f"{repo} holds profiles only (config.pbtxt files, no chunks, no {store.MANIFEST}): "
                                f"the simulator reads it, but running models needs a repository with its chunks")
        try:
            meta = store.verify(repo, kind="repository").meta
        except ArtifactError as exc:
            raise type(exc)(f"model repository rejected: {exc}") from None
    plan: Dict[str, Any] = {}
    if (repo / "plan.json").is_file():
        try:
            plan = json.loads((repo / "plan.json").read_text())
        except (OSError, ValueError) as exc:
            raise FormatError(f"{repo / 'plan.json'} is not valid JSON: {exc}") from exc
        if not isinstance(plan, dict):
            plan = {}
    names = [p.name for p in sorted(repo.iterdir()) if (p / "config.pbtxt").is_file()]
    if not names:
        raise RepositoryError(f"{repo} holds no task (no <task>/config.pbtxt)")
    overhead = _dispatch_overhead(meta.get("dispatch_overhead_us", plan.get("dispatch_overhead_us")), repo)
    tasks: Dict[str, TaskProfile] = {}
    for i, name in enumerate(_task_order(repo, names, plan)):
        t = _profile(repo / name, i, overhead)
        if not profiles_only:
            _check_files(repo, t)
        tasks[name] = t
    app = str(plan.get("app") or (repo.parent.name if repo.name == "repository" else repo.name))
    device = str(meta.get("profile_device", plan.get("profile_device")) or "")
    return Repository(path=repo, tasks=tasks, app=app, plan=plan, dispatch_us=overhead, profile_device=device,
                      profiles_only=profiles_only)


def _dispatch_overhead(value: Any, repo: Path) -> float:
    if value is None:
        return 0.0
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = -1.0
    if not math.isfinite(v) or v < 0:
        raise RepositoryError(f"{repo}: dispatch_overhead_us must be a number >= 0, got {value!r}")
    return v


# -- torch side ------------------------------------------------------------------------------


def resolve_device(device: str = "auto") -> str:
    """``auto`` -> ``cuda`` when available, else ``cpu``; ``cuda`` without a GPU is an error."""
    import torch

    from pantheon.errors import UsageError

    if device not in ("auto", "cpu", "cuda") and not device.startswith("cuda:"):
        raise UsageError(f"unknown device {device!r}: choose auto, cpu or cuda")
    if device == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    if device.startswith("cuda") and not torch.cuda.is_available():
        raise UsageError("--device cuda: torch sees no CUDA device here (use --device cpu or auto)")
    return device


ENV_CPU_THREADS = "PANTHEON_CPU_THREADS"


def configure_cpu_threads(device: str, threads: Optional[int] = None) -> Optional[int]:
    """On the CPU, run chunks with ``threads`` intra-op threads (default 1, or ``$PANTHEON_CPU_THREADS``).

    The runtime's worker, release and best-effort threads share the cores with torch's
    intra-op pool; a pool as wide as the machine oversubscribes it and made live chunks 2x
    slower than profiled on a 2-core machine. The profiler server and the runtime call this
    with the same default so profiled and live latencies match. No effect on CUDA.
    Returns the thread count set (None on CUDA).
    """
    if not str(device).startswith("cpu"):
        return None
    import os

    import torch

    from pantheon.errors import UsageError

    if threads is None:
        env = os.environ.get(ENV_CPU_THREADS, "").strip()
        try:
            threads = int(env) if env else 1
        except ValueError:
            raise UsageError(f"{ENV_CPU_THREADS}={env!r} is not an integer") from None
    if threads < 1:
        raise UsageError(f"--threads must be at least 1, got {threads}")
    torch.set_num_threads(int(threads))
    return int(threads)


class LoadedTask:
    """The TorchScript chunks of one task on one device.

    ``blocks[b]`` is block ``b``; ``exits[m]`` is the branch of exit index ``m`` (which
    follows block ``profile.exit_blocks[m]``).
    """

    def __init__(self, profile: TaskProfile, blocks: List[Any], exits: List[Any], device: str) -> None:
        self.profile = profile
        self.blocks = blocks
        self.exits = exits
        self.device = device

    @property
    def name(self) -> str:
        return self.profile.name

    def run_exit(self, x: Any, exit_index: int = -1) -> Any:
        """Run blocks ``0..exit`` then the exit branch on ``x`` (a direct, unscheduled call)."""
        m = exit_index % len(self.exits)
        for b in range(self.profile.exit_blocks[m] + 1):
            x = self.blocks[b](x)
        return self.exits[m](x)


def load_torchscript(source: Union[bytes, PathLike], device: Any = "cpu") -> Any:
    """``torch.jit.load`` of a file or its bytes onto ``device``, in eval mode (torch's own errors
    pass through: callers name the artifact)."""
    import io

    import torch

    with warnings.catch_warnings():  # torch >= 2.9 marks TorchScript deprecated; it is our format (and 2.0's)
        warnings.simplefilter("ignore", FutureWarning)
        mod = torch.jit.load(io.BytesIO(source) if isinstance(source, bytes) else str(source), map_location=device)
    return mod.eval()


def torch_error_line(exc: BaseException, limit: int = 200) -> str:
    """The informative line of a torch error: TorchScript wraps the real message (last line)
    under an interpreter traceback, which one line of output must not carry."""
    lines = [ln.strip() for ln in str(exc).strip().splitlines() if ln.strip()]
    text = lines[-1] if lines else exc.__class__.__name__
    if "Traceback of TorchScript" in str(exc) and ":" in text.split(" ", 1)[0]:
        text = text.split(":", 1)[1].strip()  # "RuntimeError: Given groups=1, ..." -> the message
    return " ".join(text.split())[:limit]


def _load_chunk(model_dir: Path, kind: str, idx: int, device: str) -> Any:
    """The chunk ``kind``/``idx`` of ``model_dir`` loaded onto ``device`` (see :func:`chunk_file`)."""
    path = chunk_file(model_dir, kind, idx)
    if path is None:  # read_repository checked it: the folder changed since
        raise RepositoryError(f"{model_dir} lacks {kind}_{idx:02d}.pt")
    return _load_one(path, device)


def _load_one(path: Path, device: str) -> Any:
    try:
        return load_torchscript(path, device)
    except (RuntimeError, ValueError, OSError) as exc:
        msg = torch_error_line(exc)
        raise RepositoryError(f"{path} is not a loadable TorchScript file: {msg}") from exc


def load_modules(repo: Repository, device: str = "cpu", warmup: int = 3,
                 tasks: Optional[Sequence[str]] = None) -> Dict[str, LoadedTask]:
    """Load every (or the named) task's chunks onto ``device`` and warm them up.

    The warm-up runs each exit path ``warmup`` times on a random input of the task's dims,
    which also proves the chunks chain: a shape error there is a :class:`RepositoryError`
    naming the chunk.
    """
    import torch

    out: Dict[str, LoadedTask] = {}
    for name in tasks or repo.names:
        t = repo.task(name)
        mdir = repo.model_dir(name)
        blocks = [_load_chunk(mdir, "block", b, device) for b in range(t.exit_blocks[-1] + 1)]
        exits = [_load_chunk(mdir, "branch", e, device) for e in t.exit_blocks]
        lt = LoadedTask(t, blocks, exits, device)
        warm_up(lt, warmup, torch)
        out[name] = lt
    return out


def warm_up(lt: LoadedTask, warmup: int, torch: Any) -> None:
    t = lt.profile
    with torch.inference_mode():
        for _ in range(max(1, warmup)):
            x = torch.randn(*t.dims, device=lt.device)
            feats = []
            for b, blk in enumerate(lt.blocks):
                try:
                    x = blk(x)
                except RuntimeError as exc:
                    msg = torch_error_line(exc)
                    fed = f"the input dims {list(t.dims)}" if b == 0 else f"block_{b - 1:02d}'s output"
                    raise RepositoryError(
                        f"{lt.name}: block_{b:02d} fails on {fed} (input shape mismatch?): {msg}"
                    ) from exc
                if not isinstance(x, torch.Tensor) and b + 1 < len(lt.blocks):
                    raise RepositoryError(f"{lt.name}: block_{b:02d} returns {type(x).__name__}, not a tensor, so "
                                          f"block_{b + 1:02d} cannot take it (the blocks do not chain)")
                feats.append(x)
            for m, e in enumerate(t.exit_blocks):
                try:
                    lt.exits[m](feats[e])
                except RuntimeError as exc:
                    msg = torch_error_line(exc)
                    raise RepositoryError(f"{lt.name}: branch_{e:02d} fails on block_{e:02d}'s output: {msg}") from exc
        if lt.device.startswith("cuda"):
            torch.cuda.synchronize()
