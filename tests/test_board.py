"""Platform facts (pantheon.platform.jetson): parsers on real sample outputs, base images, compatibility."""

from __future__ import annotations

import subprocess

import pytest
from _deploy import FIXTURES, stand_in_board_root

from pantheon.errors import BoardError, UsageError
from pantheon.platform import jetson as pb

# Real outputs, as quoted in the module (Xavier NX JetPack 5.1.1, Orin, TX2).
NX_RELEASE = ("# R35 (release), REVISION: 3.1, GCID: 32790763, BOARD: t186ref, EABI: aarch64, "
              "DATE: Fri Mar 17 22:36:03 UTC 2023")
R36_RELEASE = ("# R36 (release), REVISION: 4.3, GCID: 38968081, BOARD: generic, EABI: aarch64, "
               "DATE: Wed Jan  8 01:49:37 UTC 2025")
NVP_QUERY = "NVPM WARN: fan mode is not set!\nNV Power Mode: MODE_20W_6CORE\n8\n"
NVP_QUERY_VERBOSE = """NVPM VERB: Config file: /etc/nvpmodel.conf
NVPM VERB: parsing done for /etc/nvpmodel.conf
NV Fan Mode:quiet
NVPM VERB: Current mode: NV Power Mode: MODE_15W_6CORE
2
NVPM VERB: PARAM CPU_ONLINE: ARG CORE_0: PATH /sys/devices/system/cpu/cpu0/online: REAL_VAL: 1 CONF_VAL: 1
"""
NVP_MODES_TX2 = """NVPM VERB: parsing done for /etc/nvpmodel.conf
NVPM VERB: Current mode: NV Power Mode: MAXN
0
NVPM VERB: PM_CONFIG: DEFAULT=MAXP_CORE_ARM(3)
NVPM VERB: ACTIVE=MAXN(0)
NVPM VERB: POWER_MODEL: ID=0 NAME=MAXN
NVPM VERB: /sys/devices/system/cpu/cpu1/online 1
NVPM VERB: POWER_MODEL: ID=3 NAME=MAXP_CORE_ARM
NVPM VERB: POWER_MODEL: ID=1 NAME=MAXQ
"""
CLOCKS_ORIN = """SOC family:tegra234  Machine:Jetson AGX Orin
Online CPUs: 0-11
cpu0: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=1190400 IdleStates: WFI=1 c7=1
cpu1: Online=1 Governor=schedutil MinFreq=729600 MaxFreq=2201600 CurrentFreq=2201600 IdleStates: WFI=1 c7=1
GPU MinFreq=306000000 MaxFreq=1300500000 CurrentFreq=306000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=2133000000 FreqOverride=0
FAN Dynamic Speed control=active hwmon2_pwm1=55
NV Power Mode: MAXN
"""
CLOCKS_LOCKED = """cpu0:  Governor=schedutil MinFreq=1728000 MaxFreq=1728000 CurrentFreq=1728000 IdleStates: WFI=0 c7=0
GPU MinFreq=1020000000 MaxFreq=1020000000 CurrentFreq=1020000000
EMC MinFreq=204000000 MaxFreq=3199000000 CurrentFreq=3199000000 FreqOverride=1
NV Power Mode: MAXN_SUPER
"""


def test_nv_tegra_release():
    assert pb.parse_nv_tegra_release(NX_RELEASE) == "35.3.1"
    assert pb.parse_nv_tegra_release(R36_RELEASE) == "36.4.3"
    assert pb.parse_nv_tegra_release("# R36 (release), REVISION: 4, GCID: 1") == "36.4.0"
    assert pb.parse_nv_tegra_release("Debian GNU/Linux 12") is None
    assert pb.parse_nv_tegra_release("") is None


def test_dpkg_and_jetpack():
    assert pb.l4t_from_dpkg("nvidia-l4t-core\t35.3.1-20230319081403\n") == "35.3.1"
    assert pb.l4t_from_dpkg("dpkg-query: no packages found matching nvidia-l4t-core") is None
    assert pb.jetpack_for("35.3.1") == "5.1.1" and pb.jetpack_for("r36.4.3") == "6.2"
    assert pb.jetpack_for("34.1.0") is None


def test_nvpmodel_query_and_modes():
    assert pb.parse_nvpmodel_query(NVP_QUERY) == pb.PowerMode(8, "MODE_20W_6CORE")
    assert pb.parse_nvpmodel_query(NVP_QUERY_VERBOSE) == pb.PowerMode(2, "MODE_15W_6CORE")
    assert pb.parse_nvpmodel_query("NVPM ERROR: failed") is None
    modes = pb.parse_nvpmodel_modes(NVP_MODES_TX2)
    assert [(m.id, m.name) for m in modes.modes] == [(0, "MAXN"), (1, "MAXQ"), (3, "MAXP_CORE_ARM")]
    assert modes.default == pb.PowerMode(3, "MAXP_CORE_ARM")
    assert modes.resolve("3").name == "MAXP_CORE_ARM"
    assert modes.resolve("maxq").id == 1
    with pytest.raises(UsageError, match="0=MAXN, 1=MAXQ, 3=MAXP_CORE_ARM"):
        modes.resolve("8")


