"""Run every benchmark script in bench/ with ``--json --save`` and print a summary (``make bench``).

Every ``bench/*.py`` except ``_common.py``, ``run_all.py`` and ``gpu_check.py`` (which needs
a GPU and is run by hand on one) runs as its own process, one after the other; its JSON
goes to ``bench/results/<name>.json``. A failing script is reported and the others still
run; the exit code says whether all succeeded.

Usage::

    python bench/run_all.py                 # everything
    python bench/run_all.py --only scheduler --only dispatch
    python bench/run_all.py --list
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any, Dict, List, Optional

HERE = Path(__file__).resolve().parent
SKIP = {"_common.py", "run_all.py", "gpu_check.py"}


def scripts() -> List[Path]:
    return sorted(p for p in HERE.glob("*.py") if p.name not in SKIP)


def headline(name: str, data: Any) -> str:
    """A one-line digest of a benchmark's JSON (best effort: each bench has its own shape)."""
    if isinstance(data, list):
        data = {"rows": data}
    if not isinstance(data, dict):
        return ""
    parts = []
    for key in ("met", "targets", "checks"):
        if key in data:
            val = data[key]
            if isinstance(val, dict):
                val = all(v.get("met", v) if isinstance(v, dict) else bool(v) for v in val.values())
            parts.append(f"{key}: {val}")
    apps = data.get("apps")
    if isinstance(apps, dict):
        for app, e in apps.items():
            p = (e.get("table") or {}).get("pantheon")
            if p:
                parts.append(f"{app}: pantheon DMR {100 * p['dmr']:.2f}% acc {100 * p['relative_accuracy']:.1f}%")
    rows = data.get("rows")
    if isinstance(rows, list) and rows and not parts:
        parts.append(f"{len(rows)} rows")
    return "; ".join(parts)


def run_one(path: Path, timeout: Optional[float]) -> Dict[str, Any]:
    t0 = time.monotonic()
    try:
        proc = subprocess.run([sys.executable, str(path), "--json", "--save"], capture_output=True, text=True,
                              timeout=timeout, cwd=HERE.parent)
    except subprocess.TimeoutExpired:
        return {"name": path.stem, "ok": False, "seconds": round(time.monotonic() - t0, 1),
                "summary": f"timed out after {timeout} s"}
    secs = round(time.monotonic() - t0, 1)
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        return {"name": path.stem, "ok": False, "seconds": secs, "summary": f"exit {proc.returncode}: {tail[0]}"}
    result = HERE / "results" / f"{path.stem}.json"
    summary = ""
    if result.is_file():
        try:
            summary = headline(path.stem, json.loads(result.read_text()))
        except ValueError:
            summary = "result is not JSON"
    return {"name": path.stem, "ok": True, "seconds": secs, "summary": summary}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--only", action="append", help="run only this benchmark (name without .py); repeatable")
    ap.add_argument("--timeout", type=float, default=None, help="seconds per script")
    ap.add_argument("--list", action="store_true", help="list the benchmarks and exit")
    args = ap.parse_args()
    todo = scripts()
    if args.only:
        known = {p.stem for p in todo}
        unknown = [n for n in args.only if n not in known]
        if unknown:
            print(f"unknown benchmark(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}", file=sys.stderr)
            return 2
        todo = [p for p in todo if p.stem in args.only]
    if args.list:
        print("\n".join(p.stem for p in todo))
        return 0
    results = []
    for p in todo:
        print(f"== {p.stem} ...", file=sys.stderr, flush=True)
        r = run_one(p, args.timeout)
        results.append(r)
        print(f"   {'ok' if r['ok'] else 'FAILED'} in {r['seconds']} s  {r['summary']}", file=sys.stderr, flush=True)
    width = max(len(r["name"]) for r in results) if results else 4
    print(f"\n{'benchmark'.ljust(width)}  status  seconds  summary")
    for r in results:
        print(f"{r['name'].ljust(width)}  {'ok' if r['ok'] else 'FAIL':6}  {r['seconds']:>7}  {r['summary']}")
    return 0 if all(r["ok"] for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
