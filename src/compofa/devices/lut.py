"""The `lut` backend: latency estimated from an OFA-format layer lookup table.

Nothing runs. A subnet's latency is the sum of the `mean` entries of its layers
in the table of its input resolution (DESIGN.md, "Latency lookup tables (LUT)
in the OFA format"). This module is the one place that knows that format: it
reads and validates ``{R}_lookup_table.yaml`` files, derives a subnet's layer
keys from its `NetworkPlan`, sums them, and writes tables back (building a LUT
by measuring layers is a `tables/` job that writes through `write_lut`).

Device names: ``lut:note10`` (the shipped Samsung Note10 tables of the CompOFA
authors, MobileNetV3 w1.2, batch 1, resolutions 160..224 step 4; see
``compofa/data/NOTICE``) or ``lut:PATH`` (one ``{R}_lookup_table.yaml`` file or
a folder of them).
"""

from __future__ import annotations

import hashlib
import math
import re
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from pathlib import Path
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping

import numpy as np
import yaml

from compofa.devices.base import Availability, Backend, DeviceOptionError, Settings, register_backend
from compofa.errors import CompofaError
from compofa.fileio import atomic_output
from compofa.space import Family, SubnetSpec, get_space
from compofa.space.plan import BlockPlan, NetworkPlan, plan_subnet

if TYPE_CHECKING:  # the supernet (torch) is never built for a lookup table
    from compofa.supernet.source import SubnetSource


class LutError(CompofaError):
    """A lookup table that is malformed, does not fit the network, or lacks a layer."""


# -- the format -----------------------------------------------------------------

#: A table file's name: ``{R}_lookup_table.yaml`` (the OFA/CompOFA convention).
FILE_PATTERN = re.compile(r"^(?P<resolution>[1-9][0-9]*)_lookup_table\.yaml$")
# `<type>-input:HxWxC-output:HxWxC|N[-field:int]...` (DESIGN.md, LUT keys).
_KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-input:\d+x\d+x\d+-output:\d+(?:x\d+x\d+)?(?:-[a-z]+:\d+)*$")
_STEM_PATTERN = re.compile(r"^Conv-input:(?P<side>\d+)x(?P=side)x3-output:\d+x\d+x(?P<channels>\d+)$")
_ENTRY_FIELDS = ("count", "mean", "std")
# The C loader parses the same safe subset as yaml.SafeLoader, several times faster.
_SAFE_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


@dataclass(frozen=True)
class LutEntry:
    """One layer's latency: `count` measurements of `mean` and `std` milliseconds."""

    count: int
    mean: float
    std: float

    def __post_init__(self) -> None:
        problem = _entry_problem(self.count, self.mean, self.std)
        if problem:
            raise LutError(f"LutEntry {problem}")

    def to_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "std": self.std}


@dataclass(frozen=True)
class LayerTable:
    """The layer latencies of one input resolution (one ``{R}_lookup_table.yaml``).

    Attributes:
        resolution: input side R the table was measured at.
        entries: layer key -> entry; keys follow the grammar of DESIGN.md.
        origin: where the table came from, for messages (a file name).
        sha256: digest of the file it was read from; of `dump_layer_table`'s
            text when empty (a table built in memory).
    """

    resolution: int
    entries: Mapping[str, LutEntry]
    origin: str = field(default="<memory>", compare=False)
    sha256: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "entries", MappingProxyType(dict(self.entries)))
        if not self.entries:
            raise LutError(f"{self.origin}: the table has no entries")
        for key, entry in self.entries.items():
            _check_key(key, self.origin)
            if not isinstance(entry, LutEntry):
                raise LutError(f"{self.origin}: entry {key!r} is not a LutEntry")
        for side, _ in self._stems():
            if side != self.resolution:
                raise LutError(f"{self.origin}: the stem entry takes a {side}x{side} input, not {self.resolution}")
        if not self.sha256:
            object.__setattr__(self, "sha256", hashlib.sha256(dump_layer_table(self)).hexdigest())

    def __contains__(self, key: object) -> bool:
        return key in self.entries

    def __len__(self) -> int:
        return len(self.entries)

    def _stems(self) -> list[tuple[int, int]]:
        found = (_STEM_PATTERN.match(key) for key in self.entries)
        return [(int(match["side"]), int(match["channels"])) for match in found if match]

    @property
    def stem_channels(self) -> tuple[int, ...]:
        """Output channels of the stem entries: what tells the table's width."""
        return tuple(sorted({channels for _, channels in self._stems()}))

    @property
    def layout(self) -> str | None:
        """The family whose key grammar the table uses, None if it cannot tell."""
        blocks = [key for key in self.entries if key.startswith("expanded_conv-")]
        if any(key.startswith(("AvgPool2D-", "Conv_2-")) for key in self.entries) or any("-se:" in k for k in blocks):
            return "mobilenetv3"
        return "proxylessnas" if blocks else None


