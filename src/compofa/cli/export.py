"""`compofa export`: one subnet to an ONNX or PyTorch file."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import click

from compofa.cli.common import single_resolution, spec_argument
from compofa.cli.options import BATCH, CHECKPOINT, OUTPUT_FILE, RESOLUTION, SPACE, WIDTH, option
from compofa.cli.outputs import to_stdout, written_output
from compofa.errors import ExportError
from compofa.graphs.interface import METHODS

if TYPE_CHECKING:
    from compofa.space import SubnetSpec


@click.command("export")
@click.argument("spec", required=False)
@click.option("--result", type=click.Path(dir_okay=False), help="Take the subnet from a `compofa search -o` JSON file.")
@click.option("--target", help="With --result: the latency target whose subnet to export (as searched: 20 or 50%).")
@option(OUTPUT_FILE, required=True)
@option(SPACE, default=None, shown_default="the SPEC's; compofa for an OFA dict")
@option(WIDTH, shown_default="the checkpoint's, else the family's")
@option(CHECKPOINT)
@option(BATCH, default=1)
@option(RESOLUTION, shown_default="the SPEC's")
@click.option(
    "--kernel-transform/--no-kernel-transform",
    default=None,
    help="OFA's 7->5->3 kernel transform (default: on for ofa-* spaces, off for compofa*).",
)
@click.option("--method", type=click.Choice(METHODS), default="graph", show_default=True,
              help="graph: write the ONNX graph from the plan; torch: trace with torch.onnx.")
def export_command(
    spec: str | None,
    result: str | None,
    target: str | None,
    output: str,
    space: str | None,
    width: float | None,
    checkpoint: str | None,
    batch: int,
    resolution: str | None,
    kernel_transform: bool | None,
    method: str,
) -> None:
    """Export subnet SPEC as ONNX (input "input" NCHW float32, output "logits") or PyTorch.

    SPEC is the canonical text (compofa-r224-k33e33_...), an OFA dict as JSON
    text, or @file.json; or give --result (and --target) to export what a
    search chose. -o names a .onnx file (ONNX) or a .pt file (PyTorch, load
    with compofa.supernet.load_subnet); -o - writes ONNX to standard output.
    --resolution replaces the spec's. Without --checkpoint the weights are
    seeded (no PyTorch needed for ONNX): right for latency, meaningless for
    accuracy. --checkpoint, a .pt file and --method torch need PyTorch.
    """
    from compofa.search.results import read_result
    from compofa.sources.export import export_subnet

    if (spec is None) == (result is None):
        raise ExportError("give either a SPEC or --result FILE (with --target when it holds several)")
    if result is not None:
        chosen, result_width = read_result(result, target)
        subnet = _with_resolution(spec_argument(str(chosen), space, None), resolution)
        width = width if width is not None else result_width
    else:
        if target is not None:
            raise ExportError("--target goes with --result")
        assert spec is not None  # one of SPEC and --result, checked above
        subnet = _with_resolution(spec_argument(spec, space, None), resolution)
    suffix = ".onnx" if to_stdout(output) else Path(output).suffix.lower()
    with written_output(output, suffix, binary=True) as destination:
        path = export_subnet(subnet, destination, width, checkpoint, batch, kernel_transform, method)
        size_mb = path.stat().st_size / 1e6
    shape = f"[{batch}, 3, {subnet.resolution}, {subnet.resolution}]"
    what = f"{subnet}, input {shape}, {size_mb:.1f} MB" if suffix == ".onnx" else f"{subnet}, {size_mb:.1f} MB"
    click.echo(f"wrote ONNX to standard output: {what}" if to_stdout(output) else f"wrote {path}: {what}",
               err=to_stdout(output))
    if checkpoint is None:
        click.echo("note: no --checkpoint, so the weights are seeded random ones (fine for latency)", err=True)


def _with_resolution(subnet: SubnetSpec, resolution: str | None) -> SubnetSpec:
    """`subnet` at --resolution (one value, parsed as every command parses it, allowed in the subnet's space)."""
    import dataclasses

    from compofa.space import get_space

    chosen = single_resolution(resolution, get_space(subnet.space))
    return subnet if chosen is None else dataclasses.replace(subnet, resolution=chosen)
