"""The embedded broker as one object: its core, TCP listener and WebSocket handler."""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from .auth import BrokerAuthenticator
from .core import BrokerCore, BrokerLimits
from .server import BrokerServer, Listener, websocket_handler

__all__ = ("EmbeddedBroker", "BrokerThread")

T = TypeVar("T")


class EmbeddedBroker:
    """``port``: plain TCP STOMP on ``host``. None: none there, but a loopback-only one at a free port
    (``port`` once started), since local clients on the same host (facewatch's own parts) speak plain
    STOMP. ``tls_port``: STOMP over TLS on ``host`` with ``ssl_context``."""

    def __init__(self, limits: BrokerLimits, authenticator: BrokerAuthenticator, host: str = "127.0.0.1",
                 port: int | None = 61623, *, tls_port: int | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        if tls_port is not None and ssl_context is None:
            raise ValueError("tls_port needs an ssl_context")
        self.limits = limits
        self.authenticator = authenticator
        self.host = host
        self.plain_host = host if port is not None else "127.0.0.1"
        self.port = port if port is not None else 0
        self.tls_port = tls_port
        self.ssl_context = ssl_context
        self.core: BrokerCore | None = None
        self.server: BrokerServer | None = None

    async def start(self) -> int:
        """Start on the running loop; returns the plain TCP port (useful with port 0)."""
        self.core = BrokerCore(self.limits, self.authenticator, asyncio.get_running_loop())
        listeners = [Listener(self.plain_host, self.port)]
        if self.tls_port is not None:
            listeners.append(Listener(self.host, self.tls_port, self.ssl_context, "broker.tls_port"))
        self.server = BrokerServer(self.core, tuple(listeners))
        ports = await self.server.start()
        self.port = ports[0]
        if self.tls_port is not None:
            self.tls_port = ports[1]
        return self.port

    async def stop(self) -> None:
        if self.server is not None:
            await self.server.stop()

    def _core(self) -> BrokerCore:
        if self.core is None:
            raise web.HTTPServiceUnavailable(text="broker not started")
        return self.core

    def websocket_handler(self) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
        return websocket_handler(self._core)


class BrokerThread:
    """Runs an EmbeddedBroker (TCP, and WebSocket on its own HTTP port) in a
    background thread: for tests, benchmarks and embedding in sync programs."""

    def __init__(self, broker: EmbeddedBroker, *, websocket_port: int | None = 0,
                 websocket_path: str = "/stomp", websocket_ssl: ssl.SSLContext | None = None) -> None:
        """``websocket_ssl``: serve the WebSocket over TLS (wss://)."""
        self.broker = broker
        self.websocket_port = websocket_port
        self.websocket_path = websocket_path
        self.websocket_ssl = websocket_ssl
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="embedded-broker", daemon=True)
        self._runner: web.AppRunner | None = None

    def start(self) -> "BrokerThread":
        self._thread.start()
        asyncio.run_coroutine_threadsafe(self._start(), self.loop).result(timeout=30)
        return self

    async def _start(self) -> None:
        await self.broker.start()
        if self.websocket_port is not None:
            app = web.Application()
            app.router.add_get(self.websocket_path, self.broker.websocket_handler())
            self._runner = web.AppRunner(app)
            await self._runner.setup()
            site = web.TCPSite(self._runner, self.broker.host, self.websocket_port, ssl_context=self.websocket_ssl)
            await site.start()
            sockets = self._runner.addresses
            self.websocket_port = int(sockets[0][1])

    def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` on the broker's loop and return its result (for inspection)."""
        async def run() -> T:
            return fn()
        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(timeout=30)

    def stop(self) -> None:
        async def _stop() -> None:
            if self._runner is not None:
                await self._runner.cleanup()
            await self.broker.stop()
        asyncio.run_coroutine_threadsafe(_stop(), self.loop).result(timeout=30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(timeout=10)
        self.loop.close()