def dump_layer_table(table: LayerTable) -> bytes:
    """The YAML text of `table`: keys sorted, ``{count, mean, std}`` each.

    `yaml.safe_dump` with sorted keys reproduces the shipped Note10 files byte
    for byte, so a table read and written back keeps its sha256.
    """
    data = {key: table.entries[key].to_dict() for key in sorted(table.entries)}
    return yaml.safe_dump(data, default_flow_style=False, sort_keys=True).encode("utf-8")


def parse_layer_table(
    text: bytes | str, origin: str, resolution: int | None = None, sha256: str = ""
) -> LayerTable:
    """Read one table's YAML text; `resolution` None takes it from the stem entry."""
    data = _load_yaml(text, origin)
    if not isinstance(data, dict):
        raise LutError(f"{origin}: expected a mapping of layer keys to {{count, mean, std}}, got {_kind(data)}")
    if not data:
        raise LutError(f"{origin}: the table has no entries")
    entries = {_check_key(key, origin): _parse_entry(key, value, origin) for key, value in data.items()}
    if resolution is None:
        resolution = _stem_resolution(entries, origin)
    return LayerTable(resolution, entries, origin, sha256)


def _load_yaml(text: bytes | str, origin: str) -> Any:
    try:
        return yaml.load(text, Loader=_SAFE_LOADER)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise LutError(f"{origin}: not valid YAML{where} ({problem})") from None


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _check_key(key: Any, origin: str) -> str:
    if not isinstance(key, str) or not _KEY_PATTERN.match(key):
        raise LutError(f"{origin}: {key!r} is not an OFA layer key (TYPE-input:HxWxC-output:...)")
    return key


def _parse_entry(key: str, value: Any, origin: str) -> LutEntry:
    if not isinstance(value, dict):
        raise LutError(f"{origin}: entry {key!r} must be a mapping {{count, mean, std}}, got {_kind(value)}")
    missing = [name for name in _ENTRY_FIELDS if name not in value]
    extra = sorted(str(name) for name in value if name not in _ENTRY_FIELDS)
    if missing or extra:
        problem = f"lacks {', '.join(missing)}" if missing else f"has unknown fields {', '.join(extra)}"
        raise LutError(f"{origin}: entry {key!r} {problem} (an entry is exactly count, mean, std)")
    count, mean, std = (value[name] for name in _ENTRY_FIELDS)
    problem = _entry_problem(count, mean, std)
    if problem:
        raise LutError(f"{origin}: entry {key!r} {problem}")
    return LutEntry(count, float(mean), float(std))


def _entry_problem(count: Any, mean: Any, std: Any) -> str:
    """What is wrong with an entry's values, or "" if nothing."""
    if not isinstance(count, int) or isinstance(count, bool) or count < 1:
        return f"count must be a positive integer, got {count!r}"
    for name, number in (("mean", mean), ("std", std)):
        if not isinstance(number, (int, float)) or isinstance(number, bool) or not math.isfinite(number) or number < 0:
            return f"{name} must be a finite number >= 0 (ms), got {number!r}"
    return ""


def _stem_resolution(entries: Mapping[str, LutEntry], origin: str) -> int:
    sides = {int(match["side"]) for match in map(_STEM_PATTERN.match, entries) if match}
    if len(sides) != 1:
        raise LutError(
            f"{origin}: cannot tell the resolution: name the file {{R}}_lookup_table.yaml "
            f"or give it one stem entry Conv-input:RxRx3-output:..."
        )
    return sides.pop()


