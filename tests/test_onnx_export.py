"""ONNX export: both routes agree with PyTorch under ONNX Runtime; the cache and file handling are safe."""

from __future__ import annotations

import dataclasses
import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import onnxruntime as ort
import pytest
import torch
from conftest import ONNX_RESOLUTION, images, sample_specs
from onnx import numpy_helper

import compofa
from compofa.errors import OutputPathError
from compofa.graphs.cache import OnnxExporter
from compofa.graphs.onnx_graph import OnnxGraph, build_onnx_model
from compofa.space import SubnetSpec, format_spec, get_space, list_spaces
from compofa.supernet import Supernet
from compofa.supernet.export import SupernetWeights, weights_fingerprint, write_onnx

SPACES = [space.name for space in list_spaces()]
RELATIVE_TOLERANCE = 1e-4


@pytest.fixture(scope="module")
def onnx_supernet(random_supernet: Callable[..., Supernet]) -> Callable[[str, bool], Supernet]:
    """Factory: the shared random supernet of a space's family at its default width, calibrated at 128 px."""

    def get(space: str, transform: bool) -> Supernet:
        family = get_space(space).family
        return random_supernet(family.name, family.default_width, transform, ONNX_RESOLUTION)

    return get


_FINGERPRINTS: dict[int, str] = {}


def _fingerprint(supernet: Supernet) -> str:
    """weights_fingerprint of a shared (never modified) supernet, computed once."""
    if id(supernet) not in _FINGERPRINTS:
        _FINGERPRINTS[id(supernet)] = weights_fingerprint(supernet)
    return _FINGERPRINTS[id(supernet)]


def _weights(supernet: Supernet) -> SupernetWeights:
    """The export view of a shared supernet, its fingerprint computed once."""
    return SupernetWeights(supernet, _fingerprint(supernet))


def _spec(space: str, seed: int = 0) -> SubnetSpec:
    """A random subnet of `space` at the ONNX test resolution."""
    return sample_specs(space, 3, seed=seed, resolution=ONNX_RESOLUTION)[-1]


def _run_onnx(path: Path, x: torch.Tensor) -> np.ndarray:
    options = ort.SessionOptions()
    options.intra_op_num_threads = 1
    options.inter_op_num_threads = 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x.numpy()})[0]


def _assert_close_to(actual: np.ndarray, expected: torch.Tensor) -> None:
    """Max abs difference within RELATIVE_TOLERANCE of the largest logit."""
    scale = float(expected.abs().max())
    assert scale > 0.05, "logits too small for a meaningful comparison"
    difference = float(np.abs(actual - expected.numpy()).max())
    assert difference <= RELATIVE_TOLERANCE * scale, f"max |onnx - torch| = {difference:.3g}, scale {scale:.3g}"


def _dims(value_info: onnx.ValueInfoProto) -> list[int]:
    return [d.dim_value for d in value_info.type.tensor_type.shape.dim]


def _check_interface(model: onnx.ModelProto, batch: int, resolution: int) -> None:
    onnx.checker.check_model(model)
    assert [i.name for i in model.graph.input] == ["input"]
    assert [o.name for o in model.graph.output] == ["logits"]
    assert _dims(model.graph.input[0]) == [batch, 3, resolution, resolution]
    assert _dims(model.graph.output[0]) == [batch, 1000]


def _ort_logits(path: Path, x: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {"input": x})[0]


def _only_files(folder: Path) -> list[str]:
    return sorted(os.listdir(folder))


# -- the graph route against PyTorch ------------------------------------------------------


