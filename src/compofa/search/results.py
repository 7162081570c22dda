"""Search results: one record per target, written as JSON or CSV, read back for export."""

from __future__ import annotations

import csv
import io
import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa.errors import CompofaError
from compofa.fileio import atomic_output, check_output_path
from compofa.space import SubnetSpec, parse_spec

#: Version of the results file; bump on incompatible change.
#: 1: {"format", "version", "space", "width", ..., "results": [...], "pareto": [...]}; "measured", "missing"
#: and "missing_by_resolution" say what a partial table lacked (added without a version change: readers
#: ignore fields they do not know). Also added so: every result's "sources" (what each latency source says
#: of the pick); "latency_sources", "latency_units" and "limits" of the search; a search over several
#: sources (whose results hold None in "target_ms" and "latency_ms", and their joint target as given in
#: "target"), whose "pareto" points hold "latencies_ms" (one per source) and the "pareto_objectives".
RESULTS_FORMAT = "compofa-search"
RESULTS_VERSION = 1
CSV_FIELDS = (
    "target_ms", "target", "spec", "ofa", "accuracy", "latency_ms", "latency_ci_low_ms", "latency_ci_high_ms",
    "latency_source", "bucket_ms", "strategy", "seconds", "generations", "stopped", "width",
)


class ResultsError(CompofaError):
    """A results file that cannot be read or has no result for the asked target."""


#: What a reading's `values` may hold beyond the median, in this order.
READING_FIELDS = ("p90_ms", "p90_ci_low_ms", "p90_ci_high_ms", "p99_ms", "p99_ci_low_ms", "p99_ci_high_ms",
                  "peak_memory_mb", "energy_mj")


@dataclass(frozen=True)
class SourceReading:
    """What one latency source says of a chosen subnet, and the target it was held to.

    Attributes:
        source: the source (``table:xeon.db``).
        target: its target as given (``20``, ``50%``, ``p90:20``).
        target_value: that target resolved, in the source's unit.
        latency_ms, latency_ci_low_ms, latency_ci_high_ms: the median and its 95% interval.
        values: what else the source measured of the subnet (`READING_FIELDS`; an unbounded interval end is
            left out, never written as a number).
        absent: why memory or energy is not in `values`, where the source said.
    """

    source: str
    target: str
    target_value: float
    latency_ms: float
    latency_ci_low_ms: float
    latency_ci_high_ms: float
    values: dict[str, float] = field(default_factory=dict)
    absent: dict[str, str] = field(default_factory=dict)

    def record(self) -> dict[str, Any]:
        return {"source": self.source, "target": self.target, "target_ms": self.target_value,
                "latency_ms": self.latency_ms, "latency_ci_low_ms": self.latency_ci_low_ms,
                "latency_ci_high_ms": self.latency_ci_high_ms,
                **{name: self.values[name] for name in READING_FIELDS if name in self.values},
                **({"absent": dict(self.absent)} if self.absent else {})}


@dataclass(frozen=True)
class TargetResult:
    """The chosen subnet for one latency target (with several sources: one joint target, `readings` one per
    source; `target` and the latency fields are then the first source's)."""

    target: float
    spec: SubnetSpec
    accuracy: float
    latency_ms: float
    latency_ci_low_ms: float
    latency_ci_high_ms: float
    seconds: float
    strategy: str
    generations: int | None = None
    stopped: str | None = None
    trace: tuple[float, ...] = ()
    requested: str = ""  # the target as given: "20", or "50%" of the latency range; "20,35" for two sources
    readings: tuple[SourceReading, ...] = ()

    def record(self, latency_source: str, bucket: float | None) -> dict[str, Any]:
        joint = len(self.readings) > 1  # no one latency or target speaks for every source
        return {
            "target_ms": None if joint else self.target,
            "target": self.requested or f"{self.target:g}",
            "spec": str(self.spec),
            "ofa": self.spec.to_ofa_dict(),
            "accuracy": self.accuracy,
            "latency_ms": None if joint else self.latency_ms,
            "latency_ci_low_ms": None if joint else self.latency_ci_low_ms,
            "latency_ci_high_ms": None if joint else self.latency_ci_high_ms,
            "latency_source": latency_source,
            "bucket_ms": bucket,
            # the bucket the chosen latency falls in: subnets in one bucket are indistinguishable by measurement
            "bucket": None if bucket is None or joint else _bucket(self.latency_ms, bucket),
            "strategy": self.strategy,
            "seconds": self.seconds,
            "generations": self.generations,
            "stopped": self.stopped,
            "trace": list(self.trace),
            "sources": [reading.record() for reading in self.readings],
        }


