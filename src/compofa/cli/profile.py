"""`compofa profile`: measure every subnet of a space on a device into a table."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import click

from compofa.cli.common import EXIT_INTERRUPTED, parse_int_list, parse_options
from compofa.profiler import ProfileListener
from compofa.space import DEFAULT_SPACE

if TYPE_CHECKING:
    from rich.progress import Progress, TaskID

    from compofa.profiler import Progress as ProfileProgress


class _Bar(ProfileListener):
    """Drives a rich progress bar: done/total, ETA, current subnet and its noise.

    The bar appears with the first sign of work, so a command refused before any
    (a bad option, an unavailable device) prints its one error line and nothing else.
    """

    def __init__(self, progress: Progress, description: str) -> None:
        self.progress, self.description = progress, description
        self.task: TaskID | None = None

    def _task(self) -> TaskID:
        if self.task is None:
            self.progress.start()
            self.task = self.progress.add_task(self.description, total=None, eta="--", noise="", subnet="starting")
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
            completed=progress.done,
            total=progress.total,
            subnet=f"{progress.item} (round {progress.round_index + 1})",
            noise=f"CI +-{progress.relative_ci:.1%}",
            eta=eta,
        )


@contextmanager
def progress_bar(
    description: str, table: str | Path, quiet: bool = False, transient: bool = False
) -> Iterator[ProfileListener]:
    """A progress bar on stderr for profiling into `table`; Ctrl-C inside says how to resume and exits."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    console = Console(stderr=True)
    columns = (
        TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("ETA {task.fields[eta]}"),
        TextColumn("{task.fields[noise]}"), TimeElapsedColumn(), TextColumn("{task.fields[subnet]}"),
    )
    bar = _Bar(Progress(*columns, console=console, disable=quiet, transient=transient), description)
    try:
        yield bar
    except KeyboardInterrupt:
        bar.stop()
        click.echo(f"interrupted: every finished round is saved in {table}; rerun the same command to resume",
                   err=True)
        sys.exit(EXIT_INTERRUPTED)
    finally:
        bar.stop()


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


def check_rounds(min_rounds: int, max_rounds: int) -> None:
    from compofa.profiler import ProfileConfigError

    if min_rounds > max_rounds:
        raise ProfileConfigError(f"--min-rounds {min_rounds} is more than --max-rounds {max_rounds}; "
                                 "raise --max-rounds too")


def _duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    return f"{minutes}:{secs:02d}" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}"


@click.command("profile")
@click.option("--space", default=DEFAULT_SPACE, show_default=True, help="Design space to profile (must be enumerable).")
@click.option("--device", "devices", multiple=True,
              help="Backend (see `compofa devices`), e.g. lut:note10, ssh://HOST/onnxruntime or adb://SERIAL/litert "
              "[default: onnxruntime]. Repeat it for a fleet of devices of one kind sharing the job.")
@click.option("--devices", "devices_file", type=click.Path(dir_okay=False),
              help="A file naming the fleet's devices, one per line (# starts a comment).")
