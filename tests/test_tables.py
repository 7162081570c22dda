"""Latency tables: the store's refusals, resumable profiling jobs, shards, merge, export, diff, CLI."""

from __future__ import annotations

import csv
import hashlib
import json
import os
import sqlite3
import threading
from pathlib import Path

import pytest
from cli_helpers import assert_one_line_error, run
from fake_device import true_latency_ms
from table_v1 import create_version1_table

from compofa.devices.base import Settings
from compofa.sources.subnet import SubnetSource
from compofa.jobs.measure import split_by_entry
from compofa.jobs.merge import merge_tables
from compofa.errors import SpecError
from compofa.jobs.profile import ProfileRequest, Shard, profile_space
from compofa.profiler import Measurement, ProfileConfig, RoundRecord
from compofa.space import get_space, parse_spec
from compofa.tables import (
    LAYER,
    SUBNET,
    AccuracyKey,
    EntryKey,
    LatencyTable,
    SetupKey,
    TableBusyError,
    TableError,
    TableMismatchError,
)
from compofa.tables.compare import kendall_tau
from compofa.tables.exchange import EXPORT_FIELDS

FAST = ProfileConfig(round_seconds=0.05, min_samples=10, max_samples=20)


def request(table: Path, limit: int | None = 12, shard: Shard | None = None, force: bool = False,
            **options: str) -> ProfileRequest:
    return ProfileRequest(table, "fake", SubnetSource("compofa", cache_dir=table.parent / "cache"), (160,),
                          Settings(options={"noise": "0.01", **options}), FAST, shard, limit, force)


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()



# -- the store refuses what it cannot use, without touching it ---------------------------------------


def test_refuses_non_tables_untouched(tmp_path: Path) -> None:
    """A text file, a foreign SQLite file, a newer schema, a directory: clear errors, files unchanged."""
    text = tmp_path / "notes.db"
    text.write_text("hello")
    foreign = tmp_path / "foreign.db"
    with sqlite3.connect(foreign) as connection:
        connection.execute("CREATE TABLE x (y)")
    newer = tmp_path / "newer.db"
    LatencyTable.open(newer, create=True).close()
    with sqlite3.connect(newer) as connection:
        connection.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    for path, message in ((text, "not an SQLite file"), (foreign, "not a"), (newer, "schema version 99")):
        before = digest(path)
        with pytest.raises(TableError, match=message):
            LatencyTable.open(path, writable=True)
        assert digest(path) == before
    with pytest.raises(TableError, match="is a directory"):
        LatencyTable.open(tmp_path, create=True)
    with pytest.raises(TableError, match="does not exist"):
        LatencyTable.open(tmp_path / "missing" / "t.db", create=True)


def test_corrupt_table_is_refused(tmp_path: Path) -> None:
    """A table whose pages were damaged is refused, not repaired or overwritten."""
    path = tmp_path / "t.db"
    profile_space(request(path, limit=3))
    data = bytearray(path.read_bytes())
    data[100:4096] = b"\xff" * (4096 - 100)  # wreck the schema page after the header
    path.write_bytes(bytes(data))
    before = digest(path)
    with pytest.raises(TableError):
        profile_space(request(path, limit=3))
    assert digest(path) == before


# -- profiling jobs ---------------------------------------------------------------------------------------


def test_profile_fills_the_table_and_resumes(tmp_path: Path) -> None:
    """A job commits every subnet; a rerun measures nothing; entries hold the statistics and OFA form."""
    path = tmp_path / "t.db"
    first = profile_space(request(path))
    assert (first.planned, first.already_done, first.measured) == (12, 0, 12)
    again = profile_space(request(path))
    assert (again.already_done, again.measured) == (12, 0)
    with LatencyTable.open(path) as table:
        entries = table.entries()
        assert len(entries) == 12
        for entry in entries:
            truth = true_latency_ms(parse_spec(entry.key.spec))
            assert entry.ci_low_ms <= entry.median_ms <= entry.ci_high_ms
            assert entry.median_ms == pytest.approx(truth, rel=0.02)
            assert entry.rounds >= 3 and entry.n >= 30
        assert table.reference(entries[0].device_id, entries[0].key) is not None
        assert len(table.reference_checks()) >= 2


