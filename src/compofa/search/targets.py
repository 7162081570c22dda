"""What "fits a latency target" means, noise included, and the errors when nothing does."""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compofa.errors import CompofaError
from compofa.search.metrics import LATENCY_METRICS

if TYPE_CHECKING:
    from compofa.search.latency import LatencyEstimates


class TargetError(CompofaError, ValueError):
    """A latency target or fit rule that cannot be read or makes no sense (a negative bucket, 0 ms)."""


class InfeasibleTargetError(CompofaError):
    """No subnet fits a latency target (or, in evolution, none was found within the rejection bound)."""


@dataclass(frozen=True)
class FitRule:
    """When a subnet fits a target.

    By default its median latency must be at most the target. With
    `upper_bound`, its whole 95% confidence interval must be. With a bucket
    width, latencies are compared at that granularity (finer differences are
    the device's noise, paper section 3.2): a subnet in the same bucket as the
    target ties with it and fits.
    """

    upper_bound: bool = False
    bucket: float | None = None

    def __post_init__(self) -> None:
        if self.bucket is not None and not self.bucket > 0:
            raise TargetError(f"bucket width must be positive, got {self.bucket}")

    def compared(self, latency: LatencyEstimates) -> np.ndarray:
        """The latency this rule holds against the target: the median or the upper bound."""
        return latency.ci_high if self.upper_bound else latency.median

    def fits_values(self, values: np.ndarray, target: float) -> np.ndarray:
        """Which `compared` values fit `target`."""
        if self.bucket is None:
            return values <= target
        return np.floor(values / self.bucket) <= math.floor(target / self.bucket)

    def fits(self, latency: LatencyEstimates, target: float) -> np.ndarray:
        return self.fits_values(self.compared(latency), target)

    def describe(self) -> str:
        what = "upper CI bound" if self.upper_bound else "median"
        return what + (f", in {self.bucket:g}-wide buckets" if self.bucket else "")


def infeasible(target: float, fastest: float, slowest: float | None, unit: str, what: str) -> InfeasibleTargetError:
    span = f"{fastest:.3f} {unit}" + (f" to {slowest:.3f} {unit}" if slowest is not None else " and up")
    return InfeasibleTargetError(
        f"no subnet fits the target {target:g} {unit} ({what}): the feasible range here is {span}; "
        "raise the target, or search more resolutions or another space"
    )


_METRIC_ALIASES = {"median": "median", "p50": "median", "p90": "p90", "p99": "p99"}


@dataclass(frozen=True)
class Target:
    """A latency limit: absolute (in the source's unit), or relative to the space's latency range.

    A relative target is `value` percent of the way from the fastest subnet
    to the slowest: exactly so in an exhaustive search; in evolution, from the
    smallest subnet at the lowest resolution searched to the largest at the
    highest. ``50%`` means the same on any device, which is what a first
    search on an unfamiliar one needs. `metric` is what the limit holds the
    latency source to: its median (the default), or its p90 or p99 (the
    tail a deadline cares about), whose range a relative target spans.
    """

    value: float
    relative: bool = False
    metric: str = "median"

    def __post_init__(self) -> None:
        if self.metric not in LATENCY_METRICS:
            raise TargetError(f"latency target metric {self.metric!r} is not one of {', '.join(LATENCY_METRICS)}",
                              option="target")
        if not math.isfinite(self.value) or self.value < 0 or (self.relative and self.value > 100):
            what = "a percentage in 0..100" if self.relative else "a positive latency"
            raise TargetError(f"latency target {self} must be {what}", option="target")
        if not self.relative and self.value == 0:
            raise TargetError(f"latency target {self} must be a positive latency", option="target")

    def resolve(self, fastest: float, slowest: float) -> float:
        return fastest + self.value / 100 * (slowest - fastest) if self.relative else self.value

    def __str__(self) -> str:
        number = f"{self.value:g}%" if self.relative else f"{self.value:g}"
        return number if self.metric == "median" else f"{self.metric}:{number}"


def parse_target(item: str) -> Target:
    """``"20"``, ``"50%"``, ``"p90:20"`` or ``"p99:75%"`` -> a target."""
    text = item.strip()
    metric, colon, rest = text.partition(":")
    if colon:
        if metric.strip().lower() not in _METRIC_ALIASES:
            raise TargetError(f"latency targets hold a source's median, p90 or p99 (p90:20); got {item!r}",
                              option="target")
        metric, text = _METRIC_ALIASES[metric.strip().lower()], rest.strip()
    else:
        metric = "median"
    relative = text.endswith("%")
    try:
        value = float(text[:-1] if relative else text)
    except ValueError:
        raise TargetError(
            f"latency targets are latencies (15,20), percentages of the latency range (25%,50%), or either on "
            f"a percentile (p90:20); got {item!r}", option="target"
        ) from None
    return Target(value, relative, metric)


def parse_targets(text: str) -> tuple[Target, ...]:
    """``"15,20,25"`` or ``"25%,50%,75%"`` (or a mix, any of them as ``p90:20``) -> targets."""
    targets = tuple(parse_target(item) for item in text.split(",") if item.strip())
    if not targets:
        raise TargetError("no latency targets: give latencies (15,20) or percentages of the latency range (25%,50%)",
                          option="target")
    return targets


def parse_joint_targets(texts: Sequence[str], sources: int) -> tuple[tuple[Target, ...], ...]:
    """The joint targets of a search over `sources` latency sources.

    With one source each text is a list of targets, each searched alone
    (``"15,20,25"``: three searches). With several, each text is one joint
    search holding one target per source, in the sources' order
    (``"20,35"``: a subnet within 20 on the first source and 35 on the second).
    """
    if sources == 1:
        return tuple((target,) for text in texts for target in parse_targets(text))
    joint = []
    for text in texts:
        targets = parse_targets(text)
        if len(targets) != sources:
            raise TargetError(
                f"with {sources} latency sources each target holds {sources} comma-separated values, one per source "
                f"in their order (20,35); got {len(targets)} in {text!r}", option="target")
        joint.append(targets)
    if not joint:
        raise TargetError("no latency targets given", option="target")
    return tuple(joint)
