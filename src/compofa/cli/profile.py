"""`compofa profile`: measure every subnet of a space on a device into a table."""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from compofa.cli.common import EXIT_INTERRUPTED, parse_duration, parse_options, parse_resolutions, plural
from compofa.cli.options import (
    ACCURACY,
    BACKEND_OPTIONS,
    BATCH,
    CHECKPOINT,
    DEVICE,
    PRECISION,
    QUIET,
    RESOLUTION,
    SPACE,
    THREADS,
    WIDTH,
    calibration_options,
    option,
    rounds,
    rounds_options,
)
from compofa.cli.precision import quantization
from compofa.profiler import ProfileListener

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    import numpy as np
    from rich.progress import Progress, TaskID

    from compofa.profiler import Progress as ProfileProgress
    from compofa.space import SubnetSpec


def _round_text(progress: ProfileProgress) -> str:
    """What the latest round was: the item, its kept rounds, and the discarded ones (never counted as kept)."""
    discarded = f", {progress.discarded} discarded" if progress.discarded else ""
    set_aside = f", {progress.set_aside} disturbed set aside" if progress.set_aside else ""
    return f"{progress.item} (round {progress.kept}{discarded}{set_aside})"


def _noise_text(progress: ProfileProgress) -> str:
    """The machine's noise in the latest round (the reference's spread), flagged when it disturbed the round."""
    if progress.noise is None:
        return ""
    flag = " disturbed" if progress.disturbed else ""
    return f", noise {progress.noise:.1%}{flag}"


class _Bar(ProfileListener):
    """Drives a rich progress bar on a terminal: rounds done of rounds planned, items done, ETA, noise.

    The bar appears with the first sign of work, so a command refused before any
    (a bad option, an unavailable device) prints its one error line and nothing else.
    """

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress, self.description = progress, description
        self.task: TaskID | None = None

    def _task(self) -> TaskID:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=None, eta="--", noise="", items="",
                                               subnet="starting")
        return self.task

    def stop(self) -> None:
        if self.task is not None:
            self.progress.stop()

    def on_staged(self, done: int, total: int) -> None:
        self.progress.update(self._task(), subnet=f"preparing every subnet once before timing: {done}/{total}")

    def on_progress(self, progress: ProfileProgress) -> None:
        eta = "--" if progress.eta_seconds is None else _duration(progress.eta_seconds)
        self.progress.update(
            self._task(),
            completed=progress.rounds_done,
            total=progress.rounds_planned,
            items=f"{progress.done}/{progress.total} done",
            subnet=f"{progress.phase}: {_round_text(progress)}",
            noise=f"CI +-{progress.relative_ci:.1%}{_noise_text(progress)}",
            eta=eta,
        )


class _Lines(ProfileListener):
    """Progress as plain lines, at most one every `every` seconds, where stderr is no terminal (a log file, CI):
    a bar redrawn there leaves one truncated line."""

    def __init__(self, description: str, every: float = 5.0) -> None:
        self.description, self.every = description, every
        self._last = -math.inf
        self._unsaid: str | None = None  # the latest line held back by the interval, said when the run ends
        self._rounds_said = False

    def _say(self, text: str, force: bool = False) -> None:
        now = time.monotonic()
        if force or now - self._last >= self.every:
            self._last = now
            self._unsaid = None
            click.echo(f"{self.description}: {text}", err=True)
        else:
            self._unsaid = text

    def stop(self) -> None:
        if self._unsaid is not None:
            self._say(self._unsaid, force=True)

    def on_staged(self, done: int, total: int) -> None:
        self._say(f"preparing every subnet once before timing: {done}/{total}", force=done == total)

    def on_progress(self, progress: ProfileProgress) -> None:
        eta = "--" if progress.eta_seconds is None else _duration(progress.eta_seconds)
        first = not self._rounds_said
        self._rounds_said = True
        self._say(f"{progress.phase}, {progress.rounds_done}/{progress.rounds_planned} rounds, "
                  f"{progress.done}/{progress.total} done, ETA {eta}; last {_round_text(progress)}, "
                  f"CI +-{progress.relative_ci:.1%}{_noise_text(progress)}",
                  force=first or progress.done == progress.total)


