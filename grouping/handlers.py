"""Grouping's API: module-level handlers ``async def h(request, ctx)`` and ``ROUTES``, the table that
declares them, served over REST and STOMP; ``grouping_job_kind`` is the batch job they submit."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from api import params as p
from api.errors import BadParam, NotFound
from api.request import ApiRequest, ApiResponse
from api.routing import RouteDef

from repo.jobs import JobItem, JobKind, JobRunner

from . import contracts as c
from .service import GroupingService

__all__ = ("GroupingContext", "ROUTES", "grouping_job_kind")

_SUBJECT_ID = re.compile(c.SUBJECT_ID_PATTERN[1:-1] + r"\Z")  # .match, anchored at both ends


@dataclass(slots=True, frozen=True)
class GroupingContext:
    """What grouping's handlers work with (``jobs`` has ``grouping_job_kind`` registered)."""

    service: GroupingService
    jobs: JobRunner
    max_zip_files: int = 10_000
    max_zip_bytes: int = 2 * 1024**3


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


async def list_groups(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    status = request.query.get("status")
    if status is not None and status not in c.STATUSES:
        raise BadParam(f"status must be one of {', '.join(c.STATUSES)}", "status")
    groups, total = await ctx.service.list_groups(
        request.tenant, camera=request.query.get("camera"), since=p.query_time(request, "since"),
        until=p.query_time(request, "until"), status=status, offset=request.int_param("offset", 0, lo=0, hi=10**9),
        limit=request.int_param("limit", 50, lo=1, hi=500))
    # "version": the tenant's grouping change sequence in the database; "indexed_version": what this
    # node's group index holds (docs/nodes.md).
    return ApiResponse(200, {"groups": [g.to_json() for g in groups], "total": total,
                             "version": await ctx.service.version(request.tenant),
                             "indexed_version": ctx.service.indexed_version(request.tenant)})


async def get_group(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    group_id = request.path_params["group"]
    group = await ctx.service.group(request.tenant, group_id)
    faces = await ctx.service.faces(request.tenant, group_id)
    return ApiResponse(200, {**group.to_json(), "faces": [f.to_json() for f in faces]})


async def delete_group(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    await ctx.service.delete(request.tenant, request.path_params["group"])
    return ApiResponse(204)


async def merge(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    others = p.id_list(request.json_object().get("groups"), "groups")
    group = await ctx.service.merge(request.tenant, request.path_params["group"], others)
    return ApiResponse(200, group.to_json())


async def move_faces(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    faces = p.id_list(request.json_object().get("faces"), "faces")
    group = await ctx.service.move_faces(request.tenant, faces, request.path_params["group"])
    return ApiResponse(200, group.to_json())


async def remove_face(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    face = await ctx.service.face(request.tenant, request.path_params["face"])
    if face.group_id != request.path_params["group"]:
        raise NotFound("no such face in this group", "face")
    await ctx.service.remove_face(request.tenant, face.id)
    return ApiResponse(204)


async def face_crop(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    crop = await ctx.service.crop(request.tenant, request.path_params["face"])
    if crop is None:
        raise NotFound("this face was stored without a crop", "face")
    return ApiResponse(200, crop, content_type="image/jpeg")


async def ignore(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    value = request.json_object().get("ignore", True)
    if not isinstance(value, bool):  # JSON only: no "true" strings here
        raise BadParam("ignore must be true or false", "ignore")
    group = await ctx.service.ignore(request.tenant, request.path_params["group"], value)
    return ApiResponse(200, group.to_json())


async def promote(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    body = request.json_object()
    gallery = p.name(body.get("gallery"), "gallery")
    # The default is made a valid id whatever the path held: an unknown group is a 404, not a bad subject.
    subject_id = body.get("subject") or "group-" + re.sub(r"[^A-Za-z0-9_.-]", "-", request.path_params["group"][:12])
    if not isinstance(subject_id, str) or not _SUBJECT_ID.match(subject_id):
        raise BadParam("subject must be 1-200 ASCII letters, digits, '.', '_' or '-'", "subject")
    name = p.label(body.get("name") or subject_id, "name")
    group = await ctx.service.promote(request.tenant, request.path_params["group"], gallery, subject_id, name)
    return ApiResponse(200, group.to_json())


async def group_image(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    data = p.uploaded_image(request)
    return ApiResponse(200, {"faces": await ctx.service.add_image(request.tenant, data)})


async def group_zip(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    data = p.uploaded_zip(request, "images")
    job = await ctx.jobs.submit_zip(request.tenant, "group", {}, data, max_files=ctx.max_zip_files,
                                    max_total_bytes=ctx.max_zip_bytes)
    return ApiResponse(202, {"id": job["id"], "kind": job["kind"], "status": job["status"], "done": job["done"],
                             "total": job["total"], "events": f"/topic/jobs.{job['id']}"})


async def refine(request: ApiRequest, ctx: GroupingContext) -> ApiResponse:
    return ApiResponse(200, {"merged": await ctx.service.refine(request.tenant)})


ROUTES: tuple[RouteDef[GroupingContext], ...] = (
    RouteDef("GET", "/api/v1/groups", list_groups, "groups (camera, since, until, status, offset, limit)",
             contract=c.LIST_GROUPS),
    RouteDef("POST", "/api/v1/groups/images", group_image, "group every face of one image", contract=c.GROUP_IMAGE),
    RouteDef("POST", "/api/v1/groups/refine", refine, "merge groups that have drifted together", contract=c.REFINE),
    RouteDef("POST", "/api/v1/groups/jobs", group_zip,
             "group every face of a zip of images as a job (202; progress on /topic/jobs.<id>)",
             contract=c.GROUP_ZIP),
    RouteDef("GET", "/api/v1/groups/{group}", get_group, "a group with its faces", contract=c.GET_GROUP),
    RouteDef("DELETE", "/api/v1/groups/{group}", delete_group, "delete a group and its faces",
             contract=c.DELETE_GROUP),
    RouteDef("POST", "/api/v1/groups/{group}/merge", merge, "merge {groups: [...]} into this group",
             contract=c.MERGE),
    RouteDef("POST", "/api/v1/groups/{group}/faces", move_faces, "move {faces: [...]} into this group",
             contract=c.MOVE_FACES),
    RouteDef("DELETE", "/api/v1/groups/{group}/faces/{face}", remove_face, "remove a face",
             contract=c.REMOVE_FACE),
    RouteDef("GET", "/api/v1/groups/{group}/faces/{face}/crop", face_crop, "a face's JPEG crop",
             contract=c.FACE_CROP),
    RouteDef("POST", "/api/v1/groups/{group}/ignore", ignore, "mark {ignore: true|false}", contract=c.IGNORE),
    RouteDef("POST", "/api/v1/groups/{group}/promote", promote,
             "make the group a subject {gallery, subject?, name?} enrolled with its best faces", contract=c.PROMOTE),
)
