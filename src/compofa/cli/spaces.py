"""`compofa spaces` and `compofa space show`."""

from __future__ import annotations

from typing import Any

import click

from compofa.cli.common import CompofaGroup, echo_rows, print_json
from compofa.cli.options import JSON, option
from compofa.space import DesignSpace, get_space, list_spaces
from compofa.space.design import describe_range


def _count(space: DesignSpace) -> str:
    n = space.cardinality
    return str(n) if n < 1_000_000 else f"{n:.2e}"


def space_summary(space: DesignSpace) -> dict[str, Any]:
    return {
        "name": space.name,
        "family": space.family.name,
        "subnets": space.cardinality,
        "enumerable": space.enumerable,
        "widths": list(space.family.widths),
        "default_width": space.family.default_width,
        "kernel_transform": space.kernel_transform,
        "resolutions": list(space.resolutions),
        "search_resolutions": list(space.search_resolutions),
        "description": space.description,
    }


@click.command("spaces")
@option(JSON)
def spaces_command(as_json: bool) -> None:
    """List the design spaces and how many subnets each has (per resolution)."""
    spaces = list_spaces()
    if as_json:
        print_json([space_summary(space) for space in spaces])
        return
    rows = [
        (s.name, s.family.name, _count(s), "/".join(f"{w:g}" for w in s.family.widths), s.description)
        for s in spaces
    ]
    echo_rows(rows, ("space", "family", "subnets", "widths", "description"))


@click.group("space", cls=CompofaGroup)
def space_group() -> None:
    """Inspect one design space."""


@space_group.command("show")
@click.argument("name")
@option(JSON)
def space_show(name: str, as_json: bool) -> None:
    """Describe design space NAME: stages, choices, resolutions, extremes."""
    space = get_space(name)
    summary = space_summary(space)
    summary["stages"] = [stage.describe() for stage in space.stages]
    summary["smallest"] = str(space.smallest())
    summary["largest"] = str(space.largest())
    if as_json:
        print_json(summary)
        return
    click.echo(f"{space.name}: {space.description}")
    click.echo(f"  family            {space.family.name}, widths {'/'.join(f'{w:g}' for w in space.family.widths)} "
               f"(default {space.family.default_width:g})")
    click.echo(f"  subnets           {space.cardinality} per resolution ({_count(space)})"
               + ("" if space.enumerable else ", too many to enumerate"))
    click.echo(f"  kernel transform  {'on' if space.kernel_transform else 'off'} by default")
    click.echo(f"  resolutions       {describe_range(space.resolutions)} "
               f"(search: {describe_range(space.search_resolutions)})")
    for index, stage in enumerate(space.stages):
        click.echo(f"  stage {index}           {stage.describe()} ({stage.cardinality} choices)")
    click.echo(f"  smallest          {summary['smallest']}")
    click.echo(f"  largest           {summary['largest']}")
