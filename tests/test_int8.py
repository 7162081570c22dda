"""int8 latency: subnets quantized by ONNX Runtime (static, QDQ, per-channel weights) calibrated on real images,
cached by what makes them, timed by the onnxruntime backend, sent as such to an agent, refused in one line
wherever a runtime or a command cannot do int8."""

from __future__ import annotations

import importlib.util
import json
import sqlite3
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from cli_helpers import assert_one_line_error, run

from compofa.cli.precision import quantization
from compofa.devices import DeviceOptionError, Settings, open_device
from compofa.devices.base import Quantization, model_file
from compofa.sources.subnet import SubnetSource
from compofa.space import get_space
from compofa.tables.store import LatencyTable

RESOLUTION = 160
SPEC = get_space("compofa").smallest(RESOLUTION)
#: Short rounds: these tests check what is measured and kept, not how precisely.
QUICK = ("--resolution", str(RESOLUTION), "--limit", "1", "--min-rounds", "1", "--max-rounds", "2",
         "--round-seconds", "0.03", "--target-ci", "0.5", "--quiet")


@pytest.fixture(scope="module")
def digits(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from compofa.supernet.train.data import write_digits

    root = tmp_path_factory.mktemp("digits")
    write_digits(root, size=32)
    return root


@pytest.fixture(scope="module")
def recipe(digits: Path) -> Quantization:
    made = quantization("int8", str(digits), 32, [RESOLUTION])
    assert made is not None
    return made


@pytest.fixture(scope="module", autouse=True)
def shared_cache(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """One export cache for the module (the command-line runs find SPEC quantized already)."""
    folder = tmp_path_factory.mktemp("cache")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("COMPOFA_CACHE_DIR", str(folder))
        yield folder


def _int8_device(recipe: Quantization, source: SubnetSource | None = None):  # type: ignore[no-untyped-def]
    return open_device("onnxruntime", source or SubnetSource("compofa"), Settings(precision="int8",
                                                                                 quantization=recipe))


def test_onnxruntime_times_the_quantized_subnet_and_records_how_it_was_made(recipe: Quantization) -> None:
    device = _int8_device(recipe)
    handle = device.prepare(SPEC)
    try:
        samples = device.time(handle, 3)
        assert len(samples) == 3 and all(sample > 0 for sample in samples)
        assert handle.output().shape == (1, 1000) and np.isfinite(handle.output()).all()
    finally:
        handle.close()
    fingerprint = device.fingerprint()
    assert fingerprint["precision"] == "int8"
    assert fingerprint["quantization"] == {
        "format": "QDQ", "per_channel": True, "activations": "uint8", "weights": "int8",
        "symmetric_activations": False, "reduce_range": True, "calibration_method": "minmax", "calibration_images": 32,
        "calibration_digest": recipe.digest}
    path = device.source.int8_onnx(SPEC, 1, recipe)
    model = onnx.load(str(path))
    ops = {node.op_type for node in model.graph.node}
    assert {"QuantizeLinear", "DequantizeLinear", "Conv"} <= ops
    initializers = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    convs = [node for node in model.graph.node if node.op_type == "Conv"]
    producers = {out: node for node in model.graph.node for out in node.output}
    weight = producers[convs[0].input[1]]  # per-channel int8 weights: a DequantizeLinear with one scale a channel
    assert weight.op_type == "DequantizeLinear" and initializers[weight.input[0]].dtype == np.int8
    assert initializers[weight.input[1]].size == initializers[weight.input[0]].shape[0] > 1
    activation = producers[convs[0].input[0]]
    assert activation.op_type == "DequantizeLinear" and initializers[activation.input[2]].dtype == np.uint8
    assert json.loads({p.key: p.value for p in model.metadata_props}["compofa.quantization"])["calibration"] \
        == recipe.digest


def test_int8_models_are_cached_by_what_makes_them(recipe: Quantization, digits: Path) -> None:
    first = SubnetSource("compofa")
    path = first.int8_onnx(SPEC, 1, recipe)
    again = SubnetSource("compofa")
    assert again.int8_onnx(SPEC, 1, recipe) == path
    exporter = again._int8_exporter
    assert exporter is not None and (exporter.hits, exporter.misses) == (1, 0)  # nothing quantized twice
    assert path != first.onnx(SPEC, 1) and path.name.endswith(".int8.onnx")
    other_images = quantization("int8", str(digits), 32, [RESOLUTION], seed=1)
    assert other_images is not None and other_images.digest != recipe.digest
    import dataclasses

    signed = dataclasses.replace(recipe, activations="int8")
    assert len({path, again.int8_onnx(SPEC, 1, other_images), again.int8_onnx(SPEC, 1, signed)}) == 3
    assert onnx.load(str(again.int8_onnx(SPEC, 1, signed))).graph.node  # a whole model, written atomically
    assert not list(path.parent.glob(".*.tmp"))


def test_a_remote_device_is_sent_the_int8_model(recipe: Quantization) -> None:
    source = SubnetSource("compofa")
    assert model_file(source, SPEC, 1, "onnx", recipe) == source.int8_onnx(SPEC, 1, recipe)
    assert model_file(source, SPEC, 1, "onnx") == source.onnx(SPEC, 1)
    with pytest.raises(DeviceOptionError, match="cannot write int8 tflite files"):
        model_file(source, SPEC, 1, "tflite", recipe)


def test_an_agent_runs_the_int8_model_it_was_sent(recipe: Quantization) -> None:
    """The agent's side of a remote int8 profile: the open request carries the recipe (so the fingerprint says
    how the model was made), and the model the host sent is timed as it is."""
    from compofa.agent.measure import MeasuringSession, StoredItem
    from compofa.agent.protocol import ProtocolError

    sent = SubnetSource("compofa").int8_onnx(SPEC, 1, recipe)
    session = MeasuringSession()
    opened = session.open({"backend": "onnxruntime", "output_name": "logits", "settings": {
        "batch": 1, "precision": "int8", "threads": 1, "options": {}, "quantization": recipe.to_dict()}})
    assert opened["fingerprint"]["quantization"]["calibration_digest"] == recipe.digest
    handle = session.prepare({"item": {"path": str(sent), "input_shape": [1, 3, RESOLUTION, RESOLUTION]}})
    assert len(session.time({**handle, "n": 2})["samples_ms"]) == 2
    assert str(StoredItem(str(sent), (1, 3, RESOLUTION, RESOLUTION))) == sent.name
    with pytest.raises(ProtocolError, match="quantization is malformed"):
        MeasuringSession().open({"backend": "onnxruntime", "output_name": "logits", "settings": {
            "batch": 1, "precision": "int8", "threads": 1, "options": {}, "quantization": {"images": 3}}})


def test_profile_int8_from_the_command_line(digits: Path, tmp_path: Path) -> None:
    table = tmp_path / "int8.db"
    args = ("profile", "--device", "onnxruntime", "--precision", "int8", "--calibration", str(digits),
            "--calibration-images", "32", "--table", str(table), *QUICK)
    result = run(*args)
    assert result.exit_code == 0, result.output
    with LatencyTable.open(table) as store:
        (entry,) = store.entries()
        (device,) = store.devices()
    assert entry.key.precision == "int8" and entry.median_ms > 0
    assert device.fingerprint["quantization"]["calibration_images"] == 32
    # fp32, or int8 calibrated on other images, is another setup: refused in one line, the int8 entry kept
    assert_one_line_error(run("profile", "--device", "onnxruntime", "--table", str(table), *QUICK),
                          "different setup (precision: 'int8' -> 'fp32'")
    assert_one_line_error(run(*args[:-len(QUICK)], "--calibration-images", "16", *QUICK), "calibration_digest")
    with sqlite3.connect(f"file:{table}?mode=ro", uri=True) as connection:
        assert connection.execute("SELECT precision, COUNT(*) FROM entries GROUP BY precision").fetchall() \
            == [("int8", 1)]
    assert run(*args).exit_code == 0  # the same setup again continues


def _tiny_images(folder: Path, side: int) -> Path:
    from PIL import Image

    folder.mkdir()
    for index in range(3):
        Image.fromarray(np.full((side, side, 3), index * 40, dtype=np.uint8)).save(folder / f"{index}.png")
    return folder


@pytest.mark.parametrize("case", ["no folder", "not int8", "missing", "empty", "too small", "unreadable"])
def test_bad_calibration_is_one_line_and_writes_nothing(case: str, digits: Path, tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    folder = {"no folder": None, "not int8": digits, "missing": tmp_path / "nowhere",
              "empty": tmp_path / "empty", "too small": _tiny_images(tmp_path / "tiny", 16),
              "unreadable": tmp_path / "broken"}[case]
    (tmp_path / "empty").mkdir()
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "x.png").write_bytes(b"\x89PNG but not really")
    precision = "fp32" if case == "not int8" else "int8"
    args = ["profile", "--precision", precision, "--table", str(table), *QUICK]
    if folder is not None:
        args += ["--calibration", str(folder)]
    expected = {"no folder": "give --calibration DIR", "not int8": "give --precision int8",
                "missing": "does not exist", "empty": "holds no images", "too small": "too small for 160 px",
                "unreadable": "cannot read calibration image"}[case]
    assert_one_line_error(run(*args), expected)
    assert not table.exists()


@pytest.mark.parametrize("runtime", ["litert", "executorch", "torch"])
def test_a_runtime_without_int8_refuses_it_in_one_line(runtime: str, digits: Path, tmp_path: Path) -> None:
    package = {"litert": "ai_edge_litert", "executorch": "executorch", "torch": "torch"}[runtime]
    if importlib.util.find_spec(package) is None:
        pytest.skip(f"the {package} package is not installed")
    table = tmp_path / "t.db"
    refused = run("profile", "--device", runtime, "--precision", "int8", "--calibration", str(digits),
                  "--calibration-images", "4", "--table", str(table), *QUICK)
    assert_one_line_error(refused, "int8")
    assert not table.exists()


def test_lut_build_refuses_int8(tmp_path: Path) -> None:
    assert_one_line_error(run("lut", "build", "--precision", "int8", "-o", str(tmp_path / "lut")),
                          "profile them with `compofa profile --precision int8")
    assert not (tmp_path / "lut").exists()


def test_a_layer_source_cannot_make_int8_models(recipe: Quantization) -> None:
    from compofa.sources.layers import LayerSource

    with pytest.raises(DeviceOptionError, match="single layers"):
        open_device("onnxruntime", LayerSource(get_space("compofa").family, 1.2),
                    Settings(precision="int8", quantization=recipe))
    with pytest.raises(DeviceOptionError, match="name a calibration folder"):
        open_device("onnxruntime", SubnetSource("compofa"), Settings(precision="int8"))


def _needs_nncf() -> None:
    for package in ("openvino", "nncf"):
        if importlib.util.find_spec(package) is None:
            pytest.skip(f"the {package} package is not installed (pip install 'compofa[openvino-int8]')")


def test_openvino_times_its_own_int8_model_quantized_by_nncf(recipe: Quantization) -> None:
    _needs_nncf()
    import openvino as ov

    device = open_device("openvino", SubnetSource("compofa"), Settings(precision="int8", quantization=recipe))
    handle = device.prepare(SPEC)
    try:
        assert len(device.time(handle, 2)) == 2 and np.isfinite(handle.output()).all()
    finally:
        handle.close()
    described = device.fingerprint()["quantization"]
    assert described["quantizer"] == "nncf" and described["preset"] == "performance"
    assert described["calibration_digest"] == recipe.digest and described["nncf"]
    assert device.fingerprint()["inference_precision"] == "f32"  # the layers NNCF leaves in float: fp32, never bf16
    again = SubnetSource("compofa")
    xml = again.int8_openvino(SPEC, 1, recipe)
    assert xml.with_suffix(".bin").exists() and again._openvino_int8_exporter is not None
    assert again._openvino_int8_exporter.misses == 0  # cached by the device's preparation
    assert "FakeQuantize" in {op.get_type_name() for op in ov.Core().read_model(str(xml)).get_ordered_ops()}
    assert again.int8_openvino(SPEC, 1, recipe, "mixed") != xml


def test_openvino_int8_refusals(recipe: Quantization, monkeypatch: pytest.MonkeyPatch) -> None:
    _needs_nncf()
    source = SubnetSource("compofa")
    with pytest.raises(DeviceOptionError, match="at precision fp32 there is none"):
        open_device("openvino", source, Settings(options={"preset": "mixed"}))
    with pytest.raises(DeviceOptionError, match="preset must be one of performance, mixed"):
        open_device("openvino", source, Settings(precision="int8", quantization=recipe, options={"preset": "x"}))
    from compofa.agent.measure import StoredModels

    with pytest.raises(DeviceOptionError, match="this source cannot make"):  # an agent is sent files, makes none
        open_device("openvino", StoredModels("logits"), Settings(precision="int8", quantization=recipe))
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "nncf" else real(name, *a))
    with pytest.raises(DeviceOptionError, match=r"quantized by NNCF.*pip install 'compofa\[openvino-int8\]'"):
        open_device("openvino", source, Settings(precision="int8", quantization=recipe))


def test_tensorrt_is_given_the_int8_model_it_takes(recipe: Quantization) -> None:
    """TensorRT takes symmetric int8 (zero points 0) and full-range weights; the model is made here, on the CPU,
    by the same quantizer, so what a TensorRT build would read is checked without a GPU."""
    from compofa.devices import get_backend
    from compofa.devices.tensorrt_backend import parse_tensorrt_options, tensorrt_recipe

    backend = get_backend("tensorrt")
    assert backend.int8_recipe is tensorrt_recipe and get_backend("onnxruntime").int8_recipe is not None
    gpu = tensorrt_recipe(recipe)
    assert (gpu.activations, gpu.symmetric_activations, gpu.reduce_range) == ("int8", True, False)
    assert gpu.digest == recipe.digest and gpu.images == recipe.images
    parse_tensorrt_options(Settings(batch=8, precision="int8"))  # the GPU checks let int8 through to the device
    model = onnx.load(str(SubnetSource("compofa").int8_onnx(SPEC, 1, gpu)))
    initializers = {init.name: onnx.numpy_helper.to_array(init) for init in model.graph.initializer}
    zero_points = [initializers[node.input[2]] for node in model.graph.node
                   if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2]
    assert {point.dtype for point in zero_points} == {np.dtype(np.int8), np.dtype(np.int32)}  # int32: biases
    assert not any(point.any() for point in zero_points)
    weights = [array for array in initializers.values() if array.dtype == np.int8 and array.ndim == 4]
    assert weights and max(int(np.abs(array).max()) for array in weights) == 127  # 8 bits, not 7


HAS_GPU_TENSORRT = importlib.util.find_spec("tensorrt") is not None and importlib.util.find_spec("torch") is not None


@pytest.mark.skipif(not HAS_GPU_TENSORRT, reason="needs an NVIDIA GPU and the tensorrt package "
                    "(pip install 'compofa[trt]')")
def test_tensorrt_builds_and_times_an_int8_engine(recipe: Quantization, tmp_path: Path) -> None:
    from compofa.devices.cuda import availability

    if not availability().ok:
        pytest.skip(availability().reason)
    source = SubnetSource("compofa")
    settings = Settings(batch=8, precision="int8", quantization=recipe, cache_dir=tmp_path)
    device = open_device("tensorrt", source, settings)
    handle = device.prepare(SPEC)
    try:
        assert len(device.time(handle, 3)) == 3
    finally:
        handle.close()
        device.close()
    assert device.fingerprint()["quantization"]["symmetric_activations"] is True
    again = open_device("tensorrt", source, settings)
    again.prepare(SPEC).close()
    assert again.engine_cache_hits == 1  # the engine of the same QDQ model is loaded, not built again
    again.close()


def test_a_remote_device_profiles_int8_made_from_this_machines_images(ssh: Any, digits: Path,
                                                                     recipe: Quantization, tmp_path: Path) -> None:
    from sshd import device

    table = tmp_path / "remote.db"
    result = run("profile", "--device", device(backend="onnxruntime"), "--precision", "int8", "--calibration",
                 str(digits), "--calibration-images", "32", "--table", str(table), *QUICK)
    assert result.exit_code == 0, result.output
    with LatencyTable.open(table) as store:
        (entry,) = store.entries()
        (row,) = store.devices()
    assert entry.key.precision == "int8"
    assert row.fingerprint["quantization"]["calibration_digest"] == recipe.digest  # the agent was told the recipe
    refused = run("profile", "--device", device(backend="openvino"), "--precision", "int8", "--calibration",
                  str(digits), "--table", str(tmp_path / "ov.db"), *QUICK)
    assert_one_line_error(refused, "an agent times the files it is sent")
