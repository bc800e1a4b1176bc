"""What one route takes and answers, declared next to it (``RouteDef.contract``): its query
parameters, its body (JSON, multipart or either), its replies and the errors it can answer.

The OpenAPI document is generated from these declarations (api.openapi), and ``check_request`` holds
every request to them before its handler runs, on both transports: a request the document calls
invalid is refused with BAD_PARAM naming the parameter, so document and behaviour cannot drift apart.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from .errors import ApiError, BadParam, NotFound, UnsupportedMedia
from .request import ApiRequest
from .schemas import Schema, from_text, violation

__all__ = ("Param", "Body", "Reply", "Contract", "check_request", "is_json", "FILE", "BASE64", "PATH_SEGMENT")

FILE: Schema = {"type": "string", "format": "binary"}  # a multipart file part
BASE64: Schema = {"type": "string", "format": "byte", "minLength": 1}  # a file's bytes inside JSON


@dataclass(slots=True, frozen=True)
class Param:
    """A query parameter."""

    name: str
    schema: Schema
    required: bool = False
    description: str = ""


@dataclass(slots=True, frozen=True)
class Body:
    """A request body: ``json`` (application/json) and/or ``multipart`` (multipart/form-data, whose file
    parts are ``FILE`` properties and whose other fields are text read as their schema's type).

    A multipart schema names every part it takes (additionalProperties false): a part's name is a
    header parameter, and one of any text at all may not even parse."""

    json: Schema | None = None
    multipart: Schema | None = None
    required: bool = True
    files: dict[str, str] = field(default_factory=dict)  # file part -> the media types it may be


@dataclass(slots=True, frozen=True)
class Reply:
    """A success reply: JSON described by ``schema``, bytes of ``media_type``, or no body (``schema`` None
    with the JSON media type, as 204 is)."""

    status: int
    schema: Schema | None = None
    media_type: str = "application/json"
    description: str = ""


# A path parameter not declared otherwise: what the router takes (no "/"), within a sane length.
PATH_SEGMENT: Schema = {"type": "string", "minLength": 1, "maxLength": 200}


@dataclass(slots=True, frozen=True)
class Contract:
    replies: tuple[Reply, ...] = (Reply(200),)
    query: tuple[Param, ...] = ()
    body: Body | None = None
    errors: tuple[type[ApiError], ...] = ()  # what the handler itself answers, beyond what every route can
    path: tuple[Param, ...] = ()  # path parameters whose schema is narrower than PATH_SEGMENT

    def path_schema(self, name: str) -> Schema:
        return next((p.schema for p in self.path if p.name == name), PATH_SEGMENT)


def is_json(content_type: str) -> bool:
    """Whether a body of this media type is read as JSON (absent: JSON)."""
    media = content_type.split(";", 1)[0].strip().lower()
    return media in ("", "application/json") or media.endswith("+json")


def check_request(contract: Contract, request: ApiRequest) -> None:
    """Raises the ApiError a request that breaks ``contract`` is answered with."""
    for name, value in request.path_params.items():
        # A path that names no resource that could exist names none that does.
        if problem := violation(value, contract.path_schema(name), name):
            raise NotFound(problem, name)
    for param in contract.query:
        raw = request.query.get(param.name)
        if raw is None:
            if param.required:
                raise BadParam(f"query parameter {param.name} is required", param.name)
            continue
        if problem := violation(from_text(raw, param.schema), param.schema, param.name):
            raise BadParam(problem, param.name)
    if contract.body is not None:
        _check_body(contract.body, request)


def _check_body(body: Body, request: ApiRequest) -> None:
    if request.content_type.startswith("multipart/"):
        if body.multipart is None:
            raise UnsupportedMedia("this route takes a JSON body (application/json), not multipart")
        _check_object(_form_fields(request, body.multipart), body.multipart)
        return
    if not is_json(request.content_type) and request.body:
        kinds = "application/json" + (" or multipart/form-data" if body.multipart is not None else "")
        raise UnsupportedMedia(f"send the body as {kinds}, not {request.content_type.split(';', 1)[0]}")
    if body.json is None:
        raise UnsupportedMedia("this route takes a multipart/form-data body")
    if not request.body:
        if body.required:
            raise BadParam("this route needs a JSON body" + (" or a multipart one" if body.multipart else ""))
        return
    _check_object(request.json_object(), body.json)


def _form_fields(request: ApiRequest, schema: Schema) -> dict[str, Any]:
    """The multipart body as the JSON object its schema describes: text fields read as their type,
    file parts as present (their bytes are checked where they are decoded)."""
    properties: dict[str, Schema] = schema.get("properties", {})
    fields: dict[str, Any] = {}
    for name, text in request.form.items():
        fields[name] = from_text(text, properties.get(name, {}))
    for upload in request.files:
        fields[upload.name] = "" if properties.get(upload.name, {}).get("format") == "binary" else upload.filename
    return fields


def _check_object(value: dict[str, Any], schema: Schema) -> None:
    problem = violation(value, schema, "")
    if problem is None:
        return
    # The parameter named is the body's top-level property the problem is in.
    head = problem.split(" ", 1)[0].split(".", 1)[0].split("[", 1)[0]
    raise BadParam(problem, head if head in schema.get("properties", {}) else None)
