"""The profiler: statistics, warm-up, interleaved rounds, drift correction and discarding."""

from __future__ import annotations

import math

import numpy as np
import pytest

from compofa.devices.base import Settings
from compofa.profiler import (
    DISTURBED_NOISE,
    NOISY,
    Measurement,
    ProfileConfig,
    Profiler,
    ProfileListener,
    ProfileResult,
    Progress,
    RoundRecord,
    disturbance_threshold,
    reference_moved,
    reference_noise,
    summarize,
)
from compofa.profiler.measurement import t95
from compofa.profiler.schedule import ProfileConfigError
from compofa.profiler.stats import median_confidence_interval, stability_warnings
from compofa.space import SubnetSpec, get_space
from fake_device import FakeDevice, true_latency_ms

SPECS = list(get_space("compofa").enumerate([160]))[::27]  # 9 subnets of different sizes
REFERENCE = get_space("compofa").largest(160)


def fake(**options: str) -> FakeDevice:
    return FakeDevice(Settings(options=options))


class Recorder(ProfileListener):
    def __init__(self) -> None:
        self.rounds: list[tuple[SubnetSpec, RoundRecord]] = []
        self.done: dict[SubnetSpec, str] = {}
        self.baselines: list[float] = []

    def on_baseline(self, median_ms: float) -> None:
        self.baselines.append(median_ms)

    def on_round(self, spec: SubnetSpec, record: RoundRecord) -> None:
        self.rounds.append((spec, record))

    @property
    def discarded(self) -> list[tuple[SubnetSpec, RoundRecord]]:
        return [(spec, record) for spec, record in self.rounds if record.discarded]

    def on_done(self, spec: SubnetSpec, measurement: Measurement, estimate: object, reason: str) -> None:
        self.done[spec] = reason


def test_summary_statistics() -> None:
    """Percentiles, IQR, MAD and the order-statistic CI on a known sample."""
    summary = summarize(np.arange(1.0, 101.0))
    assert summary.n == 100 and summary.median_ms == 50.5 and summary.min_ms == 1 and summary.max_ms == 100
    assert summary.p10_ms == pytest.approx(10.9) and summary.p90_ms == pytest.approx(90.1)
    assert summary.iqr_ms == pytest.approx(49.5) and summary.mad_ms == 25.0
    # The textbook 95% CI of a median of 100 values: the 40th and 61st order statistics.
    assert (summary.ci_low_ms, summary.ci_high_ms) == (40.0, 61.0)
    assert median_confidence_interval(np.array([1.0, 2.0, 3.0])) == (1.0, 3.0)


def test_ci_covers_the_true_median() -> None:
    """Across many samples of a skewed distribution, the 95% CI holds the true median about 95% of the time."""
    rng = np.random.default_rng(0)
    true_median = math.log(2)  # exponential(1)
    hits = sum(
        lo <= true_median <= hi
        for lo, hi in (median_confidence_interval(np.sort(rng.exponential(size=50))) for _ in range(2000))
    )
    assert 0.93 <= hits / 2000 <= 0.985


def test_stability_warnings() -> None:
    """A wide IQR (>= 10% of the median) and too few samples are reported as data."""
    assert stability_warnings(summarize([10.0] * 20)) == []
    warnings = stability_warnings(summarize([8.0, 9.0, 10.0, 11.0, 12.0] * 2))
    assert any("IQR" in w for w in warnings)
    assert any("samples" in w for w in stability_warnings(summarize([1.0, 1.0])))
    assert t95(2) == 4.303 and t95(100) < 2.0


