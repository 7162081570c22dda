"""`compofa search`: the best subnet per latency target."""

from __future__ import annotations

from contextlib import AbstractContextManager, nullcontext
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from compofa.cli.common import OptionError, echo_rows, parse_options, parse_resolutions, print_json
from compofa.search.run import STRATEGIES
from compofa.space import DEFAULT_SPACE, get_space

if TYPE_CHECKING:
    from compofa.profiler import ProfileListener
    from compofa.search.results import SearchReport
    from compofa.tables import Entry


def _table_setup(path: str, space: str) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """The resolutions and batch sizes a table holds entries of `space` at."""
    from compofa.tables import SUBNET, LatencyTable

    with LatencyTable.open(path) as table:
        entries = table.entries(kind=SUBNET)
    keys = [e.key for e in entries if e.key.space == space]
    if not keys:
        raise OptionError(f"table {path} has no {space} entries{_held(entries)}; {_how_to_measure(space, path)}")
    return tuple(sorted({k.resolution for k in keys})), tuple(sorted({k.batch for k in keys}))


def _held(entries: list[Entry]) -> str:
    spaces = sorted({e.key.space for e in entries})
    return f" (it holds {', '.join(spaces)}: search those with --space {spaces[0]})" if spaces else ""


def _how_to_measure(space: str, path: str) -> str:
    if get_space(space).enumerable:
        return f"profile them with `compofa profile --space {space} --table {path}`"
    return (f"{space} is too large to profile whole: measure its subnets on demand with --latency device:NAME "
            f"--table {path}")


@click.command("search")
@click.option("--space", default=DEFAULT_SPACE, show_default=True, help="Design space.")
@click.option("--latency", "latency_text", required=True,
              help="table:PATH, device:NAME (measure on demand into --table), lut:note10, lut:PATH or flops.")
@click.option("--target", "targets", required=True,
              help="Comma-separated latency targets (ms; MMACs for flops), or percentages of the way from the "
                   "fastest subnet to the slowest (25%,50%).")
@click.option("--accuracy", "accuracy_text", default="predictor", show_default=True,
              help="predictor (the shipped OFA predictor), predictor:PATH or table:PATH.")
@click.option("--strategy", type=click.Choice(STRATEGIES), default="auto", show_default=True,
              help="auto: exhaustive when the space is enumerable.")
@click.option("--resolution", help="Resolutions: values and ranges START:STOP[:STEP], comma-separated, or all "
              "(default: the table's, or the space's search set, 160..224 step 4).")
@click.option("--width", type=float, help="Width multiplier (default: the family's).")
@click.option("--upper-bound", is_flag=True, help="Require the latency's upper 95% bound, not its median, to fit.")
@click.option("--bucket", help="Compare latencies in buckets of this width (ms), or 'auto' (the table's noise floor).")
@click.option("--table", default="latency.db", show_default=True, type=click.Path(),
              help="Where device:NAME memoizes its measurements.")
@click.option("--device-id", type=int, help="Which device of a table holding several (see `compofa table show`).")
@click.option("--complete", is_flag=True,
              help="table:PATH: refuse a table that lacks some configuration (default: search what is measured).")
@click.option("--batch", type=click.IntRange(min=1),
              help="Batch size for table/device latency (default: the device's).")
@click.option("--threads", default=1, show_default=True, type=click.IntRange(min=1), help="Intra-op threads (CPU).")
@click.option("-O", "--option", "options", multiple=True, help="device:NAME backend option NAME=VALUE (repeatable).")
@click.option("--round-seconds", default=0.4, show_default=True, type=float,
              help="device:NAME: timed inference per subnet and round when measuring.")
@click.option("--target-ci", default=0.01, show_default=True, type=float,
              help="device:NAME: relative CI half-width to reach when measuring.")
@click.option("--min-rounds", default=3, show_default=True, type=click.IntRange(min=1),
              help="device:NAME: fresh sessions per subnet, at least.")
