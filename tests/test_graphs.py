"""ONNX graphs without torch: seeded weights keep every activation near unit scale, the same initializer
name holds the same bytes in every subnet, and the whole path runs in a process that cannot import torch."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort
import pytest
from onnx import TensorProto, helper

from compofa.graphs.cache import OnnxExporter, write_graph
from compofa.graphs.onnx_graph import LAYER_WRITERS, Parameter, build_onnx_model
from compofa.graphs.seeded import SeededWeights
from compofa.sources.subnet import SubnetSource
from compofa.space import get_space, list_spaces
from compofa.space.plan import LAYER_KINDS, plan_subnet

SPACES = [space.name for space in list_spaces()]


def _every_output(model: onnx.ModelProto) -> tuple[list[str], onnx.ModelProto]:
    """`model` with every node's output as a graph output (to look inside the network)."""
    names = [node.output[0] for node in model.graph.node]
    del model.graph.output[:]
    model.graph.output.extend(helper.make_tensor_value_info(name, TensorProto.FLOAT, None) for name in names)
    return names, model


def test_there_is_one_graph_writer_per_layer_kind() -> None:
    assert set(LAYER_WRITERS) == set(LAYER_KINDS)


@pytest.mark.parametrize("extreme", ["largest", "smallest"])
@pytest.mark.parametrize("space", SPACES)
def test_seeded_graphs_keep_every_activation_near_unit_scale(space: str, extreme: str) -> None:
    """Finite logits of sane spread, and no node output of the whole network far from unit scale: unscaled
    weights shrink activations into subnormal floats (tens of times slower on CPUs) or blow them up."""
    design = get_space(space)
    spec = design.largest() if extreme == "largest" else design.smallest()
    width = design.family.default_width
    graph = build_onnx_model(plan_subnet(spec, width), SeededWeights(design.family, width))
    names, model = _every_output(graph.to_proto())
    session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(0).standard_normal((1, 3, spec.resolution, spec.resolution)).astype(np.float32)
    outputs = session.run(None, {"input": x})
    logits = outputs[-1]
    assert names[-1] == "logits" and logits.shape == (1, 1000) and np.isfinite(logits).all()
    assert 1e-3 < logits.std() < 1e3
    spreads = {name: float(np.sqrt(np.mean(np.square(out, dtype=np.float64)))) for name, out in zip(names, outputs)}
    far = {name: round(spread, 3) for name, spread in spreads.items() if not 0.05 < spread < 20}
    assert not far, f"activations far from unit scale in {spec}: {far}"


@pytest.mark.parametrize("space", ["compofa", "ofa-mbv3", "ofa-proxyless"])
def test_same_initializer_name_means_same_bytes_across_subnets(space: str) -> None:
    """Names say what determines the values (block position and shapes), so every subnet, resolution and batch
    that holds a layer holds the same bytes for it; the export cache stores each array once."""
    design = get_space(space)
    weights = SeededWeights(design.family, design.family.default_width)
    specs = [design.largest(), design.smallest(), *design.sample_many(np.random.default_rng(3), 4, [160, 192])]
    seen: dict[str, bytes] = {}
    shared = 0
    for batch, spec in enumerate(specs, start=1):
        graph = build_onnx_model(weights.plan(spec), weights, batch=batch % 2 + 1)
        for name, array in graph.weights:
            data = array.tobytes()
            if name in seen:
                shared += 1
                assert seen[name] == data, f"{name} differs in {spec}"
            seen[name] = data
    assert shared > 100


def test_seeded_weights_follow_seed_family_and_width() -> None:
    mbv3 = get_space("compofa").family
    parameter = Parameter("block3.in32.mid96.out32.k5.depth_conv", (96, 1, 5, 5), "w", bn_key="bn")
    first, again = SeededWeights(mbv3, 1.2)(parameter), SeededWeights(mbv3, 1.2)(parameter)
    assert all(np.array_equal(a, b) for a, b in zip(first, again))
    assert first[0].dtype == np.float32 and first[0].shape == (96, 1, 5, 5) and first[1] is not None
    for other in (SeededWeights(mbv3, 1.2, seed=1), SeededWeights(mbv3, 1.0)):
        assert other.fingerprint != SeededWeights(mbv3, 1.2).fingerprint
        assert not np.array_equal(other(parameter)[0], first[0])
    # spread: variance output_moment / (fan_in * input_moment)
    wide = SeededWeights(mbv3, 1.2)(Parameter("x", (512, 256, 1, 1), "w", input_moment=4.0, output_moment=16.0))[0]
    assert wide.std() == pytest.approx((16.0 / (256 * 4.0)) ** 0.5, rel=0.01)


