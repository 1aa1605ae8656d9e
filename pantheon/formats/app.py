"""Application files: the tasks of one deployment, their limits, workload and best-effort load.

An application is a YAML file under ``deploy/apps/`` (see CONTRIBUTING.md for the
schema). The reference tools' settings JSON
(``{"<task>": {"max_delta_accuracy": 0.01}, "max_memory": 25}``) and workload spec
JSON (``{"workloads": [{"model_name", "deadline", "period", "start", "end",
"shape", "lambda"?}]}``, times in us) are accepted too.

Example::

    app = load_app("digits")          # deploy/apps/digits.yaml
    app.tasks["digits_resnet18"].max_delta_accuracy
    [s.task for s in app.streams]
"""

from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Dict, List, Optional, Union

import yaml

from pantheon.errors import FormatError, UsageError

if TYPE_CHECKING:
    from pantheon.formats.store import Store

ENV_APPS = "PANTHEON_APPS"

#: The reference artifact's application names -> ours (``load_app("indoor_smart_traffic")``
#: reads ``traffic.yaml``); a file of the reference name found first still wins.
ALIASES = {"indoor_smart_traffic": "traffic"}


@dataclass
class TaskLimits:
    name: str
    max_delta_accuracy: float = 0.01


@dataclass
class Stream:
    """One periodic (or Poisson, with ``lam``) source of jobs of ``task``.

    Times are in microseconds. ``deadline_x``/``period_x``, when set, are multiples
    of the task's full-model latency and are resolved against a repository.
    """

    task: str
    period_us: Optional[float] = None
    deadline_us: Optional[float] = None
    start_us: float = 0.0
    end_us: Optional[float] = None
    lam: Optional[float] = None
    shape: Optional[List[int]] = None
    deadline_x: Optional[float] = None
    period_x: Optional[float] = None


@dataclass
class BestEffort:
    task: str
    rate: float  # jobs per second


@dataclass
class App:
    name: str
    tasks: Dict[str, TaskLimits]
    max_memory: Optional[float] = None  # MB
    streams: List[Stream] = field(default_factory=list)
    duration_s: float = 10.0
    jitter_us: float = 1000.0
    seed: int = 0
    best_effort: List[BestEffort] = field(default_factory=list)
    description: str = ""
    source: Optional[Path] = None
    raw: Dict[str, Any] = field(default_factory=dict)


def packaged_apps_dir() -> Path:
    """The app files shipped inside the package (``pantheon/deploy/data/apps``).

    Found through :mod:`importlib.resources` so that it works from a wheel as from a
    checkout (where the folder is a symlink to ``deploy/apps``). Only the top package is
    imported, not :mod:`pantheon.deploy`.
    """
    try:
        from importlib.resources import files
    except ImportError:  # Python 3.8 (board images): a plain file-system install
        return Path(__file__).resolve().parents[1] / "deploy" / "data" / "apps"
    res = files("pantheon") / "deploy" / "data" / "apps"
    return res if isinstance(res, Path) else Path(str(res))


def app_search_dirs() -> List[Path]:
    """Where app names are looked up: ``$PANTHEON_APPS``, ``./deploy/apps``, the package's apps."""
    dirs: List[Path] = []
    env = os.environ.get(ENV_APPS)
    if env:
        dirs.extend(Path(p) for p in env.split(os.pathsep) if p)
    dirs.append(Path.cwd() / "deploy" / "apps")
    dirs.append(packaged_apps_dir())
    return dirs


def resolve_app_path(name_or_path: Union[str, Path], store: Optional[Store] = None) -> Path:
    """A path as given, else ``<name>.yaml`` in the app search directories, else the copy in
    ``store`` (default: the store at ``$PANTHEON_DATA``)."""
    p = Path(name_or_path)
    if p.suffix in (".yaml", ".yml", ".json") or os.sep in str(name_or_path):
        if not p.is_file():
            raise UsageError(f"application file {p} does not exist")
        return p
    names = [str(name_or_path)] + ([ALIASES[str(name_or_path)]] if str(name_or_path) in ALIASES else [])
    for name in names:
        for d in app_search_dirs():
            for ext in (".yaml", ".yml"):
                cand = d / f"{name}{ext}"
                if cand.is_file():
                    return cand
    from pantheon.formats.store import Store

    cand = (store or Store()).app_dir(str(name_or_path)) / "app.yaml"
    if cand.is_file():
        return cand
    known = sorted({f.stem for d in app_search_dirs() if d.is_dir() for f in d.glob("*.y*ml")})
    raise UsageError(
        f"unknown application {name_or_path!r}; known: {', '.join(known) or 'none'} "
        f"(or pass a path to a .yaml/.json file)"
    )


