"""Durable latency tables: the SQLite store, its exchange formats and analyses (the jobs that fill it are in `compofa.jobs`)."""

from compofa.tables.store import (
    Entry,
    EntryKey,
    LatencyTable,
    TableBusyError,
    TableError,
    TableMismatchError,
)

__all__ = ["Entry", "EntryKey", "LatencyTable", "TableBusyError", "TableError", "TableMismatchError"]
