"""STOMP frames: the record, header escaping, and encoding to bytes.

Nothing here touches a socket; ``parser.py`` is the other direction.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

__all__ = (
    "Frame",
    "ProtocolError",
    "VERSIONS",
    "escape_header",
    "unescape_header",
    "encode_frame",
    "encode_message_head",
    "encode_message_tail",
    "HEARTBEAT",
    "ascii_int",
)

VERSIONS = ("1.0", "1.1", "1.2")
HEARTBEAT = b"\n"

# CONNECT and CONNECTED headers are never escaped (STOMP 1.2, "Value Encoding").
_UNESCAPED_COMMANDS = frozenset({"CONNECT", "CONNECTED", "STOMP"})
_ESCAPE_12 = {"\\": "\\\\", "\r": "\\r", "\n": "\\n", ":": "\\c"}
_UNESCAPE_12 = {"\\": "\\", "r": "\r", "n": "\n", "c": ":"}
_UNESCAPE_11 = {"\\": "\\", "n": "\n", "c": ":"}


_ASCII_DIGITS = re.compile(r"[0-9]{1,18}")


def ascii_int(text: str | None) -> int | None:
    """A header's number: 1-18 ASCII digits, else None. (``str.isdigit`` also takes "²" and "٣", which
    ``int`` refuses or reads, and any number of digits, which ``int`` refuses past 4300.)"""
    if text is None or not _ASCII_DIGITS.fullmatch(text):
        return None
    return int(text)


class ProtocolError(Exception):
    """Malformed or forbidden input; the connection answers ERROR and closes."""

    def __init__(self, message: str, detail: str = "") -> None:
        super().__init__(message)
        self.message = message
        self.detail = detail


@dataclass(slots=True)
class Frame:
    command: str
    headers: dict[str, str] = field(default_factory=dict)  # first occurrence wins
    body: bytes = b""

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.headers.get(name, default)


def escape_header(text: str, version: str) -> str:
    if version == "1.0":
        return text
    if version == "1.1":
        return "".join(_ESCAPE_12[c] if c in "\\\n:" else c for c in text)
    return "".join(_ESCAPE_12.get(c, c) for c in text)


def unescape_header(text: str, version: str) -> str:
    if version == "1.0" or "\\" not in text:
        return text
    table = _UNESCAPE_11 if version == "1.1" else _UNESCAPE_12
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if c == "\\":
            if i + 1 >= n or text[i + 1] not in table:
                raise ProtocolError("invalid header escape", f"undefined escape sequence in {text!r}")
            out.append(table[text[i + 1]])
            i += 2
        else:
            out.append(c)
            i += 1
    return "".join(out)


def encode_frame(frame: Frame, version: str = "1.2") -> bytes:
    """Serialise a frame; bodies always carry content-length so NULs survive."""
    escaping = version != "1.0" and frame.command not in _UNESCAPED_COMMANDS
    lines = [frame.command]
    for name, value in frame.headers.items():
        if name == "content-length":
            continue
        if escaping:
            lines.append(f"{escape_header(name, version)}:{escape_header(value, version)}")
        else:
            lines.append(f"{name}:{value}")
    if frame.body or frame.command in ("MESSAGE", "SEND", "ERROR"):
        lines.append(f"content-length:{len(frame.body)}")
    head = ("\n".join(lines) + "\n\n").encode("utf-8")
    return head + frame.body + b"\x00"


# MESSAGE frames are encoded in two parts: the tail (user headers, body) is
# the same for every subscriber on one protocol version and is encoded once; the
# head (destination, ids) is per delivery.


def encode_message_head(destination: str, message_id: str, subscription: str, version: str, *,
                        redelivered: bool = False, ack_id: str | None = None) -> bytes:
    """A MESSAGE frame's command and per-delivery headers, each line ending in a newline.

    ``ack_id`` is what the client acknowledges this delivery by: STOMP 1.2 sends it
    as ``ack``; 1.0/1.1 acknowledge by message-id, so there it replaces the message id.
    """
    if ack_id is not None and version != "1.2":
        message_id = ack_id
    head = [f"MESSAGE\ndestination:{escape_header(destination, version)}",
            f"message-id:{message_id}",
            f"subscription:{escape_header(subscription, version)}"]
    if redelivered:
        head.append("redelivered:true")
    if ack_id is not None and version == "1.2":
        head.append(f"ack:{ack_id}")
    return ("\n".join(head) + "\n").encode("utf-8")


def encode_message_tail(headers: dict[str, str], body: bytes, version: str) -> bytes:
    """The rest of a MESSAGE frame after ``encode_message_head``: user headers, content-length, body."""
    lines = [f"{escape_header(k, version)}:{escape_header(v, version)}" for k, v in headers.items()]
    lines.append(f"content-length:{len(body)}")
    return ("\n".join(lines) + "\n\n").encode("utf-8") + body + b"\x00"
