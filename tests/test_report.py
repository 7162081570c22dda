"""The report: its numbers against independent recomputation, its files, and the inputs it refuses."""

from __future__ import annotations

import json
import re
import subprocess
import sys
from itertools import combinations
from pathlib import Path
from typing import Any

import fake_device  # noqa: F401  (registers the "fake" backend)
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run

from compofa.devices import Settings
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.lut import LookupTable
from compofa.profiler import ProfileConfig
from compofa.report import PAGE_NAME, SUMMARY_NAME, ReportError, ReportRequest, write_report
from compofa.report.crossdevice import cross_device
from compofa.report.design import bucket_samples, uniform_grid
from compofa.report.pareto import table_pareto
from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries, counterpart, read_table_series
from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracyPredictor
from compofa.sources.subnet import SubnetSource
from compofa.space import SubnetSpec, get_space, parse_spec
from compofa.tables import LatencyTable

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
    assert "://" not in page  # the charts' data and script are inline too (tests/test_report_browser.py)


def test_table_front_is_the_pareto_front_of_its_entries(report: tuple[Path, dict[str, Any], Path]) -> None:
    _, summary, table = report
    with LatencyTable.open(table) as store:
        entries = store.entries()
    specs = [parse_spec(e.key.spec) for e in entries]
    accuracy = AccuracyPredictor.shipped().predict(ArchBatch.from_specs(specs))
    # independently: walk by latency, keep each subnet more accurate than every faster one
    expected, best = [], -1.0
    for _, acc, entry in sorted(zip([e.median_ms for e in entries], accuracy, entries), key=lambda t: t[0]):
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


def test_measured_latency_intervals_reach_the_figures_data(report: tuple[Path, dict[str, Any], Path]) -> None:
    _, summary, table = report
    (series,) = read_table_series(table, ("compofa", "ofa-mbv3"), 1.2)
    by_spec = {e.key.spec: e for e in series.entries}
    (cloud,) = table_pareto(series, ("compofa", "ofa-mbv3"), Scorer("predictor", 1.2)).clouds
    assert cloud.measured and len(cloud.latency_low) == len(cloud.specs) == 24
    for spec, low, high in zip(cloud.specs, cloud.latency_low, cloud.latency_high):
        assert (low, high) == (by_spec[spec].ci_low_ms, by_spec[spec].ci_high_ms)
    point = summary["pareto"][0]["spaces"]["compofa"]["front"][0]
    assert (point["latency_low_ms"], point["latency_high_ms"]) == (by_spec[point["spec"]].ci_low_ms,
                                                                   by_spec[point["spec"]].ci_high_ms)
    (scatter,) = cross_device([series, LutSeries("lut:note10", "note10", 1.2)], ["t", "lut"], "compofa").scatters
    assert [by_spec[s].ci_low_ms for s in scatter.specs] == scatter.x_low.tolist()
    assert [by_spec[s].ci_high_ms for s in scatter.specs] == scatter.x_high.tolist()
    assert np.isnan(scatter.y_low).all() and np.isnan(scatter.y_high).all()  # a LUT estimates: no interval


def test_summary_picks_what_a_search_of_each_source_picks(report: tuple[Path, dict[str, Any], Path],
                                                          tmp_path: Path) -> None:
    _, summary, table = report
    measured, lut = summary["summary"]["picks"]
    assert summary["summary"]["target_shares"] == [25, 50, 75]
    # the table, independently: the most accurate entry whose median is within the share of the entries' range
    with LatencyTable.open(table) as store:
        entries = store.entries()
    accuracy = AccuracyPredictor.shipped().predict(ArchBatch.from_specs([parse_spec(e.key.spec) for e in entries]))
    medians = np.array([e.median_ms for e in entries])
    for share, pick in zip((25, 50, 75), measured["picks"]):
        target = medians.min() + share / 100 * (medians.max() - medians.min())
        best = max((a, -m, i) for i, (a, m) in enumerate(zip(accuracy, medians)) if m <= target)[2]
        assert pick["spec"] == entries[best].key.spec and pick["target_ms"] == pytest.approx(target)
        assert (pick["latency_ci_low_ms"], pick["latency_ci_high_ms"]) == (entries[best].ci_low_ms,
                                                                         entries[best].ci_high_ms)
    assert measured["measured"] and measured["candidates"] == 24
    # the LUT: what `compofa search` answers (its estimates have no interval)
    result = run("search", "--space", "compofa", "--latency", "lut:note10", "--target", "25%,50%,75%",
                 "-o", str(tmp_path / "s.json"))
    assert result.exit_code == 0, result.output
    searched = json.loads((tmp_path / "s.json").read_text())["results"]
    assert [p["spec"] for p in lut["picks"]] == [r["spec"] for r in searched]
    assert not lut["measured"] and all(p["latency_ci_low_ms"] is None for p in lut["picks"])


