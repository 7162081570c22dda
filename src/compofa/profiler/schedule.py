"""Interleaved, drift-aware measurement of many subnets on one device.

Why this shape (measured on a shared 2-core machine, see DESIGN.md): a subnet
timed in one long session differs between runs by about 1% because of where
its session happened to land; several rounds, each in a fresh session, halve
that. The whole machine also drifts by about 1% over minutes, which a
reference subnet re-timed every few subnets measures, so every round is
divided by the reference's current speed relative to its baseline. A sudden
jump of the reference (another process woke up) makes the rounds timed since
the previous check untrustworthy: they are discarded, recorded as such, and
measured again.

The profiler returns values and reports progress through a listener; it does
not know the table store (resume and persistence are the store's job, which
passes in the rounds it already has and commits each round it is handed).
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field, replace
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np

from compofa.devices.base import Device
from compofa.errors import CompofaError
from compofa.profiler.measurement import Measurement, RoundRecord
from compofa.space import SubnetSpec


@dataclass(frozen=True)
class ProfileConfig:
    """How hard to measure. Defaults reach a 1% CI on a CPU in 3-4 rounds.

    Attributes:
        target_ci: stop once the CI half-width is at most this fraction of the median...
        ci_floor_ms: ... or at most this many milliseconds.
        min_rounds, max_rounds: rounds (fresh sessions) per subnet.
        round_seconds: timed inference per subnet and round; sets the samples per round.
        min_samples, max_samples: bounds on samples per round.
        warmup_chunk: warm-up runs between stability checks.
        max_warmup: warm-up runs at most per round.
        warmup_tolerance: warm-up ends when a chunk is no more than this much faster than the last.
        budget_seconds: timed inference per subnet at most (then it stops, unconverged).
        reference_every: subnet rounds between checks of the reference subnet.
        reference_samples: samples per reference check.
        drift_threshold: a reference jump beyond this fraction between two checks
            discards the rounds timed in between.
        seed: seed of the order of subnets within each round.
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
    reference_every: int = 10
    reference_samples: int = 10
    drift_threshold: float = 0.03
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 < self.target_ci < 1:
            raise ProfileConfigError(f"target CI must be a fraction in (0, 1), got {self.target_ci}")
        if not 1 <= self.min_rounds <= self.max_rounds:
            raise ProfileConfigError(f"need 1 <= min_rounds <= max_rounds, got {self.min_rounds}, {self.max_rounds}")
        if not 1 <= self.min_samples <= self.max_samples:
            raise ProfileConfigError("need 1 <= min_samples <= max_samples")
        if self.warmup_chunk < 1 or self.max_warmup < self.warmup_chunk:
            raise ProfileConfigError("need 1 <= warmup_chunk <= max_warmup")


class ProfileConfigError(CompofaError):
    """Profiler settings that cannot work."""


class ProfileError(CompofaError):
    """Measuring failed in a way a rerun under other conditions may fix."""


@dataclass(frozen=True)
class Progress:
    """A snapshot for progress bars."""

    done: int
    total: int
    spec: SubnetSpec
    round_index: int
    relative_ci: float
    eta_seconds: float | None


class ProfileListener:
    """Receives what the profiler does; every method is optional (no-op here)."""

    def on_baseline(self, median_ms: float) -> None:
        """The reference's baseline was measured (only when none was given)."""

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        """A reference check (also the baseline measurement)."""

    def on_round(self, spec: SubnetSpec, record: RoundRecord) -> None:
        """A finished round; commit it now to survive an interruption."""

    def on_discard(self, spec: SubnetSpec, round_index: int, reason: str) -> None:
        """A committed round is no longer to be used."""

    def on_done(self, spec: SubnetSpec, measurement: Measurement, reason: str) -> None:
        """A subnet is finished (converged, or out of rounds or budget)."""

    def on_progress(self, progress: Progress) -> None:
        """After every round."""


@dataclass
class TimeAccount:
    """Where the wall time of a profiling run went (seconds)."""

    prepare: float = 0.0
    warmup: float = 0.0
    timed: float = 0.0  # the samples kept (sum of their latencies)
    reference: float = 0.0  # the reference's samples
    total: float = 0.0
    rounds: int = 0
    samples: int = 0

    @property
    def overhead_ratio(self) -> float:
        """Total wall time over time inside timed inference (subnets and reference)."""
        inside = self.timed + self.reference
        return self.total / inside if inside > 0 else math.inf


@dataclass(frozen=True)
class ProfileResult:
    measurements: dict[SubnetSpec, Measurement]
    reasons: dict[SubnetSpec, str]
    baseline_ms: float | None
    times: TimeAccount


