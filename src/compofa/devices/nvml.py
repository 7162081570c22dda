"""What an NVIDIA GPU is and what state it is in, read through NVML.

Both GPU backends record the SM clock, temperature, power and throttle reasons
with every measurement (docs/architecture.md, "How a measurement is made"): a subnet timed
while the GPU was power-capped or thermally throttled is slower for a reason
that has nothing to do with the subnet, and only these readings show it.

NVML comes from the optional nvidia-ml-py package (``pip install
'compofa[gpu]'``; it imports as ``pynvml``) and the NVIDIA driver. Nothing here
raises for a missing package, a missing driver, an unknown GPU or a refused
permission: readings are then empty, identity names the reason, and clock
control answers "not done" with the reason, so a profile still runs (without
the extra evidence) wherever the GPU itself does.

A GPU is named either by its NVML index (an ``int``) or by its UUID
(``"GPU-..."`` or ``"MIG-..."``); the UUID is what a CUDA device index should
be translated to, since NVML ignores ``CUDA_VISIBLE_DEVICES`` and orders GPUs
by PCI bus where CUDA may order them fastest first.
"""

from __future__ import annotations

import functools
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from types import ModuleType
from typing import Any

#: An NVML device index, or a GPU/MIG UUID.
GpuRef = int | str

#: NVML's clock event ("throttle") reason bits and their readable names, from
#: the nvmlClocksEventReasons defines of the NVML API reference (the older
#: nvmlClocksThrottleReason* names have the same values).
THROTTLE_REASONS: tuple[tuple[int, str], ...] = (
    (0x001, "idle"),
    (0x002, "applications clocks setting"),
    (0x004, "sw power cap"),
    (0x008, "hw slowdown"),
    (0x010, "sync boost"),
    (0x020, "sw thermal slowdown"),
    (0x040, "hw thermal slowdown"),
    (0x080, "hw power brake slowdown"),
    (0x100, "display clocks setting"),
    (0x200, "board limit"),
    (0x400, "reliability"),
)
_KNOWN_BITS = functools.reduce(lambda mask, entry: mask | entry[0], THROTTLE_REASONS, 0)

_MISSING_PACKAGE = "the nvidia-ml-py package is not installed (pip install 'compofa[gpu]')"

# Values of NVML_ERROR_* (nvml.h); compared by value so any binding works.
_NO_PERMISSION = 4
_NOT_SUPPORTED = 3
_NOT_FOUND = 6
_DRIVER_NOT_LOADED = 9
_LIBRARY_NOT_FOUND = 12
_FUNCTION_NOT_FOUND = 13


def decode_throttle_reasons(mask: int) -> list[str]:
    """The readable names of the bits set in an NVML clock event reasons mask.

    Bits this table does not know (reasons added by newer drivers) come last
    as one ``"unknown 0x..."`` entry, so nothing set is silently dropped.
    """
    names = [name for bit, name in THROTTLE_REASONS if mask & bit]
    unknown = mask & ~_KNOWN_BITS
    if unknown:
        names.append(f"unknown {unknown:#x}")
    return names


@dataclass(frozen=True)
class ClockControl:
    """The outcome of a clock lock or reset: whether it was done and, if not, why."""

    done: bool
    reason: str = ""

    def __bool__(self) -> bool:
        return self.done


def nvml_status() -> tuple[bool, str]:
    """Whether NVML can be used here, and the one-line reason when it cannot."""
    module, reason = _nvml()
    return module is not None, reason


def gpu_readings(gpu: GpuRef) -> dict[str, Any]:
    """The GPU's drifting state: clocks, temperature, power, throttle reasons.

    Keys: ``sm_clock_mhz``, ``mem_clock_mhz``, ``temperature_c``, ``power_w``,
    ``throttle_reasons`` (a list of names, see `decode_throttle_reasons`). A
    reading the GPU does not support is left out; without NVML the dict is empty.
    """
    pynvml, _ = _nvml()
    if pynvml is None:
        return {}
    try:
        handle = _handle(pynvml, gpu)
    except pynvml.NVMLError:
        return {}
    readers: dict[str, Callable[[], Any]] = {
        "sm_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_SM),
        "mem_clock_mhz": lambda: pynvml.nvmlDeviceGetClockInfo(handle, pynvml.NVML_CLOCK_MEM),
        "temperature_c": lambda: pynvml.nvmlDeviceGetTemperature(handle, pynvml.NVML_TEMPERATURE_GPU),
        "power_w": lambda: pynvml.nvmlDeviceGetPowerUsage(handle) / 1000.0,  # NVML reports milliwatts
        "throttle_reasons": lambda: decode_throttle_reasons(_event_reasons(pynvml, handle)),
    }
    return _read_all(pynvml, readers)


