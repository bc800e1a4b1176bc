"""REST transport: aiohttp requests in, ApiRequest through Api.dispatch, JSON out."""

from __future__ import annotations

import json
from typing import Any

from aiohttp import BodyPartReader, web

from .dispatch import Api
from .errors import ApiError, BadParam, PayloadTooLarge, UnsupportedMedia
from .request import ApiRequest, ApiResponse, UploadedFile

__all__ = ("add_rest_routes",)

_MULTIPART_FIELD_LIMIT = 64 * 1024


async def _read(request: web.Request, max_bytes: int) -> ApiRequest:
    content_type = request.content_type or ""
    api_request = ApiRequest(
        method=request.method, path=request.path, query=dict(request.query),
        headers={k.lower(): v for k, v in request.headers.items()}, content_type=content_type,
    )
    if request.content_length is not None and request.content_length > max_bytes:
        raise PayloadTooLarge(f"body is {request.content_length} bytes, the limit is {max_bytes}")
    if content_type.startswith("multipart/"):
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
    try:
        api_request.body = await request.read()
    except web.HTTPRequestEntityTooLarge:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes") from None
    if len(api_request.body) > max_bytes:
        raise PayloadTooLarge(f"body is over the limit of {max_bytes} bytes")
    return api_request


def _respond(response: ApiResponse) -> web.Response:
    if isinstance(response.body, (bytes, bytearray)):
        return web.Response(status=response.status, body=response.body, content_type=response.content_type,
                            headers=response.headers)
    text = "" if response.body is None and response.status == 204 else json.dumps(response.body)
    return web.Response(status=response.status, text=text or None, content_type="application/json",
                        headers=response.headers)


def add_rest_routes(app: web.Application, api: Api, max_body_bytes: int, prefix: str = "/api/v1") -> None:
    async def handle(request: web.Request) -> web.Response:
        try:
            api_request = await _read(request, max_body_bytes)
        except ApiError as exc:
            return _respond(ApiResponse(exc.status, exc.body()))
        peer: Any = request.remote or ""
        return _respond(await api.dispatch(api_request, client_key=str(peer)))

    app.router.add_route("*", prefix + "/{tail:.*}", handle)
