"""Exhaustive search of an enumerable space: the exact Pareto front and the best subnet per target."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compofa.search.arrays import ArchBatch
from compofa.search.latency import LatencyEstimates
from compofa.search.targets import FitRule, infeasible


@dataclass(frozen=True)
class Scored:
    """A batch with each row's accuracy and latency."""

    batch: ArchBatch
    accuracy: np.ndarray
    latency: LatencyEstimates


def pareto_front(accuracy: np.ndarray, latency: np.ndarray) -> np.ndarray:
    """Rows no other row beats (faster or equal and more accurate), sorted by latency."""
    order = np.lexsort((-accuracy, latency))  # by latency, then most accurate first
    best = -np.inf
    front = []
    for row in order:
        if accuracy[row] > best:
            front.append(row)
            best = accuracy[row]
    return np.array(front, dtype=np.intp)


def best_per_target(scored: Scored, target: float, rule: FitRule, unit: str) -> int:
    """The most accurate row that fits `target` (ties: the faster one)."""
    fits = rule.fits(scored.latency, target)
    if not fits.any():
        raise infeasible(target, float(scored.latency.median.min()), float(scored.latency.median.max()), unit,
                         rule.describe())
    candidates = np.flatnonzero(fits)
    order = np.lexsort((scored.latency.median[candidates], -scored.accuracy[candidates]))
    return int(candidates[order[0]])
