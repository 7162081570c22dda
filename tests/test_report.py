"""The report: its numbers against independent recomputation, its files, and the inputs it refuses."""

from __future__ import annotations

import builtins
import json
import re
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import fake_device  # noqa: F401  (registers the "fake" backend)
from cli_helpers import assert_one_line_error, run
from compofa.devices import Settings
from compofa.lut import LookupTable
from compofa.profiler import ProfileConfig
from compofa.report import PAGE_NAME, SUMMARY_NAME, ReportError, ReportRequest, write_report
from compofa.report.design import bucket_samples, uniform_grid
from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries, counterpart
from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracyPredictor
from compofa.space import SubnetSpec, get_space, parse_spec
from compofa.sources.subnet import SubnetSource
from compofa.tables import LatencyTable
from compofa.jobs.profile import ProfileRequest, profile_space

FAST = ProfileConfig(round_seconds=0.01, min_samples=10, max_samples=20)
#: Small enough for a test: few random subnets per bucket, a short evolution.
QUICK = {"per_bucket": 5, "generations": 3}


def profiled(tmp_path: Path, count: int, name: str = "latency.db", width: float | None = None,
             noise: str = "0.01") -> Path:
    table = tmp_path / name
    specs = tuple(get_space("compofa").enumerate([160]))[:count]
    profile_space(ProfileRequest(table, "fake", SubnetSource("compofa", width, cache_dir=tmp_path / "cache"), (160,),
                                 Settings(options={"noise": noise}), FAST, specs=specs))
    return table


def kendall_brute_force(x: list[float], y: list[float]) -> float:
    """tau-b from its definition, pair by pair."""
    concordant = discordant = ties_x = ties_y = 0
    for i, j in combinations(range(len(x)), 2):
        dx, dy = np.sign(x[i] - x[j]), np.sign(y[i] - y[j])
        if dx == 0 and dy == 0:
            continue
        if dx == 0:
            ties_x += 1
        elif dy == 0:
            ties_y += 1
        elif dx == dy:
            concordant += 1
        else:
            discordant += 1
    pairs = concordant + discordant
    return (concordant - discordant) / np.sqrt((pairs + ties_x) * (pairs + ties_y))


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, Any], Path]:
    folder = tmp_path_factory.mktemp("report")
    table = profiled(folder, 24)
    result = write_report(ReportRequest((table,), folder / "out", **QUICK))  # type: ignore[arg-type]
    return folder / "out", result.summary, table


def test_report_writes_a_self_contained_page_and_every_figure(report: tuple[Path, dict[str, Any], Path]) -> None:
    out, summary, _ = report
    page = (out / PAGE_NAME).read_text()
    assert json.loads((out / SUMMARY_NAME).read_text())["files"] == summary["files"]
    for name in summary["files"]:
        assert (out / name).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert set(summary["files"]) >= {"pareto-latency-fake.png", "pareto-lut-note10.png", "uniform-grid-lut-note10.png",
                                     "bucket-cdf-lut-note10.png", "bucket-mean-lut-note10.png", "rank-correlation.png",
                                     "latency-scatter.png", "noise-latency-fake.png"}
    # nothing is fetched: every image is inline, no link leaves the page
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == len(summary["files"]) and all(s.startswith("data:image/png;base64,") for s in sources)
    assert "http" not in page and "<script" not in page


def test_table_front_is_the_pareto_front_of_its_entries(report: tuple[Path, dict[str, Any], Path]) -> None:
    _, summary, table = report
    with LatencyTable.open(table) as store:
        entries = store.entries()
    specs = [parse_spec(e.key.spec) for e in entries]
    accuracy = AccuracyPredictor.shipped().predict(ArchBatch.from_specs(specs))
    # independently: walk by latency, keep each subnet more accurate than every faster one
    expected, best = [], -1.0
    for latency, acc, entry in sorted(zip([e.median_ms for e in entries], accuracy, entries), key=lambda t: t[0]):
        if acc > best:
            expected.append(entry.key.spec)
            best = acc
    panel = next(p for p in summary["pareto"] if p["series"] == "latency: fake")
    assert [point["spec"] for point in panel["spaces"]["compofa"]["front"]] == expected
    assert panel["spaces"]["compofa"]["subnets"] == 24 and "ofa-mbv3" not in panel["spaces"]


