"""The meters of the GPU backends: the CUDA caching allocator's peak, and NVML's energy counter.

The peak is what PyTorch's allocator handed out on the GPU between `start`
(before the item is prepared) and the end of its samples, less what was
allocated at `start`: the item's weights, activations and workspace (TensorRT's
too, whose buffers come from the same allocator). torch is imported when a
probe is made, by a backend that has it already.
"""

from __future__ import annotations

from typing import Any

from compofa.devices.meters import BYTES_PER_MB, ENERGY, MeterError, Meters
from compofa.devices.nvml import GpuRef, energy_counter


class CudaMemory:
    """The CUDA allocator's peak on one GPU over an item's session."""

    def __init__(self, device: Any) -> None:
        self.device = device
        self._baseline = 0

    def start(self) -> None:
        import torch

        try:
            torch.cuda.synchronize(self.device)
            torch.cuda.reset_peak_memory_stats(self.device)
            self._baseline = torch.cuda.memory_allocated(self.device)
        except RuntimeError as error:
            raise MeterError(f"the GPU's memory statistics can no longer be read ({error})") from None

    def peak_mb(self) -> float:
        import torch

        try:
            torch.cuda.synchronize(self.device)
            peak = torch.cuda.max_memory_allocated(self.device)
        except RuntimeError as error:
            raise MeterError(f"the GPU's memory statistics can no longer be read ({error})") from None
        return max(0, peak - self._baseline) / BYTES_PER_MB


def gpu_meters(device: Any, gpu: GpuRef) -> Meters:
    """The meters of a GPU backend on torch device `device`, NVML's `gpu`."""
    energy, why = energy_counter(gpu)
    return Meters(CudaMemory(device), energy, {ENERGY: why} if why else {})
