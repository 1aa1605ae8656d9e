"""compose.yaml: valid against the Compose Specification schema, and what its services promise.

No Compose binary that speaks the current specification is installable here, so validation
is by the spec's JSON schema (a copy in tests/fixtures, see its README); ``docker compose
config`` runs too when a Compose v2 CLI happens to be installed. The services' commands
are parsed by the real ``pantheon`` CLI, and their build arguments compared with the
one build path (:mod:`pantheon.deploy.images`).
"""

from __future__ import annotations

import copy
import json
import subprocess
from pathlib import Path

import jsonschema
import pytest
import typer
import yaml
from _docker import REPO, compose_service, interpolate, load_compose

from pantheon.cli import app as cli_app
from pantheon.deploy.images import DEFAULT_BASES, TARGETS, build_args

SCHEMA = Path(__file__).parent / "fixtures" / "compose-spec.json"
DESKTOP = {"trainer", "trainer-cpu", "deploy"}
BOARD = {"profiler", "runtime", "bench"}
CPU = {"trainer-cpu", "profiler-cpu", "runtime-cpu", "bench-cpu"}


@pytest.fixture(scope="module")
def validator():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


@pytest.fixture(scope="module")
def compose():
    return load_compose("compose.yaml")


def _errors(validator, doc):
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(doc)]


def test_compose_yaml_is_valid_compose_spec(validator, compose):
    assert _errors(validator, compose) == []


def test_jtop_override_is_valid_alone_and_merged(validator):
    override = yaml.safe_load((REPO / "compose.jtop.yaml").read_text())
    assert _errors(validator, override) == []
    assert _errors(validator, load_compose("compose.yaml", "compose.jtop.yaml")) == []


def test_schema_catches_a_broken_service(validator, compose):
    # The check can fail: a misspelt key and a wrong type are reported.
    broken = copy.deepcopy(compose)
    broken["services"]["runtime"]["network-mode"] = "host"
    broken["services"]["trainer"]["deploy"]["resources"]["reservations"]["devices"][0]["count"] = ["all"]
    errors = _errors(validator, broken)
    assert any("network-mode" in e for e in errors)
    assert any("devices/0/count" in e for e in errors)


def test_one_data_root_for_the_whole_journey(compose):
    """Desktop services bind ./pantheon-data (what pantheon-deploy push reads), board services bind
    /var/lib/pantheon/data (where push puts bundles and run mounts them); no named volume."""
    from pantheon.deploy.ssh import DEFAULT_REMOTE_ROOT
    from pantheon.formats.store import DEFAULT_ROOT

    assert "volumes" not in compose
    assert set(compose["services"]) == DESKTOP | BOARD | CPU
    for name in compose["services"]:
        svc = compose_service(name)
        mounts = [v for v in svc["volumes"] if v["target"] == "/data"]
        source = DEFAULT_REMOTE_ROOT if name in BOARD else f"./{DEFAULT_ROOT}"
        assert mounts == [{"type": "bind", "source": source, "target": "/data",
                           "bind": {"create_host_path": True}}], name
        assert svc["environment"]["PANTHEON_DATA"] == "/data", name
    # Both folders are configurable.
    env = {"PANTHEON_DATA_DIR": "/srv/pd", "PANTHEON_BOARD_DATA": "/mnt/ssd/pantheon"}
    assert compose_service("trainer", env)["volumes"][0]["source"] == "/srv/pd"
    assert compose_service("runtime", env)["volumes"][0]["source"] == "/mnt/ssd/pantheon"


def test_deploy_service_has_ssh_keys_read_only_and_the_agent(compose):
    svc = compose_service("deploy", {"HOME": "/home/alice", "SSH_AUTH_SOCK": "/tmp/ssh-X/agent.1"})
    assert svc["entrypoint"] == ["pantheon-deploy"] and svc["network_mode"] == "host"
    by_target = {v["target"]: v for v in svc["volumes"]}
    keys = by_target["/home/pantheon/.ssh"]
    assert keys["source"] == "/home/alice/.ssh" and keys["read_only"] is True
    assert keys["bind"]["create_host_path"] is False
    assert by_target["/run/ssh-agent.sock"]["source"] == "/tmp/ssh-X/agent.1"
    assert svc["environment"]["SSH_AUTH_SOCK"] == "/run/ssh-agent.sock"
    # No agent: a harmless placeholder instead of a bind of an empty path.
    assert {v["target"]: v for v in compose_service("deploy", {"HOME": "/h"})["volumes"]}[
        "/run/ssh-agent.sock"]["source"] == "/dev/null"
    # The command line a user types after `docker compose run --rm deploy` parses.
    from _clitree import check_argv

    check_argv(["pantheon-deploy", "push", "--board", "nvidia@192.168.55.1"])


def test_trainer_reserves_the_nvidia_gpu_and_runs_the_pipeline(compose):
    trainer = compose_service("trainer")
    devices = trainer["deploy"]["resources"]["reservations"]["devices"]
    assert devices == [{"driver": "nvidia", "count": "all", "capabilities": ["gpu"]}]
    assert trainer["build"]["dockerfile"] == "Dockerfile.desktop"
    assert trainer["command"] == ["pipeline", "--app", "digits"]
    assert compose_service("trainer", {"PANTHEON_APP": "traffic"})["command"][-1] == "traffic"


def test_board_services_use_the_nvidia_runtime_host_network_and_l4t_file(compose):
    for name in BOARD:
        svc = compose["services"][name]
        assert svc["runtime"] == "nvidia", name
        assert svc["network_mode"] == "host", name
        assert svc["build"]["dockerfile"] == "Dockerfile.jetson", name
        l4t = [v for v in svc["volumes"] if v["target"] == "/etc/nv_tegra_release"]
        assert l4t and l4t[0]["read_only"] is True and l4t[0]["bind"]["create_host_path"] is False, name


