"""Slicing at critical nodes (library): equivalence over many torchvision models, merging.

The ``pantheon slice`` command and bad input are in ``test_slice_cli.py``."""

from __future__ import annotations

from typing import Dict, Set

import pytest
import torch
import torch.fx

from pantheon.errors import ModelError
from pantheon.offline import slice as sl
from pantheon.online.memory import module_bytes

ARCHS = sl.CHECKED_ARCHS
SIDE = {"alexnet": 64}  # smallest input each model accepts, to keep the file fast; default 32


def _shape(arch: str) -> tuple:
    side = SIDE.get(arch, 32)
    return (1, 3, side, side)


class _Cache:
    """Models and slices built once per module (building vgg16 alone takes a second)."""

    def __init__(self) -> None:
        self.models: Dict[str, torch.nn.Module] = {}
        self.results: Dict[tuple, sl.SliceResult] = {}

    def model(self, arch: str) -> torch.nn.Module:
        if arch not in self.models:
            torch.manual_seed(0)
            self.models[arch] = sl.build_arch(arch).eval()
        return self.models[arch]

    def sliced(self, arch: str, merge: bool = True) -> sl.SliceResult:
        key = (arch, merge)
        if key not in self.results:
            self.results[key] = sl.slice_model(self.model(arch), torch.randn(_shape(arch)), merge=merge)
        return self.results[key]


@pytest.fixture(scope="module")
def cache() -> _Cache:
    return _Cache()


def _brute_force_critical(gm: torch.fx.GraphModule) -> Set[str]:
    """Nodes whose removal disconnects the input from the output (the definition, O(N*E))."""
    src = next(n for n in gm.graph.nodes if n.op == "placeholder")
    dst = next(n for n in gm.graph.nodes if n.op == "output")

    def reachable(removed):
        seen, stack = {src}, [src]
        while stack:
            for u in stack.pop().users:
                if u is not removed and u not in seen:
                    seen.add(u)
                    stack.append(u)
        return dst in seen

    return {n.name for n in gm.graph.nodes if n not in (src, dst) and not reachable(n)}


def _placeholders(chunk: torch.fx.GraphModule) -> int:
    return sum(1 for n in chunk.graph.nodes if n.op == "placeholder")


# ------------------------------------------------------------------------------------------------
# equivalence and structure, every architecture
# ------------------------------------------------------------------------------------------------


@pytest.mark.parametrize("arch", ARCHS)
def test_chunks_reproduce_model(cache, arch):
    model, res = cache.model(arch), cache.sliced(arch)
    x = torch.randn(_shape(arch))  # a fresh input, not the one slice_model checked with
    with torch.no_grad():
        ref, got = model(x), sl.run_chunks(res.chunks, x)
    diff, scale = sl.max_abs_diff(ref, got), max(t.abs().max().item() for t in sl.tensors_of(ref))
    assert diff == 0.0 or diff <= 1e-5 * scale, f"{arch}: max abs diff {diff}"
    assert sl.within_tolerance(res.max_abs_diff, res.ref_max_abs)
    assert isinstance(got, dict) == isinstance(ref, dict)  # fx returns a plain dict for an OrderedDict
    assert len(res.chunks) > 1
    for chunk, info in zip(res.chunks, res.info):
        assert _placeholders(chunk) == 1  # exactly one tensor crosses each cut
        chunk.graph.lint()
        assert info.has_compute and sl.has_compute(chunk)
        assert info.n_ops > 0
    # parameters are not duplicated or lost: chunk bytes add up to the model's
    assert sum(i.param_bytes for i in res.info) == module_bytes(model)


@pytest.mark.parametrize("arch", ["resnet18", "googlenet", "ssdlite", "shufflenet_v2_x1_0", "densenet121"])
def test_critical_nodes_match_definition(cache, arch):
    gm = sl.trace(cache.model(arch))
    sl.propagate_shapes(gm, torch.randn(_shape(arch)))
    found = {n.name for n in sl.dominators_of_output(gm)}
    assert found == _brute_force_critical(gm)
    crit = sl.find_critical_nodes(gm)
    assert crit, arch
    assert all(n.meta["type"] is torch.Tensor or issubclass(n.meta["type"], torch.Tensor) for n in crit)


