"""Routes: method + path pattern -> handler, shared by both transports.

A package declares its routes as data (a tuple of ``RouteDef``, like aiohttp's
``RouteTableDef``) next to module-level handlers ``async def h(request, ctx)``;
``Router.add_table`` binds them to the package's context object in one loop.
"""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from .contract import Contract
from .errors import MethodNotAllowed, NotFound
from .request import ApiRequest, ApiResponse

__all__ = ("Handler", "ContextHandler", "Route", "RouteDef", "Router", "BOTH", "STOMP_ONLY", "REST_ONLY")

BOTH = ("rest", "stomp")
STOMP_ONLY = ("stomp",)
REST_ONLY = ("rest",)

Ctx = TypeVar("Ctx")
Handler = Callable[[ApiRequest], Awaitable[ApiResponse]]
ContextHandler = Callable[[ApiRequest, Ctx], Awaitable[ApiResponse]]
_PARAM = re.compile(r"\{([a-z_]+)\}")
# Where a route lives when it is not on the transport asked (cameras: STOMP only, as FRaaS does).
_WHERE = {
    "stomp": "it is a STOMP request/reply operation: SEND to /queue/facewatch.api with headers method, path, "
             "reply-to (a /temp-queue/) and your x-api-key; the `facewatch cameras` command and the Python "
             "client (facewatch.client) do this for you",
    "rest": "it is served over REST only: /api/v1 on the API port",
}


@dataclass(slots=True, frozen=True)
class Route:
    method: str
    pattern: str  # "/api/v1/galleries/{gallery}"
    handler: Handler
    public: bool = False  # no credentials needed (login, openapi)
    transports: tuple[str, ...] = ("rest", "stomp")
    summary: str = ""
    # Changes nothing (GET; a POST that only reads, as identify): a read-only key may call it, and a
    # repeat needs no idempotency key.
    safe: bool = False
    contract: Contract = Contract()
    # Its answer may be kept for an idempotency key. False where the answer holds a secret shown once
    # (a new API key): the store keeps only hashes of secrets, so a repeat is applied again instead.
    keeps_answer: bool = True


@dataclass(slots=True, frozen=True)
class RouteDef(Generic[Ctx]):
    """One row of a package's route table: what ``Router.add`` takes, with a handler that is given
    the package's context (its services) as well as the request."""

    method: str
    path: str
    handler: ContextHandler[Ctx]
    summary: str = ""
    public: bool = False  # no credentials needed (login, openapi)
    transports: tuple[str, ...] = BOTH
    # None: what the method says (GET and HEAD are safe). True for a POST that changes nothing (identify).
    safe: bool | None = None
    contract: Contract = Contract()  # what it takes and answers: checked on every request, and documented
    keeps_answer: bool = True  # see Route.keeps_answer


def _bind(handler: ContextHandler[Ctx], ctx: Ctx) -> Handler:
    async def bound(request: ApiRequest) -> ApiResponse:
        return await handler(request, ctx)

    bound.__name__ = getattr(handler, "__name__", "handler")
    return bound


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], Route]] = []

    def add(self, method: str, pattern: str, handler: Handler, *, public: bool = False,
            transports: tuple[str, ...] = BOTH, summary: str = "", safe: bool | None = None,
            contract: Contract = Contract(), keeps_answer: bool = True) -> None:
        # _PARAM.split alternates literal text and parameter names.
        parts = _PARAM.split(pattern)
        regex = "^" + "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)) + "$"
        safe = method.upper() in ("GET", "HEAD") if safe is None else safe
        self.routes.append((re.compile(regex), Route(method.upper(), pattern, handler, public, transports, summary,
                                                     safe, contract, keeps_answer)))

    def add_table(self, table: Iterable[RouteDef[Ctx]], ctx: Ctx) -> None:
        """Every route of ``table``, its handler bound to ``ctx``."""
        for route in table:
            self.add(route.method, route.path, _bind(route.handler, ctx), public=route.public,
                     transports=route.transports, summary=route.summary, safe=route.safe,
                     contract=route.contract, keeps_answer=route.keeps_answer)

    def match(self, method: str, path: str, transport: str) -> tuple[Route, dict[str, str]]:
        """The route of ``method`` on ``path``. Where patterns overlap (/groups/refine, /groups/{group}),
        the one with the fewest parameters owns the path: its methods are the path's methods. A path
        served over another transport only is a 404 that says where it lives."""
        found: list[tuple[int, Route, dict[str, str]]] = []
        elsewhere: set[str] = set()  # transports that do serve this path
        for regex, route in self.routes:
            matched = regex.match(path)
            if matched is None:
                continue
            if transport not in route.transports:
                elsewhere.update(route.transports)
                continue
            found.append((len(matched.groupdict()), route, matched.groupdict()))
        if not found:
            if elsewhere:
                raise NotFound(f"{path} is not served over {transport.upper()}: {_WHERE[min(elsewhere)]}")
            raise NotFound(f"no such route: {path}")
        fewest = min(params for params, _, _ in found)
        owners = [(route, params) for count, route, params in found if count == fewest]
        for route, params in owners:
            if route.method == method.upper():
                return route, params
        raise MethodNotAllowed(f"{method} is not allowed on {path}", [route.method for route, _ in owners])
