"""Latency sources for search: measured tables, live devices, layer lookup tables, FLOPs.

Every source answers for a whole `ArchBatch` at once with medians and 95%
confidence bounds (lookup tables and FLOPs are exact: the bounds equal the
median). Measured sources memoize: `table:PATH` reads a profiled table once,
`device:NAME` measures a subnet the first time it is asked through the
profiler into a table, so that no later search, and no other target, measures
it again. The memo key is the table's entry key: space, width, spec (with its
resolution), batch, precision and the device's fingerprint.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compofa.devices import Settings
from compofa.errors import CompofaError
from compofa.lut import LayerSumModel, LookupTable, LutError, MissingLayerError
from compofa.lut.estimate import family_expand_ratios
from compofa.search.arrays import ArchBatch
from compofa.space import get_space
from compofa.space.cost import block_cost, network_cost
from compofa.space.plan import NetworkPlan

if TYPE_CHECKING:  # the profiler and the store load only for measured latency (table:, device:)
    from compofa.profiler import ProfileConfig, ProfileListener
    from compofa.tables import LatencyTable


class LatencySourceError(CompofaError):
    """A latency source that cannot answer (unknown, missing entries, mismatched table)."""


@dataclass(frozen=True)
class LatencyEstimates:
    """Latency of each row of a batch: median and 95% bounds (ms, or MMACs for `flops`)."""

    median: np.ndarray
    ci_low: np.ndarray
    ci_high: np.ndarray

    def take(self, rows: np.ndarray) -> LatencyEstimates:
        return LatencyEstimates(self.median[rows], self.ci_low[rows], self.ci_high[rows])


@dataclass
class SourceStats:
    """What answering cost: lookups served from memory, subnets measured, seconds measuring."""

    hits: int = 0
    misses: int = 0
    measure_seconds: float = 0.0


class LatencySource(Protocol):
    name: str
    unit: str
    stats: SourceStats

    def latency(self, batch: ArchBatch) -> LatencyEstimates: ...

    def describe(self) -> str: ...


# -- additive models: lookup tables and FLOPs -------------------------------------------------
# Both are layer sums over `compofa.lut.LayerSumModel`: a batch is one gather and one sum.


def _flops_costs(plan: NetworkPlan) -> tuple[float, list[float]]:
    """MMACs of the layers every subnet shares, and of each elastic block (`LayerPlan.stage` >= 0)."""
    per_block = [block_cost(layer.block).macs / 1e6 for layer in plan.layers if layer.stage >= 0 and layer.block]
    return network_cost(plan).macs / 1e6 - sum(per_block), per_block


@dataclass
class FlopsLatency:
    """Multiply-accumulates in millions: the classic proxy, exact and free."""

    space: str
    width: float
    name: str = "flops"
    unit: str = "MMAC"
    stats: SourceStats = field(default_factory=SourceStats)

    def __post_init__(self) -> None:
        design = get_space(self.space)
        self._model = LayerSumModel(
            design.family, self.width, design.resolutions, family_expand_ratios(design.family), _flops_costs
        )

    def latency(self, batch: ArchBatch) -> LatencyEstimates:
        self.stats.hits += len(batch)
        try:
            value = self._model(batch.resolution, batch.kernel, batch.expand)
        except LutError as error:
            raise LatencySourceError(str(error)) from None
        return LatencyEstimates(value, value, value)

    def describe(self) -> str:
        return "MACs (millions) of one image"


class LutLatency:
    """The layer-sum estimate of an OFA-format lookup table (``lut:note10`` or ``lut:PATH``).

    The same estimate as the ``lut`` device's: `compofa.lut.LutPredictor`, over whole batches.
    """

    unit = "ms"

    def __init__(self, source: str, space: str, width: float) -> None:
        self.name = f"lut:{source}"
        self.stats = SourceStats()
        self.table = LookupTable.open(source)
        self.predictor = self.table.predictor(space, width)  # refuses a table of another family or width
        self.predictor.check_space(space)
        if not any(r in self.table.resolutions for r in get_space(space).resolutions):
            raise LutError(f"LUT {self.table.name} has none of the resolutions of space {space!r}")

    def latency(self, batch: ArchBatch) -> LatencyEstimates:
        self.stats.hits += len(batch)
        try:
            value = self.predictor.predict_arrays(batch.resolution, batch.kernel, batch.expand)
        except MissingLayerError as missing:
            raise LatencySourceError(
                f"{self.name} has no entry {missing.key!r} at resolution {missing.resolution} "
                f"(needed by {batch.spec(missing.row)}); build a LUT that covers it"
            ) from None
        except LutError as error:  # a resolution the table lacks
            raise LatencySourceError(f"{self.name}: {error}") from None
        return LatencyEstimates(value, value, value)

    def describe(self) -> str:
        return f"sum of the layer latencies in {self.table.name}"


# -- measured sources ------------------------------------------------------------------------------


class TableLatency:
    """Measured entries of one device in a latency table, optionally measuring misses on a device.

    Without `device`, a subnet the table lacks is an error saying how to
    profile it; with `device` (``device:NAME``), misses are measured through
    the profiler into the same table (with `config`, reporting to
    `listener`), and every later question is a lookup. A device's entries are
    found by its exact fingerprint, so measurements of another setup of the
    same backend are never mistaken for this one's.
    """

    unit = "ms"

    def __init__(
        self, path: str | Path, space: str, width: float, settings: Settings | None = None,
        device: str | None = None, device_id: int | None = None, config: ProfileConfig | None = None,
        listener: ProfileListener | None = None,
    ) -> None:
        from compofa.tables import LatencyTable

        self.path = Path(path)
        self.space, self.width = space, width
        self.settings = settings or Settings()
        self.device = device
        from compofa.profiler import ProfileConfig

        self.config, self.listener = config or ProfileConfig(), listener
        self.name = f"device:{device}" if device else f"table:{path}"
        self.stats = SourceStats()
        self.device_id = device_id
        self._memo: dict[bytes, tuple[float, float, float]] = {}
        self._fingerprint = None if device is None else _fingerprint(device, space, width, self.settings)
        if device is None or self.path.exists():
            with LatencyTable.open(self.path) as table:
                self._load(table)

    def _load(self, table: LatencyTable) -> None:
        from compofa.space import parse_spec

        entries = [e for e in table.entries(space=self.space) if e.key.width == self.width
                   and e.key.batch == self.settings.batch and e.key.precision == self.settings.precision]
        if self.device_id is not None:
            table.require_device(self.device_id)
        if self.device_id is None:
            devices = sorted({e.device_id for e in entries})
            if self._fingerprint is not None:
                matching = {d.id for d in table.devices() if d.fingerprint == self._fingerprint}
                devices = [d for d in devices if d in matching]
            elif len(devices) > 1:
                raise LatencySourceError(
                    f"table {self.path} holds {self.space} entries of {len(devices)} devices; choose one with "
                    "--device-id (see `compofa table show`)"
                )
            self.device_id = devices[0] if devices else None
        entries = [e for e in entries if e.device_id == self.device_id]
        if not entries and self.device is None:
            others = sorted({(e.key.width, e.key.batch, e.key.precision) for e in table.entries(space=self.space)
                             if self.device_id is None or e.device_id == self.device_id})
            held = "; it holds " + ", ".join(f"width {w:g}, batch {b}, {p}" for w, b, p in others) if others else ""
            raise LatencySourceError(
                f"table {self.path} has no {self.space} entries at width {self.width:g}, batch {self.settings.batch}, "
                f"{self.settings.precision}" + (held or f"; profile them with `compofa profile --space {self.space} "
                                                         f"--table {self.path}`")
            )
        if entries:
            keys = ArchBatch.from_specs([parse_spec(e.key.spec) for e in entries]).keys()
            for key, entry in zip(keys, entries):
                self._memo[key] = (entry.median_ms, entry.ci_low_ms, entry.ci_high_ms)

    def latency(self, batch: ArchBatch) -> LatencyEstimates:
        keys = batch.keys()
        missing = [row for row, key in enumerate(keys) if key not in self._memo]
        self.stats.hits += len(keys) - len(missing)
        if missing:
            if self.device is None:
                spec = batch.spec(missing[0])
                raise LatencySourceError(
                    f"table {self.path} has no entry for {spec} ({len(missing)} subnets missing); profile them with "
                    f"`compofa profile --space {self.space} --resolution {spec.resolution} --table {self.path}`, "
                    "or search with device:NAME latency to measure on demand", option="latency",
                )
            self._measure(batch.take(np.array(missing)))
        values = np.array([self._memo[key] for key in keys], dtype=np.float64).reshape(len(keys), 3)
        return LatencyEstimates(values[:, 0], values[:, 1], values[:, 2])

    def _measure(self, batch: ArchBatch) -> None:
        from compofa.jobs.profile import ProfileRequest, profile_space
        from compofa.sources.subnet import SubnetSource
        from compofa.tables import LatencyTable

        unique = {key: row for row, key in enumerate(batch.keys())}
        specs = tuple(batch.spec(row) for row in unique.values())
        start = time.perf_counter()
        request = ProfileRequest(self.path, self.device or "", SubnetSource(self.space, self.width),
                                 tuple(sorted({s.resolution for s in specs})), self.settings, self.config, specs=specs,
                                 forceable=False)
        summary = profile_space(request, self.listener)
        self.stats.measure_seconds += time.perf_counter() - start
        self.stats.misses += len(specs)
        self.device_id = summary.device_id
        with LatencyTable.open(self.path) as table:
            self._load(table)

    def describe(self) -> str:
        kind = f"measured on demand with {self.device}, memoized in" if self.device else "measured entries of"
        return f"{kind} {self.path}"


def _fingerprint(device: str, space: str, width: float, settings: Settings) -> dict[str, Any]:
    """What the profiler will record as this device's identity (opening and closing it once)."""
    from compofa.remote.names import open_any_device
    from compofa.sources.subnet import SubnetSource

    handle = open_any_device(device, SubnetSource(space, width), settings)
    try:
        return handle.fingerprint()
    finally:
        handle.close()


def latency_source(
    text: str, space: str, width: float, settings: Settings | None = None, table: str | Path | None = None,
    device_id: int | None = None, config: ProfileConfig | None = None, listener: ProfileListener | None = None,
) -> LatencySource:
    """Parse the CLI form: ``table:PATH``, ``device:NAME``, ``lut:note10``, ``lut:PATH`` or ``flops``.

    `table` is where ``device:NAME`` memoizes; `config` and `listener` drive its profiling.
    """
    kind, _, rest = text.partition(":")
    if kind == "flops" and not rest:
        return FlopsLatency(space, width)
    if kind == "lut" and rest:
        return LutLatency(rest, space, width)
    if kind == "table" and rest:
        return TableLatency(rest, space, width, settings, device_id=device_id)
    if kind == "device" and rest:
        from compofa.remote.names import check_available

        check_available(rest)
        return TableLatency(table or "latency.db", space, width, settings, device=rest, device_id=device_id,
                            config=config, listener=listener)
    raise LatencySourceError(
        f"unknown latency source {text!r}; use table:PATH, device:NAME, lut:note10, lut:PATH or flops"
    )

