from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from pantheon import __version__
from pantheon.cli import app
from pantheon.deploy.cli import app as deploy_app

runner = CliRunner()


def test_versions():
    r = runner.invoke(app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"pantheon {__version__}"
    r = runner.invoke(deploy_app, ["--version"])
    assert r.exit_code == 0 and r.stdout.strip() == f"pantheon-deploy {__version__}"


def test_console_scripts_installed():
    bindir = __import__("pathlib").Path(sys.executable).parent
    for name in ("pantheon", "pantheon-deploy"):
        out = subprocess.run([str(bindir / name), "--version"], capture_output=True, text=True)
        assert out.returncode == 0, out.stderr
        assert out.stdout.strip().endswith(__version__)


def test_both_clis_offer_shell_completion_and_plain_help():
    from pantheon.cli import app as pantheon_app
    from pantheon.deploy.cli import app as deploy_app

    for cli in (pantheon_app, deploy_app):
        r = CliRunner().invoke(cli, ["--help"], terminal_width=200)
        assert r.exit_code == 0 and "--install-completion" in r.output
    r = CliRunner().invoke(pantheon_app, ["runtime", "--help"], terminal_width=200)
    assert "--no-cuda-graphs" in r.output and "--dispatch-us" in r.output
