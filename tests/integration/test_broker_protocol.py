"""The embedded broker over raw sockets: every frame and header rule we promise."""

from __future__ import annotations

import socket
from typing import Any

import pytest

from broker.auth import BrokerPrincipal, Credentials
from broker.core import TENANT_HEADER, BrokerLimits
from broker.embedded import BrokerThread, EmbeddedBroker

from tests.waiting import eventually

from .conftest import RawStomp, start_embedded


def peer(broker: BrokerThread, **connect: str) -> RawStomp:
    raw = RawStomp(broker.broker.port)
    frame = raw.connect(**connect) if connect else raw.connect()
    assert frame.command == "CONNECTED", frame
    return raw


@pytest.mark.parametrize(("offered", "chosen"),
                         [("1.0", "1.0"), ("1.1", "1.1"), ("1.0,1.1,1.2", "1.2"), ("1.1,1.2", "1.2")])
def test_version_negotiation(embedded: BrokerThread, offered: str, chosen: str) -> None:
    raw = RawStomp(embedded.broker.port)
    assert raw.connect(version=offered).headers["version"] == chosen


def test_connect_without_accept_version_is_1_0_and_stomp_command_works(embedded: BrokerThread) -> None:
    raw = RawStomp(embedded.broker.port)
    raw.send(b"CONNECT\nlogin:guest\npasscode:guest\n\n\x00")
    assert raw.recv().headers["version"] == "1.0"
    raw2 = RawStomp(embedded.broker.port)
    raw2.send(b"STOMP\naccept-version:1.2\nhost:/\nlogin:guest\npasscode:guest\n\n\x00")
    assert raw2.recv().command == "CONNECTED"


def test_unsupported_version_errors_and_closes(embedded: BrokerThread) -> None:
    raw = RawStomp(embedded.broker.port)
    error = raw.connect(version="2.0")
    assert error.command == "ERROR" and error.headers["version"] == "1.0,1.1,1.2"
    assert raw.closed_by_peer()


@pytest.mark.parametrize(("login", "passcode"), [("guest", "wrong"), ("nobody", "guest"), ("", "")])
def test_bad_credentials_are_refused(embedded: BrokerThread, login: str, passcode: str) -> None:
    raw = RawStomp(embedded.broker.port)
    error = raw.connect(login=login, passcode=passcode)
    assert error.command == "ERROR" and error.headers["message"] == "access refused"
    assert raw.closed_by_peer()


def test_frames_before_connect_are_refused(embedded: BrokerThread) -> None:
    raw = RawStomp(embedded.broker.port)
    raw.send_frame("SEND", {"destination": "/topic/a"}, b"x")
    assert raw.recv().headers["message"] == "not connected"
    assert raw.closed_by_peer()


def test_heartbeat_negotiation_sending_and_enforcement() -> None:
    broker = start_embedded(BrokerLimits(heartbeat_send_ms=100, heartbeat_receive_ms=100))
    try:
        raw = RawStomp(broker.broker.port)
        connected = raw.connect(**{"heart-beat": "200,150"})
        assert connected.headers["heart-beat"] == "100,100"
        # We promised to send every 200 ms and said we want one every 150 ms:
        # the broker beats at max(100, 150) and expects ours within 2 x 200 ms.
        raw.sock.settimeout(1.0)
        beats = raw.sock.recv(16)
        assert beats.strip(b"\n") == b"" and len(beats) >= 1
        assert raw.closed_by_peer(timeout_s=3.0)  # we never beat: closed
        quiet = RawStomp(broker.broker.port)
        quiet.connect(**{"heart-beat": "0,0"})
        quiet.recv_none(0.6)  # a test of time: no heart-beats either way within 0.6 s, and not closed
        quiet.send_frame("DISCONNECT", {"receipt": "bye"})
        assert quiet.recv().headers["receipt-id"] == "bye"
    finally:
        broker.stop()


