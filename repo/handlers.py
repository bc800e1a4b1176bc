"""The repo's API: module-level handlers ``async def h(request, ctx)`` and ``ROUTES``, the table
that declares them; ``Router.add_table(ROUTES, RepoContext(...))`` serves them over REST and STOMP."""

from __future__ import annotations

import asyncio
import math
import uuid
from dataclasses import dataclass
from typing import Any

import numpy as np

from api import params as p
from api.errors import BadParam, NoFace, NotFound
from api.request import ApiRequest, ApiResponse
from api.routing import RouteDef
from vision.attribute_names import ATTRIBUTE_NAMES
from vision.selection import FaceChoice

from . import contracts as c
from .auth import RepoAuth
from .face_json import face_to_json
from .jobs import JobRunner
from .service import FaceRepository
from .store import FaceRecord, Gallery, NegativeRecord, Subject

__all__ = ("RepoContext", "ROUTES", "face_choice")

ATTRIBUTE_PLUGINS = ATTRIBUTE_NAMES  # the face_plugins that are attributes


@dataclass(slots=True, frozen=True)
class RepoContext:
    """What the repo's handlers work with."""

    repo: FaceRepository
    auth: RepoAuth
    jobs: JobRunner
    max_zip_files: int = 10_000
    max_zip_bytes: int = 2 * 1024**3


def _absent(value: Any) -> bool:
    return value is None or value == ""


def face_choice(params: dict[str, Any], suffix: str = "") -> FaceChoice | None:
    """``face_index`` (as /detect lists the faces) and/or ``face_box``: a box as /detect and the events show
    it ({x_min, y_min, x_max, y_max}), or [x1, y1, x2, y2], or "x1,y1,x2,y2" (a form field); named both
    ways, the two must name the same face.

    Here, not in api.params: it makes a vision.selection.FaceChoice, and api knows nothing of faces.
    """
    index, box = params.get("face_index" + suffix), params.get("face_box" + suffix)
    if _absent(index) and _absent(box):
        return None
    position: int | None = None
    corners: tuple[float, float, float, float] | None = None
    if not _absent(index):
        found = p.number(index, "face_index" + suffix, 0, 0, 1000)
        if found != int(found):
            raise BadParam("face_index must be a whole number", "face_index" + suffix)
        position = int(found)
    if not _absent(box):
        corners = _box(box, "face_box" + suffix)
    return FaceChoice(index=position, box=corners)


def _box(box: Any, param: str) -> tuple[float, float, float, float]:
    if isinstance(box, dict):
        values = [box.get(k) for k in ("x_min", "y_min", "x_max", "y_max")]
    else:
        values = [v.strip() for v in box.split(",")] if isinstance(box, str) else box
    if not isinstance(values, list) or len(values) != 4:
        raise BadParam("face_box must be a box {x_min, y_min, x_max, y_max} or four numbers x1, y1, x2, y2", param)
    try:
        a, b, c, d = (float(v) for v in values)
    except (TypeError, ValueError):
        raise BadParam(f"{param} must be numbers", param) from None
    # Two opposite corners name one region, whichever pair they are; a region without area holds
    # no face, like a box no face overlaps (422).
    x1, x2, y1, y2 = min(a, c), max(a, c), min(b, d), max(b, d)
    if x2 == x1 or y2 == y1 or not all(map(math.isfinite, (x1, y1, x2, y2))):
        raise NoFace("the face_box has no area: no face is in it", param)
    return x1, y1, x2, y2


def _gallery_json(gallery: Gallery, subjects: int | None = None, faces: int | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"name": gallery.name, "created_at": gallery.created_at}
    if subjects is not None:
        out.update(subjects=subjects, faces=faces)
    return out


def _subject_json(subject: Subject) -> dict[str, Any]:
    return {"id": subject.id, "name": subject.name, "meta": subject.meta, "faces": subject.face_count,
            "created_at": subject.created_at}


def _negative_json(record: NegativeRecord, subject: Subject, gallery: Gallery) -> dict[str, Any]:
    return {"id": record.id, "subject": subject.id, "gallery": gallery.name, "source": record.source,
            "model_id": record.model_id, "created_at": record.created_at}


