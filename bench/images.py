"""Image sizes, and the runtime in a container vs on the host (same repository, workload, seeds).

Sizes (``docker image inspect`` / ``docker history``): the board image, its base, and its
layers. On a real l4t-pytorch base torch is part of the base, so the layers Pantheon adds
are measured apart from the torch layer that a bare Debian base takes from the wheelhouse.
Target: the Pantheon layers add <= 150 MB over the base.

Runtime: ``pantheon bench`` (live policy comparison + dispatch overhead, fixed seed) of a
small conv-chunk app, alternately on the host (this venv) and in one long-lived container
of the image (``docker exec``), ``--rounds`` times each. Goal: no difference beyond the
round-to-round noise in DMR and per-chunk dispatch overhead. The host's torch (the venv's)
and the image's (the wheelhouse's CPU wheel) may differ in version: both are recorded.

Usage (needs a Docker engine and the image, e.g. after ``source .ci/docker.sh``)::

    python bench/images.py --build --json          # builds pantheon-jetson:test first
    python bench/images.py --image pantheon-jetson:test --rounds 5 --save   # bench/results/images.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Dict, List

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _common import emit

REPO = Path(__file__).resolve().parent.parent
TARGET_MB = 150.0
APP = "imgbench"
APP_YAML = """\
name: imgbench
description: two conv-chunk tasks for the container-vs-host benchmark
tasks:
  short: {max_delta_accuracy: 0.05}
  long: {max_delta_accuracy: 0.05}
workload:
  duration_s: 3
  jitter_us: 500
  seed: 0
  streams:
    - {task: short, period_x: 3.0, deadline_x: 2.0}
    - {task: long, period_x: 4.0, deadline_x: 3.0, start_ms: 2}
