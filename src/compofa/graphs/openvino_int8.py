"""OpenVINO's own int8 path: a subnet's fp32 ONNX graph read by OpenVINO, quantized by NNCF, cached as an IR.

NNCF (OpenVINO's quantization library) inserts FakeQuantize operations where
OpenVINO's CPU plugin runs int8 kernels, from activation statistics gathered on
the calibration images, and corrects the biases the rounding shifts (its fast
bias correction). Its presets: ``performance`` (symmetric activations and
weights, what NNCF recommends for CNNs on CPUs) and ``mixed`` (asymmetric
activations). The result is saved as an OpenVINO IR (``.xml`` with its
``.bin``) in a content-addressed cache: a file's name is a hash of the fp32
graph's bytes, the batch, the calibration set's digest, the preset, NNCF's and
OpenVINO's versions and `NNCF_WRITER_VERSION`. nncf and openvino are imported
when a model is quantized (``pip install 'compofa[openvino-int8]'``).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.metadata
import io
import json
import logging
import math
import os
import tempfile
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import numpy as np

from compofa.errors import CompofaError, ExportError

#: Bump whenever the IR written for the same inputs changes.
NNCF_WRITER_VERSION = 1
NNCF_PRESETS = ("performance", "mixed")
INSTALL = "pip install 'compofa[openvino-int8]'"


class NncfRequiredError(CompofaError):
    """OpenVINO int8 models need the nncf package and this installation has none."""


def nncf_version() -> str:
    try:
        return importlib.metadata.version("nncf")
    except importlib.metadata.PackageNotFoundError:
        raise NncfRequiredError(f"OpenVINO int8 models are quantized by NNCF: {INSTALL}") from None


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """NNCF draws a progress bar on stdout, logs to its own handler and, importing PyTorch's backend checks,
    lets torch warn on stderr: the library never prints, so all of it is held back while NNCF works."""
    import nncf

    loggers = [logging.getLogger(name) for name in ("nncf", "torch.utils.cpp_extension")]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with contextlib.redirect_stdout(io.StringIO()), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            nncf.set_log_level(logging.ERROR)
            yield
    finally:
        for logger, level in zip(loggers, levels):
            logger.setLevel(level)


def quantize_openvino(model: Path, images: np.ndarray, batch: int, preset: str, output: Path) -> Path:
    """The fp32 ONNX `model` (fixed `batch`) quantized by NNCF with `preset`, calibrated on every image of `images`
    (float32 N x C x H x W), saved as the IR `output` (``.xml``, its ``.bin`` beside it)."""
    nncf_version()  # says in one line what to install
    import openvino as ov

    if preset not in NNCF_PRESETS:
        raise ExportError(f"NNCF's preset is one of {', '.join(NNCF_PRESETS)}, not {preset!r}")
    count = math.ceil(len(images) / batch)
    # batches of the graph's size; the last one filled by going round the images again
    inputs = [images[np.arange(k * batch, (k + 1) * batch) % len(images)] for k in range(count)]
    with _quiet():
        import nncf

        presets = {"performance": nncf.QuantizationPreset.PERFORMANCE, "mixed": nncf.QuantizationPreset.MIXED}
        quantized = nncf.quantize(ov.Core().read_model(str(model)), nncf.Dataset(inputs), preset=presets[preset],
                                  target_device=nncf.TargetDevice.CPU, subset_size=count)
    ov.save_model(quantized, str(output), compress_to_fp16=False)
    return output


class OpenVinoInt8Exporter:
    """NNCF-quantized IRs in a content-addressed cache folder (see the module docstring).

    Attributes:
        hits, misses: cache lookups answered from disk / quantized now.
    """

    def __init__(self, folder: str | os.PathLike[str]) -> None:
        self.folder = Path(folder)
        self.nncf = nncf_version()
        self.openvino = importlib.metadata.version("openvino")
        self.hits = self.misses = 0

    def key(self, model: Path, batch: int, calibration_digest: str, preset: str) -> str:
        identity = {"writer": NNCF_WRITER_VERSION, "nncf": self.nncf, "openvino": self.openvino, "preset": preset,
                    "fp32": hashlib.sha256(model.read_bytes()).hexdigest(), "batch": batch,
                    "calibration": calibration_digest}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, model: Path, batch: int, calibration_digest: str, preset: str,
             images: Callable[[], np.ndarray]) -> Path:
        """The IR (``.xml``) of `model` quantized, now unless cached; `images` is asked for only then."""
        key = self.key(model, batch, calibration_digest, preset)
        xml, weights = self.folder / f"{key}.int8.xml", self.folder / f"{key}.int8.bin"
        if xml.exists() and weights.exists():
            self.hits += 1
            return xml
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"cannot create the int8 cache {str(self.folder)!r}: {error.strerror}") from None
        with tempfile.TemporaryDirectory(prefix=".compofa-nncf-", dir=self.folder) as staging:
            written = quantize_openvino(model, images(), batch, preset, Path(staging) / xml.name)
            # the weights first: an .xml in the cache always has its .bin
            os.replace(written.with_suffix(".bin"), weights)
            os.replace(written, xml)
        self.misses += 1
        return xml
