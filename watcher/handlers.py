"""Camera operations, served over STOMP request/response only (as FRaaS does):
a REST call to these paths gets 404, like any path that does not exist."""

from __future__ import annotations

from api.request import ApiRequest, ApiResponse
from api.routing import Handler, Router

from .service import WatcherService

__all__ = ("register_watcher_routes",)

STOMP_ONLY = ("stomp",)


def register_watcher_routes(router: Router, service: WatcherService) -> None:
    async def list_cameras(request: ApiRequest) -> ApiResponse:
        cameras = await service.list(request.tenant)
        return ApiResponse(200, {"cameras": [{**c.to_json(), "status": service.status(c)} for c in cameras]})

    async def register(request: ApiRequest) -> ApiResponse:
        camera = await service.register(request.tenant, request.json_object())
        return ApiResponse(201, camera.to_json())

    async def get(request: ApiRequest) -> ApiResponse:
        camera = await service.get(request.tenant, request.path_params["camera"])
        return ApiResponse(200, {**camera.to_json(), "status": service.status(camera)})

    async def update(request: ApiRequest) -> ApiResponse:
        camera = await service.update(request.tenant, request.path_params["camera"], request.json_object())
        return ApiResponse(200, camera.to_json())

    async def remove(request: ApiRequest) -> ApiResponse:
        await service.remove(request.tenant, request.path_params["camera"])
        return ApiResponse(204)

    async def start(request: ApiRequest) -> ApiResponse:
        camera = await service.set_enabled(request.tenant, request.path_params["camera"], True)
        return ApiResponse(200, camera.to_json())

    async def stop(request: ApiRequest) -> ApiResponse:
        camera = await service.set_enabled(request.tenant, request.path_params["camera"], False)
        return ApiResponse(200, camera.to_json())

    async def status(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, service.status(await service.get(request.tenant, request.path_params["camera"])))

    def add(method: str, pattern: str, handler: Handler, summary: str) -> None:
        router.add(method, pattern, handler, transports=STOMP_ONLY, summary=summary)

    add("GET", "/api/v1/cameras", list_cameras, "list cameras with their status")
    add("POST", "/api/v1/cameras", register, "register a camera (starts it unless enabled is false)")
    add("GET", "/api/v1/cameras/{camera}", get, "a camera with its status")
    add("PATCH", "/api/v1/cameras/{camera}", update, "change a camera's settings (restarts its worker)")
    add("DELETE", "/api/v1/cameras/{camera}", remove, "stop and remove a camera")
    add("POST", "/api/v1/cameras/{camera}/start", start, "start a camera")
    add("POST", "/api/v1/cameras/{camera}/stop", stop, "stop a camera")
    add("GET", "/api/v1/cameras/{camera}/status", status, "worker state and stats")
