"""Subnets as arrays, so that search handles thousands of them at numpy speed.

`ArchBatch` holds N subnets of one space in the OFA layout: a kernel size and
an expand ratio for every block of the supernet, a depth per stage and a
resolution. Blocks a stage's depth leaves out hold 0, so two rows are equal
exactly when the subnets are (rows serve as memo keys). Converting to and from
`SubnetSpec` is exact; everything else in search works on these arrays.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import cache

import numpy as np

from compofa.space import SubnetSpec, get_space


@dataclass(frozen=True)
class Layout:
    """Where each stage's blocks sit in the per-block arrays of a family."""

    stage_starts: tuple[int, ...]
    stage_sizes: tuple[int, ...]

    @property
    def num_blocks(self) -> int:
        return sum(self.stage_sizes)

    @property
    def num_stages(self) -> int:
        return len(self.stage_sizes)

    def block_stage(self) -> np.ndarray:
        """The stage of every block slot."""
        return np.repeat(np.arange(self.num_stages), self.stage_sizes)

    def block_index_in_stage(self) -> np.ndarray:
        return np.concatenate([np.arange(size) for size in self.stage_sizes])


@cache
def layout_of(space: str) -> Layout:
    family = get_space(space).family
    sizes = tuple(stage.max_depth for stage in family.stages)
    starts = tuple(int(v) for v in np.cumsum((0,) + sizes[:-1]))
    return Layout(starts, sizes)


@dataclass(frozen=True)
class ArchBatch:
    """N subnets of one design space as integer arrays.

    Attributes:
        space: the design space of every row.
        kernel: (N, blocks) kernel size per supernet block, 0 where inactive.
        expand: (N, blocks) expand ratio per supernet block, 0 where inactive.
        depth: (N, stages) active blocks per stage.
        resolution: (N,) input resolution.
    """

    space: str
    kernel: np.ndarray
    expand: np.ndarray
    depth: np.ndarray
    resolution: np.ndarray

    def __len__(self) -> int:
        return int(self.resolution.shape[0])

    @property
    def layout(self) -> Layout:
        return layout_of(self.space)

    def active(self) -> np.ndarray:
        """(N, blocks) True where a block is part of the subnet."""
        layout = self.layout
        depth_per_block = self.depth[:, layout.block_stage()]
        return layout.block_index_in_stage()[None, :] < depth_per_block

    @classmethod
    def from_specs(cls, specs: Sequence[SubnetSpec]) -> ArchBatch:
        if not specs:
            raise ValueError("no specs")
        space = specs[0].space
        layout = layout_of(space)
        n = len(specs)
        kernel = np.zeros((n, layout.num_blocks), dtype=np.int8)
        expand = np.zeros((n, layout.num_blocks), dtype=np.int8)
        depth = np.zeros((n, layout.num_stages), dtype=np.int8)
        resolution = np.zeros(n, dtype=np.int16)
        for row, spec in enumerate(specs):
            if spec.space != space:
                raise ValueError(f"an ArchBatch holds one space; got {space!r} and {spec.space!r}")
            resolution[row] = spec.resolution
            depth[row] = spec.depths
            for stage, start in enumerate(layout.stage_starts):
                d = spec.depths[stage]
                kernel[row, start : start + d] = spec.stage_kernel_sizes(stage)
                expand[row, start : start + d] = spec.stage_expand_ratios(stage)
        return cls(space, kernel, expand, depth, resolution)

    def spec(self, row: int) -> SubnetSpec:
        layout = self.layout
        depths = tuple(int(d) for d in self.depth[row])
        kernels: list[int] = []
        expands: list[int] = []
        for stage, start in enumerate(layout.stage_starts):
            kernels += [int(k) for k in self.kernel[row, start : start + depths[stage]]]
            expands += [int(e) for e in self.expand[row, start : start + depths[stage]]]
        return SubnetSpec(self.space, int(self.resolution[row]), depths, tuple(kernels), tuple(expands))

    def specs(self) -> list[SubnetSpec]:
        return [self.spec(row) for row in range(len(self))]

    def take(self, rows: np.ndarray | Sequence[int]) -> ArchBatch:
        index = np.asarray(rows)
        return ArchBatch(self.space, self.kernel[index], self.expand[index], self.depth[index], self.resolution[index])

    def packed(self) -> np.ndarray:
        """(N,) one fixed-width byte string per row, equal exactly when the subnets are (for np.unique)."""
        columns = np.concatenate(
            [self.kernel, self.expand, self.depth,
             self.resolution.astype(np.int16).view(np.int8).reshape(len(self), 2)],
            axis=1,
        )
        columns = np.ascontiguousarray(columns, dtype=np.int8)
        return columns.view(np.dtype((np.void, columns.shape[1]))).ravel()

    def keys(self) -> np.ndarray:
        """One hashable bytes key per row (equal exactly when the subnets are)."""
        return np.array(self.key_list(), dtype=object)

    def key_list(self) -> list[bytes]:
        """`keys` as a list (slicing one bytes object is several times faster than a tobytes per row)."""
        packed = self.packed()
        width = packed.dtype.itemsize
        data = packed.tobytes()
        return [data[start : start + width] for start in range(0, len(data), width)]

    @staticmethod
    def concatenate(batches: Iterable[ArchBatch]) -> ArchBatch:
        batches = list(batches)
        space = batches[0].space
        if any(b.space != space for b in batches):
            raise ValueError("cannot concatenate batches of different spaces")
        return ArchBatch(
            space,
            np.concatenate([b.kernel for b in batches]),
            np.concatenate([b.expand for b in batches]),
            np.concatenate([b.depth for b in batches]),
            np.concatenate([b.resolution for b in batches]),
        )


