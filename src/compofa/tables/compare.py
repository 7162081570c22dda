"""Comparing two latency tables: does the ranking hold, how far apart are they?

Used to check reproducibility (two runs on one machine) and to decide whether
a new device needs its own profile (two devices). Differences are given raw
and with the global drift between the tables divided out: each table's
entries are already expressed at its reference subnet's baseline speed, so the
ratio of the two baselines is the global factor when both used the same
reference; otherwise the median ratio of the matched entries stands in.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compofa.tables.store import Entry


def kendall_tau(x: np.ndarray, y: np.ndarray) -> float:
    """Kendall's tau-b (ties counted as in the standard definition), O(n^2) memory in blocks."""
    n = len(x)
    if n < 2:
        return float("nan")
    concordant_minus_discordant = 0.0
    ties_x = ties_y = pairs = 0.0
    block = max(1, 4_000_000 // n)
    for start in range(0, n, block):
        stop = min(n, start + block)
        dx = np.sign(x[start:stop, None] - x[None, :])
        dy = np.sign(y[start:stop, None] - y[None, :])
        rows = np.arange(start, stop)[:, None]
        upper = rows < np.arange(n)[None, :]  # each unordered pair once
        concordant_minus_discordant += float((dx * dy)[upper].sum())
        ties_x += float(((dx == 0) & upper).sum())
        ties_y += float(((dy == 0) & upper).sum())
        pairs += float(upper.sum())
    denominator = np.sqrt((pairs - ties_x) * (pairs - ties_y))
    return float(concordant_minus_discordant / denominator) if denominator > 0 else float("nan")


def spearman_rho(x: np.ndarray, y: np.ndarray) -> float:
    rank_x = np.argsort(np.argsort(x)).astype(float)
    rank_y = np.argsort(np.argsort(y)).astype(float)
    return float(np.corrcoef(rank_x, rank_y)[0, 1])


def ordered_same(x: np.ndarray, y: np.ndarray, apart: float) -> tuple[float, int]:
    """Share of pairs more than `apart` (relative, in x) apart that y orders the same way."""
    agree = total = 0
    n = len(x)
    block = max(1, 4_000_000 // max(n, 1))
    for start in range(0, n, block):
        stop = min(n, start + block)
        ratio = x[start:stop, None] / x[None, :]
        far = (np.abs(ratio - 1) > apart) & (np.arange(start, stop)[:, None] < np.arange(n)[None, :])
        same = np.sign(x[start:stop, None] - x[None, :]) == np.sign(y[start:stop, None] - y[None, :])
        agree += int((same & far).sum())
        total += int(far.sum())
    return (agree / total if total else float("nan")), total


@dataclass(frozen=True)
class Comparison:
    matched: int
    only_a: int
    only_b: int
    kendall_tau: float
    spearman_rho: float
    drift_factor: float
    drift_source: str
    median_abs_rel_diff_raw: float
    median_abs_rel_diff_normalized: float
    p90_abs_rel_diff_normalized: float
    pairs_2pct_same_order: float
    pairs_2pct: int
    worst: tuple[tuple[str, float, float, float], ...]  # spec, a ms, b ms, normalized relative difference


def _identity(entry: Entry) -> tuple[str, str, float, str, int, str]:
    key = entry.key
    return key.kind, key.space, key.width, key.spec, key.batch, key.precision


def compare_entries(
    a: Sequence[Entry],
    b: Sequence[Entry],
    baselines: tuple[float, float] | None = None,
    worst: int = 5,
) -> Comparison:
    """Compare entries matched by space, width, spec, batch and precision.

    `baselines` are the two tables' reference baselines (same reference
    subnet); without them the global drift is the median ratio b/a.
    """
    index_b = {_identity(e): e for e in b}
    pairs = [(e, index_b[_identity(e)]) for e in a if _identity(e) in index_b]
    if len(pairs) < 2:
        raise ValueError(f"the tables share {len(pairs)} entries; at least 2 are needed to compare")
    x = np.array([pa.median_ms for pa, _ in pairs])
    y = np.array([pb.median_ms for _, pb in pairs])
    if baselines is not None:
        factor, source = baselines[1] / baselines[0], "reference baselines"
    else:
        factor, source = float(np.median(y / x)), "median ratio"
    raw = y / x - 1
    normalized = y / factor / x - 1
    share, count = ordered_same(x, y, 0.02)
    order = np.argsort(-np.abs(normalized))[:worst]
    return Comparison(
        matched=len(pairs),
        only_a=len(a) - len(pairs),
        only_b=len(b) - len(pairs),
        kendall_tau=kendall_tau(x, y),
        spearman_rho=spearman_rho(x, y),
        drift_factor=float(factor),
        drift_source=source,
        median_abs_rel_diff_raw=float(np.median(np.abs(raw))),
        median_abs_rel_diff_normalized=float(np.median(np.abs(normalized))),
        p90_abs_rel_diff_normalized=float(np.percentile(np.abs(normalized), 90)),
        pairs_2pct_same_order=share,
        pairs_2pct=count,
        worst=tuple((pairs[i][0].key.spec, float(x[i]), float(y[i]), float(normalized[i])) for i in order),
    )
