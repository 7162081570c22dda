"""LiteRT models written from the network plan: the ONNX graph's function (checked against ONNX Runtime on every
design space, whole subnets and single layers), the ONNX graph's parameters, a valid file, and a cache that
writes each file once and the same bytes every time."""

from __future__ import annotations

import functools
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
import pytest

from compofa.errors import ExportError
from compofa.graphs.onnx_graph import Parameter, Weights, build_layer_model, build_onnx_model
from compofa.graphs.seeded import SeededWeights
from compofa.graphs.tflite_cache import TfliteExporter, write_tflite
from compofa.graphs.tflite_format import BUFFER_ALIGNMENT, BuiltinOperator
from compofa.graphs.tflite_graph import (
    TFLITE_LAYER_WRITERS,
    build_tflite_layer_model,
    build_tflite_model,
    nhwc_shape,
    same_padding_is_symmetric,
)
from compofa.space import SubnetSpec, format_spec, get_space, list_spaces
from compofa.space.plan import LAYER_KINDS, NetworkPlan

SPACES = [space.name for space in list_spaces()]
#: Largest logit difference from ONNX Runtime allowed, relative to the largest logit (both are float32).
TOLERANCE = 2e-5
_NEEDS_LITERT = "the LiteRT interpreter is not installed (pip install ai-edge-litert)"


@functools.cache
def _weights(space: str) -> SeededWeights:
    """One set of seeded weights per family, shared by the tests (their arrays are drawn once)."""
    family = get_space(space).family
    return SeededWeights(family, family.default_width)


def _plan(spec: SubnetSpec) -> NetworkPlan:
    return _weights(spec.space).plan(spec)


def _interpreter(model: bytes, delegates: bool = True) -> Any:
    litert = pytest.importorskip("ai_edge_litert.interpreter", reason=_NEEDS_LITERT)
    resolver = litert.OpResolverType.AUTO if delegates else litert.OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES
    interpreter = litert.Interpreter(model_content=model, num_threads=1, experimental_op_resolver_type=resolver)
    interpreter.allocate_tensors()
    return interpreter


def _run_tflite(model: bytes, x_nchw: np.ndarray, delegates: bool = True) -> np.ndarray:
    """The model's output for an NCHW input (given to it channels last), returned channels first."""
    interpreter = _interpreter(model, delegates)
    x = np.ascontiguousarray(x_nchw.transpose(0, 2, 3, 1)) if x_nchw.ndim == 4 else x_nchw
    interpreter.set_tensor(interpreter.get_input_details()[0]["index"], x)
    interpreter.invoke()
    y = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
    return y.transpose(0, 3, 1, 2) if y.ndim == 4 else y


