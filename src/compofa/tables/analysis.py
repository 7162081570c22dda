"""What a table says as a whole: its noise floor, latency buckets, and a summary.

Two subnets whose latencies differ by less than the width of their confidence
intervals cannot be told apart on this device; the paper (section 3.2) makes
the same point about latency granularity finer than the hardware's noise. So
the noise floor is the typical CI width, and bucketing groups subnets into
latency buckets no finer than it, listing which subnets are indistinguishable.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compofa.tables.store import Entry

#: Bucket widths offered as "nice" round numbers (ms).
NICE_WIDTHS = (0.01, 0.02, 0.05, 0.1, 0.2, 0.25, 0.5, 1.0, 2.0, 2.5, 5.0, 10.0, 20.0, 50.0)


@dataclass(frozen=True)
class NoiseFloor:
    """The smallest latency difference this table resolves."""

    ci_width_ms: float  # median full CI width
    relative: float  # median CI width / median latency
    recommended_bucket_ms: float
    entries: int


def noise_floor(entries: Sequence[Entry]) -> NoiseFloor:
    if not entries:
        raise ValueError("no entries")
    widths = np.array([e.ci_high_ms - e.ci_low_ms for e in entries])
    relative = np.array([(e.ci_high_ms - e.ci_low_ms) / e.median_ms for e in entries if e.median_ms > 0])
    width = float(np.median(widths))
    relative_width = float(np.median(relative)) if relative.size else math.inf
    return NoiseFloor(width, relative_width, nice_ceiling(width), len(entries))


def nice_ceiling(value: float) -> float:
    """The smallest of `NICE_WIDTHS` at least `value` (or `value` beyond them)."""
    for width in NICE_WIDTHS:
        if width >= value:
            return width
    return value


@dataclass(frozen=True)
class Bucket:
    low_ms: float
    high_ms: float
    entries: tuple[Entry, ...]


def buckets(entries: Sequence[Entry], width_ms: float) -> list[Bucket]:
    """Group entries by median latency into [k*w, (k+1)*w) buckets (empty ones left out)."""
    if width_ms <= 0:
        raise ValueError(f"bucket width must be positive, got {width_ms}")
    grouped: dict[int, list[Entry]] = {}
    for entry in entries:
        grouped.setdefault(math.floor(entry.median_ms / width_ms), []).append(entry)
    return [
        Bucket(index * width_ms, (index + 1) * width_ms, tuple(sorted(group, key=lambda e: e.median_ms)))
        for index, group in sorted(grouped.items())
    ]


def indistinguishable(entries: Sequence[Entry]) -> list[tuple[Entry, ...]]:
    """Groups of two or more entries chained by overlapping confidence intervals."""
    ordered = sorted(entries, key=lambda e: e.median_ms)
    groups: list[list[Entry]] = []
    reach = -math.inf
    for entry in ordered:
        if groups and entry.ci_low_ms <= reach:
            groups[-1].append(entry)
        else:
            groups.append([entry])
            reach = -math.inf
        reach = max(reach, entry.ci_high_ms)
    return [tuple(group) for group in groups if len(group) > 1]
