"""What a subnet must meet beyond one median: a tail percentile, peak memory, energy, on every source at once.

A search holds one or more latency sources. Each joint target gives every
source a `Target` (on its median, p90 or p99); `--max-memory` and
`--max-energy` add `Limit`s on the peak memory (MB) and energy per inference
(mJ) the sources measured. Resolved against the candidates' ranges, they become
`Bound`s, and a subnet is feasible when it meets every bound. A source that
cannot give a quantity a bound asks for (a lookup table has no p99, a device
without an energy counter has no energy) is an error that says why: a limit is
never passed because its quantity is missing.
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

import numpy as np

from compofa.search.arrays import ArchBatch
from compofa.search.latency import LatencyEstimates, LatencySource, MetricUnavailableError
from compofa.search.metrics import DESCRIBED, ENERGY, LATENCY_METRICS, MEMORY
from compofa.search.targets import FitRule, TargetError

#: The unit each quantity other than latency is held in.
BASE_UNIT = {MEMORY: "MB", ENERGY: "mJ"}
#: Accepted units, in the base unit. MB is 1e6 bytes (what `--max-memory 300MB` reads); the binary units are exact.
UNITS: dict[str, dict[str, float]] = {
    MEMORY: {"B": 1e-6, "KB": 1e-3, "kB": 1e-3, "MB": 1.0, "GB": 1e3, "KiB": 1024 / 1e6, "MiB": 2**20 / 1e6,
             "GiB": 2**30 / 1e6},
    ENERGY: {"uJ": 1e-3, "µJ": 1e-3, "mJ": 1.0, "J": 1e3},
}
_QUANTITY = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*([A-Za-zµ]+)\s*$")


@runtime_checkable
class MetricSource(Protocol):
    """A latency source that answers for more than the median: p90, p99, memory, energy."""

    name: str

    def metric(self, batch: ArchBatch, metric: str) -> LatencyEstimates:
        """`metric` of each row with its 95% bounds (NaN where the source has no interval); raises
        `MetricUnavailableError` naming why where the source has no value."""
        ...


def quantity(source: LatencySource, batch: ArchBatch, metric: str) -> LatencyEstimates:
    """`metric` ("median", "p90", "p99", "memory" or "energy") of every row of `batch` on `source`."""
    if metric == "median":
        return source.latency(batch)
    if isinstance(source, MetricSource):
        return source.metric(batch, metric)
    raise MetricUnavailableError(f"{source.name} has no {DESCRIBED.get(metric, metric)}: it gives one latency per "
                                 f"subnet ({source.describe()})")


@dataclass(frozen=True)
class Limit:
    """An upper limit on peak memory (MB) or energy per inference (mJ), on one source or (`source` None) every one."""

    metric: str
    value: float
    source: int | None = None
    given: str = ""

    def __post_init__(self) -> None:
        if self.metric not in BASE_UNIT:
            raise TargetError(f"limits hold {' or '.join(BASE_UNIT)}, not {self.metric!r}")
        if not (math.isfinite(self.value) and self.value > 0):
            raise TargetError(f"a {DESCRIBED[self.metric]} limit must be positive, got {self.given or self.value}",
                              option=_OPTION[self.metric])


_OPTION = {MEMORY: "max_memory", ENERGY: "max_energy"}


def parse_quantity(text: str, metric: str) -> float:
    """``"300MB"`` -> 300.0, ``"1GiB"`` -> 1073.741824 (MB); ``"5mJ"`` -> 5.0 (mJ). A unit is required."""
    units = UNITS[metric]
    match = _QUANTITY.match(text)
    if not match or match.group(2) not in units:
        accepted = ", ".join(unit for unit in units if unit != "kB")
        raise TargetError(f"cannot read the {DESCRIBED[metric]} limit {text!r}: give a number and one of the units "
                          f"{accepted} (300MB, 5mJ)", option=_OPTION[metric])
    return float(match.group(1)) * units[match.group(2)]


def parse_limits(text: str | None, metric: str, sources: int) -> tuple[Limit, ...]:
    """``"300MB"`` (every source), or one value per source in their order, ``-`` for none (``"300MB,-"``)."""
    if text is None:
        return ()
    items = [item.strip() for item in text.split(",")]
    if len(items) not in (1, sources):
        raise TargetError(f"a {DESCRIBED[metric]} limit is one value for every source or one per source ({sources}), "
                          f"got {len(items)} in {text!r}", option=_OPTION[metric])
    if len(items) == 1:
        return (Limit(metric, parse_quantity(items[0], metric), None, items[0]),)
    return tuple(Limit(metric, parse_quantity(item, metric), index, item)
                 for index, item in enumerate(items) if item != "-")


@dataclass(frozen=True)
class Bound:
    """One absolute limit a subnet must meet: source `source`'s `metric` at most `limit` (its unit)."""

    source: int
    metric: str
    limit: float
    given: str

    @property
    def latency(self) -> bool:
        return self.metric in LATENCY_METRICS

    def compared(self, values: LatencyEstimates, rule: FitRule, name: str) -> np.ndarray:
        """The value held against the limit: a latency as `rule` says (median or upper bound); memory and energy
        as measured."""
        if not self.latency:
            return values.median
        compared = rule.compared(values)
        if np.isnan(compared).any():
            raise MetricUnavailableError(
                f"{name} has no 95% interval of the {self.metric} in {int(np.isnan(compared).sum())} entries (written "
                f"before compofa kept one): profile them again, or hold the {self.metric} itself, not its upper bound")
        return compared

    def fits_values(self, compared: np.ndarray, rule: FitRule) -> np.ndarray:
        return rule.fits_values(compared, self.limit) if self.latency else compared <= self.limit

    def describe(self, name: str, unit: str) -> str:
        """``table:a.db p90 <= 20 ms``."""
        what = "" if self.metric == "median" else f" {self.metric}"
        shown = unit if self.latency else BASE_UNIT[self.metric]
        return f"{name}{what} <= {self.limit:.4g} {shown}"


