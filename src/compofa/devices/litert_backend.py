"""LiteRT backend: the `.tflite` model a phone runs, timed by LiteRT's interpreter on this machine.

The model is the one the phone path sends (`compofa.graphs.tflite_graph`,
written straight from the subnet's plan), and the interpreter applies XNNPACK
by default, the CPU kernels a phone's LiteRT runs: a desk can preview a
phone's ranking before one is at hand. Each `prepare` builds a fresh
interpreter with a fixed number of threads and sets its input once, so a timed
run is only `Interpreter.invoke`. ai-edge-litert is imported when a device is
built (``pip install 'compofa[litert]'``).
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
    Settings,
    TfliteSource,
    package_availability,
    seeded_input,
    time_calls,
)

INSTALL = "pip install 'compofa[litert]'"
DELEGATES = ("xnnpack", "none")


def availability() -> Availability:
    return package_availability("ai_edge_litert", INSTALL, "ai-edge-litert")


def channels_last(image: Any, shape: tuple[int, ...]) -> Any:
    """`image` (laid out as the item's ONNX input, channels first) as the `.tflite` model's input of `shape`:
    the same values, so the two formats' outputs of one item can be compared."""
    if image.ndim == 4 and tuple(image.shape[i] for i in (0, 2, 3, 1)) == shape:
        return image.transpose(0, 2, 3, 1).copy()
    if tuple(image.shape) == shape:
        return image
    return seeded_input(shape)


@dataclass
class LiteRtModel(Generic[ItemT]):
    """An item's interpreter with its tensors allocated and its input set."""

    item: ItemT
    interpreter: Any
    output_index: int

    def output(self) -> Any:
        """The last run's output as a numpy array."""
        return self.interpreter.get_tensor(self.output_index).copy()

    def close(self) -> None:
        self.interpreter = None


class LiteRtDevice(HostRuntime, Generic[ItemT]):
    """Times the `.tflite` files of items with LiteRT's interpreter.

    Options: ``delegate`` (xnnpack, the default, or none: LiteRT's reference kernels).
    """

    name = "litert"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        if settings.precision != "fp32":
            raise DeviceOptionError(
                f"litert times the fp32 .tflite models compofa writes, not {settings.precision}: int8 runs on "
                "onnxruntime and openvino, fp16 on cuda and tensorrt, and on openvino where the CPU computes in fp16",
                option="precision")

        from ai_edge_litert.interpreter import Interpreter, OpResolverType

        unknown = set(settings.options) - {"delegate"}
        if unknown:
            raise DeviceOptionError(f"litert takes the option delegate, not {sorted(unknown)}")
        if not isinstance(source, TfliteSource):
            raise DeviceOptionError("litert times .tflite models, which this source cannot write")
        self.delegate = settings.options.get("delegate", "xnnpack")
        if self.delegate not in DELEGATES:
            raise DeviceOptionError(f"litert's delegate must be one of {', '.join(DELEGATES)}, not {self.delegate!r}")
        self.settings = settings
        self.source = source
        self._tflite: TfliteSource[ItemT] = source
        self._interpreter = Interpreter
        self._resolver = (OpResolverType.AUTO if self.delegate == "xnnpack"
                          else OpResolverType.BUILTIN_WITHOUT_DEFAULT_DELEGATES)

    def fingerprint(self) -> dict[str, Any]:
        return self.runtime_fingerprint(litert=importlib.metadata.version("ai-edge-litert"), delegate=self.delegate)

    def prepare(self, item: ItemT) -> LiteRtModel[ItemT]:
        path = self._tflite.tflite(item, self.settings.batch)
        interpreter = self._interpreter(model_path=str(path), num_threads=self.settings.threads,
                                        experimental_op_resolver_type=self._resolver)
        interpreter.allocate_tensors()
        (entry,) = interpreter.get_input_details()
        shape = tuple(int(side) for side in entry["shape"])
        image = channels_last(seeded_input(self.source.input_shape(item, self.settings.batch)), shape)
        interpreter.set_tensor(entry["index"], image)
        return LiteRtModel(item, interpreter, int(interpreter.get_output_details()[0]["index"]))

    def time(self, handle: LiteRtModel[ItemT], n: int) -> list[float]:
        return time_calls(handle.interpreter.invoke, n)


BACKEND = Backend(
    name="litert",
    summary="LiteRT's interpreter with XNNPACK on the .tflite models a phone runs (fixed threads)",
    availability=availability,
    factory=LiteRtDevice,
    model_format="tflite",
)
