"""One search: several latency targets, exhaustive or evolutionary, against any sources.

Over a table that holds only some configurations (`LatencySource.coverage`),
the search answers over what is measured: the exhaustive candidates are the
configurations with an entry (in a space too large to enumerate, every
configuration the table holds), and evolution treats a configuration without
one as missing every target; the report says how many are missing.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from compofa.errors import CompofaError
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.exhaustive import Scored, best_per_target, pareto_front
from compofa.search.latency import Coverage, LatencyEstimates, LatencySource
from compofa.search.predictor import AccuracySource
from compofa.search.results import SearchReport, TargetResult
from compofa.search.targets import FitRule, InfeasibleTargetError, Target, infeasible
from compofa.space import get_space

if TYPE_CHECKING:
    from compofa.search.evolution import EvolutionConfig

STRATEGIES = ("auto", "exhaustive", "evolution")


class SearchError(CompofaError):
    """A search that cannot run as asked."""


@dataclass(frozen=True)
class SearchRequest:
    """What to search for.

    Attributes:
        space: the design space.
        width: the supernet's width multiplier.
        targets: latency limits: numbers in the latency source's unit, or
            `Target`s (which may be relative to the space's latency range).
        resolutions: input resolutions to consider.
        strategy: exhaustive (enumerable spaces only), evolution, or auto
            (exhaustive when the space is enumerable).
        rule: when a subnet fits a target.
        seed: seed of the evolution.
        evolution: evolution settings (defaults: OFA's).
    """

    space: str
    width: float
    targets: tuple[float | Target, ...]
    resolutions: tuple[int, ...]
    strategy: str = "auto"
    rule: FitRule = field(default_factory=FitRule)
    seed: int = 0
    evolution: EvolutionConfig | None = None


def resolve_strategy(request: SearchRequest, held: bool = False) -> str:
    """The strategy to run; `held`: the latency source holds a finite set of configurations (a table),
    which an exhaustive search can score even in a space too large to enumerate."""
    if request.strategy not in STRATEGIES:
        raise SearchError(f"unknown strategy {request.strategy!r}; choose {', '.join(STRATEGIES)}")
    enumerable = get_space(request.space).enumerable or held
    if request.strategy == "auto":
        return "exhaustive" if enumerable else "evolution"
    if request.strategy == "exhaustive" and not enumerable:
        raise SearchError(f"space {request.space!r} is too large to search exhaustively; search it by evolution",
                          option="strategy")
    return request.strategy


def search(request: SearchRequest, accuracy: AccuracySource, latency: LatencySource) -> SearchReport:
    """Run the search of `request` for every target."""
    if not request.targets:
        raise SearchError("no latency targets given")
    start = time.perf_counter()
    coverage = latency.coverage(request.resolutions)  # refuses a table with nothing at a resolution asked
    strategy = resolve_strategy(request, held=coverage is not None)
    asked = [t if isinstance(t, Target) else Target(float(t)) for t in request.targets]
    report = SearchReport(
        space=request.space, width=request.width, latency_source=latency.name, latency_unit=latency.unit,
        accuracy_source=accuracy.name, fit=request.rule.describe(), bucket=request.rule.bucket, results=[],
    )
    if coverage is not None:
        report.measured, report.missing = coverage.measured, coverage.missing
        report.missing_by_resolution = coverage.missing_by_resolution()
    if strategy == "exhaustive":
        _exhaustive(request, asked, accuracy, latency, report, coverage)
    else:
        _evolution(request, asked, accuracy, latency, report, coverage)
    report.results = [replace(result, requested=str(t)) for result, t in zip(report.results, asked)]
    report.seconds = time.perf_counter() - start
    report.latency_stats = {"hits": latency.stats.hits, "misses": latency.stats.misses,
                            "measure_seconds": latency.stats.measure_seconds}
    return report


def _exhaustive(
    request: SearchRequest, asked: list[Target], accuracy: AccuracySource, latency: LatencySource,
    report: SearchReport, coverage: Coverage | None,
) -> None:
    if get_space(request.space).enumerable or coverage is None:
        batch = enumerate_batch(request.space, request.resolutions)
    else:
        batch = coverage.held  # a space too large to enumerate: the configurations the table holds
    estimates = latency.latency(batch)
    measured = np.isfinite(estimates.median)  # a partial table's configurations without an entry are infinite
    if not measured.all():
        rows = np.flatnonzero(measured)
        if not len(rows):
            raise SearchError(f"{latency.name} has an entry for none of the {request.space} subnets at "
                              f"{', '.join(map(str, request.resolutions))} px")
        batch, estimates = batch.take(rows), estimates.take(rows)
    scored = Scored(batch, accuracy.accuracy(batch), estimates)
    report.candidates = len(batch)
    # relative targets span the exact range of the candidates
    fastest, slowest = float(scored.latency.median.min()), float(scored.latency.median.max())
    for target in (t.resolve(fastest, slowest) for t in asked):
        began = time.perf_counter()
        row = best_per_target(scored, target, request.rule, latency.unit)
        report.results.append(_result(scored, row, target, time.perf_counter() - began, "exhaustive"))
    for row in pareto_front(scored.accuracy, scored.latency.median):
        report.pareto.append({"spec": str(batch.spec(int(row))), "accuracy": float(scored.accuracy[row]),
                              "latency_ms": float(scored.latency.median[row])})


def _result(scored: Scored, row: int, target: float, seconds: float, strategy: str, **extra: Any) -> TargetResult:
    return TargetResult(
        target=target,
        spec=scored.batch.spec(row),
        accuracy=float(scored.accuracy[row]),
        latency_ms=float(scored.latency.median[row]),
        latency_ci_low_ms=float(scored.latency.ci_low[row]),
        latency_ci_high_ms=float(scored.latency.ci_high[row]),
        seconds=seconds,
        strategy=strategy,
        **extra,
    )


def _evolution(
    request: SearchRequest, asked: list[Target], accuracy: AccuracySource, latency: LatencySource,
    report: SearchReport, coverage: Coverage | None,
) -> None:
    from compofa.search.evolution import EvolutionConfig, evolve

    config = request.evolution or EvolutionConfig()
    known = _extremes(request, latency, coverage)
    span = float(known.median.min()), float(known.median.max())
    for target in (t.resolve(*span) for t in asked):
        began = time.perf_counter()
        if not request.rule.fits(known, target).any():
            raise infeasible(target, *span, latency.unit, request.rule.describe())

        def compared(batch: ArchBatch) -> np.ndarray:
            return request.rule.compared(latency.latency(batch))

        def feasible(values: np.ndarray, _rows: ArchBatch, bound: float = target) -> np.ndarray:
            return request.rule.fits_values(values, bound)

        # One generator per target from the same seed: a target's result does not depend on the others.
        try:
            outcome = evolve(request.space, accuracy.accuracy, compared, target, config,
                             np.random.default_rng(request.seed), request.resolutions, feasible=feasible)
        except InfeasibleTargetError as error:
            if coverage is None or not coverage.missing:
                raise
            raise InfeasibleTargetError(
                f"{error}; {latency.name} holds {coverage.describe()}, and evolution counts the others as "
                "missing every target: search the measured ones exhaustively, or profile more"
            ) from None
        best = outcome.best
        scored = Scored(best, np.array([outcome.accuracy]), latency.latency(best))
        report.candidates += outcome.accuracy_evaluations
        report.results.append(
            _result(scored, 0, target, time.perf_counter() - began, "evolution", generations=outcome.generations,
                    stopped=outcome.stop_reason, trace=tuple(float(v) for v in outcome.trace))
        )


def _extremes(request: SearchRequest, latency: LatencySource, coverage: Coverage | None) -> LatencyEstimates:
    """Latencies that span the search: the smallest subnet at the lowest resolution and the largest at the
    highest, or, from a table lacking some configurations, every one it holds (the extremes may be missing)."""
    if coverage is not None and coverage.missing:
        return latency.latency(coverage.held)
    design = get_space(request.space)
    pair = [design.smallest(min(request.resolutions)), design.largest(max(request.resolutions))]
    return latency.latency(ArchBatch.from_specs(pair))
