"""Shared fixtures. Every test gets its own artifact-store root."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("PANTHEON_PROGRESS", "0")


@pytest.fixture(autouse=True)
def _isolated_store(tmp_path_factory, monkeypatch):
    root = tmp_path_factory.mktemp("pantheon-data")
    monkeypatch.setenv("PANTHEON_DATA", str(root))
    yield root


@pytest.fixture
def ssh():
    """The loopback sshd's settings (see ``_deploy.ssh_settings``: skips, or fails in CI, without it)."""
    from _deploy import ssh_settings

    return ssh_settings()