def test_summary_gives_the_taus_and_warns_of_a_partial_table(report: tuple[Path, dict[str, Any], Path]) -> None:
    out, summary, _ = report
    (pair,) = summary["summary"]["kendall_tau"]
    tau = summary["cross_device"]["kendall_tau"][0][1]
    assert pair == {"a": "latency: fake", "b": "lut:note10", "kendall_tau": tau, "shared_subnets": 24}
    partial = [w for w in summary["summary"]["warnings"] if w["kind"] == "partial"]
    assert len(partial) == 1 and "24 of the 243 compofa subnets at 160 px" in partial[0]["text"]
    page = (out / PAGE_NAME).read_text()
    assert page.index("<h2 id='summary'>Summary</h2>") < page.index("<h2 id='pareto-fronts'>")
    assert "the most accurate subnet within 50% of its latency range" in page
    assert f"<td>{pair['kendall_tau']:.3f}</td>" in page  # the tau, in numbers


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


def test_figures_as_svg_or_at_a_dpi(tmp_path: Path) -> None:
    table = profiled(tmp_path, 6)
    result = run("report", "--table", str(table), "--no-lut", "--image-format", "svg", "-o", str(tmp_path / "svg"),
                 "--quiet")
    assert result.exit_code == 0, result.output
    files = json.loads((tmp_path / "svg" / SUMMARY_NAME).read_text())["files"]
    assert files and all(name.endswith(".svg") for name in files)
    assert all((tmp_path / "svg" / name).read_bytes().startswith(b"<?xml") for name in files)
    page = (tmp_path / "svg" / PAGE_NAME).read_text()
    assert page.count("src='data:image/svg+xml;base64,") == len(files)  # inlined: the page stands alone
    result = run("report", "--table", str(table), "--no-lut", "--dpi", "55", "-o", str(tmp_path / "png"), "--quiet")
    assert result.exit_code == 0, result.output
    header = (tmp_path / "png" / "pareto-latency-fake.png").read_bytes()
    assert int.from_bytes(header[16:20], "big") == 7 * 55  # the Pareto figure is 7 inches wide
    with pytest.raises(ReportError, match="image format 'gif' is not one of png, svg") as refused:
        write_report(ReportRequest((table,), tmp_path / "gif", luts=(), image_format="gif"))
    assert refused.value.option == ("image_format",) and not (tmp_path / "gif").exists()
    assert run("report", "--table", str(table), "--image-format", "gif", "-o", str(tmp_path / "gif")).exit_code == 2


#: Runs `compofa` with matplotlib unimportable (as if not installed): None in sys.modules makes every import of it
#: raise ImportError, as a missing package does.
WITHOUT_MATPLOTLIB = "import sys; sys.modules['matplotlib'] = None; from compofa.cli import main; main()"


def test_without_matplotlib_the_report_is_written_without_figures(tmp_path: Path) -> None:
    table = profiled(tmp_path, 6)
    done = subprocess.run([sys.executable, "-c", WITHOUT_MATPLOTLIB, "report", "--table", str(table), "--no-lut",
                           "-o", str(tmp_path / "r"), "--quiet"], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert "Traceback" not in done.stderr and "pip install 'compofa[report]'" in done.stderr
    assert sorted(path.name for path in (tmp_path / "r").iterdir()) == [PAGE_NAME, SUMMARY_NAME]
    summary = json.loads((tmp_path / "r" / SUMMARY_NAME).read_text())
    assert summary["files"] == [] and summary["summary"]["picks"][0]["source"] == "latency: fake"
    assert any("pip install 'compofa[report]'" in note for note in summary["notes"])
    page = (tmp_path / "r" / PAGE_NAME).read_text()
    assert "pip install &#x27;compofa[report]&#x27;" in page and "<img" not in page
    assert "<h2 id='summary'>Summary</h2>" in page and "<th>best subnet</th>" in page
    assert "<svg" in page  # the interactive charts need no drawing library


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


def test_device_id_reports_the_devices_asked_and_refuses_one_the_tables_lack(tmp_path: Path) -> None:
    table = profiled(tmp_path, 6, noise="0.01")
    specs = tuple(get_space("compofa").enumerate([160]))[:6]
    profile_space(ProfileRequest(table, "fake", SubnetSource("compofa", None, cache_dir=tmp_path / "cache"), (160,),
                                 Settings(options={"noise": "0.02"}), FAST, specs=specs, force=True))
    with LatencyTable.open(table) as store:
        ids = [device.id for device in store.devices()]
    assert len(ids) == 2
    both = write_report(ReportRequest((table,), tmp_path / "both", luts=(), **QUICK))  # type: ignore[arg-type]
    second = write_report(ReportRequest((table,), tmp_path / "second", luts=(), device_ids=(ids[1],),
                                        **QUICK))  # type: ignore[arg-type]
    assert len(both.summary["pareto"]) == 2 and len(second.summary["pareto"]) == 1
    missing = ids[-1] + 5
    done = run("report", "--table", str(table), "--no-lut", "--device-id", str(missing), "-o", str(tmp_path / "none"))
    assert_one_line_error(done, f"has none of devices {missing}")
    assert not (tmp_path / "none").exists()
