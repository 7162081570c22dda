"""The OFA lookup-table file format: one ``{R}_lookup_table.yaml`` per input resolution.

Each file maps layer keys (`compofa.lut.keys`) to ``{count, mean, std}``:
how often the layer was timed and its mean and standard deviation in
milliseconds. This module reads and validates such files and writes them back
byte for byte as the OFA tools do.
"""

from __future__ import annotations

import hashlib
import math
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from compofa.errors import CompofaError
from compofa.fileio import atomic_output


class LutError(CompofaError):
    """A lookup table that is malformed, does not fit the network, or lacks a layer."""


#: A table file's name: ``{R}_lookup_table.yaml`` (the OFA/CompOFA convention).
FILE_PATTERN = re.compile(r"^(?P<resolution>[1-9][0-9]*)_lookup_table\.yaml$")
#: What every key looks like: ``<type>-input:HxWxC-output:HxWxC|N[-field:int]...`` (`compofa.lut.keys`).
KEY_PATTERN = re.compile(r"^[A-Za-z][A-Za-z0-9_]*-input:\d+x\d+x\d+-output:\d+(?:x\d+x\d+)?(?:-[a-z]+:\d+)*$")
#: The stem's key: its input side is the table's resolution, its output channels tell the width.
STEM_PATTERN = re.compile(r"^Conv-input:(?P<side>\d+)x(?P=side)x3-output:\d+x\d+x(?P<channels>\d+)$")
_ENTRY_FIELDS = ("count", "mean", "std")


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
        entries: layer key -> entry; keys follow `compofa.lut.keys`.
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
        found = (STEM_PATTERN.match(key) for key in self.entries)
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
    import yaml  # here, not at import: listing devices never parses a table

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


# The block layout `yaml.safe_dump` writes for a table (every shipped file and every table we write):
# a plain key, then count, mean and std, each on its own line indented by two spaces. The number
# patterns are the subset PyYAML reads as int and float (a float needs its dot; 012 would be octal).
_ENTRY_BLOCK = re.compile(
    r"([A-Za-z][A-Za-z0-9_]*-input:[0-9x]+-output:[0-9x]+(?:-[a-z]+:[0-9]+)*):\n"
    r"  count: (0|[1-9][0-9]*)\n"
    r"  mean: ([0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?)\n"
    r"  std: ([0-9]+\.[0-9]*(?:[eE][-+][0-9]+)?)\n"
)


def _read_entry_blocks(text: str) -> dict[str, dict[str, Any]] | None:
    """The table of a file written in exactly `yaml.safe_dump`'s block layout, or None for any other text.

    Search and the `lut` device read 17 shipped tables on every start; PyYAML takes about 80 ms for
    them, this a few. Whatever it does not recognise goes to PyYAML, which gives the same mapping
    for what it does recognise (a test checks both readers agree on every shipped file).
    """
    data: dict[str, dict[str, Any]] = {}
    position = 0
    for match in _ENTRY_BLOCK.finditer(text):
        if match.start() != position:
            return None
        key, count, mean, std = match.groups()
        data[key] = {"count": int(count), "mean": float(mean), "std": float(std)}
        position = match.end()
    return data if data and position == len(text) else None


def _load_yaml(text: bytes | str, origin: str) -> Any:
    decoded = text.decode("utf-8", errors="replace") if isinstance(text, bytes) else text
    fast = _read_entry_blocks(decoded)
    if fast is not None:
        return fast
    import yaml

    # The C loader parses the same safe subset as yaml.SafeLoader, several times faster.
    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(error, "problem", None) or str(error).splitlines()[0]
        raise LutError(f"{origin}: not valid YAML{where} ({problem})") from None


def _kind(value: Any) -> str:
    return "nothing" if value is None else type(value).__name__


def _check_key(key: Any, origin: str) -> str:
    if not isinstance(key, str) or not KEY_PATTERN.match(key):
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
    sides = {int(match["side"]) for match in map(STEM_PATTERN.match, entries) if match}
    if len(sides) != 1:
        raise LutError(
            f"{origin}: cannot tell the resolution: name the file {{R}}_lookup_table.yaml "
            f"or give it one stem entry Conv-input:RxRx3-output:..."
        )
    return sides.pop()


def read_named(data: bytes, name: str, origin: str) -> LayerTable:
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
    return read_named(data, path.name, str(path))


def write_layer_table(table: LayerTable, path: str | Path) -> Path:
    """Write `table` to `path` atomically (a reader never sees half a file)."""
    with atomic_output(path) as handle:
        handle.write(dump_layer_table(table))
    return Path(path)