def test_jetson_clocks_show():
    c = pb.parse_jetson_clocks_show(CLOCKS_ORIN)
    assert c["gpu"] == {"min": 306000000, "max": 1300500000, "current": 306000000}
    assert c["emc"]["override"] is False and c["cpus"]["1"]["max"] == 2201600
    assert c["power_mode"] == "MAXN" and c["locked"] is False
    locked = pb.parse_jetson_clocks_show(CLOCKS_LOCKED)
    assert locked["locked"] is True and locked["power_mode"] == "MAXN_SUPER"
    assert locked["cpus"]["0"]["online"] is True  # Orin Nano prints no Online= field
    assert pb.parse_jetson_clocks_show("Error: You must be root")["locked"] is None


@pytest.mark.parametrize("release,base", [
    ("35.2.1", "nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3"),
    ("35.3.1", "nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3"),
    ("35.4.1", "dustynv/l4t-pytorch:r35.4.1"),
    ("36.3.0", "dustynv/l4t-pytorch:r36.2.0"),
    ("36.4.3", "dustynv/l4t-pytorch:r36.4.0"),
])
def test_base_for_release(release, base):
    assert pb.l4t_pytorch_base_for(release) == base
    image_release = base.split(":r", 1)[1].split("-")[0]  # the base's own L4T, from its tag
    assert pb.image_compatible(release, image_release)  # the chosen base always runs on the board


def test_base_refusals_and_override(monkeypatch):
    with pytest.raises(BoardError, match="too old"):
        pb.l4t_pytorch_base_for("32.7.1")
    with pytest.raises(BoardError, match="--base-image"):
        pb.l4t_pytorch_base_for("38.2.0")
    monkeypatch.setenv(pb.ENV_BASE_IMAGE, "my/l4t:custom")
    assert pb.l4t_pytorch_base_for("32.7.1") == "my/l4t:custom"


def test_image_compatibility_rules():
    assert pb.image_compatible("35.3.1", "35.2.1")  # any r35 on r35
    assert pb.image_compatible("36.4.3", "36.4.0")  # same side of 36.4
    assert pb.image_compatible("36.3.0", "36.2.0")
    assert not pb.image_compatible("36.4.0", "36.2.0")
    assert not pb.image_compatible("35.3.1", "36.2.0")
    assert not pb.image_compatible("32.7.1", "32.7.4")  # other majors must match exactly
    assert pb.image_compatible("32.7.1", "32.7.1")
    assert not pb.image_compatible(None, "35.2.1") and not pb.image_compatible("35.2.1", None)
    msg = pb.compatibility_problem("35.3.1", "36.2.0", "pantheon-jetson:x")
    assert "r36.2.0" in msg and "r35.3.1" in msg and "nvcr.io/nvidia/l4t-pytorch:r35.2.1-pth2.0-py3" in msg
    assert pb.compatibility_problem("35.3.1", "35.2.1", "img") is None
    assert "no org.pantheon.l4t label" in pb.compatibility_problem("35.3.1", None, "img")
    assert "no org.pantheon.l4t label" in pb.compatibility_problem("35.3.1", "", "img")  # a non-L4T base


def test_local_readers_honour_board_root(tmp_path, monkeypatch):
    root = stand_in_board_root(tmp_path / "root")
    monkeypatch.setenv(pb.ENV_BOARD_ROOT, str(root))
    for env in (pb.ENV_L4T, "L4T_VERSION", pb.ENV_MODEL, "PANTHEON_NVPMODEL"):
        monkeypatch.delenv(env, raising=False)
    assert pb.l4t_release() == "35.3.1"
    assert pb.board_model() == "NVIDIA Jetson Xavier NX Developer Kit"
    assert pb.is_jetson()
    assert pb.board_command("nvpmodel") == str(root / "usr/sbin/nvpmodel")
    assert pb.command_path("jetson_clocks") == str(root / "usr/bin/jetson_clocks")
    assert pb.board_path("/etc/nv_tegra_release") == str(root / "etc/nv_tegra_release")
    assert pb.jtop_socket() is None
    facts = pb.board_facts()  # runs the stand-in nvpmodel/jetson_clocks (as root, like on a board)
    assert facts["l4t"] == "35.3.1" and facts["jetpack"] == "5.1.1"
    assert facts["nvpmodel"] == {"id": 2, "name": "MODE_15W_6CORE"}
    assert facts["jetson_clocks"] is False
    # Environment overrides win over the files.
    monkeypatch.setenv(pb.ENV_L4T, "r36.4")
    monkeypatch.setenv(pb.ENV_MODEL, "Jetson AGX Orin")
    assert pb.l4t_release() == "36.4.0" and pb.board_model() == "Jetson AGX Orin"
    # pantheon-deploy passes the host's mode and clocks into containers (which cannot run the tools).
    monkeypatch.setenv(pb.ENV_NVPMODEL, "MODE_20W_6CORE:8")
    monkeypatch.setenv(pb.ENV_CLOCKS, "1")
    facts = pb.board_facts()
    assert facts["nvpmodel"] == {"id": 8, "name": "MODE_20W_6CORE"} and facts["jetson_clocks"] is True
    monkeypatch.setenv(pb.ENV_L4T, "banana")
    with pytest.raises(UsageError):
        pb.l4t_release()


