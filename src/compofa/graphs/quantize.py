"""Quantize ONNX graphs to int8 with ONNX Runtime's static quantizer, and cache what it writes.

The format is QDQ: QuantizeLinear/DequantizeLinear pairs around the fp32
operators, which ONNX Runtime fuses into int8 kernels at session start (and
which TensorRT and OpenVINO read as explicit quantization). Weights get one
scale per output channel; each activation one range, found by running the fp32
graph on calibration images (min-max). The graph keeps fp32 input and output,
so a backend feeds it what it feeds the fp32 graph.

Quantizing costs seconds a subnet (calibration runs the graph on every image),
so `Int8Exporter` keeps each result in a content-addressed cache: a file's name
is a hash of the fp32 graph's bytes (which name its weights), the calibration
set's digest, the settings, the batch, ONNX Runtime's version and
`QUANTIZER_VERSION`, so a changed input can never serve a stale model.
onnxruntime.quantization is imported when a graph is quantized.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from compofa.errors import ExportError
from compofa.fileio import atomic_output, check_output_path

#: Bump whenever the file written for the same inputs changes.
QUANTIZER_VERSION = 1
INT8_SUFFIX = ".int8.onnx"
#: Calibration batches whose activations are held at once: ONNX Runtime keeps every intermediate output of the
#: batches of one pass (tens of MB an image), so a pass is bounded and the passes' ranges merged (min of minima,
#: max of maxima: the same ranges as one pass over everything).
IMAGES_PER_PASS = 8


class QdqRecipe(Protocol):
    """How a graph is quantized (`compofa.devices.Quantization` is one, and says what each setting means)."""

    @property
    def activations(self) -> str: ...

    @property
    def weights(self) -> str: ...

    @property
    def per_channel(self) -> bool: ...

    @property
    def symmetric_activations(self) -> bool: ...

    @property
    def reduce_range(self) -> bool: ...

    @property
    def method(self) -> str: ...


def recipe_fields(recipe: QdqRecipe) -> dict[str, Any]:
    """The settings of `recipe` as plain values (a cache key and the model's metadata hold them)."""
    return {"activations": recipe.activations, "weights": recipe.weights, "per_channel": recipe.per_channel,
            "symmetric_activations": recipe.symmetric_activations, "reduce_range": recipe.reduce_range,
            "method": recipe.method}


class _Batches:
    """ONNX Runtime's calibration reader over `images` in batches of `batch` (the graph's fixed batch).

    The last batch, and passes short of `per_pass` batches, are filled by going round the images again:
    a repeated image leaves min-max ranges as they are.
    """

    def __init__(self, images: np.ndarray, batch: int, input_name: str) -> None:
        self.images, self.batch, self.input_name = images, batch, input_name
        count = math.ceil(len(images) / batch)
        self.per_pass = max(1, min(count, IMAGES_PER_PASS // batch))
        self.count = math.ceil(count / self.per_pass) * self.per_pass
        self.next, self.end = 0, self.count

    def __len__(self) -> int:
        return self.count

    def set_range(self, start_index: int, end_index: int) -> None:
        self.next, self.end = start_index, end_index

    def get_next(self) -> dict[str, np.ndarray] | None:
        if self.next >= self.end:
            return None
        rows = np.arange(self.next * self.batch, (self.next + 1) * self.batch) % len(self.images)
        self.next += 1
        return {self.input_name: self.images[rows]}


@contextmanager
def _without_preprocessing_advice() -> Iterator[None]:
    """Drop the quantizer's advice to pre-process (it logs it through the root logger, which would print it):
    compofa's graphs already have what pre-processing gives (every shape fixed, BatchNorm folded)."""
    def advice(record: logging.LogRecord) -> bool:
        return "pre-processing" not in str(record.msg)

    root = logging.getLogger()
    root.addFilter(advice)
    try:
        yield
    finally:
        root.removeFilter(advice)


def quantize_qdq(model: str | os.PathLike[str], output: str | os.PathLike[str], images: np.ndarray, batch: int,
                 recipe: QdqRecipe, metadata: dict[str, str] | None = None, durable: bool = True) -> Path:
    """Write `model` (fp32 ONNX, one input of fixed `batch`) quantized as `recipe` says, calibrated on `images`
    (float32, N x C x H x W, as the model's input takes them), to `output` (atomically, self-contained)."""
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    target = check_output_path(output)
    if len(images) == 0:
        raise ExportError("quantizing needs at least one calibration image")
    types = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}
    methods = {"minmax": CalibrationMethod.MinMax}
    input_name = onnx.load(str(model), load_external_data=False).graph.input[0].name
    reader = _Batches(images, batch, input_name)
    options = {"CalibStridedMinMax": reader.per_pass, "ActivationSymmetric": recipe.symmetric_activations,
               "WeightSymmetric": True}
    with tempfile.TemporaryDirectory(prefix="compofa-int8-") as folder, _without_preprocessing_advice():
        written = Path(folder) / "model.onnx"
        quantize_static(str(model), str(written), reader, quant_format=QuantFormat.QDQ,
                        per_channel=recipe.per_channel, reduce_range=recipe.reduce_range,
                        activation_type=types[recipe.activations], weight_type=types[recipe.weights],
                        calibrate_method=methods[recipe.method], extra_options=options)
        quantized = onnx.load(str(written))
    for key, value in (metadata or {}).items():
        entry = quantized.metadata_props.add()
        entry.key, entry.value = key, value
    with atomic_output(target, durable=durable) as handle:
        handle.write(quantized.SerializeToString())
    return target


def onnxruntime_version() -> str:
    import onnxruntime

    return str(onnxruntime.__version__)


class Int8Exporter:
    """Quantized graphs in a content-addressed cache folder (see the module docstring).

    Attributes:
        hits, misses: cache lookups answered from disk / quantized now.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.version = onnxruntime_version()
        self.hits = self.misses = 0

    def key(self, model: Path, batch: int, calibration_digest: str, recipe: QdqRecipe) -> str:
        identity = {"quantizer": QUANTIZER_VERSION, "onnxruntime": self.version,
                    "fp32": hashlib.sha256(model.read_bytes()).hexdigest(), "batch": batch,
                    "calibration": calibration_digest, "recipe": recipe_fields(recipe)}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, model: Path, batch: int, calibration_digest: str, recipe: QdqRecipe,
             images: Callable[[], np.ndarray]) -> Path:
        """The int8 graph of `model` (fp32, at `batch`), quantized now unless cached; `images` gives the
        calibration images, asked for only then."""
        target = self.folder / f"{self.key(model, batch, calibration_digest, recipe)}{INT8_SUFFIX}"
        if target.exists():
            self.hits += 1
            return target
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"cannot create the int8 cache {str(self.folder)!r}: {error.strerror}") from None
        metadata = {"compofa.quantization": json.dumps({"format": "QDQ", **recipe_fields(recipe), "calibration":
                                                        calibration_digest, "onnxruntime": self.version})}
        quantize_qdq(model, target, images(), batch, recipe, metadata, durable=False)  # a cache: redone if lost
        self.misses += 1
        return target
