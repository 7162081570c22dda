"""Partial tables serve: a search over a table that holds some configurations answers over what is measured and
says how many are missing (or refuses with --complete); the report draws what it has; and `--limit N` profiles
a spread sample of the space, the same on every run, a larger N keeping a smaller one's subnets."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

import fake_device  # noqa: F401  (registers the "fake" backend)
from cli_helpers import assert_one_line_error, run
from compofa.devices import Settings
from compofa.jobs.profile import ProfileRequest, Shard, planned_specs, profile_space
from compofa.profiler import ProfileConfig
from compofa.report import SUMMARY_NAME, ReportRequest, write_report
from compofa.search.arrays import ArchBatch, enumerate_batch
from compofa.search.latency import LatencySourceError, TableLatency
from compofa.search.predictor import AccuracyPredictor, accuracy_source
from compofa.search.run import SearchRequest, search
from compofa.search.evolution import EvolutionConfig
from compofa.search.targets import InfeasibleTargetError, Target
from compofa.sources.subnet import SubnetSource
from compofa.space import SubnetSpec, get_space, parse_spec
from compofa.space.cost import network_cost
from compofa.space.plan import plan_subnet
from compofa.space.sample import spread_order, spread_sample
from compofa.tables import LatencyTable

FAST = ProfileConfig(round_seconds=0.01, min_samples=10, max_samples=20)
SIZE = 243  # compofa subnets per resolution


def limited(limit: int, resolutions: tuple[int, ...] = (224,), shard: Shard | None = None) -> list[SubnetSpec]:
    """The subnets `compofa profile --limit` plans (no device is opened to plan)."""
    request = ProfileRequest(Path("unused.db"), "lut:note10", SubnetSource("compofa"), resolutions, shard=shard,
                             limit=limit)
    return planned_specs(request)


def lut_table(tmp_path: Path, limit: int, *extra: str, name: str = "q.db") -> Path:
    """A `--limit` profile on the lookup-table device: exact and quick."""
    table = tmp_path / name
    result = run("profile", "--space", "compofa", "--device", "lut:note10", "--resolution", "224", "--table",
                 str(table), "--limit", str(limit), "--quiet", *extra)
    assert result.exit_code == 0, result.output
    return table


def entries_of(table: Path) -> dict[str, float]:
    with LatencyTable.open(table) as store:
        return {e.key.spec: e.median_ms for e in store.entries()}


def best_by_hand(latencies: dict[str, float], target: float) -> str:
    """The most accurate entry no slower than `target`, by the shipped predictor, one subnet at a time."""
    predictor = AccuracyPredictor.shipped()
    fitting = [spec for spec, ms in latencies.items() if ms <= target]
    scores = {spec: float(predictor.predict(ArchBatch.from_specs([parse_spec(spec)]))[0]) for spec in fitting}
    return max(fitting, key=lambda spec: (scores[spec], -latencies[spec]))


def macs(spec: SubnetSpec) -> float:
    return float(network_cost(plan_subnet(spec, get_space(spec.space).family.default_width)).macs)


# -- --limit: a spread sample ------------------------------------------------------------------------------------


def test_limit_is_a_spread_not_the_first_n() -> None:
    """Six subnets of a --limit 6 profile share no first three stages (the first six in enumeration order
    share them all), span the MACs from the cheapest subnet to the dearest, and fill every quarter between."""
    everything = list(get_space("compofa").enumerate([224]))
    assert len({spec.depths[:3] for spec in everything[:6]}) == 1  # what --limit measured before
    six = limited(6)
    assert len(six) == 6 and len({spec.depths[:3] for spec in six}) == 6
    costs = np.log([macs(spec) for spec in everything])
    low, high = costs.min(), costs.max()
    chosen = (np.log([macs(spec) for spec in six]) - low) / (high - low)
    assert chosen.min() == 0.0 and chosen.max() == 1.0
    assert set(np.minimum((chosen * 4).astype(int), 3)) == {0, 1, 2, 3}


def test_limit_covers_every_depth_of_every_stage_and_every_resolution() -> None:
    twelve = limited(12)
    for stage, choices in enumerate(get_space("compofa").stages):
        assert {spec.depths[stage] for spec in twelve} == set(choices.depths), stage
    both = limited(6, (160, 224))
    assert {spec.resolution for spec in both} == {160, 224}


def test_limit_is_the_same_every_run_and_a_larger_one_keeps_the_smaller() -> None:
    six = limited(6)
    assert limited(6) == six
    twenty = limited(20)
    assert twenty[:6] == six and len(set(twenty)) == 20
    order = spread_order(list(get_space("compofa").enumerate([224])), 1.2)
    assert sorted(order) == list(range(SIZE))  # every subnet once: a limit of N is the first N of one order
    everything = list(get_space("compofa").enumerate([224]))
    assert [everything[row] for row in order[:20]] == twenty
    assert limited(SIZE) == limited(1000) == everything  # no limit to speak of: all, in enumeration order


def test_limit_samples_within_a_shard() -> None:
    everything = list(get_space("compofa").enumerate([224]))
    shard = Shard(2, 3)
    sample = limited(5, shard=shard)
    assert len(sample) == 5 and set(sample) <= set(shard.select(everything))
    assert sample == spread_sample(shard.select(everything), 5, 1.2)


def test_the_cost_proxy_is_exact() -> None:
    """The sampler's MACs (a few plans, summed per stage) are each subnet's MACs, counted whole."""
    from compofa.space.sample import _macs

    specs = list(get_space("compofa-proxyless").enumerate([160]))[::37] + list(get_space("compofa").enumerate([224]))
    for space in ("compofa", "compofa-proxyless"):
        group = [spec for spec in specs if spec.space == space]
        width = get_space(space).family.default_width
        assert _macs(group, width).tolist() == [float(network_cost(plan_subnet(s, width)).macs) for s in group]


def test_a_profile_with_a_limit_resumes_the_same_subnets(tmp_path: Path) -> None:
    table = lut_table(tmp_path, 4)
    first = set(entries_of(table))
    assert first == {str(spec) for spec in limited(4)}
    lut_table(tmp_path, 7)
    assert set(entries_of(table)) == {str(spec) for spec in limited(7)} > first


# -- search over a partial table ---------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def partial(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return lut_table(tmp_path_factory.mktemp("partial"), 6)


def test_search_answers_over_what_is_measured_and_says_what_is_missing(partial: Path) -> None:
    latencies = entries_of(partial)
    middle = float(np.median(list(latencies.values())))
    result = run("search", "--latency", f"table:{partial}", "--target", f"{middle},100%")
    assert result.exit_code == 0, result.output
    notes = result.stderr.strip().splitlines()
    assert len(notes) == 1 and notes[0].startswith("note: ")
    for fragment in ("holds 6 of the 243 compofa configurations", "237 missing at 224 px", "--complete",
                     f"compofa profile --space compofa --resolution 224 --table {partial}"):
        assert fragment in notes[0], notes[0]
    assert "6 candidates" in result.stdout
    assert best_by_hand(latencies, middle) in result.stdout
    assert best_by_hand(latencies, max(latencies.values())) in result.stdout


def test_the_json_results_say_what_is_missing(partial: Path, tmp_path: Path) -> None:
    latencies = entries_of(partial)
    output = tmp_path / "r.json"
    result = run("search", "--latency", f"table:{partial}", "--target", "50%", "--json", "-o", str(output))
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert json.loads(output.read_text()) | {"seconds": 0} == printed | {"seconds": 0}
    assert (printed["candidates"], printed["measured"], printed["missing"]) == (6, 6, 237)
    assert printed["missing_by_resolution"] == {"224": 237}
    fastest, slowest = min(latencies.values()), max(latencies.values())
    (chosen,) = printed["results"]
    assert chosen["target_ms"] == pytest.approx((fastest + slowest) / 2)  # 50% of the measured range
    assert chosen["spec"] == best_by_hand(latencies, chosen["target_ms"])
    assert {point["spec"] for point in printed["pareto"]} <= set(latencies)


def test_a_complete_table_reports_nothing_missing(tmp_path: Path) -> None:
    table = lut_table(tmp_path, SIZE)
    result = run("search", "--latency", f"table:{table}", "--target", "50%", "--json", "--complete")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert (printed["candidates"], printed["measured"], printed["missing"]) == (SIZE, SIZE, 0)
    assert result.stderr == ""
    flops = json.loads(run("search", "--latency", "flops", "--target", "300", "--json").stdout)
    assert (flops["measured"], flops["missing"], flops["missing_by_resolution"]) == (None, 0, {})


def test_complete_refuses_a_partial_table_in_one_line(partial: Path, tmp_path: Path) -> None:
    output = tmp_path / "r.json"
    result = run("search", "--latency", f"table:{partial}", "--target", "50%", "--complete", "-o", str(output))
    assert_one_line_error(result, f"table {partial} lacks 237 compofa configurations", "6 of the 243",
                          "compofa profile --space compofa --resolution 224", "(change --complete)")
    assert not output.exists()


def test_a_resolution_the_table_has_nothing_at_is_refused_in_one_line(partial: Path) -> None:
    result = run("search", "--latency", f"table:{partial}", "--target", "50%", "--resolution", "160,224")
    assert_one_line_error(result, "has no compofa entries at 160 px", "it holds 224 px",
                          "--resolution 160", "(change --resolution)")


def test_evolution_on_a_partial_table_never_invents_a_latency(partial: Path) -> None:
    latencies = entries_of(partial)
    ordered = sorted(latencies.values())
    targets = ordered[1], ordered[-1]
    result = run("search", "--latency", f"table:{partial}", "--strategy", "evolution", "--generations", "5",
                 "--target", ",".join(map(str, targets)), "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["missing"] == 237 and "237 missing" in result.stderr
    for target, chosen in zip(targets, printed["results"]):
        assert chosen["strategy"] == "evolution" and chosen["spec"] in latencies
        assert chosen["latency_ms"] == latencies[chosen["spec"]] <= target
        # a population of 100 drawn from the six entries holds each (every depth equally likely): the best is found
        assert chosen["spec"] == best_by_hand(latencies, target)


def test_evolution_below_every_entry_is_infeasible_and_says_why(partial: Path) -> None:
    fastest = min(entries_of(partial).values())
    result = run("search", "--latency", f"table:{partial}", "--strategy", "evolution", "--target",
                 str(fastest * 0.9))
    assert_one_line_error(result, "no subnet fits the target", f"{fastest:.3f} ms")


def test_evolution_that_cannot_find_measured_subnets_says_the_table_is_partial(partial: Path) -> None:
    """Drawing at random, evolution meets an entry of six in 243 about once in 40 draws: with a rejection bound
    below that, it gives up, and the error says why."""
    request = SearchRequest("compofa", 1.2, (Target(100, relative=True),), (224,), "evolution",
                            evolution=EvolutionConfig(population=8, generations=2, max_rejections=5))
    with pytest.raises(InfeasibleTargetError, match=r"holds 6 of the 243 configurations at 224 px.*missing every"):
        search(request, accuracy_source("predictor", "compofa", 1.2),
               TableLatency(partial, "compofa", 1.2, complete=False))


def test_the_source_answers_infinity_for_what_it_lacks(partial: Path) -> None:
    batch = enumerate_batch("compofa", [224])
    latencies = entries_of(partial)
    lenient = TableLatency(partial, "compofa", 1.2, complete=False).latency(batch)
    held = np.array([str(spec) in latencies for spec in batch.specs()])
    assert np.isfinite(lenient.median).sum() == 6 and (np.isfinite(lenient.median) == held).all()
    assert np.isinf(lenient.ci_low[~held]).all() and np.isinf(lenient.ci_high[~held]).all()
    with pytest.raises(LatencySourceError, match="237 subnets missing"):
        TableLatency(partial, "compofa", 1.2).latency(batch)  # complete, the library's default


def test_a_space_too_large_to_enumerate_is_searched_over_the_table(tmp_path: Path) -> None:
    """An ofa-mbv3 table always lacks nearly all of the space: the search scores the subnets it holds."""
    design = get_space("ofa-mbv3")
    rng = np.random.default_rng(3)
    specs = tuple(design.sample(rng, [224]) for _ in range(8))
    table = tmp_path / "ofa.db"
    profile_space(ProfileRequest(table, "lut:note10", SubnetSource("ofa-mbv3"), (224,), specs=specs))
    latencies = entries_of(table)
    target = float(np.median(list(latencies.values())))
    report = search(SearchRequest("ofa-mbv3", 1.2, (Target(target),), (224,)),
                    accuracy_source("predictor", "ofa-mbv3", 1.2), TableLatency(table, "ofa-mbv3", 1.2, complete=False))
    assert report.candidates == 8 and report.results[0].strategy == "exhaustive"
    result = run("search", "--space", "ofa-mbv3", "--latency", f"table:{table}", "--target", str(target), "--json")
    assert result.exit_code == 0, result.output
    printed = json.loads(result.stdout)
    assert printed["candidates"] == 8 and printed["measured"] == 8
    assert printed["missing"] == design.cardinality - 8
    assert printed["results"][0]["strategy"] == "exhaustive"
    assert printed["results"][0]["spec"] == best_by_hand(latencies, target)
    assert "measures the subnets a search visits" in result.stderr
    assert report.results[0].spec == parse_spec(printed["results"][0]["spec"])


# -- the report on a partial table -------------------------------------------------------------------------------


def test_the_report_draws_a_partial_table_and_says_what_is_missing(partial: Path, tmp_path: Path) -> None:
    result = write_report(ReportRequest((partial,), tmp_path / "r", luts=()))
    (panel,) = result.summary["pareto"]
    cloud = panel["spaces"]["compofa"]
    assert (cloud["subnets"], cloud["missing"]) == (6, 237)
    assert {point["spec"] for point in cloud["front"]} <= set(entries_of(partial))
    assert cloud["method"] == "6 of 243 subnets measured at 224 px"
    note = next(n for n in result.notes if "partial table" in n and "have no entry" in n)  # the front's note
    assert "237 of the 243 compofa subnets" in note and "compofa profile --space compofa --resolution 224" in note
    page = (tmp_path / "r" / "index.html").read_text()
    assert "237 of the 243 compofa subnets" in page and "pareto-q-lut.png" in result.summary["files"]
    assert json.loads((tmp_path / "r" / SUMMARY_NAME).read_text())["pareto"][0]["spaces"]["compofa"]["missing"] == 237


def test_the_report_of_a_measured_partial_table(tmp_path: Path) -> None:
    """The same from a measuring device (the simulated one): intervals, noise and a front of what is there."""
    table = tmp_path / "fake.db"
    profile_space(ProfileRequest(table, "fake", SubnetSource("compofa", cache_dir=tmp_path / "cache"), (160,),
                                 Settings(options={"noise": "0.01"}), FAST, limit=6))
    result = run("report", "--table", str(table), "--no-lut", "-o", str(tmp_path / "r"), "--quiet")
    assert result.exit_code == 0, result.output
    assert "partial table: 237 of the 243 compofa subnets" in result.stderr
    summary = json.loads((tmp_path / "r" / SUMMARY_NAME).read_text())
    assert summary["pareto"][0]["spaces"]["compofa"]["missing"] == 237 and summary["noise"]
