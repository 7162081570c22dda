"""`compofa table merge`: join tables (profile shards, accuracy tables) into one, all or nothing.

What is merged, and how each kind of row is recognised, so that merging the same
table again adds nothing:

- devices by fingerprint (a backend measured on another setup is refused unless forced);
- latency entries by device and key; an entry the output has is kept;
- runs by start time, host and fingerprint; their reference checks by run and time; rounds by
  run, network, subnet, index and start;
- accuracy rows by space, width, spec and weights. A row the output lacks is copied as it is;
  one it has with the same result (numbers and settings) is the same evaluation and adds nothing;
  one with a different result (another calibration set, seed or data) is a conflict: the output's
  row is kept, as for entries, so a merge never changes accuracies already searched with, and the
  conflicts are counted in the report (and named by `compofa table merge`).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa.tables.store import LatencyTable, SetupKey, TableError, TableMismatchError, writing

__all__ = ["MergeReport", "merge_tables"]


@dataclass
class MergeReport:
    tables: int = 0
    entries: int = 0
    runs: int = 0
    rounds: int = 0
    conflicts: int = 0  # entries the output already had (kept)
    rounds_present: int = 0  # rounds the output already had (a table merged before): skipped
    rescaled: dict[str, float] = field(default_factory=dict)  # "input path:setup" -> factor applied to its entries
    accuracies: int = 0  # accuracy rows added
    accuracies_present: int = 0  # accuracy rows the output already had with the same result: skipped
    accuracy_conflicts: int = 0  # accuracy rows the output had with a different result (the output's kept)


def merge_tables(output: Path, inputs: Sequence[Path], force: bool = False) -> MergeReport:
    """Join tables into `output` (created if missing), all or nothing, as its one writer.

    Devices are matched by fingerprint. Inputs holding the same backend with a
    different fingerprint are refused unless `force`, which files them under
    the first one's device. Each input's entries are expressed at its own
    reference baseline; when the reference subnet is the same, entries (and
    the drift of their rounds) are rescaled to the first baseline so that
    shards timed on machines of slightly different speed line up. An entry
    already present is kept (counted as a conflict). Runs, rounds, reference
    checks and accuracy rows are recognised by what they are, not by row ids
    (see the module docstring), so merging the same table twice adds nothing
    the second time and a resumed profile never sees a round twice. All
    inputs are checked before the output is touched, and the merge is one
    transaction: a refused input or a full disk leaves `output` as it was.
    """
    report = MergeReport()
    if output.is_dir():
        raise TableError(f"output {str(output)!r} is a directory; give a file name")
    for path in inputs:
        if output.exists() and path.exists() and os.path.samefile(path, output):
            raise TableError(f"{str(path)!r} is the output table; list only the tables to merge into it")
    with contextlib.ExitStack() as stack:
        sources = [stack.enter_context(LatencyTable.open(path)) for path in inputs]
        LatencyTable.check_path(output, writable=True, create=True)
        target = stack.enter_context(writing(output))
        with target.transaction():
            for source in sources:
                _merge_one(target, source, force, report)
                report.tables += 1
        target.checkpoint(force=True)
    return report


#: A setup as its rows store it: space, width, batch, precision columns.
Network = tuple[str, float, int, str]


def _merge_one(target: LatencyTable, source: LatencyTable, force: bool, report: MergeReport) -> None:
    device_map = _map_devices(target, source, force)
    factors: dict[tuple[int, Network], float] = {}
    for old_device, new_device in device_map.items():
        networks = source.connection.execute(
            "SELECT DISTINCT space, width, batch, precision FROM entries WHERE device_id = ?"
            " UNION SELECT DISTINCT space, width, batch, precision FROM rounds WHERE device_id = ?",
            (old_device, old_device),
        ).fetchall()
        for row in networks:
            network: Network = (row[0], float(row[1]), int(row[2]), row[3])
            setup = SetupKey.from_columns(*network)
            factor = _rescale_factor(target, source, old_device, new_device, setup)
            factors[(old_device, network)] = factor
            report.rescaled[f"{source.path}:{setup.describe()}"] = factor
            _copy_entries(target, source, old_device, new_device, network, factor, report)
    _copy_runs(target, source, device_map, factors, report)
    _copy_accuracy(target, source, report)


def _map_devices(target: LatencyTable, source: LatencyTable, force: bool) -> dict[int, int]:
    """The target's device id for each of the source's (added when new); refuses another setup unless `force`."""
    device_map: dict[int, int] = {}
    for device in source.devices():
        existing = target.devices()
        exact = any(d.fingerprint == device.fingerprint for d in existing)
        conflicting = [d for d in existing if d.name == device.name and d.fingerprint != device.fingerprint]
        if exact or not conflicting:
            device_map[device.id] = target.device_id(device.name, device.fingerprint)
            continue
        other = conflicting[0]
        differing = sorted(k for k in set(other.fingerprint) | set(device.fingerprint)
                           if other.fingerprint.get(k) != device.fingerprint.get(k))
        if not force:
            raise TableMismatchError(
                f"{str(source.path)!r} measured {device.name} on a different setup (differs in "
                f"{', '.join(differing)}); refusing to merge: use --force to file it under the first setup"
            )
        device_map[device.id] = other.id
    return device_map


def _rescale_factor(target: LatencyTable, source: LatencyTable, old_device: int, new_device: int,
                    setup: SetupKey) -> float:
    """Factor taking `source`'s entries to the target's reference baseline (1 without a shared reference)."""
    theirs = source.reference(old_device, setup)
    if theirs is None:
        return 1.0
    ours = target.reference(new_device, setup)
    if ours is None:
        target.set_reference(new_device, setup, *theirs)
        return 1.0
    return ours[1] / theirs[1] if ours[0] == theirs[0] else 1.0


_TIMED = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "iqr_ms", "mad_ms", "min_ms", "max_ms",
          "ci_low_ms", "ci_high_ms", "p90_ci_low_ms", "p90_ci_high_ms", "p99_ms", "p99_ci_low_ms", "p99_ci_high_ms")


def _copy_entries(target: LatencyTable, source: LatencyTable, old_device: int, new_device: int,
                  network: Network, factor: float, report: MergeReport) -> None:
    space, width, batch, precision = network
    rows = source.connection.execute(
        "SELECT * FROM entries WHERE device_id=? AND space=? AND width=? AND batch=? AND precision=?",
        (old_device, space, width, batch, precision),
    ).fetchall()
    columns = [c[1] for c in source.connection.execute("PRAGMA table_info(entries)").fetchall()]
    with target.transaction() as cursor:
        for row in rows:
            values = dict(zip(columns, row))
            values["device_id"] = new_device
            for name in _TIMED:
                if values.get(name) is not None:  # an entry of a version-1 table has no tail
                    values[name] *= factor
            exists = cursor.execute(
                "SELECT 1 FROM entries WHERE device_id=? AND space=? AND width=? AND spec=? AND batch=?"
                " AND precision=?",
                (new_device, values["space"], values["width"], values["spec"], values["batch"], values["precision"]),
            ).fetchone()
            if exists:
                report.conflicts += 1
                continue
            cursor.execute(
                f"INSERT INTO entries ({', '.join(columns)}) VALUES ({', '.join('?' for _ in columns)})",
                [values[c] for c in columns],
            )
            report.entries += 1


def _insert(cursor: Any, table: str, values: dict[str, Any]) -> int:
    cursor.execute(f"INSERT INTO {table} ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                   list(values.values()))
    return int(cursor.lastrowid)


def _copy_runs(target: LatencyTable, source: LatencyTable, device_map: dict[int, int],
               factors: dict[tuple[int, Network], float], report: MergeReport) -> None:
    """Copy the runs, their reference checks and rounds the target does not have yet (see `merge_tables`)."""
    connection = source.connection
    run_columns = [c[1] for c in connection.execute("PRAGMA table_info(runs)").fetchall()]
    round_columns = [c[1] for c in connection.execute("PRAGMA table_info(rounds)").fetchall() if c[1] != "id"]
    with target.transaction() as cursor:
        for run in connection.execute("SELECT * FROM runs ORDER BY id").fetchall():
            values = dict(zip(run_columns, run))
            old_run = values.pop("id")
            old_device = values["device_id"]
            values["device_id"] = device_map[old_device]
            present = cursor.execute(
                "SELECT id, finished_at FROM runs WHERE started_at = ? AND host IS ? AND fingerprint = ?",
                (values["started_at"], values["host"], values["fingerprint"]),
            ).fetchone()
            if present is None:
                new_run = _insert(cursor, "runs", values)
                report.runs += 1
            else:
                new_run = int(present[0])
                if present[1] is None and values["finished_at"] is not None:  # copied while it ran, finished since
                    cursor.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (values["finished_at"], new_run))
            for at, median_ms, samples in connection.execute(
                    "SELECT at, median_ms, samples FROM reference_checks WHERE run_id = ?", (old_run,)).fetchall():
                if not cursor.execute("SELECT 1 FROM reference_checks WHERE run_id = ? AND at = ?",
                                      (new_run, at)).fetchone():
                    cursor.execute("INSERT INTO reference_checks VALUES (?, ?, ?, ?)",
                                   (new_run, at, median_ms, samples))
            for row in connection.execute(f"SELECT {', '.join(round_columns)} FROM rounds WHERE run_id = ?",
                                          (old_run,)).fetchall():
                values = dict(zip(round_columns, row))
                source_device = int(values["device_id"])
                values["run_id"], values["device_id"] = new_run, device_map[source_device]
                present = cursor.execute(  # device first: the lookup then uses the rounds' index
                    "SELECT 1 FROM rounds WHERE device_id = ? AND space = ? AND width = ? AND spec = ? AND batch = ?"
                    " AND precision = ? AND run_id = ? AND round_index = ? AND started_at = ?",
                    (values["device_id"], values["space"], values["width"], values["spec"], values["batch"],
                     values["precision"], new_run, values["round_index"], values["started_at"]),
                ).fetchone()
                if present:
                    report.rounds_present += 1
                    continue
                network: Network = (values["space"], float(values["width"]), int(values["batch"]), values["precision"])
                # samples divided by drift are at the source's baseline; the target's is `factor` times it
                values["drift"] /= factors.get((source_device, network), 1.0)
                _insert(cursor, "rounds", values)
                report.rounds += 1


def _copy_accuracy(target: LatencyTable, source: LatencyTable, report: MergeReport) -> None:
    """Copy the accuracy rows the target lacks; one it has is kept (see the module docstring)."""
    with target.transaction():
        for row in source.accuracy.rows():
            held = target.accuracy.get(row.key)
            if held is None:
                target.accuracy.add(row)
                report.accuracies += 1
            elif held.same_result(row):
                report.accuracies_present += 1
            else:
                report.accuracy_conflicts += 1
