"""Telemetry backends against the fake Jetson board root (a stand-in, see its README) and this machine."""

from __future__ import annotations

import json
import shutil
import socket
import time
from pathlib import Path

import pytest

from pantheon.errors import TelemetryError
from pantheon.platform import jetson
from pantheon.platform import telemetry as tm
from pantheon.platform.telemetry import jtop, sysfs
from pantheon.platform.telemetry.__main__ import main as telemetry_main

FIXTURE = Path(__file__).parent / "fixtures" / "board_root"
HWMON = "sys/bus/i2c/devices/7-0040/hwmon/hwmon4"


@pytest.fixture
def board(tmp_path, monkeypatch):
    """A private copy of the fake board root, set as PANTHEON_BOARD_ROOT."""
    root = tmp_path / "board"
    shutil.copytree(FIXTURE, root)
    monkeypatch.setenv(jetson.ENV_BOARD_ROOT, str(root))
    return root


@pytest.fixture
def bare_root(tmp_path, monkeypatch):
    """A root with no Jetson files at all (a desktop or CI machine seen through the prefix)."""
    root = tmp_path / "bare"
    root.mkdir()
    monkeypatch.setenv(jetson.ENV_BOARD_ROOT, str(root))
    return root


def _num(path: Path) -> float:
    return float(path.read_text().strip("\x00\n "))


def _rail_mw(root: Path, n: int) -> float:
    return _num(root / HWMON / f"in{n}_input") * _num(root / HWMON / f"curr{n}_input") / 1000


def test_sysfs_reads_gpu_load_rails_and_temperatures(board):
    s = tm.SysfsSampler()
    got = s.sample()
    assert got["gpu_load_pct"] == pytest.approx(_num(board / "sys/class/devfreq/17000000.gv11b/device/load") / 10)
    for n, label in [(1, "vdd_in"), (2, "vdd_cpu_gpu_cv"), (3, "vdd_soc")]:
        assert got[f"power_{label}_mw"] == pytest.approx(_rail_mw(board, n), abs=0.1)
    # VDD_IN is the module's input: it is the total, not the sum of the rails.
    assert got["power_mw"] == pytest.approx(_rail_mw(board, 1), abs=0.1)
    assert not any("shunt" in k for k in got)  # channel 7 skipped
    assert got["temp_cpu_c"] == pytest.approx(_num(board / "sys/class/thermal/thermal_zone0/temp") / 1000)
    assert {"temp_gpu_c", "temp_ao_c"} <= set(got)


def test_sysfs_reads_live_values_not_a_snapshot(board):
    s = tm.SysfsSampler()
    before = s.sample()
    (board / "sys/class/devfreq/17000000.gv11b/device/load").write_text("912\n")
    (board / HWMON / "curr1_input").write_text("1000\n")
    after = s.sample()
    assert after["gpu_load_pct"] == pytest.approx(91.2)
    assert after["power_mw"] == pytest.approx(_num(board / HWMON / "in1_input"), abs=0.1)
    assert after["power_mw"] != before["power_mw"]


def test_gpu_node_is_found_by_scanning_devfreq_names(board):
    shutil.rmtree(board / "sys/devices/gpu.0")
    (board / "sys/class/devfreq/15820000.nvdla0/device/load").write_text("999\n")
    # An Orin names its GPU ga10b and sits at another address: still found by name.
    (board / "sys/class/devfreq/17000000.gv11b").rename(board / "sys/class/devfreq/17000000.ga10b")
    (board / "sys/class/devfreq/17000000.ga10b/device/of_node/name").write_bytes(b"ga10b\x00")
    (board / "sys/class/devfreq/17000000.ga10b/device/load").write_text("250\n")
    assert sysfs.find_gpu_load_file() == board / "sys/class/devfreq/17000000.ga10b/device/load"
    assert tm.SysfsSampler().sample()["gpu_load_pct"] == pytest.approx(25.0)


