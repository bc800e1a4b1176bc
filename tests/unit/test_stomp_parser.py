"""The sans-IO frame parser and encoder: every framing rule, and hostile input."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.frames import Frame, ProtocolError, encode_frame, escape_header, unescape_header
from broker.parser import FrameParser, ParserLimits


def parse(data: bytes, version: str = "1.2", **limits: int) -> list[Frame]:
    parser = FrameParser(ParserLimits(**limits) if limits else ParserLimits())
    parser.version = version
    return parser.feed(data)


def test_simple_frame_and_crlf_line_ends() -> None:
    for eol in (b"\n", b"\r\n"):
        (frame,) = parse(b"SEND" + eol + b"destination:/queue/a" + eol + b"x:1" + eol + eol + b"hello\x00")
        assert frame.command == "SEND"
        assert frame.headers == {"destination": "/queue/a", "x": "1"}
        assert frame.body == b"hello"


def test_content_length_body_may_hold_nuls() -> None:
    body = b"a\x00b\x00c"
    (frame,) = parse(b"SEND\ndestination:/queue/a\ncontent-length:5\n\n" + body + b"\x00")
    assert frame.body == body


def test_repeated_headers_first_wins() -> None:
    (frame,) = parse(b"SEND\ndestination:/queue/a\nfoo:first\nfoo:second\n\n\x00")
    assert frame.headers["foo"] == "first"


def test_heartbeats_between_frames_and_byte_by_byte_feeding() -> None:
    data = b"\n\r\n\nSEND\ndestination:/topic/x\n\nA\x00\n\nSEND\ndestination:/topic/y\n\nB\x00\n"
    parser = FrameParser()
    frames = []
    for i in range(len(data)):
        frames += parser.feed(data[i : i + 1])
    assert [f.body for f in frames] == [b"A", b"B"]
    assert parser.heartbeats >= 5


def test_header_escaping_by_version() -> None:
    raw = b"SEND\ndestination:/queue/a\nk\\cey:va\\nl\\\\ue\\r\n\n\x00"
    (frame,) = parse(raw, "1.2")
    assert frame.headers["k:ey"] == "va\nl\\ue\r"
    (frame10,) = parse(raw, "1.0")
    assert frame10.headers["k\\cey"] == "va\\nl\\\\ue\\r"  # 1.0 has no escaping
    with pytest.raises(ProtocolError, match="escape"):
        parse(raw, "1.1")  # \r is not defined in 1.1


def test_connect_headers_are_not_unescaped() -> None:
    (frame,) = parse(b"CONNECT\nlogin:a\\b\n\n\x00")
    assert frame.headers["login"] == "a\\b"


@pytest.mark.parametrize("value", ["plain", "with:colon", "new\nline", "back\\slash", "cr\rhere", "ünïcødé"])
def test_escape_round_trip(value: str) -> None:
    assert unescape_header(escape_header(value, "1.2"), "1.2") == value
    frame = Frame("SEND", {"destination": "/queue/a", "h": value}, b"x")
    (back,) = parse(encode_frame(frame, "1.2"))
    assert back.headers["h"] == value


@pytest.mark.parametrize(
    ("data", "error"),
    [
        (b"FOO\n\n\x00", "unknown command"),
        (b"MESSAGE\n\n\x00", "not allowed"),
        (b"SEND\ndestination:/queue/a\ncontent-length:abc\n\n\x00", "bad content-length"),
        (b"SEND\ndestination:/queue/a\ncontent-length:2\n\nabc\x00", "not terminated by NUL"),
        (b"SEND\nno-colon-here\n\n\x00", "malformed header"),
        (b"SEND\ndestination:/queue/a\nbad:\\x\n\n\x00", "escape"),
        (b"SEND\n\xff\xfe:\x80\n\n\x00", "UTF-8"),
        (b"\x00\x01\x02garbage\n\n\x00", "unknown command"),
    ],
)
def test_malformed_frames_raise_protocol_error(data: bytes, error: str) -> None:
    with pytest.raises(ProtocolError, match=error):
        parse(data)


def test_limits() -> None:
    with pytest.raises(ProtocolError, match="too large"):
        parse(b"SEND\ndestination:/queue/a\n\n" + b"x" * 2000, max_frame_bytes=1000)
    with pytest.raises(ProtocolError, match="too large"):  # refused from the header, before the body arrives
        parse(b"SEND\ndestination:/queue/a\ncontent-length:999999\n\n", max_frame_bytes=1000)
    with pytest.raises(ProtocolError, match="too many headers"):
        parse(b"SEND\n" + b"".join(b"h%d:v\n" % i for i in range(10)) + b"\n\x00", max_headers=5)
    with pytest.raises(ProtocolError, match="header line too long"):
        parse(b"SEND\nh:" + b"v" * 500, max_header_line_bytes=100)


def test_missing_nul_waits_then_hits_the_limit() -> None:
    parser = FrameParser(ParserLimits(max_frame_bytes=100))
    assert parser.feed(b"SEND\ndestination:/queue/a\n\nno terminator yet") == []
    with pytest.raises(ProtocolError, match="too large"):
        parser.feed(b"y" * 200)


def test_frames_before_an_error_are_kept() -> None:
    parser = FrameParser()
    with pytest.raises(ProtocolError):
        parser.feed(b"SEND\ndestination:/queue/a\n\nok\x00BOGUS\n\n\x00")
    assert [f.body for f in parser.completed_before_error] == [b"ok"]


def test_encode_always_sets_content_length() -> None:
    data = encode_frame(Frame("MESSAGE", {"destination": "/topic/a"}, b"\x00\x01"), "1.2")
    assert b"content-length:2\n" in data and data.endswith(b"\x00\x01\x00")


_commands = st.sampled_from([b"SEND", b"SUBSCRIBE", b"CONNECT", b"ACK", b"FOO", b""])
_header = st.tuples(st.binary(max_size=12), st.binary(max_size=12)).map(lambda kv: kv[0] + b":" + kv[1])


@settings(max_examples=1500, deadline=None)
@given(
    command=_commands,
    headers=st.lists(_header, max_size=6),
    body=st.binary(max_size=64),
    eol=st.sampled_from([b"\n", b"\r\n"]),
    garbage=st.binary(max_size=32),
    chunk=st.integers(min_value=1, max_value=17),
    version=st.sampled_from(["1.0", "1.1", "1.2"]),
)
def test_fuzz_parser_only_raises_protocol_error(
    command: bytes, headers: list[bytes], body: bytes, eol: bytes, garbage: bytes, chunk: int, version: str
) -> None:
    data = command + eol + eol.join(headers) + eol + eol + body + b"\x00" + garbage
    parser = FrameParser(ParserLimits(max_frame_bytes=512, max_headers=4, max_header_line_bytes=64))
    parser.version = version
    try:
        for i in range(0, len(data), chunk):
            for frame in parser.feed(data[i : i + chunk]):
                assert frame.command in {"SEND", "SUBSCRIBE", "CONNECT", "ACK"}
                assert isinstance(frame.body, bytes)
    except ProtocolError:
        pass


def test_a_stray_nul_between_frames_is_skipped() -> None:
    frames = parse(b"SEND\ndestination:/topic/a\n\nx\x00\x00\n\x00SEND\ndestination:/topic/b\n\ny\x00")
    assert [(f.headers["destination"], f.body) for f in frames] == [("/topic/a", b"x"), ("/topic/b", b"y")]
