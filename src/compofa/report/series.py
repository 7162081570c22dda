"""The latency sources a report draws: the devices of measured tables, and layer lookup tables.

A measured table can hold several devices (or setups of one), each a series of
its own; a LUT is an estimator that answers for any subnet of its family. The
report covers one family pair: a CompOFA space and the OFA space it was cut
from (`counterpart`), at one width.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from compofa.errors import CompofaError
from compofa.search.arrays import ArchBatch
from compofa.search.latency import LutLatency
from compofa.space import get_space, parse_spec, unconstrained_space
from compofa.tables import Entry, LatencyTable

#: Fewer subnet entries than this in a table is too little to plot or summarize.
MIN_ENTRIES = 5


class ReportError(CompofaError):
    """A report that cannot be made from the inputs given."""


def counterpart(space: str) -> str | None:
    """The unconstrained OFA space `space` was cut from (``ofa-mbv3`` for ``compofa``); None for that space itself."""
    name = unconstrained_space(get_space(space).family).name
    return None if name == space else name


@dataclass(frozen=True)
class TableSeries:
    """The entries of one device (one setup: batch, precision) of a measured table, and the device's
    fingerprint (its backend, the machine, the runtime's version and options)."""

    label: str
    path: Path
    device_id: int
    device: str
    batch: int
    precision: str
    entries: tuple[Entry, ...]
    fingerprint: dict[str, Any] = field(default_factory=dict)

    def of_space(self, space: str) -> list[Entry]:
        return [e for e in self.entries if e.key.space == space]

    @property
    def spaces(self) -> tuple[str, ...]:
        return tuple(sorted({e.key.space for e in self.entries}))

    def latency_by_spec(self, space: str) -> dict[str, float]:
        return {e.key.spec: e.median_ms for e in self.of_space(space)}

    def interval_by_spec(self, space: str) -> dict[str, tuple[float, float]]:
        """The confidence interval (low, high ms) of each subnet's median latency."""
        return {e.key.spec: (e.ci_low_ms, e.ci_high_ms) for e in self.of_space(space)}


@dataclass
class LutSeries:
    """A layer lookup table: the layer-sum estimate of any subnet of its family."""

    label: str
    source: str
    width: float
    _models: dict[str, LutLatency] = field(default_factory=dict, repr=False)

    def model(self, space: str) -> LutLatency:
        if space not in self._models:
            self._models[space] = LutLatency(self.source, space, self.width)
        return self._models[space]

    def latency(self, batch: ArchBatch) -> np.ndarray:
        return self.model(batch.space).latency(batch).median

    def resolutions(self, space: str) -> tuple[int, ...]:
        """The resolutions of `space` this table covers."""
        have = set(self.model(space).table.resolutions)
        return tuple(r for r in get_space(space).resolutions if r in have)


def read_table_series(path: str | Path, spaces: Sequence[str], width: float,
                      device_ids: Sequence[int] = ()) -> list[TableSeries]:
    """One series per device and setup in the table at `path` with subnet entries of `spaces` at `width`, of the
    devices `device_ids` only where given.

    Refuses a table with no such entries, with fewer than `MIN_ENTRIES`, or holding none of `device_ids`.
    """
    path = Path(path)
    with LatencyTable.open(path) as table:
        entries = table.entries()
        devices = table.devices()
    fingerprints = {device.id: device.fingerprint for device in devices}
    if device_ids:
        if not set(device_ids) & set(fingerprints):
            known = ", ".join(f"{d.id} ({d.name})" for d in devices) or "none yet"
            raise ReportError(f"table {path} has none of devices {', '.join(map(str, sorted(set(device_ids))))}; "
                              f"its devices: {known} (see `compofa table show`)", option="device_id")
        entries = [e for e in entries if e.device_id in device_ids]
    subnets = [e for e in entries if e.key.space in spaces]
    at_width = [e for e in subnets if e.key.width == width]
    if not at_width:
        widths = sorted({e.key.width for e in subnets})
        hint = (f"its {'/'.join(spaces)} entries are at width {', '.join(f'{w:g}' for w in widths)}: "
                f"pass --width {widths[0]:g}") if widths else \
            f"profile some with `compofa profile --space {spaces[0]} --table {path}`"
        raise ReportError(f"table {path} has no {' or '.join(spaces)} entries at width {width:g}; {hint}")
    groups: dict[tuple[int, int, str], list[Entry]] = {}
    for entry in at_width:
        groups.setdefault((entry.device_id, entry.key.batch, entry.key.precision), []).append(entry)
    names = [group[0].device for group in groups.values()]
    series = []
    for (device_id, batch, precision), group in sorted(groups.items()):
        if len(group) < MIN_ENTRIES:
            raise ReportError(
                f"table {path} has {len(group)} {group[0].device} entries (batch {batch}, {precision}); a report "
                f"needs at least {MIN_ENTRIES}: profile more with `compofa profile --table {path}`"
            )
        label = f"{path.stem}: {group[0].device}"
        if names.count(group[0].device) > 1:
            label += f" #{device_id} b{batch} {precision}"
        series.append(TableSeries(label, path, device_id, group[0].device, batch, precision, tuple(group),
                                  fingerprints.get(device_id, {})))
    return series


def read_lut_series(source: str, space: str, width: float) -> LutSeries:
    """The LUT `source` (``note10`` or a path), checked to describe `space`'s family at `width`."""
    series = LutSeries(f"lut:{source}", source, width)
    series.model(space)  # refuses a LUT of another family or width, in one line
    return series


def specs_batch(texts: Sequence[str]) -> ArchBatch:
    return ArchBatch.from_specs([parse_spec(text) for text in texts])


def unique_labels(labels: Sequence[str]) -> list[str]:
    """`labels`, with a counter added to repeats (two tables of the same name in different folders)."""
    seen: dict[str, int] = {}
    result = []
    for label in labels:
        seen[label] = seen.get(label, 0) + 1
        result.append(label if seen[label] == 1 else f"{label} ({seen[label]})")
    return result