def _read_named(data: bytes, name: str, origin: str) -> LayerTable:
    match = FILE_PATTERN.match(name)
    resolution = int(match["resolution"]) if match else None
    return parse_layer_table(data, origin, resolution, hashlib.sha256(data).hexdigest())


def read_layer_table(path: str | Path) -> LayerTable:
    """Read one ``{R}_lookup_table.yaml`` (another name: R from the stem entry)."""
    path = Path(path)
    try:
        data = path.read_bytes()
    except OSError as error:
        raise LutError(f"cannot read lookup table {str(path)!r}: {error.strerror or error}") from None
    return _read_named(data, path.name, str(path))


def write_layer_table(table: LayerTable, path: str | Path) -> Path:
    """Write `table` to `path` atomically (a reader never sees half a file)."""
    with atomic_output(path) as handle:
        handle.write(dump_layer_table(table))
    return Path(path)


def write_lut(tables: LookupTable | Iterable[LayerTable], folder: str | Path) -> list[Path]:
    """Write one ``{R}_lookup_table.yaml`` per resolution into `folder` (created if missing)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    # A LookupTable refuses two tables of one resolution (they would overwrite each other).
    layer_tables = (tables if isinstance(tables, LookupTable) else LookupTable(tables, str(folder))).tables()
    return [write_layer_table(table, folder / f"{table.resolution}_lookup_table.yaml") for table in layer_tables]


# -- layer keys of a subnet ---------------------------------------------------------
# Each builder returns (stage, key) pairs in execution order; stage -1 marks the
# layers every subnet of one resolution shares (stem, first block, head).


def _shape(*dims: int) -> str:
    return "x".join(str(dim) for dim in dims)


def _key(layer_type: str, inputs: tuple[int, ...], outputs: tuple[int, ...], *fields: tuple[str, int]) -> str:
    parts = [layer_type, f"input:{_shape(*inputs)}", f"output:{_shape(*outputs)}"]
    return "-".join(parts + [f"{name}:{value}" for name, value in fields])


def _block_shapes(block: BlockPlan) -> tuple[tuple[int, ...], tuple[int, ...]]:
    size, out = block.input_size, block.output_size
    return (size, size, block.in_channels), (out, out, block.out_channels)


def _stem_key(plan: NetworkPlan) -> str:
    stem, side = plan.stem, plan.stem.output_size
    return _key("Conv", (plan.resolution, plan.resolution, 3), (side, side, stem.out_channels))


def mobilenetv3_keys(plan: NetworkPlan) -> list[tuple[int, str]]:
    """Keys of OFA's MBv3LatencyTable: ``expand`` is the middle channel count."""
    keys = [(-1, _stem_key(plan))]
    for block in plan.blocks:
        fields = (
            ("expand", block.mid_channels),
            ("kernel", block.kernel_size),
            ("stride", block.stride),
            ("idskip", int(block.residual)),
            ("se", int(block.use_se)),
            ("hs", int(block.activation == "h_swish")),
        )
        keys.append((block.stage, _key("expanded_conv", *_block_shapes(block), *fields)))
    final, mix = plan.final_expand, plan.feature_mix
    assert final is not None, "MobileNetV3 has a final expand layer"
    side = final.input_size
    keys += [
        (-1, _key("Conv_1", (side, side, final.in_channels), (side, side, final.out_channels))),
        (-1, _key("AvgPool2D", (side, side, final.out_channels), (1, 1, final.out_channels))),
        (-1, _key("Conv_2", (1, 1, mix.in_channels), (1, 1, mix.out_channels))),
        (-1, _key("Logits", (1, 1, mix.out_channels), (plan.num_classes,))),
    ]
    return keys


def proxylessnas_keys(plan: NetworkPlan) -> list[tuple[int, str]]:
    """Keys of OFA's ProxylessNASLatencyTable.

    Differences from MobileNetV3: ``expand`` is the expand *ratio* (1 for the
    first block), there are no ``se``/``hs`` fields, ``Conv_1`` is the feature
    mix at full spatial size and ``Logits`` covers pooling and classifier.
    """
    keys = [(-1, _stem_key(plan))]
    for block in plan.blocks:
        fields = (
            ("expand", block.expand_ratio),
            ("kernel", block.kernel_size),
            ("stride", block.stride),
            ("idskip", int(block.residual)),
        )
        keys.append((block.stage, _key("expanded_conv", *_block_shapes(block), *fields)))
    mix, side = plan.feature_mix, plan.feature_mix.input_size
    keys += [
        (-1, _key("Conv_1", (side, side, mix.in_channels), (side, side, mix.out_channels))),
        (-1, _key("Logits", (side, side, mix.out_channels), (plan.num_classes,))),
    ]
    return keys


