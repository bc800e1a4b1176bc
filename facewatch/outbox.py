"""The API's outgoing events, sent off the event loop.

A handler that commits a change announces it (repo and grouping events); a
socket write to the broker on the event loop stalls every request while the
broker's buffer is full. ``BusOutbox.publish`` only appends to a bounded queue;
one thread sends in order, waiting out a broker reconnect for up to
``retry_s`` before it counts the event as lost (every follower finds the lost
version missing and reloads from the database: repo/sync.py).
"""

from __future__ import annotations

import collections
import logging
import threading
from typing import Any

from broker.client import BusClient, BusError
from events import Event

__all__ = ("BusOutbox",)

log = logging.getLogger(__name__)


class BusOutbox:
    def __init__(self, max_events: int = 10_000, retry_s: float = 10.0) -> None:
        self.max_events = max_events
        self.retry_s = retry_s
        self.dropped = 0  # events that found the outbox full (the oldest goes)
        self.lost = 0  # events the broker did not take within retry_s
        self.sent = 0
        self._client: BusClient | None = None
        self._queue: collections.deque[tuple[str, Any, dict[str, str] | None]] = collections.deque()
        self._cond = threading.Condition()
        self._closing = False
        self._thread: threading.Thread | None = None

    def start(self, client: BusClient) -> None:
        with self._cond:
            self._client, self._closing = client, False
        self._thread = threading.Thread(target=self._drain, name="bus-outbox", daemon=True)
        self._thread.start()

    def publish(self, destination: str, body: Event | Any, headers: dict[str, str] | None = None) -> None:
        """Never blocks: queues the event (with its STOMP ``headers``) for the sender thread."""
        with self._cond:
            if self._client is None:
                log.debug("bus not connected; event for %s dropped", destination)
                return
            if len(self._queue) >= self.max_events:
                self._queue.popleft()
                self.dropped += 1
                if self.dropped % 1000 == 1:
                    log.warning("outbox full (%d events): %d oldest dropped so far", self.max_events, self.dropped)
            self._queue.append((destination, body, headers))
            self._cond.notify()

    def close(self, timeout_s: float = 5.0) -> None:
        """Send what is queued (for up to ``timeout_s``), then stop."""
        with self._cond:
            self._closing = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout_s)
        with self._cond:
            if self._queue:
                log.warning("%d event(s) not sent at shutdown", len(self._queue))
            self._queue.clear()
            self._client = None

    def idle(self) -> bool:
        """Nothing waiting to be sent (tests, shutdown)."""
        with self._cond:
            return not self._queue

    def _drain(self) -> None:
        while True:
            with self._cond:
                while not self._queue and not self._closing:
                    self._cond.wait()
                if not self._queue:
                    return  # closing, and everything was sent
                destination, body, headers = self._queue[0]
                client = self._client
            if client is None:
                return
            try:
                # Events are encoded here, in the sender's thread, not on the event loop that queued them.
                client.publish(destination, body.to_json() if isinstance(body, Event) else body, headers,
                               timeout_s=self.retry_s)
                self.sent += 1
            except BusError as exc:
                self.lost += 1
                log.warning("event for %s not published: %s", destination, exc)
            with self._cond:
                if self._queue and self._queue[0][0] == destination and self._queue[0][1] is body:
                    self._queue.popleft()