def test_interrupted_job_loses_at_most_the_round_in_flight(tmp_path: Path) -> None:
    """Ctrl-C mid-run keeps every finished round; the rerun reuses them and completes the table."""
    path = tmp_path / "t.db"
    with pytest.raises(KeyboardInterrupt):
        profile_space(request(path, fail_after="500"))
    with LatencyTable.open(path) as table:
        device_id = table.devices()[0].id
        kept = table.connection.execute("SELECT COUNT(*) FROM rounds").fetchone()[0]
        finished = len(table.entries())
    assert kept > 0 and finished < 12
    summary = profile_space(request(path))
    assert summary.already_done == finished and summary.measured == 12 - finished
    with LatencyTable.open(path) as table:
        rounds = table.connection.execute("SELECT COUNT(*) FROM rounds WHERE device_id = ?", (device_id,)).fetchone()[0]
        assert len(table.entries()) == 12
        # Nothing kept was measured again: every subnet has exactly its rounds.
        assert rounds == sum(e.rounds for e in table.entries()) + table.connection.execute(
            "SELECT COUNT(*) FROM rounds WHERE discarded IS NOT NULL").fetchone()[0]
    assert not list(tmp_path.glob("*.lock"))


def test_second_writer_is_refused(tmp_path: Path) -> None:
    """While one process profiles into a table, another is told so instead of corrupting it."""
    path = tmp_path / "t.db"
    holding, release = threading.Event(), threading.Event()

    def hold() -> None:
        with LatencyTable.open(path, writable=True, create=True):
            holding.set()
            release.wait(10)

    worker = threading.Thread(target=hold)
    worker.start()
    try:
        assert holding.wait(10)
        with pytest.raises(TableBusyError, match="being written by process"):
            profile_space(request(path, limit=2))
    finally:
        release.set()
        worker.join()
    profile_space(request(path, limit=2))


def test_different_setup_refused_unless_forced(tmp_path: Path) -> None:
    """A table of one setup refuses another setup of the same backend, naming what differs."""
    path = tmp_path / "t.db"
    profile_space(request(path, limit=2))
    with pytest.raises(TableMismatchError, match="noise"):
        profile_space(request(path, limit=2, noise="0.02"))
    profile_space(request(path, limit=2, force=True, noise="0.02"))
    with LatencyTable.open(path) as table:
        assert len(table.devices()) == 2


def test_shards_merge_into_the_whole(tmp_path: Path) -> None:
    """Three shards are disjoint, cover everything, and merge into one table of all entries."""
    specs = list(get_space("compofa").enumerate([160]))
    parts = [Shard(k, 3).select(specs) for k in (1, 2, 3)]
    assert sum(len(p) for p in parts) == len(specs) and len({s for p in parts for s in p}) == len(specs)
    paths = []
    for k in (1, 2, 3):
        path = tmp_path / f"shard{k}.db"
        profile_space(request(path, limit=4, shard=Shard(k, 3)))
        paths.append(path)
    merged = tmp_path / "merged.db"
    report = merge_tables(merged, paths)
    assert report.entries == 12 and report.conflicts == 0 and report.tables == 3
    with LatencyTable.open(merged) as table:
        assert len(table.entries()) == 12 and len(table.devices()) == 1
    again = merge_tables(merged, paths[:1])
    assert again.conflicts == 4 and again.entries == 0


SLURM = {"SLURM_ARRAY_TASK_MIN": "0", "SLURM_ARRAY_TASK_COUNT": "4"}


@pytest.mark.parametrize(("text", "environment", "shard"), [
    ("auto", {**SLURM, "SLURM_ARRAY_TASK_ID": "0"}, Shard(1, 4)),
    ("auto", {**SLURM, "SLURM_ARRAY_TASK_ID": "3"}, Shard(4, 4)),
    ("auto/4", {**SLURM, "SLURM_ARRAY_TASK_ID": "2"}, Shard(3, 4)),
    # --array=1-9:2 -> tasks 1, 3, 5, 7, 9
    ("auto", {"SLURM_ARRAY_TASK_MIN": "1", "SLURM_ARRAY_TASK_COUNT": "5", "SLURM_ARRAY_TASK_STEP": "2",
              "SLURM_ARRAY_TASK_ID": "7"}, Shard(4, 5)),
    ("auto/3", {"JOB_COMPLETION_INDEX": "0"}, Shard(1, 3)),
    ("auto/3", {"JOB_COMPLETION_INDEX": "2"}, Shard(3, 3)),
    ("2/5", {"JOB_COMPLETION_INDEX": "0"}, Shard(2, 5)),  # an explicit shard wins over the scheduler's
])
def test_shard_auto_reads_the_scheduler(text: str, environment: dict[str, str], shard: Shard) -> None:
    """`--shard auto` takes the shard of a Slurm array task or (with its count) a Kubernetes Indexed Job pod."""
    assert Shard.parse(text, environment) == shard


