"""The embedded broker: shared state plus its TCP and WebSocket transports."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import WSMsgType, web

from .core import BrokerCore
from .session import StompSession

__all__ = ("BrokerServer", "Listener", "websocket_handler", "STOMP_SUBPROTOCOLS")

log = logging.getLogger(__name__)

STOMP_SUBPROTOCOLS = ("v12.stomp", "v11.stomp", "v10.stomp")


class _TcpTransport:
    def __init__(self, transport: asyncio.Transport) -> None:
        self._transport = transport
        peer = transport.get_extra_info("peername")
        self._peer = f"{peer[0]}:{peer[1]}" if peer else "?"

    def write(self, data: bytes) -> None:
        if not self._transport.is_closing():
            self._transport.write(data)

    def buffered_bytes(self) -> int:
        return self._transport.get_write_buffer_size()

    def pause_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if not self._transport.is_closing():
            self._transport.resume_reading()

    def close(self) -> None:
        self._transport.close()

    @property
    def peer(self) -> str:
        return self._peer


class _StompTcpProtocol(asyncio.Protocol):
    def __init__(self, core: BrokerCore, live: set["_StompTcpProtocol"]) -> None:
        self.core = core
        self.live = live  # the server's set of open connections, for shutdown
        self.session: StompSession | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.live.add(self)
        assert isinstance(transport, asyncio.Transport)  # create_server gives stream transports
        self.transport = transport
        # Deliveries stop at the session high-water mark; the OS buffer below it.
        transport.set_write_buffer_limits(high=self.core.limits.session_high_water_bytes)
        self.session = StompSession(self.core, _TcpTransport(transport))
        self.core.session_opened(self.session)

    def data_received(self, data: bytes) -> None:
        if self.session is not None:
            self.session.data_received(data)

    def pause_writing(self) -> None:
        pass  # ``writable`` reads the buffer size directly

    def resume_writing(self) -> None:
        if self.session is not None:
            self.session.on_writable()

    def connection_lost(self, exc: Exception | None) -> None:
        self.live.discard(self)
        if self.session is not None:
            self.session.connection_lost()


class _WebSocketTransport:
    """Frames go out as WebSocket messages from one writer task, in order."""

    def __init__(self, ws: web.WebSocketResponse, peer: str) -> None:
        self.ws = ws
        self._peer = peer
        self._queue: list[bytes] = []
        self._queued_bytes = 0
        self._wakeup = asyncio.Event()
        self._closing = False
        self.session: StompSession | None = None
        # The reader awaits this before each message: while it waits, aiohttp's own flow control stops
        # reading the socket (setting the underlying transport's state directly would be undone by it).
        self.readable = asyncio.Event()
        self.readable.set()

    def write(self, data: bytes) -> None:
        if self._closing:
            return
        self._queue.append(data)
        self._queued_bytes += len(data)
        self._wakeup.set()

    def buffered_bytes(self) -> int:
        return self._queued_bytes

    def pause_reading(self) -> None:
        self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()

    def close(self) -> None:
        self._closing = True
        self._wakeup.set()
        self.readable.set()

    @property
    def peer(self) -> str:
        return self._peer

    async def run_writer(self) -> None:
        while True:
            await self._wakeup.wait()
            self._wakeup.clear()
            while self._queue:
                batch, self._queue = self._queue, []
                size = sum(len(b) for b in batch)
                # Several frames per WebSocket message is allowed; text when it decodes.
                payload = b"".join(batch)
                try:
                    await self.ws.send_str(payload.decode("utf-8"))
                except UnicodeDecodeError:
                    await self.ws.send_bytes(payload)
                except (ConnectionResetError, RuntimeError):
                    self._closing = True
                    self._queue.clear()
                self._queued_bytes -= size
                if self.session is not None and self._queued_bytes < self.session.limits.session_high_water_bytes:
                    self.session.on_writable()
            if self._closing:
                await self.ws.close()
                return


def websocket_handler(core_getter: Callable[[], BrokerCore]) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    """aiohttp handler for STOMP over WebSocket at /stomp."""

    async def handler(request: web.Request) -> web.StreamResponse:
        core = core_getter()
        ws = web.WebSocketResponse(protocols=STOMP_SUBPROTOCOLS, max_msg_size=core.limits.max_frame_bytes + 1024,
                                   heartbeat=None)
        await ws.prepare(request)
        transport = _WebSocketTransport(ws, request.remote or "?")
        session = StompSession(core, transport)
        transport.session = session
        core.session_opened(session)
        writer = asyncio.create_task(transport.run_writer())
        try:
            while True:
                await transport.readable.wait()
                msg = await ws.receive()
                if msg.type == WSMsgType.TEXT:
                    session.data_received(msg.data.encode("utf-8"))
                elif msg.type == WSMsgType.BINARY:
                    session.data_received(msg.data)
                else:
                    break
                if session.closed:
                    break
        finally:
            session.connection_lost()
            transport.close()
            try:
                await asyncio.wait_for(writer, timeout=5)
            except asyncio.TimeoutError:
                writer.cancel()
        return ws

    return handler


@dataclass(slots=True, frozen=True)
class Listener:
    """One TCP address STOMP is served on: plain, or TLS when ``ssl`` is given."""

    host: str
    port: int
    ssl: ssl.SSLContext | None = None
    setting: str = "broker.port"  # the config key that moves it, for the error when the port is taken


@dataclass(slots=True)
class BrokerServer:
    """Runs the TCP listeners; the WebSocket side is mounted on the aiohttp app."""

    core: BrokerCore
    listeners: tuple[Listener, ...] = (Listener("127.0.0.1", 61623),)
    _servers: list[asyncio.AbstractServer] = field(default_factory=list)
    _live: set[_StompTcpProtocol] = field(default_factory=set)

    async def start(self) -> list[int]:
        """Listen on every address; returns the ports bound, in order (useful with port 0)."""
        return [await self._listen(listener) for listener in self.listeners]

    async def _listen(self, listener: Listener) -> int:
        env = "FACEWATCH_" + listener.setting.upper().replace(".", "__")
        try:
            server = await self.core.loop.create_server(
                lambda: _StompTcpProtocol(self.core, self._live), listener.host, listener.port, reuse_address=True,
                ssl=listener.ssl,
                # A client that never finishes its handshake is dropped like one that never sends CONNECT.
                ssl_handshake_timeout=self.core.limits.connect_timeout_s if listener.ssl else None,
            )
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot listen for STOMP on {listener.host}:{listener.port} ({exc.strerror}); another "
                f"broker (RabbitMQ's STOMP plugin?) may hold it: set {listener.setting} or {env}"
            ) from exc
        self._servers.append(server)
        port = int(server.sockets[0].getsockname()[1])
        log.info("STOMP broker listening on %s:%d%s", listener.host, port, " (TLS)" if listener.ssl else "")
        return port

    async def stop(self, timeout_s: float = 5.0) -> None:
        """Stop accepting, let pending output (receipts included) drain, close all."""
        for server in self._servers:
            server.close()
        deadline = self.core.loop.time() + timeout_s
        while any(s.pending_bytes() for s in self.core.sessions) and self.core.loop.time() < deadline:
            await asyncio.sleep(0.05)
        for session in list(self.core.sessions):
            session.close()
        # close() flushes first; a peer that stopped reading never lets it finish.
        while self._live and self.core.loop.time() < deadline + 1:
            await asyncio.sleep(0.01)
        for protocol in list(self._live):
            protocol.transport.abort()
        while self._live:
            await asyncio.sleep(0)
        for server in self._servers:
            await server.wait_closed()
