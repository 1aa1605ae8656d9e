"""Wire formats (protobuf, wire-compatible with the reference) and the artifact store.

- ``workload_pb2``: ``Workloads`` / ``Workload`` (the runtime's ``.bin`` input).
- ``model_config_pb2``: ``ModelConfig`` / ``ModelBlockProfile`` (``config.pbtxt``).
- :mod:`pantheon.formats.store`: the shared directory layout and manifests.
"""

from __future__ import annotations

from pathlib import Path

from google.protobuf import message as _message
from google.protobuf import text_format

from pantheon.errors import FormatError
from pantheon.formats import model_config_pb2, workload_pb2
from pantheon.formats.store import PathLike, atomic_write_bytes, atomic_write_text

ModelConfig = model_config_pb2.ModelConfig
ModelBlockProfile = model_config_pb2.ModelBlockProfile
Workloads = workload_pb2.Workloads
Workload = workload_pb2.Workload


def model_config_to_text(cfg: ModelConfig) -> str:
    """``config.pbtxt`` text of ``cfg`` (protobuf text format)."""
    return text_format.MessageToString(cfg)


def model_config_from_text(text: str, where: str = "config.pbtxt") -> ModelConfig:
    cfg = ModelConfig()
    try:
        text_format.Parse(text, cfg)
    except text_format.ParseError as exc:
        raise FormatError(f"{where} is not a valid ModelConfig: {exc}") from exc
    return cfg


def read_model_config(path: PathLike) -> ModelConfig:
    path = Path(path)
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise FormatError(f"cannot read {path}: {exc}") from exc
    return model_config_from_text(text, where=str(path))


def write_model_config(path: PathLike, cfg: ModelConfig) -> None:
    atomic_write_text(path, model_config_to_text(cfg))


def read_workloads(path: PathLike) -> Workloads:
    """Parse a ``Workloads`` ``.bin``; a truncated or non-protobuf file is a :class:`FormatError`."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise FormatError(f"cannot read workload {path}: {exc.strerror or exc}") from exc
    msg = Workloads()
    try:
        msg.ParseFromString(data)
    except _message.DecodeError as exc:
        raise FormatError(f"{path} is not a Workloads protobuf (truncated or another format): {exc}") from exc
    if data and not msg.workload:
        raise FormatError(f"{path} is not a Workloads protobuf: it parsed to no jobs")
    return msg


def write_workloads(path: PathLike, msg: Workloads) -> None:
    atomic_write_bytes(path, msg.SerializeToString())
