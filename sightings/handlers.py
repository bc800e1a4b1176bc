"""Sightings' API: module-level handlers ``async def h(request, ctx)`` and ``ROUTES``, the table that
declares them, served over REST and STOMP."""

from __future__ import annotations

import math
import re
from dataclasses import dataclass
from typing import Any

from api import params as p
from api.errors import BadParam, NotFound
from api.request import ApiRequest, ApiResponse
from api.routing import RouteDef

from . import contracts as c
from .erasure import SubjectEraser
from .records import KINDS, Retention, SightingFilter
from .service import Probe, SightingService

__all__ = ("SightingsContext", "ROUTES")

_EVENT_ID = re.compile(r"^[A-Za-z0-9_.:-]{1,64}$")
_MAX_SPAN_S = 100 * 365 * 86400.0


@dataclass(slots=True, frozen=True)
class SightingsContext:
    service: SightingService
    eraser: SubjectEraser


def _filter(request: ApiRequest, params: dict[str, Any]) -> tuple[SightingFilter, bool]:
    """The filter, and whether it names a subject (resolved by the caller)."""
    kind = params.get("decision")
    if kind is not None and kind not in KINDS:
        raise BadParam(f"decision must be one of {', '.join(KINDS)}", "decision")
    camera, group = params.get("camera"), params.get("group")
    gallery, subject = params.get("gallery") or None, params.get("subject") or None
    both = gallery is not None and subject is not None  # one subject: resolved to its key (renames do not matter)
    return SightingFilter(camera=str(camera) if camera else None, group_id=str(group) if group else None,
                          kind=kind, start=_time(params, "from"), end=_time(params, "to"),
                          gallery=None if both or gallery is None else str(gallery),
                          subject_id=None if both or subject is None else str(subject)), both


def _time(params: dict[str, Any], name: str) -> float | None:
    raw = params.get(name)
    if raw is None or raw == "":
        return None
    try:
        value = float(raw)
    except (TypeError, ValueError):
        raise BadParam(f"{name} must be a time in seconds since the epoch", name) from None
    if not math.isfinite(value):
        raise BadParam(f"{name} must be a time in seconds since the epoch", name)
    return value


async def _cursor(request: ApiRequest, ctx: SightingsContext, raw: str) -> int:
    """``since``: a sequence number, or the event id of a sighting (its sequence number)."""
    if raw.isdigit() and len(raw) < 19:
        return int(raw)
    if not _EVENT_ID.match(raw):
        raise BadParam("since must be a sequence number or an event id", "since")
    return await ctx.service.cursor_of_event(request.tenant, raw)


