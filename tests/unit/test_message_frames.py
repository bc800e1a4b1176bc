"""MESSAGE frames as the broker writes them: a per-delivery head, a shared tail."""

from __future__ import annotations

import pytest

from broker.frames import encode_message_head, encode_message_tail
from broker.parser import FrameParser


def _parse(data: bytes, version: str) -> tuple[str, dict[str, str], bytes]:
    parser = FrameParser(commands=frozenset({"MESSAGE"}))
    parser.version = version
    (frame,) = parser.feed(data)
    return frame.command, frame.headers, frame.body


def test_auto_ack_message_round_trips() -> None:
    data = encode_message_head("/topic/a:b", "m-1", "s\n1", "1.2") + encode_message_tail({"x": "1"}, b"\x00hi", "1.2")
    command, headers, body = _parse(data, "1.2")
    assert command == "MESSAGE"
    assert headers == {"destination": "/topic/a:b", "message-id": "m-1", "subscription": "s\n1", "x": "1",
                       "content-length": "3"}
    assert body == b"\x00hi"


@pytest.mark.parametrize("version", ["1.0", "1.1", "1.2"])
def test_ack_id_is_the_ack_header_on_12_and_the_message_id_before(version: str) -> None:
    data = encode_message_head("/queue/q", "m-1", "0", version, redelivered=True, ack_id="sess-7")
    _, headers, _ = _parse(data + encode_message_tail({}, b"", version), version)
    assert headers["redelivered"] == "true"
    if version == "1.2":
        assert (headers["message-id"], headers["ack"]) == ("m-1", "sess-7")
    else:
        assert headers["message-id"] == "sess-7" and "ack" not in headers
