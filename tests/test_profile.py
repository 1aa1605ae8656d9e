"""`pantheon profile` against a real profiler-server process, with real TorchScript variants."""

from __future__ import annotations

import csv
import io
import json
import threading
import time

import pytest
from _profiling import make_variants, param_mb, server

from pantheon.errors import ArtifactError, AuthError, ChecksumError, ConnectionLostError, FormatError
from pantheon.formats import store
from pantheon.offline import profile as prof

pytestmark = pytest.mark.filterwarnings("ignore::FutureWarning")
ACC = [0.5, 0.8, 0.9]


@pytest.fixture(scope="module")
def srv(tmp_path_factory):
    with server(tmp_path_factory.mktemp("srv"), "--warmup", "1", "--repeat", "5") as s:
        yield s


def _csv_rows(path):
    return list(csv.DictReader(io.StringIO(path.read_text())))


def test_profile_through_the_server_writes_profile_csv_and_updates_the_manifest(srv, tmp_path, capsys, monkeypatch):
    vdir, blocks, branches = make_variants(tmp_path / "tiny")
    before = store.read_manifest(vdir)
    res = prof.profile(weights=vdir, host="127.0.0.1", port=srv.port, accuracies=ACC)
    assert capsys.readouterr().out == ""  # the library returns the profile; `pantheon profile` prints it
    from pantheon.cli.offline import print_profile

    monkeypatch.setenv("COLUMNS", "200")
    print_profile(res)
    shown = capsys.readouterr()
    assert f"tiny on {res.device} (127.0.0.1:{srv.port})" in shown.out
    to_exit = res.rows[0].block_ms + res.rows[1].block_ms + res.rows[1].branch_ms
    assert f"│ 1    │ {res.rows[1].block_ms:.3f} " in shown.out and f" {to_exit:.3f} " in shown.out
    assert f"wrote {vdir / 'profile.csv'}" in shown.err

    text = (vdir / "profile.csv").read_text()
    assert text.splitlines()[0] == "block latency,branch latency,block mem,branch mem,accuracy"
    rows = _csv_rows(vdir / "profile.csv")
    assert len(rows) == 3
    for j, row in enumerate(rows):
        # memory = parameters + buffers of the modules we scripted (computed independently here)
        assert float(row["block mem"]) == pytest.approx(param_mb(blocks[j]), rel=1e-5)
        assert float(row["branch mem"]) == pytest.approx(param_mb(branches[j]), rel=1e-5)
        assert float(row["accuracy"]) == pytest.approx(ACC[j])
        assert float(row["block latency"]) > 0 and float(row["branch latency"]) > 0
    # latency in ms = the server's mean in us / 1000
    t0 = res.timings["block_00.pt"]
    assert float(rows[0]["block latency"]) == pytest.approx(t0["mean_us"] / 1000, rel=1e-5)
    assert t0["repeat"] == 5 and res.source == f"127.0.0.1:{srv.port}"

    m = store.verify(vdir, kind="variants", required=["profile.csv", "profile.json", "block_00.pt"])
    assert m.meta["profile"]["device"].startswith("cpu")
    assert m.files["block_00.pt"].sha256 == before.files["block_00.pt"].sha256
    record = json.loads((vdir / "profile.json").read_text())
    assert set(record["timings_us"]) == {f"{k}_{j:02d}.pt" for k in ("block", "branch") for j in range(3)}
    # the server saw the input shape of each item: block j gets block j-1's output
    logs = srv.logs()
    assert "block_00.pt [1, 3, 16, 16]" in logs and "block_01.pt [1, 8, 16, 16]" in logs
    assert "branch_01.pt [1, 16, 8, 8]" in logs

    # what we wrote is what plan reads
    back = prof.read_profile_csv(vdir / "profile.csv", 3)
    assert [r.accuracy for r in back] == pytest.approx(ACC)


def test_local_profile_uses_the_same_timing_code(tmp_path, monkeypatch):
    vdir, _, _ = make_variants(tmp_path / "tiny", n_blocks=2)
    calls = []
    real = prof.timing.time_module

    def spy(*a, **kw):
        calls.append(kw.get("repeat"))
        return real(*a, **kw)

    monkeypatch.setattr(prof.timing, "time_module", spy)
    res = prof.profile(weights=vdir, local=True, repeat=4, warmup=1, accuracies=[0.7, 0.9])
    assert calls == [4, 4, 4, 4] and res.source == "local"
    assert len(prof.read_profile_csv(vdir / "profile.csv", 2)) == 2


def test_missing_variant_files_are_a_clear_error(tmp_path):
    vdir, _, _ = make_variants(tmp_path / "tiny", skip=("branch_01.pt",))
    with pytest.raises(ArtifactError, match="missing branch_01.pt"):
        prof.load_variants(vdir)
    vdir2, _, _ = make_variants(tmp_path / "tiny2")
    (vdir2 / "block_02.pt").unlink()  # listed in the manifest, then deleted
    with pytest.raises(ChecksumError, match="block_02.pt"):
        prof.load_variants(vdir2)
    with pytest.raises(ArtifactError, match="does not exist"):
        prof.load_variants(tmp_path / "nope")


