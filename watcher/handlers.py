"""Camera operations, served over STOMP request/response only (as FRaaS does):
a REST call to these paths gets 404, like any path that does not exist.

Module-level handlers ``async def h(request, service)`` and ``ROUTES``, the table that declares them;
``Router.add_table(ROUTES, service)`` registers them."""

from __future__ import annotations

import base64

from api.errors import NotFound
from api.request import ApiRequest, ApiResponse
from api.routing import STOMP_ONLY, RouteDef

from .service import WatcherService

__all__ = ("ROUTES",)


async def list_cameras(request: ApiRequest, service: WatcherService) -> ApiResponse:
    cameras = await service.list(request.tenant)
    return ApiResponse(200, {"cameras": [{**c.to_json(), "status": await service.status(c)} for c in cameras]})


async def register(request: ApiRequest, service: WatcherService) -> ApiResponse:
    camera = await service.register(request.tenant, request.json_object())
    return ApiResponse(201, camera.to_json())


async def get(request: ApiRequest, service: WatcherService) -> ApiResponse:
    camera = await service.get(request.tenant, request.path_params["camera"])
    return ApiResponse(200, {**camera.to_json(), "status": await service.status(camera)})


async def update(request: ApiRequest, service: WatcherService) -> ApiResponse:
    camera = await service.update(request.tenant, request.path_params["camera"], request.json_object())
    return ApiResponse(200, camera.to_json())


async def remove(request: ApiRequest, service: WatcherService) -> ApiResponse:
    await service.remove(request.tenant, request.path_params["camera"])
    return ApiResponse(204)


async def start(request: ApiRequest, service: WatcherService) -> ApiResponse:
    camera = await service.set_enabled(request.tenant, request.path_params["camera"], True)
    return ApiResponse(200, camera.to_json())


async def stop(request: ApiRequest, service: WatcherService) -> ApiResponse:
    camera = await service.set_enabled(request.tenant, request.path_params["camera"], False)
    return ApiResponse(200, camera.to_json())


async def status(request: ApiRequest, service: WatcherService) -> ApiResponse:
    return ApiResponse(200, await service.status(await service.get(request.tenant, request.path_params["camera"])))



async def frame(request: ApiRequest, service: WatcherService) -> ApiResponse:
    camera = await service.get(request.tenant, request.path_params["camera"])
    snapshot = service.frame(camera)
    if snapshot is None:
        where = "" if (camera.node or service.node) == service.node else f" (it runs on node {camera.node})"
        raise NotFound(f"no recent frame of camera {camera.id}: it is not running here{where} or has not "
                       "analysed a frame yet", "frame")
    return ApiResponse(200, {"camera": camera.id, "time": snapshot["time"], "index": snapshot["index"],
                             "content_type": "image/jpeg", "image": base64.b64encode(snapshot["jpeg"]).decode()})


async def list_nodes(request: ApiRequest, service: WatcherService) -> ApiResponse:
    return ApiResponse(200, {"nodes": [n.to_json() for n in await service.list_nodes()]})


ROUTES: tuple[RouteDef[WatcherService], ...] = (
    RouteDef("GET", "/api/v1/cameras", list_cameras, "list cameras with their status", transports=STOMP_ONLY),
    RouteDef("POST", "/api/v1/cameras", register, "register a camera (starts it unless enabled is false)",
             transports=STOMP_ONLY),
    RouteDef("GET", "/api/v1/cameras/{camera}", get, "a camera with its status", transports=STOMP_ONLY),
    RouteDef("PATCH", "/api/v1/cameras/{camera}", update, "change a camera's settings (restarts its worker)",
             transports=STOMP_ONLY),
    RouteDef("DELETE", "/api/v1/cameras/{camera}", remove, "stop and remove a camera", transports=STOMP_ONLY),
    RouteDef("POST", "/api/v1/cameras/{camera}/start", start, "start a camera", transports=STOMP_ONLY),
    RouteDef("POST", "/api/v1/cameras/{camera}/stop", stop, "stop a camera", transports=STOMP_ONLY),
    RouteDef("GET", "/api/v1/cameras/{camera}/status", status, "worker state and stats", transports=STOMP_ONLY),
    RouteDef("GET", "/api/v1/cameras/{camera}/frame", frame, "a recent analysed frame (base64 JPEG, longer side "
             "at most 640 px) of a camera running on the node that answers", transports=STOMP_ONLY),
    RouteDef("GET", "/api/v1/nodes", list_nodes, "the watcher nodes cameras can run on", transports=STOMP_ONLY),
)
