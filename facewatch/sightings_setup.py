"""Assembles sightings (store, index, service, writer, retroactive naming, erasure, routes) and feeds
them from the bus: the workers' sightings queue, repo changes (enrolments) and grouping's events."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Callable, Coroutine
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

import numpy as np

from api.errors import Conflict
from api.routing import Router
from broker.client import BusClient, BusMessage
from events import Event
from grouping.service import GROUPING_EVENTS, GroupingService
from repo.events import REPO_EVENTS, EventPublisher
from repo.service import FaceRepository
from sightings.erasure import SubjectEraser
from sightings.handlers import ROUTES as SIGHTINGS_ROUTES, SightingsContext
from sightings.index import IndexOptions, SightingIndex
from sightings.records import Retention
from sightings.relabel import CameraView, CameraViews, RelabelOptions, Relabeller
from sightings.retention import RetentionOptions, run_retention
from sightings.service import GroupEmbeddings, SightingService
from sightings.store import SightingStore
from sightings.writer import CameraOwners, PendingGroups, SightingWriter, WriterOptions, consume_queue
from watcher.cameras import SIGHTINGS_QUEUE
from watcher.registry import CameraRegistry

from .bus_events import event_of
from .config import FacewatchConfig

__all__ = ("SightingsParts", "build_sightings", "follow_bus")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class SightingsParts:
    service: SightingService
    writer: SightingWriter
    relabeller: Relabeller
    pending: PendingGroups
    retention: RetentionOptions


def _group_embeddings(grouping: GroupingService) -> GroupEmbeddings:
    async def embeddings(tenant_id: str, group_id: str) -> np.ndarray:
        faces = [f.embedding for f in await grouping.faces(tenant_id, group_id) if f.model_id == grouping.model_id]
        if not faces:
            raise Conflict(f"the faces of group {group_id!r} are waiting to be re-embedded by the current model",
                           "group")
        return np.stack(faces)

    return embeddings


def _camera_views(cameras: CameraRegistry) -> CameraViews:
    def views(tenant_id: str) -> dict[str, CameraView]:
        return {c.id: CameraView(tuple(c.settings.galleries), c.settings.threshold)
                for c in cameras.of_tenant(tenant_id)}

    return views


def build_sightings(cfg: FacewatchConfig, repo: FaceRepository, events: EventPublisher, router: Router,
                    cameras: CameraRegistry, grouping: GroupingService | None) -> SightingsParts:
    s = cfg.sightings
    store = SightingStore(repo.store)
    index = SightingIndex(repo.analyzer.embedder.dim, IndexOptions(s.search.options(), s.partition_s))
    r = s.retention
    service = SightingService(store, index, repo, events, Retention(r.recognized_s, r.unknown_s, r.crop_s,
                                                                    r.embedding_s),
                              _group_embeddings(grouping) if grouping is not None else None)
    pending = PendingGroups()
    writer = SightingWriter(store, CameraOwners(cameras.owner), service.stored, pending,
                            WriterOptions(s.batch_size, s.batch_wait_s, s.prefetch))
    relabeller = Relabeller(service, _camera_views(cameras), events,
                            RelabelOptions(s.relabel_delay_s, s.relabel_max_candidates))
    router.add_table(SIGHTINGS_ROUTES, SightingsContext(service, SubjectEraser(service, grouping, events)))
    return SightingsParts(service, writer, relabeller, pending, RetentionOptions(s.retention_interval_s))


def _on_loop(loop: asyncio.AbstractEventLoop,
             handler: Callable[[Event], Coroutine[Any, Any, None]]) -> Callable[[BusMessage], None]:
    """A bus callback (receiver thread) that runs ``handler(event)`` on the loop, for events."""
    def on_message(message: BusMessage) -> None:
        event = event_of(message, Event)
        if event is not None:
            asyncio.run_coroutine_threadsafe(handler(event), loop)

    return on_message


@asynccontextmanager
async def _task(name: str, coroutine: Any) -> AsyncGenerator[None, None]:
    task = asyncio.create_task(coroutine, name=name)
    try:
        yield
    finally:
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)


async def follow_bus(parts: SightingsParts, bus: BusClient) -> AsyncGenerator[None, None]:
    """Loads the search index, then runs sightings while the app does (an async context): the writer on
    the workers' queue, retroactive naming on repo and grouping events, retention on its schedule."""
    loop = asyncio.get_running_loop()
    service, relabeller = parts.service, parts.relabeller
    indexed = await asyncio.to_thread(service.load_index)
    log.info("sightings: %d indexed for search by face", indexed)

    async def on_grouping(event: Event) -> None:
        try:
            await service.on_grouping_event(event, parts.pending.put)
            await relabeller.on_grouping_event(event)
        except Exception:
            log.exception("sightings: grouping event %s not applied", event.TYPE)

    # Subscribed before the queue: an enrolment or a placement is not missed by sightings stored meanwhile.
    subscriptions = [
        await asyncio.to_thread(bus.subscribe, REPO_EVENTS, _on_loop(loop, relabeller.on_repo_event), receipt=True),
        await asyncio.to_thread(bus.subscribe, GROUPING_EVENTS, _on_loop(loop, on_grouping), receipt=True),
    ]
    writing = consume_queue(parts.writer, bus, SIGHTINGS_QUEUE)
    async with _task("sightings-relabel", relabeller.run()), \
            _task("sightings-retention", run_retention(service, parts.retention)):
        await anext(writing)
        try:
            yield
        finally:
            await writing.aclose()
            for sub_id in subscriptions:
                await asyncio.to_thread(bus.unsubscribe, sub_id)
