"""Validating a layer lookup table against whole-network measurements."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fake_device  # noqa: F401  (registers the "fake" backend)
from cli_helpers import run
from compofa.devices import Settings
from compofa.lut import LookupTable, LutError
from compofa.profiler import ProfileConfig
from compofa.space import get_space
from compofa.sources.subnet import SubnetSource
from compofa.tables import LatencyTable
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.jobs.lutcheck import (
    LutValidationError,
    agreement,
    calibration_rows,
    fit_calibration,
    validate_lut,
)

FAST = ProfileConfig(round_seconds=0.01, min_samples=10, max_samples=20)



def profiled(tmp_path: Path, device: str, count: int, resolution: int = 160, width: float | None = None,
             name: str = "t.db") -> Path:
    table = tmp_path / name
    specs = tuple(list(get_space("compofa").enumerate([resolution]))[:: 243 // count][:count])
    source = SubnetSource("compofa", width, cache_dir=tmp_path / "cache")
    profile_space(ProfileRequest(table, device, source, (resolution,), Settings(), FAST, specs=specs))
    return table


def test_agreement_figures() -> None:
    measured = np.array([10.0, 10.0, 10.0, 10.0])
    estimated = np.array([10.0, 10.3, 9.2, 12.0])  # errors 0, +3%, -8%, +20%
    figures = agreement(estimated, measured)
    assert figures.count == 4
    assert figures.rmspe == pytest.approx(np.sqrt((0 + 0.03**2 + 0.08**2 + 0.2**2) / 4))
    assert figures.within_5 == 0.5 and figures.within_10 == 0.75
    assert figures.median_error == pytest.approx((0.0 + 0.03) / 2)
    with pytest.raises(LutValidationError):
        agreement(np.array([1.0]), np.array([0.0]))


def test_calibration_recovers_a_linear_relation_and_spans_the_range() -> None:
    rng = np.random.default_rng(0)
    estimated = rng.uniform(5, 30, 50)
    measured = 1.07 * estimated + 0.4
    rows = calibration_rows(estimated, 6)
    assert len(rows) == 6 and estimated[rows].min() == estimated.min() and estimated[rows].max() == estimated.max()
    fit = fit_calibration(estimated, measured, [f"s{i}" for i in range(50)], rows)
    assert fit.scale == pytest.approx(1.07) and fit.offset_ms == pytest.approx(0.4)
    np.testing.assert_allclose(fit.apply(estimated), measured)
    assert fit.fitted_on == tuple(f"s{i}" for i in rows)


def test_a_table_measured_through_the_lut_agrees_exactly(tmp_path: Path) -> None:
    table = profiled(tmp_path, "lut:note10", 12)
    with LatencyTable.open(table) as store:
        entries = store.entries()
    result = validate_lut(LookupTable.shipped("note10"), entries, calibrate=4, worst=3)
    assert result.entries == 12 and result.raw.rmspe < 1e-9 and result.raw.within_5 == 1.0
    assert result.raw.kendall_tau == pytest.approx(1.0)
    assert result.calibration is not None and result.calibration.scale == pytest.approx(1.0)
    assert result.calibrated is not None and result.calibrated.count == 8 and result.calibrated.rmspe < 1e-6
    assert len(result.worst) == 3


def test_a_biased_device_is_fixed_by_calibration(tmp_path: Path) -> None:
    """The fake device's latency is linear in MACs, the LUT's is not: calibration can only help."""
    table = profiled(tmp_path, "fake", 20)
    with LatencyTable.open(table) as store:
        entries = store.entries()
    result = validate_lut(LookupTable.shipped("note10"), entries, calibrate=6)
    assert result.calibrated is not None and result.calibrated.rmspe < result.raw.rmspe
    assert result.worst[0].error == max((o.error for o in result.worst), key=abs)


def test_what_cannot_be_validated(tmp_path: Path) -> None:
    lut = LookupTable.shipped("note10")
    with pytest.raises(LutValidationError, match="no subnet entries"):
        validate_lut(lut, [])
    low = profiled(tmp_path, "fake", 3, resolution=128, name="low.db")
    with LatencyTable.open(low) as store, pytest.raises(LutError, match="resolution"):
        validate_lut(lut, store.entries(), calibrate=0)
    narrow = profiled(tmp_path, "fake", 3, width=1.0, name="narrow.db")
    with LatencyTable.open(narrow) as store, pytest.raises(LutError, match="width"):
        validate_lut(lut, store.entries(), calibrate=0)
    few = profiled(tmp_path, "fake", 5, name="few.db")
    with LatencyTable.open(few) as store, pytest.raises(LutValidationError, match="too few"):
        validate_lut(lut, store.entries(), calibrate=8)


def test_cli_lut_validate(tmp_path: Path) -> None:
    table = profiled(tmp_path, "fake", 20)
    result = run("lut", "validate", "--lut", "note10", "--table", str(table), "--calibrate", "5")
    assert result.exit_code == 0, result.output
    assert "RMSPE" in result.output and "calibrated" in result.output and "worst offenders" in result.output
    data = json.loads(run("lut", "validate", "--lut", "note10", "--table", str(table), "--json").output)
    assert data["raw"]["count"] == 20 and data["calibrated"]["count"] == 12 and len(data["worst"]) == 10
    bad = run("lut", "validate", "--lut", str(tmp_path / "nowhere"), "--table", str(table))
    assert bad.exit_code == 2 and bad.stderr.startswith("error: ") and len(bad.stderr.strip().splitlines()) == 1
