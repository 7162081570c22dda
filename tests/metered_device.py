"""A simulated device that reads memory and energy beside time, with known values, for search and report tests.

Registered as backend "fake-metered" on import. Its latency is the "fake"
device's (`fake_device.true_latency_ms`, with its noise); the peak memory of a
subnet is `true_memory_mb` exactly and each inference costs `true_energy_mj`
exactly, read through the same `Meters` interface the profiler reads real
counters with. Option ``energy=absent`` gives a device without an energy
counter, which says why (`ABSENT_ENERGY`).
"""

from __future__ import annotations

from typing import Any

from fake_device import FakeDevice, FakeHandle, true_latency_ms

from compofa.devices import Availability, Backend, Settings, UnknownDeviceError, get_backend, register_backend
from compofa.devices.meters import ENERGY, Meters
from compofa.sources.subnet import SubnetSource
from compofa.space import SubnetSpec, get_space
from compofa.space.cost import network_cost
from compofa.space.plan import plan_subnet

ABSENT_ENERGY = "no energy counter on the simulated board"


def true_memory_mb(spec: SubnetSpec) -> float:
    """Weights and the largest activation, roughly: grows with parameters and with resolution squared."""
    plan = plan_subnet(spec, get_space(spec.space).family.default_width)
    return round(4.0 + network_cost(plan).parameters / 2.5e5 + spec.resolution**2 / 2e3, 3)


def true_energy_mj(spec: SubnetSpec) -> float:
    """A board whose power does not depend on the subnet: energy in proportion to the noise-free latency."""
    return round(0.8 * true_latency_ms(spec), 6)


class _Memory:
    def __init__(self, device: MeteredFake) -> None:
        self.device = device

    def start(self) -> None:
        self.device.current = None

    def peak_mb(self) -> float:
        assert self.device.current is not None, "peak read before an item was prepared"
        return true_memory_mb(self.device.current)


class _Energy:
    def __init__(self) -> None:
        self.total_mj = 0.0

    def read_mj(self) -> float:
        return self.total_mj


class MeteredFake(FakeDevice):
    name = "fake-metered"

    def __init__(self, settings: Settings, source: SubnetSource | None = None) -> None:
        super().__init__(settings, source)
        self.current: SubnetSpec | None = None
        self.energy = None if settings.options.get("energy") == "absent" else _Energy()

    def fingerprint(self) -> dict[str, Any]:
        return super().fingerprint() | {"backend": self.name, "energy": self.energy is not None}

    def meters(self) -> Meters:
        absent = {} if self.energy is not None else {ENERGY: ABSENT_ENERGY}
        return Meters(_Memory(self), self.energy, absent)

    def prepare(self, spec: SubnetSpec) -> FakeHandle:
        self.current = spec
        return super().prepare(spec)

    def time(self, handle: FakeHandle, n: int) -> list[float]:
        samples = super().time(handle, n)
        if self.energy is not None:
            self.energy.total_mj += n * true_energy_mj(handle.spec)
        return samples


def register() -> None:
    try:
        get_backend("fake-metered")
    except UnknownDeviceError:
        register_backend(Backend("fake-metered", "simulated device with memory and energy meters for tests",
                                 lambda: Availability(True), MeteredFake))


register()
