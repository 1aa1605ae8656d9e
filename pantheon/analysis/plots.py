"""PNG plots of a run (matplotlib, imported here only; the report works without it).

:func:`draw_all` takes :func:`pantheon.analysis.report.analyze`'s result and writes:

* ``response_time.png``: response time over release time, one panel per task (per stream
  when a task runs on several streams), with its relative deadline as a line and
  missed/dropped jobs marked;
* ``accuracy.png``: relative accuracy over time (rolling mean over 50 jobs, misses = 0);
* ``exit_usage.png``: jobs per exit (block id) for every task, drops as their own bar;
* ``scheduler_latency.png``: CDF of the scheduler's decision time, per queue length group;
* ``telemetry.png`` (when the log has telemetry lines): GPU load and power over time;
* ``dmr_windows.png``: DMR per release-time window, all jobs and each task, and each
  stream in a second panel when the streams are not simply one per task (the windows
  ``write_report`` put in ``data["windows"]``, else 1 s windows).

Example::

    draw_all(analyze("logs/run1"), Path("reports/run1"))   # ['response_time.png', ...]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Dict, List, Tuple

import matplotlib

matplotlib.use("Agg")  # files only, no display
import matplotlib.pyplot as plt

from pantheon.metrics import LATE, MET


def draw_all(data: Dict[str, Any], folder: Path) -> List[str]:
    """Write every plot that has data into ``folder``; return the file names."""
    out = []
    for fn in (response_time, accuracy_over_time, exit_usage, scheduler_latency, telemetry, dmr_windows):
        name = fn(data, Path(folder))
        if name:
            out.append(name)
    return out


def save_figure(fig: Any, folder: Path, name: str) -> str:
    """Write ``fig`` as ``folder/name`` and release it; the file name, for the report."""
    fig.tight_layout()
    fig.savefig(folder / name, dpi=110)
    plt.close(fig)
    return name


def _panels(data: Dict[str, Any]) -> Tuple[str, List[Tuple[str, List[Any]]]]:
    """Released jobs per task, or per stream when a task runs on several streams: (``task``|``stream``, panels)."""
    rows = data["series"]["jobs"]
    pairs = {(r.stream, r.task) for r in rows}
    if len(pairs) > len({task for _, task in pairs}):
        by_stream: Dict[Tuple[int, str], List[Any]] = {}
        for r in rows:
            by_stream.setdefault((r.stream, r.task), []).append(r)
        return "stream", [(f"stream {s} ({task})", v) for (s, task), v in sorted(by_stream.items())]
    by: Dict[str, List[Any]] = {}
    for r in rows:
        by.setdefault(r.task, []).append(r)
    return "task", sorted(by.items())


def response_time(data: Dict[str, Any], folder: Path) -> str:
    scope, panels = _panels(data)
    if not panels:
        return ""
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 2.4 * len(panels)), sharex=True, squeeze=False)
    for ax, (task, rows) in zip(axes[:, 0], panels):
        ok = [(r.release / 1e6, r.response / 1e3) for r in rows if r.outcome == MET]
        late = [(r.release / 1e6, r.response / 1e3) for r in rows if r.outcome == LATE]
        dropped = [r.release / 1e6 for r in rows if not r.finished]
        if ok:
            ax.plot(*zip(*ok), ".", ms=2, color="tab:blue", label="met")
        if late:
            ax.plot(*zip(*late), "x", ms=4, color="tab:red", label="late")
        deadlines = sorted((r.release / 1e6, r.relative_deadline / 1e3) for r in rows)
        ax.plot(*zip(*deadlines), "-", lw=1, color="black", label="deadline")
        if dropped:
            ymax = max([d for _, d in deadlines] + [y for _, y in ok + late])
            ax.plot(dropped, [ymax * 1.05] * len(dropped), "v", ms=4, color="tab:orange", label="dropped")
        ax.set_ylabel("ms")
        ax.set_title(task, fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("release time (s)")
    fig.suptitle(f"Response time per {scope}")
    return save_figure(fig, folder, "response_time.png")


def accuracy_over_time(data: Dict[str, Any], folder: Path, window: int = 50) -> str:
    rows = sorted(data["series"]["jobs"], key=lambda r: r.release)
    if not rows:
        return ""
    xs = [r.release / 1e6 for r in rows]
    vals = [r.relative_accuracy if r.outcome == MET else 0.0 for r in rows]
    roll, acc = [], 0.0
    for i, v in enumerate(vals):
        acc += v
        if i >= window:
            acc -= vals[i - window]
        roll.append(acc / min(i + 1, window))
    fig, ax = plt.subplots(figsize=(9, 3))
    ax.plot(xs, roll, lw=1.2)
    ax.set_ylim(0, 1.05)
    ax.set_xlabel("release time (s)")
    ax.set_ylabel("relative accuracy")
    ax.set_title(f"Relative accuracy (rolling mean over {window} jobs; a missed job counts 0)")
    return save_figure(fig, folder, "accuracy.png")


def exit_usage(data: Dict[str, Any], folder: Path) -> str:
    per = data["summary"]["per_task"]
    if not per:
        return ""
    fig, axes = plt.subplots(1, len(per), figsize=(3.2 * len(per), 3), squeeze=False)
    for ax, (task, b) in zip(axes[0], per.items()):
        labels = [f"exit {k}" for k in b["exits"]] + ["dropped"]
        counts = list(b["exits"].values()) + [b["dropped"] + b["lost"]]
        ax.bar(range(len(counts)), counts, color=["tab:blue"] * (len(counts) - 1) + ["tab:red"])
        ax.set_xticks(range(len(counts)))
        ax.set_xticklabels(labels, rotation=45, fontsize=7)
        ax.set_title(task, fontsize=9)
    axes[0, 0].set_ylabel("jobs")
    fig.suptitle("Exit usage")
    return save_figure(fig, folder, "exit_usage.png")


def scheduler_latency(data: Dict[str, Any], folder: Path) -> str:
    decisions = data["series"]["decisions"]
    if not decisions:
        return ""
    groups: Dict[str, List[float]] = {}
    for n, d in decisions:
        key = "1-4" if n <= 4 else ("5-8" if n <= 8 else "9+")
        groups.setdefault(key, []).append(d)
    groups["all"] = [d for _, d in decisions]
    fig, ax = plt.subplots(figsize=(6, 3.5))
    for key in ("all", "1-4", "5-8", "9+"):
        v = sorted(groups.get(key, []))
        if v:
            ax.plot(v, [(i + 1) / len(v) for i in range(len(v))], label=f"{key} queued ({len(v)})")
    ax.set_xscale("log")
    ax.set_xlabel("decision time (us)")
    ax.set_ylabel("CDF")
    ax.set_title("Scheduler decision latency")
    ax.legend(fontsize=8)
    return save_figure(fig, folder, "scheduler_latency.png")


def telemetry(data: Dict[str, Any], folder: Path) -> str:
    rows = data["series"]["telemetry"]
    keys = [k for k in ("gpu_load_pct", "power_mw", "cpu_pct") if any(k in r for r in rows)]
    if not rows or not keys:
        return ""
    fig, axes = plt.subplots(len(keys), 1, figsize=(9, 2.2 * len(keys)), sharex=True, squeeze=False)
    labels = {"gpu_load_pct": "GPU load (%)", "power_mw": "power (mW)", "cpu_pct": "CPU (%)"}
    for ax, k in zip(axes[:, 0], keys):
        pts = [(r["t"] / 1e6, r[k]) for r in rows if isinstance(r.get(k), (int, float))]
        ax.plot(*zip(*pts), lw=1)
        ax.set_ylabel(labels[k], fontsize=8)
    axes[-1, 0].set_xlabel("time since start (s)")
    fig.suptitle("Telemetry")
    return save_figure(fig, folder, "telemetry.png")


def dmr_windows(data: Dict[str, Any], folder: Path) -> str:
    from pantheon.analysis.views import DEFAULT_WINDOW_MS, window_dmr

    windows = data.get("windows")
    if windows is None:
        windows = window_dmr(data["series"].get("jobs", []), int(DEFAULT_WINDOW_MS * 1000))
    if not windows:
        return ""
    series: Dict[str, Dict[str, List[Any]]] = {"all": {}, "task": {}, "stream": {}}
    for w in windows:
        pts = series[w.scope].setdefault(w.name or "all jobs", [])
        pts.append((w.start_us / 1e6, float("nan") if w.dmr is None else 100 * w.dmr))
    traces = data["series"].get("jobs", [])
    tasks = {t.task for t in traces}
    stream_tasks: Dict[str, set] = {}
    for t in traces:
        stream_tasks.setdefault(str(t.stream), set()).add(t.task)
    panels = ["task"] + (["stream"] if len(series["stream"]) != len(tasks) else [])
    fig, axes = plt.subplots(len(panels), 1, figsize=(9, 3 * len(panels)), sharex=True, squeeze=False)
    width = (windows[0].end_us - windows[0].start_us) / 1e6
    for ax, scope in zip(axes[:, 0], panels):
        for name, pts in list(series["all"].items()) + list(series[scope].items()):  # in window_dmr's order
            xs, ys = zip(*(pts + [(pts[-1][0] + width, pts[-1][1])]))  # the last window drawn to its end
            label = (name if scope == "task" or name == "all jobs"
                     else f"stream {name} ({', '.join(sorted(stream_tasks.get(name, ())))})")
            ax.step(xs, ys, where="post", lw=2.0 if name == "all jobs" else 1.0, label=label,
                    color="black" if name == "all jobs" else None)
        ax.set_ylabel("DMR (%)")
        ax.set_ylim(-2, 102)
        ax.set_title(f"per {scope}", fontsize=9)
        ax.legend(fontsize=7, loc="upper right")
    axes[-1, 0].set_xlabel("release time (s)")
    fig.suptitle(f"Deadline miss rate per {width * 1000:g} ms window")
    return save_figure(fig, folder, "dmr_windows.png")
