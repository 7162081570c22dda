"""OpenVINO backend: reads the ONNX file of an item directly and runs it on an OpenVINO device (CPU by default).

Each `prepare` compiles the model afresh (the profiler asks for one per round,
as ONNX Runtime's sessions are), with a fixed number of inference threads, one
stream and the latency hint, and sets the input tensor once, so a timed run is
only `InferRequest.infer`. The inference precision is set explicitly: on a CPU
with bf16 or AMX units OpenVINO would otherwise pick bf16 for an fp32 model,
and a table would hold timings of another precision than it says. openvino is
imported when a device is built (``pip install 'compofa[openvino]'``).

Precision int8 is OpenVINO's own int8 path: the source quantizes the item's
model with NNCF (``pip install 'compofa[openvino-int8]'``) on the calibration
images and hands over an IR, which the CPU plugin runs with int8 kernels (the
layers NNCF leaves in float stay fp32); the fingerprint records NNCF's version,
its preset and the calibration set's digest.
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    DeviceOptionError,
    HostRuntime,
    ItemT,
    ModelSource,
    OpenVinoInt8Source,
    Quantization,
    Settings,
    int8_quantization,
    package_availability,
    seeded_input,
    time_calls,
)

#: compofa's precision -> OpenVINO's inference precision hint, and the capability the device must list. An int8
#: model computes its quantized layers in int8 and the rest in fp32 (not bf16 on a CPU that has it).
PRECISION_HINTS = {"fp32": ("f32", "FP32"), "fp16": ("f16", "FP16"), "bf16": ("bf16", "BF16"), "int8": ("f32", "INT8")}
HINTS = ("latency", "throughput")
#: NNCF's presets (`compofa.graphs.openvino_int8`): symmetric activations (NNCF's advice for CNNs on CPUs) or not.
NNCF_PRESETS = ("performance", "mixed")
INSTALL = "pip install 'compofa[openvino]'"
INT8_INSTALL = "pip install 'compofa[openvino-int8]'"


def availability() -> Availability:
    return package_availability("openvino", INSTALL)


@dataclass
class OpenVinoModel(Generic[ItemT]):
    """An item compiled for the device, with an infer request whose input is set."""

    item: ItemT
    compiled: Any
    request: Any

    def output(self) -> Any:
        """The last run's output as a numpy array."""
        return self.request.get_output_tensor(0).data.copy()

    def close(self) -> None:
        self.request = None
        self.compiled = None


class OpenVinoDevice(HostRuntime, Generic[ItemT]):
    """Times the ONNX files of items (subnets or layers) with OpenVINO.

    Options: ``target`` (the OpenVINO device, default CPU; also given as
    ``openvino:GPU``), ``hint`` (latency or throughput, default latency),
    ``preset`` (int8 only: NNCF's performance, the default, or mixed).
    """

    name = "openvino"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        import openvino as ov

        unknown = set(settings.options) - {"target", "source", "hint", "preset"}
        if unknown:
            raise DeviceOptionError(f"openvino takes the options target, hint and preset, not {sorted(unknown)}")
        self.settings = settings
        self.source = source
        self.target = settings.options.get("target", settings.options.get("source", "CPU")).upper()
        self.hint = settings.options.get("hint", "latency")
        if self.hint not in HINTS:
            raise DeviceOptionError(f"openvino's hint must be one of {', '.join(HINTS)}, not {self.hint!r}")
        self._ov = ov
        self._core = ov.Core()
        available = self._core.available_devices
        if self.target not in available:
            raise DeviceOptionError(f"OpenVINO device {self.target!r} is not present here; present: "
                                    f"{', '.join(available) or 'none'}")
        if settings.precision not in PRECISION_HINTS:
            raise DeviceOptionError(f"openvino profiles precision {', '.join(PRECISION_HINTS)}, "
                                    f"not {settings.precision!r}")
        self.inference_precision, capability = PRECISION_HINTS[settings.precision]
        capabilities = self._read("OPTIMIZATION_CAPABILITIES", [])
        if capability not in capabilities:
            raise DeviceOptionError(f"OpenVINO's {self.target} device here cannot compute in {settings.precision} "
                                    f"(it lists {', '.join(capabilities) or 'nothing'}); use --precision fp32",
                                    option="precision")
        self.preset = settings.options.get("preset", "performance")
        self.quantization: Quantization | None = None
        if settings.precision == "int8":
            self._nncf = self._int8_setup(source, settings)
        elif "preset" in settings.options:
            raise DeviceOptionError("openvino's preset says how NNCF quantizes int8 models; at precision "
                                    f"{settings.precision} there is none", option="precision")

    def _int8_setup(self, source: ModelSource[ItemT], settings: Settings) -> str:
        """Check what int8 needs (NNCF, a source that makes OpenVINO int8 models, a preset); NNCF's version."""
        if self.preset not in NNCF_PRESETS:
            raise DeviceOptionError(f"openvino's preset must be one of {', '.join(NNCF_PRESETS)}, not {self.preset!r}")
        status = package_availability("nncf", INT8_INSTALL)
        if not status.ok:
            raise DeviceOptionError(f"OpenVINO int8 models are quantized by NNCF, and {status.reason}")
        self.quantization = int8_quantization(source, settings, self.name, OpenVinoInt8Source)
        self._int8: OpenVinoInt8Source[ItemT] = source  # type: ignore[assignment]  # int8_quantization checked it
        return importlib.metadata.version("nncf")

    def _read(self, name: str, default: Any) -> Any:
        try:
            return self._core.get_property(self.target, name)
        except RuntimeError:  # a property this device does not report
            return default

    def fingerprint(self) -> dict[str, Any]:
        int8 = {}
        if self.quantization is not None:
            int8 = {"quantization": {"quantizer": "nncf", "nncf": self._nncf, "preset": self.preset,
                                     "calibration_images": self.quantization.images,
                                     "calibration_digest": self.quantization.digest}}
        return self.runtime_fingerprint(openvino=self._ov.get_version(), target=self.target,
                                        target_name=self._read("FULL_DEVICE_NAME", self.target), hint=self.hint,
                                        inference_precision=self.inference_precision, **int8)

    def _config(self) -> dict[str, str]:
        config = {
            "PERFORMANCE_HINT": self.hint.upper(),
            "INFERENCE_PRECISION_HINT": self.inference_precision,
        }
        if self.target == "CPU":
            config |= {"INFERENCE_NUM_THREADS": str(self.settings.threads), "NUM_STREAMS": "1"}
        return config

    def prepare(self, item: ItemT) -> OpenVinoModel[ItemT]:
        batch = self.settings.batch
        path = (self._int8.int8_openvino(item, batch, self.quantization, self.preset) if self.quantization is not None
                else self.source.onnx(item, batch))
        compiled = self._core.compile_model(str(path), self.target, self._config())
        request = compiled.create_infer_request()
        request.set_input_tensor(self._ov.Tensor(seeded_input(self.source.input_shape(item, self.settings.batch))))
        return OpenVinoModel(item, compiled, request)

    def time(self, handle: OpenVinoModel[ItemT], n: int) -> list[float]:
        return time_calls(handle.request.infer, n)


BACKEND = Backend(
    name="openvino",
    summary="OpenVINO, CPU by default (reads the ONNX files; fixed threads, latency hint; int8 through NNCF)",
    availability=availability,
    factory=OpenVinoDevice,
)
