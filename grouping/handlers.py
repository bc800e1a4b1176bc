"""Grouping's API routes, served over REST and STOMP by the same handlers."""

from __future__ import annotations

import asyncio
import re
from typing import Any

from api.errors import BadParam, NotFound
from api.request import ApiRequest, ApiResponse
from api.routing import Router

from repo.handlers import uploaded_image, uploaded_zip
from repo.jobs import JobItem, JobKind, JobRunner

from .service import GroupingService

__all__ = ("register_grouping_routes", "grouping_job_kind")

_SUBJECT_ID = re.compile(r"^[\w.\-]{1,200}$")
_STATUSES = ("active", "ignored", "promoted")


def _ids(value: Any, param: str) -> list[str]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise BadParam(f"{param} must be a non-empty list of ids", param)
    return value


def _time(request: ApiRequest, name: str) -> float | None:
    raw = request.query.get(name)
    if raw is None:
        return None
    try:
        return float(raw)
    except ValueError:
        raise BadParam(f"{name} must be a time in seconds since the epoch", name) from None


def grouping_job_kind(service: GroupingService) -> JobKind:
    """Batch grouping: every face of every image of a zip; the result names the groups they went to."""

    async def group(tenant_id: str, params: dict[str, Any], data: bytes, item: JobItem,
                    result: dict[str, Any]) -> None:
        placed = await service.add_image(tenant_id, data, job_item=item.key)
        result["faces"] += len(placed)
        result["new_groups"] += sum(1 for p in placed if p["new_group"])
        groups = result.setdefault("groups", [])
        groups += [p["group"] for p in placed if p["group"] not in groups]

    return JobKind("group", group, nested=False, counters=("faces", "new_groups"))


def register_grouping_routes(router: Router, service: GroupingService, jobs: JobRunner, *, max_zip_files: int = 10_000,
                             max_zip_bytes: int = 2 * 1024**3) -> None:
    store = service.store
    jobs.register(grouping_job_kind(service))

    async def list_groups(request: ApiRequest) -> ApiResponse:
        status = request.query.get("status")
        if status is not None and status not in _STATUSES:
            raise BadParam(f"status must be one of {', '.join(_STATUSES)}", "status")
        groups, total = await asyncio.to_thread(
            store.list_groups, request.tenant, camera=request.query.get("camera"), since=_time(request, "since"),
            until=_time(request, "until"), status=status, offset=request.int_param("offset", 0, lo=0, hi=10**9),
            limit=request.int_param("limit", 50, lo=1, hi=500))
        return ApiResponse(200, {"groups": [g.to_json() for g in groups], "total": total})

    async def get_group(request: ApiRequest) -> ApiResponse:
        group_id = request.path_params["group"]
        group = await asyncio.to_thread(store.group, request.tenant, group_id)
        faces = await asyncio.to_thread(store.faces, request.tenant, group_id)
        return ApiResponse(200, {**group.to_json(), "faces": [f.to_json() for f in faces]})

    async def delete_group(request: ApiRequest) -> ApiResponse:
        await service.delete(request.tenant, request.path_params["group"])
        return ApiResponse(204)

    async def merge(request: ApiRequest) -> ApiResponse:
        others = _ids(request.json_object().get("groups"), "groups")
        group = await service.merge(request.tenant, request.path_params["group"], others)
        return ApiResponse(200, group.to_json())

    async def move_faces(request: ApiRequest) -> ApiResponse:
        faces = _ids(request.json_object().get("faces"), "faces")
        group = await service.move_faces(request.tenant, faces, request.path_params["group"])
        return ApiResponse(200, group.to_json())

    async def remove_face(request: ApiRequest) -> ApiResponse:
        face = await asyncio.to_thread(store.face, request.tenant, request.path_params["face"])
        if face.group_id != request.path_params["group"]:
            raise NotFound("no such face in this group", "face")
        await service.remove_face(request.tenant, face.id)
        return ApiResponse(204)

    async def face_crop(request: ApiRequest) -> ApiResponse:
        crop = await asyncio.to_thread(store.crop, request.tenant, request.path_params["face"])
        if crop is None:
            raise NotFound("this face was stored without a crop", "face")
        return ApiResponse(200, crop, content_type="image/jpeg")

    async def ignore(request: ApiRequest) -> ApiResponse:
        value = request.json_object().get("ignore", True)
        if not isinstance(value, bool):
            raise BadParam("ignore must be true or false", "ignore")
        group = await service.ignore(request.tenant, request.path_params["group"], value)
        return ApiResponse(200, group.to_json())

    async def promote(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        gallery = body.get("gallery")
        if not isinstance(gallery, str) or not gallery:
            raise BadParam("gallery is required", "gallery")
        subject_id = body.get("subject") or f"group-{request.path_params['group'][:12]}"
        if not isinstance(subject_id, str) or not _SUBJECT_ID.match(subject_id):
            raise BadParam("subject must be 1-200 letters, digits, '.', '_' or '-'", "subject")
        name = body.get("name") or subject_id
        if not isinstance(name, str) or len(name) > 300:
            raise BadParam("name must be a string of at most 300 characters", "name")
        group = await service.promote(request.tenant, request.path_params["group"], gallery, subject_id, name)
        return ApiResponse(200, group.to_json())

    async def group_image(request: ApiRequest) -> ApiResponse:
        data = uploaded_image(request, service.repo)
        return ApiResponse(200, {"faces": await service.add_image(request.tenant, data)})

    async def group_zip(request: ApiRequest) -> ApiResponse:
        data = uploaded_zip(request, "images")
        job = await jobs.submit_zip(request.tenant, "group", {}, data, max_files=max_zip_files,
                                    max_total_bytes=max_zip_bytes)
        return ApiResponse(202, {"id": job["id"], "kind": job["kind"], "status": job["status"], "done": job["done"],
                                 "total": job["total"], "events": f"/topic/jobs.{job['id']}"})

    async def refine(request: ApiRequest) -> ApiResponse:
        return ApiResponse(200, {"merged": await service.refine(request.tenant)})

    add = router.add
    add("GET", "/api/v1/groups", list_groups, summary="groups (camera, since, until, status, offset, limit)")
    add("POST", "/api/v1/groups/images", group_image, summary="group every face of one image")
    add("POST", "/api/v1/groups/refine", refine, summary="merge groups that have drifted together")
    add("POST", "/api/v1/groups/jobs", group_zip,
        summary="group every face of a zip of images as a job (202; progress on /topic/jobs.<id>)")
    add("GET", "/api/v1/groups/{group}", get_group, summary="a group with its faces")
    add("DELETE", "/api/v1/groups/{group}", delete_group, summary="delete a group and its faces")
    add("POST", "/api/v1/groups/{group}/merge", merge, summary="merge {groups: [...]} into this group")
    add("POST", "/api/v1/groups/{group}/faces", move_faces, summary="move {faces: [...]} into this group")
    add("DELETE", "/api/v1/groups/{group}/faces/{face}", remove_face, summary="remove a face")
    add("GET", "/api/v1/groups/{group}/faces/{face}/crop", face_crop, summary="a face's JPEG crop")
    add("POST", "/api/v1/groups/{group}/ignore", ignore, summary="mark {ignore: true|false}")
    add("POST", "/api/v1/groups/{group}/promote", promote,
        summary="make the group a subject {gallery, subject?, name?} enrolled with its best faces")
