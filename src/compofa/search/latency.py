"""Latency sources for search: measured tables, live devices, layer lookup tables, FLOPs.

Every source answers for a whole `ArchBatch` at once with medians and 95%
confidence bounds (lookup tables and FLOPs are exact: the bounds equal the
median). Measured sources memoize: `table:PATH` reads a profiled table once,
`device:NAME` measures a subnet the first time it is asked through the
profiler into a table, so that no later search, and no other target, measures
it again. The memo key is the table's entry key: space, width, spec (with its
resolution), batch, precision and the device's fingerprint.

A table may hold only some configurations (a profile with a limit, or one
still running). A partial `table:PATH` answers an infinite latency for a
configuration it has no entry for, so that no target is ever met by a latency
it does not have, and its `coverage` says what it holds; a complete one
(``complete=True``) refuses such a table instead.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from compofa.devices import Settings
from compofa.errors import CompofaError
from compofa.lut import LayerSumModel, LookupTable, LutError, MissingLayerError
from compofa.lut.estimate import family_expand_ratios
from compofa.search.arrays import ArchBatch
from compofa.search.metrics import DESCRIBED, ENERGY, MEMORY
from compofa.space import get_space
from compofa.space.cost import block_cost, network_cost
from compofa.space.design import describe_range
from compofa.space.plan import NetworkPlan

if TYPE_CHECKING:  # the profiler and the store load only for measured latency (table:, device:)
    from compofa.profiler import ProfileConfig, ProfileListener
    from compofa.tables import Entry, LatencyTable


class LatencySourceError(CompofaError):
    """A latency source that cannot answer (unknown, missing entries, mismatched table)."""


class MetricUnavailableError(LatencySourceError):
    """A source asked for a quantity it does not have (a lookup table's p99, an energy without a counter);
    `reason` is why, as the device or table said it (the whole message where none did)."""

    def __init__(self, message: str, reason: str = "", option: str | tuple[str, ...] | None = None) -> None:
        super().__init__(message, option=option)
        self.reason = reason or message


#: The entry fields of each quantity beyond the median a table answers for: value, and 95% bounds where kept.
_ENTRY_FIELDS = {
    "p90": ("p90_ms", "p90_ci_low_ms", "p90_ci_high_ms"),
    "p99": ("p99_ms", "p99_ci_low_ms", "p99_ci_high_ms"),
    MEMORY: ("peak_memory_mb", None, None),
    ENERGY: ("energy_mj", None, None),
}


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


@dataclass(frozen=True)
class Coverage:
    """What a table holds of a space at the resolutions searched.

    Attributes:
        held: the configurations with an entry, at those resolutions.
        counts: per resolution, (configurations with an entry, configurations of the space).
    """

    held: ArchBatch
    counts: dict[int, tuple[int, int]]

    @property
    def measured(self) -> int:
        return sum(have for have, _ in self.counts.values())

    @property
    def total(self) -> int:
        return sum(size for _, size in self.counts.values())

    @property
    def missing(self) -> int:
        return self.total - self.measured

    def missing_by_resolution(self) -> dict[int, int]:
        """Configurations without an entry per resolution (resolutions lacking none left out)."""
        return {r: size - have for r, (have, size) in sorted(self.counts.items()) if size > have}

    def describe(self) -> str:
        """``6 of the 243 configurations at 224 px``."""
        at = describe_range(sorted(self.counts))
        return f"{self.measured} of the {count_text(self.total)} configurations at {at} px"


def count_text(value: int) -> str:
    """A count as people read it: 4131, or 2.2e+19 for a space too large to enumerate."""
    return str(value) if value < 10**9 else f"{value:.2g}"


class LatencySource(Protocol):
    name: str
    unit: str
    stats: SourceStats

    def latency(self, batch: ArchBatch) -> LatencyEstimates: ...

    def coverage(self, resolutions: Sequence[int]) -> Coverage | None:
        """What the source holds at `resolutions`, if it answers only for some configurations (a table); None
        for a source that answers for any. Refuses resolutions it holds nothing at."""
        ...

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

    def coverage(self, resolutions: Sequence[int]) -> Coverage | None:
        return None  # any configuration's MACs are counted

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

    def coverage(self, resolutions: Sequence[int]) -> Coverage | None:
        return None  # any configuration is a sum of layers (a layer the table lacks is an error when asked)

    def describe(self) -> str:
        return f"sum of the layer latencies in {self.table.name}"


# -- measured sources ------------------------------------------------------------------------------


class TableLatency:
    """Measured entries of one device in a latency table, optionally measuring misses on a device.

    Without `device`, the table answers for what it holds: with `complete`, a
    subnet it lacks is an error saying how to profile it; without, its latency
    is infinite (it fits no target) and `coverage` says how much is missing.
    With `device` (``device:NAME``), misses are measured through the profiler
    into the same table (with `config`, reporting to `listener`), and every
    later question is a lookup. A device's entries are found by its exact
    fingerprint, so measurements of another setup of the same backend are
    never mistaken for this one's.
    """

    unit = "ms"

    def __init__(
        self, path: str | Path, space: str, width: float, settings: Settings | None = None,
        device: str | None = None, device_id: int | None = None, config: ProfileConfig | None = None,
        listener: ProfileListener | None = None, complete: bool = True,
    ) -> None:
        from compofa.tables import LatencyTable

        self.path = Path(path)
        self.complete = complete
        self.space, self.width = space, width
        self.settings = settings or Settings()
        self.device = device
        from compofa.profiler import ProfileConfig

        self.config, self.listener = config or ProfileConfig(), listener
        self.name = f"device:{device}" if device else f"table:{path}"
        self.stats = SourceStats()
        self.device_id = device_id
        self._memo: dict[bytes, tuple[float, float, float]] = {}
        self._entries: dict[bytes, Entry] = {}  # the same keys: what the table says beyond the median
        self._held: ArchBatch | None = None  # the configurations with an entry
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
            self._held = ArchBatch.from_specs([parse_spec(e.key.spec) for e in entries])
            for key, entry in zip(self._held.keys(), entries):
                self._memo[key] = (entry.median_ms, entry.ci_low_ms, entry.ci_high_ms)
                self._entries[key] = entry

    def latency(self, batch: ArchBatch) -> LatencyEstimates:
        keys = self._answerable(batch)
        unknown = (np.inf, np.inf, np.inf)  # no entry: a latency that fits no target
        values = np.array([self._memo.get(key, unknown) for key in keys], dtype=np.float64).reshape(len(keys), 3)
        return LatencyEstimates(values[:, 0], values[:, 1], values[:, 2])

    def metric(self, batch: ArchBatch, metric: str) -> LatencyEstimates:
        """The entries' p90 or p99 (with their 95% bounds; NaN where a table written before kept none), peak
        memory (MB) or energy per inference (mJ). A configuration without an entry is infinite, as in `latency`;
        an entry without the value is an error that says why (the device's reason, where it gave one)."""
        if metric == "median":
            return self.latency(batch)
        if metric not in _ENTRY_FIELDS:
            raise MetricUnavailableError(f"{self.name} has no {metric!r}; it holds {', '.join(_ENTRY_FIELDS)}")
        value_field, low_field, high_field = _ENTRY_FIELDS[metric]
        rows, lacking = [], []
        for key in self._answerable(batch, count=False):
            entry = self._entries.get(key)
            if entry is None:
                rows.append((np.inf, np.inf, np.inf))
                continue
            value = getattr(entry, value_field)
            if value is None:
                lacking.append(entry)
                continue
            low, high = (getattr(entry, name) if name else value for name in (low_field, high_field))
            rows.append((value, np.nan if low is None else low, np.nan if high is None else high))
        if lacking:
            first = lacking[0]
            default = ("written before compofa read it: profile them again" if metric in (MEMORY, ENERGY) else
                       "written before compofa kept the tail: profile them again")
            reason = first.absent.get(metric, default)
            raise MetricUnavailableError(
                f"{self.name} has no {DESCRIBED[metric]} in {len(lacking)} of the entries asked for ({first.key.spec} "
                f"on {first.device}): {reason}", reason)
        values = np.array(rows, dtype=np.float64).reshape(len(rows), 3)
        return LatencyEstimates(values[:, 0], values[:, 1], values[:, 2])

    def _answerable(self, batch: ArchBatch, count: bool = True) -> list[bytes]:
        """The rows' memo keys, once the device (if any) measured those the table lacks; refuses a miss if
        `complete`. `count` tallies the lookups in `stats`."""
        keys = batch.key_list()
        missing = [row for row, key in enumerate(keys) if key not in self._memo]
        if count:
            self.stats.hits += len(keys) - len(missing)
        if missing and self.device is None and self.complete:
            spec = batch.spec(missing[0])
            raise LatencySourceError(
                f"table {self.path} has no entry for {spec} ({len(missing)} subnets missing); profile them with "
                f"`compofa profile --space {self.space} --resolution {spec.resolution} --table {self.path}`, "
                "or search with device:NAME latency to measure on demand", option="latency",
            )
        if missing and self.device is not None:
            self._measure(batch.take(np.array(missing)))
        return keys

    def coverage(self, resolutions: Sequence[int]) -> Coverage | None:
        """What the table holds at `resolutions` (None with a device: it measures what the table lacks).

        Refuses resolutions without a single entry, and, if `complete`, a table lacking any configuration.
        """
        if self.device is not None:
            return None
        held = self._held
        assert held is not None, "a table source without entries is refused when made"
        at = np.isin(held.resolution, np.asarray(resolutions, dtype=held.resolution.dtype))
        have = {int(r): int(n) for r, n in zip(*np.unique(held.resolution[at], return_counts=True))}
        absent = sorted({int(r) for r in resolutions} - set(have))
        if absent:
            holds = describe_range(sorted({int(r) for r in held.resolution}))
            raise LatencySourceError(
                f"table {self.path} has no {self.space} entries at {describe_range(absent)} px (it holds "
                f"{holds} px): search the resolutions it holds, or profile the others with `compofa profile "
                f"--space {self.space} --resolution {','.join(map(str, absent))} --table {self.path}`",
                option="resolution",
            )
        size = get_space(self.space).cardinality
        coverage = Coverage(held.take(np.flatnonzero(at)), {r: (n, size) for r, n in sorted(have.items())})
        if self.complete and coverage.missing:
            lacking = coverage.missing_by_resolution()
            raise LatencySourceError(
                f"table {self.path} lacks {count_text(coverage.missing)} {self.space} configurations (it holds "
                f"{coverage.describe()}); profile them with `compofa profile --space {self.space} --resolution "
                f"{','.join(map(str, lacking))} --table {self.path}`, or search over the measured ones only",
                option="complete",
            )
        return coverage

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
    complete: bool = True,
) -> LatencySource:
    """Parse the CLI form: ``table:PATH``, ``device:NAME``, ``lut:note10``, ``lut:PATH`` or ``flops``.

    `table` is where ``device:NAME`` memoizes; `config` and `listener` drive its profiling. Without
    `complete`, ``table:PATH`` answers for the configurations it holds (see `TableLatency`).
    """
    kind, _, rest = text.partition(":")
    if kind == "flops" and not rest:
        return FlopsLatency(space, width)
    if kind == "lut" and rest:
        return LutLatency(rest, space, width)
    if kind == "table" and rest:
        return TableLatency(rest, space, width, settings, device_id=device_id, complete=complete)
    if kind == "device" and rest:
        from compofa.remote.names import check_available

        check_available(rest)
        return TableLatency(table or "latency.db", space, width, settings, device=rest, device_id=device_id,
                            config=config, listener=listener)
    raise LatencySourceError(
        f"unknown latency source {text!r}; use table:PATH, device:NAME, lut:note10, lut:PATH or flops"
    )

