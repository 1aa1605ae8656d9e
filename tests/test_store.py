from __future__ import annotations

import json

import pytest

from pantheon.errors import ArtifactExistsError, ChecksumError, ManifestError
from pantheon.formats import store
from pantheon.formats.store import Store, is_complete, read_manifest, update_artifact, verify, write_artifact


def _write(dest, files, **kw):
    with write_artifact(dest, kind="variants", **kw) as tmp:
        for name, data in files.items():
            p = tmp / name
            p.parent.mkdir(parents=True, exist_ok=True)
            p.write_bytes(data)
    return dest


def test_root_resolution(monkeypatch, tmp_path):
    monkeypatch.setenv("PANTHEON_DATA", str(tmp_path / "env"))
    assert Store().root == tmp_path / "env"
    assert Store(tmp_path / "arg").root == tmp_path / "arg"
    monkeypatch.delenv("PANTHEON_DATA")
    monkeypatch.chdir(tmp_path)
    assert Store().root == tmp_path / "pantheon-data"


def test_manifest_lists_every_file_with_sums(tmp_path):
    dest = _write(tmp_path / "v", {"block_00.pt": b"abc", "sub/branch_00.pt": b"x" * 10}, inputs={"k": 1}, meta={"m": 2})
    m = verify(dest, kind="variants")
    assert set(m.files) == {"block_00.pt", "sub/branch_00.pt"}
    assert m.files["sub/branch_00.pt"].size == 10
    assert m.files["block_00.pt"].sha256 == "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    raw = json.loads((dest / "manifest.json").read_text())
    assert raw["schema_version"] == store.SCHEMA_VERSION
    assert raw["producer"]["name"] == "pantheon" and raw["producer"]["version"]
    assert raw["created"] and raw["inputs"] == {"k": 1} and raw["meta"] == {"m": 2}


def test_tampered_file_is_refused(tmp_path):
    dest = _write(tmp_path / "v", {"a.pt": b"hello"})
    (dest / "a.pt").write_bytes(b"jello")
    with pytest.raises(ChecksumError, match="checksum mismatch"):
        verify(dest)
    (dest / "a.pt").write_bytes(b"hello!")
    with pytest.raises(ChecksumError, match="altered"):
        verify(dest)
    (dest / "a.pt").unlink()
    with pytest.raises(ChecksumError, match="missing"):
        verify(dest)


def test_missing_or_corrupt_manifest(tmp_path):
    (tmp_path / "x").mkdir()
    with pytest.raises(ManifestError, match="no manifest.json"):
        verify(tmp_path / "x")
    (tmp_path / "x" / "manifest.json").write_text("{not json")
    with pytest.raises(ManifestError, match="not a valid pantheon manifest"):
        read_manifest(tmp_path / "x")
    with pytest.raises(ManifestError, match="does not exist"):
        verify(tmp_path / "nope")


