"""Search end to end: latency sources, exhaustive optimality, noise-aware targets, results files,
the `compofa search` command and exporting what it chose."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import numpy as np
import pytest

import fake_device  # noqa: F401  (registers the "fake" backend)
from cli_helpers import assert_one_line_error, run
from compofa.devices import Settings
from compofa.lut import LookupTable
from compofa.profiler import ProfileConfig
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.exhaustive import Scored, best_per_target, pareto_front
from compofa.search.latency import FlopsLatency, LatencyEstimates, LatencySourceError, LutLatency, TableLatency, latency_source
from compofa.search.predictor import AccuracyPredictor
from compofa.search.results import ResultsError, read_result
from compofa.search.run import SearchRequest, search
from compofa.errors import CompofaError
from compofa.search.targets import FitRule, InfeasibleTargetError, Target, parse_targets
from compofa.space import SEARCH_RESOLUTIONS, get_space, parse_spec
from compofa.space.cost import network_cost
from compofa.space.plan import plan_subnet
from compofa.supernet import load_subnet
from compofa.tables import LatencyTable
from compofa.tables.store import TableMismatchError
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.sources.subnet import SubnetSource
from fake_device import true_latency_ms

FAST = ProfileConfig(round_seconds=0.01, min_samples=10, max_samples=20)
NOTE10_TARGETS = "15,20,25,30"




def random_batch(space: str, count: int, seed: int) -> ArchBatch:
    design = get_space(space)
    rng = np.random.default_rng(seed)
    return ArchBatch.from_specs([design.sample(rng, design.search_resolutions) for _ in range(count)])


# -- latency sources -----------------------------------------------------------------------------


@pytest.mark.parametrize("space", ["compofa", "ofa-mbv3", "compofa-proxyless"])
def test_flops_source_is_the_network_cost(space: str) -> None:
    width = get_space(space).family.default_width
    batch = random_batch(space, 40, 1)
    expected = [network_cost(plan_subnet(spec, width)).macs / 1e6 for spec in batch.specs()]
    estimates = FlopsLatency(space, width).latency(batch)
    np.testing.assert_allclose(estimates.median, expected, rtol=1e-9)
    assert (estimates.ci_low == estimates.median).all() and (estimates.ci_high == estimates.median).all()


@pytest.mark.parametrize("space", ["compofa", "ofa-mbv3"])
def test_lut_source_is_the_layer_sum_of_every_subnet(space: str) -> None:
    """The vectorized layer sum equals the lookup table's own per-subnet sum."""
    batch = random_batch(space, 60, 2)
    expected = LookupTable.shipped("note10").predict_many(batch.specs(), 1.2)
    np.testing.assert_allclose(LutLatency("note10", space, 1.2).latency(batch).median, expected, rtol=1e-9)


def test_unknown_latency_source_is_refused() -> None:
    for text in ("bogus", "table:", "lut", "device:"):
        with pytest.raises(LatencySourceError, match="unknown latency source"):
            latency_source(text, "compofa", 1.2)


def profiled_table(tmp_path: Path, specs: list, noise: str = "0.01") -> Path:  # type: ignore[type-arg]
    table = tmp_path / "latency.db"
    profile_space(ProfileRequest(table, "fake", SubnetSource("compofa", cache_dir=tmp_path / "cache"), (160,),
                                 Settings(options={"noise": noise}), FAST, specs=tuple(specs)))
    return table


def test_table_source_reads_entries_and_names_a_miss(tmp_path: Path) -> None:
    specs = list(get_space("compofa").enumerate([160]))[:5]
    table = profiled_table(tmp_path, specs)
    source = TableLatency(table, "compofa", 1.2)
    estimates = source.latency(ArchBatch.from_specs(specs))
    truth = np.array([true_latency_ms(spec) for spec in specs])
    assert (estimates.ci_low <= estimates.median).all() and (estimates.median <= estimates.ci_high).all()
    np.testing.assert_allclose(estimates.median, truth, rtol=0.05)
    assert source.stats.hits == 5 and source.stats.misses == 0
    missing = list(get_space("compofa").enumerate([160]))[7]
    with pytest.raises(LatencySourceError, match=r"has no entry for .*compofa profile --space compofa"):
        source.latency(ArchBatch.from_specs([missing]))
    with pytest.raises(LatencySourceError, match="no ofa-mbv3 entries"):
        TableLatency(table, "ofa-mbv3", 1.2)


