"""The machine's noise as the reference shows it: a round's spread, a move within it, a disturbed round.

The reference item is timed in short blocks between the blocks of every
round (see `compofa.profiler.schedule`). Its samples tell two things apart:
a *move* (the machine's speed changed within the round: the two halves
differ, each steady; the round's drift correction is then wrong, so it is
discarded) and *noise* (other work on the machine: every sample spread; the
correction holds on average, but the round is worth less). These are the
rules, on plain numbers; `Measurement` applies them to rounds.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence

import numpy as np

#: A round whose reference's samples spread by more than this (robust relative standard deviation: 1.4826
#: median absolute deviations over the median) was timed while the machine was disturbed, at the least: on a
#: quiet machine a subnet reference's samples within a round spread by well under 1%, under other work by
#: 5-10% or more. A reference of a fraction of a millisecond (a layer) spreads more when quiet, so the bound is
#: also `QUIET_MULTIPLE` times the machine's quiet level (`disturbance_threshold`).
DISTURBED_NOISE = 0.02
#: How many times its quiet spread the reference must spread in a round for the round to count as disturbed.
QUIET_MULTIPLE = 3.0
#: Quiet rounds that are enough on their own: an item with this many sets its disturbed rounds aside, so a
#: disturbed period stops counting once quiet rounds have replaced it.
QUIET_ROUNDS_ENOUGH = 3


#: How many standard errors the reference's two halves of a round must differ by, beyond its drift threshold,
#: for the round to count as one the machine's speed changed in (rather than as a noisy one).
MOVE_Z = 3.0


def reference_moved(reference_ms: Sequence[float], threshold: float) -> bool:
    """Whether the machine's speed changed within a round: the reference's first and second halves differ by
    more than `threshold` and by more than chance would, at the spread its samples show.

    On a quiet machine chance is well under the threshold, so the threshold decides; when other work spreads
    every sample by several percent, two halves of five samples differ by that much by chance alone, and such a
    round is disturbed (it counts for less), not one to discard and measure again, again and again.
    """
    half = len(reference_ms) // 2
    if half == 0:
        return False
    first, second = float(np.median(reference_ms[:half])), float(np.median(reference_ms[half:]))
    # the spread within each half (a move between them is no spread), and the standard error of a median:
    # about 1.2533 standard deviations over the root of its count
    noise = (reference_noise(reference_ms[:half]) + reference_noise(reference_ms[half:])) / 2
    chance = MOVE_Z * 1.2533 * noise * math.sqrt(1 / half + 1 / (len(reference_ms) - half))
    return abs(second / first - 1) > max(threshold, chance)


def disturbance_threshold(noises: Iterable[float | None], floor: float = DISTURBED_NOISE) -> float:
    """The reference spread above which a round counts as disturbed on this machine: `QUIET_MULTIPLE` times
    its quiet level, the lower quartile of the spreads seen in `noises` (the reference's rounds so far, every
    run's), and at least `floor` (`DISTURBED_NOISE`, or the profiler's `disturbed_noise`).

    The lower quartile, so that a machine disturbed for the first half of a run still shows its quiet level
    once the quiet half has been measured; on a machine disturbed throughout, the level is the disturbed one,
    and only the worst rounds stand out (the entries are then limited by the noise all rounds share).
    """
    known = [n for n in noises if n is not None]
    if not known:
        return floor
    # in steps of a quarter percent: a run judges again (and pools again) only when the level really moved
    level = math.ceil(QUIET_MULTIPLE * float(np.percentile(known, 25)) * 400 - 1e-9) / 400
    return max(floor, level)


def reference_noise(samples_ms: Iterable[float]) -> float:
    """Robust relative spread of the reference's samples: 1.4826 median absolute deviations over the median.

    Robust, so one slow sample (the reference's first run after an item displaced it from the caches) does
    not call a quiet round disturbed; only a machine whose speed keeps changing does.
    """
    samples = np.asarray(list(samples_ms), dtype=np.float64)
    if len(samples) < 2:
        return 0.0
    median = float(np.median(samples))
    return 1.4826 * float(np.median(np.abs(samples - median))) / median if median > 0 else 0.0
