"""MQTT for the tests: the machine's Mosquitto, a subscriber (paho, in its own thread) and a TCP proxy
that can take the broker away from a client (as asyncpg's tests put a proxy before Postgres)."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion
import pytest

from tests.waiting import eventually

__all__ = ("MOSQUITTO", "require_mosquitto", "Received", "Subscriber", "TcpProxy")

MOSQUITTO = ("127.0.0.1", 1883)


def _port_open(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(1)
        return s.connect_ex((host, port)) == 0


def require_mosquitto() -> tuple[str, int]:
    """The machine's Mosquitto on 127.0.0.1:1883, started with its system config if it is not running."""
    if not _port_open(*MOSQUITTO) and shutil.which("mosquitto") and os.path.exists("/etc/mosquitto/mosquitto.conf"):
        subprocess.run(["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"], capture_output=True, timeout=30)
        try:
            eventually(lambda: _port_open(*MOSQUITTO), timeout_s=15, interval_s=0.1, what="Mosquitto's port 1883")
        except AssertionError:
            pass
    if not _port_open(*MOSQUITTO):
        reason = "no MQTT broker on 127.0.0.1:1883 (Debian package mosquitto; scripts/setup.sh --test starts it)"
        if os.environ.get("FWTEST_REQUIRE_MQTT") == "1":
            pytest.fail(f"{reason} (FWTEST_REQUIRE_MQTT=1 makes this a failure)")
        pytest.skip(reason)
    return MOSQUITTO


@dataclass(frozen=True, slots=True)
class Received:
    topic: str
    payload: bytes
    retain: bool

    def json(self) -> Any:
        return json.loads(self.payload)


class Subscriber:
    """A paho client subscribed to one topic filter; keeps what arrives and waits for it on a condition."""

    def __init__(self, host: str, port: int, topic: str, *, tls: ssl.SSLContext | None = None,
                 username: str | None = None, password: str | None = None, timeout_s: float = 10.0) -> None:
        self.received: list[Received] = []
        self._changed = threading.Condition()
        self._connected: int | None = None  # CONNACK's reason code
        self._subscribed = False
        self.client = paho.Client(CallbackAPIVersion.VERSION2)
        if tls is not None:
            self.client.tls_set_context(tls)
        if username is not None:
            self.client.username_pw_set(username, password)
        self.client.on_connect = self._on_connect
        self.client.on_subscribe = self._on_subscribe
        self.client.on_message = self._on_message
        self.client.connect(host, port)
        self.client.loop_start()
        self._wait("the CONNACK", lambda: self._connected is not None, timeout_s)
        assert self._connected == 0, f"refused: reason code {self._connected}"
        self.client.subscribe(topic, qos=1)
        self._wait("the SUBACK", lambda: self._subscribed, timeout_s)  # in place before anyone publishes

    def _on_connect(self, client: paho.Client, userdata: Any, flags: Any, reason: Any, properties: Any) -> None:
        with self._changed:
            self._connected = int(reason.value)
            self._changed.notify_all()

    def _on_subscribe(self, client: paho.Client, userdata: Any, mid: int, reasons: Any, properties: Any) -> None:
        with self._changed:
            self._subscribed = True
            self._changed.notify_all()

    def _on_message(self, client: paho.Client, userdata: Any, message: paho.MQTTMessage) -> None:
        with self._changed:
            self.received.append(Received(message.topic, bytes(message.payload), bool(message.retain)))
            self._changed.notify_all()

    def _wait(self, what: str, done: Callable[[], bool], timeout_s: float) -> None:
        with self._changed:
            if not self._changed.wait_for(done, timeout_s):
                raise AssertionError(f"no {what} within {timeout_s:g}s; received {self.received}")

    def wait_for(self, what: str, match: Callable[[Received], bool], timeout_s: float = 30.0,
                 count: int = 1) -> list[Received]:
        """The first ``count`` messages that ``match``, once they have arrived."""
        self._wait(what, lambda: sum(1 for r in self.received if match(r)) >= count, timeout_s)
        with self._changed:
            return [r for r in self.received if match(r)][:count]

    def on(self, topic: str) -> list[Received]:
        with self._changed:
            return [r for r in self.received if r.topic == topic]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


class TcpProxy:
    """Forwards connections to ``target`` while up; while down it closes them at once. ``cut()`` also drops
    the live ones, as a broker that went away would. Runs on the caller's event loop."""

    def __init__(self, target: tuple[str, int]) -> None:
        self.target = target
        self.up = False
        self.port = 0
        self._server: asyncio.Server | None = None
        self._live: set[asyncio.StreamWriter] = set()

    async def start(self) -> "TcpProxy":
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if not self.up:
            writer.close()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(*self.target)
        self._live |= {writer, upstream_writer}

        async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
            try:
                while data := await src.read(65536):
                    dst.write(data)
                    await dst.drain()
            except (ConnectionError, OSError):
                pass
            finally:
                dst.close()

        await asyncio.gather(pipe(reader, upstream_writer), pipe(upstream_reader, writer))
        self._live -= {writer, upstream_writer}

    def cut(self) -> None:
        """Down, and every live connection dropped without a word (no DISCONNECT: the broker sends the will)."""
        self.up = False
        for writer in list(self._live):
            writer.transport.abort()

    async def close(self) -> None:
        self.cut()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
