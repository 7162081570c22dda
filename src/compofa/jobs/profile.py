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
import os
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from compofa.devices import Settings
from compofa.devices.base import PlanChecked
from compofa.errors import SpecError
from compofa.jobs.fleet import measure_on_fleet
from compofa.jobs.frontier import Scorer, profile_front_aware, widen_coarse_entries
from compofa.jobs.measure import FORCEABLE, ItemKeys, MeasureSummary, StoredReason, measure_items, with_cache_dir
from compofa.profiler import ProfileConfig, ProfileListener
from compofa.remote.names import open_any_device
from compofa.sources.subnet import SubnetSource
from compofa.space import DesignSpace, SubnetSpec, get_space, parse_spec
from compofa.tables.store import Entry, EntryKey, LatencyTable, SetupKey, writing


def _shard_number(text: str, name: str, minimum: int = 0) -> int:
    try:
        value = int(text)
    except ValueError:
        value = minimum - 1
    if value < minimum:
        raise SpecError(f"{name} must be a whole number >= {minimum}, got {text!r}", option="shard")
    return value


@dataclass(frozen=True)
class Shard:
    """Part `index` (1-based) of `count`: every count-th subnet of the sorted list."""

    index: int
    count: int

    @classmethod
    def parse(cls, text: str, environment: Mapping[str, str] | None = None) -> Shard:
        """``K/N``; or ``auto`` (``auto/N``), the shard the cluster scheduler gave this task (`from_scheduler`)."""
        if text == "auto" or text.startswith("auto/"):
            count = None
            if text != "auto":
                count = _shard_number(text.partition("/")[2], f"the count of shard {text!r}", minimum=1)
            return cls.from_scheduler(os.environ if environment is None else environment, count)
        try:
            index, count = (int(part) for part in text.split("/"))
        except ValueError:
            raise SpecError(f"a shard must look like K/N (e.g. 1/4) or auto, got {text!r}", option="shard") from None
        if not 1 <= index <= count:
            raise SpecError(f"shard {text}: need 1 <= K <= N", option="shard")
        return cls(index, count)

    @classmethod
    def from_scheduler(cls, environment: Mapping[str, str], count: int | None = None) -> Shard:
        """This task's shard, from the variables a cluster scheduler sets for it.

        - A Slurm job array: ``SLURM_ARRAY_TASK_ID`` among ``SLURM_ARRAY_TASK_COUNT``
          tasks numbered from ``SLURM_ARRAY_TASK_MIN`` in steps of
          ``SLURM_ARRAY_TASK_STEP`` (1 if unset): ``--array=0-7`` makes shards 1/8 to 8/8.
        - A Kubernetes Indexed Job: ``JOB_COMPLETION_INDEX`` (0-based) of `count`
          completions; the pod does not see the count, so it must be given.

        `count`, when given with Slurm, must agree with the array's.
        """
        if "SLURM_ARRAY_TASK_ID" in environment:
            task = _shard_number(environment["SLURM_ARRAY_TASK_ID"], "SLURM_ARRAY_TASK_ID")
            first = _shard_number(environment.get("SLURM_ARRAY_TASK_MIN", ""), "SLURM_ARRAY_TASK_MIN")
            tasks = _shard_number(environment.get("SLURM_ARRAY_TASK_COUNT", ""), "SLURM_ARRAY_TASK_COUNT", 1)
            step = _shard_number(environment.get("SLURM_ARRAY_TASK_STEP", "1"), "SLURM_ARRAY_TASK_STEP", 1)
            offset, off_step = divmod(task - first, step)
            if off_step or not 0 <= offset < tasks:
                # an array given as a list (--array=1,4,9) has no arithmetic numbering to shard by
                raise SpecError(f"Slurm array task {task} is not one of {tasks} tasks from {first} in steps of {step}; "
                                "submit the array as a range (--array=0-N)", option="shard")
            if count is not None and count != tasks:
                raise SpecError(f"the Slurm array has {tasks} tasks, not {count}", option="shard")
            return cls(offset + 1, tasks)
        if "JOB_COMPLETION_INDEX" in environment:
            index = _shard_number(environment["JOB_COMPLETION_INDEX"], "JOB_COMPLETION_INDEX")
            if count is None:
                raise SpecError("a Kubernetes Indexed Job does not tell its pods how many there are: "
                                "give the shard as auto/N with N the job's completions", option="shard")
            if not index < count:
                raise SpecError(f"JOB_COMPLETION_INDEX {index} is not below the {count} completions given",
                                option="shard")
            return cls(index + 1, count)
        raise SpecError("no cluster scheduler gave this task a shard (neither SLURM_ARRAY_TASK_ID of a Slurm job "
                        "array nor JOB_COMPLETION_INDEX of a Kubernetes Indexed Job is set); give the shard as K/N",
                        option="shard")

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
    fleet: tuple[str, ...] = ()  # more devices of the same kind measuring the job beside `device`
    time_budget: float | None = None  # seconds; then the run ends, unconverged entries as TIME_BUDGET
    # front-aware (jobs/frontier.py): each spec's accuracy; None measures every spec to the target (uniform)
    accuracy: Scorer | None = None


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
        # a spread sample, not the first N in enumeration order (those share all but their last stages);
        # the same every run, and a larger limit keeps a smaller one's subnets
        from compofa.space.sample import spread_sample

        width = float(request.source.width or space.family.default_width)
        specs = spread_sample(specs, request.limit, width)
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
    with contextlib.ExitStack() as opened:
        devices = []
        for name in (request.device, *request.fleet):  # each is closed however the job ends
            devices.append(open_any_device(name, source, settings))
            opened.callback(devices[-1].close)
            if isinstance(devices[-1], PlanChecked):
                devices[-1].check_plan(specs)
        table = opened.enter_context(writing(request.table))
        space = get_space(source.space)
        keys = subnet_keys(space.name, width, settings)
        remedy = FORCEABLE if request.forceable else "give another --table for this setup"
        shard = str(request.shard) if request.shard else None
        listener = listener or ProfileListener[SubnetSpec]()

        def reference() -> SubnetSpec:
            return reference_spec(space, request.resolutions)

        def measure(items: Sequence[SubnetSpec], config: ProfileConfig, events: ProfileListener[SubnetSpec],
                    stored_reason: StoredReason | None, time_budget: float | None) -> MeasureSummary:
            if len(devices) > 1:
                return measure_on_fleet(table, devices, items, keys, reference, source.describe(), settings, config,
                                        events, force=request.force, remedy=remedy, shard=shard, notify=_to_stderr,
                                        time_budget=time_budget, stored_reason=stored_reason)
            return measure_items(table, devices[0], items, keys, reference, source.describe(), settings, config,
                                 events, force=request.force, remedy=remedy, shard=shard, time_budget=time_budget,
                                 stored_reason=stored_reason)

        if request.accuracy is None or devices[0].deterministic:
            return measure(specs, request.config, listener, None, request.time_budget)

        def entries() -> dict[EntryKey, Entry]:
            device_id = table.find_device(devices[0].fingerprint())
            return {e.key: e for e in table.entries(device_id)} if device_id is not None else {}

        def widen() -> int:
            return widen_coarse_entries(table, table.find_device(devices[0].fingerprint()),
                                        [keys.entry(spec) for spec in specs])

        front = profile_front_aware(specs, keys.entry, entries, request.accuracy, measure, request.config, listener,
                                    request.time_budget, widen)
        front.summary.front = front
        return front.summary


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"compofa: {message}\n")

