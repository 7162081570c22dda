"""Where device backends get the networks they time.

A `SubnetSource` stands for one supernet (space, width, checkpoint, kernel
transform) and hands out what a backend needs for a subnet: an ONNX file (from
the content-addressed export cache) or a PyTorch module. Without a checkpoint
the weights are seeded numpy arrays (`compofa.graphs.seeded`) and torch is
never imported; a checkpoint (a torch pickle) and PyTorch modules go through
`compofa.supernet`, imported only then. Nothing is built before it is asked
for, so a backend that needs no network (a lookup table) costs nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from compofa.extras import require_torch
from compofa.fileio import default_cache_dir
from compofa.graphs.interface import OUTPUT_NAME
from compofa.space import SubnetSpec, get_space

if TYPE_CHECKING:
    import numpy as np

    from compofa.graphs.cache import NetworkWeights, OnnxExporter
    from compofa.graphs.openvino_int8 import OpenVinoInt8Exporter
    from compofa.graphs.pte_cache import PteExporter
    from compofa.graphs.quantize import Int8Exporter
    from compofa.graphs.tflite_cache import TfliteExporter
    from compofa.sources.calibration import CalibratedRecipe, CalibrationSet
    from compofa.supernet.network import Subnet, Supernet


@dataclass
class SubnetSource:
    """The supernet whose subnets are measured.

    Attributes:
        space: design space of the subnets.
        width: width multiplier (default: the family's).
        checkpoint: supernet weights; None for seeded random ones (latency only).
        kernel_transform: None for the space's default.
        cache_dir: export cache folder (default: see `compofa.graphs.cache.default_cache_dir`).
    """

    space: str
    width: float | None = None
    checkpoint: str | os.PathLike[str] | None = None
    kernel_transform: bool | None = None
    cache_dir: str | os.PathLike[str] | None = None
    _weights: NetworkWeights | None = field(default=None, init=False, repr=False)
    _supernet: Supernet | None = field(default=None, init=False, repr=False)
    _exporters: dict[int, OnnxExporter] = field(default_factory=dict, init=False, repr=False)
    _tflite_exporters: dict[int, TfliteExporter] = field(default_factory=dict, init=False, repr=False)
    _pte_exporters: dict[int, PteExporter] = field(default_factory=dict, init=False, repr=False)
    _int8_exporter: Int8Exporter | None = field(default=None, init=False, repr=False)
    _openvino_int8_exporter: OpenVinoInt8Exporter | None = field(default=None, init=False, repr=False)
    _calibration: dict[tuple[str, int, int], CalibrationSet] = field(default_factory=dict, init=False, repr=False)

    #: Name of the output of the ONNX files `onnx` hands out.
    output_name = OUTPUT_NAME

    def __post_init__(self) -> None:
        design = get_space(self.space)
        if self.width is None:
            self.width = design.family.default_width
        design.family.check_width(self.width)  # before anything is created for a width with no supernet

    @property
    def _width(self) -> float:
        assert self.width is not None, "__post_init__ sets the width"
        return self.width

    @property
    def _transform(self) -> bool:
        design = get_space(self.space)
        return design.kernel_transform if self.kernel_transform is None else self.kernel_transform

    def _checkpoint_supernet(self) -> Supernet:
        """The checkpoint's supernet, read on first use (needs PyTorch)."""
        assert self.checkpoint is not None, "only a checkpoint has a supernet; seeded weights need none"
        if self._supernet is None:
            require_torch("reading a checkpoint")
            from compofa.supernet.export import load_or_build_supernet

            self._supernet = load_or_build_supernet(self.space, self._width, self.checkpoint, self.kernel_transform)
        return self._supernet

    @property
    def weights(self) -> NetworkWeights:
        """What the ONNX files are written from: seeded arrays, or the checkpoint's supernet."""
        if self._weights is None:
            if self.checkpoint is None:
                from compofa.graphs.seeded import SeededWeights

                self._weights = SeededWeights(get_space(self.space).family, self._width)
            else:
                supernet = self._checkpoint_supernet()  # says in one line if torch is missing
                from compofa.supernet.export import SupernetWeights

                self._weights = SupernetWeights(supernet)
        return self._weights

    def onnx(self, spec: SubnetSpec, batch: int) -> Path:
        """The ONNX file of `spec` at `batch` (exported once, then cached)."""
        if batch not in self._exporters:
            from compofa.graphs.cache import OnnxExporter

            self._exporters[batch] = OnnxExporter(self.weights, batch, self.cache_dir)
        return self._exporters[batch].path(spec)

    def tflite(self, spec: SubnetSpec, batch: int) -> Path:
        """The LiteRT (.tflite) file of `spec` at `batch`, input NHWC (written once, then cached)."""
        if batch not in self._tflite_exporters:
            from compofa.graphs.tflite_cache import TfliteExporter

            self._tflite_exporters[batch] = TfliteExporter(self.weights, batch, self.cache_dir)
        return self._tflite_exporters[batch].path(spec)

    def pte(self, spec: SubnetSpec, batch: int) -> Path:
        """The ExecuTorch program (.pte, XNNPACK) of `spec` at `batch`, input NCHW (lowered once, then cached;
        needs PyTorch and executorch)."""
        if batch not in self._pte_exporters:
            require_torch("lowering a subnet to ExecuTorch")
            from compofa.graphs.pte_cache import PteExporter

            self._pte_exporters[batch] = PteExporter(self.module, self.weights.fingerprint, self.input_shape,
                                                     batch, self.cache_dir)
        return self._pte_exporters[batch].path(spec)

    def int8_onnx(self, spec: SubnetSpec, batch: int, quantization: CalibratedRecipe) -> Path:
        """The int8 (QDQ) ONNX file of `spec` at `batch`: its fp32 file quantized with ONNX Runtime as
        `quantization` says, calibrated on its images at the spec's resolution (quantized once, then cached)."""
        from compofa.graphs.quantize import Int8Exporter

        fp32 = self.onnx(spec, batch)
        if self._int8_exporter is None:
            folder = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir() / "int8"
            self._int8_exporter = Int8Exporter(folder)
        return self._int8_exporter.path(fp32, batch, quantization.digest, quantization,
                                        lambda: self.calibration_images(spec, quantization))

    def int8_openvino(self, spec: SubnetSpec, batch: int, quantization: CalibratedRecipe,
                      preset: str = "performance") -> Path:
        """The OpenVINO int8 model (an IR ``.xml``, its ``.bin`` beside it) of `spec` at `batch`: its fp32 ONNX
        file quantized by NNCF with `preset` on the images `quantization` names (once, then cached; needs nncf).
        NNCF has its own recipe: of `quantization` only the images count."""
        from compofa.graphs.openvino_int8 import OpenVinoInt8Exporter

        fp32 = self.onnx(spec, batch)
        if self._openvino_int8_exporter is None:
            folder = Path(self.cache_dir) if self.cache_dir is not None else default_cache_dir() / "int8"
            self._openvino_int8_exporter = OpenVinoInt8Exporter(folder)
        return self._openvino_int8_exporter.path(fp32, batch, quantization.digest, preset,
                                                 lambda: self.calibration_images(spec, quantization))

    def calibration_images(self, spec: SubnetSpec, quantization: CalibratedRecipe) -> np.ndarray:
        """The calibration images of `quantization` as `spec`'s input takes them (float32, N x 3 x R x R); the
        folder must still hold the images its digest names."""
        return self.calibration_set(quantization).arrays(spec.resolution)

    def calibration_set(self, quantization: CalibratedRecipe) -> CalibrationSet:
        """The images `quantization` names, read once (refused if the folder changed since it was named)."""
        from compofa.sources.calibration import CalibrationError, calibration_set

        key = (quantization.calibration, quantization.images, quantization.seed)
        if key not in self._calibration:
            images = calibration_set(*key)
            if images.digest != quantization.digest:
                raise CalibrationError(f"the calibration folder {quantization.calibration!r} changed while in use "
                                       f"(its images' digest was {quantization.digest}, is now {images.digest}); "
                                       "run again", option="calibration")
            self._calibration[key] = images
        return self._calibration[key]

    def input_shape(self, spec: SubnetSpec, batch: int) -> tuple[int, ...]:
        """The NCHW input shape of `spec`'s ONNX file at `batch`."""
        return (batch, 3, spec.resolution, spec.resolution)

    def module(self, spec: SubnetSpec) -> Subnet:
        """`spec` as a standalone PyTorch module in eval mode, with the weights of its ONNX file (needs PyTorch)."""
        if self.checkpoint is not None:
            return self._checkpoint_supernet().subnet(spec).eval()
        require_torch("a PyTorch module of a subnet")
        from compofa.supernet.fresh import subnet_with_weights

        return subnet_with_weights(spec, self._width, self.weights.subnet_weights(spec))

    def describe(self) -> dict[str, Any]:
        """What identifies the measured networks (stored with every table run).

        Latency does not depend on weight values, so describing the source
        never reads a checkpoint: its weights' fingerprint is included once
        something else has read it; seeded weights are named by their generator.
        """
        design = get_space(self.space)
        description: dict[str, Any] = {
            "space": self.space,
            "family": design.family.name,
            "width": self.width,
            "checkpoint": str(self.checkpoint) if self.checkpoint else None,
            "kernel_transform": self._transform,
        }
        if self.checkpoint is None:
            from compofa.graphs.seeded import SeededWeights

            description["weights"] = SeededWeights(design.family, self._width).describe()
        elif self._weights is not None:
            description["weights"] = self._weights.fingerprint
        return description