def _flat(readings: list[dict[str, Any]]) -> dict[str, Any]:
    """Each source's reading as CSV columns numbered by source: ``source_1``, ``latency_ms_1``, ..."""
    return {f"{name}_{index}": value for index, reading in enumerate(readings, 1) for name, value in reading.items()
            if name != "absent"}


def _bucket(latency_ms: float, width: float) -> list[float]:
    low = math.floor(latency_ms / width) * width
    return [low, low + width]


@dataclass
class SearchReport:
    """Everything one `compofa search` found."""

    space: str
    width: float
    latency_source: str
    latency_unit: str
    accuracy_source: str
    fit: str
    bucket: float | None
    results: list[TargetResult]
    pareto: list[dict[str, Any]] = field(default_factory=list)
    candidates: int = 0
    seconds: float = 0.0
    latency_stats: dict[str, Any] = field(default_factory=dict)
    # What a table held at the resolutions searched: configurations with an entry (None: a source that
    # answers for any), those without (searched as missing every target), and those per resolution.
    measured: int | None = None
    missing: int = 0
    missing_by_resolution: dict[int, int] = field(default_factory=dict)
    # Every source's name and unit in the order given (`latency_source` joins the names), the memory and
    # energy limits as given, and the objectives of the Pareto front where it has more than two.
    latency_sources: list[str] = field(default_factory=list)
    latency_units: list[str] = field(default_factory=list)
    limits: list[dict[str, Any]] = field(default_factory=list)
    pareto_objectives: list[str] = field(default_factory=list)
    beyond_median: bool = False  # a target on a percentile, or a memory or energy limit

    @property
    def flattened(self) -> bool:
        """Whether the CSV spells out each source's reading (several sources, or limits beyond the median)."""
        return len(self.latency_sources) > 1 or self.beyond_median

    def to_dict(self) -> dict[str, Any]:
        return {
            "format": RESULTS_FORMAT,
            "version": RESULTS_VERSION,
            "space": self.space,
            "width": self.width,
            "latency_source": self.latency_source,
            "latency_unit": self.latency_unit,
            "accuracy_source": self.accuracy_source,
            "fit": self.fit,
            "candidates": self.candidates,
            "seconds": self.seconds,
            "latency_stats": self.latency_stats,
            "measured": self.measured,
            "missing": self.missing,
            "missing_by_resolution": {str(r): n for r, n in self.missing_by_resolution.items()},
            "results": [r.record(self.latency_source, self.bucket) for r in self.results],
            "pareto": self.pareto,
            "latency_sources": self.latency_sources,
            "latency_units": self.latency_units,
            "limits": self.limits,
            **({"pareto_objectives": self.pareto_objectives} if self.pareto_objectives else {}),
        }


def check_results_path(path: str | os.PathLike[str]) -> Path:
    """Refuse, before any search, a results path that cannot be written or has no results suffix."""
    target = check_output_path(path)
    if target.suffix.lower() not in (".json", ".csv"):
        raise ResultsError(f"results go to a .json or .csv file, not {target.name!r}")
    return target


def write_results(report: SearchReport, path: str | os.PathLike[str]) -> Path:
    """JSON (the whole report) or CSV (one row per target), by the file's suffix; atomic."""
    target = check_results_path(path)
    data = report.to_dict()
    if target.suffix.lower() == ".csv":
        flat = [_flat(record["sources"]) if report.flattened else {} for record in data["results"]]
        rows = [record | {"ofa": json.dumps(record["ofa"], separators=(",", ":")), "width": data["width"]} | columns
                for record, columns in zip(data["results"], flat)]
        fields = [*CSV_FIELDS, *dict.fromkeys(name for columns in flat for name in columns)]
        buffer = io.StringIO()
        writer = csv.DictWriter(buffer, fieldnames=fields, extrasaction="ignore", lineterminator="\n")
        writer.writeheader()
        writer.writerows(rows)
        text = buffer.getvalue()
    elif target.suffix.lower() == ".json":
        text = json.dumps(data, indent=1)
    else:
        raise ResultsError(f"results go to a .json or .csv file, not {target.name!r}")
    with atomic_output(target, "w") as handle:
        handle.write(text)
    return target


