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
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Literal, Protocol

from .auth import BrokerAuthenticator, BrokerPrincipal
from .destinations import topic_matches
from .frames import ProtocolError, encode_message_head, encode_message_tail

__all__ = ("TENANT_HEADER", "BrokerLimits", "Message", "HeldBytes", "Backlog", "MessageQueue", "Subscription",
           "MessageRouter", "OverflowPolicy", "Subscriber", "Connection", "BrokerCore")

log = logging.getLogger(__name__)

OverflowPolicy = Literal["drop_oldest", "disconnect"]

# A message published with this header belongs to that tenant: topic subscriptions of other tenants'
# connections never get it, whatever their pattern matched (a camera id another tenant used before, say).
TENANT_HEADER = "tenant"

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
    max_queues_per_login: int = 100  # named queues a login that is not trusted may make
    max_temp_queues_per_connection: int = 64
    # Bytes, as well as messages: what one slow subscriber may hold, what one named queue may hold.
    max_pending_bytes: int = 16 * 1024 * 1024
    max_queue_bytes: int = 256 * 1024 * 1024
    # Memory alarm: while the broker holds more than this (queued, or delivered and not acknowledged),
    # or a login holds more than its quota, its connections that SEND are paused (not read) until it drains,
    # as RabbitMQ's memory alarm blocks publishers. Trusted logins (the server's own parts) are not paused:
    # they are what drains the queues.
    max_held_bytes: int = 512 * 1024 * 1024
    max_held_bytes_per_login: int = 64 * 1024 * 1024
    overflow_policy: OverflowPolicy = "drop_oldest"
    # A connection whose unsent bytes pass this gets no more deliveries until
    # its socket drains; the messages wait in their (bounded) queues instead.
    session_high_water_bytes: int = 1024 * 1024
    max_open_transactions: int = 16
    max_transaction_frames: int = 10_000
    max_transaction_bytes: int = 16 * 1024 * 1024  # a transaction's frames wait in memory until COMMIT
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
    publisher: str = ""  # the login that sent it: whose quota it counts against
    size: int = 0  # body and headers, in bytes
    holds: int = 0  # queues and unacknowledged deliveries holding it (see HeldBytes)
    _encoded: dict[str, bytes] = field(default_factory=dict)

    def encoded_tail(self, version: str) -> bytes:
        """The part of a MESSAGE frame shared by every subscriber on a version."""
        tail = self._encoded.get(version)
        if tail is None:
            tail = self._encoded[version] = encode_message_tail(self.headers, self.body, version)
        return tail

    def redelivery(self) -> "Message":
        return Message(self.destination, self.headers, self.body, self.message_id, True, self.publisher, self.size)


class HeldBytes:
    """Bytes of the messages the broker holds: queued, or delivered and not yet acknowledged.

    A message routed to several queues is one object in memory, so it counts once, from its first hold
    to its last release; per publisher as well, for quotas. ``on_release`` lets the core resume paused
    publishers once enough has drained.
    """

    def __init__(self) -> None:
        self.total = 0
        self.by_publisher: Counter[str] = Counter()
        self.on_release: Callable[[], None] | None = None

    def hold(self, message: Message) -> None:
        if message.holds == 0:
            self.total += message.size
            self.by_publisher[message.publisher] += message.size
        message.holds += 1

    def release(self, message: Message) -> None:
        message.holds -= 1
        if message.holds > 0:
            return
        self.total -= message.size
        left = self.by_publisher[message.publisher] - message.size
        if left > 0:
            self.by_publisher[message.publisher] = left
        else:
            del self.by_publisher[message.publisher]
        if self.on_release is not None:
            self.on_release()


