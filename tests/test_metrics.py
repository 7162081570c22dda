"""More than the median: the tail's order-statistic intervals, peak memory, energy, and tables of schema 1."""

from __future__ import annotations

import hashlib
import json
import math
import sqlite3
from pathlib import Path

import fake_device  # noqa: F401  (registers the "fake" backend)
import numpy as np
import pytest
from cli_helpers import assert_one_line_error, run
from table_v1 import create_version1_table

from compofa.devices.meters import ENERGY, MEMORY, MeterError, ProcessMemory, host_meters, process_memory, rapl_energy
from compofa.profiler.stats import median_confidence_interval, quantile_confidence_interval, summarize
from compofa.tables import AccuracyKey, LatencyTable

# -- the tail's intervals -----------------------------------------------------------------------------


def test_quantile_interval_ranks() -> None:
    """Ranks n q -+ 1.96 sqrt(n q (1 - q)), rounded outwards: the median's textbook ranks (40, 61 of 100), p90 of
    1000 (881, 920), and a p99 the samples cannot bound from above."""
    ranks = np.arange(1, 1001, dtype=np.float64)  # each sample's value is its rank
    assert quantile_confidence_interval(ranks[:100], 0.5) == median_confidence_interval(ranks[:100]) == (40, 61)
    assert quantile_confidence_interval(ranks, 0.9) == (881, 920)
    low, high = quantile_confidence_interval(ranks[:200], 0.99)
    assert low == 195 and high == math.inf  # 200 samples: rank 198 + 2.76 lies beyond the largest
    assert quantile_confidence_interval(ranks, 0.99)[1] == 998  # 1000 are enough
    with pytest.raises(ValueError):
        quantile_confidence_interval(ranks, 1.0)


def test_quantile_interval_covers_the_true_quantile() -> None:
    """On right-skewed samples (as latencies are) the 95% interval of p90 holds the true p90 about 95% of the time."""
    rng = np.random.default_rng(7)
    true_p90 = -math.log(0.1)  # of Exp(1)
    covered = 0
    trials = 400
    for _ in range(trials):
        low, high = quantile_confidence_interval(np.sort(rng.exponential(size=300)), 0.9)
        covered += low <= true_p90 <= high
    assert 0.92 <= covered / trials <= 0.99


def test_summary_carries_the_tail() -> None:
    summary = summarize(np.linspace(1.0, 2.0, 500))
    assert summary.p90_ci_low_ms <= summary.p90_ms <= summary.p90_ci_high_ms
    assert summary.p99_ci_low_ms <= summary.p99_ms <= summary.p99_ci_high_ms == math.inf
    assert summary.p90_ms < summary.p99_ms <= summary.max_ms


# -- meters --------------------------------------------------------------------------------------------


def powercap(folder: Path, value: int = 1000, limit: int = 10**6) -> Path:
    """A folder laid out as /sys/class/powercap with one RAPL package domain."""
    domain = folder / "intel-rapl:0"
    (domain / "intel-rapl:0:0").mkdir(parents=True)  # a sub-domain (a core), which is not counted again
    (domain / "energy_uj").write_text(str(value))
    (domain / "max_energy_range_uj").write_text(str(limit))
    return folder


def test_rapl_counter_unfolds_wraparounds(tmp_path: Path) -> None:
    counter, why = rapl_energy(powercap(tmp_path, value=999_000, limit=10**6))
    assert counter is not None and why == "" and counter.domains == [tmp_path / "intel-rapl:0"]
    (tmp_path / "intel-rapl:0" / "energy_uj").write_text("4000")  # wrapped: 1000 + 4000 uJ later
    assert counter.read_mj() == pytest.approx(5.0)
    (tmp_path / "intel-rapl:0" / "energy_uj").unlink()
    with pytest.raises(MeterError, match="can no longer be read"):
        counter.read_mj()


def test_no_counter_says_why(tmp_path: Path) -> None:
    assert rapl_energy(tmp_path / "missing") == (None, "no energy counter: this machine has no RAPL interface "
                                                       f"({tmp_path / 'missing'} does not exist)")
    tmp_path.joinpath("empty").mkdir()
    assert rapl_energy(tmp_path / "empty")[1] == f"no energy counter: {tmp_path / 'empty'} has no RAPL package domain"
    if not Path("/sys/class/powercap").exists():  # this machine: the host's meters say so, never zero
        meters = host_meters()
        assert meters.energy is None and "no RAPL interface" in meters.absent[ENERGY]


