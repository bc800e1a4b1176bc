"""The broker's shared state: queues, subscriptions, bindings, delivery, connections.

Everything that is not one connection's protocol: where a SENT message goes,
who gets it next, what is unacknowledged, what happens to a slow consumer.
Runs on one asyncio loop; no locks, no I/O (sessions do the writing).

Connections are seen through the ``Subscriber`` and ``Connection`` protocols;
``session.StompSession`` implements both, and this module never imports it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import secrets
from collections import Counter, OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .auth import BrokerAuthenticator, BrokerPrincipal
from .destinations import topic_matches
from .frames import ProtocolError, encode_message_head, encode_message_tail

__all__ = ("BrokerLimits", "Message", "MessageQueue", "Subscription", "MessageRouter", "OverflowPolicy",
           "Subscriber", "Connection", "BrokerCore")

log = logging.getLogger(__name__)

OverflowPolicy = Literal["drop_oldest", "disconnect"]

# Headers a SEND may not pass through to subscribers: the broker sets them.
_RESERVED = frozenset(
    {"destination", "message-id", "subscription", "ack", "receipt", "transaction", "content-length", "redelivered"}
)


@dataclass(slots=True, frozen=True)
class BrokerLimits:
    max_frame_bytes: int = 4 * 1024 * 1024
    max_headers: int = 64
    max_header_line_bytes: int = 8192
    max_subscriptions_per_connection: int = 256
    max_connections_per_login: int = 256
    max_pending_messages: int = 10_000  # per subscription (and per temp queue)
    max_queue_messages: int = 100_000  # per shared /queue/
    max_queues: int = 10_000  # named /queue/s; each SEND to a new name makes one
    overflow_policy: OverflowPolicy = "drop_oldest"
    # A connection whose unsent bytes pass this gets no more deliveries until
    # its socket drains; the messages wait in their (bounded) queues instead.
    session_high_water_bytes: int = 1024 * 1024
    max_open_transactions: int = 16
    max_transaction_frames: int = 10_000
    heartbeat_send_ms: int = 10_000  # how often we can send (sx)
    heartbeat_receive_ms: int = 10_000  # how often we want to hear from the client (sy)
    heartbeat_grace: float = 2.0
    connect_timeout_s: float = 10.0


@dataclass(slots=True)
class Message:
    destination: str
    headers: dict[str, str]
    body: bytes
    message_id: str
    redelivered: bool = False
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encoded_tail(self, version: str) -> bytes:
        """The part of a MESSAGE frame shared by every subscriber on a version."""
        tail = self._encoded.get(version)
        if tail is None:
            tail = self._encoded[version] = encode_message_tail(self.headers, self.body, version)
        return tail

    def redelivery(self) -> "Message":
        return Message(self.destination, self.headers, self.body, self.message_id, True)


def user_headers(headers: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in headers.items() if k not in _RESERVED}


class Subscriber(Protocol):
    """What a subscription delivers to: one connection (``session.StompSession``)."""

    @property
    def id(self) -> str: ...
    @property
    def version(self) -> str: ...  # the STOMP version frames are encoded for
    @property
    def writable(self) -> bool: ...  # False while its output is backed up
    def send_raw(self, data: bytes) -> None: ...
    def fail(self, message: str, detail: str = "", receipt: str | None = None) -> None: ...  # ERROR and close


class Connection(Subscriber, Protocol):
    """A connection as the broker's shared state sees it."""

    @property
    def principal(self) -> BrokerPrincipal | None: ...  # None until CONNECT succeeds
    def pending_bytes(self) -> int: ...  # written but not yet sent
    def close(self) -> None: ...


class Subscription:
    """One SUBSCRIBE of one connection: reads from exactly one MessageQueue."""

    def __init__(self, subscriber: Subscriber, sub_id: str, destination: str, ack: str,
                 queue: "MessageQueue", prefetch: int) -> None:
        self.subscriber = subscriber
        self.id = sub_id
        self.destination = destination
        self.ack = ack  # auto | client | client-individual
        self.queue = queue
        self.prefetch = prefetch
        self.unacked: OrderedDict[str, Message] = OrderedDict()
        self._ack_ids = itertools.count(1)

    def has_capacity(self) -> bool:
        if not self.subscriber.writable:
            return False
        return self.prefetch <= 0 or self.ack == "auto" or len(self.unacked) < self.prefetch

    def deliver(self, message: Message) -> None:
        version = self.subscriber.version
        ack_id = None
        if self.ack != "auto":
            ack_id = f"{self.subscriber.id}-{next(self._ack_ids)}"  # unique per delivery
            self.unacked[ack_id] = message
        head = encode_message_head(message.destination, message.message_id, self.id, version,
                                   redelivered=message.redelivered, ack_id=ack_id)
        self.subscriber.send_raw(head + message.encoded_tail(version))

    def take_acked(self, ack_id: str) -> list[Message] | None:
        """Remove what an ACK/NACK of ``ack_id`` covers; None if unknown."""
        if ack_id not in self.unacked:
            return None
        if self.ack == "client-individual":
            return [self.unacked.pop(ack_id)]
        covered = []  # cumulative: everything delivered up to and including it
        while self.unacked:
            key, message = self.unacked.popitem(last=False)
            covered.append(message)
            if key == ack_id:
                break
        return covered