def test_intermediate_chunks_pass_one_tensor(cache):
    res = cache.sliced("googlenet", merge=False)
    x = torch.randn(_shape("googlenet"))
    with torch.no_grad():
        for chunk in res.chunks[:-1]:
            x = chunk(x)
            assert isinstance(x, torch.Tensor)
    assert len(res.chunks) == len(res.critical_nodes) + 1


def test_ssdlite_tail_keeps_output_structure(cache):
    model, res = cache.model("ssdlite"), cache.sliced("ssdlite")
    x = torch.randn(_shape("ssdlite"))
    with torch.no_grad():
        ref, got = model(x), sl.run_chunks(res.chunks, x)
    assert isinstance(got, dict) and list(got) == list(ref)  # same keys, same order
    assert len(res.info[-1].out_shape) == len(ref)  # the tail reports one shape per feature map


def test_merge_folds_light_chunks(cache):
    unmerged, merged = cache.sliced("vgg16", merge=False), cache.sliced("vgg16")
    assert len(merged.chunks) < len(unmerged.chunks)
    assert any(not i.has_compute for i in unmerged.info)  # ReLU/pool chunks exist before merging
    n_compute = sum(i.has_compute for i in unmerged.info)
    assert len(merged.chunks) == n_compute  # each light chunk joined a compute chunk
    assert sum(i.n_ops for i in merged.info) == sum(i.n_ops for i in unmerged.info)


def test_leading_light_chunk_folds_forward():
    model = torch.nn.Sequential(
        torch.nn.ReLU(),  # light, before any compute: joins the first conv's chunk
        torch.nn.Conv2d(3, 4, 3),
        torch.nn.ReLU(),
        torch.nn.Conv2d(4, 4, 3),
        torch.nn.Flatten(),
    )
    unmerged = sl.slice_model(model, torch.randn(1, 3, 8, 8), merge=False)
    merged = sl.slice_model(model, torch.randn(1, 3, 8, 8))
    assert [i.n_ops for i in unmerged.info] == [1, 1, 1, 1, 1]
    assert [i.n_ops for i in merged.info] == [3, 2]
    assert merged.info[0].has_compute and merged.exact


def test_model_without_compute_is_one_chunk():
    res = sl.slice_model(
        torch.nn.Sequential(torch.nn.ReLU(), torch.nn.Tanh(), torch.nn.Flatten()), torch.randn(2, 5)
    )
    assert len(res.chunks) == 1 and res.exact


class _Quirky(torch.nn.Module):
    """Size read early and used late, a bare parameter, a constant computed from a parameter."""

    def __init__(self) -> None:
        super().__init__()
        self.conv1 = torch.nn.Conv2d(3, 4, 3, padding=1)
        self.conv2 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.conv3 = torch.nn.Conv2d(4, 4, 3, padding=1)
        self.scale = torch.nn.Parameter(torch.randn(1, 4, 1, 1))
        self.proj = torch.nn.Parameter(torch.randn(4, 6))

    def forward(self, x):
        b = x.size(0)  # crosses the convs below: none of them may be a cut point
        y = torch.relu(self.conv1(x))
        y = self.conv2(y) * self.scale
        y = self.conv3(y).reshape(b, 4, -1).mean(-1)
        z = torch.relu(y)
        return z @ (self.proj * 2.0)  # input-independent constant travels with its user


