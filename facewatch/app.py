"""The aiohttp application: what `facewatch serve` runs.

It grows with the other issues (repo API, broker WebSocket, watcher); today it
holds the face pipeline and answers health checks.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from broker.embedded import EmbeddedBroker
from vision.analyzer import FaceAnalyzer

from . import __version__
from .config import FacewatchConfig

__all__ = ("make_app", "CONFIG", "ANALYZER", "BROKER")

log = logging.getLogger(__name__)

CONFIG = web.AppKey("config", FacewatchConfig)
ANALYZER = web.AppKey("analyzer", FaceAnalyzer)
BROKER = web.AppKey("broker", EmbeddedBroker)

routes = web.RouteTableDef()


@routes.get("/api/v1/health")
async def health(request: web.Request) -> web.Response:
    analyzer = request.app[ANALYZER]
    return web.json_response(
        {
            "status": "ok",
            "version": __version__,
            "embedding_model": analyzer.embedder.model_id,
        }
    )


def make_app(cfg: FacewatchConfig, analyzer: FaceAnalyzer, broker: EmbeddedBroker | None = None) -> web.Application:
    """``broker``: the embedded broker to run (TCP) and serve at websocket_path; None when external."""
    app = web.Application(client_max_size=cfg.api.max_body_bytes)
    app[CONFIG] = cfg
    app[ANALYZER] = analyzer
    if broker is not None:
        app[BROKER] = broker
        app.router.add_get(cfg.broker.websocket_path, broker.websocket_handler())

        async def broker_ctx(app: web.Application) -> AsyncIterator[None]:
            port = await broker.start()
            log.info("embedded STOMP broker on %s:%d (TCP) and ws://%s:%d%s",
                     cfg.broker.host, port, cfg.api.host, cfg.api.port, cfg.broker.websocket_path)
            yield
            await broker.stop()

        app.cleanup_ctx.append(broker_ctx)

    async def log_ready(app: web.Application) -> AsyncIterator[None]:
        log.info("facewatch %s ready on http://%s:%d", __version__, cfg.api.host, cfg.api.port)
        yield
        log.info("facewatch stopped")

    app.cleanup_ctx.append(log_ready)
    app.add_routes(routes)
    return app
