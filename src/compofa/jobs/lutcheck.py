"""How far to trust a layer lookup table: its estimates against whole-network measurements.

A layer sum leaves out what a whole network costs beyond its layers (the
runtime's per-call overhead, memory traffic between layers), so on a CPU it
tends to run a little low by a roughly constant amount. `validate_lut` reports
the plain sum, and the sum after a linear calibration ``a * sum + b`` fitted on
a few measured subnets spread over the latency range; the calibrated figures
are computed on the other subnets only, so they are not flattered by the fit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from compofa.errors import CompofaError
from compofa.lut import LookupTable, LutError
from compofa.space import SubnetSpec, get_space, parse_spec
from compofa.tables.compare import kendall_tau
from compofa.tables.store import Entry

#: Subnets the calibration is fitted on by default.
DEFAULT_CALIBRATION_SUBNETS = 8


class LutValidationError(CompofaError):
    """Estimates and measurements that cannot be compared."""


@dataclass(frozen=True)
class Agreement:
    """Estimates against measurements of the same subnets (relative error = estimate / measured - 1).

    Attributes:
        count: subnets compared.
        rmspe: root mean square of the relative errors.
        within_5: share of subnets within +-5%.
        within_10: share within +-10%.
        median_error: median relative error (negative: the estimates run low).
        spread: standard deviation of the relative errors.
        kendall_tau: rank agreement of estimates and measurements.
    """

    count: int
    rmspe: float
    within_5: float
    within_10: float
    median_error: float
    spread: float
    kendall_tau: float


def agreement(estimated: np.ndarray, measured: np.ndarray) -> Agreement:
    if len(estimated) != len(measured) or not len(measured):
        raise LutValidationError("estimates and measurements must be non-empty and of equal length")
    if (measured <= 0).any():
        raise LutValidationError("measured latencies must be positive")
    errors = estimated / measured - 1.0
    return Agreement(
        count=len(errors),
        rmspe=float(np.sqrt(np.mean(errors**2))),
        within_5=float(np.mean(np.abs(errors) <= 0.05)),
        within_10=float(np.mean(np.abs(errors) <= 0.10)),
        median_error=float(np.median(errors)),
        spread=float(np.std(errors)),
        kendall_tau=kendall_tau(estimated, measured),
    )


@dataclass(frozen=True)
class Calibration:
    """``measured ~ scale * layer sum + offset_ms``, fitted on the subnets `fitted_on`."""

    scale: float
    offset_ms: float
    fitted_on: tuple[str, ...]

    def apply(self, estimated: np.ndarray) -> np.ndarray:
        return self.scale * estimated + self.offset_ms


def calibration_rows(estimated: np.ndarray, count: int) -> np.ndarray:
    """`count` rows spread evenly over the range of `estimated` (fastest and slowest included)."""
    order = np.argsort(estimated, kind="stable")
    picks = np.unique(np.round(np.linspace(0, len(order) - 1, count)).astype(int))
    return order[picks]


def fit_calibration(estimated: np.ndarray, measured: np.ndarray, specs: Sequence[str], rows: np.ndarray) -> Calibration:
    """Least squares of `measured` on `estimated` over `rows`: relative errors weighted equally."""
    if len(rows) < 2:
        raise LutValidationError("a calibration needs at least 2 measured subnets")
    x, y = estimated[rows], measured[rows]
    # Minimise relative, not absolute, error: divide each equation by its measured latency.
    design = np.stack([x / y, 1.0 / y], axis=1)
    (scale, offset), *_ = np.linalg.lstsq(design, np.ones_like(y), rcond=None)
    return Calibration(float(scale), float(offset), tuple(specs[int(r)] for r in rows))


@dataclass(frozen=True)
class Offender:
    spec: str
    estimated_ms: float
    measured_ms: float
    error: float
    calibrated_error: float | None


@dataclass(frozen=True)
class LutValidation:
    """A lookup table's estimates against one device's measured entries."""

    lut: str
    device: str
    entries: int
    raw: Agreement
    calibration: Calibration | None
    calibrated: Agreement | None
    worst: tuple[Offender, ...]


def validate_lut(
    lut: LookupTable, entries: Sequence[Entry], calibrate: int = DEFAULT_CALIBRATION_SUBNETS, worst: int = 10
) -> LutValidation:
    """Compare `lut`'s layer sums with the measured `entries` (one device, one width, one family).

    `calibrate` subnets (0: none) spread over the latency range fit the
    calibration; the calibrated figures cover the remaining subnets.
    """
    if not entries:
        raise LutValidationError(
            "the table has no subnet entries to validate against; profile some subnets into it first")
    devices = {e.device_id for e in entries}
    widths = {e.key.width for e in entries}
    families = {get_space(e.key.space).family.name for e in entries}
    if len(devices) > 1:
        raise LutValidationError(f"entries of {len(devices)} devices; choose one device", option="device_id")
    if len(widths) > 1 or len(families) > 1:
        raise LutValidationError(
            f"entries of several widths {sorted(widths)} or families {sorted(families)}; choose one space and width",
            option=("space", "width"),
        )
    width = widths.pop()
    missing = sorted({e.key.resolution for e in entries} - set(lut.resolutions))
    if missing:
        raise LutError(
            f"LUT {lut.name} has no table for resolution(s) {', '.join(map(str, missing))} "
            f"(it has {', '.join(map(str, lut.resolutions))}); measure the layers at those resolutions"
        )
    specs: list[SubnetSpec] = [parse_spec(e.key.spec) for e in entries]
    estimated = lut.predictor(specs[0].space, width).predict_many(specs)
    measured = np.array([e.median_ms for e in entries])
    raw = agreement(estimated, measured)
    names = [str(spec) for spec in specs]
    calibration = calibrated = None
    corrected = None
    if calibrate:
        if len(entries) < calibrate + 2:
            raise LutValidationError(
                f"{len(entries)} entries are too few to fit a calibration on {calibrate} and check it on the rest; "
                "profile more subnets or calibrate on none (0)", option="calibrate",
            )
        rows = calibration_rows(estimated, calibrate)
        calibration = fit_calibration(estimated, measured, names, rows)
        corrected = calibration.apply(estimated)
        held_out = np.setdiff1d(np.arange(len(entries)), rows)
        calibrated = agreement(corrected[held_out], measured[held_out])
    errors = estimated / measured - 1.0
    offenders = tuple(
        Offender(names[r], float(estimated[r]), float(measured[r]), float(errors[r]),
                 None if corrected is None else float(corrected[r] / measured[r] - 1.0))
        for r in np.argsort(-np.abs(errors), kind="stable")[:worst]
    )
    return LutValidation(lut.name, entries[0].device, len(entries), raw, calibration, calibrated, offenders)
