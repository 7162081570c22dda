"""The distinct layers of a design space, as a layer lookup table keys them.

A layer's latency depends only on its own configuration and input shape, so
a lookup table needs each distinct layer once per resolution: the stem, every
block configuration that can occur at every block position, and the head.
`distinct_layers` lists them exactly (a CompOFA stage's expand ratio follows
its depth, so fewer block configurations occur than in OFA's space), each with
a subnet of the family that contains it, from which `layer_graph` builds an
ONNX model of the layer alone.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Iterable, Mapping

import torch

from compofa.devices.lut import KEY_GRAMMARS, LookupTable, LutError
from compofa.space import SubnetSpec, get_space, list_spaces
from compofa.space.family import Family
from compofa.space.plan import plan_subnet
from compofa.fileio import atomic_output
from compofa.supernet.export import EXPORTER_VERSION, default_cache_dir
from compofa.supernet.network import Supernet
from compofa.supernet.onnx_graph import LAYER_OUTPUT_NAME, OnnxGraph, build_layer_model, layer_input_shape


@dataclass(frozen=True)
class Layer:
    """One distinct layer at one resolution.

    Attributes:
        key: its lookup-table key (OFA's format).
        resolution: the network input resolution it occurs at.
        spec: a subnet of the family's widest space that contains it...
        index: ...as its `index`-th layer (0: stem, then blocks, then head).
    """

    key: str
    resolution: int
    spec: SubnetSpec
    index: int

    def __str__(self) -> str:
        return self.key  # the key names the input shape, so the resolution too


def widest_space(family: Family) -> str:
    """The registered space of `family` that holds every block configuration its supernet can run."""
    spaces = [space for space in list_spaces() if space.family == family]
    return max(spaces, key=lambda space: space.cardinality).name


def distinct_layers(space: str, width: float, resolutions: Iterable[int]) -> list[Layer]:
    """Every distinct layer the subnets of `space` at `width` use, per resolution, in network order."""
    design = get_space(space)
    family = design.family
    grammar = KEY_GRAMMARS[family.name]
    host = get_space(widest_space(family))
    widest = (max(family.kernel_sizes), max(host_stage.expand_ratios[-1] for host_stage in host.stages))
    layers: list[Layer] = []
    for resolution in resolutions:
        design.check_resolution(resolution)
        found: dict[str, Layer] = {}
        for stage, choices in enumerate(design.stages):
            # (kernel, expand) pairs that can occur at each block of the stage, over all its depths
            allowed: dict[int, set[tuple[int, int]]] = {}
            for depth in choices.depths:
                for block in range(depth):
                    pairs = {(k, e) for k in choices.kernel_sizes for e in choices.expand_options(depth)}
                    allowed.setdefault(block, set()).update(pairs)
            for pair in sorted(set().union(*allowed.values())):
                # the whole stage at full depth with `pair`, the other stages at their widest
                blocks_of = [
                    (pair if s == stage else widest,) * family.stages[s].max_depth for s in range(len(family.stages))
                ]
                spec = _spec(host.name, resolution, blocks_of)
                keys = grammar(plan_subnet(spec, width))
                first_block = 1 + sum(family.stages[s].max_depth for s in range(stage)) + 1
                for index, (key_stage, key) in enumerate(keys):
                    block = index - first_block
                    if key_stage == -1 or (key_stage == stage and pair in allowed.get(block, ())):
                        found.setdefault(key, Layer(key, resolution, spec, index))
        layers.extend(sorted(found.values(), key=lambda layer: (layer.index, layer.key)))
    return layers


def _spec(space: str, resolution: int, blocks_of: list[tuple[tuple[int, int], ...]]) -> SubnetSpec:
    return SubnetSpec(
        space,
        resolution,
        tuple(len(blocks) for blocks in blocks_of),
        tuple(k for blocks in blocks_of for k, _ in blocks),
        tuple(e for blocks in blocks_of for _, e in blocks),
    )


def missing_layers(lut: LookupTable, space: str, width: float, resolutions: Iterable[int]) -> list[Layer]:
    """The layers `space` at `width` needs at `resolutions` that `lut` has no entry for."""
    have = {resolution: lut.layer_table(resolution).entries for resolution in lut.resolutions}
    return [
        layer for layer in distinct_layers(space, width, resolutions)
        if layer.key not in have.get(layer.resolution, {})
    ]


def check_coverage(lut: LookupTable, space: str, width: float, resolutions: Iterable[int]) -> None:
    """Raise `LutError` naming what is missing unless `lut` covers `space` at `width` and `resolutions`."""
    resolutions = tuple(resolutions)
    missing = missing_layers(lut, space, width, resolutions)
    if missing:
        at = sorted({layer.resolution for layer in missing})
        raise LutError(
            f"LUT {lut.name} lacks {len(missing)} of the layers {space} w{width:g} uses at resolution(s) "
            f"{', '.join(map(str, at))}, e.g. {missing[0].key!r}; measure them into a LUT of this device "
            f"(resolutions {', '.join(map(str, resolutions))})"
        )


def layer_graph(layer: Layer, state: Mapping[str, torch.Tensor], width: float, batch: int = 1) -> OnnxGraph:
    """The ONNX model of `layer` alone; `state` is the state_dict of `layer.spec`'s subnet."""
    return build_layer_model(plan_subnet(layer.spec, width), state, layer.index, batch, {"lut_key": layer.key})


@dataclass
class LayerSource:
    """Single-layer ONNX files for timing, as a device backend asks its source for networks.

    Hands a backend what `compofa.supernet.source.SubnetSource` hands it for a
    subnet, for a `Layer` instead: a cached ONNX file, its input shape and the
    output's name. Weights are a fresh, seeded supernet's (latency does not
    depend on their values); files are cached by everything that shapes them.
    """

    family: Family
    width: float
    cache_dir: str | os.PathLike[str] | None = None
    _supernet: Supernet | None = field(default=None, init=False, repr=False)
    _modules: dict[Layer, torch.nn.Module] = field(default_factory=dict, init=False, repr=False)

    output_name = LAYER_OUTPUT_NAME

    @property
    def supernet(self) -> Supernet:
        if self._supernet is None:
            from compofa.supernet.fresh import fresh_supernet

            self._supernet = fresh_supernet(self.family, self.width)
        return self._supernet

    def onnx(self, layer: Layer, batch: int) -> Path:
        identity = f"{EXPORTER_VERSION}|{self.family.name}|{self.width}|{batch}|{layer.resolution}|{layer.key}|seed0"
        folder = Path(self.cache_dir or default_cache_dir()) / "layers"
        path = folder / f"{hashlib.sha256(identity.encode()).hexdigest()[:32]}.onnx"
        if not path.exists():
            folder.mkdir(parents=True, exist_ok=True)
            state = self.supernet.subnet_state_dict(layer.spec, copy=False)
            graph = layer_graph(layer, state, self.width, batch)
            with atomic_output(path, "wb", durable=False) as handle:  # a cache: rebuilt if lost
                graph.write(handle)
        return path

    def input_shape(self, layer: Layer, batch: int) -> tuple[int, ...]:
        return layer_input_shape(plan_subnet(layer.spec, self.width), layer.index, batch)

    def module(self, layer: Layer) -> torch.nn.Module:
        """The layer as a PyTorch module in eval mode (for the torch and cuda backends).

        Kept once extracted: every round asks again, and extracting means copying a whole
        subnet's weights; the layers of a space together weigh about one subnet."""
        from compofa.supernet.network import layer_modules

        if layer not in self._modules:
            self._modules[layer] = layer_modules(self.supernet.subnet(layer.spec).eval())[layer.index]
        return self._modules[layer]

    def describe(self) -> dict[str, Any]:
        return {"layers_of": self.family.name, "width": self.width, "weights": "fresh, seed 0"}
