"""The distinct layers of a space, and single-layer ONNX graphs that chain into the whole network."""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

import numpy as np
import onnxruntime as ort
import pytest
import torch
from click.testing import CliRunner

from compofa.cli import main

from cli_helpers import assert_one_line_error, run
from compofa.profiler import NOISY
from compofa.lut import LookupTable, LutError, layer_keys, write_lut
from compofa.errors import CompofaError
from compofa.space import get_space
from compofa.space.plan import plan_subnet
from compofa.supernet.fresh import fresh_supernet
from compofa.graphs.onnx_graph import build_layer_model, build_onnx_model, count_layers
from compofa.graphs.seeded import SeededWeights
from compofa.tables import LAYER, LatencyTable, SetupKey
from compofa.supernet.network import layer_modules
from compofa.sources.layers import LayerSource, layer_graph
from compofa.lut.layers import check_coverage, distinct_layers, missing_layers, widest_space
from compofa.jobs.lutbuild import STORE_NAME, LutBuildRequest, build_lut, layer_config


def run_graph(graph, x: np.ndarray) -> np.ndarray:  # type: ignore[no-untyped-def]
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    session = ort.InferenceSession(graph.to_proto().SerializeToString(), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def test_compofa_layers_are_exactly_those_of_its_243_subnets() -> None:
    design = get_space("compofa")
    used = {key for spec in design.enumerate([160]) for key in layer_keys(plan_subnet(spec, 1.2))}
    layers = distinct_layers("compofa", 1.2, [160])
    assert {layer.key for layer in layers} == used and len(layers) == len(used) == 36
    for layer in layers:  # each layer really is where it says, in its host subnet
        assert layer_keys(plan_subnet(layer.spec, 1.2))[layer.index] == layer.key
        assert layer.spec.space == widest_space(design.family) == "ofa-mbv3"


@pytest.mark.parametrize(("space", "width", "count"), [("ofa-mbv3", 1.2, 96), ("ofa-mbv3", 1.0, 96),
                                                      ("ofa-proxyless", 1.3, 103), ("compofa-proxyless", 1.3, 37)])
def test_random_subnets_use_only_listed_layers(space: str, width: float, count: int) -> None:
    layers = distinct_layers(space, width, [176])
    keys = {layer.key for layer in layers}
    assert len(keys) == len(layers) == count
    for spec in get_space(space).sample_many(np.random.default_rng(0), 200, [176]):
        assert set(layer_keys(plan_subnet(spec, width))) <= keys


def test_the_note10_table_covers_ofa_and_compofa_and_names_what_is_missing() -> None:
    lut = LookupTable.shipped("note10")
    resolutions = tuple(range(160, 225, 4))
    assert missing_layers(lut, "ofa-mbv3", 1.2, resolutions) == []
    check_coverage(lut, "compofa", 1.2, resolutions)
    table = lut.layer_table(192)
    dropped = [layer.key for layer in distinct_layers("compofa", 1.2, [192])][5:8]
    partial = LookupTable([type(table)(192, {k: v for k, v in table.entries.items() if k not in dropped})], "partial")
    assert [layer.key for layer in missing_layers(partial, "compofa", 1.2, [192])] == dropped
    with pytest.raises(LutError, match=r"lacks 3 of the layers compofa w1.2 uses at resolution\(s\) 192"):
        check_coverage(partial, "compofa", 1.2, [192])
    assert len(missing_layers(partial, "compofa", 1.2, [160])) == 36  # no table at 160 at all


@pytest.mark.parametrize(("space", "width"), [("compofa", 1.2), ("ofa-proxyless", 1.3)])
def test_layer_graphs_chain_into_the_whole_network(space: str, width: float) -> None:
    weights = SeededWeights(get_space(space).family, width)
    spec = get_space(space).sample(np.random.default_rng(1), [160])
    plan = plan_subnet(spec, width)
    x = np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32)
    expected = run_graph(build_onnx_model(plan, weights), x)
    assert count_layers(plan) == len(layer_keys(plan))
    y = x
    for layer in range(count_layers(plan)):
        y = run_graph(build_layer_model(plan, weights, layer), y)
    np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * np.abs(expected).max())
    with pytest.raises(ValueError, match="out of range"):
        build_layer_model(plan, weights, count_layers(plan))


def test_every_distinct_layer_builds_with_the_shapes_its_key_names() -> None:
    weights = SeededWeights(get_space("compofa").family, 1.2)
    for layer in distinct_layers("compofa", 1.2, [160]):
        graph = layer_graph(layer, weights, 1.2, batch=2)
        inputs = [int(v) for v in re.search(r"input:([0-9x]+)", layer.key).group(1).split("x")]  # type: ignore[union-attr]
        outputs = [int(v) for v in re.search(r"output:([0-9x]+)", layer.key).group(1).split("x")]  # type: ignore[union-attr]
        x = np.random.default_rng(0).standard_normal((2, inputs[-1], *inputs[:-1])).astype(np.float32)
        y = run_graph(graph, x)
        assert y.shape == ((2, *outputs) if len(outputs) == 1 else (2, outputs[-1], *outputs[:-1])), layer.key
        assert np.isfinite(y).all()


@pytest.mark.parametrize(("space", "width"), [("compofa", 1.2), ("compofa-proxyless", 1.3)])
def test_torch_layers_compute_what_the_onnx_layers_compute(space: str, width: float, tmp_path: Path) -> None:
    """The torch and cuda backends time `LayerSource.module(layer)`; ONNX Runtime and TensorRT its ONNX file."""
    source = LayerSource(get_space(space).family, width, tmp_path)
    for layer in distinct_layers(space, width, [160]):
        x = np.random.default_rng(0).standard_normal(source.input_shape(layer, 1)).astype(np.float32)
        with torch.inference_mode():
            expected = source.module(layer)(torch.from_numpy(x)).numpy()
        session = ort.InferenceSession(str(source.onnx(layer, 1)), providers=["CPUExecutionProvider"])
        y = session.run([source.output_name], {"input": x})[0]
        np.testing.assert_allclose(y, expected, rtol=1e-4, atol=1e-4 * max(1.0, np.abs(expected).max()), err_msg=str(layer))


