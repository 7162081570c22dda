"""OpenVINO backend: reads the ONNX file of an item directly and runs it on an OpenVINO device (CPU by default).

Each `prepare` compiles the model afresh (the profiler asks for one per round,
as ONNX Runtime's sessions are), with a fixed number of inference threads, one
stream and the latency hint, and sets the input tensor once, so a timed run is
only `InferRequest.infer`. The inference precision is set explicitly: on a CPU
with bf16 or AMX units OpenVINO would otherwise pick bf16 for an fp32 model,
and a table would hold timings of another precision than it says. openvino is
imported when a device is built (``pip install 'compofa[openvino]'``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    DeviceOptionError,
    HostRuntime,
    ItemT,
    ModelSource,
    Settings,
    package_availability,
    seeded_input,
    time_calls,
)

#: compofa's precision -> OpenVINO's inference precision hint, and the capability the device must list.
PRECISION_HINTS = {"fp32": ("f32", "FP32"), "fp16": ("f16", "FP16"), "bf16": ("bf16", "BF16")}
HINTS = ("latency", "throughput")
INSTALL = "pip install 'compofa[openvino]'"


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
    ``openvino:GPU``), ``hint`` (latency or throughput, default latency).
    """

    name = "openvino"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        import openvino as ov

        unknown = set(settings.options) - {"target", "source", "hint"}
        if unknown:
            raise DeviceOptionError(f"openvino takes the options target and hint, not {sorted(unknown)}")
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
                                    f"(it lists {', '.join(capabilities) or 'nothing'}); use --precision fp32")

    def _read(self, name: str, default: Any) -> Any:
        try:
            return self._core.get_property(self.target, name)
        except RuntimeError:  # a property this device does not report
            return default

    def fingerprint(self) -> dict[str, Any]:
        return self.runtime_fingerprint(openvino=self._ov.get_version(), target=self.target,
                                        target_name=self._read("FULL_DEVICE_NAME", self.target), hint=self.hint,
                                        inference_precision=self.inference_precision)

    def _config(self) -> dict[str, str]:
        config = {
            "PERFORMANCE_HINT": self.hint.upper(),
            "INFERENCE_PRECISION_HINT": self.inference_precision,
        }
        if self.target == "CPU":
            config |= {"INFERENCE_NUM_THREADS": str(self.settings.threads), "NUM_STREAMS": "1"}
        return config

    def prepare(self, item: ItemT) -> OpenVinoModel[ItemT]:
        path = self.source.onnx(item, self.settings.batch)
        compiled = self._core.compile_model(str(path), self.target, self._config())
        request = compiled.create_infer_request()
        request.set_input_tensor(self._ov.Tensor(seeded_input(self.source.input_shape(item, self.settings.batch))))
        return OpenVinoModel(item, compiled, request)

    def time(self, handle: OpenVinoModel[ItemT], n: int) -> list[float]:
        return time_calls(handle.request.infer, n)


BACKEND = Backend(
    name="openvino",
    summary="OpenVINO, CPU by default (reads the ONNX files; fixed threads, latency hint)",
    availability=availability,
    factory=OpenVinoDevice,
)
