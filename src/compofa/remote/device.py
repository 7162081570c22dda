"""A backend on another machine, driven through its agent over ssh, as a local device is.

The host keeps everything that decides what is measured (the profiler, the
table); the device does the measuring. `RemoteDevice` is a
`compofa.profiler.RoundRunner`: each round is one request, run whole on the
device by the same code a local round runs, and models are sent once, by
content hash, before the first round that needs them.

Losing the session (the network drops, the device reboots, the agent is
killed) loses at most the request in flight: the device reconnects with
bounded retries and exponential backoff, reopens the backend, warms the
reference again on the stored baseline and sends the request again; a round
cut short is measured afresh. A device that comes back as another machine
(another fingerprint) is refused. After the last retry it stops with one line
saying how to resume (run the same command again: the table keeps every
finished round).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Generic

from compofa.agent.measure import item_to_wire
from compofa.agent.wire import config_to_wire, outcome_from_wire, reading_from_wire
from compofa.devices.base import Backend, ItemT, ModelSource, Settings, UnknownDeviceError, model_file
from compofa.devices.registry import get_backend
from compofa.profiler import ProfileConfig, ReferenceReading, RoundOutcome
from compofa.remote.ssh import AgentConnection, ConnectionLost, RemoteError, SshTarget

#: The first wait before reconnecting, doubled after each failed try (`SshTarget.retries` of them).
FIRST_WAIT_S = 2.0


@dataclass
class RemoteHandle:
    """An item prepared in the agent's session."""

    device: RemoteDevice[Any]
    number: int
    connection: AgentConnection

    def close(self) -> None:
        if self.connection is not self.device.connection:  # a handle of a lost session went with it
            return
        try:
            self.device.call("release", lambda: {"handle": self.number}, retry=False)
        except RemoteError:  # the session was lost meanwhile, and the handle with it; the next request reconnects
            pass