def test_send_subscribe_message_receipt_and_headers(embedded: BrokerThread) -> None:
    sub, pub = peer(embedded), peer(embedded)
    sub.send_frame("SUBSCRIBE", {"destination": "/topic/watcher.*", "id": "0", "receipt": "r1"})
    assert sub.recv().headers["receipt-id"] == "r1"
    body = b"bin\x00ary\x00"
    pub.send_frame("SEND", {"destination": "/topic/watcher.cam1", "receipt": "r2", "x-custom": "a:b\nc",
                            "content-type": "application/octet-stream"}, body)
    assert pub.recv().headers == {"receipt-id": "r2"}
    message = sub.recv()
    assert message.command == "MESSAGE"
    assert message.body == body
    assert message.headers["destination"] == "/topic/watcher.cam1"
    assert message.headers["subscription"] == "0"
    assert message.headers["x-custom"] == "a:b\nc"
    assert message.headers["content-type"] == "application/octet-stream"
    assert "receipt" not in message.headers and message.headers["message-id"]
    pub.send_frame("SEND", {"destination": "/topic/other.cam1"}, b"no")
    pub.send_frame("SEND", {"destination": "/topic/watcher.cam1.deeper"}, b"no")
    pub.send_frame("SEND", {"destination": "/topic/watcher.cam2"}, b"fence")
    assert sub.recv().body == b"fence"  # the next message after the two: neither was delivered


def test_hash_wildcard_and_unsubscribe(embedded: BrokerThread) -> None:
    sub, pub = peer(embedded), peer(embedded)
    sub.send_frame("SUBSCRIBE", {"destination": "/topic/repo.#", "id": "a", "receipt": "s"})
    sub.recv()
    for key in ("repo", "repo.events", "repo.events.gallery.1"):
        pub.send_frame("SEND", {"destination": f"/topic/{key}"}, key.encode())
    assert [sub.recv().body for _ in range(3)] == [b"repo", b"repo.events", b"repo.events.gallery.1"]
    sub.send_frame("UNSUBSCRIBE", {"id": "a", "receipt": "u"})
    assert sub.recv().headers["receipt-id"] == "u"
    sub.send_frame("SUBSCRIBE", {"destination": "/topic/fence", "id": "f", "receipt": "f"})
    assert sub.recv().headers["receipt-id"] == "f"
    pub.send_frame("SEND", {"destination": "/topic/repo.events"}, b"late")
    pub.send_frame("SEND", {"destination": "/topic/fence"}, b"fence")
    assert sub.recv().body == b"fence"  # the next message after "late": it was not delivered


def test_queue_round_robin_and_redelivery_on_disconnect(embedded: BrokerThread) -> None:
    a, b, producer = peer(embedded), peer(embedded), peer(embedded)
    for consumer, sid in ((a, "a"), (b, "b")):
        consumer.send_frame("SUBSCRIBE", {"destination": "/queue/work", "id": sid, "ack": "client-individual",
                                          "receipt": "s"})
        consumer.recv()
    for i in range(4):
        producer.send_frame("SEND", {"destination": "/queue/work"}, str(i).encode())
    got_a = [a.recv() for _ in range(2)]
    got_b = [b.recv() for _ in range(2)]
    assert sorted(m.body for m in got_a + got_b) == [b"0", b"1", b"2", b"3"]
    a.send_frame("ACK", {"id": got_a[0].headers["ack"]})
    a.close()  # one unacked message of a's goes back to the queue, marked
    redelivered = b.recv()
    assert redelivered.body == got_a[1].body
    assert redelivered.headers["redelivered"] == "true"


def test_nack_redelivers_and_client_ack_is_cumulative(embedded: BrokerThread) -> None:
    consumer, producer = peer(embedded), peer(embedded)
    consumer.send_frame("SUBSCRIBE", {"destination": "/queue/jobs", "id": "c", "ack": "client", "receipt": "s"})
    consumer.recv()
    for i in range(3):
        producer.send_frame("SEND", {"destination": "/queue/jobs"}, str(i).encode())
    first = [consumer.recv() for _ in range(3)]
    consumer.send_frame("NACK", {"id": first[0].headers["ack"]})  # cumulative: NACKs message 0 only
    again = consumer.recv()
    assert again.body == b"0" and again.headers["redelivered"] == "true"
    consumer.send_frame("ACK", {"id": again.headers["ack"], "receipt": "done"})  # acks 1, 2 and the redelivery
    assert consumer.recv().headers["receipt-id"] == "done"
    consumer.close()
    fresh = peer(embedded)
    fresh.send_frame("SUBSCRIBE", {"destination": "/queue/jobs", "id": "c2", "ack": "client", "receipt": "s"})
    fresh.recv()
    producer.send_frame("SEND", {"destination": "/queue/jobs"}, b"fence")
    assert fresh.recv().body == b"fence"  # first in line: nothing was left to redeliver


