"""One STOMP connection's protocol state, independent of the transport.

A transport (TCP or WebSocket) feeds received bytes to ``data_received`` and
gives the session a ``Transport`` to write to. Frames are handled in arrival
order; protocol errors answer ERROR and close this connection only.
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from dataclasses import dataclass, field
from typing import Protocol

from .auth import BrokerPrincipal, Credentials
from .core import BrokerCore, MessageQueue, Subscription
from .destinations import parse_destination
from .frames import VERSIONS, Frame, ProtocolError, ascii_int, encode_frame
from .parser import FrameParser, ParserLimits

__all__ = ("Transport", "StompSession")

log = logging.getLogger(__name__)


class Transport(Protocol):
    def write(self, data: bytes) -> None: ...
    def buffered_bytes(self) -> int: ...
    def pause_reading(self) -> None: ...
    def resume_reading(self) -> None: ...
    def close(self) -> None: ...
    @property
    def peer(self) -> str: ...


@dataclass(slots=True)
class _Transaction:
    frames: list[Frame] = field(default_factory=list)
    bytes: int = 0  # of the frames' bodies


class StompSession:
    """One connection; a ``core.Connection`` (and so a ``core.Subscriber``)."""

    def __init__(self, core: BrokerCore, transport: Transport) -> None:
        self.core = core
        self.transport = transport
        self.id = secrets.token_hex(6)
        self.limits = core.limits
        self.parser = FrameParser(
            ParserLimits(core.limits.max_frame_bytes, core.limits.max_headers, core.limits.max_header_line_bytes)
        )
        self.version = "1.2"  # until CONNECT says otherwise; ERRORs before it use 1.2 framing
        self.principal: BrokerPrincipal | None = None
        self.subscriptions: dict[str, Subscription] = {}
        self.temp_queues: dict[str, tuple[str, MessageQueue]] = {}  # name -> (token, queue)
        self.transactions: dict[str, _Transaction] = {}
        self.closed = False
        self.last_received = time.monotonic()
        self.last_sent = time.monotonic()
        self.send_interval_s = 0.0  # our heart-beats to the client
        self.receive_interval_s = 0.0  # the client's, enforced
        self._timer: asyncio.TimerHandle | None = None
        self._connect_deadline = core.loop.call_later(core.limits.connect_timeout_s, self._connect_timeout)
        self.delivered = 0

    # -- output -----------------------------------------------------------
    @property
    def writable(self) -> bool:
        return not self.closed and self.transport.buffered_bytes() < self.limits.session_high_water_bytes

    def pending_bytes(self) -> int:
        return self.transport.buffered_bytes()

    def pause_reading(self) -> None:
        self.transport.pause_reading()

    def resume_reading(self) -> None:
        # Heart-beats could not be read while paused: the wait does not count against the client.
        self.last_received = time.monotonic()
        self.transport.resume_reading()

    def send_raw(self, data: bytes) -> None:
        if self.closed:
            return
        self.transport.write(data)
        self.last_sent = time.monotonic()
        self.delivered += 1

    def send_frame(self, frame: Frame) -> None:
        self.send_raw(encode_frame(frame, self.version))

    def on_writable(self) -> None:
        """The transport drained below its high-water mark: deliver what waits."""
        for sub in list(self.subscriptions.values()):
            sub.queue.dispatch()
        for _, queue in self.temp_queues.values():
            queue.dispatch()

    # -- input ------------------------------------------------------------
    def data_received(self, data: bytes) -> None:
        if self.closed:
            return
        self.last_received = time.monotonic()
        while True:
            error: ProtocolError | None = None
            try:
                frames = self.parser.feed(data)
            except ProtocolError as exc:
                frames, error = self.parser_frames_before_error(), exc
            data = b""
            for frame in frames:
                try:
                    self._handle(frame)
                except ProtocolError as exc:
                    self.fail(exc.message, exc.detail, frame.get("receipt"))
                except Exception:  # a bug must cost this connection an ERROR, never leave state half-made
                    log.exception("stomp %s %s: %s frame failed", self.id, self.transport.peer, frame.command)
                    self.fail("internal error", "the broker could not handle this frame", frame.get("receipt"))
                if self.closed:
                    return
            if error is not None:
                self.fail(error.message, error.detail)
                return
            # The parser stops after a CONNECT: what came in the same read is parsed by its version.
            if not frames or frames[-1].command not in ("CONNECT", "STOMP"):
                return

    def parser_frames_before_error(self) -> list[Frame]:
        # FrameParser.feed raises before returning the frames it had completed;
        # they were complete and valid, so they are handled before the ERROR.
        return self.parser.completed_before_error

    def fail(self, message: str, detail: str = "", receipt: str | None = None) -> None:
        """Send ERROR (with ``message``) and close: the spec's answer to any error."""
        if self.closed:
            return
        headers = {"message": message, "content-type": "text/plain"}
        if receipt:
            headers["receipt-id"] = receipt
        log.info("stomp %s %s: ERROR %s %s", self.id, self.transport.peer, message, detail)
        self.send_frame(Frame("ERROR", headers, detail.encode("utf-8")))
        self.close()

    def close(self) -> None:
        if self.closed:
            return
        self.closed = True
        self._connect_deadline.cancel()
        if self._timer is not None:
            self._timer.cancel()
        self.core.session_closed(self)
        for sub in list(self.subscriptions.values()):
            self._remove_subscription(sub)
        for token, queue in self.temp_queues.values():
            self.core.router.reply_queues.pop(token, None)
            queue.consumers.clear()
            queue.clear()
        self.temp_queues.clear()
        self.transactions.clear()
        self.transport.close()

    def connection_lost(self) -> None:
        self.close()

    # -- frames -----------------------------------------------------------
    def _handle(self, frame: Frame) -> None:
        if self.principal is None:
            if frame.command not in ("CONNECT", "STOMP"):
                raise ProtocolError("not connected", f"{frame.command} before CONNECT")
            self._connect(frame)
            return
        handler = {
            "SEND": self._send,
            "SUBSCRIBE": self._subscribe,
            "UNSUBSCRIBE": self._unsubscribe,
            "ACK": self._ack,
            "NACK": self._nack,
            "BEGIN": self._begin,
            "COMMIT": self._commit,
            "ABORT": self._abort,
            "DISCONNECT": self._disconnect,
        }.get(frame.command)
        if handler is None:
            raise ProtocolError("already connected", f"{frame.command} after CONNECT")
        transaction = frame.get("transaction")
        if transaction is not None and frame.command in ("SEND", "ACK", "NACK"):
            tx = self.transactions.get(transaction)
            if tx is None:
                raise ProtocolError("unknown transaction", transaction)
            if len(tx.frames) >= self.limits.max_transaction_frames:
                raise ProtocolError("transaction too large", f"limit {self.limits.max_transaction_frames} frames")
            tx.bytes += len(frame.body)
            if tx.bytes > self.limits.max_transaction_bytes:
                raise ProtocolError("transaction too large", f"limit {self.limits.max_transaction_bytes} bytes")
            self._check(frame)  # refuse bad frames now, not at COMMIT
            tx.frames.append(frame)  # its RECEIPT comes when COMMIT routes it (clients read it as "routed")
            return
        handler(frame)
        if frame.command != "DISCONNECT":
            self._receipt(frame)

    def _receipt(self, frame: Frame) -> None:
        receipt = frame.get("receipt")
        if receipt is not None:
            self.send_frame(Frame("RECEIPT", {"receipt-id": receipt}))

    def _connect(self, frame: Frame) -> None:
        accepted = [v.strip() for v in (frame.get("accept-version") or "1.0").split(",")]
        common = [v for v in VERSIONS if v in accepted]
        if not common:
            self.version = "1.2"
            headers = {"message": "unsupported protocol version", "version": ",".join(VERSIONS),
                       "content-type": "text/plain"}
            self.send_frame(Frame("ERROR", headers, f"Supported protocol versions are {' '.join(VERSIONS)}".encode()))
            self.close()
            return
        self.version = common[-1]
        self.parser.version = self.version
        try:
            principal = self.core.authenticator.authenticate(
                Credentials(frame.get("login"), frame.get("passcode"), frame.get("authorization"))
            )
        except Exception:  # credentials no authenticator could read are no credentials
            log.exception("stomp %s %s: authenticating failed", self.id, self.transport.peer)
            principal = None
        if principal is None:
            raise ProtocolError("access refused", "bad credentials")
        if not self.core.admit(self, principal):
            raise ProtocolError("too many connections", f"limit {self.limits.max_connections_per_login} per login")
        self.principal = principal
        self._connect_deadline.cancel()
        headers = {"version": self.version, "server": "facewatch-broker/0.1", "session": self.id}
        if self.version != "1.0":
            cx, cy = _parse_heartbeat(frame.get("heart-beat"))
            sx, sy = self.limits.heartbeat_send_ms, self.limits.heartbeat_receive_ms
            send_ms = max(sx, cy) if sx and cy else 0
            receive_ms = max(cx, sy) if cx and sy else 0
            self.send_interval_s, self.receive_interval_s = send_ms / 1000, receive_ms / 1000
            headers["heart-beat"] = f"{sx},{sy}"
            self._schedule_heartbeat()
        self.send_frame(Frame("CONNECTED", headers))

    def _check(self, frame: Frame) -> None:
        """Validate a SEND/ACK/NACK without acting on it."""
        if frame.command == "SEND":
            self._send_target(frame)
        else:
            self._ack_target(frame)

    def _connected_principal(self) -> BrokerPrincipal:
        if self.principal is None:  # _handle only dispatches here after CONNECT
            raise ProtocolError("not connected")
        return self.principal

    def _send_target(self, frame: Frame) -> tuple[str, str]:
        dest = parse_destination(frame.get("destination"))
        principal = self._connected_principal()
        if not principal.may_send:
            raise ProtocolError("access refused", "this credential may not SEND (it may only SUBSCRIBE)")
        if dest.kind == "reply-queue":
            return dest.kind, dest.name  # the token is the permission
        if dest.kind == "temp-queue":
            return dest.kind, dest.name
        if not principal.may_write(dest.text):
            raise ProtocolError("access refused", f"no write permission for {dest.text}")
        return dest.kind, dest.name

    def _send(self, frame: Frame) -> None:
        kind, name = self._send_target(frame)
        headers = dict(frame.headers)
        reply_to = headers.get("reply-to")
        if reply_to is not None and reply_to.startswith("/temp-queue/"):
            headers["reply-to"] = "/reply-queue/" + self._temp_queue(parse_destination(reply_to).name)[0]
        router = self.core.router
        principal = self._connected_principal()
        message = router.new_message(frame.headers["destination"], headers, frame.body, principal.name)
        if kind == "topic":
            router.publish_topic(name, message)
        elif kind == "queue":
            router.publish_queue(name, message, principal)
        elif kind == "temp-queue":
            self._temp_queue(name)[1].put(message)
        elif not router.publish_reply(name, message):
            log.debug("stomp %s: reply to a closed reply queue %s dropped", self.id, name)
        self.core.after_send(self, principal)

    def _temp_queue(self, name: str) -> tuple[str, MessageQueue]:
        found = self.temp_queues.get(name)
        if found is None:
            if len(self.temp_queues) >= self.limits.max_temp_queues_per_connection:
                raise ProtocolError("too many temporary queues",
                                    f"limit {self.limits.max_temp_queues_per_connection} per connection")
            token = secrets.token_urlsafe(18).replace("-", "_")
            queue = self.core.router.private_queue(f"/temp-queue/{name}", self, reader=self._reader())
            # Replies arrive as if the client had subscribed with id /temp-queue/<name>.
            queue.consumers.append(Subscription(self, f"/temp-queue/{name}", f"/temp-queue/{name}", "auto", queue, 0))
            self.core.router.reply_queues[token] = queue
            found = self.temp_queues[name] = (token, queue)
        return found

    def _reader(self) -> str | None:
        """This connection's login as its private queues' reader: bounded unless trusted (core.Backlog)."""
        principal = self._connected_principal()
        return None if principal.trusted else principal.name

    def _subscribe(self, frame: Frame) -> None:
        principal = self._connected_principal()
        text = frame.get("destination")
        dest = parse_destination(text, pattern_allowed=True)
        sub_id = frame.get("id")
        if sub_id is None:
            if self.version != "1.0":
                raise ProtocolError("missing id header", "SUBSCRIBE needs an id")
            sub_id = dest.text
        if sub_id in self.subscriptions:
            raise ProtocolError("duplicate subscription id", sub_id)
        if len(self.subscriptions) >= self.limits.max_subscriptions_per_connection:
            raise ProtocolError("too many subscriptions", f"limit {self.limits.max_subscriptions_per_connection}")
        ack = frame.get("ack", "auto")
        if ack not in ("auto", "client", "client-individual"):
            raise ProtocolError("invalid ack mode", ack or "")
        prefetch = ascii_int(frame.get("prefetch-count", "0") or "0")
        if prefetch is None:
            raise ProtocolError("invalid prefetch-count", (frame.get("prefetch-count") or "")[:64])
        router = self.core.router
        if dest.kind in ("temp-queue", "reply-queue"):
            raise ProtocolError("cannot subscribe to a temporary queue", "replies arrive without a SUBSCRIBE")
        if not principal.may_read(dest.text):
            raise ProtocolError("access refused", f"no read permission for {dest.text}")
        if dest.kind == "topic":
            # Delivers only what its reader may see: a tenant's queue skips messages marked as another
            # tenant's (core.TENANT_HEADER).
            queue = router.private_queue(f"{dest.text} ({self.id}/{sub_id})", self, reader_tenant=principal.tenant,
                                         reader=self._reader())
        else:
            queue = router.queue(dest.name, principal)
        sub = Subscription(self, sub_id, dest.text, ack, queue, prefetch)
        self.subscriptions[sub_id] = sub
        queue.consumers.append(sub)
        if dest.kind == "topic":
            # Bound last: a binding exists only for a subscription that close() will find and remove.
            router.bind(dest.name, queue)
        queue.dispatch()

    def _remove_subscription(self, sub: Subscription) -> None:
        self.subscriptions.pop(sub.id, None)
        queue = sub.queue
        if sub in queue.consumers:
            queue.consumers.remove(sub)
        if queue.exclusive_owner is self:
            self.core.router.unbind(queue)
            queue.clear()
            sub.drop_unacked()
        elif sub.unacked:
            self.core.router.requeue(sub, sub.unacked.values())
            sub.unacked.clear()

    def _unsubscribe(self, frame: Frame) -> None:
        sub_id = frame.get("id") or (frame.get("destination") if self.version == "1.0" else None)
        if sub_id is None:
            raise ProtocolError("missing id header", "UNSUBSCRIBE needs an id")
        sub = self.subscriptions.get(sub_id)
        if sub is None:
            raise ProtocolError("unknown subscription", sub_id)
        self._remove_subscription(sub)

    def _ack_target(self, frame: Frame) -> tuple[Subscription, str]:
        if self.version == "1.2":
            ack_id = frame.get("id")
        else:
            ack_id = frame.get("message-id")
        if not ack_id:
            raise ProtocolError("missing ack id",
                                f"{frame.command} needs {'id' if self.version == '1.2' else 'message-id'}")
        sub_id = frame.get("subscription")
        candidates = [self.subscriptions[sub_id]] if sub_id in self.subscriptions else list(self.subscriptions.values())
        for sub in candidates:
            if ack_id in sub.unacked:
                return sub, ack_id
        raise ProtocolError("unknown message to acknowledge", ack_id)

    def _ack(self, frame: Frame) -> None:
        sub, ack_id = self._ack_target(frame)
        for message in sub.take_acked(ack_id) or []:
            sub.queue.settle(message)
        sub.queue.dispatch()  # prefetch room opened

    def _nack(self, frame: Frame) -> None:
        sub, ack_id = self._ack_target(frame)
        messages = sub.take_acked(ack_id) or []
        self.core.router.requeue(sub, messages)

    def _begin(self, frame: Frame) -> None:
        name = frame.get("transaction")
        if not name:
            raise ProtocolError("missing transaction header")
        if name in self.transactions:
            raise ProtocolError("transaction already started", name)
        if len(self.transactions) >= self.limits.max_open_transactions:
            raise ProtocolError("too many transactions", f"limit {self.limits.max_open_transactions}")
        self.transactions[name] = _Transaction()

    def _end_transaction(self, frame: Frame) -> _Transaction:
        name = frame.get("transaction")
        if not name or name not in self.transactions:
            raise ProtocolError("unknown transaction", name or "")
        return self.transactions.pop(name)

    def _commit(self, frame: Frame) -> None:
        for queued in self._end_transaction(frame).frames:
            {"SEND": self._send, "ACK": self._ack, "NACK": self._nack}[queued.command](queued)
            self._receipt(queued)

    def _abort(self, frame: Frame) -> None:
        for dropped in self._end_transaction(frame).frames:
            self._receipt(dropped)  # handled (discarded): no client waits for ever

    def _disconnect(self, frame: Frame) -> None:
        self._receipt(frame)
        self.close()

    # -- heart-beats ------------------------------------------------------
    def _schedule_heartbeat(self) -> None:
        intervals = [i for i in (self.send_interval_s, self.receive_interval_s) if i > 0]
        if intervals and not self.closed:
            self._timer = self.core.loop.call_later(min(intervals) / 2, self._heartbeat_tick)

    def _heartbeat_tick(self) -> None:
        now = time.monotonic()
        if self.receive_interval_s and now - self.last_received > self.receive_interval_s * self.limits.heartbeat_grace:
            log.info("stomp %s %s: no heart-beat for %.1fs, closing", self.id, self.transport.peer,
                     now - self.last_received)
            self.close()
            return
        if self.send_interval_s and now - self.last_sent >= self.send_interval_s * 0.9:
            self.transport.write(b"\n")
            self.last_sent = now
        self._schedule_heartbeat()

    def _connect_timeout(self) -> None:
        if self.principal is None and not self.closed:
            self.fail("connect timeout", f"no CONNECT within {self.limits.connect_timeout_s}s")


def _parse_heartbeat(text: str | None) -> tuple[int, int]:
    if not text:
        return 0, 0
    parts = [ascii_int(p.strip()) for p in text.split(",")]
    if len(parts) != 2 or parts[0] is None or parts[1] is None:
        raise ProtocolError("invalid heart-beat header", text[:64])
    return parts[0], parts[1]
