"""ONNX Runtime backend: the CPU execution provider by default.

It times whatever ONNX file its source hands it for an item: a whole subnet, or
one layer of a lookup table. Each `prepare` opens a fresh InferenceSession (the profiler asks for one per
round: a session's memory placement is part of what varies between runs) with
a fixed number of intra-op threads (1 by default, which gives the steadiest
medians on a CPU) and inputs and outputs bound once, so a timed run is only
`run_with_iobinding`.

Precision int8 times the item's QDQ model (`devices.base.Quantization`: the
fp32 file quantized by ONNX Runtime's static quantizer, calibrated on real
images, from the source's cache), which the CPU provider runs with its int8
kernels; the fingerprint records the recipe and the calibration set's digest,
since the format decides the speed as much as the bits do.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    DeviceOptionError,
    HostRuntime,
    Int8Source,
    ItemT,
    ModelSource,
    Quantization,
    Settings,
    int8_quantization,
    package_availability,
    seeded_input,
    time_calls,
)

OPTIMIZATION_LEVELS = ("all", "extended", "basic", "disable")
DEFAULT_PROVIDER = "CPUExecutionProvider"


def availability() -> Availability:
    # loading onnxruntime (a third of a second) waits until a device is opened
    return package_availability("onnxruntime", "pip install onnxruntime")


@dataclass
class OrtSubnet(Generic[ItemT]):
    """An item's InferenceSession with its input and output bound."""

    item: ItemT
    session: Any
    binding: Any

    def output(self) -> Any:
        """The last run's output as a numpy array."""
        return self.binding.copy_outputs_to_cpu()[0]

    def close(self) -> None:
        self.binding = None
        self.session = None


class OnnxRuntimeDevice(HostRuntime, Generic[ItemT]):
    """Times the ONNX files of items (subnets or layers) with ONNX Runtime.

    Options: ``provider`` (default CPUExecutionProvider; any installed one),
    ``optimization`` (all, extended, basic, disable; default all).
    """

    name = "onnxruntime"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        import onnxruntime as ort

        unknown = set(settings.options) - {"provider", "optimization"}
        if unknown:
            raise DeviceOptionError(f"onnxruntime takes the options provider and optimization, not {sorted(unknown)}")
        if settings.precision not in ("fp32", "int8"):
            raise DeviceOptionError(
                f"onnxruntime times fp32 and int8 models, not {settings.precision}: compofa writes no fp16 ONNX "
                "graphs, and the CPU provider computes fp16 convolutions in fp32 on x86 (it casts around them); "
                "fp16 runs on cuda and tensorrt, and on openvino where the CPU computes in fp16", option="precision")
        self.settings = settings
        self.source = source
        self.quantization: Quantization | None = None
        if settings.precision == "int8":
            self.quantization = int8_quantization(source, settings, self.name)
            self._int8: Int8Source[ItemT] = source  # type: ignore[assignment]  # int8_quantization checked it
        self.provider = settings.options.get("provider", DEFAULT_PROVIDER)
        if self.provider not in ort.get_available_providers():
            raise DeviceOptionError(
                f"ONNX Runtime provider {self.provider!r} is not installed; available: "
                f"{', '.join(ort.get_available_providers())}"
            )
        self.optimization = settings.options.get("optimization", "all")
        if self.optimization not in OPTIMIZATION_LEVELS:
            raise DeviceOptionError(f"optimization must be one of {', '.join(OPTIMIZATION_LEVELS)}")
        self._ort = ort

    def fingerprint(self) -> dict[str, Any]:
        int8 = {"quantization": self.quantization.describe()} if self.quantization is not None else {}
        return self.runtime_fingerprint(onnxruntime=self._ort.__version__, provider=self.provider,
                                        optimization=self.optimization, **int8)

    def _session_options(self) -> Any:
        ort = self._ort
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.settings.threads
        options.inter_op_num_threads = 1
        options.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
        # The profiler interleaves two sessions (the subnet and the reference); an idle
        # session's workers spinning for work would steal the cores the other one times on.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        levels = {
            "all": ort.GraphOptimizationLevel.ORT_ENABLE_ALL,
            "extended": ort.GraphOptimizationLevel.ORT_ENABLE_EXTENDED,
            "basic": ort.GraphOptimizationLevel.ORT_ENABLE_BASIC,
            "disable": ort.GraphOptimizationLevel.ORT_DISABLE_ALL,
        }
        options.graph_optimization_level = levels[self.optimization]
        return options

    def prepare(self, item: ItemT) -> OrtSubnet[ItemT]:
        # The source decides what is timed: a subnet, or one layer for a lookup table,
        # each an ONNX file with one input and one output.
        batch = self.settings.batch
        path = (self._int8.int8_onnx(item, batch, self.quantization) if self.quantization is not None
                else self.source.onnx(item, batch))
        session = self._ort.InferenceSession(str(path), self._session_options(), providers=[self.provider])
        binding = session.io_binding()
        binding.bind_cpu_input("input", seeded_input(self.source.input_shape(item, self.settings.batch)))
        binding.bind_output(self.source.output_name)
        return OrtSubnet(item, session, binding)

    def time(self, handle: OrtSubnet[ItemT], n: int) -> list[float]:
        run, binding = handle.session.run_with_iobinding, handle.binding
        return time_calls(lambda: run(binding), n)


BACKEND = Backend(
    name="onnxruntime",
    summary="ONNX Runtime, CPU execution provider by default (fixed intra-op threads; fp32, int8 QDQ)",
    availability=availability,
    factory=OnnxRuntimeDevice,
    int8_recipe=lambda quantization: quantization,  # the recipe as asked: u8/s8 by default, ONNX Runtime's for x86
)