@pytest.mark.parametrize(("text", "environment", "says"), [
    ("auto", {}, "no cluster scheduler gave this task a shard"),
    ("auto", {"JOB_COMPLETION_INDEX": "1"}, "give the shard as auto/N"),
    ("auto/2", {"JOB_COMPLETION_INDEX": "2"}, "not below the 2 completions"),
    ("auto/2", {"JOB_COMPLETION_INDEX": "-1"}, "JOB_COMPLETION_INDEX must be a whole number"),
    ("auto", {"SLURM_ARRAY_TASK_ID": "3"}, "SLURM_ARRAY_TASK_MIN must be a whole number"),
    ("auto", {**SLURM, "SLURM_ARRAY_TASK_ID": "4"}, "submit the array as a range"),
    ("auto/5", {**SLURM, "SLURM_ARRAY_TASK_ID": "1"}, "has 4 tasks, not 5"),
    ("auto/0", {}, "must be a whole number >= 1"),
    ("auto/x", {}, "must be a whole number >= 1"),
])
def test_shard_auto_refuses_what_the_scheduler_does_not_say(text: str, environment: dict[str, str],
                                                            says: str) -> None:
    with pytest.raises(SpecError, match=says):
        Shard.parse(text, environment)


def test_profile_shard_auto_from_the_command_line(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The command reads the scheduler's variables; without them it refuses in one line and creates nothing."""
    path = tmp_path / "t.db"
    for name in ("SLURM_ARRAY_TASK_ID", "JOB_COMPLETION_INDEX"):
        monkeypatch.delenv(name, raising=False)
    refused = run("profile", "--space", "compofa", "--device", "lut:note10", "--shard", "auto", "--table", str(path))
    assert_one_line_error(refused, "no cluster scheduler", "(change --shard)")
    assert not path.exists()
    monkeypatch.setenv("JOB_COMPLETION_INDEX", "2")
    done = run("profile", "--space", "compofa", "--device", "lut:note10", "--shard", "auto/3", "--table", str(path),
               "--quiet")
    assert done.exit_code == 0, done.output
    with LatencyTable.open(path) as table:
        shards = table.connection.execute("SELECT shard FROM runs").fetchall()
        assert len(table.entries()) == 81 and shards == [("3/3",)]


def test_merge_refuses_other_setups_and_leaves_output(tmp_path: Path) -> None:
    """A shard from a different setup is refused (the output is unchanged) unless forced."""
    a, b, merged = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "m.db"
    profile_space(request(a, limit=2))
    profile_space(request(b, limit=2, noise="0.03"))
    merge_tables(merged, [a])
    before = digest(merged)
    with pytest.raises(TableMismatchError, match="noise"):
        merge_tables(merged, [b])
    assert digest(merged) == before
    assert merge_tables(merged, [b], force=True).entries == 0  # same subnets: already present
    assert not [p for p in tmp_path.iterdir() if "merging" in p.name]


# -- accuracy rows in a merge ------------------------------------------------------------------------------


def test_merge_keeps_accuracy_rows(tmp_path: Path) -> None:
    """Accuracy rows of every input reach the output, copied as they are; merging again adds none; a row of the
    same subnet and weights with a different result leaves the output's row as it was, and is counted."""
    specs = [str(spec) for spec in list(get_space("compofa").enumerate([160]))[:4]]
    a, b, merged = tmp_path / "a.db", tmp_path / "b.db", tmp_path / "m.db"
    profile_space(request(a, limit=2))  # a latency table that holds accuracy rows too
    with LatencyTable.open(a, writable=True) as table:
        for spec, top1 in zip(specs[:3], (0.70, 0.71, 0.72)):
            table.accuracy.put("compofa", 1.2, spec, 160, "w.pt:abc", top1, 0.9, 100, {"seed": 0})
    with LatencyTable.open(b, writable=True, create=True) as table:  # a table of accuracy rows only (compofa eval)
        table.accuracy.put("compofa", 1.2, specs[0], 160, "w.pt:abc", 0.70, 0.9, 100, {"seed": 0})  # the same result
        table.accuracy.put("compofa", 1.2, specs[1], 160, "w.pt:abc", 0.75, 0.9, 100, {"seed": 1})  # another result
        table.accuracy.put("compofa", 1.2, specs[3], 160, "w.pt:abc", 0.73, 0.9, 100, {"seed": 0})
        table.accuracy.put("compofa", 1.2, specs[0], 160, "other.pt:def", 0.60, 0.8, 100, {"seed": 0})
        from_b = table.accuracy.get(AccuracyKey("compofa", 1.2, specs[3], "w.pt:abc"))
    report = merge_tables(merged, [a, b])
    assert (report.accuracies, report.accuracies_present, report.accuracy_conflicts) == (5, 1, 1)
    assert report.entries == 2 and report.tables == 2
    with LatencyTable.open(merged) as table:
        rows = table.accuracy.rows()
        assert len(rows) == 5 and table.accuracy.count() == 5
        assert table.accuracies("compofa", 1.2, "w.pt:abc") == dict(zip(specs, (0.70, 0.71, 0.72, 0.73)))
        assert table.accuracy.get(AccuracyKey("compofa", 1.2, specs[3], "w.pt:abc")) == from_b  # its time and settings
        assert table.accuracies("compofa", 1.2, "other.pt:def") == {specs[0]: 0.60}
        with pytest.raises(TableMismatchError, match="name the weights"):  # the weights stay apart
            table.accuracies("compofa", 1.2)
    again = merge_tables(merged, [a, b])
    assert (again.accuracies, again.accuracies_present, again.accuracy_conflicts) == (0, 6, 1)
    with LatencyTable.open(merged) as table:
        assert table.accuracy.rows() == rows
    result = run("table", "merge", str(merged), str(b))
    assert result.exit_code == 0, result.output
    assert "0 accuracy rows added" in result.stdout and "1 accuracy row differs" in result.stdout


def test_accuracy_only_tables_merge_into_a_new_table(tmp_path: Path) -> None:
    """Tables `compofa eval` filled, merged into a table that did not exist: it is made and keeps them."""
    spec = str(next(iter(get_space("compofa").enumerate([160]))))
    inputs = []
    for index, (weights, top1) in enumerate((("w.pt:abc", 0.7), ("v.pt:def", 0.8))):
        path = tmp_path / f"acc{index}.db"
        with LatencyTable.open(path, writable=True, create=True) as table:
            table.accuracy.put("compofa", 1.2, spec, 160, weights, top1, None, 100, {})
        inputs.append(path)
    report = merge_tables(tmp_path / "all.db", inputs)
    assert report.accuracies == 2 and report.entries == 0
    with LatencyTable.open(tmp_path / "all.db") as table:
        assert {row.weights: row.top1 for row in table.accuracy.rows()} == {"w.pt:abc": 0.7, "v.pt:def": 0.8}


# -- setups and kinds of entries ----------------------------------------------------------------------------


def test_references_are_looked_up_by_setup(tmp_path: Path) -> None:
    """A reference belongs to a device and a setup (space, width, batch, precision, kind), no entry needed."""
    specs = [str(spec) for spec in list(get_space("compofa").enumerate([160, 176]))[::243]]
    with LatencyTable.open(tmp_path / "t.db", writable=True, create=True) as table:
        device = table.device_id("fake", {"backend": "fake"})
        setup = SetupKey("compofa", 1.2, 1, "fp32")
        assert table.reference(device, setup) is None
        table.set_reference(device, setup, specs[0], 3.0)
        assert table.reference(device, setup) == (specs[0], 3.0)
        entry = EntryKey("compofa", 1.2, specs[1], 176, 1, "fp32")  # an entry's key stands for its setup
        assert entry.setup == setup and table.reference(device, entry) == (specs[0], 3.0)
        layers = SetupKey("mobilenetv3", 1.2, 1, "fp32", LAYER)
        for other in (SetupKey("compofa", 1.2, 8, "fp32"), SetupKey("compofa", 1.2, 1, "fp16"),
                      SetupKey("compofa", 1.0, 1, "fp32"), SetupKey("mobilenetv3", 1.2, 1, "fp32"), layers):
            assert table.reference(device, other) is None, other
        table.set_reference(device, layers, "final_expand_layer-input:5x5x160-output:5x5x960", 0.2)
        table.set_reference(device, setup, specs[0], 3.5)  # a new baseline replaces the old one
        assert table.reference(device, layers) == ("final_expand_layer-input:5x5x160-output:5x5x960", 0.2)
        assert table.reference(device, setup) == (specs[0], 3.5)
        assert table.reference(device + 1, setup) is None
    with pytest.raises(TableError, match="reserved for layers"):
        EntryKey("layers/mobilenetv3", 1.2, "x", 160, 1, "fp32")
    with pytest.raises(TableError, match="unknown entry kind 'block'"):
        SetupKey("compofa", 1.2, 1, "fp32", "block")


#: How compofa keyed a lookup table's layers before entries had a kind: the family under a made-up space name.
OLD_LAYER_SPACE = "layers/mobilenetv3"
OLD_LAYER_KEYS = ("first_conv-input:160x160x3-output:80x80x16",
                  "expanded_conv-input:20x20x24-output:10x10x40-expand:72-kernel:5-stride:2-idskip:0-se:1-hs:0")


def write_old_layer_store(path: Path) -> int:
    """A lookup table's store (layers.db) as compofa wrote it then (schema version 1), row by row with that
    version's SQL; its device."""
    connection = create_version1_table(path)
    try:
        connection.execute("INSERT INTO devices (name, fingerprint) VALUES (?, ?)",
                           ("onnxruntime", json.dumps({"backend": "onnxruntime", "threads": 1}, sort_keys=True,
                                                      separators=(",", ":"))))
        device = 1
        connection.execute("INSERT INTO runs (device_id, started_at, finished_at, host, compofa_version, shard,"
                           " settings, source, fingerprint) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                           (device, 9.0, 12.0, "old", "0.1", None, '{"batch":1}', '{"kind":"layers"}',
                            '{"backend":"onnxruntime"}'))
        connection.execute("INSERT INTO references_ VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                           (device, OLD_LAYER_SPACE, 1.2, 1, "fp32", OLD_LAYER_KEYS[1], 0.5, 1.0))
        for index, key in enumerate(OLD_LAYER_KEYS):
            connection.execute(
                "INSERT INTO rounds (run_id, device_id, space, width, spec, resolution, batch, precision,"
                " round_index, started_at, timed_at, warmup, samples, drift, prepare_s, conditions, discarded)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (1, device, OLD_LAYER_SPACE, 1.2, key, 160, 1, "fp32", 0, 10.0 + index, 10.5 + index,
                 "[0.5]", "[0.5,0.52,0.51]", 1.0, 0.01, "{}", None))
            connection.execute(
                f"INSERT INTO entries VALUES ({', '.join('?' * 25)})",
                (device, OLD_LAYER_SPACE, 1.2, key, 160, 1, "fp32", 3, 0.51, 0.51, 0.01, 0.5, 0.52, 0.01, 0.01,
                 0.5, 0.52, 0.5, 0.52, 0.51, 1, 1, "[]", "converged", 11.0 + index))
    finally:
        connection.close()
    return device


