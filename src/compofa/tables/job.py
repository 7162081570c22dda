"""Profile a design space into a table: resumable, shardable, one writer at a time.

The profiler measures; this job decides what to measure (everything of the
space at the asked resolutions, minus what the table already has, restricted
to one shard), hands the profiler the rounds a previous interrupted run left,
and commits every round and every finished entry the moment it exists.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Sequence

from compofa.devices import Settings, open_device
from compofa.devices.base import host_details
from compofa.errors import SpecError
from compofa.profiler import Estimate, Measurement, ProfileConfig, Profiler, ProfileListener, Progress, RoundRecord, TimeAccount
from compofa.space import DesignSpace, SubnetSpec, get_space, parse_spec
from compofa.supernet.source import SubnetSource
from compofa.tables.store import EntryKey, LatencyTable, TableBusyError, TableMismatchError


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


@contextlib.contextmanager
def exclusive(table: Path) -> Iterator[None]:
    """Hold the table's writer lock, or fail at once if another process has it."""
    lock_path = table.with_name(table.name + ".lock")
    descriptor = os.open(lock_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            owner = os.read(descriptor, 64).decode(errors="replace").strip() or "another process"
            raise TableBusyError(
                f"table {str(table)!r} is being profiled by {owner}; wait for it to finish or use another --table"
            ) from None
        os.ftruncate(descriptor, 0)
        os.write(descriptor, f"process {os.getpid()}".encode())
        try:
            yield
        finally:
            with contextlib.suppress(OSError):
                os.unlink(lock_path)
    finally:
        os.close(descriptor)


def check_same_device(table: LatencyTable, name: str, fingerprint: dict, force: bool) -> None:  # type: ignore[type-arg]
    for device in table.devices():
        if device.name != name or device.fingerprint == fingerprint:
            continue
        differing = sorted(k for k in set(device.fingerprint) | set(fingerprint)
                           if device.fingerprint.get(k) != fingerprint.get(k))
        if not force:
            details = ", ".join(f"{k}: {device.fingerprint.get(k)!r} -> {fingerprint.get(k)!r}" for k in differing[:4])
            raise TableMismatchError(
                f"table {str(table.path)!r} holds {name} measurements from a different setup ({details}); "
                "use another --table, or --force to add this setup as a separate device"
            )


class StoreCommitter(ProfileListener):
    """Writes every event of the profiler to the table, then passes it on."""

    def __init__(self, table: LatencyTable, run_id: int, device_id: int, keys: dict[SubnetSpec, EntryKey],
                 reference_key: EntryKey, summary: JobSummary, forward: ProfileListener) -> None:
        self.table, self.run_id, self.device_id, self.keys = table, run_id, device_id, keys
        self.reference_key, self.summary, self.forward = reference_key, summary, forward

    def on_baseline(self, median_ms: float) -> None:
        self.table.set_reference(self.device_id, self.reference_key, median_ms)
        self.forward.on_baseline(median_ms)

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        self.table.add_reference_check(self.run_id, at, median_ms, samples_ms)
        self.forward.on_reference(at, median_ms, samples_ms)

    def on_round(self, spec: SubnetSpec, record: RoundRecord) -> None:
        self.table.add_round(self.run_id, self.device_id, self.keys[spec], record)
        self.summary.discarded_rounds += record.discarded
        self.forward.on_round(spec, record)

    def on_done(self, spec: SubnetSpec, measurement: Measurement, estimate: Estimate, reason: str) -> None:
        self.table.put_entry(self.device_id, self.keys[spec], measurement, estimate, reason)
        self.summary.measured += 1
        self.summary.reasons[reason] += 1
        self.forward.on_done(spec, measurement, estimate, reason)

    def on_progress(self, progress: Progress) -> None:
        self.forward.on_progress(progress)

    def on_staged(self, done: int, total: int) -> None:
        self.forward.on_staged(done, total)


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
    with contextlib.closing(device), exclusive(request.table), \
            LatencyTable.open(request.table, writable=True, create=True) as table:
        fingerprint = device.fingerprint()
        check_same_device(table, device.name, fingerprint, request.force)
        device_id = table.device_id(device.name, fingerprint)
        done = table.finished_keys(device_id)
        todo = [spec for spec in specs if key(spec) not in done]
        summary = JobSummary(planned=len(specs), already_done=len(specs) - len(todo), device_id=device_id,
                             fingerprint=fingerprint)
        if not todo:
            return summary
        keys = {spec: key(spec) for spec in todo}
        prior = {spec: table.rounds(device_id, keys[spec]) for spec in todo}
        space = get_space(request.source.space)
        stored = table.reference(device_id, key(reference_spec(space, request.resolutions)))
        reference = parse_spec(stored[0]) if stored else reference_spec(space, request.resolutions)
        baseline = stored[1] if stored else None
        run_settings = {"batch": settings.batch, "precision": settings.precision, "threads": settings.threads,
                        "options": dict(settings.options), "config": vars(request.config), **host_details()}
        run_id = table.start_run(device_id, run_settings, request.source.describe(), fingerprint,
                                 str(request.shard) if request.shard else None)
        committer = StoreCommitter(table, run_id, device_id, keys, key(reference), summary, listener)
        result = Profiler(device, request.config).run(todo, reference, baseline, prior, committer)
        table.finish_run(run_id)
        summary.times = result.times
        summary.reference = str(reference) if not device.deterministic else None
        summary.baseline_ms = result.baseline_ms
        return summary