def read_result(path: str | os.PathLike[str], target: float | str | None = None) -> tuple[SubnetSpec, float]:
    """The spec and width chosen for `target` in a results file (the only one if not given).

    The file is one `write_results` wrote: JSON, or CSV (one row per target).
    `target` is a latency (matched against `target_ms`) or the target as it was
    given to the search (``"50%"``).
    """
    source = Path(path)
    records = _read_csv(source) if source.suffix.lower() == ".csv" else _read_json(source)
    if not records:
        raise ResultsError(f"{str(path)!r} holds no results; write them with `compofa search -o`")
    given = [str(r.get("target") or r.get("target_ms")) for r in records]
    if target is None:
        if len(records) != 1:
            raise ResultsError(f"{str(path)!r} has results for targets {', '.join(given)}; choose one target",
                               option="target")
        chosen = records[0]
    else:
        matching = [r for r in records if _matches(r, target)]
        if not matching:
            raise ResultsError(f"{str(path)!r} has no result for target {target}; it has {', '.join(given)}")
        chosen = matching[0]
    missing = [name for name in ("spec", "width") if chosen.get(name) in (None, "")]
    if missing:
        raise ResultsError(f"{str(path)!r} is not a complete compofa search results file: its result lacks "
                           f"{' and '.join(missing)}; write it again with `compofa search -o`")
    try:
        width = float(chosen["width"])
    except (TypeError, ValueError):
        raise ResultsError(f"{str(path)!r} is damaged: its width {chosen['width']!r} is not a number") from None
    return parse_spec(str(chosen["spec"])), width


def _read_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ResultsError(f"results file {str(path)!r} does not exist") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ResultsError(f"cannot read results file {str(path)!r}: {error}") from None


def _read_json(path: Path) -> list[dict[str, Any]]:
    """The result records of a JSON results file, each with the file's width."""
    try:
        data = json.loads(_read_text(path))
    except json.JSONDecodeError:
        raise ResultsError(f"{str(path)!r} is not a compofa search results file (not JSON; write one with "
                           "`compofa search -o FILE.json`)") from None
    if not isinstance(data, dict) or data.get("format") != RESULTS_FORMAT:
        raise ResultsError(f"{str(path)!r} is not a compofa search results file (write one with `compofa search -o`)")
    if data.get("version") != RESULTS_VERSION:
        raise ResultsError(
            f"{str(path)!r} is results version {data.get('version')}; this compofa reads {RESULTS_VERSION}")
    results = data.get("results")
    if not isinstance(results, list) or not all(isinstance(r, dict) for r in results):
        raise ResultsError(f"{str(path)!r} is damaged: its results are not a list of records")
    return [{"width": data.get("width"), **r} if "width" not in r else r for r in results]


def _read_csv(path: Path) -> list[dict[str, Any]]:
    """The rows of a CSV results file (the width is a column)."""
    rows = list(csv.DictReader(io.StringIO(_read_text(path))))
    if rows and not {"spec", "target_ms"} <= set(rows[0]):
        raise ResultsError(f"{str(path)!r} is not a compofa search results file (its columns lack spec and "
                           "target_ms; write one with `compofa search -o FILE.csv`)")
    if rows and "width" not in rows[0]:
        raise ResultsError(f"{str(path)!r} has no width column (an older compofa wrote it); use the .json results, "
                           "or search again")
    return rows


def _matches(record: dict[str, Any], target: float | str) -> bool:
    if str(target).strip() == str(record.get("target")):
        return True
    try:
        return abs(float(target) - float(record["target_ms"])) < 1e-9
    except (KeyError, TypeError, ValueError):
        return False
