"""Device names that reach other machines, beside the local backends' names.

Everywhere a device is named (``profile --device``, ``lut build --device``,
``search --latency device:...``), ``ssh://[user@]host[:port]/BACKEND`` is that
backend on another machine, through its agent (`compofa.remote.device`), and
``adb://[SERIAL]/litert`` a phone (`compofa.remote.adb`); any other name is a
local backend (`compofa.devices.open_device`).
"""

from __future__ import annotations

from typing import Any

from compofa.devices import Device, ItemT, ModelSource, Settings, get_backend, open_device
from compofa.devices.base import DeviceUnavailableError, TfliteSource

SSH = "ssh://"
ADB = "adb://"


def is_remote(name: str) -> bool:
    return name.startswith((SSH, ADB))


def backend_name(name: str) -> str:
    """The backend a device name runs: ``ssh://host/cuda:1`` runs ``cuda``, ``adb://...`` runs ``litert``."""
    if name.startswith(SSH):
        from compofa.remote.ssh import SshTarget

        return (SshTarget.parse(name).backend or "").split(":", 1)[0]
    if name.startswith(ADB):
        return "litert"
    return name.split(":", 1)[0]


def display_name(name: str) -> str:
    """`name` as progress lines show it: a remote device without its settings after '?' (the agent's command)."""
    return name.split("?", 1)[0] if is_remote(name) else name


def open_any_device(name: str, source: ModelSource[ItemT], settings: Settings) -> Device[ItemT, Any]:
    """The device `name` names: a local backend, one on another machine, or a phone."""
    if name.startswith(SSH):
        from compofa.remote.device import open_remote_device

        return open_remote_device(name, source, settings)
    if name.startswith(ADB):
        from compofa.remote.adb import AdbError, open_adb_device

        if not isinstance(source, TfliteSource):
            raise AdbError(f"{display_name(name)} runs LiteRT models, which this job's source cannot write",
                           option="device")
        return open_adb_device(name, source, settings)
    return open_device(name, source, settings)


def default_batch(name: str) -> int:
    """The batch a device is measured at unless told: its backend's (1 on CPUs and phones, 64 on GPUs), wherever
    it runs. A local backend that does not exist is refused here, before any connection."""
    if name.startswith(SSH):
        from compofa.remote.ssh import SshTarget

        backend = SshTarget.parse(name).backend
        return get_backend(backend).default_batch if backend is not None else 1
    if name.startswith(ADB):
        return 1
    return get_backend(name).default_batch


def check_available(name: str) -> None:
    """Refuse a local backend that cannot run here (a remote one is asked when it is opened)."""
    if is_remote(name):
        return
    status = get_backend(name).availability()
    if not status.ok:
        raise DeviceUnavailableError(f"device {name!r} is not available here: {status.reason}")
