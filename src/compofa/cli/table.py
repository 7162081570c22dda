"""`compofa table show|export|diff|merge`."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from compofa.cli.common import CompofaGroup, echo_rows, plural, print_json
from compofa.cli.options import DEVICE_ID, FILE_FORMAT, JSON, OUTPUT_FILE, SPACE, option
from compofa.cli.outputs import check_output, output_format, written_output, wrote
from compofa.tables.exchange import EXPORT_FORMATS

if TYPE_CHECKING:
    from compofa.tables import LatencyTable
    from compofa.tables.store import Entry


def table_summary(path: Path, device_id: int | None = None) -> list[dict[str, Any]]:
    """One record per device, space, width, batch and precision in the table (of one device, if given).

    ``median_ci_half_width_relative`` is what `table show` prints as ``+-``: the
    median over the entries of their 95% CI half-width relative to their
    median, the quantity --target-ci asks for. ``median_relative_ci`` (kept for
    readers of older output) is the same median of the full width, twice that.
    """
    import numpy as np

    from compofa.profiler import COARSE, NOISY, REFINING
    from compofa.tables import LatencyTable
    from compofa.tables.analysis import noise_floor

    with LatencyTable.open(path) as table:
        if device_id is not None:
            table.require_device(device_id)
        entries = table.entries(device_id)
        devices = {d.id: d for d in table.devices()}
        groups: dict[tuple[int, str, float, int, str], list[Entry]] = defaultdict(list)
        for entry in entries:
            key = entry.key
            groups[(entry.device_id, key.space, key.width, key.batch, key.precision)].append(entry)
        records = []
        for (device_id, space, width, batch, precision), group in groups.items():
            floor = noise_floor(group)
            reference = table.reference(device_id, group[0].key)
            medians = np.array([e.median_ms for e in group])
            records.append({
                "device_id": device_id,
                "device": devices[device_id].name,
                "fingerprint": devices[device_id].fingerprint,
                "space": space, "width": width, "batch": batch, "precision": precision,
                "entries": len(group),
                "resolutions": sorted({e.key.resolution for e in group}),
                "fastest_ms": float(medians.min()), "slowest_ms": float(medians.max()),
                "median_ci_half_width_relative": floor.relative / 2,
                "median_relative_ci": floor.relative,
                "unstable": sum(not e.stable for e in group),
                "unconverged": sum(e.reason not in ("converged", "estimated") for e in group),
                "noise_limited": sum(e.reason == NOISY for e in group),
                "coarse": sum(e.reason in (COARSE, REFINING) for e in group),
                "estimated": all(e.reason == "estimated" for e in group),
                "noise_floor_ms": floor.ci_width_ms,
                "recommended_bucket_ms": floor.recommended_bucket_ms,
                "reference": reference[0] if reference else None,
                "reference_baseline_ms": reference[1] if reference else None,
                **beyond_the_median(group),
            })
        return records


def beyond_the_median(group: list[Entry]) -> dict[str, Any]:
    """The tail, memory and energy of a group of entries: each metric's range over the entries that have it,
    how many lack it, and (for memory and energy) why the device could not read it."""
    import math

    summary: dict[str, Any] = {}
    for name in ("p90_ms", "p99_ms", "peak_memory_mb", "energy_mj"):
        values = [v for v in (getattr(e, name) for e in group) if v is not None]
        summary[name] = {"low": min(values), "high": max(values), "missing": len(group) - len(values)} \
            if values else None
    summary["p99_unbounded"] = sum(e.p99_ci_high_ms is not None and not math.isfinite(e.p99_ci_high_ms)
                                   for e in group)
    reasons: dict[str, str] = {}
    for entry in group:
        for metric, why in entry.absent.items():
            reasons.setdefault(metric, why)
    summary["absent"] = reasons
    return summary


def _range(metric: dict[str, Any] | None, unit: str, digits: int = 3) -> str:
    if metric is None:
        return "not recorded"
    text = f"{metric['low']:.{digits}f} .. {metric['high']:.{digits}f} {unit}"
    return text + (f" ({plural(metric['missing'], 'entry')} without)" if metric["missing"] else "")


def _print_beyond_the_median(r: dict[str, Any]) -> None:
    if r["p99_ms"] is None and r["peak_memory_mb"] is None and r["energy_mj"] is None:
        return  # a table written before compofa derived them (or estimates): nothing to say
    tail = f"  tail: p90 {_range(r['p90_ms'], 'ms')}, p99 {_range(r['p99_ms'], 'ms')}"
    if r["p99_unbounded"]:
        tail += f"; {r['p99_unbounded']} p99s have too few samples for an upper bound"
    click.echo(tail)
    for name, metric, label, unit in (("peak_memory_mb", "memory", "peak memory", "MB"),
                                      ("energy_mj", "energy", "energy per inference", "mJ")):
        why = r["absent"].get(metric)
        if r[name] is None and why:
            click.echo(f"  {label}: absent ({why})")
        else:
            click.echo(f"  {label}: {_range(r[name], unit, 1 if unit == 'MB' else 3)}")


def print_summary(path: Path, device_id: int | None = None) -> None:
    records = table_summary(path, device_id)
    if not records:
        click.echo(f"{path}: no entries yet")
        return
    print_records(path, records)


def print_records(path: Path, records: list[dict[str, Any]]) -> None:
    for r in records:
        resolutions = ",".join(map(str, r["resolutions"]))
        click.echo(f"{path}: {r['device']} (device {r['device_id']}), {r['space']} w{r['width']:g}, "
                   f"batch {r['batch']}, {r['precision']}, resolutions {resolutions}")
        click.echo(f"  {plural(r['entries'], 'entry')}, {r['fastest_ms']:.3f} .. {r['slowest_ms']:.3f} ms; median "
                   f"95% CI half-width +-{r['median_ci_half_width_relative']:.2%}; {r['unstable']} unstable, "
                   f"{r['unconverged']} unconverged")
        if r["noise_limited"]:
            click.echo(f"  {r['noise_limited']} noise-limited: measured while the machine was disturbed, or its speed "
                       "kept changing; profiling again when it is quiet measures them first")
        if r["coarse"]:
            click.echo(f"  {r['coarse']} coarse or partly refined (front-aware: off the accuracy-latency front), "
                       "honest but wider intervals")
        if r["estimated"]:
            click.echo("  estimates (lookup table): no measurement noise")
        else:
            click.echo(f"  noise floor {r['noise_floor_ms']:.3f} ms: buckets finer than "
                       f"{r['recommended_bucket_ms']:g} ms are noise")
        if r["reference"]:
            click.echo(f"  reference {r['reference']} at {r['reference_baseline_ms']:.3f} ms")
        _print_beyond_the_median(r)


@click.group("table", cls=CompofaGroup)
def table_group() -> None:
    """Inspect, export, compare and merge latency tables."""


@table_group.command("show")
@click.argument("table", type=click.Path())
@option(DEVICE_ID)
@click.option("--bucket", help="Group entries into latency buckets: a width in ms, or 'auto' (the noise floor).")
@option(JSON)
def table_show(table: str, device_id: int | None, bucket: str | None, as_json: bool) -> None:
    """Summarize TABLE: entries, latency range, noise floor, reference.

    The text's "median 95% CI half-width +-X%" is --json's
    median_ci_half_width_relative; median_relative_ci is the full width
    (twice it), kept for readers of earlier output.
    """
    from compofa.tables import LatencyTable, TableError
    from compofa.tables.analysis import buckets, indistinguishable, noise_floor

    path = Path(table)
    records = table_summary(path, device_id)
    if bucket is None:
        if as_json:
            print_json(records)
        elif records:
            print_records(path, records)
        else:
            click.echo(f"{path}: no entries yet")
        return
    with LatencyTable.open(path) as store:
        entries = store.entries(device_id)
    if not entries:
        raise TableError(f"{table}: no entries to bucket")
    width = noise_floor(entries).recommended_bucket_ms if bucket == "auto" else _positive_float(bucket)
    groups = buckets(entries, width)
    twins = indistinguishable(entries)
    if as_json:
        print_json({
            "bucket_ms": width,
            "buckets": [{"low_ms": b.low_ms, "high_ms": b.high_ms, "specs": [e.key.spec for e in b.entries]}
                        for b in groups],
            "indistinguishable": [[e.key.spec for e in group] for group in twins],
        })
        return
    print_records(path, records)
    click.echo(f"buckets of {width:g} ms:")
    echo_rows([(f"{b.low_ms:.2f}-{b.high_ms:.2f}", str(len(b.entries)), b.entries[0].key.spec) for b in groups],
              ("ms", "subnets", "fastest"))
    click.echo(f"{plural(len(twins), 'group')} of subnets with overlapping confidence intervals "
               f"({plural(sum(len(g) for g in twins), 'subnet')} cannot be told apart from a neighbour)")


def _positive_float(text: str) -> float:
    from compofa.tables import TableError

    try:
        value = float(text)
    except ValueError:
        raise TableError(f"--bucket must be a width in ms or 'auto', got {text!r}") from None
    if value <= 0:
        raise TableError(f"--bucket must be positive, got {text}")
    return value


@table_group.command("export")
@click.argument("table", type=click.Path())
@option(OUTPUT_FILE, required=True)
@option(FILE_FORMAT)
@option(SPACE, default=None, shown_default="all the table holds")
@option(DEVICE_ID)
def table_export(table: str, output: str, file_format: str | None, space: str | None, device_id: int | None) -> None:
    """Write TABLE's entries as a JSON list or CSV rows (spec, OFA dict, statistics).

    The format is the -o file's extension (.json or .csv) unless --format
    says; -o - prints JSON (or --format csv) on standard output.
    """
    from compofa.tables import LatencyTable, TableError
    from compofa.tables.exchange import export_entries

    check_output(output)
    fmt = output_format(output, file_format, EXPORT_FORMATS)
    with LatencyTable.open(table) as store:
        if device_id is not None:
            store.require_device(device_id)
        entries = store.entries(device_id, space)
        if not entries and (space is not None or device_id is not None) and store.entries():
            held = sorted({e.key.space for e in store.entries(device_id)})
            what = f"{space} entries" if space else "entries"
            where = f" of device {device_id}" if device_id is not None else ""
            raise TableError(f"{table} has no {what}{where}; "
                             + (f"it holds {', '.join(held)} entries" if held else "that device has none"))
    with written_output(output, f".{fmt}") as path:
        count = export_entries(entries, path, fmt)
    wrote(output, plural(count, "entry"))


@table_group.command("diff")
@click.argument("table_a", type=click.Path())
@click.argument("table_b", type=click.Path())
@option(DEVICE_ID, multiple=True)
@option(JSON)
def table_diff(table_a: str, table_b: str, device_id: tuple[int, ...], as_json: bool) -> None:
    """Compare two tables: rank correlation and relative differences, raw and drift-normalized.

    --device-id once picks that device in both tables; twice, one in TABLE_A
    and one in TABLE_B.
    """
    from compofa.tables import LatencyTable, TableError
    from compofa.tables.compare import compare_entries

    if len(device_id) > 2:
        raise TableError(f"--device-id is given {len(device_id)} times for two tables: give it once (both tables) "
                         "or twice (TABLE_A's, then TABLE_B's)")
    id_a, id_b = (device_id * 2)[:2] if device_id else (None, None)
    with LatencyTable.open(table_a) as a, LatencyTable.open(table_b) as b:
        for store, chosen in ((a, id_a), (b, id_b)):
            if chosen is not None:
                store.require_device(chosen)
        entries_a, entries_b = a.entries(id_a), b.entries(id_b)
        baselines = _shared_baselines(a, b, entries_a, entries_b)
    try:
        comparison = compare_entries(entries_a, entries_b, baselines)
    except ValueError as error:
        raise TableError(f"cannot compare {table_a} and {table_b}: {error}") from None
    if as_json:
        print_json(asdict(comparison))
        return
    c = comparison
    click.echo(f"{plural(c.matched, 'subnet')} in both ({c.only_a} only in {table_a}, {c.only_b} only in {table_b})")
    click.echo(f"rank correlation: Kendall tau {c.kendall_tau:.4f}, Spearman rho {c.spearman_rho:.4f}")
    click.echo(f"global drift b/a {c.drift_factor:.4f} (from the {c.drift_source})")
    click.echo(f"median |relative difference|: raw {c.median_abs_rel_diff_raw:.2%}, drift-normalized "
               f"{c.median_abs_rel_diff_normalized:.2%} (p90 {c.p90_abs_rel_diff_normalized:.2%})")
    click.echo(f"pairs more than 2% apart ordered the same: {c.pairs_2pct_same_order:.2%} of {c.pairs_2pct}")
    echo_rows([(spec, f"{x:.3f}", f"{y:.3f}", f"{d:+.2%}") for spec, x, y, d in c.worst],
              ("largest differences", "a ms", "b ms", "normalized"))


def _shared_baselines(a: LatencyTable, b: LatencyTable, entries_a: list[Entry], entries_b: list[Entry]
                      ) -> tuple[float, float] | None:
    if not entries_a or not entries_b:
        return None
    ref_a = a.reference(entries_a[0].device_id, entries_a[0].key)
    ref_b = b.reference(entries_b[0].device_id, entries_b[0].key)
    if ref_a and ref_b and ref_a[0] == ref_b[0]:
        return ref_a[1], ref_b[1]
    return None


@table_group.command("merge")
@click.argument("output", type=click.Path())
@click.argument("inputs", nargs=-1, required=True, type=click.Path())
@click.option("--force", is_flag=True, help="Merge measurements of differing setups under the first one.")
def table_merge(output: str, inputs: tuple[str, ...], force: bool) -> None:
    """Merge tables INPUTS (profile shards, accuracy tables) into OUTPUT (created if missing)."""
    from compofa.jobs.merge import merge_tables

    report = merge_tables(Path(output), [Path(p) for p in inputs], force)
    scaled = ", ".join(f"{name} x{factor:.4f}" for name, factor in report.rescaled.items() if factor != 1.0)
    present = (f"; already there: {plural(report.conflicts, 'entry')}, {plural(report.rounds_present, 'round')}, "
               f"{plural(report.accuracies_present, 'accuracy row')} (kept once)"
               if report.conflicts or report.rounds_present or report.accuracies_present else "")
    differs = "differs" if report.accuracy_conflicts == 1 else "differ"
    differing = (f"; {plural(report.accuracy_conflicts, 'accuracy row')} {differs} from {output}'s for the same subnet "
                 f"and weights ({output}'s kept)" if report.accuracy_conflicts else "")
    click.echo(f"merged {plural(report.tables, 'table')} into {output}: {plural(report.entries, 'entry')}, "
               f"{plural(report.runs, 'run')}, {plural(report.rounds, 'round')}, "
               f"{plural(report.accuracies, 'accuracy row')} added{present}{differing}"
               + (f"; rescaled to the first reference: {scaled}" if scaled else ""))