def test_legacy_gpu0_load_used_when_devfreq_has_no_gpu(board):
    shutil.rmtree(board / "sys/class/devfreq/17000000.gv11b")
    (board / "sys/devices/gpu.0/load").write_text("100\n")
    assert tm.SysfsSampler().sample()["gpu_load_pct"] == pytest.approx(10.0)


def test_total_is_the_sum_of_rails_without_an_input_rail(board):
    (board / HWMON / "in1_label").write_text("NC\n")  # an unconnected channel is skipped
    got = tm.SysfsSampler().sample()
    assert "power_vdd_in_mw" not in got
    assert got["power_mw"] == pytest.approx(_rail_mw(board, 2) + _rail_mw(board, 3), abs=0.2)


def test_jetpack4_iio_rails(bare_root):
    dev = bare_root / "sys/bus/i2c/devices/7-0040"
    iio = dev / "iio:device0"
    iio.mkdir(parents=True)
    (dev / "name").write_text("ina3221x\n")
    rails = {"POM_5V_IN": 4312, "POM_5V_GPU": 1020, "POM_5V_CPU": 806}
    for n, (name, mw) in enumerate(rails.items()):
        (iio / f"rail_name_{n}").write_text(name + "\n")
        (iio / f"in_power{n}_input").write_text(f"{mw}\n")
    got = tm.SysfsSampler().sample()
    assert got["power_pom_5v_gpu_mw"] == 1020
    assert got["power_mw"] == rails["POM_5V_IN"]
    assert "gpu_load_pct" not in got


def test_sysfs_on_a_machine_that_is_no_jetson_is_one_clear_error(bare_root):
    with pytest.raises(TelemetryError, match="not a Jetson") as err:
        tm.open_sampler("sysfs")
    assert "\n" not in str(err.value)


def test_auto_picks_sysfs_on_a_jetson_without_jtop_and_adds_psutil(board):
    warnings = []
    with tm.open_sampler("auto", warn=warnings.append) as s:
        got = s.sample()
    assert s.name == "sysfs"
    assert {"gpu_load_pct", "power_mw", "cpu_pct", "ram_used_mb"} <= set(got)
    assert warnings == []


def test_auto_falls_back_to_psutil_without_jetson_or_nvml(bare_root):
    warnings = []
    with tm.open_sampler("auto", warn=warnings.append) as s:
        got = s.sample()
    assert s.name == "psutil"  # this machine has no NVIDIA driver: NVML is skipped silently
    assert warnings == []
    assert 0.0 <= got["cpu_pct"] <= 100.0
    import psutil

    assert 0 < got["ram_used_mb"] <= psutil.virtual_memory().total / 2**20


def test_nvml_requested_without_a_driver_is_one_clear_error(bare_root):
    with pytest.raises(TelemetryError, match="NVML|nvidia-ml-py") as err:
        tm.open_sampler("nvml")
    assert "\n" not in str(err.value)


def test_unknown_backend(bare_root):
    with pytest.raises(TelemetryError, match="unknown telemetry backend 'tegrastats'"):
        tm.open_sampler("tegrastats")


# --- jtop socket problems: the real socket checks, against real unix sockets -----------------


def _stale_socket(path: Path) -> None:
    """A unix socket file whose server has gone (the jtop service stopped): connect is refused."""
    path.parent.mkdir(parents=True, exist_ok=True)
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    s.bind(str(path))
    s.close()


def test_directory_in_place_of_jtop_socket_falls_back_with_one_warning(board, capsys):
    (board / "run/jtop.sock").mkdir(parents=True)  # what `-v /run/jtop.sock:...` does on a host without jtop
    with tm.open_sampler("auto") as s:
        assert s.name == "sysfs"
        assert "gpu_load_pct" in s.sample()
    lines = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(lines) == 1, lines
    assert "warning" in lines[0] and "is a directory" in lines[0] and "falling back to sysfs" in lines[0]


