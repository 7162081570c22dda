"""Front-aware profiling: every configuration coarsely, then refinement only where the front could be."""

from __future__ import annotations

import math
import re
from pathlib import Path

import numpy as np

import fake_device  # noqa: F401  (registers the simulated backend "fake")
from cli_helpers import assert_one_line_error, run
from compofa.jobs.frontier import SPREAD_SAMPLE, as_coarse, as_refining, coarse_config, possibly_on_front
from compofa.profiler import COARSE, NOISY, REFINING, Measurement, ProfileConfig, RoundSpread
from compofa.profiler.measurement import t95
from compofa.tables.store import LatencyTable


def test_a_configuration_is_out_only_when_another_certainly_beats_it() -> None:
    accuracy = np.array([0.80, 0.79, 0.79, 0.75, 0.81])
    low = np.array([10.0, 12.0, 9.0, 9.5, 30.0])
    high = np.array([11.0, 13.0, 9.8, 10.5, 31.0])
    # 1 (0.79, 12-13 ms) is beaten for sure by 0 (0.80, at most 11 ms). 3 (0.75, from 9.5 ms) stays: the
    # fastest more accurate one, 2, may take up to 9.8 ms. 4 is the most accurate.
    assert possibly_on_front(accuracy, low, high).tolist() == [True, False, True, True, True]
    # equal accuracy competes too: the certainly slower twin is out
    assert possibly_on_front(np.array([0.8, 0.8]), np.array([1.0, 3.0]), np.array([2.0, 4.0])).tolist() == [
        True, False]
    assert possibly_on_front(np.zeros(0), np.zeros(0), np.zeros(0)).tolist() == []


def test_the_coarse_pass_is_one_short_round() -> None:
    coarse = coarse_config(ProfileConfig(target_ci=0.02, round_seconds=0.4, max_rounds=8))
    assert (coarse.min_rounds, coarse.max_rounds, coarse.round_seconds, coarse.target_ci) == (1, 1, 0.1, 0.02)
    # a move of a few percent within so short a look is inside the interval it gets; discarding it would cost
    # another look
    assert coarse.drift_threshold == 0.10
    # what each pass stores: the coarse pass keeps a noisy machine's verdict, a refinement pass short of the last
    # marks only the entries its bound stopped
    assert (as_coarse("converged"), as_coarse("max rounds"), as_coarse(NOISY)) == (COARSE, COARSE, NOISY)
    assert (as_refining("max rounds"), as_refining("converged"), as_refining(NOISY)) == (REFINING, "converged", NOISY)


def test_front_aware_is_the_default_over_several_resolutions_only(tmp_path: Path) -> None:
    common = ("profile", "--device", "fake", "--limit", "6", "--round-seconds", "0.01", "--quiet")
    several = run(*common, "--resolution", "160,224", "--table", str(tmp_path / "several.db"))
    assert several.exit_code == 0 and "front-aware: 6 subnets measured coarsely now" in several.stdout, several.output
    one = run(*common, "--resolution", "160", "--table", str(tmp_path / "one.db"))
    assert one.exit_code == 0 and "front-aware" not in one.stdout, one.output
    with LatencyTable.open(tmp_path / "one.db") as store:
        assert all(e.reason != COARSE for e in store.entries())


