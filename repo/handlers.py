"""The repo's API handlers, registered once and served over REST and STOMP."""

from __future__ import annotations

import asyncio
import io
import uuid
import zipfile
from typing import Any

from api.errors import BadParam, NotFound
from api.names import NAME as _NAME
from api.request import ApiRequest, ApiResponse
from api.routing import Router
from vision.attribute_names import ATTRIBUTE_NAMES
from vision.selection import FaceChoice, FaceChoiceError

from .auth import RepoAuth
from .face_json import face_to_json
from .jobs import JobRunner
from .service import FaceRepository
from .store import FaceRecord, Gallery, NegativeRecord, Subject

__all__ = ("register_repo_routes", "uploaded_image", "uploaded_zip")

ATTRIBUTE_PLUGINS = ATTRIBUTE_NAMES  # the face_plugins that are attributes


def _name(value: Any, param: str) -> str:
    if not isinstance(value, str) or not _NAME.match(value):
        raise BadParam(f"{param} must be 1-200 letters, digits, spaces, '.', '_' or '-'", param)
    return value


def _bool(value: Any, param: str) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "1", "yes", "false", "0", "no", ""):
        return value.lower() in ("true", "1", "yes")
    raise BadParam(f"{param} must be true or false", param)


def _number(value: Any, param: str, default: float, lo: float, hi: float) -> float:
    if value is None or value == "":
        return default
    try:
        number = float(value)
    except (TypeError, ValueError):
        raise BadParam(f"{param} must be a number", param) from None
    if not lo <= number <= hi:
        raise BadParam(f"{param} must be between {lo} and {hi}", param)
    return number


def _list(value: Any, param: str) -> list[str]:
    if value is None or value == "":
        return []
    if isinstance(value, str):
        return [v.strip() for v in value.split(",") if v.strip()]
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return value
    raise BadParam(f"{param} must be a list of strings or a comma-separated string", param)


def _face_choice(params: dict[str, Any], suffix: str = "") -> FaceChoice | None:
    """``face_index`` (as /detect lists the faces) or ``face_box`` [x1, y1, x2, y2] (or "x1,y1,x2,y2")."""
    index, box = params.get("face_index" + suffix), params.get("face_box" + suffix)
    if index in (None, "") and box in (None, ""):
        return None
    try:
        if index not in (None, ""):
            if box not in (None, ""):
                raise FaceChoiceError("name a face by face_index or by face_box, not both")
            number = _number(index, "face_index" + suffix, 0, 0, 1000)
            if number != int(number):
                raise FaceChoiceError("face_index must be a whole number")
            return FaceChoice(index=int(number))
        values = [v.strip() for v in box.split(",")] if isinstance(box, str) else box
        if not isinstance(values, list) or len(values) != 4:
            raise FaceChoiceError("face_box must be four numbers x1, y1, x2, y2")
        x1, y1, x2, y2 = (float(v) for v in values)
        return FaceChoice(box=(x1, y1, x2, y2))
    except (FaceChoiceError, TypeError, ValueError) as exc:
        param = "face_index" + suffix if index not in (None, "") else "face_box" + suffix
        raise BadParam(str(exc) if isinstance(exc, FaceChoiceError) else f"{param} must be numbers", param) from None


def _params(request: ApiRequest) -> dict[str, Any]:
    """Body fields (JSON or multipart form) over query parameters."""
    merged: dict[str, Any] = dict(request.query)
    merged.update(request.json_object())
    return merged


def _image(request: ApiRequest, params: dict[str, Any], name: str, repo: FaceRepository) -> bytes:
    data = _optional_image(request, params, name, repo)
    if data is None:
        raise BadParam(f"missing image {name!r} (multipart file or base64 in JSON)", name)
    return data


def _optional_image(request: ApiRequest, params: dict[str, Any], name: str, repo: FaceRepository) -> bytes | None:
    for upload in request.files:
        if upload.name == name or (name == "file" and upload.name in ("image", "file")):
            return upload.data
    if name in params:
        return repo.b64(params[name], name)
    if name == "file" and "image" in params:
        return repo.b64(params["image"], "image")
    if "url" in params or f"{name}_url" in params:
        raise BadParam("image URLs are not fetched; send the image bytes", name)
    return None


