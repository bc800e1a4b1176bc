"""GET /metrics: the registry in Prometheus' text format, for the metrics bearer token only.

The figures span every tenant (camera ids, sizes), so no tenant credential opens them: the token is the
operator's, from config (metrics.token) or generated into <data_dir>/metrics-token (0600) on first start.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import os
import secrets
from pathlib import Path

from aiohttp import web
from aiohttp.typedefs import Handler
from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

__all__ = ("metrics_handler", "metrics_token", "TOKEN_FILE")

log = logging.getLogger(__name__)

TOKEN_FILE = "metrics-token"


def metrics_token(configured: str | None, data_dir: Path) -> str:
    """``configured``, else the token in <data_dir>/metrics-token, made (random, mode 0600) if missing."""
    if configured:
        return configured
    path = data_dir / TOKEN_FILE
    if path.is_file():
        return path.read_text().strip()
    data_dir.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as fh:
        fh.write(token + "\n")
    log.info("generated the metrics bearer token in %s", path)
    return token


def metrics_handler(registry: CollectorRegistry, token: str) -> Handler:
    expected = f"Bearer {token}".encode()

    async def metrics(request: web.Request) -> web.StreamResponse:
        given = request.headers.get("Authorization", "").encode("utf-8", "surrogateescape")  # as aiohttp read it
        if not hmac.compare_digest(given, expected):
            return web.json_response(
                {"code": "AUTH_FAILED", "reason": "metrics need the metrics bearer token (Authorization: Bearer "
                 "<metrics.token or the content of <data_dir>/metrics-token>); tenant keys do not open them"},
                status=401, headers={"WWW-Authenticate": 'Bearer realm="facewatch metrics"'})
        # Collectors read the database and the supervisor: off the event loop.
        body = await asyncio.to_thread(generate_latest, registry)
        return web.Response(body=body, headers={"Content-Type": CONTENT_TYPE_LATEST})

    return metrics
