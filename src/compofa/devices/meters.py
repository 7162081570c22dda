"""What a device reads beside time: the inference's peak memory, and the energy each inference used.

A backend offers its meters through `Metered.meters()`; the profiler starts the
memory probe before it prepares an item and reads the peak after the item's
timed samples, and reads the energy counter around the item's timed blocks
only (never the warm-up or the reference's blocks between them). A reading
that does not exist on a device is *absent*, with the reason, never zero:
`Meters.absent` names it ("energy": "no RAPL counter ...") and every round
records it, so a table says why a field is empty.

- Memory on a CPU: the process's resident high-water mark (Linux ``VmHWM``),
  reset before the item is prepared by writing 5 to ``/proc/self/clear_refs``,
  less what was resident then. Freed heap is handed back to the system first
  (glibc's ``malloc_trim``), so the next session cannot reuse the last one's
  pages unseen. The peak covers building the session and running it.
- Energy on a CPU: RAPL's package counters (``/sys/class/powercap/intel-rapl:N/energy_uj``,
  AMD CPUs use the same interface), whose value wraps at ``max_energy_range_uj``.
  A package counter holds the whole package's energy, idle power included: per
  inference, it is what running the item cost the machine.
- On NVIDIA GPUs the CUDA allocator's peak and NVML's total-energy counter
  (`compofa.devices.nvml`), given by the GPU backends.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol, runtime_checkable

from compofa.errors import CompofaError

#: The readings a device may have beside time, as the table and search name them.
MEMORY, ENERGY = "memory", "energy"
METRICS = (MEMORY, ENERGY)
#: Bytes in a megabyte as memory is reported (decimal, as `--max-memory 300MB` reads).
BYTES_PER_MB = 1e6

POWERCAP = Path("/sys/class/powercap")
_PROC_STATUS = Path("/proc/self/status")
_CLEAR_REFS = Path("/proc/self/clear_refs")


class MeterError(CompofaError):
    """A counter that could be read when the run began and no longer can (it disappeared mid-run)."""


class MemoryProbe(Protocol):
    """The peak memory of one item, from before it is prepared until its last sample."""

    def start(self) -> None:
        """Forget the peak so far; what is resident now is the baseline."""
        ...

    def peak_mb(self) -> float:
        """The peak above the baseline since `start`, in MB."""
        ...


class EnergyCounter(Protocol):
    """A cumulative energy counter."""

    def read_mj(self) -> float:
        """The energy counted so far, in millijoules (monotone: wrap-arounds are unfolded)."""
        ...


@dataclass(frozen=True)
class Meters:
    """A device's meters; `absent` says, per metric it cannot read (`METRICS`), why not."""

    memory: MemoryProbe | None = None
    energy: EnergyCounter | None = None
    absent: Mapping[str, str] = field(default_factory=dict)


@runtime_checkable
class Metered(Protocol):
    """A device that reads more than time (every backend on this machine's CPU, the GPU backends)."""

    def meters(self) -> Meters: ...


# -- memory of this process ---------------------------------------------------------------


def _status_kb(name: str) -> int:
    with open(_PROC_STATUS, encoding="ascii") as handle:
        for line in handle:
            if line.startswith(name + ":"):
                return int(line.split()[1])
    raise MeterError(f"{_PROC_STATUS} has no {name} line")


@functools.cache
def _malloc_trim() -> Callable[[int], int] | None:
    name = ctypes.util.find_library("c")
    if not name:
        return None
    try:
        trim: Callable[[int], int] = ctypes.CDLL(name).malloc_trim
    except (OSError, AttributeError):  # not glibc: freed memory stays with the allocator
        return None
    return trim


class ProcessMemory:
    """This process's resident high-water mark over an item's session (Linux)."""

    def __init__(self) -> None:
        self._baseline_kb = 0

    def start(self) -> None:
        trim = _malloc_trim()
        if trim is not None:
            trim(0)
        try:
            _CLEAR_REFS.write_text("5")
            self._baseline_kb = _status_kb("VmRSS")
        except OSError as error:
            raise MeterError(f"the resident memory high-water mark can no longer be reset ({error.strerror})"
                             ) from None

    def peak_mb(self) -> float:
        try:
            peak_kb = _status_kb("VmHWM")
        except OSError as error:
            raise MeterError(f"the resident memory high-water mark can no longer be read ({error.strerror})"
                             ) from None
        return max(0, peak_kb - self._baseline_kb) * 1024 / BYTES_PER_MB


def process_memory() -> tuple[ProcessMemory | None, str]:
    """The probe of this process's memory, or why there is none here."""
    try:
        _status_kb("VmHWM")
        with open(_CLEAR_REFS, "w", encoding="ascii") as handle:
            handle.write("5")
    except (OSError, MeterError):
        return None, ("no resettable resident-memory high-water mark here (needs Linux's /proc/self/status VmHWM "
                      "and a writable /proc/self/clear_refs)")
    return ProcessMemory(), ""


# -- energy of the CPU package (RAPL) -------------------------------------------------------


class RaplEnergy:
    """The sum of RAPL's package counters, their wrap-arounds unfolded."""

    def __init__(self, domains: list[Path]) -> None:
        self.domains = domains
        self._ranges = [int((domain / "max_energy_range_uj").read_text()) for domain in domains]
        self._last = [self._raw(domain) for domain in domains]
        self._total_uj = 0

    @staticmethod
    def _raw(domain: Path) -> int:
        try:
            return int((domain / "energy_uj").read_text())
        except (OSError, ValueError) as error:
            raise MeterError(f"the RAPL energy counter {domain / 'energy_uj'} can no longer be read ({error})"
                             ) from None

    def read_mj(self) -> float:
        for index, domain in enumerate(self.domains):
            value = self._raw(domain)
            step = value - self._last[index]
            self._total_uj += step if step >= 0 else step + self._ranges[index]
            self._last[index] = value
        return self._total_uj / 1000


def rapl_energy(root: Path = POWERCAP) -> tuple[RaplEnergy | None, str]:
    """The CPU packages' energy counter, or why this machine has none that can be read."""
    if not root.is_dir():
        return None, f"no energy counter: this machine has no RAPL interface ({root} does not exist)"
    # Package domains are named intel-rapl:N (on AMD CPUs too); intel-rapl:N:M are their parts.
    domains = sorted(p for p in root.glob("intel-rapl:*") if p.name.count(":") == 1)
    if not domains:
        return None, f"no energy counter: {root} has no RAPL package domain"
    try:
        return RaplEnergy(domains), ""
    except (OSError, ValueError, MeterError) as error:
        return None, f"no readable energy counter: RAPL's energy_uj cannot be read here ({error}; it may need root)"


@functools.cache
def host_meters() -> Meters:
    """This machine's meters for a backend running on its CPU (looked for once per process)."""
    memory, memory_absent = process_memory()
    energy, energy_absent = rapl_energy()
    absent = {name: why for name, why in ((MEMORY, memory_absent), (ENERGY, energy_absent)) if why}
    return Meters(memory, energy, absent)
