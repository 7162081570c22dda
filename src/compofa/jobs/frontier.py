"""Front-aware profiling: every configuration coarsely, then more rounds only where a search could change.

A search needs a latency precisely only where it decides an answer: near the
accuracy-latency Pareto front. Elsewhere a coarse measurement picks the same
subnets. So a front-aware profile runs in two phases, each an ordinary
measuring run (`compofa.jobs.measure`), so resume, locking and commits work as
everywhere:

1. the coarse pass: one short round for every configuration that has no
   entry yet (every configuration prepared once, as always), each finished as
   `COARSE`; a few spread over the plan get two rounds, so the machine's
   session-to-session spread is known, and every coarse interval is widened
   by it (`widen_coarse_entries`: one round's samples cannot show it);
2. refinement: the configurations that could be on the front (no other
   configuration is certainly both at least as accurate and faster: its upper
   bound below this one's lower bound) and are not yet refined are measured
   further, in passes: each takes them up to a few more rounds (`REFINE_STEP`;
   the first to `min_rounds`), stores those that are not yet at the target as
   `REFINING`, and decides again, since narrower intervals put many out of
   the running and can bring others into doubt; the last pass measures to the
   target or `max_rounds`. It ends when every possible front member is
   refined. The rest keep their coarse (or partly refined), honest intervals.

The table is searchable at every moment (after the coarse pass every
configuration has an entry), and rerunning continues where the last run
stopped: a configuration without an entry is measured coarsely, a coarse one
that could be on the front is refined.
"""

from __future__ import annotations

import dataclasses
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from compofa.jobs.measure import MeasureSummary, StoredReason, add_times
from compofa.profiler import (
    COARSE,
    NOISY,
    REFINING,
    UNFINISHED,
    MachineSpread,
    Measurement,
    ProfileConfig,
    ProfileListener,
    Progress,
    disturbance_threshold,
    noise_warning,
)
from compofa.space import SubnetSpec
from compofa.tables.store import Entry, EntryKey, LatencyTable

#: Timed inference per configuration in the coarse pass: a tenth of a default round. With the preparation,
#: warm-up and reference blocks a coarse round costs about a second of a ±1% profile's five or so.
COARSE_ROUND_SECONDS = 0.1

#: The coarse round's bound on the reference's move within a round: a round is one short look, and one
#: discarded for a move of a few percent costs as much as the look itself, while the interval it gets (from the
#: machine's session-to-session spread, its samples' spread) already covers such a move.
COARSE_DRIFT_THRESHOLD = 0.10

#: Rounds each refinement pass adds at most to the configurations that could still be on the front: measuring
#: them all to the target at once would spend `max_rounds` on many that a few more rounds show to be off it.
REFINE_STEP = 2

#: Configurations of the coarse pass timed in two rounds instead of one, spread over the plan, so that the
#: session-to-session spread is known from the first decision of what could be on the front.
SPREAD_SAMPLE = 8

#: Scores configurations for the front: top-1 accuracy (any monotone score will do) of each.
Scorer = Callable[[Sequence[SubnetSpec]], np.ndarray]
#: One measuring run: (items, config, listener, stored_reason, time_budget) -> its summary.
Measure = Callable[[Sequence[SubnetSpec], ProfileConfig, ProfileListener[SubnetSpec], StoredReason | None,
                    float | None], MeasureSummary]


def as_coarse(reason: str) -> str:
    """What the coarse pass stores: `COARSE`, but `NOISY` where the machine's noise left the round so."""
    return reason if reason == NOISY else COARSE


def as_refining(reason: str) -> str:
    """What a refinement pass short of the last stores: `REFINING` for an entry its bound on rounds stopped
    (below the run's), the profiler's reason otherwise (converged stays converged)."""
    return REFINING if reason == "max rounds" else reason


def coarse_config(config: ProfileConfig) -> ProfileConfig:
    """One short round a configuration; everything else as `config` says."""
    return dataclasses.replace(config, min_rounds=1, max_rounds=1,
                               round_seconds=min(config.round_seconds, COARSE_ROUND_SECONDS),
                               drift_threshold=max(config.drift_threshold, COARSE_DRIFT_THRESHOLD))


