"""The report's summary warnings and figure conventions, on values built here (no profiling: fast).

The picks, taus and the partial-table warning are checked on a real report in tests/test_report.py.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pytest

from compofa.report import plots
from compofa.report.design import Buckets, BucketSample
from compofa.report.noise import NoiseReport
from compofa.report.pareto import Cloud, no_interval
from compofa.report.series import TableSeries
from compofa.report.summary import entry_warnings, unresolved_warning
from compofa.tables.store import Entry, EntryKey

#: The figure checks draw (matplotlib is the report extra's; without it the report leaves figures out).
DRAWS = pytest.mark.skipif(not plots.available(), reason="drawing needs matplotlib: pip install 'compofa[report]'")
SPECS = ("compofa-r160-a", "compofa-r160-b", "compofa-r160-c")


def front_cloud(low: list[float], high: list[float]) -> Cloud:
    """Three subnets, each faster and less accurate than the next: all on the front."""
    latency = (np.array(low) + np.array(high)) / 2
    return Cloud("compofa", "measured", latency, np.array([0.70, 0.72, 0.74]), SPECS, np.array([0, 1, 2]),
                 np.array(low), np.array(high))


def test_a_front_whose_adjacent_intervals_overlap_is_not_resolved() -> None:
    cloud = front_cloud([1.0, 1.9, 3.0], [1.2, 2.1, 3.2])
    assert unresolved_warning("t: fake", cloud) is None  # every step is wider than the intervals
    cloud = front_cloud([1.0, 1.9, 2.05], [1.2, 2.1, 2.25])  # b's and c's intervals overlap (2.05 < 2.1)
    warning = unresolved_warning("t: fake", cloud)
    assert warning is not None and warning.kind == "unresolved"
    assert "1 of the 2 steps of the compofa front" in warning.text
    assert "compofa-r160-b (1.900-2.100 ms) and compofa-r160-c" in warning.text
    assert "compofa-r160-a" not in warning.text
    estimated = dataclasses.replace(cloud, latency_low=no_interval(3), latency_high=no_interval(3))
    assert not estimated.measured and unresolved_warning("lut", estimated) is None  # a LUT has no intervals


def entry(spec: str, median: float, half_width: float, stable: bool = True, reason: str = "converged") -> Entry:
    key = EntryKey("compofa", 1.2, spec, 160, 1, "fp32")
    return Entry(device_id=1, device="fake", key=key, n=100, median_ms=median, mean_ms=median, std_ms=0.1,
                 p10_ms=median, p90_ms=median, iqr_ms=0.1, mad_ms=0.1, min_ms=median, max_ms=median,
                 ci_low_ms=median - half_width, ci_high_ms=median + half_width, raw_median_ms=median, rounds=5,
                 stable=stable, warnings=(), reason=reason)


def test_unstable_and_unconverged_entries_are_warned_of_widest_first() -> None:
    entries = (entry(SPECS[0], 1.0, 0.01), entry(SPECS[1], 2.0, 0.1, stable=False),
               entry(SPECS[2], 3.0, 0.6, stable=False, reason="noisy"))
    series = TableSeries("t: fake", Path("t.db"), 1, "fake", 1, "fp32", entries)
    (warning,) = entry_warnings(series)
    assert warning.kind == "unstable" and warning.source == "t: fake"
    assert "of 3 entries, 2 unstable (widest: compofa-r160-c (+-20.0%), compofa-r160-b (+-5.0%))" in warning.text
    assert "1 stopped before their interval reached the profiler's target (noisy)" in warning.text
    calm = dataclasses.replace(series, entries=entries[:1])
    assert entry_warnings(calm) == []


@DRAWS
def test_noise_time_axis_fits_the_run() -> None:
    assert plots._time_unit(18.0) == (1.0, "seconds")
    assert plots._time_unit(25 * 60.0) == (60.0, "minutes")
    assert plots._time_unit(5 * 3600.0) == (3600.0, "hours")
    noise = NoiseReport("t: fake", np.array([0.01, 0.02, 0.02]), 0.05, 0.05, (), 0, 0, np.array([0.0, 9.0, 18.0]),
                        np.array([1.0, 1.01, 0.99]), np.array([False, False, True]))
    figure = plots.noise_figure(noise)
    counts, drift = figure.axes
    assert drift.get_xlabel() == "seconds since the first round" and drift.get_xlim()[1] < 20
    ticks = counts.get_yticks()
    assert np.array_equal(ticks, np.round(ticks))  # a count of entries has integer ticks


@DRAWS
def test_cdf_panels_show_accuracy_with_one_legend() -> None:
    rng = np.random.default_rng(0)
    bands = {10.0: 0.70, 15.0: 0.74, 20.0: 0.78, 25.0: 0.80}  # each bucket's accuracies in a 1-point band

    def sample(low: float) -> BucketSample:
        return BucketSample(low, low + 5, rng.uniform(bands[low], bands[low] + 0.01, 8))

    rows = tuple((sample(low), sample(low)) for low in bands)
    figure = plots.cdf_figure(Buckets("lut:note10", 5.0, 8, ("compofa", "ofa-mbv3"), rows, ()))
    panels = [axes for axes in figure.axes if axes.get_visible()]
    assert len(panels) == 4 and len(figure.legends) == 1 and all(axes.get_legend() is None for axes in panels)
    assert figure.get_supxlabel() == "top-1 accuracy (%)"  # accuracy, as every other figure, never error
    for axes, band in zip(panels, bands.values()):  # in percent, each panel spanning its own bucket's band
        low, high = axes.get_xlim()
        assert 100 * band - 0.1 < low and high < 100 * band + 1.1  # a shared axis would span 70-81
