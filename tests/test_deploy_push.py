"""pantheon-deploy push against the loopback sshd of .ci/sshd.sh: atomic, incremental, interruptible."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import psutil
import pytest
from _deploy import board_args, make_app
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.formats.store import Store, sha256_file, verify

runner = CliRunner()
pytestmark = pytest.mark.ssh


@pytest.fixture
def isolated_store(_isolated_store):
    return _isolated_store


@pytest.fixture
def apps_dir(tmp_path, monkeypatch):
    d = tmp_path / "app-files"
    monkeypatch.setenv("PANTHEON_APPS", str(d))
    return d


def push(ssh, remote, *extra, user=None):
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image-source", "skip", "--json",
                                   *board_args(ssh, remote, user), *extra])
    data = json.loads(r.stdout) if r.exit_code == 0 and r.stdout.strip().startswith("{") else None
    return r, data


def current_bundle(remote: Path, app: str = "tinyapp") -> Path:
    link = remote / "apps" / app
    assert link.is_symlink(), f"{link} should be a symlink to the current bundle"
    return link.resolve()


def test_push_then_unchanged_then_changed(ssh, apps_dir, isolated_store, tmp_path):
    remote = tmp_path / "board-data"
    make_app(isolated_store, apps_dir)
    r, first = push(ssh, remote)
    assert r.exit_code == 0, r.output
    bundle = current_bundle(remote)
    manifest = verify(remote / "apps" / "tinyapp", kind="bundle")  # the board copy verifies like any artifact
    verify(remote / "apps" / "tinyapp" / "repository", kind="repository")
    assert first["files_sent"] == first["files_total"] == len(manifest.files) + 1
    assert first["bytes_sent"] == first["bytes_total"] > 0
    # Same files, byte for byte, as in the store.
    store_repo = Store(isolated_store).repository_dir("tinyapp")
    for f in store_repo.rglob("*.pt"):
        assert sha256_file(bundle / "repository" / f.relative_to(store_repo)) == sha256_file(f)

    r, again = push(ssh, remote)
    assert r.exit_code == 0 and again["up_to_date"] and again["bytes_sent"] == 0 and again["files_sent"] == 0
    assert current_bundle(remote) == bundle

    # Change one task's chunks: only the changed files travel, the rest is hard-linked on the board.
    make_app(isolated_store, apps_dir, widths=(8, 12))
    r, third = push(ssh, remote)
    assert r.exit_code == 0, r.output
    new_bundle = current_bundle(remote)
    assert new_bundle != bundle and not bundle.exists(), "the previous bundle is removed after the switch"
    verify(remote / "apps" / "tinyapp", kind="bundle")
    assert 0 < third["files_sent"] < third["files_total"]
    assert third["files_linked"] + third["files_sent"] == third["files_total"]
    assert (new_bundle / "repository/short/model_files/block_00.pt").stat().st_nlink >= 1
    # The saved commands of the real run are beside its record.
    records = [p.read_text() for p in (isolated_store / "deploy").rglob("commands.sh")]
    assert len(records) == 3
    assert sum("tar -x -f -" in r for r in records) == 2, "the unchanged re-push ran no transfer"


def test_dry_run_changes_nothing(ssh, apps_dir, isolated_store, tmp_path):
    remote = tmp_path / "board-data"
    make_app(isolated_store, apps_dir)
    r = runner.invoke(deploy_app, ["push", "--app", "tinyapp", "--image-source", "skip", "--dry-run",
                                   *board_args(ssh, remote)])
    assert r.exit_code == 0, r.output
    assert "tar -x -f - --no-same-owner" in r.stdout and "sha256sum -c" in r.stdout and "mv -Tf" in r.stdout
    assert "ssh -o BatchMode=yes -o StrictHostKeyChecking=yes" in r.stdout
    assert not remote.exists()


def test_no_bundle(ssh, apps_dir, tmp_path):
    r = runner.invoke(deploy_app, ["push", "--app", "nosuchapp", "--image-source", "skip",
                                   *board_args(ssh, tmp_path / "b")])
    assert r.exit_code == 1
    assert "app nosuchapp has no deployment bundle" in r.output and "pantheon plan --setting nosuchapp" in r.output
    assert "Traceback" not in r.output


def test_push_as_typed_takes_the_only_app(ssh, apps_dir, isolated_store, tmp_path, monkeypatch):
    """`pantheon-deploy push --board HOST` (no --app): the store's only app, named on stderr."""
    monkeypatch.delenv("PANTHEON_APP", raising=False)
    remote = tmp_path / "board-data"
    make_app(isolated_store, apps_dir)
    r = runner.invoke(deploy_app, ["push", "--image-source", "skip", *board_args(ssh, remote)])
    assert r.exit_code == 0, r.output
    assert "app tinyapp (the only app in" in r.output
    verify(remote / "apps" / "tinyapp", kind="bundle")
    # --data-root names another store: its only app is taken.
    other = tmp_path / "other-store"
    make_app(other, apps_dir, "otherapp")
    r = runner.invoke(deploy_app, ["--data-root", str(other), "push", "--image-source", "skip",
                                   *board_args(ssh, remote)])
    assert r.exit_code == 0, r.output
    assert "app otherapp (the only app in" in r.output
    verify(remote / "apps" / "otherapp", kind="bundle")


