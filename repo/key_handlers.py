"""Who am I, and the tenant's API keys: list, create (with a scope), rotate, revoke.

Managing keys needs a full-scope credential: the writes by their scope rule, the key list by its handler
(a GET, but about credentials). A new key's secret is in the answer to its creation only.
"""

from __future__ import annotations

import asyncio

from api import params
from api.errors import Forbidden
from api.request import ApiRequest, ApiResponse
from api.routing import RouteDef
from api.scopes import KeyScope

from . import contracts as c
from .events import tenant_topic
from .handlers import RepoContext

__all__ = ("ROUTES",)


async def me(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    principal = request.principal
    assert principal is not None  # not a public route
    tenant = principal.tenant_id
    return ApiResponse(200, {
        "tenant": tenant, "via": principal.via, "key": principal.subject if principal.via == "api_key" else None,
        "scope": principal.scope.as_json(),
        "topics": {"repo": tenant_topic(tenant, "repo"), "grouping": tenant_topic(tenant, "grouping"),
                   "cameras": tenant_topic(tenant, "watcher.*"), "camera": tenant_topic(tenant, "watcher.<camera id>"),
                   "all": tenant_topic(tenant, "#")},
    })


async def list_keys(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    if request.principal is not None and request.principal.scope.kind != "full":
        raise Forbidden("listing API keys needs a full-scope credential")  # a GET, but about credentials
    return ApiResponse(200, {"keys": await asyncio.to_thread(ctx.auth.list_keys, request.tenant)})


async def create_key(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    body = request.json_object()
    name = params.label(body.get("name", "key"), "name")
    scope = KeyScope.parse(body.get("scope", "full"))
    made = await asyncio.to_thread(ctx.auth.create_key, request.tenant, name, scope)
    return ApiResponse(201, made.as_json())


async def rotate_key(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    made = await asyncio.to_thread(ctx.auth.rotate_key, request.tenant, request.path_params["key"])
    return ApiResponse(201, made.as_json())


async def revoke_key(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    await asyncio.to_thread(ctx.auth.revoke_key, request.tenant, request.path_params["key"])
    return ApiResponse(204)


ROUTES: tuple[RouteDef[RepoContext], ...] = (
    RouteDef("GET", "/api/v1/me", me, "the caller: tenant id, credential, scope, and the topics it may read",
             contract=c.ME),
    RouteDef("GET", "/api/v1/keys", list_keys, "the tenant's API keys (no secrets); full scope only",
             contract=c.LIST_KEYS),
    RouteDef("POST", "/api/v1/keys", create_key,
             "a new API key {name, scope: full | read | {kind: subscribe, cameras: [...]}}; its secret is shown once",
             contract=c.CREATE_KEY, keeps_answer=False),
    RouteDef("POST", "/api/v1/keys/{key}/rotate", rotate_key, "a new key with this one's name and scope; this one "
                                                                 "revoked (its STOMP connections closed)",
             contract=c.ROTATE_KEY, keeps_answer=False),
    RouteDef("DELETE", "/api/v1/keys/{key}", revoke_key, "revoke a key (its STOMP connections are closed)",
             contract=c.REVOKE_KEY),
)
