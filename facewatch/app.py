"""The aiohttp application `facewatch serve` runs, and its lifecycle.

Startup, in order: embedded broker (if any) -> bus client -> repo indexes
(following every node's changes) -> STOMP API consumer -> grouping (following
every node's changes and the watchers) -> sightings (index, writer, retroactive
naming, retention) -> MQTT bridge (if enabled) -> camera workers. Shutdown is the
reverse (aiohttp cleanup_ctx), after the STOMP API consumer has stopped taking
requests and answered those in hand (on_shutdown, before anything closes).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from aiohttp import web

from api.rest import add_rest_routes, json_expect
from api.stomp import StompApiServer
from broker.client import BusClient, BusMessage
from broker.core import TENANT_HEADER
from broker.embedded import EmbeddedBroker
from console import add_console_routes, missing_vendor_files
from events import CameraStatus, GalleryRenamed
from grouping.reembed import grouped_faces
from grouping.service import GROUPING_EVENTS, GroupingService
from repo.events import REPO_EVENTS
from repo.reembed import Reembedder
from watcher.cameras import ALL_CAMERAS_TOPIC
from watcher.service import CONTROL_TOPIC, WatcherService

from . import __version__
from .broker_setup import internal_address
from .bus_events import event_of
from .config import FacewatchConfig
from .grouping_setup import follow_watchers
from .metrics import BrokerCollector, CameraCollector, Metrics, MqttCollector, ReembedCollector, StoreCollector, \
    metrics_handler, metrics_token
from .mqtt import BrokerOptions, MqttBridge, Routing, routing as mqtt_routing
from .outbox import BusOutbox
from .repo_setup import RepoParts, node_name
from .revocation import RevocationWatch
from .sightings_setup import SightingsParts, follow_bus
from .sync_setup import follow

__all__ = ("make_app", "CONFIG", "REPO", "BROKER", "BUS", "STOMP_API")

log = logging.getLogger(__name__)

MAX_LINE_BYTES = 64 * 1024
CONFIG = web.AppKey("config", FacewatchConfig)
REPO = web.AppKey("repo", RepoParts)
BROKER = web.AppKey("broker", EmbeddedBroker)
BUS = web.AppKey("bus", BusClient)
STOMP_API = web.AppKey("stomp_api", StompApiServer)


def _grouping_ctx(grouping: GroupingService, watcher: WatcherService,
                  refine_interval_s: float) -> Callable[[web.Application], AsyncIterator[None]]:
    """Grouping follows the watchers' face.unknown events while the app runs."""

    async def grouping_ctx(app: web.Application) -> AsyncIterator[None]:
        following = follow_watchers(grouping, app[BUS], watcher.registry.owner, refine_interval_s)
        await anext(following)
        yield
        await following.aclose()

    return grouping_ctx


def _groups_ctx(grouping: GroupingService, cfg: FacewatchConfig) -> Callable[[web.Application], AsyncIterator[None]]:
    """The group index follows the grouping changes made through every node (loaded already:
    a resumed job needed it; reconciled with the database as soon as the subscription is in place)."""

    async def groups_ctx(app: web.Application) -> AsyncIterator[None]:
        following = follow(grouping.mirror, app[BUS], GROUPING_EVENTS, cfg.sync.options(), "grouping")
        await anext(following)
        yield
        await following.aclose()

    return groups_ctx


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


async def _every(interval_s: float, step: Callable[[], object], what: str, thread_name: str) -> None:
    """``step`` every ``interval_s`` while the app runs, on a thread of its own: a heartbeat must not queue
    behind the requests' work in the default executor."""
    loop = asyncio.get_running_loop()
    thread = ThreadPoolExecutor(1, thread_name_prefix=thread_name)
    try:
        while True:
            await asyncio.sleep(interval_s)  # a heartbeat: a timer by nature
            try:
                await loop.run_in_executor(thread, step)
            except Exception:  # the database may be away: workers hold back their events at their lease's expiry
                log.exception("%s failed this time", what)
    finally:
        thread.shutdown(wait=False)  # a step in progress ends on its own; the loop does not wait for it


NODE_SEEN_INTERVAL_S = 30.0
REPLY_HEADROOM_BYTES = 64 * 1024  # a STOMP reply's headers (its correlation id is the client's, up to a line)