class Quantities:
    """The quantities of one batch on the search's sources, each asked of its source once."""

    def __init__(self, sources: Sequence[LatencySource], batch: ArchBatch) -> None:
        self.sources, self.batch = sources, batch
        self._values: dict[tuple[int, str], LatencyEstimates] = {}

    def remember(self, source: int, metric: str, values: LatencyEstimates) -> None:
        """Take `values` as the batch's `metric` on `source` (asked already)."""
        self._values[(source, metric)] = values

    def get(self, source: int, metric: str) -> LatencyEstimates:
        key = (source, metric)
        if key not in self._values:
            self._values[key] = quantity(self.sources[source], self.batch, metric)
        return self._values[key]

    def compared(self, bound: Bound, rule: FitRule) -> np.ndarray:
        return bound.compared(self.get(bound.source, bound.metric), rule, self.sources[bound.source].name)

    def fits(self, bounds: Sequence[Bound], rule: FitRule) -> np.ndarray:
        """Rows that meet every bound."""
        fits = np.ones(len(self.batch), dtype=bool)
        for bound in bounds:
            fits &= bound.fits_values(self.compared(bound, rule), rule)
        return fits

    def load(self, bounds: Sequence[Bound], rule: FitRule) -> np.ndarray:
        """The largest share of its limit any bound is at: at most 1 exactly where a row meets every bound.

        A bucket rule lets a value a little over its limit fit; such a row's load is 1, while a row that misses
        a bound is over its limit, so its load is above 1.
        """
        load = np.zeros(len(self.batch))
        for bound in bounds:
            load = np.maximum(load, self.compared(bound, rule) / bound.limit)
        return np.where(self.fits(bounds, rule), np.minimum(load, 1.0), load)
