"""The paper's design-space views, for any latency estimator (a LUT).

- Figure 2: accuracy and latency of OFA subnets with the same depth and expand
  ratio in every stage (kernel 5), on a depth x expand grid; CompOFA keeps the
  diagonal.
- Figures 4 and 5: random subnets of OFA and of CompOFA grouped in latency
  buckets; per bucket the distribution (CDF) and the mean of their accuracy.
  A better space has more of its population at high accuracy, which is a
  different claim from having the best single subnet.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.evolution import sample_batch
from compofa.space import SubnetSpec, get_space
from compofa.tables.analysis import nice_ceiling

#: Figure 2's fixed kernel size.
GRID_KERNEL = 5
#: A bucket is drawn only with at least this many subnets of each space.
MIN_BUCKET_SAMPLES = 5
#: Random OFA subnets drawn per batch, and at most this many batches, while filling the buckets.
_DRAW_BATCH = 8192
_MAX_DRAWS = 40


@dataclass(frozen=True)
class Grid:
    """Figure 2: one value per (uniform depth, uniform expand ratio)."""

    series: str
    space: str
    resolution: int
    depths: tuple[int, ...]
    expands: tuple[int, ...]
    accuracy: np.ndarray  # [depth, expand]
    latency: np.ndarray
    coupled: tuple[tuple[int, int], ...]  # (depth, expand) pairs the CompOFA space keeps

    def summary(self) -> dict[str, object]:
        return {"series": self.series, "space": self.space, "resolution": self.resolution, "kernel": GRID_KERNEL,
                "depths": list(self.depths), "expands": list(self.expands),
                "accuracy": self.accuracy.tolist(), "latency_ms": self.latency.tolist(),
                "coupled": [list(pair) for pair in self.coupled]}


def uniform_grid(series: LutSeries, space: str, ofa_space: str, scorer: Scorer) -> Grid:
    """Figure 2 at the largest resolution the LUT covers (224 for Note10)."""
    design = get_space(ofa_space)
    stage = design.stages[0]
    depths, expands = stage.depths, stage.expand_ratios
    resolution = max(series.resolutions(ofa_space))
    specs = []
    for depth in depths:
        for expand in expands:
            blocks = depth * len(design.stages)
            specs.append(SubnetSpec(ofa_space, resolution, (depth,) * len(design.stages), (GRID_KERNEL,) * blocks,
                                    (expand,) * blocks))
    batch = ArchBatch.from_specs(specs)
    shape = (len(depths), len(expands))
    coupled_stage = get_space(space).stages[0]
    coupled = tuple((d, e) for d in depths for e in expands
                    if coupled_stage.coupled and e == max(coupled_stage.expand_options(d)))
    return Grid(series.label, ofa_space, resolution, depths, expands, scorer.accuracy(batch).reshape(shape),
                series.latency(batch).reshape(shape), coupled)


@dataclass(frozen=True)
class BucketSample:
    """Random subnets of one space in one latency bucket, with their accuracy."""

    low_ms: float
    high_ms: float
    accuracy: np.ndarray

    @property
    def mean(self) -> float:
        return float(self.accuracy.mean())

    @property
    def ci95(self) -> float:
        """Half-width of the normal 95% interval of the mean."""
        n = len(self.accuracy)
        return float(1.96 * self.accuracy.std(ddof=1) / math.sqrt(n)) if n > 1 else float("nan")


@dataclass(frozen=True)
class Buckets:
    """Figures 4 and 5: per bucket, the same number of random subnets of CompOFA and of OFA (where both have them)."""

    series: str
    width_ms: float
    per_bucket: int
    spaces: tuple[str, str]
    rows: tuple[tuple[BucketSample, BucketSample], ...]
    left_out: tuple[tuple[float, int, int], ...]  # buckets with too few subnets: low ms, counts of each space

    def summary(self) -> dict[str, object]:
        rows = []
        for coupled, free in self.rows:
            rows.append({"low_ms": coupled.low_ms, "high_ms": coupled.high_ms, "n": [len(coupled.accuracy),
                         len(free.accuracy)], "mean": [coupled.mean, free.mean], "ci95": [coupled.ci95, free.ci95],
                         "median": [float(np.median(coupled.accuracy)), float(np.median(free.accuracy))]})
        higher = sum(1 for coupled, free in self.rows if coupled.mean > free.mean)
        return {"series": self.series, "bucket_ms": self.width_ms, "per_bucket": self.per_bucket,
                "spaces": list(self.spaces), "buckets": rows, "compofa_mean_higher": higher,
                "left_out": [{"low_ms": low, "n": [a, b]} for low, a, b in self.left_out]}


def default_bucket_ms(latency: np.ndarray) -> float:
    """About twelve buckets over the range, at a round width (5 ms on the Note10, as in the paper)."""
    return nice_ceiling(float(latency.max() - latency.min()) / 12)


def bucket_samples(
    series: LutSeries, space: str, ofa_space: str, scorer: Scorer, width_ms: float | None, per_bucket: int,
    rng: np.random.Generator,
) -> tuple[Buckets, ArchBatch | None]:
    """Up to `per_bucket` random subnets of each space per bucket of CompOFA's latency range.

    CompOFA's subnets are drawn without replacement from all of them at the
    search resolutions; OFA's as OFA's own sampler draws them (each depth
    equally likely), until every bucket has enough or `_MAX_DRAWS` batches
    were drawn. Also returns the OFA subnets drawn (the Pareto plot's cloud).
    """
    resolutions = tuple(r for r in get_space(space).search_resolutions if r in series.resolutions(space))
    coupled = enumerate_batch(space, resolutions)
    coupled_latency = series.latency(coupled)
    width = width_ms or default_bucket_ms(coupled_latency)
    coupled_bucket = np.floor(coupled_latency / width).astype(np.int64)
    indices = np.unique(coupled_bucket)
    picked_coupled = {int(b): _pick(np.flatnonzero(coupled_bucket == b), per_bucket, rng) for b in indices}
    picked_free: dict[int, list[ArchBatch]] = {int(b): [] for b in indices}
    counts = dict.fromkeys(picked_free, 0)
    for _ in range(_MAX_DRAWS):
        draw = sample_batch(ofa_space, _DRAW_BATCH, rng, resolutions, uniform_depth=True)
        bucket = np.floor(series.latency(draw) / width).astype(np.int64)
        for b in picked_free:
            need = per_bucket - counts[b]
            in_bucket = np.flatnonzero(bucket == b)[:need]
            if need > 0 and len(in_bucket):
                picked_free[b].append(draw.take(in_bucket))
                counts[b] += len(in_bucket)
        if all(count >= per_bucket for count in counts.values()):
            break
    rows: list[tuple[BucketSample, BucketSample]] = []
    left_out: list[tuple[float, int, int]] = []
    drawn: list[ArchBatch] = []
    for b in picked_free:
        low, high = b * width, (b + 1) * width
        free = ArchBatch.concatenate(picked_free[b]) if picked_free[b] else None
        n_coupled, n_free = len(picked_coupled[b]), len(free) if free is not None else 0
        if free is not None:
            drawn.append(free)
        if free is None or n_coupled < MIN_BUCKET_SAMPLES or n_free < MIN_BUCKET_SAMPLES:
            left_out.append((low, n_coupled, n_free))
            continue
        rows.append((BucketSample(low, high, scorer.accuracy(coupled.take(picked_coupled[b]))),
                     BucketSample(low, high, scorer.accuracy(free))))
    samples = ArchBatch.concatenate(drawn) if drawn else None
    return Buckets(series.label, width, per_bucket, (space, ofa_space), tuple(rows), tuple(left_out)), samples


def _pick(rows: np.ndarray, count: int, rng: np.random.Generator) -> np.ndarray:
    return rows if len(rows) <= count else np.sort(rng.choice(rows, count, replace=False))
