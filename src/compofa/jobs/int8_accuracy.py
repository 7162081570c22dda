"""The accuracy of what int8 deployment ships: a subnet quantized by ONNX Runtime, evaluated with ONNX Runtime.

`compofa eval --precision int8` scores each subnet the way its int8 latency is
measured: the subnet, its BatchNorm recalibrated as for fp32, is written as an
ONNX graph (BatchNorm folded) and quantized with the same recipe (QDQ,
per-channel weights, min-max activation ranges, `compofa.graphs.quantize`),
calibrated on a seeded subset of the training images read and preprocessed
without torch (`compofa.sources.calibration`), then run by ONNX Runtime's CPU
provider over the validation set. The graph is written with a free batch
dimension, so calibration runs one image at a time (bounded memory) and
evaluation runs whole batches.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from compofa.devices.base import Quantization
from compofa.graphs.interface import INPUT_NAME
from compofa.graphs.onnx_graph import StateDictWeights, build_onnx_model
from compofa.graphs.quantize import quantize_qdq
from compofa.sources.calibration import CalibrationSet
from compofa.space import SubnetSpec
from compofa.space.plan import NetworkPlan

#: The name of the free batch dimension of the graphs evaluated.
BATCH_DIMENSION = "batch"


def write_free_batch_onnx(subnet: torch.nn.Module, plan: NetworkPlan, bn_eps: float, path: Path) -> Path:
    """`subnet` (eval mode, its BatchNorm statistics as they are now) as a self-contained fp32 ONNX graph whose
    batch dimension is free."""
    import onnx

    arrays = {name: tensor.detach().cpu().numpy() for name, tensor in subnet.state_dict().items()}
    model = build_onnx_model(plan, StateDictWeights(arrays, bn_eps), 1).to_proto()
    for value in (*model.graph.input, *model.graph.output):
        value.type.tensor_type.shape.dim[0].dim_param = BATCH_DIMENSION
    onnx.save(model, str(path))
    return path


def score_int8(subnet: torch.nn.Module, spec: SubnetSpec, plan: NetworkPlan, bn_eps: float, recipe: Quantization,
               calibration: CalibrationSet, validation: Iterable[tuple[torch.Tensor, torch.Tensor]], threads: int
               ) -> tuple[int, int, int]:
    """(top-1 hits, top-5 hits, images) of `subnet` quantized as `recipe` says, calibrated on `calibration`,
    over the `validation` batches (images as the evaluation transform gives them, labels)."""
    import onnxruntime as ort

    with tempfile.TemporaryDirectory(prefix="compofa-eval-int8-") as folder:
        fp32 = write_free_batch_onnx(subnet, plan, bn_eps, Path(folder) / "fp32.onnx")
        int8 = quantize_qdq(fp32, Path(folder) / "int8.onnx", calibration.arrays(spec.resolution), 1, recipe,
                            durable=False)
        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        session = ort.InferenceSession(str(int8), options, providers=["CPUExecutionProvider"])
    return _top_hits(session, validation)


def _top_hits(session: Any, validation: Iterable[tuple[torch.Tensor, torch.Tensor]]) -> tuple[int, int, int]:
    top1 = top5 = seen = 0
    for images, labels in validation:
        logits = session.run(None, {INPUT_NAME: images.numpy()})[0]
        best = np.argsort(-logits, axis=1, kind="stable")[:, :5]
        truth = labels.numpy()[:, None]
        top1 += int((best[:, :1] == truth).sum())
        top5 += int((best == truth).any(axis=1).sum())
        seen += len(truth)
    return top1, top5, seen
