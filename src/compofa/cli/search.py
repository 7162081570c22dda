"""`compofa search`: the best subnet per latency target, on one latency source or on several at once."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from typing import TYPE_CHECKING, Any

import click

from compofa.cli.common import OptionError, echo_rows, parse_options, parse_resolutions, plural, print_json
from compofa.cli.options import (
    ACCURACY,
    BACKEND_OPTIONS,
    BATCH,
    DEVICE_ID,
    FILE_FORMAT,
    JSON,
    OUTPUT_FILE,
    PRECISION,
    QUIET,
    RESOLUTION,
    SEED,
    SPACE,
    THREADS,
    WIDTH,
    calibration_options,
    option,
    rounds,
    rounds_options,
)
from compofa.cli.outputs import check_output, output_format, to_stdout, written_output
from compofa.cli.precision import quantization
from compofa.cli.search_sources import SourcePlan, plan_sources
from compofa.search.run import STRATEGIES
from compofa.space import get_space

if TYPE_CHECKING:
    from compofa.profiler import ProfileListener
    from compofa.search.results import SearchReport
    from compofa.space import DesignSpace


@click.command("search")
@option(SPACE)
@click.option("--latency", "latency_texts", required=True, multiple=True,
              help="table:PATH, device:NAME (measure on demand into --table), lut:note10, lut:PATH or flops; "
                   "repeat it to find the subnet that meets a target on every source at once.")
@click.option("--target", "targets", required=True, multiple=True,
              help="Comma-separated latency targets (ms; MMACs for flops), or percentages of the way from the "
                   "fastest subnet to the slowest (25%,50%), each on the median or on p90:/p99: (p90:20). With N "
                   "sources, N values, one per source in --latency order (repeat --target for more searches).")
@click.option("--max-memory", help="Peak memory limit of the inference (B, KB, MB, GB, KiB, MiB, GiB: 300MB), on "
              "every source, or one per source (300MB,-).")
@click.option("--max-energy", help="Energy per inference limit (uJ, mJ, J: 5mJ), on every source, or one per source.")
@option(ACCURACY)
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
              help="auto: exhaustive when the space is enumerable.")
@option(RESOLUTION, shown_default="those every table holds; else 224 when measuring, the search set otherwise")
@option(WIDTH)
@click.option("--upper-bound", is_flag=True, help="Require the latency's upper 95% bound, not its median (or p90, "
              "p99), to fit.")
@click.option("--bucket", help="Compare latencies in buckets of this width (ms), or 'auto' (the table's noise floor).")
@click.option("--table", default="latency.db", show_default=True, type=click.Path(),
              help="Where device:NAME memoizes its measurements.")
@option(DEVICE_ID, multiple=True)
@click.option("--complete", is_flag=True,
              help="table:PATH: refuse a table that lacks some configuration (default: search what is measured).")
@option(BATCH, shown_default="each table's, or the device's")
@option(THREADS)
@option(BACKEND_OPTIONS, multiple=True)
@rounds_options
@option(PRECISION, default=None, shown_default="each table's own where it holds one, else fp32")
@calibration_options
@click.option("--generations", type=click.IntRange(min=1), help="Evolution: generations (default 500).")
@click.option("--population", type=click.IntRange(min=4), help="Evolution: population (default 100).")
@option(SEED)
@option(OUTPUT_FILE)
@option(FILE_FORMAT)
@option(JSON)
@option(QUIET)
def search_command(
    space: str, latency_texts: tuple[str, ...], targets: tuple[str, ...], max_memory: str | None,
    max_energy: str | None, accuracy_text: str, strategy: str, resolution: str | None, width: float | None,
    upper_bound: bool, bucket: str | None, table: str, device_id: tuple[int, ...], complete: bool, batch: int | None,
    threads: int, options: tuple[str, ...], round_seconds: float, target_ci: float, min_rounds: int, max_rounds: int,
    precision: str | None, calibration: str | None, calibration_images: int, generations: int | None,
    population: int | None, seed: int, output: str | None, file_format: str | None, as_json: bool,
    quiet: bool,
) -> None:
    """Find the most accurate subnet of SPACE under each latency target.

    With several --latency sources, --device-id is given once for every table
    or device source, or once per such source in --latency order; device:NAME
    sources are measured as `compofa profile` measures (--min-rounds,
    --max-rounds, --round-seconds, --target-ci). -o writes the results as JSON
    (the whole report) or CSV (one row per target); -o - prints them instead
    of the text table.
    """
    from compofa.devices import Settings
    from compofa.search.constraints import parse_limits
    from compofa.search.latency import latency_source
    from compofa.search.metrics import ENERGY, MEMORY
    from compofa.search.predictor import accuracy_source
    from compofa.search.results import write_results
    from compofa.search.run import SearchRequest, search
    from compofa.search.targets import FitRule, parse_joint_targets

    design = get_space(space)
    width = width if width is not None else design.family.default_width
    # every input is read and checked before anything is measured or written
    joint = parse_joint_targets(targets, len(latency_texts))
    limits = parse_limits(max_memory, MEMORY, len(latency_texts)) + parse_limits(max_energy, ENERGY, len(latency_texts))
    plans = plan_sources(latency_texts, space, width, device_id)
    resolutions = parse_resolutions(resolution, design) or _default_resolutions(plans, design)
    for value in resolutions:
        design.check_resolution(value)
    chosen = precision or next((plan.precision for plan in plans if plan.precision), "fp32")
    quantized = quantization(chosen, calibration, calibration_images, resolutions) \
        if any(plan.kind == "device" for plan in plans) or calibration else None
    accuracy = accuracy_source(accuracy_text, space, width, precision=chosen)
    rule = FitRule(upper_bound, _bucket_width(bucket, latency_texts, table))
    evolution = None
    if generations or population:
        from compofa.search.evolution import EvolutionConfig

        defaults = EvolutionConfig()
        evolution = EvolutionConfig(population=population or defaults.population,
                                    generations=generations or defaults.generations)
    request = SearchRequest(space, width, joint, tuple(resolutions), strategy, rule, seed, evolution, limits)
    if output is not None:  # before any measuring
        check_output(output)
        results_format = output_format(output, file_format, ("json", "csv"))
    elif file_format is not None:
        raise OptionError("--format is the format of the -o file: give -o FILE (or -o - for standard output)",
                          option="file_format")
    measuring: AbstractContextManager[ProfileListener[Any] | None] = nullcontext(None)
    config = None
    devices = [plan.rest for plan in plans if plan.kind == "device"]
    if devices:  # the profiler and its progress bar load only when measuring
        from compofa.cli.profile import progress_bar
        from compofa.profiler import ProfileConfig
        from compofa.remote.names import display_name

        min_rounds, max_rounds = rounds(min_rounds, max_rounds)
        config = ProfileConfig(round_seconds=round_seconds, target_ci=target_ci, min_rounds=min_rounds,
                               max_rounds=max_rounds)
        measuring = progress_bar(f"measuring {space} on {', '.join(map(display_name, devices))}", table,
                                 quiet or as_json or to_stdout(output), transient=True)
    with measuring as listener:
        sources = [latency_source(plan.text, space, width,
                                  Settings(batch or plan.default_batch, precision or plan.precision or "fp32", threads,
                                           parse_options(options), quantization=quantized),
                                  table, plan.device_id, config, listener, complete=complete) for plan in plans]
        report = search(request, accuracy, sources)
    if report.missing:
        click.echo(_partial_note(report, [plan.rest for plan in plans if plan.kind == "table"]), err=True)
    if output is not None:
        with written_output(output, f".{results_format}") as path:
            write_results(report, path)
        if to_stdout(output):
            return
    if as_json:
        print_json(report.to_dict())
        return
    _print(report, output)


def _default_resolutions(plans: list[SourcePlan], design: DesignSpace) -> tuple[int, ...]:
    """The resolutions every table holds; without a table, 224 when measuring (minutes per resolution), else the
    space's search resolutions (estimates are free)."""
    held = [set(plan.resolutions) for plan in plans if plan.kind == "table"]
    if held:
        shared = set.intersection(*held)
        if not shared:
            tables = [plan for plan in plans if plan.kind == "table"]
            raise OptionError(
                "the tables share no resolution: " + "; ".join(
                    f"{plan.text} holds {', '.join(map(str, plan.resolutions))} px" for plan in tables)
                + "; profile one resolution on every device", option="resolution")
        return tuple(sorted(shared))
    if any(plan.kind == "device" for plan in plans):
        return (224,)
    return tuple(design.search_resolutions)