def test_device_source_measures_each_subnet_once_per_fingerprint(tmp_path: Path) -> None:
    """device:NAME measures misses into the table; a later source finds them; another setup measures anew."""
    table = tmp_path / "memo.db"
    specs = list(get_space("compofa").enumerate([160]))[:4]
    batch = ArchBatch.from_specs(specs + specs[:2])  # repeats within a batch are measured once

    def source(noise: str) -> TableLatency:
        settings = Settings(options={"noise": noise})
        return latency_source("device:fake", "compofa", 1.2, settings, table, config=FAST)  # type: ignore[return-value]

    first = source("0.01")
    measured = first.latency(batch)
    assert first.stats.misses == 4 and first.stats.measure_seconds > 0
    again = first.latency(batch)
    np.testing.assert_array_equal(again.median, measured.median)
    assert first.stats.misses == 4 and first.stats.hits == len(batch)

    later = source("0.01")
    np.testing.assert_array_equal(later.latency(batch).median, measured.median)
    assert later.stats.misses == 0

    # Another setup of the device (a different fingerprint) never reuses these measurements: the
    # profiler refuses to mix setups in one table unless told to.
    other_setup = source("0.02")
    with pytest.raises(TableMismatchError, match="different setup"):
        other_setup.latency(ArchBatch.from_specs(specs[:1]))
    with LatencyTable.open(table) as store:
        assert len(store.devices()) == 1 and len(store.entries()) == 4


# -- exhaustive search and targets ---------------------------------------------------------------------------


def test_pareto_front_is_exactly_the_undominated_rows() -> None:
    rng = np.random.default_rng(0)
    accuracy, latency = rng.integers(0, 30, 300).astype(float), rng.integers(0, 30, 300).astype(float)
    front = set(pareto_front(accuracy, latency).tolist())
    for row in range(300):
        dominated = ((latency <= latency[row]) & (accuracy > accuracy[row])).any() or (
            (latency < latency[row]) & (accuracy >= accuracy[row])
        ).any()
        duplicate_kept = any(
            other in front and latency[other] == latency[row] and accuracy[other] == accuracy[row]
            for other in range(row)
        )
        assert (row in front) == (not dominated and not duplicate_kept), row


def exact(values: list[float]) -> LatencyEstimates:
    array = np.array(values)
    return LatencyEstimates(array, array, array)


def test_fit_rules_median_upper_bound_and_buckets() -> None:
    median = LatencyEstimates(np.array([9.0, 10.4, 11.0]), np.array([8.8, 10.2, 10.8]), np.array([9.2, 10.9, 11.3]))
    assert FitRule().fits(median, 10.5).tolist() == [True, True, False]
    assert FitRule(upper_bound=True).fits(median, 10.5).tolist() == [True, False, False]
    # 1 ms buckets: 10.4 shares the target's bucket [10, 11) and ties with it; 11.0 does not
    assert FitRule(bucket=1.0).fits(median, 10.2).tolist() == [True, True, False]
    assert "upper CI bound" in FitRule(upper_bound=True).describe()


def test_best_per_target_is_the_brute_force_best_and_infeasible_states_the_range() -> None:
    batch = enumerate_batch("compofa", (160, 192))
    rng = np.random.default_rng(3)
    scored = Scored(batch, rng.random(len(batch)), exact(list(rng.uniform(5, 50, len(batch)))))
    for target in (6.0, 20.0, 49.0):
        row = best_per_target(scored, target, FitRule(), "ms")
        fits = scored.latency.median <= target
        assert scored.accuracy[row] == scored.accuracy[fits].max()
    with pytest.raises(InfeasibleTargetError) as raised:
        best_per_target(scored, 4.0, FitRule(), "ms")
    message = str(raised.value)
    low, high = scored.latency.median.min(), scored.latency.median.max()
    assert "\n" not in message and f"{low:.3f} ms to {high:.3f} ms" in message


def test_evolution_finds_what_exhaustive_search_proves_optimal() -> None:
    """On the 243-subnet space with the Note10 LUT, evolution's picks equal the exact optimum."""
    latency = LutLatency("note10", "compofa", 1.2)
    from compofa.search.predictor import PredictorAccuracy

    accuracy = PredictorAccuracy(AccuracyPredictor.shipped(), "compofa", 1.2)
    request = SearchRequest("compofa", 1.2, (15.0, 22.0, 30.0), SEARCH_RESOLUTIONS)
    exhaustive = search(request, accuracy, latency)
    evolved = search(SearchRequest("compofa", 1.2, request.targets, SEARCH_RESOLUTIONS, "evolution"), accuracy, latency)
    for best, found in zip(exhaustive.results, evolved.results):
        assert best.strategy == "exhaustive" and found.strategy == "evolution"
        assert found.accuracy == pytest.approx(best.accuracy) and found.latency_ms <= found.target
        assert found.generations and found.trace[-1] == pytest.approx(found.accuracy)
    front = exhaustive.pareto
    assert all(a["latency_ms"] < b["latency_ms"] and a["accuracy"] < b["accuracy"] for a, b in zip(front, front[1:]))


