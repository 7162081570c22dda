"""The report's runtime and precision view (rank agreement with FP32 ONNX Runtime on the same machine; where a
lower precision changes the pick) and its joint front over every source, against independent recomputation."""

from __future__ import annotations

import importlib.util
from itertools import combinations
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_device import FakeDevice, FakeHandle, true_latency_ms

from compofa.devices import Availability, Backend, Settings, UnknownDeviceError, get_backend, register_backend
from compofa.jobs.profile import ProfileRequest, profile_space
from compofa.profiler import ProfileConfig
from compofa.report import PAGE_NAME, ReportRequest, write_report
from compofa.report.joint import joint_front
from compofa.report.runtimes import TARGET_SHARES, runtime_views
from compofa.report.scoring import Scorer
from compofa.report.series import LutSeries, TableSeries, read_table_series
from compofa.search.arrays import ArchBatch
from compofa.search.predictor import AccuracyPredictor
from compofa.sources.subnet import SubnetSource
from compofa.space import SubnetSpec, get_space, parse_spec
from compofa.tables import Entry

FAST = ProfileConfig(round_seconds=0.01, min_samples=10, max_samples=20, min_rounds=2, max_rounds=2)
SCORER = Scorer("predictor", 1.2)
#: Every fourth CompOFA subnet at 160 px: 61 subnets over the whole latency range.
SPECS = tuple(get_space("compofa").enumerate([160]))[::4]


def simulated_ms(spec: SubnetSpec, runtime: str, precision: str) -> float:
    """Known latencies: fp32 follows the MACs; int8 does the arithmetic faster but pays a fixed cost per block of
    the first stage (the largest activations to quantize), so the ranking changes, and with it the picks."""
    macs = true_latency_ms(spec) - 1.0
    if precision == "int8":
        return 0.5 + 0.2 * macs + 0.5 * spec.depths[0]
    return (1.2 + 0.9 * macs + 0.03 * sum(spec.depths)) if runtime == "sim-b" else 1.0 + macs


class SimulatedRuntime(FakeDevice):
    """A runtime (option ``runtime``) on a simulated board (option ``board``), at its precision, with the "fake"
    device's noise around `simulated_ms`."""

    name = "sim-runtime"

    def __init__(self, settings: Settings, source: SubnetSource | None = None) -> None:
        super().__init__(settings, source)
        self.runtime = settings.options.get("runtime", "sim-a")
        self.board = settings.options.get("board", "1")

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": self.runtime, "machine": "simulated", "cpu": f"Simulated board {self.board}",
                "cpu_count": 2, "batch": self.settings.batch, "precision": self.settings.precision, "noise": self.noise}

    def time(self, handle: FakeHandle, n: int) -> list[float]:
        scale = simulated_ms(handle.spec, self.runtime, self.settings.precision) / true_latency_ms(handle.spec)
        return [sample * scale for sample in super().time(handle, n)]


try:
    get_backend("sim-runtime")
except UnknownDeviceError:
    register_backend(Backend("sim-runtime", "simulated runtimes and boards for report tests",
                             lambda: Availability(True), SimulatedRuntime))


def simulated(path: Path, runtime: str, precision: str, board: str = "1") -> Path:
    options = {"runtime": runtime, "board": board, "noise": "0.005"}
    profile_space(ProfileRequest(path, "sim-runtime", SubnetSource("compofa", cache_dir=path.parent / "cache"), (160,),
                                 Settings(precision=precision, options=options), FAST, specs=SPECS))
    return path


@pytest.fixture(scope="module")
def boards(tmp_path_factory: pytest.TempPathFactory) -> list[Path]:
    root = tmp_path_factory.mktemp("runtimes")
    return [simulated(root / "a-fp32.db", "sim-a", "fp32"), simulated(root / "a-int8.db", "sim-a", "int8"),
            simulated(root / "b-fp32.db", "sim-b", "fp32"), simulated(root / "other.db", "sim-a", "fp32", board="2")]


def series_of(paths: list[Path]) -> tuple[list[TableSeries], list[str]]:
    series = [one for path in paths for one in read_table_series(path, ("compofa",), 1.2)]
    return series, [one.label for one in series]


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


def medians(series: TableSeries) -> dict[str, float]:
    return {e.key.spec: e.median_ms for e in series.entries}


def accuracy(spec: str) -> float:
    return float(AccuracyPredictor.shipped().predict(ArchBatch.from_specs([parse_spec(spec)]))[0])


def test_agreement_is_kendall_tau_against_the_baseline_of_the_same_machine(boards: list[Path]) -> None:
    series, labels = series_of(boards)
    views = runtime_views(series, labels, "compofa", SCORER, baseline_setup=("sim-a", "fp32"))
    (view,) = views  # board 2 has one runtime only: nothing to compare there
    assert view.machine == "simulated, Simulated board 1 (2 CPUs)" and view.baseline == labels[0]
    baseline = medians(series[0])
    assert [(a.backend, a.precision) for a in view.agreements] == [("sim-a", "int8"), ("sim-b", "fp32")]
    for agreement, other in zip(view.agreements, series[1:3]):
        theirs = medians(other)
        shared = sorted(set(baseline) & set(theirs))
        assert agreement.shared == len(shared) == len(SPECS)
        expected = kendall_brute_force([baseline[s] for s in shared], [theirs[s] for s in shared])
        assert agreement.kendall_tau == pytest.approx(expected, abs=1e-12)
    assert view.agreements[0].kendall_tau < view.agreements[1].kendall_tau  # int8 ranks differently; sim-b alike