def test_stale_jtop_socket_falls_back(board):
    _stale_socket(board / "run/jtop.sock")
    warnings = []
    with tm.open_sampler("auto", warn=warnings.append) as s:
        assert s.name == "sysfs"
    assert len(warnings) == 1 and "cannot connect" in warnings[0]


def test_stale_jtop_socket_off_a_jetson_falls_back_to_psutil(bare_root):
    _stale_socket(bare_root / "run/jtop.sock")
    warnings = []
    with tm.open_sampler("auto", warn=warnings.append) as s:
        assert s.name == "psutil"
    assert len(warnings) == 1 and "falling back to psutil" in warnings[0]


def test_jtop_requested_with_stale_socket_is_an_error(board):
    _stale_socket(board / "run/jtop.sock")
    with pytest.raises(TelemetryError, match="cannot connect to .*jtop.sock"):
        tm.open_sampler("jtop")


def test_live_socket_without_jetson_stats_installed(board):
    try:
        import jtop  # noqa: F401

        pytest.skip("jetson-stats is installed here; this test covers its absence")
    except ImportError:
        pass
    path = board / "run/jtop.sock"
    path.parent.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    try:
        warnings = []
        with tm.open_sampler("auto", warn=warnings.append) as s:
            assert s.name == "sysfs"
        assert len(warnings) == 1 and "jetson-stats is not installed" in warnings[0]
    finally:
        server.close()


def test_jtop_stats_conversion():
    # jtop's flat stats dict, shaped as jetson-stats documents it (values are samples).
    stats = {
        "time": "2024-01-01 00:00:00", "uptime": "1 day", "CPU1": 23, "RAM": 0.41, "GPU": 61.5,
        "Temp CPU": 42.5, "Temp GPU-therm": 40.0, "Power VDD_CPU_GPU_CV": 2450, "Power VDD_SOC": 1320,
        "Power TOT": 7210, "jetson_clocks": "ON", "nvp model": "MODE_20W_6CORE",
    }
    got = jtop.jtop_stats_to_sample(stats)
    assert got == {
        "gpu_load_pct": 61.5, "power_mw": 7210.0, "power_vdd_cpu_gpu_cv_mw": 2450.0,
        "power_vdd_soc_mw": 1320.0, "temp_cpu_c": 42.5, "temp_gpu_c": 40.0,
    }


# --- the sampling thread and the summary --------------------------------------------------------


def test_thread_samples_on_a_fixed_schedule_without_bursts(board):
    rows, stamps = [], []

    def emit(sample):
        stamps.append(time.monotonic())
        rows.append(sample)

    with tm.open_sampler("sysfs") as s:
        t0 = time.monotonic()
        thread = tm.TelemetryThread(s, emit=emit, interval_s=0.02).start()
        time.sleep(0.4)
        thread.stop()
        elapsed = time.monotonic() - t0
    assert thread.error is None
    assert len(rows) >= 4  # 20 expected on an idle machine; CI is shared
    assert len(rows) <= elapsed / 0.02 + 1  # never more than one sample per tick
    assert all("gpu_load_pct" in r and "cpu_pct" in r for r in rows)
    assert stamps == sorted(stamps)
    assert not thread._thread.is_alive()


def test_thread_keeps_the_error_of_a_failing_emit(bare_root):
    def emit(sample):
        raise OSError("disk full")

    with tm.open_sampler("psutil") as s:
        thread = tm.TelemetryThread(s, emit=emit, interval_s=0.01).start()
        thread._thread.join(2)
    assert isinstance(thread.error, OSError) and thread.count == 0


def test_thread_rejects_nonpositive_interval(bare_root):
    with pytest.raises(TelemetryError, match="interval"):
        tm.TelemetryThread(tm.open_sampler("psutil"), emit=print, interval_s=0)


