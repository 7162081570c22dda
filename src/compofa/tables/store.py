"""The latency table store: one SQLite file (standard library, WAL mode).

What it holds: the devices (fingerprints) measured, the profiling runs (their
settings), every round of every subnet with its raw samples (committed the
moment it is measured, so an interrupted run loses at most the round in
flight), the reference subnet's checks, and one entry per (device, space,
width, subnet, resolution, batch, precision) with the statistics derived from
those rounds. An entry's key (`EntryKey`) is of a whole subnet or, in a lookup
table's store, of one layer; a reference belongs to a setup (`SetupKey`).
Accuracy rows (measured by evaluation) have their own table in the same file,
owned by `compofa.tables.accuracy`.

A file that is not a compofa table, is damaged, or comes from a newer schema
is refused with a message before anything is written, and left byte for byte
as it was. One process writes a table at a time (`compofa.tables.sqlite`).
While a table is written SQLite keeps its newest commits in ``TABLE-wal``
beside it; they are copied into the table itself every `CHECKPOINT_SECONDS`
of writing and when the writer closes it, so after a kill at most that much
sits only in the ``-wal`` file (which the next open reads).
"""

from __future__ import annotations

import json
import os
import sqlite3
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa import __version__
from compofa.errors import CompofaError
from compofa.fileio import current_umask
from compofa.profiler.measurement import Estimate, Measurement, RoundRecord
from compofa.tables.accuracy import SCHEMA as ACCURACY_SCHEMA
from compofa.tables.accuracy import TABLE as ACCURACY_TABLE
from compofa.tables.accuracy import UPGRADE_FROM_1 as ACCURACY_UPGRADE_FROM_1
from compofa.tables.accuracy import AccuracyRows
from compofa.tables.sqlite import (
    TableBusyError,
    TableConnection,
    TableCursor,
    TableError,
    TableMismatchError,
    WriterLock,
    companions,
    connect,
    probe_uri,
    translate,
    writable_place,
)

__all__ = ["KINDS", "LAYER", "SUBNET", "DeviceRow", "Entry", "EntryKey", "LatencyTable", "SetupKey", "TableBusyError",
           "TableError", "TableMismatchError"]

#: Schema history:
#: 1: meta, devices, runs, rounds, reference_checks, references, entries, accuracy (its schema in
#:    `compofa.tables.accuracy`); a layer's rows hold "layers/<family>" in their space column.
#: 2: entries gain the tail (p90's interval, p99 with its interval), the peak memory, the energy per inference
#:    and why either is absent (`METRIC_COLUMNS`); accuracy rows gain their precision. A version-1 file is
#:    read as it is and upgraded in the transaction of its first write (`_upgrade`).
SCHEMA_VERSION = 2
APPLICATION = "compofa-latency-table"
#: The tables every schema-1 file has.
TABLES = ("meta", "devices", "runs", "references_", "reference_checks", "rounds", "entries", ACCURACY_TABLE)
#: Seconds of writing after which a writer copies the WAL's commits into the table file (see `checkpoint`).
CHECKPOINT_SECONDS = 30.0

