"""The MQTT bridge: camera events from the bus, published to an MQTT broker (aiomqtt, on the event loop).

Events arrive on the bus client's thread and are handed to the loop; they wait
in a bounded queue (beyond ``max_queue`` the oldest is dropped and counted) for
one publishing task, which keeps a connection to the MQTT broker and makes a
new one after a failure (backing off from ``reconnect_initial_s`` to
``reconnect_max_s``). A message leaves the queue only once published, so one in
flight when the connection dropped goes again on the next. The availability
topic says ``online`` once connected; the broker says ``offline`` for us (the
will) if the connection dies, and we say it ourselves on a clean stop.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections import deque
from dataclasses import dataclass

import aiomqtt

from broker.client import BusMessage
from events import JSON, Event, EventError, decode

from .messages import OFFLINE, ONLINE, MqttMessage, Routing

__all__ = ("MqttBridge", "BrokerOptions", "BridgeStats")

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class BrokerOptions:
    """How to reach the MQTT broker and publish to it."""

    host: str
    port: int
    client_id: str
    username: str | None = None
    password: str | None = None
    tls: ssl.SSLContext | None = None
    keepalive_s: int = 60
    qos: int = 0
    reconnect_initial_s: float = 1.0
    reconnect_max_s: float = 30.0
    timeout_s: float = 10.0  # connecting, and each publication's acknowledgement (QoS 1 and 2)

    @property
    def address(self) -> str:
        return f"{'mqtts' if self.tls else 'mqtt'}://{self.host}:{self.port}"


@dataclass(slots=True)
class BridgeStats:
    """Counters for /metrics and the logs (written on the loop; read from anywhere)."""

    published: int = 0
    dropped: int = 0  # oldest events dropped because the queue was full (broker down or slow)
    connections: int = 0  # successful connections
    failures: int = 0  # connection attempts that failed, and connections lost
    connected: bool = False
    queued: int = 0


class MqttBridge:
    """Create on the event loop, ``start()``, feed ``on_bus_message`` (any thread), ``await stop()``."""

    def __init__(self, options: BrokerOptions, routing: Routing, max_queue: int = 1000) -> None:
        self.options = options
        self.routing = routing
        self.max_queue = max_queue
        self.stats = BridgeStats()
        self._loop = asyncio.get_running_loop()
        self._queue: deque[MqttMessage] = deque()
        self._wake = asyncio.Event()  # something queued, or stopping
        self._stopping = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    # -- in ------------------------------------------------------------------------------------------
    def on_bus_message(self, message: BusMessage) -> None:
        """A message of a camera topic (on the bus client's thread): queued on the loop if it is to go out."""
        try:
            event = decode(message.body, message.headers.get("content-type", JSON))
        except EventError:
            return
        self.on_event(event)

    def on_event(self, event: Event) -> None:
        """A decoded event, from any thread."""
        outgoing = self.routing.message_for(event)
        if outgoing is not None:
            self._loop.call_soon_threadsafe(self.offer, outgoing)

    def offer(self, outgoing: MqttMessage) -> None:
        """Queue a message (on the loop); the oldest waiting is dropped when the queue is full."""
        if len(self._queue) >= self.max_queue:
            self._queue.popleft()
            self.stats.dropped += 1
            if self.stats.dropped == 1 or self.stats.dropped % 1000 == 0:
                log.warning("MQTT bridge: queue full (%d), oldest event dropped (%d so far); broker %s %s",
                            self.max_queue, self.stats.dropped, self.options.address,
                            "connected" if self.stats.connected else "not connected")
        self._queue.append(outgoing)
        self.stats.queued = len(self._queue)
        self._wake.set()

    # -- out -----------------------------------------------------------------------------------------
    def _client(self) -> aiomqtt.Client:
        o = self.options
        return aiomqtt.Client(
            o.host, o.port, username=o.username, password=o.password, identifier=o.client_id,
            tls_context=o.tls, keepalive=o.keepalive_s, timeout=o.timeout_s,
            # paho checks the host name itself unless told not to, whatever the context says.
            tls_insecure=None if o.tls is None else not o.tls.check_hostname,
            will=aiomqtt.Will(self.routing.availability_topic, OFFLINE, qos=1, retain=True))

    async def run(self) -> None:
        """Publishes until ``stop()``, connecting again after each failure."""
        delay = self.options.reconnect_initial_s
        # One client for every attempt (its context is reusable): each attempt closes the last one's socket.
        client = self._client()
        while not self._stopping.is_set():
            try:
                async with client:
                    self.stats.connected = True
                    self.stats.connections += 1
                    delay = self.options.reconnect_initial_s
                    log.info("MQTT bridge connected to %s as %s; topics under %s/", self.options.address,
                             self.options.client_id, self.routing.prefix)
                    await self._publish(client, MqttMessage(self.routing.availability_topic, ONLINE, True), qos=1)
                    await self._pump(client)
                    await self._publish(client, MqttMessage(self.routing.availability_topic, OFFLINE, True), qos=1)
                return
            except aiomqtt.MqttError as exc:
                self.stats.failures += 1
                # The text, not the exception: a handler that keeps records (tests do) would keep alive what its
                # traceback holds, such as the socket of a failed TLS handshake.
                log.warning("MQTT bridge: broker %s: %s; %d event(s) waiting; next try in %.1fs",
                            self.options.address, str(exc), len(self._queue), delay)
            except Exception:  # the task's boundary: a bridge that died quietly would just stop publishing
                self.stats.failures += 1
                log.exception("MQTT bridge: unexpected error with broker %s; next try in %.0fs",
                              self.options.address, delay)
            finally:
                self.stats.connected = False
            try:
                # A timer by nature (the backoff), cut short by stop().
                await asyncio.wait_for(self._stopping.wait(), delay)
            except TimeoutError:
                pass
            delay = min(delay * 2, self.options.reconnect_max_s)

    async def _publish(self, client: aiomqtt.Client, outgoing: MqttMessage, qos: int | None = None) -> None:
        await client.publish(outgoing.topic, outgoing.payload, qos=self.options.qos if qos is None else qos,
                             retain=outgoing.retain, timeout=self.options.timeout_s)

    async def _pump(self, client: aiomqtt.Client) -> None:
        """Publishes what is queued, in order, until stopping (then what is queued still, and returns).
        Raises MqttError when the connection is lost, also while idle."""
        # Nothing is subscribed, so this ends only with the connection: the sign it was lost while idle.
        lost = asyncio.ensure_future(anext(aiter(client.messages)))
        try:
            while True:
                while self._queue:
                    if lost.done():
                        lost.result()
                    head = self._queue[0]
                    await self._publish(client, head)
                    # Off the queue only once published. (While it was in flight a full queue may have
                    # dropped it as the oldest: then it is gone already.)
                    if self._queue and self._queue[0] is head:
                        self._queue.popleft()
                    self.stats.published += 1
                    self.stats.queued = len(self._queue)
                if self._stopping.is_set():
                    return
                self._wake.clear()
                woken = asyncio.ensure_future(self._wake.wait())
                try:
                    await asyncio.wait((woken, lost), return_when=asyncio.FIRST_COMPLETED)
                finally:
                    woken.cancel()
                if lost.done():
                    lost.result()
                    raise aiomqtt.MqttError("connection closed")
        finally:
            lost.cancel()
            await asyncio.gather(lost, return_exceptions=True)

    def start(self) -> None:
        self._task = self._loop.create_task(self.run(), name="mqtt-bridge")

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Publishes what is queued, says offline and disconnects; cut off after ``timeout_s`` (a broker that
        does not answer)."""
        self._stopping.set()
        self._wake.set()
        if self._task is not None:
            done, _ = await asyncio.wait({self._task}, timeout=timeout_s)
            if not done:
                self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        log.info("MQTT bridge stopped: %d event(s) published, %d dropped, %d not sent", self.stats.published,
                 self.stats.dropped, len(self._queue))
