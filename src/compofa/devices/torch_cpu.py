"""PyTorch eager on the CPU, with a fixed number of threads."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import torch

from compofa.devices.base import Availability, Backend, DeviceOptionError, Settings, host_fingerprint, register_backend
from compofa.space import SubnetSpec
from compofa.supernet.network import Subnet
from compofa.supernet.source import SubnetSource


@dataclass
class TorchSubnet:
    spec: SubnetSpec
    module: Subnet | None
    image: torch.Tensor

    def close(self) -> None:
        self.module = None


class TorchCpuDevice:
    """Times subnets as PyTorch eager modules on the CPU (no options)."""

    name = "torch"
    deterministic = False

    def __init__(self, settings: Settings, source: SubnetSource) -> None:
        if settings.options:
            raise DeviceOptionError(f"the torch device takes no options, got {sorted(settings.options)}")
        if settings.precision != "fp32":
            raise DeviceOptionError(f"the torch CPU device runs fp32; got precision {settings.precision!r}")
        self.settings = settings
        self.source = source

    def fingerprint(self) -> dict[str, Any]:
        return host_fingerprint() | {
            "backend": self.name,
            "torch": torch.__version__,
            "threads": self.settings.threads,
            "batch": self.settings.batch,
            "precision": self.settings.precision,
        }

    def conditions(self) -> dict[str, Any]:
        return {}

    def close(self) -> None:
        pass

    def prepare(self, spec: SubnetSpec) -> TorchSubnet:
        torch.set_num_threads(self.settings.threads)
        shape = self.source.input_shape(spec, self.settings.batch)  # a subnet's image, or a layer's input
        image = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        return TorchSubnet(spec, self.source.module(spec), image)

    def time(self, handle: TorchSubnet, n: int) -> list[float]:
        module, image = handle.module, handle.image
        assert module is not None, "timing a closed subnet"
        samples = []
        with torch.inference_mode():
            for _ in range(n):
                start = time.perf_counter_ns()
                module(image)
                samples.append((time.perf_counter_ns() - start) / 1e6)
        return samples


register_backend(
    Backend(
        name="torch",
        summary="PyTorch eager on the CPU (fixed threads)",
        availability=lambda: Availability(True),
        factory=TorchCpuDevice,
    )
)