@pytest.mark.parametrize("batch", [1, 2])
@pytest.mark.parametrize("transform", [True, False], ids=["transform-on", "transform-off"])
@pytest.mark.parametrize("space", SPACES)
def test_graph_export_matches_pytorch(
    space: str, transform: bool, batch: int, onnx_supernet: Callable[[str, bool], Supernet], tmp_path: Path
) -> None:
    """A random subnet of every space exports to a valid model whose ONNX Runtime output matches PyTorch."""
    supernet = onnx_supernet(space, transform)
    spec = _spec(space, seed=batch)
    # A precomputed fingerprint and no fsync keep this loop fast; the defaults are tested below.
    fingerprint = _fingerprint(supernet)
    path = write_onnx(supernet, spec, tmp_path / "subnet.onnx", batch, "graph", fingerprint, durable=False)
    assert path == tmp_path / "subnet.onnx" and _only_files(tmp_path) == ["subnet.onnx"]
    model = onnx.load(str(path))
    _check_interface(model, batch, ONNX_RESOLUTION)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert (metadata["compofa.spec"], metadata["compofa.weights"]) == (format_spec(spec), fingerprint)

    x = images(batch, ONNX_RESOLUTION, seed=batch)
    with torch.no_grad():
        expected = supernet.subnet(spec)(x)
    _assert_close_to(_run_onnx(path, x), expected)


def test_torch_export_agrees(onnx_supernet: Callable[[str, bool], Supernet], tmp_path: Path) -> None:
    """The torch.onnx route gives the same interface, metadata and outputs as the graph route."""
    supernet = onnx_supernet("ofa-mbv3", True)
    spec = _spec("ofa-mbv3", seed=5)
    traced = write_onnx(supernet, spec, tmp_path / "traced.onnx", batch=2, method="torch")
    direct = write_onnx(supernet, spec, tmp_path / "direct.onnx", batch=2, method="graph")
    model = onnx.load(str(traced))
    _check_interface(model, 2, ONNX_RESOLUTION)
    metadata = {p.key: p.value for p in model.metadata_props}
    assert metadata == {p.key: p.value for p in onnx.load(str(direct)).metadata_props}

    x = images(2, ONNX_RESOLUTION, seed=5)
    with torch.no_grad():
        expected = supernet.subnet(spec)(x)
    traced_out = _run_onnx(traced, x)
    _assert_close_to(traced_out, expected)
    _assert_close_to(_run_onnx(direct, x), torch.from_numpy(traced_out))


def test_metadata_describes_the_export(onnx_supernet: Callable[[str, bool], Supernet], tmp_path: Path) -> None:
    """The model carries compofa's version, the spec, width, transform setting and weights fingerprint."""
    supernet = onnx_supernet("compofa", False)
    spec = _spec("compofa", seed=6)
    model = onnx.load(str(write_onnx(supernet, spec, tmp_path / "m.onnx")))
    assert {p.key: p.value for p in model.metadata_props} == {
        "compofa.version": compofa.__version__,
        "compofa.spec": format_spec(spec),
        "compofa.width": "1.2",
        "compofa.kernel_transform": "false",
        "compofa.weights": weights_fingerprint(supernet),
    }


# -- the export cache -------------------------------------------------------------------


def test_cache_hits_and_keys(onnx_supernet: Callable[[str, bool], Supernet], tmp_path: Path) -> None:
    """First lookup exports (a miss), the second returns the same file (a hit); keys follow batch and spec."""
    supernet = onnx_supernet("compofa", False)
    spec, other = _spec("compofa", seed=7), _spec("compofa", seed=8)
    assert spec != other
    exporter = OnnxExporter(_weights(supernet), cache_dir=tmp_path)
    first = exporter.path(spec)
    assert (exporter.misses, exporter.hits) == (1, 0)
    assert first.parent == tmp_path and first.exists()
    written = first.read_bytes()
    second = exporter.path(spec)
    assert second == first and (exporter.misses, exporter.hits) == (1, 1)
    assert first.read_bytes() == written
    assert _only_files(tmp_path) == sorted([first.name, "weights"])

    assert exporter.key(other) != exporter.key(spec)
    assert OnnxExporter(_weights(supernet), batch=2, cache_dir=tmp_path).key(spec) != exporter.key(spec)
    assert OnnxExporter(_weights(supernet), cache_dir=tmp_path).key(spec) == exporter.key(spec)  # deterministic
    assert exporter.paths([spec, other]) == [first, exporter.path(other)]
    assert (exporter.misses, exporter.hits) == (2, 3)