def uploaded_image(request: ApiRequest, repo: FaceRepository) -> bytes:
    """The request's one image: multipart ``file``/``image`` or base64 in JSON; URLs refused."""
    return _image(request, _params(request), "file", repo)


def zip_of_items(items: Any, repo: FaceRepository) -> bytes:
    """A JSON list ``[{"subject", "image": base64}, ...]`` as the zip a bulk job spools, so both
    forms take the one durable path (what STOMP clients send, where multipart is awkward)."""
    if not isinstance(items, list) or not items:
        raise BadParam("items must be a non-empty list of {subject, image}", "items")
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_STORED) as archive:  # images are compressed already
        for position, item in enumerate(items):
            where = f"items[{position}]"
            if not isinstance(item, dict):
                raise BadParam(f"{where} must be an object with subject and image", "items")
            subject = _name(item.get("subject"), f"{where}.subject")
            if subject.strip(".") == "":
                raise BadParam(f"{where}.subject may not be only dots", "items")
            archive.writestr(f"{subject}/{position:06d}.jpg", repo.b64(item.get("image"), f"{where}.image"))
    return buffer.getvalue()


def uploaded_zip(request: ApiRequest, contents: str) -> bytes:
    """The zip sent as multipart ``file`` (or ``zip``); ``contents`` says what it should hold, for the error."""
    uploads = [f for f in request.files if f.name in ("file", "zip")]
    if not uploads:
        raise BadParam(f"send a zip of {contents} as multipart field 'file'", "file")
    return uploads[0].data


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


