"""`compofa train`: run a training schedule (the paper's, or phases from a file) on an ImageFolder dataset."""

from __future__ import annotations

import dataclasses
import os
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
from click.core import ParameterSource

from compofa.cli.common import EXIT_INTERRUPTED, OptionError, parse_resolutions, plural
from compofa.cli.options import (
    BATCH,
    CALIBRATION_IMAGES,
    CHECKPOINT,
    OUTPUT_FOLDER,
    PRECISION,
    QUIET,
    RESOLUTION,
    SEED,
    SPACE,
    TORCH_DEVICE,
    WIDTH,
    WORKERS,
    option,
)
from compofa.extras import require_torch
from compofa.space import get_space

if TYPE_CHECKING:
    from compofa.supernet.train.phases import Phase
    from compofa.supernet.train.step import StepLosses


@click.command("train")
@click.option("--schedule", default="compofa", show_default=True,
              help="compofa, ofa, compofa-ek (the paper's), or a YAML/JSON file of phases.")
@click.option("--phase", "only", help="Run this phase alone (the ones before it must have finished).")
@click.option("--data", required=True, type=click.Path(), help="Dataset folder: DATA/train/<class>/..., DATA/val/...")
@option(OUTPUT_FOLDER, required=True)
@option(WIDTH)
@option(BATCH, default=64)
@option(WORKERS)
@option(TORCH_DEVICE)
@option(SEED)
@click.option("--init", type=click.Path(), help="Checkpoint the first phase run starts from.")
@click.option("--teacher", type=click.Path(), help="Checkpoint whose full network is distilled from.")
@click.option("--epochs", type=click.IntRange(min=1), help="Cut every phase to this many epochs (a quick try).")
@option(RESOLUTION, shown_default="each phase's")
@click.option("--max-steps", type=click.IntRange(min=1), help="Steps per epoch at most (a quick try).")
@click.option("--mixed-precision/--no-mixed-precision", default=None,
              help="float16 autocast with loss scaling (default: on with a GPU).")
@option(QUIET)
def train_command(
    schedule: str, only: str | None, data: str, output: str, width: float | None, batch: int, workers: int,
    torch_device: str, seed: int, init: str | None, teacher: str | None, epochs: int | None, resolution: str | None,
    max_steps: int | None, mixed_precision: bool | None, quiet: bool,
) -> None:
    """Train the supernet phase by phase; rerunning resumes after the last finished epoch.

    OUTPUT is the run folder: one subfolder per phase, each with its
    checkpoint. --resolution replaces every phase's training resolutions.
    """
    require_torch("training")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from compofa.supernet.train.loop import TrainRequest
    from compofa.supernet.train.schedule import (
        ScheduleRequest,
        check_schedule,
        load_schedule,
        run_schedule,
        shortened,
    )

    phases = load_schedule(schedule)
    if epochs is not None:
        phases = shortened(phases, epochs)
    resolutions = parse_resolutions(resolution, get_space(phases[0].space))
    if resolutions is not None:
        for phase in phases[1:]:  # phases of one run share a family; each space must allow every resolution
            for value in resolutions:
                get_space(phase.space).check_resolution(value)
        phases = tuple(dataclasses.replace(p, resolutions=resolutions) for p in phases)
    base = TrainRequest(phases[0], Path(data), Path(output), width, None, batch, workers, seed,
                        Path(init) if init else None, Path(teacher) if teacher else None, torch_device, max_steps,
                        mixed_precision)
    request = ScheduleRequest(phases, Path(output), base, only)
    check_schedule(request)  # refused in one line before the progress bar starts
    quiet = quiet or os.environ.get("RANK", "0") != "0"  # under torchrun, the first process speaks for all
    console = Console(stderr=True)
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[loss]}"),
               TimeElapsedColumn())
    with Progress(*columns, console=console, disable=quiet, transient=True) as progress:
        task = progress.add_task("", total=None, loss="")
        current = ""

        def on_phase(phase: Phase, index: int) -> None:
            nonlocal current
            current = f"{phase.name} ({index + 1}/{len(phases)}), epoch {{}}/{phase.epochs}"

        def on_epoch(epoch: int, steps: int) -> None:  # one bar per epoch, over its steps
            progress.update(task, description=current.format(epoch + 1), completed=0, total=steps, loss="")

        def on_step(epoch: int, step: int, losses: StepLosses) -> None:
            progress.update(task, completed=step + 1, loss=f"loss {losses.loss:.3f}, top-1 {losses.top1:.1%}")

        try:
            results = run_schedule(request, on_phase, on_step, on_epoch)
        except KeyboardInterrupt:
            progress.stop()
            click.echo(f"interrupted: every finished epoch is saved under {output}; rerun the same command to resume",
                       err=True)
            sys.exit(EXIT_INTERRUPTED)
    if os.environ.get("RANK", "0") != "0":
        return
    for result in results:
        last = result.log[-1] if result.log else None
        summary = (f"loss {last['loss']:.3f}, top-1 {last['top1']:.1%}, {last['images_per_s']:.1f} images/s"
                   if last else "nothing to do")
        click.echo(f"{result.checkpoint}: {result.epochs_done} epochs ({summary})")


