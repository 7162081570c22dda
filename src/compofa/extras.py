"""Optional heavy libraries, imported only where an action needs them.

The core (spaces, ONNX graphs with seeded weights, ONNX Runtime, tables,
search, the report) runs without PyTorch; supernets, checkpoints (torch
pickles), the torch and cuda backends and training need it. `require_torch`
is the one place that turns its absence into a one-line error.
"""

from __future__ import annotations

from types import ModuleType

from compofa.errors import CompofaError

#: How to install the PyTorch extra.
TORCH_INSTALL = "pip install 'compofa[torch]'"


class TorchRequiredError(CompofaError):
    """An action needs PyTorch and this installation has none."""


def require_torch(purpose: str) -> ModuleType:
    """The `torch` module, or a `TorchRequiredError` saying that `purpose` needs it.

    `purpose` completes the sentence "<purpose> needs PyTorch", e.g.
    ``"reading a checkpoint"``.
    """
    try:
        import torch
    except ImportError:
        raise TorchRequiredError(f"{purpose} needs PyTorch: {TORCH_INSTALL}") from None
    return torch
