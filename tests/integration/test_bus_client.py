"""The bus client, unchanged, against the embedded broker and against RabbitMQ."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Callable, Iterator

import pytest

from broker.client import BrokerAddress, BusClient, BusError, BusMessage, BusTimeout
from broker.embedded import BrokerThread
from tests.waiting import eventually

from .conftest import USERS, collecting_client, start_embedded


def unique(prefix: str) -> str:
    return f"{prefix}.{uuid.uuid4().hex[:10]}"


@pytest.fixture
def clients(broker_address: BrokerAddress) -> Iterator[Callable[[], BusClient]]:
    made: list[BusClient] = []

    def make() -> BusClient:
        client = BusClient(broker_address)
        client.connect()
        made.append(client)
        return client

    yield make
    for client in made:
        client.close()


def test_publish_subscribe_with_wildcards(clients: Callable[[], BusClient]) -> None:
    sub, pub = clients(), clients()
    base = unique("watcher")
    star: list[BusMessage] = []
    hash_: list[BusMessage] = []
    sub.subscribe(f"/topic/{base}.*", star.append, receipt=True)
    sub.subscribe(f"/topic/{base}.#", hash_.append, receipt=True)
    pub.publish(f"/topic/{base}.cam1", {"event": "face.recognized"}, receipt=True)
    pub.publish(f"/topic/{base}.cam1.sub", b"deep", receipt=True)
    eventually(lambda: len(hash_) == 2 and len(star) == 1, what="both messages on #, one on *")
    assert star[0].json() == {"event": "face.recognized"}
    assert star[0].headers["content-type"] == "application/json"
    assert sorted(m.body for m in hash_) == [b"deep", b'{"event":"face.recognized"}']


def test_competing_consumers_share_a_queue(clients: Callable[[], BusClient]) -> None:
    queue = f"/queue/{unique('work')}"
    workers = [clients() for _ in range(2)]
    got: list[list[bytes]] = [[], []]

    def collect(bodies: list[bytes]) -> Callable[[BusMessage], None]:
        return lambda m: bodies.append(m.body)

    for index, worker in enumerate(workers):
        worker.subscribe(queue, collect(got[index]), receipt=True)
    producer = clients()
    for i in range(20):
        producer.publish(queue, str(i))
    eventually(lambda: len(got[0]) + len(got[1]) == 20, what="20 messages shared by the two workers")
    assert sorted(int(b) for b in got[0] + got[1]) == list(range(20))
    assert got[0] and got[1]  # both took a share


def test_client_individual_ack_and_nack_redelivery(clients: Callable[[], BusClient]) -> None:
    queue = f"/queue/{unique('acks')}"
    consumer, producer = clients(), clients()
    seen: list[BusMessage] = []

    def handle(message: BusMessage) -> None:
        seen.append(message)
        if len(seen) == 1:
            consumer.nack(message)  # the first delivery is refused: it comes back
        else:
            consumer.ack(message)

    consumer.subscribe(queue, handle, ack="client-individual", receipt=True)
    producer.publish(queue, "job-1")
    eventually(lambda: len(seen) == 2, what="the delivery and its redelivery")
    assert [m.body for m in seen] == [b"job-1", b"job-1"]
    assert seen[1].headers.get("redelivered") == "true"


def test_a_dropped_connection_gives_back_what_it_held_and_subscribes_again(clients: Callable[[], BusClient]) -> None:
    queue = f"/queue/{unique('dropped')}"
    consumer, producer = clients(), clients()
    seen: list[BusMessage] = []
    consumer.subscribe(queue, seen.append, ack="client-individual", receipt=True)
    producer.publish(queue, "held")
    eventually(lambda: len(seen) == 1, what="the delivery (held, not acknowledged)")
    consumer.reconnect()  # as a node does when it wakes from a pause
    eventually(lambda: len(seen) == 2, timeout_s=30, what="the redelivery on the new connection")
    assert seen[1].body == b"held" and seen[1].headers.get("redelivered") == "true" and consumer.reconnects == 1
    assert not consumer.ack(seen[0])  # its connection is gone
    assert consumer.ack(seen[1])


def test_request_reply_with_correlation_and_timeout(clients: Callable[[], BusClient]) -> None:
    queue = f"/queue/{unique('api')}"
    server, caller = clients(), clients()

    def handle(request: BusMessage) -> None:
        payload = request.json()
        server.reply(request, {"sum": payload["a"] + payload["b"]}, status=200 if payload["a"] >= 0 else 400)

    server.subscribe(queue, handle, receipt=True)
    results = {}

    def call(a: int) -> None:
        results[a] = caller.request(queue, {"a": a, "b": 1}, timeout_s=10)

    threads = [threading.Thread(target=call, args=(a,)) for a in (-1, 1, 2, 3, 4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert {a: (r.status, r.json()["sum"]) for a, r in results.items()} == {
        -1: (400, 0), 1: (200, 2), 2: (200, 3), 3: (200, 4), 4: (200, 5)}
    with pytest.raises(BusTimeout):
        caller.request(f"/queue/{unique('nobody')}", {"a": 1}, timeout_s=0.5)


def test_async_iterator(clients: Callable[[], BusClient]) -> None:
    import asyncio

    sub, pub = clients(), clients()
    topic = f"/topic/{unique('events')}"

    async def main() -> list[bytes]:
        loop = asyncio.get_running_loop()
        messages = sub.messages(topic)
        first = asyncio.ensure_future(anext(messages))  # its first step (the SUBSCRIBE) is scheduled now,
        stepped = loop.create_future()
        loop.call_soon(stepped.set_result, None)  # and runs before this callback (FIFO): so it has run
        await stepped
        # The iterator asks for no receipt: one for a later frame of the same connection says the broker
        # has handled its SUBSCRIBE.
        await asyncio.to_thread(sub.publish, f"/topic/{unique('fence')}", b"", receipt=True)

        async def rest() -> list[bytes]:
            out = [(await first).body]
            async for message in messages:
                out.append(message.body)
                if len(out) == 3:
                    break
            return out

        task = asyncio.create_task(rest())
        for i in range(3):
            await asyncio.to_thread(pub.publish, topic, f"e{i}")
        return await asyncio.wait_for(task, 10)

    assert asyncio.run(main()) == [b"e0", b"e1", b"e2"]


def test_subscribe_with_receipt_returns_once_the_broker_has_it(clients: Callable[[], BusClient],
                                                               broker_address: BrokerAddress) -> None:
    topic = f"/topic/{unique('receipt')}"
    early = BusClient(broker_address)  # not connected yet: the SUBSCRIBE goes with the CONNECT
    got: list[bytes] = []
    result: list[str | Exception] = []

    def subscribe() -> None:
        try:
            result.append(early.subscribe(topic, lambda m: got.append(m.body), receipt=True, timeout_s=20))
        except Exception as exc:  # reported below
            result.append(exc)

    waiter = threading.Thread(target=subscribe)
    waiter.start()
    try:
        early.connect()
        waiter.join(30)
        assert not waiter.is_alive() and isinstance(result[0], str), result
        clients().publish(topic, "one", receipt=True)
        eventually(lambda: got == [b"one"], what="the message on the confirmed subscription")
    finally:
        early.close()


def test_subscribe_with_receipt_times_out_and_forgets_the_subscription(broker_address: BrokerAddress) -> None:
    never = BusClient(broker_address)  # never connected: no receipt can come
    with pytest.raises(BusTimeout, match="no receipt for SUBSCRIBE"):
        never.subscribe("/topic/nothing", lambda m: None, receipt=True, timeout_s=0.2)
    assert never._subs == {}  # not restored by a later connect


def test_a_refused_subscribe_with_receipt_raises_at_once(embedded: BrokerThread) -> None:
    viewer = BusClient(BrokerAddress("127.0.0.1", embedded.broker.port, "viewer", "viewer-pass"))
    viewer.connect()
    try:
        started = time.monotonic()
        with pytest.raises(BusError, match="access refused"):
            viewer.subscribe("/queue/facewatch.api", lambda m: None, receipt=True, timeout_s=20)
        assert time.monotonic() - started < 10  # the ERROR answered, not the timeout
        assert viewer._subs == {}
    finally:
        viewer.close()


def test_bad_credentials_raise(broker_address: BrokerAddress) -> None:
    bad = BusClient(BrokerAddress(broker_address.host, broker_address.port, "guest", "not-the-password",
                                  broker_address.vhost))
    with pytest.raises(BusError):
        bad.connect(timeout_s=2)


def test_address_parsing() -> None:
    a = BrokerAddress.parse("stomp://svc%40x:p%3Ass@rabbit:61614/prod")
    assert (a.login, a.passcode, a.host, a.port, a.vhost) == ("svc@x", "p:ss", "rabbit", 61614, "prod")
    assert BrokerAddress.parse("stomp://u:p@h").port == 61613
    with pytest.raises(ValueError):
        BrokerAddress.parse("http://h:1")


def _assert_resubscribed(sub: BusClient, pub: BusClient, topic: str, got: list[bytes]) -> None:
    assert sub.wait_connected(30), "client did not reconnect"
    assert pub.wait_connected(30)
    # The restored subscription delivers again. A resubscription asks for no receipt:
    # publish until one arrives (the re-SUBSCRIBE races the first publish).

    def delivered() -> bool:
        pub.publish(topic, "after", timeout_s=2)
        return bool(got)

    eventually(delivered, timeout_s=15, interval_s=0.2, ignoring=(BusError,), what="the restored subscription")
    assert b"after" in got
    assert sub.reconnects >= 1


def test_reconnect_restores_subscriptions_embedded() -> None:
    from broker.auth import StaticAuthenticator
    from broker.core import BrokerLimits
    from broker.embedded import BrokerThread, EmbeddedBroker

    first = start_embedded()
    port = first.broker.port
    address = BrokerAddress("127.0.0.1", port, "guest", "guest")
    topic = f"/topic/{unique('reconnect')}"
    sub, got = collecting_client(address, topic, heartbeats_ms=(500, 500))
    pub = BusClient(address, heartbeats_ms=(500, 500))
    pub.connect()
    first.stop()  # the broker goes away...
    eventually(lambda: not sub.wait_connected(0) and not pub.wait_connected(0), what="both clients to see it gone")
    second = BrokerThread(EmbeddedBroker(BrokerLimits(), StaticAuthenticator(USERS), port=port)).start()
    try:  # ...and comes back on the same port
        _assert_resubscribed(sub, pub, topic, got)
    finally:
        sub.close()
        pub.close()
        second.stop()


def test_reconnect_restores_subscriptions_rabbitmq(rabbitmq: BrokerAddress) -> None:
    import subprocess

    topic = f"/topic/{unique('reconnect')}"
    sub, got = collecting_client(rabbitmq, topic, heartbeats_ms=(500, 500))
    pub = BusClient(rabbitmq, heartbeats_ms=(500, 500))
    pub.connect()
    try:
        kicked = subprocess.run(["rabbitmqctl", "close_all_connections", "facewatch reconnect test"],
                                capture_output=True, text=True, timeout=60)
        assert kicked.returncode == 0, kicked.stderr
        eventually(lambda: sub.reconnects >= 1, timeout_s=30, what="the subscriber to reconnect")
        _assert_resubscribed(sub, pub, topic, got)
    finally:
        sub.close()
        pub.close()
