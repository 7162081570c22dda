"""PyTorch eager on the CPU, with a fixed number of threads.

torch is imported when a device is built, not with this module: listing the
backends never needs it.
"""

from __future__ import annotations

import importlib.util
import time
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    DeviceOptionError,
    ItemT,
    ModelSource,
    Settings,
    host_fingerprint,
)
from compofa.devices.meters import Meters, host_meters

if TYPE_CHECKING:
    import torch

#: What a backend that needs torch says when it is missing.
MISSING_TORCH = "the torch package is not installed (pip install 'compofa[torch]')"


def availability() -> Availability:
    """Whether torch is installed (found without importing it)."""
    if importlib.util.find_spec("torch") is None:
        return Availability(False, MISSING_TORCH)
    return Availability(True)


@dataclass
class TorchSubnet(Generic[ItemT]):
    """An item as a PyTorch module in eval mode, with its input."""

    item: ItemT
    module: torch.nn.Module | None
    image: torch.Tensor

    def close(self) -> None:
        self.module = None


class TorchCpuDevice(Generic[ItemT]):
    """Times items (subnets or layers) as PyTorch eager modules on the CPU (no options)."""

    name = "torch"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        import torch

        if settings.options:
            raise DeviceOptionError(f"the torch device takes no options, got {sorted(settings.options)}")
        if settings.precision != "fp32":
            raise DeviceOptionError(f"the torch CPU device runs fp32; got precision {settings.precision!r}")
        self.settings = settings
        self.source = source
        self._version = torch.__version__

    def fingerprint(self) -> dict[str, Any]:
        return host_fingerprint() | {
            "backend": self.name,
            "torch": self._version,
            "threads": self.settings.threads,
            "batch": self.settings.batch,
            "precision": self.settings.precision,
        }

    def conditions(self) -> dict[str, Any]:
        return {}

    def meters(self) -> Meters:
        return host_meters()

    def close(self) -> None:
        pass

    def prepare(self, item: ItemT) -> TorchSubnet[ItemT]:
        import torch

        torch.set_num_threads(self.settings.threads)
        shape = self.source.input_shape(item, self.settings.batch)  # a subnet's image, or a layer's input
        image = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
        return TorchSubnet(item, self.source.module(item), image)

    def time(self, handle: TorchSubnet[ItemT], n: int) -> list[float]:
        import torch

        module, image = handle.module, handle.image
        assert module is not None, f"timing {handle.item}, which was closed"
        samples = []
        with torch.inference_mode():
            for _ in range(n):
                start = time.perf_counter_ns()
                module(image)
                samples.append((time.perf_counter_ns() - start) / 1e6)
        return samples


BACKEND = Backend(
    name="torch",
    summary="PyTorch eager on the CPU (fixed threads)",
    availability=availability,
    factory=TorchCpuDevice,
)
