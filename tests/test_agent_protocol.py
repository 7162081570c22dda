"""The agent's wire format and its serving loop, over in-memory streams (the transport itself is tested through
a real sshd in test_remote.py)."""

from __future__ import annotations

import io
import struct

import pytest

from compofa import __version__
from compofa.agent.protocol import PROTOCOL, ProtocolError, read_message, write_message
from compofa.agent.serve import serve


def test_messages_and_payloads_round_trip() -> None:
    stream = io.BytesIO()
    write_message(stream, {"op": "put", "hash": "ab"}, b"\x00\xffmodel")
    write_message(stream, {"op": "hello"})
    stream.seek(0)
    assert read_message(stream) == ({"op": "put", "hash": "ab", "payload": 7}, b"\x00\xffmodel")
    assert read_message(stream) == ({"op": "hello"}, b"")
    assert read_message(stream) is None  # a clean end between messages


@pytest.mark.parametrize(("raw", "says"), [
    (struct.pack(">I", 1 << 24) + b"{}", "header of 16777216 bytes"),
    (struct.pack(">I", 3) + b"abc", "not JSON"),
    (struct.pack(">I", 2) + b"[]", "not a JSON object"),
    (struct.pack(">I", 14) + b'{"payload":-1}', "payload size of -1"),
    (struct.pack(">I", 10) + b'{"op"', "ended 5 bytes into a 10-byte read"),
    (b"\x00\x00", "ended 2 bytes into a 4-byte read"),
])
def test_a_corrupt_stream_is_named(raw: bytes, says: str) -> None:
    with pytest.raises(ProtocolError, match=says):
        read_message(io.BytesIO(raw))


def test_the_agent_answers_in_order_and_goes_on_after_a_bad_request() -> None:
    requests, replies = io.BytesIO(), io.BytesIO()
    for op in ("hello", "no-such-op", "backends", "bye", "hello"):
        write_message(requests, {"op": op})
    requests.seek(0)
    assert serve(requests, replies) == 0
    replies.seek(0)
    answers = []
    while (message := read_message(replies)) is not None:
        answers.append(message[0])
    assert answers[0] == {"ok": True, "version": __version__, "protocol": PROTOCOL}
    assert not answers[1]["ok"] and "no request 'no-such-op'" in answers[1]["error"]
    assert answers[2]["ok"] and {b["name"] for b in answers[2]["backends"]} >= {"onnxruntime", "lut"}
    assert answers[3] == {"ok": True} and len(answers) == 4  # nothing is read after bye


def test_a_corrupt_request_stream_ends_the_agent_with_status_2() -> None:
    assert serve(io.BytesIO(b"GET / HTTP/1.1\r\n\r\n"), io.BytesIO()) == 2