def _face_json(record: FaceRecord, subject: Subject | None = None, gallery: Gallery | None = None) -> dict[str, Any]:
    out: dict[str, Any] = {"id": record.id, "box": record.box, "landmarks": record.landmarks,
                           "det_score": round(record.det_score, 4), "quality": round(record.quality, 4),
                           "model_id": record.model_id, "photo_hash": record.photo_hash,
                           "image_saved": record.image_key is not None, "created_at": record.created_at}
    if subject is not None:
        out["subject"] = subject.id
    if gallery is not None:
        out["gallery"] = gallery.name
    return out


def _job_json(job: dict[str, Any]) -> dict[str, Any]:
    result = {k: v for k, v in job["result"].items() if k != "params"}
    return {"id": job["id"], "kind": job["kind"], "status": job["status"], "done": job["done"], "total": job["total"],
            "result": result, "created_at": job["created_at"], "updated_at": job["updated_at"]}


async def _gallery_of(request: ApiRequest, ctx: RepoContext) -> Gallery:
    return await ctx.repo.gallery(request.tenant, request.path_params["gallery"])


async def _subject_of(request: ApiRequest, ctx: RepoContext) -> tuple[Gallery, Subject]:
    gallery = await _gallery_of(request, ctx)
    return gallery, await ctx.repo.subject(gallery, request.path_params["subject"])


