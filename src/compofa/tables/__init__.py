"""Durable tables: the SQLite latency store, its accuracy rows, exchange formats and analyses (the jobs that
fill and merge tables are in `compofa.jobs`)."""

from compofa.tables.accuracy import AccuracyKey, AccuracyRow, AccuracyRows
from compofa.tables.store import (
    LAYER,
    SUBNET,
    Entry,
    EntryKey,
    LatencyTable,
    SetupKey,
    TableBusyError,
    TableError,
    TableMismatchError,
)

__all__ = ["LAYER", "SUBNET", "AccuracyKey", "AccuracyRow", "AccuracyRows", "Entry", "EntryKey", "LatencyTable",
           "SetupKey", "TableBusyError", "TableError", "TableMismatchError"]