def test_old_layer_store_opens_reads_and_resumes(tmp_path: Path) -> None:
    """A lookup table's store from before entries had a kind reads as layer entries of the family, finds its
    reference by setup, counts its layers finished for a resumed build, takes new layers in the same form, and
    merges (keeping kind and reference)."""
    path = tmp_path / "layers.db"
    device = write_old_layer_store(path)
    keys = [EntryKey.layer("mobilenetv3", 1.2, key, 160, 1, "fp32") for key in OLD_LAYER_KEYS]
    new = EntryKey.layer("mobilenetv3", 1.2, "final_expand_layer-input:5x5x160-output:5x5x960", 160, 1, "fp32")
    setup = SetupKey("mobilenetv3", 1.2, 1, "fp32", LAYER)
    with LatencyTable.open(path) as table:
        entries = table.entries()
        assert {e.key for e in entries} == set(keys) and all(e.key.kind == LAYER for e in entries)
        assert table.entries(space="mobilenetv3", kind=LAYER) == entries == table.entries(space=OLD_LAYER_SPACE)
        assert table.entries(kind=SUBNET) == [] and table.entries(space="mobilenetv3", kind=SUBNET) == []
        assert table.reference(device, setup) == (OLD_LAYER_KEYS[1], 0.5)
        assert table.finished_keys(device) == set(keys)
        noisy, missing = split_by_entry([*keys, new], lambda key: key, table, device)  # what a build resumes from
        assert noisy == [] and missing == [new]
        assert [r.samples_ms for r in table.rounds(device, keys[0])] == [(0.5, 0.52, 0.51)]
    with LatencyTable.open(path, writable=True) as table:  # resumed: the missing layer measured and stored
        run_id = table.start_run(device, {"batch": 1}, {"kind": "layers"}, {"backend": "onnxruntime"}, None)
        records = tuple(RoundRecord(index, 20.0 + index, 20.5 + index, (0.3,), (0.30, 0.31, 0.29, 0.30) * 5, 1.0,
                                    0.01, {}) for index in range(3))
        for record in records:
            table.add_round(run_id, device, new, record)
        measurement = Measurement(new, records)
        table.put_entry(device, new, measurement, measurement.estimate, "converged")
        table.finish_run(run_id)
        stored = {row[0] for name in ("entries", "rounds", "references_")
                  for row in table.connection.execute(f"SELECT DISTINCT space FROM {name}").fetchall()}
        schema = dict(table.connection.execute("SELECT key, value FROM meta").fetchall())["schema_version"]
    # one form for old and new rows; the new columns came with the first write, NULL in the old entries
    assert stored == {OLD_LAYER_SPACE} and schema == "2"
    merged = tmp_path / "merged.db"
    report = merge_tables(merged, [path])
    assert report.entries == 3 and report.rescaled == {f"{path}:mobilenetv3 layers": 1.0}
    with LatencyTable.open(merged) as table:
        assert {e.key for e in table.entries()} == {*keys, new}
        assert table.reference(table.devices()[0].id, setup) == (OLD_LAYER_KEYS[1], 0.5)
    # an export names layers by family and key, with no OFA dict (a layer is no subnet)
    assert run("table", "export", str(merged), "-o", str(tmp_path / "l.json")).exit_code == 0
    records = json.loads((tmp_path / "l.json").read_text())
    assert {(r["kind"], r["space"], r["ofa"]) for r in records} == {("layer", "mobilenetv3", None)}
    assert run("table", "export", str(merged), "--format", "csv", "-o", str(tmp_path / "l.csv")).exit_code == 0
    assert {r["ofa"] for r in csv.DictReader((tmp_path / "l.csv").open())} == {""}
    # a lookup table cannot be validated against its own layers: only whole subnets count
    checked = run("lut", "validate", "--lut", "note10", "--table", str(merged))
    assert checked.exit_code == 2 and "no subnet entries" in checked.output and "Traceback" not in checked.output


