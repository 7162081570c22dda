"""Lower subnets to ExecuTorch programs (``.pte``, XNNPACK) and keep them in a content-addressed cache.

Lowering goes through PyTorch: the subnet's module (`SubnetSource.module`, with
the same arrays as its ONNX file) is captured with `torch.export`, its
operators handed to XNNPACK by ExecuTorch's partitioner, and the program
serialized. That costs tens of seconds a subnet (measured 30 s here), so each
program is lowered once: as for ONNX (`compofa.graphs.cache`), a file's name
is a hash of what decides its bytes (ExecuTorch's version, the weights'
fingerprint, the spec and the batch), and a stale file is never returned.
torch and executorch are imported when a program is lowered.
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from compofa.errors import CompofaError, ExportError
from compofa.fileio import atomic_output, default_cache_dir
from compofa.space import SubnetSpec, format_spec

PTE_SUFFIX = ".pte"
INSTALL = "pip install 'compofa[executorch]'"


class ExecutorchRequiredError(CompofaError):
    """Lowering needs the executorch package and this installation has none."""


def executorch_version() -> str:
    try:
        return importlib.metadata.version("executorch")
    except importlib.metadata.PackageNotFoundError:
        raise ExecutorchRequiredError(f"ExecuTorch programs need the executorch package: {INSTALL}") from None


def lower_to_pte(module: Any, input_shape: tuple[int, ...]) -> bytes:
    """`module` (eval mode) captured at `input_shape` and lowered to XNNPACK: the bytes of a ``.pte`` file."""
    executorch_version()  # says in one line what to install
    import torch
    from executorch.backends.xnnpack.partition.xnnpack_partitioner import XnnpackPartitioner
    from executorch.exir import to_edge_transform_and_lower

    example = (torch.zeros(input_shape),)
    with torch.no_grad():
        exported = torch.export.export(module.eval(), example)
    program = to_edge_transform_and_lower(exported, partitioner=[XnnpackPartitioner()]).to_executorch()
    return bytes(program.buffer)


class PteExporter:
    """Lowers the subnets of one source into a content-addressed cache folder (``<cache>/pte``).

    `module` gives a subnet's PyTorch module and `fingerprint` names its
    weights; `input_shape` gives its input at `batch`.
    """

    def __init__(self, module: Callable[[SubnetSpec], Any], fingerprint: str,
                 input_shape: Callable[[SubnetSpec, int], tuple[int, ...]], batch: int = 1,
                 cache_dir: str | os.PathLike[str] | None = None) -> None:
        if batch < 1:
            raise ExportError(f"batch must be at least 1, got {batch}")
        self.module, self.fingerprint, self.input_shape, self.batch = module, fingerprint, input_shape, batch
        self.folder = Path(cache_dir) if cache_dir is not None else default_cache_dir() / "pte"
        self.version = executorch_version()
        self.hits = self.misses = 0

    def key(self, spec: SubnetSpec) -> str:
        identity = {"executorch": self.version, "partitioner": "xnnpack", "weights": self.fingerprint,
                    "spec": format_spec(spec), "batch": self.batch}
        return hashlib.sha256(json.dumps(identity, sort_keys=True).encode()).hexdigest()[:32]

    def path(self, spec: SubnetSpec) -> Path:
        """The program of `spec`, lowered now unless already cached."""
        target = self.folder / f"{self.key(spec)}{PTE_SUFFIX}"
        if target.exists():
            self.hits += 1
            return target
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ExportError(f"cannot create the export cache {str(self.folder)!r}: {error.strerror}") from None
        program = lower_to_pte(self.module(spec), self.input_shape(spec, self.batch))
        with atomic_output(target, durable=False) as handle:  # a cache file can be lowered again
            handle.write(program)
        self.misses += 1
        return target
