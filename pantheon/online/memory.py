"""The memory manager: the intermediate tensor each preempted or running job keeps.

A job's input and, after each block, that block's output are stored under the job id;
the next block (or the exit branch) consumes it, which frees it. So a job never holds
more than one such tensor, and a finished or dropped job holds none. ``bytes_held`` and
``peak_bytes`` track the device memory these tensors occupy.

Fallback exits (the scheduler's ``fallback=True``): when a job's block runs on the output
of a block that a kept exit follows, the runtime also keeps that tensor (:meth:`keep`), so the
job can still leave through that exit (its branch only) after moving on. A job keeps at
most one such tensor, the latest (a newer one replaces it), so a job holds at most two
tensors; ``kept_peak_tensors``/``kept_peak_bytes`` measure what keeping costs.

Example::

    mm = MemoryManager()
    mm.store(7, x)          # the job's input
    y = block(mm.consume(7)); mm.store(7, y)
    mm.release(7)           # job dropped: free whatever it held
"""

from __future__ import annotations

import threading
from typing import Any, Dict

from pantheon.errors import RuntimeFault


def module_bytes(module: Any) -> int:
    """Bytes a module's parameters and buffers keep allocated: each distinct storage once.

    The rule every memory figure uses (``pantheon slice``'s per-chunk ``param_bytes``,
    ``profile.csv``'s block and branch memory, the benchmarks' ``*_mb``): walk
    ``parameters()`` then ``buffers()`` (buffers count: running statistics occupy memory
    like weights), key each tensor by its storage (device and data pointer) and add each
    storage's ``nbytes()`` once. Tied weights (one tensor in two places) and views of one
    storage are counted once, at the size of the whole storage, which is what holding them
    costs. Works on ``nn.Module``s and TorchScript modules alike (whose ``parameters()``
    returns fresh Python objects, so identity cannot be the key).

    Example::

        >>> module_bytes(torch.nn.Linear(4, 2))  # 8 weights + 2 biases, float32
        40
    """
    storages: Dict[Any, int] = {}
    for t in list(module.parameters()) + list(module.buffers()):
        s = t.untyped_storage()
        storages[(str(t.device), s.data_ptr())] = s.nbytes()
    return sum(storages.values())


def _nbytes(t: Any) -> int:
    try:
        return int(t.element_size() * t.nelement())
    except AttributeError:  # a tuple output (detection heads): count its tensors
        if isinstance(t, (tuple, list)):
            return sum(_nbytes(x) for x in t)
        return 0


class MemoryManager:
    """Per-job storage of exactly one intermediate tensor, thread-safe."""

    def __init__(self) -> None:
        self._held: Dict[int, Any] = {}
        self._sizes: Dict[int, int] = {}
        self._kept: Dict[int, Any] = {}  # job -> (tensor, bytes) at its latest passed exit
        self.kept_bytes = 0
        self.kept_peak_bytes = 0
        self.kept_peak_tensors = 0
        self._lock = threading.Lock()
        self.bytes_held = 0
        self.peak_bytes = 0
        self.peak_tensors = 0
        self.stores = 0

    def store(self, job: int, tensor: Any) -> None:
        """Keep ``tensor`` for ``job``; a job that still holds one is a bug (it would leak)."""
        n = _nbytes(tensor)
        with self._lock:
            if job in self._held:
                raise RuntimeFault(f"memory manager: job {job} already holds a tensor (consume it first)")
            self._held[job] = tensor
            self._sizes[job] = n
            self.bytes_held += n
            self.stores += 1
            if self.bytes_held > self.peak_bytes:
                self.peak_bytes = self.bytes_held
            if len(self._held) > self.peak_tensors:
                self.peak_tensors = len(self._held)

    def consume(self, job: int) -> Any:
        """Take ``job``'s tensor out (it is freed once the caller drops its reference)."""
        with self._lock:
            try:
                t = self._held.pop(job)
            except KeyError:
                raise RuntimeFault(f"memory manager: job {job} holds no tensor") from None
            self.bytes_held -= self._sizes.pop(job)
        return t

    def release(self, job: int) -> bool:
        """Free whatever ``job`` holds (a dropped job), kept tensor included; True when it held one."""
        with self._lock:
            self._unkeep(job)
            if job not in self._held:
                return False
            del self._held[job]
            self.bytes_held -= self._sizes.pop(job)
            return True

    def keep(self, job: int, tensor: Any) -> None:
        """Also hold ``tensor`` (the input of a kept exit ``job`` moves past), replacing an older one."""
        n = _nbytes(tensor)
        with self._lock:
            self._unkeep(job)
            self._kept[job] = (tensor, n)
            self.kept_bytes += n
            self.bytes_held += n
            self.kept_peak_bytes = max(self.kept_peak_bytes, self.kept_bytes)
            self.kept_peak_tensors = max(self.kept_peak_tensors, len(self._kept))
            self.peak_bytes = max(self.peak_bytes, self.bytes_held)

    def take_kept(self, job: int) -> Any:
        """Take ``job``'s kept tensor out (it finishes through that exit)."""
        with self._lock:
            if job not in self._kept:
                raise RuntimeFault(f"memory manager: job {job} kept no tensor at a passed exit")
            tensor = self._kept[job][0]
            self._unkeep(job)
        return tensor

    def discard_kept(self, job: int) -> None:
        """Free ``job``'s kept tensor, if any (it leaves through an exit ahead)."""
        with self._lock:
            self._unkeep(job)

    def _unkeep(self, job: int) -> None:
        old = self._kept.pop(job, None)
        if old is not None:
            self.kept_bytes -= old[1]
            self.bytes_held -= old[1]

    def holds(self, job: int) -> bool:
        with self._lock:
            return job in self._held

    def __len__(self) -> int:
        with self._lock:
            return len(self._held)

    def clear(self) -> int:
        """Free everything; returns how many tensors were still held."""
        with self._lock:
            n = len(self._held)
            self._held.clear()
            self._sizes.clear()
            self._kept.clear()
            self.kept_bytes = 0
            self.bytes_held = 0
            return n
