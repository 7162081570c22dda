"""Latency tables with known ground truth for the multi-source and constraint search tests, built once per session.

- `metered_table`: all 243 CompOFA subnets at 224 px on the simulated "fake-metered" device: latency with
  noise, peak memory and energy per inference exactly `metered_device.true_memory_mb` / `true_energy_mj`.
- `lut_table`: the same subnets on the `lut:note10` device (the shipped Samsung Note10 lookup table, exact):
  a phone whose subnets rank differently, and which reads neither memory nor energy.
"""

from __future__ import annotations

import functools
from pathlib import Path

import metered_device  # noqa: F401  (registers the "fake-metered" backend)
from cli_helpers import run

from compofa.devices import Settings
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.profiler import ProfileConfig
from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracyPredictor
from compofa.sources.subnet import SubnetSource
from compofa.space import get_space, parse_spec
from compofa.tables import Entry, LatencyTable

#: Two rounds of 45 samples: enough for a finite upper bound of every p90 (a p99 needs about 400 samples).
FAST = ProfileConfig(round_seconds=0.01, min_samples=45, max_samples=45, min_rounds=2, max_rounds=2)
RESOLUTION = 224


@functools.cache
def metered_table(root: Path, energy: bool = True) -> Path:
    """Every subnet on the metered device; without `energy`, every eighth on one without an energy counter."""
    table = root / ("metered.db" if energy else "no-energy.db")
    options = {"noise": "0.01"} | ({} if energy else {"energy": "absent"})
    specs = None if energy else tuple(get_space("compofa").enumerate([RESOLUTION]))[::8]
    profile_space(ProfileRequest(table, "fake-metered", SubnetSource("compofa", cache_dir=root / "cache"),
                                 (RESOLUTION,), Settings(options=options), FAST, specs=specs))
    return table


@functools.cache
def lut_table(root: Path) -> Path:
    table = root / "phone.db"
    result = run("profile", "--space", "compofa", "--device", "lut:note10", "--resolution", str(RESOLUTION),
                 "--table", str(table), "--quiet")
    assert result.exit_code == 0, result.output
    return table


def entries(table: Path) -> dict[str, Entry]:
    with LatencyTable.open(table) as store:
        return {e.key.spec: e for e in store.entries()}


@functools.cache
def accuracy_of_every_subnet() -> dict[str, float]:
    """The shipped predictor's accuracy of every CompOFA subnet at `RESOLUTION`, one subnet at a time."""
    predictor = AccuracyPredictor.shipped()
    specs = list(get_space("compofa").enumerate([RESOLUTION]))
    return {str(spec): float(predictor.predict(ArchBatch.from_specs([spec]))[0]) for spec in specs}


def best_by_hand(fits: dict[str, bool], ties: dict[str, float]) -> str:
    """The most accurate subnet where `fits`, the lower `ties` value first among equals, subnet by subnet."""
    accuracy = accuracy_of_every_subnet()
    chosen = [spec for spec, ok in fits.items() if ok]
    assert chosen, "no subnet fits: the test asks for an infeasible target"
    return max(chosen, key=lambda spec: (accuracy[spec], -ties[spec]))


def spec_text(spec: str) -> str:
    return str(parse_spec(spec))