def test_ack_by_message_id_in_1_1_and_unknown_ack_is_an_error(embedded: BrokerThread) -> None:
    consumer, producer = peer(embedded, version="1.1"), peer(embedded)
    consumer.send_frame("SUBSCRIBE", {"destination": "/queue/v11", "id": "x", "ack": "client-individual",
                                      "receipt": "s"})
    consumer.recv()
    producer.send_frame("SEND", {"destination": "/queue/v11"}, b"m")
    message = consumer.recv()
    consumer.send_frame("ACK", {"message-id": message.headers["message-id"], "subscription": "x", "receipt": "a"})
    assert consumer.recv().headers["receipt-id"] == "a"
    consumer.send_frame("ACK", {"message-id": "nope", "subscription": "x", "receipt": "bad"})
    error = consumer.recv()
    assert error.command == "ERROR" and error.headers["receipt-id"] == "bad"


def test_transactions_commit_and_abort(embedded: BrokerThread) -> None:
    sub, pub = peer(embedded), peer(embedded)
    sub.send_frame("SUBSCRIBE", {"destination": "/topic/tx", "id": "0", "receipt": "s"})
    sub.recv()
    pub.send_frame("BEGIN", {"transaction": "t1"})
    pub.send_frame("SEND", {"destination": "/topic/tx", "transaction": "t1"}, b"one")
    pub.send_frame("SEND", {"destination": "/topic/tx", "transaction": "t1"}, b"two")
    pub.send_frame("SEND", {"destination": "/topic/tx"}, b"fence")
    assert sub.recv().body == b"fence"  # outside the transaction: it overtakes the uncommitted ones
    pub.send_frame("COMMIT", {"transaction": "t1"})
    assert [sub.recv().body for _ in range(2)] == [b"one", b"two"]
    pub.send_frame("BEGIN", {"transaction": "t2"})
    pub.send_frame("SEND", {"destination": "/topic/tx", "transaction": "t2"}, b"never")
    pub.send_frame("ABORT", {"transaction": "t2", "receipt": "ab"})
    assert pub.recv().headers["receipt-id"] == "ab"
    pub.send_frame("SEND", {"destination": "/topic/tx"}, b"fence")
    assert sub.recv().body == b"fence"  # the aborted message never came
    pub.send_frame("COMMIT", {"transaction": "t2"})
    assert pub.recv().headers["message"] == "unknown transaction"


def test_transactional_ack(embedded: BrokerThread) -> None:
    consumer, producer = peer(embedded), peer(embedded)
    consumer.send_frame("SUBSCRIBE", {"destination": "/queue/txack", "id": "q", "ack": "client-individual",
                                      "receipt": "s"})
    consumer.recv()
    producer.send_frame("SEND", {"destination": "/queue/txack"}, b"m")
    message = consumer.recv()
    consumer.send_frame("BEGIN", {"transaction": "t"})
    consumer.send_frame("ACK", {"id": message.headers["ack"], "transaction": "t"})
    consumer.send_frame("ABORT", {"transaction": "t"})
    consumer.close()  # the ACK was aborted: the message comes back
    other = peer(embedded)
    other.send_frame("SUBSCRIBE", {"destination": "/queue/txack", "id": "q"})
    assert other.recv().headers["redelivered"] == "true"


def test_temp_queue_replies_reach_only_the_requester(embedded: BrokerThread) -> None:
    service, requester, snooper = peer(embedded), peer(embedded), peer(embedded)
    service.send_frame("SUBSCRIBE", {"destination": "/queue/facewatch.api", "id": "api", "receipt": "s"})
    service.recv()
    requester.send_frame("SEND", {"destination": "/queue/facewatch.api", "reply-to": "/temp-queue/r1",
                                  "correlation-id": "c-1"}, b"ping")
    request = service.recv()
    reply_to = request.headers["reply-to"]
    assert reply_to.startswith("/reply-queue/") and len(reply_to) > 30  # an unguessable token
    service.send_frame("SEND", {"destination": reply_to, "correlation-id": "c-1"}, b"pong")
    reply = requester.recv()
    assert reply.body == b"pong" and reply.headers["subscription"] == "/temp-queue/r1"
    assert reply.headers["correlation-id"] == "c-1"
    snooper.send_frame("SUBSCRIBE", {"destination": "/temp-queue/r1", "id": "t", "receipt": "x"})
    assert snooper.recv().command == "ERROR"
    requester.close()
    token, core = reply_to.removeprefix("/reply-queue/"), embedded.broker.core
    assert core is not None
    eventually(lambda: token not in core.router.reply_queues,
               what="the broker to drop the closed requester's reply queue")
    service.send_frame("SEND", {"destination": reply_to, "receipt": "late"}, b"to nobody")
    assert service.recv().headers["receipt-id"] == "late"  # dropped quietly, the service lives on


