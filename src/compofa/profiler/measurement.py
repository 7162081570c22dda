"""Measurements as immutable records: raw samples per round, statistics derived.

An item (a subnet, or one layer of a lookup table) is measured in several
rounds, each with the item freshly prepared (a new ONNX Runtime session, say),
a warm-up and a set of timed samples. Each round also carries the machine's
drift factor at the time: the latency of a reference item then, divided by its
baseline. Statistics are computed from
the drift-corrected samples on demand and never stored as the only truth.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, Generic

import numpy as np

from compofa.devices.base import ItemT
from compofa.devices.meters import ENERGY, MEMORY
from compofa.profiler.noise import DISTURBED_NOISE, QUIET_ROUNDS_ENOUGH
from compofa.profiler.stats import Summary, stability_warnings, summarize

#: Keys of a round's conditions holding what the device read beside time (`compofa.devices.meters`): the
#: item's peak memory (MB), its energy per inference (mJ), and why either is absent on the device.
PEAK_MEMORY, ENERGY_PER_RUN, ABSENT = "peak_memory_mb", "energy_mj", "absent"
#: Why an entry has no memory or energy reading when its rounds do not say.
NOT_RECORDED = "not recorded: its rounds hold no reading (an estimate, or rounds timed before compofa read it)"

# Two-sided 95% quantiles of Student's t by degrees of freedom (standard tables).
_T95 = {1: 12.706, 2: 4.303, 3: 3.182, 4: 2.776, 5: 2.571, 6: 2.447, 7: 2.365, 8: 2.306, 9: 2.262, 10: 2.228}


def t95(degrees_of_freedom: int) -> float:
    if degrees_of_freedom < 1:
        raise ValueError("need at least one degree of freedom")
    return _T95.get(degrees_of_freedom, 1.96 + 2.4 / degrees_of_freedom)


@dataclass(frozen=True)
class RoundRecord:
    """One round of one item.

    Attributes:
        round_index: 0-based round number for this item.
        started_at: wall-clock time (seconds since the epoch) the round began.
        timed_at: wall-clock time of the middle of the timed samples (where
            the drift is interpolated).
        warmup_ms: the warm-up runs, kept for inspection.
        samples_ms: the timed runs, raw.
        drift: machine speed factor at the time (the reference's latency,
            interpolated between the checks before and after this round, over
            its baseline); samples are divided by it. 1.0 without a reference.
        prepare_s: seconds spent preparing the item (e.g. session creation).
        conditions: device readings before and after (GPU clocks, temperature),
            and ``reference_noise``, the reference's spread during the round (`reference_noise`).
        discarded: set when a sudden drift made the round untrustworthy; a
            discarded round is kept for the record but not used.
    """

    round_index: int
    started_at: float
    timed_at: float
    warmup_ms: tuple[float, ...]
    samples_ms: tuple[float, ...]
    drift: float = 1.0
    prepare_s: float = 0.0
    conditions: dict[str, Any] = field(default_factory=dict)
    discarded: bool = False

    @property
    def corrected_ms(self) -> np.ndarray:
        return np.asarray(self.samples_ms, dtype=np.float64) / self.drift

    @property
    def noise(self) -> float | None:
        """The reference's spread during the round (`reference_noise`); None without a reference."""
        value = self.conditions.get("reference_noise")
        return float(value) if isinstance(value, (int, float)) else None


@dataclass(frozen=True)
class RoundSpread:
    """Relative variance of round medians around their item's mean, with its degrees of freedom."""

    sum_squares: float
    df: int

    @classmethod
    def of(cls, medians: np.ndarray) -> RoundSpread:
        relative = medians / medians.mean() - 1
        return cls(float((relative**2).sum()), len(medians) - 1)

    @classmethod
    def pooled(cls, groups: Iterable[np.ndarray]) -> RoundSpread:
        spread = cls(0.0, 0)
        for medians in groups:
            if len(medians) >= 2:
                spread = spread.merged(cls.of(medians))
        return spread

    def merged(self, other: RoundSpread) -> RoundSpread:
        return RoundSpread(self.sum_squares + other.sum_squares, self.df + other.df)

    @property
    def variance(self) -> float:
        return self.sum_squares / self.df if self.df > 0 else math.inf