def possibly_on_front(accuracy: np.ndarray, low_ms: np.ndarray, high_ms: np.ndarray) -> np.ndarray:
    """Which configurations no other certainly dominates (at least as accurate, and an interval wholly below).

    Configuration i is out when some j has accuracy[j] >= accuracy[i] and high_ms[j] < low_ms[i]: whatever
    the true latencies inside the intervals, j then beats i at every target i meets.
    """
    count = len(accuracy)
    if count == 0:
        return np.zeros(0, dtype=bool)
    order = np.argsort(-accuracy, kind="stable")
    sorted_accuracy = accuracy[order]
    fastest_bound = np.minimum.accumulate(high_ms[order])
    # for each i, the last position whose accuracy is >= its own (ties included, so equals compete too)
    last = np.searchsorted(-sorted_accuracy, -accuracy, side="right") - 1
    return ~(fastest_bound[last] < low_ms)


class _Phase(ProfileListener[SubnetSpec]):
    """Forwards events, naming the phase in progress."""

    def __init__(self, forward: ProfileListener[SubnetSpec], phase: str) -> None:
        self.forward, self.phase = forward, phase

    def on_baseline(self, median_ms: float) -> None:
        self.forward.on_baseline(median_ms)

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        self.forward.on_reference(at, median_ms, samples_ms)

    def on_round(self, item: SubnetSpec, record: Any) -> None:
        self.forward.on_round(item, record)

    def on_done(self, item: SubnetSpec, measurement: Any, estimate: Any, reason: str) -> None:
        self.forward.on_done(item, measurement, estimate, reason)

    def on_progress(self, progress: Progress[SubnetSpec]) -> None:
        self.forward.on_progress(dataclasses.replace(progress, phase=self.phase))

    def on_staged(self, done: int, total: int) -> None:
        self.forward.on_staged(done, total)


@dataclasses.dataclass
class FrontSummary:
    """What a front-aware run did, phase by phase (`summary` adds them up)."""

    summary: MeasureSummary
    coarse: int = 0  # configurations measured coarsely now
    refined: int = 0  # configurations refined now
    candidates: int = 0  # configurations that could be on the front, when the run ended
    refinements: int = 0  # refinement passes


def widen_coarse_entries(table: LatencyTable, device_id: int | None, keys: Sequence[EntryKey]) -> int:
    """Give every entry of one round among `keys` the between-round spread that round cannot show.

    A coarse pass times each configuration in one round, so its interval holds only the spread within that
    round; how much another session would differ (about a percent on a quiet machine) shows only across
    rounds. Once some configurations of the table have two or more rounds (refined ones, earlier runs),
    their spread, pooled, is the machine's, and each coarse entry (`COARSE`, or `NOISY` when the machine
    was disturbed during its round) is estimated again with it, its samples unchanged: a quiet round with the
    spread of quiet rounds, a disturbed one with that of all rounds. Returns how many entries were estimated
    again.
    """
    if device_id is None:
        return 0
    rounds = {key: table.rounds(device_id, key) for key in keys}
    threshold = disturbance_threshold(r.noise for found in rounds.values() for r in found)
    spread = MachineSpread.pooled(Measurement(key, tuple(found), disturbed_above=threshold)
                                  for key, found in rounds.items())
    if spread.all.df < 1:
        return 0
    current = {entry.key: entry for entry in table.entries(device_id)}
    widened = 0
    for key in keys:
        entry = current.get(key)
        if entry is None or entry.reason not in (COARSE, NOISY) or not rounds[key]:
            continue
        measurement = Measurement(key, tuple(rounds[key]), disturbed_above=threshold)
        if len(measurement.used_rounds) != 1:
            continue
        estimate = measurement.estimate_with(spread.for_measurement(measurement))
        if measurement.noise_limited:
            estimate = dataclasses.replace(estimate, warnings=(*estimate.warnings, noise_warning(measurement)))
        table.put_entry(device_id, key, measurement, estimate, entry.reason)
        widened += 1
    return widened