async def list_sightings(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    params: dict[str, Any] = dict(request.query)
    f, by_subject = _filter(request, params)
    if by_subject:
        pk = await ctx.service.subject_pk(request.tenant, str(params["gallery"]), str(params["subject"]))
        f = SightingFilter(f.camera, pk, f.group_id, f.kind, f.start, f.end)  # gallery and subject_id: in pk
    limit = request.int_param("limit", 100, lo=1, hi=1000)
    since = request.query.get("since")
    if since is not None:  # catch-up: oldest first after the cursor
        cursor = await _cursor(request, ctx, since)
        found, last = await ctx.service.after(request.tenant, f, cursor, limit)
        more = len(found) == limit
        next_cursor = found[-1].seq if more else max([cursor, last] + [s.seq for s in found[-1:]])
        return ApiResponse(200, {"sightings": [s.to_json() for s in found], "cursor": next_cursor, "more": more,
                                 "last_seq": last})
    before = request.int_param("before", 0, lo=0, hi=2**62) or None
    found = await ctx.service.newest(request.tenant, f, before, limit)
    return ApiResponse(200, {"sightings": [s.to_json() for s in found],
                             "before": found[-1].seq if len(found) == limit else None})


async def get_sighting(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    found = await ctx.service.sighting(request.tenant, request.path_params["sighting"])
    return ApiResponse(200, found.to_json())


async def sighting_crop(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    crop = await ctx.service.crop(request.tenant, request.path_params["sighting"])
    if crop is None:
        raise NotFound("this sighting keeps no crop (none was attached, or it is past its retention)", "crop")
    return ApiResponse(200, crop, content_type="image/jpeg")


def _probe(request: ApiRequest, params: dict[str, Any]) -> Probe:
    named = [k for k in ("face_id", "sighting", "group") if params.get(k)]
    image = p.optional_image(request, params, "file")
    subject = (str(params["gallery"]), str(params["subject"])) if params.get("subject") else None
    if params.get("subject") and not params.get("gallery"):
        raise BadParam("a subject is named with its gallery", "gallery")
    given = len(named) + (image is not None) + (subject is not None)
    if given != 1:
        raise BadParam("name exactly one face to look for: an image (file), face_id, sighting, group, or "
                       "gallery + subject", "file")
    return Probe(image=image, face_id=str(params["face_id"]) if params.get("face_id") else None,
                 sighting_id=str(params["sighting"]) if params.get("sighting") else None,
                 group_id=str(params["group"]) if params.get("group") else None, subject=subject)


async def search(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    params = p.merged(request)
    probe = _probe(request, params)
    limit = int(p.number(params.get("limit"), "limit", 50, 1, 1000))
    repo = ctx.service.repo
    # The 1:1 rule (verify's): is this sighting the same person as the probe? A preset or a cosine.
    threshold = repo.threshold_for(repo.policy(params.get("threshold")), 1.0, 1)
    cameras = p.string_list(params.get("cameras", params.get("camera")), "cameras") or None
    embedding = await ctx.service.probe_embedding(request.tenant, probe)
    found = await ctx.service.search(request.tenant, embedding, limit=limit, min_similarity=threshold,
                                     start=_time(params, "from"), end=_time(params, "to"), cameras=cameras)
    return ApiResponse(200, {"sightings": [{**f.sighting.to_json(), "match_similarity": round(f.similarity, 4)}
                                           for f in found], "threshold": round(threshold, 4)})


def _span(body: dict[str, Any], name: str, current: float | None) -> float | None:
    if name not in body:
        return current
    value = body[name]
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= _MAX_SPAN_S:
        raise BadParam(f"{name} must be null (for ever) or a number of seconds above 0", name)
    return float(value)


async def get_retention(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    value, own = await ctx.service.retention(request.tenant)
    return ApiResponse(200, {**value.as_json(), "default": not own})


async def set_retention(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    body = request.json_object()
    unknown = set(body) - {"recognized_s", "unknown_s", "crop_s", "embedding_s"}
    if unknown:
        raise BadParam(f"unknown field {sorted(unknown)[0]!r}", sorted(unknown)[0])
    now, _ = await ctx.service.retention(request.tenant)
    value = Retention(_span(body, "recognized_s", now.recognized_s), _span(body, "unknown_s", now.unknown_s),
                      _span(body, "crop_s", now.crop_s), _span(body, "embedding_s", now.embedding_s))
    await ctx.service.set_retention(request.tenant, value)
    return ApiResponse(200, {**value.as_json(), "default": False})


async def erase_subject(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    principal = request.principal
    assert principal is not None  # not a public route
    erased = await ctx.eraser.erase(request.tenant, request.path_params["gallery"], request.path_params["subject"],
                                    f"{principal.via}:{principal.subject}")
    return ApiResponse(200, {"erasure": erased.audit_id, "counts": erased.counts})


async def erasures(request: ApiRequest, ctx: SightingsContext) -> ApiResponse:
    log = await ctx.service.erasure_log(request.tenant, request.int_param("limit", 100, lo=1, hi=1000))
    return ApiResponse(200, {"erasures": [e.to_json() for e in log]})


ROUTES: tuple[RouteDef[SightingsContext], ...] = (
    RouteDef("GET", "/api/v1/sightings", list_sightings,
             "sightings, newest first (camera, gallery + subject, group, decision, from, to, before, limit); "
             "with since (a sequence number or event id): oldest first after it, to catch up", contract=c.LIST),
    RouteDef("POST", "/api/v1/sightings/search", search,
             "sightings of a face (image, face_id, sighting, group or gallery + subject), most similar first "
             "(cameras, from, to, threshold, limit)", safe=True, contract=c.SEARCH),
    RouteDef("GET", "/api/v1/sightings/retention", get_retention, "the tenant's retention of sightings",
             contract=c.RETENTION),
    RouteDef("PUT", "/api/v1/sightings/retention", set_retention,
             "set retention in seconds (recognized_s, unknown_s, crop_s, embedding_s; null: for ever)",
             contract=c.SET_RETENTION),
    RouteDef("GET", "/api/v1/sightings/{sighting}", get_sighting, "a sighting", contract=c.GET),
    RouteDef("GET", "/api/v1/sightings/{sighting}/crop", sighting_crop, "a sighting's best crop, JPEG",
             contract=c.CROP),
    RouteDef("POST", "/api/v1/galleries/{gallery}/subjects/{subject}/erase", erase_subject,
             "erase a subject everywhere: faces, images, sightings' crops and embeddings, face groups (audited)",
             contract=c.ERASE),
    RouteDef("GET", "/api/v1/erasures", erasures, "the tenant's erasure audit log (who, when, how much)",
             contract=c.ERASURES),
)