def enumerate_batch(space: str, resolutions: Iterable[int]) -> ArchBatch:
    """Every subnet of an enumerable space at each resolution, in `DesignSpace.enumerate` order.

    Built with numpy from each stage's configurations (no spec objects):
    the CompOFA space at 17 resolutions is 4131 rows in about a millisecond.
    """
    design = get_space(space)
    resolution_list = [int(r) for r in resolutions]
    for resolution in resolution_list:
        design.check_resolution(resolution)
    if not design.enumerable:
        design.enumerate(resolution_list)  # raises the space-too-large error
    layout = layout_of(space)
    kernel_parts, expand_parts, depth_parts = [], [], []
    options = []
    for stage, choices in enumerate(design.stages):
        configurations = list(choices.configurations())
        size = layout.stage_sizes[stage]
        kernels = np.zeros((len(configurations), size), dtype=np.int8)
        expands = np.zeros((len(configurations), size), dtype=np.int8)
        depths = np.zeros(len(configurations), dtype=np.int8)
        for row, (k, e) in enumerate(configurations):
            kernels[row, : len(k)], expands[row, : len(e)], depths[row] = k, e, len(k)
        options.append(len(configurations))
        kernel_parts.append(kernels)
        expand_parts.append(expands)
        depth_parts.append(depths)
    grid = np.indices(options).reshape(len(options), -1)  # last stage varies fastest, as itertools.product
    kernel = np.concatenate([part[grid[s]] for s, part in enumerate(kernel_parts)], axis=1)
    expand = np.concatenate([part[grid[s]] for s, part in enumerate(expand_parts)], axis=1)
    depth = np.stack([part[grid[s]] for s, part in enumerate(depth_parts)], axis=1)
    count = kernel.shape[0]
    return ArchBatch(
        space,
        np.tile(kernel, (len(resolution_list), 1)),
        np.tile(expand, (len(resolution_list), 1)),
        np.tile(depth, (len(resolution_list), 1)),
        np.repeat(np.array(resolution_list, dtype=np.int16), count),
    )