def profile_front_aware(
    items: Sequence[SubnetSpec],
    key: Callable[[SubnetSpec], EntryKey],
    entries: Callable[[], dict[EntryKey, Entry]],
    score: Scorer,
    measure: Measure,
    config: ProfileConfig,
    listener: ProfileListener[SubnetSpec],
    time_budget: float | None = None,
    widen: Callable[[], int] | None = None,
) -> FrontSummary:
    """Measure `items` coarsely, then refine those that could be on the front (see the module docstring).

    Args:
        items: every configuration planned.
        key: an item's entry key; entries: the table's entries now (read again after each phase).
        score: the accuracy of each item (the front is over score and latency).
        measure: runs one measuring pass over some items with a config (the caller's table and device).
        config: the precision refinement measures to (its `round_seconds` caps the coarse round's).
        time_budget: seconds for the whole run; the phase in progress then ends as a time budget ends a run.
        widen: gives coarse entries the between-round spread of the table's other rounds
            (`widen_coarse_entries`), called before every decision of what could be on the front and at the
            end, so no coarse interval is narrower than the machine's session-to-session spread.
    """
    deadline = time.perf_counter() + time_budget if time_budget is not None else None

    def left() -> float | None:
        return None if deadline is None else deadline - time.perf_counter()

    scores = np.asarray(score(items), dtype=np.float64)
    known = entries()
    coarse_items = [item for item in items if key(item) not in known]
    # a few of them in two rounds, spread over the plan: their spread is the machine's, which one round cannot
    # show (`widen_coarse_entries` gives it to the others); with nothing left to measure coarsely, the pass
    # still checks the device against the table
    step = max(len(coarse_items) // SPREAD_SAMPLE, 1)
    sample = coarse_items[::step][:SPREAD_SAMPLE] if len(coarse_items) > SPREAD_SAMPLE else []
    phase = _Phase(listener, "coarse pass")
    first = measure(sample, dataclasses.replace(coarse_config(config), min_rounds=2, max_rounds=2), phase,
                    as_coarse, left()) if sample else None
    chosen = set(sample)
    rest = measure([item for item in coarse_items if item not in chosen], coarse_config(config), phase, as_coarse,
                   left())
    measured = rest.measured + (first.measured if first is not None else 0)
    result = FrontSummary(dataclasses.replace(rest, planned=len(items), already_done=len(items) - len(coarse_items),
                                              measured=measured), coarse=measured)
    if first is not None:
        result.summary.times = add_times(first.times, rest.times) if rest.times is not None else first.times
        result.summary.discarded_rounds += first.discarded_rounds
        result.summary.reasons.update(first.reasons)
    refined_keys: set[EntryKey] = set()
    finished: set[EntryKey] = set()  # measured by a pass to the target in this run
    cap = config.min_rounds  # each pass measures the open candidates up to this many rounds, then decides again
    while (remaining := left()) is None or remaining > 0:
        if widen is not None:
            widen()
        known = entries()
        present = [i for i, item in enumerate(items) if key(item) in known]
        if not present:
            break
        low = np.array([known[key(items[i])].ci_low_ms for i in present])
        high = np.array([known[key(items[i])].ci_high_ms for i in present])
        candidates = [items[present[j]] for j in np.flatnonzero(possibly_on_front(scores[present], low, high))]
        result.candidates = len(candidates)
        # (one measured to the target in this run and still unfinished, the machine's noise stopped: a later
        # run measures it again, when the machine may be quiet)
        todo = [item for item in candidates if known[key(item)].reason in UNFINISHED and key(item) not in finished]
        if not todo:
            break
        final = cap >= config.max_rounds
        pass_config = config if final else dataclasses.replace(config, max_rounds=cap)
        label = f"refining near the front ({len(todo)}, to {pass_config.max_rounds} rounds at most)"
        refined = measure(todo, pass_config, _Phase(listener, label), None if final else as_refining, remaining)
        cap = min(cap + REFINE_STEP, config.max_rounds)
        result.refinements += 1
        refined_keys.update(key(item) for item in todo)
        if final:
            finished.update(key(item) for item in todo)
        summary = result.summary  # `measured` stays the entries made now; refinement updates entries
        summary.discarded_rounds += refined.discarded_rounds
        summary.times = add_times(summary.times, refined.times) if refined.times is not None else summary.times
        if refined.measured == 0:  # nothing could be measured (the budget ran out first)
            break
    if widen is not None:
        widen()
    # what the entries measured now ended as (a configuration refined over several passes counts once)
    known = entries()
    touched = [k for k in {*(key(item) for item in coarse_items), *refined_keys} if k in known]
    result.summary.reasons = Counter(known[k].reason for k in touched)
    result.summary.unstable = sum(not known[k].stable for k in touched)
    result.refined = len(refined_keys)
    return result
