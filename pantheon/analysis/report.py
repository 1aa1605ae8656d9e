"""Metrics of a run (live or simulated) from its event log: summary, report folder, comparison.

Definitions (PANTHEON.md):

* **DMR** = jobs that did not finish by their deadline (finished late, dropped, or never
  finished) / jobs released.
* **Relative accuracy** = accuracy of the exit a job used / accuracy of its task's
  original exit, counted 0 for a job that missed its deadline; averaged over jobs.
* **Preempted jobs** = fraction of jobs displaced from the queue head at least once
  after they started.
* Response time = finish - (scheduled) release, over finished jobs.
* Scheduler decision latency = the ``dur`` of ``schedule`` events, by queue length.

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
import math
from pathlib import Path
from typing import Any, Dict, Iterable, List, Mapping, Optional, Sequence, Tuple, Union

from pantheon.errors import FormatError

PathLike = Union[str, Path]

# One finished/dropped job: (job, task, release, deadline, status, exit_block, acc, rel, response, preempted)
# status: "met" | "late" | "dropped" | "lost" (released, never finished)
Record = Tuple[int, str, int, int, str, int, float, float, int, bool]

_warned_matplotlib = False


def percentile(values: Sequence[float], q: float) -> Optional[float]:
    """Linear-interpolated percentile ``q`` (0..100) of ``values``; None when empty."""
    if not values:
        return None
    v = sorted(values)
    if len(v) == 1:
        return float(v[0])
    pos = (len(v) - 1) * q / 100.0
    lo = int(math.floor(pos))
    hi = min(lo + 1, len(v) - 1)
    return float(v[lo] + (v[hi] - v[lo]) * (pos - lo))


def _r(x: Optional[float], nd: int = 4) -> Optional[float]:
    return None if x is None else round(float(x), nd)


def summarize(
    records: Iterable[Record],
    decisions: Sequence[Tuple[int, float]] = (),
    best_effort: Sequence[Tuple[str, int]] = (),
    preemptions: int = 0,
    meta: Optional[Dict[str, Any]] = None,
    streams: Optional[Mapping[int, int]] = None,
) -> Dict[str, Any]:
    """The summary dict of a run from per-job records (shared by runtime, simulator, report).

    Top-level keys: ``jobs, met, late, dropped, lost, dmr, relative_accuracy, accuracy,
    preempted_jobs, preemptions, response_p50_us, response_p99_us, scheduler, per_task,
    best_effort`` plus ``meta``'s items (policy, mode...). With ``streams`` (job id ->
    stream), also ``per_stream``: the per-task figures of each stream's jobs, with the
    ``tasks`` it ran.
    """
    recs = list(records)
    n = len(recs)
    by_task: Dict[str, List[Record]] = {}
    for r in recs:
        by_task.setdefault(r[1], []).append(r)

    def block(rs: List[Record]) -> Dict[str, Any]:
        k = len(rs)
        met = late = dropped = lost = pre = 0
        rel_sum = acc_sum = 0.0
        resp: List[int] = []
        exits: Dict[int, int] = {}
        for r in rs:
            status = r[4]
            if status == "met":
                met += 1
                rel_sum += r[7]
                acc_sum += r[6]
            elif status == "late":
                late += 1
            elif status == "dropped":
                dropped += 1
            else:
                lost += 1
            if status == "met" or status == "late":
                resp.append(r[8])
                exits[r[5]] = exits.get(r[5], 0) + 1
            if r[9]:
                pre += 1
        return {
            "jobs": k,
            "met": met,
            "late": late,
            "dropped": dropped,
            "lost": lost,
            "dmr": _r((k - met) / k if k else 0.0, 6),
            "relative_accuracy": _r(rel_sum / k if k else 0.0, 6),
            "accuracy": _r(acc_sum / k if k else 0.0, 6),
            "preempted_jobs": _r(pre / k if k else 0.0, 6),
            "response_p50_us": _r(percentile(resp, 50), 1),
            "response_p99_us": _r(percentile(resp, 99), 1),
            "exits": {str(e): c for e, c in sorted(exits.items())},
            "relative_deadline_us": _r(percentile([r[3] - r[2] for r in rs], 50), 1),
        }

    out: Dict[str, Any] = dict(meta or {})
    top = block(recs)
    top.pop("relative_deadline_us")
    out.update(top)
    out["preemptions"] = int(preemptions)
    out["per_task"] = {t: block(rs) for t, rs in sorted(by_task.items())}
    if streams is not None:
        by_stream: Dict[int, List[Record]] = {}
        for r in recs:
            by_stream.setdefault(int(streams[r[0]]), []).append(r)
        out["per_stream"] = {
            str(k): {"tasks": sorted({r[1] for r in rs}), **block(rs)} for k, rs in sorted(by_stream.items())
        }
    out["scheduler"] = _decisions(decisions)
    be: Dict[str, List[int]] = {}
    for task, resp in best_effort:
        be.setdefault(task, []).append(resp)
    out["best_effort"] = {
        t: {"jobs": len(v), "response_p50_us": _r(percentile(v, 50), 1)} for t, v in sorted(be.items())
    }
    out["jobs_total"] = n
    return out


def _decisions(decisions: Sequence[Tuple[int, float]]) -> Dict[str, Any]:
    durs = [d for _, d in decisions]
    by: Dict[int, List[float]] = {}
    for q, d in decisions:
        by.setdefault(int(q), []).append(d)
    return {
        "decisions": len(durs),
        "p50_us": _r(percentile(durs, 50), 2),
        "p99_us": _r(percentile(durs, 99), 2),
        "by_queue_length": {
            str(q): {"count": len(v), "p50_us": _r(percentile(v, 50), 2), "p99_us": _r(percentile(v, 99), 2)}
            for q, v in sorted(by.items())
        },
    }


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
    ``series["trace"]`` holds one :class:`~pantheon.analysis.views.JobTrace` per job and
    ``series["preemption_table"]`` the ``(task, block, preemptions)`` rows.
    """
    from pantheon.analysis.views import OUTCOME, JobTrace, preemption_table, task_streams
    from pantheon.online.events import events_path, read_events

    path = events_path(log)
    check_run_folder(log, path)
    start: Dict[str, Any] = {}
    end: Optional[Dict[str, Any]] = None
    # id -> [task, release, deadline, status, exit, acc, rel, resp, preempted, t_fin,
    #        stream (None: not logged), t_first_dispatch, preempt events, last dispatched block]
    jobs: Dict[int, List[Any]] = {}
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
                if j[11] is None:
                    j[11] = ev["t"]
                if "block" in ev:
                    j[13] = ev["block"]
        elif kind == "release":
            stream = ev.get("stream")
            jobs[ev["job"]] = [ev["task"], ev["release"], ev["deadline"], "lost", -1, 0.0, 0.0, 0, False, None,
                               stream if isinstance(stream, int) else None, None, 0, -1]
        elif kind == "exit":
            j = jobs.get(ev["job"])
            if j is not None:
                j[3] = "met" if ev["met"] else "late"
                j[4], j[5], j[6], j[7], j[9] = ev["exit"], ev["acc"], ev["rel"], ev["response"], ev["t"]
        elif kind == "drop":
            j = jobs.get(ev["job"])
            if j is not None:
                j[3] = "dropped"
                j[9] = ev["t"]
        elif kind == "preempt":
            preemptions += 1
            j = jobs.get(ev["job"])
            if j is not None:
                j[8] = True
                j[12] += 1
                key = (j[0], j[13])
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
    tasks = start.get("tasks") if isinstance(start.get("tasks"), dict) else {}
    logged_streams = any(j[10] is not None for j in jobs.values())
    ws = None
    if workload is not None:
        from pantheon.formats import read_workloads

        ws = read_workloads(workload)
        check_workload_matches(ws, workload, start, jobs, path)
    names = {j[0] for j in jobs.values()} | ({w.model_name for w in ws.workload} if ws is not None else set())
    by_task = task_streams(tasks, names)
    records: List[Record] = []
    traces: List[JobTrace] = []
    streams: Dict[int, int] = {}
    for jid, j in sorted(jobs.items()):
        records.append((jid, j[0], j[1], j[2], j[3], j[4], j[5], j[6], j[7], j[8]))
        stream = streams[jid] = j[10] if j[10] is not None else by_task[j[0]]
        done = j[3] in ("met", "late")
        traces.append(JobTrace(stream, j[0], jid, j[1], j[2], j[11], j[9] if done else None, j[4] if done else None,
                               j[5] if done else None, OUTCOME[j[3]], j[7] if done else None, j[12]))
    lost_unreleased = 0
    if ws is not None:
        seen = set(jobs)
        for i, w in enumerate(ws.workload):
            if i not in seen:
                lost_unreleased += 1
                # a log with streams numbers them as the workload ids do
                stream = streams[i] = int(w.id) if logged_streams else by_task[w.model_name]
                records.append((i, w.model_name, int(w.release), int(w.deadline), "lost", -1, 0.0, 0.0, 0, False))
                traces.append(JobTrace(stream, w.model_name, i, int(w.release), int(w.deadline), None, None, None,
                                       None, "lost", None, 0))
    meta = {k: start.get(k) for k in ("policy", "mode", "device", "app", "run_id", "drop_late") if k in start}
    summary = summarize(records, decisions, be, preemptions, meta, streams=streams)
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
    for tr in traces:
        stream_pre[str(tr.stream)] = stream_pre.get(str(tr.stream), 0) + tr.preemptions
    for key, b in summary["per_stream"].items():
        b["preemptions"] = stream_pre.get(key, 0)
    if calibration:  # measured / profiled latency the scheduler ended up planning with, per task
        summary["calibration"] = {t: round(v, 3) for t, v in sorted(calibration.items())}
    if telemetry:
        try:
            from pantheon.online.telemetry import summarize as tsum

            summary["telemetry"] = tsum(telemetry)
        except ImportError:
            pass
    series = {
        "jobs": [(jid, j[0], j[1], j[2], j[3], j[4], j[6], j[7], j[9]) for jid, j in sorted(jobs.items())],
        "decisions": decisions,
        "telemetry": telemetry,
        "best_effort": be_t,
        "trace": traces,
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


def check_workload_matches(ws: Any, workload: PathLike, start: Dict[str, Any], jobs: Dict[int, List[Any]],
                           path: Path) -> None:
    """Refuse a ``--workload`` other than the one the run replayed: job count, ids, tasks, deadlines."""
    from pantheon.errors import WorkloadError

    n = len(ws.workload)
    declared = start.get("jobs")
    if isinstance(declared, int) and declared != n:
        raise WorkloadError(f"--workload {workload} holds {n} jobs but the run {path} replayed {declared}: "
                            f"not the workload of this run")
    scale = start.get("time_scale", 1.0)
    scale = float(scale) if isinstance(scale, (int, float)) and scale > 0 else 1.0
    for jid, j in jobs.items():
        if not 0 <= jid < n:
            raise WorkloadError(f"--workload {workload} holds {n} jobs but the run {path} released job {jid}: "
                                f"not the workload of this run")
        w = ws.workload[jid]
        rel_dl = int(w.deadline * scale) - int(w.release * scale)
        if w.model_name != j[0] or abs((j[2] - j[1]) - rel_dl) > 2:
            raise WorkloadError(
                f"--workload {workload}: its job {jid} is {w.model_name} with a {w.deadline - w.release} us "
                f"deadline, the run {path} released {j[0]} with {j[2] - j[1]} us: not the workload of this run"
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
                 plots: bool = True, force: bool = True,
                 window_ms: float = 1000.0) -> Tuple[Path, Dict[str, Any]]:
    """Write the report folder of ``log`` into ``out``: report.md, report.json, the CSV views, PNG plots.

    CSV views (:mod:`pantheon.analysis.views`): ``trace.csv`` (one row per job),
    ``dmr_windows.csv`` (DMR per ``window_ms`` window of release time, overall, per task,
    per stream), ``preemptions.csv`` (per task and block). ``out`` defaults to
    ``<root>/reports/<app>/<run-id>``. Written atomically with a manifest. Without
    matplotlib the plots are skipped with one warning. The summary's ``files`` maps each
    file written to what it holds. Returns ``(folder, summary)``.
    """
    from pantheon.analysis import views
    from pantheon.formats import store

    window_us = views.check_window_ms(window_ms)
    if out is not None:  # a report replaces a report by default, never a user's file or folder
        store.check_replaceable(out, "report folder")
    data = analyze(log, workload)
    summary = data["summary"]
    traces = data["series"]["trace"]
    windows = views.window_dmr(traces, window_us)  # refuses too many windows before anything is written
    data["windows"] = windows
    summary["dmr_windows"] = views.window_summary(windows, window_us)
    if out is None:
        app = summary.get("app") or "app"
        run_id = summary.get("run_id") or store.new_run_id()
        out = store.Store().report_dir(str(app), str(run_id))
    out = Path(out)
    store.check_replaceable(out, "report folder")
    with store.write_artifact(out, kind="report", force=force, inputs={"log": str(data["path"])}) as tmp:
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


def report_command(log: PathLike, workload: Optional[PathLike], out: Optional[PathLike], plots: bool,
                   as_json: bool, window_ms: float = 1000.0) -> Dict[str, Any]:
    """``pantheon report``: write the report folder, print its summary, preemptions and files."""
    from pantheon import console

    folder, summary = write_report(log, out=out, workload=workload, plots=plots, window_ms=window_ms)
    if as_json:
        print(json.dumps(summary, indent=2, default=str))
    else:
        console.print_table(
            f"{summary.get('policy', '?')} ({summary.get('mode', '?')})", COMPARE_COLUMNS,
            compare_rows([{**summary, "response_p99_us": summary["response_p99_us"]}]),
        )
        per_block = summary.get("preemptions_per_block") or {}
        where = "; ".join(f"{t} at " + ", ".join(f"block {b}: {n}" for b, n in bl.items())
                          for t, bl in per_block.items())
        console.info(f"preemptions: {summary['preemptions']}" + (f" ({where})" if where else ""))
        win = (summary.get("dmr_windows") or {}).get("worst")
        if win:
            console.info(f"worst {summary['dmr_windows']['window_ms']:g} ms window: DMR {100 * win['dmr']:.2f}% "
                         f"({win['missed']}/{win['jobs']}) from {win['start_us'] / 1e6:g} s")
        console.print_table(f"report written to {folder}", ("file", "contents"),
                            [[name, what] for name, what in summary.get("files", {}).items()])
    return summary
