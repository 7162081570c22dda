"""A spread sample of configurations: what `compofa profile --limit N` measures.

The first N configurations in enumeration order share most of their stages
(the last stage varies fastest: six CompOFA subnets share their first three
stages), so a quick profile used to see a sliver of the space. `spread_order`
orders configurations so that every prefix is spread out: greedy
farthest-point selection over the features that decide a subnet's latency,
each scaled to [0, 1]: every stage's depth, mean kernel size and mean expand
ratio, the resolution, and the logarithm of the MACs (the cost proxy that
spans the latency range), the MACs weighted like all the stages together.

It starts at the cheapest configuration; each next one is the farthest from
all chosen so far, a tie going to the earliest in the given order. There is
no randomness: the same configurations come in the same order on every run,
so a rerun with the same N resumes the same subnets, and a larger N keeps the
earlier ones and adds more (the first N of one fixed order).
"""

from __future__ import annotations

import bisect
from collections.abc import Sequence

import numpy as np

from compofa.space.cost import layer_cost
from compofa.space.plan import plan_subnet
from compofa.space.registry import get_space
from compofa.space.spec import SubnetSpec

# Distances are rounded to this many decimals before comparing, so that a tie
# is a tie on every machine (float sums may differ in the last bit).
_DECIMALS = 9


def spread_sample(specs: Sequence[SubnetSpec], count: int, width: float) -> list[SubnetSpec]:
    """The first `count` of `spread_order(specs, width)`; all of `specs`, in their order, if they are no more."""
    if count >= len(specs):
        return list(specs)
    return [specs[row] for row in spread_order(specs, width, count)]


def spread_order(specs: Sequence[SubnetSpec], width: float, count: int | None = None) -> list[int]:
    """Indices into `specs` (one space), each prefix spread over the space (see the module docstring).

    Only the first `count` are computed when given (the order does not depend on it).
    """
    total = len(specs)
    wanted = total if count is None else min(count, total)
    if wanted <= 0:
        return []
    shape, cost = _features(specs, width)
    by_cost = np.argsort(cost, kind="stable")  # positions in cost order; equal costs keep the given order
    position = np.empty(total, dtype=np.intp)
    position[by_cost] = np.arange(total)
    nearest = np.full(total, np.inf)  # squared distance in `shape` to the nearest chosen row
    chosen_positions: list[int] = []
    order: list[int] = []

    def choose(row: int) -> None:
        order.append(row)
        bisect.insort(chosen_positions, int(position[row]))
        distance = np.round(((shape - shape[row]) ** 2).sum(axis=1), _DECIMALS)
        np.minimum(nearest, distance, out=nearest)
        nearest[row] = -1.0  # never chosen again

    choose(int(by_cost[0]))
    if wanted > 1:
        choose(int(by_cost[-1]))
    while len(order) < wanted:
        candidates = _widest_gap(chosen_positions, cost[by_cost])
        rows = by_cost[candidates]
        choose(int(rows[np.argmax(nearest[rows])]))  # argmax keeps the earliest of equals
    return order


def _widest_gap(chosen: list[int], sorted_cost: np.ndarray) -> np.ndarray:
    """Positions (in cost order) to choose the next row from: inside the widest cost gap between chosen rows
    that has unchosen rows, those in its middle half if any."""
    best: tuple[float, int, int] | None = None
    for low, high in zip(chosen, chosen[1:]):
        if high - low > 1:
            gap = float(sorted_cost[high] - sorted_cost[low])
            if best is None or gap > best[0]:
                best = (gap, low, high)
    assert best is not None, "a gap with unchosen rows exists while rows are left"
    gap, low, high = best
    inside = np.arange(low + 1, high)
    middle = sorted_cost[low] + gap / 4, sorted_cost[high] - gap / 4
    centre = inside[(sorted_cost[inside] >= middle[0]) & (sorted_cost[inside] <= middle[1])]
    return centre if len(centre) else inside


def _features(specs: Sequence[SubnetSpec], width: float) -> tuple[np.ndarray, np.ndarray]:
    """Each configuration's shape, (N, 3 * stages + 1): per stage depth, mean kernel size and mean expand
    ratio, and the resolution, each scaled to [0, 1]; and its log MACs scaled to [0, 1], (N,)."""
    spaces = {spec.space for spec in specs}
    if len(spaces) != 1:
        raise ValueError(f"spread_order takes configurations of one space, got {sorted(spaces)}")
    design = get_space(specs[0].space)
    columns: list[np.ndarray] = []
    for stage, choices in enumerate(design.stages):
        depth = np.array([spec.depths[stage] for spec in specs], dtype=float)
        kernel = np.array([_mean(spec.stage_kernel_sizes(stage)) for spec in specs])
        expand = np.array([_mean(spec.stage_expand_ratios(stage)) for spec in specs])
        columns += [_scaled(depth, choices.depths), _scaled(kernel, choices.kernel_sizes),
                    _scaled(expand, choices.expand_ratios)]
    resolution = np.array([spec.resolution for spec in specs], dtype=float)
    columns.append(_scaled(resolution, resolution))
    cost = np.log(_macs(specs, width))
    return np.round(np.stack(columns, axis=1), _DECIMALS), np.round(_scaled(cost, cost), _DECIMALS)


def _mean(values: Sequence[int]) -> float:
    return sum(values) / len(values) if values else 0.0


def _scaled(values: np.ndarray, bounds: Sequence[float] | np.ndarray) -> np.ndarray:
    """`values` mapped onto [0, 1] by the range of `bounds` (0 where the range is a single value)."""
    low, high = float(np.min(bounds)), float(np.max(bounds))
    return (values - low) / (high - low) if high > low else np.zeros_like(values)


def _macs(specs: Sequence[SubnetSpec], width: float) -> np.ndarray:
    """MACs of each configuration, planning few networks.

    A stage's blocks cost the same whatever the other stages are (its input
    channels and size are fixed by the family and the resolution), so the MACs
    are the layers every subnet of a resolution shares plus one part per
    stage, and each plan fills the parts of all its stages.
    """
    stages = len(specs[0].depths)
    parts: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], int] = {}
    shared: dict[int, int] = {}
    macs = np.zeros(len(specs))
    for row, spec in enumerate(specs):
        keys = [(spec.resolution, stage, spec.stage_kernel_sizes(stage), spec.stage_expand_ratios(stage))
                for stage in range(stages)]
        if spec.resolution not in shared or any(key not in parts for key in keys):
            per_stage = [0] * stages
            everything = 0
            for layer in plan_subnet(spec, width).layers:
                value = layer_cost(layer).macs
                everything += value
                if layer.stage >= 0:
                    per_stage[layer.stage] += value
            parts.update(zip(keys, per_stage))
            shared[spec.resolution] = everything - sum(per_stage)
        macs[row] = shared[spec.resolution] + sum(parts[key] for key in keys)
    return macs
