"""``pantheon bench --app APP``: the reproducible benchmark the board image runs (compose service ``bench``).

On the device, with fixed seeds:

1. a workload generated from the app's streams (``--seed``, ``--duration``) over the deployed
   repository ``<root>/apps/<app>/repository``;
2. the policy comparison: that workload replayed LIVE by :func:`pantheon.online.runtime.run`
   under each policy, telemetry sampled into each log, and the same workload in the
   simulator (:func:`pantheon.online.simulate.simulate`, the repository's profiles and
   dispatch overhead) so the table shows what the plan predicted next to what happened;
3. the scheduler microbenchmark (:func:`pantheon.bench.benchmarks.scheduler_latency`) and the
   runtime's dispatch overhead (:func:`pantheon.bench.benchmarks.dispatch_overhead`).

Everything lands in one results folder (``store.write_artifact``; default
``<root>/bench/<app>/<run-id>``)::

    results.json   policies (DMR, relative accuracy, ...), scheduler_latency, dispatch_overhead
    table.md       the comparison as markdown
    workload.bin   the replayed workload
    runs/<policy>/ each live run's events.jsonl + run.json

and its manifest ``meta`` records the environment: image digest (``$PANTHEON_IMAGE_DIGEST``,
set by compose/pantheon-deploy), base image, pantheon version and git commit
(``$PANTHEON_GIT_COMMIT``, baked into the image), L4T release, board model, nvpmodel mode,
clocks state, device, torch version and the telemetry summary (mean power, mean GPU load).

Example::

    res = bench("digits", policies=["pantheon", "edf"], duration_s=5, seed=0, device="cpu")
    res["path"], res["policies"]["pantheon"]["dmr"]
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, List, Optional, Sequence

from pantheon import __version__
from pantheon.errors import UsageError, check_interrupt
from pantheon.formats.store import Store

ENV_DIGEST = "PANTHEON_IMAGE_DIGEST"
ENV_COMMIT = "PANTHEON_GIT_COMMIT"
ENV_BASE = "PANTHEON_BASE_IMAGE"


def environment() -> Dict[str, Any]:
    """Where the benchmark ran: image, code version, board facts, torch. Never raises."""
    from pantheon.platform.jetson import board_facts

    commit = os.environ.get(ENV_COMMIT) or ""
    if not commit or commit == "unknown":
        from pantheon.deploy.images import REPO, git_commit  # outside an image: the checkout's commit

        commit = git_commit(REPO)
    try:
        import torch

        torch_version = torch.__version__
    except ImportError:  # pragma: no cover - torch is a core dependency
        torch_version = None
    return {
        "image_digest": os.environ.get(ENV_DIGEST) or "unknown",
        "base_image": os.environ.get(ENV_BASE) or None,
        "pantheon_version": __version__,
        "git_commit": commit,
        "torch": torch_version,
        "board": board_facts(),
    }


def _policies(policies: Optional[Sequence[str]]) -> List[str]:
    from pantheon.online.scheduler import POLICIES, check_policy

    chosen = [p.strip() for item in (policies or POLICIES) for p in str(item).split(",") if p.strip()]
    if not chosen:
        raise UsageError("--policies is empty: name at least one policy")
    return [check_policy(p) for p in dict.fromkeys(chosen)]


def bench(
    app: str,
    *,
    policies: Optional[Sequence[str]] = None,
    out: Optional[os.PathLike] = None,
    duration_s: Optional[float] = None,
    seed: int = 0,
    device: str = "auto",
    telemetry: str = "auto",
    decisions: int = 1000,
    dispatch_jobs: int = 200,
    force: bool = False,
    drop_rule: str = "shed",
    downgrade: str = "absolute",
    max_jobs: Optional[int] = None,
    max_span_s: Optional[float] = None,
    store: Optional[Store] = None,
    margin: Optional[float] = None,
) -> Dict[str, Any]:
    """Run the benchmark of ``app`` and write its results folder.

    Args:
        app: app name or YAML (its streams make the workload; its repository must be deployed).
        policies: policies to compare live (default: all of the scheduler's).
        out: results folder (default ``<root>/bench/<app>/<run-id>``).
        duration_s: workload length (default: the app's).
        seed: seeds the workload and the scheduler microbenchmark.
        device: ``cuda``, ``cpu`` or ``auto``.
        telemetry: backend for the live runs (``off``/``auto``/``jtop``/``sysfs``/``nvml``/``psutil``).
        decisions: scheduler decisions timed per queue length (0 skips the microbenchmark).
        dispatch_jobs: jobs of the dispatch-overhead measurement (0 skips it).
        force: replace an existing ``out``.
        drop_rule, downgrade: the pantheon refresh's rules (:class:`~pantheon.online.scheduler.Scheduler`).
        max_jobs, max_span_s: the workload's size bounds, checked before it is generated (default:
            :data:`~pantheon.online.workload.MAX_JOBS`, :data:`~pantheon.online.workload.MAX_SPAN_S`).
        store: the artifact store holding the app's repository (default: the one at ``$PANTHEON_DATA``).
        margin: the pantheon refresh's safety margin (default: the scheduler's).

    Returns:
        The results dict (also ``results.json``) with ``path`` added.

    Raises:
        RepositoryError: the app's repository is missing or incomplete (the path is named).
        UsageError: unknown app or policy.
        WorkloadError: the app's workload is over ``max_jobs``/``max_span_s`` (nothing written).
        KeyboardInterrupt: SIGINT/SIGTERM during a live run (the run stops cleanly, then the
            whole benchmark: nothing is written).
    """
    from pantheon import console
    from pantheon.analysis.report import analyze
    from pantheon.bench import benchmarks
    from pantheon.formats import store as store_mod
    from pantheon.formats import write_workloads
    from pantheon.formats.app import load_app
    from pantheon.formats.events import read_events
    from pantheon.online.repository import read_repository, resolve_device
    from pantheon.online.runtime import run
    from pantheon.online.simulate import simulate
    from pantheon.online.workload import MAX_JOBS, MAX_SPAN_S, generate
    from pantheon.platform import telemetry as tel

    st = store or Store()
    spec = load_app(app, st)
    repo_dir = st.repository_dir(spec.name)
    repo = read_repository(repo_dir)
    chosen = _policies(policies)
    from pantheon.online.scheduler import DEFAULT_MARGIN, DOWNGRADES, DROP_RULES, check_choice, check_margin

    check_choice(drop_rule, DROP_RULES, "--drop-rule")
    check_choice(downgrade, DOWNGRADES, "--downgrade")
    margin = check_margin(DEFAULT_MARGIN if margin is None else margin)
    dev = resolve_device(device)
    if decisions < 0:
        raise UsageError(f"--decisions must be >= 0, got {decisions}")
    ws = generate(spec, repo=repo, seed=seed, duration_s=duration_s,
                  max_jobs=MAX_JOBS if max_jobs is None else max_jobs,
                  max_span_s=MAX_SPAN_S if max_span_s is None else max_span_s)
    run_id = store_mod.new_run_id()
    dest = Path(out) if out else st.bench_dir(spec.name, run_id)
    settings = {"app": spec.name, "policies": chosen, "seed": seed, "duration_s": duration_s or spec.duration_s,
                "device": dev, "telemetry": telemetry, "decisions": decisions, "dispatch_jobs": dispatch_jobs,
                "drop_rule": drop_rule, "downgrade": downgrade, "margin": margin}
    meta: Dict[str, Any] = {"run_id": run_id, **environment(), "settings": settings}
    results: Dict[str, Any] = {"app": spec.name, "run_id": run_id, "settings": settings, "policies": {}}
    steps = len(chosen) + (decisions > 0) + (dispatch_jobs > 0)
    inputs = {"repository": store_mod.fingerprint(repo_dir / store_mod.MANIFEST), **settings}
    # write_artifact reads `meta` when the block ends: the telemetry summary is added below.
    with store_mod.write_artifact(dest, kind="bench", force=force, meta=meta, inputs=inputs) as tmp, \
            console.progress() as bar:
        task = bar.add_task(f"bench {spec.name}", total=steps)
        write_workloads(tmp / "workload.bin", ws)
        samples: List[Dict[str, Any]] = []
        logs = []
        for policy in chosen:
            check_interrupt()  # a Ctrl-C swallowed between steps stops the benchmark here
            bar.update(task, description=f"live run: {policy}")
            log = tmp / "runs" / policy
            live = run(repo_dir, tmp / "workload.bin", log, policy=policy, device=dev, telemetry=telemetry,
                       progress=False, drop_rule=drop_rule, downgrade=downgrade, margin=margin)
            if live.get("interrupted"):  # Ctrl-C / SIGTERM stopped the run: stop here, seal nothing
                raise KeyboardInterrupt
            summary = analyze(log, tmp / "workload.bin")["summary"]
            sim = simulate(read_repository(repo_dir), ws, policy, drop_rule=drop_rule, downgrade=downgrade,
                           margin=margin)
            summary["simulated"] = {k: sim[k] for k in ("dmr", "relative_accuracy", "dispatch_overhead_us")}
            results["policies"][policy] = summary
            samples += [ev for ev in read_events(log) if ev.get("ev") == "telemetry"]
            logs.append(log)
            bar.advance(task)
        check_interrupt()
        if decisions > 0:
            bar.update(task, description="scheduler microbenchmark")
            results["scheduler_latency"] = benchmarks.scheduler_latency(
                benchmarks.robot_like_tasks(), queue_lengths=range(1, 12), decisions=decisions, seed=seed)
            bar.advance(task)
        check_interrupt()
        if dispatch_jobs > 0:
            bar.update(task, description="dispatch overhead")
            results["dispatch_overhead"] = benchmarks.dispatch_overhead(jobs=dispatch_jobs, device=dev)
            bar.advance(task)
        meta["telemetry"] = results["telemetry"] = tel.summarize(samples)
        results["environment"] = {k: v for k, v in meta.items() if k not in ("settings", "telemetry")}
        (tmp / "results.json").write_text(json.dumps(results, indent=2, default=str) + "\n")
        (tmp / "table.md").write_text(table_markdown(results, [str(p) for p in logs]))
    results["path"] = str(dest)
    return results


def table_markdown(results: Dict[str, Any], logs: Sequence[str] = ()) -> str:
    """The results as markdown: policy comparison, scheduler latency, environment."""
    from pantheon.analysis.report import compare_markdown

    rows = result_rows(results)
    env = results.get("environment", {})
    board = env.get("board") or {}
    tele = results.get("telemetry") or {}
    lines = [f"# Pantheon bench: {results['app']} ({results['run_id']})", "",
             f"seed {results['settings']['seed']}, {results['settings']['duration_s']} s of workload, "
             f"device {results['settings']['device']}", "", "## Policies (live, and simulated on the same workload)", "",
             compare_markdown(rows)]
    if results.get("scheduler_latency"):
        lines += ["## Scheduler decision latency (pantheon policy)", "", "| queue length | p50 (us) | p99 (us) |",
                  "|---|---|---|"]
        lines += [f"| {r['queue_length']} | {r['p50_us']} | {r['p99_us']} |" for r in results["scheduler_latency"]]
        lines.append("")
    if results.get("dispatch_overhead"):
        d = results["dispatch_overhead"]
        lines += [f"Dispatch overhead: {d['overhead_per_chunk_median_us']} us per chunk (median).", ""]
    lines += ["## Environment", "",
              f"- image {env.get('image_digest')} (base {env.get('base_image')}), pantheon {env.get('pantheon_version')} "
              f"at {env.get('git_commit')}, torch {env.get('torch')}",
              f"- board {board.get('model')}, L4T {board.get('l4t')}, nvpmodel {board.get('nvpmodel')}, "
              f"jetson_clocks {board.get('jetson_clocks')}",
              f"- telemetry: mean power {tele.get('mean_power_mw')} mW, mean GPU load {tele.get('mean_gpu_load_pct')} %",
              ""]
    return "\n".join(lines)


def result_rows(results: Dict[str, Any]) -> List[Dict[str, Any]]:
    rows = []
    for p, s in results["policies"].items():
        row = {"policy": p, **s}
        if s.get("simulated"):
            row["sim_dmr"] = s["simulated"]["dmr"]
        rows.append(row)
    return rows
