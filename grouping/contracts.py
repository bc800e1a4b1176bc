"""What each grouping route takes and answers (api.contract), for ``ROUTES`` in grouping.handlers."""

from __future__ import annotations

from api.contract import BASE64, FILE, Body, Contract, Param, Reply
from api.errors import Conflict, NoFace
from api.names import LABEL_PATTERN
from api.schemas import array, boolean, integer, nullable, number, obj, string
from repo.contracts import IMAGE_TYPES, JOB_SCHEMA, NAME, ZIP_TYPE

__all__ = (
    "LIST_GROUPS", "GROUP_IMAGE", "REFINE", "GROUP_ZIP", "GET_GROUP", "DELETE_GROUP", "MERGE", "MOVE_FACES",
    "REMOVE_FACE", "FACE_CROP", "IGNORE", "PROMOTE", "STATUSES", "SUBJECT_ID_PATTERN",
)

STATUSES = ("active", "ignored", "promoted")
SUBJECT_ID_PATTERN = r"^[A-Za-z0-9_.-]{1,200}$"  # what a promoted group's subject id may be

_ID = string(min_length=1, max_length=200)
_TIME = number(description="seconds since the epoch")
GROUP = obj({
    "id": string(), "status": string(enum=STATUSES),
    "subject": nullable(obj({"gallery": string(), "subject": string()}, description="where it was promoted to")),
    "face_count": integer(0), "best_face": nullable(string()), "first_seen": _TIME, "last_seen": _TIME,
    "created_at": _TIME, "cameras": array(string()),
}, ["id", "status", "subject", "face_count", "best_face", "first_seen", "last_seen", "created_at", "cameras"])
GROUP_FACE = obj({"id": string(), "group": string(), "source": string(), "camera": nullable(string()),
                  "track": nullable(integer()), "seen_at": _TIME, "quality": number()},
                 ["id", "group", "source", "camera", "track", "seen_at", "quality"])
PLACED = obj({"group": string(), "face": string(), "new_group": boolean(), "box": array(number(), min_items=4,
              max_items=4), "quality": number()}, ["group", "face", "new_group", "box", "quality"])

_GROUP_PATH = (Param("group", _ID),)
_IDS = array(_ID, min_items=1)

LIST_GROUPS = Contract(
    (Reply(200, obj({"groups": array(GROUP), "total": integer(0)}, ["groups", "total"])),),
    query=(Param("camera", string(max_length=200)), Param("since", number(description="seconds since the epoch")),
           Param("until", number(description="seconds since the epoch")), Param("status", string(enum=STATUSES)),
           Param("offset", integer(0, 10**9)), Param("limit", integer(1, 500))))
GROUP_IMAGE = Contract(
    (Reply(200, obj({"faces": array(PLACED)}, ["faces"])),),
    body=Body(json=obj({"image": BASE64, "file": BASE64})
              | {"anyOf": [{"required": ["image"]}, {"required": ["file"]}]},
              multipart=obj({"file": FILE, "image": FILE}, extra=False) | {"anyOf": [{"required": ["file"]},
                                                                         {"required": ["image"]}]},
              files={"file": IMAGE_TYPES, "image": IMAGE_TYPES}), errors=(NoFace,))
REFINE = Contract((Reply(200, obj({"merged": integer(0)}, ["merged"])),))
GROUP_ZIP = Contract(
    (Reply(202, JOB_SCHEMA, description="accepted: progress on the job's topic and at GET /api/v1/jobs/{id}"),),
    body=Body(multipart=obj({"file": FILE, "zip": FILE}, extra=False, description="a zip of images")
              | {"anyOf": [{"required": ["file"]}, {"required": ["zip"]}]},
              files={"file": ZIP_TYPE, "zip": ZIP_TYPE}))
GET_GROUP = Contract((Reply(200, {"allOf": [GROUP, obj({"faces": array(GROUP_FACE)}, ["faces"])]}),),
                     path=_GROUP_PATH)
DELETE_GROUP = Contract((Reply(204, description="deleted"),), path=_GROUP_PATH)
MERGE = Contract((Reply(200, GROUP),), body=Body(json=obj({"groups": _IDS}, ["groups"])), path=_GROUP_PATH)
MOVE_FACES = Contract((Reply(200, GROUP),), body=Body(json=obj({"faces": _IDS}, ["faces"])), path=_GROUP_PATH)
REMOVE_FACE = Contract((Reply(204, description="removed"),), path=_GROUP_PATH)
FACE_CROP = Contract((Reply(200, media_type="image/jpeg", description="the face's crop"),), path=_GROUP_PATH)
IGNORE = Contract((Reply(200, GROUP),), body=Body(json=obj({"ignore": boolean()}), required=False),
                  path=_GROUP_PATH)
PROMOTE = Contract((Reply(200, GROUP),), body=Body(json=obj({
    "gallery": NAME, "subject": string(pattern=SUBJECT_ID_PATTERN,
                                       description="1-200 ASCII letters, digits, '.', '_' or '-'"),
    "name": string(pattern=LABEL_PATTERN, description="1-200 characters without control characters")},
    ["gallery"])), errors=(Conflict,), path=_GROUP_PATH)