def test_export_json_and_csv(tmp_path: Path) -> None:
    """Exports list every entry with the documented fields; the OFA dict round-trips."""
    path = tmp_path / "t.db"
    profile_space(request(path, limit=3))
    assert run("table", "export", str(path), "--format", "json", "-o", str(tmp_path / "e.json")).exit_code == 0
    records = json.loads((tmp_path / "e.json").read_text())
    assert len(records) == 3 and set(EXPORT_FIELDS) <= set(records[0])
    for record in records:
        spec = parse_spec(record["spec"])
        assert record["ofa"] == spec.to_ofa_dict() and record["resolution"] == 160 and record["device"] == "fake"
        assert record["kind"] == "subnet"
    assert run("table", "export", str(path), "--format", "csv", "-o", str(tmp_path / "e.csv")).exit_code == 0
    rows = list(csv.DictReader((tmp_path / "e.csv").open()))
    assert [r["spec"] for r in rows] == [r["spec"] for r in records]
    assert json.loads(rows[0]["ofa"]) == records[0]["ofa"]


def test_diff_of_two_runs(tmp_path: Path) -> None:
    """Two runs of the same setup agree in rank; a uniform 5% drift is divided out."""
    a, b = tmp_path / "a.db", tmp_path / "b.db"
    profile_space(request(a, limit=10))
    profile_space(request(b, limit=10, step_at="1", step="1.05", seed="7"))
    result = run("table", "diff", str(a), str(b), "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.output)
    assert data["matched"] == 10 and data["kendall_tau"] > 0.9
    assert data["median_abs_rel_diff_normalized"] < 0.01
    assert data["drift_source"] == "reference baselines"


def test_kendall_tau_known_values() -> None:
    """tau is 1 for the same order, -1 for the reverse, and 1/3 for one swap in three items... of four."""
    import numpy as np

    x = np.array([1.0, 2.0, 3.0, 4.0])
    assert kendall_tau(x, x * 2) == 1.0
    assert kendall_tau(x, -x) == -1.0
    assert kendall_tau(x, np.array([2.0, 1.0, 3.0, 4.0])) == pytest.approx(4 / 6)


# -- the command line -----------------------------------------------------------------------------------------


def test_cli_profile_show_and_resume(tmp_path: Path) -> None:
    """`compofa profile` fills a table and prints its summary; bad input is one line; resume works."""
    table = str(tmp_path / "t.db")
    args = ("profile", "--device", "fake", "-O", "noise=0.01", "--resolution", "160", "--limit", "3",
            "--round-seconds", "0.05", "--table", table, "--quiet")
    result = run(*args)
    assert result.exit_code == 0, result.output
    assert "profiled 3 subnets" in result.output and "noise floor" in result.output
    assert "3 were already there" in run(*args).output
    shown = run("table", "show", table, "--bucket", "auto")
    assert shown.exit_code == 0 and "buckets of" in shown.output
    data = json.loads(run("table", "show", table, "--json").output)
    assert data[0]["entries"] == 3 and data[0]["device"] == "fake"


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        (("--device", "nope"), "unknown device 'nope'"),
        (("--resolution", "100"), "has no resolution 100"),
        (("--space", "ofa-mbv3", "--device", "fake"), "too many to profile"),
        (("--device", "fake", "-O", "bad"), "NAME=VALUE"),
        (("--device", "fake", "--shard", "4/3"), "--shard"),
    ],
)
def test_cli_profile_bad_input(tmp_path: Path, args: tuple[str, ...], fragment: str) -> None:
    """Unknown device, bad resolution, unprofilable space, bad options: one line, exit 2, no table."""
    result = run("profile", *args, "--table", str(tmp_path / "t.db"), "--quiet")
    assert result.exit_code == 2 and fragment in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "t.db").exists()


