"""Request parameters, read the one way for every package: names, booleans, numbers, lists,
times, base64 images, uploaded images and zips.

Each helper raises ``BadParam`` naming the parameter (``param``) it could not read.
"""

from __future__ import annotations

import base64
import binascii
import io
import zipfile
from typing import Any

from .errors import BadParam
from .names import LABEL, NAME
from .request import ApiRequest

__all__ = (
    "merged", "name", "label", "boolean", "number", "string_list", "id_list", "query_time", "b64", "image",
    "optional_image", "uploaded_image", "uploaded_zip", "zip_of_items",
)


def merged(request: ApiRequest) -> dict[str, Any]:
    """Body fields (JSON or multipart form) over query parameters."""
    out: dict[str, Any] = dict(request.query)
    out.update(request.json_object())
    return out


def name(value: Any, param: str) -> str:
    """A gallery, subject or camera-gallery name (api.names.NAME)."""
    if not isinstance(value, str) or not NAME.match(value):
        raise BadParam(f"{param} must be 1-200 ASCII letters, digits, spaces, '.', '_' or '-'", param)
    return value


def label(value: Any, param: str) -> str:
    """A display name: 1-200 characters, no control characters (api.names.LABEL)."""
    if not isinstance(value, str) or not LABEL.match(value):
        raise BadParam(f"{param} must be 1-200 characters without control characters", param)
    return value


def boolean(value: Any, param: str) -> bool:
    """A JSON boolean, or a form/query string: true/1/yes, false/0/no or empty."""
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise BadParam(f"{param} must be true or false", param)


def number(value: Any, param: str, default: float, lo: float, hi: float) -> float:
    """A number in [lo, hi]; ``default`` when absent or empty."""
    if value is None or value == "":
        return default
    try:
        found = float(value)
    except (TypeError, ValueError):
        raise BadParam(f"{param} must be a number", param) from None
    if not lo <= found <= hi:
        raise BadParam(f"{param} must be between {lo} and {hi}", param)
    return found


def string_list(value: Any, param: str) -> list[str]:
    """A JSON list of strings or a comma-separated string; empty when absent."""
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadParam(f"{param} must be a list of strings or a comma-separated string", param)


def id_list(value: Any, param: str) -> list[str]:
    """A non-empty JSON list of non-empty id strings."""
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadParam(f"{param} must be a non-empty list of ids", param)
    return value


def query_time(request: ApiRequest, param: str) -> float | None:
    """A query parameter in seconds since the epoch; None when absent."""
    raw = request.query.get(param)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadParam(f"{param} must be a time in seconds since the epoch", param) from None


def b64(value: Any, param: str) -> bytes:
    """Base64 bytes (a ``data:...;base64,`` prefix is dropped); image URLs are refused, never fetched."""
    if not isinstance(value, str) or not value:
        raise BadParam(f"{param} must be a base64 string", param)
    if value.startswith(("http://", "https://")):
        raise BadParam("image URLs are not fetched; send the image bytes", param)
    if value.startswith("data:") and "," in value:
        value = value.split(",", 1)[1]
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        raise BadParam(f"{param} is not valid base64", param) from None


def image(request: ApiRequest, params: dict[str, Any], param: str) -> bytes:
    """The image ``param``: a multipart file or base64 in ``params``; missing is an error."""
    data = optional_image(request, params, param)
    if data is None:
        raise BadParam(f"missing image {param!r} (multipart file or base64 in JSON)", param)
    return data


def optional_image(request: ApiRequest, params: dict[str, Any], param: str) -> bytes | None:
    """The image ``param`` (``file`` also answers to ``image``), or None; URLs are refused."""
    for upload in request.files:
        if upload.name == param or (param == "file" and upload.name in ("image", "file")):
            return upload.data
    if param in params:
        return b64(params[param], param)
    if param == "file" and "image" in params:
        return b64(params["image"], "image")
    if "url" in params or f"{param}_url" in params:
        raise BadParam("image URLs are not fetched; send the image bytes", param)
    return None


def uploaded_image(request: ApiRequest) -> bytes:
    """The request's one image: multipart ``file``/``image`` or base64 in JSON; URLs refused."""
    return image(request, merged(request), "file")


def uploaded_zip(request: ApiRequest, contents: str) -> bytes:
    """The zip sent as multipart ``file`` (or ``zip``); ``contents`` says what it should hold, for the error."""
    uploads = [f for f in request.files if f.name in ("file", "zip")]
    if not uploads:
        raise BadParam(f"send a zip of {contents} as multipart field 'file'", "file")
    return uploads[0].data


def zip_of_items(items: Any) -> bytes:
    """A JSON list ``[{"subject", "image": base64}, ...]`` as the zip a bulk job spools, so both
    forms take the one durable path (what STOMP clients send, where multipart is awkward)."""
    if not isinstance(items, list) or not items:
        raise BadParam("items must be a non-empty list of {subject, image}", "items")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # images are compressed already
        for position, item in enumerate(items):
            where = f"items[{position}]"
            if not isinstance(item, dict):
                raise BadParam(f"{where} must be an object with subject and image", "items")
            subject = name(item.get("subject"), f"{where}.subject")  # never only dots: a folder of its own
            archive.writestr(f"{subject}/{position:06d}.jpg", b64(item.get("image"), f"{where}.image"))
    return buffer.getvalue()
