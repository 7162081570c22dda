"""One measuring job on several devices of one kind at once (a fleet), into one table.

Work is handed out as it is asked for: each device takes a few configurations
at a time (`chunk_size`), measures them to the end with its own profiler and
asks again, so a faster device takes more, and one that drops out (its
connection lost for good) leaves what it had not finished to the others,
with every round it did finish kept. Only this thread touches the table: the
devices' threads hand each event over and wait until it is committed, so an
interruption loses at most the round in flight on each device, as for one
device.

Every entry goes under the first device's row and is put on its reference
baseline: each member times the same reference between its blocks, so its
drift factor carries its speed relative to the first device, and its samples
are divided by it, as `compofa table merge` rescales a shard timed on a
slightly faster or slower machine. Each member's run row keeps its own
fingerprint and connection, so every entry's rounds say where they were timed.
"""

from __future__ import annotations

import dataclasses
import queue
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any, Generic

from compofa.devices import Device, ItemT, Settings
from compofa.errors import CompofaError
from compofa.jobs.measure import (
    FORCEABLE,
    ItemKeys,
    MeasureSummary,
    RunRecord,
    StoreCommitter,
    StoredReason,
    add_times,
    check_same_device,
    run_settings,
    split_by_entry,
    stored_reference,
)
from compofa.profiler import ProfileConfig, ProfileListener, Profiler, Progress, TimeAccount
from compofa.tables.store import LatencyTable


class FleetError(CompofaError):
    """Devices that cannot measure one job together, or a fleet that lost every device."""


