"""A simulated device for profiler and table tests: known latencies, controlled noise and drift.

Registered as backend "fake" on import. Its latency for a subnet is a fixed
function of the subnet's MACs, multiplied by a drift factor that can step at a
given run count, and by right-skewed noise (interruptions only add time).
Options (strings, as from the CLI's -O): noise, step_at, step, fail_after;
sleep (spend this share of each sample's latency in real time, so that a
separate process can be interrupted mid-run); busy and busy_every (a busy
machine: every `busy_every` runs its speed jumps to a random factor in
[1, 1 + busy], so rounds keep being discarded); disturb, disturb_from and
disturb_until (other work on the machine: from run `disturb_from` up to run
`disturb_until`, default the whole run, each sample takes up to `disturb`
longer, at random, so the reference's samples spread); fill_at and fill_path (at that
run, fill the disk holding fill_path with one file until it is full); powercap (a folder laid out as Linux's
/sys/class/powercap: the device reads its energy from that RAPL counter, and every sample adds 2 mJ per
millisecond of latency to it, wrapping at max_energy_range_uj) and vanish_at (at that run the counter's file
disappears, as a counter can mid-run).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from compofa.devices import Availability, Backend, Settings, UnknownDeviceError, get_backend, register_backend
from compofa.devices.meters import ENERGY, MEMORY, Meters, rapl_energy
from compofa.sources.subnet import SubnetSource
from compofa.space import SubnetSpec, get_space
from compofa.space.cost import network_cost
from compofa.space.plan import plan_subnet


def true_latency_ms(spec: SubnetSpec, width: float | None = None) -> float:
    family = get_space(spec.space).family
    return 1.0 + network_cost(plan_subnet(spec, width or family.default_width)).macs / 1e8


@dataclass
class FakeHandle:
    spec: SubnetSpec
    closed: bool = False

    def close(self) -> None:
        self.closed = True


class FakeDevice:
    name = "fake"
    deterministic = False

    def __init__(self, settings: Settings, source: SubnetSource | None = None) -> None:
        self.settings = settings
        options = settings.options
        self.noise = float(options.get("noise", "0.01"))
        self.step_at = int(options.get("step_at", "0")) or None
        self.step = float(options.get("step", "1.0"))
        self.fail_after = int(options.get("fail_after", "0")) or None
        self.sleep = float(options.get("sleep", "0"))
        self.busy = float(options.get("busy", "0"))
        self.busy_every = int(options.get("busy_every", "5"))
        self.disturb = float(options.get("disturb", "0"))
        self.disturb_from = int(options.get("disturb_from", "0"))
        self.disturb_until = int(options.get("disturb_until", "0")) or None
        self.speed = 1.0
        self.fill_at = int(options.get("fill_at", "0")) or None
        self.fill_path = options.get("fill_path")
        self.powercap = Path(options["powercap"]) if "powercap" in options else None
        self.vanish_at = int(options.get("vanish_at", "0")) or None
        self.rng = np.random.default_rng(int(options.get("seed", "0")))
        self.runs = 0
        self.prepared: list[SubnetSpec] = []

    def fingerprint(self) -> dict[str, Any]:
        return {"backend": "fake", "batch": self.settings.batch, "precision": self.settings.precision,
                "noise": self.noise}

    def conditions(self) -> dict[str, Any]:
        return {}

    def meters(self) -> Meters:
        """RAPL energy from `powercap` when given; no memory probe (a simulated device allocates nothing)."""
        if self.powercap is None:
            return Meters()
        energy, why = rapl_energy(self.powercap)
        return Meters(None, energy, {MEMORY: "a simulated device", **({ENERGY: why} if why else {})})

    def _spend_energy(self, sample_ms: float) -> None:
        if self.powercap is None:
            return
        counter = self.powercap / "intel-rapl:0" / "energy_uj"
        if self.vanish_at is not None and self.runs >= self.vanish_at:
            counter.unlink(missing_ok=True)
            return
        limit = int((self.powercap / "intel-rapl:0" / "max_energy_range_uj").read_text())
        counter.write_text(str((int(counter.read_text()) + round(sample_ms * 2000)) % limit))

    def close(self) -> None:
        pass

    def prepare(self, spec: SubnetSpec) -> FakeHandle:
        self.prepared.append(spec)
        return FakeHandle(spec)

    def time(self, handle: FakeHandle, n: int) -> list[float]:
        assert not handle.closed, "timing a closed handle"
        samples = []
        for _ in range(n):
            self.runs += 1
            if self.fail_after is not None and self.runs > self.fail_after:
                raise KeyboardInterrupt
            if self.fill_at is not None and self.runs == self.fill_at and self.fill_path:
                fill_disk(self.fill_path)
            drift = self.step if self.step_at is not None and self.runs >= self.step_at else 1.0
            if self.busy and self.runs % self.busy_every == 0:
                self.speed = 1 + self.busy * float(self.rng.random())
            noise = 1 + self.noise * abs(self.rng.standard_normal())
            if self.disturb and self.runs >= self.disturb_from and (self.disturb_until is None
                                                                    or self.runs < self.disturb_until):
                noise *= 1 + self.disturb * float(self.rng.random())
            sample = true_latency_ms(handle.spec) * drift * self.speed * noise
            if self.sleep:
                time.sleep(sample * self.sleep / 1000)
            self._spend_energy(sample)
            samples.append(sample)
        return samples


def fill_disk(path: str) -> None:
    """Write zeros to `path` until its file system has no space left."""
    block = bytes(4096)
    with open(path, "ab", buffering=0) as handle:
        try:
            while True:
                handle.write(block)
        except OSError:
            pass
    with open(path, "ab", buffering=0) as handle:  # the last partial block, byte by byte
        try:
            while True:
                handle.write(b"\0")
        except OSError:
            pass


def register() -> None:
    try:
        get_backend("fake")
    except UnknownDeviceError:
        register_backend(Backend("fake", "simulated device for tests", lambda: Availability(True), FakeDevice))


register()