class NvmlEnergy:
    """The GPU's total-energy counter (NVML, millijoules since the driver loaded; Volta and later)."""

    def __init__(self, gpu: GpuRef) -> None:
        self.gpu = gpu

    def read_mj(self) -> float:
        from compofa.devices.meters import MeterError

        pynvml, reason = _nvml()
        if pynvml is None:
            raise MeterError(f"the GPU's energy counter can no longer be read: {reason}")
        try:
            return float(pynvml.nvmlDeviceGetTotalEnergyConsumption(_handle(pynvml, gpu=self.gpu)))
        except pynvml.NVMLError as error:
            raise MeterError(f"the GPU's energy counter can no longer be read ({_text(error)})") from None


def energy_counter(gpu: GpuRef) -> tuple[NvmlEnergy | None, str]:
    """The GPU's energy counter, or why it has none that can be read."""
    pynvml, reason = _nvml()
    if pynvml is None:
        return None, f"no energy counter: {reason}"
    try:
        pynvml.nvmlDeviceGetTotalEnergyConsumption(_handle(pynvml, gpu))
    except pynvml.NVMLError as error:
        code = getattr(error, "value", None)
        why = "this GPU has no total-energy counter (NVML supports it from Volta on)" if code == _NOT_SUPPORTED \
            else f"NVML cannot read the GPU's energy counter ({_text(error)})"
        return None, f"no energy counter: {why}"
    return NvmlEnergy(gpu), ""


def gpu_identity(gpu: GpuRef) -> dict[str, Any]:
    """What the GPU is: name, driver version, the driver's CUDA version, memory.

    Keys: ``name``, ``driver_version``, ``cuda_driver_version`` (``"12.4"``),
    ``memory_mib``. Without NVML, or for a GPU NVML cannot find, the only key
    is ``nvml``: the one-line reason.
    """
    pynvml, reason = _nvml()
    if pynvml is None:
        return {"nvml": reason}
    try:
        handle = _handle(pynvml, gpu)
    except pynvml.NVMLError as error:
        return {"nvml": f"NVML cannot find GPU {gpu!r} ({_text(error)})"}
    readers: dict[str, Callable[[], Any]] = {
        "name": lambda: _text(pynvml.nvmlDeviceGetName(handle)),
        "driver_version": lambda: _text(pynvml.nvmlSystemGetDriverVersion()),
        "cuda_driver_version": lambda: format_cuda_version(pynvml.nvmlSystemGetCudaDriverVersion()),
        "memory_mib": lambda: int(pynvml.nvmlDeviceGetMemoryInfo(handle).total) // 2**20,
    }
    return _read_all(pynvml, readers)


def lock_clocks(gpu: GpuRef, mhz: int) -> ClockControl:
    """Lock the GPU's SM clock at `mhz` (needs root); says why when refused.

    The driver rounds `mhz` to a clock the GPU supports. Undo with `reset_clocks`.
    """
    if mhz <= 0:
        return ClockControl(False, f"a clock of {mhz} MHz cannot be locked; give a positive number of MHz")
    return _command(
        gpu, "lock the GPU clocks", lambda nvml, handle: nvml.nvmlDeviceSetGpuLockedClocks(handle, mhz, mhz)
    )


def reset_clocks(gpu: GpuRef) -> ClockControl:
    """Give the GPU's SM clock back to the driver (undoes `lock_clocks`)."""
    return _command(gpu, "reset the GPU clocks", lambda nvml, handle: nvml.nvmlDeviceResetGpuLockedClocks(handle))


