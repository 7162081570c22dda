"""Accuracy rows: the top-1 and top-5 of subnets measured by evaluation, in a table file.

They live in the same SQLite file format as latency (`compofa eval --table` writes
them into a table of their own or into a latency table), but belong to no device:
a row is one subnet (space, width, spec) evaluated under one set of supernet
weights at one precision (the fp32 network, or the int8 model a deployment
ships: its accuracy is not the fp32 one's). `AccuracyRows` owns the ``accuracy`` table of a file: its schema, its
writes and its reads. `LatencyTable.accuracy` hands out the rows of an open table;
the store creates, checks, locks and writes the file itself (`compofa.tables.store`).
"""

from __future__ import annotations

import json
import time
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from compofa.tables.sqlite import TableConnection, TableCursor, TableMismatchError

__all__ = ["AccuracyKey", "AccuracyRow", "AccuracyRows", "SCHEMA", "TABLE"]

#: The accuracy table's name in a table file.
TABLE = "accuracy"
#: Its schema (schema version 2 of a table file: version 1 had no precision, and only fp32 rows).
SCHEMA = """
CREATE TABLE accuracy (
    space TEXT NOT NULL, width REAL NOT NULL, spec TEXT NOT NULL, resolution INTEGER NOT NULL,
    weights TEXT NOT NULL,
    top1 REAL NOT NULL, top5 REAL,
    images INTEGER NOT NULL,
    settings TEXT NOT NULL,
    evaluated_at REAL NOT NULL,
    precision TEXT NOT NULL DEFAULT 'fp32',
    PRIMARY KEY (space, width, spec, weights, precision)
);
"""
#: What takes a version-1 accuracy table to `SCHEMA` (its rows are fp32): SQLite cannot change a primary key
#: in place, so the rows move to a new table. The store runs these in its upgrade transaction.
UPGRADE_FROM_1 = (
    SCHEMA.replace("CREATE TABLE accuracy (", "CREATE TABLE accuracy_upgraded ("),
    "INSERT INTO accuracy_upgraded (space, width, spec, resolution, weights, top1, top5, images, settings,"
    " evaluated_at, precision) SELECT space, width, spec, resolution, weights, top1, top5, images, settings,"
    " evaluated_at, 'fp32' FROM accuracy",
    "DROP TABLE accuracy",
    "ALTER TABLE accuracy_upgraded RENAME TO accuracy",
)
#: The precision of every row a version-1 file holds.
FP32 = "fp32"

_COLUMNS = "space, width, spec, resolution, weights, top1, top5, images, settings, evaluated_at, precision"
_PLACES = ", ".join("?" for _ in _COLUMNS.split(", "))


class _Store(Protocol):
    """What the rows need of the open table file holding them (a `LatencyTable`)."""

    @property
    def path(self) -> Path: ...

    @property
    def connection(self) -> TableConnection: ...

    @property
    def schema_version(self) -> int: ...

    def transaction(self) -> AbstractContextManager[TableCursor]: ...


@dataclass(frozen=True)
class AccuracyKey:
    """What identifies one accuracy row: a subnet of a space at a width, evaluated under one set of weights, at
    one precision."""

    space: str
    width: float
    spec: str
    weights: str
    precision: str = FP32


@dataclass(frozen=True)
class AccuracyRow:
    """One measured accuracy, as stored (top-1 and top-5 are fractions)."""

    space: str
    width: float
    spec: str
    resolution: int
    weights: str
    top1: float
    top5: float | None
    images: int
    settings: dict[str, Any]
    evaluated_at: float
    precision: str = FP32

    @property
    def key(self) -> AccuracyKey:
        return AccuracyKey(self.space, self.width, self.spec, self.weights, self.precision)

    def same_result(self, other: AccuracyRow) -> bool:
        """Whether `other` is the same evaluation's outcome: the same numbers from the same settings
        (when it was evaluated does not matter: a copy of a row, or the same deterministic evaluation run again)."""
        return (self.key, self.resolution, self.top1, self.top5, self.images, self.settings) == (
            other.key, other.resolution, other.top1, other.top5, other.images, other.settings)