def test_size_used_later_is_not_cut_and_constants_travel():
    model = _Quirky().eval()
    res = sl.slice_model(model, torch.randn(2, 3, 8, 8), merge=False)
    gm = sl.trace(model)
    names_between = {n.name for n in gm.graph.nodes if n.name in ("conv1", "relu", "conv2", "mul", "conv3")}
    assert names_between and not names_between & set(res.critical_nodes)
    assert "reshape" in res.critical_nodes or "mean" in res.critical_nodes
    assert all(_placeholders(c) == 1 for c in res.chunks)
    assert sum(i.param_bytes for i in res.info) == module_bytes(model)
    x = torch.randn(2, 3, 8, 8)
    with torch.no_grad():
        assert sl.max_abs_diff(model(x), sl.run_chunks(res.chunks, x)) == 0.0


def test_propagate_shapes_records_each_value_and_fails_in_one_line(capfd):
    model = _Quirky().eval()
    gm = sl.trace(model)
    x = torch.randn(2, 3, 8, 8)
    sl.propagate_shapes(gm, x)
    values = {}

    class Keep(torch.fx.Interpreter):  # the values themselves, by a plain interpreter
        def run_node(self, n):
            values[n] = super().run_node(n)
            return values[n]

    with torch.no_grad():
        Keep(gm).run(x)
    assert any(not isinstance(v, torch.Tensor) for v in values.values())  # the size
    for n, v in values.items():
        assert n.meta["type"] is type(v)
        if isinstance(v, torch.Tensor):
            assert n.meta["tensor_meta"].shape == v.shape and n.meta["tensor_meta"].dtype == v.dtype
            assert n.meta["nbytes"] == v.untyped_storage().nbytes()
        else:
            assert "tensor_meta" not in n.meta and n.meta["nbytes"] == 0
    with pytest.raises(ModelError, match=r"shape \[2, 1, 8, 8\] at conv1 \(call_module Conv2d\): .*channels"):
        sl.propagate_shapes(sl.trace(model), torch.randn(2, 1, 8, 8))
    assert "Traceback" not in capfd.readouterr().err  # ShapeProp prints one on errors it catches


def test_module_bytes_counts_each_storage_once(tmp_path):
    class Shared(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.a = torch.nn.Linear(4, 4, bias=False)  # 64 bytes
            self.b = torch.nn.Linear(4, 4, bias=False)
            self.b.weight = self.a.weight  # tied: one storage
            self.bn = torch.nn.BatchNorm1d(4)  # weight, bias, running mean and var (16 each) + 8-byte counter
            base = torch.zeros(10)
            self.register_buffer("head", base[:2])  # views of one 40-byte storage: counted once, whole
            self.register_buffer("tail", base[5:])

        def forward(self, x):
            return self.bn(self.b(self.a(x))) + self.head.sum() + self.tail.sum()

    model = Shared().eval()
    expected = 64 + 4 * 16 + 8 + 40
    assert module_bytes(model) == expected
    torch.jit.save(torch.jit.script(model), str(tmp_path / "m.pt"))
    assert module_bytes(torch.jit.load(str(tmp_path / "m.pt"))) == expected  # fresh tensor objects per call


def test_cut_at_non_critical_node_is_refused():
    model = _Quirky().eval()
    gm = sl.trace(model)
    conv2 = next(n for n in gm.graph.nodes if n.name == "conv2")
    with pytest.raises(ModelError, match="crosses the cut"):
        sl.split_at(gm, [conv2])


def test_two_input_model_is_refused():
    class Two(torch.nn.Module):
        def forward(self, a, b):
            return a + b

    with pytest.raises(ModelError, match="exactly one tensor input"):
        sl.slice_model(Two(), torch.randn(1, 3))


@pytest.mark.parametrize("arch", ["resnet18", "googlenet", "mobilenet_v3_small", "ssdlite"])
def test_chunks_script(cache, arch):
    res = cache.sliced(arch)
    scripted = [torch.jit.script(c) for c in res.chunks]
    x = torch.randn(_shape(arch))
    with torch.no_grad():
        assert sl.max_abs_diff(sl.run_chunks(res.chunks, x), sl.run_chunks(scripted, x)) == 0.0
