"""ExecuTorch backend: a subnet lowered to XNNPACK (`.pte`), run by ExecuTorch's runtime on this CPU.

ExecuTorch is how PyTorch models ship to phones and embedded boards; its
XNNPACK delegate runs the same kind of kernels as LiteRT's. The program comes
from the source (`SubnetSource.pte`, lowered once and cached: lowering costs
tens of seconds a subnet). Each `prepare` loads the program and its ``forward``
method afresh, so a timed run is only `Method.execute`. XNNPACK's thread pool is
one per process, sized by `Settings.threads` when the device is built.
executorch (and torch, for lowering) are imported when a device is built
(``pip install 'compofa[executorch]'``).
"""

from __future__ import annotations

import importlib.metadata
from dataclasses import dataclass
from typing import Any, Generic

from compofa.devices.base import (
    Availability,
    Backend,
    DeviceOptionError,
    HostRuntime,
    ItemT,
    ModelSource,
    PteSource,
    Settings,
    package_availability,
    seeded_input,
    time_calls,
)

INSTALL = "pip install 'compofa[executorch]'"


def availability() -> Availability:
    return package_availability("executorch", INSTALL)


@dataclass
class ExecutorchProgram(Generic[ItemT]):
    """An item's loaded program and method, with its input tensor."""

    item: ItemT
    method: Any
    inputs: list[Any]
    last: Any = None

    def output(self) -> Any:
        """The last run's output as a numpy array."""
        return self.last[0].numpy().copy()

    def close(self) -> None:
        self.method = None
        self.last = None


class ExecutorchDevice(HostRuntime, Generic[ItemT]):
    """Times the ExecuTorch programs of items on this CPU (no options)."""

    name = "executorch"
    deterministic = False

    def __init__(self, settings: Settings, source: ModelSource[ItemT]) -> None:
        # refused before the runtime loads (ExecuTorch takes seconds, and torch warns as it does)
        if settings.precision != "fp32":
            raise DeviceOptionError(
                f"executorch times fp32 XNNPACK programs, not {settings.precision}: int8 runs on onnxruntime and "
                "openvino, fp16 on cuda and tensorrt, and on openvino where the CPU computes in fp16",
                option="precision")

        import torch
        from executorch.extension.pybindings import portable_lib
        from executorch.runtime import Runtime

        if settings.options:
            raise DeviceOptionError(f"the executorch device takes no options, got {sorted(settings.options)}")
        if not isinstance(source, PteSource):
            raise DeviceOptionError("executorch times .pte programs, which this source cannot lower")
        self.settings = settings
        self.source = source
        self._pte: PteSource[ItemT] = source
        self._torch = torch
        # XNNPACK's pool is shared by every program of the process: sized once, for all of them
        portable_lib._unsafe_reset_threadpool(settings.threads)
        self._runtime = Runtime.get()

    def fingerprint(self) -> dict[str, Any]:
        return self.runtime_fingerprint(executorch=importlib.metadata.version("executorch"), delegate="xnnpack")

    def prepare(self, item: ItemT) -> ExecutorchProgram[ItemT]:
        program = self._runtime.load_program(self._pte.pte(item, self.settings.batch))
        method = program.load_method("forward")
        image = self._torch.from_numpy(seeded_input(self.source.input_shape(item, self.settings.batch)))
        return ExecutorchProgram(item, method, [image])

    def time(self, handle: ExecutorchProgram[ItemT], n: int) -> list[float]:
        execute, inputs = handle.method.execute, handle.inputs

        def run() -> None:
            handle.last = execute(inputs)

        return time_calls(run, n)


BACKEND = Backend(
    name="executorch",
    summary="ExecuTorch with XNNPACK on this CPU (programs lowered once with PyTorch; fixed threads)",
    availability=availability,
    factory=ExecutorchDevice,
    model_format="pte",
)