@click.option("--resolution", default="224", show_default=True, help="Comma-separated input resolutions.")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size (default: the device's, 1 on CPU, 64 on GPU).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Intra-op threads (CPU).")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]))
@click.option("-O", "--option", "options", multiple=True, help="Backend option NAME=VALUE (repeatable).")
@click.option("--table", default="latency.db", show_default=True, type=click.Path(), help="Table file to fill.")
@click.option("--width", type=float, help="Width multiplier (default: the family's).")
@click.option("--checkpoint", type=click.Path(), help="Supernet weights (latency does not depend on them).")
@click.option("--shard", help="Profile only part K of N (K/N) of the subnets; merge the tables afterwards. "
              "auto: the part a Slurm job array or (auto/N) a Kubernetes Indexed Job gives this task.")
@click.option("--limit", type=click.IntRange(min=1), help="Profile only the first N subnets (a quick try).")
@click.option("--target-ci", default=0.01, show_default=True, type=float, help="Relative CI half-width to reach.")
@click.option("--min-rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="Fresh sessions per subnet, at least.")
@click.option("--max-rounds", default=8, show_default=True, type=click.IntRange(min=1), help="... and at most.")
@click.option("--round-seconds", default=0.4, show_default=True, type=float,
              help="Timed inference per subnet and round.")
@click.option("--force", is_flag=True, help="Add a different setup of the same device to an existing table.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def profile_command(
    space: str, devices: tuple[str, ...], devices_file: str | None, resolution: str, batch: int | None,
    threads: int, precision: str, options: tuple[str, ...], table: str, width: float | None, checkpoint: str | None,
    shard: str | None, limit: int | None, target_ci: float, min_rounds: int, max_rounds: int, round_seconds: float,
    force: bool, quiet: bool,
) -> None:
    """Measure every subnet of SPACE on DEVICE into TABLE; rerunning resumes.

    Subnets are timed in interleaved rounds, each in a fresh session, with a
    reference subnet timed between the blocks of every round to correct the
    machine's drift, until each median's 95% confidence interval is within
    --target-ci. Ctrl-C keeps every finished round; the same command continues.
    """
    from compofa.devices import Settings
    from compofa.jobs.profile import ProfileRequest, Shard, profile_space
    from compofa.profiler import NOISY, ProfileConfig
    from compofa.remote.names import default_batch, display_name
    from compofa.sources.subnet import SubnetSource
    from compofa.space import get_space

    names = fleet_names(devices, devices_file)
    device = names[0]
    design = get_space(space)
    resolutions = parse_int_list(resolution, "--resolution") or (224,)
    for value in resolutions:
        design.check_resolution(value)
    settings = Settings(batch or default_batch(device), precision, threads, parse_options(options))
    check_rounds(min_rounds, max_rounds)
    config = ProfileConfig(target_ci=target_ci, min_rounds=min_rounds, max_rounds=max_rounds,
                           round_seconds=round_seconds)
    request = ProfileRequest(
        table=Path(table),
        device=device,
        source=SubnetSource(space, width, checkpoint),
        resolutions=resolutions,
        settings=settings,
        config=config,
        shard=Shard.parse(shard) if shard else None,
        limit=limit,
        force=force,
        fleet=names[1:],
    )
    label = display_name(device) + (f" and {len(names) - 1} more" if len(names) > 1 else "")
    with progress_bar(f"{label} {space}", table, quiet) as listener:
        summary = profile_space(request, listener)
    click.echo(f"profiled {summary.measured} subnets into {table} ({summary.already_done} were already there, "
               f"{summary.planned} planned)")
    if summary.times is not None and summary.measured and summary.reference is not None:
        times = summary.times
        click.echo(
            f"time: {times.total:.0f} s in all, {times.timed + times.reference:.0f} s timed inference "
            f"(x{times.overhead_ratio:.2f}), {times.prepare:.0f} s preparing, {times.warmup:.0f} s warming up; "
            f"{times.samples / max(summary.measured, 1):.0f} samples per subnet"
        )
        reasons = ", ".join(f"{count} {reason}" for reason, count in summary.reasons.most_common())
        click.echo(f"stopped: {reasons}; {summary.discarded_rounds} rounds discarded (the machine's speed "
                   "changed during them) and measured again")
    echo_stability(summary.remeasured, summary.unstable, summary.reasons[NOISY])
    from compofa.cli.table import print_summary  # the store loads only once there is a table to show

    print_summary(Path(table))


def echo_stability(remeasured: int, unstable: int, noisy: int) -> None:
    """What a run says about entries it could not measure cleanly."""
    if remeasured:
        click.echo(f"measured again first: {remeasured} entries an earlier run left unstable")
    if unstable:
        why = (f"{noisy} because the machine's speed kept changing during their rounds (their intervals are wider; "
               "rerun on a quieter machine to measure them again)" if noisy else "")
        other = unstable - noisy
        rest = f"{other} with a wide spread of samples (see `compofa table show`)" if other else ""
        click.echo(f"unstable: {unstable} entries, " + "; ".join(part for part in (why, rest) if part))
