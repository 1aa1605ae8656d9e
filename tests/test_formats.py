from __future__ import annotations

import ast
import importlib
import subprocess
import sys

import pytest
from _wire import reference_workloads

from pantheon.errors import FormatError
from pantheon.formats import (
    ModelConfig,
    Workloads,
    gen,
    model_config_from_text,
    model_config_to_text,
    read_model_config,
    read_workloads,
    write_model_config,
    write_workloads,
)


@pytest.mark.parametrize("proto", [p for p in gen.PROTOS if (gen.HERE / p).exists()])
def test_committed_pb2_matches_proto(proto):
    module = gen.HERE / (proto[: -len(".proto")] + "_pb2.py")
    assert module.read_text() == gen.render(proto), f"run `make proto`: {module.name} is stale"


def _stub_declarations(tree: ast.Module) -> dict:
    """{class name: sorted names it annotates, but the ``*_FIELD_NUMBER`` constants} of a ``.pyi``."""
    out = {}
    for node in tree.body:
        if isinstance(node, ast.ClassDef):
            names = [n.target.id for n in node.body if isinstance(n, ast.AnnAssign) and isinstance(n.target, ast.Name)]
            out[node.name] = sorted(n for n in names if not n.endswith("_FIELD_NUMBER"))
    return out


@pytest.mark.parametrize("proto", [p for p in gen.PROTOS if (gen.HERE / p).exists()])
def test_committed_stub_declares_the_proto(proto):
    """Type checkers see what the runtime builds: every message with its fields, every enum with its values."""
    base = proto[: -len(".proto")] + "_pb2"
    stub = gen.HERE / f"{base}.pyi"
    assert stub.exists(), f"run `make proto`: {stub.name} is missing"
    file = importlib.import_module(f"pantheon.formats.{base}").DESCRIPTOR
    want = {name: sorted(f.name for f in m.fields) for name, m in file.message_types_by_name.items()}
    want.update({name: sorted(v.name for v in e.values) for name, e in file.enum_types_by_name.items()})
    assert _stub_declarations(ast.parse(stub.read_text())) == want, f"run `make proto`: {stub.name} is stale"


def test_stub_check_sees_a_stale_stub():
    """A stub that lost a field (an edited .proto without `make proto`) no longer matches."""
    text = (gen.HERE / "workload_pb2.pyi").read_text()
    assert "    deadline: int\n" in text
    stale = _stub_declarations(ast.parse(text.replace("    deadline: int\n", "")))
    fresh = _stub_declarations(ast.parse(text))
    assert "deadline" in fresh["Workload"] and "deadline" not in stale["Workload"]
    assert stale != fresh


def _reference_workload_bytes() -> bytes:
    """Two identical jobs encoded by hand from the reference field numbers (no generated code)."""
    return reference_workloads([("sign_recognition", 123456, 154456, (1, 3, 32, 32), 1)] * 2)


def test_reference_workload_bin_parses(tmp_path):
    path = tmp_path / "ref.bin"
    path.write_bytes(_reference_workload_bytes())
    ws = read_workloads(path)
    assert len(ws.workload) == 2
    w = ws.workload[0]
    assert (w.model_name, w.release, w.deadline, list(w.shape), w.id) == ("sign_recognition", 123456, 154456, [1, 3, 32, 32], 1)
    # and what we write is byte-identical to the reference encoding
    out = tmp_path / "ours.bin"
    write_workloads(out, ws)
    assert out.read_bytes() == path.read_bytes()


def test_truncated_workload_is_a_clear_error(tmp_path):
    path = tmp_path / "bad.bin"
    path.write_bytes(_reference_workload_bytes()[:-7])
    with pytest.raises(FormatError, match="not a Workloads protobuf"):
        read_workloads(path)
    path.write_bytes(b"\xff\xff\xff\xff garbage")
    with pytest.raises(FormatError):
        read_workloads(path)


REFERENCE_PBTXT = """name: "sign_recognition"
dims: 1
dims: 3
dims: 32
dims: 32
block_profile {
  latency: 324
}
block_profile {
  id: 1
  latency: 272
}
exit_profile {
  id: 1
  latency: 207
  accuracy: 0.9779974
}
"""


def test_config_pbtxt_round_trip(tmp_path):
    cfg = model_config_from_text(REFERENCE_PBTXT)
    assert cfg.name == "sign_recognition"
    assert list(cfg.dims) == [1, 3, 32, 32]
    assert [(b.id, b.latency) for b in cfg.block_profile] == [(0, 324), (1, 272)]
    assert cfg.exit_profile[0].id == 1 and abs(cfg.exit_profile[0].accuracy - 0.9779974) < 1e-6
    assert model_config_to_text(cfg) == REFERENCE_PBTXT
    write_model_config(tmp_path / "config.pbtxt", cfg)
    assert read_model_config(tmp_path / "config.pbtxt") == cfg
    assert isinstance(cfg, ModelConfig) and not isinstance(cfg, Workloads)


def test_bad_pbtxt_is_one_line_error():
    with pytest.raises(FormatError) as ei:
        model_config_from_text('name: "x"\nblock_profile { latency: "fast" }\n', where="x/config.pbtxt")
    assert "x/config.pbtxt" in str(ei.value) and "\n" not in str(ei.value)


def test_generated_modules_import_without_grpc_tools():
    code = "import sys; sys.modules['grpc_tools'] = None; import pantheon.formats as f; print(f.Workloads.DESCRIPTOR.full_name)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "pantheon.Workloads"