class RemoteDevice(Generic[ItemT]):
    """Backend `target.backend` on the machine `target` names, timing what `source` hands out (see the module)."""

    deterministic = False

    def __init__(self, target: SshTarget, source: ModelSource[ItemT], settings: Settings, *,
                 first_wait_s: float = FIRST_WAIT_S,
                 sleep: Callable[[float], None] = time.sleep, notify: Callable[[str], None] | None = None) -> None:
        if target.backend is None:
            raise RemoteError(f"name the backend to use on {target.destination}, e.g. {target}/onnxruntime "
                              f"(`compofa devices {target}` lists them)", option="device")
        self.target, self.source, self.settings = target, source, settings
        self.name = target.backend.split(":", 1)[0]
        try:  # the file the backend there runs; a backend only the device knows (a plug-in) is sent ONNX
            backend: Backend | None = get_backend(self.name)
        except UnknownDeviceError:
            backend = None
        self.model_format = backend.model_format if backend is not None else "onnx"
        # an int8 model is made here, from this machine's calibration images, as the backend there needs it; a
        # backend that makes its own (OpenVINO's NNCF) is told the recipe and refuses there, having no images
        asked = settings.quantization if settings.precision == "int8" else None
        recipe = backend.int8_recipe if backend is not None else None
        self.quantization = recipe(asked) if asked is not None and recipe is not None else None
        self._told = self.quantization or asked
        self.retries, self.first_wait_s, self._sleep = target.retries, first_wait_s, sleep
        self._notify = notify or _to_stderr
        self.reconnects = 0
        self.connection: AgentConnection | None = None
        self._opened: dict[str, Any] = {}
        self._models: dict[ItemT, dict[str, Any]] = {}  # item -> how the agent names it, for this session
        self._rounds: tuple[ProfileConfig, ItemT | None, float | None] | None = None
        self._clock_offset = 0.0
        self._connect()  # the first connection is not retried: a wrong host or key is said at once
        self.deterministic = bool(self._opened.get("deterministic", False))

    # -- the session -----------------------------------------------------------------------

    def _connect(self) -> None:
        connection = AgentConnection(self.target)
        try:
            settings = {"batch": self.settings.batch, "precision": self.settings.precision,
                        "threads": self.settings.threads, "options": dict(self.settings.options),
                        "quantization": self._told.to_dict() if self._told is not None else None}
            opened = connection.request("open", backend=self.target.backend, settings=settings,
                                        output_name=self.source.output_name)
            # the agent reads its clock last: the reply's trip is all that separates the two readings
            self._clock_offset = float(opened.get("clock", time.time())) - time.time()
            if self._opened and opened.get("fingerprint") != self._opened.get("fingerprint"):
                raise RemoteError(f"{self.target.destination} came back as another setup after reconnecting "
                                  "(its fingerprint changed); profile it into another --table")
            self.connection, self._opened = connection, opened
            self._models.clear()
            if self._rounds is not None:  # the reference is warmed again in the new session, on the same baseline
                config, reference, baseline = self._rounds
                self._begin(config, reference, baseline)
        except BaseException:
            self.connection = None
            connection.close()
            raise

    def call(self, op: str, fields: Callable[[], dict[str, Any]], retry: bool = True) -> dict[str, Any]:
        """Request `op` with the `fields` made for the session it is sent in; a lost session is reconnected
        (with `retry`) and the request sent again."""
        waited, attempt = 0.0, 0
        while True:
            try:
                if self.connection is None:
                    self._connect()
                assert self.connection is not None
                return self.connection.request(op, **fields())
            except ConnectionLost as error:
                self._drop()
                if not retry or attempt >= self.retries:
                    tries = f" and {attempt} tries to reconnect over {waited:.0f} s" if attempt else ""
                    raise RemoteError(f"lost {self.target}{tries}: {error}; run the same command again to resume "
                                      "(every finished round is kept)") from None
                wait = self.first_wait_s * 2 ** attempt
                self._notify(f"lost {self.target} ({error}); reconnecting in {wait:.0f} s "
                             f"(try {attempt + 1} of {self.retries})")
                self._sleep(wait)
                waited += wait
                attempt += 1
                self.reconnects += 1

    def _drop(self) -> None:
        if self.connection is not None:
            self.connection.close()
            self.connection = None

    def _item(self, item: ItemT) -> dict[str, Any]:
        """How the agent names `item`: its model is sent first unless this session has it."""
        if item not in self._models:
            assert self.connection is not None
            path = self.connection.send_model(model_file(self.source, item, self.settings.batch, self.model_format,
                                                         self.quantization))
            self._models[item] = item_to_wire(path, self.source.input_shape(item, self.settings.batch))
        return self._models[item]

    # -- Device ----------------------------------------------------------------------------------

    def fingerprint(self) -> dict[str, Any]:
        """The device's own fingerprint: the backend there, on that machine's hardware."""
        return dict(self._opened["fingerprint"])

    def details(self) -> dict[str, Any]:
        """Recorded with every run: the device's host details and how it was reached (never a secret)."""
        connection = {"scheme": "ssh", "host": self.target.host, "user": self.target.user, "port": self.target.port}
        return {**self._opened.get("details", {}), "connection": connection}

    def conditions(self) -> dict[str, Any]:
        return dict(self.call("conditions", dict)["conditions"])

    def prepare(self, item: ItemT) -> RemoteHandle:
        reply = self.call("prepare", lambda: {"item": self._item(item)})
        assert self.connection is not None
        return RemoteHandle(self, int(reply["handle"]), self.connection)

    def time(self, handle: RemoteHandle, n: int) -> list[float]:
        if handle.connection is not self.connection:
            raise RemoteError(f"the session with {self.target} was lost; run the same command again to resume")
        return [float(v) for v in self.call("time", lambda: {"handle": handle.number, "n": n}, retry=False)
                ["samples_ms"]]

    def close(self) -> None:
        self._rounds = None
        self._drop()

    # -- RoundRunner ------------------------------------------------------------------------------

    def _begin(self, config: ProfileConfig, reference: ItemT | None, baseline_ms: float | None
               ) -> dict[str, Any]:
        assert self.connection is not None
        return self.connection.request(
            "begin", config=config_to_wire(config), baseline_ms=baseline_ms,
            reference=self._item(reference) if reference is not None else None,
        )

    def begin_rounds(self, config: ProfileConfig, reference: ItemT | None, baseline_ms: float | None
                     ) -> tuple[float, ReferenceReading | None] | None:
        def fields() -> dict[str, Any]:
            return {"config": config_to_wire(config), "baseline_ms": baseline_ms,
                    "reference": self._item(reference) if reference is not None else None}

        self._rounds = None  # a reconnection before the reply must not begin twice
        reply = self.call("begin", fields)
        measured = reply.get("baseline_ms")
        self._rounds = (config, reference, float(measured) if measured is not None else None)
        if measured is None:
            return None
        return float(measured), reading_from_wire(reply.get("reading"), self._clock_offset)

    def run_round(self, item: ItemT, round_index: int) -> RoundOutcome:
        reply = self.call("round", lambda: {"item": self._item(item), "round_index": round_index})
        return outcome_from_wire(reply, self._clock_offset)

    def end_rounds(self) -> None:
        if self._rounds is not None and self.connection is not None:
            self._rounds = None
            self.call("end", dict, retry=False)
        self._rounds = None


def _to_stderr(message: str) -> None:
    sys.stderr.write(f"compofa: {message}\n")
    sys.stderr.flush()


def open_remote_device(name: str, source: ModelSource[ItemT], settings: Settings) -> RemoteDevice[ItemT]:
    """The device an ``ssh://`` name gives."""
    return RemoteDevice(SshTarget.parse(name), source, settings)
