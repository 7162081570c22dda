"""`compofa agent`: answer a host's requests on stdin/stdout until it hangs up.

Requests (``op``):

- ``hello``: the agent's compofa version and protocol; the host refuses any
  other than its own, so a device is never driven by a host that means
  something else by a message.
- ``backends``: every device backend here, whether it can run and why not,
  and what identifies this machine (`compofa.devices.base.host_fingerprint`).
- ``bye``: end the session.

An unknown op or a failing one gets ``{"ok": false, "error": LINE}`` and the
session goes on; a corrupt stream ends it.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import IO, Any

from compofa import __version__
from compofa.agent.protocol import PROTOCOL, ProtocolError, read_message, write_message
from compofa.errors import CompofaError


def _hello(_: dict[str, Any]) -> dict[str, Any]:
    return {"version": __version__, "protocol": PROTOCOL}


def _backends(_: dict[str, Any]) -> dict[str, Any]:
    from compofa.devices import list_backends
    from compofa.devices.base import host_details, host_fingerprint

    listed = []
    for backend in list_backends():
        status = backend.availability()
        listed.append({"name": backend.name, "available": status.ok, "reason": status.reason,
                       "summary": backend.summary, "default_batch": backend.default_batch})
    return {"backends": listed, "fingerprint": host_fingerprint(), "details": host_details()}


HANDLERS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"hello": _hello, "backends": _backends}


def serve(requests: IO[bytes], replies: IO[bytes]) -> int:
    """Answer requests until ``bye`` or the end of the stream; the exit status (0, or 2 for a corrupt stream)."""
    while True:
        try:
            message = read_message(requests)
        except ProtocolError as error:
            sys.stderr.write(f"compofa agent: {error}\n")
            return 2
        if message is None:
            return 0
        header, _ = message
        op = header.get("op")
        if op == "bye":
            write_message(replies, {"ok": True})
            return 0
        handler = HANDLERS.get(str(op))
        if handler is None:
            reply = {"ok": False, "error": f"the agent has no request {op!r}; known: {', '.join(HANDLERS)}, bye"}
        else:
            try:
                reply = {"ok": True, **handler(header)}
            except CompofaError as error:
                reply = {"ok": False, "error": str(error)}
        write_message(replies, reply)


def main() -> int:
    """Serve on this process's stdin and stdout (binary)."""
    return serve(sys.stdin.buffer, sys.stdout.buffer)
