"""pantheon-deploy security and connection errors: board names, host keys, keys, unreachable boards."""

from __future__ import annotations

import shlex
import time

import pytest
from _deploy import board_args, make_board, ssh_settings
from typer.testing import CliRunner

from pantheon.deploy.cli import app as deploy_app
from pantheon.deploy.ssh import Recorder, Session, check_host, parse_board
from pantheon.errors import HostKeyError, SSHError, UsageError

runner = CliRunner()


@pytest.mark.parametrize("spec", ["-oProxyCommand=touch /tmp/pwned", "--help", "host;rm -rf /", "a b", "$(id)",
                                  "host`id`", "host|cat", "root@-x", "x\nY", ""])
def test_bad_board_names_are_refused_before_any_ssh(spec, tmp_path):
    with pytest.raises(UsageError):
        parse_board(spec)
    r = runner.invoke(deploy_app, ["status", "--board", spec, "--known-hosts", str(tmp_path / "kh")])
    assert r.exit_code == 2, r.output
    assert "refusing board" in r.output or "bad port" in r.output or "a host" in r.output
    assert not (tmp_path / "kh").exists()


def test_good_board_names():
    b = parse_board("nvidia@192.168.55.1:2222")
    assert (b.user, b.host, b.port) == ("nvidia", "192.168.55.1", 2222)
    assert parse_board("[fe80::1]:22").host == "fe80::1"
    assert check_host("jetson-nx.lab_1") == "jetson-nx.lab_1"
    with pytest.raises(UsageError):
        parse_board("nvidia@host", remote_root="/data/../etc")
    with pytest.raises(UsageError):
        parse_board("host", user="a;b")
    with pytest.raises(UsageError):
        parse_board("host", env={"BAD-NAME": "x"})


def test_ssh_command_line_policy(tmp_path):
    """Keys only, strict host keys, remote values quoted: what every ssh call carries."""
    key = tmp_path / "id"
    key.write_text("not a real key")
    b = parse_board("nvidia@10.0.0.7", identity=str(key), known_hosts=str(tmp_path / "kh"),
                    env={"PANTHEON_BOARD_ROOT": "/tmp/x y"})
    s = Session(b, Recorder())
    argv = s.argv("true")
    joined = " ".join(argv)
    assert "BatchMode=yes" in joined and "StrictHostKeyChecking=yes" in joined
    assert f"UserKnownHostsFile={tmp_path / 'kh'}" in joined and "IdentitiesOnly=yes" in joined
    assert "Password" not in joined and "sshpass" not in joined
    assert argv[argv.index("--") + 1] == "10.0.0.7"  # the host always follows "--"
    assert s.wrap("echo ok") == "export PANTHEON_BOARD_ROOT='/tmp/x y'; echo ok"
    b2 = parse_board("10.0.0.7", accept_new_host_key=True)
    assert "StrictHostKeyChecking=accept-new" in " ".join(Session(b2).argv("true"))
    shown = s.display("cat /etc/nv_tegra_release")
    assert shlex.split(shown)[-1] == "cat /etc/nv_tegra_release"


@pytest.mark.ssh
def test_unknown_host_key_then_accept_new(tmp_path):
    ssh = ssh_settings()
    kh = tmp_path / "known_hosts"
    kh.write_text("")
    args = ["status", "--board", f"{ssh['user']}@{ssh['host']}:{ssh['port']}", "--identity", ssh["key"],
            "--known-hosts", str(kh), "--remote-root", str(tmp_path / "r")]
    r = runner.invoke(deploy_app, args)
    assert r.exit_code == 1
    assert "unknown host key" in r.output and "--accept-new-host-key" in r.output and "ssh-keyscan" in r.output
    assert kh.read_text() == ""
    with pytest.raises(HostKeyError):
        Session(make_board(ssh, tmp_path, known_hosts=str(kh))).connect()
    # Accepting records the key; afterwards strict checking passes with it.
    s = Session(make_board(ssh, tmp_path, known_hosts=str(kh), accept_new_host_key=True))
    s.connect()
    s.close()
    assert "ssh-ed25519" in kh.read_text()
    with Session(make_board(ssh, tmp_path, known_hosts=str(kh))) as s2:
        assert s2.run("echo ok").stdout.strip() == "ok"


@pytest.mark.ssh
def test_changed_host_key_is_refused(tmp_path):
    ssh = ssh_settings()
    import subprocess

    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    kh = tmp_path / "known_hosts"
    kh.write_text(f"[{ssh['host']}]:{ssh['port']} " + " ".join(other.with_suffix(".pub").read_text().split()[:2]) + "\n")
    with pytest.raises(HostKeyError, match="CHANGED"):
        Session(make_board(ssh, tmp_path, known_hosts=str(kh))).connect()


