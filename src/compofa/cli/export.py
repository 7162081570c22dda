"""`compofa export`: one subnet to an ONNX or PyTorch file."""

from __future__ import annotations

import click

from compofa.cli.common import spec_argument
from compofa.errors import ExportError
from compofa.graphs.interface import METHODS


@click.command("export")
@click.argument("spec", required=False)
@click.option("--result", type=click.Path(dir_okay=False), help="Take the subnet from a `compofa search -o` JSON file.")
@click.option("--target", help="With --result: the latency target whose subnet to export (as searched: 20 or 50%).")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False),
              help="File to write: .onnx (ONNX) or .pt (PyTorch, load with compofa.supernet.load_subnet).")
@click.option("--space", help="Space of an OFA-dict SPEC (default compofa); must match a canonical SPEC.")
@click.option("--width", type=float, help="Width multiplier (default: the checkpoint's, else the family's).")
@click.option("--checkpoint", type=click.Path(), help="Supernet weights (OFA, CompOFA or compofa format).")
@click.option("--batch", default=1, show_default=True, type=click.IntRange(min=1), help="Batch size of the graph.")
@click.option("--resolution", type=int, help="Replace the spec's input resolution.")
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
    resolution: int | None,
    kernel_transform: bool | None,
    method: str,
) -> None:
    """Export subnet SPEC as ONNX (input "input" NCHW float32, output "logits") or PyTorch.

    SPEC is the canonical text (compofa-r224-k33e33_...), an OFA dict as JSON
    text, or @file.json; or give --result (and --target) to export what a
    search chose. Without --checkpoint the weights are seeded (no PyTorch
    needed for ONNX): right for latency, meaningless for accuracy.
    --checkpoint, a .pt file and --method torch need PyTorch.
    """
    from compofa.search.results import read_result
    from compofa.sources.export import export_subnet

    if (spec is None) == (result is None):
        raise ExportError("give either a SPEC or --result FILE (with --target when it holds several)")
    if result is not None:
        chosen, result_width = read_result(result, target)
        subnet = spec_argument(str(chosen), space, resolution)
        width = width if width is not None else result_width
    else:
        if target is not None:
            raise ExportError("--target goes with --result")
        assert spec is not None  # one of SPEC and --result, checked above
        subnet = spec_argument(spec, space, resolution)
    path = export_subnet(subnet, output, width, checkpoint, batch, kernel_transform, method)
    size_mb = path.stat().st_size / 1e6
    shape = f"[{batch}, 3, {subnet.resolution}, {subnet.resolution}]"
    click.echo(f"wrote {path}: {subnet}, input {shape}, {size_mb:.1f} MB"
               if path.suffix == ".onnx" else f"wrote {path}: {subnet}, {size_mb:.1f} MB")
    if checkpoint is None:
        click.echo("note: no --checkpoint, so the weights are seeded random ones (fine for latency)", err=True)