def test_rank_agreement_matches_its_definition(report: tuple[Path, dict[str, Any], Path]) -> None:
    _, summary, table = report

    with LatencyTable.open(table) as store:
        entries = store.entries()
    measured = [e.median_ms for e in entries]
    estimated = [LookupTable.shipped("note10").predict(parse_spec(e.key.spec), 1.2) for e in entries]
    cross = summary["cross_device"]
    assert cross["sources"] == ["latency: fake", "lut:note10"]
    assert cross["shared_subnets"] == [[24, 24], [24, 24]]
    assert cross["kendall_tau"][0][1] == pytest.approx(kendall_brute_force(measured, estimated), abs=1e-12)
    assert cross["kendall_tau"][0][0] == 1.0
    assert cross["scatters"][0]["median_ratio"] == pytest.approx(np.median(np.array(estimated) / measured))


def test_noise_summary_counts_the_table(report: tuple[Path, dict[str, Any], Path]) -> None:
    _, summary, table = report
    with LatencyTable.open(table) as store:
        entries = store.entries()
        rounds = store.round_drifts(entries[0].device_id, 1, "fp32")
    noise = summary["noise"][0]
    relative = [(e.ci_high_ms - e.ci_low_ms) / 2 / e.median_ms for e in entries]
    assert noise["entries"] == 24 and noise["rounds"] == len(rounds) > 24
    assert noise["relative_ci_half_width"]["median"] == pytest.approx(np.median(relative))
    assert noise["unstable"] == sum(not e.stable for e in entries)
    assert noise["rounds_discarded"] == sum(r[2] for r in rounds)


def test_uniform_grid_is_the_lut_and_predictor_of_each_uniform_subnet() -> None:
    series = LutSeries("lut:note10", "note10", 1.2)
    grid = uniform_grid(series, "compofa", "ofa-mbv3", Scorer("predictor", 1.2))
    assert grid.resolution == 224 and grid.depths == (2, 3, 4) and grid.expands == (3, 4, 6)
    spec = SubnetSpec("ofa-mbv3", 224, (3,) * 5, (5,) * 15, (4,) * 15)
    assert grid.latency[1, 1] == pytest.approx(LookupTable.shipped("note10").predict(spec, 1.2))
    assert grid.accuracy[1, 1] == pytest.approx(AccuracyPredictor.shipped().predict(ArchBatch.from_specs([spec]))[0])
    assert grid.coupled == ((2, 3), (3, 4), (4, 6))  # CompOFA's diagonal
    # the paper's observation: growing depth and width together beats growing either alone
    assert grid.accuracy[2, 2] > grid.accuracy[2, 0] and grid.accuracy[2, 2] > grid.accuracy[0, 2]


def test_bucket_samples_lie_in_their_buckets() -> None:
    series = LutSeries("lut:note10", "note10", 1.2)
    scorer = Scorer("predictor", 1.2)
    buckets, drawn = bucket_samples(series, "compofa", "ofa-mbv3", scorer, 5.0, 8, np.random.default_rng(0))
    assert buckets.width_ms == 5.0 and buckets.rows and drawn is not None
    for coupled, free in buckets.rows:
        assert free.high_ms - free.low_ms == pytest.approx(5.0) and len(coupled.accuracy) == len(free.accuracy) == 8
    # every OFA subnet drawn lies in the bucket it was drawn for
    latency = series.latency(drawn)
    lows = sorted({row[1].low_ms for row in buckets.rows} | {low for low, _, _ in buckets.left_out})
    assert all(any(low <= value < low + 5.0 for low in lows) for value in latency)
    assert counterpart("compofa") == "ofa-mbv3" and counterpart("compofa-proxyless") == "ofa-proxyless"
    assert counterpart("ofa-mbv3") is None  # the unconstrained space has nothing to be compared with


