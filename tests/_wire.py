"""Protobuf wire bytes laid out by hand from the reference's field numbers (no generated code).

What the reference tools would write, so a test can check that our generated code parses it.
"""

from __future__ import annotations

from typing import Iterable


def varint(n: int) -> bytes:
    out = bytearray()
    while True:
        b = n & 0x7F
        n >>= 7
        out.append(b | (0x80 if n else 0))
        if not n:
            return bytes(out)


def field(num: int, wire_type: int, payload: bytes) -> bytes:
    return varint((num << 3) | wire_type) + payload


def nested(num: int, payload: bytes) -> bytes:
    """A length-delimited field (wire type 2): a string, a packed list or a sub-message."""
    return field(num, 2, varint(len(payload)) + payload)


def reference_workloads(jobs: Iterable[tuple]) -> bytes:
    """``Workloads`` bytes from (model_name, release_us, deadline_us, shape, id) tuples:
    Workload fields 1 model_name, 2 release, 3 deadline, 5 packed shape, 6 id; Workloads field 1."""
    out = b""
    for name, release, deadline, shape, job_id in jobs:
        job = (
            nested(1, name.encode())
            + field(2, 0, varint(release))
            + field(3, 0, varint(deadline))
            + nested(5, b"".join(varint(x) for x in shape))
            + field(6, 0, varint(job_id))
        )
        out += nested(1, job)
    return out
