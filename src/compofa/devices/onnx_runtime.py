"""ONNX Runtime backend: the CPU execution provider by default.

It times whatever ONNX file its source hands it for an item: a whole subnet, or
one layer of a lookup table. Each `prepare` opens a fresh InferenceSession (the profiler asks for one per
round: a session's memory placement is part of what varies between runs) with
a fixed number of intra-op threads (1 by default, which gives the steadiest
medians on a CPU) and inputs and outputs bound once, so a timed run is only
`run_with_iobinding`.
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
        if settings.precision != "fp32":
            raise DeviceOptionError(f"onnxruntime profiles fp32 models; got precision {settings.precision!r}")
        self.settings = settings
        self.source = source
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
        return self.runtime_fingerprint(onnxruntime=self._ort.__version__, provider=self.provider,
                                        optimization=self.optimization)

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
        path = self.source.onnx(item, self.settings.batch)
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
    summary="ONNX Runtime, CPU execution provider by default (fixed intra-op threads)",
    availability=availability,
    factory=OnnxRuntimeDevice,
)
