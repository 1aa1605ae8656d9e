"""Benchmark: ``pantheon-deploy push`` time and bytes, and fleet scaling, against loopback boards.

Needs the loopback sshd of ``.ci/sshd.sh`` (it exports ``PANTHEON_TEST_SSH_*``), or
``--board user@host:port --identity KEY --known-hosts FILE`` for a real board.

Measures, on an app with real TorchScript chunks (``--size-mb`` of model files):

* first push: bytes and seconds (library call, and the CLI as a fresh process);
* unchanged re-push: bytes sent (goal: no model bytes) and seconds (goal: < 2 s here);
* one changed chunk: bytes and seconds (only that file travels);
* fleet push of the same app to N loopback boards (distinct data roots on the same sshd) with
  N workers, against N x one board.

Usage::

    source .ci/sshd.sh
    .venv/bin/python bench/push.py --json --save
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))

from _common import emit


def _make_app(store: Path, apps: Path, size_mb: float, variant: int = 0) -> None:
    from _deploy import make_app

    # One large chunk of about size_mb (a width-w 3x3 conv has 9*w*w*4 bytes), plus small ones.
    width = max(8, int((size_mb * 2**20 / 36) ** 0.5))
    make_app(store, apps, "benchapp", widths=(8, 8 + variant), big=width)


def _push(board_kw: Dict[str, Any], remote: Path) -> Dict[str, Any]:
    from pantheon.deploy.fleet import Ctx
    from pantheon.deploy.push import local_bundle, push_bundle
    from pantheon.deploy.ssh import Recorder, Session, parse_board

    board = parse_board(board_kw["spec"], identity=board_kw["identity"], known_hosts=board_kw["known_hosts"],
                        remote_root=str(remote))
    t0 = time.perf_counter()
    bundle = local_bundle("benchapp")
    with Session(board, Recorder()) as s:
        res = push_bundle(Ctx(board, s.recorder), s, bundle)
    res["wall_s"] = round(time.perf_counter() - t0, 3)
    return res


def _cli_push(board_kw: Dict[str, Any], remote: Path) -> float:
    cmd = [sys.executable, "-m", "pantheon.deploy.cli", "push", "--app", "benchapp", "--image-source", "skip",
           "--board", board_kw["spec"], "--identity", board_kw["identity"], "--known-hosts", board_kw["known_hosts"],
           "--remote-root", str(remote)]
    t0 = time.perf_counter()
    subprocess.run(cmd, check=True, capture_output=True)
    return round(time.perf_counter() - t0, 3)


def _fleet(board_kw: Dict[str, Any], work: Path, n: int) -> float:
    from pantheon.deploy.fleet import run_on_boards
    from pantheon.deploy.push import local_bundle, push_bundle
    from pantheon.deploy.ssh import Session, parse_board

    bundle = local_bundle("benchapp")
    boards = [parse_board(board_kw["spec"], name=f"b{i}", identity=board_kw["identity"],
                          known_hosts=board_kw["known_hosts"], remote_root=str(work / f"fleet{n}-{i}")) for i in range(n)]

    def verb(ctx: Any) -> Any:  # what `pantheon-deploy push --inventory` runs per board (bundle part)
        with Session(ctx.board, ctx.recorder) as s:
            r = push_bundle(ctx, s, bundle)
            return "ok", r

    t0 = time.perf_counter()
    results = run_on_boards(boards, verb, jobs=n)
    dt = time.perf_counter() - t0
    if not all(r.ok for r in results):
        raise SystemExit(f"fleet push failed: {[r.summary for r in results if not r.ok]}")
    return round(dt, 3)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--board", default=None, help="user@host:port (default: the loopback sshd)")
    p.add_argument("--identity", default=os.environ.get("PANTHEON_TEST_SSH_KEY"))
    p.add_argument("--known-hosts", default=os.environ.get("PANTHEON_TEST_SSH_KNOWN_HOSTS"))
    p.add_argument("--size-mb", type=float, default=32.0, help="model bytes in the app (MB)")
    p.add_argument("--fleet", type=int, nargs="*", default=[1, 2, 4], help="fleet sizes")
    p.add_argument("--repeat", type=int, default=3, help="repetitions of the re-push timing")
    p.add_argument("--json", action="store_true")
    p.add_argument("--save", action="store_true")
    args = p.parse_args()
    spec = args.board or (f"{os.environ.get('PANTHEON_TEST_SSH_USER', 'root')}@"
                          f"{os.environ.get('PANTHEON_TEST_SSH_HOST', '127.0.0.1')}:"
                          f"{os.environ.get('PANTHEON_TEST_SSH_PORT', '2222')}")
    if not args.identity or not args.known_hosts:
        raise SystemExit("no board: source .ci/sshd.sh first, or pass --board/--identity/--known-hosts")
    board_kw = {"spec": spec, "identity": args.identity, "known_hosts": args.known_hosts}
    work = Path(tempfile.mkdtemp(prefix="pantheon-bench-push-"))
    os.environ["PANTHEON_DATA"] = str(work / "store")
    os.environ["PANTHEON_APPS"] = str(work / "apps")
    os.environ["PANTHEON_PROGRESS"] = "0"
    try:
        _make_app(work / "store", work / "apps", args.size_mb)
        first = _push(board_kw, work / "board")
        repush = [_push(board_kw, work / "board") for _ in range(args.repeat)]
        cli_repush = _cli_push(board_kw, work / "board")
        _make_app(work / "store", work / "apps", args.size_mb, variant=4)  # the small task's chunks change
        changed = _push(board_kw, work / "board")
        t1 = _fleet(board_kw, work, 1)
        fleet: List[Dict[str, Any]] = []
        for n in args.fleet:
            tn = t1 if n == 1 else _fleet(board_kw, work, n)
            fleet.append({"boards": n, "seconds": tn, "n_x_one_board_s": round(n * t1, 3),
                          "speedup_vs_sequential": round(n * t1 / tn, 2)})
        result = {
            "model_mb": round(first["bytes_total"] / 2**20, 2),
            "first_push": {k: first[k] for k in ("files_total", "files_sent", "bytes_sent", "model_bytes_sent", "wall_s")},
            "unchanged_repush": {
                "bytes_sent": max(r["bytes_sent"] for r in repush),
                "model_bytes_sent": max(r["model_bytes_sent"] for r in repush),
                "wall_s_median": sorted(r["wall_s"] for r in repush)[len(repush) // 2],
                "cli_wall_s": cli_repush,
                "goal": "no model bytes and < 2 s",
                "met": max(r["model_bytes_sent"] for r in repush) == 0 and cli_repush < 2.0,
            },
            "one_task_changed": {k: changed[k] for k in ("files_sent", "files_linked", "bytes_sent", "wall_s")},
            "fleet": fleet,
            "fleet_goal": "N boards in parallel take less than N x one board",
            "fleet_met": all(f["seconds"] < f["n_x_one_board_s"] for f in fleet if f["boards"] > 1),
            "board": spec,
        }
        emit("push", result, as_json=args.json, save=args.save)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