def chunk_size(remaining: int, members: int) -> int:
    """How many configurations a device takes at a time: enough that its profiler interleaves several
    (rounds of one configuration spread over time), few enough that the last ones are shared out evenly."""
    return max(1, min(8, remaining // (2 * members)))


class _Reply:
    """Where the table's thread answers one request of a device's thread."""

    def __init__(self) -> None:
        self._done = threading.Event()
        self.value: Any = None

    def give(self, value: Any = None) -> None:
        self.value = value
        self._done.set()

    def wait(self) -> Any:
        self._done.wait()
        return self.value


class _Member(threading.Thread, Generic[ItemT]):
    """One device's thread: asks for work, measures it, hands every event to the table's thread."""

    def __init__(self, index: int, device: Device[ItemT, Any], config: ProfileConfig, reference: ItemT,
                 baseline_ms: float, inbox: queue.Queue[tuple[int, str, tuple[Any, ...], _Reply]],
                 deadline: float | None = None) -> None:
        super().__init__(name=f"fleet-{index}", daemon=True)  # a Ctrl-C on the table's thread ends the run
        self.index, self.device, self.config = index, device, config
        self.reference, self.baseline_ms, self.inbox = reference, baseline_ms, inbox
        self.deadline = deadline

    def ask(self, kind: str, *args: Any) -> Any:
        reply = _Reply()
        self.inbox.put((self.index, kind, args, reply))
        return reply.wait()

    def run(self) -> None:
        try:
            profiler = Profiler(self.device, self.config)
            while work := self.ask("want"):
                items, prior = work
                left = self.deadline - time.perf_counter() if self.deadline is not None else None
                result = profiler.run(items, self.reference, self.baseline_ms, prior, _Relay(self), time_budget=left)
                self.ask("finished", result.times)
        except BaseException as error:  # handed to the table's thread, which decides what it means
            self.ask("failed", error)
        else:
            self.ask("done")


class _Relay(ProfileListener[ItemT]):
    """A member's profiler events, each committed by the table's thread before the member goes on."""

    def __init__(self, member: _Member[ItemT]) -> None:
        self.member = member

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        self.member.ask("event", "on_reference", at, median_ms, samples_ms)

    def on_round(self, item: ItemT, record: Any) -> None:
        self.member.ask("event", "on_round", item, record)

    def on_done(self, item: ItemT, measurement: Any, estimate: Any, reason: str) -> None:
        self.member.ask("event", "on_done", item, measurement, estimate, reason)

    def on_progress(self, progress: Progress[ItemT]) -> None:
        self.member.ask("progress", progress)


def measure_on_fleet(
    table: LatencyTable,
    devices: Sequence[Device[ItemT, Any]],
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
    notify: Callable[[str], None] | None = None,
    time_budget: float | None = None,
    stored_reason: StoredReason | None = None,
) -> MeasureSummary:
    """Measure the `items` `table` lacks on all `devices` at once (see the module docstring).

    Arguments as `compofa.jobs.measure.measure_items`; `notify` hears of a device that dropped out while
    others went on (its error line). With `time_budget`, no work is handed out once it is spent, and each
    device finishes the configurations in its hands as `TIME_BUDGET`.
    """
    first = devices[0]
    names = sorted({device.name for device in devices})
    if len(names) > 1:
        raise FleetError(f"the devices of a fleet run one backend, not {' and '.join(names)}; profile each "
                         "backend into its own --table", option="device")
    if first.deterministic:
        raise FleetError(f"{first.name} gives estimates, not measurements: there is nothing to share out "
                         "between devices; name it once", option="device")
    fingerprint = first.fingerprint()
    check_same_device(table, first.name, fingerprint, force, remedy)
    runs = [RunRecord(table, first.name, fingerprint, run_settings(settings, config, device), source, shard,
                      run_fingerprint=device.fingerprint()) for device in devices]
    device_id = runs[0].known_device
    noisy, missing = split_by_entry(items, keys.entry, table, device_id)
    todo = deque(noisy + missing)  # unstable entries first, as on one device
    summary = MeasureSummary(planned=len(items), already_done=len(items) - len(todo), device_id=device_id,
                             fingerprint=fingerprint, remeasured=len(noisy))
    if not todo:
        return summary
    reference, baseline = stored_reference(table, device_id, keys, default_reference)
    committers = [StoreCommitter(table, run, keys, reference, summary, listener, stored_reason) for run in runs]
    begin = time.perf_counter()
    if baseline is None:  # measured once, on the first device: every member's entries are put on it
        baseline = Profiler(first, config).run([], reference, None, {}, committers[0]).baseline_ms
    assert baseline is not None
    inbox: queue.Queue[tuple[int, str, tuple[Any, ...], _Reply]] = queue.Queue()
    deadline = begin + time_budget if time_budget is not None else None
    members = [_Member(i, device, config, reference, baseline, inbox, deadline) for i, device in enumerate(devices)]
    for member in members:
        member.start()
    total = len(todo)
    in_hand: dict[int, list[ItemT]] = {}
    left: dict[int, int] = {}  # rounds each device still plans for the work in its hands
    committed_rounds = [0]
    idle: list[tuple[int, _Reply]] = []  # members that asked while others still held work that may come back
    failures: list[tuple[int, BaseException]] = []
    running = len(members)

    def hand_out() -> None:
        if deadline is not None and time.perf_counter() >= deadline:
            todo.clear()  # what is left waits for the next run
        while idle and todo:
            index, reply = idle.pop(0)
            taken = [todo.popleft() for _ in range(min(chunk_size(len(todo), len(members)), len(todo)))]
            in_hand[index] = taken
            reply.give((taken, {item: table.rounds(runs[0].device_id, keys.entry(item)) for item in taken}))
        if not todo and not any(in_hand.values()):
            for _, reply in idle:
                reply.give(None)
            idle.clear()

    while running:
        index, kind, args, reply = inbox.get()
        if kind == "want":
            idle.append((index, reply))
            hand_out()
        elif kind == "event":
            getattr(committers[index], args[0])(*args[1:])
            committed_rounds[0] += args[0] == "on_round"
            reply.give()
        elif kind == "progress":
            progress = args[0]
            left[index] = progress.rounds_planned - progress.rounds_done
            remaining = sum(left.values()) + len(todo) * config.min_rounds
            elapsed = time.perf_counter() - begin
            # rounds finish concurrently on every device: the fleet's own rate is what the rest will take
            eta = elapsed / committed_rounds[0] * remaining if committed_rounds[0] else None
            listener.on_progress(dataclasses.replace(
                progress, done=summary.measured, total=total, eta_seconds=eta, rounds_done=committed_rounds[0],
                rounds_planned=committed_rounds[0] + remaining))
            reply.give()
        elif kind == "finished":
            in_hand.pop(index, None)
            left.pop(index, None)
            summary.times = add_times(summary.times, args[0])
            reply.give()
        else:  # "done" or "failed": the member's thread ends
            running -= 1
            if kind == "failed":
                if isinstance(args[0], KeyboardInterrupt):
                    raise KeyboardInterrupt
                failures.append((index, args[0]))
                left.pop(index, None)
                finished = table.finished_keys(runs[0].device_id)
                todo.extendleft(item for item in reversed(in_hand.pop(index, [])) if keys.entry(item) not in finished)
                if running and notify is not None:
                    notify(f"device {index + 1} of {len(devices)} dropped out ({args[0]}); the others take its work")
            reply.give()
            hand_out()
    for run in runs:
        run.finish()
    if todo:  # every device dropped out with work left: the last one's reason, which says how to resume
        raise failures[-1][1]
    summary.times = dataclasses.replace(summary.times or TimeAccount(), total=time.perf_counter() - begin)
    summary.baseline_ms = baseline
    summary.device_id = runs[0].known_device
    summary.reference = str(reference)
    return summary
