"""REST transport: aiohttp requests in, ApiRequest through Api.dispatch, JSON out."""

from __future__ import annotations

import json
import time
from typing import Any

from aiohttp import BodyPartReader, web
from aiohttp.typedefs import Handler

from .dispatch import Admission, Api, error_response
from .errors import ApiError, BadParam, PayloadTooLarge, UnsupportedMedia
from .request import ApiRequest, ApiResponse, UploadedFile

__all__ = ("add_rest_routes",)

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
               413: "PAYLOAD_TOO_LARGE", 415: "UNSUPPORTED_MEDIA", 429: "RATE_LIMITED"}


@web.middleware
async def json_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    """aiohttp's own answers (a path outside the API, a method the route lacks) in the API's error shape."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400:
            raise
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        reason = f"no such route: {request.path[:200]} (the API is under /api/v1)" if exc.status == 404 else exc.reason
        return web.json_response({"code": _HTTP_CODES.get(exc.status, "HTTP_ERROR"), "reason": reason},
                                 status=exc.status, headers=headers)


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

    app.router.add_route("*", prefix + "/{tail:.*}", handle)
    app.middlewares.append(json_errors)
