"""STOMP transport: requests on /queue/facewatch.api, replies to their reply-to.

Headers: ``method``, ``path`` (with an optional ``?query``), ``authorization``
or ``x-api-key``, ``content-type``, ``correlation-id``, ``reply-to``. The reply
has ``status`` and the same JSON body as REST.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
from urllib.parse import parse_qsl, urlsplit

from broker.client import BusClient, BusError, BusMessage

from .dispatch import Api, error_response
from .errors import BadParam, InternalError, PayloadTooLarge
from .idempotency import KEY_HEADER, WRITE_METHODS, fingerprint
from .request import ApiRequest, ApiResponse

__all__ = ("API_QUEUE", "REPLY_QUEUE_PREFIX", "StompApiServer", "request_from_message")

log = logging.getLogger(__name__)

API_QUEUE = "/queue/facewatch.api"
REPLY_QUEUE_PREFIX = "/reply-queue/"  # what brokers make of a request's /temp-queue/ reply-to
_PASSED = ("authorization", "x-api-key", "content-type", "idempotency-key")


def request_from_message(message: BusMessage) -> ApiRequest:
    method = message.headers.get("method", "").upper()
    target = message.headers.get("path", "")
    if not method or not target.startswith("/"):
        raise BadParam("STOMP API requests need 'method' and 'path' headers", "path")
    parts = urlsplit(target)
    headers = {k: v for k, v in message.headers.items() if k in _PASSED}
    # A STOMP request's body is JSON whatever its content-type says (clients send text/plain for strings):
    # this transport has no multipart.
    request = ApiRequest(method=method, path=parts.path, query=dict(parse_qsl(parts.query)), headers=headers,
                         body=message.body, content_type="application/json", transport="stomp")
    correlation = message.headers.get("correlation-id")
    if KEY_HEADER not in headers and method in WRITE_METHODS and correlation:
        # A redelivered request is the same message: its reply queue, correlation id and content key it,
        # so a write is applied once even when the client named no key of its own (and a client that
        # reuses a correlation id for another request gets another key).
        source = f"{message.headers.get('reply-to', '')}\n{correlation}\n{fingerprint(request)}".encode()
        request.headers[KEY_HEADER] = "stomp:" + hashlib.sha256(source).hexdigest()
    return request


class StompApiServer:
    """Consumes the API queue (competing with every other node), on a connection of its own.

    A request's reply and its acknowledgement go in one STOMP transaction: a
    node that dies with requests in hand, even between the two, leaves them
    to the broker, which gives them to another node, and no request is
    answered twice (a write among them is not applied twice either: see
    api/idempotency.py).
    The broker hands this node at most ``prefetch`` unanswered requests. To
    stop, the node takes no more, answers those in hand, and only then closes
    the connection, whereupon the broker gives what it had sent but was not
    started to the other nodes.
    """

    def __init__(self, api: Api, client: BusClient, loop: asyncio.AbstractEventLoop, max_body_bytes: int,
                 prefetch: int = 8, node: str = "", max_reply_bytes: int | None = None) -> None:
        """``client``: this server's own connection (not connected yet); ``node``: named in each reply;
        ``max_reply_bytes``: the largest reply body the broker takes in one frame (None: no limit)."""
        self.api = api
        self.client = client
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self.prefetch = prefetch
        self.node = node
        self.max_reply_bytes = max_reply_bytes
        self._sub_id: str | None = None
        self._taking = False
        self._in_hand: set[asyncio.Task[None]] = set()
        self._idle = asyncio.Event()
        self._idle.set()
        self.answered = 0

    def start(self) -> None:
        """Blocking (connects): call it off the event loop."""
        self.client.connect(30.0)
        self._taking = True
        self._sub_id = self.client.subscribe(API_QUEUE, self._on_message, ack="client-individual",
                                             headers={"prefetch-count": str(self.prefetch)}, receipt=True)

    async def stop(self, timeout_s: float) -> None:
        """Take no more requests, answer those in hand (for ``timeout_s`` at most), then disconnect."""
        self._taking = False
        if self._in_hand:
            log.info("STOMP API: answering %d request(s) in hand before stopping", len(self._in_hand))
            try:
                await asyncio.wait_for(self._idle.wait(), timeout_s)
            except TimeoutError:
                log.warning("STOMP API: %d request(s) unanswered after %.1fs; the broker gives them to another node",
                            len(self._in_hand), timeout_s)
        # Closing the connection (never UNSUBSCRIBE first: brokers refuse ACKs after it) returns the
        # requests received but not started to the queue.
        await asyncio.to_thread(self.client.close, 10.0)

    def _on_message(self, message: BusMessage) -> None:
        # Runs on the bus receiver thread: hand the work to the event loop.
        self.loop.call_soon_threadsafe(self._take, message)

    def _take(self, message: BusMessage) -> None:
        if not self._taking:
            return  # stopping: left unacknowledged, it goes back to the queue when the connection closes
        task = self.loop.create_task(self._handle(message))
        self._in_hand.add(task)
        self._idle.clear()
        task.add_done_callback(self._done)

    def _done(self, task: asyncio.Task[None]) -> None:
        self._in_hand.discard(task)
        if not self._in_hand:
            self._idle.set()
        if not task.cancelled() and task.exception() is not None:
            log.error("STOMP API request failed", exc_info=task.exception())

    async def _handle(self, message: BusMessage) -> None:
        reply_to = message.headers.get("reply-to", "")
        if not reply_to.startswith(REPLY_QUEUE_PREFIX):
            # The API replies with its own rights: to anywhere else (a topic, a camera, another queue) a
            # request could make it write JSON of the requester's choosing. A /temp-queue/ named in the
            # request arrives here as the broker's private /reply-queue/<token> (embedded and RabbitMQ).
            log.warning("STOMP API request dropped: reply-to %r is not a private reply queue (name a "
                        "/temp-queue/ in the request)", reply_to[:200])
            await asyncio.to_thread(self.client.ack, message)
            return
        try:
            # In a thread: a key made of the content hashes up to max_body_bytes.
            request = await asyncio.to_thread(request_from_message, message)
        except BadParam as exc:
            response = ApiResponse(exc.status, exc.body())
        else:
            if len(request.body) > self.max_body_bytes:
                response = ApiResponse(413, {"code": "PAYLOAD_TOO_LARGE", "reason": "body over the limit"})
            else:
                try:
                    response = await self.api.dispatch(request, client_key="stomp")
                except Exception:
                    # Answered and acknowledged all the same: a request left unacknowledged holds one of the
                    # node's `prefetch` slots for good, and a few of them stop its STOMP API for everyone.
                    log.exception("STOMP API %s %s failed", request.method, request.path[:200])
                    response = error_response(InternalError("internal error"))
        body = response.body if isinstance(response.body, (bytes, bytearray)) else json.dumps(response.body).encode()
        if self.max_reply_bytes is not None and len(body) > self.max_reply_bytes:
            # The broker would refuse the frame and drop this connection, and the request, never acknowledged,
            # would come back to do it again: every node's STOMP API down for everyone.
            response = error_response(PayloadTooLarge(
                f"the answer is {len(body)} bytes, more than one STOMP frame carries here ({self.max_reply_bytes}); "
                f"ask for it over REST"))
            body = json.dumps(response.body).encode()
        headers = {"content-type": response.content_type, **_reply_headers(response.headers)}
        if self.node:
            headers["node"] = self.node
        await asyncio.to_thread(self._reply, message, bytes(body), response.status, headers)

    def _reply(self, message: BusMessage, body: bytes, status: int, headers: dict[str, str]) -> None:
        """Reply and acknowledge together: a request is never taken off the queue unanswered, nor
        answered again by another node."""
        try:
            sent = self.client.reply_and_ack(message, body, status=status, headers=headers)
        except BusError as exc:
            # Not acknowledged either: the broker gives the request to a node again.
            log.warning("STOMP API reply not sent (%s); the request goes back to the queue", exc)
            return
        if not sent:
            log.warning("STOMP API reply not sent: the connection that delivered the request is gone (the broker "
                        "gives the request to a node again)")
            return
        self.answered += 1


def _reply_headers(headers: dict[str, str]) -> dict[str, str]:
    """Response headers a STOMP reply can carry (lower case, no framing headers of its own)."""
    reserved = {"content-type", "content-length", "destination", "status", "correlation-id", "subscription",
                "message-id", "ack", "receipt"}
    return {k.lower(): v for k, v in headers.items() if k.lower() not in reserved and "\n" not in v}