def test_jtop_socket_is_only_mounted_by_the_override_and_never_created(compose):
    for name, svc in compose["services"].items():
        assert all(v["target"] != "/run/jtop.sock" for v in svc["volumes"]), name
    merged = load_compose("compose.yaml", "compose.jtop.yaml")
    for name in ("runtime", "bench"):
        sock = [v for v in merged["services"][name]["volumes"] if v["target"] == "/run/jtop.sock"]
        assert sock == [{"type": "bind", "source": "/run/jtop.sock", "target": "/run/jtop.sock",
                         "bind": {"create_host_path": False}}]


def test_cpu_variants_need_no_nvidia_runtime_gpu_or_host_files(compose):
    for name in CPU:
        svc = compose["services"][name]
        assert "runtime" not in svc and "deploy" not in svc, name
        assert [v["target"] for v in svc["volumes"]] == ["/data"], name
        twin = compose["services"][name[: -len("-cpu")]]
        assert svc["command"] == twin["command"] and svc["image"] == twin["image"], name


def test_every_service_has_a_profile_so_a_bare_up_starts_nothing_foreign(compose):
    profiles = {name: svc.get("profiles") for name, svc in compose["services"].items()}
    assert {n for n, p in profiles.items() if p == ["desktop"]} == {"trainer", "deploy"}
    assert {n for n, p in profiles.items() if p == ["jetson"]} == BOARD
    assert {n for n, p in profiles.items() if p == ["cpu"]} == CPU


def test_build_arguments_are_the_make_targets_arguments(compose):
    # One way to build: compose's build args are the ones pantheon.deploy.images passes.
    for target, service in (("jetson", "runtime"), ("desktop", "trainer")):
        build = compose_service(service)["build"]
        assert build["dockerfile"] == TARGETS[target]
        assert build["network"] == "host"
        assert build["args"]["BASE_IMAGE"] == DEFAULT_BASES[target]
        spec = build_args(target, DEFAULT_BASES[target], commit="abc")
        assert set(build["args"]) == set(spec.buildargs)
    assert compose_service("runtime")["build"]["args"]["L4T_VERSION"] == build_args("jetson").buildargs["L4T_VERSION"]


def _parse(argv):
    """Parse ``argv`` with the real pantheon CLI (no command runs); raise click's error if invalid."""
    group = typer.main.get_command(cli_app)
    with group.make_context("pantheon", list(argv), resilient_parsing=False) as ctx:
        sub = group.get_command(ctx, argv[0])
        assert sub is not None, f"pantheon has no command {argv[0]!r}"
        return sub.make_context(argv[0], list(argv[1:]), parent=ctx).params


@pytest.mark.parametrize("service", sorted((DESKTOP - {"deploy"}) | BOARD))
def test_service_commands_are_valid_pantheon_invocations(service):
    argv = compose_service(service)["command"]
    try:
        params = _parse(argv)
    except Exception as exc:  # typer's (vendored click) UsageError family: the message is the point
        pytest.fail(f"{service}: `pantheon {' '.join(argv)}` does not parse: {exc}")
    if service == "runtime":
        assert str(params["repo"]) == "/data/apps/digits/repository"
        assert str(params["log"]) == "/data/logs/digits/latest"
        assert params["telemetry"] == "auto"
    if service == "profiler":
        assert params["host"] == "0.0.0.0" and params["port"] == 8765


def test_an_invalid_command_is_caught_by_the_parse():
    with pytest.raises(Exception, match="No such option: --hots"):
        _parse(["profiler-server", "--hots", "0.0.0.0"])


def test_interpolation_defaults_and_overrides():
    assert interpolate("${A:-x}/${B-y}/${C}", {"A": "1"}) == "1/y/"
    cmd = compose_service("runtime", {"PANTHEON_APP": "traffic", "PANTHEON_RUN_ID": "r1", "PANTHEON_POLICY": "edf"})["command"]
    assert cmd[1:4] == ["/data/apps/traffic/repository", "/data/apps/traffic/workload/workload.bin", "/data/logs/traffic/r1"]
    assert cmd[cmd.index("--policy") + 1] == "edf"


def test_docker_compose_config_when_a_compose_cli_exists(tmp_path):
    try:
        probe = subprocess.run(["docker", "compose", "version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.SubprocessError):
        pytest.skip("no docker CLI here: validated by schema only")
    if probe.returncode != 0:
        pytest.skip("no `docker compose` (Compose v2) CLI installable here: validated by schema only")
    out = subprocess.run(["docker", "compose", "-f", "compose.yaml", "--profile", "cpu", "config", "--quiet"],
                         cwd=REPO, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr


def test_board_services_see_the_hosts_facts_read_only_and_never_create_them(compose):
    """runtime and bench record board model and power mode like pantheon-deploy bench does."""
    from pantheon.platform import jetson as pb

    for name in ("runtime", "bench"):
        by_target = {v["target"]: v for v in compose["services"][name]["volumes"]}
        for source, target in (("/proc/device-tree/model", pb.HOST_MODEL),
                               ("/var/lib/nvpmodel/status", pb.HOST_NVPMODEL_STATUS),
                               ("/etc/nvpmodel.conf", pb.HOST_NVPMODEL_CONF)):
            v = by_target[target]
            assert v["source"] == source and v["read_only"] is True and v["bind"]["create_host_path"] is False