def test_summarize_means_and_energy():
    # 1 W for 2 s, sampled every 0.5 s, load rising 0..80 %: energy 2 J, mean load 40 %.
    rows = [{"t": i * 500_000, "ev": "telemetry", "power_mw": 1000.0, "gpu_load_pct": 20.0 * i} for i in range(5)]
    rows.append({"t": 3, "ev": "dispatch", "power_mw": 99999.0})  # not a telemetry line: ignored
    s = tm.summarize(rows)
    assert s["n"] == 5
    assert s["mean_power_mw"] == pytest.approx(1000.0)
    assert s["mean_gpu_load_pct"] == pytest.approx(40.0)
    assert s["max_gpu_load_pct"] == 80.0
    assert s["energy_j"] == pytest.approx(2.0)
    assert s["mean_cpu_pct"] is None


def test_summarize_empty():
    assert tm.summarize([]) == {
        "n": 0, "mean_power_mw": None, "max_power_mw": None, "mean_gpu_load_pct": None,
        "max_gpu_load_pct": None, "mean_cpu_pct": None, "max_ram_used_mb": None, "energy_j": None,
    }


def test_diagnostic_main_prints_json_lines(board, capsys):
    assert telemetry_main(["auto", "3", "0.01"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3
    rows = [json.loads(ln) for ln in lines]
    assert {r["backend"] for r in rows} == {"sysfs"}
    assert all(r["gpu_load_pct"] == pytest.approx(53.7) for r in rows)


def test_diagnostic_runs_as_a_module(board):
    """``python -m pantheon.platform.telemetry sysfs 2 0.01``, as docs/containers.md says."""
    import os
    import subprocess
    import sys

    env = dict(os.environ, **{jetson.ENV_BOARD_ROOT: str(board)})
    out = subprocess.run([sys.executable, "-m", "pantheon.platform.telemetry", "sysfs", "2", "0.01"],
                         capture_output=True, text=True, env=env, timeout=120)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(ln) for ln in out.stdout.splitlines()]
    assert len(rows) == 2 and {r["backend"] for r in rows} == {"sysfs"}


@pytest.mark.parametrize("argv, fragment", [
    (["gpu"], "invalid choice: 'gpu'"),
    (["auto", "many"], "COUNT must be a whole number"),
    (["auto", "0"], "COUNT must be at least 1"),
    (["auto", "3", "-1"], "INTERVAL_S must be a positive number"),
    (["auto", "3", "nan"], "INTERVAL_S must be a positive number"),
])
def test_diagnostic_refuses_bad_arguments_as_usage_errors(bare_root, capsys, argv, fragment):
    with pytest.raises(SystemExit) as exc:
        telemetry_main(argv)
    assert exc.value.code == 2
    captured = capsys.readouterr()
    assert fragment in captured.err and "Traceback" not in captured.err and captured.out == ""


def test_diagnostic_names_an_unusable_backend_in_one_line(bare_root, capsys):
    assert telemetry_main(["sysfs", "1"]) == 1
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    assert len(err) == 1 and "no Jetson GPU load node" in err[0]


def test_a_container_that_sees_only_sysfs_is_a_jetson(board, monkeypatch):
    """One `is_jetson` for the board facts and telemetry: an L4T release, or a Jetson GPU devfreq node."""
    (board / "etc/nv_tegra_release").unlink()
    assert jetson.l4t_release() is None
    assert jetson.is_jetson()  # the GPU node still says so
    with tm.open_sampler("auto") as s:
        assert s.name == "sysfs"
    monkeypatch.setenv(jetson.ENV_L4T, "not-a-release")  # malformed: says nothing about the hardware
    assert jetson.is_jetson()


def test_telemetry_and_board_facts_agree_on_the_jtop_socket(board):
    """One JTOP_SOCKET: the socket the board facts report is the one telemetry's auto tries."""
    _stale_socket(board / "run/jtop.sock")
    assert jetson.jtop_socket() == str(board / "run/jtop.sock")
    assert jetson.board_facts()["jtop_socket"] is True
    warnings = []
    with tm.open_sampler("auto", warn=warnings.append) as s:
        assert s.name == "sysfs"
    assert len(warnings) == 1 and str(board / "run/jtop.sock") in warnings[0]


def test_board_facts_for_the_run_manifest(board):
    facts = jetson.board_facts()
    assert facts["model"] == "NVIDIA Jetson Xavier NX Developer Kit"
    assert facts["l4t"] == "35.3.1"  # parsed from the stand-in's etc/nv_tegra_release
    assert facts["jtop_socket"] is False


# --- jtop used as its documentation says (while jetson.ok(), the service's interval, versions) ----------
# jetson-stats' client needs its service, which only runs on a Jetson: a stand-in module with the same
# surface (jtop(interval), start(), ok(), stats, interval) plays the service; the socket is a real one.


class _StandInJtop:
    """``jtop.jtop`` as the sampler uses it; ``script`` drives what the "service" does."""

    script: dict = {}

    def __init__(self, interval=0.5):
        self.requested = interval
        self.interval = max(interval, self.script.get("service_interval", 0.5))
        self.calls = 0

    def start(self):
        if "start_error" in self.script:
            raise RuntimeError(self.script["start_error"])

    def ok(self):
        self.calls += 1
        if self.calls > self.script.get("updates", 10**9):
            return False
        return True

    @property
    def stats(self):
        return {"GPU": 10.0 * self.calls, "Power TOT": 5000}

    def close(self):
        pass


class _StandInModule:
    __version__ = "4.2.12"
    jtop = _StandInJtop


@pytest.fixture
def live_jtop_socket(board):
    path = board / "run/jtop.sock"
    path.parent.mkdir(parents=True)
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(4)
    yield path
    server.close()


def test_jtop_version_mismatch_names_the_fix_and_falls_back(live_jtop_socket, monkeypatch):
    import sys

    _StandInJtop.script = {"start_error": "Mismatch version jtop service: [4.2.9] and client: [4.2.12]. "
                                          "Please run:\nsudo systemctl restart jtop.service"}
    monkeypatch.setitem(sys.modules, "jtop", _StandInModule)
    warnings = []
    with tm.open_sampler("auto", warn=warnings.append) as s:
        assert s.name == "sysfs"
    assert len(warnings) == 1
    assert "jetson-stats 4.2.12 here does not match the board's jtop service 4.2.9" in warnings[0]
    assert "pip install jetson-stats==4.2.9" in warnings[0] and "falling back to sysfs" in warnings[0]
    with pytest.raises(TelemetryError, match="JETSON_STATS_VERSION=4.2.9"):
        tm.open_sampler("jtop")


def test_jtop_samples_at_the_service_interval_and_stops_loudly_when_it_dies(live_jtop_socket):
    _StandInJtop.script = {"service_interval": 0.2, "updates": 3}
    sampler = tm.CombinedSampler(tm.JtopSampler(interval_s=0.02, module=_StandInModule), tm.PsutilSampler())
    assert sampler.name == "jtop" and sampler.min_interval_s == pytest.approx(0.2)
    rows, warnings = [], []
    thread = tm.TelemetryThread(sampler, emit=rows.append, interval_s=0.02, warn=warnings.append)
    assert thread.interval_s == pytest.approx(0.2)  # not 20 ms: the service has nothing newer
    thread.start()
    deadline = time.monotonic() + 5
    while thread.error is None and time.monotonic() < deadline:
        time.sleep(0.05)
    thread.stop()
    # Three updates, each a fresh reading; then ok() is False: an error and one warning, no frozen repeats.
    assert [r["gpu_load_pct"] for r in rows] == [10.0, 20.0, 30.0]
    assert isinstance(thread.error, TelemetryError) and "jetson.ok() is False" in str(thread.error)
    assert len(warnings) == 1 and warnings[0].startswith("telemetry stopped after 3 samples")
