"""How far to trust a measured table: the width of its confidence intervals, unstable entries, drift.

The drift of a round is the reference subnet's speed during it relative to its
baseline: the machine getting slower or faster under the measurement. Entries
are corrected for it; a round in which it moved too much was discarded (kept
on record) and measured again.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compofa.report.series import TableSeries
from compofa.tables import LatencyTable
from compofa.tables.analysis import noise_floor

#: Unstable entries listed by name, widest interval first.
LISTED_UNSTABLE = 10


@dataclass(frozen=True)
class NoiseReport:
    series: str
    relative_ci: np.ndarray  # CI half-width / median, per entry
    ci_width_ms: float  # median full CI width: the table's noise floor
    recommended_bucket_ms: float
    unstable: tuple[tuple[str, float, float, tuple[str, ...]], ...]  # spec, median ms, relative CI, warnings
    unstable_count: int
    warned: int
    seconds: np.ndarray  # each round's time since the first round
    drift: np.ndarray
    discarded: np.ndarray

    def summary(self) -> dict[str, object]:
        ci = self.relative_ci
        return {
            "series": self.series, "entries": int(len(ci)),
            "relative_ci_half_width": {"median": float(np.median(ci)), "p90": float(np.percentile(ci, 90)),
                                       "max": float(ci.max())},
            "noise_floor_ms": self.ci_width_ms, "recommended_bucket_ms": self.recommended_bucket_ms,
            "unstable": self.unstable_count,
            "unstable_listed": [{"spec": s, "median_ms": m, "relative_ci": c, "warnings": list(w)}
                                for s, m, c, w in self.unstable],
            "entries_with_warnings": self.warned,
            "rounds": int(len(self.drift)), "rounds_discarded": int(self.discarded.sum()),
            "drift": ({"min": float(self.drift.min()), "max": float(self.drift.max()),
                       "seconds": float(self.seconds.max()), "hours": float(self.seconds.max()) / 3600}
                      if len(self.drift) else None),
        }


def noise_report(series: TableSeries) -> NoiseReport:
    entries = series.entries
    floor = noise_floor(entries)
    relative = np.array([e.relative_ci for e in entries])
    unstable = sorted((e for e in entries if not e.stable), key=lambda e: -e.relative_ci)
    with LatencyTable.open(series.path) as table:
        rounds = table.round_drifts(series.device_id, series.batch, series.precision)
    times = np.array([r[0] for r in rounds])
    return NoiseReport(
        series=series.label, relative_ci=relative, ci_width_ms=floor.ci_width_ms,
        recommended_bucket_ms=floor.recommended_bucket_ms,
        unstable=tuple((e.key.spec, e.median_ms, e.relative_ci, e.warnings) for e in unstable[:LISTED_UNSTABLE]),
        unstable_count=len(unstable), warned=sum(1 for e in entries if e.warnings),
        seconds=times - times.min() if len(times) else times,
        drift=np.array([r[1] for r in rounds]), discarded=np.array([r[2] for r in rounds], dtype=bool),
    )