def register_repo_routes(router: Router, repo: FaceRepository, auth: RepoAuth, jobs: JobRunner,
                         max_zip_files: int = 10_000, max_zip_bytes: int = 2 * 1024**3) -> None:
    store = repo.store

    async def gallery_of(request: ApiRequest) -> Gallery:
        return await asyncio.to_thread(store.gallery, request.tenant, request.path_params["gallery"])

    async def subject_of(request: ApiRequest) -> tuple[Gallery, Subject]:
        gallery = await gallery_of(request)
        return gallery, await asyncio.to_thread(store.subject, gallery.id, request.path_params["subject"])

    # -- auth ---------------------------------------------------------------------
    async def login(request: ApiRequest) -> ApiResponse:
        body = request.json_object()
        client_id, secret = body.get("client_id"), body.get("client_secret")
        if not isinstance(client_id, str) or not isinstance(secret, str):
            raise BadParam("client_id and client_secret are required", "client_id")
        return ApiResponse(200, (await asyncio.to_thread(auth.login, client_id, secret)).body())

    async def refresh(request: ApiRequest) -> ApiResponse:
        token = request.json_object().get("refresh_token")
        if not isinstance(token, str):
            raise BadParam("refresh_token is required", "refresh_token")
        return ApiResponse(200, (await asyncio.to_thread(auth.refresh, token)).body())

    # -- galleries -----------------------------------------------------------------
    async def list_galleries(request: ApiRequest) -> ApiResponse:
        rows = await asyncio.to_thread(store.list_galleries, request.tenant)
        return ApiResponse(200, {"galleries": [_gallery_json(g, s, f) for g, s, f in rows]})

    async def create_gallery(request: ApiRequest) -> ApiResponse:
        name = _name(request.json_object().get("name"), "name")
        gallery = await asyncio.to_thread(store.create_gallery, request.tenant, name)
        return ApiResponse(201, _gallery_json(gallery, 0, 0))

    async def get_gallery(request: ApiRequest) -> ApiResponse:
        gallery = await gallery_of(request)
        return ApiResponse(200, _gallery_json(gallery, None) | {"faces": repo.face_count(gallery.id)})

    async def rename_gallery(request: ApiRequest) -> ApiResponse:
        gallery = await gallery_of(request)
        name = _name(request.json_object().get("name"), "name")
        return ApiResponse(200, _gallery_json(await repo.rename_gallery(gallery, name)))

    async def delete_gallery(request: ApiRequest) -> ApiResponse:
        await repo.delete_gallery(await gallery_of(request))
        return ApiResponse(204)

    # -- subjects ------------------------------------------------------------------
    async def list_subjects(request: ApiRequest) -> ApiResponse:
        gallery = await gallery_of(request)
        offset = request.int_param("offset", 0, lo=0, hi=10**9)
        limit = request.int_param("limit", 100, lo=1, hi=1000)
        subjects, total = await asyncio.to_thread(store.list_subjects, gallery.id, offset, limit)
        return ApiResponse(200, {"subjects": [_subject_json(s) for s in subjects], "total": total,
                                 "offset": offset, "limit": limit})

    async def create_subject(request: ApiRequest) -> ApiResponse:
        gallery = await gallery_of(request)
        body = request.json_object()
        name = _name(body.get("name"), "name")
        subject_id = _name(body.get("id") or uuid.uuid4().hex, "id")
        meta = body.get("meta", {})
        if not isinstance(meta, dict):
            raise BadParam("meta must be a JSON object", "meta")
        subject = await asyncio.to_thread(store.create_subject, gallery.id, subject_id, name, meta)
        return ApiResponse(201, _subject_json(subject))

    async def get_subject(request: ApiRequest) -> ApiResponse:
        _, subject = await subject_of(request)
        return ApiResponse(200, _subject_json(subject))

    async def update_subject(request: ApiRequest) -> ApiResponse:
        gallery, subject = await subject_of(request)
        body = request.json_object()
        name = _name(body["name"], "name") if "name" in body else None
        meta = body.get("meta")
        if meta is not None and not isinstance(meta, dict):
            raise BadParam("meta must be a JSON object", "meta")
        return ApiResponse(200, _subject_json(await repo.update_subject(gallery, subject, name, meta)))

    async def delete_subject(request: ApiRequest) -> ApiResponse:
        gallery, subject = await subject_of(request)
        await repo.delete_subject(gallery, subject)
        return ApiResponse(204)

    # -- faces ---------------------------------------------------------------------
    async def add_faces(request: ApiRequest) -> ApiResponse:
        gallery, subject = await subject_of(request)
        params = _params(request)
        data = _image(request, params, "file", repo)
        records = await repo.add_faces(gallery, subject, data,
                                       all_faces=_bool(params.get("all_faces", False), "all_faces"),
                                       force=_bool(params.get("force", False), "force"), choice=_face_choice(params))
        return ApiResponse(201, {"faces": [_face_json(r, subject, gallery) for r in records]})

    async def list_faces(request: ApiRequest) -> ApiResponse:
        gallery, subject = await subject_of(request)
        records = await asyncio.to_thread(store.faces_of_subject, subject.pk)
        return ApiResponse(200, {"faces": [_face_json(r, subject, gallery) for r in records]})

    async def get_face(request: ApiRequest) -> ApiResponse:
        record, gallery = await asyncio.to_thread(store.face, request.tenant, request.path_params["face_id"])
        subject = (await asyncio.to_thread(store.subjects_by_pk, [record.subject_pk]))[record.subject_pk]
        return ApiResponse(200, _face_json(record, subject, gallery))

    async def delete_face(request: ApiRequest) -> ApiResponse:
        await repo.delete_face(request.tenant, request.path_params["face_id"])
        return ApiResponse(204)

    # -- feedback: "this face is not X" ------------------------------------------------
    async def add_negative(request: ApiRequest) -> ApiResponse:
        gallery, subject = await subject_of(request)
        params = _params(request)
        source = params.get("source", "")
        if not isinstance(source, str) or len(source) > 200:
            raise BadParam("source must be a string of at most 200 characters (what the face was: an event...)",
                           "source")
        record, closeness = await repo.add_negative(
            gallery, subject, _image(request, params, "file", repo), source=source, choice=_face_choice(params),
            force=_bool(params.get("force", False), "force"))
        return ApiResponse(201, _negative_json(record, subject, gallery) | {"similarity": round(closeness, 4)})

    async def list_negatives(request: ApiRequest) -> ApiResponse:
        gallery, subject = await subject_of(request)
        records = await asyncio.to_thread(store.negatives_of_subject, subject.pk)
        return ApiResponse(200, {"negatives": [_negative_json(r, subject, gallery) for r in records]})

    async def delete_negative(request: ApiRequest) -> ApiResponse:
        await repo.delete_negative(request.tenant, request.path_params["negative_id"])
        return ApiResponse(204)

    async def face_image(request: ApiRequest) -> ApiResponse:
        record, _ = await asyncio.to_thread(store.face, request.tenant, request.path_params["face_id"])
        data = await asyncio.to_thread(repo.images.get, record.image_key) if record.image_key else None
        if data is None:
            raise NotFound("the original image was not kept (save_images is off)", "face_id")
        return ApiResponse(200, data, content_type="application/octet-stream")

    async def face_thumbnail(request: ApiRequest) -> ApiResponse:
        record, _ = await asyncio.to_thread(store.face, request.tenant, request.path_params["face_id"])
        data = await asyncio.to_thread(store.face_thumbnail, record.id)
        if data is None:
            raise NotFound("no thumbnail", "face_id")
        return ApiResponse(200, data, content_type="image/jpeg")

    # -- detect / verify / identify ---------------------------------------------------
    async def detect(request: ApiRequest) -> ApiResponse:
        params = _params(request)
        plugins = _list(params.get("face_plugins"), "face_plugins")
        unknown = [p for p in plugins if p not in (*ATTRIBUTE_PLUGINS, "embedding", "landmarks")]
        if unknown:
            raise BadParam(f"unknown face_plugins {unknown}; known: {', '.join((*ATTRIBUTE_PLUGINS, 'embedding'))}",
                           "face_plugins")
        image = repo.decode(_image(request, params, "file", repo), "file")
        limit = int(_number(params.get("limit"), "limit", 0, 0, 1000))
        det = _number(params.get("det_prob_threshold"), "det_prob_threshold", 0.0, 0.0, 1.0)
        faces = await repo.analyze(image, attributes=[p for p in plugins if p in ATTRIBUTE_PLUGINS],
                                   max_faces=limit or None, embed="embedding" in plugins)
        return ApiResponse(200, {"faces": [face_to_json(f, embedding="embedding" in plugins)
                                           for f in faces if f.det_score >= det]})

    async def verify(request: ApiRequest) -> ApiResponse:
        params = _params(request)
        policy = repo.policy(params.get("threshold"))
        first = _optional_image(request, params, "image1", repo) or _image(request, params, "file", repo)
        probe, probe_face = await repo.embedding_of(first, "image1", _face_choice(params))
        quality = probe_face.quality.score if probe_face.quality else 0.0
        second = _optional_image(request, params, "image2", repo)
        if second is not None:
            reference, reference_face = await repo.embedding_of(second, "image2", _face_choice(params, "2"))
            refs = reference[None]
            quality = min(quality, reference_face.quality.score if reference_face.quality else 0.0)
        elif params.get("face_id"):
            record, _g = await asyncio.to_thread(store.face, request.tenant, str(params["face_id"]))
            refs = repo.face_embedding(record)[None]
        elif params.get("subject"):
            gallery = await asyncio.to_thread(store.gallery, request.tenant, _name(params.get("gallery"), "gallery"))
            subject = await asyncio.to_thread(store.subject, gallery.id, str(params["subject"]))
            refs = await repo.subject_embeddings(subject)
        else:
            raise BadParam("give image2, face_id, or gallery + subject to verify against", "image2")
        similarity = float((refs @ probe).max())
        # 1:1: the rate is a false accept rate; against a subject, one comparison per face of it.
        threshold = repo.threshold_for(policy, quality, len(refs))
        return ApiResponse(200, {"similarity": round(similarity, 4), "threshold": round(threshold, 4),
                                 "verified": similarity >= threshold, "quality": round(quality, 4),
                                 "policy": policy.describe()})

    async def identify(request: ApiRequest) -> ApiResponse:
        params = _params(request)
        galleries = _list(params.get("galleries") or params.get("gallery"), "galleries")
        if not galleries:
            raise BadParam("galleries is required", "galleries")
        image = repo.decode(_image(request, params, "file", repo), "file")
        policy = repo.policy(params.get("threshold"))
        repo.threshold_for(policy, 1.0, 1)  # a rate needs a calibration: fail before the work
        results = await repo.identify(
            request.tenant, galleries, image,
            prediction_count=int(_number(params.get("prediction_count"), "prediction_count", 1, 1, 100)),
            limit=int(_number(params.get("limit"), "limit", 0, 0, 1000)),
            det_prob_threshold=_number(params.get("det_prob_threshold"), "det_prob_threshold", 0.0, 0.0, 1.0),
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
                "candidates": candidates,
                "decision": r.decision.as_json(shown) | {"policy": policy.describe()},
            })
        return ApiResponse(200, {"faces": out})

    # -- jobs ----------------------------------------------------------------------
    async def bulk_enrol(request: ApiRequest) -> ApiResponse:
        params = _params(request)
        data = zip_of_items(params["items"], repo) if "items" in params and not request.files \
            else uploaded_zip(request, "<subject>/<image> files (or JSON items: [{subject, image}])")
        gallery = request.path_params["gallery"]
        await asyncio.to_thread(store.gallery, request.tenant, gallery)  # 404 before 202
        job = await jobs.submit_zip(request.tenant, "enrol", {"gallery": gallery}, data,
                                    max_files=max_zip_files, max_total_bytes=max_zip_bytes)
        return ApiResponse(202, _job_json(job) | {"events": f"/topic/jobs.{job['id']}"})

    async def cancel_job(request: ApiRequest) -> ApiResponse:
        job = await asyncio.to_thread(store.cancel_job, request.tenant, request.path_params["job"])
        return ApiResponse(200, _job_json(job))

    async def get_job(request: ApiRequest) -> ApiResponse:
        job = await asyncio.to_thread(store.job, request.tenant, request.path_params["job"])
        return ApiResponse(200, _job_json(job))

    add = router.add
    add("POST", "/api/v1/galleries/{gallery}/enrol", bulk_enrol,
        summary="bulk enrolment: a zip of <subject>/<image>, or JSON items [{subject, image}]; 202 with a job")
    add("GET", "/api/v1/jobs/{job}", get_job, summary="a job's status and progress")
    add("DELETE", "/api/v1/jobs/{job}", cancel_job,
        summary="cancel an unfinished job (items done stay done); 409 if it has ended")
    add("POST", "/api/v1/login", login, public=True, summary="client id + secret -> access and refresh tokens")
    add("POST", "/api/v1/token/refresh", refresh, public=True, summary="refresh token -> new tokens (one use)")
    add("GET", "/api/v1/galleries", list_galleries, summary="list galleries")
    add("POST", "/api/v1/galleries", create_gallery, summary="create a gallery")
    add("GET", "/api/v1/galleries/{gallery}", get_gallery, summary="get a gallery")
    add("PATCH", "/api/v1/galleries/{gallery}", rename_gallery, summary="rename a gallery")
    add("DELETE", "/api/v1/galleries/{gallery}", delete_gallery, summary="delete a gallery with its subjects")
    add("GET", "/api/v1/galleries/{gallery}/subjects", list_subjects, summary="list subjects (offset, limit)")
    add("POST", "/api/v1/galleries/{gallery}/subjects", create_subject, summary="create a subject")
    add("GET", "/api/v1/galleries/{gallery}/subjects/{subject}", get_subject, summary="get a subject")
    add("PATCH", "/api/v1/galleries/{gallery}/subjects/{subject}", update_subject,
        summary="rename (onto an existing name: merge) or set meta")
    add("DELETE", "/api/v1/galleries/{gallery}/subjects/{subject}", delete_subject, summary="delete with its faces")
    add("POST", "/api/v1/galleries/{gallery}/subjects/{subject}/faces", add_faces,
        summary="add a face from an image (multipart file or base64 JSON)")
    add("GET", "/api/v1/galleries/{gallery}/subjects/{subject}/faces", list_faces, summary="list a subject's faces")
    add("POST", "/api/v1/galleries/{gallery}/subjects/{subject}/negatives", add_negative,
        summary="feedback 'this face is not the subject' (an image or an event's crop): that face, and faces "
                "closer to it than to the subject, are not named as the subject again")
    add("GET", "/api/v1/galleries/{gallery}/subjects/{subject}/negatives", list_negatives,
        summary="a subject's negative examples")
    add("DELETE", "/api/v1/negatives/{negative_id}", delete_negative, summary="take a correction back")
    add("GET", "/api/v1/faces/{face_id}", get_face, summary="get a face")
    add("DELETE", "/api/v1/faces/{face_id}", delete_face, summary="delete a face")
    add("GET", "/api/v1/faces/{face_id}/image", face_image, summary="the original image")
    add("GET", "/api/v1/faces/{face_id}/thumbnail", face_thumbnail, summary="the aligned face, JPEG")
    add("POST", "/api/v1/detect", detect, summary="faces, boxes, landmarks, quality, face_plugins")
    add("POST", "/api/v1/verify", verify, summary="1:1: image vs image2, face_id or subject")
    add("POST", "/api/v1/identify", identify, summary="1:N against galleries")
