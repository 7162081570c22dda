"""`compofa agent`: answer a host's requests on stdin/stdout until it hangs up.

Requests (``op``):

- ``hello``: the agent's compofa version and protocol; the host refuses any
  other than its own, so a device is never driven by a host that means
  something else by a message.
- ``backends``: every device backend here, whether it can run and why not,
  and what identifies this machine (`compofa.devices.base.host_fingerprint`).
- ``have`` (``hashes``), ``put`` (``hash`` and the file as payload) and
  ``model`` (``files``: relative path -> hash, ``main``): the model store
  (`compofa.agent.store`), so each file crosses the link once.
- ``open`` (``backend``, ``settings``, ``output_name``): open one of this
  machine's backends for the session; the reply holds its fingerprint, this
  machine's details and clock.
- ``begin`` (``config``, ``reference``, ``baseline_ms``), ``round`` (``item``,
  ``round_index``) and ``end``: whole profiling rounds run here
  (`compofa.agent.measure`); ``prepare``, ``time``, ``release`` and
  ``conditions`` drive the backend step by step, as a local device is.
- ``bye``: end the session.

An unknown op or a failing one gets ``{"ok": false, "error": LINE}`` and the
session goes on; a corrupt stream ends it. Whatever the session opened is
closed when it ends, however it ends.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

from compofa import __version__
from compofa.agent.measure import MeasuringSession
from compofa.agent.protocol import PROTOCOL, ProtocolError, read_message, write_message
from compofa.agent.store import ModelStore, StoreError
from compofa.errors import CompofaError


class _Session:
    """What one connection's requests share: the model store, opened at its first use."""

    def __init__(self) -> None:
        self._store: ModelStore | None = None
        self.measuring = MeasuringSession()

    @property
    def store(self) -> ModelStore:
        if self._store is None:
            self._store = ModelStore()
        return self._store


def _hello(session: _Session, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    return {"version": __version__, "protocol": PROTOCOL}


def _have(session: _Session, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    return {"missing": session.store.missing(_strings(header.get("hashes"), "hashes"))}


def _put(session: _Session, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    session.store.put(str(header.get("hash")), payload)
    return {}


def _model(session: _Session, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    files = header.get("files")
    if not isinstance(files, dict) or not all(isinstance(v, str) for v in files.values()):
        raise StoreError("a model request names its files as {relative path: sha256}")
    return {"path": str(session.store.model(files, str(header.get("main"))))}


def _strings(value: Any, name: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise StoreError(f"a request's {name} must be a list of strings")
    return value


def _backends(session: _Session, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    from compofa.devices import list_backends
    from compofa.devices.base import host_details, host_fingerprint

    listed = []
    for backend in list_backends():
        status = backend.availability()
        listed.append({"name": backend.name, "available": status.ok, "reason": status.reason,
                       "summary": backend.summary, "default_batch": backend.default_batch})
    return {"backends": listed, "fingerprint": host_fingerprint(), "details": host_details()}


def _measuring(name: str) -> Handler:
    def handle(session: _Session, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
        result: dict[str, Any] = getattr(session.measuring, name)(header)
        return result

    return handle


Handler = Callable[[_Session, dict[str, Any], bytes], dict[str, Any]]
HANDLERS: dict[str, Handler] = {
    "hello": _hello, "backends": _backends, "have": _have, "put": _put, "model": _model,
    **{name: _measuring(name) for name in ("open", "prepare", "time", "release", "conditions", "begin", "round",
                                           "end")},
}


def serve(requests: IO[bytes], replies: IO[bytes]) -> int:
    """Answer requests until ``bye`` or the end of the stream; the exit status (0, or 2 for a corrupt stream)."""
    session = _Session()
    try:
        return _serve(session, requests, replies)
    finally:
        session.measuring.close()


def _serve(session: _Session, requests: IO[bytes], replies: IO[bytes]) -> int:
    while True:
        try:
            message = read_message(requests)
        except ProtocolError as error:
            sys.stderr.write(f"compofa agent: {error}\n")
            return 2
        if message is None:
            return 0
        header, payload = message
        op = header.get("op")
        if op == "bye":
            write_message(replies, {"ok": True})
            return 0
        write_message(replies, _answer(session, str(op), header, payload))


def _answer(session: _Session, op: str, header: dict[str, Any], payload: bytes) -> dict[str, Any]:
    handler = HANDLERS.get(op)
    if handler is None:
        return {"ok": False, "error": f"the agent has no request {op!r}; known: {', '.join(HANDLERS)}, bye"}
    try:
        return {"ok": True, **handler(session, header, payload)}
    except CompofaError as error:
        return {"ok": False, "error": str(error)}
    except (KeyError, TypeError, ValueError) as error:  # a malformed request: the session goes on
        return {"ok": False, "error": f"a malformed {op} request ({type(error).__name__}: {error})"}
    except Exception as error:  # a backend's own failure (a runtime refusing a model): one line, the session goes on
        return {"ok": False, "error": f"{op} failed on the device: {type(error).__name__}: {error}"}


def main() -> int:
    """Serve on this process's stdin and stdout (binary)."""
    return serve(sys.stdin.buffer, sys.stdout.buffer)
