"""The registry of device backends: names, and where each backend lives.

Built-in backends are listed as ``"module:attribute"`` strings and imported
only when asked for (as timm's model registry does), so this module imports no
backend: `get_backend("lut")` imports the lut backend alone, and
`list_backends()` imports each backend module (none imports its heavy library,
torch, onnxruntime or tensorrt, before a device is built) to ask whether it can
run here. `register_backend` adds a backend object at run time (tests,
plug-ins).
"""

from __future__ import annotations

import dataclasses
import importlib
from typing import Any

from compofa.devices.base import (
    Backend,
    Device,
    DeviceUnavailableError,
    ItemT,
    ModelSource,
    Settings,
    UnknownDeviceError,
)
from compofa.errors import RegistryError

#: Built-in backends: name -> "module:attribute" of its `Backend`, in listing order.
BUILTIN_BACKENDS: dict[str, str] = {
    "onnxruntime": "compofa.devices.onnx_runtime:BACKEND",
    "openvino": "compofa.devices.openvino_backend:BACKEND",
    "litert": "compofa.devices.litert_backend:BACKEND",
    "executorch": "compofa.devices.executorch_backend:BACKEND",
    "torch": "compofa.devices.torch_cpu:BACKEND",
    "cuda": "compofa.devices.cuda:BACKEND",
    "tensorrt": "compofa.devices.tensorrt_backend:BACKEND",
    "lut": "compofa.devices.lut:BACKEND",
}

_REGISTERED: dict[str, Backend] = {}
_LOADED: dict[str, Backend] = {}


def register_backend(backend: Backend) -> Backend:
    """Add a backend object under its name (a built-in name is refused)."""
    if backend.name in BUILTIN_BACKENDS or backend.name in _REGISTERED:
        raise RegistryError(f"device {backend.name!r} is already registered")
    _REGISTERED[backend.name] = backend
    return backend


def backend_names() -> tuple[str, ...]:
    """Every backend's name, built-in first, without importing any."""
    return (*BUILTIN_BACKENDS, *_REGISTERED)


def get_backend(name: str) -> Backend:
    """The backend of a device name (``lut:note10`` is the ``lut`` backend); imports only that backend."""
    base = name.split(":", 1)[0]
    if base in _REGISTERED:
        return _REGISTERED[base]
    if base not in BUILTIN_BACKENDS:
        raise UnknownDeviceError(
            f"unknown device {base!r}; known: {', '.join(backend_names())} (see `compofa devices`)"
        )
    if base not in _LOADED:
        _LOADED[base] = _load(BUILTIN_BACKENDS[base])
    return _LOADED[base]


def list_backends() -> tuple[Backend, ...]:
    """Every backend, built-in first."""
    return tuple(get_backend(name) for name in backend_names())


def _load(entry: str) -> Backend:
    module_name, _, attribute = entry.partition(":")
    backend = getattr(importlib.import_module(module_name), attribute)
    if not isinstance(backend, Backend):
        raise TypeError(f"{entry} is not a device Backend")
    return backend


def open_device(name: str, source: ModelSource[ItemT], settings: Settings | None = None) -> Device[ItemT, Any]:
    """Build the backend `name` timing what `source` hands it, or explain why it cannot run here.

    The part of `name` after a colon (``lut:note10``, ``cuda:1``) reaches the
    backend as its option ``source``.
    """
    backend = get_backend(name)
    status = backend.availability()
    if not status.ok:
        raise DeviceUnavailableError(f"device {backend.name!r} is not available here: {status.reason}")
    settings = settings or Settings()
    if ":" in name:
        settings = dataclasses.replace(settings, options={**settings.options, "source": name.split(":", 1)[1]})
    return backend.factory(settings, source)