@dataclass
class _State:
    rounds: dict[SubnetSpec, list[RoundRecord]]
    unchecked: list[tuple[SubnetSpec, int]] = field(default_factory=list)  # rounds since the last reference check
    candidates: dict[SubnetSpec, str] = field(default_factory=dict)  # finished, awaiting a clean reference check


class Profiler:
    """Measures subnets on `device` in interleaved rounds (see the module docstring)."""

    def __init__(self, device: Device, config: ProfileConfig | None = None, clock: Callable[[], float] = time.time):
        self.device = device
        self.config = config or ProfileConfig()
        self.clock = clock

    # -- one subnet, one round ---------------------------------------------------------

    def _timed(self, handle: object, n: int) -> list[float]:
        return self.device.time(handle, n)  # type: ignore[arg-type]

    def warm_up(self, handle: object) -> list[float]:
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

    def measure_round(self, spec: SubnetSpec, round_index: int, drift: float, account: TimeAccount) -> RoundRecord:
        cfg = self.config
        started = self.clock()
        start = time.perf_counter()
        handle = self.device.prepare(spec)
        prepared = time.perf_counter()
        try:
            before = self.device.conditions()
            if self.device.deterministic:
                warmup: list[float] = []
                samples = self._timed(handle, 1)
            else:
                warmup = self.warm_up(handle)
                warmed = time.perf_counter()
                latency = max(float(np.median(warmup[-cfg.warmup_chunk:])), 1e-6)
                count = min(cfg.max_samples, max(cfg.min_samples, math.ceil(cfg.round_seconds * 1000 / latency)))
                samples = self._timed(handle, count)
                account.warmup += warmed - prepared
            after = self.device.conditions()
        finally:
            handle.close()
        account.prepare += prepared - start
        account.timed += sum(samples) / 1000
        account.rounds += 1
        account.samples += len(samples)
        conditions = {"before": before, "after": after} if before or after else {}
        return RoundRecord(round_index, started, tuple(warmup), tuple(samples), drift, prepared - start, conditions)

    def finished(self, measurement: Measurement) -> str | None:
        """Why `measurement` needs no more rounds, or None if it does."""
        cfg = self.config
        rounds = len(measurement.used_rounds)
        if self.device.deterministic:
            return "estimated" if rounds >= 1 else None
        if len(measurement.rounds) >= 2 * cfg.max_rounds:  # bound on rounds lost to drift
            if rounds == 0:
                raise ProfileError(
                    f"all {len(measurement.rounds)} rounds of {measurement.spec} were discarded because the "
                    "reference subnet kept jumping: the machine is too busy to measure; stop other work and rerun"
                )
            return "max rounds"
        if rounds == 0:
            return None
        if rounds >= cfg.min_rounds:
            estimate = measurement.estimate
            half_width = (estimate.ci_high_ms - estimate.ci_low_ms) / 2
            if estimate.relative_ci <= cfg.target_ci or half_width <= cfg.ci_floor_ms:
                return "converged"
        if rounds >= cfg.max_rounds:
            return "max rounds"
        if measurement.timed_seconds >= cfg.budget_seconds:
            return "budget"
        return None

    # -- the reference ------------------------------------------------------------------

    def _reference_median(self, handle: object, listener: ProfileListener, account: TimeAccount, n: int) -> float:
        samples = self._timed(handle, n)
        account.reference += sum(samples) / 1000
        median = float(np.median(samples))
        listener.on_reference(self.clock(), median, samples)
        return median

    # -- the whole run -----------------------------------------------------------------------

    def run(
        self,
        specs: Iterable[SubnetSpec],
        reference: SubnetSpec | None = None,
        baseline_ms: float | None = None,
        prior: Mapping[SubnetSpec, Sequence[RoundRecord]] | None = None,
        listener: ProfileListener | None = None,
    ) -> ProfileResult:
        """Measure every spec until it converges or runs out of rounds or budget.

        Args:
            specs: the subnets (duplicates are measured once).
            reference: the subnet timed every `reference_every` rounds to track
                drift (ignored for deterministic devices).
            baseline_ms: the reference's latency that means "no drift" (a table
                keeps it across runs); measured now when None.
            prior: rounds already committed for some specs (a resumed run).
            listener: progress and persistence callbacks.
        """
        listener = listener or ProfileListener()
        cfg = self.config
        account = TimeAccount()
        begin = time.perf_counter()
        state = _State({spec: list((prior or {}).get(spec, ())) for spec in dict.fromkeys(specs)})
        total = len(state.rounds)
        results: dict[SubnetSpec, Measurement] = {}
        reasons: dict[SubnetSpec, str] = {}
        use_reference = reference is not None and not self.device.deterministic
        start = time.perf_counter()
        ref_handle = self.device.prepare(reference) if use_reference else None  # type: ignore[arg-type]
        account.prepare += time.perf_counter() - start
        try:
            drift, last_ref = 1.0, None
            if ref_handle is not None:
                self.warm_up(ref_handle)
                if baseline_ms is None:
                    baseline_ms = self._reference_median(ref_handle, listener, account, 3 * cfg.reference_samples)
                    listener.on_baseline(baseline_ms)
                last_ref = self._reference_median(ref_handle, listener, account, cfg.reference_samples)
                drift = last_ref / baseline_ms
            rng = np.random.default_rng(cfg.seed)
            pending = [spec for spec in state.rounds]
            for spec in pending:  # prior rounds may already suffice
                self._consider(spec, state, results, reasons, listener, confirm=ref_handle is None)
            while True:
                pending = [s for s in state.rounds if s not in results and s not in state.candidates]
                if not pending:
                    break
                for index in rng.permutation(len(pending)):
                    spec = pending[int(index)]
                    if ref_handle is not None and len(state.unchecked) >= cfg.reference_every:
                        assert last_ref is not None and baseline_ms is not None
                        last_ref = self._check_reference(ref_handle, last_ref, state, results, reasons, listener, account)
                        drift = last_ref / baseline_ms
                    round_index = len(state.rounds[spec])
                    record = self.measure_round(spec, round_index, drift, account)
                    state.rounds[spec].append(record)
                    state.unchecked.append((spec, round_index))
                    listener.on_round(spec, record)
                    measurement = self._consider(
                        spec, state, results, reasons, listener, confirm=ref_handle is None
                    )
                    listener.on_progress(
                        Progress(
                            len(results) + len(state.candidates),
                            total,
                            spec,
                            round_index,
                            measurement.estimate.relative_ci,
                            self._eta(state, results, account, begin),
                        )
                    )
                if ref_handle is not None and last_ref is not None and baseline_ms is not None:
                    last_ref = self._check_reference(ref_handle, last_ref, state, results, reasons, listener, account)
                    drift = last_ref / baseline_ms
        finally:
            if ref_handle is not None:
                ref_handle.close()
        account.total = time.perf_counter() - begin
        return ProfileResult(results, reasons, baseline_ms, account)

    def _consider(
        self,
        spec: SubnetSpec,
        state: _State,
        results: dict[SubnetSpec, Measurement],
        reasons: dict[SubnetSpec, str],
        listener: ProfileListener,
        confirm: bool,
    ) -> Measurement:
        measurement = Measurement(spec, tuple(state.rounds[spec]), self.device.deterministic)
        reason = self.finished(measurement) if measurement.used_rounds else None
        if reason is not None:
            if confirm:
                results[spec], reasons[spec] = measurement, reason
                listener.on_done(spec, measurement, reason)
            else:
                state.candidates[spec] = reason
        return measurement

    def _check_reference(
        self,
        handle: object,
        previous: float,
        state: _State,
        results: dict[SubnetSpec, Measurement],
        reasons: dict[SubnetSpec, str],
        listener: ProfileListener,
        account: TimeAccount,
    ) -> float:
        """Time the reference; on a jump, discard the rounds since the last check."""
        current = self._reference_median(handle, listener, account, self.config.reference_samples)
        jump = abs(current / previous - 1)
        if jump > self.config.drift_threshold:
            reason = f"reference moved {jump:.1%} between checks"
            for spec, round_index in state.unchecked:
                rounds = state.rounds[spec]
                rounds[round_index] = _discarded(rounds[round_index])
                listener.on_discard(spec, round_index, reason)
                state.candidates.pop(spec, None)
        else:
            for spec, reason in state.candidates.items():
                results[spec] = Measurement(spec, tuple(state.rounds[spec]), self.device.deterministic)
                reasons[spec] = reason
                listener.on_done(spec, results[spec], reason)
        state.candidates.clear()
        state.unchecked.clear()
        return current

    def _eta(self, state: _State, results: dict, account: TimeAccount, begin: float) -> float | None:  # type: ignore[type-arg]
        if account.rounds == 0:
            return None
        per_round = (time.perf_counter() - begin) / account.rounds
        remaining = sum(
            max(self.config.min_rounds - len(rounds), 1)
            for spec, rounds in state.rounds.items()
            if spec not in results and spec not in state.candidates
        )
        return per_round * remaining


def _discarded(record: RoundRecord) -> RoundRecord:
    return replace(record, discarded=True)
