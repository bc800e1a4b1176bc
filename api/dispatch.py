"""The one place a request becomes a response, whatever the transport."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Protocol

from .errors import ApiError, AuthFailed, InternalError, RateLimited
from .request import ApiRequest, ApiResponse, Principal
from .routing import Router

__all__ = ("Authenticator", "RateLimiter", "Api")

log = logging.getLogger(__name__)


class Authenticator(Protocol):
    async def authenticate(self, headers: dict[str, str]) -> Principal | None:
        """The principal for ``x-api-key`` or ``authorization: Bearer``, or None."""
        ...


@dataclass(slots=True)
class _Bucket:
    tokens: float
    stamp: float


class RateLimiter:
    """Token bucket per key (tenant, or remote address for unauthenticated calls)."""

    def __init__(self, rate_per_s: float, burst: int) -> None:
        self.rate = rate_per_s
        self.burst = burst
        self._buckets: dict[str, _Bucket] = {}

    def allow(self, key: str) -> bool:
        if self.rate <= 0:
            return True
        now = time.monotonic()
        bucket = self._buckets.get(key)
        if bucket is None:
            if len(self._buckets) > 100_000:
                self._buckets.clear()
            bucket = self._buckets[key] = _Bucket(float(self.burst), now)
        bucket.tokens = min(self.burst, bucket.tokens + (now - bucket.stamp) * self.rate)
        bucket.stamp = now
        if bucket.tokens < 1:
            return False
        bucket.tokens -= 1
        return True


class Api:
    def __init__(self, router: Router, authenticator: Authenticator, limiter: RateLimiter) -> None:
        self.router = router
        self.authenticator = authenticator
        self.limiter = limiter

    async def dispatch(self, request: ApiRequest, *, client_key: str = "") -> ApiResponse:
        try:
            route, params = self.router.match(request.method, request.path, request.transport)
            request.path_params = params
            if not route.public:
                principal = await self.authenticator.authenticate(request.headers)
                if principal is None:
                    raise AuthFailed("missing or invalid credentials (x-api-key or Authorization: Bearer)")
                request.principal = principal
            if not self.limiter.allow(request.principal.tenant_id if request.principal else f"anon:{client_key}"):
                raise RateLimited("too many requests; slow down")
            return await route.handler(request)
        except ApiError as exc:
            return ApiResponse(exc.status, exc.body(), headers=exc.headers())
        except Exception:  # the boundary: log it, never leak internals
            log.exception("%s %s failed", request.method, request.path)
            return ApiResponse(500, InternalError("internal error").body())
