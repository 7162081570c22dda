"""One search: several targets, exhaustive or evolutionary, against one latency source or several at once.

With one source each target is searched alone. With several (a table of
each device), a joint target gives every source its own target and the
answer is the most accurate subnet that meets all of them at once; memory
and energy limits (`SearchRequest.limits`) apply on top, and a target may hold
a source's p90 or p99 rather than its median (`compofa.search.constraints`).
Exhaustive search is exact on enumerable spaces and on the configurations
tables hold; evolution counts a candidate feasible when it meets every bound.

Over a table that holds only some configurations (`LatencySource.coverage`),
the search answers over what is measured: the exhaustive candidates are the
configurations with an entry in every table (in a space too large to
enumerate, every configuration the tables share), and evolution treats a
configuration without one as missing every target; the report says how many
are missing.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING

import numpy as np

from compofa.errors import CompofaError
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.constraints import Bound, Limit, Quantities
from compofa.search.exhaustive import best_meeting
from compofa.search.latency import Coverage, LatencySource
from compofa.search.picks import coverage_of, infeasible_bounds, pareto_points, readings
from compofa.search.predictor import AccuracySource
from compofa.search.results import SearchReport, TargetResult
from compofa.search.targets import FitRule, InfeasibleTargetError, Target
from compofa.space import get_space

if TYPE_CHECKING:
    from compofa.search.evolution import EvolutionConfig

STRATEGIES = ("auto", "exhaustive", "evolution")
#: One target per source, in the sources' order.
JointTarget = tuple[Target, ...]


class SearchError(CompofaError):
    """A search that cannot run as asked."""


@dataclass(frozen=True)
class SearchRequest:
    """What to search for.

    Attributes:
        space: the design space.
        width: the supernet's width multiplier.
        targets: latency limits: numbers in the latency source's unit, or
            `Target`s (which may be relative to the space's latency range, or
            hold a percentile); with several sources, each a tuple of one
            `Target` per source (a joint target).
        resolutions: input resolutions to consider.
        strategy: exhaustive (enumerable spaces only), evolution, or auto
            (exhaustive when the space is enumerable).
        rule: when a subnet fits a target.
        seed: seed of the evolution.
        evolution: evolution settings (defaults: OFA's).
        limits: peak memory and energy limits every pick must meet as well.
    """

    space: str
    width: float
    targets: tuple[float | Target | JointTarget, ...]
    resolutions: tuple[int, ...]
    strategy: str = "auto"
    rule: FitRule = field(default_factory=FitRule)
    seed: int = 0
    evolution: EvolutionConfig | None = None
    limits: tuple[Limit, ...] = ()


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


def search(request: SearchRequest, accuracy: AccuracySource,
           latency: LatencySource | Sequence[LatencySource]) -> SearchReport:
    """Run the search of `request` for every target, on one latency source or on several at once."""
    sources = list(latency) if isinstance(latency, Sequence) else [latency]
    if not sources:
        raise SearchError("no latency source given", option="latency")
    asked = _joint_targets(request, len(sources))
    start = time.perf_counter()
    # refuses a table with nothing at a resolution asked
    coverages = [source.coverage(request.resolutions) for source in sources]
    held = coverage_of(coverages, request.space, request.resolutions)
    strategy = resolve_strategy(request, held=held is not None)
    report = SearchReport(
        space=request.space, width=request.width, latency_source=" + ".join(s.name for s in sources),
        latency_unit=sources[0].unit, accuracy_source=accuracy.name, fit=request.rule.describe(),
        bucket=request.rule.bucket, results=[], latency_sources=[s.name for s in sources],
        latency_units=[s.unit for s in sources], limits=[_limit_record(limit, sources) for limit in request.limits],
        beyond_median=bool(request.limits) or any(t.metric != "median" for joint in asked for t in joint),
    )
    if held is not None:
        report.measured, report.missing = held.measured, held.missing
        report.missing_by_resolution = held.missing_by_resolution()
    if strategy == "exhaustive":
        _exhaustive(request, asked, accuracy, sources, report, held)
    else:
        _evolution(request, asked, accuracy, sources, report, coverages)
    report.results = [replace(result, requested=",".join(map(str, joint)))
                      for result, joint in zip(report.results, asked)]
    report.seconds = time.perf_counter() - start
    report.latency_stats = {name: sum(getattr(s.stats, name) for s in sources)
                            for name in ("hits", "misses", "measure_seconds")}
    return report


def _joint_targets(request: SearchRequest, sources: int) -> list[JointTarget]:
    if not request.targets:
        raise SearchError("no latency targets given", option="target")
    asked = []
    for target in request.targets:
        joint = target if isinstance(target, tuple) else (target if isinstance(target, Target) else Target(target),)
        if len(joint) != sources:
            raise SearchError(f"a joint target holds one target per latency source ({sources}); got {len(joint)} in "
                              f"{','.join(map(str, joint))}", option="target")
        asked.append(joint)
    for limit in request.limits:
        if limit.source is not None and not 0 <= limit.source < sources:
            raise SearchError(f"a limit names latency source {limit.source + 1} of {sources}")
    return asked


def _limit_record(limit: Limit, sources: Sequence[LatencySource]) -> dict[str, object]:
    return {"metric": limit.metric, "limit": limit.value, "unit": "MB" if limit.metric == "memory" else "mJ",
            "given": limit.given, "source": "every" if limit.source is None else sources[limit.source].name}


def _bounds(joint: JointTarget, ranges: dict[tuple[int, str], tuple[float, float]],
            limits: Sequence[Limit], count: int) -> list[Bound]:
    """The joint target and the limits as absolute bounds (relative targets resolved on `ranges`)."""
    bounds = [Bound(i, t.metric, t.resolve(*ranges[(i, t.metric)]) if t.relative else t.value, str(t))
              for i, t in enumerate(joint)]
    for limit in limits:
        on = range(count) if limit.source is None else (limit.source,)
        bounds += [Bound(i, limit.metric, limit.value, limit.given) for i in on]
    return bounds


def _ranges(quantities: Quantities, asked: Sequence[JointTarget]) -> dict[tuple[int, str], tuple[float, float]]:
    """Fastest and slowest finite value of every (source, metric) a relative target spans."""
    ranges = {}
    for joint in asked:
        for source, target in enumerate(joint):
            if target.relative and (source, target.metric) not in ranges:
                values = quantities.get(source, target.metric).median
                finite = values[np.isfinite(values)]
                ranges[(source, target.metric)] = (float(finite.min()), float(finite.max()))
    return ranges


def _exhaustive(
    request: SearchRequest, asked: list[JointTarget], accuracy: AccuracySource, sources: list[LatencySource],
    report: SearchReport, held: Coverage | None,
) -> None:
    if get_space(request.space).enumerable or held is None:
        batch = enumerate_batch(request.space, request.resolutions)
    else:
        batch = held.held  # a space too large to enumerate: the configurations the tables hold
    medians = [source.latency(batch) for source in sources]
    measured = np.logical_and.reduce([np.isfinite(m.median) for m in medians])  # partial tables: inf without entry
    if not measured.any():
        names = " and ".join(source.name for source in sources)
        raise SearchError(f"{names} {'has' if len(sources) == 1 else 'share'} an entry for none of the "
                          f"{request.space} subnets at {', '.join(map(str, request.resolutions))} px")
    rows = np.flatnonzero(measured)
    batch = batch.take(rows)
    quantities = Quantities(sources, batch)
    for index, values in enumerate(medians):
        quantities.remember(index, "median", values.take(rows))
    scores = np.asarray(accuracy.accuracy(batch), dtype=np.float64)
    report.candidates = len(batch)
    ranges = _ranges(quantities, asked)  # relative targets span the exact range of the candidates
    ties = [quantities.get(i, "median").median for i in range(len(sources))]
    for joint in asked:
        began = time.perf_counter()
        bounds = _bounds(joint, ranges, request.limits, len(sources))
        row = best_meeting(scores, quantities.fits(bounds, request.rule), ties)
        if row is None:
            raise infeasible_bounds(bounds, quantities, request.rule)
        report.results.append(_result(quantities, scores, row, joint, bounds, time.perf_counter() - began,
                                      "exhaustive"))
    report.pareto, report.pareto_objectives = pareto_points(quantities, scores, request.limits)


def _result(quantities: Quantities, scores: np.ndarray, row: int, joint: JointTarget, bounds: list[Bound],
            seconds: float, strategy: str, **extra: object) -> TargetResult:
    first = quantities.get(0, "median")
    return TargetResult(
        target=bounds[0].limit,
        spec=quantities.batch.spec(row),
        accuracy=float(scores[row]),
        latency_ms=float(first.median[row]),
        latency_ci_low_ms=float(first.ci_low[row]),
        latency_ci_high_ms=float(first.ci_high[row]),
        seconds=seconds,
        strategy=strategy,
        readings=readings(quantities, row, joint, bounds),
        **extra,  # type: ignore[arg-type]
    )


def _evolution(
    request: SearchRequest, asked: list[JointTarget], accuracy: AccuracySource, sources: list[LatencySource],
    report: SearchReport, coverages: list[Coverage | None],
) -> None:
    from compofa.search.evolution import EvolutionConfig, evolve

    config = request.evolution or EvolutionConfig()
    known = [Quantities([source], _extremes(request, source, coverage)) for source, coverage in
             zip(sources, coverages)]
    ranges = {(i, metric): span for i, quantities in enumerate(known)
              for (_, metric), span in _ranges(quantities, [(t,) for t in (j[i] for j in asked)]).items()}
    rule = request.rule
    for joint in asked:
        began = time.perf_counter()
        bounds = _bounds(joint, ranges, request.limits, len(sources))
        for bound in bounds:  # a bound that no extreme subnet meets alone: the one to loosen
            alone = replace(bound, source=0)
            if not known[bound.source].fits([alone], rule).any():
                raise infeasible_bounds([alone], known[bound.source], rule)
        single = len(bounds) == 1  # searched on its own values, so that evolution's messages speak its unit

        def objective(batch: ArchBatch, bounds: list[Bound] = bounds, single: bool = single) -> np.ndarray:
            quantities = Quantities(sources, batch)
            return quantities.compared(bounds[0], rule) if single else quantities.load(bounds, rule)

        def feasible(values: np.ndarray, _rows: ArchBatch, bounds: list[Bound] = bounds, single: bool = single
                     ) -> np.ndarray:
            return bounds[0].fits_values(values, rule) if single else values <= 1.0

        # One generator per target from the same seed: a target's result does not depend on the others.
        try:
            outcome = evolve(request.space, accuracy.accuracy, objective, bounds[0].limit if single else 1.0, config,
                             np.random.default_rng(request.seed), request.resolutions, feasible=feasible)
        except InfeasibleTargetError as error:
            raise _evolution_infeasible(error, bounds, sources, coverages) from None
        chosen = Quantities(sources, outcome.best)
        report.candidates += outcome.accuracy_evaluations
        report.results.append(
            _result(chosen, np.array([outcome.accuracy]), 0, joint, bounds, time.perf_counter() - began, "evolution",
                    generations=outcome.generations, stopped=outcome.stop_reason,
                    trace=tuple(float(v) for v in outcome.trace))
        )


def _evolution_infeasible(error: InfeasibleTargetError, bounds: list[Bound], sources: list[LatencySource],
                          coverages: list[Coverage | None]) -> InfeasibleTargetError:
    """Evolution's error, said of every bound where there are several, and of what partial tables lack."""
    message = str(error)
    if len(bounds) > 1:
        limits = "; ".join(b.describe(sources[b.source].name, sources[b.source].unit) for b in bounds)
        message = (f"evolution found no subnet meeting every limit at once ({limits}) within its bound on rejected "
                   "candidates, though each limit alone is met: loosen one, or search the configurations of "
                   "tables exhaustively")
    partial = [(s, c) for s, c in zip(sources, coverages) if c is not None and c.missing]
    if partial:
        held = "; ".join(f"{s.name} holds {c.describe()}" for s, c in partial)
        message += (f"; {held}, and evolution counts the others as missing every target: search the measured ones "
                    "exhaustively, or profile more")
    return InfeasibleTargetError(message)


def _extremes(request: SearchRequest, latency: LatencySource, coverage: Coverage | None) -> ArchBatch:
    """Subnets that span the search: the smallest subnet at the lowest resolution and the largest at the
    highest, or, from a table lacking some configurations, every one it holds (the extremes may be missing)."""
    if coverage is not None and coverage.missing:
        return coverage.held
    design = get_space(request.space)
    return ArchBatch.from_specs([design.smallest(min(request.resolutions)), design.largest(max(request.resolutions))])
