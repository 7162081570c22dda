"""The distinct layers of a design space, as a layer lookup table keys them.

A layer's latency depends only on its own configuration and input shape, so
a lookup table needs each distinct layer once per resolution: the stem, every
block configuration that can occur at every block position, and the head.
`distinct_layers` lists them exactly (a CompOFA stage's expand ratio follows
its depth, so fewer block configurations occur than in OFA's space), each with
a subnet of the family that contains it, as the `index`-th of its
`NetworkPlan.layers` (from which a graph of the layer alone is built).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from compofa.lut.format import LutError
from compofa.lut.keys import key_grammar
from compofa.lut.lookup import LookupTable
from compofa.space import SubnetSpec, get_space, list_spaces
from compofa.space.family import Family
from compofa.space.plan import plan_subnet


@dataclass(frozen=True)
class Layer:
    """One distinct layer at one resolution.

    Attributes:
        key: its lookup-table key (OFA's format).
        resolution: the network input resolution it occurs at.
        spec: a subnet of the family's widest space that contains it...
        index: ...as its `index`-th layer (`plan_subnet(spec, width).layers[index]`).
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
    grammar = key_grammar(family)
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
                in_stage = 0  # the block's place within `stage`
                for layer in plan_subnet(spec, width).layers:
                    if layer.stage == -1:  # layers every subnet of the resolution shares
                        found.setdefault(grammar.key(layer), Layer(grammar.key(layer), resolution, spec, layer.index))
                    elif layer.stage == stage:
                        if pair in allowed.get(in_stage, ()):
                            key = grammar.key(layer)
                            found.setdefault(key, Layer(key, resolution, spec, layer.index))
                        in_stage += 1
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
