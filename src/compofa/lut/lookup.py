"""Lookup tables of one device: a layer table per input resolution, shipped or read from files.

`LookupTable.open("note10")` is the shipped Samsung Note10 table of the CompOFA
authors (MobileNetV3 w1.2, batch 1, resolutions 160..224 step 4; see
``compofa/data/NOTICE``); `LookupTable.open(PATH)` reads one
``{R}_lookup_table.yaml`` file or a folder of them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType

import numpy as np

from compofa.lut.estimate import LutPredictor
from compofa.lut.format import FILE_PATTERN, LayerTable, LutError, read_layer_table, read_named, write_layer_table
from compofa.space import Family, SubnetSpec, get_space


@dataclass(frozen=True)
class ShippedTable:
    """A LUT that ships with compofa (in `compofa.data`).

    Attributes:
        folder: its folder inside `compofa.data`.
        batch, precision: what it was measured at (the device refuses others).
        description: one line for listings.
    """

    folder: str
    batch: int
    precision: str
    description: str


SHIPPED_TABLES: Mapping[str, ShippedTable] = MappingProxyType(
    {"note10": ShippedTable("note10_lut", 1, "fp32", "Samsung Galaxy Note10 CPU, OFA MobileNetV3 w1.2 (CompOFA)")}
)


class LookupTable:
    """Layer tables of one device at several resolutions.

    `sha256` digests the files' digests in resolution order (a sha256sum
    listing), so it names exactly the bytes the estimates come from.
    """

    def __init__(self, tables: Iterable[LayerTable], name: str) -> None:
        self.name = name
        by_resolution: dict[int, LayerTable] = {}
        for table in tables:
            if table.resolution in by_resolution:
                raise LutError(f"LUT {name}: two tables for resolution {table.resolution}")
            by_resolution[table.resolution] = table
        if not by_resolution:
            raise LutError(f"LUT {name} has no tables")
        self._tables = dict(sorted(by_resolution.items()))
        listing = "".join(f"{t.sha256}  {r}_lookup_table.yaml\n" for r, t in self._tables.items())
        self.sha256 = hashlib.sha256(listing.encode()).hexdigest()
        self._predictors: dict[tuple[str, float], LutPredictor] = {}

    def __repr__(self) -> str:
        return f"LookupTable({self.name!r}, resolutions={list(self.resolutions)})"

    @property
    def resolutions(self) -> tuple[int, ...]:
        return tuple(self._tables)

    def tables(self) -> tuple[LayerTable, ...]:
        return tuple(self._tables.values())

    def layer_table(self, resolution: int) -> LayerTable:
        """The table of `resolution`; an error lists the resolutions there are."""
        try:
            return self._tables[resolution]
        except KeyError:
            have = ", ".join(map(str, self.resolutions))
            raise LutError(f"LUT {self.name} has no table for resolution {resolution}; it has {have}") from None

    @property
    def stem_channels(self) -> tuple[int, ...]:
        return tuple(sorted({c for table in self._tables.values() for c in table.stem_channels}))

    @property
    def layout(self) -> str | None:
        layouts = {table.layout for table in self._tables.values()} - {None}
        return layouts.pop() if len(layouts) == 1 else None

    # -- opening ------------------------------------------------------------------

    @classmethod
    def read(cls, path: str | Path) -> LookupTable:
        """A ``{R}_lookup_table.yaml`` file, or a folder of them."""
        path = Path(path).expanduser()
        name = str(path.resolve())
        if path.is_dir():
            files = sorted(entry for entry in path.iterdir() if FILE_PATTERN.match(entry.name))
            if not files:
                raise LutError(f"folder {str(path)!r} holds no {{R}}_lookup_table.yaml files")
            return cls([read_layer_table(file) for file in files], name)
        if not path.exists():
            raise LutError(f"lookup table {str(path)!r} does not exist")
        return cls([read_layer_table(path)], name)

    @classmethod
    def shipped(cls, name: str = "note10") -> LookupTable:
        """A table shipped with compofa (read once per process)."""
        if name not in SHIPPED_TABLES:
            raise LutError(f"no shipped lookup table {name!r}; shipped: {', '.join(SHIPPED_TABLES)}")
        return _read_shipped(name)

    @classmethod
    def open(cls, source: str) -> LookupTable:
        """`source` is a shipped table's name (``note10``) or a path to a file or folder.

        A shipped name wins over a path spelled the same (write ``./note10`` for a folder).
        """
        if source in SHIPPED_TABLES:
            return cls.shipped(source)
        if not Path(source).expanduser().exists():
            raise LutError(
                f"LUT source {source!r} is neither a shipped table ({', '.join(SHIPPED_TABLES)}) "
                "nor an existing {R}_lookup_table.yaml file or folder"
            )
        return cls.read(source)

    # -- estimates ------------------------------------------------------------------

    def predictor(self, family: Family | str, width: float | None = None) -> LutPredictor:
        """Estimates for networks of `family` (or a space's family) at `width` (default: the family's)."""
        if isinstance(family, str):
            family = get_space(family).family
        width = family.default_width if width is None else width
        key = (family.name, width)
        if key not in self._predictors:
            self._predictors[key] = LutPredictor(self, family, width)
        return self._predictors[key]

    def layer_keys(self, spec: SubnetSpec, width: float | None = None) -> tuple[str, ...]:
        return self.predictor(spec.space, width).layer_keys(spec)

    def predict(self, spec: SubnetSpec, width: float | None = None) -> float:
        """Latency (ms) of `spec` at `width` (default: its family's): the sum of its layers' means."""
        return self.predictor(spec.space, width).predict(spec)

    def predict_many(self, specs: Iterable[SubnetSpec], width: float | None = None) -> np.ndarray:
        """`predict` of every spec (all of one family), as a float64 array."""
        specs = list(specs)
        if not specs:
            return np.zeros(0)
        return self.predictor(specs[0].space, width).predict_many(specs)


@cache
def _read_shipped(name: str) -> LookupTable:
    folder = resources.files("compofa.data").joinpath(SHIPPED_TABLES[name].folder)
    files = sorted((entry for entry in folder.iterdir() if FILE_PATTERN.match(entry.name)), key=lambda e: e.name)
    return LookupTable([read_named(entry.read_bytes(), entry.name, f"{name}/{entry.name}") for entry in files], name)


def write_lut(tables: LookupTable | Iterable[LayerTable], folder: str | Path) -> list[Path]:
    """Write one ``{R}_lookup_table.yaml`` per resolution into `folder` (created if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # A LookupTable refuses two tables of one resolution (they would overwrite each other).
    layer_tables = (tables if isinstance(tables, LookupTable) else LookupTable(tables, str(folder))).tables()
    return [write_layer_table(table, folder / f"{table.resolution}_lookup_table.yaml") for table in layer_tables]