# -- auth ---------------------------------------------------------------------------
async def login(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    body = request.json_object()
    client_id, secret = body.get("client_id"), body.get("client_secret")
    if not isinstance(client_id, str) or not isinstance(secret, str):
        raise BadParam("client_id and client_secret are required", "client_id")
    return ApiResponse(200, (await asyncio.to_thread(ctx.auth.login, client_id, secret)).body())


async def refresh(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    token = request.json_object().get("refresh_token")
    if not isinstance(token, str):
        raise BadParam("refresh_token is required", "refresh_token")
    return ApiResponse(200, (await asyncio.to_thread(ctx.auth.refresh, token)).body())


# -- galleries ------------------------------------------------------------------------
async def list_galleries(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    rows = await ctx.repo.list_galleries(request.tenant)
    return ApiResponse(200, {"galleries": [_gallery_json(g, s, f) for g, s, f in rows]})


async def create_gallery(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    name = p.name(request.json_object().get("name"), "name")
    gallery = await ctx.repo.create_gallery(request.tenant, name)
    return ApiResponse(201, _gallery_json(gallery, 0, 0))


async def get_gallery(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery = await _gallery_of(request, ctx)
    # "version": the gallery's change sequence in the database; "indexed_version": what this node's
    # index holds (equal once every change has reached it: see docs/nodes.md).
    return ApiResponse(200, _gallery_json(gallery, None) | {"faces": ctx.repo.face_count(gallery.id),
                                                            "version": gallery.version,
                                                            "indexed_version": ctx.repo.indexed_version(gallery.id)})


async def rename_gallery(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery = await _gallery_of(request, ctx)
    name = p.name(request.json_object().get("name"), "name")
    return ApiResponse(200, _gallery_json(await ctx.repo.rename_gallery(gallery, name)))


async def delete_gallery(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    await ctx.repo.delete_gallery(await _gallery_of(request, ctx))
    return ApiResponse(204)


# -- subjects -------------------------------------------------------------------------
async def list_subjects(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery = await _gallery_of(request, ctx)
    offset = request.int_param("offset", 0, lo=0, hi=10**9)
    limit = request.int_param("limit", 100, lo=1, hi=1000)
    subjects, total = await ctx.repo.list_subjects(gallery, offset, limit)
    return ApiResponse(200, {"subjects": [_subject_json(s) for s in subjects], "total": total,
                             "offset": offset, "limit": limit})


async def create_subject(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery = await _gallery_of(request, ctx)
    body = request.json_object()
    name = p.label(body.get("name"), "name")
    subject_id = p.name(body["id"], "id") if "id" in body else uuid.uuid4().hex
    meta = body.get("meta", {})
    if not isinstance(meta, dict):
        raise BadParam("meta must be a JSON object", "meta")
    subject = await ctx.repo.create_subject(gallery, subject_id, name, meta)
    return ApiResponse(201, _subject_json(subject))


async def get_subject(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    _, subject = await _subject_of(request, ctx)
    return ApiResponse(200, _subject_json(subject))


async def update_subject(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery, subject = await _subject_of(request, ctx)
    body = request.json_object()
    name = p.label(body["name"], "name") if "name" in body else None
    meta = body.get("meta")
    if meta is not None and not isinstance(meta, dict):
        raise BadParam("meta must be a JSON object", "meta")
    return ApiResponse(200, _subject_json(await ctx.repo.update_subject(gallery, subject, name, meta)))


async def delete_subject(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery, subject = await _subject_of(request, ctx)
    await ctx.repo.delete_subject(gallery, subject)
    return ApiResponse(204)


# -- faces ----------------------------------------------------------------------------
async def add_faces(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery, subject = await _subject_of(request, ctx)
    params = p.merged(request)
    data = p.image(request, params, "file")
    records = await ctx.repo.add_faces(gallery, subject, data,
                                       all_faces=p.boolean(params.get("all_faces", False), "all_faces"),
                                       force=p.boolean(params.get("force", False), "force"),
                                       choice=face_choice(params))
    return ApiResponse(201, {"faces": [_face_json(r, subject, gallery) for r in records]})


async def list_faces(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery, subject = await _subject_of(request, ctx)
    records = await ctx.repo.faces_of_subject(subject)
    return ApiResponse(200, {"faces": [_face_json(r, subject, gallery) for r in records]})


async def get_face(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    record, gallery = await ctx.repo.face(request.tenant, request.path_params["face_id"])
    subject = await ctx.repo.subject_of_face(record)
    return ApiResponse(200, _face_json(record, subject, gallery))


async def delete_face(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    await ctx.repo.delete_face(request.tenant, request.path_params["face_id"])
    return ApiResponse(204)


async def face_image(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    data = await ctx.repo.face_image(request.tenant, request.path_params["face_id"])
    if data is None:
        raise NotFound("the original image was not kept (save_images is off)", "face_id")
    return ApiResponse(200, data, content_type="application/octet-stream")


async def face_thumbnail(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    data = await ctx.repo.face_thumbnail(request.tenant, request.path_params["face_id"])
    if data is None:
        raise NotFound("no thumbnail", "face_id")
    return ApiResponse(200, data, content_type="image/jpeg")


# -- feedback: "this face is not X" ------------------------------------------------------
async def add_negative(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery, subject = await _subject_of(request, ctx)
    params = p.merged(request)
    source = params.get("source", "")
    if not isinstance(source, str) or len(source) > 200:
        raise BadParam("source must be a string of at most 200 characters (what the face was: an event...)",
                       "source")
    record, closeness = await ctx.repo.add_negative(
        gallery, subject, p.image(request, params, "file"), source=source, choice=face_choice(params),
        force=p.boolean(params.get("force", False), "force"))
    return ApiResponse(201, _negative_json(record, subject, gallery) | {"similarity": round(closeness, 4)})


async def list_negatives(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    gallery, subject = await _subject_of(request, ctx)
    records = await ctx.repo.negatives_of_subject(subject)
    return ApiResponse(200, {"negatives": [_negative_json(r, subject, gallery) for r in records]})


async def delete_negative(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    await ctx.repo.delete_negative(request.tenant, request.path_params["negative_id"])
    return ApiResponse(204)


# -- detect / verify / identify ------------------------------------------------------------
async def detect(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    params = p.merged(request)
    plugins = p.string_list(params.get("face_plugins"), "face_plugins")
    unknown = [x for x in plugins if x not in (*ATTRIBUTE_PLUGINS, "embedding", "landmarks")]
    if unknown:
        raise BadParam(f"unknown face_plugins {unknown}; known: {', '.join((*ATTRIBUTE_PLUGINS, 'embedding'))}",
                       "face_plugins")
    image = p.image(request, params, "file")  # decoded where it is analysed, off the event loop
    limit = int(p.number(params.get("limit"), "limit", 0, 0, 1000))
    det = p.number(params.get("det_prob_threshold"), "det_prob_threshold", 0.0, 0.0, 1.0)
    faces = await ctx.repo.analyze(image, attributes=[x for x in plugins if x in ATTRIBUTE_PLUGINS],
                                   max_faces=limit or None, embed="embedding" in plugins)
    return ApiResponse(200, {"faces": [face_to_json(f, embedding="embedding" in plugins)
                                       for f in faces if f.det_score >= det]})


async def _verify_references(request: ApiRequest, ctx: RepoContext, params: dict[str, Any],
                             quality: float) -> tuple[np.ndarray, float]:
    """What verify compares its probe with (one embedding per row), and the lower of the two qualities."""
    repo = ctx.repo
    second = p.optional_image(request, params, "image2")
    if second is not None:
        reference, reference_face = await repo.embedding_of(second, "image2", face_choice(params, "2"))
        return reference[None], min(quality, reference_face.quality.score if reference_face.quality else 0.0)
    if params.get("face_id"):
        record, _g = await repo.face(request.tenant, str(params["face_id"]))
        return repo.face_embedding(record)[None], quality
    if params.get("subject"):
        gallery = await repo.gallery(request.tenant, p.name(params.get("gallery"), "gallery"))
        subject = await repo.subject(gallery, str(params["subject"]))
        return await repo.subject_embeddings(subject), quality
    raise BadParam("give image2, face_id, or gallery + subject to verify against", "image2")


async def verify(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    repo = ctx.repo
    params = p.merged(request)
    policy = repo.policy(params.get("threshold"))
    first = p.optional_image(request, params, "image1") or p.image(request, params, "file")
    probe, probe_face = await repo.embedding_of(first, "image1", face_choice(params))
    refs, quality = await _verify_references(request, ctx, params,
                                             probe_face.quality.score if probe_face.quality else 0.0)
    similarity = float((refs @ probe).max())
    # 1:1: the rate is a false accept rate; against a subject, one comparison per face of it.
    threshold = repo.threshold_for(policy, quality, len(refs))
    return ApiResponse(200, {"similarity": round(similarity, 4), "threshold": round(threshold, 4),
                             "verified": similarity >= threshold and quality >= policy.min_quality,
                             "quality": round(quality, 4), "policy": policy.describe()})


async def identify(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    repo = ctx.repo
    params = p.merged(request)
    galleries = p.string_list(params.get("galleries"), "galleries")
    if not galleries:  # none named: every gallery of the tenant
        galleries = [g.name for g, _s, _f in await ctx.repo.list_galleries(request.tenant)]
    image = p.image(request, params, "file")  # decoded where it is analysed, off the event loop
    policy = repo.policy(params.get("threshold"))
    repo.threshold_for(policy, 1.0, 1)  # a rate needs a calibration: fail before the work
    prediction_count = int(p.number(params.get("prediction_count"), "prediction_count", 1, 1, 100))
    results = await repo.identify(
        request.tenant, galleries, image, prediction_count=prediction_count,
        limit=int(p.number(params.get("limit"), "limit", 0, 0, 1000)),
        det_prob_threshold=p.number(params.get("det_prob_threshold"), "det_prob_threshold", 0.0, 0.0, 1.0),
        policy=policy,
    )
    out = []
    for r in results:
        subjects = {m.face_id: (s, g) for m, s, g in r.candidates}

        def shown(face_id: Any) -> dict[str, Any] | None:
            found = subjects.get(face_id)
            return None if found is None else {"id": found[0].id, "name": found[0].name, "gallery": found[1].name}

        candidates = [{"subject": s.id, "name": s.name, "gallery": g.name, "similarity": round(m.similarity, 4),
                       "face_id": m.face_id} for m, s, g in r.candidates]
        named = r.decision.match
        out.append(face_to_json(r.face) | {
            # The subject named (at most one), then every candidate however far: an app can show why.
            "matches": [c for c in candidates if named is not None and c["face_id"] == named.key],
            "candidates": candidates[:prediction_count],
            "decision": r.decision.as_json(shown) | {"policy": policy.describe()},
        })
    return ApiResponse(200, {"faces": out})


# -- jobs -----------------------------------------------------------------------------
async def bulk_enrol(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    params = p.merged(request)
    data = p.zip_of_items(params["items"]) if "items" in params and not request.files \
        else p.uploaded_zip(request, "<subject>/<image> files (or JSON items: [{subject, image}])")
    gallery = request.path_params["gallery"]
    await ctx.repo.gallery(request.tenant, gallery)  # 404 before 202
    job = await ctx.jobs.submit_zip(request.tenant, "enrol", {"gallery": gallery}, data,
                                    max_files=ctx.max_zip_files, max_total_bytes=ctx.max_zip_bytes)
    return ApiResponse(202, _job_json(job) | {"events": f"/topic/jobs.{job['id']}"})


async def cancel_job(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    job = await ctx.jobs.cancel(request.tenant, request.path_params["job"])
    return ApiResponse(200, _job_json(job))


async def get_job(request: ApiRequest, ctx: RepoContext) -> ApiResponse:
    job = await ctx.jobs.job(request.tenant, request.path_params["job"])
    return ApiResponse(200, _job_json(job))


_SUBJECT = "/api/v1/galleries/{gallery}/subjects/{subject}"

ROUTES: tuple[RouteDef[RepoContext], ...] = (
    RouteDef("POST", "/api/v1/galleries/{gallery}/enrol", bulk_enrol,
             "bulk enrolment: a zip of <subject>/<image>, or JSON items [{subject, image}]; 202 with a job",
             contract=c.BULK_ENROL),
    RouteDef("GET", "/api/v1/jobs/{job}", get_job, "a job's status and progress", contract=c.JOB),
    # POST .../cancel, not DELETE: a cancelled job is still there to be read (its items done, its failures).
    RouteDef("POST", "/api/v1/jobs/{job}/cancel", cancel_job,
             "cancel an unfinished job (items done stay done); 409 if it has ended", contract=c.CANCEL_JOB),
    RouteDef("POST", "/api/v1/login", login, "client id + secret -> access and refresh tokens", public=True,
             contract=c.LOGIN),
    RouteDef("POST", "/api/v1/token/refresh", refresh, "refresh token -> new tokens (one use)", public=True,
             contract=c.REFRESH),
    RouteDef("GET", "/api/v1/galleries", list_galleries, "list galleries", contract=c.LIST_GALLERIES),
    RouteDef("POST", "/api/v1/galleries", create_gallery, "create a gallery", contract=c.CREATE_GALLERY),
    RouteDef("GET", "/api/v1/galleries/{gallery}", get_gallery, "get a gallery", contract=c.GET_GALLERY),
    RouteDef("PATCH", "/api/v1/galleries/{gallery}", rename_gallery, "rename a gallery", contract=c.RENAME_GALLERY),
    RouteDef("DELETE", "/api/v1/galleries/{gallery}", delete_gallery, "delete a gallery with its subjects",
             contract=c.DELETE_GALLERY),
    RouteDef("GET", "/api/v1/galleries/{gallery}/subjects", list_subjects, "list subjects (offset, limit)",
             contract=c.LIST_SUBJECTS),
    RouteDef("POST", "/api/v1/galleries/{gallery}/subjects", create_subject, "create a subject",
             contract=c.CREATE_SUBJECT),
    RouteDef("GET", _SUBJECT, get_subject, "get a subject", contract=c.GET_SUBJECT),
    RouteDef("PATCH", _SUBJECT, update_subject, "rename (onto an existing name: merge) or set meta",
             contract=c.UPDATE_SUBJECT),
    RouteDef("DELETE", _SUBJECT, delete_subject, "delete with its faces", contract=c.DELETE_SUBJECT),
    RouteDef("POST", _SUBJECT + "/faces", add_faces, "add a face from an image (multipart file or base64 JSON)",
             contract=c.ADD_FACES),
    RouteDef("GET", _SUBJECT + "/faces", list_faces, "list a subject's faces", contract=c.LIST_FACES),
    RouteDef("POST", _SUBJECT + "/negatives", add_negative,
             "feedback 'this face is not the subject' (an image or an event's crop): that face, and faces "
             "closer to it than to the subject, are not named as the subject again", contract=c.ADD_NEGATIVE),
    RouteDef("GET", _SUBJECT + "/negatives", list_negatives, "a subject's negative examples",
             contract=c.LIST_NEGATIVES),
    RouteDef("DELETE", "/api/v1/negatives/{negative_id}", delete_negative, "take a correction back",
             contract=c.DELETE),
    RouteDef("GET", "/api/v1/faces/{face_id}", get_face, "get a face", contract=c.GET_FACE),
    RouteDef("DELETE", "/api/v1/faces/{face_id}", delete_face, "delete a face", contract=c.DELETE),
    RouteDef("GET", "/api/v1/faces/{face_id}/image", face_image, "the original image", contract=c.FACE_IMAGE),
    RouteDef("GET", "/api/v1/faces/{face_id}/thumbnail", face_thumbnail, "the aligned face, JPEG",
             contract=c.FACE_THUMBNAIL),
    RouteDef("POST", "/api/v1/detect", detect, "faces, boxes, landmarks, quality, face_plugins", contract=c.DETECT,
             safe=True),
    RouteDef("POST", "/api/v1/verify", verify, "1:1: image vs image2, face_id or subject", contract=c.VERIFY,
             safe=True),
    RouteDef("POST", "/api/v1/identify", identify, "1:N against galleries (none named: all of them)",
             contract=c.IDENTIFY, safe=True),
)
