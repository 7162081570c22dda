"""Single-layer networks for timing a layer lookup table: ONNX files without torch, PyTorch modules with it.

Each item is a `compofa.lut.layers.Layer`: the `index`-th of the
`NetworkPlan.layers` of a host subnet. Its ONNX graph is that layer of the
host's graph alone, with seeded weights (latency does not depend on their
values); its PyTorch module is the same layer of the host `Subnet` holding the
same seeded weights, so every backend times the same computation.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from compofa.extras import require_torch
from compofa.graphs.interface import LAYER_OUTPUT_NAME
from compofa.space.family import Family
from compofa.space.plan import plan_subnet

if TYPE_CHECKING:
    from compofa.graphs.onnx_graph import OnnxGraph, Weights
    from compofa.graphs.seeded import SeededWeights
    from compofa.lut.layers import Layer


def layer_graph(layer: Layer, weights: Weights, width: float, batch: int = 1) -> OnnxGraph:
    """The ONNX model of `layer` alone, with the arrays `weights` gives its parameters."""
    from compofa.graphs.onnx_graph import build_layer_model

    return build_layer_model(plan_subnet(layer.spec, width), weights, layer.index, batch, {"lut_key": layer.key})


@dataclass
class LayerSource:
    """Single-layer networks for timing, as a device backend asks its source for networks.

    Hands a backend what `compofa.sources.subnet.SubnetSource` hands it for a
    subnet, for a `Layer` instead: a cached ONNX file, its input shape, the
    output's name, or a PyTorch module. Weights are seeded
    (`compofa.graphs.seeded.SeededWeights`, seed 0); files are cached by
    everything that shapes them.
    """

    family: Family
    width: float
    cache_dir: str | os.PathLike[str] | None = None
    _weights: SeededWeights | None = field(default=None, init=False, repr=False)
    _modules: dict[Layer, Any] = field(default_factory=dict, init=False, repr=False)

    output_name = LAYER_OUTPUT_NAME

    @property
    def weights(self) -> SeededWeights:
        if self._weights is None:
            from compofa.graphs.seeded import SeededWeights

            self._weights = SeededWeights(self.family, self.width)
        return self._weights

    def _cached(self, layer: Layer, batch: int, version: int, suffix: str, write: Callable[[IO[bytes]], Any]
                ) -> Path:
        """The cache file of `layer` at `batch` in one format, written by `write` unless already there."""
        from compofa.fileio import atomic_output
        from compofa.graphs.cache import default_cache_dir

        identity = f"{version}|{self.weights.fingerprint}|{batch}|{layer.resolution}|{layer.key}"
        folder = Path(self.cache_dir or default_cache_dir()) / "layers"
        path = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}{suffix}"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            with atomic_output(path, "wb", durable=False) as handle:  # a cache: rebuilt if lost
                write(handle)
        return path

    def onnx(self, layer: Layer, batch: int) -> Path:
        """The ONNX file of `layer` at `batch` (written once, then cached)."""
        from compofa.graphs.cache import EXPORTER_VERSION

        return self._cached(layer, batch, EXPORTER_VERSION, ".onnx",
                            lambda handle: layer_graph(layer, self.weights, self.width, batch).write(handle))

    def tflite(self, layer: Layer, batch: int) -> Path:
        """The LiteRT (.tflite) file of `layer` at `batch`, NHWC (written once, then cached): what a phone times."""
        from compofa.graphs.tflite_graph import TFLITE_WRITER_VERSION, build_tflite_layer_model

        def write(handle: IO[bytes]) -> None:
            handle.write(build_tflite_layer_model(plan_subnet(layer.spec, self.width), self.weights, layer.index,
                                                  batch, {"lut_key": layer.key}))

        return self._cached(layer, batch, TFLITE_WRITER_VERSION, ".tflite", write)

    def input_shape(self, layer: Layer, batch: int) -> tuple[int, ...]:
        return (batch, *plan_subnet(layer.spec, self.width).layers[layer.index].input_shape)

    def module(self, layer: Layer) -> Any:
        """The layer as a PyTorch module in eval mode (for the torch and cuda backends; needs PyTorch).

        Kept once built: every round asks again, and building means filling a whole
        subnet's weights; the layers of a space together weigh about one subnet."""
        if layer not in self._modules:
            require_torch("timing a layer with PyTorch")
            from compofa.supernet.fresh import subnet_with_weights
            from compofa.supernet.network import layer_modules

            subnet = subnet_with_weights(layer.spec, self.width, self.weights)
            self._modules[layer] = layer_modules(subnet)[layer.index]
        return self._modules[layer]

    def describe(self) -> dict[str, Any]:
        return {"layers_of": self.family.name, "width": self.width, "weights": self.weights.describe()}