_SCHEMA = """
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE devices (
    id INTEGER PRIMARY KEY,
    name TEXT NOT NULL,
    fingerprint TEXT NOT NULL UNIQUE
);
CREATE TABLE runs (
    id INTEGER PRIMARY KEY,
    device_id INTEGER NOT NULL REFERENCES devices(id),
    started_at REAL NOT NULL,
    finished_at REAL,
    host TEXT,
    compofa_version TEXT,
    shard TEXT,
    settings TEXT NOT NULL,
    source TEXT NOT NULL,
    fingerprint TEXT NOT NULL
);
CREATE TABLE references_ (
    device_id INTEGER NOT NULL REFERENCES devices(id),
    space TEXT NOT NULL, width REAL NOT NULL, batch INTEGER NOT NULL, precision TEXT NOT NULL,
    spec TEXT NOT NULL,
    baseline_ms REAL NOT NULL,
    measured_at REAL NOT NULL,
    PRIMARY KEY (device_id, space, width, batch, precision)
);
CREATE TABLE reference_checks (
    run_id INTEGER NOT NULL REFERENCES runs(id),
    at REAL NOT NULL,
    median_ms REAL NOT NULL,
    samples TEXT NOT NULL
);
CREATE TABLE rounds (
    id INTEGER PRIMARY KEY,
    run_id INTEGER NOT NULL REFERENCES runs(id),
    device_id INTEGER NOT NULL REFERENCES devices(id),
    space TEXT NOT NULL, width REAL NOT NULL, spec TEXT NOT NULL, resolution INTEGER NOT NULL,
    batch INTEGER NOT NULL, precision TEXT NOT NULL,
    round_index INTEGER NOT NULL,
    started_at REAL NOT NULL,
    timed_at REAL NOT NULL,
    warmup TEXT NOT NULL,
    samples TEXT NOT NULL,
    drift REAL NOT NULL,
    prepare_s REAL NOT NULL,
    conditions TEXT NOT NULL,
    discarded TEXT
);
CREATE INDEX rounds_by_key ON rounds (device_id, space, width, spec, batch, precision);
CREATE TABLE entries (
    device_id INTEGER NOT NULL REFERENCES devices(id),
    space TEXT NOT NULL, width REAL NOT NULL, spec TEXT NOT NULL, resolution INTEGER NOT NULL,
    batch INTEGER NOT NULL, precision TEXT NOT NULL,
    n INTEGER NOT NULL,
    median_ms REAL NOT NULL, mean_ms REAL NOT NULL, std_ms REAL NOT NULL,
    p10_ms REAL NOT NULL, p90_ms REAL NOT NULL, iqr_ms REAL NOT NULL, mad_ms REAL NOT NULL,
    min_ms REAL NOT NULL, max_ms REAL NOT NULL,
    ci_low_ms REAL NOT NULL, ci_high_ms REAL NOT NULL,
    raw_median_ms REAL NOT NULL,
    rounds INTEGER NOT NULL,
    stable INTEGER NOT NULL,
    warnings TEXT NOT NULL,
    reason TEXT NOT NULL,
    updated_at REAL NOT NULL,
    p90_ci_low_ms REAL, p90_ci_high_ms REAL, p99_ms REAL, p99_ci_low_ms REAL, p99_ci_high_ms REAL,
    peak_memory_mb REAL, energy_mj REAL, absent TEXT,
    PRIMARY KEY (device_id, space, width, spec, batch, precision)
);
""" + ACCURACY_SCHEMA

#: The entry columns schema 2 added, each NULL where there is no value (a version-1 entry; a metric the device
#: cannot read, whose reason `absent` holds as a JSON object).
METRIC_COLUMNS = ("p90_ci_low_ms", "p90_ci_high_ms", "p99_ms", "p99_ci_low_ms", "p99_ci_high_ms", "peak_memory_mb",
                  "energy_mj", "absent")
#: The columns of an entry, in order.
ENTRY_COLUMNS = (
    "device_id", "space", "width", "spec", "resolution", "batch", "precision", "n", "median_ms", "mean_ms", "std_ms",
    "p10_ms", "p90_ms", "iqr_ms", "mad_ms", "min_ms", "max_ms", "ci_low_ms", "ci_high_ms", "raw_median_ms", "rounds",
    "stable", "warnings", "reason", "updated_at", *METRIC_COLUMNS,
)


#: Why a round is kept on record but not used.
DISCARD_REASON = "the reference subnet's speed changed during the round"


#: What an entry measures: a whole subnet, or one layer of a lookup table (`compofa lut build`).
SUBNET, LAYER = "subnet", "layer"
KINDS = (SUBNET, LAYER)
#: How the space column holds a layer's family. Schema 1 has always stored layers so ("layers/mobilenetv3"),
#: which keeps every lookup table's store readable and resumable without a migration; only this module
#: reads or writes that form: everything above it sees `kind` and the family.
_LAYER_PREFIX = "layers/"


def _check_kind(kind: str, space: str) -> None:
    if kind not in KINDS:
        raise TableError(f"unknown entry kind {kind!r}; choose {' or '.join(KINDS)}")
    if space.startswith(_LAYER_PREFIX):
        raise TableError(f"space names starting with {_LAYER_PREFIX!r} are reserved for layers; "
                         f"give the family name ({space.removeprefix(_LAYER_PREFIX)!r}) with kind {LAYER!r}")


def _stored_space(kind: str, space: str) -> str:
    return _LAYER_PREFIX + space if kind == LAYER else space


def _kind_and_space(stored: str) -> tuple[str, str]:
    return (LAYER, stored.removeprefix(_LAYER_PREFIX)) if stored.startswith(_LAYER_PREFIX) else (SUBNET, stored)