def test_converges_to_the_true_latency() -> None:
    """With 1% noise every subnet converges in the minimum rounds, within 1% of its true latency."""
    recorder = Recorder()
    result = Profiler(fake(noise="0.01")).run(SPECS, REFERENCE, listener=recorder)
    assert set(result.measurements) == set(SPECS)
    for spec, measurement in result.measurements.items():
        estimate = measurement.estimate
        # The noise is one-sided: the median sits about 0.67 sigma above the truth.
        assert estimate.median_ms == pytest.approx(true_latency_ms(spec) * 1.0067, rel=0.01)
        assert estimate.ci_low_ms <= estimate.median_ms <= estimate.ci_high_ms
        assert result.reasons[spec] == "converged" and estimate.rounds <= 4
    assert len(recorder.rounds) <= 4 * len(SPECS) and not recorder.discarded
    assert len(recorder.baselines) == 1 and result.baseline_ms is not None
    assert result.times.timed == pytest.approx(sum(sum(r.samples_ms) for _, r in recorder.rounds) / 1000)
    assert result.times.rounds == len(recorder.rounds)
    assert result.times.reference > 0  # reference blocks between the subnet's blocks


def test_rounds_are_interleaved_with_fresh_preparation() -> None:
    """Each round prepares every subnet afresh, and no subnet gets round k+1 before all got round k."""
    device = fake(noise="0.01")
    recorder = Recorder()
    Profiler(device).run(SPECS, REFERENCE, listener=recorder)
    order = [(spec, record.round_index) for spec, record in recorder.rounds]
    first_pass = order[: len(SPECS)]
    assert {spec for spec, _ in first_pass} == set(SPECS) and {i for _, i in first_pass} == {0}
    # once up front (exports, engine builds happen then, never beside a timing), then once per round
    assert device.prepared[: len(SPECS) + 1] == [REFERENCE, *SPECS]
    assert device.prepared.count(SPECS[0]) == 1 + 3
    assert [spec for spec, _ in first_pass] != SPECS  # shuffled within a round


def test_sudden_drift_discards_and_remeasures() -> None:
    """A 10% step of the whole machine mid-run: the round it falls in is discarded and measured again,
    later rounds are divided by the reference's speed, and the estimates stay on the pre-step truth."""
    recorder = Recorder()
    result = Profiler(fake(noise="0.005", step_at="2000", step="1.10")).run(SPECS, REFERENCE, listener=recorder)
    assert len(recorder.discarded) == 1, "exactly the round the step fell in"
    corrected_after_step = 0
    for spec, measurement in result.measurements.items():
        assert measurement.estimate.median_ms == pytest.approx(true_latency_ms(spec) * 1.0034, rel=0.01)
        assert len(measurement.used_rounds) >= 3
        corrected_after_step += sum(r.drift > 1.05 and not r.discarded for r in measurement.rounds)
    assert corrected_after_step > 0, "rounds after the step must be kept, divided by the drift"


def test_drift_within_rounds_is_tracked() -> None:
    """A machine whose speed wanders by 20% over the run: every round is corrected by the reference
    timed between its blocks, so all estimates stay within 1% of the truth."""

    class Wandering(FakeDevice):
        def time(self, handle, n):  # type: ignore[no-untyped-def]
            return [s * (1 + 0.1 * math.sin(self.runs / 300)) for s in super().time(handle, n)]

    device = Wandering(Settings(options={"noise": "0.005"}))
    result = Profiler(device).run(SPECS, REFERENCE)
    for spec, measurement in result.measurements.items():
        assert measurement.estimate.median_ms == pytest.approx(true_latency_ms(spec) * 1.0034, rel=0.01)
    drifts = [r.drift for m in result.measurements.values() for r in m.rounds]
    assert max(drifts) - min(drifts) > 0.1


def test_noisy_subnets_take_more_rounds() -> None:
    """With 8% noise some subnets need more than the minimum rounds and none exceed the maximum."""
    config = ProfileConfig(round_seconds=0.01, min_samples=5, max_samples=10)
    result = Profiler(fake(noise="0.08"), config).run(SPECS, REFERENCE)
    rounds = [m.estimate.rounds for m in result.measurements.values()]
    assert max(rounds) > config.min_rounds and max(rounds) <= config.max_rounds
    # 8% noise moves the reference too: a subnet whose rounds were discarded max_rounds times is finished noisy
    assert set(result.reasons.values()) <= {"converged", "max rounds", "budget", NOISY}
    for spec, reason in result.reasons.items():
        all_rounds = result.measurements[spec].rounds
        assert len(all_rounds) <= 2 * config.max_rounds
        if reason == NOISY:
            warning = result.estimates[spec].warnings[-1]
            assert not result.estimates[spec].stable and ("discarded" in warning or "noise-limited" in warning)