def test_not_a_jetson(tmp_path, monkeypatch):
    monkeypatch.setenv(pb.ENV_BOARD_ROOT, str(tmp_path))
    monkeypatch.delenv(pb.ENV_L4T, raising=False)
    monkeypatch.delenv("L4T_VERSION", raising=False)
    assert pb.l4t_release() is None and not pb.is_jetson()
    assert pb.board_facts()["nvpmodel"] is None


def test_stand_in_scripts_are_labelled_and_speak_the_documented_format(tmp_path):
    """The stand-ins print what the parsers read on real boards (and say they are stand-ins)."""
    for name in ("nvpmodel", "jetson_clocks"):
        assert "STAND-IN" in (FIXTURES / "stand-in-bin" / name).read_text()
    root = stand_in_board_root(tmp_path / "root")
    run = lambda *a: subprocess.run([str(root / a[0]), *a[1:]], capture_output=True, text=True, check=True).stdout  # noqa: E731
    assert pb.parse_nvpmodel_modes(run("usr/sbin/nvpmodel", "-p", "--verbose")).default.id == 2
    run("usr/sbin/nvpmodel", "-m", "8")
    assert pb.parse_nvpmodel_query(run("usr/sbin/nvpmodel", "-q")) == pb.PowerMode(8, "MODE_20W_6CORE")
    assert pb.parse_jetson_clocks_show(run("usr/bin/jetson_clocks", "--show"))["locked"] is False
    run("usr/bin/jetson_clocks")
    assert pb.parse_jetson_clocks_show(run("usr/bin/jetson_clocks", "--show"))["locked"] is True


def test_facts_in_a_container_without_the_host_tools(tmp_path, monkeypatch):
    """What compose's bench service sees: no nvpmodel/jetson_clocks, /proc/device-tree masked; the host's
    files mounted at /run/pantheon/host, clock values from /sys."""
    root = stand_in_board_root(tmp_path / "root")
    for f in ("usr/sbin/nvpmodel", "usr/bin/jetson_clocks", "proc/device-tree/model"):
        (root / f).unlink()
    for env in (pb.ENV_L4T, "L4T_VERSION", pb.ENV_MODEL, pb.ENV_NVPMODEL, pb.ENV_CLOCKS):
        monkeypatch.delenv(env, raising=False)
    monkeypatch.setenv(pb.ENV_BOARD_ROOT, str(root))
    assert pb.board_facts()["model"] is None and pb.board_facts()["nvpmodel"] is None
    host = root / pb.HOST_FACTS_DIR.lstrip("/")
    host.mkdir(parents=True)
    (host / "device-tree-model").write_text("NVIDIA Jetson Xavier NX Developer Kit\x00")
    (host / "nvpmodel-status").write_text("pmode:0008 fmode:quiet\n")  # /var/lib/nvpmodel/status
    (host / "nvpmodel.conf").write_text("< POWER_MODEL ID=2 NAME=MODE_15W_6CORE >\n"
                                        "< POWER_MODEL ID=8 NAME=MODE_20W_6CORE >\n")
    for cpu, (lo, hi) in {"cpu0": (1907200, 1907200), "cpu1": (1907200, 1907200)}.items():
        d = root / "sys/devices/system/cpu" / cpu / "cpufreq"
        d.mkdir(parents=True)
        for k, v in (("cur", hi), ("min", lo), ("max", hi)):
            (d / f"scaling_{k}_freq").write_text(f"{v}\n")
    gpu = root / "sys/class/devfreq/17000000.gv11b"
    for k, v in (("cur", 1109250000), ("min", 1109250000), ("max", 1109250000)):
        (gpu / f"{k}_freq").write_text(f"{v}\n")
    monkeypatch.setenv("PANTHEON_GIT_COMMIT", "0123456789ab")
    facts = pb.board_facts()
    assert facts["model"] == "NVIDIA Jetson Xavier NX Developer Kit"
    assert facts["nvpmodel"] == {"id": 8, "name": "MODE_20W_6CORE"}
    assert facts["jetson_clocks"] is True  # every min == max, read from /sys
    assert facts["clock_values"]["gpu"] == {"cur": 1109250000, "min": 1109250000, "max": 1109250000}
    assert facts["clock_values"]["cpus"]["cpu1"]["cur"] == 1907200
    # Unpinned GPU: not locked.
    (gpu / "min_freq").write_text("114750000\n")
    assert pb.board_facts()["jetson_clocks"] is False
    sw = facts["software"]
    assert sw["kernel"] and sw["python"] and sw["packages"]["pyyaml"] and sw["image"]["commit"] == "0123456789ab"
