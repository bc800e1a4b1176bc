"""Assembles grouping (store, service, routes) and feeds it the watchers' unknown faces."""

from __future__ import annotations

import asyncio
import base64
import binascii
import logging
from collections.abc import AsyncGenerator, Callable


from api.errors import ApiError
from api.routing import Router
from broker.client import BusClient, BusMessage
from broker.core import TENANT_HEADER
from events import EventError, FaceUnknown, decode_as, decode_vector
from grouping.handlers import ROUTES as GROUPING_ROUTES, GroupingContext, grouping_job_kind
from grouping.service import GroupingOptions, GroupingService
from grouping.store import GroupStore, NewFace
from repo.events import EventPublisher
from repo.jobs import JobRunner
from repo.service import FaceRepository
from watcher.cameras import UNKNOWN_FACES_QUEUE

from .config import FacewatchConfig

__all__ = ("build_grouping", "follow_watchers", "new_face_from_event")

log = logging.getLogger(__name__)


def build_grouping(cfg: FacewatchConfig, repo: FaceRepository, events: EventPublisher, router: Router,
                   jobs: JobRunner) -> GroupingService:
    g = cfg.grouping
    service = GroupingService(GroupStore(repo.store), repo, events,
                              GroupingOptions(g.threshold, g.merge_threshold, g.promote_faces))
    jobs.register(grouping_job_kind(service))
    router.add_table(GROUPING_ROUTES, GroupingContext(service, jobs))
    # Loaded now, before the app starts: a resumed grouping job must find the groups.
    log.info("grouping: %d grouped faces loaded", service.load())
    return service


def new_face_from_event(event: FaceUnknown) -> NewFace | None:
    """The face of a watcher's face.unknown event, or None when it carries none."""
    embedding = decode_vector(event.embedding)
    if embedding is None:
        return None
    try:
        crop = base64.b64decode(event.crop, validate=True) if event.crop else None
    except (binascii.Error, ValueError):
        crop = None
    return NewFace(embedding, event.model_id, "camera", event.frame.wall_time, event.quality, camera=event.camera,
                   track=event.track, crop=crop, event_id=event.id[:64])


async def follow_watchers(service: GroupingService, bus: BusClient, camera_owner: Callable[[str], str | None],
                          refine_interval_s: float, *, prefetch: int = 16,
                          retry_s: float = 1.0) -> AsyncGenerator[None, None]:
    """Groups every face.unknown of every camera, and refines the groups now and then
    (an async context: runs until the app stops).

    The faces come from UNKNOWN_FACES_QUEUE, where every node that groups is a competing consumer: each
    face is placed by one node. A face is acknowledged once placed (or found unplaceable); a failure (the
    database, say) is logged and the face given back to the queue, so nothing acknowledged is lost and a
    redelivery is not placed twice (the event id is stored with the face)."""
    loop = asyncio.get_running_loop()
    tenants: set[str] = set()
    in_hand: set[asyncio.Task[None]] = set()

    async def place(event: FaceUnknown, marked: str | None) -> None:
        face = new_face_from_event(event)
        # The tenant the worker marked it with (its camera's then): a camera id removed and registered by
        # another tenant meanwhile must not hand the old camera's faces to the new owner.
        tenant = marked or await asyncio.to_thread(camera_owner, event.camera)
        if face is None or tenant is None:
            log.warning("face.unknown from camera %r not grouped (no embedding or no such camera)", event.camera)
            return
        try:
            await service.add_face(tenant, face)
            tenants.add(tenant)
        except ApiError as exc:
            if exc.status >= 500:
                raise  # for now (the groups kept changing, say): given back to the queue
            log.warning("face.unknown from camera %r not grouped: %s", event.camera, exc.reason)

    async def handle(message: BusMessage) -> None:
        try:
            event = decode_as(message.body, FaceUnknown)
            if event is not None:
                await place(event, message.headers.get(TENANT_HEADER))
        except EventError as exc:
            log.warning("not a face.unknown on %s: dropped (%s)", UNKNOWN_FACES_QUEUE, exc)
        except Exception:
            log.exception("face.unknown not grouped now; given back to the queue")
            await asyncio.sleep(retry_s)  # not at once: a database that is down stays down for a while
            await asyncio.to_thread(bus.nack, message)
            return
        await asyncio.to_thread(bus.ack, message)

    def start(message: BusMessage) -> None:  # on the loop
        task = loop.create_task(handle(message))
        in_hand.add(task)
        task.add_done_callback(in_hand.discard)

    def on_message(message: BusMessage) -> None:  # on the bus client's receiver thread
        loop.call_soon_threadsafe(start, message)

    async def refine_forever() -> None:
        while True:
            await asyncio.sleep(refine_interval_s)
            for tenant in list(tenants):
                merged = await service.refine(tenant)
                if merged:
                    log.info("grouping: %d group(s) merged for tenant %s", merged, tenant)

    sub_id = await asyncio.to_thread(bus.subscribe, UNKNOWN_FACES_QUEUE, on_message, ack="client-individual",
                                     headers={"prefetch-count": str(prefetch)}, receipt=True)
    refiner = loop.create_task(refine_forever())
    try:
        yield
    finally:
        refiner.cancel()
        # Faces in hand are finished and acknowledged before the subscription ends (what is not yet in
        # hand goes back to the queue, to another node).
        await asyncio.gather(*in_hand, return_exceptions=True)
        bus.unsubscribe(sub_id)