#: Key grammar of each family, by family name.
KEY_GRAMMARS: Mapping[str, Callable[[NetworkPlan], list[tuple[int, str]]]] = MappingProxyType(
    {"mobilenetv3": mobilenetv3_keys, "proxylessnas": proxylessnas_keys}
)


def layer_keys(plan: NetworkPlan) -> tuple[str, ...]:
    """The LUT keys of every layer of `plan`, in execution order."""
    return tuple(key for _, key in _grammar(plan.family)(plan))


def _grammar(family: Family) -> Callable[[NetworkPlan], list[tuple[int, str]]]:
    try:
        return KEY_GRAMMARS[family.name]
    except KeyError:
        raise LutError(f"no LUT key grammar for the {family.name} family; known: {', '.join(KEY_GRAMMARS)}") from None


# -- tables of several resolutions ------------------------------------------------------


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


@lru_cache(maxsize=None)
def _read_shipped(name: str) -> LookupTable:
    folder = resources.files("compofa.data").joinpath(SHIPPED_TABLES[name].folder)
    files = sorted((entry for entry in folder.iterdir() if FILE_PATTERN.match(entry.name)), key=lambda e: e.name)
    return LookupTable([_read_named(entry.read_bytes(), entry.name, f"{name}/{entry.name}") for entry in files], name)


class LutPredictor:
    """Latency estimates of one family at one width from a `LookupTable`.

    Construction refuses a table made for another family or width. Every
    stage's input channels and spatial size are fixed by the family and the
    resolution (only a stage's own blocks vary), so a subnet's sum splits into a
    shared part per resolution plus one part per stage, each cached by the
    stage's (kernels, expand ratios): a batch costs a few lookups per spec.
    """

    def __init__(self, table: LookupTable, family: Family, width: float) -> None:
        self.table, self.family, self.width = table, family, width
        self._grammar = _grammar(family)
        self._check_fits()
        self._spaces: set[str] = set()
        self._shared: dict[int, float] = {}
        self._stages: dict[tuple[int, int, tuple[int, ...], tuple[int, ...]], float] = {}

    def _check_fits(self) -> None:
        table, family = self.table, self.family
        if table.layout not in (None, family.name):
            raise LutError(f"LUT {table.name} has {table.layout} layer keys; it cannot estimate {family.name} networks")
        need = family.scaled(family.stem_base_width, self.width)
        have = table.stem_channels
        if not have:
            raise LutError(f"LUT {table.name} has no stem entry (Conv-input:RxRx3-output:...) to tell its width")
        if need not in have:
            widths = [w for w in family.widths if family.scaled(family.stem_base_width, w) in have]
            described = f"width {widths[0]}" if widths else "an unknown width"
            raise LutError(
                f"LUT {table.name} describes {family.name} {described} (stem {'/'.join(map(str, have))} channels) "
                f"but the supernet is width {self.width} (stem {need} channels); use a LUT measured at width {self.width}"
            )

    def layer_keys(self, spec: SubnetSpec) -> tuple[str, ...]:
        return tuple(key for _, key in self._keys(spec))

    def _check_space(self, spec: SubnetSpec) -> None:
        if spec.space not in self._spaces:
            family = get_space(spec.space).family
            if family != self.family:
                raise LutError(f"spec {spec} is a {family.name} network; this estimate is for {self.family.name}")
            self._spaces.add(spec.space)

    def _keys(self, spec: SubnetSpec) -> list[tuple[int, str]]:
        self._check_space(spec)
        return self._grammar(plan_subnet(spec, self.width))

    def predict(self, spec: SubnetSpec) -> float:
        """Latency (ms) of `spec`: the sum of its layers' means."""
        self._check_space(spec)
        resolution = spec.resolution
        if resolution not in self._shared:
            self._fill(spec)
        total = self._shared[resolution]
        for stage in range(spec.num_stages):
            key = (resolution, stage, spec.stage_kernel_sizes(stage), spec.stage_expand_ratios(stage))
            if key not in self._stages:
                self._fill(spec)
            total += self._stages[key]
        return total

    def predict_many(self, specs: Iterable[SubnetSpec]) -> np.ndarray:
        """`predict` of every spec, as a float64 array."""
        return np.fromiter((self.predict(spec) for spec in specs), dtype=np.float64)

    def _fill(self, spec: SubnetSpec) -> None:
        """Cache the shared and per-stage sums of `spec`'s layers."""
        layers = self.table.layer_table(spec.resolution)
        sums: dict[int, float] = {}
        for stage, key in self._keys(spec):
            sums[stage] = sums.get(stage, 0.0) + self._mean(layers, key, spec)
        self._shared[spec.resolution] = sums.pop(-1)
        for stage, total in sums.items():
            stage_key = (spec.resolution, stage, spec.stage_kernel_sizes(stage), spec.stage_expand_ratios(stage))
            self._stages[stage_key] = total

    def _mean(self, layers: LayerTable, key: str, spec: SubnetSpec) -> float:
        entry = layers.entries.get(key)
        if entry is None:
            raise LutError(
                f"LUT {self.table.name} has no entry {key!r} at resolution {layers.resolution} (needed by {spec}); "
                f"measure that layer into the table, or use a LUT made for {self.family.name} width {self.width} "
                "that covers it"
            )
        return entry.mean