@dataclass(frozen=True)
class Estimate:
    """What a measurement concludes: the median and a CI that covers rounds."""

    summary: Summary
    ci_low_ms: float
    ci_high_ms: float
    rounds: int
    warnings: tuple[str, ...]

    @property
    def median_ms(self) -> float:
        return self.summary.median_ms

    @property
    def relative_ci(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.median_ms if self.median_ms > 0 else math.inf

    @property
    def stable(self) -> bool:
        return not self.warnings


@dataclass(frozen=True)
class Measurement(Generic[ItemT]):
    """All rounds of one item on one device."""

    item: ItemT
    rounds: tuple[RoundRecord, ...]
    deterministic: bool = False  # an estimate (lookup table): one sample says all
    disturbed_above: float = DISTURBED_NOISE  # the reference spread of a disturbed round (`disturbance_threshold`)

    def disturbed(self, record: RoundRecord) -> bool:
        """Whether the machine was disturbed during `record` (the reference spread by over `disturbed_above`)."""
        noise = record.noise
        return noise is not None and noise > self.disturbed_above

    @property
    def kept_rounds(self) -> tuple[RoundRecord, ...]:
        return tuple(r for r in self.rounds if not r.discarded)

    @property
    def quiet_rounds(self) -> tuple[RoundRecord, ...]:
        return tuple(r for r in self.kept_rounds if not self.disturbed(r))

    @property
    def used_rounds(self) -> tuple[RoundRecord, ...]:
        """The rounds the estimate rests on: the kept ones, less the disturbed ones once
        `QUIET_ROUNDS_ENOUGH` quiet rounds can stand without them."""
        quiet = self.quiet_rounds
        return quiet if len(quiet) >= QUIET_ROUNDS_ENOUGH else self.kept_rounds

    @property
    def noise_limited(self) -> bool:
        """Whether the estimate rests on rounds timed while the machine was disturbed."""
        return any(self.disturbed(r) for r in self.used_rounds)

    def quiet_medians(self) -> np.ndarray:
        """Medians of the used rounds the machine was quiet in (what a machine's quiet spread is pooled from)."""
        return np.array([np.median(r.corrected_ms) for r in self.used_rounds if not self.disturbed(r)])

    @functools.cached_property
    def estimate(self) -> Estimate:
        """The estimate from this item's rounds alone (see `estimate_with`)."""
        return self.estimate_with(None)

    def round_medians(self) -> np.ndarray:
        return np.array([np.median(r.corrected_ms) for r in self.used_rounds])

    def estimate_with(self, spread: RoundSpread | None) -> Estimate:
        """Median of the pooled drift-corrected samples, with a 95% CI.

        The CI is the wider of the within-sample order-statistic interval and
        a t-interval over the round medians: on a busy machine the spread
        between rounds (session placement, the machine's speed) exceeds the
        spread within one, and an interval that ignored it would be
        overconfident. That between-round spread is a property of the machine
        more than of the item, so with `spread` (pooled over every item
        of the run) its variance is the pooled estimate, including this
        item's own rounds, with the pooled degrees of freedom; alone, a few
        rounds would give a t-interval several times wider than the truth.
        """
        rounds = self.used_rounds
        if not rounds:
            raise ValueError(f"no usable rounds for {self.item}")
        summary = summarize(np.concatenate([r.corrected_ms for r in rounds]))
        low, high = summary.ci_low_ms, summary.ci_high_ms
        if len(rounds) >= 2:
            medians = self.round_medians()
            own = RoundSpread.of(medians)
            combined = own if spread is None else spread.merged(own)
        else:  # one round says nothing of the spread between rounds; the other items' rounds do
            combined = spread if spread is not None else RoundSpread(0.0, 0)
        if combined.df >= 1:
            between = t95(combined.df) * math.sqrt(combined.variance / len(rounds)) * summary.median_ms
            low, high = min(low, summary.median_ms - between), max(high, summary.median_ms + between)
        warnings = () if self.deterministic else tuple(stability_warnings(summary))
        return Estimate(summary, low, high, len(rounds), warnings)

    def _readings(self, key: str) -> list[float]:
        values = (r.conditions.get(key) for r in self.used_rounds)
        return [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool)]

    @property
    def peak_memory_mb(self) -> float | None:
        """The highest peak memory of the used rounds (MB), or None where the device reads none."""
        peaks = self._readings(PEAK_MEMORY)
        return max(peaks) if peaks else None

    @property
    def energy_mj(self) -> float | None:
        """The median over the used rounds of the energy per inference (mJ), or None without a counter."""
        energies = self._readings(ENERGY_PER_RUN)
        return float(np.median(energies)) if energies else None

    @property
    def absent(self) -> dict[str, str]:
        """Why the memory or energy reading is missing (by metric), as the device said in its rounds."""
        reasons: dict[str, str] = {}
        for metric, value in ((MEMORY, self.peak_memory_mb), (ENERGY, self.energy_mj)):
            if value is None:
                said = (r.conditions.get(ABSENT) for r in self.used_rounds)
                reasons[metric] = next((str(s[metric]) for s in said if isinstance(s, dict) and metric in s),
                                       NOT_RECORDED)
        return reasons

    @property
    def raw_median_ms(self) -> float:
        return float(np.median(np.concatenate([r.samples_ms for r in self.used_rounds])))

    @property
    def timed_seconds(self) -> float:
        return sum(sum(r.samples_ms) for r in self.rounds) / 1000


