"""The bus client every facewatch part uses: publish, subscribe, request/reply.

Built on stomp.py and limited to what RabbitMQ's STOMP plugin also does, so
the same code talks to the embedded broker or to RabbitMQ
(``broker.url: stomp://user:pass@rabbit:61613``, or ``stomps://...:61614`` over
TLS). Reconnects with exponential backoff and restores its subscriptions;
requests carry a correlation id and wait on a private ``/temp-queue/`` with a
timeout.
"""

from __future__ import annotations

import asyncio
import json
import logging
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import unquote, urlsplit

import stomp
from stomp.exception import StompException

__all__ = ("BusMessage", "BusError", "BusTimeout", "BrokerAddress", "BusClient", "Reply")

log = logging.getLogger(__name__)


class BusError(Exception):
    """The broker refused something or could not be reached."""


class BusTimeout(BusError):
    """No reply (or no connection) within the time allowed."""


# URL scheme -> (TLS, default port): RabbitMQ's STOMP listeners are 61613 plain and 61614 TLS.
_SCHEMES = {"stomp": (False, 61613), "stomps": (True, 61614), "stomp+ssl": (True, 61614)}


@dataclass(slots=True, frozen=True)
class BrokerAddress:
    host: str
    port: int
    login: str
    passcode: str
    vhost: str = "/"
    tls: bool = False
    ca_file: str | None = None  # PEM bundle that verifies the broker's certificate; None: the system's CAs

    @classmethod
    def parse(cls, url: str, *, ca_file: str | None = None) -> "BrokerAddress":
        """``stomp://login:passcode@host:port[/vhost]``; ``stomps://`` (or ``stomp+ssl://``) for TLS."""
        parts = urlsplit(url)
        if parts.scheme not in _SCHEMES or not parts.hostname:
            raise ValueError(f"broker url must look like stomp://login:passcode@host:61613 "
                             f"(stomps:// for TLS), got {url!r}")
        tls, default_port = _SCHEMES[parts.scheme]
        vhost = unquote(parts.path[1:]) if len(parts.path) > 1 else "/"
        return cls(parts.hostname, parts.port or default_port, unquote(parts.username or ""),
                   unquote(parts.password or ""), vhost, tls, ca_file if tls else None)


@dataclass(slots=True, frozen=True)
class BusMessage:
    destination: str
    headers: dict[str, str]
    body: bytes
    subscription: str
    ack_id: str | None
    connection: int = 0  # which of the client's connections delivered it: only that one can ACK it

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(slots=True, frozen=True)
class Reply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(slots=True)
class _Sub:
    destination: str
    callback: Callable[[BusMessage], object]
    ack: str
    headers: dict[str, str] = field(default_factory=dict)
    # The receipt id while ``subscribe(receipt=True)`` waits for the broker's
    # RECEIPT: every SUBSCRIBE of it (a resubscription too) asks for that receipt.
    receipt: str | None = None

    def subscribe_headers(self) -> dict[str, str]:
        headers = dict(self.headers)
        if self.receipt is not None:
            headers["receipt"] = self.receipt
        return headers


def _encode_body(body: bytes | str | Any) -> tuple[bytes, str | None]:
    if isinstance(body, bytes):
        return body, None
    if isinstance(body, str):
        return body.encode("utf-8"), "text/plain;charset=utf-8"
    return json.dumps(body, separators=(",", ":")).encode("utf-8"), "application/json"


