"""The skeleton every measuring job shares: profile items on a device into a table store.

`profile` (subnets) and `lut build` (single layers) differ only in what they
measure and how its entries are keyed. Given the items, their keys
(`ItemKeys`), a default reference and an open device, `measure_items` does the
rest the same way for both, inside the caller's exclusive writer
(`compofa.tables.store.writing`):

- refuses a table holding measurements of the same backend from another setup
  (`check_same_device`);
- resumes: items with a finished entry are skipped, the rounds an interrupted
  run left are handed back to the profiler, and items a noisy machine left
  unstable (`NOISY`) or a time budget left unconverged (`TIME_BUDGET`) are
  measured again, first, from the rounds they have;
- reuses the reference and baseline stored for this device and setup, so every
  run of a table divides out drift against the same thing;
- commits every round, reference check and finished entry the moment it
  exists (`StoreCommitter`), and adds the device and run rows only with the
  first result (`RunRecord`), so a refused or failed run writes nothing.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Generic

from compofa.devices import Device, ItemT, Settings
from compofa.devices.base import Located, host_details
from compofa.graphs.cache import default_cache_dir
from compofa.profiler import (
    UNFINISHED,
    Estimate,
    Measurement,
    ProfileConfig,
    ProfileListener,
    Profiler,
    Progress,
    RoundRecord,
    TimeAccount,
)
from compofa.tables.store import EntryKey, LatencyTable, SetupKey, TableMismatchError


@dataclass(frozen=True)
class ItemKeys(Generic[ItemT]):
    """How a job's items are keyed in the store, and how its stored reference is found again.

    Attributes:
        entry: an item's entry key.
        setup: the setup every item is measured in (its reference and baseline are stored under it).
        named: the item a stored reference name (`str(item)`) stands for, or None if none does.
    """

    entry: Callable[[ItemT], EntryKey]
    setup: SetupKey
    named: Callable[[str], ItemT | None]


@dataclass
class MeasureSummary:
    """What a measuring run did."""

    planned: int
    already_done: int
    measured: int = 0
    discarded_rounds: int = 0
    reasons: Counter[str] = field(default_factory=Counter)
    times: TimeAccount | None = None
    reference: str | None = None  # the drift reference, for devices that are timed (not estimates)
    baseline_ms: float | None = None
    device_id: int | None = None
    fingerprint: dict[str, Any] | None = None
    remeasured: int = 0  # entries left unstable by an earlier run's noise, measured again first
    unstable: int = 0  # entries finished now with stability warnings
    front: Any = None  # a front-aware run's phases (`compofa.jobs.frontier.FrontSummary`)


#: What to do about a table of another setup, where --force may add it as a separate device.
FORCEABLE = "use another --table, or --force to add this setup as a separate device"


def check_same_device(table: LatencyTable, name: str, fingerprint: dict[str, Any], force: bool,
                      remedy: str = FORCEABLE) -> None:
    """Refuse `table` if it holds `name` measurements of another fingerprint, unless `force`; the
    message ends with `remedy`."""
    for device in table.devices():
        if device.name != name or device.fingerprint == fingerprint:
            continue
        differing = sorted(k for k in set(device.fingerprint) | set(fingerprint)
                           if device.fingerprint.get(k) != fingerprint.get(k))
        if not force:
            details = ", ".join(f"{k}: {device.fingerprint.get(k)!r} -> {fingerprint.get(k)!r}" for k in differing[:4])
            raise TableMismatchError(
                f"table {str(table.path)!r} holds {name} measurements from a different setup ({details}); {remedy}"
            )


class RunRecord:
    """The device and run rows of one measuring run, added to the table when the first result needs them."""

    def __init__(self, table: LatencyTable, name: str, fingerprint: dict[str, Any], settings: dict[str, Any],
                 source: dict[str, Any], shard: str | None, run_fingerprint: dict[str, Any] | None = None) -> None:
        """The device row is the one of `fingerprint`; the run row records `run_fingerprint` (default the same):
        a fleet files every member's entries under its first device, and each run keeps its own machine's."""
        self.table, self.name, self.fingerprint = table, name, fingerprint
        self.run_fingerprint = run_fingerprint if run_fingerprint is not None else fingerprint
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
            self._run_id = self.table.start_run(self.device_id, self.settings, self.source, self.run_fingerprint,
                                                self.shard)
        return self._run_id

    def finish(self) -> None:
        if self._run_id is not None:
            self.table.finish_run(self._run_id)
            self.table.checkpoint(force=True)


#: The reason an entry is stored with, given the one the profiler finished it with.
StoredReason = Callable[[str], str]


class StoreCommitter(ProfileListener[ItemT]):
    """Writes every event of the profiler to the table, then passes it on."""

    def __init__(self, table: LatencyTable, run: RunRecord, keys: ItemKeys[ItemT], reference: ItemT,
                 summary: MeasureSummary, forward: ProfileListener[ItemT],
                 stored_reason: StoredReason | None = None) -> None:
        """`stored_reason` gives the reason stored for the one the profiler gives (a front-aware profile's
        passes store their own, `compofa.jobs.frontier`); None stores the profiler's."""
        self.table, self.run, self.keys, self.reference = table, run, keys, reference
        self.summary, self.forward, self.stored_reason = summary, forward, stored_reason
        self._finished: dict[ItemT, tuple[str, bool]] = {}  # reason and stability each item was finished with

    def on_baseline(self, median_ms: float) -> None:
        self.table.set_reference(self.run.device_id, self.keys.setup, str(self.reference), median_ms)
        self.forward.on_baseline(median_ms)

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        self.table.add_reference_check(self.run.run_id, at, median_ms, samples_ms)
        self.forward.on_reference(at, median_ms, samples_ms)

    def on_round(self, item: ItemT, record: RoundRecord) -> None:
        self.table.add_round(self.run.run_id, self.run.device_id, self.keys.entry(item), record)
        self.table.checkpoint()  # now and then, so the table file alone holds nearly everything
        self.summary.discarded_rounds += record.discarded
        self.forward.on_round(item, record)

    def on_done(self, item: ItemT, measurement: Measurement[ItemT], estimate: Estimate, reason: str) -> None:
        if self.stored_reason is not None:
            reason = self.stored_reason(reason)
        self.table.put_entry(self.run.device_id, self.keys.entry(item), measurement, estimate, reason)
        before = self._finished.get(item)
        if before is None:
            self.summary.measured += 1
        else:  # judged again at the end of the run (the machine's noise): counted once, as it ended
            self.summary.reasons[before[0]] -= 1
            if self.summary.reasons[before[0]] <= 0:
                del self.summary.reasons[before[0]]
            self.summary.unstable -= not before[1]
        self._finished[item] = (reason, estimate.stable)
        self.summary.reasons[reason] += 1
        self.summary.unstable += not estimate.stable
        self.forward.on_done(item, measurement, estimate, reason)

    def on_progress(self, progress: Progress[ItemT]) -> None:
        self.forward.on_progress(progress)

    def on_staged(self, done: int, total: int) -> None:
        self.forward.on_staged(done, total)


