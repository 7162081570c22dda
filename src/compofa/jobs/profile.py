"""Profile a design space into a table: resumable, shardable, one writer at a time.

The profiler measures; this job decides what to measure (everything of the
space at the asked resolutions, minus what the table already has, restricted
to one shard), hands the profiler the rounds a previous interrupted run left,
and commits every round and every finished entry the moment it exists.

Nothing is written before there is a measurement to write: the device row and
the run row are added with the first result, and a table this job created is
removed again when the job fails before measuring anything, so a refused or
failed profile leaves no file behind and an existing table byte for byte as
it was. Entries a noisy machine left unstable (`NOISY`) are measured again,
first, by the next run.
"""

from __future__ import annotations

import contextlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compofa.devices import Settings, open_device
from compofa.errors import SpecError
from compofa.jobs.measure import FORCEABLE, ItemKeys, MeasureSummary, measure_items, with_cache_dir
from compofa.profiler import ProfileConfig, ProfileListener
from compofa.sources.subnet import SubnetSource
from compofa.space import DesignSpace, SubnetSpec, get_space, parse_spec
from compofa.tables.store import EntryKey, LatencyTable, SetupKey, writing


@dataclass(frozen=True)
class Shard:
    """Part `index` (1-based) of `count`: every count-th subnet of the sorted list."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str) -> Shard:
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise SpecError(f"a shard must look like K/N (e.g. 1/4), got {text!r}", option="shard") from None
        if not 1 <= index <= count:
            raise SpecError(f"shard {text}: need 1 <= K <= N", option="shard")
        return cls(index, count)

    def select(self, specs: Sequence[SubnetSpec]) -> list[SubnetSpec]:
        ordered = sorted(specs, key=lambda spec: (spec.resolution, str(spec)))
        return ordered[self.index - 1 :: self.count]

    def __str__(self) -> str:
        return f"{self.index}/{self.count}"


@dataclass(frozen=True)
class ProfileRequest:
    """Everything `compofa profile` is asked to do."""

    table: Path
    device: str
    source: SubnetSource
    resolutions: tuple[int, ...]
    settings: Settings = field(default_factory=Settings)
    config: ProfileConfig = field(default_factory=ProfileConfig)
    shard: Shard | None = None
    limit: int | None = None
    force: bool = False
    specs: tuple[SubnetSpec, ...] | None = None  # exactly these instead of the whole space (measure on demand)
    forceable: bool = True  # whether the caller offers --force for a table of another setup


def reference_spec(space: DesignSpace, resolutions: Sequence[int]) -> SubnetSpec:
    """A mid-sized subnet at the middle resolution: the drift reference."""
    resolution = sorted(resolutions)[len(resolutions) // 2]
    depths, kernels, expands = [], [], []
    for choices in space.stages:
        depth = sorted(choices.depths)[len(choices.depths) // 2]
        kernel = sorted(choices.kernel_sizes)[len(choices.kernel_sizes) // 2]
        options = sorted(choices.expand_options(depth))
        depths.append(depth)
        kernels += [kernel] * depth
        expands += [options[len(options) // 2]] * depth
    return SubnetSpec(space.name, resolution, tuple(depths), tuple(kernels), tuple(expands))


def planned_specs(request: ProfileRequest) -> list[SubnetSpec]:
    if request.specs is not None:
        return list(request.specs)
    space = get_space(request.source.space)
    specs = list(space.enumerate(request.resolutions)) if space.enumerable else None
    if specs is None:
        raise SpecError(
            f"space {space.name!r} has {space.cardinality:.3g} subnets: too many to profile; "
            "profile an enumerable space such as compofa, or measure on demand during search"
        )
    if request.shard is not None:
        specs = request.shard.select(specs)
    if request.limit is not None:
        specs = specs[: request.limit]
    return specs


def subnet_keys(space: str, width: float, settings: Settings) -> ItemKeys[SubnetSpec]:
    """How a profile's subnets are keyed in the store, and how its stored reference is named."""

    def entry(spec: SubnetSpec) -> EntryKey:
        return EntryKey(spec.space, width, str(spec), spec.resolution, settings.batch, settings.precision)

    return ItemKeys(entry, SetupKey(space, width, settings.batch, settings.precision), parse_spec)


def profile_space(request: ProfileRequest, listener: ProfileListener[SubnetSpec] | None = None) -> MeasureSummary:
    """Profile the request's subnets into its table; rerunning resumes."""
    specs = planned_specs(request)
    source = request.source
    width = float(source.width or get_space(source.space).family.default_width)
    settings = with_cache_dir(request.settings, source.cache_dir)
    LatencyTable.check_path(request.table, writable=True, create=True)
    device = open_device(request.device, source, settings)
    with contextlib.closing(device), writing(request.table) as table:
        space = get_space(source.space)
        return measure_items(
            table, device, specs, subnet_keys(space.name, width, settings),
            lambda: reference_spec(space, request.resolutions), source.describe(), settings, request.config,
            listener or ProfileListener[SubnetSpec](), force=request.force,
            remedy=FORCEABLE if request.forceable else "give another --table for this setup",
            shard=str(request.shard) if request.shard else None,
        )

