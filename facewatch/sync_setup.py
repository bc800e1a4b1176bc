"""Keeps a node's in-memory state current with the changes made through every node (repo/sync.py).

``follow`` subscribes a follower (the repo's GalleryMirror, grouping's
GroupMirror) to its events and, while the app runs, reloads what a lost event
left behind: streams with a gap older than the grace period, and (every
reconcile interval, and at once after the bus reconnected, when events may
have been missed) whatever the database has that the follower lacks.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncGenerator, Callable

from broker.client import BusClient, BusMessage
from repo.sync import Follower, SyncOptions

__all__ = ("follow",)

log = logging.getLogger(__name__)


async def follow(follower: Follower, bus: BusClient, topic: str, options: SyncOptions, name: str,
                 load: Callable[[], int] | None = None) -> AsyncGenerator[None, None]:
    """An async context: ``follower`` follows ``topic`` until it ends. ``load`` (blocking) runs once
    the subscription is in place, so that no change falls between the read and the first event."""

    def on_message(message: BusMessage) -> None:  # on the bus client's thread
        follower.apply(message.body)

    sub_id = await asyncio.to_thread(bus.subscribe, topic, on_message, receipt=True, timeout_s=30.0)
    if load is not None:
        loaded = await asyncio.to_thread(load)
        log.info("%s: %d faces loaded", name, loaded)
    keeper = asyncio.create_task(_keep(follower, bus, options, name), name=f"sync-{name}")
    try:
        yield
    finally:
        keeper.cancel()
        await asyncio.gather(keeper, return_exceptions=True)
        bus.unsubscribe(sub_id)


async def _keep(follower: Follower, bus: BusClient, options: SyncOptions, name: str) -> None:
    last_check, reconnects = float("-inf"), bus.reconnects  # compared with the database at once
    while True:
        now = time.monotonic()
        check = now - last_check >= options.reconcile_interval_s or bus.reconnects != reconnects
        try:
            if check:
                last_check, reconnects = now, bus.reconnects
                behind = await asyncio.to_thread(follower.reconcile)
                if behind:
                    log.info("%s: %d behind the database; reloaded unless their events arrive", name, behind)
            for key in follower.due(options.gap_grace_s):
                log.info("%s: %s missed a change; reloading it from the database", name, key)
                await asyncio.to_thread(follower.reload, key)
        except Exception:  # the database may be away for a moment: the next round tries again
            log.exception("%s: not brought up to date", name)
        # A timer, not a wait for a fact: a gap announces nothing, it is the absence of an event.
        await asyncio.sleep(options.gap_grace_s / 2)
