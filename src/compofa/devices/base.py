"""The device backend contract and its registry.

A backend runs one prepared subnet and times it; it knows nothing of
statistics, scheduling or storage (those are the profiler's and the tables').
Each backend lives in its own module and imports its heavy or optional
libraries (onnxruntime, tensorrt, pynvml) only when used, so listing devices
never fails because one library is missing.
"""

from __future__ import annotations

import os
import platform
import re
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Mapping, Protocol, runtime_checkable

from compofa.errors import CompofaError
from compofa.registry import Registry
from compofa.space import SubnetSpec

if TYPE_CHECKING:  # listing or opening a lookup table never needs torch
    from compofa.supernet.source import SubnetSource


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


@dataclass(frozen=True)
class Settings:
    """What every backend is told: batch, precision, threads, extra options."""

    batch: int = 1
    precision: str = "fp32"
    threads: int = 1
    options: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class PreparedSubnet(Protocol):
    """A subnet loaded on a device, ready to be timed; `close` frees it."""

    spec: SubnetSpec

    def close(self) -> None: ...


@runtime_checkable
class Device(Protocol):
    """A backend that can time subnets.

    `time(handle, n)` runs the prepared subnet `n` times and returns one
    latency per run in milliseconds (one batch each). `deterministic` backends
    (lookup tables) return estimates that need no repetition.
    `fingerprint()` is what must match for two measurements to be comparable
    (hardware, driver and library versions, settings); `conditions()` are
    readings that drift during a run (GPU clocks, temperature, throttling),
    which the profiler records before and after each subnet.
    """

    name: str
    settings: Settings
    deterministic: bool

    def fingerprint(self) -> dict[str, Any]: ...

    def conditions(self) -> dict[str, Any]: ...

    def prepare(self, spec: SubnetSpec) -> PreparedSubnet: ...

    def time(self, handle: PreparedSubnet, n: int) -> list[float]: ...

    def close(self) -> None:
        """Undo what the device changed (locked GPU clocks); safe to call twice."""


@dataclass(frozen=True)
class Backend:
    """A registered backend: how to check it and how to build it."""

    name: str
    summary: str
    availability: Callable[[], Availability]
    factory: Callable[[Settings, "SubnetSource"], Device]
    default_batch: int = 1  # the paper's settings: 1 on CPUs and phones, 64 on GPUs


_BACKENDS: Registry[Backend] = Registry("device", UnknownDeviceError, "see `compofa devices`")


def register_backend(backend: Backend) -> Backend:
    return _BACKENDS.register(backend.name, backend)


def list_backends() -> tuple[Backend, ...]:
    _load_builtin()
    return _BACKENDS.values()


def get_backend(name: str) -> Backend:
    """The backend of a device name (``lut:note10`` is the ``lut`` backend)."""
    _load_builtin()
    return _BACKENDS.get(name.split(":", 1)[0])


def open_device(name: str, source: SubnetSource, settings: Settings | None = None) -> Device:
    """Build the backend `name` timing subnets of `source`, or explain why it cannot run here."""
    backend = get_backend(name)
    status = backend.availability()
    if not status.ok:
        raise DeviceUnavailableError(f"device {backend.name!r} is not available here: {status.reason}")
    settings = settings or Settings()
    if ":" in name:
        settings = Settings(settings.batch, settings.precision, settings.threads,
                            {**settings.options, "source": name.split(":", 1)[1]})
    return backend.factory(settings, source)


def _load_builtin() -> None:
    # Importing the modules registers them; their heavy imports stay lazy.
    from compofa.devices import builtin  # noqa: F401


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
