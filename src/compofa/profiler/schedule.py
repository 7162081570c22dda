"""Interleaved, drift-corrected measurement of many items on one device.

An item is what a device times: a whole subnet, or one layer of a lookup
table; the profiler only hands items to the device and names them by `str()`.

Why this shape. A subnet timed in one long session differs between runs by
about 1% because of where its session happened to land, so each item is
timed in several rounds, each in a fresh session, in an order reshuffled every
round. The machine's speed also wanders: slowly by about 1% over minutes on a
quiet machine, and on a shared virtual machine by several percent
from one second to the next. So a reference item is kept prepared and warm in
its own session and timed in short blocks *between* the blocks of every round:
the round's samples are divided by the reference's speed at the same moment
relative to its baseline. A round during which the reference itself moved by
more than `drift_threshold` (the machine changed under it) is discarded, kept
on record as such, and measured again. Every round is complete in itself, so
it is committed the moment it ends and an interruption loses only the round in
flight.

Other work on the machine also shows in the reference: its samples within a
round spread (`reference_noise`). A round whose reference spread by more than
`disturbance_threshold` (at least `DISTURBED_NOISE`, and three times the
machine's quiet level) was timed while the machine was *disturbed*. It is kept,
but counts for less: the between-round spread that narrows every other
item's interval is pooled over quiet rounds only (so a disturbed quarter of
an hour does not widen the entries measured after it), an item that rests on
disturbed rounds gets the spread of the whole run, and once an item has
`QUIET_ROUNDS_ENOUGH` quiet rounds its disturbed ones are set aside. An item
still resting on disturbed rounds when it runs out of rounds is finished
`NOISY`, noise-limited; a later run measures it first, and its quiet rounds
then replace the disturbed ones, giving the precision back.

On a machine that stays busy, rounds can keep being discarded, so a run
measures an item in at most twice `max_rounds` rounds. An item that reaches
that bound with fewer than `min_rounds` kept rounds is finished as `NOISY`
with what it has (its kept rounds, or, with none, its discarded ones, under a
wider interval from their own spread) and marked unstable, and the run goes
on. The bound is the run's: a later run measures such an item again, afresh.

The profiler returns values and reports progress through a listener; it does
not know the table store (resume and persistence are the store's job, which
passes in the rounds it already has and commits each round it is handed).
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Generic, Protocol, runtime_checkable

import numpy as np

from compofa.devices.base import Device, ItemT, ItemT_contra, Prepared
from compofa.devices.meters import ENERGY, MEMORY, EnergyCounter, Metered, Meters
from compofa.errors import CompofaError
from compofa.profiler.measurement import (
    ABSENT,
    ENERGY_PER_RUN,
    PEAK_MEMORY,
    Estimate,
    MachineSpread,
    Measurement,
    RoundRecord,
    RoundSpread,
    noise_warning,
)
from compofa.profiler.noise import DISTURBED_NOISE, disturbance_threshold, reference_moved, reference_noise


class ProfileConfigError(CompofaError):
    """Profiler settings that cannot work."""


#: Why an item stopped when its run reached the bound on rounds with fewer than `min_rounds` kept
#: (see the module docstring).
NOISY = "noisy"
#: Why an item stopped when the run's time budget ran out before it converged: its entry has the interval its
#: rounds so far give, and a later run measures it further (as a `NOISY` one).
TIME_BUDGET = "time budget"
#: Why an item stopped after the one short round of a front-aware profile's coarse pass: its interval is
#: honest but wide, and refinement (or a uniform run) measures it further.
COARSE = "coarse"
#: Why an item stopped after a front-aware profile's refinement pass took it to that pass's bound on rounds,
#: short of the target: it was off the front by the next decision, or the run ended first.
REFINING = "refining"
#: Reasons that leave an entry for a later run to measure again, first.
UNFINISHED = (NOISY, TIME_BUDGET, COARSE, REFINING)


@dataclass(frozen=True)
class ProfileConfig:
    """How hard to measure.

    Attributes:
        target_ci: stop once the CI half-width is at most this fraction of the median...
        ci_floor_ms: ... or at most this many milliseconds.
        min_rounds, max_rounds: rounds (fresh sessions) per item.
        round_seconds: timed inference per item and round; sets the samples per round.
        min_samples, max_samples: bounds on samples per round.
        warmup_chunk: warm-up runs between stability checks.
        max_warmup: warm-up runs at most per round.
        warmup_tolerance: warm-up ends when a chunk is no more than this much faster than the last.
        budget_seconds: timed inference per item at most (then it stops, unconverged).
        blocks: blocks a round's samples are split into, with a reference block before,
            between and after them.
        reference_samples: samples per reference block.
        drift_threshold: a round is discarded when the reference's first and second
            halves differ by more than this fraction (and more than their spread explains).
        disturbed_noise: a round whose reference spread by more than this fraction (and three times the
            machine's quiet level) was disturbed (`disturbance_threshold`).
        seed: seed of the order of items within each round.
    """

    target_ci: float = 0.01
    ci_floor_ms: float = 0.01
    min_rounds: int = 3
    max_rounds: int = 8
    round_seconds: float = 0.4
    min_samples: int = 10
    max_samples: int = 200
    warmup_chunk: int = 2
    max_warmup: int = 30
    warmup_tolerance: float = 0.02
    budget_seconds: float = 20.0
    blocks: int = 4
    reference_samples: int = 2
    drift_threshold: float = 0.03
    disturbed_noise: float = DISTURBED_NOISE
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.target_ci < 1:
            raise ProfileConfigError(f"target CI must be a fraction in (0, 1), got {self.target_ci}",
                                     option="target_ci")
        for name in ("round_seconds", "budget_seconds", "drift_threshold", "disturbed_noise"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value > 0):
                raise ProfileConfigError(f"{name.replace('_', ' ')} must be a positive number, got {value}",
                                         option=name)
        for name in ("ci_floor_ms", "warmup_tolerance"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ProfileConfigError(f"{name.replace('_', ' ')} must be a number >= 0, got {value}", option=name)
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ProfileConfigError(f"need 1 <= min rounds <= max rounds, got {self.min_rounds} and {self.max_rounds}",
                                     option=("min_rounds", "max_rounds"))
        if not 1 <= self.min_samples <= self.max_samples:
            raise ProfileConfigError("need 1 <= min_samples <= max_samples")
        if self.warmup_chunk < 1 or self.max_warmup < self.warmup_chunk:
            raise ProfileConfigError("need 1 <= warmup_chunk <= max_warmup")
        if self.blocks < 1 or self.reference_samples < 1:
            raise ProfileConfigError("need at least one block and one reference sample per block")


@dataclass(frozen=True)
class Progress(Generic[ItemT]):
    """A snapshot for progress bars, after a round.

    Attributes:
        done, total: items finished, of the run's items.
        item: the item the round measured; round_index its index among the item's rounds (all runs, kept or
            discarded), kept and discarded its kept and discarded rounds so far.
        relative_ci: the item's CI half-width over its median now (inf before it has one).
        eta_seconds: rounds still planned times the mean wall time of this run's rounds (None before one).
        rounds_done: rounds measured in this run; rounds_planned: those plus the rounds still planned (each
            unfinished item's missing ones up to `min_rounds`, at least one): the plan grows when an item
            needs more than its minimum. kept: the item's rounds its estimate rests on; discarded: its rounds
            discarded; set_aside: its disturbed rounds that quiet ones replaced.
        phase: what the run is doing (``measuring``; a caller may name its own phases).
        noise: the reference's spread during the round (`reference_noise`; None without a reference), and
            disturbed whether that made the round a disturbed one (`disturbance_threshold`).
    """

    done: int
    total: int
    item: ItemT
    round_index: int
    relative_ci: float
    eta_seconds: float | None
    rounds_done: int = 0
    rounds_planned: int = 0
    kept: int = 0
    discarded: int = 0
    phase: str = "measuring"
    noise: float | None = None
    disturbed: bool = False
    set_aside: int = 0


class ProfileListener(Generic[ItemT]):
    """Receives what the profiler does; every method is optional (no-op here)."""

    def on_baseline(self, median_ms: float) -> None:
        """The reference's baseline was measured (only when none was given)."""

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        """The reference's samples of one round (or of the baseline)."""

    def on_round(self, item: ItemT, record: RoundRecord) -> None:
        """A finished round (possibly discarded); commit it now to survive an interruption."""

    def on_done(self, item: ItemT, measurement: Measurement[ItemT], estimate: Estimate, reason: str) -> None:
        """An item is finished (converged, or out of rounds or budget), with its final estimate."""

    def on_progress(self, progress: Progress[ItemT]) -> None:
        """After every round."""

    def on_staged(self, done: int, total: int) -> None:
        """`done` of `total` items prepared once before any timing (exports, engine builds)."""


@dataclass
class TimeAccount:
    """Where the wall time of a profiling run went (seconds)."""

    prepare: float = 0.0
    warmup: float = 0.0
    timed: float = 0.0  # the items' samples (sum of their latencies)
    reference: float = 0.0  # the reference's samples
    total: float = 0.0
    rounds: int = 0
    samples: int = 0
    discarded: int = 0

    @property
    def overhead_ratio(self) -> float:
        """Total wall time over time inside timed inference (items and reference)."""
        inside = self.timed + self.reference
        return self.total / inside if inside > 0 else math.inf


@dataclass(frozen=True)
class ProfileResult(Generic[ItemT]):
    measurements: dict[ItemT, Measurement[ItemT]]
    estimates: dict[ItemT, Estimate]
    reasons: dict[ItemT, str]
    baseline_ms: float | None
    times: TimeAccount


@dataclass
class Reference:
    """The reference item, kept prepared and warm, and its baseline."""

    handle: Prepared
    baseline_ms: float


@dataclass(frozen=True)
class ReferenceReading:
    """The reference's samples of one moment (a round, or the baseline): what `ProfileListener.on_reference` gets."""

    at: float
    median_ms: float
    samples_ms: tuple[float, ...]


@dataclass(frozen=True)
class RoundOutcome:
    """A round a `RoundRunner` ran: its record, the reference's samples between its blocks, where its time went."""

    record: RoundRecord
    reference: ReferenceReading | None
    account: TimeAccount


@runtime_checkable
class RoundRunner(Protocol[ItemT_contra]):
    """A device that runs whole rounds itself, where its items are (an agent on another machine, a phone).

    The profiler then decides what to measure and when, as for any device,
    but hands over each round whole (`run_round`: the item's preparation,
    warm-up and blocks, with the reference's blocks between them) instead of
    timing block by block over a link that would enter the measurement. On
    the other side the same `Profiler.measure_round` runs, so a round means
    the same everywhere.
    """

    def begin_rounds(self, config: ProfileConfig, reference: ItemT_contra | None, baseline_ms: float | None
                     ) -> tuple[float, ReferenceReading | None] | None:
        """Get ready to run rounds under `config`; with a reference, prepare and warm it there and return
        its baseline (`baseline_ms`, or measured now, with the samples it was measured on)."""
        ...

    def run_round(self, item: ItemT_contra, round_index: int) -> RoundOutcome: ...

    def end_rounds(self) -> None:
        """Free the reference and whatever `begin_rounds` set up; safe to call twice."""
        ...


@dataclass
class _Finished(Generic[ItemT]):
    """The items a run has finished so far, with their estimates and reasons, each told to the listener."""

    listener: ProfileListener[ItemT]
    measurements: dict[ItemT, Measurement[ItemT]] = dataclasses.field(default_factory=dict)
    estimates: dict[ItemT, Estimate] = dataclasses.field(default_factory=dict)
    reasons: dict[ItemT, str] = dataclasses.field(default_factory=dict)

    def put(self, item: ItemT, measurement: Measurement[ItemT], estimate: Estimate, reason: str) -> None:
        self.measurements[item], self.estimates[item], self.reasons[item] = measurement, estimate, reason
        self.listener.on_done(item, measurement, estimate, reason)


class Profiler(Generic[ItemT]):
    """Measures items on `device` in interleaved rounds (see the module docstring)."""

    def __init__(self, device: Device[ItemT, Any], config: ProfileConfig | None = None,
                 clock: Callable[[], float] = time.time):
        self.device = device
        self.config = config or ProfileConfig()
        self.clock = clock
        self._spreads: dict[ItemT, tuple[int, float, MachineSpread]] = {}  # per item, by round count and threshold
        self._noises: list[float] = []  # the reference's spread in every round known to the run, prior ones too
        self._disturbed_above = disturbance_threshold((), self.config.disturbed_noise)
        self._prior_rounds: dict[ItemT, int] = {}  # rounds each item had before this run
        self._device_meters: Meters | None = None

    def _timed(self, handle: Prepared, n: int) -> list[float]:
        return self.device.time(handle, n)

    def warm_up(self, handle: Prepared) -> list[float]:
        """Run until a chunk of runs is no longer faster than the previous one."""
        cfg = self.config
        runs = self._timed(handle, cfg.warmup_chunk)
        previous = float(np.median(runs))
        while len(runs) + cfg.warmup_chunk <= cfg.max_warmup:
            chunk = self._timed(handle, cfg.warmup_chunk)
            runs += chunk
            current = float(np.median(chunk))
            if current >= previous * (1 - cfg.warmup_tolerance):
                break
            previous = current
        return runs

    # -- one item, one round ---------------------------------------------------------

    def measure_round(
        self, item: ItemT, round_index: int, account: TimeAccount, ref: Reference | None = None,
        listener: ProfileListener[ItemT] | None = None,
    ) -> RoundRecord:
        """Prepare `item` afresh, warm it up and time it, between blocks of the reference."""
        cfg = self.config
        meters = self._meters()
        started = self.clock()
        start = time.perf_counter()
        if meters.memory is not None:
            meters.memory.start()
        handle = self.device.prepare(item)
        prepared = time.perf_counter()
        account.prepare += prepared - start
        discarded = False
        drift = 1.0
        noise: float | None = None
        readings: dict[str, Any] = {}
        try:
            before = self.device.conditions()
            if self.device.deterministic:
                warmup: list[float] = []
                timed_at = self.clock()
                samples = self._timed(handle, 1)
            else:
                warmup = self.warm_up(handle)
                account.warmup += time.perf_counter() - prepared
                latency = max(float(np.median(warmup[-cfg.warmup_chunk:])), 1e-6)
                count = min(cfg.max_samples, max(cfg.min_samples, math.ceil(cfg.round_seconds * 1000 / latency)))
                timed_at = self.clock() + count * latency / 2000
                samples, reference, energy_mj = self._interleaved(handle, count, ref, meters.energy)
                readings = _readings(meters, energy_mj, len(samples))
                if ref is not None:
                    account.reference += sum(reference) / 1000
                    drift, discarded = self._drift(reference, ref.baseline_ms)
                    noise = reference_noise(reference)
                    (listener or ProfileListener()).on_reference(timed_at, float(np.median(reference)), reference)
            after = self.device.conditions()
        finally:
            handle.close()
        account.timed += sum(samples) / 1000
        account.rounds += 1
        account.samples += len(samples)
        account.discarded += discarded
        conditions: dict[str, Any] = {"before": before, "after": after} if before or after else {}
        if noise is not None:
            conditions["reference_noise"] = round(noise, 6)
        conditions |= readings
        return RoundRecord(
            round_index, started, timed_at, tuple(warmup), tuple(samples), drift, prepared - start, conditions,
            discarded,
        )

    def _meters(self) -> Meters:
        """The device's meters (none for an estimate, or a device that reads only time), looked up once."""
        if self._device_meters is None:
            device = self.device
            self._device_meters = device.meters() if isinstance(device, Metered) and not device.deterministic \
                else Meters()
        return self._device_meters

    def _interleaved(self, handle: Prepared, count: int, ref: Reference | None, energy: EnergyCounter | None = None
                     ) -> tuple[list[float], list[float], float | None]:
        """`count` samples of `handle` in blocks, with a reference block before, between and after; and the
        energy of the item's blocks alone (mJ), when there is a counter."""
        cfg = self.config
        blocks = min(cfg.blocks, count) if ref is not None else 1
        sizes = [count // blocks + (1 if b < count % blocks else 0) for b in range(blocks)]
        samples: list[float] = []
        reference = self._timed(ref.handle, cfg.reference_samples) if ref is not None else []
        used_mj = 0.0
        for size in sizes:
            begin_mj = energy.read_mj() if energy is not None else 0.0
            samples += self._timed(handle, size)
            if energy is not None:
                used_mj += energy.read_mj() - begin_mj
            if ref is not None:
                reference += self._timed(ref.handle, cfg.reference_samples)
        return samples, reference, used_mj if energy is not None else None

    def _drift(self, reference: list[float], baseline_ms: float) -> tuple[float, bool]:
        """The machine's speed during a round, and whether it changed too much within it."""
        return float(np.median(reference)) / baseline_ms, reference_moved(reference, self.config.drift_threshold)

    def finished(self, measurement: Measurement[ItemT], spread: RoundSpread | None = None, measured_now: int = 0
                 ) -> str | None:
        """Why `measurement` needs no more rounds, or None if it does.

        `spread` is the between-round spread pooled over the run (see
        `Measurement.estimate_with`); `measured_now` counts the item's rounds
        of this run, kept or discarded, at most twice `max_rounds`.
        """
        cfg = self.config
        rounds = len(measurement.used_rounds)
        if self.device.deterministic:
            return "estimated" if rounds >= 1 else None
        if measured_now >= 2 * cfg.max_rounds:  # bound on rounds lost to drift, per run
            return NOISY if rounds < cfg.min_rounds or measurement.noise_limited else "max rounds"
        if rounds == 0:
            return None
        if rounds >= cfg.min_rounds:
            estimate = measurement.estimate_with(spread)
            half_width = (estimate.ci_high_ms - estimate.ci_low_ms) / 2
            if estimate.relative_ci <= cfg.target_ci or half_width <= cfg.ci_floor_ms:
                return "converged"
        if measurement.noise_limited:
            # its disturbed rounds are not counted against `max_rounds`: this run measures it up to that many
            # times more, so quiet rounds can replace them (a rerun gives it as many again)
            return NOISY if measured_now >= cfg.max_rounds else None
        if rounds >= cfg.max_rounds:
            return "max rounds"
        if measurement.timed_seconds >= cfg.budget_seconds:
            return "budget"
        return None

    def noisy_estimate(self, measurement: Measurement[ItemT], spread: RoundSpread | None, discarded_now: int
                       ) -> tuple[Measurement[ItemT], Estimate]:
        """What a `NOISY` item is finished with: its kept rounds, or with none its discarded ones under an
        interval from their own spread alone (never the quieter pooled one)."""
        if not measurement.used_rounds:
            measurement = dataclasses.replace(measurement, rounds=tuple(dataclasses.replace(r, discarded=False)
                                                                        for r in measurement.rounds))
            spread, note = None, "estimated from rounds the machine's drift could not be corrected in"
        elif measurement.noise_limited:
            estimate = measurement.estimate_with(spread)
            return measurement, dataclasses.replace(estimate, warnings=(*estimate.warnings, noise_warning(measurement)))
        else:
            kept = len(measurement.used_rounds)
            note = f"only {kept} round{'s' if kept != 1 else ''} kept"
        estimate = measurement.estimate_with(spread)
        warning = (f"{discarded_now} rounds discarded in one run because the machine's speed kept changing; {note}; "
                   "rerun on a quieter machine to measure it again")
        return measurement, dataclasses.replace(estimate, warnings=(*estimate.warnings, warning))

    # -- the whole run -----------------------------------------------------------------------

    def run(
        self,
        items: Iterable[ItemT],
        reference: ItemT | None = None,
        baseline_ms: float | None = None,
        prior: Mapping[ItemT, Sequence[RoundRecord]] | None = None,
        listener: ProfileListener[ItemT] | None = None,
        time_budget: float | None = None,
        noise_history: Sequence[float] = (),
    ) -> ProfileResult[ItemT]:
        """Measure every item until it converges or runs out of rounds or budget.

        Args:
            items: what to measure (duplicates are measured once).
            reference: the item timed between the blocks of every round to
                correct drift (ignored for deterministic devices).
            baseline_ms: the reference's latency that means "no drift" (a table
                keeps it across runs); measured now when None.
            prior: rounds already committed for some items (a resumed run).
            listener: progress and persistence callbacks.
            time_budget: seconds of wall time for the run (preparing included); once they are spent no round
                is begun, and every unfinished item with a kept round is finished `TIME_BUDGET` with the
                interval its rounds give (an item without one gets no estimate).
            noise_history: the reference's spread in earlier rounds on this device (other items' too), so
                that the machine's quiet level is known from the start (`disturbance_threshold`).
        """
        listener = listener or ProfileListener[ItemT]()
        account = TimeAccount()
        begin = time.perf_counter()
        rounds = {item: list((prior or {}).get(item, ())) for item in dict.fromkeys(items)}
        self._prior_rounds = {item: len(item_rounds) for item, item_rounds in rounds.items()}
        self._noises = [*noise_history,
                        *(r.noise for item_rounds in rounds.values() for r in item_rounds if r.noise is not None)]
        self._disturbed_above = disturbance_threshold(self._noises, self.config.disturbed_noise)
        done = _Finished[ItemT](listener)
        results = done.measurements
        ref: Reference | None = None
        runner = self.device if isinstance(self.device, RoundRunner) and not self.device.deterministic else None
        try:
            if not self.device.deterministic:
                self._stage([*([reference] if reference is not None else []), *rounds], listener, account)
            if runner is not None:
                baseline_ms = self._begin_rounds(runner, reference, baseline_ms, listener)
            elif reference is not None and not self.device.deterministic:
                ref = self.open_reference(reference, baseline_ms, listener, account)
                baseline_ms = ref.baseline_ms
            rng = np.random.default_rng(self.config.seed)
            round_wall, rounds_done = 0.0, 0  # the ETA comes from rounds' own times, never from staging
            for item in rounds:  # prior rounds may already suffice
                self._consider(item, rounds, done)
            out_of_time = False
            while not out_of_time and (pending := [item for item in rounds if item not in results]):
                for index in rng.permutation(len(pending)):
                    if time_budget is not None and time.perf_counter() - begin >= time_budget:
                        out_of_time = True
                        break
                    item = pending[int(index)]
                    started = time.perf_counter()
                    if runner is not None:
                        record = self._delegated_round(runner, item, len(rounds[item]), account, listener)
                    else:
                        record = self.measure_round(item, len(rounds[item]), account, ref, listener)
                    round_wall += time.perf_counter() - started
                    rounds_done += 1
                    rounds[item].append(record)
                    if record.noise is not None:
                        self._noises.append(record.noise)
                        self._disturbed_above = disturbance_threshold(self._noises, self.config.disturbed_noise)
                    listener.on_round(item, record)
                    estimate = self._consider(item, rounds, done)
                    relative_ci = estimate.relative_ci if estimate is not None else math.inf
                    remaining = self._rounds_left(rounds, results)
                    used = len(self._measurement(item, rounds[item]).used_rounds)
                    discarded = sum(r.discarded for r in rounds[item])
                    listener.on_progress(Progress(
                        len(results), len(rounds), item, record.round_index, relative_ci,
                        round_wall / rounds_done * remaining, rounds_done, rounds_done + remaining, used,
                        discarded, noise=record.noise,
                        disturbed=record.noise is not None and record.noise > self._disturbed_above,
                        set_aside=len(rounds[item]) - used - discarded,
                    ))
            if out_of_time:
                self._finish_unconverged(rounds, done)
            self._judge_noise_again(rounds, done)
        finally:
            if ref is not None:
                ref.handle.close()
            if runner is not None:
                runner.end_rounds()
        account.total = time.perf_counter() - begin
        return ProfileResult(done.measurements, done.estimates, done.reasons, baseline_ms, account)

    def _stage(self, items: Sequence[ItemT], listener: ProfileListener[ItemT], account: TimeAccount) -> None:
        """Prepare every item once before timing any: first preparations export and compile
        (cached), and work done then would run beside the timing of another item and
        slow it (an export's threads left competing for the cores made a 2-thread
        reference 50% slower right after it)."""
        start = time.perf_counter()
        for done, item in enumerate(items, 1):
            self.device.prepare(item).close()
            listener.on_staged(done, len(items))
        account.prepare += time.perf_counter() - start

    def _begin_rounds(self, runner: RoundRunner[ItemT], reference: ItemT | None, baseline_ms: float | None,
                      listener: ProfileListener[ItemT]) -> float | None:
        started = runner.begin_rounds(self.config, reference, baseline_ms)
        if started is None:
            return baseline_ms
        measured, reading = started
        if reading is not None:  # the baseline was measured just now
            listener.on_reference(reading.at, reading.median_ms, reading.samples_ms)
            listener.on_baseline(measured)
        return measured

    def _delegated_round(self, runner: RoundRunner[ItemT], item: ItemT, round_index: int, account: TimeAccount,
                         listener: ProfileListener[ItemT]) -> RoundRecord:
        outcome = runner.run_round(item, round_index)
        for name in ("prepare", "warmup", "timed", "reference", "rounds", "samples", "discarded"):
            setattr(account, name, getattr(account, name) + getattr(outcome.account, name))
        if outcome.reference is not None:
            listener.on_reference(outcome.reference.at, outcome.reference.median_ms, outcome.reference.samples_ms)
        return outcome.record

    def open_reference(
        self, item: ItemT, baseline_ms: float | None, listener: ProfileListener[ItemT], account: TimeAccount
    ) -> Reference:
        """Prepare and warm the reference; measure its baseline unless given."""
        start = time.perf_counter()
        handle = self.device.prepare(item)
        account.prepare += time.perf_counter() - start
        try:
            self.warm_up(handle)
            if baseline_ms is None:
                samples = self._timed(handle, 10 * self.config.reference_samples)
                account.reference += sum(samples) / 1000
                baseline_ms = float(np.median(samples))
                listener.on_reference(self.clock(), baseline_ms, samples)
                listener.on_baseline(baseline_ms)
        except BaseException:
            handle.close()
            raise
        return Reference(handle, baseline_ms)

    def _consider(
        self,
        item: ItemT,
        rounds: dict[ItemT, list[RoundRecord]],
        done: _Finished[ItemT],
    ) -> Estimate | None:
        """Judge `item` on its rounds and the run's pooled spread; record it if finished."""
        measurement = self._measurement(item, rounds[item])
        if not measurement.rounds:
            return None
        spread = self._pooled_spread(rounds, exclude=item, quiet=not measurement.noise_limited)
        now = rounds[item][self._prior_rounds.get(item, 0):]
        discarded_now = sum(r.discarded for r in now)
        reason = self.finished(measurement, spread, len(now))
        if reason == NOISY:
            measurement, estimate = self.noisy_estimate(measurement, spread, discarded_now)
        elif not measurement.used_rounds:
            return None
        else:
            estimate = measurement.estimate_with(spread)
        if reason is not None:
            done.put(item, measurement, estimate, reason)
        return estimate

    def _judge_noise_again(
        self,
        rounds: dict[ItemT, list[RoundRecord]],
        done: _Finished[ItemT],
    ) -> None:
        """Finish as `NOISY` every item that ran out of rounds or budget on rounds that, by the machine's quiet
        level known at the end (it may have been quiet only later), were disturbed: a later run measures it
        again first, and its quiet rounds then replace those."""
        for item, reason in list(done.reasons.items()):
            if reason not in ("max rounds", "budget"):
                continue
            measurement = self._measurement(item, rounds[item])
            if not measurement.noise_limited:
                continue
            spread = self._pooled_spread(rounds, exclude=item, quiet=False)
            measurement, estimate = self.noisy_estimate(measurement, spread, 0)
            done.put(item, measurement, estimate, NOISY)

    def _finish_unconverged(
        self,
        rounds: dict[ItemT, list[RoundRecord]],
        done: _Finished[ItemT],
    ) -> None:
        """Finish every unfinished item that has a kept round as `TIME_BUDGET`, with the interval it has."""
        for item, item_rounds in rounds.items():
            measurement = self._measurement(item, item_rounds)
            if item in done.measurements or not measurement.used_rounds:
                continue
            estimate = measurement.estimate_with(self._pooled_spread(rounds, exclude=item,
                                                                     quiet=not measurement.noise_limited))
            kept = len(measurement.used_rounds)
            warning = (f"the time budget ran out after {kept} round{'s' if kept != 1 else ''}; "
                       "rerun to measure it further")
            estimate = dataclasses.replace(estimate, warnings=(*estimate.warnings, warning))
            done.put(item, measurement, estimate, TIME_BUDGET)

    def _measurement(self, item: ItemT, item_rounds: Sequence[RoundRecord]) -> Measurement[ItemT]:
        return Measurement(item, tuple(item_rounds), self.device.deterministic, self._disturbed_above)

    def _pooled_spread(self, rounds: dict[ItemT, list[RoundRecord]], exclude: ItemT, quiet: bool = True
                       ) -> RoundSpread:
        """The between-round spread of every other item of the run (this one adds its own).

        With `quiet`, pooled over the rounds the machine was quiet in (`MachineSpread`), as long as they
        have a few degrees of freedom; otherwise over every used round, disturbed ones included.
        """
        pooled = MachineSpread(RoundSpread(0.0, 0), RoundSpread(0.0, 0))
        for item, item_rounds in rounds.items():
            if item == exclude:
                continue
            cached = self._spreads.get(item)
            if cached is None or cached[:2] != (len(item_rounds), self._disturbed_above):
                cached = (len(item_rounds), self._disturbed_above,
                          MachineSpread.of(self._measurement(item, item_rounds)))
                self._spreads[item] = cached
            pooled = pooled.merged(cached[2])
        return pooled.quiet_or_all() if quiet else pooled.all

    def _rounds_left(self, rounds: dict[ItemT, list[RoundRecord]], results: dict[ItemT, Measurement[ItemT]]
                     ) -> int:
        """Rounds still planned: each unfinished item's kept rounds up to `min_rounds`, and at least one."""
        if self.device.deterministic:
            return sum(item not in results for item in rounds)
        return sum(
            max(self.config.min_rounds - sum(not r.discarded for r in item_rounds), 1)
            for item, item_rounds in rounds.items()
            if item not in results
        )


def _readings(meters: Meters, energy_mj: float | None, samples: int) -> dict[str, Any]:
    """What a round records beside its samples: the item's peak memory, its energy per inference, and why
    either is absent on this device (stored in the round's conditions, where the table reads them)."""
    readings: dict[str, Any] = {}
    if meters.memory is not None:
        readings[PEAK_MEMORY] = round(meters.memory.peak_mb(), 3)
    if energy_mj is not None and samples:
        readings[ENERGY_PER_RUN] = round(energy_mj / samples, 6)
    absent = {name: why for name, why in meters.absent.items() if name in (MEMORY, ENERGY)}
    if absent:
        readings[ABSENT] = absent
    return readings