def test_reference_noise_flags_a_disturbed_round_not_one_slow_sample() -> None:
    """The reference's robust spread: one slow first sample leaves a round quiet; samples all over disturb it."""
    quiet = [5.0, 5.01, 4.99, 5.02, 5.0, 4.98, 5.01, 5.0, 4.99, 5.0]
    assert reference_noise([7.5, *quiet[1:]]) < DISTURBED_NOISE
    spread = [5.0, 5.6, 4.9, 6.1, 5.2, 5.9, 5.0, 6.4, 5.3, 5.8]
    assert reference_noise(spread) > DISTURBED_NOISE
    record = RoundRecord(0, 0.0, 0.0, (), (1.0,), conditions={"reference_noise": reference_noise(spread)})
    measurement = Measurement(REFERENCE, (record, RoundRecord(1, 0.0, 0.0, (), (1.0,))))
    assert [measurement.disturbed(r) for r in measurement.rounds] == [True, False]
    # a reference that spreads by 1.5% when quiet (a layer of a fraction of a millisecond) disturbs at 4.5%
    assert disturbance_threshold([0.015] * 6 + [0.2] * 2) == pytest.approx(0.045)  # (in quarter-percent steps)
    assert disturbance_threshold([0.002] * 8) == DISTURBED_NOISE == disturbance_threshold([])


def test_a_round_is_discarded_for_a_move_not_for_noise() -> None:
    """Halves 5% apart on a quiet reference: the machine's speed changed, discard. Samples spread by 8% whose
    halves differ by 5% by chance: a disturbed round, kept (discarding it would only repeat the same)."""
    quiet_step = [5.0, 5.01, 4.99, 5.0, 5.01, 5.25, 5.26, 5.24, 5.25, 5.26]
    assert reference_moved(quiet_step, 0.03)
    noisy = [5.0, 5.6, 4.6, 5.3, 4.9, 5.5, 4.7, 5.8, 5.1, 5.4]
    assert reference_noise(noisy) > 0.05 and not reference_moved(noisy, 0.03)
    assert not reference_moved([5.0, 5.01, 4.99, 5.0, 5.01, 5.05, 5.06, 5.04, 5.05, 5.06], 0.03)


def _coverage(result: ProfileResult[SubnetSpec]) -> int:
    """Entries whose interval holds the truth, on the scale the estimates share (the reference's baseline
    may have been measured while the machine was disturbed, which scales every estimate alike)."""
    scale = float(np.median([result.estimates[s].median_ms / true_latency_ms(s) for s in SPECS]))
    return sum(result.estimates[s].ci_low_ms <= scale * true_latency_ms(s) <= result.estimates[s].ci_high_ms
               for s in SPECS)


def test_noise_that_comes_and_goes_does_not_spoil_the_rest() -> None:
    """Other work on the machine during the first third of the run: its rounds are flagged disturbed and set
    aside once quiet ones replace them, and the spread pooled for everyone comes from quiet rounds, so every
    entry still reaches the ±1% target on the quiet truth; progress reports the noise round by round."""

    class Noise(Recorder):
        def __init__(self) -> None:
            super().__init__()
            self.noise: list[float] = []

        def on_progress(self, progress: Progress[SubnetSpec]) -> None:
            assert progress.noise is not None
            self.noise.append(progress.noise)

    recorder = Noise()
    result = Profiler(fake(noise="0.005", disturb="0.3", disturb_until="3000")).run(SPECS, REFERENCE,
                                                                                     listener=recorder)
    threshold = disturbance_threshold(record.noise for _, record in recorder.rounds)
    disturbed = [record for _, record in recorder.rounds if (record.noise or 0) > threshold]
    assert disturbed and len(disturbed) < len(recorder.rounds)
    # progress showed the noise of every round: the disturbed third's, then the quiet level
    assert max(recorder.noise[:10]) > threshold > max(recorder.noise[-10:])
    # the baseline was measured while disturbed, which scales every estimate alike; relative to each other they
    # are as right as on a quiet machine
    scale = float(np.median([result.estimates[s].median_ms / true_latency_ms(s) for s in SPECS]))
    for spec in SPECS:
        measurement, estimate = result.measurements[spec], result.estimates[spec]
        assert result.reasons[spec] == "converged" and estimate.relative_ci <= 0.01
        assert not measurement.noise_limited
        assert estimate.median_ms == pytest.approx(true_latency_ms(spec) * scale, rel=0.01)