def _partial_dirs(remote: Path):
    return list((remote / "apps" / ".bundles").glob("tinyapp@*.partial"))


def _expected_resend(remote: Path, store_root: Path, app_file: Path) -> int:
    """Bytes a re-push must send: files not already complete in the partial upload (or the old bundle)."""
    from pantheon.deploy.push import local_bundle

    bundle = local_bundle("tinyapp", Store(store_root))
    have = set()
    for d in _partial_dirs(remote) + [current_bundle(remote)]:
        for p in d.rglob("*"):
            if p.is_file():
                have.add(sha256_file(p))
    return sum(f.size for f in bundle.files if f.sha256 not in have)


def _remote_tar(partial_glob_root: Path):
    for proc in psutil.process_iter(["cmdline"]):
        cmd = proc.info["cmdline"] or []
        if cmd[:2] == ["tar", "-x"] and any(".partial" in c and str(partial_glob_root) in c for c in cmd):
            return proc
    return None


def test_killed_push_keeps_previous_bundle_and_rerun_completes(ssh, apps_dir, isolated_store, tmp_path):
    """Kill the pushing process mid-transfer (SIGKILL to its process group), then push again."""
    remote = tmp_path / "board-data"
    paths = make_app(isolated_store, apps_dir)
    r, _ = push(ssh, remote)
    assert r.exit_code == 0, r.output
    old = current_bundle(remote)
    old_manifest = verify(remote / "apps" / "tinyapp")
    make_app(isolated_store, apps_dir, big=1024)  # + a ~38 MB chunk
    cmd = [sys.executable, "-m", "pantheon.deploy.cli", "push", "--app", "tinyapp", "--image-source", "skip",
           *board_args(ssh, remote)]
    proc = subprocess.Popen(cmd, env=dict(os.environ), start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    tar = None
    deadline = time.monotonic() + 60
    # Freeze the board-side tar once the first file of the upload is complete: the transfer is then
    # certainly mid-way, whatever the speed of this machine; then kill the client and let tar see EOF.
    while time.monotonic() < deadline and proc.poll() is None:
        parts = _partial_dirs(remote)
        if parts and (parts[0] / "repository/large/config.pbtxt").exists():
            tar = _remote_tar(remote)
            if tar is not None:
                tar.suspend()
                break
        time.sleep(0.002)
    assert tar is not None, f"the push ended before it could be interrupted: {proc.stderr.read()!r}"
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    tar.resume()
    tar.wait(timeout=30)
    assert current_bundle(remote) == old, "an interrupted push must leave the previous bundle in place"
    assert verify(remote / "apps" / "tinyapp").files == old_manifest.files
    assert _partial_dirs(remote), "the partial upload is kept for the re-run"
    expected = _expected_resend(remote, isolated_store, paths["app_file"])

    r, again = push(ssh, remote)
    assert r.exit_code == 0, r.output
    assert again["bytes_sent"] == expected < again["bytes_total"]
    assert again["files_kept"] + again["files_linked"] > 0
    verify(remote / "apps" / "tinyapp", kind="bundle")
    assert not _partial_dirs(remote) and not old.exists()


def test_killed_transfer_subprocess_fails_cleanly(ssh, apps_dir, isolated_store, tmp_path):
    """Kill the local ssh that carries the upload: one clear error, previous bundle intact."""
    remote = tmp_path / "board-data"
    make_app(isolated_store, apps_dir)
    assert push(ssh, remote)[0].exit_code == 0
    old = current_bundle(remote)
    make_app(isolated_store, apps_dir, big=1024)
    me = psutil.Process()
    killed = []

    def killer():
        end = time.monotonic() + 60
        while time.monotonic() < end and not killed:
            for child in me.children(recursive=True):
                try:
                    cmd = child.cmdline()
                except psutil.Error:
                    continue
                if cmd and cmd[0] == "ssh" and any("tar -x -f -" in c for c in cmd):
                    parts = _partial_dirs(remote)
                    if parts and (parts[0] / "repository/large/config.pbtxt").exists():
                        child.kill()
                        killed.append(child.pid)
                        return
            time.sleep(0.002)

    t = threading.Thread(target=killer)
    t.start()
    r, _ = push(ssh, remote)
    t.join()
    assert killed, "the transfer finished before it could be killed"
    assert r.exit_code == 1
    assert "upload to board" in r.output and "the previous bundle is untouched" in r.output
    assert "Traceback" not in r.output
    assert current_bundle(remote) == old
    verify(remote / "apps" / "tinyapp")
    r, again = push(ssh, remote)
    assert r.exit_code == 0 and 0 < again["bytes_sent"] < again["bytes_total"] + 1
    verify(remote / "apps" / "tinyapp", kind="bundle")


def test_permission_denied_on_board(ssh, apps_dir, isolated_store, tmp_path):
    """A user who may not write the data root: one line naming the fix; the root's bundle intact."""
    if not ssh.get("nosudo_user"):
        pytest.skip("the loopback sshd has no unprivileged user (older .ci/sshd.sh)")
    remote = tmp_path / "board-data"
    make_app(isolated_store, apps_dir)
    assert push(ssh, remote)[0].exit_code == 0
    old = current_bundle(remote)
    make_app(isolated_store, apps_dir, widths=(8, 16))
    r, _ = push(ssh, remote, user=ssh["nosudo_user"])
    assert r.exit_code == 1, r.output
    assert "Permission denied" in r.output and "may not write" in r.output and "--remote-root" in r.output
    assert current_bundle(remote) == old
    verify(remote / "apps" / "tinyapp")


@pytest.fixture
def tiny_tmpfs(tmp_path):
    mnt = tmp_path / "tiny"
    mnt.mkdir()
    res = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=3m", "tmpfs", str(mnt)], capture_output=True, text=True)
    if res.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here (needs root/CAP_SYS_ADMIN): {res.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def test_disk_full_on_board(ssh, apps_dir, isolated_store, tiny_tmpfs):
    remote = tiny_tmpfs / "data"
    make_app(isolated_store, apps_dir)
    assert push(ssh, remote)[0].exit_code == 0
    old = current_bundle(remote)
    make_app(isolated_store, apps_dir, big=512)  # ~9.4 MB: does not fit in 3 MB
    r, _ = push(ssh, remote)
    assert r.exit_code == 1, r.output
    assert "No space left on device" in r.output and "disk is full" in r.output
    assert current_bundle(remote) == old
    verify(remote / "apps" / "tinyapp")
