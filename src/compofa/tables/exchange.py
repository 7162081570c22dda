"""Moving entries out of tables: export as JSON or CSV (merging tables is a job: `compofa.jobs.merge`)."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from collections.abc import Sequence
from typing import Any

from compofa.fileio import atomic_output
from compofa.space import parse_spec
from compofa.tables.store import SUBNET, Entry, TableError

EXPORT_FORMATS = ("json", "csv")
#: Columns of an export, in order (a list of entries, one object or row each).
EXPORT_FIELDS = (
    "space", "spec", "ofa", "resolution", "batch", "precision", "width", "device",
    "n", "median_ms", "ci_low_ms", "ci_high_ms", "p10_ms", "p90_ms", "mean_ms", "std_ms",
    "iqr_ms", "mad_ms", "min_ms", "max_ms", "raw_median_ms", "rounds", "stable", "reason", "kind",
    "p90_ci_low_ms", "p90_ci_high_ms", "p99_ms", "p99_ci_low_ms", "p99_ci_high_ms", "peak_memory_mb", "energy_mj",
    "absent",
)


def entry_record(entry: Entry) -> dict[str, Any]:
    """One entry as an export row. A layer's `space` is its family, its `spec` the layer's lookup-table key,
    and it has no OFA dict."""
    key = entry.key
    ofa = parse_spec(key.spec).to_ofa_dict() if key.kind == SUBNET else None
    return {
        "space": key.space, "spec": key.spec, "ofa": ofa,
        "resolution": key.resolution, "batch": key.batch, "precision": key.precision, "width": key.width,
        "device": entry.device, "n": entry.n, "median_ms": entry.median_ms, "ci_low_ms": entry.ci_low_ms,
        "ci_high_ms": entry.ci_high_ms, "p10_ms": entry.p10_ms, "p90_ms": entry.p90_ms,
        "mean_ms": entry.mean_ms, "std_ms": entry.std_ms, "iqr_ms": entry.iqr_ms, "mad_ms": entry.mad_ms,
        "min_ms": entry.min_ms, "max_ms": entry.max_ms, "raw_median_ms": entry.raw_median_ms,
        "rounds": entry.rounds, "stable": entry.stable, "reason": entry.reason, "kind": key.kind,
        **{name: finite_or_none(getattr(entry, name)) for name in TAIL_FIELDS},
        "peak_memory_mb": entry.peak_memory_mb, "energy_mj": entry.energy_mj, "absent": entry.absent,
    }


#: The tail's fields: an upper end the samples cannot bound (p99 of a few hundred samples) is exported as
#: null, as is a value a table written before compofa derived it lacks.
TAIL_FIELDS = ("p90_ci_low_ms", "p90_ci_high_ms", "p99_ms", "p99_ci_low_ms", "p99_ci_high_ms")


def finite_or_none(value: float | None) -> float | None:
    """`value` where it is a number JSON can hold; None for an unbounded end or a missing value."""
    return value if value is not None and math.isfinite(value) else None


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
            ofa = "" if record["ofa"] is None else json.dumps(record["ofa"], separators=(",", ":"))
            absent = json.dumps(record["absent"], sort_keys=True) if record["absent"] else ""
            writer.writerow(record | {"ofa": ofa, "absent": absent})
        text = buffer.getvalue()
    with atomic_output(output, "w") as handle:
        handle.write(text)
    return len(records)