def _dumps(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _row(values: Any) -> AccuracyRow:
    space, width, spec, resolution, weights, top1, top5, images, settings, evaluated_at, precision = values
    return AccuracyRow(space, float(width), spec, int(resolution), weights, float(top1),
                       None if top5 is None else float(top5), int(images), json.loads(settings), float(evaluated_at),
                       precision)


class AccuracyRows:
    """The accuracy rows of one open table file."""

    def __init__(self, store: _Store) -> None:
        self.store = store

    @property
    def _columns(self) -> str:
        """The columns to read: a version-1 file (read before its first write upgrades it) holds fp32 alone."""
        return _COLUMNS if self.store.schema_version >= 2 else _COLUMNS.replace("precision", f"'{FP32}'")

    def put(
        self, space: str, width: float, spec: str, resolution: int, weights: str, top1: float,
        top5: float | None, images: int, settings: dict[str, Any], precision: str = FP32,
    ) -> None:
        """Record a measured accuracy (fractions) of `spec` under the supernet weights `weights` at `precision`,
        now; an earlier row of the same subnet, weights and precision is replaced (it was evaluated again)."""
        with self.store.transaction() as cursor:
            cursor.execute(
                f"INSERT OR REPLACE INTO {TABLE} ({_COLUMNS}) VALUES ({_PLACES})",
                (space, width, spec, resolution, weights, top1, top5, images, _dumps(settings), time.time(),
                 precision),
            )

    def add(self, row: AccuracyRow) -> None:
        """Store `row` as it is (its evaluation time too): a copy from another table. The table must not
        have a row of its key yet (see `get`)."""
        with self.store.transaction() as cursor:
            cursor.execute(
                f"INSERT INTO {TABLE} ({_COLUMNS}) VALUES ({_PLACES})",
                (row.space, row.width, row.spec, row.resolution, row.weights, row.top1, row.top5, row.images,
                 _dumps(row.settings), row.evaluated_at, row.precision),
            )

    def get(self, key: AccuracyKey) -> AccuracyRow | None:
        """The row of `key`, if the table has one."""
        if key.precision != FP32 and self.store.schema_version < 2:
            return None
        query = f"SELECT {self._columns} FROM {TABLE} WHERE space = ? AND width = ? AND spec = ? AND weights = ?"
        values: list[Any] = [key.space, key.width, key.spec, key.weights]
        if self.store.schema_version >= 2:
            query += " AND precision = ?"
            values.append(key.precision)
        found = self.store.connection.execute(query, values).fetchone()
        return _row(found) if found else None

    def rows(self, space: str | None = None) -> list[AccuracyRow]:
        """Every row (of `space`), in a stable order."""
        query = f"SELECT {self._columns} FROM {TABLE}" + (" WHERE space = ?" if space is not None else "")
        query += " ORDER BY space, width, weights, spec" + (", precision" if self.store.schema_version >= 2 else "")
        return [_row(values) for values in
                self.store.connection.execute(query, (space,) if space is not None else ()).fetchall()]

    def count(self) -> int:
        return int(self.store.connection.execute(f"SELECT COUNT(*) FROM {TABLE}").fetchone()[0])

    def precisions(self, space: str | None = None) -> list[str]:
        """The precisions the rows (of `space`) were evaluated at."""
        if self.store.schema_version < 2:
            return [FP32] if self.rows(space) else []
        query = f"SELECT DISTINCT precision FROM {TABLE}" + (" WHERE space = ?" if space is not None else "")
        return sorted(row[0] for row in self.store.connection.execute(query, (space,) if space else ()).fetchall())

    def top1(self, space: str, width: float | None = None, weights: str | None = None, precision: str = FP32
             ) -> dict[str, float]:
        """Measured top-1 (fraction) of the subnets of `space` at `precision` by canonical spec text.

        Raises `TableMismatchError` when `weights` is not given and the rows come from several
        sets of weights: accuracies of different weights must not be mixed.
        """
        if precision != FP32 and self.store.schema_version < 2:
            return {}
        query = f"SELECT spec, top1, weights FROM {TABLE} WHERE space = ?"
        values: list[Any] = [space]
        if self.store.schema_version >= 2:
            query += " AND precision = ?"
            values.append(precision)
        if width is not None:
            query += " AND width = ?"
            values.append(width)
        if weights is not None:
            query += " AND weights = ?"
            values.append(weights)
        rows = self.store.connection.execute(query, values).fetchall()
        held = {row[2] for row in rows}
        if weights is None and len(held) > 1:
            raise TableMismatchError(
                f"table {str(self.store.path)!r} holds accuracies of {len(held)} different supernet "
                "weights for this space; name the weights to use"
            )
        return {row[0]: float(row[1]) for row in rows}
