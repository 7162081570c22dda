"""What compofa's exports look like from outside, importable without onnx or torch.

Backends, sources and the CLI need these before (or without) building a graph:
the input and output names and opset of every ONNX model, the export routes and
the file types.
"""

from __future__ import annotations

import os
from pathlib import Path

from compofa.errors import ExportError
from compofa.fileio import check_output_path

#: ONNX opset of the graphs: 14 is the first with HardSwish; 17 is widely
#: supported by ONNX Runtime and TensorRT.
OPSET = 17
#: The one input: ``[batch, 3, R, R]`` float32 NCHW for a subnet, the layer's input shape for a layer.
INPUT_NAME = "input"
#: The output of a subnet's graph: ``[batch, num_classes]``.
OUTPUT_NAME = "logits"
#: The output of a one-layer graph.
LAYER_OUTPUT_NAME = "output"

#: Export routes: ``graph`` writes the ONNX graph from the subnet's plan (milliseconds, no torch);
#: ``torch`` traces the PyTorch subnet with `torch.onnx.export` (kept as an independent cross-check).
METHODS = ("graph", "torch")
#: Export file types by suffix.
SUFFIXES = {".onnx": "ONNX", ".pt": "PyTorch", ".pth": "PyTorch"}


def check_export_target(output: str | os.PathLike[str], method: str) -> str:
    """The suffix of an export's file, once its type, route and path are known to work (before any work)."""
    suffix = Path(output).suffix.lower()
    if suffix not in SUFFIXES:
        raise ExportError(f"export to a .onnx (ONNX) or .pt/.pth (PyTorch) file, not {Path(output).name!r}")
    if method not in METHODS:
        raise ExportError(f"unknown export method {method!r}; choose one of {', '.join(METHODS)}")
    check_output_path(output)
    return suffix
