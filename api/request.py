"""Transport-neutral request and response records."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any

from .errors import BadParam, MalformedJson
from .scopes import FULL, KeyScope

__all__ = ("Principal", "UploadedFile", "ApiRequest", "ApiResponse")

_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")  # the JSON escape of a UTF-16 surrogate


@dataclass(slots=True, frozen=True)
class Principal:
    """Who is calling: every operation runs inside exactly one tenant."""

    tenant_id: str
    via: str  # "token" | "api_key"
    subject: str  # client id or key id, for logs
    scope: KeyScope = FULL


@dataclass(slots=True, frozen=True)
class UploadedFile:
    name: str  # form field name
    filename: str
    content_type: str
    data: bytes


@dataclass(slots=True)
class ApiRequest:
    method: str
    path: str
    query: dict[str, str] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)  # lower-case names
    body: bytes = b""
    content_type: str = ""
    form: dict[str, str] = field(default_factory=dict)
    files: list[UploadedFile] = field(default_factory=list)
    path_params: dict[str, str] = field(default_factory=dict)
    principal: Principal | None = None
    transport: str = "rest"

    def json(self) -> Any:
        if not self.body:
            return {}
        try:
            data = json.loads(self.body)
        except (ValueError, UnicodeDecodeError) as exc:
            raise MalformedJson(f"request body is not valid JSON: {exc}") from None
        except RecursionError:
            raise MalformedJson("request body is nested too deep") from None
        if _SURROGATE_ESCAPE.search(self.body):
            # JSON lets "\ud800" stand alone; such a string is no text (it cannot be encoded, stored or
            # hashed), so every use of it failed with a 500. Checked only when such an escape is there.
            try:
                json.dumps(data, ensure_ascii=False).encode("utf-8")
            except UnicodeEncodeError:
                raise MalformedJson("request body has a lone UTF-16 surrogate (\\ud800-\\udfff) in a string") \
                    from None
        return data

    def json_object(self) -> dict[str, Any]:
        if self.content_type.startswith("multipart/"):
            return dict(self.form)
        data = self.json()
        if not isinstance(data, dict):
            raise MalformedJson("request body must be a JSON object")
        return data

    @property
    def tenant(self) -> str:
        if self.principal is None:  # routes marked public never ask
            raise RuntimeError("no principal on an authenticated route")
        return self.principal.tenant_id

    def int_param(self, name: str, default: int, *, lo: int, hi: int) -> int:
        raw = self.query.get(name)
        if raw is None:
            return default
        try:
            value = int(raw)
        except ValueError:
            raise BadParam(f"{name} must be an integer", name) from None
        if not lo <= value <= hi:
            raise BadParam(f"{name} must be between {lo} and {hi}", name)
        return value


@dataclass(slots=True)
class ApiResponse:
    status: int
    body: Any = None  # JSON-serialisable, or bytes with content_type
    content_type: str = "application/json"
    headers: dict[str, str] = field(default_factory=dict)
