"""Moving entries out of and between tables: export (JSON, CSV) and merge."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

from compofa.fileio import atomic_output
from compofa.space import parse_spec
from compofa.tables.store import Entry, EntryKey, LatencyTable, TableError, TableMismatchError

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
    rounds: int = 0
    conflicts: int = 0
    rescaled: dict[str, float] = field(default_factory=dict)  # input path -> factor applied to its entries


def merge_tables(output: Path, inputs: Sequence[Path], force: bool = False) -> MergeReport:
    """Join shard tables into `output` (created if missing), all or nothing.

    Devices are matched by fingerprint. Inputs holding the same backend with a
    different fingerprint are refused unless `force`, which files them under
    the first one's device. Each input's entries are expressed at its own
    reference baseline; when the reference subnet is the same, entries are
    rescaled to the first baseline so that shards timed on machines of
    slightly different speed line up. An entry already present is kept
    (counted as a conflict). The merge is built in a temporary file renamed
    over `output` at the end, so a refused input leaves `output` as it was.
    """
    report = MergeReport()
    for path in inputs:
        if output.exists() and path.resolve() == output.resolve():
            raise TableError(f"{str(path)!r} is the output table; list only the tables to merge into it")
    if output.is_dir():
        raise TableError(f"output {str(output)!r} is a directory; give a file name")
    scratch = output.with_name(f".{output.name}.merging")
    scratch.unlink(missing_ok=True)
    try:
        if output.exists():
            with LatencyTable.open(output) as existing, sqlite3.connect(scratch) as copy:
                existing.connection.backup(copy)
        with LatencyTable.open(scratch, writable=True, create=True) as target:
            for path in inputs:
                with LatencyTable.open(path) as source:
                    _merge_one(target, source, force, report)
                report.tables += 1
        os.replace(scratch, output)
    finally:
        for leftover in (scratch, scratch.with_name(scratch.name + "-wal"), scratch.with_name(scratch.name + "-shm")):
            leftover.unlink(missing_ok=True)
    return report


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
    for old_device, new_device in device_map.items():
        networks = source.connection.execute(
            "SELECT DISTINCT space, width, batch, precision FROM entries WHERE device_id = ?", (old_device,)
        ).fetchall()
        for network in networks:
            factor = _rescale_factor(target, source, old_device, new_device, network)
            report.rescaled[f"{source.path}:{network[0]}"] = factor
            _copy_entries(target, source, old_device, new_device, network, factor, report)
    _copy_rounds(target, source, device_map, report)


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


def _copy_entries(target: LatencyTable, source: LatencyTable, old_device: int, new_device: int,
                  network: tuple, factor: float, report: MergeReport) -> None:  # type: ignore[type-arg]
    space, width, batch, precision = network
    rows = source.connection.execute(
        "SELECT * FROM entries WHERE device_id=? AND space=? AND width=? AND batch=? AND precision=?",
        (old_device, space, width, batch, precision),
    ).fetchall()
    timed = {"median_ms", "mean_ms", "std_ms", "p10_ms", "p90_ms", "iqr_ms", "mad_ms", "min_ms", "max_ms",
             "ci_low_ms", "ci_high_ms"}
    columns = [c[1] for c in source.connection.execute("PRAGMA table_info(entries)").fetchall()]
    with target.transaction() as cursor:
        for row in rows:
            values = dict(zip(columns, row))
            values["device_id"] = new_device
            for name in timed:
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


def _copy_rounds(target: LatencyTable, source: LatencyTable, device_map: dict[int, int], report: MergeReport) -> None:
    connection = source.connection
    run_columns = [c[1] for c in connection.execute("PRAGMA table_info(runs)").fetchall()]
    round_columns = [c[1] for c in connection.execute("PRAGMA table_info(rounds)").fetchall() if c[1] != "id"]
    with target.transaction() as cursor:
        for run in connection.execute("SELECT * FROM runs").fetchall():
            values = dict(zip(run_columns, run))
            old_run = values.pop("id")
            values["device_id"] = device_map[values["device_id"]]
            cursor.execute(
                f"INSERT INTO runs ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})", list(values.values())
            )
            new_run = cursor.lastrowid
            for check in connection.execute("SELECT at, median_ms, samples FROM reference_checks WHERE run_id = ?",
                                            (old_run,)).fetchall():
                cursor.execute("INSERT INTO reference_checks VALUES (?, ?, ?, ?)", (new_run, *check))
            for row in connection.execute(f"SELECT {', '.join(round_columns)} FROM rounds WHERE run_id = ?",
                                          (old_run,)).fetchall():
                values = dict(zip(round_columns, row))
                values["run_id"], values["device_id"] = new_run, device_map[values["device_id"]]
                cursor.execute(
                    f"INSERT INTO rounds ({', '.join(values)}) VALUES ({', '.join('?' for _ in values)})",
                    list(values.values()),
                )
                report.rounds += 1
