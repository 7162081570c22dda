"""Constraints beyond the median: targets on the p90 or p99, peak memory and energy limits, checked against a
subnet-by-subnet search of a table with known memory and energy; a source without a quantity is an error that
says why, never a limit passed; units that cannot be read are one line and nothing written."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run
from metered_device import ABSENT_ENERGY, true_energy_mj, true_memory_mb
from search_tables import RESOLUTION, accuracy_of_every_subnet, best_by_hand, entries, lut_table, metered_table

from compofa.search.constraints import Limit, parse_limits, parse_quantity
from compofa.search.evolution import EvolutionConfig
from compofa.search.exhaustive import pareto_front_nd
from compofa.search.latency import LutLatency, MetricUnavailableError, TableLatency
from compofa.search.predictor import AccuracyPredictor, PredictorAccuracy
from compofa.search.run import SearchRequest, search
from compofa.search.targets import FitRule, InfeasibleTargetError, Target, TargetError
from compofa.space import parse_spec

ACCURACY = PredictorAccuracy(AccuracyPredictor.shipped(), "compofa", 1.2)


@pytest.fixture(scope="module")
def xeon(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return metered_table(tmp_path_factory.getbasetemp())


def request(*targets: Target, limits: tuple[Limit, ...] = (), **changes: object) -> SearchRequest:
    return SearchRequest("compofa", 1.2, targets, (RESOLUTION,), limits=limits, **changes)  # type: ignore[arg-type]


@pytest.mark.parametrize(("text", "metric", "value"), [
    ("300MB", "memory", 300.0), ("2GB", "memory", 2000.0), ("1000B", "memory", 0.001), ("512KiB", "memory", 0.524288),
    ("1GiB", "memory", 1073.741824), ("1.5 MiB", "memory", 1.572864), ("64KB", "memory", 0.064),
    ("5mJ", "energy", 5.0), ("250uJ", "energy", 0.25), ("0.01J", "energy", 10.0), ("2e3uJ", "energy", 2.0),
])
def test_quantities_read_in_their_units(text: str, metric: str, value: float) -> None:
    assert parse_quantity(text, metric) == pytest.approx(value, rel=1e-12)


@pytest.mark.parametrize(("text", "metric"), [("300", "memory"), ("300XB", "memory"), ("MB", "memory"),
                                              ("-3MB", "memory"), ("5mj", "energy"), ("5 W", "energy"),
                                              ("5MB", "energy")])
def test_quantities_without_a_known_unit_are_refused_naming_the_units(text: str, metric: str) -> None:
    with pytest.raises(TargetError) as raised:
        parse_quantity(text, metric)
    units = "B, KB, MB, GB, KiB, MiB, GiB" if metric == "memory" else "uJ, µJ, mJ, J"
    assert units in str(raised.value) and raised.value.option == (f"max_{metric}",)


def test_limits_hold_on_every_source_or_one_each() -> None:
    assert parse_limits("300MB", "memory", 2) == (Limit("memory", 300.0, None, "300MB"),)
    assert parse_limits("300MB,-", "memory", 2) == (Limit("memory", 300.0, 0, "300MB"),)
    assert parse_limits("-,1J", "energy", 2) == (Limit("energy", 1000.0, 1, "1J"),)
    assert parse_limits(None, "energy", 2) == ()
    with pytest.raises(TargetError, match="one per source"):
        parse_limits("1MB,2MB,3MB", "memory", 2)
    with pytest.raises(TargetError, match="must be positive"):
        parse_limits("0MB", "memory", 1)


def test_memory_and_energy_limits_pick_the_subnet_by_subnet_best(xeon: Path) -> None:
    on_xeon = entries(xeon)
    for spec, entry in on_xeon.items():  # the table holds what the device read: the known values exactly
        assert entry.peak_memory_mb == true_memory_mb(parse_spec(spec)) and entry.absent == {}
        assert entry.energy_mj == pytest.approx(true_energy_mj(parse_spec(spec)), rel=1e-5)
    median = {spec: e.median_ms for spec, e in on_xeon.items()}
    memory = {spec: e.peak_memory_mb or math.inf for spec, e in on_xeon.items()}
    energy = {spec: e.energy_mj or math.inf for spec, e in on_xeon.items()}
    memory_limit = sorted(memory.values())[60]
    energy_limit = sorted(energy.values())[150]
    limits = (Limit("memory", memory_limit), Limit("energy", energy_limit))
    report = search(request(Target(6.0), Target(7.0), limits=limits), ACCURACY, TableLatency(xeon, "compofa", 1.2))
    for target, result in zip((6.0, 7.0), report.results):
        fits = {s: median[s] <= target and memory[s] <= memory_limit and energy[s] <= energy_limit for s in median}
        assert str(result.spec) == best_by_hand(fits, median)
        reading = result.readings[0]
        assert reading.values["peak_memory_mb"] == memory[str(result.spec)] <= memory_limit
        assert reading.values["energy_mj"] == energy[str(result.spec)] <= energy_limit
    unlimited = search(request(Target(7.0)), ACCURACY, TableLatency(xeon, "compofa", 1.2)).results[0]
    assert unlimited.accuracy > report.results[1].accuracy  # the limits bind
    assert [limit["metric"] for limit in report.limits] == ["memory", "energy"] and report.beyond_median


def test_targets_on_the_p90_and_its_upper_bound(xeon: Path) -> None:
    on_xeon = entries(xeon)
    median = {spec: e.median_ms for spec, e in on_xeon.items()}
    p90 = {spec: e.p90_ms for spec, e in on_xeon.items()}
    p90_high = {spec: e.p90_ci_high_ms for spec, e in on_xeon.items()}
    assert all(value is not None and math.isfinite(value) for value in p90_high.values())
    source = TableLatency(xeon, "compofa", 1.2)
    report = search(request(Target(5.0, metric="p90"), Target(50, True, "p90")), ACCURACY, source)
    low, high = min(p90.values()), max(p90.values())  # type: ignore[type-var]
    for limit, result in zip((5.0, (low + high) / 2), report.results):  # type: ignore[operator]
        assert str(result.spec) == best_by_hand({s: p90[s] <= limit for s in p90}, median)  # type: ignore[operator]
        assert result.readings[0].values["p90_ms"] == p90[str(result.spec)] and result.target == pytest.approx(limit)
    bounded = search(request(Target(5.0, metric="p90"), rule=FitRule(upper_bound=True)), ACCURACY, source).results[0]
    assert str(bounded.spec) == best_by_hand({s: p90_high[s] <= 5.0 for s in p90}, median)  # type: ignore[operator]
    assert bounded.readings[0].values["p90_ci_high_ms"] <= 5.0
    with pytest.raises(InfeasibleTargetError, match="finite upper bound of its p99"):
        search(request(Target(9.0, metric="p99"), rule=FitRule(upper_bound=True)), ACCURACY, source)
    tail = search(request(Target(5.0, metric="p99")), ACCURACY, source).results[0]
    assert "p99_ci_high_ms" not in tail.readings[0].values  # unbounded: left out, never a number


def test_evolution_meets_every_limit_and_finds_the_exact_optimum(xeon: Path) -> None:
    source = TableLatency(xeon, "compofa", 1.2)
    on_xeon = entries(xeon)
    memory_limit = sorted(e.peak_memory_mb or 0 for e in on_xeon.values())[120]
    limits = (Limit("memory", memory_limit), Limit("energy", 4.0))
    targets = (Target(6.0), Target(60, True, "p90"))
    exact = search(request(*targets, limits=limits), ACCURACY, source)
    evolved = search(request(*targets, limits=limits, strategy="evolution",
                             evolution=EvolutionConfig(generations=60)), ACCURACY, source)
    for best, found in zip(exact.results, evolved.results):
        assert found.strategy == "evolution" and found.accuracy == pytest.approx(best.accuracy)
        values = found.readings[0].values
        assert values["peak_memory_mb"] <= memory_limit and values["energy_mj"] <= 4.0


def test_a_source_without_the_quantity_says_why(xeon: Path, tmp_path_factory: pytest.TempPathFactory) -> None:
    root = tmp_path_factory.getbasetemp()
    with pytest.raises(MetricUnavailableError, match="lut:note10 has no peak memory: it gives one latency per subnet"):
        search(request(Target(30.0), limits=(Limit("memory", 300.0),)), ACCURACY, LutLatency("note10", "compofa", 1.2))
    phone = TableLatency(lut_table(root), "compofa", 1.2)  # an estimate: rounds without a reading
    with pytest.raises(MetricUnavailableError, match="has no energy per inference in 243 .* not recorded"):
        search(request(Target(30.0), limits=(Limit("energy", 5.0),)), ACCURACY, phone)
    unmetered = TableLatency(metered_table(root, energy=False), "compofa", 1.2, complete=False)
    with pytest.raises(MetricUnavailableError) as raised:
        search(request(Target(6.0), limits=(Limit("energy", 5.0),)), ACCURACY, unmetered)
    assert ABSENT_ENERGY in str(raised.value) and raised.value.reason == ABSENT_ENERGY
    chosen = search(request(Target(6.0), limits=(Limit("memory", 300.0),)), ACCURACY, unmetered).results[0]
    assert chosen.readings[0].absent == {"energy": ABSENT_ENERGY} and "energy_mj" not in chosen.readings[0].values
    # a limit on one source only: the phone, which reads no memory, is not asked for it
    both = search(request((Target(6.0), Target(40.0)), limits=(Limit("memory", 300.0, 0),)), ACCURACY,
                  [TableLatency(xeon, "compofa", 1.2), phone])
    assert both.results[0].readings[0].values["peak_memory_mb"] <= 300


def test_cli_limits_write_their_readings_and_a_front_with_memory(xeon: Path, tmp_path: Path) -> None:
    output, table_file = tmp_path / "r.json", tmp_path / "r.csv"
    args = ("search", "--latency", f"table:{xeon}", "--target", "p90:6,7", "--max-memory", "0.06GB",
            "--max-energy", "4000uJ")
    result = run(*args, "-o", str(output))
    assert result.exit_code == 0, result.output
    assert "memory MB" in result.output and "energy mJ" in result.output and "p90" in result.output
    data = json.loads(output.read_text())
    assert [(limit["metric"], limit["limit"], limit["given"]) for limit in data["limits"]] == [
        ("memory", pytest.approx(60.0), "0.06GB"), ("energy", pytest.approx(4.0), "4000uJ")]
    first = data["results"][0]
    assert first["target"] == "p90:6" and first["target_ms"] == 6.0
    reading = first["sources"][0]
    assert reading["p90_ms"] <= 6 and reading["peak_memory_mb"] <= 60 and reading["energy_mj"] <= 4
    accuracy = accuracy_of_every_subnet()
    on_xeon = entries(xeon)
    specs = sorted(accuracy)
    costs = [(-accuracy[s], on_xeon[s].median_ms, on_xeon[s].peak_memory_mb) for s in specs]
    expected = {specs[row] for row in pareto_front_nd(np.array(costs))}
    assert {point["spec"] for point in data["pareto"]} == expected
    assert all(set(point) == {"spec", "accuracy", "latency_ms", "peak_memory_mb"} for point in data["pareto"])
    assert data["pareto_objectives"][-1] == f"peak_memory_mb table:{xeon} (min)"
    assert run(*args, "-o", str(table_file)).exit_code == 0
    header = table_file.read_text().splitlines()[0].split(",")
    assert {"p90_ms_1", "peak_memory_mb_1", "energy_mj_1", "target_1"} <= set(header)


@pytest.mark.parametrize(("flags", "fragments"), [
    (("--max-memory", "300XB"), ("cannot read the peak memory limit '300XB'", "B, KB, MB, GB, KiB, MiB, GiB",
                                  "(change --max-memory)")),
    (("--max-memory", "300"), ("give a number and one of the units",)),
    (("--max-energy", "5mj"), ("uJ, µJ, mJ, J", "(change --max-energy)")),
    (("--max-memory", "1MB,2MB"), ("one value for every source or one per source (1)",)),
    (("--target", "p95:20"), ("median, p90 or p99", "(change --target)")),
    (("--max-energy", "5mJ"), ("lut:note10 has no energy per inference",)),
])
def test_bad_constraints_are_one_line_and_write_nothing(tmp_path: Path, flags: tuple[str, ...],
                                                        fragments: tuple[str, ...]) -> None:
    output = tmp_path / "r.json"
    targets = () if "--target" in flags else ("--target", "20")
    result = run("search", "--latency", "lut:note10", *targets, *flags, "-o", str(output))
    assert_one_line_error(result, *fragments)
    assert not output.exists()
