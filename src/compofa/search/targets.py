"""What "fits a latency target" means, noise included, and the errors when nothing does."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from compofa.errors import CompofaError

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


@dataclass(frozen=True)
class Target:
    """A latency limit: absolute (in the source's unit), or relative to the space's latency range.

    A relative target is `value` percent of the way from the fastest subnet
    to the slowest: exactly so in an exhaustive search; in evolution, from the
    smallest subnet at the lowest resolution searched to the largest at the
    highest. ``50%`` means the same on any device, which is what a first
    search on an unfamiliar one needs.
    """

    value: float
    relative: bool = False

    def __post_init__(self) -> None:
        if not math.isfinite(self.value) or self.value < 0 or (self.relative and self.value > 100):
            what = "a percentage in 0..100" if self.relative else "a positive latency"
            raise TargetError(f"latency target {self} must be {what}")
        if not self.relative and self.value == 0:
            raise TargetError("latency target 0 must be a positive latency")

    def resolve(self, fastest: float, slowest: float) -> float:
        return fastest + self.value / 100 * (slowest - fastest) if self.relative else self.value

    def __str__(self) -> str:
        return f"{self.value:g}%" if self.relative else f"{self.value:g}"


def parse_targets(text: str) -> tuple[Target, ...]:
    """``"15,20,25"`` or ``"25%,50%,75%"`` (or a mix) -> targets."""
    targets = []
    for item in (part.strip() for part in text.split(",")):
        if not item:
            continue
        relative = item.endswith("%")
        try:
            value = float(item[:-1] if relative else item)
        except ValueError:
            raise TargetError(
                f"--target takes comma-separated latencies (15,20) or percentages of the latency range "
                f"(25%,50%), got {item!r}"
            ) from None
        targets.append(Target(value, relative))
    if not targets:
        raise TargetError("no latency targets: give latencies (15,20) or percentages of the latency range (25%,50%)",
                      option="target")
    return tuple(targets)
