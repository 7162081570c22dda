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
import dataclasses
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Sequence

from compofa.devices import Settings, open_device
from compofa.devices.base import host_details
from compofa.errors import SpecError
from compofa.profiler import (
    NOISY,
    Estimate,
    Measurement,
    ProfileConfig,
    Profiler,
    ProfileListener,
    Progress,
    RoundRecord,
    TimeAccount,
)
from compofa.space import DesignSpace, SubnetSpec, get_space, parse_spec
from compofa.supernet.source import SubnetSource
from compofa.tables.store import EntryKey, LatencyTable, TableMismatchError, writing


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
            raise SpecError(f"--shard must look like K/N (e.g. 1/4), got {text!r}") from None
        if not 1 <= index <= count:
            raise SpecError(f"--shard {text}: need 1 <= K <= N")
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


@dataclass
class JobSummary:
    planned: int
    already_done: int
    measured: int = 0
    discarded_rounds: int = 0
    reasons: Counter = field(default_factory=Counter)  # type: ignore[type-arg]
    times: TimeAccount | None = None
    reference: str | None = None
    baseline_ms: float | None = None
    device_id: int | None = None
    fingerprint: dict | None = None  # type: ignore[type-arg]
    remeasured: int = 0  # entries left unstable by an earlier run's noise, measured again first
    unstable: int = 0  # entries finished now with stability warnings


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


def check_same_device(table: LatencyTable, name: str, fingerprint: dict, force: bool,  # type: ignore[type-arg]
                      forceable: bool = True) -> None:
    for device in table.devices():
        if device.name != name or device.fingerprint == fingerprint:
            continue
        differing = sorted(k for k in set(device.fingerprint) | set(fingerprint)
                           if device.fingerprint.get(k) != fingerprint.get(k))
        if not force:
            details = ", ".join(f"{k}: {device.fingerprint.get(k)!r} -> {fingerprint.get(k)!r}" for k in differing[:4])
            remedy = ("use another --table, or --force to add this setup as a separate device" if forceable
                      else "give another --table for this setup")
            raise TableMismatchError(
                f"table {str(table.path)!r} holds {name} measurements from a different setup ({details}); {remedy}"
            )


class RunRecord:
    """The device and run rows of one profiling run, added to the table when the first result needs them."""

    def __init__(self, table: LatencyTable, name: str, fingerprint: dict[str, Any], settings: dict[str, Any],
                 source: dict[str, Any], shard: str | None) -> None:
        self.table, self.name, self.fingerprint = table, name, fingerprint
        self.settings, self.source, self.shard = settings, source, shard
        self._device_id = table.find_device(fingerprint)
        self._run_id: int | None = None

    @property
    def known_device(self) -> int | None:
        """The device's id if the table already has it (nothing is added)."""
        return self._device_id

    @property
    def device_id(self) -> int:
        if self._device_id is None:
            self._device_id = self.table.device_id(self.name, self.fingerprint)
        return self._device_id

    @property
    def run_id(self) -> int:
        if self._run_id is None:
            self._run_id = self.table.start_run(self.device_id, self.settings, self.source, self.fingerprint, self.shard)
        return self._run_id

    def finish(self) -> None:
        if self._run_id is not None:
            self.table.finish_run(self._run_id)
            self.table.checkpoint(force=True)


class StoreCommitter(ProfileListener):
    """Writes every event of the profiler to the table, then passes it on."""

    def __init__(self, table: LatencyTable, run: RunRecord, keys: dict[SubnetSpec, EntryKey],
                 reference_key: EntryKey, summary: JobSummary, forward: ProfileListener) -> None:
        self.table, self.run, self.keys = table, run, keys
        self.reference_key, self.summary, self.forward = reference_key, summary, forward

    def on_baseline(self, median_ms: float) -> None:
        self.table.set_reference(self.run.device_id, self.reference_key, median_ms)
        self.forward.on_baseline(median_ms)

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        self.table.add_reference_check(self.run.run_id, at, median_ms, samples_ms)
        self.forward.on_reference(at, median_ms, samples_ms)

    def on_round(self, spec: SubnetSpec, record: RoundRecord) -> None:
        self.table.add_round(self.run.run_id, self.run.device_id, self.keys[spec], record)
        self.table.checkpoint()  # now and then, so the table file alone holds nearly everything
        self.summary.discarded_rounds += record.discarded
        self.forward.on_round(spec, record)

    def on_done(self, spec: SubnetSpec, measurement: Measurement, estimate: Estimate, reason: str) -> None:
        self.table.put_entry(self.run.device_id, self.keys[spec], measurement, estimate, reason)
        self.summary.measured += 1
        self.summary.reasons[reason] += 1
        self.summary.unstable += not estimate.stable
        self.forward.on_done(spec, measurement, estimate, reason)

    def on_progress(self, progress: Progress) -> None:
        self.forward.on_progress(progress)

    def on_staged(self, done: int, total: int) -> None:
        self.forward.on_staged(done, total)


