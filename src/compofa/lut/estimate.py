"""The layer-sum estimate: a subnet's latency is the sum of its layers' entries.

`LayerSumModel` is the arithmetic, shared by every additive cost (lookup-table
latency, FLOPs): a block's cost depends only on its position, kernel size and
expand ratio (its input channels and size are fixed by the position and the
resolution), so a whole family is a small array built from a few full-depth
layouts, and a batch of subnets is one gather and one sum. `LutPredictor` fills
that array from a lookup table's means; the `lut` device and search both ask it.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Sequence
from typing import Protocol

import numpy as np

from compofa.lut.format import LayerTable, LutError
from compofa.lut.keys import key_grammar
from compofa.space import Family, SubnetSpec, get_space, list_spaces
from compofa.space.plan import NetworkPlan, plan_network, plan_subnet

#: What a network's layers cost: the layers every subnet of its resolution shares
#: (`LayerPlan.stage` -1) summed, then each elastic block's cost in network order.
LayerCosts = Callable[[NetworkPlan], tuple[float, Sequence[float]]]


class MissingLayerError(LutError):
    """A layer a subnet needs has no entry in the lookup table.

    Attributes:
        key, resolution: the layer's key and the table it is missing from.
        row: the row of the estimated batch that needs it.
    """

    def __init__(self, message: str, key: str, resolution: int, row: int) -> None:
        super().__init__(message)
        self.key, self.resolution, self.row = key, resolution, row


class LayerSumModel:
    """cost(subnet) = shared[resolution] + the sum over its active blocks of block[resolution, slot, kernel, expand].

    Slots are the family's elastic blocks in network order (the per-block arrays
    of `compofa.search.arrays.ArchBatch`: kernel and expand ratio 0 where a
    stage's depth leaves a block out). Each resolution's costs are laid out the
    first time it is asked for. Kernels and expand ratios must be among
    `kernels` and `expands` (callers check a space's against them once).
    """

    def __init__(self, family: Family, width: float, resolutions: Iterable[int], expand_ratios: Iterable[int],
                 costs: LayerCosts) -> None:
        self.family, self.width, self._costs = family, width, costs
        self.resolutions = tuple(sorted(set(resolutions)))
        self.kernels = family.kernel_sizes
        self.expands = tuple(sorted(set(expand_ratios)))
        slots = family.num_blocks
        # The last kernel and expand slots hold 0: the cost of an inactive block.
        self._padded = np.zeros((len(self.resolutions), slots, len(self.kernels) + 1, len(self.expands) + 1))
        self._shared = np.zeros(len(self.resolutions))
        self._filled = np.zeros(len(self.resolutions), dtype=bool)
        cells = self._padded.shape[2] * self._padded.shape[3]
        self._row_stride = slots * cells
        self._slot_offset = np.arange(slots) * cells
        kernel_index, self._expand_slot = _slot_of(self.kernels), _slot_of(self.expands)
        self._kernel_slot = kernel_index * self._padded.shape[3]
        self._kernel_index, self._expand_index = kernel_index.tolist(), self._expand_slot.tolist()
        self._resolution_row = np.full(max(self.resolutions, default=0) + 1, -1, dtype=np.intp)
        self._resolution_row[list(self.resolutions)] = np.arange(len(self.resolutions))
        self._stage_starts = tuple(int(v) for v in np.cumsum([0] + [s.max_depth for s in family.stages[:-1]]))
        # resolution -> (shared, [slot][kernel index][expand index]) as Python floats: `cost` reads
        # them without numpy's per-element overhead
        self._costs_of: dict[int, tuple[float, list[list[list[float]]]]] = {}

    def cost(self, spec: SubnetSpec) -> float:
        """The cost of one subnet (the same sum as a row of `__call__`, without building arrays)."""
        costs = self._costs_of.get(spec.resolution)
        if costs is None:
            self._rows(np.array([spec.resolution]))
            costs = self._costs_of[spec.resolution]
        blocks, kernel_index, expand_index = 0.0, self._kernel_index, self._expand_index
        for stage, start in enumerate(self._stage_starts[: spec.num_stages]):
            kernels, expands = spec.stage_kernel_sizes(stage), spec.stage_expand_ratios(stage)
            for slot, (kernel, expand) in enumerate(zip(kernels, expands), start):
                blocks += costs[1][slot][kernel_index[kernel]][expand_index[expand]]
        return costs[0] + blocks  # summed in `__call__`'s order, so both give the same float

    def __call__(self, resolution: np.ndarray, kernel: np.ndarray, expand: np.ndarray) -> np.ndarray:
        """The cost of each row: `resolution` (N,), `kernel` and `expand` (N, slots), 0 where inactive."""
        rows = self._rows(np.asarray(resolution, dtype=np.intp))
        index = (rows * self._row_stride)[:, None] + self._slot_offset
        index += self._kernel_slot.take(kernel) + self._expand_slot.take(expand)
        # Blocks summed in slot order (accumulate is sequential, unlike sum's pairwise order), so a row's
        # total is the very float `cost` gives for the same subnet.
        blocks = np.add.accumulate(self._padded.reshape(-1).take(index), axis=1)[:, -1]
        return self._shared.take(rows) + blocks

    def _rows(self, resolution: np.ndarray) -> np.ndarray:
        inside = (resolution >= 0) & (resolution < len(self._resolution_row))
        rows = np.where(inside, self._resolution_row[np.where(inside, resolution, 0)], -1)
        if (rows < 0).any():
            missing = int(resolution[np.flatnonzero(rows < 0)[0]])
            have = ", ".join(map(str, self.resolutions))
            raise LutError(f"no layer costs at resolution {missing}; available: {have}")
        for row in np.unique(rows[~self._filled[rows]]):
            self._fill(int(row))
        return rows

    def _fill(self, row: int) -> None:
        family, resolution = self.family, self.resolutions[row]
        for k, kernel in enumerate(self.kernels):
            for e, expand in enumerate(self.expands):
                stage_blocks = tuple(((kernel, expand),) * stage.max_depth for stage in family.stages)
                shared, per_block = self._costs(plan_network(family, self.width, resolution, stage_blocks))
                self._shared[row] = shared  # the same for every layout: no shared layer depends on the blocks
                self._padded[row, :, k, e] = per_block
        self._filled[row] = True
        self._costs_of[resolution] = (float(self._shared[row]), self._padded[row].tolist())


def _slot_of(values: tuple[int, ...]) -> np.ndarray:
    """value -> its index in `values`; 0 and any value not there -> the padding slot."""
    slots = np.full(max(values) + 1, len(values), dtype=np.intp)
    slots[list(values)] = np.arange(len(values))
    return slots


def family_expand_ratios(family: Family) -> tuple[int, ...]:
    """Every expand ratio a registered space of `family` uses."""
    return tuple(sorted({e for space in list_spaces() if space.family == family
                         for stage in space.stages for e in stage.expand_ratios}))


def spec_arrays(specs: Sequence[SubnetSpec], family: Family) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(resolution, kernel, expand) of `specs` in the per-slot layout `LayerSumModel` reads."""
    starts = np.cumsum([0] + [stage.max_depth for stage in family.stages])
    kernel = np.zeros((len(specs), family.num_blocks), dtype=np.intp)
    expand = np.zeros_like(kernel)
    for row, spec in enumerate(specs):
        for stage in range(spec.num_stages):
            kernels = spec.stage_kernel_sizes(stage)
            start = starts[stage]
            kernel[row, start:start + len(kernels)] = kernels
            expand[row, start:start + len(kernels)] = spec.stage_expand_ratios(stage)
    return np.array([spec.resolution for spec in specs], dtype=np.intp), kernel, expand


class LayerTables(Protocol):
    """What an estimate reads of a lookup table (`compofa.lut.LookupTable`)."""

    name: str

    @property
    def resolutions(self) -> tuple[int, ...]: ...

    @property
    def stem_channels(self) -> tuple[int, ...]: ...

    @property
    def layout(self) -> str | None: ...

    def layer_table(self, resolution: int) -> LayerTable: ...


class LutPredictor:
    """Latency estimates of one family at one width from a lookup table: the sum of its layers' means.

    Construction refuses a table made for another family or width. The sums
    come from one `LayerSumModel` over the table's resolutions, so one subnet
    (`predict`) and a batch of arrays (`predict_arrays`, what search uses) get
    the same numbers from the same place.
    """

    def __init__(self, table: LayerTables, family: Family, width: float) -> None:
        self.table, self.family, self.width = table, family, width
        self._grammar = key_grammar(family)
        self._check_fits()
        self._spaces: set[str] = set()
        self._expands = set(family_expand_ratios(family))
        self._model: LayerSumModel | None = None
        self._absent: dict[tuple[int, int, int, int], str] = {}  # (resolution, slot or -1, kernel, expand) -> key

    def _check_fits(self) -> None:
        table, family = self.table, self.family
        if table.layout not in (None, family.name):
            raise LutError(f"LUT {table.name} has {table.layout} layer keys; it cannot estimate {family.name} networks")
        need = family.scaled(family.stem_base_width, self.width)
        have = table.stem_channels
        if not have:
            raise LutError(f"LUT {table.name} has no stem entry (Conv-input:RxRx3-output:...) to tell its width")
        if need not in have:
            widths = [w for w in family.widths if family.scaled(family.stem_base_width, w) in have]
            described = f"width {widths[0]}" if widths else "an unknown width"
            raise LutError(
                f"LUT {table.name} describes {family.name} {described} (stem {'/'.join(map(str, have))} channels) "
                f"but the supernet is width {self.width} (stem {need} channels); "
                f"use a LUT measured at width {self.width}"
            )

    def check_space(self, space: str) -> None:
        """Refuse a space of another family (once per space)."""
        if space in self._spaces:
            return
        design = get_space(space)
        if design.family != self.family:
            raise LutError(f"space {space} holds {design.family.name} networks; this estimate is for "
                           f"{self.family.name}")
        ratios = {e for stage in design.stages for e in stage.expand_ratios}
        if not ratios <= self._expands:  # a space registered after the model was laid out
            self._expands |= ratios
            self._model = None
        self._spaces.add(space)

    def layer_keys(self, spec: SubnetSpec) -> tuple[str, ...]:
        """The keys of `spec`'s layers, in execution order."""
        self._check_spec(spec)
        return tuple(self._grammar.key(layer) for layer in plan_subnet(spec, self.width).layers)

    def predict(self, spec: SubnetSpec) -> float:
        """Latency (ms) of `spec`: the sum of its layers' means."""
        self._check_spec(spec)
        self.table.layer_table(spec.resolution)  # an error lists the resolutions the table has
        value = self.model.cost(spec)
        if math.isnan(value):
            self.predict_many([spec])  # raises, naming the layer
        return value

    def predict_many(self, specs: Iterable[SubnetSpec]) -> np.ndarray:
        """`predict` of every spec, as a float64 array."""
        specs = list(specs)
        for spec in specs:
            self._check_spec(spec)
        return self.predict_arrays(*spec_arrays(specs, self.family), needed_by=lambda row: str(specs[row]))

    def predict_arrays(self, resolution: np.ndarray, kernel: np.ndarray, expand: np.ndarray,
                       needed_by: Callable[[int], str] | None = None) -> np.ndarray:
        """The estimate of each row of per-slot arrays (see `LayerSumModel`), as a float64 array.

        Raises `MissingLayerError` for a row that needs a layer the table lacks;
        `needed_by(row)` names that row in the message.
        """
        resolution = np.asarray(resolution, dtype=np.intp)
        for value in np.unique(resolution):
            self.table.layer_table(int(value))  # an error lists the resolutions the table has
        values = self.model(resolution, kernel, expand)
        if np.isnan(values).any():
            row = int(np.flatnonzero(np.isnan(values))[0])
            key = self._absent_key(int(resolution[row]), kernel[row], expand[row])
            raise MissingLayerError(
                f"LUT {self.table.name} has no entry {key!r} at resolution {int(resolution[row])} (needed by "
                f"{needed_by(row) if needed_by else f'row {row}'}); measure that layer into the table, or use a LUT "
                f"made for {self.family.name} width {self.width} that covers it",
                key, int(resolution[row]), row,
            )
        return values

    @property
    def model(self) -> LayerSumModel:
        """The sums over this table (NaN where a layer has no entry)."""
        if self._model is None:
            self._model = LayerSumModel(self.family, self.width, self.table.resolutions, self._expands, self._costs)
        return self._model

    def _check_spec(self, spec: SubnetSpec) -> None:
        if spec.space not in self._spaces:
            family = get_space(spec.space).family
            if family != self.family:
                raise LutError(f"spec {spec} is a {family.name} network; this estimate is for {self.family.name}")
            self.check_space(spec.space)

    def _costs(self, plan: NetworkPlan) -> tuple[float, list[float]]:
        entries = self.table.layer_table(plan.resolution).entries
        shared = 0.0
        blocks: list[float] = []
        for layer in plan.layers:
            key = self._grammar.key(layer)
            entry = entries.get(key)
            mean = np.nan if entry is None else entry.mean
            if layer.stage < 0:
                shared += mean
                if entry is None:
                    self._absent.setdefault((plan.resolution, -1, 0, 0), key)
            else:
                assert layer.block is not None, "only blocks belong to a stage"
                if entry is None:
                    slot = len(blocks)
                    self._absent[(plan.resolution, slot, layer.block.kernel_size, layer.block.expand_ratio)] = key
                blocks.append(mean)
        return shared, blocks

    def _absent_key(self, resolution: int, kernel: np.ndarray, expand: np.ndarray) -> str:
        """The key of the first layer without an entry in a row whose sum is NaN."""
        shared = self._absent.get((resolution, -1, 0, 0))
        if shared is not None:
            return shared
        for slot, (k, e) in enumerate(zip(kernel.tolist(), expand.tolist())):
            key = self._absent.get((resolution, slot, k, e))
            if key is not None:
                return key
        raise AssertionError("a NaN sum has an absent layer")  # pragma: no cover - _costs records every one
