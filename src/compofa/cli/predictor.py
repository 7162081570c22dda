"""`compofa predictor train`: fit an accuracy predictor on measured accuracy rows."""

from __future__ import annotations

from pathlib import Path

import click

from compofa.cli.common import CompofaGroup, OptionError, plural
from compofa.cli.options import OUTPUT_FILE, SEED, SPACE, WIDTH, option
from compofa.cli.outputs import check_output, written_output, wrote
from compofa.extras import require_torch


@click.group("predictor", cls=CompofaGroup)
def predictor_group() -> None:
    """Accuracy predictors (OFA's 3 x 400 network)."""


@predictor_group.command("train")
@click.option("--table", required=True, type=click.Path(), help="Table with accuracy rows (from `compofa eval`).")
@option(SPACE)
@option(WIDTH)
@click.option("--weights", help="Which evaluated weights, when the table holds several.")
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1), help="Training epochs.")
@option(SEED)
@click.option("--validation", default=0.2, show_default=True, type=click.FloatRange(0, 1, max_open=True),
              help="Share of rows held out.")
@option(OUTPUT_FILE, required=True)
def train_command(
    table: str, space: str, width: float | None, weights: str | None, epochs: int, seed: int, validation: float,
    output: str,
) -> None:
    """Fit a predictor of top-1 on every (subnet, top-1) row of SPACE in TABLE.

    --width is that of the evaluated supernet. -o names the predictor file
    (use it as --accuracy predictor:PATH); -o - writes it to standard output.
    """
    require_torch("fitting a predictor")
    from compofa.search.predictor import train_predictor
    from compofa.space import get_space, parse_spec
    from compofa.tables import LatencyTable

    width = width if width is not None else get_space(space).family.default_width
    check_output(output)
    with LatencyTable.open(table) as store:
        rows = store.accuracy.top1(space, width, weights)
    if len(rows) < 10:
        raise OptionError(f"table {table} has {plural(len(rows), space + ' accuracy row')} at width {width:g}; "
                          "fitting a predictor needs at least 10 (measure more with `compofa eval`)")
    predictor = train_predictor([parse_spec(text) for text in rows], list(rows.values()), epochs=epochs, seed=seed,
                                validation_fraction=validation, fitted_width=width)
    with written_output(output, Path(output).suffix.lower(), binary=True) as path:
        predictor.save(path)
    stats = predictor.training
    assert stats is not None
    held_out = f", held-out RMSE {stats.validation_rmse:.4f} on {stats.validation_size}" \
        if stats.validation_rmse is not None else ""
    wrote(output, f"a predictor trained on {plural(stats.train_size, 'subnet')}, RMSE {stats.train_rmse:.4f}{held_out}")