def test_machine_noisy_throughout_finishes_with_honest_wide_intervals() -> None:
    """Every round disturbed alike: the disturbed level is the machine's level, so the run ends as on any
    machine (at most `max_rounds` kept rounds a subnet, none at the target), and the wide intervals, from the
    spread all rounds share, still hold the truth."""
    config = ProfileConfig(max_rounds=5)
    result = Profiler(fake(noise="0.005", disturb="0.3"), config).run(SPECS, REFERENCE)
    for spec in SPECS:
        measurement, estimate = result.measurements[spec], result.estimates[spec]
        assert result.reasons[spec] in {NOISY, "max rounds"}
        assert len(measurement.rounds) <= 2 * config.max_rounds and len(measurement.used_rounds) <= config.max_rounds
        assert estimate.relative_ci > config.target_ci
    assert _coverage(result) >= len(SPECS) - 1


def test_a_rerun_on_a_quiet_machine_gives_the_precision_back() -> None:
    """A run disturbed throughout on a machine whose quiet level the table knows (earlier rounds' reference
    spread): every entry is finished `NOISY` and says it is noise-limited; measured again once the machine is
    quiet (the store passes their rounds as prior), quiet rounds replace the disturbed ones and every entry
    reaches the target."""
    quiet = Recorder()
    Profiler(fake(noise="0.005", seed="2")).run(SPECS, REFERENCE, listener=quiet)
    history = [record.noise for _, record in quiet.rounds if record.noise is not None]
    recorder = Recorder()
    first = Profiler(fake(noise="0.005", disturb="0.3"), ProfileConfig(max_rounds=3)).run(
        SPECS, REFERENCE, listener=recorder, noise_history=history)
    assert set(first.reasons.values()) == {NOISY}
    assert all("noise-limited" in e.warnings[-1] or "discarded" in e.warnings[-1] for e in first.estimates.values())
    prior: dict[SubnetSpec, list[RoundRecord]] = {}
    for spec, record in recorder.rounds:
        prior.setdefault(spec, []).append(record)
    second = Profiler(fake(noise="0.005", seed="1")).run(SPECS, REFERENCE, baseline_ms=first.baseline_ms,
                                                         prior=prior, noise_history=history)
    for spec in SPECS:
        measurement = second.measurements[spec]
        assert second.reasons[spec] == "converged" and second.estimates[spec].relative_ci <= 0.01
        assert not measurement.noise_limited and any(measurement.disturbed(r) for r in measurement.rounds)
        assert len(measurement.rounds) - len(prior[spec]) <= ProfileConfig().max_rounds


def test_interruption_keeps_rounds_and_resume_finishes() -> None:
    """A Ctrl-C mid-run loses nothing committed; a second run given those rounds measures only what is missing."""
    recorder = Recorder()
    with pytest.raises(KeyboardInterrupt):
        Profiler(fake(noise="0.01", fail_after="3000")).run(SPECS, REFERENCE, listener=recorder)
    committed: dict[SubnetSpec, list[RoundRecord]] = {}
    for spec, record in recorder.rounds:
        committed.setdefault(spec, []).append(record)
    assert 0 < len(recorder.rounds) < 3 * len(SPECS)
    baseline = recorder.baselines[0]
    device = fake(noise="0.01", seed="1")
    result = Profiler(device).run(SPECS, REFERENCE, baseline, prior=committed)
    assert set(result.measurements) == set(SPECS)
    staged = len(SPECS) + 1  # every subnet and the reference are prepared once before any timing
    measured_again = [spec for spec in device.prepared[staged:] if spec != REFERENCE]
    expected = sum(max(0, 3 - len(committed.get(spec, []))) for spec in SPECS)
    assert len(measured_again) == expected