def add_times(total: TimeAccount | None, more: TimeAccount) -> TimeAccount:
    if total is None:
        return more
    return TimeAccount(**{f.name: getattr(total, f.name) + getattr(more, f.name) for f in dataclasses.fields(more)})


def split_by_entry(items: Sequence[ItemT], key: Callable[[ItemT], EntryKey], table: LatencyTable,
                   device_id: int | None) -> tuple[list[ItemT], list[ItemT]]:
    """(noisy, missing): the items whose entry a noisy machine left unstable, and those with no entry."""
    entries = {e.key: e for e in table.entries(device_id)} if device_id is not None else {}
    noisy = [item for item in items if key(item) in entries and entries[key(item)].reason in UNFINISHED]
    missing = [item for item in items if key(item) not in entries]
    return noisy, missing


def with_cache_dir(settings: Settings, cache_dir: str | os.PathLike[str] | None) -> Settings:
    """`settings` with the folder a backend keeps its build caches in (TensorRT engines): the source's
    export cache folder, so built engines sit beside the graphs they come from."""
    if settings.cache_dir is not None:
        return settings
    return dataclasses.replace(settings, cache_dir=Path(cache_dir) if cache_dir else default_cache_dir())


def run_settings(settings: Settings, config: ProfileConfig, device: Device[Any, Any] | None = None) -> dict[str, Any]:
    """What a run row records of how it measured, with the machine that measured: this one, or for a device on
    another machine (one with ``details()``) that machine's details and how it was reached."""
    details = device.details() if isinstance(device, Located) else host_details()
    return {"batch": settings.batch, "precision": settings.precision, "threads": settings.threads,
            "options": dict(settings.options), "config": vars(config), **details}


