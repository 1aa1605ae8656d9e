"""The profiler's wire protocol, spoken by ``pantheon profile`` and ``pantheon profiler-server``.

Messages are ``ProfileRequest`` (client -> server) and ``ProfileReply`` (server -> client)
of ``pantheon/formats/profiler.proto``. Framing on the TCP stream: an 8-byte big-endian
unsigned length (:data:`HEADER`), then that many bytes of the serialized message. One
reply answers every request, in order, on a connection that stays open until the client
closes it. Every request carries :data:`PROTOCOL_VERSION` (field 1) and the shared token
(field 2); a protobuf encoder writes fields in number order, so they are the first bytes
of the body and a server can check the token before reading the rest. A failed request
gets a reply with ``ok = false``, a one-line ``error`` and its :data:`ErrorKind`.

Bump :data:`PROTOCOL_VERSION` when a field's meaning changes.

Example::

    send_msg(sock, ProfileRequest(version=PROTOCOL_VERSION, token="s3cret", ping=True))
    n = recv_header(sock)                                   # None: the peer closed cleanly
    reply = ProfileReply.FromString(recv_exact(sock, n))    # reply.device, reply.version
"""

from __future__ import annotations

import socket
import struct
from typing import Optional

from google.protobuf import message as _message

from pantheon.errors import ConnectionLostError
from pantheon.formats import profiler_pb2

PROTOCOL_VERSION = 1
HEADER = struct.Struct(">Q")  # 8-byte big-endian length prefix
DEFAULT_PORT = 8765

ProfileRequest = profiler_pb2.ProfileRequest
ProfileReply = profiler_pb2.ProfileReply
ErrorKind = profiler_pb2.ErrorKind


def recv_exact(sock: socket.socket, n: int, bufsize: int = 1 << 20) -> bytes:
    """Read exactly ``n`` bytes; :class:`ConnectionLostError` when the peer closes first."""
    chunks = []
    left = n
    while left > 0:
        chunk = sock.recv(min(left, bufsize))
        if not chunk:
            raise ConnectionLostError(f"connection closed after {n - left} of {n} bytes")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)


def send_msg(sock: socket.socket, msg: _message.Message) -> None:
    """Send ``msg`` framed: its length as :data:`HEADER`, then its serialized bytes."""
    data = msg.SerializeToString()
    sock.sendall(HEADER.pack(len(data)) + data)


def recv_header(sock: socket.socket, bufsize: int = 1 << 20) -> Optional[int]:
    """The next length prefix, or None when the peer closed the connection cleanly before it."""
    first = sock.recv(HEADER.size)
    if not first:
        return None
    rest = recv_exact(sock, HEADER.size - len(first), bufsize) if len(first) < HEADER.size else b""
    return int(HEADER.unpack(first + rest)[0])