def test_seeded_exports_are_cached_and_reproducible(tmp_path: Path) -> None:
    """Two sources with seeded weights write the same bytes; the cache key follows the weights' fingerprint."""
    spec = get_space("compofa").sample(np.random.default_rng(5), [160])
    first = SubnetSource("compofa", cache_dir=tmp_path / "a").onnx(spec, 1)
    second = SubnetSource("compofa", cache_dir=tmp_path / "b").onnx(spec, 1)
    assert first.name == second.name and first.read_bytes() == second.read_bytes()
    family = get_space("compofa").family
    other = OnnxExporter(SeededWeights(family, 1.2, seed=1), cache_dir=tmp_path / "a")
    assert other.key(spec) != first.stem
    standalone = write_graph(SeededWeights(family, 1.2), spec, tmp_path / "standalone.onnx")
    metadata = {p.key: p.value for p in onnx.load(str(standalone)).metadata_props}
    assert metadata["compofa.weights"] == SeededWeights(family, 1.2).fingerprint and metadata["compofa.seed"] == "0"
    x = np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)
    run = [ort.InferenceSession(str(p), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
           for p in (first, standalone)]
    np.testing.assert_array_equal(run[0], run[1])
    assert SubnetSource("compofa").describe()["weights"] == "seeded (generator 1, seed 0)"


def test_seeded_pytorch_modules_compute_what_the_seeded_graphs_compute(tmp_path: Path) -> None:
    """Without a checkpoint a PyTorch backend times the very network the ONNX backends time."""
    torch = pytest.importorskip("torch")
    for space in ("compofa", "ofa-proxyless"):
        source = SubnetSource(space, cache_dir=tmp_path)
        spec = get_space(space).sample(np.random.default_rng(2), [128])
        x = np.random.default_rng(0).standard_normal(source.input_shape(spec, 2)).astype(np.float32)
        with torch.inference_mode():
            expected = source.module(spec)(torch.from_numpy(x)).numpy()
        session = ort.InferenceSession(str(source.onnx(spec, 2)), providers=["CPUExecutionProvider"])
        got = session.run([source.output_name], {"input": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())


def test_a_checkpoint_source_hands_out_the_checkpoints_network(tmp_path: Path) -> None:
    """With a checkpoint, a source's ONNX files and modules compute what the checkpoint's subnet computes."""
    torch = pytest.importorskip("torch")
    from compofa.supernet import fresh_supernet, save_checkpoint
    from compofa.supernet.export import weights_fingerprint

    supernet = fresh_supernet("mobilenetv3", 1.0, seed=7)
    save_checkpoint(supernet, tmp_path / "w10.pt")
    source = SubnetSource("compofa", 1.0, tmp_path / "w10.pt", cache_dir=tmp_path / "cache")
    assert "weights" not in source.describe()  # describing never reads the checkpoint
    spec = get_space("compofa").sample(np.random.default_rng(6), [128])
    x = np.random.default_rng(2).standard_normal(source.input_shape(spec, 1)).astype(np.float32)
    with torch.inference_mode():
        expected = supernet(torch.from_numpy(x), spec).numpy()
        from_module = source.module(spec)(torch.from_numpy(x)).numpy()
    got = ort.InferenceSession(str(source.onnx(spec, 1)), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
    np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    np.testing.assert_allclose(from_module, expected, rtol=1e-5, atol=1e-5 * np.abs(expected).max())
    assert source.describe()["weights"] == weights_fingerprint(supernet)


def test_without_a_checkpoint_every_export_route_writes_the_same_seeded_network(tmp_path: Path) -> None:
    """The graph, the torch.onnx trace and the .pt file of a subnet without a checkpoint compute the same."""
    torch = pytest.importorskip("torch")
    from compofa.sources.export import export_subnet
    from compofa.supernet.export import load_subnet

    spec = get_space("ofa-mbv3").sample(np.random.default_rng(4), [128])
    graph = export_subnet(spec, tmp_path / "graph.onnx", batch=2)
    traced = export_subnet(spec, tmp_path / "traced.onnx", batch=2, method="torch")
    module = load_subnet(export_subnet(spec, tmp_path / "subnet.pt"))
    x = np.random.default_rng(1).standard_normal((2, 3, 128, 128)).astype(np.float32)
    with torch.inference_mode():
        expected = module(torch.from_numpy(x)).numpy()
    for path in (graph, traced):
        got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"input": x})[0]
        np.testing.assert_allclose(got, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max(), err_msg=path.name)
    metadata = [{p.key: p.value for p in onnx.load(str(path)).metadata_props} for path in (graph, traced)]
    assert metadata[0] == metadata[1]
    assert metadata[0]["compofa.weights"] == SeededWeights(module.plan.family, 1.2).fingerprint


_WITHOUT_TORCH = r'''
import json, sys
sys.modules["torch"] = None  # any `import torch` now raises ImportError, as if it were not installed
import numpy as np, onnxruntime as ort
from click.testing import CliRunner
from compofa.cli import main
from compofa.errors import CompofaError
from compofa.extras import TorchRequiredError
from compofa.sources.export import export_subnet
from compofa.sources.layers import LayerSource
from compofa.sources.subnet import SubnetSource
from compofa.lut.layers import distinct_layers
from compofa.space import get_space

folder = sys.argv[1]
report = {}
space = get_space("compofa")
spec = space.smallest(160)
source = SubnetSource("compofa", cache_dir=folder + "/cache")
x = np.random.default_rng(0).standard_normal(source.input_shape(spec, 1)).astype(np.float32)
session = ort.InferenceSession(str(source.onnx(spec, 1)), providers=["CPUExecutionProvider"])
report["logits_std"] = float(session.run([source.output_name], {"input": x})[0].std())
layers = LayerSource(space.family, 1.2, folder + "/cache")
layer = distinct_layers("compofa", 1.2, [160])[3]
y = np.zeros(layers.input_shape(layer, 1), np.float32)
session = ort.InferenceSession(str(layers.onnx(layer, 1)), providers=["CPUExecutionProvider"])
report["layer_finite"] = bool(np.isfinite(session.run([layers.output_name], {"input": y})[0]).all())
report["exported"] = export_subnet(spec, folder + "/a.onnx").exists()
cli = CliRunner().invoke(main, ["export", str(spec), "-o", folder + "/b.onnx"])
report["cli"] = [cli.exit_code, (folder + "/b.onnx") in cli.stdout]
errors = []
for attempt in (lambda: source.module(spec), lambda: layers.module(layer),
                lambda: export_subnet(spec, folder + "/c.pt"),
                lambda: export_subnet(spec, folder + "/c.onnx", method="torch"),
                lambda: SubnetSource("compofa", checkpoint=folder + "/none.pth").onnx(spec, 1)):
    try:
        attempt()
        errors.append(None)
    except TorchRequiredError as error:
        errors.append(str(error))
report["errors"] = errors
cli = CliRunner().invoke(main, ["export", str(spec), "-o", folder + "/d.pt"])
report["cli_pt"] = [cli.exit_code, cli.stderr]
report["torch_loaded"] = sys.modules.get("torch") is not None
print(json.dumps(report))
'''


def test_graphs_sources_and_export_run_without_torch(tmp_path: Path) -> None:
    """In a process where `import torch` fails: seeded subnet and layer graphs build and run, `compofa export`
    writes ONNX, and what needs torch (modules, .pt files, the trace, checkpoints) says so in one line."""
    done = subprocess.run([sys.executable, "-c", _WITHOUT_TORCH, str(tmp_path)], capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout.strip().splitlines()[-1])
    assert 1e-3 < report["logits_std"] < 1e3 and report["layer_finite"] and report["exported"]
    assert report["cli"] == [0, True]
    hint = "needs PyTorch: pip install 'compofa[torch]'"
    assert all(error is not None and error.endswith(hint) and "\n" not in error for error in report["errors"])
    assert report["errors"][0].startswith("a PyTorch module of a subnet")
    assert report["errors"][4].startswith("reading a checkpoint")
    exit_code, stderr = report["cli_pt"]
    assert exit_code == 2 and hint in stderr and len(stderr.strip().splitlines()) == 1
    assert not report["torch_loaded"]
