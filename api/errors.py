"""The API's error vocabulary: one class per code, each with its HTTP status.

REST answers ``status`` with ``{"code", "reason", "param"?}``; STOMP replies
carry the same status header and body.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = (
    "ApiError", "AuthFailed", "Forbidden", "BadParam", "MalformedJson", "NotFound", "Conflict",
    "PayloadTooLarge", "UnsupportedMedia", "NoFace", "RateLimited", "ServiceUnavailable", "MethodNotAllowed",
    "InternalError",
)


class ApiError(Exception):
    status: ClassVar[int] = 500
    code: ClassVar[str] = "INTERNAL"

    def __init__(self, reason: str, param: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.param = param

    def headers(self) -> dict[str, str]:
        """Response headers the error calls for (405's Allow)."""
        return {}

    def body(self) -> dict[str, Any]:
        out: dict[str, Any] = {"code": self.code, "reason": self.reason}
        if self.param is not None:
            out["param"] = self.param
        return out


class AuthFailed(ApiError):
    status, code = 401, "AUTH_FAILED"


class Forbidden(ApiError):
    status, code = 403, "FORBIDDEN"


class BadParam(ApiError):
    status, code = 400, "BAD_PARAM"


class MalformedJson(ApiError):
    status, code = 400, "MALFORMED_JSON"


class NotFound(ApiError):
    status, code = 404, "NOT_FOUND"


class MethodNotAllowed(ApiError):
    status, code = 405, "METHOD_NOT_ALLOWED"

    def __init__(self, reason: str, allowed: list[str] | None = None) -> None:
        super().__init__(reason)
        self.allowed = sorted(set(allowed or []))

    def headers(self) -> dict[str, str]:
        return {"Allow": ", ".join(self.allowed)} if self.allowed else {}


class Conflict(ApiError):
    status, code = 409, "CONFLICT"


class PayloadTooLarge(ApiError):
    status, code = 413, "PAYLOAD_TOO_LARGE"


class UnsupportedMedia(ApiError):
    status, code = 415, "UNSUPPORTED_MEDIA"


class NoFace(ApiError):
    status, code = 422, "NO_FACE"


class RateLimited(ApiError):
    status, code = 429, "RATE_LIMITED"


class InternalError(ApiError):
    status, code = 500, "INTERNAL"


class ServiceUnavailable(ApiError):
    status, code = 503, "SERVICE_UNAVAILABLE"