def test_warm_up_stops_when_stable() -> None:
    """Warm-up ends once a chunk is no faster than the previous one, and is bounded."""

    class Cooling(FakeDevice):
        def time(self, handle, n):  # type: ignore[no-untyped-def]
            samples = super().time(handle, n)
            return [s * (1 + 2.0 / self.runs) for s in samples]  # slow at first, then settling

    device = Cooling(Settings(options={"noise": "0"}))
    profiler = Profiler(device, ProfileConfig(warmup_chunk=2, max_warmup=30))
    runs = profiler.warm_up(device.prepare(SPECS[0]))
    assert 4 <= len(runs) < 30
    assert len(profiler.warm_up(device.prepare(SPECS[0]))) == 4  # already warm: two chunks


def test_deterministic_device_needs_one_sample() -> None:
    """A lookup-table-like device is asked once per subnet, without reference or warm-up."""

    class Table(FakeDevice):
        deterministic = True

    device = Table(Settings(options={"noise": "0"}))
    result = Profiler(device).run(SPECS, REFERENCE)
    assert all(m.estimate.summary.n == 1 for m in result.measurements.values())
    assert REFERENCE not in device.prepared[: 1] and len(device.prepared) == len(SPECS)
    assert set(result.reasons.values()) == {"estimated"}


def test_bad_configs_are_refused() -> None:
    """Settings that cannot work are one-line errors."""
    with pytest.raises(ProfileConfigError, match="min rounds <= max rounds"):
        ProfileConfig(min_rounds=5, max_rounds=3)
    with pytest.raises(ProfileConfigError, match="target CI"):
        ProfileConfig(target_ci=0)


class Steady:
    """A device timing anything hashable: items are plain strings, each with a fixed latency."""

    name = "steady"
    deterministic = False

    def __init__(self, latencies: dict[str, float]) -> None:
        self.settings = Settings()
        self.latencies = latencies

    def fingerprint(self) -> dict[str, object]:
        return {"backend": self.name}

    def conditions(self) -> dict[str, object]:
        return {}

    def close(self) -> None:
        pass

    def prepare(self, item: str) -> SteadyHandle:
        return SteadyHandle(item)

    def time(self, handle: SteadyHandle, n: int) -> list[float]:
        return [self.latencies[handle.item]] * n


class SteadyHandle:
    def __init__(self, item: str) -> None:
        self.item = item

    def close(self) -> None:
        pass


def test_the_profiler_measures_any_hashable_item() -> None:
    """Layers and subnets go through the same profiler: here the items are strings."""
    latencies = {"conv": 0.5, "block": 2.0, "head": 0.25}
    result = Profiler(Steady(latencies), ProfileConfig(min_rounds=2, max_rounds=2)).run(list(latencies), "block")
    assert set(result.estimates) == set(latencies) and result.baseline_ms == 2.0
    for item, latency in latencies.items():
        assert result.estimates[item].median_ms == pytest.approx(latency)
        assert result.measurements[item].item == item and len(result.measurements[item].rounds) == 2


