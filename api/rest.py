"""REST transport: aiohttp requests in, ApiRequest through Api.dispatch, JSON out."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from typing import Any

from aiohttp import BodyPartReader, HttpVersion11, web
from aiohttp.http_exceptions import HttpProcessingError
from aiohttp.typedefs import Handler
from aiohttp.web_protocol import RequestHandler, RequestPayloadError
from aiohttp.web_request import BaseRequest

from .dispatch import Admission, Api, error_response
from .errors import ApiError, BadParam, PayloadTooLarge, UnsupportedMedia
from .request import ApiRequest, ApiResponse, UploadedFile

__all__ = ("add_rest_routes", "use_json_protocol_errors", "json_expect")

log = logging.getLogger(__name__)

_MULTIPART_FIELD_LIMIT = 64 * 1024
PUBLIC_BODY_BYTES = 64 * 1024  # what an unauthenticated request (login, token refresh) may send


async def _read(request: web.Request, max_bytes: int) -> ApiRequest:
    # aiohttp calls a body without a Content-Type application/octet-stream; here it is read as JSON.
    content_type = request.content_type if "Content-Type" in request.headers else ""
    api_request = ApiRequest(
        method=request.method, path=request.path, query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()}, content_type=content_type,
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes, the limit is {max_bytes}")
    if content_type.startswith("multipart/"):
        try:
            return await _read_multipart(request, api_request, max_bytes)
        except ApiError:
            raise
        except Exception as exc:  # aiohttp's multipart reader raises several kinds on a malformed body
            raise BadParam(f"malformed multipart body: {exc}"[:300], "file") from None
    try:
        api_request.body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes") from None
    except (HttpProcessingError, RequestPayloadError) as exc:  # a Content-Encoding whose data does not decode
        cause = exc.__cause__ if isinstance(exc.__cause__, HttpProcessingError) else exc
        detail = cause.message if isinstance(cause, HttpProcessingError) else str(cause)
        raise BadParam(f"the body could not be read: {_first_line(detail)}") from None
    if len(api_request.body) > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    return api_request


async def _read_multipart(request: web.Request, api_request: ApiRequest, max_bytes: int) -> ApiRequest:
    if "boundary=" not in (request.headers.get("Content-Type") or ""):
        raise BadParam("multipart body without a boundary", "file")
    total = 0
    reader = await request.multipart()
    while True:
        part = await reader.next()
        if part is None:
            break
        if not isinstance(part, BodyPartReader):
            raise UnsupportedMedia("nested multipart is not supported")
        data = bytearray()
        while chunk := await part.read_chunk(65536):
            data += chunk
            total += len(chunk)
            if total > max_bytes:
                raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
        if part.filename is not None:
            api_request.files.append(UploadedFile(part.name or "file", part.filename,
                                                  part.headers.get("Content-Type", ""), bytes(data)))
        else:
            if len(data) > _MULTIPART_FIELD_LIMIT:
                raise BadParam("form field too large", part.name)
            api_request.form[part.name or ""] = data.decode("utf-8", "replace")
    return api_request




def _respond(response: ApiResponse) -> web.Response:
    if isinstance(response.body, (bytes, bytearray)):
        return web.Response(status=response.status, body=response.body, content_type=response.content_type,
                            headers=response.headers)
    text = "" if response.body is None and response.status == 204 else json.dumps(response.body)
    return web.Response(status=response.status, text=text or None, content_type="application/json",
                        headers=response.headers)


_HTTP_CODES = {400: "BAD_PARAM", 401: "AUTH_FAILED", 403: "FORBIDDEN", 404: "NOT_FOUND", 405: "METHOD_NOT_ALLOWED",
               411: "BAD_PARAM", 413: "PAYLOAD_TOO_LARGE", 414: "BAD_PARAM", 415: "UNSUPPORTED_MEDIA", 417: "BAD_PARAM",
               429: "RATE_LIMITED", 431: "BAD_PARAM", 503: "SERVICE_UNAVAILABLE"}


def _first_line(message: object) -> str:
    """aiohttp's parser messages quote the offending bytes after their first line: the reason is that line."""
    return str(message or "").strip().split("\n", 1)[0].rstrip(":").strip()[:300] or "bad request"


def _error_code(status: int) -> str:
    return _HTTP_CODES.get(status, "INTERNAL" if status >= 500 else "HTTP_ERROR")


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers (a path outside the API, a method the route lacks) in the API's error shape,
    and any unexpected exception as a 500 of that shape (aiohttp would answer it in plain text)."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        reason = f"no such route: {request.path[:200]} (the API is under /api/v1)" if exc.status == 404 else exc.reason
        return web.json_response({"code": _error_code(exc.status), "reason": reason},
                                 status=exc.status, headers=headers)
    except (asyncio.CancelledError, ConnectionError):
        raise
    except Exception:
        log.exception("%s %s failed", request.method, request.path[:200])
        return web.json_response({"code": "INTERNAL", "reason": "internal error"}, status=500)


async def json_expect(request: web.Request) -> web.StreamResponse | None:
    """The ``Expect`` header as aiohttp's default handler reads it (100-continue, else 417), with the 417 in
    the API's error shape."""
    if request.version != HttpVersion11:
        return None
    if request.headers.get("Expect", "").lower() != "100-continue":
        return web.json_response({"code": _error_code(417), "reason": "only Expect: 100-continue is understood"},
                                 status=417)
    await request.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
    request.writer.output_size = 0  # as aiohttp's own handler: the answer proper has not started
    return None


_aiohttp_handle_error = RequestHandler.handle_error


def _json_handle_error(self: RequestHandler, request: BaseRequest, status: int = 500,
                       exc: BaseException | None = None, message: str | None = None) -> web.StreamResponse:
    """What aiohttp answers itself, before any route or middleware runs (a request it cannot parse: a bad
    method, header, Content-Length, Transfer-Encoding or Content-Encoding, a line over max_line_size), in
    the API's error shape instead of plain text. aiohttp's own method still logs it and still raises when
    an answer was under way."""
    plain = _aiohttp_handle_error(self, request, status, exc, message)
    reason = "internal error" if status >= 500 else _first_line(message or plain.reason)
    answer = web.json_response({"code": _error_code(status), "reason": reason}, status=status)
    answer.force_close()
    return answer


def use_json_protocol_errors() -> None:
    """Every aiohttp server of this process answers its protocol errors as JSON (``_json_handle_error``).
    aiohttp has no public hook for these answers: its request handler's method is replaced, once."""
    RequestHandler.handle_error = _json_handle_error  # type: ignore[method-assign]


def add_rest_routes(app: web.Application, api: Api, max_body_bytes: int, prefix: str = "/api/v1") -> None:
    async def handle(request: web.Request) -> web.Response:
        peer: Any = request.remote or ""
        started = time.perf_counter()
        admission: Admission | None = None
        try:
            # Credentials first, from the headers: nobody gets a body read and parsed before a 401.
            admission = await api.admit(request.method, request.path, "rest",
                                        {k.lower(): v for k, v in request.headers.items()}, str(peer))
            # Public routes (login, health) take small bodies only: they are open to anyone.
            limit = max_body_bytes if admission.principal is not None else min(max_body_bytes, PUBLIC_BODY_BYTES)
            api_request = await _read(request, limit)
        except ApiError as exc:
            response = error_response(exc)
        else:
            response = await api.run(admission, api_request)
        api.observe("rest", request.method, request.path, admission, response.status, started)
        return _respond(response)

    app.router.add_route("*", prefix + "/{tail:.*}", handle, expect_handler=json_expect)
    app.middlewares.append(json_errors)
    use_json_protocol_errors()
