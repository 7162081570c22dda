"""Device backends: run one prepared item (a subnet, or one layer) and time it.

`list_backends()` names every backend with its availability here;
`open_device(name, source, settings)` builds one. The contract is in
`compofa.devices.base`, the registry in `compofa.devices.registry`; importing
this package imports no backend.
"""

from compofa.devices.base import (
    Availability,
    Backend,
    Device,
    DeviceFactory,
    DeviceOptionError,
    DeviceUnavailableError,
    ItemT,
    ModelSource,
    Prepared,
    Settings,
    SpaceSource,
    UnknownDeviceError,
)
from compofa.devices.registry import backend_names, get_backend, list_backends, open_device, register_backend

__all__ = [
    "Availability",
    "Backend",
    "Device",
    "DeviceFactory",
    "DeviceOptionError",
    "DeviceUnavailableError",
    "ItemT",
    "ModelSource",
    "Prepared",
    "Settings",
    "SpaceSource",
    "UnknownDeviceError",
    "backend_names",
    "get_backend",
    "list_backends",
    "open_device",
    "register_backend",
]
