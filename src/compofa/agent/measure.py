"""The device side of remote profiling: one backend opened for the host, and whole rounds run here.

The host sends the models first (`compofa.agent.store`) and then names an
item by its model's path in the store and its input shape (`StoredItem`).
A round (``round``) is `compofa.profiler.Profiler.measure_round` run here,
with the reference the host chose kept prepared and warm in this session
(``begin``), so nothing the link does enters a measurement: the host gets the
round's record, its reference samples and where its time went, in one reply.
"""

from __future__ import annotations

import itertools
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from compofa.agent.protocol import ProtocolError
from compofa.agent.wire import config_from_wire, outcome_to_wire, reading_to_wire
from compofa.devices import Device, Settings, open_device
from compofa.devices.base import DeviceOptionError, Prepared, Quantization, host_details
from compofa.errors import CompofaError
from compofa.fileio import default_cache_dir
from compofa.profiler import ProfileListener, Profiler, Reference, ReferenceReading, RoundOutcome, TimeAccount


class MeasureError(CompofaError):
    """A measuring request that does not fit the session's state."""


@dataclass(frozen=True)
class StoredItem:
    """A model in the agent's store, as the host names it: its path here and its input shape."""

    path: str
    input_shape: tuple[int, ...]

    def __str__(self) -> str:
        return Path(self.path).name


class StoredModels:
    """A `compofa.devices.ModelSource` of models the host sent; each is already written at the session's batch."""

    def __init__(self, output_name: str) -> None:
        self._output_name = output_name

    @property
    def output_name(self) -> str:
        return self._output_name

    def onnx(self, item: StoredItem, batch: int) -> Path:
        return Path(item.path)

    def tflite(self, item: StoredItem, batch: int) -> Path:
        return Path(item.path)

    def pte(self, item: StoredItem, batch: int) -> Path:
        return Path(item.path)

    def int8_onnx(self, item: StoredItem, batch: int, quantization: Quantization) -> Path:
        """The int8 model the host made (from its calibration images, as `quantization` says) and sent."""
        return Path(item.path)

    def input_shape(self, item: StoredItem, batch: int) -> tuple[int, ...]:
        return item.input_shape

    def module(self, item: StoredItem) -> Any:
        raise DeviceOptionError("this backend times PyTorch modules, which cannot be sent to an agent; "
                                "profile a remote device with a backend that runs model files, such as onnxruntime")

    def describe(self) -> dict[str, Any]:
        return {"kind": "sent by the host"}


class _LastReference(ProfileListener[StoredItem]):
    def __init__(self) -> None:
        self.reading: ReferenceReading | None = None

    def on_reference(self, at: float, median_ms: float, samples_ms: Sequence[float]) -> None:
        self.reading = ReferenceReading(at, median_ms, tuple(samples_ms))


class MeasuringSession:
    """The backend a host opened in this agent session, its prepared items and its rounds."""

    def __init__(self) -> None:
        self.device: Device[StoredItem, Any] | None = None
        self._handles: dict[int, Prepared] = {}
        self._ids = itertools.count(1)
        self._profiler: Profiler[StoredItem] | None = None
        self._reference: Reference | None = None

    def open(self, header: dict[str, Any]) -> dict[str, Any]:
        if self.device is not None:
            raise MeasureError("a device is already open in this session")
        settings = header.get("settings")
        if not isinstance(settings, dict):
            raise ProtocolError("an open request gives the device's settings")
        options = {str(k): str(v) for k, v in dict(settings.get("options", {})).items()}
        quantization = settings.get("quantization")
        try:
            recipe = Quantization.from_dict(quantization) if isinstance(quantization, dict) else None
        except (TypeError, ValueError) as error:
            raise ProtocolError(f"an open request's quantization is malformed ({error})") from None
        # built engines (TensorRT) are kept in this machine's cache, as a local profile keeps them in its own
        self.device = open_device(str(header.get("backend")), StoredModels(str(header.get("output_name"))),
                                  Settings(int(settings["batch"]), str(settings["precision"]),
                                           int(settings["threads"]), options, default_cache_dir(), recipe))
        return {"name": self.device.name, "fingerprint": self.device.fingerprint(), "details": host_details(),
                "deterministic": self.device.deterministic, "clock": time.time()}

    def _device(self) -> Device[StoredItem, Any]:
        if self.device is None:
            raise MeasureError("no device is open in this session (send open first)")
        return self.device

    def prepare(self, header: dict[str, Any]) -> dict[str, Any]:
        handle = self._device().prepare(item_from_wire(header.get("item")))
        number = next(self._ids)
        self._handles[number] = handle
        return {"handle": number}

    def time(self, header: dict[str, Any]) -> dict[str, Any]:
        return {"samples_ms": self._device().time(self._handle(header), int(header.get("n", 1)))}

    def release(self, header: dict[str, Any]) -> dict[str, Any]:
        self._handle(header)
        self._handles.pop(int(header["handle"])).close()
        return {}

    def _handle(self, header: dict[str, Any]) -> Prepared:
        handle = self._handles.get(int(header.get("handle", 0)))
        if handle is None:
            raise MeasureError(f"no prepared item {header.get('handle')!r} in this session")
        return handle

    def conditions(self, header: dict[str, Any]) -> dict[str, Any]:
        return {"conditions": self._device().conditions()}

    def begin(self, header: dict[str, Any]) -> dict[str, Any]:
        self.end({})
        profiler = Profiler(self._device(), config_from_wire(header.get("config")))
        reference = header.get("reference")
        baseline = header.get("baseline_ms")
        reply: dict[str, Any] = {"baseline_ms": None, "reading": None}
        if reference is not None:
            listener = _LastReference()
            self._reference = profiler.open_reference(item_from_wire(reference),
                                                      float(baseline) if baseline is not None else None,
                                                      listener, TimeAccount())
            reply = {"baseline_ms": self._reference.baseline_ms,
                     "reading": reading_to_wire(listener.reading) if baseline is None else None}
        self._profiler = profiler
        return reply

    def round(self, header: dict[str, Any]) -> dict[str, Any]:
        if self._profiler is None:
            raise MeasureError("rounds have not begun in this session (send begin first)")
        listener = _LastReference()
        account = TimeAccount()
        record = self._profiler.measure_round(item_from_wire(header.get("item")), int(header.get("round_index", 0)),
                                              account, self._reference, listener)
        return outcome_to_wire(RoundOutcome(record, listener.reading, account))

    def end(self, header: dict[str, Any]) -> dict[str, Any]:
        if self._reference is not None:
            self._reference.handle.close()
            self._reference = None
        self._profiler = None
        return {}

    def close(self) -> None:
        """Free everything (the host hung up, or said bye)."""
        self.end({})
        for handle in self._handles.values():
            handle.close()
        self._handles.clear()
        if self.device is not None:
            self.device.close()
            self.device = None


def item_to_wire(path: str, input_shape: Sequence[int]) -> dict[str, Any]:
    return {"path": path, "input_shape": list(input_shape)}


def item_from_wire(value: Any) -> StoredItem:
    if not isinstance(value, dict) or not isinstance(value.get("path"), str):
        raise ProtocolError("an item is named by its model's path in the store and its input shape")
    return StoredItem(value["path"], tuple(int(v) for v in value.get("input_shape", ())))
