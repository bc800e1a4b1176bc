"""Routes: method + path pattern -> handler, shared by both transports."""

from __future__ import annotations

import re
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from .errors import MethodNotAllowed, NotFound
from .request import ApiRequest, ApiResponse

__all__ = ("Handler", "Route", "Router")

Handler = Callable[[ApiRequest], Awaitable[ApiResponse]]
_PARAM = re.compile(r"\{([a-z_]+)\}")


@dataclass(slots=True, frozen=True)
class Route:
    method: str
    pattern: str  # "/api/v1/galleries/{gallery}"
    handler: Handler
    public: bool = False  # no credentials needed (login, openapi)
    transports: tuple[str, ...] = ("rest", "stomp")
    summary: str = ""


class Router:
    def __init__(self) -> None:
        self.routes: list[tuple[re.Pattern[str], Route]] = []

    def add(self, method: str, pattern: str, handler: Handler, *, public: bool = False,
            transports: tuple[str, ...] = ("rest", "stomp"), summary: str = "") -> None:
        # _PARAM.split alternates literal text and parameter names.
        parts = _PARAM.split(pattern)
        regex = "^" + "".join(re.escape(p) if i % 2 == 0 else f"(?P<{p}>[^/]+)" for i, p in enumerate(parts)) + "$"
        self.routes.append((re.compile(regex), Route(method.upper(), pattern, handler, public, transports, summary)))

    def match(self, method: str, path: str, transport: str) -> tuple[Route, dict[str, str]]:
        allowed = False
        for regex, route in self.routes:
            found = regex.match(path)
            if found is None or transport not in route.transports:
                continue
            if route.method == method.upper():
                return route, found.groupdict()
            allowed = True
        if allowed:
            raise MethodNotAllowed(f"{method} is not allowed on {path}")
        raise NotFound(f"no such route: {path}")