def _num(value: Any, what: str, where: str, *, positive: bool = False, allow_zero: bool = True) -> float:
    try:
        x = float(value)
    except (TypeError, ValueError):
        raise FormatError(f"{where}: {what} must be a number, got {value!r}") from None
    if math.isnan(x) or math.isinf(x):
        raise FormatError(f"{where}: {what} must be finite, got {value!r}")
    if positive and (x < 0 or (x == 0 and not allow_zero)):
        raise FormatError(f"{where}: {what} must be positive, got {value!r}")
    return x


def _seed(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise FormatError(f"{where}: workload seed must be a non-negative integer, got {value!r}")
    return value


def _shape(value: Any, where: str) -> List[int]:
    try:
        dims = [int(x) for x in value] if isinstance(value, (list, tuple)) else None
    except (TypeError, ValueError):
        dims = None
    if not dims or any(d <= 0 for d in dims):
        raise FormatError(f"{where}: shape must be a list of positive integers such as [1, 3, 32, 32], got {value!r}")
    return dims


def _limits(name: str, spec: Any, where: str) -> TaskLimits:
    spec = spec or {}
    if not isinstance(spec, dict):
        raise FormatError(f"{where}: task {name!r} must map to a dict of limits, got {spec!r}")
    delta = _num(spec.get("max_delta_accuracy", 0.01), f"max_delta_accuracy of {name}", where)
    if not 0.0 <= delta <= 1.0:
        raise FormatError(f"{where}: max_delta_accuracy of {name} must lie in [0, 1], got {delta}")
    return TaskLimits(name=name, max_delta_accuracy=delta)


def _ms(d: Dict[str, Any], key: str, where: str) -> Optional[float]:
    if d.get(f"{key}_ms") is not None:
        return _num(d[f"{key}_ms"], f"{key}_ms", where, positive=True) * 1000.0
    if d.get(f"{key}_us") is not None:
        return _num(d[f"{key}_us"], f"{key}_us", where, positive=True)
    return None


def _stream(d: Any, where: str) -> Stream:
    if not isinstance(d, dict) or "task" not in d:
        raise FormatError(f"{where}: every stream needs a 'task', got {d!r}")
    s = Stream(task=str(d["task"]))
    s.period_us = _ms(d, "period", where)
    s.deadline_us = _ms(d, "deadline", where)
    s.start_us = _ms(d, "start", where) or 0.0
    s.end_us = _ms(d, "end", where)
    if d.get("lambda") is not None:
        s.lam = _num(d["lambda"], "lambda", where, positive=True, allow_zero=False)
    if d.get("shape") is not None:
        s.shape = _shape(d["shape"], where)
    if d.get("deadline_x") is not None:
        s.deadline_x = _num(d["deadline_x"], "deadline_x", where, positive=True, allow_zero=False)
    if d.get("period_x") is not None:
        s.period_x = _num(d["period_x"], "period_x", where, positive=True, allow_zero=False)
    if s.period_us is None and s.period_x is None:
        raise FormatError(f"{where}: stream of {s.task} needs period_ms (or period_x)")
    if s.deadline_us is None and s.deadline_x is None:
        raise FormatError(f"{where}: stream of {s.task} needs deadline_ms (or deadline_x)")
    return s


def parse_app(data: Any, where: str = "<app>", name: Optional[str] = None) -> App:
    """Build an :class:`App` from parsed YAML/JSON (our schema or the reference JSONs)."""
    if not isinstance(data, dict):
        raise FormatError(f"{where}: expected a mapping at the top level")
    # Reference workload spec JSON.
    if "workloads" in data and "tasks" not in data:
        streams = []
        if not isinstance(data["workloads"], list):
            raise FormatError(f"{where}: 'workloads' must be a list of streams")
        for w in data["workloads"]:
            if not isinstance(w, dict) or "model_name" not in w:
                raise FormatError(f"{where}: every workload needs model_name")
            st = Stream(
                task=str(w["model_name"]),
                period_us=_num(w.get("period"), "period", where, positive=True, allow_zero=False),
                deadline_us=_num(w.get("deadline"), "deadline", where, positive=True, allow_zero=False),
                start_us=_num(w.get("start", 0), "start", where, positive=True),
                end_us=_num(w["end"], "end", where, positive=True) if w.get("end") is not None else None,
                lam=_num(w["lambda"], "lambda", where, positive=True, allow_zero=False)
                if w.get("lambda") is not None
                else None,
                shape=_shape(w["shape"], where) if w.get("shape") else None,
            )
            streams.append(st)
        tasks = {s.task: TaskLimits(s.task) for s in streams}
        ends = [s.end_us for s in streams if s.end_us]
        return App(
            name=name or Path(where).stem,
            tasks=tasks,
            streams=streams,
            duration_s=(max(ends) / 1e6) if ends else 10.0,
            source=Path(where),
            raw=dict(data),
        )
    # Reference settings JSON: {"<task>": {...}, "max_memory": MB}.
    if "tasks" not in data:
        tasks = {}
        for k, v in data.items():
            if k == "max_memory":
                continue
            tasks[str(k)] = _limits(str(k), v, where)
        if not tasks:
            raise FormatError(f"{where}: names no tasks")
        mm = data.get("max_memory")
        return App(
            name=name or Path(where).stem,
            tasks=tasks,
            max_memory=_num(mm, "max_memory", where, positive=True, allow_zero=False) if mm is not None else None,
            source=Path(where),
            raw=dict(data),
        )
    tasks_raw = data.get("tasks")
    if isinstance(tasks_raw, list):
        tasks_raw = {str(t): {} for t in tasks_raw}
    if not isinstance(tasks_raw, dict) or not tasks_raw:
        raise FormatError(f"{where}: 'tasks' must map task names to their limits")
    tasks = {str(k): _limits(str(k), v, where) for k, v in tasks_raw.items()}
    wl = data.get("workload") or {}
    if not isinstance(wl, dict):
        raise FormatError(f"{where}: 'workload' must be a mapping")
    if not isinstance(wl.get("streams") or [], list):
        raise FormatError(f"{where}: 'workload.streams' must be a list of streams")
    if not isinstance(data.get("best_effort") or [], list):
        raise FormatError(f"{where}: 'best_effort' must be a list of {{task, rate}} entries")
    streams = [_stream(s, where) for s in (wl.get("streams") or [])]
    for s in streams:
        if s.task not in tasks:
            raise FormatError(f"{where}: stream task {s.task!r} is not listed under tasks")
    be = []
    for b in data.get("best_effort") or []:
        if not isinstance(b, dict) or "task" not in b:
            raise FormatError(f"{where}: every best_effort entry needs task and rate")
        be.append(BestEffort(task=str(b["task"]), rate=_num(b.get("rate", 0), "rate", where, positive=True)))
    mm = data.get("max_memory")
    return App(
        name=str(data.get("name") or name or Path(where).stem),
        tasks=tasks,
        max_memory=_num(mm, "max_memory", where, positive=True, allow_zero=False) if mm is not None else None,
        streams=streams,
        duration_s=_num(wl.get("duration_s", 10.0), "duration_s", where, positive=True, allow_zero=False),
        jitter_us=_num(wl.get("jitter_us", 1000.0), "jitter_us", where, positive=True),
        seed=_seed(wl.get("seed", 0), where),
        best_effort=be,
        description=str(data.get("description", "")),
        source=Path(where),
        raw=dict(data),
    )


def load_app(name_or_path: Union[str, Path], store: Optional[Store] = None) -> App:
    """Load an application by name (``deploy/apps/<name>.yaml``, else ``store``'s copy) or path (YAML or JSON)."""
    path = resolve_app_path(name_or_path, store)
    try:
        text = path.read_text()
        data = json.loads(text) if path.suffix == ".json" else yaml.safe_load(text)
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read {path}: {exc}") from exc
    except (json.JSONDecodeError, yaml.YAMLError) as exc:
        msg = " ".join(str(exc).split())
        raise FormatError(f"{path} is not valid {'JSON' if path.suffix == '.json' else 'YAML'}: {msg}") from exc
    return parse_app(data, where=str(path), name=path.stem)