@click.command("eval")
@option(CHECKPOINT, required=True)
@option(SPACE)
@click.option("--data", required=True, type=click.Path(), help="Dataset folder (DATA/train for BatchNorm, DATA/val).")
@option(RESOLUTION, default="224")
@click.option("--sample", type=click.IntRange(min=1), help="Evaluate this many random subnets (default: all).")
@click.option("--table", default="accuracy.db", show_default=True, type=click.Path(),
              help="Table store the accuracy rows go into (a latency table works too).")
@click.option("--bn-images", default=2000, show_default=True, type=click.IntRange(min=1),
              help="Training images BatchNorm statistics are re-estimated on.")
@option(BATCH, default=100)
@option(WORKERS)
@option(TORCH_DEVICE)
@option(SEED)
@option(PRECISION)
@option(CALIBRATION_IMAGES, old_spellings=("--int8-images",))
@option(QUIET)
def eval_command(
    checkpoint: str, space: str, data: str, resolution: str, sample: int | None, table: str,
    bn_images: int, batch: int, workers: int, torch_device: str, seed: int, precision: str,
    calibration_images: int, quiet: bool,
) -> None:
    """Recalibrate BatchNorm and measure top-1/top-5 of every subnet (or a sample) into TABLE.

    --precision fp32 evaluates the PyTorch network; with --precision int8 each subnet is quantized (as
    `profile --precision int8` times it), calibrated on --calibration-images of DATA/train and evaluated
    with ONNX Runtime; its rows sit beside the fp32 rows, keyed by precision.
    """
    require_torch("evaluating subnets")
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    from compofa.jobs.evaluate import EvalRequest, evaluate_subnets, int8_calibration, specs_to_evaluate
    from compofa.supernet.train.data import check_dataset
    from compofa.tables import LatencyTable

    resolutions = parse_resolutions(resolution, get_space(space)) or (224,)
    _check_int8_images(precision)
    check_dataset(data)
    LatencyTable.check_path(table, writable=True, create=True)
    specs = specs_to_evaluate(space, resolutions, sample, seed)
    request = EvalRequest(Path(checkpoint), space, Path(data), specs, Path(table), bn_images, batch,
                          workers, torch_device, seed, precision, calibration_images)
    int8_calibration(request)  # refused before the progress bar starts
    columns = (TextColumn("evaluating"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[last]}"),
               TimeElapsedColumn())
    # under torchrun the first process speaks for all (it alone writes the table)
    follower = int(os.environ.get("RANK", "0")) != 0
    with Progress(*columns, console=Console(stderr=True), disable=quiet or follower, transient=True) as progress:
        task = progress.add_task("", total=None, last="")

        def on_done(result: Any, done: int, total: int) -> None:
            progress.update(task, completed=done, total=total, last=f"{result.spec}: top-1 {result.top1:.1%}")

        try:
            results = evaluate_subnets(request, on_done)
        except KeyboardInterrupt:
            progress.stop()
            click.echo(f"interrupted: every finished subnet is saved in {table}; rerun to continue", err=True)
            sys.exit(EXIT_INTERRUPTED)
    if follower:
        return
    skipped = len(specs) - len(results)
    if results:
        best = max(results, key=lambda r: r.top1)
        at = f" at {precision}" if precision != "fp32" else ""
        click.echo(f"evaluated {plural(len(results), 'subnet')}{at} into {table} (best: {best.spec}, top-1 "
                   f"{best.top1:.2%}, top-5 {best.top5:.2%})" + (f"; {skipped} already there" if skipped else ""))
    else:
        every = "the 1 subnet" if len(specs) == 1 else f"all {len(specs)} subnets"
        click.echo(f"{every} already evaluated" + (f" at {precision}" if precision != "fp32" else "") + f" in {table}")


def _check_int8_images(precision: str) -> None:
    """`eval --calibration-images` once counted BatchNorm's images (now --bn-images): given at another precision
    than int8 it does nothing, and is refused rather than silently changing what an old command measures."""
    context = click.get_current_context()
    if precision != "int8" and context.get_parameter_source("calibration_images") is ParameterSource.COMMANDLINE:
        raise OptionError(f"--calibration-images counts the images int8 models are calibrated on; at precision "
                          f"{precision} it does nothing (BatchNorm's images are --bn-images): drop it, or give "
                          "--precision int8", option="calibration_images")


@click.command("digits")
@option(OUTPUT_FOLDER, required=True)
@click.option("--size", default=32, show_default=True, type=click.IntRange(min=8), help="Image side in pixels.")
def digits_command(output: str, size: int) -> None:
    """Write scikit-learn's handwritten digits (1797 real scans, no download) as an ImageFolder dataset.

    OUTPUT gets train/<class>/ and val/<class>/ folders of PNG images.
    """
    require_torch("the digits dataset (for training)")
    from compofa.supernet.train.data import write_digits

    info = write_digits(output, size)
    click.echo(f"wrote {info.train_images} training and {info.val_images} validation images of "
               f"{len(info.classes)} classes to {output}")