@pytest.mark.parametrize(("space", "width"), [("compofa", 1.2), ("ofa-proxyless", 1.3)])
def test_torch_layer_modules_chain_into_the_subnet(space: str, width: float) -> None:
    subnet = fresh_supernet(get_space(space).family, width).subnet(
        get_space(space).sample(np.random.default_rng(2), [160])).eval()
    x = torch.from_numpy(np.random.default_rng(0).standard_normal((1, 3, 160, 160)).astype(np.float32))
    layers = layer_modules(subnet)
    assert len(layers) == count_layers(subnet.plan)
    with torch.inference_mode():
        y = x
        for layer in layers:
            y = layer(y)
        torch.testing.assert_close(y, subnet(x))


# -- building a lookup table -----------------------------------------------------------------------

# Rounds this short are at the mercy of the machine's drift; this test checks the pipeline, not noise
# handling (tests/test_profiler.py does), so it tolerates drift rather than discard rounds and fail.
QUICK = dataclasses.replace(layer_config(max_rounds=3, round_seconds=0.01), drift_threshold=0.5)


def test_build_writes_an_ofa_format_table_that_estimates_every_subnet(tmp_path: Path) -> None:
    folder = tmp_path / "lut"
    request = LutBuildRequest(folder, "onnxruntime", "compofa", 1.2, (160,), config=QUICK, cache_dir=tmp_path / "c")
    summary = build_lut(request)
    assert summary.layers == summary.measured == 36 and summary.already_done == 0
    assert summary.paths == [folder / "160_lookup_table.yaml"] and (folder / STORE_NAME).exists()
    lut = LookupTable.read(folder)
    assert len(lut.layer_table(160).entries) == 36
    assert all(entry.count >= 10 and entry.mean > 0 for entry in lut.layer_table(160).entries.values())
    check_coverage(lut, "compofa", 1.2, [160])
    estimates = lut.predict_many(get_space("compofa").enumerate([160]), 1.2)
    assert len(estimates) == 243 and (estimates > 0).all()
    with LatencyTable.open(folder / STORE_NAME) as store:  # the richer record: every round and statistic
        entries = store.entries()
        (device,) = store.devices()
        reference = store.reference(device.id, SetupKey("mobilenetv3", 1.2, 1, "fp32", LAYER))
    assert len(entries) == 36 and all(e.key.kind == LAYER and e.key.space == "mobilenetv3" and e.rounds >= 1
                                      for e in entries)
    # the drift reference is one of the layers, stored under the layers' setup for the next build
    assert reference is not None and reference[0] in {layer.key for layer in distinct_layers("compofa", 1.2, [160])}
    again = build_lut(request)  # a rerun finds everything measured and rewrites the same table...
    left_noisy = summary.reasons[NOISY]  # ...but for what a disturbed machine left noise-limited: measured again
    assert again.measured == again.remeasured == left_noisy and again.already_done == 36 - left_noisy
    if not left_noisy:
        assert LookupTable.read(folder).layer_table(160).entries == lut.layer_table(160).entries
    with pytest.raises(CompofaError, match="holds measurements of mobilenetv3 width 1.2, not mobilenetv3 width 1;"):
        build_lut(dataclasses.replace(request, width=1.0))  # never mixed into, nor overwriting, this table


def test_build_on_the_torch_backend(tmp_path: Path) -> None:
    folder = tmp_path / "lut"
    summary = build_lut(LutBuildRequest(folder, "torch", "compofa", 1.2, (160,), config=QUICK, cache_dir=tmp_path / "c"))
    assert summary.measured == 36 and summary.paths == [folder / "160_lookup_table.yaml"]
    check_coverage(LookupTable.read(folder), "compofa", 1.2, [160])
    with LatencyTable.open(folder / STORE_NAME) as store:
        assert {d.fingerprint["backend"] for d in store.devices()} == {"torch"}


def test_build_refuses_a_folder_holding_lookup_tables_of_another_width(tmp_path: Path) -> None:
    write_lut(LookupTable.shipped("note10"), tmp_path / "note10")  # MobileNetV3 w1.2
    result = run("lut", "build", "--width", "1.0", "--resolution", "160", "-o", str(tmp_path / "note10"), "--quiet")
    assert_one_line_error(result, "already holds lookup tables that do not fit", "width 1.2", "another folder")
    assert sorted(p.name for p in (tmp_path / "note10").iterdir()) == sorted(
        f"{r}_lookup_table.yaml" for r in LookupTable.shipped("note10").resolutions)


def test_cli_lut_build_bad_input(tmp_path: Path) -> None:
    for args, fragment in (
        (("--device", "lut:note10"), "cannot do"),
        (("--resolution", "100"), "resolution 100"),
        (("--width", "0"), "width multiplier must be positive"),
        (("--device", "nope"), "unknown device"),
        (("-O", "bogus=1"), "options provider and optimization"),
    ):
        result = CliRunner().invoke(main, ["lut", "build", *args, "-o", str(tmp_path / "out"), "--quiet"])
        assert result.exit_code == 2 and fragment in result.stderr, (args, result.stderr)
        assert len(result.stderr.strip().splitlines()) == 1 and not (tmp_path / "out").exists()
