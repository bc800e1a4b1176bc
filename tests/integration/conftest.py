"""Brokers for the integration tests: the embedded one and a real RabbitMQ."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator

import pytest

from broker.auth import StaticAuthenticator, StaticUser
from broker.client import BrokerAddress, BusClient
from broker.core import BrokerLimits
from broker.embedded import BrokerThread, EmbeddedBroker
from broker.frames import Frame, encode_frame
from broker.parser import FrameParser, ParserLimits
from tests.waiting import eventually

from .repo_server import RUNNING

USERS = [
    StaticUser("guest", "guest"),
    # May only read watcher topics and write nothing but replies.
    StaticUser("viewer", "viewer-pass", read=("/topic/watcher.",), write=()),
    # Held to quotas and paused by the memory alarm, as tenants' logins are.
    StaticUser("app", "app-pass", trusted=False),
]
RABBIT_STOMP_PORT = 61613


def start_embedded(limits: BrokerLimits | None = None) -> BrokerThread:
    broker = EmbeddedBroker(limits or BrokerLimits(), StaticAuthenticator(USERS), port=0)
    return BrokerThread(broker).start()


@pytest.fixture
def embedded() -> Iterator[BrokerThread]:
    thread = start_embedded()
    yield thread
    thread.stop()


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _ensure_rabbitmq() -> str | None:
    """Start RabbitMQ with its STOMP plugins if it is not running; None when ready."""
    if _port_open(RABBIT_STOMP_PORT):
        return None
    if shutil.which("rabbitmq-plugins") is None:
        return "RabbitMQ is not installed"
    if not _port_open(5672):
        subprocess.run(["rabbitmq-server", "-detached"], capture_output=True, timeout=60)

    def stomp_port_open() -> bool:
        subprocess.run(["rabbitmq-plugins", "enable", "rabbitmq_stomp", "rabbitmq_web_stomp"],
                       capture_output=True, timeout=60)
        return _port_open(RABBIT_STOMP_PORT)

    try:
        eventually(stomp_port_open, timeout_s=90, interval_s=2, what="RabbitMQ's STOMP port")
    except AssertionError:
        return "RabbitMQ's STOMP port 61613 did not open"
    return None


@pytest.fixture(scope="session")
def rabbitmq() -> BrokerAddress:
    problem = _ensure_rabbitmq()
    if problem:
        if os.environ.get("FWTEST_REQUIRE_RABBITMQ") == "1":
            pytest.fail(f"{problem} (FWTEST_REQUIRE_RABBITMQ=1 makes this a failure)")
        pytest.skip(problem)
    return BrokerAddress("127.0.0.1", RABBIT_STOMP_PORT, "guest", "guest", "/")


@pytest.fixture(params=["embedded", "rabbitmq"])
def broker_address(request: pytest.FixtureRequest) -> Iterator[BrokerAddress]:
    if request.param == "rabbitmq":
        yield request.getfixturevalue("rabbitmq")
        return
    thread = start_embedded()
    yield BrokerAddress("127.0.0.1", thread.broker.port, "guest", "guest")
    thread.stop()


def collecting_client(address: BrokerAddress, destination: str,
                      **client_options: object) -> tuple[BusClient, list[bytes]]:
    """A connected client subscribed to ``destination``, and the bodies it receives."""
    client = BusClient(address, **client_options)  # type: ignore[arg-type]
    client.connect()
    received: list[bytes] = []
    client.subscribe(destination, lambda m: received.append(m.body), receipt=True)  # in place before anyone publishes
    return client, received


@pytest.fixture(params=["embedded", "rabbitmq"])
def ws_target(request: pytest.FixtureRequest) -> Iterator[tuple[str, BrokerAddress]]:
    """(WebSocket URL, TCP address) of the same broker: ours, then RabbitMQ's Web-STOMP."""
    if request.param == "rabbitmq":
        yield "ws://127.0.0.1:15674/ws", request.getfixturevalue("rabbitmq")
        return
    thread = start_embedded()
    yield (f"ws://127.0.0.1:{thread.websocket_port}/stomp",
           BrokerAddress("127.0.0.1", thread.broker.port, "guest", "guest"))
    thread.stop()


@pytest.fixture(scope="session", autouse=True)
def _no_server_outlives_the_tests() -> Iterator[None]:
    yield
    for server in list(RUNNING):
        server.stop()


_OPEN_PEERS: list["RawStomp"] = []


@pytest.fixture(autouse=True)
def _close_raw_peers() -> Iterator[None]:
    yield
    while _OPEN_PEERS:
        _OPEN_PEERS.pop().close()


class RawStomp:
    """A STOMP peer over a plain socket, for protocol tests (closed after each test)."""

    def __init__(self, port: int, timeout_s: float = 5.0) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=timeout_s)
        _OPEN_PEERS.append(self)
        self.parser = FrameParser(ParserLimits(max_frame_bytes=64 * 1024 * 1024),
                                  commands=frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"}))
        self.frames: list[Frame] = []

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def send_frame(self, command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.send(encode_frame(Frame(command, headers or {}, body), self.parser.version))

    def connect(self, login: str = "guest", passcode: str = "guest", version: str = "1.2", **extra: str) -> Frame:
        self.send_frame("CONNECT", {"accept-version": version, "host": "/", "login": login, "passcode": passcode,
                                    **extra})
        frame = self.recv()
        if frame.command == "CONNECTED":
            self.parser.version = frame.headers["version"]
        return frame

    def recv(self, timeout_s: float = 5.0) -> Frame:
        deadline = time.monotonic() + timeout_s
        while not self.frames:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TimeoutError("no frame")
            self.sock.settimeout(remaining)
            data = self.sock.recv(65536)
            if not data:
                raise ConnectionError("closed by the broker")
            self.frames += self.parser.feed(data)
        return self.frames.pop(0)

    def recv_none(self, wait_s: float = 0.3) -> None:
        try:
            frame = self.recv(wait_s)
        except TimeoutError:
            return
        raise AssertionError(f"unexpected frame {frame}")

    def closed_by_peer(self, timeout_s: float = 5.0) -> bool:
        self.sock.settimeout(timeout_s)
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    return True
                self.frames += self.parser.feed(data)
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False

    def close(self) -> None:
        self.sock.close()


def require_rtsp() -> None:
    """Skips (fails under FWTEST_REQUIRE_RTSP=1) without GStreamer's RTSP server for rtsp.RtspServer."""
    probe = subprocess.run(["/usr/bin/python3", "-c", "import gi; gi.require_version('GstRtspServer', '1.0')"],
                           capture_output=True)
    if probe.returncode != 0:
        reason = "GStreamer RTSP server missing (Debian: gir1.2-gst-rtsp-server-1.0 python3-gi)"
        if os.environ.get("FWTEST_REQUIRE_RTSP") == "1":
            pytest.fail(f"{reason} (FWTEST_REQUIRE_RTSP=1)")
        pytest.skip(reason)