#: Degrees of freedom the quiet rounds' pooled spread needs before it stands for the machine's.
QUIET_SPREAD_DF = 4


@dataclass(frozen=True)
class MachineSpread:
    """The between-round spread of some items, over their quiet rounds and over all their used rounds."""

    quiet: RoundSpread
    all: RoundSpread

    @classmethod
    def of(cls, measurement: Measurement[Any]) -> MachineSpread:
        medians, quiet = measurement.round_medians(), measurement.quiet_medians()
        return cls(RoundSpread.of(quiet) if len(quiet) >= 2 else RoundSpread(0.0, 0),
                   RoundSpread.of(medians) if len(medians) >= 2 else RoundSpread(0.0, 0))

    @classmethod
    def pooled(cls, measurements: Iterable[Measurement[Any]]) -> MachineSpread:
        spread = cls(RoundSpread(0.0, 0), RoundSpread(0.0, 0))
        for measurement in measurements:
            spread = spread.merged(cls.of(measurement))
        return spread

    def merged(self, other: MachineSpread) -> MachineSpread:
        return MachineSpread(self.quiet.merged(other.quiet), self.all.merged(other.all))

    def quiet_or_all(self) -> RoundSpread:
        """The quiet rounds' spread when there is enough of it: what an item measured in quiet rounds gets."""
        return self.quiet if self.quiet.df >= QUIET_SPREAD_DF else self.all

    def for_measurement(self, measurement: Measurement[Any]) -> RoundSpread:
        """The spread `measurement` is estimated with: the whole run's when it rests on disturbed rounds."""
        return self.all if measurement.noise_limited else self.quiet_or_all()


def noise_warning(measurement: Measurement[Any]) -> str:
    """What the table says of an entry that rests on rounds timed while the machine was disturbed."""
    disturbed = sum(measurement.disturbed(r) for r in measurement.used_rounds)
    worst = max((r.noise or 0.0) for r in measurement.used_rounds)
    used = len(measurement.used_rounds)
    return (f"noise-limited: {disturbed} of its {used} round{'s' if used != 1 else ''} timed while the machine "
            f"was disturbed (the reference's samples spread by up to {worst:.1%}, over "
            f"{measurement.disturbed_above:.1%}); "
            "rerun when the machine is quiet to measure it again")