@contextmanager
def progress_bar(
    description: str, table: str | Path, quiet: bool = False, transient: bool = False
) -> Iterator[ProfileListener]:
    """Progress on stderr for profiling into `table` (a bar on a terminal, plain lines elsewhere); Ctrl-C inside
    says how to resume and exits."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    bar: _Bar | _Lines
    if quiet or console.is_terminal:
        columns = (
            TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("rounds"),
            TextColumn("{task.fields[items]}"), TextColumn("ETA {task.fields[eta]}"),
            TextColumn("{task.fields[noise]}"), TimeElapsedColumn(), TextColumn("{task.fields[subnet]}"),
        )
        bar = _Bar(Progress(*columns, console=console, disable=quiet, transient=transient), description)
    else:
        bar = _Lines(description)
    try:
        yield bar
    except KeyboardInterrupt:
        bar.stop()
        click.echo(f"interrupted: every finished round is saved in {table}; rerun the same command to resume",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        bar.stop()


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


def front_scorer(text: str, space: str, width: float | None, precision: str = "fp32"
                 ) -> Callable[[Sequence[SubnetSpec]], np.ndarray]:
    """The accuracy of subnets at `precision`, from the --accuracy source, that a front-aware profile's front is
    drawn with."""
    from compofa.cli.common import OptionError
    from compofa.search.arrays import ArchBatch
    from compofa.search.predictor import AccuracyError, accuracy_source

    try:
        source = accuracy_source(text, space, width, precision=precision)
    except AccuracyError as error:
        raise OptionError(f"{error}; a front-aware profile needs the accuracy of every subnet: give --accuracy "
                          "table:PATH with measured rows, or profile --uniform", option="accuracy_text") from None

    def score(specs: Sequence[SubnetSpec]) -> np.ndarray:
        return source.accuracy(ArchBatch.from_specs(specs)) if specs else np.zeros(0)

    return score


def fleet_names(devices: tuple[str, ...], devices_file: str | None) -> tuple[str, ...]:
    """The devices named by --device (repeated) and --devices FILE, in order, each once; onnxruntime if none."""
    from compofa.cli.common import OptionError

    names = list(devices)
    if devices_file is not None:
        try:
            text = Path(devices_file).read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as error:
            raise OptionError(f"cannot read the devices file {devices_file!r}: "
                              f"{getattr(error, 'strerror', None) or error}", option="devices_file") from None
        listed = [line.split("#", 1)[0].strip() for line in text.splitlines()]
        if not any(listed):
            raise OptionError(f"the devices file {devices_file!r} names no device: one per line", option="devices_file")
        names += [name for name in listed if name]
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise OptionError(f"device {repeated[0]!r} is named twice: a device measures one configuration at a time",
                          option="device")
    return tuple(names) or ("onnxruntime",)


@click.command("profile")
@option(SPACE)
@option(DEVICE, multiple=True)
@click.option("--devices", "devices_file", type=click.Path(dir_okay=False),
              help="A file naming a fleet of devices of one kind that share the job, one per line (# starts a "
                   "comment); --device may be repeated for the same.")
@option(RESOLUTION, default="224")
@option(BATCH, shown_default="the device's: 1 on CPU, 64 on GPU")
@option(THREADS)
@option(PRECISION)
@calibration_options
@option(BACKEND_OPTIONS, multiple=True)
@click.option("--table", default="latency.db", show_default=True, type=click.Path(), help="Table file to fill.")
@option(WIDTH)
@option(CHECKPOINT)
@click.option("--shard", help="Profile only part K of N (K/N) of the subnets; merge the tables afterwards. "
              "auto: the part a Slurm job array or (auto/N) a Kubernetes Indexed Job gives this task.")
@click.option("--limit", type=click.IntRange(min=1),
              help="Profile only N subnets (a quick try): a spread over every stage's depth and the latency range, "
                   "the same each run; a larger N keeps these and adds more.")
@rounds_options
@click.option("--time-budget", help="Stop beginning rounds after this long (90s, 20m, 1h30m): every subnet measured "
              "so far keeps the interval its rounds give, and the same command continues from there.")
@click.option("--front-aware/--uniform", default=None,
              help="Front-aware: every subnet coarsely (one short round), then to --target-ci only those that could "
              "be on the accuracy-latency front (--accuracy decides it); uniform: every subnet to --target-ci. "
              "Default: front-aware over several resolutions, uniform at one.")
@option(ACCURACY)
@click.option("--force", is_flag=True, help="Add a different setup of the same device to an existing table.")
@option(QUIET)
def profile_command(
    space: str, device: tuple[str, ...], devices_file: str | None, resolution: str, batch: int | None,
    threads: int, precision: str, calibration: str | None, calibration_images: int, options: tuple[str, ...],
    table: str, width: float | None, checkpoint: str | None,
    shard: str | None, limit: int | None, target_ci: float, min_rounds: int, max_rounds: int, round_seconds: float,
    time_budget: str | None, front_aware: bool | None, accuracy_text: str, force: bool, quiet: bool,
) -> None:
    """Measure every subnet of SPACE on DEVICE into TABLE; rerunning resumes.

    SPACE must be small enough to enumerate (see `compofa spaces`).

    Subnets are timed in interleaved rounds, each in a fresh session, with a
    reference subnet timed between the blocks of every round to correct the
    machine's drift, until each median's 95% confidence interval is within
    --target-ci. Ctrl-C keeps every finished round; the same command continues.
    Repeat --device (or list them in --devices FILE) for a fleet of devices of
    one kind sharing the job, such as ssh://HOST1/onnxruntime and ssh://HOST2/...
    """
    from compofa.devices import Settings
    from compofa.jobs.profile import ProfileRequest, Shard, profile_space
    from compofa.profiler import NOISY, TIME_BUDGET, ProfileConfig
    from compofa.remote.names import default_batch, display_name
    from compofa.sources.subnet import SubnetSource
    from compofa.space import get_space

    names = fleet_names(device, devices_file)
    timed = names[0]
    design = get_space(space)
    resolutions = parse_resolutions(resolution, design) or (224,)
    settings = Settings(batch or default_batch(timed), precision, threads, parse_options(options),
                        quantization=quantization(precision, calibration, calibration_images, resolutions))
    min_rounds, max_rounds = rounds(min_rounds, max_rounds)
    if front_aware is None:  # at one resolution most subnets lie near the front: a coarse pass first saves little
        front_aware = len(resolutions) > 1
    config = ProfileConfig(target_ci=target_ci, min_rounds=min_rounds, max_rounds=max_rounds,
                           round_seconds=round_seconds)
    request = ProfileRequest(
        table=Path(table),
        device=timed,
        source=SubnetSource(space, width, checkpoint),
        resolutions=resolutions,
        settings=settings,
        config=config,
        shard=Shard.parse(shard) if shard else None,
        limit=limit,
        force=force,
        fleet=names[1:],
        time_budget=parse_duration(time_budget),
        accuracy=(front_scorer(accuracy_text, space, width, precision)
                  if front_aware and not timed.startswith("lut") else None),
    )
    label = display_name(timed) + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    with progress_bar(f"{label} {space}", table, quiet) as listener:
        summary = profile_space(request, listener)
    click.echo(f"profiled {plural(summary.measured, 'subnet')} into {table} ({summary.already_done} "
               f"{'was' if summary.already_done == 1 else 'were'} already there, {summary.planned} planned)")
    if summary.times is not None and summary.measured and summary.reference is not None:
        times = summary.times
        click.echo(
            f"time: {times.total:.0f} s in all, {times.timed + times.reference:.0f} s timed inference "
            f"(x{times.overhead_ratio:.2f}), {times.prepare:.0f} s preparing, {times.warmup:.0f} s warming up; "
            f"{times.samples / max(summary.measured, 1):.0f} samples per subnet"
        )
        reasons = ", ".join(f"{count} {reason}" for reason, count in summary.reasons.most_common())
        click.echo(f"stopped: {reasons}; {plural(summary.discarded_rounds, 'round')} discarded (the machine's speed "
                   "changed during them) and measured again")
    echo_stability(summary.remeasured, summary.unstable, summary.reasons[NOISY])
    if summary.front is not None:
        front = summary.front
        click.echo(f"front-aware: {plural(front.coarse, 'subnet')} measured coarsely now, {front.refined} refined "
                   f"in {plural(front.refinements, 'pass', 'passes')}; {front.candidates} could be on the "
                   "accuracy-latency front, measured to --target-ci, the rest keep coarse or partly refined "
                   "intervals (rerun with --uniform to measure every subnet to --target-ci)")
    unbegun = summary.planned - summary.already_done - summary.measured
    if summary.reasons[TIME_BUDGET] or (time_budget is not None and unbegun):
        click.echo(f"time budget spent: {plural(summary.reasons[TIME_BUDGET], 'subnet')} kept the intervals their "
                   f"rounds gave, {unbegun} have no kept round yet; the same command continues")
    from compofa.cli.table import print_summary  # the store loads only once there is a table to show

    print_summary(Path(table))


def echo_stability(remeasured: int, unstable: int, noisy: int) -> None:
    """What a run says about entries it could not measure cleanly."""
    if remeasured:
        click.echo(f"measured again first: {plural(remeasured, 'entry')} an earlier run left unstable")
    if unstable:
        why = (f"{noisy} noise-limited: the machine was disturbed or its speed kept changing during their rounds "
               "(their intervals are wider; rerun when it is quiet to measure them again)" if noisy else "")
        other = unstable - noisy
        rest = f"{other} with a wide spread of samples (see `compofa table show`)" if other else ""
        click.echo(f"unstable: {plural(unstable, 'entry')}, " + "; ".join(part for part in (why, rest) if part))
