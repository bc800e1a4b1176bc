"""Sans-IO STOMP frame parser: feed bytes, get frames. No sockets, no asyncio.

Handles ``\\r\\n`` or ``\\n`` line ends, heart-beat EOLs between frames,
``content-length`` bodies (NULs inside), repeated headers (first wins), header
escaping by the negotiated version, and size limits checked before buffering
more than they allow. Anything malformed raises ``ProtocolError``; the caller
answers with ERROR and closes that one connection.
"""

from __future__ import annotations

from dataclasses import dataclass

from .frames import Frame, ProtocolError, ascii_int, unescape_header

__all__ = ("ParserLimits", "FrameParser", "CLIENT_COMMANDS")

CLIENT_COMMANDS = frozenset(
    {"CONNECT", "STOMP", "SEND", "SUBSCRIBE", "UNSUBSCRIBE", "ACK", "NACK", "BEGIN", "COMMIT", "ABORT", "DISCONNECT"}
)
_ALL_COMMANDS = CLIENT_COMMANDS | {"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"}


@dataclass(slots=True, frozen=True)
class ParserLimits:
    max_frame_bytes: int = 4 * 1024 * 1024  # headers + body
    max_headers: int = 64
    max_header_line_bytes: int = 8192


class FrameParser:
    """Incremental parser for one connection.

    ``version`` selects header unescaping; the session sets it once CONNECT has
    been negotiated (CONNECT itself is never escaped). ``commands`` restricts
    what may arrive (a broker accepts client commands only).
    """

    def __init__(self, limits: ParserLimits = ParserLimits(), *, commands: frozenset[str] = CLIENT_COMMANDS) -> None:
        self.limits = limits
        self.commands = commands
        self.version = "1.0"
        self._buf = bytearray()
        self._body_scan_from = 0  # where the NUL search resumes for the pending frame
        self.heartbeats = 0  # EOLs seen between frames
        self.completed_before_error: list[Frame] = []

    def feed(self, data: bytes) -> list[Frame]:
        """Frames completed by ``data``. On ProtocolError, the frames completed
        before the bad one are in ``completed_before_error``.

        Stops after a CONNECT (or STOMP) frame, leaving what follows buffered: the
        frames after it are parsed by the version it negotiates, so the caller
        handles the CONNECT, sets ``version`` and calls ``feed(b"")`` for the rest.
        """
        self._buf += data
        frames: list[Frame] = []
        self.completed_before_error = frames
        while True:
            frame = self._next_frame()
            if frame is None:
                return frames
            frames.append(frame)
            if frame.command in ("CONNECT", "STOMP"):
                return frames

    def _skip_eols(self) -> None:
        buf, i = self._buf, 0
        while i < len(buf):
            if buf[i] == 0x0A:
                self.heartbeats += 1
                i += 1
            elif buf[i] == 0x00:  # a stray NUL between frames: skipped, as RabbitMQ does
                i += 1
            elif buf[i] == 0x0D and i + 1 < len(buf) and buf[i + 1] == 0x0A:
                self.heartbeats += 1
                i += 2
            elif buf[i] == 0x0D and i + 1 == len(buf):
                break  # wait for the \n
            else:
                break
        if i:
            del buf[:i]

    def _line(self, start: int) -> tuple[bytes, int] | None:
        end = self._buf.find(b"\n", start)
        if end < 0:
            if len(self._buf) - start > self.limits.max_header_line_bytes:
                raise ProtocolError("header line too long", f"limit {self.limits.max_header_line_bytes} bytes")
            return None
        line = bytes(self._buf[start:end])
        if line.endswith(b"\r"):
            line = line[:-1]
        if len(line) > self.limits.max_header_line_bytes:
            raise ProtocolError("header line too long", f"limit {self.limits.max_header_line_bytes} bytes")
        return line, end + 1

    def _decode(self, raw: bytes) -> str:
        try:
            return raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ProtocolError("frame headers are not UTF-8") from exc

    def _next_frame(self) -> Frame | None:
        self._skip_eols()
        if not self._buf:
            return None
        got = self._line(0)
        if got is None:
            self._check_size(len(self._buf))
            return None
        raw_command, pos = got
        command = self._decode(raw_command)
        if command not in self.commands:
            if command in _ALL_COMMANDS:
                raise ProtocolError(f"command {command} is not allowed here")
            raise ProtocolError("unknown command", f"{command[:64]!r}")
        escaped = command not in ("CONNECT", "STOMP", "CONNECTED")
        headers: dict[str, str] = {}
        count = 0
        while True:
            got = self._line(pos)
            if got is None:
                self._check_size(len(self._buf))
                return None
            raw, pos = got
            if not raw:
                break
            count += 1
            if count > self.limits.max_headers:
                raise ProtocolError("too many headers", f"limit {self.limits.max_headers}")
            colon = raw.find(b":")
            if colon <= 0:
                raise ProtocolError("malformed header line", f"{raw[:64]!r}")
            name, value = self._decode(raw[:colon]), self._decode(raw[colon + 1 :])
            if escaped:
                name, value = unescape_header(name, self.version), unescape_header(value, self.version)
            headers.setdefault(name, value)
        body_start = pos
        length_text = headers.get("content-length")
        if length_text is not None:
            length = ascii_int(length_text)
            if length is None:
                if length_text.isascii() and length_text.isdigit():
                    raise ProtocolError("frame too large", f"limit {self.limits.max_frame_bytes} bytes")
                raise ProtocolError("bad content-length", f"{length_text[:32]!r}")
            self._check_size(body_start + length + 1)
            if len(self._buf) < body_start + length + 1:
                return None
            if self._buf[body_start + length] != 0:
                raise ProtocolError("frame not terminated by NUL after content-length bytes")
            body_end = body_start + length
        else:
            nul = self._buf.find(b"\x00", max(body_start, self._body_scan_from))
            if nul < 0:
                self._body_scan_from = len(self._buf)
                self._check_size(len(self._buf))
                return None
            body_end = nul
        body = bytes(self._buf[body_start:body_end])
        del self._buf[: body_end + 1]
        self._body_scan_from = 0
        return Frame(command, headers, body)

    def _check_size(self, size: int) -> None:
        if size > self.limits.max_frame_bytes:
            raise ProtocolError("frame too large", f"limit {self.limits.max_frame_bytes} bytes")