def test_a_time_budget_ends_the_run_with_honest_intervals_and_a_rerun_continues() -> None:
    """Once the budget is spent no round begins: every item with a kept round is finished TIME_BUDGET with the
    interval its rounds give (and says so); items without one get nothing; a rerun given the rounds goes on."""
    from compofa.profiler import TIME_BUDGET

    config = ProfileConfig(round_seconds=0.02, min_rounds=3, max_rounds=8)
    recorder = Recorder()
    result = Profiler(fake(noise="0.02", sleep="1"), config).run(SPECS, REFERENCE, listener=recorder,
                                                                   time_budget=0.5)
    cut_short = [spec for spec, reason in recorder.done.items() if reason == TIME_BUDGET]
    assert cut_short and len(recorder.rounds) < 3 * len(SPECS)
    kept = {spec for spec, record in recorder.rounds if not record.discarded}
    assert set(result.estimates) == kept  # an item without a kept round has no estimate at all
    for spec in cut_short:
        estimate = result.estimates[spec]
        assert estimate.ci_low_ms <= estimate.median_ms <= estimate.ci_high_ms
        assert any("time budget ran out" in warning for warning in estimate.warnings)
    committed: dict[SubnetSpec, list[RoundRecord]] = {}
    for spec, record in recorder.rounds:
        committed.setdefault(spec, []).append(record)
    again = Profiler(fake(noise="0.02", seed="1"), config).run(SPECS, REFERENCE, recorder.baselines[0],
                                                                prior=committed)
    assert set(again.reasons) == set(SPECS) and TIME_BUDGET not in again.reasons.values()
    for spec in cut_short:  # continued from its rounds, not afresh
        assert again.measurements[spec].rounds[: len(committed[spec])] == tuple(committed[spec])


def test_progress_counts_rounds_against_a_plan_that_grows() -> None:
    """Progress is in rounds done of rounds planned (each unfinished item's rounds up to min_rounds, at least
    one), kept and discarded rounds are told apart, and the ETA comes from the rounds' own times."""

    class Seen(ProfileListener):
        def __init__(self) -> None:
            self.seen: list = []

        def on_progress(self, progress: object) -> None:
            self.seen.append(progress)

    listener = Seen()
    config = ProfileConfig(min_rounds=3, max_rounds=6, drift_threshold=0.03)
    Profiler(fake(noise="0.01", busy="0.2", busy_every="40"), config).run(SPECS, REFERENCE, listener=listener)
    seen = listener.seen
    assert [p.rounds_done for p in seen] == list(range(1, len(seen) + 1))
    # min_rounds each, and one more for a first round the busy machine spoiled
    assert seen[0].rounds_planned == 3 * len(SPECS) + seen[0].discarded
    assert all(p.rounds_done <= p.rounds_planned for p in seen) and seen[-1].rounds_done == seen[-1].rounds_planned
    # (a disturbed round counts as quiet again when the machine's quiet level turns out higher: the estimate may
    # then rest on one round more than max_rounds; a run never measures an item more than twice that)
    assert all(p.kept + p.discarded + p.set_aside == p.round_index + 1 and p.round_index < 2 * config.max_rounds
               for p in seen)
    assert any(p.discarded for p in seen)  # the busy machine's rounds are shown as discarded, not as kept
    assert all(p.eta_seconds is not None and p.eta_seconds >= 0 for p in seen) and seen[-1].eta_seconds == 0


def test_one_round_takes_the_between_round_spread_of_the_others() -> None:
    """An item measured in one round (a coarse pass, a time budget) cannot show its own session-to-session
    spread: its interval takes the pooled spread of the run's other items, never only its own samples."""
    from compofa.profiler import RoundSpread

    samples = tuple(10.0 + 0.001 * i for i in range(50))  # a very steady round
    measurement = Measurement("item", (RoundRecord(0, 0.0, 0.0, (), samples),))
    alone = measurement.estimate_with(None)
    pooled = RoundSpread(sum_squares=8 * 0.02**2, df=8)  # other items' rounds differ by about 2%
    shared = measurement.estimate_with(pooled)
    half_width = (shared.ci_high_ms - shared.ci_low_ms) / 2 / shared.median_ms
    assert (alone.ci_high_ms - alone.ci_low_ms) / 2 / alone.median_ms < 0.001
    assert half_width == pytest.approx(t95(8) * 0.02, rel=0.01)