@dataclass(frozen=True)
class SetupKey:
    """What a reference and its baseline belong to: one network timed at one batch and precision
    (on a device, named beside it): the subnets of a space at a width, or the layers of a family."""

    space: str  # a design space; for layers, the model family (a family's layers are shared by its spaces)
    width: float
    batch: int
    precision: str
    kind: str = SUBNET

    def __post_init__(self) -> None:
        _check_kind(self.kind, self.space)

    @classmethod
    def from_columns(cls, space: str, width: float, batch: int, precision: str) -> SetupKey:
        """The setup of stored rows, from their space, width, batch and precision columns."""
        kind, name = _kind_and_space(space)
        return cls(name, float(width), int(batch), precision, kind)

    def columns(self) -> tuple[str, float, int, str]:
        """The space, width, batch and precision columns of this setup's rows."""
        return _stored_space(self.kind, self.space), self.width, self.batch, self.precision

    def describe(self) -> str:
        return f"{self.space} layers" if self.kind == LAYER else self.space


@dataclass(frozen=True)
class EntryKey:
    """What identifies one latency entry within a device.

    `spec` is a subnet's canonical text, or for a layer (`kind` LAYER) the layer's
    lookup-table key; `space` is then the model family the layer belongs to.
    """

    space: str
    width: float
    spec: str
    resolution: int
    batch: int
    precision: str
    kind: str = SUBNET

    def __post_init__(self) -> None:
        _check_kind(self.kind, self.space)

    @classmethod
    def layer(cls, family: str, width: float, key: str, resolution: int, batch: int, precision: str) -> EntryKey:
        """The key of one lookup-table layer of `family` at `width`."""
        return cls(family, width, key, resolution, batch, precision, LAYER)

    @property
    def setup(self) -> SetupKey:
        """The setup this entry is measured in (its reference's)."""
        return SetupKey(self.space, self.width, self.batch, self.precision, self.kind)

    def columns(self) -> tuple[str, float, str, int, int, str]:
        """The space, width, spec, resolution, batch and precision columns of this entry's rows."""
        return _stored_space(self.kind, self.space), self.width, self.spec, self.resolution, self.batch, self.precision

    @classmethod
    def from_columns(cls, space: str, width: float, spec: str, resolution: int, batch: int, precision: str
                     ) -> EntryKey:
        """The key of stored rows, from their space, width, spec, resolution, batch and precision columns."""
        kind, name = _kind_and_space(space)
        return cls(name, float(width), spec, int(resolution), int(batch), precision, kind)


@dataclass(frozen=True)
class Entry:
    """One finished latency entry, as stored."""

    device_id: int
    device: str
    key: EntryKey
    n: int
    median_ms: float
    mean_ms: float
    std_ms: float
    p10_ms: float
    p90_ms: float
    iqr_ms: float
    mad_ms: float
    min_ms: float
    max_ms: float
    ci_low_ms: float
    ci_high_ms: float
    raw_median_ms: float
    rounds: int
    stable: bool
    warnings: tuple[str, ...]
    reason: str
    p90_ci_low_ms: float | None = None
    p90_ci_high_ms: float | None = None
    p99_ms: float | None = None
    p99_ci_low_ms: float | None = None
    p99_ci_high_ms: float | None = None
    peak_memory_mb: float | None = None
    energy_mj: float | None = None
    #: Why memory or energy is None (by metric); empty for an entry written before compofa read them.
    absent: dict[str, str] = field(default_factory=dict)

    @property
    def relative_ci(self) -> float:
        return (self.ci_high_ms - self.ci_low_ms) / 2 / self.median_ms if self.median_ms > 0 else float("inf")


@dataclass(frozen=True)
class DeviceRow:
    id: int
    name: str
    fingerprint: dict[str, Any]


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _samples(values: Sequence[float]) -> str:
    return json.dumps([round(float(v), 6) for v in values], separators=(",", ":"))


