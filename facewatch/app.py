"""The aiohttp application `facewatch serve` runs, and its lifecycle.

Startup, in order: embedded broker (if any) -> bus client -> repo indexes ->
STOMP API consumer -> grouping (following the watchers) -> sightings (index,
writer, retroactive naming, retention) -> camera workers.
Shutdown is the reverse (aiohttp cleanup_ctx).
"""

from __future__ import annotations

import asyncio
import gc
import logging
from collections.abc import AsyncIterator, Callable, Coroutine
from typing import Any

from aiohttp import web

from api.rest import add_rest_routes
from api.stomp import StompApiServer
from broker.client import BusClient
from broker.embedded import EmbeddedBroker
from grouping.reembed import grouped_faces
from grouping.service import GroupingService
from repo.events import REPO_EVENTS
from repo.reembed import Reembedder
from watcher.cameras import ALL_CAMERAS_TOPIC
from watcher.service import CONTROL_TOPIC, WatcherService

from . import __version__
from .broker_setup import internal_address
from .config import FacewatchConfig
from .grouping_setup import follow_watchers
from .outbox import BusOutbox
from .repo_setup import RepoParts
from .revocation import RevocationWatch
from .sightings_setup import SightingsParts, follow_bus

__all__ = ("make_app", "CONFIG", "REPO", "BROKER", "BUS")

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", FacewatchConfig)
REPO = web.AppKey("repo", RepoParts)
BROKER = web.AppKey("broker", EmbeddedBroker)
BUS = web.AppKey("bus", BusClient)


