"""`compofa lut`: layer lookup tables, and how far to trust them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from compofa.cli.common import (
    CompofaGroup,
    OptionError,
    echo_rows,
    parse_options,
    parse_resolutions,
    plural,
    print_json,
)
from compofa.cli.options import (
    BACKEND_OPTIONS,
    BATCH,
    DEVICE,
    DEVICE_ID,
    JSON,
    OUTPUT_FOLDER,
    PRECISION,
    QUIET,
    RESOLUTION,
    SPACE,
    THREADS,
    WIDTH,
    option,
    rounds,
    rounds_options,
)
from compofa.cli.profile import echo_stability, progress_bar
from compofa.jobs.lutcheck import DEFAULT_CALIBRATION_SUBNETS

if TYPE_CHECKING:
    from compofa.jobs.lutcheck import Agreement, LutValidation


@click.group("lut", cls=CompofaGroup)
def lut_group() -> None:
    """Layer lookup tables (OFA's {R}_lookup_table.yaml format)."""


@lut_group.command("build")
@option(DEVICE)
@option(SPACE)
@option(WIDTH)
@option(RESOLUTION, default="160,192,224")
@option(BATCH, shown_default="the device's: 1 on CPU, 64 on GPU")
@option(THREADS)
@option(PRECISION)
@option(BACKEND_OPTIONS, multiple=True)
@rounds_options
@option(OUTPUT_FOLDER, required=True)
@option(QUIET)
def build_command(
    device: str | None, space: str, width: float | None, resolution: str, batch: int | None, threads: int,
    precision: str, options: tuple[str, ...], target_ci: float, round_seconds: float, max_rounds: int,
    min_rounds: int, output: str, quiet: bool,
) -> None:
    """Measure every distinct layer of SPACE on DEVICE into OUTPUT/{R}_lookup_table.yaml; rerunning resumes."""
    from compofa.devices import Settings
    from compofa.jobs.lutbuild import STORE_NAME, LutBuildRequest, build_lut, layer_config
    from compofa.profiler import NOISY
    from compofa.remote.names import default_batch, display_name
    from compofa.space import get_space

    if precision == "int8":  # a layer's int8 time depends on the quantize/dequantize pairs around it in a subnet
        raise OptionError("a lookup table times single layers in fp32 or fp16; int8 models are whole subnets "
                          "calibrated on images: profile them with `compofa profile --precision int8 --calibration "
                          "DIR`", option="precision")
    device = device or "onnxruntime"
    min_rounds, max_rounds = rounds(min_rounds, max_rounds)
    design = get_space(space)
    width = width if width is not None else design.family.default_width
    design.family.check_width(width)
    resolutions = parse_resolutions(resolution, design) or (224,)
    settings = Settings(batch or default_batch(device), precision, threads, parse_options(options))
    # both bounds at once: layer_config alone would check a --max-rounds below the default --min-rounds
    config = dataclasses.replace(layer_config(target_ci, round_seconds=round_seconds), min_rounds=min_rounds,
                                 max_rounds=max_rounds)
    folder = Path(output)
    request = LutBuildRequest(folder, device, space, width, tuple(resolutions), settings, config)
    with progress_bar(f"{display_name(device)} layers of {space}", folder / STORE_NAME, quiet) as listener:
        summary = build_lut(request, listener)
    click.echo(f"measured {plural(summary.measured, 'layer')} ({summary.already_done} "
               f"{'was' if summary.already_done == 1 else 'were'} already measured, {summary.layers} in all); "
               f"wrote {', '.join(str(p) for p in summary.paths)}")
    if summary.times is not None:
        click.echo(f"time: {summary.times.total:.0f} s")
    echo_stability(summary.remeasured, summary.unstable, summary.reasons[NOISY])


@lut_group.command("validate")
@click.option("--lut", "lut_source", required=True, help="note10 (shipped) or a folder of {R}_lookup_table.yaml.")
@click.option("--table", required=True, type=click.Path(dir_okay=False), help="Measured latency table.")
@option(SPACE, default=None, shown_default="all the table holds, which must share one family")
@option(DEVICE_ID)
@click.option("--calibrate", default=DEFAULT_CALIBRATION_SUBNETS, show_default=True, type=click.IntRange(min=0),
              help="Subnets to fit the calibration a*sum+b on (0: none); the rest check it.")
@click.option("--worst", default=10, show_default=True, type=click.IntRange(min=0), help="Worst offenders to list.")
@option(JSON)
def validate_command(
    lut_source: str, table: str, space: str | None, device_id: int | None, calibrate: int, worst: int, as_json: bool
) -> None:
    """Compare a LUT's layer sums with the whole-network latencies measured in TABLE."""
    from compofa.jobs.lutcheck import validate_lut
    from compofa.lut import LookupTable
    from compofa.tables import SUBNET, LatencyTable

    lut = LookupTable.open(lut_source)
    with LatencyTable.open(table) as store:  # whole networks only: a LUT's own layers.db has layer rows
        entries = store.entries(device_id=device_id, space=space, kind=SUBNET)
    result = validate_lut(lut, entries, calibrate, worst)
    if as_json:
        print_json(dataclasses.asdict(result))
        return
    _print(result, table)


def _figures(name: str, figures: Agreement) -> tuple[str, ...]:
    return (name, str(figures.count), f"{figures.rmspe:.2%}", f"{figures.within_5:.1%}", f"{figures.within_10:.1%}",
            f"{figures.median_error:+.2%}", f"{figures.spread:.2%}", f"{figures.kendall_tau:.4f}")


def _print(result: LutValidation, table: str) -> None:
    click.echo(f"LUT {result.lut} against {plural(result.entries, 'subnet')} measured on {result.device} in {table}")
    rows = [_figures("layer sum", result.raw)]
    if result.calibrated is not None and result.calibration is not None:
        fit = result.calibration
        rows.append(_figures(f"calibrated ({fit.scale:.4f} x sum {fit.offset_ms:+.3f} ms)", result.calibrated))
    echo_rows(rows, ("estimate", "subnets", "RMSPE", "within 5%", "within 10%", "median error", "spread",
                     "Kendall tau"))
    if result.calibration is not None:
        fitted = plural(len(result.calibration.fitted_on), "subnet")
        click.echo(f"calibration fitted on {fitted} spread over the range; its figures are on the others")
    if result.worst:
        click.echo("worst offenders (layer sum):")
        echo_rows(
            [(o.spec, f"{o.estimated_ms:.3f}", f"{o.measured_ms:.3f}", f"{o.error:+.2%}",
              "" if o.calibrated_error is None else f"{o.calibrated_error:+.2%}") for o in result.worst],
            ("subnet", "sum ms", "measured ms", "error", "calibrated"),
        )
