"""The device backend contract: settings, the source protocol, the device protocol.

A backend runs one prepared item (a subnet, or one layer of a lookup table) and
times it; it knows nothing of statistics, scheduling or storage (those are the
profiler's and the tables'), nor of how networks are built: it asks its
`ModelSource`. Each backend lives in its own module and imports its heavy or
optional libraries (onnxruntime, torch, tensorrt, pynvml) only when used, so
listing devices never fails, nor imports torch, because of one library.
The registry of backends is `compofa.devices.registry`.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import re
import time
from collections.abc import Callable, Hashable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from compofa.errors import CompofaError

if TYPE_CHECKING:  # only the torch backends ever import it
    import torch

    from compofa.devices.meters import Meters


class UnknownDeviceError(CompofaError):
    """A device name that no backend is registered under."""


class DeviceUnavailableError(CompofaError):
    """A backend whose library or hardware is missing here."""


class DeviceOptionError(CompofaError):
    """An option a backend does not take, or a bad value for one."""


@dataclass(frozen=True)
class Availability:
    """Whether a backend can run here and, if not, why (a one-line reason)."""

    ok: bool
    reason: str = ""


def package_availability(module: str, install: str, package: str | None = None) -> Availability:
    """Whether `module` can be imported here, found without importing it (`compofa devices` asks every backend,
    and loading a runtime waits until a device is opened); if not, which `package` is missing and how to
    `install` it."""
    if importlib.util.find_spec(module) is None:
        return Availability(False, f"the {package or module} package is not installed ({install})")
    return Availability(True)


#: Every precision a backend may be asked for (the CLI's choices come from here); each backend refuses, in one
#: line, those it cannot compute in.
PRECISIONS = ("fp32", "fp16", "int8")
#: Activation and weight types of an int8 model, and the calibration methods, as `Quantization` names them.
INT8_TYPES = ("uint8", "int8")
CALIBRATION_METHODS = ("minmax",)


@dataclass(frozen=True)
class Quantization:
    """How an int8 model is made from an item's fp32 model: the recipe and the images it is calibrated on.

    Static quantization in the QDQ format (QuantizeLinear/DequantizeLinear pairs around fp32 operators, which a
    runtime fuses into int8 kernels), weights per output channel, activations per tensor with ranges from the
    calibration images (min-max). uint8 activations with int8 weights are ONNX Runtime's choice for x86 CPUs
    (its s8/s8 kernels shift activations to u8 there, and ran about twice as slow here; see the README), and
    weights use 7 bits (`reduce_range`): x86 CPUs without VNNI multiply u8 by s8 in pairs summed into 16 bits,
    which full-range per-channel weights saturate (on digits-trained weights int8 then agreed with fp32 on
    half of the images instead of 93%). GPUs (TensorRT) take symmetric int8 activations and full-range weights
    (`Backend.int8_recipe` says what a backend needs).

    Attributes:
        calibration: the calibration folder, as given (`compofa.sources.calibration`).
        images, seed: how many of its images, drawn with which seed.
        digest: names the chosen images (their paths and bytes): what the model's cache key and a device's
            fingerprint record, rather than the folder's name.
        activations, weights: "uint8" or "int8".
        symmetric_activations: activation ranges centred on zero (zero point 0), as TensorRT requires.
        reduce_range: weights in 7 bits (see above).
        per_channel: one weight scale per output channel.
        method: how activation ranges are found ("minmax").
    """

    calibration: str
    images: int
    seed: int
    digest: str
    activations: str = "uint8"
    weights: str = "int8"
    symmetric_activations: bool = False
    reduce_range: bool = True
    per_channel: bool = True
    method: str = "minmax"

    def __post_init__(self) -> None:
        for name in ("activations", "weights"):
            if getattr(self, name) not in INT8_TYPES:
                raise ValueError(f"{name} must be one of {', '.join(INT8_TYPES)}, got {getattr(self, name)!r}")
        if self.method not in CALIBRATION_METHODS:
            raise ValueError(f"method must be one of {', '.join(CALIBRATION_METHODS)}, got {self.method!r}")
        if self.images < 1 or not self.digest:
            raise ValueError(f"a quantization needs calibration images and their digest, got {self.images} "
                             f"and {self.digest!r}")

    def recipe(self) -> dict[str, Any]:
        """What decides the int8 model besides the images: the format and its settings."""
        return {"format": "QDQ", "per_channel": self.per_channel, "activations": self.activations,
                "weights": self.weights, "symmetric_activations": self.symmetric_activations,
                "reduce_range": self.reduce_range, "calibration_method": self.method}

    def describe(self) -> dict[str, Any]:
        """What a fingerprint records: the recipe and the calibration set (its size and digest, not its path)."""
        return {**self.recipe(), "calibration_images": self.images, "calibration_digest": self.digest}

    def to_dict(self) -> dict[str, Any]:
        return {name: getattr(self, name) for name in self.__dataclass_fields__}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Quantization:
        return cls(**{name: data[name] for name in cls.__dataclass_fields__ if name in data})


@dataclass(frozen=True)
class Settings:
    """What every backend is told: batch, precision, threads, extra options.

    `cache_dir` is where a backend may keep what it builds across runs
    (TensorRT's engines and timing caches); the jobs pass the export cache's
    folder. A backend never picks a folder of its own: with None it keeps no
    such cache unless an option names a file. `quantization` says how int8
    models are made (precision int8 needs it; other precisions ignore it).
    """

    batch: int = 1
    precision: str = "fp32"
    threads: int = 1
    options: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None
    quantization: Quantization | None = None


#: What a device times: a subnet's spec, or one layer of a lookup table (`compofa.lut.Layer`).
#: Any hashable value with a readable `str()` will do; devices never look inside it, they hand
#: it to their `ModelSource`.
ItemT = TypeVar("ItemT", bound=Hashable)
ItemT_contra = TypeVar("ItemT_contra", bound=Hashable, contravariant=True)


class ModelSource(Protocol[ItemT_contra]):
    """What a backend asks of the source of what it times, for one item at a time.

    A source of subnets (`compofa.graphs`' ``SubnetSource``) and one of single
    layers (``LayerSource``) both fit: the backend runs whatever network the
    source hands it, so the same backend times subnets and layers.
    """

    @property
    def output_name(self) -> str:
        """The name of the output of the ONNX files `onnx` hands out."""
        ...

    def onnx(self, item: ItemT_contra, batch: int) -> Path:
        """An ONNX file of `item` at `batch` (one input named ``input``)."""
        ...

    def input_shape(self, item: ItemT_contra, batch: int) -> tuple[int, ...]:
        """The input shape of `item`'s network at `batch`."""
        ...

    def module(self, item: ItemT_contra) -> torch.nn.Module:
        """`item` as a PyTorch module in eval mode (for the torch backends; imports torch)."""
        ...

    def describe(self) -> dict[str, Any]:
        """What identifies the networks handed out (stored with every run)."""
        ...


@runtime_checkable
class TfliteSource(Protocol[ItemT_contra]):
    """A source that also hands out LiteRT models, as a phone runs them (`SubnetSource`, `LayerSource`)."""

    def tflite(self, item: ItemT_contra, batch: int) -> Path:
        """A ``.tflite`` file of `item` at `batch` (input NHWC)."""
        ...


@runtime_checkable
class PteSource(Protocol[ItemT_contra]):
    """A source that also hands out ExecuTorch programs (`.pte`, lowered to XNNPACK) of its items."""

    def pte(self, item: ItemT_contra, batch: int) -> Path:
        """A ``.pte`` file of `item` at `batch` (input NCHW, as the ONNX file's)."""
        ...


@runtime_checkable
class Int8Source(Protocol[ItemT_contra]):
    """A source that also hands out int8 models of its items: the fp32 ONNX file quantized (QDQ ONNX)."""

    def int8_onnx(self, item: ItemT_contra, batch: int, quantization: Quantization) -> Path:
        """A QDQ ONNX file of `item` at `batch`, quantized as `quantization` says (input and output fp32)."""
        ...


@runtime_checkable
class OpenVinoInt8Source(Protocol[ItemT_contra]):
    """A source that also hands out OpenVINO int8 models of its items (quantized by NNCF, an IR ``.xml``)."""

    def int8_openvino(self, item: ItemT_contra, batch: int, quantization: Quantization, preset: str) -> Path:
        """The ``.xml`` of an OpenVINO IR of `item` at `batch`, its ``.bin`` beside it, quantized by NNCF with
        `preset` on the images `quantization` names."""
        ...


def int8_quantization(source: ModelSource[ItemT], settings: Settings, backend: str,
                      protocol: type = Int8Source) -> Quantization:
    """The quantization of `settings` for `backend` timing int8 models that `source` makes (`protocol`: the
    kind of source it needs), or a `DeviceOptionError` saying what is missing."""
    if settings.quantization is None:
        raise DeviceOptionError(f"{backend} int8 models are calibrated on real images: name a calibration folder",
                                option="calibration")
    if not isinstance(source, protocol):
        raise DeviceOptionError(f"{backend} int8 needs int8 models of what it times, which this source cannot make "
                                "(single layers of a lookup table are timed in fp32 or fp16; an agent times the "
                                "files it is sent)", option="precision")
    return settings.quantization


def model_file(source: ModelSource[ItemT], item: ItemT, batch: int, model_format: str,
               quantization: Quantization | None = None) -> Path:
    """The file of `item` in `model_format` (a `Backend.model_format`), quantized to int8 as `quantization`
    says where given, or why `source` cannot write one."""
    if quantization is not None:
        if model_format == "onnx" and isinstance(source, Int8Source):
            return source.int8_onnx(item, batch, quantization)
        raise DeviceOptionError(f"this source of models cannot write int8 {model_format} files", option="precision")
    if model_format == "onnx":
        return source.onnx(item, batch)
    if model_format == "tflite" and isinstance(source, TfliteSource):
        return source.tflite(item, batch)
    if model_format == "pte" and isinstance(source, PteSource):
        return source.pte(item, batch)
    raise DeviceOptionError(f"this source of models cannot write {model_format} files")


@runtime_checkable
class SpaceSource(Protocol):
    """A source of the subnets of one design space at one width: what a lookup table can estimate."""

    @property
    def space(self) -> str: ...

    @property
    def width(self) -> float | None: ...


@runtime_checkable
class Prepared(Protocol):
    """An item loaded on a device, ready to be timed; `close` frees it."""

    def close(self) -> None: ...


HandleT = TypeVar("HandleT", bound=Prepared)


class Device(Protocol[ItemT_contra, HandleT]):
    """A backend that can time items (subnets or layers), each prepared into a `HandleT`.

    `time(handle, n)` runs the prepared item `n` times and returns one
    latency per run in milliseconds (one batch each). `deterministic` backends
    (lookup tables) return estimates that need no repetition.
    `fingerprint()` is what must match for two measurements to be comparable
    (hardware, driver and library versions, settings); `conditions()` are
    readings that drift during a run (GPU clocks, temperature, throttling),
    which the profiler records before and after each item.
    """

    name: str
    settings: Settings
    deterministic: bool

    def fingerprint(self) -> dict[str, Any]: ...

    def conditions(self) -> dict[str, Any]: ...

    def prepare(self, item: ItemT_contra) -> HandleT: ...

    def time(self, handle: HandleT, n: int) -> list[float]: ...

    def close(self) -> None:
        """Undo what the device changed (locked GPU clocks); safe to call twice."""


@runtime_checkable
class Located(Protocol):
    """A device on another machine: what its runs record instead of this machine's `host_details`."""

    def details(self) -> dict[str, Any]:
        """That machine's details (``host`` first) and how it was reached, never a secret."""
        ...


@runtime_checkable
class PlanChecked(Protocol[ItemT_contra]):
    """A device that can tell before any measuring whether it can measure every planned item (a lookup table
    that lacks a resolution): a job asks first, so a plan it cannot finish writes nothing."""

    def check_plan(self, items: Sequence[ItemT_contra]) -> None:
        """Raise a `CompofaError` naming what cannot be measured and what to do."""
        ...


#: How a backend is built: from its settings and the source of what it times. Typing each
#: backend's `BACKEND` with it is what has mypy check that the backend satisfies `Device`.
DeviceFactory = Callable[[Settings, ModelSource[Any]], Device[Any, Any]]


@dataclass(frozen=True)
class Backend:
    """A backend: how to check it and how to build it."""

    name: str
    summary: str
    availability: Callable[[], Availability]
    factory: DeviceFactory
    default_batch: int = 1  # the paper's settings: 1 on CPUs and phones, 64 on GPUs
    #: The file a backend runs, which a remote device is sent: "onnx", "tflite" (LiteRT) or "pte" (ExecuTorch).
    model_format: str = "onnx"
    #: For a backend that runs int8 QDQ models: the recipe it needs made of the one asked for (TensorRT takes
    #: symmetric int8 activations only), so a remote device is sent the model that backend runs there.
    int8_recipe: Callable[[Quantization], Quantization] | None = None


def time_calls(call: Callable[[], object], n: int) -> list[float]:
    """`call` run `n` times, each run's wall time in milliseconds (nothing else inside the timed span)."""
    samples = []
    for _ in range(n):
        start = time.perf_counter_ns()
        call()
        samples.append((time.perf_counter_ns() - start) / 1e6)
    return samples


class HostRuntime:
    """What a backend running on this machine's CPU shares: its fingerprint's common part, no drifting
    readings (the reference corrects the CPU's drift), this process's memory and the CPU's energy counter
    as meters, nothing to undo on close."""

    name: str
    settings: Settings

    def runtime_fingerprint(self, **runtime: Any) -> dict[str, Any]:
        """This machine's, the backend's name, `runtime` (its library's version and options), and the settings."""
        return host_fingerprint() | {"backend": self.name, **runtime, "threads": self.settings.threads,
                                     "batch": self.settings.batch, "precision": self.settings.precision}

    def conditions(self) -> dict[str, Any]:
        return {}

    def meters(self) -> Meters:
        from compofa.devices.meters import host_meters  # what listing devices never needs

        return host_meters()

    def close(self) -> None:
        pass


def seeded_input(shape: Sequence[int]) -> Any:
    """The input every backend times an item on: the same seeded float32 array for the same shape, so the
    outputs of two backends (or two precisions) of one item can be compared."""
    import numpy as np

    return np.random.default_rng(0).standard_normal(tuple(shape)).astype(np.float32)


def cpu_model() -> str:
    """The CPU's marketing name, from /proc/cpuinfo where there is one."""
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as handle:
            for line in handle:
                match = re.match(r"model name\s*:\s*(.+)", line)
                if match:
                    return match.group(1).strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def host_fingerprint() -> dict[str, Any]:
    """What identifies the machine's compute, for every CPU-side backend.

    Only what changes latency belongs here (it decides which measurements may
    be mixed); the OS and Python versions are recorded with each run instead.
    """
    return {"cpu": cpu_model(), "cpu_count": os.cpu_count(), "machine": platform.machine()}


def host_details() -> dict[str, Any]:
    """Recorded with every run, not compared."""
    return {
        "host": platform.node(),
        "system": f"{platform.system()} {platform.release()}",
        "python": platform.python_version(),
    }
