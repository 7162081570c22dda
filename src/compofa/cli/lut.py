"""`compofa lut`: layer lookup tables, and how far to trust them."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import TYPE_CHECKING

import click

from compofa.cli.common import CompofaGroup, OptionError, echo_rows, parse_options, parse_resolutions, print_json
from compofa.cli.precision import precision_option
from compofa.cli.profile import echo_stability, progress_bar
from compofa.jobs.lutcheck import DEFAULT_CALIBRATION_SUBNETS
from compofa.space import DEFAULT_SPACE

if TYPE_CHECKING:
    from compofa.jobs.lutcheck import Agreement, LutValidation


@click.group("lut", cls=CompofaGroup)
def lut_group() -> None:
    """Layer lookup tables (OFA's {R}_lookup_table.yaml format)."""


@lut_group.command("build")
@click.option("--device", default="onnxruntime", show_default=True, help="Backend that times the layers.")
@click.option("--space", default=DEFAULT_SPACE, show_default=True, help="Design space whose layers to measure.")
@click.option("--width", type=float, help="Width multiplier (default: the family's).")
@click.option("--resolution", default="160,192,224", show_default=True,
              help="Input resolutions: a comma-separated list of values and ranges START:STOP[:STEP] (step 4 unless "
              "given), or all (the space's search resolutions, 160..224 step 4).")
@click.option("--batch", type=click.IntRange(min=1), help="Batch size (default: the device's).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Intra-op threads (CPU).")
@precision_option()
@click.option("-O", "--option", "options", multiple=True, help="Backend option NAME=VALUE (repeatable).")
@click.option("--target-ci", default=0.01, show_default=True, type=float, help="Relative CI half-width to reach.")
@click.option("--max-rounds", default=8, show_default=True, type=click.IntRange(min=1),
              help="Rounds per layer, at most.")
@click.option("--round-seconds", default=0.2, show_default=True, type=float, help="Timed runs per layer and round.")
@click.option("-o", "--output", required=True, type=click.Path(file_okay=False), help="Folder for the tables.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
def build_command(
    device: str, space: str, width: float | None, resolution: str, batch: int | None, threads: int, precision: str,
    options: tuple[str, ...], target_ci: float, max_rounds: int, round_seconds: float, output: str, quiet: bool,
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
    design = get_space(space)
    width = width if width is not None else design.family.default_width
    design.family.check_width(width)
    resolutions = parse_resolutions(resolution, design) or (224,)
    settings = Settings(batch or default_batch(device), precision, threads, parse_options(options))
    config = layer_config(target_ci, max_rounds, round_seconds)
    folder = Path(output)
    request = LutBuildRequest(folder, device, space, width, tuple(resolutions), settings, config)
    with progress_bar(f"{display_name(device)} layers of {space}", folder / STORE_NAME, quiet) as listener:
        summary = build_lut(request, listener)
    click.echo(f"measured {summary.measured} layers ({summary.already_done} were already measured, "
               f"{summary.layers} in all); wrote {', '.join(str(p) for p in summary.paths)}")
    if summary.times is not None:
        click.echo(f"time: {summary.times.total:.0f} s")
    echo_stability(summary.remeasured, summary.unstable, summary.reasons[NOISY])


@lut_group.command("validate")
@click.option("--lut", "lut_source", required=True, help="note10 (shipped) or a folder of {R}_lookup_table.yaml.")
@click.option("--table", required=True, type=click.Path(dir_okay=False), help="Measured latency table.")
@click.option("--space", help="Only the entries of this space (default: all, which must share one family).")
@click.option("--device-id", type=int, help="Which device of a table holding several (see `compofa table show`).")
@click.option("--calibrate", default=DEFAULT_CALIBRATION_SUBNETS, show_default=True, type=click.IntRange(min=0),
              help="Subnets to fit the calibration a*sum+b on (0: none); the rest check it.")
@click.option("--worst", default=10, show_default=True, type=click.IntRange(min=0), help="Worst offenders to list.")
@click.option("--json", "as_json", is_flag=True, help="Print the figures as JSON.")
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
    click.echo(f"LUT {result.lut} against {result.entries} subnets measured on {result.device} in {table}")
    rows = [_figures("layer sum", result.raw)]
    if result.calibrated is not None and result.calibration is not None:
        fit = result.calibration
        rows.append(_figures(f"calibrated ({fit.scale:.4f} x sum {fit.offset_ms:+.3f} ms)", result.calibrated))
    echo_rows(rows, ("estimate", "subnets", "RMSPE", "within 5%", "within 10%", "median error", "spread",
                     "Kendall tau"))
    if result.calibration is not None:
        click.echo(f"calibration fitted on {len(result.calibration.fitted_on)} subnets spread over the range; "
                   "its figures are on the others")
    if result.worst:
        click.echo("worst offenders (layer sum):")
        echo_rows(
            [(o.spec, f"{o.estimated_ms:.3f}", f"{o.measured_ms:.3f}", f"{o.error:+.2%}",
              "" if o.calibrated_error is None else f"{o.calibrated_error:+.2%}") for o in result.worst],
            ("subnet", "sum ms", "measured ms", "error", "calibrated"),
        )
