"""``python -m pantheon.cli``: the ``pantheon`` command."""

from __future__ import annotations

from pantheon.cli import main

main()