class LatencyTable:
    """A latency table file. Open with `LatencyTable.open(path, writable)`."""

    def __init__(self, path: Path, connection: TableConnection, writable: bool, lock: WriterLock | None = None,
                 created: bool = False, schema_version: int = SCHEMA_VERSION) -> None:
        self.path = path
        #: The file's schema; an older one is read as it is and upgraded at the first write (`_upgrade`).
        self.schema_version = schema_version
        self.connection = connection
        self.writable = writable
        self.created = created  # this process created the file (a failed first run may remove it)
        self._lock = lock
        self._depth = 0  # nesting of transaction()
        self._wal = False
        self._checkpointed = time.monotonic()
        self._closed = False

    # -- opening -------------------------------------------------------------------------

    @classmethod
    def open(cls, path: str | os.PathLike[str], writable: bool = False, create: bool = False) -> LatencyTable:
        """Open (or with `create`, create) the table at `path`, checking it first.

        Writing (`writable` or `create`) takes the table's writer lock for as long as it
        is open; another writer gets `TableBusyError` at once.
        """
        target = cls.check_path(path, writable, create)
        writing = writable or create
        lock = WriterLock(target) if writing else None
        if lock is not None:
            lock.acquire()
        exists = target.exists()
        connection: TableConnection | None = None
        try:
            version = SCHEMA_VERSION
            if exists:
                version = cls._check_existing(target)
            else:
                cls._create(target)
            connection = connect(target, writing)
            table = cls(target, connection, writing, lock, created=not exists, schema_version=version)
            connection.execute("PRAGMA foreign_keys = ON")
            if writing:
                connection.execute("PRAGMA synchronous = NORMAL")
            return table
        except BaseException:
            if connection is not None:
                connection.close()
            if not exists:  # a table this call created is not left behind by a failed open
                for leftover in (target, *companions(target)):
                    leftover.unlink(missing_ok=True)
            if lock is not None:
                lock.release()
            raise

    @staticmethod
    def check_path(path: str | os.PathLike[str], writable: bool = False, create: bool = False) -> Path:
        """Fail early, in one line, if `path` cannot be opened as asked."""
        target = Path(path)
        if target.is_dir():
            raise TableError(f"table path {str(target)!r} is a directory; give a file name such as latency.db")
        folder = target.parent if str(target.parent) else Path(".")
        if not target.exists():
            if not create:
                raise TableError(f"table {str(target)!r} does not exist")
            if not folder.is_dir():
                raise TableError(f"cannot create table {str(target)!r}: folder {str(folder)!r} does not exist")
            if not writable_place(target):
                raise TableError(f"cannot create table {str(target)!r}: folder {str(folder)!r} is not writable")
        elif writable and not os.access(target, os.W_OK):
            raise TableError(f"table {str(target)!r} is read-only; copy it or write another table", option="table")
        elif writable and not writable_place(target):
            raise TableError(f"table {str(target)!r} cannot be written: its folder {str(folder)!r} is read-only "
                             "(a table being written keeps a lock and a -wal file beside it); copy it elsewhere")
        return target

    @staticmethod
    def _check_existing(target: Path) -> int:
        """Refuse a file that is not a whole compofa table of a schema we read, without writing to it; its schema
        version."""
        name = repr(str(target))
        try:
            with open(target, "rb") as handle:
                header = handle.read(16)
        except OSError as error:
            raise TableError(f"cannot read table {name}: {error.strerror}") from None
        if header != b"SQLite format 3\x00":
            raise TableError(f"{name} is not a compofa latency table (not an SQLite file); it was left untouched")
        try:
            probe = sqlite3.connect(probe_uri(target), uri=True)
            try:
                tables = {row[0] for row in probe.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
                rows = dict(probe.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
                if rows.get("application") != APPLICATION:
                    raise TableError(f"{name} is an SQLite file but not a compofa latency table; it was left untouched")
                version_text = rows.get("schema_version", "")
                try:
                    version = int(version_text)
                except ValueError:
                    raise TableError(f"{name} is damaged: its schema_version is {version_text!r}, not a number; "
                                     "restore it from a copy; it was left untouched") from None
                if version > SCHEMA_VERSION:
                    raise TableError(f"table {name} has schema version {version}, newer than this compofa reads "
                                     f"({SCHEMA_VERSION}): upgrade compofa")
                missing = [table for table in TABLES if table not in tables]
                if missing:
                    raise TableError(f"{name} is damaged: it lacks the {', '.join(missing)} table(s); restore it from "
                                     "a copy, or write to a new table; it was left untouched")
                check = [row[0] for row in probe.execute("PRAGMA quick_check").fetchall()]
                if check != ["ok"]:
                    first = " ".join(check[0].replace("*** in database main ***", "").split())
                    raise TableError(f"{name} is corrupt ({first[:160]}); restore it from a copy, or write to a new "
                                     "table; it was left untouched")
                return version
            finally:
                probe.close()
        except sqlite3.DatabaseError as error:
            known = translate(error, target)
            if isinstance(known, CompofaError):
                raise type(known)(f"{known}; it was left untouched") from None
            raise TableError(f"{name} is not a readable compofa latency table ({error}); "
                             "it was left untouched") from None

    @staticmethod
    def _create(target: Path) -> None:
        """Make an empty table at `target` whole or not at all: the schema is written into a scratch file
        beside it, which is renamed into place, so a reader sees no table or a complete one."""
        scratch = target.with_name(f".{target.name}.creating")
        leftovers = (scratch, scratch.with_name(scratch.name + "-journal"))
        for leftover in leftovers:
            leftover.unlink(missing_ok=True)
        try:
            connection = sqlite3.connect(scratch, isolation_level=None)
            try:
                connection.execute("BEGIN")
                for statement in _SCHEMA.split(";"):
                    if statement.strip():
                        connection.execute(statement)
                connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)", [
                    ("application", APPLICATION),
                    ("schema_version", str(SCHEMA_VERSION)),
                    ("created_by", f"compofa {__version__}"),
                    ("created_at", str(time.time())),
                ])
                connection.execute("COMMIT")
            finally:
                connection.close()
            os.chmod(scratch, 0o666 & ~current_umask())
            os.replace(scratch, target)
        except sqlite3.DatabaseError as error:
            raise translate(error, target) from None
        except OSError as error:
            raise TableError(f"cannot create table {str(target)!r}: {error.strerror}") from None
        finally:
            for leftover in leftovers:
                leftover.unlink(missing_ok=True)

    def close(self) -> None:
        """Close the file (copying the WAL's commits into it) and let go of the writer lock."""
        if self._closed:
            return
        self._closed = True
        try:
            self.connection.close()
        finally:
            if self._lock is not None:
                self._lock.release()

    def discard(self) -> None:
        """Delete a table this process created, with its -wal and -shm: a first run that measured nothing."""
        if not self.created:
            raise TableError(f"table {str(self.path)!r} existed before; it is not removed")
        self.connection.close()
        for leftover in (self.path, *companions(self.path)):
            leftover.unlink(missing_ok=True)
        self._closed = True
        if self._lock is not None:  # only now: nobody may open the file while it is being removed
            self._lock.release()

    def __enter__(self) -> LatencyTable:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextmanager
    def transaction(self) -> Iterator[TableCursor]:
        """All of the block's writes or none; nested blocks are savepoints inside the outer one."""
        if not self.writable:
            raise TableError(f"table {str(self.path)!r} was opened read-only")
        cursor = self.connection.cursor()
        if not self._wal:  # only at the first write: a file refused or only read keeps its journal mode
            cursor.execute("PRAGMA journal_mode = WAL")
            self._wal = True
        savepoint = f"nested_{self._depth}"
        cursor.execute(f"SAVEPOINT {savepoint}" if self._depth else "BEGIN IMMEDIATE")
        self._depth += 1
        try:
            if self.schema_version < SCHEMA_VERSION:  # with the first write, in its transaction
                self._upgrade(cursor)
            yield cursor
        except BaseException:
            self._depth -= 1
            if self.connection.in_transaction:  # SQLite may have rolled back already (a full disk)
                self.connection.execute(f"ROLLBACK TO {savepoint}" if self._depth else "ROLLBACK")
                if self._depth:
                    self.connection.execute(f"RELEASE {savepoint}")
            raise
        else:
            self._depth -= 1
            self.connection.execute(f"RELEASE {savepoint}" if self._depth else "COMMIT")
        finally:
            cursor.close()  # see TableCursor._fail

    def _upgrade(self, cursor: TableCursor) -> None:
        """Bring a version-1 file to this schema: the entries' new columns (NULL: not recorded then) and the
        accuracy rows' precision (fp32: the only one evaluated then). Inside the first write's transaction, so a
        refused or failed write leaves the file as it was."""
        for column in METRIC_COLUMNS:
            cursor.execute(f"ALTER TABLE entries ADD COLUMN {column} {'TEXT' if column == 'absent' else 'REAL'}")
        for statement in ACCURACY_UPGRADE_FROM_1:
            cursor.execute(statement)
        cursor.execute("UPDATE meta SET value = ? WHERE key = 'schema_version'", (str(SCHEMA_VERSION),))
        self.schema_version = SCHEMA_VERSION

    def checkpoint(self, force: bool = False) -> None:
        """Copy the WAL's commits into the table file (every `CHECKPOINT_SECONDS`, or now with `force`).

        Passive: it never waits for readers; what a reader still uses is copied at a later checkpoint.
        """
        if not self.writable or not self._wal or self._depth:
            return
        if force or time.monotonic() - self._checkpointed >= CHECKPOINT_SECONDS:
            self.connection.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchall()
            self._checkpointed = time.monotonic()

    # -- devices and runs -------------------------------------------------------------------

    def devices(self) -> list[DeviceRow]:
        rows = self.connection.execute("SELECT id, name, fingerprint FROM devices ORDER BY id").fetchall()
        return [DeviceRow(row[0], row[1], json.loads(row[2])) for row in rows]

    def require_device(self, device_id: int) -> None:
        """Refuse a device id the table does not have, naming those it has."""
        devices = self.devices()
        if all(device.id != device_id for device in devices):
            known = ", ".join(f"{d.id} ({d.name})" for d in devices) or "none yet"
            raise TableError(f"table {str(self.path)!r} has no device {device_id}; its devices: {known} "
                             "(see `compofa table show`)")

    def find_device(self, fingerprint: dict[str, Any]) -> int | None:
        """The id of the device with exactly this fingerprint, if the table has it."""
        row = self.connection.execute("SELECT id FROM devices WHERE fingerprint = ?", (_dumps(fingerprint),)).fetchone()
        return int(row[0]) if row else None

    def device_id(self, name: str, fingerprint: dict[str, Any]) -> int:
        """The id of the device with exactly this fingerprint, added if new."""
        text = _dumps(fingerprint)
        found = self.find_device(fingerprint)
        if found is not None:
            return found
        with self.transaction() as cursor:
            cursor.execute("INSERT INTO devices (name, fingerprint) VALUES (?, ?)", (name, text))
            return _inserted_id(cursor)

    def start_run(
        self, device_id: int, settings: dict[str, Any], source: dict[str, Any], fingerprint: dict[str, Any],
        shard: str | None,
    ) -> int:
        with self.transaction() as cursor:
            cursor.execute(
                "INSERT INTO runs (device_id, started_at, host, compofa_version, shard, settings, source, fingerprint)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (device_id, time.time(), settings.get("host") or (os.uname().nodename if hasattr(os, "uname") else ""),
                 __version__, shard,
                 _dumps(settings), _dumps(source), _dumps(fingerprint)),
            )
            return _inserted_id(cursor)

    def finish_run(self, run_id: int) -> None:
        with self.transaction() as cursor:
            cursor.execute("UPDATE runs SET finished_at = ? WHERE id = ?", (time.time(), run_id))

    # -- the reference -----------------------------------------------------------------------

    def reference(self, device_id: int, setup: SetupKey | EntryKey) -> tuple[str, float] | None:
        """The reference (spec or layer key) and baseline of this device and setup, if set.

        An entry's key stands for the setup it is measured in (`EntryKey.setup`).
        """
        if isinstance(setup, EntryKey):
            setup = setup.setup
        row = self.connection.execute(
            "SELECT spec, baseline_ms FROM references_ WHERE device_id=? AND space=? AND width=? AND batch=? "
            "AND precision=?",
            (device_id, *setup.columns()),
        ).fetchone()
        return (row[0], float(row[1])) if row else None

    def set_reference(self, device_id: int, setup: SetupKey, reference: str, baseline_ms: float) -> None:
        """Make `reference` (a spec, or a layer key) the reference of this device and setup, at `baseline_ms`."""
        with self.transaction() as cursor:
            cursor.execute(
                "INSERT OR REPLACE INTO references_ VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (device_id, *setup.columns(), reference, baseline_ms, time.time()),
            )

    def add_reference_check(self, run_id: int, at: float, median_ms: float, samples: Sequence[float]) -> None:
        with self.transaction() as cursor:
            cursor.execute(
                "INSERT INTO reference_checks VALUES (?, ?, ?, ?)", (run_id, at, median_ms, _samples(samples))
            )

    def reference_checks(self, run_id: int | None = None) -> list[tuple[int, float, float]]:
        query = "SELECT run_id, at, median_ms FROM reference_checks"
        rows = self.connection.execute(query + (" WHERE run_id = ?" if run_id else "") + " ORDER BY at",
                                       (run_id,) if run_id else ()).fetchall()
        return [(int(r[0]), float(r[1]), float(r[2])) for r in rows]

    # -- rounds ------------------------------------------------------------------------------------

    def add_round(self, run_id: int, device_id: int, key: EntryKey, record: RoundRecord) -> None:
        with self.transaction() as cursor:
            cursor.execute(
                "INSERT INTO rounds (run_id, device_id, space, width, spec, resolution, batch, precision, round_index,"
                " started_at, timed_at, warmup, samples, drift, prepare_s, conditions, discarded)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, device_id, *key.columns(), record.round_index, record.started_at, record.timed_at,
                 _samples(record.warmup_ms), _samples(record.samples_ms), record.drift, record.prepare_s,
                 _dumps(record.conditions), DISCARD_REASON if record.discarded else None),
            )

    def reference_noises(self, device_id: int, setup: SetupKey) -> list[float]:
        """The reference's spread (`reference_noise`) in every kept round of `setup` on the device: the
        machine's history, from which a run tells disturbed rounds from quiet ones."""
        rows = self.connection.execute(
            "SELECT json_extract(conditions, '$.reference_noise') FROM rounds"
            " WHERE device_id=? AND space=? AND width=? AND batch=? AND precision=? AND discarded IS NULL",
            (device_id, *setup.columns()),
        ).fetchall()
        return [float(r[0]) for r in rows if isinstance(r[0], (int, float))]

    def rounds(self, device_id: int, key: EntryKey) -> list[RoundRecord]:
        """Every round of `key` on the device, each once.

        A round is the same round wherever it was copied to: the same index, start and
        timing instant. Copies (a table merged twice by a compofa before merges skipped
        them) are read once, so they never count as extra measurements.
        """
        rows = self.connection.execute(
            "SELECT round_index, started_at, timed_at, warmup, samples, drift, prepare_s, conditions, discarded"
            " FROM rounds WHERE device_id=? AND space=? AND width=? AND spec=? AND batch=? AND precision=?"
            " ORDER BY round_index, started_at, id",
            (device_id, *_without_resolution(key.columns())),
        ).fetchall()
        unique: dict[tuple[int, float, float], Any] = {}
        for r in rows:  # in order: the first copy stays
            unique.setdefault((int(r[0]), float(r[1]), float(r[2])), r)
        return [
            RoundRecord(int(r[0]), float(r[1]), float(r[2]), tuple(json.loads(r[3])), tuple(json.loads(r[4])),
                        float(r[5]), float(r[6]), json.loads(r[7]), r[8] is not None)
            for r in unique.values()
        ]

    def has_measurements(self) -> bool:
        """Whether any round, entry or accuracy row is stored."""
        return any(self.connection.execute(f"SELECT 1 FROM {name} LIMIT 1").fetchone()
                   for name in ("rounds", "entries", ACCURACY_TABLE))

    def round_drifts(self, device_id: int, batch: int, precision: str) -> list[tuple[float, float, bool]]:
        """Every round of one device setup in time order: when it was timed, its drift factor, if discarded."""
        rows = self.connection.execute(
            "SELECT timed_at, drift, discarded IS NOT NULL FROM rounds WHERE device_id = ? AND batch = ?"
            " AND precision = ? ORDER BY timed_at",
            (device_id, batch, precision),
        ).fetchall()
        return [(float(r[0]), float(r[1]), bool(r[2])) for r in rows]

    # -- entries -------------------------------------------------------------------------------------

    def put_entry(
        self, device_id: int, key: EntryKey, measurement: Measurement, estimate: Estimate, reason: str
    ) -> None:
        s = estimate.summary
        values = (
            device_id, *key.columns(), s.n, s.median_ms, s.mean_ms, s.std_ms, s.p10_ms, s.p90_ms, s.iqr_ms,
            s.mad_ms, s.min_ms, s.max_ms, estimate.ci_low_ms, estimate.ci_high_ms, measurement.raw_median_ms,
            estimate.rounds, int(estimate.stable), _dumps(list(estimate.warnings)), reason, time.time(),
            s.p90_ci_low_ms, s.p90_ci_high_ms, s.p99_ms, s.p99_ci_low_ms, s.p99_ci_high_ms,
            measurement.peak_memory_mb, measurement.energy_mj, _dumps(measurement.absent),
        )
        with self.transaction() as cursor:
            cursor.execute(f"INSERT OR REPLACE INTO entries ({', '.join(ENTRY_COLUMNS)}) VALUES "
                           f"({', '.join('?' for _ in ENTRY_COLUMNS)})", values)

    def entries(self, device_id: int | None = None, space: str | None = None, kind: str | None = None
                ) -> list[Entry]:
        """The finished entries (of a device, of a space or family, of a kind: any when not given)."""
        # A version-1 file being read has none of the metric columns: they read as NULL.
        metrics = ", ".join(f"e.{c}" if self.schema_version >= 2 else f"NULL AS {c}" for c in METRIC_COLUMNS)
        query = (
            "SELECT e.device_id, d.name, e.space, e.width, e.spec, e.resolution, e.batch, e.precision, e.n,"
            " e.median_ms, e.mean_ms, e.std_ms, e.p10_ms, e.p90_ms, e.iqr_ms, e.mad_ms, e.min_ms, e.max_ms,"
            " e.ci_low_ms, e.ci_high_ms, e.raw_median_ms, e.rounds, e.stable, e.warnings, e.reason, " + metrics +
            " FROM entries e JOIN devices d ON d.id = e.device_id"
        )
        conditions: list[str] = []
        values: list[Any] = []
        if device_id is not None:
            conditions.append("e.device_id = ?")
            values.append(device_id)
        if space is not None and space.startswith(_LAYER_PREFIX):  # the stored form, as older compofa showed it
            kind, space = LAYER, space.removeprefix(_LAYER_PREFIX)
        if kind is not None:
            _check_kind(kind, space or "")
        kinds = [kind] if kind is not None else list(KINDS)
        if space is not None:
            conditions.append(f"e.space IN ({', '.join('?' for _ in kinds)})")
            values.extend(_stored_space(k, space) for k in kinds)
        elif kind is not None:
            conditions.append("e.space " + ("LIKE ?" if kind == LAYER else "NOT LIKE ?"))
            values.append(_LAYER_PREFIX + "%")
        if conditions:
            query += " WHERE " + " AND ".join(conditions)
        query += " ORDER BY e.device_id, e.space, e.width, e.resolution, e.median_ms"
        return [_entry(row) for row in self.connection.execute(query, values).fetchall()]

    # -- accuracy ------------------------------------------------------------------------------------

    @property
    def accuracy(self) -> AccuracyRows:
        """The file's accuracy rows (`compofa.tables.accuracy`)."""
        return AccuracyRows(self)

    def put_accuracy(
        self, space: str, width: float, spec: str, resolution: int, weights: str, top1: float,
        top5: float | None, images: int, settings: dict[str, Any], precision: str = "fp32",
    ) -> None:
        """Record a measured accuracy (fractions) of `spec` under the supernet weights `weights` at `precision`
        (`AccuracyRows.put`)."""
        self.accuracy.put(space, width, spec, resolution, weights, top1, top5, images, settings, precision)

    def accuracies(self, space: str, width: float | None = None, weights: str | None = None,
                   precision: str = "fp32") -> dict[str, float]:
        """Measured top-1 (fraction) at `precision` by canonical spec text (`AccuracyRows.top1`)."""
        return self.accuracy.top1(space, width, weights, precision)

    def finished_keys(self, device_id: int) -> set[EntryKey]:
        rows = self.connection.execute(
            "SELECT space, width, spec, resolution, batch, precision FROM entries WHERE device_id = ?", (device_id,)
        ).fetchall()
        return {EntryKey.from_columns(*row) for row in rows}


