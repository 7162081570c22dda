"""`compofa report`: figures and numbers of latency tables, as one HTML page."""

from __future__ import annotations

from pathlib import Path

import click

from compofa.cli.options import ACCURACY, DEVICE_ID, OUTPUT_FOLDER, QUIET, SEED, SPACE, WIDTH, option
from compofa.report.plots import DPI, IMAGE_FORMATS


@click.command("report")
@click.option("--table", "tables", multiple=True, type=click.Path(),
              help="A measured latency table (repeatable; every device in it is a source).")
@click.option("--lut", "luts", multiple=True,
              help="A layer lookup table, note10 or a folder (repeatable; default note10 for MobileNetV3 spaces).")
@click.option("--no-lut", is_flag=True, help="No lookup table: only the measured tables.")
@option(DEVICE_ID, multiple=True, shown_default="every device of every table")
@option(SPACE)
@option(WIDTH)
@option(ACCURACY)
@click.option("--bucket", "bucket_ms", type=click.FloatRange(min=0, min_open=True),
              help="Latency bucket width (ms) of the design-space views (default: CompOFA's latency range over "
                   "twelve, rounded up to a round width: 5 ms on the Note10).")
@click.option("--per-bucket", default=50, show_default=True, type=click.IntRange(min=2),
              help="Random subnets per bucket and space.")
@click.option("--generations", default=500, show_default=True, type=click.IntRange(min=1),
              help="Evolution generations per target of OFA's front on a LUT.")
@option(SEED)
@option(OUTPUT_FOLDER, default="report")
@click.option("--image-format", default="png", show_default=True, type=click.Choice(IMAGE_FORMATS),
              help="File format of the figures (either is also inlined in the page).")
@click.option("--dpi", default=DPI, show_default=True, type=click.IntRange(min=1),
              help="Resolution of PNG figures (dots per inch).")
@option(QUIET)
def report_command(
    tables: tuple[str, ...], luts: tuple[str, ...], no_lut: bool, device_id: tuple[int, ...], space: str,
    width: float | None,
    accuracy_text: str, bucket_ms: float | None, per_bucket: int, generations: int, seed: int, output: str,
    quiet: bool, image_format: str, dpi: int,
) -> None:
    """Pareto fronts, the paper's design-space views, cross-device rank agreement and noise, as OUTPUT/index.html."""
    from rich.console import Console

    from compofa.report import PAGE_NAME, ReportRequest, write_report
    from compofa.space import get_space

    if no_lut and luts:
        raise click.UsageError("--no-lut and --lut contradict each other")
    if not luts and not no_lut:
        luts = ("note10",) if get_space(space).family.name == "mobilenetv3" else ()
    request = ReportRequest(tuple(Path(t) for t in tables), Path(output), luts, space, width, accuracy_text, bucket_ms,
                            per_bucket, generations, seed, image_format=image_format, dpi=dpi,
                            device_ids=device_id)
    console = Console(stderr=True)
    if quiet:
        result = write_report(request)
    else:
        with console.status("report") as status:
            result = write_report(request, lambda step: status.update(f"report: {step}"))
    for note in result.notes:
        click.echo(f"note: {note}", err=True)
    click.echo(f"wrote {Path(output) / PAGE_NAME} and {len(result.files) - 1} other files in {result.seconds:.1f} s")
