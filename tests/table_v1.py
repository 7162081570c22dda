"""A table file of schema version 1, byte for byte the SQL that compofa wrote then: tests of reading and
upgrading old tables build their files from it, never from the current schema."""

from __future__ import annotations

import sqlite3
from pathlib import Path

#: The schema of version 1 (entries without the tail, memory and energy; accuracy rows without precision).
SCHEMA_V1 = """CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
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
    PRIMARY KEY (device_id, space, width, spec, batch, precision)
);

CREATE TABLE accuracy (
    space TEXT NOT NULL, width REAL NOT NULL, spec TEXT NOT NULL, resolution INTEGER NOT NULL,
    weights TEXT NOT NULL,
    top1 REAL NOT NULL, top5 REAL,
    images INTEGER NOT NULL,
    settings TEXT NOT NULL,
    evaluated_at REAL NOT NULL,
    PRIMARY KEY (space, width, spec, weights)
);
"""


def create_version1_table(path: Path) -> sqlite3.Connection:
    """An empty version-1 table at `path`, and a connection to it for writing rows as that version did."""
    connection = sqlite3.connect(path, isolation_level=None)
    for statement in SCHEMA_V1.split(";"):
        if statement.strip():
            connection.execute(statement)
    connection.executemany("INSERT INTO meta (key, value) VALUES (?, ?)",
                           [("application", "compofa-latency-table"), ("schema_version", "1")])
    return connection