def _bucket_width(bucket: str | None, latency_texts: tuple[str, ...], table: str) -> float | None:
    if bucket is None:
        return None
    if bucket != "auto":
        try:
            return float(bucket)
        except ValueError:
            raise OptionError(f"--bucket must be a width in ms or 'auto', got {bucket!r}") from None
    if len(latency_texts) > 1:
        raise OptionError("--bucket auto takes one table's noise floor; with several sources give a width in ms")
    kind, _, rest = latency_texts[0].partition(":")
    if kind not in ("table", "device"):
        raise OptionError("--bucket auto needs measured latency (table:PATH or device:NAME) to know the noise")
    from compofa.tables import LatencyTable
    from compofa.tables.analysis import noise_floor

    with LatencyTable.open(rest if kind == "table" else table) as store:
        entries = store.entries()
    if not entries:
        raise OptionError("--bucket auto: the table has no entries yet to estimate its noise floor")
    return noise_floor(entries).recommended_bucket_ms


def _partial_note(report: SearchReport, paths: list[str]) -> str:
    """One line: how much of the space the searched tables lack, and how to measure it or refuse it."""
    from compofa.search.latency import count_text as _count

    measured = report.measured or 0
    lacking = report.missing_by_resolution
    resolutions = ",".join(map(str, lacking))
    per_resolution = (": " + ", ".join(f"{_count(n)} at {r} px" for r, n in lacking.items())) if len(lacking) > 1 \
        else f" at {resolutions} px"
    path = paths[0] if len(paths) == 1 else "TABLE"
    if get_space(report.space).enumerable:
        remedy = f"`compofa profile --space {report.space} --resolution {resolutions} --table {path}`"
        remedy += " measures them" if len(paths) == 1 else " on each table's device measures them"
    else:
        remedy = f"--latency device:NAME --table {path} measures the subnets a search visits"
    held = f"table:{path} holds" if len(paths) == 1 else f"the tables {', '.join(paths)} share"
    return (f"note: {held} {measured} of the {_count(measured + report.missing)} "
            f"{report.space} configurations searched, and the search answered over those "
            f"({_count(report.missing)} missing{per_resolution}); {remedy}, and --complete refuses a partial table")


