"""The OpenAPI document of the REST routes, generated from the router: each route's contract
(api.contract) gives its parameters, body and replies, so the document says what the server checks.

Every operation also lists the errors any route of its kind can answer: 400 (a malformed request,
including one aiohttp refuses to parse), 401 (credentials, unless public), 404 (a path parameter
naming nothing), 413 and 415 (a body too large or of another media type) and 429 (rate limits).
"""

from __future__ import annotations

import re
from collections import defaultdict
from typing import Any

from .contract import Body, Contract, Reply
from .errors import (
    ApiError, AuthFailed, BadParam, Forbidden, MalformedJson, NotFound, PayloadTooLarge, RateLimited, UnsupportedMedia,
)
from .routing import Route, Router
from .schemas import Schema, obj, ref, string

__all__ = ("openapi_document", "ERROR_SCHEMA", "operation_errors")

_PATH_PARAM = re.compile(r"\{([a-z_]+)\}")

ERROR_SCHEMA: Schema = obj({
    "code": string(pattern="^[A-Z_]+$", description="what went wrong, in CAPS (BAD_PARAM, NOT_FOUND, ...)"),
    "reason": string(description="what went wrong, for people"),
    "param": string(description="the parameter at fault, where there is one"),
}, ["code", "reason"], extra=False)

_SECURITY_SCHEMES = {
    "apiKey": {"type": "apiKey", "in": "header", "name": "x-api-key"},
    "bearer": {"type": "http", "scheme": "bearer", "description": "an access token from POST /api/v1/login"},
}


def operation_errors(route: Route) -> list[type[ApiError]]:
    """Every error class ``route`` can answer with: its own and those of every route like it."""
    contract = route.contract
    found: list[type[ApiError]] = [BadParam, RateLimited, *contract.errors]
    if not route.public:
        found += [AuthFailed, Forbidden]  # Forbidden: a key whose scope does not allow the route
    if _PATH_PARAM.search(route.pattern):
        found.append(NotFound)
    if contract.body is not None:
        found += [MalformedJson, PayloadTooLarge, UnsupportedMedia]
    return list(dict.fromkeys(found))


def _parameters(route: Route) -> list[dict[str, Any]]:
    contract = route.contract
    out: list[dict[str, Any]] = [{"name": name, "in": "path", "required": True, "schema": contract.path_schema(name)}
                                 for name in _PATH_PARAM.findall(route.pattern)]
    for param in contract.query:
        entry: dict[str, Any] = {"name": param.name, "in": "query", "required": param.required,
                                 "schema": param.schema}
        if param.description:
            entry["description"] = param.description
        out.append(entry)
    return out


def _request_body(body: Body) -> dict[str, Any]:
    content: dict[str, Any] = {}
    if body.json is not None:
        content["application/json"] = {"schema": body.json}
    if body.multipart is not None:
        content["multipart/form-data"] = {"schema": body.multipart}
        if body.files:
            content["multipart/form-data"]["encoding"] = {part: {"contentType": types}
                                                          for part, types in body.files.items()}
    return {"required": body.required, "content": content}


def _reply(reply: Reply) -> dict[str, Any]:
    out: dict[str, Any] = {"description": reply.description or "success"}
    if reply.media_type != "application/json":
        out["content"] = {reply.media_type: {"schema": {"type": "string", "format": "binary"}}}
    elif reply.schema is not None:
        out["content"] = {"application/json": {"schema": reply.schema}}
    return out


def _responses(route: Route) -> dict[str, Any]:
    out = {str(reply.status): _reply(reply) for reply in route.contract.replies}
    codes: dict[int, list[str]] = defaultdict(list)
    for error in operation_errors(route):
        codes[error.status].append(error.code)
    for status in sorted(codes):
        out[str(status)] = {"description": ", ".join(codes[status]),
                            "content": {"application/json": {"schema": ref("Error")}}}
    return out


def _operation(route: Route, operation_id: str) -> dict[str, Any]:
    contract: Contract = route.contract
    out: dict[str, Any] = {"operationId": operation_id, "summary": route.summary,
                           "parameters": _parameters(route), "responses": _responses(route),
                           "security": [] if route.public else [{"apiKey": []}, {"bearer": []}]}
    if contract.body is not None:
        out["requestBody"] = _request_body(contract.body)
    return out


def openapi_document(router: Router, *, title: str, version: str) -> dict[str, Any]:
    """The OpenAPI 3.0 document of ``router``'s REST routes."""
    paths: dict[str, dict[str, Any]] = {}
    taken: set[str] = set()
    for _, route in router.routes:
        if "rest" not in route.transports:
            continue
        name = getattr(route.handler, "__name__", "operation").lstrip("_")
        operation_id = name if name not in taken else f"{name}_{route.method.lower()}"
        taken.add(operation_id)
        paths.setdefault(route.pattern, {})[route.method.lower()] = _operation(route, operation_id)
    return {
        "openapi": "3.0.3",
        "info": {"title": title, "version": version,
                 "description": "Errors answer {code, reason, param?} with their status (components.Error)."},
        "paths": paths,
        "components": {"schemas": {"Error": ERROR_SCHEMA}, "securitySchemes": _SECURITY_SCHEMES},
    }