def test_permissions_by_prefix(embedded: BrokerThread) -> None:
    viewer = peer(embedded, login="viewer", passcode="viewer-pass")
    viewer.send_frame("SUBSCRIBE", {"destination": "/topic/watcher.cam1", "id": "ok", "receipt": "r"})
    assert viewer.recv().headers["receipt-id"] == "r"
    viewer.send_frame("SEND", {"destination": "/topic/watcher.cam1"}, b"forged")
    error = viewer.recv()
    assert error.headers["message"] == "access refused"
    assert viewer.closed_by_peer()
    other = peer(embedded, login="viewer", passcode="viewer-pass")
    other.send_frame("SUBSCRIBE", {"destination": "/queue/facewatch.api", "id": "no"})
    assert other.recv().headers["message"] == "access refused"


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"SEND\ndestination:/topic/a\n\nno terminator" + b"x" * 5000, "frame too large"),
        (b"SEND\ndestination:/topic/a\ncontent-length:3\n\nabcd\x00", "not terminated by NUL"),
        (b"SEND\ndestination:/topic/a\ncontent-length:-1\n\n\x00", "bad content-length"),
        (b"EXPLODE\n\n\x00", "unknown command"),
        (b"SEND\ndestination:/topic/a\nbad:\\q\n\n\x00", "invalid header escape"),
        (b"\xde\xad\xbe\xef\x00\x01\x02\n\n\x00", "not UTF-8"),
        (b"GARBAGE\x00\x01\x02\n\n\x00", "unknown command"),
        (b"SEND\n\n\x00", "missing destination header"),
        (b"SUBSCRIBE\ndestination:/topic/a\n\n\x00", "missing id header"),
        (b"SEND\ndestination:/nowhere/a\n\n\x00", "unknown destination type"),
        (b"CONNECT\naccept-version:1.2\n\n\x00", "already connected"),
    ],
)
def test_malformed_input_errors_and_closes_only_that_connection(data: bytes, message: str) -> None:
    broker = start_embedded(BrokerLimits(max_frame_bytes=4096))
    try:
        bystander_sub, bystander_pub = peer(broker), peer(broker)
        bystander_sub.send_frame("SUBSCRIBE", {"destination": "/topic/alive", "id": "0", "receipt": "s"})
        bystander_sub.recv()
        bad = peer(broker)
        bad.send(data)
        error = bad.recv()
        assert error.command == "ERROR" and message in error.headers["message"]
        assert bad.closed_by_peer()
        bystander_pub.send_frame("SEND", {"destination": "/topic/alive"}, b"still here")
        assert bystander_sub.recv().body == b"still here"
    finally:
        broker.stop()


def test_subscription_and_connection_limits() -> None:
    broker = start_embedded(BrokerLimits(max_subscriptions_per_connection=3, max_connections_per_login=2))
    try:
        raw = peer(broker)
        for i in range(3):
            raw.send_frame("SUBSCRIBE", {"destination": f"/topic/t{i}", "id": str(i)})
        raw.send_frame("SUBSCRIBE", {"destination": "/topic/t3", "id": "3"})
        assert raw.recv().headers["message"] == "too many subscriptions"
        first, second = peer(broker), peer(broker)
        third = RawStomp(broker.broker.port)
        assert third.connect().headers["message"] == "too many connections"
        first.send_frame("DISCONNECT", {"receipt": "bye"})
        first.recv()  # the broker frees the slot in the step that sends this RECEIPT
        assert peer(broker)  # a slot is free again
        second.close()
    finally:
        broker.stop()


