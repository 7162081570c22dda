"""Statistics of latency samples.

Latency samples are skewed to the right (interruptions only ever add time), so
the median is the estimate and its confidence interval comes from order
statistics (distribution-free), not from a normal approximation of the mean.
Stability checks follow the tools of the field: torch.utils.benchmark warns at
IQR/median >= 10%, trtexec flags a coefficient of variation above 1% on GPUs.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

#: torch.utils.benchmark's threshold for an unstable measurement.
UNSTABLE_IQR_RATIO = 0.10
#: Two-sided 95% normal quantile.
Z95 = 1.959963984540054


def median_confidence_interval(sorted_samples: np.ndarray) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the median from order statistics.

    The number of samples below the true median is Binomial(n, 1/2); the
    interval runs between the order statistics of ranks n/2 -+ 1.96 sqrt(n)/2
    (1-based, rounded outwards; n = 100 gives ranks 40 and 61, the textbook
    values). Below 6 samples it is the whole range.
    """
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("no samples")
    if n < 6:
        return float(sorted_samples[0]), float(sorted_samples[-1])
    half = Z95 * math.sqrt(n) / 2
    low = max(0, math.floor(n / 2 - half) - 1)
    high = min(n - 1, math.ceil(n / 2 + half))
    return float(sorted_samples[low]), float(sorted_samples[high])


def quantile_confidence_interval(sorted_samples: np.ndarray, quantile: float) -> tuple[float, float]:
    """Distribution-free 95% confidence interval of the `quantile` (0.9 for p90) from order statistics.

    The number of samples below the true quantile is Binomial(n, q), so the
    interval runs between the order statistics of ranks n q -+ 1.96 sqrt(n q (1 - q))
    (1-based, rounded outwards), as for the median. A tail quantile needs many
    samples: when the upper rank lies beyond the largest sample (p99 of fewer
    than about 400 samples), the samples cannot bound it from above and the
    upper end is infinite, never the largest sample passed off as a bound.
    """
    n = len(sorted_samples)
    if n == 0:
        raise ValueError("no samples")
    if not 0 < quantile < 1:
        raise ValueError(f"quantile must be in (0, 1), got {quantile}")
    centre, half = n * quantile, Z95 * math.sqrt(n * quantile * (1 - quantile))
    low_rank, high_rank = math.floor(centre - half), math.ceil(centre + half) + 1
    low = float(sorted_samples[max(0, low_rank - 1)])
    high = float(sorted_samples[high_rank - 1]) if high_rank <= n else math.inf
    return low, high


@dataclass(frozen=True)
class Summary:
    """Derived statistics of one set of samples (milliseconds)."""

    n: int
    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    mad_ms: float
    min_ms: float
    max_ms: float
    ci_low_ms: float
    ci_high_ms: float
    #: The tail, with its own order-statistic intervals (`quantile_confidence_interval`: p99's upper end is
    #: infinite until there are enough samples to bound it).
    p99_ms: float
    p90_ci_low_ms: float
    p90_ci_high_ms: float
    p99_ci_low_ms: float
    p99_ci_high_ms: float

    @property
    def ci_half_width_ms(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2

    @property
    def relative_ci(self) -> float:
        """CI half-width as a fraction of the median."""
        return self.ci_half_width_ms / self.median_ms if self.median_ms > 0 else math.inf

    @property
    def cv(self) -> float:
        return self.std_ms / self.mean_ms if self.mean_ms > 0 else math.inf

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def summarize(samples: Sequence[float] | np.ndarray) -> Summary:
    """Statistics of `samples`; the CI is that of the median within these samples."""
    values = np.sort(np.asarray(samples, dtype=np.float64))
    if values.size == 0:
        raise ValueError("cannot summarize zero samples")
    p10, q1, median, q3, p90, p99 = np.percentile(values, [10, 25, 50, 75, 90, 99])
    low, high = median_confidence_interval(values)
    p90_low, p90_high = quantile_confidence_interval(values, 0.90)
    p99_low, p99_high = quantile_confidence_interval(values, 0.99)
    return Summary(
        n=int(values.size),
        median_ms=float(median),
        mean_ms=float(values.mean()),
        std_ms=float(values.std(ddof=1)) if values.size > 1 else 0.0,
        p10_ms=float(p10),
        p90_ms=float(p90),
        iqr_ms=float(q3 - q1),
        mad_ms=float(np.median(np.abs(values - median))),
        min_ms=float(values[0]),
        max_ms=float(values[-1]),
        ci_low_ms=low,
        ci_high_ms=high,
        p99_ms=float(p99),
        p90_ci_low_ms=p90_low,
        p90_ci_high_ms=p90_high,
        p99_ci_low_ms=p99_low,
        p99_ci_high_ms=p99_high,
    )


def stability_warnings(summary: Summary) -> list[str]:
    """Why a measurement may not be trustworthy, as data (the CLI decides how to show it)."""
    warnings = []
    if summary.median_ms > 0 and summary.iqr_ms / summary.median_ms >= UNSTABLE_IQR_RATIO:
        warnings.append(f"IQR is {summary.iqr_ms / summary.median_ms:.0%} of the median (>= 10%)")
    if summary.n < 10:
        warnings.append(f"only {summary.n} samples")
    return warnings