"""
TASKS = {
    "short": {"blocks": 4, "channels": 16, "depth": 1, "hw": 16, "exits": [1, 3], "acc": [0.8, 0.9]},
    "long": {"blocks": 6, "channels": 16, "depth": 2, "hw": 16, "exits": [3, 5], "acc": [0.85, 0.92]},
}


def mb(n: float) -> float:
    return round(n / 1e6, 1)


def sizes(client: Any, image: str) -> Dict[str, Any]:
    """Total sizes and the layers above the base, by what they hold."""
    img = client.images.get(image)
    base_name = img.labels.get("org.opencontainers.image.base.name", "")
    base = client.images.get(base_name) if base_name else None
    layers = []
    for h in img.history():
        if base is not None and h["Id"] == base.id:
            break
        if h["Size"]:
            layers.append({"created_by": " ".join(h["CreatedBy"].split())[-120:], "mb": mb(h["Size"])})
    torch_mb = sum(layer["mb"] for layer in layers if "/opt/torch" in layer["created_by"])
    added = mb(img.attrs["Size"] - (base.attrs["Size"] if base else 0))
    return {
        "image": image,
        "image_mb": mb(img.attrs["Size"]),
        "base": base_name,
        "base_mb": mb(base.attrs["Size"]) if base else None,
        "added_over_base_mb": added,
        "torch_layer_mb": round(torch_mb, 1),
        "pantheon_layers_mb": round(added - torch_mb, 1),
        "layers": layers,
        "context_kb": context_kb(),
    }


def context_kb() -> float:
    """Size of the build context the allowlist in .dockerignore lets through (wheels not staged)."""
    total = sum(p.stat().st_size for d in ("pantheon", "deploy/apps", "deploy/wheelhouse")
                for p in (REPO / d).rglob("*") if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".whl")
    total += sum((REPO / f).stat().st_size for f in ("pyproject.toml", "README.md"))
    return round(total / 1024, 1)


def make_data(root: Path) -> None:
    from pantheon.bench.benchmarks import build_conv_repository
    from pantheon.formats import store

    app_dir = root / "apps" / APP
    app_dir.mkdir(parents=True)
    (app_dir / "app.yaml").write_text(APP_YAML)
    build_conv_repository(store.Store(root).repository_dir(APP), TASKS, device="cpu")


def bench_args(out: str, duration: float) -> List[str]:
    return ["bench", "--app", APP, "--policies", "pantheon,edf", "--duration", str(duration), "--seed", "0",
            "--decisions", "0", "--telemetry", "off", "--device", "cpu", "--json", "--force", "--out", out]


def digest(res: Dict[str, Any]) -> Dict[str, Any]:
    return {
        "dmr": {p: s["dmr"] for p, s in res["policies"].items()},
        "response_p99_us": {p: s["response_p99_us"] for p, s in res["policies"].items()},
        "overhead_per_chunk_us": res["dispatch_overhead"]["overhead_per_chunk_median_us"],
        "torch": res["environment"]["torch"],
    }


def compare(host: List[Dict[str, Any]], cont: List[Dict[str, Any]]) -> Dict[str, Any]:
    """Mean, round-to-round spread and difference of each metric; within noise = |diff| <= 2 x spread."""
    def metric(get: Any) -> Dict[str, Any]:
        h, c = [get(r) for r in host], [get(r) for r in cont]
        spread = max(statistics.pstdev(h), statistics.pstdev(c), 1e-9)
        diff = statistics.fmean(c) - statistics.fmean(h)
        return {"host": [round(x, 4) for x in h], "container": [round(x, 4) for x in c],
                "host_mean": round(statistics.fmean(h), 4), "container_mean": round(statistics.fmean(c), 4),
                "difference": round(diff, 4), "spread": round(spread, 4), "within_noise": abs(diff) <= 2 * spread}

    out = {"overhead_per_chunk_us": metric(lambda r: r["overhead_per_chunk_us"])}
    for p in host[0]["dmr"]:
        out[f"dmr_{p}"] = metric(lambda r, p=p: r["dmr"][p])
        out[f"response_p99_us_{p}"] = metric(lambda r, p=p: r["response_p99_us"][p] or 0.0)
    return out


def runtime_compare(client: Any, image: str, rounds: int, duration: float) -> Dict[str, Any]:
    with tempfile.TemporaryDirectory(prefix="pantheon-imgbench-") as d:
        root = Path(d)
        make_data(root)
        env = {**os.environ, "PANTHEON_DATA": str(root), "PANTHEON_PROGRESS": "0"}
        c = client.containers.run(image, ["infinity"], entrypoint="sleep", detach=True, network_mode="host",
                                  volumes={str(root): {"bind": "/data", "mode": "rw"}},
                                  environment={"PANTHEON_PROGRESS": "0"})
        host, cont = [], []
        try:
            for i in range(rounds):
                p = subprocess.run([sys.executable, "-m", "pantheon.cli", *bench_args(str(root / f"host{i}"), duration)],
                                   env=env, capture_output=True, text=True, check=True)
                host.append(digest(json.loads(p.stdout)))
                code, out = c.exec_run(["pantheon", *bench_args(f"/data/cont{i}", duration)], demux=True)
                if code != 0:
                    raise RuntimeError(f"container bench failed ({code}): {(out[1] or b'').decode()[-2000:]}")
                cont.append(digest(json.loads(out[0])))
                print(f"round {i + 1}/{rounds}: host {host[-1]['dmr']} {host[-1]['overhead_per_chunk_us']} us, "
                      f"container {cont[-1]['dmr']} {cont[-1]['overhead_per_chunk_us']} us", file=sys.stderr)
        finally:
            c.remove(force=True)
    return {"rounds": rounds, "duration_s": duration, "host_torch": host[0]["torch"],
            "container_torch": cont[0]["torch"], "metrics": compare(host, cont)}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--image", default="pantheon-jetson:test")
    ap.add_argument("--build", action="store_true", help="build --image first with make image-jetson from the test base")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--duration", type=float, default=3.0, help="seconds of workload per live run")
    ap.add_argument("--json", action="store_true")
    ap.add_argument("--save", action="store_true")
    args = ap.parse_args()
    import docker

    client = docker.from_env(timeout=900)
    build_s = None
    if args.build:
        t0 = time.monotonic()
        subprocess.run(["make", "--no-print-directory", "image-jetson", f"TAG={args.image}",
                        f"BASE_IMAGE={os.environ.get('PANTHEON_TEST_BASE_IMAGE', 'pantheon-test-base:bookworm')}",
                        f"WHEELHOUSE={os.environ.get('PANTHEON_TEST_WHEELHOUSE', '')}"], cwd=REPO, check=True)
        build_s = round(time.monotonic() - t0, 1)
    size = sizes(client, args.image)
    result = {
        "sizes": size,
        "target_mb": TARGET_MB,
        "met": size["pantheon_layers_mb"] <= TARGET_MB,
        "build_s": build_s,
        "engine": client.version().get("Version"),
        "storage_driver": client.info().get("Driver"),
        "runtime": runtime_compare(client, args.image, args.rounds, args.duration),
    }
    emit("images", result, as_json=args.json, save=args.save)
    return 0


if __name__ == "__main__":
    sys.exit(main())