def test_failed_write_leaves_nothing_and_keeps_previous(tmp_path):
    dest = tmp_path / "v"
    with pytest.raises(RuntimeError):
        with write_artifact(dest, kind="variants") as tmp:
            (tmp / "a").write_bytes(b"1")
            raise RuntimeError("boom")
    assert not dest.exists()
    assert list(tmp_path.iterdir()) == []
    _write(dest, {"a": b"old"})
    with pytest.raises(RuntimeError):
        with write_artifact(dest, kind="variants", force=True) as tmp:
            (tmp / "a").write_bytes(b"new")
            raise RuntimeError("boom")
    assert (dest / "a").read_bytes() == b"old"
    verify(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


@pytest.mark.parametrize("when", ["between the renames", "after the renames"])
@pytest.mark.parametrize("sig", ["SIGINT", "SIGTERM"])
def test_a_signal_during_the_swap_lands_after_it(tmp_path, monkeypatch, when, sig):
    """Replacing an artifact is two renames (old aside, new in) and a removal of the old one. A Ctrl-C
    between them used to leave no artifact at `dest` (only a hidden `.old-` folder), or the old copy beside
    the new one. It is now held until the swap is done: `dest` is whole, nothing else is left, and the
    KeyboardInterrupt still reaches the caller. The same for SIGTERM, given a handler (a stop request)."""
    import os
    import signal

    def stop(*_):
        raise SystemExit(143)

    signum = getattr(signal, sig)
    dest = _write(tmp_path / "v", {"a": b"old"})
    renames = []

    def rename(src, dst):
        os_rename(src, dst)
        renames.append(dst)
        if (when == "between the renames" and len(renames) == 1) or (when == "after the renames" and len(renames) == 2):
            signal.raise_signal(signum)  # Python's handler runs at the next bytecode

    os_rename = os.rename
    monkeypatch.setattr(store.os, "rename", rename)
    # Python's own SIGINT handler: a shell started this run in the background (`cmd &`, CI) with SIGINT ignored
    old = {signal.SIGINT: signal.signal(signal.SIGINT, signal.default_int_handler),
           signal.SIGTERM: signal.signal(signal.SIGTERM, stop)}
    try:
        with pytest.raises(KeyboardInterrupt if signum == signal.SIGINT else SystemExit):
            _write(dest, {"a": b"new"}, force=True)
    finally:
        for s, handler in old.items():
            signal.signal(s, handler)
    assert len(renames) == 2
    assert (dest / "a").read_bytes() == b"new"
    verify(dest)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["v"]


def test_a_ctrl_c_as_a_file_write_begins_leaves_no_temporary_file(tmp_path, monkeypatch):
    """A single file is written to a hidden temporary file, then renamed over its destination. A Ctrl-C
    right after the temporary file was made used to leave it behind; it now lands once the write can
    clean up after it, and the destination keeps its old content."""
    import signal
    import tempfile

    path = tmp_path / "sub" / "f.json"
    store.atomic_write_bytes(path, b"old")
    real_mkstemp = tempfile.mkstemp

    def mkstemp(*args, **kw):
        made = real_mkstemp(*args, **kw)
        signal.raise_signal(signal.SIGINT)  # Python's handler raises at the next bytecode
        return made

    monkeypatch.setattr(store.tempfile, "mkstemp", mkstemp)
    old = signal.signal(signal.SIGINT, signal.default_int_handler)  # CI runs this in the background: SIGINT ignored
    try:
        with pytest.raises(KeyboardInterrupt):
            store.atomic_write_bytes(path, b"new")
    finally:
        signal.signal(signal.SIGINT, old)
    assert path.read_bytes() == b"old"
    assert sorted(p.name for p in path.parent.iterdir()) == ["f.json"]


def test_existing_destination_needs_force(tmp_path):
    dest = _write(tmp_path / "v", {"a": b"1"})
    with pytest.raises(ArtifactExistsError, match="--force"):
        _write(dest, {"a": b"2"})
    _write(dest, {"b": b"2"}, force=True)
    assert sorted(verify(dest).files) == ["b"]


def test_update_keeps_other_files_and_inputs(tmp_path):
    dest = _write(tmp_path / "v", {"a": b"1"}, inputs={"fp": "x"})
    update_artifact(dest, {"profile.csv": "h\n1\n"}, meta={"profiled": True})
    m = verify(dest)
    assert sorted(m.files) == ["a", "profile.csv"]
    assert m.inputs == {"fp": "x"} and m.meta["profiled"] is True
    assert is_complete(dest, {"fp": "x"}) and not is_complete(dest, {"fp": "y"})


def test_fingerprint_tracks_file_content(tmp_path):
    f = tmp_path / "w.pt"
    f.write_bytes(b"1")
    a = store.fingerprint(f, {"lr": 0.1})
    f.write_bytes(b"2")
    assert store.fingerprint(f, {"lr": 0.1}) != a
    assert store.fingerprint(f, {"lr": 0.1}) == store.fingerprint(f, {"lr": 0.1})
