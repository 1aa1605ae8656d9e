"""Metrics of a run (live or simulated) from its event log: summary, report folder, comparison.

The log is read into one :class:`pantheon.metrics.JobRecord` per job and summarised by
:func:`pantheon.metrics.summarize` (where DMR, relative accuracy, preempted jobs and
response time are defined), the same code the runtime and the simulator summarise with.
Scheduler decision latency = the ``dur`` of ``schedule`` events, by queue length.

This module imports no matplotlib (board images may lack it); :mod:`pantheon.analysis.plots`
draws the PNGs when matplotlib is there.

Example::

    summary = analyze("logs/digits/run1")["summary"]
    summary["dmr"], summary["relative_accuracy"]
    write_report("logs/digits/run1")          # -> <root>/reports/<app>/<run-id>/
    print(compare_markdown(compare(["a/events.jsonl", "b/events.jsonl"])))
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence, Tuple, Union

from pantheon.errors import FormatError
from pantheon.formats.store import Store
from pantheon.metrics import DROPPED, LATE, MET, JobRecord, summarize

PathLike = Union[str, Path]

_warned_matplotlib = False


# -- reading a log ---------------------------------------------------------------------------


def analyze(log: PathLike, workload: Optional[PathLike] = None) -> Dict[str, Any]:
    """Read an event log (file or run folder) and compute its summary and plot series.

    With ``workload`` (the ``.bin`` the run replayed), jobs of the workload that never
    appear in the log (a run stopped early) count as missed ("lost").

    Besides the summary of :func:`summarize` (with ``per_stream``), the summary carries
    ``preemptions_by_task`` (task -> preempt events of its jobs) and
    ``preemptions_per_block`` (task -> {block: count}, nonzero ones; see
    :mod:`pantheon.analysis.views` for which block a preemption is counted at).

    Returns ``{"summary": ..., "start": <start event>, "series": {...}, "path": ...}``;
    ``series["jobs"]`` holds one :class:`~pantheon.metrics.JobRecord` per job and
    ``series["preemption_table"]`` the ``(task, block, preemptions)`` rows.
    """
    from pantheon.analysis.views import preemption_table, task_streams
    from pantheon.formats.events import events_path, read_events

    path = events_path(log)
    check_run_folder(log, path)
    start: Dict[str, Any] = {}
    end: Optional[Dict[str, Any]] = None
    # id -> the record's fields as the events fill them in (a JobRecord once the log is read)
    jobs: Dict[int, Dict[str, Any]] = {}
    last_block: Dict[int, int] = {}  # id -> the last block dispatched (where a preemption is counted)
    decisions: List[Tuple[int, float]] = []
    be: List[Tuple[str, int]] = []
    be_t: List[Tuple[int, str, int]] = []
    telemetry: List[Dict[str, Any]] = []
    preemptions = 0
    pre_at: Dict[Tuple[str, int], int] = {}  # (task, block) -> preempt events
    calibration: Dict[str, float] = {}
    for ev in read_events(path):
        kind = ev["ev"]
        if kind == "dispatch":
            j = jobs.get(ev["job"])
            if j is not None:
                if j["start"] is None:
                    j["start"] = ev["t"]
                if "block" in ev:
                    last_block[ev["job"]] = ev["block"]
        elif kind == "release":
            stream = ev.get("stream")
            jobs[ev["job"]] = {"job": ev["job"], "task": ev["task"], "release": ev["release"],
                               "deadline": ev["deadline"], "stream": stream if isinstance(stream, int) else None,
                               "start": None, "preemptions": 0}
        elif kind == "exit":
            j = jobs.get(ev["job"])
            if j is not None:
                j.update(outcome=MET if ev["met"] else LATE, exit=ev["exit"], accuracy=ev["acc"],
                         relative_accuracy=ev["rel"] if ev["met"] else 0.0, finish=ev["t"])
        elif kind == "drop":
            j = jobs.get(ev["job"])
            if j is not None:
                j.update(outcome=DROPPED, finish=ev["t"])
        elif kind == "preempt":
            preemptions += 1
            j = jobs.get(ev["job"])
            if j is not None:
                j["preemptions"] += 1
                key = (j["task"], last_block.get(ev["job"], -1))
                pre_at[key] = pre_at.get(key, 0) + 1
        elif kind == "schedule":
            decisions.append((ev["n"], float(ev["dur"])))
        elif kind == "be":
            be.append((ev["task"], ev["response"]))
            be_t.append((ev["t"], ev["task"], ev["response"]))
        elif kind == "telemetry":
            telemetry.append(ev)
        elif kind == "calibrate":
            calibration[ev["task"]] = ev["scale"]
        elif kind == "start":
            start = ev
        elif kind == "end":
            end = ev
    if not start:
        raise FormatError(f"{path} has no start event: not a pantheon event log")
    raw_tasks = start.get("tasks")
    tasks: Dict[str, Any] = raw_tasks if isinstance(raw_tasks, dict) else {}
    logged_streams = any(j["stream"] is not None for j in jobs.values())
    ws = None
    if workload is not None:
        from pantheon.formats import read_workloads

        ws = read_workloads(workload)
        check_workload_matches(ws, workload, start, jobs, path)
    names = {j["task"] for j in jobs.values()} | ({w.model_name for w in ws.workload} if ws is not None else set())
    by_task = task_streams(tasks, names)
    records: List[JobRecord] = []
    for _, j in sorted(jobs.items()):
        if j["stream"] is None:
            j["stream"] = by_task[j["task"]]
        records.append(JobRecord(**j))
    lost_unreleased = 0
    if ws is not None:
        seen = set(jobs)
        for i, w in enumerate(ws.workload):
            if i not in seen:
                lost_unreleased += 1
                # a log with streams numbers them as the workload ids do
                stream = int(w.id) if logged_streams else by_task[w.model_name]
                scale = _time_scale(start)  # on the run's clock, as the logged jobs are
                records.append(JobRecord(i, w.model_name, stream, int(w.release * scale), int(w.deadline * scale)))
    meta: Dict[str, Any] = {k: start.get(k) for k in ("policy", "mode", "device", "app", "run_id", "drop_late") if k in start}
    summary = summarize(records, decisions, be, preemptions, meta, per_stream=True)
    summary["complete"] = end is not None
    if lost_unreleased:
        summary["unreleased"] = lost_unreleased
    blocks = {t: len(v["blocks"]) for t, v in tasks.items() if isinstance(v, dict) and isinstance(v.get("blocks"), list)}
    table = preemption_table(pre_at, blocks)
    by_task_pre: Dict[str, int] = {}
    per_block: Dict[str, Dict[str, int]] = {}
    for task, blk, n in table:
        by_task_pre[task] = by_task_pre.get(task, 0) + n
        if n:
            per_block.setdefault(task, {})[str(blk)] = n
    summary["preemptions_by_task"] = by_task_pre
    summary["preemptions_per_block"] = per_block
    stream_pre: Dict[str, int] = {}
    for r in records:
        stream_pre[str(r.stream)] = stream_pre.get(str(r.stream), 0) + r.preemptions
    for key, b in summary["per_stream"].items():
        b["preemptions"] = stream_pre.get(key, 0)
    if calibration:  # measured / profiled latency the scheduler ended up planning with, per task
        summary["calibration"] = {t: round(v, 3) for t, v in sorted(calibration.items())}
    if telemetry:
        try:
            from pantheon.platform.telemetry import summarize as tsum

            summary["telemetry"] = tsum(telemetry)
        except ImportError:
            pass
    series = {
        "jobs": records,
        "decisions": decisions,
        "telemetry": telemetry,
        "best_effort": be_t,
        "preemption_table": table,
    }
    return {"summary": summary, "start": start, "series": series, "path": str(path)}


def check_run_folder(log: PathLike, path: Path) -> None:
    """Verify the run folder holding ``path`` before anything reads it.

    A folder (``log`` itself, or the parent of an ``events.jsonl`` beside a manifest) must
    carry a manifest that lists the log and matches every file; a loose ``.jsonl`` file
    outside any artifact folder is read as it is.
    """
    from pantheon.errors import ManifestError
    from pantheon.formats import store

    folder = path.parent
    if not (Path(log).is_dir() or (folder / store.MANIFEST).is_file()):
        return
    if not (folder / store.MANIFEST).is_file():
        raise ManifestError(
            f"run folder {folder} has no {store.MANIFEST}: the run did not finish or was not written by pantheon "
            f"(pass {path} itself to read the log anyway)"
        )
    manifest = store.verify(folder)
    if path.name not in manifest.files:
        raise ManifestError(f"{path} is not listed in {folder / store.MANIFEST}")


def _time_scale(start: Dict[str, Any]) -> float:
    """The run's ``--time-scale`` (workload times are multiplied by it on the run's clock)."""
    scale = start.get("time_scale", 1.0)
    return float(scale) if isinstance(scale, (int, float)) and scale > 0 else 1.0


def check_workload_matches(ws: Any, workload: PathLike, start: Dict[str, Any], jobs: Dict[int, Dict[str, Any]],
                           path: Path) -> None:
    """Refuse a ``--workload`` other than the one the run replayed: job count, ids, tasks, deadlines."""
    from pantheon.errors import WorkloadError

    n = len(ws.workload)
    declared = start.get("jobs")
    if isinstance(declared, int) and declared != n:
        raise WorkloadError(f"--workload {workload} holds {n} jobs but the run {path} replayed {declared}: "
                            f"not the workload of this run")
    scale = _time_scale(start)
    for jid, j in jobs.items():
        if not 0 <= jid < n:
            raise WorkloadError(f"--workload {workload} holds {n} jobs but the run {path} released job {jid}: "
                                f"not the workload of this run")
        w = ws.workload[jid]
        rel_dl = int(w.deadline * scale) - int(w.release * scale)
        if w.model_name != j["task"] or abs((j["deadline"] - j["release"]) - rel_dl) > 2:
            raise WorkloadError(
                f"--workload {workload}: its job {jid} is {w.model_name} with a {w.deadline - w.release} us "
                f"deadline, the run {path} released {j['task']} with {j['deadline'] - j['release']} us: "
                f"not the workload of this run"
            )


# -- the report folder -----------------------------------------------------------------------


def markdown(summary: Dict[str, Any], title: str = "Pantheon run report", plots: Sequence[str] = ()) -> str:
    """report.md text: overall table, per-task and per-stream tables, exit usage, preemptions, worst DMR
    window, scheduler latency, plots, and the folder's files (``summary["files"]``)."""
    def pct(x: Optional[float]) -> str:
        return "-" if x is None else f"{100 * x:.2f}%"

    def ms(x: Optional[float]) -> str:
        return "-" if x is None else f"{x / 1000:.2f}"

    lines = [f"# {title}", ""]
    meta = ", ".join(f"{k}: {summary[k]}" for k in ("policy", "mode", "device", "app", "run_id") if summary.get(k))
    if meta:
        lines += [meta, ""]
    lines += [
        "| jobs | met | late | dropped | lost | DMR | relative accuracy | preempted jobs | response p50 (ms) | response p99 (ms) |",
        "|---|---|---|---|---|---|---|---|---|---|",
        f"| {summary['jobs']} | {summary['met']} | {summary['late']} | {summary['dropped']} | {summary['lost']} | "
        f"{pct(summary['dmr'])} | {pct(summary['relative_accuracy'])} | {pct(summary['preempted_jobs'])} | "
        f"{ms(summary['response_p50_us'])} | {ms(summary['response_p99_us'])} |",
        "",
        "## Per task",
        "",
        "| task | jobs | DMR | relative accuracy | preempted | p50 (ms) | p99 (ms) | deadline (ms) | exits used (exit: jobs) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for task, b in summary["per_task"].items():
        exits = ", ".join(f"{k}: {v}" for k, v in b["exits"].items()) or "-"
        lines.append(
            f"| {task} | {b['jobs']} | {pct(b['dmr'])} | {pct(b['relative_accuracy'])} | {pct(b['preempted_jobs'])} | "
            f"{ms(b['response_p50_us'])} | {ms(b['response_p99_us'])} | {ms(b['relative_deadline_us'])} | {exits} |"
        )
    if summary.get("per_stream"):
        lines += ["", "## Per stream", "",
                  "| stream | task | jobs | DMR | relative accuracy | preempted | preemptions | p50 (ms) | p99 (ms) "
                  "| deadline (ms) |", "|---|---|---|---|---|---|---|---|---|---|"]
        for k, b in summary["per_stream"].items():
            lines.append(
                f"| {k} | {', '.join(b['tasks'])} | {b['jobs']} | {pct(b['dmr'])} | {pct(b['relative_accuracy'])} | "
                f"{pct(b['preempted_jobs'])} | {b.get('preemptions', '-')} | {ms(b['response_p50_us'])} | "
                f"{ms(b['response_p99_us'])} | {ms(b['relative_deadline_us'])} |"
            )
    if "preemptions_per_block" in summary:
        lines += ["", "## Preemptions", "",
                  f"{summary['preemptions']} preemptions; a job displaced right after block k is counted at k "
                  f"(`preemptions.csv` lists every block).", ""]
        per_block = summary["preemptions_per_block"]
        if per_block:
            lines += ["| task | preemptions | at block (block: count) |", "|---|---|---|"]
            for task, blocks in per_block.items():
                where = ", ".join(f"{b}: {n}" for b, n in blocks.items())
                lines.append(f"| {task} | {summary['preemptions_by_task'].get(task, 0)} | {where} |")
    win = summary.get("dmr_windows")
    if win and win.get("worst"):
        w = win["worst"]
        lines += ["", "## DMR per window", "",
                  f"{win['windows']} windows of {win['window_ms']:g} ms (by release time); the worst, "
                  f"[{w['start_us'] / 1e6:g} s, {w['end_us'] / 1e6:g} s), missed {w['missed']} of {w['jobs']} "
                  f"jobs ({pct(w['dmr'])}). Every window, per task and per stream: `dmr_windows.csv`."]
    sched = summary["scheduler"]
    lines += ["", "## Scheduler decision latency", "",
              f"{sched['decisions']} decisions, p50 {sched['p50_us']} us, p99 {sched['p99_us']} us.", "",
              "| queue length | decisions | p50 (us) | p99 (us) |", "|---|---|---|---|"]
    for q, v in sched["by_queue_length"].items():
        lines.append(f"| {q} | {v['count']} | {v['p50_us']} | {v['p99_us']} |")
    if summary.get("best_effort"):
        lines += ["", "## Best-effort tasks", "", "| task | completed | response p50 (ms) |", "|---|---|---|"]
        for t, v in summary["best_effort"].items():
            lines.append(f"| {t} | {v['jobs']} | {ms(v['response_p50_us'])} |")
    cal = summary.get("calibration")
    if cal:
        lines += ["", "## Latency calibration", "",
                  "Measured / profiled block latency the scheduler planned with at the end of the run:", "",
                  "| task | scale |", "|---|---|"] + [f"| {t} | {v} |" for t, v in cal.items()]
    tel = summary.get("telemetry")
    if tel:
        lines += ["", "## Telemetry", "", "| " + " | ".join(tel) + " |", "|" + "---|" * len(tel),
                  "| " + " | ".join("-" if v is None else str(v) for v in tel.values()) + " |"]
    if plots:
        lines += ["", "## Plots", ""] + [f"![{Path(p).stem}]({p})" for p in plots]
    files = summary.get("files")
    if files:
        lines += ["", "## Files", "", "| file | contents |", "|---|---|"]
        lines += [f"| [{name}]({name}) | {what} |" for name, what in files.items()]
    return "\n".join(lines) + "\n"


# file name -> what it holds, for the report's file list (kept here: plots.py needs matplotlib)
FILES = {
    "report.md": "this report (markdown)",
    "report.json": "the summary (JSON)",
    "trace.csv": "one row per job: stream, task, job, release, deadline, first dispatch, finish, exit, accuracy, "
                 "outcome, response time, preemptions (us)",
    "dmr_windows.csv": "DMR per {window} ms release window: all jobs, each task, each stream",
    "preemptions.csv": "preemptions per task and block",
}
PLOT_FILES = {
    "response_time.png": "response time over release time per task (per stream when a task has several), "
                         "with its deadline",
    "accuracy.png": "relative accuracy over time (rolling mean)",
    "exit_usage.png": "jobs per exit and dropped, per task",
    "scheduler_latency.png": "CDF of the scheduler's decision time by queue length",
    "telemetry.png": "GPU load and power over time",
    "dmr_windows.png": "DMR per release-time window: all jobs, per task, per stream",
}


def write_report(log: PathLike, out: Optional[PathLike] = None, workload: Optional[PathLike] = None,
                 plots: bool = True, force: bool = True, window_ms: float = 1000.0,
                 store: Optional[Store] = None) -> Tuple[Path, Dict[str, Any]]:
    """Write the report folder of ``log`` into ``out``: report.md, report.json, the CSV views, PNG plots.

    CSV views (:mod:`pantheon.analysis.views`): ``trace.csv`` (one row per job),
    ``dmr_windows.csv`` (DMR per ``window_ms`` window of release time, overall, per task,
    per stream), ``preemptions.csv`` (per task and block). ``out`` defaults to
    ``<store>/reports/<app>/<run-id>`` (default store: the one at ``$PANTHEON_DATA``). Written atomically with a manifest. Without
    matplotlib the plots are skipped with one warning. The summary's ``files`` maps each
    file written to what it holds. Returns ``(folder, summary)``.
    """
    from pantheon.analysis import views
    from pantheon.formats import store as store_mod

    window_us = views.check_window_ms(window_ms)
    if out is not None:  # a report replaces a report by default, never a user's file or folder
        store_mod.check_replaceable(out, "report folder")
    data = analyze(log, workload)
    summary = data["summary"]
    traces = data["series"]["jobs"]
    windows = views.window_dmr(traces, window_us)  # refuses too many windows before anything is written
    data["windows"] = windows
    summary["dmr_windows"] = views.window_summary(windows, window_us)
    if out is None:
        app = summary.get("app") or "app"
        run_id = summary.get("run_id") or store_mod.new_run_id()
        out = (store or store_mod.Store()).report_dir(str(app), str(run_id))
    out = Path(out)
    store_mod.check_replaceable(out, "report folder")
    with store_mod.write_artifact(out, kind="report", force=force, inputs={"log": str(data["path"])}) as tmp:
        names: List[str] = []
        if plots:
            names = _plots(data, tmp)
        views.write_trace_csv(tmp / "trace.csv", traces)
        views.write_windows_csv(tmp / "dmr_windows.csv", windows)
        views.write_preemptions_csv(tmp / "preemptions.csv", data["series"]["preemption_table"])
        files = {k: v.format(window=f"{window_us / 1000:g}") for k, v in FILES.items()}
        files.update({n: PLOT_FILES.get(n, "plot") for n in names})
        summary["files"] = files
        (tmp / "report.json").write_text(json.dumps(summary, indent=2, default=str) + "\n")
        (tmp / "report.md").write_text(markdown(summary, plots=names))
    return out, summary


def _plots(data: Dict[str, Any], folder: Path) -> List[str]:
    global _warned_matplotlib
    try:
        from pantheon.analysis import plots as _p

        return _p.draw_all(data, folder)
    except ImportError:
        if not _warned_matplotlib:
            from pantheon import console

            console.warn("matplotlib is not installed: the report has no PNG plots (markdown, JSON and CSV only)")
            _warned_matplotlib = True
        return []


# -- comparison ------------------------------------------------------------------------------


def compare(logs: Sequence[PathLike], workload: Optional[PathLike] = None) -> List[Dict[str, Any]]:
    """One row per log: policy, DMR, relative accuracy, preempted jobs, p99 response (us)."""
    return [compare_row(analyze(log, workload)["summary"], log) for log in logs]


def compare_row(s: Dict[str, Any], log: PathLike) -> Dict[str, Any]:
    """The :func:`compare` row of one run's summary."""
    return {
        "policy": s.get("policy", "?"),
        "mode": s.get("mode", "?"),
        "jobs": s["jobs"],
        "dmr": s["dmr"],
        "relative_accuracy": s["relative_accuracy"],
        "preempted_jobs": s["preempted_jobs"],
        "response_p99_us": s["response_p99_us"],
        "starved": dict(s.get("starved") or {}),
        "log": str(log),
    }


def with_simulated(row: Dict[str, Any], sim: Dict[str, Any]) -> Dict[str, Any]:
    """``row`` plus the simulated DMR and relative accuracy of the same workload (``sim``: a summary)."""
    return {**row, "sim_dmr": sim["dmr"], "sim_relative_accuracy": sim["relative_accuracy"]}


COMPARE_COLUMNS = ("policy", "jobs", "DMR", "relative accuracy", "preempted jobs", "p99 response (ms)")
SIM_COLUMNS = COMPARE_COLUMNS[:3] + ("simulated DMR", "live - simulated") + COMPARE_COLUMNS[3:]


def columns(rows: Sequence[Dict[str, Any]]) -> Sequence[str]:
    """:data:`SIM_COLUMNS` when every row carries a simulated DMR, else :data:`COMPARE_COLUMNS`."""
    return SIM_COLUMNS if rows and all("sim_dmr" in r for r in rows) else COMPARE_COLUMNS


def compare_rows(rows: Sequence[Dict[str, Any]]) -> List[List[str]]:
    """Rows of :func:`compare` as display strings (for ``console.print_table``)."""
    sim = columns(rows) is SIM_COLUMNS
    out = []
    for r in rows:
        p99 = r.get("response_p99_us")
        row = [str(r["policy"]), str(r["jobs"]), f"{100 * r['dmr']:.2f}%"]
        if sim:
            row += [f"{100 * r['sim_dmr']:.2f}%", f"{100 * (r['dmr'] - r['sim_dmr']):+.2f} pt"]
        row += [f"{100 * r['relative_accuracy']:.2f}%", f"{100 * r['preempted_jobs']:.2f}%",
                "-" if p99 is None else f"{p99 / 1000:.2f}"]
        out.append(row)
    return out


def compare_markdown(rows: Sequence[Dict[str, Any]]) -> str:
    """A markdown table of :func:`compare` rows."""
    cols = columns(rows)
    lines = ["| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
    lines += ["| " + " | ".join(r) + " |" for r in compare_rows(rows)]
    return "\n".join(lines) + "\n"
