"""Moving entries out of and between tables: export (JSON, CSV) and merge."""

from __future__ import annotations

import contextlib
import csv
import io
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from compofa.fileio import atomic_output
from compofa.space import parse_spec
from compofa.tables.store import Entry, EntryKey, LatencyTable, TableError, TableMismatchError, writing

EXPORT_FORMATS = ("json", "csv")
#: Columns of an export, in order (a list of entries, one object or row each).
EXPORT_FIELDS = (
    "space", "spec", "ofa", "resolution", "batch", "precision", "width", "device",
    "n", "median_ms", "ci_low_ms", "ci_high_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms",
    "iqr_ms", "mad_ms", "min_ms", "max_ms", "raw_median_ms", "rounds", "stable", "reason",
)


def entry_record(entry: Entry) -> dict[str, Any]:
    key = entry.key
    return {
        "space": key.space, "spec": key.spec, "ofa": parse_spec(key.spec).to_ofa_dict(),
        "resolution": key.resolution, "batch": key.batch, "precision": key.precision, "width": key.width,
        "device": entry.device, "n": entry.n, "median_ms": entry.median_ms, "ci_low_ms": entry.ci_low_ms,
        "ci_high_ms": entry.ci_high_ms, "p10_ms": entry.p10_ms, "p90_ms": entry.p90_ms,
        "mean_ms": entry.mean_ms, "std_ms": entry.std_ms, "iqr_ms": entry.iqr_ms, "mad_ms": entry.mad_ms,
        "min_ms": entry.min_ms, "max_ms": entry.max_ms, "raw_median_ms": entry.raw_median_ms,
        "rounds": entry.rounds, "stable": entry.stable, "reason": entry.reason,
    }


def export_entries(entries: Sequence[Entry], output: str | os.PathLike[str], fmt: str) -> int:
    """Write `entries` as JSON (a list of objects) or CSV (the OFA dict as JSON text); atomic."""
    if fmt not in EXPORT_FORMATS:
        raise TableError(f"unknown export format {fmt!r}; choose {' or '.join(EXPORT_FORMATS)}")
    records = [entry_record(entry) for entry in entries]
    if fmt == "json":
        text = json.dumps(records, indent=1)
    else:
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=EXPORT_FIELDS, lineterminator="\n")
        writer.writeheader()
        for record in records:
            writer.writerow(record | {"ofa": json.dumps(record["ofa"], separators=(",", ":"))})
        text = buffer.getvalue()
    with atomic_output(output, "w") as handle:
        handle.write(text)
    return len(records)


@dataclass
class MergeReport:
    tables: int = 0
    entries: int = 0
    runs: int = 0
    rounds: int = 0
    conflicts: int = 0  # entries the output already had (kept)
    rounds_present: int = 0  # rounds the output already had (a table merged before): skipped
    rescaled: dict[str, float] = field(default_factory=dict)  # input path -> factor applied to its entries


def merge_tables(output: Path, inputs: Sequence[Path], force: bool = False) -> MergeReport:
    """Join tables into `output` (created if missing), all or nothing, as its one writer.

    Devices are matched by fingerprint. Inputs holding the same backend with a
    different fingerprint are refused unless `force`, which files them under
    the first one's device. Each input's entries are expressed at its own
    reference baseline; when the reference subnet is the same, entries (and
    the drift of their rounds) are rescaled to the first baseline so that
    shards timed on machines of slightly different speed line up. An entry
    already present is kept (counted as a conflict). Runs, rounds and
    reference checks are recognised by what they are, not by row ids (a run
    by its start time, host and fingerprint; a round by its run, network,
    subnet, index and start), so merging the same table twice adds nothing
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


Network = tuple[str, float, int, str]  # space, width, batch, precision


def _merge_one(target: LatencyTable, source: LatencyTable, force: bool, report: MergeReport) -> None:
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
    factors: dict[tuple[int, Network], float] = {}
    for old_device, new_device in device_map.items():
        networks = source.connection.execute(
            "SELECT DISTINCT space, width, batch, precision FROM entries WHERE device_id = ?"
            " UNION SELECT DISTINCT space, width, batch, precision FROM rounds WHERE device_id = ?",
            (old_device, old_device),
        ).fetchall()
        for network in networks:
            factor = _rescale_factor(target, source, old_device, new_device, network)
            factors[(old_device, tuple(network))] = factor  # type: ignore[assignment]
            report.rescaled[f"{source.path}:{network[0]}"] = factor
            _copy_entries(target, source, old_device, new_device, network, factor, report)
    _copy_runs(target, source, device_map, factors, report)


def _rescale_factor(target: LatencyTable, source: LatencyTable, old_device: int, new_device: int,
                    network: tuple) -> float:  # type: ignore[type-arg]
    """Factor taking `source`'s entries to the target's reference baseline (1 without a shared reference)."""
    space, width, batch, precision = network
    probe = EntryKey(space, width, "", 0, batch, precision)
    theirs = source.reference(old_device, probe)
    if theirs is None:
        return 1.0
    ours = target.reference(new_device, probe)
    if ours is None:
        spec = theirs[0]
        target.set_reference(new_device, EntryKey(space, width, spec, parse_spec(spec).resolution, batch, precision),
                             theirs[1])
        return 1.0
    return ours[1] / theirs[1] if ours[0] == theirs[0] else 1.0


_TIMED = ("median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "iqr_ms", "mad_ms", "min_ms", "max_ms",
          "ci_low_ms", "ci_high_ms")


def _copy_entries(target: LatencyTable, source: LatencyTable, old_device: int, new_device: int,
                  network: tuple, factor: float, report: MergeReport) -> None:  # type: ignore[type-arg]
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
                values[name] *= factor
            exists = cursor.execute(
                "SELECT 1 FROM entries WHERE device_id=? AND space=? AND width=? AND spec=? AND batch=? AND precision=?",
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
                    cursor.execute("INSERT INTO reference_checks VALUES (?, ?, ?, ?)", (new_run, at, median_ms, samples))
            for row in connection.execute(f"SELECT {', '.join(round_columns)} FROM rounds WHERE run_id = ?",
                                          (old_run,)).fetchall():
                values = dict(zip(round_columns, row))
                values["run_id"], values["device_id"] = new_run, device_map[values["device_id"]]
                present = cursor.execute(  # device first: the lookup then uses the rounds' index
                    "SELECT 1 FROM rounds WHERE device_id = ? AND space = ? AND width = ? AND spec = ? AND batch = ?"
                    " AND precision = ? AND run_id = ? AND round_index = ? AND started_at = ?",
                    (values["device_id"], values["space"], values["width"], values["spec"], values["batch"],
                     values["precision"], new_run, values["round_index"], values["started_at"]),
                ).fetchone()
                if present:
                    report.rounds_present += 1
                    continue
                network = (values["space"], values["width"], values["batch"], values["precision"])
                # samples divided by drift are at the source's baseline; the target's is `factor` times it
                values["drift"] /= factors.get((int(row[round_columns.index("device_id")]), network), 1.0)
                _insert(cursor, "rounds", values)
                report.rounds += 1
