"""``python -m pantheon.cli``: the ``pantheon`` command."""

from pantheon.cli import main

main()
