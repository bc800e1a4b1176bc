"""The one place a request becomes a response, whatever the transport."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from .contract import check_request
from .errors import ApiError, AuthFailed, Forbidden, InternalError, RateLimited
from .idempotency import Idempotency
from .request import ApiRequest, ApiResponse, Principal
from .routing import Route, Router

__all__ = ("Admission", "Authenticator", "RateLimiter", "Api", "error_response", "Served", "Observer")

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


def error_response(exc: ApiError) -> ApiResponse:
    return ApiResponse(exc.status, exc.body(), headers=exc.headers())


@dataclass(slots=True, frozen=True)
class Admission:
    """A request let in: its route, path parameters and principal (None on a public route)."""

    route: Route
    params: dict[str, str]
    principal: Principal | None


@dataclass(slots=True, frozen=True)
class Served:
    """One request answered, for metrics: the route's pattern (never the raw path) or "unmatched"."""

    transport: str
    method: str
    route: str
    status: int
    seconds: float


Observer = Callable[[Served], None]


class Api:
    def __init__(self, router: Router, authenticator: Authenticator, limiter: RateLimiter,
                 idempotency: Idempotency | None = None, observer: Observer | None = None) -> None:
        """``idempotency``: where write requests' keys are claimed (None: keys are ignored).
        ``observer`` is told of every request answered (metrics), on the event loop."""
        self.router = router
        self.authenticator = authenticator
        self.limiter = limiter
        self.idempotency = idempotency
        self.observer = observer

    def observe(self, transport: str, method: str, path: str, admission: Admission | None, status: int,
                started: float) -> None:
        """Tell the observer about an answered request (``started``: its time.perf_counter())."""
        if self.observer is None:
            return
        route = admission.route.pattern if admission is not None else self._route_label(method, path, transport)
        self.observer(Served(transport, method.upper(), route, status, time.perf_counter() - started))

    def _route_label(self, method: str, path: str, transport: str) -> str:
        try:
            return self.router.match(method, path, transport)[0].pattern
        except ApiError:
            return "unmatched"

    async def admit(self, method: str, path: str, transport: str, headers: dict[str, str],
                    client_key: str = "") -> Admission:
        """Route, credentials and rate, from the request line and headers alone: REST admits a request
        before it reads (let alone parses) its body. Raises the ApiError to answer with."""
        route, params = self.router.match(method, path, transport)
        principal = None
        if not route.public:
            try:
                principal = await self.authenticator.authenticate(headers)
            except Exception:  # a bug there must not cost the transport its request (STOMP: never answered)
                log.exception("%s %s: authentication failed", method, path[:200])
                raise InternalError("internal error") from None
            if principal is None:
                raise AuthFailed("missing or invalid credentials (x-api-key or Authorization: Bearer)")
            if not principal.scope.allows_route(writes=not route.safe):
                raise Forbidden(f"this key's scope is {principal.scope.kind!r}: it may not {route.method} "
                                f"{route.pattern}")
        if not self.limiter.allow(principal.tenant_id if principal else f"anon:{client_key}"):
            raise RateLimited("too many requests; slow down")
        return Admission(route, params, principal)

    async def run(self, admission: Admission, request: ApiRequest) -> ApiResponse:
        """The admitted request's handler, once the request keeps to the route's contract; every error
        becomes its response."""
        request.path_params, request.principal = admission.params, admission.principal

        async def answer() -> ApiResponse:
            try:
                check_request(admission.route.contract, request)
                return await admission.route.handler(request)
            except ApiError as exc:
                return error_response(exc)
            except Exception:  # the boundary: log it, never leak internals
                log.exception("%s %s failed", request.method, request.path)
                return ApiResponse(500, InternalError("internal error").body())

        if (self.idempotency is None or admission.principal is None or admission.route.safe
                or not admission.route.keeps_answer):
            return await answer()
        try:
            return await self.idempotency.run(admission.principal.tenant_id, request, answer)
        except ApiError as exc:  # the key itself: malformed, reused, or its first request still running
            return error_response(exc)
        except Exception:
            log.exception("%s %s: idempotency key not handled", request.method, request.path)
            return ApiResponse(500, InternalError("internal error").body())

    async def dispatch(self, request: ApiRequest, *, client_key: str = "") -> ApiResponse:
        """Admit and run (STOMP: the body came with the frame)."""
        started = time.perf_counter()
        admission = None
        try:
            admission = await self.admit(request.method, request.path, request.transport, request.headers,
                                         client_key)
        except ApiError as exc:
            response = error_response(exc)
        else:
            response = await self.run(admission, request)
        self.observe(request.transport, request.method, request.path, admission, response.status, started)
        return response