def test_process_memory_sees_an_allocation() -> None:
    probe, why = process_memory()
    if probe is None:
        pytest.skip(why)
    assert isinstance(probe, ProcessMemory)
    probe.start()
    block = np.ones(60_000_000 // 8)  # 60 MB, touched
    assert probe.peak_mb() >= 55
    del block
    probe.start()
    assert probe.peak_mb() < 20  # the freed block is not counted for the next item


# -- profiling records them ---------------------------------------------------------------------------


def entries(table: Path) -> list:
    with LatencyTable.open(table) as store:
        return store.entries()


def test_profile_records_tail_memory_and_absent_energy(tmp_path: Path) -> None:
    """A real ONNX Runtime profile: every entry has the tail with its intervals and the session's peak memory;
    energy is absent with the reason where the machine has no counter; export and show say the same."""
    probe, _ = process_memory()
    table = tmp_path / "t.db"
    result = run("profile", "--limit", "2", "--resolution", "160", "--round-seconds", "0.05", "--min-rounds", "2",
                 "--max-rounds", "2", "--table", str(table), "--quiet")
    assert result.exit_code == 0, result.output
    for entry in entries(table):
        assert entry.p90_ci_low_ms <= entry.p90_ms <= entry.p90_ci_high_ms
        assert entry.p99_ci_low_ms <= entry.p99_ms <= entry.p99_ci_high_ms
        if probe is not None:
            assert entry.peak_memory_mb > 1  # a session holds its weights at least
        if entry.energy_mj is None:
            assert entry.absent[ENERGY].startswith("no ")
    exported = tmp_path / "t.json"
    assert run("table", "export", str(table), "-o", str(exported)).exit_code == 0
    record = json.loads(exported.read_text())[0]
    assert record["p99_ms"] > 0 and set(record["absent"]) <= {MEMORY, ENERGY}
    shown = run("table", "show", str(table))
    assert "tail: p90" in shown.output and ("peak memory" in shown.output)


def test_fake_device_energy_per_inference(tmp_path: Path) -> None:
    """A device with a counter: energy per inference is the counter's rise over the item's own blocks (the
    reference's blocks between them left out), per sample: 2 mJ per ms of the fake device's latency."""
    cap = powercap(tmp_path / "powercap", limit=5 * 10**6)  # wraps several times over the run
    table = tmp_path / "e.db"
    result = run("profile", "--device", "fake", "-O", f"powercap={cap}", "-O", "noise=0", "--resolution", "160",
                 "--limit", "3", "--round-seconds", "0.05", "--max-rounds", "3", "--table", str(table), "--quiet")
    assert result.exit_code == 0, result.output
    for entry in entries(table):
        assert entry.energy_mj == pytest.approx(2 * entry.median_ms, rel=0.02)
        assert entry.peak_memory_mb is None and entry.absent == {MEMORY: "a simulated device"}


def test_counter_that_disappears_mid_run(tmp_path: Path) -> None:
    """One line, exit 2; the entries finished before are kept and a rerun resumes them."""
    cap = powercap(tmp_path / "powercap")
    table = tmp_path / "v.db"
    args = ("profile", "--device", "fake", "-O", "noise=0", "--resolution", "160", "--limit", "6",
            "--round-seconds", "0.05", "--min-rounds", "1", "--max-rounds", "1", "--uniform", "--table",
            str(table), "--quiet")
    assert_one_line_error(run(*args[:3], "-O", f"powercap={cap}", "-O", "vanish_at=120", *args[3:]),
                          "energy counter", "can no longer be read")
    kept = len(entries(table))
    assert 0 < kept < 6
    (cap / "intel-rapl:0" / "energy_uj").write_text("0")
    assert run(*args[:3], "-O", f"powercap={cap}", *args[3:]).exit_code == 0
    assert len(entries(table)) == 6


# -- tables of schema 1 --------------------------------------------------------------------------------


def version1_table(path: Path) -> Path:
    """A version-1 file with one fp32 accuracy row."""
    connection = create_version1_table(path)
    connection.execute("INSERT INTO accuracy VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                       ("compofa", 1.2, "compofa-r160-k333e333_k55e33_k333e333_k333e333_k55e33", 160, "w:1", 0.5,
                        0.9, 100, "{}", 1.0))
    connection.close()
    return path


def sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_version1_table_read_as_it_is_and_upgraded_on_first_write(tmp_path: Path) -> None:
    path = version1_table(tmp_path / "old.db")
    spec = "compofa-r160-k333e333_k55e33_k333e333_k333e333_k55e33"
    before = sha(path)
    with LatencyTable.open(path) as table:
        assert table.schema_version == 1 and table.entries() == []
        assert [row.precision for row in table.accuracy.rows()] == ["fp32"]
        assert table.accuracies("compofa", 1.2, precision="int8") == {}
    with LatencyTable.open(path, writable=True):
        pass  # opened for writing, nothing written: the file stays version 1
    assert sha(path) == before
    with LatencyTable.open(path, writable=True) as table:
        table.put_accuracy("compofa", 1.2, spec, 160, "w:1", 0.48, 0.88, 100, {}, precision="int8")
        assert table.schema_version == 2
    with LatencyTable.open(path) as table:
        assert table.accuracies("compofa", 1.2) == {spec: 0.5}
        assert table.accuracies("compofa", 1.2, precision="int8") == {spec: 0.48}
        assert table.accuracy.get(AccuracyKey("compofa", 1.2, spec, "w:1", "int8")).top1 == 0.48
        assert table.accuracy.precisions("compofa") == ["fp32", "int8"]
    version = sqlite3.connect(path).execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()[0]
    assert version == "2"


def test_gpu_energy_counter_says_why_it_is_missing() -> None:
    """Without a driver (or the nvidia-ml-py package) the GPU backends' energy is absent with NVML's reason."""
    from compofa.devices.nvml import energy_counter, nvml_status

    usable, reason = nvml_status()
    if usable:
        pytest.skip("NVML works here: the GPU tests read its counter")
    assert energy_counter(0) == (None, f"no energy counter: {reason}")