class Backlog:
    """Bytes waiting for each untrusted login's connections: queued in their private queues (topic
    subscriptions, temp queues) or delivered and not yet acknowledged, each copy counted.

    What a login's own SENDs hold is its quota (HeldBytes); this is what others' messages, the API's
    replies above all, hold for it while it does not read or acknowledge. Past ``limit`` its queues drop
    their oldest (or, with the disconnect policy, it is disconnected) and its unacknowledged subscriptions
    get no more: a tenant that stops reading costs the broker ``limit`` at most, however many connections,
    temp queues and subscriptions it opens, and never trips the memory alarm for everyone else.
    """

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.by_reader: Counter[str] = Counter()

    def add(self, reader: str, size: int) -> None:
        self.by_reader[reader] += size

    def remove(self, reader: str, size: int) -> None:
        left = self.by_reader[reader] - size
        if left > 0:
            self.by_reader[reader] = left
        else:
            del self.by_reader[reader]

    def over(self, reader: str) -> bool:
        return self.by_reader.get(reader, 0) > self.limit


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
    def pause_reading(self) -> None: ...  # memory alarm: read no more frames until resumed
    def resume_reading(self) -> None: ...
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
        self.unacked: OrderedDict[str, Message] = OrderedDict()  # each held (HeldBytes) until acknowledged
        self._ack_ids = itertools.count(1)

    def has_capacity(self) -> bool:
        if not self.subscriber.writable:
            return False
        if self.ack == "auto":
            return True
        if self.queue.over_backlog():  # its reader holds too much unacknowledged already
            return False
        return self.prefetch <= 0 or len(self.unacked) < self.prefetch

    def deliver(self, message: Message) -> None:
        """Send ``message``, which its queue held: the hold passes to ``unacked``, or ends here."""
        version = self.subscriber.version
        ack_id = None
        if self.ack != "auto":
            ack_id = f"{self.subscriber.id}-{next(self._ack_ids)}"  # unique per delivery
            self.unacked[ack_id] = message
        head = encode_message_head(message.destination, message.message_id, self.id, version,
                                   redelivered=message.redelivered, ack_id=ack_id)
        self.subscriber.send_raw(head + message.encoded_tail(version))
        if ack_id is None:
            self.queue.settle(message)

    def drop_unacked(self) -> None:
        for message in self.unacked.values():
            self.queue.settle(message)
        self.unacked.clear()

    def take_acked(self, ack_id: str) -> list[Message] | None:
        """Remove what an ACK/NACK of ``ack_id`` covers; None if unknown. The caller releases them."""
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

    def __init__(self, name: str, held: HeldBytes, max_messages: int, max_bytes: int, policy: OverflowPolicy, *,
                 exclusive_owner: Subscriber | None = None, creator: str = "",
                 reader_tenant: str | None = None, reader: str | None = None, backlog: Backlog | None = None) -> None:
        self.name = name
        self.held = held
        self.messages: deque[Message] = deque()
        self.bytes = 0  # of ``messages``
        self.consumers: list[Subscription] = []
        self.max_messages = max_messages
        self.max_bytes = max_bytes
        self.policy = policy
        self.exclusive_owner = exclusive_owner
        self.creator = creator  # the login whose SEND or SUBSCRIBE made it (named queues)
        self.reader_tenant = reader_tenant  # the tenant whose subscription it feeds (None: not a tenant's)
        # The untrusted login it feeds, whose Backlog counts what waits here (None: not counted).
        self.reader = reader if backlog is not None else None
        self.backlog = backlog
        self.dropped = 0
        self._next = 0

    def put(self, message: Message, *, front: bool = False) -> None:
        if front:
            self.messages.appendleft(message)
        else:
            self.messages.append(message)
        self.bytes += message.size
        self.held.hold(message)
        if self.reader is not None and self.backlog is not None:
            self.backlog.add(self.reader, message.size)
        while len(self.messages) > 1 and (len(self.messages) > self.max_messages or self.bytes > self.max_bytes):
            if self.policy == "disconnect" and self.exclusive_owner is not None:
                self._disconnect(f"more than {self.max_messages} messages or {self.max_bytes} bytes pending on "
                                 f"{self.name}")
                return
            self._release(self.messages.popleft())
            self.dropped += 1
        self.dispatch()
        if self.messages and self.over_backlog():
            if self.policy == "disconnect" and self.exclusive_owner is not None:
                self._disconnect(f"more than {self.backlog.limit if self.backlog else 0} bytes waiting for "
                                 f"{self.reader}")
                return
            while self.messages and self.over_backlog():
                self._release(self.messages.popleft())
                self.dropped += 1

    def _disconnect(self, why: str) -> None:
        assert self.exclusive_owner is not None
        self.clear()
        self.exclusive_owner.fail("slow consumer", why)

    def over_backlog(self) -> bool:
        """Whether the login this queue feeds has more than its Backlog's limit waiting."""
        return self.reader is not None and self.backlog is not None and self.backlog.over(self.reader)

    def settle(self, message: Message) -> None:
        """A message taken from here is done with: sent (auto ack), acknowledged, given back or dropped."""
        self.held.release(message)
        if self.reader is not None and self.backlog is not None:
            self.backlog.remove(self.reader, message.size)

    def _release(self, message: Message) -> Message:
        self.bytes -= message.size
        self.settle(message)
        return message

    def clear(self) -> None:
        while self.messages:
            self._release(self.messages.popleft())

    def dispatch(self) -> None:
        consumers = self.consumers
        while self.messages and consumers:
            for offset in range(len(consumers)):
                candidate = consumers[(self._next + offset) % len(consumers)]
                if candidate.has_capacity():
                    self._next = (self._next + offset + 1) % len(consumers)
                    message = self.messages.popleft()
                    self.bytes -= message.size
                    candidate.deliver(message)
                    break
            else:
                return  # nobody can take more now; resumed when one drains


