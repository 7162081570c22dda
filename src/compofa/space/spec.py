"""`SubnetSpec`: one subnet of a design space, as an immutable value.

A spec names its design space, its input resolution, the depth of every stage
and the kernel size and expand ratio of every *active* block (blocks a stage's
depth leaves out have no settings: they do not exist in the subnet, so two OFA
dicts that differ only there describe the same network and the same spec).

The canonical text form is the table key, the CLI argument and the file name::

    compofa-r192-k333e444_k555e444_k333e444_k333e444_k555e444
    <space>-r<resolution>-<stage>_<stage>_...   stage = k<kernel per block>e<expand per block>

A stage's depth is its number of digits. `format_spec`/`parse_spec` round-trip
exactly. The OFA dict form ``{"ks": [...], "e": [...], "d": [...], "r": [R]}``
holds a value for every block of the supernet; on export the blocks a stage
leaves out repeat that stage's last active block, as OFA's own samplers do.
"""

from __future__ import annotations

import json
import numbers
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from compofa.errors import SpecError, UnknownSpaceError
from compofa.space.family import Family

#: The space a spec given without one (an OFA dict) belongs to.
DEFAULT_SPACE = "compofa"


class _Space(Protocol):
    """What a spec needs of its design space: the family and the check of its choices."""

    @property
    def family(self) -> Family: ...

    def check(self, spec: SubnetSpec) -> None: ...


# The registry of spaces sits above this module (it builds specs itself), so it
# hands its lookup down when it is imported (`compofa.space` always imports it)
# instead of this module importing it back.
_lookup_space: Callable[[str], _Space] | None = None


def install_space_lookup(lookup: Callable[[str], _Space]) -> None:
    """Called once by `compofa.space.registry`: how specs find their design space."""
    global _lookup_space
    _lookup_space = lookup


def _space(name: str) -> _Space:
    if _lookup_space is None:  # only if this module was loaded without its package
        raise UnknownSpaceError(f"no design spaces are registered yet to look {name!r} up in")
    return _lookup_space(name)

_SPEC_PATTERN = re.compile(
    r"^(?P<space>[a-z][a-z0-9]*(?:-[a-z0-9]+)*?)-r(?P<resolution>[1-9][0-9]*)-(?P<stages>[a-z0-9_]+)$"
)
_STAGE_PATTERN = re.compile(r"^k(?P<kernels>[0-9]+)e(?P<expands>[0-9]+)$")
_OFA_KEYS = {"ks", "e", "d", "r", "wid"}


@dataclass(frozen=True)
class BlockSetting:
    """Kernel size and expand ratio of one active block."""

    stage: int
    index_in_stage: int
    kernel_size: int
    expand_ratio: int


