"""The sightings writer: face events from the workers' queue into the database, in batches.

Workers put every face.recognized, face.unknown and track.ended of a sighting
on ``SIGHTINGS_QUEUE`` (watcher/cameras.py) as well as on their topics, never
waiting for the broker; every node that keeps sightings consumes that queue as
a competing consumer with ``client-individual`` acks. A batch (up to
``batch_size`` messages, or what came within ``batch_wait_s`` of the first) is
parsed, numbered and stored in one transaction off the event loop, and only
then acknowledged: a message is acknowledged once its sighting is committed
(or found stored already: redeliveries are deduplicated by event id, unique in
the table), or once found not to be a sighting (malformed, unknown camera:
logged and dropped). A database that fails is retried with backoff while the
batch stays unacknowledged; a process that dies with a batch in hand has it
redelivered by the broker. The cameras never wait for any of this.
"""

from __future__ import annotations

import asyncio
import logging
import threading
import time
from collections import OrderedDict
from collections.abc import AsyncGenerator, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy.exc import DBAPIError, DisconnectionError, InterfaceError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from broker.client import BusClient, BusMessage
from broker.core import TENANT_HEADER

from .events import parse_event
from .records import NewSighting, TrackEnd
from .store import SightingStore, Stored

__all__ = ("WriterOptions", "WriterStats", "CameraOwners", "Delivery", "PendingGroups", "SightingWriter",
           "consume_queue")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class WriterOptions:
    batch_size: int = 200
    batch_wait_s: float = 0.2
    prefetch: int = 1000  # messages the broker may have in flight to this node, unacknowledged
    retry_initial_s: float = 0.5
    retry_max_s: float = 30.0


@dataclass(slots=True)
class WriterStats:
    batches: int = 0
    stored: int = 0
    duplicates: int = 0  # redeliveries: stored before
    dropped: int = 0  # not sightings (malformed, unknown camera)
    retries: int = 0  # batches the database refused for a while


class CameraOwners:
    """Camera id -> its tenant, remembered for ``ttl_s`` (a camera's tenant never changes while it exists)."""

    def __init__(self, lookup: Callable[[str], str | None], ttl_s: float = 60.0) -> None:
        self.lookup = lookup
        self.ttl_s = ttl_s
        self._known: dict[str, tuple[str | None, float]] = {}
        self._lock = threading.Lock()

    def owner(self, camera_id: str) -> str | None:
        now = time.monotonic()
        with self._lock:
            known = self._known.get(camera_id)
        if known is not None and now - known[1] < self.ttl_s:
            return known[0]
        tenant = self.lookup(camera_id)
        if tenant is None:
            return None  # not remembered: the id may be registered a moment later
        with self._lock:
            if len(self._known) > 100_000:
                self._known.clear()
            self._known[camera_id] = (tenant, now)
        return tenant


@dataclass(slots=True, frozen=True)
class Delivery:
    """A message of the sightings queue: its body, and the tenant the camera's worker marked it with (the
    TENANT_HEADER; only the server's own parts may send to this queue). The mark, not the camera id, says
    whose sighting it is: an id removed by one tenant may be registered by another a moment later."""

    body: bytes
    tenant: str | None = None  # None: a worker that did not mark it (an older node): the camera's owner now

    @classmethod
    def of(cls, message: BusMessage) -> Delivery:
        return cls(message.body, message.headers.get(TENANT_HEADER) or None)


class PendingGroups:
    """Face groups grouping announced for events whose sighting was not stored yet (the two queues are
    consumed independently): the writer sets them when it stores the sighting. Bounded, oldest out."""

    def __init__(self, max_entries: int = 100_000) -> None:
        self.max_entries = max_entries
        self._groups: OrderedDict[str, str] = OrderedDict()
        self._lock = threading.Lock()

    def put(self, event_id: str, group_id: str) -> None:
        with self._lock:
            self._groups[event_id] = group_id
            self._groups.move_to_end(event_id)
            while len(self._groups) > self.max_entries:
                self._groups.popitem(last=False)

    def get(self, event_ids: Sequence[str]) -> dict[str, str]:
        with self._lock:
            return {e: self._groups[e] for e in event_ids if e in self._groups}

    def discard(self, event_ids: Sequence[str]) -> None:
        with self._lock:
            for event_id in event_ids:
                self._groups.pop(event_id, None)


