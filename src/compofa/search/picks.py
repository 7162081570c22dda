"""What a search says of its candidates: what the tables share, why nothing fits, the front, the pick's readings."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from compofa.search.constraints import BASE_UNIT, Bound, Limit, MetricSource, Quantities
from compofa.search.exhaustive import pareto_front, pareto_front_nd
from compofa.search.latency import Coverage, MetricUnavailableError
from compofa.search.metrics import DESCRIBED, ENERGY, MEMORY
from compofa.search.results import SourceReading
from compofa.search.targets import FitRule, InfeasibleTargetError, Target, infeasible
from compofa.space import get_space

#: What a pick's reading holds beyond the median: each quantity and the fields it fills.
_READING = (("p90", ("p90_ms", "p90_ci_low_ms", "p90_ci_high_ms")),
            ("p99", ("p99_ms", "p99_ci_low_ms", "p99_ci_high_ms")),
            (MEMORY, ("peak_memory_mb",)), (ENERGY, ("energy_mj",)))


def coverage_of(coverages: Sequence[Coverage | None], space: str, resolutions: Sequence[int]) -> Coverage | None:
    """What the sources that hold only some configurations (tables) hold together: None where no source
    does; a table's own coverage where one does; the configurations every table holds where several do."""
    partial = [c for c in coverages if c is not None]
    if len(partial) <= 1:
        return partial[0] if partial else None
    shared = set.intersection(*(set(c.held.key_list()) for c in partial))
    first = partial[0].held
    held = first.take(np.array([key in shared for key in first.key_list()], dtype=bool))
    size = get_space(space).cardinality
    counts = {int(r): (int(np.count_nonzero(held.resolution == r)), size) for r in sorted(set(resolutions))}
    return Coverage(held, counts)


def _what(bound: Bound, rule: FitRule) -> str:
    """What of a subnet the bound holds: ``median``, ``p90, upper CI bound``, ``peak memory``."""
    if not bound.latency:
        return DESCRIBED[bound.metric]
    if bound.metric == "median":
        return rule.describe()
    return bound.metric + (", upper CI bound" if rule.upper_bound else "") + (
        f", in {rule.bucket:g}-wide buckets" if rule.bucket else "")


def infeasible_bounds(bounds: Sequence[Bound], quantities: Quantities, rule: FitRule) -> InfeasibleTargetError:
    """Why no candidate of `quantities` meets `bounds`: one bound's feasible range, or how many meet each."""
    sources = quantities.sources
    if len(bounds) == 1:
        bound = bounds[0]
        source = sources[bound.source]
        unit = source.unit if bound.latency else BASE_UNIT[bound.metric]
        values = quantities.compared(bound, rule)
        finite = values[np.isfinite(values)]
        if not len(finite):
            return InfeasibleTargetError(
                f"no subnet of {source.name} has a finite upper bound of its {bound.metric}: the samples of an entry "
                f"cannot bound a tail quantile they hardly reach (a p99 needs about 400); hold the {bound.metric} "
                "itself rather than its upper bound, or measure longer")
        return infeasible(bound.limit, float(finite.min()), float(finite.max()), unit, _what(bound, rule))
    parts = []
    for bound in bounds:
        source = sources[bound.source]
        meet = int(np.count_nonzero(bound.fits_values(quantities.compared(bound, rule), rule)))
        unit = source.unit if bound.latency else BASE_UNIT[bound.metric]
        parts.append(f"{bound.describe(source.name, unit)}: {meet} of {len(quantities.batch)} meet it")
    return InfeasibleTargetError(f"no subnet meets every limit at once ({'; '.join(parts)}); loosen one of them, or "
                                 "search more resolutions or another space")


def pareto_points(quantities: Quantities, scores: np.ndarray, limits: Sequence[Limit]
                  ) -> tuple[list[dict[str, object]], list[str]]:
    """The candidates no other beats, and the objectives where more than accuracy and one latency.

    The objectives: accuracy (higher is better), each source's median latency, and each source's peak
    memory where it is limited or, with several sources, where the source has it for every candidate
    (lower is better). One source without a memory limit gives the plain accuracy-latency front, each
    point with its ``latency_ms``, as the report draws it.
    """
    sources = quantities.sources
    medians = [quantities.get(i, "median").median for i in range(len(sources))]
    memory: dict[int, np.ndarray] = {}
    for index in range(len(sources)):
        limited = any(limit.metric == MEMORY and limit.source in (None, index) for limit in limits)
        if not limited and len(sources) == 1:
            continue
        try:
            memory[index] = quantities.get(index, MEMORY).median
        except MetricUnavailableError:
            if limited:
                raise
    batch = quantities.batch
    if len(sources) == 1 and not memory:
        front = pareto_front(scores, medians[0])
        return [{"spec": str(batch.spec(int(row))), "accuracy": float(scores[row]),
                 "latency_ms": float(medians[0][row])} for row in front], []
    costs = np.column_stack([-scores, *medians, *memory.values()])
    front = pareto_front_nd(costs)
    front = front[np.lexsort((-scores[front], medians[0][front]))]  # by the first source's latency
    objectives = ["accuracy (max)", *(f"latency_ms {s.name} (min)" for s in sources),
                  *(f"peak_memory_mb {sources[i].name} (min)" for i in memory)]
    points: list[dict[str, object]] = []
    for row in front.tolist():
        point: dict[str, object] = {"spec": str(batch.spec(row)), "accuracy": float(scores[row])}
        if len(sources) == 1:
            point |= {"latency_ms": float(medians[0][row]), "peak_memory_mb": float(memory[0][row])}
        else:
            point["latencies_ms"] = [float(values[row]) for values in medians]
            if memory:
                point["peak_memory_mb"] = [float(memory[i][row]) if i in memory else None for i in range(len(sources))]
        points.append(point)
    return points, objectives


def readings(quantities: Quantities, row: int, joint: Sequence[Target], bounds: Sequence[Bound]
             ) -> tuple[SourceReading, ...]:
    """What every source says of candidate `row`: its median with the interval, and what else it measured."""
    pick = Quantities(quantities.sources, quantities.batch.take([row]))
    result = []
    for index, source in enumerate(quantities.sources):
        median = quantities.get(index, "median")
        values: dict[str, float] = {}
        absent: dict[str, str] = {}
        for metric, names in _READING:
            try:
                got = pick.get(index, metric)
            except MetricUnavailableError as error:
                if metric in (MEMORY, ENERGY) and isinstance(source, MetricSource):
                    absent[metric] = error.reason
                continue
            triple = (got.median[0], got.ci_low[0], got.ci_high[0])
            values |= {name: float(value) for name, value in zip(names, triple) if np.isfinite(value)}
        result.append(SourceReading(source.name, str(joint[index]), bounds[index].limit, float(median.median[row]),
                                    float(median.ci_low[row]), float(median.ci_high[row]), values, absent))
    return tuple(result)