@pytest.mark.ssh
def test_wrong_key_is_an_auth_failure(tmp_path):
    ssh = ssh_settings()
    import subprocess

    wrong = tmp_path / "wrong"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(wrong)], check=True)
    r = runner.invoke(deploy_app, ["status", *board_args(ssh, tmp_path / "r")[:2], "--identity", str(wrong),
                                   "--known-hosts", ssh["known_hosts"]])
    assert r.exit_code == 1
    assert "authentication failed" in r.output and str(wrong) in r.output and "ssh-copy-id" in r.output


@pytest.mark.ssh
def test_unreachable_board_is_quick_and_clear(tmp_path):
    ssh = ssh_settings()
    t0 = time.monotonic()
    with pytest.raises(SSHError, match="cannot reach board") as err:
        Session(make_board(ssh, tmp_path, port=1, connect_timeout=2)).connect()
    assert "Connection refused" in str(err.value) and time.monotonic() - t0 < 10
    # An address that does not answer at all (TEST-NET-1, RFC 5737): the connect timeout applies.
    t0 = time.monotonic()
    r = runner.invoke(deploy_app, ["status", "--board", "root@192.0.2.1", "--connect-timeout", "1",
                                   "--known-hosts", ssh["known_hosts"], "--identity", ssh["key"]])
    assert r.exit_code == 1 and "cannot reach board 192.0.2.1" in r.output
    assert time.monotonic() - t0 < 15


@pytest.mark.parametrize("spec", ["10.0.0.1\n", "nvidia\n@10.0.0.1", "10.0.0.1:22\n", "host\n", "10.0.0.1:22.7",
                                  "10.0.0.1:0", "10.0.0.1:65536"])
def test_trailing_newlines_and_bad_ports_are_refused(spec, tmp_path):
    """``$`` alone matches before a final newline: every pattern is a full match."""
    with pytest.raises(UsageError):
        parse_board(spec)
    r = runner.invoke(deploy_app, ["status", "--board", spec, "--known-hosts", str(tmp_path / "kh")])
    assert r.exit_code == 2 and "Traceback" not in r.output, r.output


def test_inventory_values_are_checked(tmp_path):
    from _deploy import write_inventory

    from pantheon.deploy.fleet import load_inventory

    for entry, fragment in (({"host": "10.0.0.1", "env": {"FOO\n": "x"}}, "bad environment variable name"),
                            ({"host": "10.0.0.1", "port": 22.7}, "bad port 22.7"),
                            ({"host": "10.0.0.1", "port": True}, "bad port True"),
                            ({"host": "10.0.0.1", "port": "22\n"}, "bad port"),
                            ({"host": "10.0.0.1", "user": "nvidia\n"}, "refusing user"),
                            ({"host": "10.0.0.1", "remote_root": "/data\n"}, "bad remote path"),
                            ({"host": "10.0.0.1", "name": "nx\n"}, "bad board name")):
        inv = write_inventory(tmp_path / "boards.yaml", [entry])
        with pytest.raises(UsageError, match=fragment):
            load_inventory(inv)
    # A whole-number port from YAML stays an int, and ssh gets exactly that.
    inv = write_inventory(tmp_path / "boards.yaml", [{"host": "10.0.0.1", "port": "2222"}])
    (b,) = load_inventory(inv)
    assert b.port == 2222 and Session(b).argv("true")[Session(b).argv("true").index("-p") + 1] == "2222"


@pytest.mark.parametrize("value", ["-1", "0", "3601"])
def test_connect_timeout_is_checked(value, tmp_path):
    r = runner.invoke(deploy_app, ["status", "--board", "10.0.0.1", "--connect-timeout", value,
                                   "--known-hosts", str(tmp_path / "kh")])
    assert r.exit_code == 2 and "bad --connect-timeout" in r.output, r.output


def test_ipv6_boards():
    b = parse_board("::1")
    assert (b.host, b.name, b.address) == ("::1", "ipv6__1", "[::1]")
    b = parse_board("nvidia@[fe80::1]:22")
    assert (b.user, b.host, b.port, b.address) == ("nvidia", "fe80::1", 22, "nvidia@[fe80::1]:22")
    argv = Session(b).argv("true")
    assert argv[argv.index("--") + 1] == "fe80::1"
    # The address survives the terminal (rich would read "[fe80::1]" as a markup tag).
    r = runner.invoke(deploy_app, ["status", "--board", "nvidia@[fe80::1]:22", "--connect-timeout", "1",
                                   "--known-hosts", "/nonexistent/kh", "--accept-new-host-key"])
    assert r.exit_code == 1
    assert "nvidia@[fe80::1]:22" in r.output and "nvidia@:22" not in r.output, r.output