def _run_onnx(model: bytes, x: np.ndarray) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(model, options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _relative_difference(got: np.ndarray, expected: np.ndarray) -> float:
    assert got.shape == expected.shape
    return float(np.abs(got - expected).max() / np.abs(expected).max())


def _image(batch: int, resolution: int) -> np.ndarray:
    return np.random.default_rng(resolution + batch).standard_normal((batch, 3, resolution, resolution),
                                                                     dtype=np.float32)


def test_there_is_one_tflite_writer_per_layer_kind() -> None:
    assert set(TFLITE_LAYER_WRITERS) == set(LAYER_KINDS)


def test_same_padding_is_symmetric_except_for_stride_two_on_an_even_side() -> None:
    assert same_padding_is_symmetric(7, 3, 1) and same_padding_is_symmetric(8, 7, 1)
    assert same_padding_is_symmetric(41, 3, 2) and same_padding_is_symmetric(41, 5, 2)
    assert not same_padding_is_symmetric(82, 3, 2) and not same_padding_is_symmetric(224, 5, 2)
    assert same_padding_is_symmetric(224, 1, 1)
    assert nhwc_shape((24, 112, 112), 2) == (2, 112, 112, 24) and nhwc_shape((1000,), 2) == (2, 1000)


def _parameters_used(build: Callable[[Weights], object], weights: Weights) -> list[Parameter]:
    """The parameters `build` asks its weights for, in order."""
    seen: list[Parameter] = []

    def record(parameter: Parameter, /) -> tuple[np.ndarray, np.ndarray | None]:
        seen.append(parameter)
        return weights(parameter)

    build(record)
    return seen


@pytest.mark.parametrize("space", SPACES)
def test_tflite_models_hold_the_onnx_graphs_parameters(space: str) -> None:
    """Same `Parameter`s in the same order, so the same arrays: the two writers describe one network."""
    design = get_space(space)
    for spec in (design.largest(), design.smallest()):
        plan = _plan(spec)
        onnx_parameters = _parameters_used(functools.partial(build_onnx_model, plan), _weights(space))
        assert _parameters_used(functools.partial(build_tflite_model, plan), _weights(space)) == onnx_parameters
        assert len(onnx_parameters) > 30


@pytest.mark.parametrize("extreme", ["largest", "smallest"])
@pytest.mark.parametrize("space", SPACES)
def test_subnets_compute_what_onnx_runtime_computes(space: str, extreme: str) -> None:
    """At 164 the network's sides are even, then odd (82, 41, 21, 11, 6): stride-2 convs need explicit pads on
    some and SAME padding on others; at 224 every stride-2 conv reads an even side."""
    pytest.importorskip("ai_edge_litert", reason=_NEEDS_LITERT)
    design = get_space(space)
    for resolution, batch in ((164, 2), (224, 1)):
        spec = design.largest(resolution) if extreme == "largest" else design.smallest(resolution)
        plan, weights = _plan(spec), _weights(space)
        x = _image(batch, resolution)
        expected = _run_onnx(build_onnx_model(plan, weights, batch).to_proto().SerializeToString(), x)
        got = _run_tflite(build_tflite_model(plan, weights, batch), x)
        assert got.shape == (batch, plan.num_classes)
        assert _relative_difference(got, expected) < TOLERANCE, spec


@pytest.mark.parametrize("space", ["compofa", "compofa-proxyless"])
def test_the_builtin_kernels_agree_without_the_default_delegate(space: str) -> None:
    """Phones may run the model with TFLite's own kernels rather than XNNPACK's; they read the file the same way."""
    spec = get_space(space).largest(164)
    x = _image(1, 164)
    expected = _run_onnx(build_onnx_model(_plan(spec), _weights(space)).to_proto().SerializeToString(), x)
    got = _run_tflite(build_tflite_model(_plan(spec), _weights(space)), x, delegates=False)
    assert _relative_difference(got, expected) < TOLERANCE


@pytest.mark.parametrize("space", ["compofa", "compofa-proxyless"])
def test_every_layer_alone_computes_what_onnx_runtime_computes(space: str) -> None:
    """Every layer of a network (every kind of its family's head, blocks with and without squeeze-excite, skip
    or stride 2), with channels-last inputs and outputs."""
    pytest.importorskip("ai_edge_litert", reason=_NEEDS_LITERT)
    spec = get_space(space).largest(164)
    plan, weights = _plan(spec), _weights(space)
    kinds = set()
    for index, layer in enumerate(plan.layers):
        rng = np.random.default_rng(index)
        x = rng.standard_normal((2, *layer.input_shape), dtype=np.float32)
        expected = _run_onnx(build_layer_model(plan, weights, index, batch=2).to_proto().SerializeToString(), x)
        got = _run_tflite(build_tflite_layer_model(plan, weights, index, batch=2), x)
        assert got.shape == (2, *layer.output_shape)
        assert _relative_difference(got, expected) < TOLERANCE, f"layer {index} ({layer.kind}) of {spec}"
        kinds.add(layer.kind)
    assert kinds == {"stem", "block", *(["final_expand", "pool", "feature_mix", "classifier"]
                                          if space == "compofa" else ["feature_mix", "pool_classifier"])}


def test_layer_models_read_and_write_channels_last() -> None:
    spec = get_space("compofa").largest(164)
    plan = _plan(spec)
    interpreter = _interpreter(build_tflite_layer_model(plan, _weights("compofa"), 3, batch=2))
    (source,), (result,) = interpreter.get_input_details(), interpreter.get_output_details()
    assert (source["name"], tuple(source["shape"])) == ("input", nhwc_shape(plan.layers[3].input_shape, 2))
    assert (result["name"], tuple(result["shape"])) == ("output", nhwc_shape(plan.layers[3].output_shape, 2))
    with pytest.raises(ValueError, match="out of range"):
        build_tflite_layer_model(plan, _weights("compofa"), len(plan.layers))


def test_the_file_follows_the_schema() -> None:
    """Identifier and version, both operator code fields, 16-byte aligned weights, the metadata records, and
    the input and output as the ONNX graph names them."""
    schema = pytest.importorskip("ai_edge_litert.schema_py_generated", reason=_NEEDS_LITERT)
    spec = get_space("compofa").smallest(160)
    metadata = {"compofa.spec": format_spec(spec), "compofa.width": "1.2"}
    data = build_tflite_model(_plan(spec), _weights("compofa"), batch=2, metadata=metadata)
    assert data[4:8] == b"TFL3" and len(data) % BUFFER_ALIGNMENT == 0
    model = schema.Model.GetRootAs(data, 0)
    assert model.Version() == 3 and model.SubgraphsLength() == 1
    codes = [model.OperatorCodes(i) for i in range(model.OperatorCodesLength())]
    assert {code.BuiltinCode() for code in codes} >= {BuiltinOperator.CONV_2D, BuiltinOperator.HARD_SWISH}
    for code in codes:
        assert code.DeprecatedBuiltinCode() == min(code.BuiltinCode(), 127)
    records = {model.Metadata(i).Name().decode(): model.Buffers(model.Metadata(i).Buffer()).DataAsNumpy().tobytes()
               for i in range(model.MetadataLength())}
    assert records == {key: value.encode() for key, value in metadata.items()}

    graph = model.Subgraphs(0)
    tensors = [graph.Tensors(i) for i in range(graph.TensorsLength())]
    source, result = tensors[graph.Inputs(0)], tensors[graph.Outputs(0)]
    assert (source.Name(), source.ShapeAsNumpy().tolist()) == (b"input", [2, 160, 160, 3])
    assert (result.Name(), result.ShapeAsNumpy().tolist()) == (b"logits", [2, 1000])
    weights = [tensor for tensor in tensors if tensor.Name().endswith(b".w")]
    assert len(weights) > 40
    for tensor in weights:
        array = model.Buffers(tensor.Buffer()).DataAsNumpy()
        assert array.size and (array.ctypes.data - np.frombuffer(data, np.uint8).ctypes.data) % BUFFER_ALIGNMENT == 0


def test_the_cache_writes_each_file_once_and_the_same_bytes_every_time(tmp_path: Path) -> None:
    weights = _weights("compofa")
    spec = get_space("compofa").smallest(160)
    exporter = TfliteExporter(weights, cache_dir=tmp_path / "cache")
    path = exporter.path(spec)
    written = path.stat().st_mtime_ns
    assert exporter.path(spec) == path and path.stat().st_mtime_ns == written
    assert (exporter.hits, exporter.misses) == (1, 1)
    assert path.suffix == ".tflite" and format_spec(spec).encode() in path.read_bytes()

    copy = write_tflite(SeededWeights(weights.family, weights.width), spec, tmp_path / "copy.tflite")
    assert copy.read_bytes() == path.read_bytes()
    assert build_tflite_model(_plan(spec), weights) == build_tflite_model(_plan(spec), weights)
    assert TfliteExporter(weights, batch=2, cache_dir=tmp_path / "cache").path(spec) != path
    assert TfliteExporter(SeededWeights(weights.family, weights.width, seed=1),
                          cache_dir=tmp_path / "cache").path(spec) != path


def test_a_batch_below_one_is_refused(tmp_path: Path) -> None:
    spec = get_space("compofa").smallest(160)
    with pytest.raises(ExportError, match="batch"):
        write_tflite(_weights("compofa"), spec, tmp_path / "x.tflite", batch=0)
    with pytest.raises(ExportError, match="batch"):
        TfliteExporter(_weights("compofa"), batch=0, cache_dir=tmp_path)
    assert not list(tmp_path.iterdir())


def test_a_weight_without_its_bias_is_refused() -> None:
    weights = _weights("compofa")

    def biasless(parameter: Parameter, /) -> tuple[np.ndarray, np.ndarray | None]:
        return weights(parameter)[0], None

    without_bias: Weights = biasless
    with pytest.raises(ValueError, match="needs bias"):
        build_tflite_model(_plan(get_space("compofa").smallest(160)), without_bias)


_LIGHT_IMPORTS = """
import sys
for name in ("torch", "tensorflow", "ai_edge_litert"):
    sys.modules[name] = None  # any import of them now fails, as if they were not installed
from compofa.graphs.seeded import SeededWeights
from compofa.graphs.tflite_cache import write_tflite
from compofa.space import get_space
spec = get_space("compofa").smallest(160)
write_tflite(SeededWeights("mobilenetv3", 1.2), spec, sys.argv[1])
"""


def test_the_writer_needs_neither_torch_nor_tensorflow_nor_litert(tmp_path: Path) -> None:
    target = tmp_path / "subnet.tflite"
    done = subprocess.run([sys.executable, "-c", _LIGHT_IMPORTS, str(target)], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr
    assert target.read_bytes()[4:8] == b"TFL3"