def test_stalled_subscriber_is_bounded_drop_oldest() -> None:
    broker = start_embedded(BrokerLimits(max_pending_messages=100, session_high_water_bytes=64 * 1024))
    try:
        stalled = peer(broker)
        stalled.send_frame("SUBSCRIBE", {"destination": "/topic/flood", "id": "0", "receipt": "s"})
        stalled.recv()
        stalled.sock.setsockopt(__import__("socket").SOL_SOCKET, __import__("socket").SO_RCVBUF, 4096)
        pub = peer(broker)
        body = b"x" * 1024
        for i in range(20_000):
            pub.send_frame("SEND", {"destination": "/topic/flood"}, body)
        pub.send_frame("SEND", {"destination": "/topic/flood", "receipt": "end"}, body)
        assert pub.recv(timeout_s=30).headers["receipt-id"] == "end"
        core = broker.broker.core
        assert core is not None
        stats = broker.call(lambda: core.stats())
        assert isinstance(stats, dict)
        assert stats["dropped"] > 10_000  # the stalled reader lost the oldest, the broker kept going
        pending = broker.call(lambda: sum(len(q.messages) for _, q in core.router.bindings))
        assert pending <= 100
    finally:
        broker.stop()


def test_stalled_subscriber_disconnect_policy() -> None:
    broker = start_embedded(BrokerLimits(max_pending_messages=50, session_high_water_bytes=16 * 1024,
                                         overflow_policy="disconnect"))
    try:
        stalled = peer(broker)
        stalled.send_frame("SUBSCRIBE", {"destination": "/topic/flood", "id": "0", "receipt": "s"})
        stalled.recv()
        pub = peer(broker)
        for _ in range(5000):
            pub.send_frame("SEND", {"destination": "/topic/flood"}, b"y" * 1024)
        pub.send_frame("SEND", {"destination": "/topic/flood", "receipt": "end"}, b"")
        assert pub.recv(timeout_s=30).headers["receipt-id"] == "end"
        core = broker.broker.core
        assert core is not None
        connections = broker.call(lambda: len(core.sessions))
        assert connections == 1  # only the publisher is left
    finally:
        broker.stop()


def test_graceful_shutdown_delivers_receipts_then_closes() -> None:
    broker = start_embedded()
    raw = peer(broker)
    raw.send_frame("SEND", {"destination": "/topic/x", "receipt": "before-stop"}, b"")
    assert raw.recv().headers["receipt-id"] == "before-stop"
    broker.stop()
    assert raw.closed_by_peer()


def test_queue_count_is_limited_and_idle_queues_are_recycled() -> None:
    broker = start_embedded(BrokerLimits(max_queues=3))
    try:
        raw = peer(broker)
        raw.send_frame("SUBSCRIBE", {"destination": "/queue/kept", "id": "k"})
        for i in range(2):  # two more queues, each holding a message
            raw.send_frame("SEND", {"destination": f"/queue/full{i}"}, b"m")
        raw.send_frame("SEND", {"destination": "/queue/one-too-many", "receipt": "r"}, b"m")
        assert raw.recv().headers["message"] == "too many queues"
        other = peer(broker)
        other.send_frame("SUBSCRIBE", {"destination": "/queue/full0", "id": "drain"})
        assert other.recv().body == b"m"
        other.send_frame("UNSUBSCRIBE", {"id": "drain"})
        # full0 is now idle (no messages, no consumers): its slot can be reused.
        other.send_frame("SEND", {"destination": "/queue/new", "receipt": "ok"}, b"m")
        assert other.recv().headers["receipt-id"] == "ok"
    finally:
        broker.stop()


def test_a_publisher_over_its_quota_is_paused_not_refused_and_resumes_as_the_queue_drains() -> None:
    broker = start_embedded(BrokerLimits(max_held_bytes_per_login=64 * 1024))
    core = broker.broker.core
    assert core is not None
    try:
        app = peer(broker, login="app", passcode="app-pass")
        for i in range(200):
            app.send_frame("SEND", {"destination": "/queue/parked"}, b"%04d" % i + b"x" * 1020)
        app.send_frame("SEND", {"destination": "/queue/parked", "receipt": "last"}, b"last")
        # The broker stops reading the publisher's socket; what it sent waits in TCP buffers, nothing is lost.
        eventually(lambda: broker.call(lambda: core.stats()["paused_publishers"]) == 1, timeout_s=10,
                   what="the publisher paused")
        held = broker.call(lambda: core.router.held.total)
        assert isinstance(held, int) and 64 * 1024 <= held < 80 * 1024
        consumer = peer(broker)
        consumer.send_frame("SUBSCRIBE", {"destination": "/queue/parked", "id": "0"})
        bodies = [consumer.recv().body for _ in range(201)]
        assert [b[:4] for b in bodies[:200]] == [b"%04d" % i for i in range(200)] and bodies[200] == b"last"
        assert app.recv().headers["receipt-id"] == "last"  # read again once the queue drained
        assert broker.call(lambda: core.stats()["paused_publishers"]) == 0
    finally:
        broker.stop()


