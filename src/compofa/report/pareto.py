"""Accuracy against latency per latency source: the clouds of subnets and their Pareto fronts.

A measured table gives the subnets it holds (every CompOFA subnet, and OFA
subnets if some were measured); a partial one (a profile with a limit, or one
still running) gives what it has, and says how many subnets of an enumerable
space it lacks at the resolutions it measured. A LUT answers for any subnet,
so CompOFA's front is exact (every subnet at every search resolution) and
OFA's, whose space cannot be enumerated, is the evolutionary search's best
subnet at ten targets spread over CompOFA's latency range, as a user would
find it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries, ReportError, TableSeries, specs_batch
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.evolution import EvolutionConfig
from compofa.search.exhaustive import pareto_front
from compofa.search.results import TargetResult
from compofa.search.run import SearchRequest, search
from compofa.search.targets import InfeasibleTargetError
from compofa.space import get_space

#: Evolution targets per OFA front, evenly spread over CompOFA's latency range.
FRONT_TARGETS = 10


@dataclass(frozen=True)
class Cloud:
    """Subnets of one space with latency (ms) and accuracy; `front` indexes the Pareto front by latency.

    Attributes:
        latency: each subnet's median latency (ms), in the order of `specs`.
        latency_low, latency_high: the bounds (ms) of each median's confidence interval as the table stored it
            (`Entry.ci_low_ms`, `Entry.ci_high_ms`); nan where the latency is an estimate (a LUT's layer sum),
            which has no measured interval.
        accuracy: each subnet's accuracy (percent).
        front: indices into the arrays of the Pareto front's subnets, fastest first.
        show_points: draw the whole cloud (False: a searched front alone, its points are the front).
        missing: subnets of an enumerable space a measured table lacks at the resolutions it holds.
    """

    space: str
    method: str
    latency: np.ndarray
    accuracy: np.ndarray
    specs: tuple[str, ...]
    front: np.ndarray
    latency_low: np.ndarray
    latency_high: np.ndarray
    show_points: bool = True
    missing: int = 0

    @property
    def measured(self) -> bool:
        """Whether the latencies are measured (they have intervals) rather than estimated."""
        return bool(np.isfinite(self.latency_low).any())

    def front_points(self) -> list[dict[str, float | str | None]]:
        return [{"spec": self.specs[i], "latency_ms": float(self.latency[i]), "accuracy": float(self.accuracy[i]),
                 "latency_low_ms": _finite(self.latency_low[i]), "latency_high_ms": _finite(self.latency_high[i])}
                for i in self.front]

    def best_under(self, limit_ms: float) -> float:
        """The highest accuracy among subnets no slower than `limit_ms` (nan if none)."""
        fits = self.latency <= limit_ms
        return float(self.accuracy[fits].max()) if fits.any() else float("nan")


@dataclass(frozen=True)
class ParetoPanel:
    series: str
    clouds: tuple[Cloud, ...]

    def summary(self) -> dict[str, object]:
        clouds = {}
        for cloud in self.clouds:
            clouds[cloud.space] = {
                "method": cloud.method, "subnets": len(cloud.specs), "front": cloud.front_points(),
                "fastest_ms": float(cloud.latency.min()), "slowest_ms": float(cloud.latency.max()),
                "best_accuracy": float(cloud.accuracy.max()), "missing": cloud.missing,
            }
        return {"series": self.series, "spaces": clouds, "gaps": self.gaps()}

    def gaps(self) -> list[dict[str, float]]:
        """At each point of the OFA front: OFA's accuracy and CompOFA's best no slower (when both exist)."""
        if len(self.clouds) < 2:
            return []
        coupled, free = self.clouds[0], self.clouds[1]
        rows = []
        for i in free.front:
            latency = float(free.latency[i])
            rows.append({"latency_ms": latency, "ofa": float(free.accuracy[i]), "compofa": coupled.best_under(latency)})
        return rows


def _finite(value: float) -> float | None:
    return float(value) if np.isfinite(value) else None


def no_interval(count: int) -> np.ndarray:
    """The interval bound of `count` estimated latencies: nan (not measured)."""
    return np.full(count, np.nan)


def _cloud(space: str, method: str, batch: ArchBatch, latency: np.ndarray, accuracy: np.ndarray,
           interval: tuple[np.ndarray, np.ndarray] | None = None, missing: int = 0) -> Cloud:
    low, high = interval if interval is not None else (no_interval(len(latency)), no_interval(len(latency)))
    return Cloud(space, method, latency, accuracy, tuple(str(s) for s in batch.specs()),
                 pareto_front(accuracy, latency), low, high, missing=missing)


def table_pareto(series: TableSeries, spaces: tuple[str, ...], scorer: Scorer) -> ParetoPanel:
    """Every measured subnet of each space in `spaces` the table holds."""
    clouds = []
    for space in spaces:
        entries = series.of_space(space)
        if not entries:
            continue
        batch = specs_batch([e.key.spec for e in entries])
        latency = np.array([e.median_ms for e in entries])
        interval = np.array([e.ci_low_ms for e in entries]), np.array([e.ci_high_ms for e in entries])
        resolutions = sorted({e.key.resolution for e in entries})
        missing = table_missing(space, len(entries), len(resolutions))
        held = f"{len(entries)} of {len(entries) + missing}" if missing else f"{len(entries)}"
        method = f"{held} subnets measured at {', '.join(map(str, resolutions))} px"
        clouds.append(_cloud(space, method, batch, latency, scorer.accuracy(batch), interval, missing))
    return ParetoPanel(series.label, tuple(clouds))


def table_missing(space: str, entries: int, resolutions: int) -> int:
    """Subnets of `space` a table with `entries` at `resolutions` resolutions lacks there (0 for a space too
    large to enumerate, of which a table always holds a sliver)."""
    design = get_space(space)
    return design.cardinality * resolutions - entries if design.enumerable else 0


def exact_cloud(series: LutSeries, space: str, scorer: Scorer) -> Cloud:
    """Every subnet of enumerable `space` at its search resolutions the LUT covers."""
    resolutions = lut_resolutions(series, space)
    batch = enumerate_batch(space, resolutions)
    return _cloud(space, f"all {len(batch)} subnets at {_describe(resolutions)}", batch, series.latency(batch),
                  scorer.accuracy(batch))


def lut_resolutions(series: LutSeries, space: str) -> tuple[int, ...]:
    """The search resolutions of `space` the LUT covers (every one it covers where it has none of those)."""
    covered = series.resolutions(space)
    return tuple(r for r in get_space(space).search_resolutions if r in covered) or covered


def searched_cloud(
    series: LutSeries, ofa_space: str, coupled: Cloud, scorer: Scorer, samples: ArchBatch | None, seed: int,
    generations: int,
) -> Cloud:
    """OFA's front by evolution at `FRONT_TARGETS` targets over `coupled`'s latency range; `samples`
    (random OFA subnets), where given, are drawn as its cloud."""
    return _searched_front(series, ofa_space, lut_resolutions(series, coupled.space), coupled.latency, scorer,
                           samples, seed, generations)


def _searched_front(
    series: LutSeries, ofa_space: str, resolutions: tuple[int, ...], coupled_latency: np.ndarray, scorer: Scorer,
    samples: ArchBatch | None, seed: int, generations: int,
) -> Cloud:
    """OFA's best subnets found by evolution at targets over CompOFA's range (its lowest tenth left out:
    there, almost no random OFA subnet fits, and evolution cannot start)."""
    low, high = float(coupled_latency.min()), float(coupled_latency.max())
    found: list[TargetResult] = []
    for target in np.linspace(low + 0.1 * (high - low), high, FRONT_TARGETS):
        request = SearchRequest(ofa_space, series.width, (float(target),), resolutions, "evolution", seed=seed,
                                evolution=EvolutionConfig(generations=generations, max_rejections=200_000))
        try:
            found.extend(search(request, scorer.source(ofa_space), series.model(ofa_space)).results)
        except InfeasibleTargetError:
            continue
    method = f"evolution ({generations} generations), best at {len(found)} targets"
    if not found:
        raise ReportError(f"evolution found no {ofa_space} subnet within {series.label}'s {low:.3g}-{high:.3g} ms")
    batch = ArchBatch.from_specs([r.spec for r in found])
    latency = np.array([r.latency_ms for r in found])
    accuracy = np.array([r.accuracy for r in found])
    front = pareto_front(accuracy, latency)
    if samples is None or not len(samples):
        return Cloud(ofa_space, method, latency, accuracy, tuple(str(s) for s in batch.specs()), front,
                     no_interval(len(latency)), no_interval(len(latency)), show_points=False)
    # the random samples are drawn as the cloud; the front stays the searched one (its rows come first)
    both = ArchBatch.concatenate([batch, samples])
    latencies = np.concatenate([latency, series.latency(samples)])
    accuracies = np.concatenate([accuracy, scorer.accuracy(samples)])
    return Cloud(ofa_space, method + f"; {len(samples)} random subnets", latencies, accuracies,
                 tuple(str(s) for s in both.specs()), front, no_interval(len(both)), no_interval(len(both)))


def _describe(resolutions: tuple[int, ...]) -> str:
    if len(resolutions) > 3:
        return f"{len(resolutions)} resolutions ({resolutions[0]}-{resolutions[-1]} px)"
    return ", ".join(map(str, resolutions)) + " px"
