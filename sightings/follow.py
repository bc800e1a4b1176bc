"""Following a tenant's sightings from a client, with nothing lost or doubled across reconnects.

Every stored sighting has ``seq``, its tenant's sequence number: dense (1, 2,
3, ...) and in commit order. Each is announced once stored, as
``sighting.stored`` events (events/sightings.py) on
``/topic/tenant.<tenant id>.sightings``; ``GET /api/v1/sightings?since=<seq>``
(REST, or STOMP on /queue/facewatch.api) returns the ones after a cursor, oldest
first, a page at a time, then ``more: false`` with a ``cursor`` up to which
nothing else exists. The protocol, for a client that remembers the last
``seq`` it handled:

1. subscribe to the topic first (wait for the broker's receipt), holding what
   arrives;
2. catch up: page through ``since=<cursor>`` until ``more`` is false;
3. then hand over what was held and continue live. Anything at or below the
   cursor is a duplicate (seen during the catch-up) and dropped; anything
   beyond the next number waits for it, and a gap starts another catch-up
   (an announcement can be lost: a full outbox, a broker restart).

Because the subscription exists before the catch-up reads, a sighting stored
after that read is announced to it; one stored before is in the read. After a
reconnection, catch up again (``catch_up``), or let the next gap do it.
``FeedState`` is the ordering rule alone; ``SightingFollower`` runs it over a
BusClient.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from broker.client import BusClient, BusMessage
from events import EventError, SightingStored, decode_as

__all__ = ("FeedState", "SightingFollower", "API_QUEUE")

log = logging.getLogger(__name__)

API_QUEUE = "/queue/facewatch.api"


class FeedState:
    """Hands out sightings once each, in sequence order, whatever order they are offered in."""

    def __init__(self, cursor: int = 0) -> None:
        self.cursor = cursor  # every sighting up to here has been handed out (or does not exist)
        self.held: dict[int, dict[str, Any]] = {}
        self.duplicates = 0

    def offer(self, sighting: dict[str, Any]) -> list[dict[str, Any]]:
        """What to hand out now, in order (maybe nothing: a duplicate, or one waiting for a gap)."""
        seq = int(sighting["seq"])
        if seq <= self.cursor or seq in self.held:
            self.duplicates += 1
            return []
        self.held[seq] = sighting
        return self._in_line()

    def complete_to(self, cursor: int) -> list[dict[str, Any]]:
        """A catch-up said nothing else exists up to ``cursor`` (sightings past retention leave holes)."""
        out = [self.held.pop(seq) for seq in sorted(self.held) if seq <= cursor]
        self.cursor = max([self.cursor, cursor] + [int(s["seq"]) for s in out])
        return out + self._in_line()

    @property
    def gap(self) -> bool:
        return bool(self.held)

    def _in_line(self) -> list[dict[str, Any]]:
        out = []
        while self.cursor + 1 in self.held:
            self.cursor += 1
            out.append(self.held.pop(self.cursor))
        return out


class SightingFollower:
    def __init__(self, bus: BusClient, tenant_id: str, headers: dict[str, str],
                 on_sighting: Callable[[dict[str, Any]], None], cursor: int = 0, page: int = 500,
                 timeout_s: float = 30.0) -> None:
        """``headers``: the tenant's credentials for the API (``x-api-key`` or ``authorization``);
        ``on_sighting`` gets each sighting once, in order, on one thread at a time (it must not wait for
        the bus: it may run on the bus client's receiver thread)."""
        self.bus = bus
        self.topic = f"/topic/tenant.{tenant_id}.sightings"
        self.headers = headers
        self.on_sighting = on_sighting
        self.page = page
        self.timeout_s = timeout_s
        self.state = FeedState(cursor)
        self.catch_ups = 0
        self._lock = threading.Lock()  # one delivery at a time, in order
        self._catching = threading.Lock()  # one catch-up at a time
        self._held_live: list[dict[str, Any]] | None = None  # live sightings while a catch-up runs
        self._sub_id: str | None = None

    @property
    def cursor(self) -> int:
        return self.state.cursor

    def start(self) -> None:
        self._sub_id = self.bus.subscribe(self.topic, self._on_live, receipt=True, timeout_s=self.timeout_s)
        self.catch_up()

    def stop(self) -> None:
        if self._sub_id is not None:
            self.bus.unsubscribe(self._sub_id)
            self._sub_id = None

    def _deliver(self, sightings: list[dict[str, Any]]) -> None:
        for sighting in sightings:  # under self._lock
            self.on_sighting(sighting)

    def _on_live(self, message: BusMessage) -> None:
        try:
            event = decode_as(message.body, SightingStored)
        except EventError:
            return
        if event is None:
            return
        with self._lock:
            if self._held_live is not None:
                self._held_live.append(event.sighting)
                return
            self._deliver(self.state.offer(event.sighting))
            gap = self.state.gap
        if gap:  # not on the receiver thread: the catch-up's replies arrive on it
            threading.Thread(target=self._catch_up_quietly, name="sightings-catch-up", daemon=True).start()

    def _catch_up_quietly(self) -> None:
        try:
            self.catch_up()
        except Exception:
            log.exception("sightings catch-up failed; the next gap tries again")

    def catch_up(self) -> None:
        """Read every sighting after the cursor, then hand over what arrived live meanwhile (again, a few
        times at most, while what arrived leaves a gap)."""
        for _ in range(3):
            self._catch_up_once()
            with self._lock:
                if not self.state.gap:
                    return

    def _catch_up_once(self) -> None:
        with self._catching:
            with self._lock:
                self._held_live = []
            try:
                while True:
                    query = urlencode({"since": self.state.cursor, "limit": self.page})
                    reply = self.bus.request(API_QUEUE, b"", {"method": "GET", "path": f"/api/v1/sightings?{query}",
                                                              **self.headers}, timeout_s=self.timeout_s)
                    if reply.status != 200:
                        raise RuntimeError(f"catch-up refused: {reply.status} {reply.body[:200]!r}")
                    page = reply.json()
                    with self._lock:
                        for sighting in page["sightings"]:
                            self._deliver(self.state.offer(sighting))
                        if not page["more"]:
                            self._deliver(self.state.complete_to(int(page["cursor"])))
                            break
            finally:
                with self._lock:
                    held, self._held_live = self._held_live or [], None
                    for sighting in held:
                        self._deliver(self.state.offer(sighting))
                self.catch_ups += 1