def stored_reference(table: LatencyTable, device_id: int | None, keys: ItemKeys[ItemT],
                     default_reference: Callable[[], ItemT]) -> tuple[ItemT, float | None]:
    """The reference and baseline this table keeps for the device and setup, so every run of a table divides
    out drift against the same thing; with none stored (or one no item stands for any more), a fresh choice
    whose baseline is still to be measured."""
    stored = table.reference(device_id, keys.setup) if device_id is not None else None
    named = keys.named(stored[0]) if stored else None
    if stored and named is not None:
        return named, stored[1]
    return default_reference(), None


def measure_items(
    table: LatencyTable,
    device: Device[ItemT, Any],
    items: Sequence[ItemT],
    keys: ItemKeys[ItemT],
    default_reference: Callable[[], ItemT],
    source: dict[str, Any],
    settings: Settings,
    config: ProfileConfig,
    listener: ProfileListener[ItemT],
    *,
    force: bool = False,
    remedy: str = FORCEABLE,
    shard: str | None = None,
    time_budget: float | None = None,
    stored_reason: StoredReason | None = None,
) -> MeasureSummary:
    """Measure the `items` `table` lacks on `device`, committing as it goes (see the module docstring).

    Args:
        table: the store, open under the caller's exclusive writer.
        device: the open device (the caller closes it).
        items: everything planned; those already finished are skipped.
        keys: the store's keys of the items and of their setup.
        default_reference: the drift reference when the table has none stored for this setup.
        source: the description of where the networks come from, recorded with the run.
        settings, config: how the device and the profiler measure, recorded with the run.
        listener: told of every event after it is committed.
        force: whether another setup of the same backend may be added as a separate device.
        remedy: what a refusal of another setup tells the user to do.
        shard: the part of a larger plan this run is, recorded with the run.
        time_budget: seconds for the measuring (see `Profiler.run`); the run then ends with every item it
            measured in the table, those unconverged as `TIME_BUDGET`.
        stored_reason: the reason stored for the one the profiler gives (see `StoreCommitter`).
    """
    fingerprint = device.fingerprint()
    check_same_device(table, device.name, fingerprint, force, remedy)
    run = RunRecord(table, device.name, fingerprint, run_settings(settings, config, device), source, shard)
    device_id = run.known_device
    noisy, missing = split_by_entry(items, keys.entry, table, device_id)
    todo = noisy + missing
    summary = MeasureSummary(planned=len(items), already_done=len(items) - len(todo), device_id=device_id,
                             fingerprint=fingerprint, remeasured=len(noisy))
    if not todo:
        return summary
    prior = {item: table.rounds(device_id, keys.entry(item)) for item in todo} if device_id is not None else {}
    reference, baseline = stored_reference(table, device_id, keys, default_reference)
    history = table.reference_noises(device_id, keys.setup) if device_id is not None else []
    committer = StoreCommitter(table, run, keys, reference, summary, listener, stored_reason)
    profiler = Profiler(device, config)
    deadline = time.perf_counter() + time_budget if time_budget is not None else None
    for group in (noisy, missing):  # unstable entries first, with one reference and baseline throughout
        if group:
            left = deadline - time.perf_counter() if deadline is not None else None
            if left is not None and left <= 0:
                break
            result = profiler.run(group, reference, baseline, prior, committer, time_budget=left,
                                  noise_history=history)
            baseline = result.baseline_ms
            summary.times = add_times(summary.times, result.times)
    run.finish()
    summary.baseline_ms = baseline
    summary.device_id = run.known_device
    summary.reference = str(reference) if not device.deterministic else None
    return summary
