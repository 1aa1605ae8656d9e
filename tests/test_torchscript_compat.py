"""Chunks exported here load and compute the same on the oldest torch a board runs (2.0).

The exporter's compile path (``to_torchscript`` + ``torch.jit.save``) writes every block and
exit of one task per zoo architecture, plus a chunk merged the way ``pantheon plan`` merges
blocks; ``tests/compat_load.py`` then runs them under the compatibility interpreter and the
outputs are compared with this torch's.

The interpreter is ``$PANTHEON_COMPAT_PYTHON`` (``.ci/run`` makes a venv with torch 2.0.1
from PyPI, see ``make compat-venv``). Without it the test is skipped, or fails when
``PANTHEON_REQUIRE_COMPAT=1`` (set by ``.ci/run``).
"""

from __future__ import annotations

import json
import os
import subprocess
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch

from pantheon.formats import torchscript
from pantheon.offline.exits import build_multi_exit
from pantheon.offline.export import to_torchscript
from pantheon.offline.plan import merge_chunks
from pantheon.zoo import get_task

HERE = Path(__file__).resolve().parent
# One task per architecture of the zoo (the detection one carries the SSD heads).
TASKS = ("object_detection", "sign_recognition", "gender_classification", "wildlife_recognition",
         "scene_recognition")


def _compat_python() -> str:
    py = os.environ.get("PANTHEON_COMPAT_PYTHON", "")
    if not py or not Path(py).exists():
        why = "no torch-2.0 interpreter ($PANTHEON_COMPAT_PYTHON; make compat-venv)"
        if os.environ.get("PANTHEON_REQUIRE_COMPAT", "") not in ("", "0"):
            pytest.fail(f"PANTHEON_REQUIRE_COMPAT=1 but {why}", pytrace=False)
        pytest.skip(why)
    return py


def _export_task(name: str, d: Path, cases: list) -> None:
    task = get_task(name)
    torch.manual_seed(0)
    mx = build_multi_exit(task, task.build_model(), seed=0).eval()
    x = torch.randn(1, *task.input_shape, generator=torch.Generator().manual_seed(1))
    np.save(d / f"{name}_in.npy", x.numpy())
    chain = []
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        h = x
        for j in range(mx.num_blocks):
            block, _ = to_torchscript(mx.blocks[j], h)
            torch.jit.save(block, str(d / f"{name}_block_{j:02d}.pt"))
            chain.append(f"{name}_block_{j:02d}.pt")
            h = mx.blocks[j](h)
            branch, _ = to_torchscript(mx.exits[j], h)
            torch.jit.save(branch, str(d / f"{name}_branch_{j:02d}.pt"))
            case = {"name": f"{name} exit {j}", "chain": chain + [f"{name}_branch_{j:02d}.pt"],
                    "input": f"{name}_in.npy", "out": f"{name}_exit{j}"}
            cases.append(case)
            out = torch.jit.load(str(d / case["chain"][-1]))(h)
            for i, t in enumerate(out if isinstance(out, (tuple, list)) else [out]):
                np.save(d / f"{case['out']}_ref_{i}.npy", t.numpy())
    if mx.num_blocks >= 3:  # blocks 0..2 as one chunk, as `pantheon plan --min-chunk-us` writes it
        merge_chunks([d / f for f in chain[:3]], d / f"{name}_merged.pt")
        case = {"name": f"{name} merged 0-2", "chain": [f"{name}_merged.pt"], "input": f"{name}_in.npy",
                "out": f"{name}_merged"}
        cases.append(case)
        with torch.no_grad():
            h = x
            for f in chain[:3]:
                h = torch.jit.load(str(d / f))(h)
        np.save(d / f"{name}_merged_ref_0.npy", h.numpy())


@pytest.mark.slow
def test_exported_chunks_load_and_match_on_the_oldest_board_torch(tmp_path):
    py = _compat_python()
    cases: list = []
    for name in TASKS:
        _export_task(name, tmp_path, cases)
    (tmp_path / "cases.json").write_text(json.dumps(cases))
    # What push checks: every file is in a format the boards' torch reads.
    needs = torchscript.needs_of([tmp_path])
    assert needs.files > 2 * len(TASKS) and needs.format_version <= torchscript.MAX_READABLE_FORMAT
    res = subprocess.run([py, str(HERE / "compat_load.py"), str(tmp_path)], capture_output=True, text=True,
                         timeout=900)
    assert res.returncode == 0, res.stderr[-3000:]
    info = json.loads(res.stdout.strip().splitlines()[-1])
    assert torchscript.torch_release(info["torch"]) == torchscript.OLDEST_BOARD_TORCH
    assert info["cases"] == len(cases)
    for case in cases:
        refs = sorted(tmp_path.glob(f"{case['out']}_ref_*.npy"))
        assert refs, case["name"]
        for i, ref in enumerate(refs):
            want = np.load(ref)
            got = np.load(tmp_path / f"{case['out']}_{i}.npy")
            assert got.shape == want.shape, case["name"]
            scale = max(1.0, float(np.abs(want).max()))
            assert np.abs(got - want).max() <= 1e-4 * scale, f"{case['name']}: output {i} differs under torch 2.0"


def test_needs_and_refusal_on_real_files(tmp_path):
    """The format version is read from the zip; a newer one is refused for a 2.0 board with one line."""
    import zipfile

    m = torch.jit.script(torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.ReLU()))
    torch.jit.save(m, str(tmp_path / "a.pt"))
    needs = torchscript.needs_of([tmp_path])
    assert needs.files == 1 and 1 <= needs.format_version <= torchscript.MAX_READABLE_FORMAT
    assert torchscript.refusal(needs, "2.0.0a0+ec3941ad.nv23.02") is None
    assert torchscript.refusal(needs, "2.14.1+cu130") is None
    old = torchscript.refusal(needs, "1.10.0")
    assert old and "older than 2.0" in old and "\n" not in old
    assert torchscript.refusal(needs, None) == "the board's image has no torch"
    # the same file with its version record raised to 11: torch 2.0..2.14 refuse it, and so do we
    src = zipfile.ZipFile(tmp_path / "a.pt")
    with zipfile.ZipFile(tmp_path / "b.pt", "w") as out:
        for info in src.infolist():
            data = src.read(info.filename)
            if info.filename.count("/") == 1 and info.filename.endswith("/version"):
                data = b"11\n"
            out.writestr(info, data)
    newer = torchscript.needs_of([tmp_path])
    assert newer.format_version == 11 and newer.newest == "b.pt"
    msg = torchscript.refusal(newer, "2.0.0a0+ec3941ad.nv23.02")
    assert msg and "b.pt is TorchScript file format 11" in msg
    with pytest.raises(Exception, match="version 11"):
        torch.jit.load(str(tmp_path / "b.pt"))
    (tmp_path / "c.pt").write_bytes(b"not a zip")
    with pytest.raises(torchscript.ArtifactError, match="not a readable torch archive"):
        torchscript.needs_of([tmp_path / "c.pt"])
