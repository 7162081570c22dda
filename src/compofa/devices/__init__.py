"""Device backends: run one prepared subnet and time it.

`list_backends()` names every backend with its availability here;
`open_device(name, source, settings)` builds one.
"""

from compofa.devices.base import (
    Availability,
    Backend,
    Device,
    DeviceOptionError,
    DeviceUnavailableError,
    PreparedSubnet,
    Settings,
    UnknownDeviceError,
    get_backend,
    list_backends,
    open_device,
    register_backend,
)

__all__ = [
    "Availability",
    "Backend",
    "Device",
    "DeviceOptionError",
    "DeviceUnavailableError",
    "PreparedSubnet",
    "Settings",
    "UnknownDeviceError",
    "get_backend",
    "list_backends",
    "open_device",
    "register_backend",
]