@click.option("--max-rounds", default=8, show_default=True, type=click.IntRange(min=1), help="... and at most.")
@click.option("--precision", default="fp32", show_default=True, type=click.Choice(["fp32", "fp16"]))
@click.option("--generations", type=click.IntRange(min=1), help="Evolution: generations (default 500).")
@click.option("--population", type=click.IntRange(min=4), help="Evolution: population (default 100).")
@click.option("--seed", default=0, show_default=True, type=int, help="Evolution seed.")
@click.option("-o", "--output", type=click.Path(dir_okay=False), help="Write the results (.json or .csv).")
@click.option("--json", "as_json", is_flag=True, help="Print the results as JSON.")
@click.option("--quiet", is_flag=True, help="No progress bar while measuring.")
def search_command(
    space: str, latency_text: str, targets: str, accuracy_text: str, strategy: str, resolution: str | None,
    width: float | None, upper_bound: bool, bucket: str | None, table: str, device_id: int | None, complete: bool,
    batch: int | None, threads: int, options: tuple[str, ...], round_seconds: float, target_ci: float,
    min_rounds: int, max_rounds: int, precision: str, generations: int | None, population: int | None, seed: int,
    output: str | None, as_json: bool, quiet: bool,
) -> None:
    """Find the most accurate subnet of SPACE under each latency target."""
    from compofa.devices import Settings
    from compofa.remote.names import default_batch as default_batch_of
    from compofa.search.latency import latency_source
    from compofa.search.predictor import accuracy_source
    from compofa.search.results import check_results_path, write_results
    from compofa.search.run import SearchRequest, search
    from compofa.search.targets import FitRule, parse_targets

    design = get_space(space)
    width = width if width is not None else design.family.default_width
    kind, _, rest = latency_text.partition(":")
    default_batch = default_batch_of(rest) if kind == "device" and rest else 1
    resolutions = parse_resolutions(resolution, design)
    if kind == "table" and rest:
        table_resolutions, table_batches = _table_setup(rest, space)
        resolutions = resolutions or table_resolutions
        default_batch = table_batches[0] if len(table_batches) == 1 else default_batch
    elif resolutions is None:
        # measuring costs minutes per resolution; estimates are free
        resolutions = (224,) if kind == "device" else design.search_resolutions
    settings = Settings(batch or default_batch, precision, threads, parse_options(options))
    for value in resolutions:
        design.check_resolution(value)
    accuracy = accuracy_source(accuracy_text, space, width)
    rule = FitRule(upper_bound, _bucket_width(bucket, latency_text, table))
    evolution = None
    if generations or population:
        from compofa.search.evolution import EvolutionConfig

        defaults = EvolutionConfig()
        evolution = EvolutionConfig(population=population or defaults.population,
                                    generations=generations or defaults.generations)
    request = SearchRequest(space, width, parse_targets(targets), tuple(resolutions), strategy, rule, seed, evolution)
    if output:
        check_results_path(output)  # before any measuring
    measuring: AbstractContextManager[ProfileListener[Any] | None] = nullcontext(None)
    config = None
    if kind == "device":  # the profiler and its progress bar load only when measuring
        from compofa.cli.profile import check_rounds, progress_bar
        from compofa.profiler import ProfileConfig
        from compofa.remote.names import display_name

        check_rounds(min_rounds, max_rounds)
        config = ProfileConfig(round_seconds=round_seconds, target_ci=target_ci, min_rounds=min_rounds,
                               max_rounds=max_rounds)
        measuring = progress_bar(f"measuring {space} on {display_name(rest)}", table, quiet or as_json,
                                 transient=True)
    with measuring as listener:
        latency = latency_source(latency_text, space, width, settings, table, device_id, config, listener,
                                 complete=complete)
        report = search(request, accuracy, latency)
    if report.missing:
        click.echo(_partial_note(report, rest), err=True)
    if output:
        write_results(report, Path(output))
    if as_json:
        print_json(report.to_dict())
        return
    _print(report, output)


def _bucket_width(bucket: str | None, latency_text: str, table: str) -> float | None:
    if bucket is None:
        return None
    if bucket != "auto":
        try:
            return float(bucket)
        except ValueError:
            raise OptionError(f"--bucket must be a width in ms or 'auto', got {bucket!r}") from None
    kind, _, rest = latency_text.partition(":")
    if kind not in ("table", "device"):
        raise OptionError("--bucket auto needs measured latency (table:PATH or device:NAME) to know the noise")
    from compofa.tables import LatencyTable
    from compofa.tables.analysis import noise_floor

    with LatencyTable.open(rest if kind == "table" else table) as store:
        entries = store.entries()
    if not entries:
        raise OptionError("--bucket auto: the table has no entries yet to estimate its noise floor")
    return noise_floor(entries).recommended_bucket_ms


def _partial_note(report: SearchReport, path: str) -> str:
    """One line: how much of the space the searched table lacks, and how to measure it or refuse it."""
    from compofa.search.latency import count_text as _count

    measured = report.measured or 0
    lacking = report.missing_by_resolution
    resolutions = ",".join(map(str, lacking))
    per_resolution = (": " + ", ".join(f"{_count(n)} at {r} px" for r, n in lacking.items())) if len(lacking) > 1 \
        else f" at {resolutions} px"
    if get_space(report.space).enumerable:
        remedy = f"`compofa profile --space {report.space} --resolution {resolutions} --table {path}` measures them"
    else:
        remedy = f"--latency device:NAME --table {path} measures the subnets a search visits"
    return (f"note: {report.latency_source} holds {measured} of the {_count(measured + report.missing)} "
            f"{report.space} configurations searched, and the search answered over those "
            f"({_count(report.missing)} missing{per_resolution}); {remedy}, and --complete refuses a partial table")


def _print(report: SearchReport, output: str | None) -> None:
    unit = report.latency_unit
    click.echo(f"{report.space} w{report.width:g}: {report.candidates} candidates scored by {report.accuracy_source}, "
               f"latency from {report.latency_source} ({report.fit}), {report.seconds:.2f} s")
    rows = [
        (f"{r.target:.4g}" + (f" ({r.requested})" if r.requested.endswith("%") else ""), str(r.spec),
         f"{r.accuracy:.4f}",
         f"{r.latency_ms:.3f}" + ("" if r.latency_ci_low_ms == r.latency_ci_high_ms
                                  else f" [{r.latency_ci_low_ms:.3f}, {r.latency_ci_high_ms:.3f}]"),
         f"{r.seconds:.3f}")
        for r in report.results
    ]
    echo_rows(rows, (f"target {unit}", "subnet", "accuracy", f"latency {unit}", "seconds"))
    stats = report.latency_stats
    if report.latency_source.startswith(("table:", "device:")):
        measured = (f"{stats['misses']} subnets measured in {stats['measure_seconds']:.0f} s and memoized"
                    if stats.get("misses") else "nothing measured")
        click.echo(f"latency cache: {stats['hits']} hits, {measured}")
    if output:
        click.echo(f"wrote {output}")