class MessageRouter:
    """Where messages go: topic bindings, named queues, reply queues."""

    def __init__(self, limits: BrokerLimits) -> None:
        self.limits = limits
        self.held = HeldBytes()
        self.queues: dict[str, MessageQueue] = {}
        self.bindings: list[tuple[str, MessageQueue]] = []  # (topic pattern, private queue)
        self._route_cache: dict[str, list[MessageQueue]] = {}
        self.reply_queues: dict[str, MessageQueue] = {}  # token -> temp queue
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self.published = 0
        self.backlog = Backlog(limits.max_held_bytes_per_login)

    def new_message(self, destination: str, headers: dict[str, str], body: bytes, publisher: str = "") -> Message:
        kept = user_headers(headers)
        size = len(body) + sum(len(k) + len(v) for k, v in kept.items())
        return Message(destination, kept, body, f"{self._prefix}-{next(self._ids)}", publisher=publisher, size=size)

    def private_queue(self, name: str, owner: Subscriber, reader_tenant: str | None = None,
                      reader: str | None = None) -> MessageQueue:
        """A queue that feeds one connection only: a topic subscription or a temp queue. ``reader``: the
        connection's login when it is not trusted (its Backlog is bounded)."""
        return MessageQueue(name, self.held, self.limits.max_pending_messages, self.limits.max_pending_bytes,
                            self.limits.overflow_policy, exclusive_owner=owner, reader_tenant=reader_tenant,
                            reader=reader, backlog=self.backlog if reader is not None else None)

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
        owner = message.headers.get(TENANT_HEADER)
        for queue in targets:
            if owner is not None and queue.reader_tenant is not None and queue.reader_tenant != owner:
                continue  # another tenant's message: not for this reader, whatever its pattern matched
            queue.put(message)

    # named queues
    def queue(self, name: str, creator: BrokerPrincipal) -> MessageQueue:
        """The named queue ``name``, made for ``creator`` if it does not exist (within its quota)."""
        q = self.queues.get(name)
        if q is None:
            if not creator.trusted and self._made_by(creator.name) >= self.limits.max_queues_per_login:
                self._forget_idle_queues()
                if self._made_by(creator.name) >= self.limits.max_queues_per_login:
                    raise ProtocolError("too many queues", f"limit {self.limits.max_queues_per_login} per login")
            if len(self.queues) >= self.limits.max_queues:
                self._forget_idle_queues()
                if len(self.queues) >= self.limits.max_queues:
                    raise ProtocolError("too many queues", f"limit {self.limits.max_queues}")
            q = self.queues[name] = MessageQueue(f"/queue/{name}", self.held, self.limits.max_queue_messages,
                                                 self.limits.max_queue_bytes, "drop_oldest", creator=creator.name)
        return q

    def _made_by(self, login: str) -> int:
        return sum(1 for q in self.queues.values() if q.creator == login)

    def _forget_idle_queues(self) -> None:
        """Queues with neither messages nor consumers cost a name only: drop them."""
        for name in [n for n, q in self.queues.items() if not q.messages and not q.consumers]:
            del self.queues[name]

    def publish_queue(self, name: str, message: Message, publisher: BrokerPrincipal) -> None:
        self.published += 1
        self.queue(name, publisher).put(message)

    # reply queues
    def publish_reply(self, token: str, message: Message) -> bool:
        queue = self.reply_queues.get(token)
        if queue is None:
            return False
        self.published += 1
        queue.put(message)
        return True

    def requeue(self, subscription: Subscription, messages: Iterable[Message]) -> None:
        """Give unacknowledged messages back to their queue, first in line (and release them as delivered)."""
        for message in reversed(list(messages)):
            subscription.queue.put(message.redelivery(), front=True)
            subscription.queue.settle(message)


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
        self.paused: set[Connection] = set()  # publishers not read until the broker drains
        self.router.held.on_release = self._resume_publishers

    # -- memory alarm -------------------------------------------------------
    def over_quota(self, principal: BrokerPrincipal, fraction: float = 1.0) -> bool:
        """Whether ``principal``'s SENDs must wait: the broker, or this login, holds too much."""
        if principal.trusted:
            return False
        held = self.router.held
        return (held.total >= self.limits.max_held_bytes * fraction
                or held.by_publisher.get(principal.name, 0) >= self.limits.max_held_bytes_per_login * fraction)

    def after_send(self, session: Connection, principal: BrokerPrincipal) -> None:
        if session not in self.paused and self.over_quota(principal):
            log.warning("broker holds %d bytes (%s: %d): pausing publisher %s", self.router.held.total,
                        principal.name, self.router.held.by_publisher.get(principal.name, 0), session.id)
            self.paused.add(session)
            session.pause_reading()

    def _resume_publishers(self) -> None:
        if not self.paused:
            return
        # Resume below three quarters of the limit, so a publisher is not paused and resumed at every message.
        for session in [s for s in self.paused if s.principal is None or not self.over_quota(s.principal, 0.75)]:
            self.paused.discard(session)
            session.resume_reading()

    def admit(self, session: Connection, principal: BrokerPrincipal) -> bool:
        if self._per_login[principal.name] >= self.limits.max_connections_per_login:
            return False
        self._per_login[principal.name] += 1
        return True

    def session_opened(self, session: Connection) -> None:
        self.sessions.add(session)

    def session_closed(self, session: Connection) -> None:
        self.sessions.discard(session)
        self.paused.discard(session)
        if session.principal is not None:
            self._per_login[session.principal.name] -= 1

    def close_credentials(self, revoked: set[str]) -> int:
        """ERROR and close every connection made with one of the ``revoked`` credentials."""
        closing = [s for s in self.sessions if s.principal is not None and s.principal.credential in revoked]
        for session in closing:
            session.fail("access revoked", "the credential this connection was made with has been revoked")
        return len(closing)

    def close_expired(self, now: float) -> int:
        """ERROR and close every connection whose credential expired by ``now`` (an access token: a client
        reconnects with a fresh one, as RabbitMQ's OAuth 2 plugin has it)."""
        closing = [s for s in self.sessions
                   if s.principal is not None and s.principal.expires_at is not None and s.principal.expires_at <= now]
        for session in closing:
            session.fail("access expired", "the access token this connection was made with has expired; "
                                           "connect again with a fresh one")
        return len(closing)

    def credentials(self) -> set[str]:
        """The revocable credentials open connections were made with."""
        return {s.principal.credential for s in self.sessions
                if s.principal is not None and s.principal.credential is not None}

    def queue_depths(self) -> dict[str, int]:
        """Messages waiting in each named queue (/queue/...), by destination."""
        return {q.name: len(q.messages) for q in self.router.queues.values()}

    def stats(self) -> dict[str, int]:
        return {
            "connections": len(self.sessions),
            "queues": len(self.router.queues),
            "bindings": len(self.router.bindings),
            "published": self.router.published,
            "held_bytes": self.router.held.total,
            "paused_publishers": len(self.paused),
            "dropped": sum(q.dropped for _, q in self.router.bindings)
            + sum(q.dropped for q in self.router.queues.values()),
        }