def test_cli_profile_bad_table_paths(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """--table that is a folder, in a missing folder, or read-only: one line, nothing created."""
    result = run("profile", "--device", "fake", "--limit", "1", "--table", str(tmp_path), "--quiet")
    assert result.exit_code == 2 and "is a directory" in result.stderr
    result = run("profile", "--device", "fake", "--limit", "1", "--table", str(tmp_path / "no" / "t.db"), "--quiet")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    table = tmp_path / "t.db"
    profile_space(request(table, limit=1))
    before = digest(table)
    real_access = os.access
    monkeypatch.setattr(os, "access",
                        lambda p, mode: False if Path(p) == table and mode & os.W_OK else real_access(p, mode))
    result = run("profile", "--device", "fake", "--limit", "2", "--table", str(table), "--quiet")
    assert result.exit_code == 2 and "read-only" in result.stderr
    assert digest(table) == before


def test_cli_interrupt_keeps_rounds(tmp_path: Path) -> None:
    """Ctrl-C during `compofa profile` exits 130 with a one-line note, and the rerun resumes."""
    table = str(tmp_path / "t.db")
    base = ("profile", "--device", "fake", "--resolution", "160", "--limit", "6", "--round-seconds", "0.05",
            "--table", table, "--quiet")
    result = run(*base, "-O", "fail_after=300")
    assert result.exit_code == 130 and "rerun the same command to resume" in result.stderr
    result = run(*base)
    assert result.exit_code == 0 and "profiled" in result.output
    with LatencyTable.open(table) as store:
        assert len(store.entries()) == 6