# -- the command ------------------------------------------------------------------------------------


def test_cli_search_writes_json_and_csv_that_export_reads(tmp_path: Path) -> None:
    output = tmp_path / "result.json"
    result = run("search", "--space", "compofa", "--latency", "lut:note10", "--target", NOTE10_TARGETS,
                 "-o", str(output))
    assert result.exit_code == 0, result.output
    assert "compofa-r" in result.output and f"wrote {output}" in result.output
    data = json.loads(output.read_text())
    assert [r["target_ms"] for r in data["results"]] == [15, 20, 25, 30]
    for record in data["results"]:
        spec = parse_spec(record["spec"])
        assert record["ofa"] == spec.to_ofa_dict() and record["latency_ms"] <= record["target_ms"]
        assert 0.7 < record["accuracy"] < 0.9 and record["latency_source"] == "lut:note10"
        assert record["seconds"] >= 0 and record["strategy"] == "exhaustive"
    assert data["candidates"] == 243 * len(SEARCH_RESOLUTIONS) and data["pareto"]

    table = tmp_path / "result.csv"
    assert run("search", "--latency", "lut:note10", "--target", "20", "-o", str(table)).exit_code == 0
    rows = list(csv.DictReader(table.open()))
    assert len(rows) == 1 and rows[0]["spec"] == data["results"][1]["spec"]
    assert json.loads(rows[0]["ofa"]) == data["results"][1]["ofa"]

    assert read_result(output, 20.0) == (parse_spec(data["results"][1]["spec"]), 1.2)
    onnx_file = tmp_path / "chosen.onnx"
    result = run("export", "--result", str(output), "--target", "25", "-o", str(onnx_file))
    assert result.exit_code == 0, result.output
    assert onnx_file.stat().st_size > 1_000_000
    torch_file = tmp_path / "chosen.pt"
    assert run("export", "--result", str(output), "--target", "15", "-o", str(torch_file)).exit_code == 0
    subnet = load_subnet(torch_file)
    assert str(subnet.spec) == data["results"][0]["spec"]


def test_results_files_that_cannot_be_used(tmp_path: Path) -> None:
    output = tmp_path / "r.json"
    assert run("search", "--latency", "lut:note10", "--target", "20,25", "-o", str(output)).exit_code == 0
    with pytest.raises(ResultsError, match="choose one target"):
        read_result(output)
    with pytest.raises(ResultsError, match="no result for target 21.0"):
        read_result(output, 21.0)
    other = tmp_path / "other.json"
    other.write_text('{"format": "something else"}')
    with pytest.raises(ResultsError, match="not a compofa search results file"):
        read_result(other)
    with pytest.raises(ResultsError, match="does not exist"):
        read_result(tmp_path / "missing.json")
    assert_one_line_error(run("export", "--result", str(output), "-o", str(tmp_path / "x.onnx")), "--target")
    assert not (tmp_path / "x.onnx").exists()


@pytest.mark.parametrize(
    ("args", "fragments"),
    [
        (("--latency", "lut:note10", "--target", "3"), ("no subnet fits the target 3 ms", "feasible range")),
        (("--latency", "lut:note10", "--target", "3", "--strategy", "evolution"), ("feasible range",)),
        (("--space", "ofa-mbv3", "--latency", "flops", "--target", "10"), ("no subnet fits the target 10 MMAC",)),
        (("--latency", "nope", "--target", "20"), ("unknown latency source 'nope'",)),
        (("--latency", "lut:note10", "--target", "fast"), ("--target",)),
        (("--latency", "lut:note10", "--target", "20", "--bucket", "auto"), ("--bucket auto needs measured",)),
        (("--latency", "device:nope", "--target", "20"), ("unknown device 'nope'",)),
        (("--space", "ofa-mbv3", "--latency", "lut:note10", "--target", "20", "--strategy", "exhaustive"),
         ("too large to search exhaustively",)),
        (("--latency", "lut:note10", "--target", "20", "--accuracy", "predictor:/no/such.pth"), ("no/such.pth",)),
    ],
)
def test_cli_search_bad_input(tmp_path: Path, args: tuple[str, ...], fragments: tuple[str, ...]) -> None:
    output = tmp_path / "r.json"
    result = run("search", *args, "--table", str(tmp_path / "t.db"), "-o", str(output))
    assert_one_line_error(result, *fragments)
    assert not output.exists() and not (tmp_path / "t.db").exists()