def test_cli_missing_files_is_one_red_line(tmp_path):
    from typer.testing import CliRunner

    from pantheon.cli import app

    vdir, _, _ = make_variants(tmp_path / "tiny", skip=("block_01.pt",))
    r = CliRunner().invoke(app, ["profile", "--weights", str(vdir), "--local"])
    assert r.exit_code == 1
    assert "missing block_01.pt" in r.output and "Traceback" not in r.output


def test_server_killed_mid_profile_retries_then_fails_without_a_partial_csv(tmp_path):
    vdir, _, _ = make_variants(tmp_path / "tiny", n_blocks=4, channels=16, hw=32)
    before = (vdir / "manifest.json").read_text()
    with server(tmp_path, "--warmup", "0", "--repeat", "400") as s:

        def killer():  # kill the server once it has answered the first item
            deadline = time.monotonic() + 60
            while "mean" not in s.logs() and time.monotonic() < deadline:
                time.sleep(0.01)
            s.proc.kill()

        th = threading.Thread(target=killer)
        th.start()
        t0 = time.monotonic()
        with pytest.raises(ConnectionLostError, match="after 2 retries"):
            prof.profile(weights=vdir, port=s.port, retries=2, accuracies=[0.1, 0.2, 0.3, 0.4])
        th.join()
    assert time.monotonic() - t0 < 60  # bounded
    assert not (vdir / "profile.csv").exists()
    assert (vdir / "manifest.json").read_text() == before
    assert not [p for p in vdir.parent.iterdir() if p.name.startswith(".tiny")]  # no temp dirs left


def test_wrong_token_is_an_auth_error_and_writes_nothing(tmp_path):
    vdir, _, _ = make_variants(tmp_path / "tiny", n_blocks=2)
    with server(tmp_path, "--token", "right") as s:
        with pytest.raises(AuthError, match="token"):
            prof.profile(weights=vdir, port=s.port, token="wrong", accuracies=[0.5, 0.6])
    assert not (vdir / "profile.csv").exists()


def test_nobody_listening_is_connection_lost(tmp_path):
    vdir, _, _ = make_variants(tmp_path / "tiny", n_blocks=2)
    import socket

    with socket.socket() as s:  # a port that is surely closed
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(ConnectionLostError, match="profiler-server"):
        prof.profile(weights=vdir, port=port, retries=1, accuracies=[0.5, 0.6])


@pytest.mark.parametrize(
    "text, match",
    [
        ("block latency,branch latency,block mem,accuracy\n1,1,1,0.5\n", "branch mem"),
        ("block latency,branch latency,block mem,branch mem,accuracy\n1,nan,1,1,0.5\n", "nan"),
        ("block latency,branch latency,block mem,branch mem,accuracy\n1,1,1,1,1.5\n", "out of range"),
        ("block latency,branch latency,block mem,branch mem,accuracy\n1,x,1,1,0.5\n", "not a number"),
        ("", "empty"),
    ],
)
def test_bad_profile_csv_is_a_format_error(tmp_path, text, match):
    p = tmp_path / "profile.csv"
    p.write_text(text)
    with pytest.raises(FormatError, match=match):
        prof.read_profile_csv(p)


def test_profile_csv_header_with_spaces_and_row_count(tmp_path):
    p = tmp_path / "profile.csv"
    p.write_text("block latency, branch latency, block mem, branch mem, accuracy\n1,2,3,4,0.5\n")
    assert prof.read_profile_csv(p)[0].branch_mb == 4
    with pytest.raises(FormatError, match="1 rows but the variants have 3 blocks"):
        prof.read_profile_csv(p, 3)


def test_accuracy_of_every_exit_on_the_zoo_test_split(tmp_path):
    """The real accuracy path: zoo test split + zoo metric, blocks 0..j then branch j."""
    import torch

    from pantheon.zoo import get_task

    vdir, blocks, branches = make_variants(tmp_path / "d", "digits_resnet18", n_blocks=3, hw=32)
    v = prof.load_variants(vdir)
    got = prof.task_accuracies(v, "digits_resnet18", batch_size=50, max_samples=120)
    # independent reference with the original nn.Modules
    ds = get_task("digits_resnet18").load_split("test")
    x = torch.stack([ds[i][0] for i in range(120)])
    y = torch.tensor([int(ds[i][1]) for i in range(120)])
    want, h = [], x
    with torch.no_grad():
        for b, e in zip(blocks, branches):
            h = b.eval()(h)
            want.append(int((e.eval()(h).argmax(1) == y).sum()) / len(y))
    assert got == pytest.approx(want, abs=1e-9)
    assert all(0.0 <= a <= 1.0 for a in got)


def test_cli_profile_local_end_to_end(tmp_path):
    from typer.testing import CliRunner

    from pantheon.cli import app

    vdir, _, _ = make_variants(tmp_path / "d", "digits_mobilenet_v2", n_blocks=2, hw=32)
    r = CliRunner().invoke(app, ["profile", "--weights", str(vdir), "--local", "--repeat", "3", "--max-samples", "64"])
    assert r.exit_code == 0, r.output
    assert "digits_mobilenet_v2" in r.output and "accuracy" in r.output
    rows = prof.read_profile_csv(vdir / "profile.csv", 2)
    assert all(r.block_ms > 0 for r in rows)
    r = CliRunner().invoke(app, ["profile", "--weights", str(vdir), "--task", "digits_resnet18", "--local"])
    assert r.exit_code == 2 and "holds variants of digits_mobilenet_v2" in r.output
