"""Accuracy for search: the OFA encoding, the shipped predictor, predictor files, training, sources."""

from __future__ import annotations

import dataclasses
import importlib.util
import subprocess
import sys
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

import numpy as np
import pytest
import torch
from torch import nn

from compofa.errors import CompofaError
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.predictor import (
    AccuracyError,
    AccuracyPredictor,
    AccuracySource,
    PredictorAccuracy,
    PredictorError,
    TableAccuracy,
    accuracy_source,
    encode,
    encoding_of,
    train_predictor,
)
from compofa.space import SubnetSpec, get_space, parse_spec
from compofa.tables.store import LatencyTable, TableMismatchError

COMPOFA_KERNELS = (3, 5, 3, 3, 5)


def compofa_spec(depth: int, expand: int, resolution: int) -> SubnetSpec:
    """The CompOFA subnet with the same depth (and coupled expand ratio) in every stage."""
    kernels = tuple(k for k in COMPOFA_KERNELS for _ in range(depth))
    return SubnetSpec("compofa", resolution, (depth,) * 5, kernels, (expand,) * (5 * depth))


def random_batch(space: str, count: int, seed: int) -> ArchBatch:
    return ArchBatch.from_specs(get_space(space).sample_many(np.random.default_rng(seed), count))


def sequential(state: dict[str, torch.Tensor]) -> nn.Sequential:
    """The nn.Sequential of Linear/ReLU that `state` is the state_dict of."""
    count = len(state) // 2
    modules: list[nn.Module] = []
    for index in range(count):
        out_features, in_features = state[f"{2 * index}.weight"].shape
        modules.append(nn.Linear(in_features, out_features))
        if index < count - 1:
            modules.append(nn.ReLU())
    model = nn.Sequential(*modules)
    model.load_state_dict(state)
    return model.eval()


def small_state(inputs: int = 128, hidden: tuple[int, ...] = (16, 8), seed: int = 0) -> dict[str, torch.Tensor]:
    torch.manual_seed(seed)
    sizes = (inputs,) + hidden + (1,)
    modules: list[nn.Module] = []
    for index in range(len(sizes) - 1):
        modules += [nn.Linear(sizes[index], sizes[index + 1]), nn.ReLU()]
    return nn.Sequential(*modules[:-1]).state_dict()


# -- the encoding ------------------------------------------------------------------------------