def test_cli_search_refuses_a_table_of_another_space(tmp_path: Path) -> None:
    table = profiled_table(tmp_path, list(get_space("compofa").enumerate([160]))[:3])
    result = run("search", "--space", "ofa-mbv3", "--latency", f"table:{table}", "--target", "5")
    assert_one_line_error(result, "no ofa-mbv3 entries")
    result = run("search", "--latency", f"table:{table}", "--target", "5", "--complete")  # partial: answers
    assert_one_line_error(result, "lacks 240 compofa configurations", "compofa profile", "--complete")


def test_cli_search_on_a_device_measures_once_then_reuses(tmp_path: Path) -> None:
    """device:NAME on the 243 subnets: the first search measures all, the next (new targets) none."""
    table = tmp_path / "memo.db"
    base = ("search", "--latency", "device:fake", "--resolution", "160", "--round-seconds", "0.01",
            "--table", str(table), "--quiet")
    first = run(*base, "--target", "3,5", "-o", str(tmp_path / "first.json"))
    assert first.exit_code == 0, first.output
    assert "243 subnets measured" in first.output
    second = run(*base, "--target", "4", "--upper-bound", "-o", str(tmp_path / "second.json"))
    assert second.exit_code == 0 and "nothing measured" in second.output
    record = json.loads((tmp_path / "second.json").read_text())["results"][0]
    assert record["latency_ci_high_ms"] <= 4 and record["latency_source"] == "device:fake"
    stats = json.loads((tmp_path / "second.json").read_text())["latency_stats"]
    assert stats["misses"] == 0 and stats["hits"] == 243
    by_table = run("search", "--latency", f"table:{table}", "--target", "3,5", "-o", str(tmp_path / "third.json"))
    assert by_table.exit_code == 0, by_table.output
    first_specs = [r["spec"] for r in json.loads((tmp_path / "first.json").read_text())["results"]]
    assert first_specs == [r["spec"] for r in json.loads((tmp_path / "third.json").read_text())["results"]]
    bucketed = run("search", "--latency", f"table:{table}", "--target", "4", "--bucket", "auto", "--json")
    record = json.loads(bucketed.output)["results"][0]
    assert record["bucket_ms"] > 0 and record["bucket"][0] <= record["latency_ms"] < record["bucket"][1]


def test_targets_parse_absolute_and_relative() -> None:
    assert parse_targets("15, 25%,") == (Target(15.0), Target(25.0, relative=True))
    assert Target(50, relative=True).resolve(10.0, 30.0) == 20.0 and Target(12).resolve(10.0, 30.0) == 12
    for bad in ("fast", "150%", "-3", "0", "", "x%"):
        with pytest.raises(CompofaError, match="target"):
            parse_targets(bad)


def test_relative_targets_span_the_fastest_to_the_slowest_subnet(tmp_path: Path) -> None:
    output = tmp_path / "r.json"
    result = run("search", "--latency", "lut:note10", "--target", "0%,50%,100%", "-o", str(output))
    assert result.exit_code == 0, result.output
    assert "(50%)" in result.output
    records = json.loads(output.read_text())["results"]
    everything = enumerate_batch("compofa", SEARCH_RESOLUTIONS)
    latency = LutLatency("note10", "compofa", 1.2).latency(everything).median
    accuracy = AccuracyPredictor.shipped().predict(everything)
    assert [r["target"] for r in records] == ["0%", "50%", "100%"]
    assert records[0]["target_ms"] == pytest.approx(latency.min()) and records[0]["latency_ms"] == pytest.approx(latency.min())
    assert records[2]["target_ms"] == pytest.approx(latency.max()) and records[2]["accuracy"] == pytest.approx(accuracy.max())
    assert records[1]["target_ms"] == pytest.approx((latency.min() + latency.max()) / 2)
    exported = tmp_path / "half.onnx"
    assert run("export", "--result", str(output), "--target", "50%", "-o", str(exported)).exit_code == 0
    assert exported.exists()


def test_a_table_of_several_devices_needs_a_device_id(tmp_path: Path) -> None:
    specs = list(get_space("compofa").enumerate([160]))[:3]
    table = profiled_table(tmp_path, specs)
    profile_space(ProfileRequest(table, "fake", SubnetSource("compofa", cache_dir=tmp_path / "cache"), (160,),
                                 Settings(options={"noise": "0.03"}), FAST, force=True, specs=tuple(specs)))
    search_args = ("search", "--latency", f"table:{table}", "--target", "100%")
    assert_one_line_error(run(*search_args), "entries of 2 devices", "--device-id")
    with LatencyTable.open(table) as store:
        first, second = sorted(device.id for device in store.devices())
        by_device = {e.device_id: e.median_ms for e in store.entries() if e.key.spec == str(specs[0])}
    batch = ArchBatch.from_specs(specs[:1])
    for device in (first, second):
        assert TableLatency(table, "compofa", 1.2, device_id=device).latency(batch).median[0] == by_device[device]