# -- the device -----------------------------------------------------------------------


@dataclass
class LutSubnet:
    """A 'prepared' subnet: its estimate, computed once."""

    spec: SubnetSpec
    latency_ms: float

    def close(self) -> None:
        """Nothing to free."""


class LutDevice:
    """Estimates latency from a layer lookup table (option ``source``: ``note10`` or a path).

    The OFA format does not record the batch or precision a table was measured
    at: the shipped tables insist on theirs (batch 1, fp32); for a table of
    your own the settings you give are taken as its and recorded in the
    fingerprint.
    """

    name = "lut"
    deterministic = True

    def __init__(self, settings: Settings, source: SubnetSource) -> None:
        unknown = set(settings.options) - {"source"}
        if unknown:
            raise DeviceOptionError(f"the lut device takes only the option source, not {sorted(unknown)}")
        location = settings.options.get("source")
        if not location:
            raise DeviceOptionError(
                "the lut device needs a table: use lut:note10 (the shipped Samsung Note10 tables) or lut:PATH "
                "(a {R}_lookup_table.yaml file or a folder of them)"
            )
        shipped = SHIPPED_TABLES.get(location)
        if shipped is not None:
            _check_shipped_settings(location, shipped, settings)
        self.settings = settings
        self.source = source
        self.table = LookupTable.open(location)
        self.predictor = self.table.predictor(source.space, source.width)

    def fingerprint(self) -> dict[str, Any]:
        return {
            "backend": self.name,
            "table": self.table.name,
            "sha256": self.table.sha256,
            "family": self.predictor.family.name,
            "width": self.predictor.width,
            "resolutions": list(self.table.resolutions),
            "batch": self.settings.batch,
            "precision": self.settings.precision,
        }

    def conditions(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    def prepare(self, spec: SubnetSpec) -> LutSubnet:
        return LutSubnet(spec, self.predictor.predict(spec))

    def time(self, handle: LutSubnet, n: int) -> list[float]:
        return [handle.latency_ms] * n


def _check_shipped_settings(name: str, shipped: ShippedTable, settings: Settings) -> None:
    if settings.batch != shipped.batch or settings.precision != shipped.precision:
        raise DeviceOptionError(
            f"the {name} tables were measured at batch {shipped.batch}, {shipped.precision}; "
            f"got batch {settings.batch}, {settings.precision}"
        )


register_backend(
    Backend(
        name="lut",
        summary="estimates from an OFA-format layer lookup table (lut:note10 ships; lut:PATH)",
        availability=lambda: Availability(True),
        factory=LutDevice,
    )
)