def add_times(total: TimeAccount | None, more: TimeAccount) -> TimeAccount:
    if total is None:
        return more
    return TimeAccount(**{f.name: getattr(total, f.name) + getattr(more, f.name) for f in dataclasses.fields(more)})


def measure_in_order(profiler: Profiler, groups: Sequence[Sequence[Any]], reference: Any, baseline: float | None,
                     prior: dict[Any, list[RoundRecord]], committer: ProfileListener
                     ) -> tuple[TimeAccount | None, float | None]:
    """Profile each non-empty group in turn, with one reference and baseline; the time spent, and the baseline."""
    times = None
    for group in groups:
        if group:
            result = profiler.run(group, reference, baseline, prior, committer)
            baseline = result.baseline_ms
            times = add_times(times, result.times)
    return times, baseline


def split_by_entry(items: Sequence[Any], key: Callable[[Any], EntryKey], table: LatencyTable,
                   device_id: int | None) -> tuple[list[Any], list[Any]]:
    """(noisy, missing): the items whose entry a noisy machine left unstable, and those with no entry."""
    entries = {e.key: e for e in table.entries(device_id)} if device_id is not None else {}
    noisy = [item for item in items if key(item) in entries and entries[key(item)].reason == NOISY]
    missing = [item for item in items if key(item) not in entries]
    return noisy, missing


def profile_space(request: ProfileRequest, listener: ProfileListener | None = None) -> JobSummary:
    """Profile the request's subnets into its table; rerunning resumes."""
    listener = listener or ProfileListener()
    specs = planned_specs(request)
    width = float(request.source.width)  # type: ignore[arg-type]
    settings = request.settings

    def key(spec: SubnetSpec) -> EntryKey:
        return EntryKey(spec.space, width, str(spec), spec.resolution, settings.batch, settings.precision)

    LatencyTable.check_path(request.table, writable=True, create=True)
    device = open_device(request.device, request.source, request.settings)
    with contextlib.closing(device), writing(request.table) as table:
        fingerprint = device.fingerprint()
        check_same_device(table, device.name, fingerprint, request.force, request.forceable)
        run_settings = {"batch": settings.batch, "precision": settings.precision, "threads": settings.threads,
                        "options": dict(settings.options), "config": vars(request.config), **host_details()}
        run = RunRecord(table, device.name, fingerprint, run_settings, request.source.describe(),
                        str(request.shard) if request.shard else None)
        device_id = run.known_device
        noisy, missing = split_by_entry(specs, key, table, device_id)
        todo = noisy + missing
        summary = JobSummary(planned=len(specs), already_done=len(specs) - len(todo), device_id=device_id,
                             fingerprint=fingerprint, remeasured=len(noisy))
        if not todo:
            return summary
        keys = {spec: key(spec) for spec in todo}
        prior = {spec: table.rounds(device_id, keys[spec]) for spec in todo} if device_id is not None else {}
        space = get_space(request.source.space)
        stored = table.reference(device_id, key(reference_spec(space, request.resolutions))) \
            if device_id is not None else None
        reference = parse_spec(stored[0]) if stored else reference_spec(space, request.resolutions)
        baseline = stored[1] if stored else None
        committer = StoreCommitter(table, run, keys, key(reference), summary, listener)
        profiler = Profiler(device, request.config)
        summary.times, summary.baseline_ms = measure_in_order(profiler, (noisy, missing), reference, baseline, prior,
                                                              committer)
        run.finish()
        summary.device_id = run.known_device
        summary.reference = str(reference) if not device.deterministic else None
        return summary