def test_front_aware_profile_refines_only_what_could_be_on_the_front(tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    args = ("profile", "--device", "fake", "-O", "noise=0.02", "--resolution", "160", "--limit", "40",
            "--round-seconds", "0.02", "--table", str(table), "--front-aware", "--quiet")
    first = run(*args)
    assert first.exit_code == 0, first.output
    assert "front-aware: 40 subnets measured coarsely now" in first.stdout
    from compofa.cli.profile import front_scorer
    from compofa.space import parse_spec

    with LatencyTable.open(table) as store:
        entries = store.entries()
    assert len(entries) == 40  # every configuration has an entry: the table serves at once
    specs = [parse_spec(e.key.spec) for e in entries]
    accuracy = front_scorer("predictor", "compofa", None)(specs)
    low = np.array([e.ci_low_ms for e in entries])
    high = np.array([e.ci_high_ms for e in entries])
    open_question = possibly_on_front(accuracy, low, high)
    refined = np.array([e.reason != COARSE for e in entries])
    assert refined.any() and not refined.all()  # some refined, the rest kept coarse
    assert not (open_question & ~refined).any()  # nothing that could be on the front is left coarse
    # a coarse entry's single round cannot show the session-to-session spread: it takes the refined ones'
    with LatencyTable.open(table) as store:
        (device,) = store.devices()
        medians = [Measurement(e.key, tuple(store.rounds(device.id, e.key))).round_medians() for e in entries]
    spread = RoundSpread.pooled(medians)
    assert spread.df >= 1
    floor = t95(spread.df) * math.sqrt(spread.variance)
    for entry in entries:
        if entry.reason == COARSE:  # (a few have two rounds: the coarse pass's spread sample)
            assert entry.rounds in (1, 2)
            assert (entry.ci_high_ms - entry.ci_low_ms) / 2 / entry.median_ms >= 0.999 * floor / math.sqrt(entry.rounds)
    assert sum(e.rounds >= 2 for e in entries) >= SPREAD_SAMPLE  # the spread sample, refined since or not
    again = run(*args)
    assert again.exit_code == 0 and "0 subnets measured coarsely now, 0 refined" in again.stdout, again.output
    # --uniform on the same table measures the coarse ones to the target
    uniform = run(*args[:-2], "--uniform", "--quiet")
    assert uniform.exit_code == 0, uniform.output
    with LatencyTable.open(table) as store:
        assert all(e.reason != COARSE for e in store.entries())


def test_front_aware_needs_an_accuracy_that_can_score_the_space(tmp_path: Path) -> None:
    table = tmp_path / "t.db"
    refused = run("profile", "--space", "compofa-proxyless", "--device", "fake", "--front-aware", "--limit", "2",
                  "--table", str(table), "--quiet")
    assert_one_line_error(refused, "--accuracy table:PATH", "--uniform", "(change --accuracy)")
    assert not table.exists()


def test_refinement_passes_add_a_few_rounds_and_decide_again(tmp_path: Path) -> None:
    """On a noisy machine refinement goes in passes: every pass takes the open candidates a few rounds
    further and decides again, so configurations a few rounds put off the front stop there (`refining`,
    partly refined) and every one that could still be on it ends measured to the target or its bound."""
    table = tmp_path / "t.db"
    result = run("profile", "--device", "fake", "-O", "noise=0.08", "--resolution", "160,224", "--limit", "40",
                 "--round-seconds", "0.01", "--table", str(table), "--quiet")
    assert result.exit_code == 0, result.output
    passes = int(re.search(r"refined in (\d+) passes", result.stdout).group(1))  # type: ignore[union-attr]
    assert passes >= 2
    from compofa.cli.profile import front_scorer
    from compofa.space import parse_spec

    with LatencyTable.open(table) as store:
        entries = store.entries()
    accuracy = front_scorer("predictor", "compofa", None)([parse_spec(e.key.spec) for e in entries])
    open_question = possibly_on_front(accuracy, np.array([e.ci_low_ms for e in entries]),
                                      np.array([e.ci_high_ms for e in entries]))
    for entry, candidate in zip(entries, open_question):
        if candidate:
            assert entry.reason in ("converged", "max rounds", "budget", NOISY), entry
    assert all(e.rounds <= 8 for e in entries if e.reason == REFINING)


def test_a_machine_disturbed_throughout_still_ends_a_front_aware_profile(tmp_path: Path) -> None:
    """Noise-limited candidates are measured to their bound once in a run, never again and again."""
    result = run("profile", "--device", "fake", "-O", "noise=0.005", "-O", "disturb=0.4", "--resolution", "160,224",
                 "--limit", "12", "--round-seconds", "0.01", "--max-rounds", "4", "--table", str(tmp_path / "t.db"),
                 "--quiet")
    assert result.exit_code == 0 and "front-aware:" in result.stdout, result.output
