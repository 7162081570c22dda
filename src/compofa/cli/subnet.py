"""`compofa subnet sample|enumerate|show`: specs in canonical form and as JSON."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Iterable
from typing import Any

import click
import numpy as np

from compofa.cli.common import CompofaGroup, echo_rows, parse_resolutions, print_json, single_resolution, spec_argument
from compofa.cli.options import JSON, RESOLUTION, SEED, SPACE, WIDTH, option
from compofa.space import SubnetSpec, get_space
from compofa.space.cost import network_cost
from compofa.space.plan import plan_subnet

SPACE_OPTION = option(SPACE)
RESOLUTION_OPTION = option(RESOLUTION, shown_default="the space's search resolutions")
JSON_OPTION = option(JSON)


def spec_record(spec: SubnetSpec) -> dict[str, Any]:
    return {"spec": str(spec), "space": spec.space, "resolution": spec.resolution, "ofa": spec.to_ofa_dict()}


def _emit(specs: Iterable[SubnetSpec], as_json: bool) -> None:
    if as_json:
        print_json([spec_record(spec) for spec in specs])
    else:
        for spec in specs:
            click.echo(str(spec))


@click.group("subnet", cls=CompofaGroup)
def subnet_group() -> None:
    """Sample, enumerate and describe subnets."""


@subnet_group.command("sample")
@SPACE_OPTION
@click.option("-n", "--count", default=1, show_default=True, type=click.IntRange(min=1), help="How many.")
@option(SEED)
@RESOLUTION_OPTION
@JSON_OPTION
def subnet_sample(space: str, count: int, seed: int, resolution: str | None, as_json: bool) -> None:
    """Draw subnets uniformly at random from a space.

    The same --seed draws the same subnets (0 unless given); for a fresh draw
    each time, give the shell's randomness: --seed $RANDOM. --json prints each
    subnet's canonical text and OFA dict.
    """
    design = get_space(space)
    rng = np.random.default_rng(seed)
    _emit(design.sample_many(rng, count, parse_resolutions(resolution, design)), as_json)


@subnet_group.command("enumerate")
@SPACE_OPTION
@RESOLUTION_OPTION
@JSON_OPTION
def subnet_enumerate(space: str, resolution: str | None, as_json: bool) -> None:
    """List every subnet of a small space (compofa: 243 per resolution)."""
    design = get_space(space)
    _emit(list(design.enumerate(parse_resolutions(resolution, design))), as_json)


@subnet_group.command("show")
@click.argument("spec")
@option(SPACE, default=None, shown_default="the SPEC's; compofa for an OFA dict")
@option(WIDTH)
@option(RESOLUTION, shown_default="the SPEC's")
@JSON_OPTION
def subnet_show(spec: str, space: str | None, width: float | None, resolution: str | None, as_json: bool) -> None:
    """Describe SPEC: canonical form, OFA dict and its layers.

    SPEC is the canonical text (compofa-r224-k33e33_...), an OFA dict as JSON
    text, or @file.json; --resolution replaces its resolution.
    """
    subnet = spec_argument(spec, space, None)
    chosen = single_resolution(resolution, get_space(subnet.space))
    if chosen is not None:
        subnet = dataclasses.replace(subnet, resolution=chosen)
    family = get_space(subnet.space).family
    plan = plan_subnet(subnet, width or family.default_width)
    cost = network_cost(plan)
    record = spec_record(subnet) | {
        "width": plan.width,
        "depths": list(subnet.depths),
        "parameters": cost.parameters,
        "macs": cost.macs,
    }
    if as_json:
        print_json(record)
        return
    click.echo(f"spec        {record['spec']}")
    click.echo(f"ofa         {json.dumps(record['ofa'])}")
    click.echo(f"width       {plan.width:g}   depths {list(subnet.depths)}")
    click.echo(f"parameters  {cost.parameters / 1e6:.2f} M   MACs {cost.macs / 1e6:.1f} M "
               f"at {subnet.resolution}x{subnet.resolution}")
    rows = [
        (
            "first" if block.stage < 0 else f"{block.stage}",
            str(block.position),
            f"{block.input_size}",
            f"{block.in_channels}->{block.mid_channels}->{block.out_channels}",
            str(block.kernel_size),
            str(block.expand_ratio),
            str(block.stride),
            "se" if block.use_se else "",
            "skip" if block.residual else "",
        )
        for block in plan.blocks
    ]
    echo_rows(rows, ("stage", "block", "input", "channels", "k", "e", "stride", "se", "skip"))
