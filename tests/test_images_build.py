"""The one build path (pantheon.deploy.images): build arguments, wheelhouse staging, errors. No engine needed."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from pantheon.deploy import images
from pantheon.errors import DockerError, UsageError

REPO = Path(__file__).resolve().parents[1]


def _buildargs(argv):
    return dict(argv[i + 1].split("=", 1) for i, a in enumerate(argv) if a == "--build-arg")


def test_jetson_defaults_follow_the_dockerfile():
    spec = images.build_args("jetson", commit="abc123")
    argv = spec.argv()
    assert argv[:9] == ["docker", "build", "--network", "host", "--force-rm", "-f", "Dockerfile.jetson", "-t",
                        "pantheon-jetson:latest"]
    assert argv[-1] == str(REPO)
    # the L4T label of the Dockerfile's default base, read from its tag
    assert _buildargs(argv) == {"L4T_VERSION": "35.2.1", "PANTHEON_GIT_COMMIT": "abc123"}
    default_base = next(ln for ln in (REPO / "Dockerfile.jetson").read_text().splitlines() if ln.startswith("ARG BASE_IMAGE="))
    assert default_base == f"ARG BASE_IMAGE={images.DEFAULT_BASES['jetson']}"


@pytest.mark.parametrize("base, l4t, expected", [
    ("dustynv/l4t-pytorch:r36.4.0", None, "36.4.0"),
    ("dustynv/l4t-pytorch:r35.4", None, "35.4.0"),
    ("pantheon-test-base:bookworm", None, ""),  # a Debian base: no L4T
    ("registry.local/custom:latest", "35.3.1", "35.3.1"),  # an explicit release wins
])
def test_l4t_label_argument(base, l4t, expected):
    spec = images.build_args("jetson", base, "t:1", l4t=l4t, commit="c")
    assert spec.buildargs == {"BASE_IMAGE": base, "L4T_VERSION": expected, "PANTHEON_GIT_COMMIT": "c"}


def test_desktop_has_no_l4t_and_sdk_kwargs_match_the_cli():
    spec = images.build_args("desktop", "pytorch/pytorch:x", "pantheon-desktop:dev", commit="c")
    assert "L4T_VERSION" not in spec.buildargs
    kw = spec.sdk_kwargs()
    assert kw["dockerfile"] == "Dockerfile.desktop" and kw["tag"] == "pantheon-desktop:dev"
    assert kw["buildargs"] == _buildargs(spec.argv()) and kw["network_mode"] == "host"
    assert kw["path"] == spec.argv()[-1]


def test_git_commit_is_the_checkouts():
    if shutil.which("git") is None or not (REPO / ".git").exists():
        pytest.skip("not a git checkout")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO, capture_output=True, text=True).stdout.strip()
    assert images.git_commit(REPO).split("-")[0] == head[:12]
    assert images.git_commit(Path("/")) == "unknown"


def test_bad_arguments_are_usage_errors(tmp_path):
    with pytest.raises(UsageError, match="unknown image target 'nano'"):
        images.build_args("nano")
    with pytest.raises(UsageError, match="is not a folder"):
        images.build_args("jetson", wheelhouse=tmp_path / "missing")
    with pytest.raises(UsageError, match="must be a pantheon checkout"):
        images.build_args("jetson", context=tmp_path)


def _context(tmp_path: Path) -> Path:
    ctx = tmp_path / "ctx"
    (ctx / "deploy" / "wheelhouse").mkdir(parents=True)
    shutil.copy(REPO / "Dockerfile.jetson", ctx)
    (ctx / "deploy" / "wheelhouse" / "README.md").write_text("readme")
    return ctx


def test_wheelhouse_is_linked_into_the_context_for_one_build(tmp_path):
    ctx, wh = _context(tmp_path), tmp_path / "wheels"
    wh.mkdir()
    for name in ("torch-2.0-cp311-none-any.whl", "other-1.0-py3-none-any.whl", "notes.txt"):
        (wh / name).write_bytes(b"x" * 10)
    spec = images.build_args("jetson", wheelhouse=wh, context=ctx, commit="c")
    staged_dir = ctx / "deploy" / "wheelhouse"
    with images.staged_wheelhouse(spec) as staged:
        assert sorted(p.name for p in staged) == ["other-1.0-py3-none-any.whl", "torch-2.0-cp311-none-any.whl"]
        assert all(p.parent == staged_dir for p in staged)
        assert os.stat(staged[1]).st_ino == os.stat(wh / staged[1].name).st_ino  # linked, not copied
    assert sorted(p.name for p in staged_dir.iterdir()) == ["README.md"]
    with pytest.raises(RuntimeError), images.staged_wheelhouse(spec):
        raise RuntimeError("build interrupted")
    assert sorted(p.name for p in staged_dir.iterdir()) == ["README.md"]  # cleaned up on errors too


def test_dry_run_prints_the_command(capsys):
    assert images.main(["jetson", "--base-image", "b:1", "--tag", "t:2", "--l4t", "35.3.1", "--dry-run"]) == 0
    line = capsys.readouterr().out.strip()
    assert line.startswith("docker build --network host --force-rm -f Dockerfile.jetson -t t:2 --build-arg BASE_IMAGE=b:1 "
                           "--build-arg L4T_VERSION=35.3.1 --build-arg PANTHEON_GIT_COMMIT=")


def test_missing_docker_cli_is_one_line(monkeypatch, capsys):
    monkeypatch.setenv("DOCKER", "/nonexistent/docker")
    assert images.main(["jetson"]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["error: /nonexistent/docker not found: install the Docker CLI (apt-get install docker.io)"]


def test_failed_build_names_the_dockerfiles_own_error(tmp_path):
    # A real process standing in for the docker CLI prints a legacy-builder failure.
    fake = tmp_path / "docker"
    fake.write_text("#!/bin/sh\n"
                    "echo 'Step 4/19 : RUN if ! command -v python3; then echo \"error: base image ${BASE_IMAGE} ...\"'\n"
                    "printf '\\033[91merror: base image busybox has no python3; build FROM an l4t-pytorch image\\n'\n"
                    "printf '\\033[0mThe command /bin/sh -c if ... returned a non-zero code: 1\\n'\n"
                    "exit 1\n")
    fake.chmod(0o755)
    spec = images.build_args("jetson", "busybox", "t:x", commit="c")
    with pytest.raises(DockerError) as err:
        images.build(spec, docker=str(fake), quiet=True)
    assert str(err.value) == ("docker build of t:x failed (exit 1): error: base image busybox has no python3; "
                              "build FROM an l4t-pytorch image")


def test_buildkit_output_reason():
    lines = ["#5 [base 2/2] RUN if ! command -v python3 ...", "#5 0.231 error: base image b has no python3; x",
             'ERROR: failed to solve: process "/bin/sh -c if ... echo \\"error: base image ${BASE_IMAGE}\\"" '
             "did not complete successfully: exit code: 1"]
    assert images._reason(lines) == "error: base image b has no python3; x"


def test_dockerignore_is_an_allowlist_of_what_the_dockerfiles_copy():
    rules = [ln.strip() for ln in (REPO / ".dockerignore").read_text().splitlines() if ln.strip() and not ln.startswith("#")]
    assert rules[0] == "*"
    allowed = {r[1:].rstrip("/") for r in rules if r.startswith("!")}
    assert allowed == {"pyproject.toml", "README.md", "pantheon", "deploy/apps", "deploy/boards", "deploy/lock",
                       "deploy/wheelhouse"}
    for dockerfile in ("Dockerfile.jetson", "Dockerfile.desktop"):
        text = (REPO / dockerfile).read_text()
        assert "COPY . /src/" in text and "/src/deploy/wheelhouse" in text and "/src/deploy/apps" in text
    # The package data's links (pantheon/deploy/data) resolve inside the context, or `pip install /src`
    # in the build would ship a wheel without presets and app files. The Dockerfiles themselves are
    # linked too (package data for installs) but a build never needs them inside /src.
    links = sorted(p for p in (REPO / "pantheon/deploy/data").iterdir() if p.is_symlink())
    assert {p.name for p in links} >= {"boards", "apps", "Dockerfile.jetson", "pyproject.toml", "README.md"}
    for link in links:
        target = link.resolve().relative_to(REPO).as_posix()
        assert target in allowed | {"Dockerfile.jetson", "Dockerfile.desktop"}, (link, target)


def test_a_base_images_own_pip_index_is_ignored():
    """JetPack 6 bases set PIP_INDEX_URL & co. to an index that is often down: the build uses PIP_INDEX."""
    for dockerfile in ("Dockerfile.jetson", "Dockerfile.desktop"):
        text = (REPO / dockerfile).read_text()
        build_stage = text[text.index("FROM base AS build"):]
        first_run = build_stage[build_stage.index("RUN "):]
        assert first_run.index('PIP_CONFIG_FILE=/dev/null PIP_INDEX_URL="${PIP_INDEX}"') < first_run.index("pip install")
        assert first_run.index("unset PIP_EXTRA_INDEX_URL PIP_TRUSTED_HOST") < first_run.index("pip install")
        assert "ARG PIP_INDEX=https://pypi.org/simple" in build_stage
    spec = images.build_args("jetson", "b:1", "t:1", pip_index="http://mirror.lan/simple", commit="c")
    assert spec.buildargs["PIP_INDEX"] == "http://mirror.lan/simple"
    assert "PIP_INDEX" not in images.build_args("jetson", "b:1", "t:1", commit="c").buildargs


REQUIRES = ["torch>=2.0", "numpy>=1.21", "rich>=12", 'torchvision>=0.15; extra == "offline"',
            'jetson-stats>=4.2; extra == "jetson"', 'backports.x>=1; python_version < "3.9" and extra == "jetson"']


def _reqs(versions, extras=("jetson",)):
    return images.requirements(extras=extras, installed=versions.get, requires=REQUIRES)


def test_requirements_keep_nvidias_prerelease_torch():
    # l4t-pytorch r35.2.1 ships torch 2.0.0a0+ec3941ad.nv23.02: `torch>=2.0` must not replace it.
    got = _reqs({"torch": "2.0.0a0+ec3941ad.nv23.02", "numpy": "1.17.4"})
    assert got == ["torch==2.0.0a0+ec3941ad.nv23.02", "numpy>=1.21", "rich>=12", "jetson-stats>=4.2",
                   'backports.x>=1; python_version < "3.9"']


def test_requirements_on_a_base_without_torch_pass_through():
    assert _reqs({}, extras=("offline",)) == ["torch>=2.0", "numpy>=1.21", "rich>=12", "torchvision>=0.15"]
    assert _reqs({"numpy": "1.24.4", "torchvision": "0.15.1a0"}, extras=("offline",))[1:] == [
        "numpy==1.24.4", "rich>=12", "torchvision==0.15.1a0"]


def test_requirements_refuse_a_base_with_an_old_torch():
    with pytest.raises(DockerError, match=r"the base image's torch 1\.13\.1 is older than pantheon's torch>=2\.0"):
        _reqs({"torch": "1.13.1"})


def test_requirements_of_the_installed_package():
    lines = images.requirements(extras=["jetson"])
    names = [ln.split("=")[0].split(">")[0] for ln in lines]
    assert names[0] == "torch" and lines[0].startswith("torch==")  # this venv's torch, kept
    assert "jetson-stats" in names and "torchvision" not in names and "pymoo" not in names


def test_failed_smoke_test_reason_is_the_python_exception():
    lines = ["pantheon 0.1.0", "\x1b[91mTraceback (most recent call last):", '\x1b[0m\x1b[91m  File "<string>", line 1',
             "\x1b[0m\x1b[91mRuntimeError: operator torchvision::nms does not exist",
             "\x1b[0mThe command '/bin/sh -c export ...' returned a non-zero code: 1"]
    assert images._reason(lines) == "RuntimeError: operator torchvision::nms does not exist"


def test_jetson_stats_is_pinned_to_the_boards_jtop_service():
    spec = images.build_args("jetson", "b:1", "t:1", commit="c", jetson_stats="4.2.9")
    assert spec.buildargs["JETSON_STATS_VERSION"] == "4.2.9"
    assert "JETSON_STATS_VERSION" not in images.build_args("desktop", "b:1", "t:1", commit="c",
                                                           jetson_stats="4.2.9").buildargs
    with pytest.raises(UsageError, match="bad jetson-stats version"):
        images.build_args("jetson", "b:1", "t:1", commit="c", jetson_stats="4.2; rm -rf /")
    text = (REPO / "Dockerfile.jetson").read_text()
    assert 'pip install "jetson-stats==${JETSON_STATS_VERSION}"' in text
    from pantheon.deploy.remote import parse_facts

    assert parse_facts("JTOP yes\nJTOPV 4.2.9\n").jtop_version == "4.2.9"
    assert parse_facts("JTOP no\nJTOPV \n").jtop_version is None


def test_base_digest_is_recorded():
    spec = images.build_args("jetson", "b:1", "t:1", commit="c", base_digest="b@sha256:" + "0" * 64)
    assert spec.buildargs["BASE_DIGEST"] == "b@sha256:" + "0" * 64
    assert images.base_digest_of("b@sha256:" + "1" * 64) == "b@sha256:" + "1" * 64  # pinned: as given
    assert images.base_digest_of("no-such-image:never", docker="/nonexistent/docker") is None
    for dockerfile in ("Dockerfile.jetson", "Dockerfile.desktop"):
        text = (REPO / dockerfile).read_text()
        final = text[text.rindex("\nFROM base\n"):]
        assert "ARG BASE_DIGEST=" in final and 'org.opencontainers.image.base.digest="${BASE_DIGEST}"' in final
        assert "PANTHEON_BASE_DIGEST=${BASE_DIGEST}" in final


def test_lock_files_pin_every_runtime_dependency_with_hashes():
    """deploy/lock/jetson-py<X.Y>.txt (make lock): one per Python of the bases, every dependency of the
    runtime (torch/numpy/jetson-stats aside) pinned exactly, each with sha256 for aarch64 and x86_64."""
    import re

    from packaging.requirements import Requirement
    from packaging.version import Version

    reqs = {Requirement(r.split(";")[0]) for r in images.requirements(extras=["jetson"], keep=(), prefer=())}
    wanted = {images._canon(r.name): r for r in reqs if images._canon(r.name) not in images.LOCK_SKIP}
    assert wanted, "the runtime has dependencies to lock"
    for py in images.LOCK_PYTHONS:
        path = REPO / images.LOCK_DIR / f"jetson-py{py}.txt"
        text = path.read_text()
        pins = {}
        for line in text.splitlines():
            if not line or line.startswith("#"):
                continue
            m = re.fullmatch(r"([a-z0-9-]+)==(\S+)((?: --hash=sha256:[0-9a-f]{64})+)", line)
            assert m, f"{path.name}: not an exact pin with hashes: {line}"
            pins[m.group(1)] = (m.group(2), m.group(3).count("--hash"))
        for name, req in wanted.items():
            assert name in pins, f"{path.name} does not lock {name}"
            assert Version(pins[name][0]) in req.specifier, f"{path.name}: {name}=={pins[name][0]} breaks {req}"
        assert not set(pins) & set(images.LOCK_SKIP)
        # the platform wheels (psutil, pyyaml, protobuf) carry a hash per platform
        assert pins["psutil"][1] >= 2 and pins["pyyaml"][1] >= 2
    jetson = (REPO / "Dockerfile.jetson").read_text()
    assert "--require-hashes -r \"/src/deploy/lock/jetson-py${pyv}.txt\"" in jetson