@dataclass(frozen=True)
class SubnetSpec:
    """One subnet of a design space.

    Attributes:
        space: name of the registered design space the subnet belongs to.
        resolution: input height and width in pixels.
        depths: active blocks per elastic stage.
        kernel_sizes: depthwise kernel size of each active block, stage by stage
            (``len == sum(depths)``).
        expand_ratios: expand ratio of each active block, stage by stage.

    Construction validates the structure and then membership in `space`,
    raising `SpecError` that names the offending field.
    """

    space: str
    resolution: int
    depths: tuple[int, ...]
    kernel_sizes: tuple[int, ...]
    expand_ratios: tuple[int, ...]
    _stage_starts: tuple[int, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("depths", "kernel_sizes", "expand_ratios"):
            value = getattr(self, name)
            if not isinstance(value, (list, tuple)):
                raise SpecError(f"SubnetSpec.{name} must be a sequence of ints, got {value!r}")
            items = []
            for position, item in enumerate(value):
                if not _is_int(item) or item < 1:
                    raise SpecError(f"SubnetSpec.{name}[{position}] must be a positive int, got {item!r}")
                items.append(int(item))
            object.__setattr__(self, name, tuple(items))
        if not isinstance(self.space, str) or not self.space:
            raise SpecError(f"SubnetSpec.space must be a space name, got {self.space!r}")
        if not _is_int(self.resolution):
            raise SpecError(f"SubnetSpec.resolution must be an int, got {self.resolution!r}")
        object.__setattr__(self, "resolution", int(self.resolution))
        active = sum(self.depths)
        for name in ("kernel_sizes", "expand_ratios"):
            if len(getattr(self, name)) != active:
                raise SpecError(
                    f"SubnetSpec.{name} has {len(getattr(self, name))} entries but depths "
                    f"{list(self.depths)} make {active} active blocks"
                )
        starts, total = [], 0
        for depth in self.depths:
            starts.append(total)
            total += depth
        object.__setattr__(self, "_stage_starts", tuple(starts))
        try:
            space = _space(self.space)
        except UnknownSpaceError as error:
            raise SpecError(f"SubnetSpec.space: {error}") from None
        space.check(self)

    @property
    def num_stages(self) -> int:
        return len(self.depths)

    def stage_kernel_sizes(self, stage: int) -> tuple[int, ...]:
        start = self._stage_starts[stage]
        return self.kernel_sizes[start : start + self.depths[stage]]

    def stage_expand_ratios(self, stage: int) -> tuple[int, ...]:
        start = self._stage_starts[stage]
        return self.expand_ratios[start : start + self.depths[stage]]

    def blocks(self) -> Iterator[BlockSetting]:
        """The active blocks, stage by stage."""
        for stage, depth in enumerate(self.depths):
            start = self._stage_starts[stage]
            for index in range(depth):
                yield BlockSetting(
                    stage, index, self.kernel_sizes[start + index], self.expand_ratios[start + index]
                )

    # -- text form ------------------------------------------------------------

    def __str__(self) -> str:
        return format_spec(self)

    def to_dict(self) -> dict[str, Any]:
        return {
            "space": self.space,
            "resolution": self.resolution,
            "depths": list(self.depths),
            "kernel_sizes": list(self.kernel_sizes),
            "expand_ratios": list(self.expand_ratios),
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> SubnetSpec:
        expected = {"space", "resolution", "depths", "kernel_sizes", "expand_ratios"}
        if set(data) != expected:
            missing, extra = expected - set(data), set(data) - expected
            raise SpecError(
                f"spec dict needs exactly the keys {sorted(expected)}"
                + (f"; missing {sorted(missing)}" if missing else "")
                + (f"; unknown {sorted(extra)}" if extra else "")
            )
        return cls(
            space=data["space"],
            resolution=data["resolution"],
            depths=data["depths"],
            kernel_sizes=data["kernel_sizes"],
            expand_ratios=data["expand_ratios"],
        )

    # -- OFA dict form ----------------------------------------------------------

    def to_ofa_dict(self) -> dict[str, list[int]]:
        """The OFA form: a kernel and expand ratio for every supernet block."""
        family = _space(self.space).family
        kernels: list[int] = []
        expands: list[int] = []
        for stage, stage_def in enumerate(family.stages):
            stage_kernels = self.stage_kernel_sizes(stage)
            stage_expands = self.stage_expand_ratios(stage)
            padding = stage_def.max_depth - len(stage_kernels)
            kernels += list(stage_kernels) + [stage_kernels[-1]] * padding
            expands += list(stage_expands) + [stage_expands[-1]] * padding
        return {"ks": kernels, "e": expands, "d": list(self.depths), "r": [self.resolution]}

    @classmethod
    def from_ofa_dict(
        cls, data: Mapping[str, Any], space: str, resolution: int | None = None
    ) -> SubnetSpec:
        """Read an OFA dict ``{"ks", "e", "d", "r"}`` as a spec of `space`.

        `resolution` is used when the dict has no ``r``. A ``wid`` key (OFA's
        unused width slot) is accepted when it is null. As in the reference
        code, the depth given for a single-block stage (the last stage of
        ProxylessNAS) is read as 1; it may also be left out.
        """
        family = _space(space).family
        unknown = set(data) - _OFA_KEYS
        if unknown:
            raise SpecError(f"OFA dict has unknown keys {sorted(unknown)}; expected ks, e, d, r")
        if data.get("wid") is not None:
            raise SpecError("OFA dict key 'wid' must be null: width is a property of the supernet")
        for key in ("ks", "e", "d"):
            if key not in data:
                raise SpecError(f"OFA dict is missing key {key!r} (needs ks, e, d and r)")
            if not isinstance(data[key], (list, tuple)):
                raise SpecError(f"OFA dict key {key!r} must be a list, got {data[key]!r}")
        kernels, expands, depths = list(data["ks"]), list(data["e"]), list(data["d"])
        num_blocks, num_stages = family.num_blocks, len(family.stages)
        for key, values in (("ks", kernels), ("e", expands)):
            if len(values) != num_blocks:
                raise SpecError(
                    f"OFA dict {key!r} has {len(values)} entries; the {family.name} supernet has {num_blocks} blocks"
                )
        fixed_last = family.stages[-1].max_depth == 1
        if fixed_last and len(depths) == num_stages - 1:
            depths.append(1)
        if len(depths) != num_stages:
            raise SpecError(
                f"OFA dict 'd' has {len(depths)} entries; the {family.name} supernet has {num_stages} stages")
        resolution = _ofa_resolution(data.get("r"), resolution)
        spec_depths, spec_kernels, spec_expands = [], [], []
        start = 0
        for stage_def, depth in zip(family.stages, depths):
            if not _is_int(depth) or depth < 1:
                raise SpecError(f"OFA dict 'd' entries must be positive ints, got {depth!r}")
            if stage_def.max_depth == 1:
                depth = 1  # OFA caps it too: a single-block stage has no depth choice
            elif depth > stage_def.max_depth:
                raise SpecError(f"OFA dict 'd' = {depth} exceeds the {stage_def.max_depth} blocks of its stage")
            spec_depths.append(depth)
            spec_kernels += kernels[start : start + depth]
            spec_expands += expands[start : start + depth]
            start += stage_def.max_depth
        return cls(space, resolution, tuple(spec_depths), tuple(spec_kernels), tuple(spec_expands))


def _is_int(value: Any) -> bool:
    """True for ints and numpy integers, False for bools and everything else."""
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def _ofa_resolution(value: Any, default: int | None) -> int:
    if value is None:
        if default is None:
            raise SpecError("OFA dict has no 'r' (resolution); give the resolution, e.g. 224", option="resolution")
        return default
    if isinstance(value, (list, tuple)):
        if len(value) != 1:
            raise SpecError(f"OFA dict 'r' must hold one resolution, got {list(value)}")
        value = value[0]
    if not _is_int(value):
        raise SpecError(f"OFA dict 'r' must be an int resolution, got {value!r}")
    return int(value)


def format_spec(spec: SubnetSpec) -> str:
    """The canonical text form of `spec` (see the module docstring)."""
    stages = "_".join(
        "k"
        + "".join(str(k) for k in spec.stage_kernel_sizes(stage))
        + "e"
        + "".join(str(e) for e in spec.stage_expand_ratios(stage))
        for stage in range(spec.num_stages)
    )
    return f"{spec.space}-r{spec.resolution}-{stages}"


def parse_spec(text: str) -> SubnetSpec:
    """Parse the canonical text form; raises `SpecError` saying what is wrong."""
    match = _SPEC_PATTERN.match(text.strip())
    if match is None:
        raise SpecError(
            f"cannot read spec {text!r}: expected <space>-r<resolution>-k<kernels>e<expands>_..., "
            "e.g. compofa-r224-k333e444_k55e33_k3333e6666_k333e444_k55e33"
        )
    depths: list[int] = []
    kernels: list[int] = []
    expands: list[int] = []
    for position, stage in enumerate(match["stages"].split("_")):
        stage_match = _STAGE_PATTERN.match(stage)
        if stage_match is None:
            raise SpecError(f"cannot read stage {position} {stage!r} of spec {text!r}: expected k<digits>e<digits>")
        stage_kernels, stage_expands = stage_match["kernels"], stage_match["expands"]
        if len(stage_kernels) != len(stage_expands):
            raise SpecError(
                f"stage {position} {stage!r} of spec {text!r} has {len(stage_kernels)} kernels "
                f"but {len(stage_expands)} expand ratios (one digit of each per block)"
            )
        depths.append(len(stage_kernels))
        kernels += [int(digit) for digit in stage_kernels]
        expands += [int(digit) for digit in stage_expands]
    return SubnetSpec(match["space"], int(match["resolution"]), tuple(depths), tuple(kernels), tuple(expands))


def read_spec(
    text: str, space: str | None = None, resolution: int | None = None
) -> SubnetSpec:
    """Read a spec the way the CLI accepts one.

    `text` is the canonical form, an OFA dict as JSON text, or ``@file.json``
    holding either (a JSON string or an OFA dict). `space` names the space an
    OFA dict belongs to and, for the canonical form, must agree with it.
    `resolution`, when given, replaces the spec's own.
    """
    text = text.strip()
    if text.startswith("@"):
        text = _read_spec_file(text[1:])
    if text.startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as error:
            raise SpecError(f"spec looks like JSON but does not parse: {error.msg} at column {error.colno}") from None
        if not isinstance(data, dict):
            raise SpecError("a JSON spec must be an OFA dict {\"ks\": [...], \"e\": [...], \"d\": [...], \"r\": [R]}")
        if set(data) == {"space", "resolution", "depths", "kernel_sizes", "expand_ratios"}:
            spec = SubnetSpec.from_dict(data)
        else:
            spec = SubnetSpec.from_ofa_dict(data, space or DEFAULT_SPACE, resolution=resolution or 224)
    else:
        spec = parse_spec(text)
    if space is not None and spec.space != space:
        raise SpecError(f"spec {format_spec(spec)} belongs to space {spec.space!r}, not {space!r}")
    if resolution is not None and resolution != spec.resolution:
        spec = replace(spec, resolution=resolution)
    return spec


def _read_spec_file(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as handle:
            content = handle.read().strip()
    except OSError as error:
        raise SpecError(f"cannot read spec file {path!r}: {error.strerror}") from None
    except UnicodeDecodeError:
        raise SpecError(f"spec file {path!r} is not text: it should hold a spec or an OFA dict as JSON") from None
    if content.startswith('"'):
        try:
            content = json.loads(content)
        except json.JSONDecodeError:
            raise SpecError(f"spec file {path!r} holds a malformed JSON string") from None
    if not isinstance(content, str) or not content:
        raise SpecError(f"spec file {path!r} is empty")
    return content