def _entry(r: Sequence[Any]) -> Entry:
    """An entry from a row of `LatencyTable.entries`' query."""
    return Entry(
        device_id=r[0], device=r[1], key=EntryKey.from_columns(r[2], r[3], r[4], r[5], r[6], r[7]), n=r[8],
        median_ms=r[9], mean_ms=r[10], std_ms=r[11], p10_ms=r[12], p90_ms=r[13], iqr_ms=r[14],
        mad_ms=r[15], min_ms=r[16], max_ms=r[17], ci_low_ms=r[18], ci_high_ms=r[19],
        raw_median_ms=r[20], rounds=r[21], stable=bool(r[22]), warnings=tuple(json.loads(r[23])),
        reason=r[24], p90_ci_low_ms=r[25], p90_ci_high_ms=r[26], p99_ms=r[27], p99_ci_low_ms=r[28],
        p99_ci_high_ms=r[29], peak_memory_mb=r[30], energy_mj=r[31], absent=json.loads(r[32]) if r[32] else {},
    )


def _without_resolution(columns: tuple[str, float, str, int, int, str]) -> tuple[str, float, str, int, str]:
    """The columns rows of an entry are looked up by: its spec names its resolution already."""
    space, width, spec, _, batch, precision = columns
    return space, width, spec, batch, precision


@contextmanager
def writing(path: str | os.PathLike[str]) -> Iterator[LatencyTable]:
    """The table open for writing (its writer lock held); a table created here that ends up holding no
    measurement (the work failed or was interrupted first) is removed again."""
    with LatencyTable.open(path, writable=True, create=True) as table:
        try:
            yield table
        except BaseException:
            # the table may be unusable (a full disk): then the original error is the one to report
            with suppress(CompofaError, OSError):
                if table.created and not table.has_measurements():
                    table.discard()
            raise


def _inserted_id(cursor: Any) -> int:
    """The rowid of the row the cursor's INSERT just added (SQLite always sets it after one)."""
    rowid = cursor.lastrowid
    if rowid is None:
        raise TableError("SQLite reported no row id for an insert")
    return int(rowid)
