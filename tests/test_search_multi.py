"""One search over several latency sources: the most accurate subnet that meets every source's target at once,
exact (against a subnet-by-subnet search of the tables), found by evolution too; the Pareto front over more
than two objectives; the results files; and the inputs refused in one line before anything is written."""

from __future__ import annotations

import csv
import json
from itertools import product
from pathlib import Path

import fake_device  # noqa: F401  (registers the "fake" backend)
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run
from search_tables import FAST, RESOLUTION, accuracy_of_every_subnet, best_by_hand, entries, lut_table, metered_table

from compofa.devices import Settings
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.evolution import EvolutionConfig
from compofa.search.exhaustive import pareto_front_nd
from compofa.search.latency import LutLatency, TableLatency
from compofa.search.predictor import AccuracyPredictor, PredictorAccuracy
from compofa.search.results import CSV_FIELDS, read_result
from compofa.search.run import SearchError, SearchRequest, search
from compofa.search.targets import InfeasibleTargetError, Target, TargetError, parse_joint_targets
from compofa.sources.subnet import SubnetSource
from compofa.space import get_space, parse_spec

ACCURACY = PredictorAccuracy(AccuracyPredictor.shipped(), "compofa", 1.2)


@pytest.fixture(scope="module")
def tables(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.getbasetemp()
    return metered_table(root), lut_table(root)


def sources(xeon: Path, phone: Path) -> list[TableLatency]:
    return [TableLatency(xeon, "compofa", 1.2), TableLatency(phone, "compofa", 1.2)]


def dominated_by_brute_force(costs: np.ndarray) -> set[int]:
    """Rows some other row is no worse than everywhere and better than somewhere, or equal to an earlier row."""
    out = set()
    for row, other in product(range(len(costs)), repeat=2):
        if row == other:
            continue
        no_worse, better = (costs[other] <= costs[row]).all(), (costs[other] < costs[row]).any()
        if no_worse and (better or other < row):
            out.add(row)
    return out


@pytest.mark.parametrize("objectives", [2, 3, 4])
def test_pareto_front_nd_is_exactly_the_undominated_rows(objectives: int) -> None:
    rng = np.random.default_rng(objectives)
    costs = rng.integers(0, 6, (200, objectives)).astype(float)  # few values: many ties and duplicates
    front = pareto_front_nd(costs)
    assert len(set(front.tolist())) == len(front)
    assert set(front.tolist()) == set(range(len(costs))) - dominated_by_brute_force(costs)
    assert [tuple(costs[r]) for r in front] == sorted(tuple(costs[r]) for r in front)


def test_joint_targets_parse_one_per_source() -> None:
    assert parse_joint_targets(("15,20", "25"), 1) == ((Target(15),), (Target(20),), (Target(25),))
    assert parse_joint_targets(("20,35", "50%,p90:40"), 2) == (
        (Target(20), Target(35)), (Target(50, relative=True), Target(40, metric="p90")))
    with pytest.raises(TargetError, match="2 comma-separated values, one per source"):
        parse_joint_targets(("20,35,40",), 2)
    with pytest.raises(TargetError, match="median, p90 or p99"):
        parse_joint_targets(("p95:20",), 1)


def test_joint_search_is_the_subnet_by_subnet_best_on_both_tables(tables: tuple[Path, Path]) -> None:
    xeon, phone = tables
    on_xeon, on_phone = entries(xeon), entries(phone)
    xeon_ms = {spec: e.median_ms for spec, e in on_xeon.items()}
    phone_ms = {spec: e.median_ms for spec, e in on_phone.items()}
    joint = [(Target(4.0), Target(30.0)), (Target(5.0), Target(25.0)), (Target(50, True), Target(50, True))]
    report = search(SearchRequest("compofa", 1.2, tuple(joint), (RESOLUTION,)), ACCURACY, sources(xeon, phone))
    spans = [(min(v.values()), max(v.values())) for v in (xeon_ms, phone_ms)]
    for (on_a, on_b), result in zip(joint, report.results):
        limit_a, limit_b = on_a.resolve(*spans[0]), on_b.resolve(*spans[1])
        fits = {spec: xeon_ms[spec] <= limit_a and phone_ms[spec] <= limit_b for spec in xeon_ms}
        assert str(result.spec) == best_by_hand(fits, xeon_ms)
        assert [r.target_value for r in result.readings] == pytest.approx([limit_a, limit_b])
        xeon_reading, phone_reading = result.readings
        chosen = on_xeon[str(result.spec)]
        assert (xeon_reading.latency_ms, xeon_reading.latency_ci_low_ms, xeon_reading.latency_ci_high_ms) == (
            chosen.median_ms, chosen.ci_low_ms, chosen.ci_high_ms)
        assert xeon_reading.values["peak_memory_mb"] == chosen.peak_memory_mb
        assert phone_reading.latency_ms == on_phone[str(result.spec)].median_ms and phone_reading.latency_ms <= limit_b
        assert "memory" in phone_reading.absent and "peak_memory_mb" not in phone_reading.values
    alone = [search(SearchRequest("compofa", 1.2, (t,), (RESOLUTION,)), ACCURACY, s).results[0]
             for t, s in zip(joint[0], sources(xeon, phone))]
    assert max(r.accuracy for r in alone) > report.results[0].accuracy  # the joint target binds


def test_a_lookup_table_serves_as_well_as_its_table(tables: tuple[Path, Path]) -> None:
    """The Note10 LUT and the table the lut device wrote from it are the same source: the same joint picks."""
    xeon, phone = tables
    request = SearchRequest("compofa", 1.2, ((Target(4.5), Target(28.0)), (Target(30, True), Target(60, True))),
                            (RESOLUTION,))
    by_table = search(request, ACCURACY, sources(xeon, phone))
    by_lut = search(request, ACCURACY, [TableLatency(xeon, "compofa", 1.2), LutLatency("note10", "compofa", 1.2)])
    assert [r.spec for r in by_lut.results] == [r.spec for r in by_table.results]


def test_evolution_finds_the_exact_joint_optimum(tables: tuple[Path, Path]) -> None:
    xeon, phone = tables
    joint = ((Target(4.0), Target(30.0)), (Target(25, True), Target(75, True)))
    exact = search(SearchRequest("compofa", 1.2, joint, (RESOLUTION,)), ACCURACY, sources(xeon, phone))
    evolved = search(SearchRequest("compofa", 1.2, joint, (RESOLUTION,), "evolution",
                                   evolution=EvolutionConfig(generations=60)), ACCURACY, sources(xeon, phone))
    for best, found in zip(exact.results, evolved.results):
        assert found.strategy == "evolution" and found.accuracy == pytest.approx(best.accuracy)
        assert all(r.latency_ms <= r.target_value for r in found.readings)
    with pytest.raises(InfeasibleTargetError, match=r"no subnet meets every limit at once \(.* <= 2.1 ms: 0 of 243"):
        search(SearchRequest("compofa", 1.2, ((Target(2.1), Target(11.0)),), (RESOLUTION,)), ACCURACY,
               sources(xeon, phone))


def test_the_front_over_four_objectives_is_the_undominated_candidates(tables: tuple[Path, Path]) -> None:
    """Accuracy, the latency on each device, and the memory the metered device reads for every subnet."""
    xeon, phone = tables
    report = search(SearchRequest("compofa", 1.2, ((Target(100, True), Target(100, True)),), (RESOLUTION,)),
                    ACCURACY, sources(xeon, phone))
    assert report.pareto_objectives == ["accuracy (max)", f"latency_ms table:{xeon} (min)",
                                        f"latency_ms table:{phone} (min)", f"peak_memory_mb table:{xeon} (min)"]
    accuracy = accuracy_of_every_subnet()
    on_xeon, on_phone = entries(xeon), entries(phone)
    specs = sorted(accuracy)
    costs = np.array([(-accuracy[s], on_xeon[s].median_ms, on_phone[s].median_ms, on_xeon[s].peak_memory_mb)
                      for s in specs])
    expected = {specs[row] for row in set(range(len(specs))) - dominated_by_brute_force(costs)}
    assert {point["spec"] for point in report.pareto} == expected and len(expected) > 10
    for point in report.pareto:
        spec = str(point["spec"])
        assert point["latencies_ms"] == [on_xeon[spec].median_ms, on_phone[spec].median_ms]
        assert point["peak_memory_mb"] == [on_xeon[spec].peak_memory_mb, None]
    three = costs[:, :3]  # without memory (the phone's table has none): a front of its own, smaller
    assert len(set(range(len(specs))) - dominated_by_brute_force(three)) < len(expected)


def test_cli_writes_every_source_s_latency_and_export_finds_the_joint_target(tables: tuple[Path, Path],
                                                                           tmp_path: Path) -> None:
    xeon, phone = tables
    output, table_file = tmp_path / "r.json", tmp_path / "r.csv"
    args = ("search", "--latency", f"table:{xeon}", "--latency", f"table:{phone}", "--target", "4,30",
            "--target", "50%,50%")
    result = run(*args, "-o", str(output))
    assert result.exit_code == 0, result.output
    assert f"latency ms (table:{phone})" in result.output and "Pareto front:" in result.output
    data = json.loads(output.read_text())
    assert data["latency_sources"] == [f"table:{xeon}", f"table:{phone}"] and data["latency_units"] == ["ms", "ms"]
    first = data["results"][0]
    assert first["target"] == "4,30" and first["target_ms"] is None and first["latency_ms"] is None
    assert [reading["source"] for reading in first["sources"]] == data["latency_sources"]
    assert [reading["target_ms"] for reading in first["sources"]] == [4.0, 30.0]
    assert all(reading["latency_ms"] <= reading["target_ms"] for reading in first["sources"])
    assert data["pareto"] and all(len(point["latencies_ms"]) == 2 for point in data["pareto"])
    assert read_result(output, "4,30") == (parse_spec(first["spec"]), 1.2)
    assert read_result(output, "50%,50%")[0] == parse_spec(data["results"][1]["spec"])

    assert run(*args, "-o", str(table_file)).exit_code == 0
    rows = list(csv.DictReader(table_file.open()))
    assert [row["spec"] for row in rows] == [r["spec"] for r in data["results"]]
    assert rows[0]["source_2"] == f"table:{phone}"
    assert float(rows[0]["latency_ms_2"]) == first["sources"][1]["latency_ms"]
    assert rows[0]["target_ms"] == "" and read_result(table_file, "4,30")[0] == parse_spec(first["spec"])


def test_one_source_keeps_its_results_form(tables: tuple[Path, Path], tmp_path: Path) -> None:
    xeon, _ = tables
    output, table_file = tmp_path / "r.json", tmp_path / "r.csv"
    assert run("search", "--latency", f"table:{xeon}", "--target", "4,5", "-o", str(output)).exit_code == 0
    data = json.loads(output.read_text())
    assert {tuple(sorted(point)) for point in data["pareto"]} == {("accuracy", "latency_ms", "spec")}
    assert "pareto_objectives" not in data and data["results"][0]["target_ms"] == 4.0
    assert run("search", "--latency", f"table:{xeon}", "--target", "4,5", "-o", str(table_file)).exit_code == 0
    with table_file.open() as handle:
        assert tuple(next(csv.reader(handle))) == CSV_FIELDS


def small_table(path: Path, space: str, width: float, resolution: int, count: int, seed: int = 0) -> Path:
    specs = tuple(get_space(space).sample_many(np.random.default_rng(seed), count, [resolution]))
    profile_space(ProfileRequest(path, "fake", SubnetSource(space, width, cache_dir=path.parent / "cache"),
                                 (resolution,), Settings(), FAST, specs=specs))
    return path


@pytest.fixture(scope="module")
def mismatched(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("mismatched")
    return {"width": small_table(root / "w1.db", "compofa", 1.0, RESOLUTION, 5),
            "space": small_table(root / "ofa.db", "ofa-mbv3", 1.2, RESOLUTION, 3),
            "resolution": small_table(root / "r160.db", "compofa", 1.2, 160, 5)}


@pytest.mark.parametrize(("case", "extra", "fragments"), [
    ("width", (), ("holds compofa at width 1.2 but", "holds compofa at width 1:", "--latency")),
    ("space", (), ("holds compofa at width 1.2 but", "holds ofa-mbv3 at width 1.2")),
    ("resolution", (), ("share no resolution", "160 px", "224 px", "--resolution")),
    ("targets", ("--target", "4,30,2"), ("3 in '4,30,2'", "--target")),
    ("bucket", ("--bucket", "auto"), ("give a width in ms",)),
    ("device-id", ("--device-id", "1", "--device-id", "1", "--device-id", "1"), ("--device-id is given 3 times",)),
])
def test_bad_multi_source_input_is_one_line_and_writes_nothing(
    tables: tuple[Path, Path], mismatched: dict[str, Path], tmp_path: Path, case: str, extra: tuple[str, ...],
    fragments: tuple[str, ...],
) -> None:
    xeon, phone = tables
    second = mismatched.get(case, phone)
    output = tmp_path / "r.json"
    targets = extra if case == "targets" else ("--target", "4,30", *extra)
    result = run("search", "--latency", f"table:{xeon}", "--latency", f"table:{second}", *targets, "-o", str(output))
    assert_one_line_error(result, *fragments)
    assert not output.exists()


def test_a_joint_target_of_the_wrong_size_is_refused_by_the_library(tables: tuple[Path, Path]) -> None:
    xeon, phone = tables
    with pytest.raises(SearchError, match="one target per latency source"):
        search(SearchRequest("compofa", 1.2, (Target(4.0),), (RESOLUTION,)), ACCURACY, sources(xeon, phone))


def test_enumerated_candidates_are_every_subnet_both_tables_hold(tables: tuple[Path, Path]) -> None:
    xeon, phone = tables
    report = search(SearchRequest("compofa", 1.2, ((Target(100, True), Target(100, True)),), (RESOLUTION,)),
                    ACCURACY, sources(xeon, phone))
    assert report.candidates == len(enumerate_batch("compofa", (RESOLUTION,))) == 243
    assert report.measured == 243 and report.missing == 0
    assert ArchBatch.from_specs([report.results[0].spec]).resolution[0] == RESOLUTION


def test_partial_tables_that_share_no_subnet(mismatched: dict[str, Path], tmp_path: Path) -> None:
    """Each table meets its target alone, but no subnet is in both: exhaustive search says they share none,
    evolution that it found none meeting both, and why (what each table holds)."""
    other = small_table(tmp_path / "other.db", "compofa", 1.2, 160, 5, seed=1)
    first = mismatched["resolution"]
    assert not set(entries(first)) & set(entries(other))
    partial = [TableLatency(first, "compofa", 1.2, complete=False), TableLatency(other, "compofa", 1.2, complete=False)]
    joint = ((Target(100, True), Target(100, True)),)
    with pytest.raises(SearchError, match="share an entry for none of the compofa subnets at 160 px"):
        search(SearchRequest("compofa", 1.2, joint, (160,)), ACCURACY, partial)
    with pytest.raises(InfeasibleTargetError) as raised:
        search(SearchRequest("compofa", 1.2, joint, (160,), "evolution",
                             evolution=EvolutionConfig(generations=5, max_rejections=2000)), ACCURACY, partial)
    message = str(raised.value)
    assert "evolution found no subnet meeting every limit at once" in message and "\n" not in message
    assert f"table:{first} holds 5 of the 243 configurations at 160 px" in message