def test_encode_golden_positions() -> None:
    features = encode(ArchBatch.from_specs([compofa_spec(3, 4, 192)]))
    assert features.shape == (1, 128) and features.dtype == np.float32
    # Kernel one-hots (3, 5, 7) at 3 * block; blocks 3, 7, 11, 15, 19 are beyond depth 3.
    kernel_ones = [0, 3, 6, 13, 16, 19, 24, 27, 30, 36, 39, 42, 49, 52, 55]
    # Expand one-hots (3, 4, 6) at 60 + 3 * block; e4 is the middle slot.
    expand_ones = [61, 64, 67, 73, 76, 79, 85, 88, 91, 97, 100, 103, 109, 112, 115]
    resolution_one = [120 + (192 - 112) // 16]
    assert np.flatnonzero(features[0]).tolist() == kernel_ones + expand_ones + resolution_one


def test_inactive_blocks_are_zero_whatever_they_hold() -> None:
    batch = ArchBatch.from_specs([compofa_spec(2, 3, 224)])
    features = encode(batch)[0]
    for block in range(20):
        active = block % 4 < 2
        assert features[3 * block : 3 * block + 3].sum() == active
        assert features[60 + 3 * block : 60 + 3 * block + 3].sum() == active
    # OFA dicts carry values in the blocks beyond depth; they must not leak in.
    noisy = dataclasses.replace(batch, kernel=np.full_like(batch.kernel, 7), expand=np.full_like(batch.expand, 6))
    assert encode(noisy)[0, 120:].tolist() == features[120:].tolist()
    assert np.flatnonzero(encode(noisy)[0]).size == 2 * 10 + 1


@pytest.mark.parametrize("resolution,slot", [(112, 0), (127, 0), (128, 1), (160, 3), (224, 7), (239, 7)])
def test_resolution_slots(resolution: int, slot: int) -> None:
    batch = ArchBatch.from_specs([compofa_spec(4, 6, 224)])
    batch = dataclasses.replace(batch, resolution=np.array([resolution], dtype=np.int16))
    assert np.flatnonzero(encode(batch)[0, 120:]).tolist() == [slot]


@pytest.mark.parametrize("resolution", [111, 240, 96])
def test_resolution_outside_the_range_is_named(resolution: int) -> None:
    batch = ArchBatch.from_specs([compofa_spec(4, 6, 224)] * 2)
    batch = dataclasses.replace(batch, resolution=np.array([224, resolution], dtype=np.int16))
    with pytest.raises(PredictorError, match=rf"resolution {resolution} is outside .*112\.\.239"):
        encode(batch)


def test_unknown_kernel_is_refused() -> None:
    batch = ArchBatch.from_specs([compofa_spec(2, 3, 224)])
    kernel = batch.kernel.copy()
    kernel[0, 0] = 9
    with pytest.raises(PredictorError, match="kernel size 9"):
        encode(dataclasses.replace(batch, kernel=kernel))


def _ofa_reference() -> ModuleType:
    """OFA's tutorial accuracy predictor module, loaded by path (its package __init__ needs tqdm)."""
    ofa = pytest.importorskip("ofa")
    path = Path(ofa.__file__).parent / "tutorial" / "accuracy_predictor.py"
    spec = importlib.util.spec_from_file_location("ofa_tutorial_accuracy_predictor", path)
    if spec is None or spec.loader is None or not path.exists():
        pytest.skip("OFA's tutorial accuracy predictor is not installed")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_encode_matches_ofa_spec2feats() -> None:
    reference = _ofa_reference().AccuracyPredictor.spec2feats
    specs = get_space("ofa-mbv3").sample_many(np.random.default_rng(3), 50) + [compofa_spec(3, 4, 192)]
    for spec in specs:
        ofa = spec.to_ofa_dict()
        expected = reference(list(ofa["ks"]), list(ofa["e"]), list(ofa["d"]), spec.resolution).numpy()
        assert encode(ArchBatch.from_specs([spec]))[0].tolist() == expected.tolist(), str(spec)


def test_importing_and_encoding_need_no_torch() -> None:
    code = (
        "import sys; from compofa.search.predictor import encode; from compofa.search.arrays import enumerate_batch; "
        "encode(enumerate_batch('compofa', [224])); assert 'torch' not in sys.modules"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_proxyless_encoding_has_its_own_size() -> None:
    assert encoding_of("ofa-mbv3").size == 128
    assert encoding_of("compofa-proxyless").size == 21 * 6 + 8
    features = encode(enumerate_batch("compofa-proxyless", [224]))
    assert features.shape[1] == 134
    assert (features[:, :126].reshape(-1, 42, 3).sum(axis=2) <= 1).all()


# -- the shipped predictor ---------------------------------------------------------------------


def test_known_value_of_the_shipped_predictor() -> None:
    """Known value: the CompOFA w1.2 d3/e4 subnet at 192 scores 0.8050."""
    value = AccuracyPredictor.shipped().predict(ArchBatch.from_specs([compofa_spec(3, 4, 192)]))
    assert round(float(value[0]), 4) == 0.8050


def test_numpy_inference_equals_torch() -> None:
    predictor = AccuracyPredictor.shipped()
    batch = random_batch("ofa-mbv3", 300, seed=1)
    with torch.no_grad():
        expected = sequential(predictor.state_dict())(torch.from_numpy(encode(batch))).numpy()[:, 0]
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=0, atol=1e-6)


def test_batch_equals_row_by_row() -> None:
    predictor = AccuracyPredictor.shipped()
    batch = random_batch("compofa-ek", 64, seed=2)
    rows = np.array([predictor.predict(batch.take([row]))[0] for row in range(len(batch))])
    np.testing.assert_allclose(predictor.predict(batch), rows, rtol=0, atol=1e-6)


def test_whole_compofa_space_at_17_resolutions() -> None:
    batch = enumerate_batch("compofa", range(160, 225, 4))
    values = AccuracyPredictor.shipped().predict(batch)
    assert values.shape == (4131,) and values.dtype == np.float64
    assert ((values > 0.6) & (values < 0.9)).all()
    largest = get_space("compofa").largest(224)
    smallest = get_space("compofa").smallest(160)
    ends = AccuracyPredictor.shipped().predict(ArchBatch.from_specs([smallest, largest]))
    assert ends[0] < ends[1]


def test_shipped_predictor_refuses_another_family() -> None:
    predictor = AccuracyPredictor.shipped()
    with pytest.raises(PredictorError, match="mobilenetv3 subnets, not those of space 'ofa-proxyless'"):
        predictor.predict(random_batch("ofa-proxyless", 2, seed=0))


def test_shipped_arrays_are_read_only() -> None:
    with pytest.raises(ValueError):
        AccuracyPredictor.shipped().weights[0][0, 0] = 1.0


# -- files -------------------------------------------------------------------------------------


def test_save_load_round_trip(tmp_path: Path) -> None:
    path = tmp_path / "predictor.pth"
    shipped = AccuracyPredictor.shipped()
    shipped.save(path)
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert list(state) == ["0.weight", "0.bias", "2.weight", "2.bias", "4.weight", "4.bias", "6.weight", "6.bias"]
    loaded = AccuracyPredictor.load(path)
    assert loaded.family == "mobilenetv3" and loaded.hidden_sizes == (400, 400, 400)
    for mine, theirs in zip(loaded.weights + loaded.biases, shipped.weights + shipped.biases):
        assert np.array_equal(mine, theirs)
    batch = random_batch("ofa-mbv3", 20, seed=4)
    assert np.array_equal(loaded.predict(batch), shipped.predict(batch))
    assert not list(tmp_path.glob(".*.tmp"))


def test_load_other_architectures(tmp_path: Path) -> None:
    path = tmp_path / "small.pth"
    state = small_state(134, (32, 16, 8))
    torch.save(state, path)
    predictor = AccuracyPredictor.load(path)
    assert predictor.family == "proxylessnas" and predictor.hidden_sizes == (32, 16, 8)
    batch = random_batch("ofa-proxyless", 10, seed=5)
    with torch.no_grad():
        expected = sequential(state)(torch.from_numpy(encode(batch))).numpy()[:, 0]
    np.testing.assert_allclose(predictor.predict(batch), expected, rtol=0, atol=1e-6)
    with pytest.raises(PredictorError, match="proxylessnas subnets"):
        predictor.predict(random_batch("compofa", 2, seed=0))


def _write_torch(value: Any) -> Callable[[Path], object]:
    return lambda path: torch.save(value, path)


def _truncated(path: Path) -> None:
    AccuracyPredictor.shipped().save(path)
    path.write_bytes(path.read_bytes()[:5000])


def _rename(state: dict[str, torch.Tensor], old: str, new: str) -> dict[str, torch.Tensor]:
    changed = dict(state)
    changed[new] = changed.pop(old)
    return changed


MALFORMED: dict[str, tuple[Callable[[Path], object], str]] = {
    "not torch": (lambda path: path.write_bytes(b"not a torch file at all"), "it is not a PyTorch file"),
    "empty": (lambda path: path.write_bytes(b""), "it is not a PyTorch file"),
    "truncated": (_truncated, "archive is corrupt or truncated"),
    "whole module": (_write_torch(nn.Linear(128, 1)), "Python objects besides tensors"),
    "list": (_write_torch([torch.zeros(3)]), "holds a list, not a state_dict"),
    "wrong keys": (_write_torch(_rename(small_state(), "0.weight", "fc.weight")), "unexpected keys \\['fc.weight'\\]"),
    "missing bias": (_write_torch({k: v for k, v in small_state().items() if k != "4.bias"}), "missing keys"),
    "no layers": (_write_torch({}), "empty state_dict"),
    "input size": (_write_torch(small_state(100)), "takes 100 inputs, which fits no family's encoding"),
    "two outputs": (_write_torch({**small_state(), "4.weight": torch.zeros(2, 8), "4.bias": torch.zeros(2)}),
                    "ends with 2 outputs"),
    "broken chain": (_write_torch({**small_state(), "2.weight": torch.zeros(8, 15)}),
                     "layer 2 takes 15 inputs but the layer before gives 16"),
    "integers": (_write_torch({**small_state(), "0.bias": torch.zeros(16, dtype=torch.int64)}),
                 "'0.bias' is not a floating-point tensor"),
    "nan": (_write_torch({**small_state(), "0.bias": torch.full((16,), float("nan"))}), "NaN or infinite"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_malformed_predictor_files(tmp_path: Path, case: str) -> None:
    write, fragment = MALFORMED[case]
    path = tmp_path / "bad.pth"
    write(path)
    with pytest.raises(PredictorError, match=fragment) as caught:
        AccuracyPredictor.load(path)
    message = str(caught.value)
    assert "\n" not in message and "\x1b" not in message and str(path) in message
    assert len(message.replace(str(path), "")) < 200
    assert isinstance(caught.value, CompofaError)


def test_missing_file_and_wrong_family(tmp_path: Path) -> None:
    with pytest.raises(PredictorError, match="does not exist"):
        AccuracyPredictor.load(tmp_path / "nothing.pth")
    with pytest.raises(PredictorError, match="is a directory"):
        AccuracyPredictor.load(tmp_path)
    path = tmp_path / "mbv3.pth"
    torch.save(small_state(128), path)
    with pytest.raises(PredictorError, match="takes 128 inputs but the proxylessnas encoding has 134"):
        AccuracyPredictor.load(path, family="proxylessnas")


# -- training ----------------------------------------------------------------------------------


def synthetic(count: int, seed: int) -> tuple[ArchBatch, np.ndarray, Callable[[ArchBatch], np.ndarray]]:
    """Top-1 as a known linear function of the encoding, plus noise of 0.002."""
    rng = np.random.default_rng(seed)
    batch = ArchBatch.from_specs(get_space("ofa-mbv3").sample_many(rng, count))
    coefficients = np.random.default_rng(99).normal(0.0, 0.004, size=128)

    def truth(rows: ArchBatch) -> np.ndarray:
        return 0.7 + encode(rows).astype(np.float64) @ coefficients

    return batch, truth(batch) + rng.normal(0.0, 0.002, size=count), truth


def test_training_fits_and_is_deterministic() -> None:
    batch, targets, truth = synthetic(400, seed=0)
    global_rng = torch.get_rng_state()
    first = train_predictor(batch, targets, hidden=64, layers=2, epochs=60, seed=7)
    assert torch.equal(torch.get_rng_state(), global_rng)
    again = train_predictor(batch, targets, hidden=64, layers=2, epochs=60, seed=7)
    other = train_predictor(batch, targets, hidden=64, layers=2, epochs=60, seed=8)
    stats = first.training
    assert stats is not None and stats.validation_rmse is not None
    assert stats.train_size == 320 and stats.validation_size == 80
    assert stats.validation_rmse < 0.25 * float(np.std(targets)), stats
    fresh, _, _ = synthetic(200, seed=1)
    assert float(np.sqrt(np.mean((first.predict(fresh) - truth(fresh)) ** 2))) < 0.25 * float(np.std(targets))
    for mine, theirs in zip(first.weights + first.biases, again.weights + again.biases):
        assert np.array_equal(mine, theirs)
    assert again.training == stats
    assert not np.array_equal(first.weights[0], other.weights[0])


def test_training_architecture_and_specs_input(tmp_path: Path) -> None:
    batch, targets, _ = synthetic(30, seed=2)
    predictor = train_predictor(batch.specs(), targets, hidden=8, layers=1, epochs=2, validation_fraction=0.0)
    assert predictor.hidden_sizes == (8,) and predictor.family == "mobilenetv3"
    assert predictor.training is not None and predictor.training.validation_rmse is None
    predictor.save(tmp_path / "trained.pth")
    assert np.array_equal(AccuracyPredictor.load(tmp_path / "trained.pth").predict(batch), predictor.predict(batch))


@pytest.mark.parametrize(
    "targets,fragment",
    [([76.0] * 30, "top-1 fractions in \\[0, 1\\]; got 76.0"), ([0.7] * 29, "29 accuracies for 30 subnets")],
)
def test_training_refuses_bad_targets(targets: list[float], fragment: str) -> None:
    batch, _, _ = synthetic(30, seed=3)
    with pytest.raises(PredictorError, match=fragment):
        train_predictor(batch, targets, epochs=1)


def test_training_refuses_no_samples() -> None:
    with pytest.raises(PredictorError, match="no training samples"):
        train_predictor([], [])


# -- accuracy sources --------------------------------------------------------------------------


def make_table(path: Path, specs: list[SubnetSpec], weights: str = "compofa-w1.2", width: float = 1.2) -> None:
    with LatencyTable.open(path, writable=True, create=True) as table:
        for index, spec in enumerate(specs):
            table.put_accuracy(spec.space, width, str(spec), spec.resolution, weights, 0.7 + index / 100, None,
                               50_000, {"batch": 100})


def test_table_accuracy_reads_rows_in_batch_order(tmp_path: Path) -> None:
    specs = [compofa_spec(2, 3, 160), compofa_spec(3, 4, 192), compofa_spec(4, 6, 224)]
    make_table(tmp_path / "t.db", specs)
    source = TableAccuracy(tmp_path / "t.db", "compofa", 1.2)
    assert isinstance(source, AccuracySource) and source.name == f"table:{tmp_path / 't.db'}"
    values = source.accuracy(ArchBatch.from_specs([specs[2], specs[0], specs[1], specs[2]]))
    np.testing.assert_allclose(values, [0.72, 0.70, 0.71, 0.72])
    assert "3 subnets of compofa w1.2" in source.describe()


def test_table_accuracy_missing_subnet(tmp_path: Path) -> None:
    make_table(tmp_path / "t.db", [compofa_spec(2, 3, 160)])
    source = TableAccuracy(tmp_path / "t.db", "compofa")
    missing = compofa_spec(3, 4, 192)
    with pytest.raises(AccuracyError, match=f"no measured fp32 accuracy for {missing}.*compofa eval") as caught:
        source.accuracy(ArchBatch.from_specs([compofa_spec(2, 3, 160), missing]))
    assert "\n" not in str(caught.value)
    with pytest.raises(AccuracyError, match="for space 'compofa', not 'compofa-ek'"):
        source.accuracy(random_batch("compofa-ek", 1, seed=0))


def test_table_accuracy_without_rows_or_with_mixed_weights(tmp_path: Path) -> None:
    make_table(tmp_path / "t.db", [compofa_spec(2, 3, 160)])
    with pytest.raises(AccuracyError, match=r"no measured fp32 accuracy for space 'compofa' at width 1 \(it holds "
                                            r"fp32 rows at width 1.2\):"):
        TableAccuracy(tmp_path / "t.db", "compofa", 1.0)
    with pytest.raises(AccuracyError, match="no measured fp32 accuracy for space 'ofa-mbv3'"):
        TableAccuracy(tmp_path / "t.db", "ofa-mbv3")
    make_table(tmp_path / "t.db", [compofa_spec(2, 3, 160)], weights="other")
    with pytest.raises(TableMismatchError, match="name the weights"):
        TableAccuracy(tmp_path / "t.db", "compofa")
    assert len(TableAccuracy(tmp_path / "t.db", "compofa", weights="other")) == 1


def test_accuracy_source_forms(tmp_path: Path) -> None:
    shipped = accuracy_source("predictor", "compofa", 1.2)
    assert isinstance(shipped, PredictorAccuracy) and shipped.name == "predictor"
    assert "w1.2" in shipped.describe() and "every platform" in shipped.describe()
    assert shipped.warnings == ()
    narrow = accuracy_source(" predictor ", "compofa", 1.0)
    assert isinstance(narrow, PredictorAccuracy)
    assert "fitted on w1.2 subnets; it scores w1 ones" in narrow.describe()
    batch = ArchBatch.from_specs([compofa_spec(3, 4, 192)])
    assert narrow.accuracy(batch)[0] == shipped.accuracy(batch)[0]

    AccuracyPredictor.shipped().save(tmp_path / "p.pth")
    from_file = accuracy_source(f"predictor:{tmp_path / 'p.pth'}", "ofa-mbv3", 1.2)
    assert from_file.name == f"predictor:{tmp_path / 'p.pth'}"
    assert from_file.accuracy(batch)[0] == shipped.accuracy(batch)[0]

    make_table(tmp_path / "t.db", [compofa_spec(3, 4, 192)])
    table = accuracy_source(f"table:{tmp_path / 't.db'}", "compofa", 1.2)
    assert isinstance(table, TableAccuracy) and table.accuracy(batch)[0] == pytest.approx(0.7)


@pytest.mark.parametrize(
    "text,space,fragment",
    [
        ("oracle", "compofa", "unknown accuracy source 'oracle': use predictor, predictor:PATH or table:PATH"),
        ("table", "compofa", "needs a file: give table:PATH"),
        ("table:", "compofa", "names no file: give table:PATH"),
        ("predictor:", "compofa", "names no file: give predictor:PATH"),
        ("predictor:/nonexistent/p.pth", "compofa", "does not exist"),
        ("table:/nonexistent/t.db", "compofa", "does not exist"),
        ("predictor", "compofa-proxyless", "scores mobilenetv3 subnets, not those of space 'compofa-proxyless'"),
    ],
)
def test_accuracy_source_errors(text: str, space: str, fragment: str) -> None:
    with pytest.raises(CompofaError) as caught:
        accuracy_source(text, space, None)
    assert fragment in str(caught.value) and "\n" not in str(caught.value)