def test_cached_graphs_share_weight_files(
    onnx_supernet: Callable[[str, bool], Supernet], tmp_path: Path
) -> None:
    """Cached graphs keep large weights in shared files: same outputs as a self-contained export,
    layers common to two subnets or two resolutions stored once, a damaged weight file rewritten."""
    supernet = onnx_supernet("compofa", False)
    exporter = OnnxExporter(_weights(supernet), cache_dir=tmp_path)
    spec = _spec("compofa", seed=11)
    cached = exporter.path(spec)
    standalone = write_onnx(supernet, spec, tmp_path / "standalone.onnx")
    assert cached.stat().st_size < 200_000 < standalone.stat().st_size
    x = images(1, spec.resolution).numpy()
    np.testing.assert_array_equal(_ort_logits(cached, x), _ort_logits(standalone, x))

    first_count = exporter.shared.written
    assert first_count > 0
    exporter.path(dataclasses.replace(spec, resolution=spec.resolution + 4))
    assert exporter.shared.written == first_count  # a new resolution needs no new weights

    weight_files = sorted((tmp_path / "weights").rglob("*.bin"))
    victim = weight_files[len(weight_files) // 2]
    victim.write_bytes(b"")
    cached.unlink()
    fresh = OnnxExporter(_weights(supernet), cache_dir=tmp_path)
    np.testing.assert_array_equal(_ort_logits(fresh.path(spec), x), _ort_logits(standalone, x))
    assert fresh.shared.written == 1


def test_cache_key_follows_the_weights(onnx_supernet: Callable[[str, bool], Supernet], tmp_path: Path) -> None:
    """Changing a single weight gives a different fingerprint and cache key."""
    supernet = onnx_supernet("compofa", False)
    spec = _spec("compofa", seed=9)
    changed = Supernet("mobilenetv3", 1.2, False)
    changed.load_state_dict(supernet.state_dict())
    assert weights_fingerprint(changed) == weights_fingerprint(supernet)
    with torch.no_grad():
        changed.blocks[7].conv.point_linear.conv.weight[0, 0, 0, 0] += 1e-3
    assert weights_fingerprint(changed) != weights_fingerprint(supernet)
    changed_key = OnnxExporter(SupernetWeights(changed), cache_dir=tmp_path).key(spec)
    assert changed_key != OnnxExporter(_weights(supernet), cache_dir=tmp_path).key(spec)


def test_cache_dir_from_environment(
    onnx_supernet: Callable[[str, bool], Supernet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Without cache_dir, COMPOFA_CACHE_DIR picks the folder (created on demand)."""
    monkeypatch.setenv("COMPOFA_CACHE_DIR", str(tmp_path / "cache"))
    exporter = OnnxExporter(_weights(onnx_supernet("compofa", False)))
    assert exporter.folder == tmp_path / "cache" / "onnx" and exporter.folder.is_dir()
    path = exporter.path(_spec("compofa", seed=10))
    assert path.parent == tmp_path / "cache" / "onnx" and path.exists()


# -- output paths and partial writes ------------------------------------------------------------


def test_bad_output_paths_raise_and_leave_nothing(
    onnx_supernet: Callable[[str, bool], Supernet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """A missing folder, a directory or a read-only folder is an OutputPathError, and nothing is written."""
    supernet = onnx_supernet("compofa", False)
    spec = _spec("compofa", seed=11)
    with pytest.raises(OutputPathError, match="does not exist"):
        write_onnx(supernet, spec, tmp_path / "missing" / "m.onnx")
    assert not (tmp_path / "missing").exists()

    target_dir = tmp_path / "a-directory"
    target_dir.mkdir()
    with pytest.raises(OutputPathError, match="directory"):
        write_onnx(supernet, spec, target_dir)
    assert _only_files(target_dir) == []

    read_only = tmp_path / "read-only"
    read_only.mkdir()
    read_only.chmod(0o555)
    try:
        if os.access(read_only, os.W_OK):
            # Running as root, permission bits do not apply: show the library what another user would see.
            real_access = os.access
            monkeypatch.setattr(
                os, "access", lambda p, mode, **kw: False if Path(p) == read_only else real_access(p, mode, **kw)
            )
        with pytest.raises(OutputPathError, match="not writable"):
            write_onnx(supernet, spec, read_only / "m.onnx")
        monkeypatch.undo()
        assert _only_files(read_only) == []
    finally:
        read_only.chmod(0o755)


def test_failed_write_leaves_no_partial_file(
    onnx_supernet: Callable[[str, bool], Supernet], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """An error while the model is being written leaves neither a partial file nor a temporary one."""
    supernet = onnx_supernet("compofa", False)
    spec = _spec("compofa", seed=12)
    previous = tmp_path / "previous.onnx"
    previous.write_bytes(b"an older export")

    def failing_write(self: OnnxGraph, handle: Any, locate: Any = None) -> int:
        handle.write(b"\x08\x08" * 1000)
        raise OSError("No space left on device")

    monkeypatch.setattr(OnnxGraph, "write", failing_write)
    with pytest.raises(OSError, match="No space"):
        write_onnx(supernet, spec, tmp_path / "new.onnx")
    with pytest.raises(OSError, match="No space"):
        write_onnx(supernet, spec, previous)
    with pytest.raises(OSError, match="No space"):
        OnnxExporter(_weights(supernet), cache_dir=tmp_path / "cache").path(spec)
    assert _only_files(tmp_path) == ["cache", "previous.onnx"]
    assert [p.name for p in (tmp_path / "cache").rglob("*") if p.is_file()] == []
    assert previous.read_bytes() == b"an older export"


# -- streamed writing ---------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["ofa-mbv3", "compofa-proxyless"])
def test_streamed_write_equals_to_proto(space: str, onnx_supernet: Callable[[str, bool], Supernet]) -> None:
    """OnnxGraph.write streams bytes that parse to the same model as OnnxGraph.to_proto()."""
    supernet = onnx_supernet(space, get_space(space).kernel_transform)
    spec = _spec(space, seed=13)
    graph = build_onnx_model(supernet.plan(spec), _weights(supernet).subnet_weights(spec), 2, {"k": "v"})
    buffer = io.BytesIO()
    assert graph.write(buffer) == len(buffer.getvalue())
    streamed = onnx.load_from_string(buffer.getvalue())
    built = graph.to_proto()

    assert list(streamed.graph.node) == list(built.graph.node)
    assert list(streamed.graph.input) == list(built.graph.input)
    assert list(streamed.graph.output) == list(built.graph.output)
    assert [t.name for t in streamed.graph.initializer] == [t.name for t in built.graph.initializer]
    assert len(built.graph.initializer) > 50
    for ours, theirs in zip(streamed.graph.initializer, built.graph.initializer):
        a, b = numpy_helper.to_array(ours), numpy_helper.to_array(theirs)
        assert a.dtype == b.dtype == np.float32 and a.shape == b.shape and np.array_equal(a, b), ours.name
    assert (streamed.ir_version, list(streamed.opset_import)) == (built.ir_version, list(built.opset_import))
    assert list(streamed.metadata_props) == list(built.metadata_props)
    assert streamed == built
    onnx.checker.check_model(streamed)


def test_onnx_runtime_sessions_do_not_spin(tmp_path: Path) -> None:
    """The profiler keeps two sessions (subnet and reference) alive: an idle one's spinning workers
    would steal the cores the other is timed on (with 2 threads the reference read 2-3x slow)."""
    from compofa.devices import Settings, get_backend
    from compofa.sources.subnet import SubnetSource

    device = get_backend("onnxruntime").factory(Settings(threads=2), SubnetSource("compofa", cache_dir=tmp_path))
    options = device._session_options()  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "0"
    assert options.intra_op_num_threads == 2
