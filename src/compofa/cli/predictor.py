"""`compofa predictor train`: fit an accuracy predictor on measured accuracy rows."""

from __future__ import annotations

import click

from compofa.cli.common import CompofaGroup, OptionError
from compofa.extras import require_torch
from compofa.fileio import check_output_path
from compofa.space import DEFAULT_SPACE


@click.group("predictor", cls=CompofaGroup)
def predictor_group() -> None:
    """Accuracy predictors (OFA's 3 x 400 network)."""


@predictor_group.command("train")
@click.option("--table", required=True, type=click.Path(), help="Table with accuracy rows (from `compofa eval`).")
@click.option("--space", default=DEFAULT_SPACE, show_default=True)
@click.option("--width", type=float, help="Width multiplier of the evaluated supernet (default: the family's).")
@click.option("--weights", help="Which evaluated weights, when the table holds several.")
@click.option("--epochs", default=100, show_default=True, type=click.IntRange(min=1))
@click.option("--seed", default=0, show_default=True, type=int)
@click.option("--validation", default=0.2, show_default=True, type=float, help="Share of rows held out.")
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Predictor file (use as --accuracy predictor:PATH).")
def train_command(
    table: str, space: str, width: float | None, weights: str | None, epochs: int, seed: int, validation: float,
    output: str,
) -> None:
    """Fit a predictor of top-1 on every (subnet, top-1) row of SPACE in TABLE."""
    require_torch("fitting a predictor")
    from compofa.search.predictor import train_predictor
    from compofa.space import get_space, parse_spec
    from compofa.tables import LatencyTable

    width = width if width is not None else get_space(space).family.default_width
    check_output_path(output)
    with LatencyTable.open(table) as store:
        rows = store.accuracy.top1(space, width, weights)
    if len(rows) < 10:
        raise OptionError(f"table {table} has {len(rows)} {space} accuracy rows at width {width:g}; fitting a "
                           "predictor needs at least 10 (measure more with `compofa eval`)")
    predictor = train_predictor([parse_spec(text) for text in rows], list(rows.values()), epochs=epochs, seed=seed,
                                validation_fraction=validation, fitted_width=width)
    predictor.save(output)
    stats = predictor.training
    assert stats is not None
    held_out = f", held-out RMSE {stats.validation_rmse:.4f} on {stats.validation_size}" \
        if stats.validation_rmse is not None else ""
    click.echo(f"wrote {output}: trained on {stats.train_size} subnets, RMSE {stats.train_rmse:.4f}{held_out}")
