"""Durable latency tables: the SQLite store and the jobs that fill and read it."""

from compofa.tables.store import (
    Entry,
    EntryKey,
    LatencyTable,
    TableBusyError,
    TableError,
    TableMismatchError,
)

__all__ = ["Entry", "EntryKey", "LatencyTable", "TableBusyError", "TableError", "TableMismatchError"]
