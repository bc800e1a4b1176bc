"""The embedded broker as one object: its core, TCP listener and WebSocket handler."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from aiohttp import web

from .auth import BrokerAuthenticator
from .core import BrokerCore, BrokerLimits
from .server import BrokerServer, websocket_handler

__all__ = ("EmbeddedBroker", "BrokerThread")

T = TypeVar("T")


class EmbeddedBroker:
    def __init__(self, limits: BrokerLimits, authenticator: BrokerAuthenticator, host: str = "127.0.0.1",
                 port: int = 61623) -> None:
        self.limits = limits
        self.authenticator = authenticator
        self.host = host
        self.port = port
        self.core: BrokerCore | None = None
        self.server: BrokerServer | None = None

    async def start(self) -> int:
        """Start on the running loop; returns the TCP port (useful with port 0)."""
        self.core = BrokerCore(self.limits, self.authenticator, asyncio.get_running_loop())
        self.server = BrokerServer(self.core, self.host, self.port)
        self.port = await self.server.start()
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
                 websocket_path: str = "/stomp") -> None:
        self.broker = broker
        self.websocket_port = websocket_port
        self.websocket_path = websocket_path
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
            site = web.TCPSite(self._runner, self.broker.host, self.websocket_port)
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