class SightingWriter:
    def __init__(self, store: SightingStore, owners: CameraOwners, on_stored: Callable[[list[Stored]], None],
                 pending: PendingGroups, options: WriterOptions = WriterOptions()) -> None:
        """``on_stored``: called (on the writer's thread) with what each batch stored, after the commit."""
        self.store = store
        self.owners = owners
        self.on_stored = on_stored
        self.pending = pending
        self.options = options
        self.stats = WriterStats()

    def write(self, deliveries: Sequence[Delivery]) -> list[Stored]:
        """Parse and store one batch (blocking; raises SQLAlchemyError when the database fails)."""
        items: list[tuple[str, NewSighting]] = []
        ends: list[tuple[str, TrackEnd]] = []
        for delivery in deliveries:
            parsed = parse_event(delivery.body)
            tenant = None if parsed is None else delivery.tenant or self.owners.owner(parsed.camera)
            if parsed is None or tenant is None:
                self.stats.dropped += 1
                log.warning("sightings: dropped a message that is no sighting of a known camera (%s)",
                            "unreadable" if parsed is None else f"camera {parsed.camera!r}")
            elif isinstance(parsed, TrackEnd):
                ends.append((tenant, parsed))
            else:
                items.append((tenant, parsed))
        event_ids = [item.event_id for _, item in items]
        stored = self.store.write_batch(items, ends, self.pending.get(event_ids))
        self.pending.discard(event_ids)
        self.stats.batches += 1
        self.stats.stored += len(stored)
        self.stats.duplicates += len(items) - len(stored)
        if stored:
            self.on_stored(stored)
        return stored

    async def write_until_stored(self, messages: Sequence[BusMessage]) -> None:
        """Write one batch, retrying while the database is unreachable. A batch that fails for what it
        holds (a constraint, a value the database refuses, a bug) is written message by message, and a
        message that fails alone is logged and dropped, so that it cannot hold the queue up for ever."""
        delay = self.options.retry_initial_s
        deliveries = [Delivery.of(m) for m in messages]
        while True:
            try:
                await asyncio.to_thread(self.write, deliveries)
                return
            except Exception as exc:
                if _database_unavailable(exc):
                    self.stats.retries += 1
                    log.warning("sightings: batch of %d not stored (%s); again in %.1fs", len(deliveries),
                                str(exc).splitlines()[0][:200], delay)
                else:
                    log.exception("sightings: batch of %d failed; storing its messages one by one", len(deliveries))
                    if await self._write_one_by_one(deliveries):
                        return
            await asyncio.sleep(delay)
            delay = min(delay * 2, self.options.retry_max_s)

    async def _write_one_by_one(self, deliveries: Sequence[Delivery]) -> bool:
        """False when the database went away meanwhile (the caller retries; stored ones are skipped)."""
        for delivery in deliveries:
            try:
                await asyncio.to_thread(self.write, [delivery])
            except Exception as exc:
                if _database_unavailable(exc):
                    return False
                self.stats.dropped += 1
                log.exception("sightings: dropped a message that cannot be stored")
        return True


def _database_unavailable(exc: BaseException) -> bool:
    """A failure that retrying the same rows can cure (a connection lost or refused, a lock, a
    deadlock or serialization failure, a pool timeout), as opposed to one the rows or the code cause
    (a constraint, a value refused, a programming error), which would fail the same way for ever."""
    if isinstance(exc, DBAPIError) and exc.connection_invalidated:
        return True
    return isinstance(exc, (OperationalError, InterfaceError, DisconnectionError, PoolTimeoutError))


async def _next_batch(inbox: asyncio.Queue[BusMessage], size: int, wait_s: float) -> list[BusMessage]:
    batch = [await inbox.get()]
    deadline = asyncio.get_running_loop().time() + wait_s
    while len(batch) < size:
        if not inbox.empty():
            batch.append(inbox.get_nowait())
            continue
        remaining = deadline - asyncio.get_running_loop().time()
        if remaining <= 0:
            break
        try:
            batch.append(await asyncio.wait_for(inbox.get(), remaining))
        except TimeoutError:
            break
    return batch


async def consume_queue(writer: SightingWriter, bus: BusClient, queue: str,
                        drain_timeout_s: float = 30.0) -> AsyncGenerator[None, None]:
    """Feeds ``writer`` from ``queue`` while the app runs (an async context). At the end, what was
    delivered to this node is written and acknowledged before the subscription ends."""
    loop = asyncio.get_running_loop()
    inbox: asyncio.Queue[BusMessage] = asyncio.Queue()
    idle = asyncio.Event()  # set while waiting for messages with none in hand

    def acknowledge(messages: list[BusMessage]) -> None:
        try:
            for message in messages:
                bus.ack(message)
        except Exception as exc:  # the connection dropped: the broker redelivers them; stored once anyway
            log.warning("sightings: acks not sent (%r); the broker will redeliver", exc)

    async def run() -> None:
        while True:
            if inbox.empty():
                idle.set()
            batch = await _next_batch(inbox, writer.options.batch_size, writer.options.batch_wait_s)
            idle.clear()
            await writer.write_until_stored(batch)
            await asyncio.to_thread(acknowledge, batch)

    def on_message(message: BusMessage) -> None:  # on the bus client's receiver thread
        loop.call_soon_threadsafe(inbox.put_nowait, message)

    task = loop.create_task(run(), name="sightings-writer")
    sub_id = await asyncio.to_thread(bus.subscribe, queue, on_message, ack="client-individual",
                                     headers={"prefetch-count": str(writer.options.prefetch)}, receipt=True)
    try:
        yield
    finally:
        try:  # the batch in hand is written and acknowledged, not left to a redelivery
            await asyncio.wait_for(idle.wait(), drain_timeout_s)
        except TimeoutError:
            log.warning("sightings: the writer did not finish its batch within %.0fs; the broker will "
                        "redeliver it", drain_timeout_s)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)
        await asyncio.to_thread(bus.unsubscribe, sub_id)
