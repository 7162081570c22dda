"""Where device backends get the networks they time.

A `SubnetSource` stands for one supernet (space, width, checkpoint, kernel
transform) and hands out what a backend needs for a subnet: an ONNX file (from
the content-addressed export cache) or a PyTorch module. The supernet is built
on first use, so a backend that needs no network (a lookup table) costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from compofa.space import SubnetSpec, get_space
from compofa.supernet.export import OnnxExporter, load_or_build_supernet, weights_fingerprint
from compofa.supernet.network import Subnet, Supernet
from compofa.supernet.onnx_graph import OUTPUT_NAME


@dataclass
class SubnetSource:
    """The supernet whose subnets are measured.

    Attributes:
        space: design space of the subnets.
        width: width multiplier (default: the family's).
        checkpoint: supernet weights; None for seeded random ones (latency only).
        kernel_transform: None for the space's default.
        cache_dir: export cache folder (default: see `default_cache_dir`).
    """

    space: str
    width: float | None = None
    checkpoint: str | os.PathLike[str] | None = None
    kernel_transform: bool | None = None
    cache_dir: str | os.PathLike[str] | None = None
    _supernet: Supernet | None = field(default=None, init=False, repr=False)
    _exporters: dict[int, OnnxExporter] = field(default_factory=dict, init=False, repr=False)

    def __post_init__(self) -> None:
        design = get_space(self.space)
        if self.width is None:
            self.width = design.family.default_width
        design.family.check_width(self.width)  # before anything is created for a width with no supernet

    @property
    def supernet(self) -> Supernet:
        if self._supernet is None:
            self._supernet = load_or_build_supernet(self.space, self.width, self.checkpoint, self.kernel_transform)
        return self._supernet

    def onnx(self, spec: SubnetSpec, batch: int) -> Path:
        """The ONNX file of `spec` at `batch` (exported once, then cached)."""
        if batch not in self._exporters:
            self._exporters[batch] = OnnxExporter(self.supernet, batch, self.cache_dir)
        return self._exporters[batch].path(spec)

    #: Name of the output of the ONNX files `onnx` hands out.
    output_name = OUTPUT_NAME

    def input_shape(self, spec: SubnetSpec, batch: int) -> tuple[int, ...]:
        """The NCHW input shape of `spec`'s ONNX file at `batch`."""
        return (batch, 3, spec.resolution, spec.resolution)

    def module(self, spec: SubnetSpec) -> Subnet:
        """`spec` as a standalone PyTorch module in eval mode."""
        return self.supernet.subnet(spec).eval()

    def describe(self) -> dict[str, Any]:
        """What identifies the measured networks (stored with every table run).

        Latency does not depend on weight values, so describing the source
        never builds the supernet; its weights' fingerprint is included once
        something else has built it.
        """
        design = get_space(self.space)
        transform = design.kernel_transform if self.kernel_transform is None else self.kernel_transform
        description: dict[str, Any] = {
            "space": self.space,
            "family": design.family.name,
            "width": self.width,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "kernel_transform": transform,
        }
        if self._supernet is not None:
            description["weights"] = weights_fingerprint(self._supernet)
        return description