def max_reply_bytes(max_frame_bytes: int) -> int:
    """The largest STOMP API reply body a frame of ``max_frame_bytes`` carries with its headers."""
    return max(max_frame_bytes - REPLY_HEADROOM_BYTES, max_frame_bytes // 2)


async def _keep_leases(watcher: WatcherService) -> None:
    """The node's heartbeat and its cameras' leases, and the cameras to stop, hand back or take over
    (watcher/failover.py), every third of a lease's length; apart, so that a slow worker start or stop
    never delays a renewal."""
    keeper = watcher.keeper
    interval = keeper.options.interval_s
    await asyncio.gather(
        _every(interval, keeper.heartbeat, f"node {watcher.node}: heartbeat and lease renewal", "camera-leases"),
        _every(interval, keeper.rebalance, f"node {watcher.node}: camera placement", "camera-placement"))


STALL_CHECK_S = 1.0
# Half the bus clients' heart-beat interval: a node that did not run for longer may have lost its
# deliveries on a connection the broker still holds open.
STALL_S = 5.0


async def _reconnect_after_stalls(clients: Callable[[], list[BusClient]]) -> None:
    """A node that did not run for a while (SIGSTOP, a frozen VM, a starved host) reconnects its broker
    connections: RabbitMQ stops delivering to the client-ack subscriptions of a connection whose
    heart-beats stopped, without closing it, and the requests (or faces) it held stay unacknowledged
    until it closes (broker.client.BusClient.reconnect)."""
    last = time.monotonic()
    while True:
        await asyncio.sleep(STALL_CHECK_S)  # a timer by nature: it measures how late it wakes
        now = time.monotonic()
        if now - last > STALL_S:
            log.warning("this node did not run for %.1fs (paused or starved); reconnecting to the broker",
                        now - last - STALL_CHECK_S)
            for client in clients():
                await asyncio.to_thread(client.reconnect)
        last = now


# What the event loop may spend on one callback. In asyncio's debug mode
# (PYTHONASYNCIODEBUG=1) every callback over it is logged (bench/slow_callbacks.py reads them).
SLOW_CALLBACK_S = 0.05


async def _slow_callback_budget(app: web.Application) -> None:
    loop = asyncio.get_running_loop()
    if loop.get_debug():
        loop.slow_callback_duration = SLOW_CALLBACK_S


async def _lifecycle_ctx(app: web.Application) -> AsyncIterator[None]:
    """First in, last out: its last line is the last thing a clean shutdown logs."""
    started = time.monotonic()
    yield
    log.info("facewatch %s stopped cleanly after %.0fs", __version__, time.monotonic() - started)


async def _log_shutdown(app: web.Application) -> None:
    log.info("facewatch shutting down: stopping cameras, jobs, the API and the broker")


def _metrics_ctx(metrics: Metrics, cfg: FacewatchConfig, parts: RepoParts, broker: EmbeddedBroker | None,
                 watcher: WatcherService | None, reembedders: list[tuple[str, Reembedder]],
                 grouping: bool) -> Callable[[web.Application], AsyncIterator[None]]:
    """The collectors that read the running parts, registered while the app runs."""

    async def metrics_ctx(app: web.Application) -> AsyncIterator[None]:
        bus = app[BUS]
        collectors = [
            BrokerCollector(lambda: broker.core if broker is not None else None, asyncio.get_running_loop(),
                            lambda: bus.reconnects),
            StoreCollector(parts.store.engine, grouping), ReembedCollector(reembedders),
        ]
        if watcher is not None:
            collectors.append(CameraCollector(watcher))
        for collector in collectors:
            metrics.registry.register(collector)
        yield
        for collector in collectors:
            metrics.registry.unregister(collector)

    return metrics_ctx


def _mqtt_ctx(options: BrokerOptions, routing: Routing, max_queue: int,
              metrics: Metrics | None) -> Callable[[web.Application], AsyncIterator[None]]:
    """The MQTT bridge, fed every camera's events from the bus (the server's own credential) while the app
    runs. Stopped after the cameras (cleanup runs in reverse), so their last status can still go out."""

    async def mqtt_ctx(app: web.Application) -> AsyncIterator[None]:
        bridge = MqttBridge(options, routing, max_queue)
        bridge.start()
        bus = app[BUS]
        sub_id = await asyncio.to_thread(bus.subscribe, ALL_CAMERAS_TOPIC, bridge.on_bus_message, receipt=True)
        collector = MqttCollector(bridge.stats)
        if metrics is not None:
            metrics.registry.register(collector)
        yield
        if metrics is not None:
            metrics.registry.unregister(collector)
        bus.unsubscribe(sub_id)
        await bridge.stop()

    return mqtt_ctx


def make_app(cfg: FacewatchConfig, parts: RepoParts, publisher: BusOutbox,
             broker: EmbeddedBroker | None = None, watcher: WatcherService | None = None,
             grouping: GroupingService | None = None, metrics: Metrics | None = None,
             sightings: SightingsParts | None = None, mqtt: BrokerOptions | None = None) -> web.Application:
    """``broker``: the embedded broker to run and serve at websocket_path; None when external.
    ``watcher``: the camera service whose enabled cameras start with the app; None when disabled.
    ``grouping``: the grouping service, fed the watchers' unknown faces; None when disabled.
    ``metrics``: served at metrics.path when metrics are enabled (its ``api`` observes parts.api).
    ``sightings``: what keeps the watchers' face events as sightings; None when disabled.
    ``mqtt``: the MQTT broker the bridge publishes camera events to (cfg.mqtt); None when disabled."""
    # aiohttp answers a request line or header over its limits (8190 bytes by default) itself, in plain
    # text; with room up to 64 KiB, such requests reach our router and get a JSON error. (Beyond, aiohttp's
    # plain 400 remains: no public hook changes its body.)
    app = web.Application(client_max_size=cfg.api.max_body_bytes,
                          handler_args={"max_line_size": MAX_LINE_BYTES, "max_field_size": MAX_LINE_BYTES})
    app[CONFIG] = cfg
    app[REPO] = parts
    app.cleanup_ctx.append(_lifecycle_ctx)
    app.on_startup.append(_slow_callback_budget)
    app.on_shutdown.append(_log_shutdown)
    if broker is not None:
        app[BROKER] = broker
        app.router.add_get(cfg.broker.websocket_path, broker.websocket_handler(), expect_handler=json_expect)

        async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
            port = await broker.start()
            plain = f"{broker.plain_host}:{port}" + ("" if cfg.broker.port is not None
                                                     else " (loopback only: broker.port is null)")
            tls = f", TLS on {cfg.broker.host}:{broker.tls_port}" if broker.tls_port is not None else ""
            log.info("embedded STOMP broker: TCP on %s%s, WebSocket at %s://%s:%d%s", plain, tls,
                     "wss" if cfg.api.tls.enabled else "ws", cfg.api.host, cfg.api.port, cfg.broker.websocket_path)
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
        # Subscribed before the indexes are read: no change of another node falls in between.
        following = follow(parts.repo.mirror, app[BUS], REPO_EVENTS, cfg.sync.options(), "repo",
                           load=parts.repo.load_indexes)
        await anext(following)
        await parts.repo.warm_up(cfg.runtime.analysis_processes)
        requests = BusClient(internal_address(cfg, broker.port if broker else None), client_name="facewatch-requests")
        stomp_api = StompApiServer(parts.api, requests, asyncio.get_running_loop(), cfg.api.max_body_bytes,
                                   cfg.api.stomp_prefetch, node_name(cfg), max_reply_bytes(cfg.broker.max_frame_bytes))
        await asyncio.to_thread(stomp_api.start)
        app[STOMP_API] = stomp_api
        resumed = parts.jobs.resume_all()
        if resumed:
            log.info("resumed %d unfinished job(s)", resumed)
        # What start-up built (models, indexes, metadata) lives as long as the server: out of the
        # collector's way, so that a full collection does not stall the event loop scanning it.
        gc.freeze()
        log.info("facewatch %s ready on %s://%s:%d", __version__, "https" if cfg.api.tls.enabled else "http",
                 cfg.api.host, cfg.api.port)
        yield
        await stomp_api.stop(0)  # stopped at on_shutdown already, unless start-up failed after it started
        await parts.jobs.stop()
        if parts.repo.pool is not None:
            await asyncio.to_thread(parts.repo.pool.shutdown, True, cancel_futures=True)
        await following.aclose()
        await asyncio.to_thread(parts.store.close)

    async def stop_taking_requests(app: web.Application) -> None:
        # At shutdown before any cleanup: the pools the requests in hand need close after them.
        if STOMP_API in app:
            await app[STOMP_API].stop(cfg.api.drain_timeout_s)

    app.on_shutdown.append(stop_taking_requests)
    app.cleanup_ctx.extend([bus_ctx, repo_ctx, _background_ctx(parts.reembedder.run, "reembed"),
                            _background_ctx(parts.jobs.keep_leases, "job-leases"),
                            _background_ctx(lambda: _reconnect_after_stalls(lambda: [app[STOMP_API].client, app[BUS]]),
                                            "stall-watch")])
    reembedders: list[tuple[str, Reembedder]] = [("repo", parts.reembedder)]
    if grouping is not None:
        grouped = Reembedder(parts.repo.analyzer, grouped_faces(grouping))
        reembedders.append(("grouping", grouped))
        app.cleanup_ctx.append(_background_ctx(grouped.run, "reembed-grouping"))
        app.cleanup_ctx.append(_groups_ctx(grouping, cfg))
    if metrics is not None and cfg.metrics.enabled:
        app.router.add_get(cfg.metrics.path, metrics_handler(metrics.registry,
                                                             metrics_token(cfg.metrics.token, Path(cfg.data_dir))),
                           expect_handler=json_expect)
        app.cleanup_ctx.append(_metrics_ctx(metrics, cfg, parts, broker, watcher, reembedders, grouping is not None))
    if grouping is not None and watcher is not None:
        app.cleanup_ctx.append(_grouping_ctx(grouping, watcher, cfg.grouping.refine_interval_s))
    if sightings is not None:  # before the cameras start; stopped after they stop, its last batch written
        app.cleanup_ctx.append(_sightings_ctx(sightings))
    if mqtt is not None:
        app.cleanup_ctx.append(_mqtt_ctx(mqtt, mqtt_routing(cfg.mqtt), cfg.mqtt.max_queue,
                                         metrics if cfg.metrics.enabled else None))
    if watcher is not None:
        async def watcher_ctx(app: web.Application) -> AsyncIterator[None]:
            loop = asyncio.get_running_loop()
            bus = app[BUS]
            def on_camera_event(message: BusMessage) -> None:  # statuses only: faces are not read further
                event = event_of(message, CameraStatus)
                if event is not None:
                    watcher.on_camera_event(event, message.headers.get(TENANT_HEADER))

            def on_repo_event(message: BusMessage) -> None:
                event = event_of(message, GalleryRenamed)  # the only one it acts on
                if event is not None:
                    asyncio.run_coroutine_threadsafe(watcher.on_repo_event(event), loop)

            subscriptions = [
                bus.subscribe(CONTROL_TOPIC, lambda m: asyncio.run_coroutine_threadsafe(
                    watcher.on_control(m.json()), loop)),
                bus.subscribe(ALL_CAMERAS_TOPIC, on_camera_event),
                bus.subscribe(REPO_EVENTS, on_repo_event),
            ]
            started = await asyncio.to_thread(watcher.start_enabled)
            log.info("watcher node %s: %d camera(s) started", watcher.node, started)
            leases = asyncio.create_task(_keep_leases(watcher), name="camera-leases")
            yield
            for sub_id in subscriptions:
                bus.unsubscribe(sub_id)
            # Workers stop while the broker can still take their last status, and while their leases are
            # still renewed; then the leases are released for the other nodes.
            await asyncio.to_thread(watcher.close)
            leases.cancel()
            await asyncio.gather(leases, return_exceptions=True)

        app.cleanup_ctx.append(watcher_ctx)
    add_rest_routes(app, parts.api, cfg.api.max_body_bytes)
    if cfg.console.enabled:
        add_console_routes(app, cfg.broker.websocket_path if broker is not None else None)
        missing = missing_vendor_files()
        if missing:
            log.warning("console: %s missing (scripts/setup.sh copies them from npm): its live pages and API "
                        "reference will not work", ", ".join(missing))
    return app