def _latency_cell(low: float, median: float, high: float) -> str:
    return f"{median:.3f}" + ("" if low == high else f" [{low:.3f}, {high:.3f}]")


#: Reading fields shown as columns when a target or limit asked for their quantity.
_SHOWN = {"p90": ("p90_ms", "p90"), "p99": ("p99_ms", "p99"), "memory": ("peak_memory_mb", "memory MB"),
          "energy": ("energy_mj", "energy mJ")}


def _print(report: SearchReport, output: str | None) -> None:
    click.echo(f"{report.space} w{report.width:g}: {report.candidates} candidates scored by {report.accuracy_source}, "
               f"latency from {report.latency_source} ({report.fit}), {report.seconds:.2f} s")
    sources = report.latency_sources
    asked = {limit["metric"] for limit in report.limits} | {
        reading.target.partition(":")[0] for result in report.results for reading in result.readings
        if ":" in reading.target}
    shown = [_SHOWN[metric] for metric in _SHOWN if metric in asked]
    header: list[str] = ["target" if len(sources) > 1 else f"target {report.latency_unit}", "subnet", "accuracy"]
    for index, name in enumerate(sources):
        suffix = f" ({name})" if len(sources) > 1 else ""
        header += [f"latency {report.latency_units[index]}{suffix}", *(f"{label}{suffix}" for _, label in shown)]
    rows = []
    for r in report.results:
        target = r.requested if len(sources) > 1 else f"{r.target:.4g}" + (
            f" ({r.requested})" if r.requested.endswith("%") or ":" in r.requested else "")
        row = [target, str(r.spec), f"{r.accuracy:.4f}"]
        for reading in r.readings:
            row.append(_latency_cell(reading.latency_ci_low_ms, reading.latency_ms, reading.latency_ci_high_ms))
            row += [f"{reading.values[field]:.4g}" if field in reading.values else "-" for field, _ in shown]
        rows.append([*row, f"{r.seconds:.3f}"])
    echo_rows(rows, [*header, "seconds"])
    stats = report.latency_stats
    if any(name.startswith(("table:", "device:")) for name in sources):
        measured = (f"{plural(stats['misses'], 'subnet')} measured in {stats['measure_seconds']:.0f} s and memoized"
                    if stats.get("misses") else "nothing measured")
        click.echo(f"latency cache: {stats['hits']} hits, {measured}")
    if report.pareto_objectives:
        click.echo(f"Pareto front: {plural(len(report.pareto), 'subnet')} no other beats on "
                   f"{', '.join(report.pareto_objectives)}")
    if output:
        click.echo(f"wrote {output}")