def test_int8_picks_are_the_subnet_by_subnet_picks_at_each_share(boards: list[Path]) -> None:
    series, labels = series_of(boards)
    (view,) = runtime_views(series, labels, "compofa", SCORER, baseline_setup=("sim-a", "fp32"))
    assert [(c.backend, c.precision, c.share) for c in view.changes] == [("sim-a", "int8", s) for s in TARGET_SHARES]
    fp32, int8 = medians(series[0]), medians(series[1])
    scores = {spec: accuracy(spec) for spec in fp32}

    def pick(latency: dict[str, float], share: int) -> tuple[str, float]:
        low, high = min(latency.values()), max(latency.values())
        target = low + share / 100 * (high - low)
        fitting = [spec for spec in latency if latency[spec] <= target]
        return max(fitting, key=lambda spec: (scores[spec], -latency[spec])), target

    for change in view.changes:
        (fp32_pick, fp32_target), (int8_pick, int8_target) = pick(fp32, change.share), pick(int8, change.share)
        assert (change.fp32_spec, change.other_spec) == (fp32_pick, int8_pick)
        assert change.fp32_target_ms == pytest.approx(fp32_target) and change.other_target_ms == pytest.approx(
            int8_target)
        assert change.changed == (fp32_pick != int8_pick) and change.subnets == len(SPECS)
        assert change.fp32_accuracy == pytest.approx(scores[fp32_pick])
    assert all(change.changed for change in view.changes)  # the simulated int8 favours a shallow first stage


def test_joint_front_is_the_undominated_subnets_every_source_answers_for(boards: list[Path]) -> None:
    series, labels = series_of(boards[:2])
    lut = LutSeries("lut:note10", "note10", 1.2)
    front = joint_front([*series, lut], [*labels, "lut:note10"], "compofa", SCORER)
    assert front.objectives == ["accuracy (max)", *(f"latency_ms {label} (min)" for label in labels),
                                "latency_ms lut:note10 (min)"]  # no memory: the simulated runtimes read none
    assert sorted(front.specs) == sorted(str(s) for s in SPECS)
    costs = np.column_stack([-front.accuracy, front.latency])
    expected = {row for row in range(len(costs)) if not any(
        (costs[other] <= costs[row]).all() and (costs[other] < costs[row]).any() for other in range(len(costs)))}
    assert set(front.front.tolist()) == expected
    first = [front.latency[row, 0] for row in front.front]
    assert first == sorted(first)


def test_the_report_shows_the_view_and_says_what_it_lacks(boards: list[Path], tmp_path: Path) -> None:
    result = write_report(ReportRequest(tuple(boards[:2]), tmp_path / "out", luts=(), per_bucket=5, generations=3))
    summary = result.summary
    (view,) = summary["runtimes"]
    assert view["baseline"] is None and view["agreement"] == []  # no FP32 ONNX Runtime among the simulations
    assert [pick["share"] for pick in view["picks"]] == list(TARGET_SHARES)
    assert any("Simulated board 1 (2 CPUs): no FP32 ONNX Runtime table" in note for note in result.notes)
    page = (tmp_path / "out" / PAGE_NAME).read_text()
    assert "Runtimes and precisions" in page and "lower-precision pick" in page
    assert summary["joint_front"]["sources"] == summary["sources"] and "joint-front.png" in summary["files"]
    single = write_report(ReportRequest((boards[0],), tmp_path / "one", luts=(), per_bucket=5, generations=3))
    assert single.summary["runtimes"] == [] and "Runtimes and precisions" not in (tmp_path / "one" / PAGE_NAME
                                                                                  ).read_text()


def entries_by_spec(series: TableSeries) -> dict[str, Entry]:
    return {e.key.spec: e for e in series.entries}


@pytest.mark.skipif(importlib.util.find_spec("openvino") is None,
                    reason="openvino is not installed (pip install 'compofa[openvino]')")
def test_real_runtimes_of_this_machine_against_onnxruntime(tmp_path: Path) -> None:
    """ONNX Runtime and OpenVINO timed here (a few subnets, briefly): one machine, onnxruntime fp32 the baseline,
    OpenVINO's tau that of their entries, and a joint front with the memory both read."""
    table = tmp_path / "cpu.db"
    everything = list(get_space("compofa").enumerate([128]))
    specs = tuple(everything[:: len(everything) // 5][:5])  # the fewest a report takes, small and quick: 128 px
    for device in ("onnxruntime", "openvino"):
        profile_space(ProfileRequest(table, device, SubnetSource("compofa", cache_dir=tmp_path / "cache"), (128,),
                                     Settings(), FAST, specs=specs, force=True))
    result = write_report(ReportRequest((table,), tmp_path / "out", luts=(), per_bucket=5, generations=3))
    (view,) = result.summary["runtimes"]
    series, labels = series_of([table])
    ort, ov = sorted(series, key=lambda s: s.fingerprint["backend"] != "onnxruntime")
    assert view["baseline"] == labels[series.index(ort)] and "Simulated" not in view["machine"]
    (agreement,) = view["agreement"]
    shared = sorted(medians(ort))
    expected = kendall_brute_force([medians(ort)[s] for s in shared], [medians(ov)[s] for s in shared])
    assert agreement["backend"] == "openvino" and agreement["kendall_tau"] == pytest.approx(expected, abs=1e-12)
    assert "runtime-agreement.png" in result.summary["files"]
    joint = result.summary["joint_front"]
    memory_read = all(e.peak_memory_mb is not None for one in (ort, ov) for e in one.entries)
    assert len(joint["objectives"]) == 3 + 2 * memory_read
