"""The agent's wire format: length-prefixed JSON messages, each optionally followed by raw bytes.

A message is a 4-byte big-endian length, that many bytes of a UTF-8 JSON object
(the header), then, if the header has ``"payload": N``, N raw bytes (a model
file). Requests name an ``op``; replies carry ``ok`` and either their fields or
an ``error`` line. Nothing but messages is ever written to the stream, so the
agent logs to stderr only.
"""

from __future__ import annotations

import json
import struct
from typing import IO, Any

from compofa.errors import CompofaError

#: Bumped whenever a message changes meaning; host and agent must agree exactly (as on the version).
PROTOCOL = 1
#: A header larger than this is a corrupt stream, not a message.
MAX_HEADER = 1 << 20
#: The largest payload (a model file) one message may carry.
MAX_PAYLOAD = 1 << 32

_LENGTH = struct.Struct(">I")


class ProtocolError(CompofaError):
    """The stream is not what the other side of an agent connection should have sent."""


def write_message(stream: IO[bytes], header: dict[str, Any], payload: bytes = b"") -> None:
    """Send one message (and its payload) and flush it."""
    if payload:
        header = {**header, "payload": len(payload)}
    body = json.dumps(header, separators=(",", ":")).encode()
    stream.write(_LENGTH.pack(len(body)) + body)
    if payload:
        stream.write(payload)
    stream.flush()


def read_message(stream: IO[bytes]) -> tuple[dict[str, Any], bytes] | None:
    """The next message and its payload; None at a clean end of the stream (between messages)."""
    prefix = _read_exactly(stream, _LENGTH.size, allow_end=True)
    if prefix is None:
        return None
    (length,) = _LENGTH.unpack(prefix)
    if length > MAX_HEADER:
        raise ProtocolError(f"a message header of {length} bytes: the stream is not an agent's")
    body = _read_exactly(stream, length)
    assert body is not None
    try:
        header = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError):
        raise ProtocolError("a message header that is not JSON: the stream is not an agent's") from None
    if not isinstance(header, dict):
        raise ProtocolError("a message header that is not a JSON object")
    size = header.get("payload", 0)
    if not isinstance(size, int) or not 0 <= size <= MAX_PAYLOAD:
        raise ProtocolError(f"a message with a payload size of {size!r}")
    payload = _read_exactly(stream, size) if size else b""
    assert payload is not None
    return header, payload


def _read_exactly(stream: IO[bytes], size: int, allow_end: bool = False) -> bytes | None:
    chunks, left = [], size
    while left:
        chunk = stream.read(left)
        if not chunk:
            if allow_end and left == size:
                return None
            raise ProtocolError(f"the stream ended {size - left} bytes into a {size}-byte read")
        chunks.append(chunk)
        left -= len(chunk)
    return b"".join(chunks)
