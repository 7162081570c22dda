"""Does a new device need its own profile? Rank agreement between latency sources.

Search only needs the order of subnets by latency to carry over: if two
devices rank the CompOFA subnets alike (Kendall tau near 1), a table from one
picks nearly the same subnets as the other's; where they do not, profile the
new device. Every pair of sources is compared on the subnets both answer for.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from itertools import combinations

import numpy as np

from compofa.report.series import LutSeries, TableSeries, specs_batch
from compofa.search.arrays import enumerate_batch
from compofa.space import parse_spec
from compofa.tables.compare import kendall_tau, spearman_rho

#: More pairs than this and only the first source is scattered against each other one.
MAX_SCATTERS = 6


@dataclass(frozen=True)
class Scatter:
    """The latency of the subnets two sources share: source `a` on x, source `b` on y.

    Attributes:
        specs: the shared subnets, in the order of the arrays.
        x, y: median latency (ms) on `a` and on `b`.
        x_low, x_high, y_low, y_high: the bounds (ms) of each median's confidence interval on `a` and on `b`
            as the table stored it (`Entry.ci_low_ms`, `Entry.ci_high_ms`); nan for a LUT's estimate, which has
            no measured interval.
        kendall_tau: rank correlation of x and y.
    """

    a: str
    b: str
    specs: tuple[str, ...]
    x: np.ndarray
    y: np.ndarray
    x_low: np.ndarray
    x_high: np.ndarray
    y_low: np.ndarray
    y_high: np.ndarray
    kendall_tau: float

    @property
    def ratio(self) -> float:
        """Median latency ratio b / a: how much faster or slower the whole family runs on b."""
        return float(np.median(self.y / self.x))


@dataclass(frozen=True)
class CrossDevice:
    labels: tuple[str, ...]
    kendall: np.ndarray  # [a, b]; nan where fewer than 3 subnets are shared
    spearman: np.ndarray
    shared: np.ndarray  # subnets both answer for
    scatters: tuple[Scatter, ...]

    def summary(self) -> dict[str, object]:
        def listed(matrix: np.ndarray) -> list[list[float | None]]:
            return [[None if np.isnan(v) else float(v) for v in row] for row in matrix]

        return {"sources": list(self.labels), "kendall_tau": listed(self.kendall),
                "spearman_rho": listed(self.spearman), "shared_subnets": self.shared.astype(int).tolist(),
                "scatters": [{"a": s.a, "b": s.b, "subnets": len(s.x), "kendall_tau": s.kendall_tau,
                              "median_ratio": s.ratio} for s in self.scatters]}


def latencies_by_source(series: Sequence[TableSeries | LutSeries], space: str) -> list[dict[str, float]]:
    """Each source's median latency by subnet: a table's entries of `space`; a LUT's estimate of the subnets the
    tables hold (of every subnet at its largest resolution where no table is given)."""
    tables = [s.latency_by_spec(space) for s in series if isinstance(s, TableSeries)]
    wanted = sorted({spec for table in tables for spec in table})
    result = []
    for source in series:
        if isinstance(source, TableSeries):
            result.append(source.latency_by_spec(space))
            continue
        covered = set(source.resolutions(space))
        if wanted:
            texts = [t for t in wanted if parse_spec(t).resolution in covered]
        else:
            texts = [str(s) for s in enumerate_batch(space, [max(covered)]).specs()]
        values = source.latency(specs_batch(texts)) if texts else np.zeros(0)
        result.append(dict(zip(texts, (float(v) for v in values))))
    return result


def intervals_by_source(series: Sequence[TableSeries | LutSeries], space: str
                        ) -> list[dict[str, tuple[float, float]]]:
    """Each measured source's confidence interval (low, high ms) of the median by subnet; empty for a LUT."""
    return [s.interval_by_spec(space) if isinstance(s, TableSeries) else {} for s in series]


def cross_device(series: Sequence[TableSeries | LutSeries], labels: Sequence[str], space: str) -> CrossDevice:
    """Rank correlation of every pair of `series` over the `space` subnets they share."""
    latencies = latencies_by_source(series, space)
    intervals = intervals_by_source(series, space)
    count = len(series)
    kendall = np.full((count, count), np.nan)
    spearman = np.full((count, count), np.nan)
    shared = np.zeros((count, count))
    pairs: dict[tuple[int, int], list[str]] = {}
    for i, j in combinations(range(count), 2):
        common = sorted(set(latencies[i]) & set(latencies[j]))
        x = np.array([latencies[i][t] for t in common])
        y = np.array([latencies[j][t] for t in common])
        shared[i, j] = shared[j, i] = len(common)
        if len(common) >= 3:
            kendall[i, j] = kendall[j, i] = kendall_tau(x, y)
            spearman[i, j] = spearman[j, i] = spearman_rho(x, y)
            pairs[(i, j)] = common
    for i in range(count):
        kendall[i, i] = spearman[i, i] = 1.0
        shared[i, i] = len(latencies[i])
    chosen = list(pairs) if len(pairs) <= MAX_SCATTERS else [p for p in pairs if p[0] == 0][:MAX_SCATTERS]
    scatters = tuple(_scatter(labels[i], labels[j], pairs[(i, j)], (latencies[i], latencies[j]),
                              (intervals[i], intervals[j]), float(kendall[i, j])) for i, j in chosen)
    return CrossDevice(tuple(labels), kendall, spearman, shared, scatters)


def _scatter(a: str, b: str, specs: list[str], latencies: tuple[dict[str, float], dict[str, float]],
             intervals: tuple[dict[str, tuple[float, float]], dict[str, tuple[float, float]]], tau: float) -> Scatter:
    x = np.array([latencies[0][t] for t in specs])
    y = np.array([latencies[1][t] for t in specs])
    return Scatter(a, b, tuple(specs), x, y, *_bounds(intervals[0], specs), *_bounds(intervals[1], specs), tau)


def _bounds(intervals: dict[str, tuple[float, float]], specs: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """The interval bounds of `specs` (nan where not measured)."""
    unknown = (float("nan"), float("nan"))
    low = np.array([intervals.get(t, unknown)[0] for t in specs], dtype=float)
    high = np.array([intervals.get(t, unknown)[1] for t in specs], dtype=float)
    return low, high