class BusClient:
    def __init__(
        self,
        address: BrokerAddress,
        *,
        heartbeats_ms: tuple[int, int] = (10_000, 10_000),
        reconnect_initial_s: float = 0.2,
        reconnect_max_s: float = 10.0,
        client_name: str = "facewatch",
    ) -> None:
        self.address = address
        self.heartbeats_ms = heartbeats_ms
        self.reconnect_initial_s = reconnect_initial_s
        self.reconnect_max_s = reconnect_max_s
        self._connections = 0
        self._conn = self._new_connection()
        self._subs: dict[str, _Sub] = {}
        self._sub_ids = 0
        self._pending: dict[str, tuple[threading.Event, list[BusMessage]]] = {}
        # subscribe(receipt=True) waiting: receipt id -> (confirmed, the ERROR that answered it instead)
        self._sub_receipts: dict[str, tuple[threading.Event, list[str]]] = {}
        self._reply_queue = f"/temp-queue/{client_name}.{uuid.uuid4().hex[:12]}"
        self._lock = threading.RLock()
        self._closing = False
        self._connected = threading.Event()
        self._gone = threading.Event()  # the connection closed (set by its receiver thread)
        self._established = False  # reconnect only what once connected
        self.reconnects = 0
        self.last_error: str | None = None

    # -- connection ---------------------------------------------------------
    def _new_connection(self) -> stomp.Connection:
        host_and_port = (self.address.host, self.address.port)
        conn = stomp.Connection(
            [host_and_port], heartbeats=self.heartbeats_ms, vhost=self.address.vhost,
            auto_decode=False, reconnect_attempts_max=1, heart_beat_receive_scale=2.0,
        )
        if self.address.tls:
            # stomp.py's default is a PROTOCOL_TLS_CLIENT context: certificate and host name verified,
            # TLS 1.2 at least; ca_certs replaces the system's CAs when given.
            conn.set_ssl(for_hosts=[host_and_port], ca_certs=self.address.ca_file)
        self._connections += 1
        conn.set_listener("facewatch", _Listener(self, self._connections))
        return conn

    def connect(self, timeout_s: float = 10.0) -> None:
        deadline = time.monotonic() + timeout_s
        delay = self.reconnect_initial_s
        while True:
            try:
                self._connect_once()
                return
            except BusError as exc:
                if "access refused" in str(exc).lower() or time.monotonic() + delay > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, self.reconnect_max_s)

    def _connect_once(self) -> None:
        self._connected.clear()
        self._gone.clear()
        self.last_error = None
        try:
            self._conn.connect(self.address.login, self.address.passcode, wait=True,
                               headers={"client-id": self._reply_queue.rsplit("/", 1)[-1]})
        except (StompException, OSError) as exc:
            self._conn = self._new_connection()
            raise BusError(self.last_error
                           or f"cannot connect to {self.address.host}:{self.address.port}: {exc!r}") from exc
        if not self._conn.is_connected():
            raise BusError(self.last_error or "connection refused by the broker")
        with self._lock:
            for sub_id, sub in self._subs.items():
                self._conn.subscribe(sub.destination, id=sub_id, ack=sub.ack, headers=sub.subscribe_headers())
        self._established = True
        self._connected.set()

    def _on_disconnected(self) -> None:
        was_connected = self._connected.is_set()
        self._connected.clear()
        self._gone.set()
        # A refused first CONNECT also ends in a disconnect: connect() reports
        # that one; only a connection that was up gets the reconnect loop.
        if self._closing or not self._established or not was_connected:
            return
        threading.Thread(target=self._reconnect_loop, name="bus-reconnect", daemon=True).start()

    def _reconnect_loop(self) -> None:
        delay = self.reconnect_initial_s
        while not self._closing:
            time.sleep(delay)
            if self._closing:
                return
            try:
                self._conn = self._new_connection()
                self._connect_once()
                self.reconnects += 1
                log.info("bus reconnected to %s:%d", self.address.host, self.address.port)
                return
            except BusError as exc:
                log.warning("bus reconnect failed (%s); next try in %.1fs", exc, min(delay * 2, self.reconnect_max_s))
                delay = min(delay * 2, self.reconnect_max_s)

    def reconnect(self) -> None:
        """Drop the connection: the client connects again and subscribes again, as after a broken one.
        For a process that was paused (or starved) past the heart-beats: RabbitMQ's STOMP plugin keeps such
        a connection open but delivers nothing more to its client-ack subscriptions, and the messages it
        holds unacknowledged there go back to their queue only when the connection closes."""
        if not self._connected.is_set():
            return
        try:
            self._conn.transport.disconnect_socket()
        except (StompException, OSError) as exc:
            log.debug("dropping the connection: %r", exc)

    def wait_connected(self, timeout_s: float) -> bool:
        return self._connected.wait(timeout_s)

    def close(self, wait_s: float = 0.0) -> None:
        """Disconnect. ``wait_s``: wait that long for the broker's receipt of the DISCONNECT, which says
        it has processed every frame sent before (the ACKs of a consumer among them)."""
        self._closing = True
        try:
            if self._conn.is_connected():
                self._conn.disconnect(receipt=str(uuid.uuid4()))
            else:
                return
        except (StompException, OSError):
            return
        if wait_s > 0 and not self._gone.wait(wait_s):
            log.warning("no receipt for DISCONNECT within %.1fs", wait_s)

    # -- messaging ----------------------------------------------------------
    def publish(self, destination: str, body: bytes | str | Any, headers: dict[str, str] | None = None,
                *, receipt: bool = False, timeout_s: float = 10.0) -> None:
        data, content_type = _encode_body(body)
        hdrs = dict(headers or {})
        if content_type and "content-type" not in hdrs:
            hdrs["content-type"] = content_type
        if not self._connected.wait(timeout_s):
            raise BusTimeout(f"not connected to the broker within {timeout_s}s")
        try:
            if receipt:
                done = threading.Event()
                rid = uuid.uuid4().hex
                self._pending[rid] = (done, [])
                hdrs["receipt"] = rid
                self._conn.send(destination, data, headers=hdrs)
                if not done.wait(timeout_s):
                    raise BusTimeout(f"no receipt for SEND to {destination} within {timeout_s}s")
                self._pending.pop(rid, None)
            else:
                self._conn.send(destination, data, headers=hdrs)
        except (StompException, OSError) as exc:
            raise BusError(f"publish to {destination} failed: {exc!r}") from exc

    def subscribe(self, destination: str, callback: Callable[[BusMessage], object], *, ack: str = "auto",
                  headers: dict[str, str] | None = None, receipt: bool = False, timeout_s: float = 10.0) -> str:
        """Subscribe; ``callback`` runs on the client's receiver thread. Returns the id.

        With ``receipt=True``, returns only once the broker has confirmed the
        SUBSCRIBE with a RECEIPT, so whatever is published after the return
        reaches ``callback``. Sent before the client is connected (or lost with
        a connection), the SUBSCRIBE asks for the receipt again when the client
        (re)connects. Without a receipt within ``timeout_s`` (or on an ERROR
        that answers it) the subscription is dropped and ``BusTimeout`` (or
        ``BusError``) is raised.
        """
        done: threading.Event | None = None
        with self._lock:
            self._sub_ids += 1
            sub_id = f"s{self._sub_ids}"
            sub = self._subs[sub_id] = _Sub(destination, callback, ack, dict(headers or {}))
            errors: list[str] = []
            if receipt:
                done = threading.Event()
                sub.receipt = uuid.uuid4().hex
                self._sub_receipts[sub.receipt] = (done, errors)
            if self._connected.is_set():
                try:
                    self._conn.subscribe(destination, id=sub_id, ack=ack, headers=sub.subscribe_headers())
                except (StompException, OSError) as exc:
                    if sub.receipt is None:
                        raise
                    # Lost with the connection: the reconnect sends it again.
                    log.debug("SUBSCRIBE to %s not sent (%r); waiting for the reconnect", destination, exc)
        if done is None or sub.receipt is None:
            return sub_id
        rid = sub.receipt
        confirmed = done.wait(timeout_s)
        with self._lock:
            self._sub_receipts.pop(rid, None)
            sub.receipt = None
        if confirmed and not errors:
            return sub_id
        try:
            self.unsubscribe(sub_id)
        except (StompException, OSError):
            self._subs.pop(sub_id, None)  # gone with the connection, not restored by a reconnect
        if errors:
            raise BusError(f"SUBSCRIBE to {destination} refused: {errors[0]}")
        raise BusTimeout(f"no receipt for SUBSCRIBE to {destination} within {timeout_s}s")

    def unsubscribe(self, sub_id: str) -> None:
        with self._lock:
            if self._subs.pop(sub_id, None) is not None and self._connected.is_set():
                self._conn.unsubscribe(sub_id)

    def ack(self, message: BusMessage) -> bool:
        """Acknowledge on the connection that delivered it; False when that one is gone (the
        broker gives the message to a consumer again: brokers refuse an ACK from another)."""
        return self._settle(message, "ack")

    def nack(self, message: BusMessage) -> bool:
        return self._settle(message, "nack")

    def _settle(self, message: BusMessage, how: str) -> bool:
        with self._lock:
            if not message.ack_id or message.connection != self._connections or not self._connected.is_set():
                return False
            try:
                getattr(self._conn, how)(message.ack_id, message.subscription)
            except (StompException, OSError) as exc:
                log.debug("%s of a message not sent: %r", how.upper(), exc)
                return False
        return True

    async def messages(self, destination: str, *, max_queued: int = 1000) -> AsyncIterator[BusMessage]:
        """Async iterator over a subscription; drops the oldest beyond ``max_queued``."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[BusMessage] = asyncio.Queue(max_queued)

        def put(message: BusMessage) -> None:
            if queue.full():
                queue.get_nowait()
            queue.put_nowait(message)

        sub_id = self.subscribe(destination, lambda m: loop.call_soon_threadsafe(put, m))
        try:
            while True:
                yield await queue.get()
        finally:
            self.unsubscribe(sub_id)

    def request(self, destination: str, body: bytes | str | Any, headers: dict[str, str] | None = None,
                *, timeout_s: float = 10.0) -> Reply:
        """Send a request and wait for the reply with the same correlation id."""
        correlation = uuid.uuid4().hex
        done = threading.Event()
        box: list[BusMessage] = []
        self._pending[correlation] = (done, box)
        try:
            hdrs = dict(headers or {})
            hdrs.update({"reply-to": self._reply_queue, "correlation-id": correlation})
            self.publish(destination, body, hdrs, timeout_s=timeout_s)
            if not done.wait(timeout_s):
                raise BusTimeout(f"no reply from {destination} within {timeout_s}s")
        finally:
            self._pending.pop(correlation, None)
        message = box[0]
        try:
            status = int(message.headers.get("status", "200"))
        except ValueError:
            status = 502
        return Reply(status, message.headers, message.body)

    def reply(self, request: BusMessage, body: bytes | str | Any, *, status: int = 200,
              headers: dict[str, str] | None = None) -> None:
        """Answer ``request`` on its reply-to destination, echoing its correlation id."""
        reply_to = request.headers.get("reply-to")
        if not reply_to:
            raise BusError("request has no reply-to header")
        hdrs = dict(headers or {})
        hdrs["status"] = str(status)
        if "correlation-id" in request.headers:
            hdrs["correlation-id"] = request.headers["correlation-id"]
        self.publish(reply_to, body, hdrs)

    def reply_and_ack(self, request: BusMessage, body: bytes | str | Any, *, status: int = 200,
                      headers: dict[str, str] | None = None) -> bool:
        """Answer ``request`` and acknowledge it in one transaction (BEGIN, SEND, ACK, COMMIT): the broker
        routes the reply and takes the request off its queue together, or (this process dies before the
        COMMIT reaches it) does neither, and gives the request to another consumer. So a request is never
        answered twice, nor lost. False, with nothing sent, when the connection that delivered the
        request is gone: the broker has given it back to the queue already."""
        reply_to = request.headers.get("reply-to")
        if not reply_to:
            raise BusError("request has no reply-to header")
        data, content_type = _encode_body(body)
        hdrs = dict(headers or {})
        if content_type and "content-type" not in hdrs:
            hdrs["content-type"] = content_type
        hdrs["status"] = str(status)
        if "correlation-id" in request.headers:
            hdrs["correlation-id"] = request.headers["correlation-id"]
        with self._lock:
            if not request.ack_id or request.connection != self._connections or not self._connected.is_set():
                return False
            tx = uuid.uuid4().hex
            try:
                self._conn.begin(tx)
                self._conn.send(reply_to, data, headers={**hdrs, "transaction": tx})
                self._conn.ack(request.ack_id, request.subscription, transaction=tx)
                self._conn.commit(tx)
            except (StompException, OSError) as exc:
                # The connection broke: the broker aborts the open transaction and requeues the request.
                raise BusError(f"reply to {reply_to} failed: {exc!r}") from exc
        return True

    # -- from the listener ----------------------------------------------------
    def _dispatch(self, frame: Any, connection: int = 0) -> None:
        headers = dict(frame.headers)
        sub_id = headers.get("subscription", "")
        message = BusMessage(headers.get("destination", ""), headers, frame.body or b"", sub_id,
                             headers.get("ack") or headers.get("message-id"), connection)
        correlation = headers.get("correlation-id")
        if correlation and correlation in self._pending and sub_id == self._reply_queue:
            event, box = self._pending[correlation]
            box.append(message)
            event.set()
            return
        sub = self._subs.get(sub_id)
        if sub is None:
            return
        try:
            sub.callback(message)
        except Exception:  # a subscriber's bug must not kill the receiver thread
            log.exception("bus subscriber callback for %s failed", sub.destination)

    def _receipt(self, receipt_id: str) -> None:
        pending = self._pending.get(receipt_id)
        if pending is not None:
            pending[0].set()
        waiting = self._sub_receipts.get(receipt_id)
        if waiting is not None:
            waiting[0].set()

    def _receipt_error(self, receipt_id: str, error: str) -> None:
        """An ERROR answered the SUBSCRIBE that asked for ``receipt_id``."""
        waiting = self._sub_receipts.get(receipt_id)
        if waiting is not None:
            waiting[1].append(error)
            waiting[0].set()


class _Listener(stomp.ConnectionListener):  # type: ignore[misc]  # stomp.py is untyped
    def __init__(self, client: BusClient, connection: int) -> None:
        self.client = client
        self.connection = connection

    def on_message(self, frame: Any) -> None:
        self.client._dispatch(frame, self.connection)

    def on_receipt(self, frame: Any) -> None:
        self.client._receipt(frame.headers.get("receipt-id", ""))

    def on_error(self, frame: Any) -> None:
        message = frame.headers.get("message", "")
        body = frame.body.decode("utf-8", "replace") if isinstance(frame.body, bytes) else str(frame.body)
        self.client.last_error = f"{message}: {body}".strip(": ")
        log.warning("broker error: %s", self.client.last_error)
        if frame.headers.get("receipt-id"):
            self.client._receipt_error(frame.headers["receipt-id"], self.client.last_error)

    def on_disconnected(self) -> None:
        self.client._on_disconnected()
