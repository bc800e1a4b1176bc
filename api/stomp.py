"""STOMP transport: requests on /queue/facewatch.api, replies to their reply-to.

Headers: ``method``, ``path`` (with an optional ``?query``), ``authorization``
or ``x-api-key``, ``content-type``, ``correlation-id``, ``reply-to``. The reply
has ``status`` and the same JSON body as REST.
"""

from __future__ import annotations

import asyncio
import json
import logging
from urllib.parse import parse_qsl, urlsplit

from broker.client import BusClient, BusMessage

from .dispatch import Api
from .errors import BadParam
from .request import ApiRequest, ApiResponse

__all__ = ("API_QUEUE", "REPLY_QUEUE_PREFIX", "StompApiServer", "request_from_message")

log = logging.getLogger(__name__)

API_QUEUE = "/queue/facewatch.api"
REPLY_QUEUE_PREFIX = "/reply-queue/"  # what brokers make of a request's /temp-queue/ reply-to
_PASSED = ("authorization", "x-api-key", "content-type")


def request_from_message(message: BusMessage) -> ApiRequest:
    method = message.headers.get("method", "").upper()
    target = message.headers.get("path", "")
    if not method or not target.startswith("/"):
        raise BadParam("STOMP API requests need 'method' and 'path' headers", "path")
    parts = urlsplit(target)
    headers = {k: v for k, v in message.headers.items() if k in _PASSED}
    # A STOMP request's body is JSON whatever its content-type says (clients send text/plain for strings):
    # this transport has no multipart.
    return ApiRequest(method=method, path=parts.path, query=dict(parse_qsl(parts.query)), headers=headers,
                      body=message.body, content_type="application/json", transport="stomp")


class StompApiServer:
    """Consumes the API queue (competing with any other API instance)."""

    def __init__(self, api: Api, client: BusClient, loop: asyncio.AbstractEventLoop, max_body_bytes: int) -> None:
        self.api = api
        self.client = client
        self.loop = loop
        self.max_body_bytes = max_body_bytes
        self._sub_id: str | None = None

    def start(self) -> None:
        self._sub_id = self.client.subscribe(API_QUEUE, self._on_message)

    def stop(self) -> None:
        if self._sub_id is not None:
            self.client.unsubscribe(self._sub_id)

    def _on_message(self, message: BusMessage) -> None:
        # Runs on the bus receiver thread: hand the work to the event loop.
        asyncio.run_coroutine_threadsafe(self._handle(message), self.loop)

    async def _handle(self, message: BusMessage) -> None:
        reply_to = message.headers.get("reply-to", "")
        if not reply_to.startswith(REPLY_QUEUE_PREFIX):
            # The API replies with its own rights: to anywhere else (a topic, a camera, another queue) a
            # request could make it write JSON of the requester's choosing. A /temp-queue/ named in the
            # request arrives here as the broker's private /reply-queue/<token> (embedded and RabbitMQ).
            log.warning("STOMP API request dropped: reply-to %r is not a private reply queue (name a "
                        "/temp-queue/ in the request)", reply_to[:200])
            return
        try:
            request = request_from_message(message)
        except BadParam as exc:
            response = ApiResponse(exc.status, exc.body())
        else:
            if len(request.body) > self.max_body_bytes:
                response = ApiResponse(413, {"code": "PAYLOAD_TOO_LARGE", "reason": "body over the limit"})
            else:
                response = await self.api.dispatch(request, client_key="stomp")
        body = response.body if isinstance(response.body, (bytes, bytearray)) else json.dumps(response.body).encode()
        headers = {"content-type": response.content_type}
        await asyncio.to_thread(self.client.reply, message, bytes(body), status=response.status, headers=headers)