class MessageQueue:
    """Messages waiting for consumers, handed out round robin."""

    def __init__(self, name: str, max_messages: int, policy: OverflowPolicy, *,
                 exclusive_owner: Subscriber | None = None) -> None:
        self.name = name
        self.messages: deque[Message] = deque()
        self.consumers: list[Subscription] = []
        self.max_messages = max_messages
        self.policy = policy
        self.exclusive_owner = exclusive_owner
        self.dropped = 0
        self._next = 0

    def put(self, message: Message, *, front: bool = False) -> None:
        if front:
            self.messages.appendleft(message)
        else:
            self.messages.append(message)
        if len(self.messages) > self.max_messages:
            if self.policy == "disconnect" and self.exclusive_owner is not None:
                self.messages.clear()
                self.exclusive_owner.fail("slow consumer",
                                          f"more than {self.max_messages} messages pending on {self.name}")
                return
            self.messages.popleft()
            self.dropped += 1
        self.dispatch()

    def dispatch(self) -> None:
        consumers = self.consumers
        while self.messages and consumers:
            for offset in range(len(consumers)):
                candidate = consumers[(self._next + offset) % len(consumers)]
                if candidate.has_capacity():
                    self._next = (self._next + offset + 1) % len(consumers)
                    candidate.deliver(self.messages.popleft())
                    break
            else:
                return  # nobody can take more now; resumed when one drains


class MessageRouter:
    """Where messages go: topic bindings, named queues, reply queues."""

    def __init__(self, limits: BrokerLimits) -> None:
        self.limits = limits
        self.queues: dict[str, MessageQueue] = {}
        self.bindings: list[tuple[str, MessageQueue]] = []  # (topic pattern, private queue)
        self._route_cache: dict[str, list[MessageQueue]] = {}
        self.reply_queues: dict[str, MessageQueue] = {}  # token -> temp queue
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self.published = 0

    def new_message(self, destination: str, headers: dict[str, str], body: bytes) -> Message:
        return Message(destination, user_headers(headers), body, f"{self._prefix}-{next(self._ids)}")

    # topics
    def bind(self, pattern: str, queue: MessageQueue) -> None:
        self.bindings.append((pattern, queue))
        self._route_cache.clear()

    def unbind(self, queue: MessageQueue) -> None:
        self.bindings = [(p, q) for p, q in self.bindings if q is not queue]
        self._route_cache.clear()

    def publish_topic(self, key: str, message: Message) -> None:
        targets = self._route_cache.get(key)
        if targets is None:
            targets = [q for p, q in self.bindings if topic_matches(p, key)]
            if len(self._route_cache) > 10_000:
                self._route_cache.clear()
            self._route_cache[key] = targets
        self.published += 1
        for queue in targets:
            queue.put(message)

    # named queues
    def queue(self, name: str) -> MessageQueue:
        q = self.queues.get(name)
        if q is None:
            if len(self.queues) >= self.limits.max_queues:
                self._forget_idle_queues()
                if len(self.queues) >= self.limits.max_queues:
                    raise ProtocolError("too many queues", f"limit {self.limits.max_queues}")
            q = self.queues[name] = MessageQueue(f"/queue/{name}", self.limits.max_queue_messages, "drop_oldest")
        return q

    def _forget_idle_queues(self) -> None:
        """Queues with neither messages nor consumers cost a name only: drop them."""
        for name in [n for n, q in self.queues.items() if not q.messages and not q.consumers]:
            del self.queues[name]

    def publish_queue(self, name: str, message: Message) -> None:
        self.published += 1
        self.queue(name).put(message)

    # reply queues
    def publish_reply(self, token: str, message: Message) -> bool:
        queue = self.reply_queues.get(token)
        if queue is None:
            return False
        self.published += 1
        queue.put(message)
        return True

    def requeue(self, subscription: Subscription, messages: Iterable[Message]) -> None:
        """Give unacknowledged messages back to their queue, first in line."""
        for message in reversed(list(messages)):
            subscription.queue.put(message.redelivery(), front=True)


class BrokerCore:
    """State shared by all connections of one broker."""

    def __init__(self, limits: BrokerLimits, authenticator: BrokerAuthenticator,
                 loop: asyncio.AbstractEventLoop) -> None:
        self.limits = limits
        self.authenticator = authenticator
        self.loop = loop
        self.router = MessageRouter(limits)
        self.sessions: set[Connection] = set()
        self._per_login: Counter[str] = Counter()

    def admit(self, session: Connection, principal: BrokerPrincipal) -> bool:
        if self._per_login[principal.name] >= self.limits.max_connections_per_login:
            return False
        self._per_login[principal.name] += 1
        return True

    def session_opened(self, session: Connection) -> None:
        self.sessions.add(session)

    def session_closed(self, session: Connection) -> None:
        self.sessions.discard(session)
        if session.principal is not None:
            self._per_login[session.principal.name] -= 1

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.sessions),
            "queues": len(self.router.queues),
            "bindings": len(self.router.bindings),
            "published": self.router.published,
            "dropped": sum(q.dropped for _, q in self.router.bindings)
            + sum(q.dropped for q in self.router.queues.values()),
        }
