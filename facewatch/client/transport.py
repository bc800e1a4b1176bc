"""How the client reaches the API: REST over HTTP, or STOMP request/reply on the API queue.

Both take the same call (method, path, query, JSON body or files) and give the
same ``Response``; an error status raises ``ApiCallError`` with the API's code.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from dataclasses import dataclass, field
from typing import Any, Protocol
from urllib.parse import urlencode

from api.stomp import API_QUEUE
from broker.client import BusClient

__all__ = ("ApiCallError", "Response", "Transport", "HttpTransport", "StompTransport", "Upload", "API_QUEUE",
           "auth_headers")


class ApiCallError(Exception):
    """The API answered with an error status: ``code`` (BAD_PARAM, NOT_FOUND, ...), ``reason``, ``param``."""

    def __init__(self, status: int, code: str, reason: str, param: str | None = None) -> None:
        super().__init__(f"{status} {code}: {reason}")
        self.status = status
        self.code = code
        self.reason = reason
        self.param = param


@dataclass(slots=True, frozen=True)
class Upload:
    """A file sent as multipart (HTTP only)."""

    filename: str
    data: bytes
    content_type: str = "application/octet-stream"


@dataclass(slots=True, frozen=True)
class Response:
    status: int
    body: bytes
    content_type: str = "application/json"

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


def _raise_for_status(response: Response) -> Response:
    if response.status < 400:
        return response
    try:
        error = response.json()
    except ValueError:
        error = None
    if not isinstance(error, dict):
        raise ApiCallError(response.status, "HTTP_ERROR", response.body[:300].decode("utf-8", "replace"))
    raise ApiCallError(response.status, str(error.get("code", "HTTP_ERROR")), str(error.get("reason", "")),
                       error.get("param"))


def auth_headers(api_key: str | None = None, token: str | None = None) -> dict[str, str]:
    if token:
        return {"authorization": f"Bearer {token}"}
    return {"x-api-key": api_key} if api_key else {}


class Transport(Protocol):
    def call(self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
             files: dict[str, Upload] | None = None, timeout_s: float = 60.0) -> Response:
        """One API call; raises ApiCallError on an error status."""
        ...


def _target(path: str, query: dict[str, str] | None) -> str:
    return f"{path}?{urlencode(query)}" if query else path


def _multipart(files: dict[str, Upload], fields: dict[str, str]) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    chunks = [f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode()
              for name, value in fields.items()]
    for name, upload in files.items():
        chunks.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{upload.filename}"'
                      f"\r\nContent-Type: {upload.content_type}\r\n\r\n".encode() + upload.data + b"\r\n")
    return b"".join(chunks) + f"--{boundary}--\r\n".encode(), f"multipart/form-data; boundary={boundary}"


@dataclass(slots=True)
class HttpTransport:
    """REST: ``base_url`` like http://127.0.0.1:8080."""

    base_url: str
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
             files: dict[str, Upload] | None = None, timeout_s: float = 60.0) -> Response:
        headers = dict(self.headers)
        data: bytes | None = None
        if files:
            fields = {k: str(v) for k, v in (body or {}).items()}
            data, headers["Content-Type"] = _multipart(files, fields)
        elif body is not None:
            data, headers["Content-Type"] = json.dumps(body).encode(), "application/json"
        request = urllib.request.Request(self.base_url.rstrip("/") + _target(path, query), data=data, method=method,
                                         headers=headers)
        try:
            with urllib.request.urlopen(request, timeout=timeout_s) as reply:
                response = Response(reply.status, reply.read(), reply.headers.get_content_type())
        except urllib.error.HTTPError as err:
            with err:
                response = Response(err.code, err.read(), err.headers.get_content_type())
        return _raise_for_status(response)


@dataclass(slots=True)
class StompTransport:
    """STOMP request/reply on /queue/facewatch.api through a connected ``BusClient`` (the only way to the
    camera operations). JSON bodies only: images go as base64 fields."""

    bus: BusClient
    headers: dict[str, str] = field(default_factory=dict)

    def call(self, method: str, path: str, *, body: Any = None, query: dict[str, str] | None = None,
             files: dict[str, Upload] | None = None, timeout_s: float = 60.0) -> Response:
        if files:
            raise ValueError("STOMP API requests carry JSON only: send images as base64 fields")
        headers = {**self.headers, "method": method, "path": _target(path, query),
                   "content-type": "application/json"}
        reply = self.bus.request(API_QUEUE, b"" if body is None else json.dumps(body).encode(), headers,
                                 timeout_s=timeout_s)
        return _raise_for_status(Response(reply.status, reply.body, reply.headers.get("content-type", "")))
