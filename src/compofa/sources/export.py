"""Export one subnet to a file: what ``compofa export`` does.

Without a checkpoint an ONNX graph is written from seeded weights here, without
torch. A checkpoint (a torch pickle), a PyTorch ``.pt`` file or the
``torch.onnx`` trace need PyTorch and go through `compofa.supernet.export`.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING

from compofa.extras import require_torch
from compofa.graphs.interface import check_export_target

if TYPE_CHECKING:
    from compofa.space import SubnetSpec


def export_subnet(
    spec: SubnetSpec,
    output: str | os.PathLike[str],
    width: float | None = None,
    checkpoint: str | os.PathLike[str] | None = None,
    batch: int = 1,
    kernel_transform: bool | None = None,
    method: str = "graph",
) -> Path:
    """Export one subnet to ONNX (``.onnx``) or PyTorch (``.pt``).

    Checks the output path before any work, so a bad path fails at once.
    Without `checkpoint` the weights are seeded (`compofa.graphs.seeded`):
    right for latency, meaningless for accuracy.
    """
    from compofa.space import get_space

    suffix = check_export_target(output, method)
    if checkpoint is None and suffix == ".onnx" and method == "graph":
        from compofa.graphs.cache import write_graph
        from compofa.graphs.seeded import SeededWeights

        family = get_space(spec.space).family
        return write_graph(SeededWeights(family, family.default_width if width is None else width), spec, output,
                           batch)
    purpose = ("reading a checkpoint" if checkpoint is not None
               else "writing a PyTorch file" if suffix != ".onnx" else "the torch export method")
    require_torch(purpose)
    from compofa.supernet.export import export_subnet as export_with_torch

    return export_with_torch(spec, output, width, checkpoint, batch, kernel_transform, method)