# -- hostile input that once cost more than the sender's own connection ------------------------------------------

@pytest.mark.parametrize(("frame", "message"), [
    # str.isdigit() says yes to these, int() then refuses (or reads) them: the connection died without an
    # ERROR, and a SUBSCRIBE had bound its queue first, so the binding (and what it received) stayed forever.
    ({"command": "SUBSCRIBE", "headers": {"destination": "/topic/held", "id": "1", "prefetch-count": "\u00b2"}},
     "invalid prefetch-count"),
    ({"command": "SUBSCRIBE", "headers": {"destination": "/topic/held", "id": "1", "prefetch-count": "\u0663"}},
     "invalid prefetch-count"),
    ({"command": "SUBSCRIBE", "headers": {"destination": "/topic/held", "id": "1", "prefetch-count": "9" * 5000}},
     "invalid prefetch-count"),
    ("SEND\ndestination:/topic/held\ncontent-length:\u00b2\n\n\x00".encode(), "bad content-length"),
])
def test_numbers_in_headers_are_ascii_digits_and_a_refused_subscribe_leaves_nothing_bound(
        frame: dict[str, Any] | bytes, message: str) -> None:
    broker = start_embedded(BrokerLimits(max_header_line_bytes=16 * 1024))
    core = broker.broker.core
    assert core is not None
    try:
        bad = peer(broker)
        if isinstance(frame, bytes):
            bad.send(frame)
        else:
            bad.send_frame(frame["command"], frame["headers"], b"")
        error = bad.recv()
        assert error.command == "ERROR" and error.headers["message"] == message
        assert bad.closed_by_peer()
        publisher = peer(broker)
        publisher.send_frame("SEND", {"destination": "/topic/held", "receipt": "r"}, b"x" * 1000)
        assert publisher.recv().headers["receipt-id"] == "r"
        assert broker.call(lambda: (len(core.router.bindings), core.router.held.total)) == (0, 0)
    finally:
        broker.stop()


@pytest.mark.parametrize("heartbeat", ["\u00b2,0", "0,\u0663", "9" * 5000 + ",0"])
def test_a_heart_beat_header_of_other_digits_is_an_error(embedded: BrokerThread, heartbeat: str) -> None:
    raw = RawStomp(embedded.broker.port)
    error = raw.connect(**{"heart-beat": heartbeat})
    assert error.command == "ERROR" and error.headers["message"] == "invalid heart-beat header"
    assert raw.closed_by_peer()
    assert peer(embedded)  # and the broker takes the next connection


class _Tenants:
    """Logins "acme" and "globex" are tenants of those names; "server" is the server's own."""

    def authenticate(self, credentials: Credentials) -> BrokerPrincipal | None:
        if credentials.login == "server":
            return BrokerPrincipal("server", trusted=True)
        if credentials.login in ("acme", "globex"):
            return BrokerPrincipal(f"tenant:{credentials.login}", tenant=credentials.login,
                                   read_check=lambda destination: destination.startswith("/topic/watcher."),
                                   write_exact=frozenset({"/queue/requests"}))
        return None


def test_a_message_marked_with_a_tenant_reaches_no_other_tenants_subscription() -> None:
    # A tenant subscribed to its camera's topic, removed the camera, and another tenant registered the
    # same id: the old subscription kept receiving the new owner's events.
    broker = BrokerThread(EmbeddedBroker(BrokerLimits(), _Tenants(), port=0)).start()
    try:
        readers = {name: peer(broker, login=name, passcode="x") for name in ("acme", "globex")}
        for reader in readers.values():
            reader.send_frame("SUBSCRIBE", {"destination": "/topic/watcher.*", "id": "1", "receipt": "r"})
            assert reader.recv().command == "RECEIPT"
        server = peer(broker, login="server", passcode="x")
        server.send_frame("SEND", {"destination": "/topic/watcher.door", TENANT_HEADER: "globex"}, b"globex's")
        server.send_frame("SEND", {"destination": "/topic/watcher.door"}, b"anyone's")
        assert readers["globex"].recv().body == b"globex's"
        assert readers["globex"].recv().body == b"anyone's"
        assert readers["acme"].recv().body == b"anyone's"  # never globex's, which was sent first
        readers["acme"].recv_none()
    finally:
        broker.stop()


