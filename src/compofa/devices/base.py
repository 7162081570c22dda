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


@dataclass(frozen=True)
class Settings:
    """What every backend is told: batch, precision, threads, extra options.

    `cache_dir` is where a backend may keep what it builds across runs
    (TensorRT's engines and timing caches); the jobs pass the export cache's
    folder. A backend never picks a folder of its own: with None it keeps no
    such cache unless an option names a file.
    """

    batch: int = 1
    precision: str = "fp32"
    threads: int = 1
    options: Mapping[str, str] = field(default_factory=dict)
    cache_dir: Path | None = None


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


def model_file(source: ModelSource[ItemT], item: ItemT, batch: int, model_format: str) -> Path:
    """The file of `item` in `model_format` (a `Backend.model_format`), or why `source` cannot write one."""
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