def format_cuda_version(version: int) -> str:
    """NVML's integer CUDA version (1000 * major + 10 * minor) as ``"major.minor"``."""
    return f"{version // 1000}.{version % 1000 // 10}"


@functools.lru_cache(maxsize=1)
def _nvml() -> tuple[ModuleType | None, str]:
    """pynvml, initialised once per process (readings are taken around every subnet)."""
    try:
        with warnings.catch_warnings():
            # The old `pynvml` distribution warns on import that it is deprecated.
            warnings.simplefilter("ignore", FutureWarning)
            import pynvml  # type: ignore[import-not-found, unused-ignore]
    except ImportError:
        return None, _MISSING_PACKAGE
    try:
        pynvml.nvmlInit()
    except pynvml.NVMLError as error:
        return None, _init_failure(error)
    return pynvml, ""


def _init_failure(error: Exception) -> str:
    code = getattr(error, "value", None)
    if code == _LIBRARY_NOT_FOUND:
        return "no NVIDIA driver is installed here (NVML's libnvidia-ml.so.1 was not found)"
    if code == _DRIVER_NOT_LOADED:
        return "the NVIDIA driver is not loaded (check nvidia-smi)"
    if code == _NO_PERMISSION:
        return "this user may not use NVML (check the permissions of /dev/nvidia*)"
    return f"NVML failed to start: {_text(error)}"


def _handle(pynvml: ModuleType, gpu: GpuRef) -> Any:
    if not isinstance(gpu, str):
        return pynvml.nvmlDeviceGetHandleByIndex(gpu)
    try:
        return pynvml.nvmlDeviceGetHandleByUUID(gpu)
    except pynvml.NVMLError:
        # A CUDA UUID carries no prefix; a MIG slice is "MIG-<uuid>" to NVML.
        if not gpu.startswith("GPU-"):
            raise
        return pynvml.nvmlDeviceGetHandleByUUID("MIG-" + gpu[len("GPU-"):])


def _read_all(pynvml: ModuleType, readers: dict[str, Callable[[], Any]]) -> dict[str, Any]:
    """Each reading that succeeds; one the GPU does not support is left out."""
    values: dict[str, Any] = {}
    for key, read in readers.items():
        try:
            values[key] = read()
        except pynvml.NVMLError:
            continue
    return values


def _event_reasons(pynvml: ModuleType, handle: Any) -> int:
    """The clock event reasons mask, by its current name or (older drivers and bindings) its old one."""
    current = getattr(pynvml, "nvmlDeviceGetCurrentClocksEventReasons", None)
    if current is not None:
        try:
            return int(current(handle))
        except pynvml.NVMLError as error:
            if getattr(error, "value", None) != _FUNCTION_NOT_FOUND:
                raise
    return int(pynvml.nvmlDeviceGetCurrentClocksThrottleReasons(handle))


def _command(gpu: GpuRef, action: str, call: Callable[[ModuleType, Any], None]) -> ClockControl:
    """Run an NVML device command; a refusal becomes a reason, never an exception."""
    pynvml, reason = _nvml()
    if pynvml is None:
        return ClockControl(False, f"cannot {action}: {reason}")
    try:
        call(pynvml, _handle(pynvml, gpu))
    except pynvml.NVMLError as error:
        return ClockControl(False, _refusal(action, error))
    return ClockControl(True)


def _refusal(action: str, error: Exception) -> str:
    code = getattr(error, "value", None)
    if code == _NO_PERMISSION:
        return (f"no permission to {action} (needs root; or lock them beforehand with "
                "`sudo nvidia-smi --lock-gpu-clocks`)")
    if code == _NOT_SUPPORTED:
        return f"this GPU does not support locked clocks, so NVML cannot {action}"
    if code == _NOT_FOUND:
        return f"cannot {action}: NVML does not know this GPU"
    return f"NVML could not {action}: {_text(error)}"


def _text(value: object) -> str:
    """NVML strings are bytes in older bindings and str in newer ones."""
    if isinstance(value, bytes):
        return value.decode(errors="replace")
    return str(value)
