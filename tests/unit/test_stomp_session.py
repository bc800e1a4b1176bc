"""StompSession driven through its transport interface, with no sockets and no event loop.

What server.py gives a session: a ``Transport`` to write to (``write``,
``buffered_bytes``, ``close``, ``peer``), bytes to ``data_received``,
``on_writable`` and ``connection_lost``; the core's loop only for
``call_later`` (the CONNECT deadline, heart-beats). Here the transport keeps
what is written and the loop keeps its timers, so a test reads the exact
frames a session sends and fires a timer when it chooses: the timing rules
are tested without waiting for them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, cast

import pytest

from broker.auth import BrokerPrincipal, Credentials, StaticAuthenticator, StaticUser
from broker.core import BrokerCore, BrokerLimits
from broker.frames import Frame, encode_frame
from broker.parser import FrameParser, ParserLimits
from broker.session import StompSession

SERVER_COMMANDS = frozenset({"CONNECTED", "MESSAGE", "RECEIPT", "ERROR"})


class FakeTimer:
    def __init__(self, delay: float, callback: Callable[..., object], args: tuple[Any, ...]) -> None:
        self.delay, self.callback, self.args = delay, callback, args
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """The one loop method a session uses; timers fire when a test says so."""

    def __init__(self) -> None:
        self.timers: list[FakeTimer] = []

    def call_later(self, delay: float, callback: Callable[..., object], *args: Any) -> FakeTimer:
        timer = FakeTimer(delay, callback, args)
        self.timers.append(timer)
        return timer

    def pending(self) -> list[FakeTimer]:
        return [t for t in self.timers if not t.cancelled]

    def fire(self, timer: FakeTimer) -> None:
        self.timers.remove(timer)
        timer.callback(*timer.args)


class FakeTransport:
    """An in-memory ``broker.session.Transport``: what the session writes, parsed as a client would."""

    def __init__(self) -> None:
        self.written = bytearray()
        self.closed = False
        self.buffered = 0  # what a slow socket would hold back
        self.reading = True  # False while the memory alarm pauses this connection
        self._parser = FrameParser(ParserLimits(max_frame_bytes=1 << 26), commands=SERVER_COMMANDS)
        self._read = 0

    def write(self, data: bytes) -> None:
        assert not self.closed, "write after close"
        self.written += data

    def buffered_bytes(self) -> int:
        return self.buffered

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        self.closed = True

    @property
    def peer(self) -> str:
        return "fake:1"

    def frames(self) -> list[Frame]:
        """The frames written since the last call."""
        data, self._read = bytes(self.written[self._read:]), len(self.written)
        return self._parser.feed(data)

    def frame(self) -> Frame:
        """The one frame written since the last call."""
        frames = self.frames()
        assert len(frames) == 1, frames
        return frames[0]


class WithTenants:
    """The static users, and logins ``tenant:<name>`` shaped as facewatch's tenants are (facewatch/bus_auth.py):
    not trusted, SEND to one exact queue and to the prefixes their passcode lists (comma-separated)."""

    def __init__(self, static: StaticAuthenticator) -> None:
        self.static = static

    def authenticate(self, credentials: Credentials) -> BrokerPrincipal | None:
        if not (credentials.login or "").startswith("tenant:"):
            return self.static.authenticate(credentials)
        prefixes = tuple(p for p in (credentials.passcode or "").split(",") if p)
        return BrokerPrincipal(credentials.login or "", read_prefixes=("/topic/",), write_prefixes=prefixes,
                               write_exact=frozenset({"/queue/facewatch.api"}), tenant=credentials.login)


class Broker:
    """A BrokerCore on a FakeLoop, and sessions on FakeTransports."""

    def __init__(self, limits: BrokerLimits | None = None) -> None:
        self.loop = FakeLoop()
        users = [StaticUser("guest", "guest"), StaticUser("viewer", "pass", read=("/topic/watcher.",), write=())]
        self.core = BrokerCore(limits or BrokerLimits(), WithTenants(StaticAuthenticator(users)),
                               cast(asyncio.AbstractEventLoop, self.loop))

    def open(self) -> tuple[StompSession, FakeTransport]:
        transport = FakeTransport()
        session = StompSession(self.core, transport)
        self.core.session_opened(session)  # as server.py does
        return session, transport

    def client(self, login: str = "guest", passcode: str = "guest", **headers: str) -> Client:
        client = Client(*self.open())
        connected = client.request("CONNECT", {"accept-version": "1.2", "host": "/", "login": login,
                                               "passcode": passcode, **headers})
        assert connected.command == "CONNECTED", connected
        client.transport._parser.version = connected.headers["version"]
        return client


class Client:
    def __init__(self, session: StompSession, transport: FakeTransport) -> None:
        self.session, self.transport = session, transport

    def send(self, command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> None:
        self.session.data_received(encode_frame(Frame(command, headers or {}, body), self.session.version))

    def request(self, command: str, headers: dict[str, str] | None = None, body: bytes = b"") -> Frame:
        """Send a frame and return the one frame it is answered with."""
        self.send(command, headers, body)
        return self.transport.frame()

    def subscribe(self, destination: str, sub_id: str = "0", **headers: str) -> None:
        receipt = self.request("SUBSCRIBE", {"destination": destination, "id": sub_id, "receipt": f"sub-{sub_id}",
                                             **headers})
        assert receipt.command == "RECEIPT" and receipt.headers["receipt-id"] == f"sub-{sub_id}", receipt


@pytest.fixture
def broker() -> Broker:
    return Broker()


def test_connect_negotiates_version_and_heart_beats(broker: Broker) -> None:
    session, transport = broker.open()
    session.data_received(b"CONNECT\naccept-version:1.0,1.1,1.2\nhost:/\nlogin:guest\npasscode:guest\n"
                          b"heart-beat:2000,500\n\n\x00")
    connected = transport.frame()
    assert connected.command == "CONNECTED"
    assert connected.headers["version"] == "1.2" and connected.headers["session"] == session.id
    assert connected.headers["heart-beat"] == "10000,10000"
    # We send every max(10000, 500) ms and expect the client's every max(2000, 10000) ms.
    assert (session.send_interval_s, session.receive_interval_s) == (10.0, 10.0)
    assert session.principal is not None and session.principal.name == "guest"
    assert [t.delay for t in broker.loop.pending()] == [5.0]  # the heart-beat tick; the CONNECT deadline is gone


def test_connect_with_1_0_and_without_heart_beats(broker: Broker) -> None:
    session, transport = broker.open()
    session.data_received(b"CONNECT\nlogin:guest\npasscode:guest\n\n\x00")
    connected = transport.frame()
    assert connected.headers["version"] == "1.0" and "heart-beat" not in connected.headers
    assert broker.loop.pending() == []


@pytest.mark.parametrize(("connect", "message"), [
    ({"accept-version": "1.2", "login": "guest", "passcode": "wrong"}, "access refused"),
    ({"accept-version": "2.0", "login": "guest", "passcode": "guest"}, "unsupported protocol version"),
    ({"accept-version": "1.2", "login": "guest", "passcode": "guest", "heart-beat": "soon"},
     "invalid heart-beat header"),
])
def test_a_refused_connect_is_answered_with_error_and_closed(broker: Broker, connect: dict[str, str],
                                                             message: str) -> None:
    session, transport = broker.open()
    session.data_received(encode_frame(Frame("CONNECT", connect)))
    error = transport.frame()
    assert error.command == "ERROR" and error.headers["message"] == message
    assert transport.closed and session.closed and session not in broker.core.sessions


def test_frames_before_connect_are_refused(broker: Broker) -> None:
    session, transport = broker.open()
    session.data_received(b"SEND\ndestination:/topic/a\nreceipt:r\n\nx\x00")
    error = transport.frame()
    assert error.command == "ERROR" and error.headers["message"] == "not connected"
    assert error.headers["receipt-id"] == "r" and transport.closed


def test_no_connect_in_time_is_an_error(broker: Broker) -> None:
    session, transport = broker.open()
    deadline, = broker.loop.pending()
    assert deadline.delay == broker.core.limits.connect_timeout_s
    broker.loop.fire(deadline)
    error = transport.frame()
    assert error.headers["message"] == "connect timeout" and transport.closed


def test_subscribe_send_message_and_receipts(broker: Broker) -> None:
    sub, pub = broker.client(), broker.client()
    sub.subscribe("/topic/watcher.*")
    receipt = pub.request("SEND", {"destination": "/topic/watcher.cam1", "receipt": "r2", "x-custom": "a:b\nc",
                                   "content-type": "application/octet-stream"}, b"bin\x00ary")
    assert receipt.command == "RECEIPT" and receipt.headers == {"receipt-id": "r2"}
    message = sub.transport.frame()
    assert message.command == "MESSAGE" and message.body == b"bin\x00ary"
    assert message.headers["destination"] == "/topic/watcher.cam1" and message.headers["subscription"] == "0"
    assert message.headers["x-custom"] == "a:b\nc" and message.headers["content-type"] == "application/octet-stream"
    assert "receipt" not in message.headers and message.headers["message-id"]
    pub.send("SEND", {"destination": "/topic/other.cam1"}, b"no")
    pub.send("SEND", {"destination": "/topic/watcher.cam1.deeper"}, b"no")
    assert sub.transport.frames() == []  # nothing routed: the session wrote nothing at all


def test_unsubscribe_stops_deliveries(broker: Broker) -> None:
    sub, pub = broker.client(), broker.client()
    sub.subscribe("/topic/repo.#", "a")
    pub.send("SEND", {"destination": "/topic/repo.events"}, b"one")
    assert sub.transport.frame().body == b"one"
    assert sub.request("UNSUBSCRIBE", {"id": "a", "receipt": "u"}).headers["receipt-id"] == "u"
    pub.send("SEND", {"destination": "/topic/repo.events"}, b"late")
    assert sub.transport.frames() == []
    error = sub.request("UNSUBSCRIBE", {"id": "a"})
    assert error.command == "ERROR" and error.headers["message"] == "unknown subscription"


def test_client_individual_ack_and_nack(broker: Broker) -> None:
    consumer, producer = broker.client(), broker.client()
    consumer.subscribe("/queue/jobs", ack="client-individual")
    for body in (b"a", b"b"):
        producer.send("SEND", {"destination": "/queue/jobs"}, body)
    first, second = consumer.transport.frames()
    assert (first.body, second.body) == (b"a", b"b") and first.headers["ack"] != second.headers["ack"]
    assert consumer.request("ACK", {"id": second.headers["ack"], "receipt": "ok"}).headers["receipt-id"] == "ok"
    consumer.send("NACK", {"id": first.headers["ack"]})
    again = consumer.transport.frame()
    assert again.body == b"a" and again.headers["redelivered"] == "true"
    error = consumer.request("ACK", {"id": second.headers["ack"], "receipt": "twice"})
    assert error.command == "ERROR" and error.headers["message"] == "unknown message to acknowledge"
    assert error.headers["receipt-id"] == "twice" and consumer.transport.closed


def test_unacked_messages_go_back_to_the_queue_when_a_consumer_leaves(broker: Broker) -> None:
    first, producer = broker.client(), broker.client()
    first.subscribe("/queue/work", ack="client")
    producer.send("SEND", {"destination": "/queue/work"}, b"job")
    assert first.transport.frame().body == b"job"
    first.session.connection_lost()
    assert first.transport.closed
    second = broker.client()
    second.send("SUBSCRIBE", {"destination": "/queue/work", "id": "0", "ack": "client", "receipt": "s"})
    redelivered, receipt = second.transport.frames()  # what waits is handed out before the RECEIPT
    assert redelivered.body == b"job" and redelivered.headers["redelivered"] == "true"
    assert receipt.headers["receipt-id"] == "s"


def test_transactions_deliver_at_commit_only(broker: Broker) -> None:
    sub, pub = broker.client(), broker.client()
    sub.subscribe("/topic/tx")
    pub.send("BEGIN", {"transaction": "t1"})
    pub.send("SEND", {"destination": "/topic/tx", "transaction": "t1"}, b"one")
    assert sub.transport.frames() == []
    pub.send("COMMIT", {"transaction": "t1"})
    assert [m.body for m in sub.transport.frames()] == [b"one"]
    pub.send("BEGIN", {"transaction": "t2"})
    pub.send("SEND", {"destination": "/topic/tx", "transaction": "t2"}, b"never")
    assert pub.request("ABORT", {"transaction": "t2", "receipt": "ab"}).headers["receipt-id"] == "ab"
    assert sub.transport.frames() == []
    assert pub.request("COMMIT", {"transaction": "t2"}).headers["message"] == "unknown transaction"


def test_temp_queue_replies_reach_the_requester(broker: Broker) -> None:
    service, requester = broker.client(), broker.client()
    service.subscribe("/queue/facewatch.api")
    requester.send("SEND", {"destination": "/queue/facewatch.api", "reply-to": "/temp-queue/r1",
                            "correlation-id": "c-1"}, b"ping")
    request = service.transport.frame()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/reply-queue/")
    service.send("SEND", {"destination": reply_to, "correlation-id": "c-1"}, b"pong")
    reply = requester.transport.frame()
    assert reply.body == b"pong" and reply.headers["subscription"] == "/temp-queue/r1"
    requester.session.connection_lost()  # its reply queue goes with it
    late = service.request("SEND", {"destination": reply_to, "receipt": "late"}, b"to nobody")
    assert late.headers["receipt-id"] == "late" and not service.transport.closed


def test_permissions(broker: Broker) -> None:
    viewer = broker.client("viewer", "pass")
    viewer.subscribe("/topic/watcher.cam1")
    error = viewer.request("SEND", {"destination": "/topic/watcher.cam1"}, b"forged")
    assert error.headers["message"] == "access refused" and viewer.transport.closed
    other = broker.client("viewer", "pass")
    refused = other.request("SUBSCRIBE", {"destination": "/queue/facewatch.api", "id": "x", "receipt": "r"})
    assert refused.headers["message"] == "access refused" and refused.headers["receipt-id"] == "r"


@pytest.mark.parametrize(("data", "message"), [
    (b"SEND\ndestination:/topic/a\ncontent-length:3\n\nabcd\x00", "not terminated by NUL"),
    (b"EXPLODE\n\n\x00", "unknown command"),
    (b"SEND\ndestination:/topic/a\nbad:\\q\n\n\x00", "invalid header escape"),
    (b"\xde\xad\xbe\xef\n\n\x00", "not UTF-8"),
    (b"SEND\n\n\x00", "missing destination header"),
    (b"SUBSCRIBE\ndestination:/topic/a\n\n\x00", "missing id header"),
    (b"SEND\ndestination:/nowhere/a\n\n\x00", "unknown destination type"),
    (b"CONNECT\naccept-version:1.2\n\n\x00", "already connected"),
    (b"SUBSCRIBE\ndestination:/topic/a\nid:1\nack:sometimes\n\n\x00", "invalid ack mode"),
])
def test_bad_frames_are_answered_with_error_and_close_only_that_session(broker: Broker, data: bytes,
                                                                      message: str) -> None:
    bystander, bad = broker.client(), broker.client()
    bystander.subscribe("/topic/alive")
    bad.session.data_received(data)
    error = bad.transport.frame()
    assert error.command == "ERROR" and message in error.headers["message"]
    assert bad.transport.closed and bad.session not in broker.core.sessions
    bad.session.data_received(b"SEND\ndestination:/topic/alive\n\nignored\x00")  # after close: nothing happens
    assert bad.transport.frames() == [] and bystander.transport.frames() == []
    broker.client().send("SEND", {"destination": "/topic/alive"}, b"still here")
    assert bystander.transport.frame().body == b"still here"


def test_frames_complete_before_a_bad_one_in_the_same_read_are_handled_first(broker: Broker) -> None:
    client = broker.client()
    client.session.data_received(b"SUBSCRIBE\ndestination:/topic/a\nid:1\nreceipt:r\n\n\x00EXPLODE\n\n\x00")
    receipt, error = client.transport.frames()
    assert receipt.headers["receipt-id"] == "r"
    assert error.headers["message"] == "unknown command" and client.transport.closed


def test_frames_split_across_reads(broker: Broker) -> None:
    client = broker.client()
    data = encode_frame(Frame("SUBSCRIBE", {"destination": "/topic/a", "id": "1", "receipt": "split"}))
    for i in range(len(data)):
        client.session.data_received(data[i:i + 1])
    assert client.transport.frame().headers["receipt-id"] == "split"


def test_disconnect_answers_its_receipt_then_closes_and_frees_the_slot() -> None:
    broker = Broker(BrokerLimits(max_connections_per_login=1))
    client = broker.client()
    session, transport = broker.open()
    session.data_received(b"CONNECT\naccept-version:1.2\nlogin:guest\npasscode:guest\n\n\x00")
    assert transport.frame().headers["message"] == "too many connections"
    receipt = client.request("DISCONNECT", {"receipt": "bye"})
    assert receipt.command == "RECEIPT" and receipt.headers["receipt-id"] == "bye"
    assert client.transport.closed and client.session.closed and broker.core.sessions == set()
    assert broker.client()  # the slot is free at once


def test_a_full_transport_holds_deliveries_until_it_drains() -> None:
    broker = Broker(BrokerLimits(session_high_water_bytes=1000))
    sub, pub = broker.client(), broker.client()
    sub.subscribe("/topic/flood")
    sub.transport.buffered = 1000  # the socket is full
    for i in range(3):
        pub.send("SEND", {"destination": "/topic/flood"}, str(i).encode())
    assert sub.transport.frames() == []  # held in the subscription's queue
    sub.transport.buffered = 0
    sub.session.on_writable()
    assert [m.body for m in sub.transport.frames()] == [b"0", b"1", b"2"]


def test_heart_beats_are_sent_and_enforced() -> None:
    broker = Broker(BrokerLimits(heartbeat_send_ms=100, heartbeat_receive_ms=100))
    client = broker.client(**{"heart-beat": "200,150"})
    session = client.session
    assert (session.send_interval_s, session.receive_interval_s) == (0.15, 0.2)
    tick, = broker.loop.pending()
    assert tick.delay == 0.075  # half the shorter interval
    session.last_sent -= 1.0  # as if a second had passed without a frame to the client
    broker.loop.fire(tick)
    assert client.transport.written.endswith(b"\n") and client.transport.frames() == []  # a heart-beat
    tick, = broker.loop.pending()
    session.data_received(b"\n")  # the client's heart-beat keeps it alive
    broker.loop.fire(tick)
    assert not session.closed
    tick, = broker.loop.pending()
    session.last_received -= 0.2 * broker.core.limits.heartbeat_grace + 0.01  # silent past the grace
    broker.loop.fire(tick)
    assert session.closed and client.transport.closed and broker.loop.pending() == []


def test_frames_in_the_same_read_as_connect_follow_the_negotiated_version() -> None:
    """1.2 refuses an undefined escape such as \\q; a SEND arriving in one read with its CONNECT used to be
    parsed by 1.0 rules (no escapes) and got through."""
    session, transport = Broker().open()
    session.data_received(b"CONNECT\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00"
                          b"SEND\ndestination:/topic/a\nbad:\\q\n\n\x00")
    connected, error = transport.frames()
    assert connected.command == "CONNECTED" and connected.headers["version"] == "1.2"
    assert error.command == "ERROR" and "escape" in error.headers["message"]


def test_receipts_of_transactional_frames_come_at_commit(broker: Broker) -> None:
    """A RECEIPT means "routed" to clients (RabbitMQ sends them at COMMIT): not before the COMMIT."""
    sub, pub = broker.client(), broker.client()
    sub.subscribe("/topic/tx")
    pub.send("BEGIN", {"transaction": "t1"})
    pub.send("SEND", {"destination": "/topic/tx", "transaction": "t1", "receipt": "r1"}, b"one")
    assert pub.transport.frames() == []  # not routed yet: no receipt
    pub.send("COMMIT", {"transaction": "t1", "receipt": "c1"})
    assert [f.headers["receipt-id"] for f in pub.transport.frames()] == ["r1", "c1"]
    assert [m.body for m in sub.transport.frames()] == [b"one"]
    pub.send("BEGIN", {"transaction": "t2"})
    pub.send("SEND", {"destination": "/topic/tx", "transaction": "t2", "receipt": "r2"}, b"never")
    pub.send("ABORT", {"transaction": "t2", "receipt": "a2"})
    assert [f.headers["receipt-id"] for f in pub.transport.frames()] == ["r2", "a2"]  # discarded, still answered
    assert sub.transport.frames() == []


def test_exact_write_permissions_are_not_prefixes(broker: Broker) -> None:
    tenant = broker.client("tenant:a", "")
    assert tenant.request("SEND", {"destination": "/queue/facewatch.api", "receipt": "r"}).command == "RECEIPT"
    refused = tenant.request("SEND", {"destination": "/queue/facewatch.api.parked", "receipt": "r"}, b"x")
    assert refused.headers["message"] == "access refused" and tenant.transport.closed
    assert "facewatch.api.parked" not in broker.core.router.queues


def test_held_bytes_count_a_fanned_out_message_once_until_every_holder_lets_go(broker: Broker) -> None:
    a, b, pub = broker.client(), broker.client(), broker.client()
    a.subscribe("/topic/t", ack="client")
    b.subscribe("/topic/t", ack="client")
    pub.send("SEND", {"destination": "/topic/t"}, b"x" * 1000)
    held = broker.core.router.held
    (message_a,), (message_b,) = a.transport.frames(), b.transport.frames()
    assert 1000 <= held.total < 1100 and held.by_publisher["guest"] == held.total  # one object, counted once
    a.send("ACK", {"id": message_a.headers["ack"]})
    assert 1000 <= held.total < 1100  # b still holds it
    b.send("ACK", {"id": message_b.headers["ack"]})
    assert held.total == 0 and not held.by_publisher
    b.session.close()  # and what waits in a queue is released with it
    pub.send("SEND", {"destination": "/topic/t"}, b"y" * 500)
    a.session.close()
    assert held.total == 0


def test_a_tenant_over_its_quota_waits_until_its_messages_are_consumed() -> None:
    broker = Broker(BrokerLimits(max_held_bytes_per_login=2000))
    tenant = broker.client("tenant:a", "")
    for _ in range(2):
        tenant.send("SEND", {"destination": "/queue/facewatch.api"}, b"r" * 900)
    assert tenant.transport.reading  # 1,800 held: under its quota
    tenant.send("SEND", {"destination": "/queue/facewatch.api"}, b"r" * 900)
    assert not tenant.transport.reading and not tenant.transport.closed  # paused, not refused
    other = broker.client("tenant:b", "")
    other.send("SEND", {"destination": "/queue/facewatch.api"}, b"r" * 900)
    assert other.transport.reading  # a quota is per login: another tenant is not held back
    api = broker.client()
    api.send("SUBSCRIBE", {"destination": "/queue/facewatch.api", "id": "0", "ack": "client-individual",
                           "prefetch-count": "1"})
    (first,) = api.transport.frames()
    assert not tenant.transport.reading  # delivered but not acknowledged: still held
    api.send("ACK", {"id": first.headers["ack"]})
    (second,) = api.transport.frames()
    assert not tenant.transport.reading  # 1,800 of 2,000 held: paused until below three quarters (1,500)
    api.send("ACK", {"id": second.headers["ack"]})
    assert tenant.transport.reading


def test_the_memory_alarm_pauses_tenants_publishers_and_never_the_servers_own() -> None:
    broker = Broker(BrokerLimits(max_held_bytes=3000))
    tenant, server = broker.client("tenant:a", ""), broker.client()
    slow = broker.client()
    slow.subscribe("/topic/events", ack="client")
    for _ in range(4):
        server.send("SEND", {"destination": "/topic/events"}, b"e" * 1000)
    assert server.transport.reading  # trusted: it is what drains the queues
    tenant.send("SEND", {"destination": "/queue/facewatch.api"}, b"r" * 10)
    assert not tenant.transport.reading and not tenant.transport.closed
    *_, last = slow.transport.frames()
    slow.send("ACK", {"id": last.headers["ack"]})  # cumulative: all four released
    assert tenant.transport.reading
    assert broker.core.stats()["paused_publishers"] == 0


def test_a_slow_subscriber_is_bounded_in_bytes_as_well_as_messages() -> None:
    broker = Broker(BrokerLimits(max_pending_bytes=5000))
    sub, pub = broker.client(), broker.client()
    sub.subscribe("/topic/big")
    sub.transport.buffered = 10**9  # the socket is full: everything waits in the subscription's queue
    for i in range(10):
        pub.send("SEND", {"destination": "/topic/big"}, bytes([65 + i]) * 1000)
    assert broker.core.router.held.total <= 5000 + 100
    sub.transport.buffered = 0
    sub.session.on_writable()
    bodies = [m.body[:1] for m in sub.transport.frames()]
    assert len(bodies) <= 5 and bodies[-1] == b"J"  # the newest kept, the oldest dropped
    assert broker.core.stats()["dropped"] == 10 - len(bodies)


def test_named_queues_temp_queues_and_transactions_have_limits() -> None:
    broker = Broker(BrokerLimits(max_queues_per_login=2, max_temp_queues_per_connection=2,
                                 max_transaction_bytes=1000))
    tenant = broker.client("tenant:a", "/queue/own.")
    for name in ("own.1", "own.2"):
        tenant.send("SEND", {"destination": f"/queue/{name}"}, b"x")
    refused = tenant.request("SEND", {"destination": "/queue/own.3", "receipt": "r"}, b"x")
    assert refused.headers["message"] == "too many queues"
    trusted = broker.client()
    trusted.send("SEND", {"destination": "/queue/own.3", "receipt": "r"}, b"x")
    assert trusted.transport.frame().command == "RECEIPT"  # the server's own are not a tenant's quota

    replies = broker.client()
    for name in ("a", "b"):
        replies.send("SEND", {"destination": "/queue/q", "reply-to": f"/temp-queue/{name}"})
    refused = replies.request("SEND", {"destination": "/queue/q", "reply-to": "/temp-queue/c", "receipt": "r"})
    assert refused.headers["message"] == "too many temporary queues"

    tx = broker.client()
    tx.send("BEGIN", {"transaction": "t"})
    tx.send("SEND", {"destination": "/topic/t", "transaction": "t"}, b"x" * 600)
    refused = tx.request("SEND", {"destination": "/topic/t", "transaction": "t", "receipt": "r"}, b"x" * 600)
    assert refused.headers["message"] == "transaction too large"