def test_a_principal_that_may_not_send_cannot_even_reach_a_reply_queue() -> None:
    class SubscribeOnly:
        def authenticate(self, credentials: Credentials) -> BrokerPrincipal | None:
            return BrokerPrincipal("wall", read_prefixes=("/topic/",), write_prefixes=(), tenant="acme",
                                   may_send=False)

    broker = BrokerThread(EmbeddedBroker(BrokerLimits(), SubscribeOnly(), port=0)).start()
    try:
        for destination in ("/temp-queue/mine", "/reply-queue/guessed", "/topic/anything"):
            wall = peer(broker, login="wall", passcode="x")
            wall.send_frame("SEND", {"destination": destination, "receipt": "r"}, b"x")
            error = wall.recv()
            assert error.command == "ERROR" and error.headers["message"] == "access refused", destination
    finally:
        broker.stop()


def test_replies_a_tenant_does_not_read_are_bounded_by_its_quota_not_only_per_queue() -> None:
    # The API's replies are published by the server's own (trusted) login, so they were charged to nobody:
    # a tenant that stopped reading made the broker hold 16 MiB per temp queue, 64 temp queues per
    # connection, 256 connections, and its backlog tripped the memory alarm that pauses every tenant.
    limit = 256 * 1024
    broker = start_embedded(BrokerLimits(max_held_bytes_per_login=limit, session_high_water_bytes=16 * 1024))
    core = broker.broker.core
    assert core is not None
    try:
        service = peer(broker)
        service.send_frame("SUBSCRIBE", {"destination": "/queue/requests", "id": "s", "receipt": "s"})
        service.recv()
        tenant = peer(broker, login="app", passcode="app-pass")
        tenant.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)  # and it never reads
        for i in range(40):
            tenant.send_frame("SEND", {"destination": "/queue/requests", "reply-to": f"/temp-queue/q{i % 20}"},
                              b"give me a lot")
        reply = b"r" * (64 * 1024)
        for _ in range(40):
            request = service.recv()
            service.send_frame("SEND", {"destination": request.headers["reply-to"]}, reply)
        service.send_frame("SEND", {"destination": "/topic/fence", "receipt": "done"}, b"")
        assert service.recv().headers["receipt-id"] == "done"
        held, waiting = broker.call(lambda: (core.router.held.total, core.router.backlog.by_reader["app"]))
        assert held <= limit + len(reply), held  # 40 replies of 64 KiB: 2.5 MiB without the bound
        assert waiting <= limit + len(reply)
        assert broker.call(lambda: core.stats()["paused_publishers"]) == 0
    finally:
        broker.stop()


def test_messages_a_tenant_takes_and_never_acknowledges_are_bounded_too() -> None:
    limit = 256 * 1024
    broker = start_embedded(BrokerLimits(max_held_bytes_per_login=limit))
    core = broker.broker.core
    assert core is not None
    try:
        tenant = peer(broker, login="app", passcode="app-pass")
        tenant.send_frame("SUBSCRIBE", {"destination": "/topic/events", "id": "0", "ack": "client", "receipt": "r"})
        assert tenant.recv().command == "RECEIPT"
        server = peer(broker)
        for _ in range(60):
            server.send_frame("SEND", {"destination": "/topic/events"}, b"e" * (64 * 1024))
        server.send_frame("SEND", {"destination": "/topic/fence", "receipt": "done"}, b"")
        assert server.recv().headers["receipt-id"] == "done"
        delivered = []
        while True:  # it reads everything it is sent, and acknowledges nothing
            try:
                delivered.append(tenant.recv(timeout_s=1.0))
            except TimeoutError:
                break
        held = broker.call(lambda: core.router.held.total)
        assert len(delivered) < 60 and held <= limit + 64 * 1024 + 1024, (len(delivered), held)
        tenant.send_frame("ACK", {"id": delivered[-1].headers["ack"]})  # cumulative: all of them
        tenant.send_frame("DISCONNECT", {"receipt": "bye"})
        assert tenant.recv().headers["receipt-id"] == "bye"
        assert broker.call(lambda: (core.router.held.total, dict(core.router.backlog.by_reader))) == (0, {})
    finally:
        broker.stop()