def _grouping_ctx(grouping: GroupingService, watcher: WatcherService,
                  refine_interval_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """Grouping follows the watchers' face.unknown events while the app runs."""

    async def grouping_ctx(app: web.Application) -> AsyncIterator[None]:
        following = follow_watchers(grouping, app[BUS], watcher.registry.owner, refine_interval_s)
        await anext(following)
        yield
        await following.aclose()

    return grouping_ctx


def _sightings_ctx(sightings: SightingsParts) -> Callable[[web.Application], AsyncIterator[None]]:
    """Sightings follow the workers' queue (and repo and grouping events) while the app runs."""

    async def sightings_ctx(app: web.Application) -> AsyncIterator[None]:
        following = follow_bus(sightings, app[BUS])
        await anext(following)
        yield
        await following.aclose()

    return sightings_ctx


def _background_ctx(run: Callable[[], Coroutine[Any, Any, object]],
                    name: str) -> Callable[[web.Application], AsyncIterator[None]]:
    """A task that runs while the app does (cancelled at shutdown)."""

    async def background_ctx(app: web.Application) -> AsyncIterator[None]:
        task = asyncio.create_task(run(), name=name)
        yield
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    return background_ctx


# What the event loop may spend on one callback. In asyncio's debug mode
# (PYTHONASYNCIODEBUG=1) every callback over it is logged (bench/slow_callbacks.py reads them).
SLOW_CALLBACK_S = 0.05


async def _slow_callback_budget(app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    if loop.get_debug():
        loop.slow_callback_duration = SLOW_CALLBACK_S


def make_app(cfg: FacewatchConfig, parts: RepoParts, publisher: BusOutbox,
             broker: EmbeddedBroker | None = None, watcher: WatcherService | None = None,
             grouping: GroupingService | None = None, sightings: SightingsParts | None = None) -> web.Application:
    """``broker``: the embedded broker to run and serve at websocket_path; None when external.
    ``watcher``: the camera service whose enabled cameras start with the app; None when disabled.
    ``grouping``: the grouping service, fed the watchers' unknown faces; None when disabled.
    ``sightings``: what keeps the watchers' face events as sightings; None when disabled."""
    app = web.Application(client_max_size=cfg.api.max_body_bytes)
    app[CONFIG] = cfg
    app[REPO] = parts
    app.on_startup.append(_slow_callback_budget)
    if broker is not None:
        app[BROKER] = broker
        app.router.add_get(cfg.broker.websocket_path, broker.websocket_handler())

        async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
            port = await broker.start()
            log.info("embedded STOMP broker on %s:%d (TCP) and ws://%s:%d%s",
                     cfg.broker.host, port, cfg.api.host, cfg.api.port, cfg.broker.websocket_path)
            assert broker.core is not None  # started
            revocations = RevocationWatch(broker.core, parts.auth, parts.store, cfg.auth.revocation_check_s)
            watch = asyncio.create_task(revocations.run(), name="revocations")
            yield
            watch.cancel()
            await asyncio.gather(watch, return_exceptions=True)
            await broker.stop()

        app.cleanup_ctx.append(broker_ctx)

    async def bus_ctx(app: web.Application) -> AsyncIterator[None]:
        client = BusClient(internal_address(cfg, broker.port if broker else None), client_name="facewatch-api")
        await asyncio.to_thread(client.connect, 30.0)
        app[BUS] = client
        publisher.start(client)
        yield
        await asyncio.to_thread(publisher.close)
        await asyncio.to_thread(client.close)

    async def repo_ctx(app: web.Application) -> AsyncIterator[None]:
        faces = await asyncio.to_thread(parts.repo.load_indexes)
        log.info("repo indexes loaded: %d faces", faces)
        await parts.repo.warm_up(cfg.runtime.analysis_processes)
        stomp_api = StompApiServer(parts.api, app[BUS], asyncio.get_running_loop(), cfg.api.max_body_bytes)
        stomp_api.start()
        resumed = parts.jobs.resume_all()
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)
        # What start-up built (models, indexes, metadata) lives as long as the server: out of the
        # collector's way, so that a full collection does not stall the event loop scanning it.
        gc.freeze()
        log.info("facewatch %s ready on http://%s:%d", __version__, cfg.api.host, cfg.api.port)
        yield
        stomp_api.stop()
        await parts.jobs.stop()
        if parts.repo.pool is not None:
            await asyncio.to_thread(parts.repo.pool.shutdown, True, cancel_futures=True)
        await asyncio.to_thread(parts.store.close)

    app.cleanup_ctx.extend([bus_ctx, repo_ctx, _background_ctx(parts.reembedder.run, "reembed")])
    if grouping is not None:
        grouped = Reembedder(parts.repo.analyzer, grouped_faces(grouping))
        app.cleanup_ctx.append(_background_ctx(grouped.run, "reembed-grouping"))
    if grouping is not None and watcher is not None:
        app.cleanup_ctx.append(_grouping_ctx(grouping, watcher, cfg.grouping.refine_interval_s))
    if sightings is not None:  # before the cameras start; stopped after they stop, its last batch written
        app.cleanup_ctx.append(_sightings_ctx(sightings))
    if watcher is not None:
        async def watcher_ctx(app: web.Application) -> AsyncIterator[None]:
            loop = asyncio.get_running_loop()
            bus = app[BUS]
            subscriptions = [
                bus.subscribe(CONTROL_TOPIC, lambda m: asyncio.run_coroutine_threadsafe(
                    watcher.on_control(m.json()), loop)),
                bus.subscribe(ALL_CAMERAS_TOPIC, lambda m: watcher.on_camera_event(m.json())),
                bus.subscribe(REPO_EVENTS, lambda m: asyncio.run_coroutine_threadsafe(
                    watcher.on_repo_event(m.json()), loop)),
            ]
            started = await asyncio.to_thread(watcher.start_enabled)
            log.info("watcher node %s: %d camera(s) started", watcher.node, started)
            yield
            for sub_id in subscriptions:
                bus.unsubscribe(sub_id)
            await asyncio.to_thread(watcher.close)  # workers stop while the broker can still take their last status

        app.cleanup_ctx.append(watcher_ctx)
    add_rest_routes(app, parts.api, cfg.api.max_body_bytes)
    return app
