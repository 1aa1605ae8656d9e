"""``python -m pantheon.platform.telemetry [BACKEND] [COUNT] [INTERVAL_S]``: print samples as JSON lines.

A diagnostic for a board or a container: which backend is picked, which rails and zones are
found. Bad arguments are a usage error (exit 2); an unusable backend is one line (exit 1).

Example::

    python -m pantheon.platform.telemetry auto 5        # five samples, 0.2 s apart
    python -m pantheon.platform.telemetry sysfs 3 0.05
"""

from __future__ import annotations

import argparse
import json
import time
from typing import List, Optional

from pantheon.errors import TelemetryError
from pantheon.platform.telemetry.base import Sample
from pantheon.platform.telemetry.sampler import BACKENDS, TelemetryThread, open_sampler


def _count(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"COUNT must be a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"COUNT must be at least 1, got {text!r}")
    return value


def _interval(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"INTERVAL_S must be a number of seconds, got {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"INTERVAL_S must be a positive number of seconds, got {text!r}")
    return value


def parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(prog="python -m pantheon.platform.telemetry",
                                 description="Print telemetry samples as JSON lines (a board/container diagnostic).")
    ap.add_argument("backend", nargs="?", default="auto", choices=BACKENDS, help="telemetry backend (default: auto)")
    ap.add_argument("count", nargs="?", default=5, type=_count, help="samples to print (default: 5)")
    ap.add_argument("interval", nargs="?", default=0.2, type=_interval, metavar="interval_s",
                    help="seconds between samples (default: 0.2)")
    return ap


def main(argv: Optional[List[str]] = None) -> int:
    """Parse ``argv`` (default: ``sys.argv[1:]``), sample, print; the exit code."""
    args = parser().parse_args(argv)
    try:
        sampler = open_sampler(args.backend)
    except TelemetryError as exc:
        from pantheon import console

        console.error_line(str(exc))
        return 1
    rows: List[Sample] = []
    with sampler:
        thread = TelemetryThread(sampler, emit=rows.append, interval_s=args.interval).start()
        while len(rows) < args.count and thread.error is None:
            time.sleep(args.interval / 4)
        thread.stop()
    for row in rows[: args.count]:
        print(json.dumps({"backend": sampler.name, **row}, sort_keys=True))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
