"""The whole exception tree of Pantheon, in one place.

Every error a user can cause is a ``PantheonError``; the CLI turns it into one
red line on stderr and exit code 1 (``UsageError``: exit code 2). Third-party
errors are wrapped at the boundary with ``raise ... from exc``.

::

    PantheonError
    ├── UsageError                 bad option values, unknown names (exit 2)
    │   └── UnknownTaskError
    ├── DataError                  datasets: missing/corrupt folder, wrong image size
    ├── ArtifactError              the artifact store
    │   ├── ManifestError          missing or unreadable manifest.json
    │   ├── ChecksumError          a file's sha256/size differs from its manifest
    │   └── ArtifactExistsError    refusing to overwrite without --force
    ├── ModelError                 building/loading models
    │   ├── TraceError             torch.fx could not trace the model
    │   └── WeightsError           a weights file that does not fit the architecture
    ├── FormatError                protobuf / pbtxt / csv / yaml / json input
    ├── ProfilerError              the profiler server and its client
    │   ├── ProtocolError          bad framing, oversized message, bad checksum
    │   ├── AuthError              wrong or missing token
    │   └── ConnectionLostError    the server went away (after retries)
    ├── PlanError                  exit placement
    │   └── InfeasibleError        no placement meets the limits
    ├── WorkloadError              workload specs and .bin files
    ├── RepositoryError            deployment model repositories
    ├── RuntimeFault               the online runtime / scheduler
    ├── TelemetryError             telemetry backends
    └── DeployError                pantheon-deploy
        ├── SSHError               unreachable board, auth failure
        ├── HostKeyError           unknown or changed host key
        ├── BoardError             not a Jetson, no sudo, no NVIDIA runtime, L4T mismatch
        └── DockerError            engine errors, build failures

Ctrl-C is not a ``PantheonError``: it stays Python's ``KeyboardInterrupt`` (exit 130).
It can be lost on its way up: Python cannot raise it inside a weakref callback or a
``__del__`` (it prints "Exception ignored in ..." and goes on), and C++ code that calls back
into Python (``torch.jit.script``) turns it into an ordinary error that a fallback catches.
Under :func:`recorded_interrupts` (the CLI runs every command in it) SIGINT is also recorded,
:func:`swallowed_interrupt_hook` keeps the ignored ones quiet, and :func:`check_interrupt`
raises a lost one again at the next safe point (every artifact checks it before it is
sealed), so an interrupt is never lost and never printed as noise.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading
from typing import Any, Iterator


class PantheonError(Exception):
    """Base class: an error the user can act on. ``str(err)`` is one line."""

    exit_code = 1

    def __str__(self) -> str:  # keep it to one line
        return " ".join(super().__str__().split())


class UsageError(PantheonError):
    exit_code = 2


class UnknownTaskError(UsageError):
    pass


class DataError(PantheonError):
    pass


class ArtifactError(PantheonError):
    pass


class ManifestError(ArtifactError):
    pass


class ChecksumError(ArtifactError):
    pass


class ArtifactExistsError(ArtifactError):
    pass


class ModelError(PantheonError):
    pass


class TraceError(ModelError):
    pass


class WeightsError(ModelError):
    pass


class FormatError(PantheonError):
    pass


class ProfilerError(PantheonError):
    pass


class ProtocolError(ProfilerError):
    pass


class AuthError(ProfilerError):
    pass


class ConnectionLostError(ProfilerError):
    pass


class PlanError(PantheonError):
    pass


class InfeasibleError(PlanError):
    pass


class WorkloadError(PantheonError):
    pass


class RepositoryError(PantheonError):
    pass


class RuntimeFault(PantheonError):
    pass


class TelemetryError(PantheonError):
    pass


class DeployError(PantheonError):
    pass


class SSHError(DeployError):
    pass


class HostKeyError(DeployError):
    pass


class BoardError(DeployError):
    pass


class DockerError(DeployError):
    pass


_interrupt_pending = threading.Event()


def swallowed_interrupt_hook(previous: Any = None) -> Any:
    """A ``sys.unraisablehook`` that records a ``KeyboardInterrupt`` Python could not raise (quietly)
    and passes every other unraisable exception to ``previous`` (default: Python's own hook)."""
    previous = previous or sys.__unraisablehook__

    def hook(unraisable: Any) -> None:
        if isinstance(unraisable.exc_value, KeyboardInterrupt):
            _interrupt_pending.set()
            return
        previous(unraisable)

    hook.pantheon_interrupts = True  # type: ignore[attr-defined]
    return hook


def install_interrupt_hook() -> None:
    """Install :func:`swallowed_interrupt_hook` once per process (the CLI does, at each command)."""
    if not getattr(sys.unraisablehook, "pantheon_interrupts", False):
        sys.unraisablehook = swallowed_interrupt_hook(sys.unraisablehook)


def _record_and_raise(signum: int, frame: Any) -> None:
    _interrupt_pending.set()
    raise KeyboardInterrupt


@contextlib.contextmanager
def recorded_interrupts() -> Iterator[None]:
    """Within the block, SIGINT is recorded (for :func:`check_interrupt`) as well as raised.

    Only Python's default handler is replaced, in the main thread: an ignored SIGINT (``nohup``,
    ``cmd &``) or a command's own handler (the runtime's clean stop) is left alone. A clean exit
    of the block clears the record.
    """
    install_interrupt_hook()
    old = None
    if threading.current_thread() is threading.main_thread() and \
            signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        old = signal.signal(signal.SIGINT, _record_and_raise)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGINT, old)


@contextlib.contextmanager
def signals_held() -> Iterator[None]:
    """Hold SIGINT and SIGTERM until the block ends, then deliver them: for a few steps that must all
    happen or none (replacing an artifact folder by renames). In the main thread only, where Python
    runs its handlers; elsewhere the block runs as it is (a signal interrupts the main thread, not it).
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    held: list = []
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        old[sig] = signal.signal(sig, lambda signum, _frame: held.append(signum))
    try:
        yield
    finally:
        for sig, handler in old.items():
            signal.signal(sig, handler)
        for sig in dict.fromkeys(held):
            signal.raise_signal(sig)  # to the handler that was in place: raise, exit, or ignore


def clear_interrupt() -> None:
    """Forget a recorded interrupt (it was handled: the command ended with exit 130)."""
    _interrupt_pending.clear()


def interrupt_pending() -> bool:
    """True once a Ctrl-C was swallowed where it could not be raised (see the module docstring)."""
    return _interrupt_pending.is_set()


def check_interrupt() -> None:
    """Raise ``KeyboardInterrupt`` if one was swallowed earlier: call it before sealing a result."""
    if _interrupt_pending.is_set():
        _interrupt_pending.clear()
        raise KeyboardInterrupt