# -- the command and its refusals --------------------------------------------------------------------


def test_report_command(tmp_path: Path) -> None:
    table = profiled(tmp_path, 8)
    result = run("report", "--table", str(table), "--no-lut", "-o", str(tmp_path / "r"), "--quiet")
    assert result.exit_code == 0, result.output
    assert f"wrote {tmp_path / 'r' / PAGE_NAME}" in result.stdout
    summary = json.loads((tmp_path / "r" / SUMMARY_NAME).read_text())
    assert summary["sources"] == ["latency: fake"] and summary["grid"] == [] and summary["cross_device"] is None
    assert "one latency source only" in " ".join(summary["notes"])


def test_table_with_too_few_entries_is_refused_and_nothing_written(tmp_path: Path) -> None:
    table = profiled(tmp_path, 3)
    result = run("report", "--table", str(table), "-o", str(tmp_path / "r"))
    assert_one_line_error(result, "has 3 fake entries", "at least 5", "compofa profile")
    assert not (tmp_path / "r").exists()


def test_lut_of_another_width_is_refused(tmp_path: Path) -> None:
    result = run("report", "--lut", "note10", "--width", "1.0", "-o", str(tmp_path / "r"))
    assert_one_line_error(result, "width 1.2", "width 1.0")
    assert not (tmp_path / "r").exists()


def test_table_of_another_width_names_the_width_to_use(tmp_path: Path) -> None:
    table = profiled(tmp_path, 6, width=1.0)
    assert_one_line_error(run("report", "--table", str(table), "-o", str(tmp_path / "r")),
                          "no compofa or ofa-mbv3 entries at width 1.2", "--width 1")


def test_other_bad_inputs(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    table = profiled(tmp_path, 6)
    assert_one_line_error(run("report", "--no-lut", "-o", str(tmp_path / "r")), "nothing to report")
    assert_one_line_error(run("report", "--table", str(table), "-o", str(tmp_path / "file")), "is a file")
    assert_one_line_error(run("report", "--table", str(tmp_path / "missing.db"), "-o", str(tmp_path / "r")),
                          "does not exist")
    assert_one_line_error(run("report", "--table", str(table), "--accuracy", "bogus", "-o", str(tmp_path / "r")),
                          "unknown accuracy source")
    assert not (tmp_path / "r").exists()


def test_missing_matplotlib_is_one_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    real_import = builtins.__import__

    def without_matplotlib(name: str, *args: Any, **kwargs: Any) -> Any:
        if name == "matplotlib" or name.startswith("matplotlib."):
            raise ImportError(f"No module named {name!r}")
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", without_matplotlib)
    table = profiled(tmp_path, 6)
    assert_one_line_error(run("report", "--table", str(table), "-o", str(tmp_path / "r")),
                          "pip install 'compofa[report]'")
    with pytest.raises(ReportError, match="matplotlib"):
        write_report(ReportRequest((table,), tmp_path / "r2"))


def test_a_lut_of_the_compofa_layers_alone_still_gives_compofa_s_front(tmp_path: Path) -> None:
    """A LUT built for `compofa` lacks most OFA layers: OFA's parts are left out with a note, the rest stays."""
    from compofa.lut import LayerTable, write_lut
    from compofa.lut.layers import distinct_layers

    note10 = LookupTable.shipped("note10").layer_table(160)
    keys = {layer.key for layer in distinct_layers("compofa", 1.2, [160])}
    write_lut([LayerTable(160, {k: v for k, v in note10.entries.items() if k in keys})], tmp_path / "lut")
    result = write_report(ReportRequest((), tmp_path / "r", luts=(str(tmp_path / "lut"),), **QUICK))  # type: ignore[arg-type]
    (panel,) = result.summary["pareto"]
    assert list(panel["spaces"]) == ["compofa"] and panel["spaces"]["compofa"]["subnets"] == 243
    assert result.summary["grid"] == [] and result.summary["buckets"] == []
    assert any("ofa-mbv3 front: left out" in note and "has no entry" in note for note in result.notes)
    assert any("views with ofa-mbv3: left out" in note for note in result.notes)
