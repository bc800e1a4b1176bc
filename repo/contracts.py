"""What each repo route takes and answers (api.contract), for ``ROUTES`` in repo.handlers: the
OpenAPI document is generated from these, and every request is checked against them.

Images come as a multipart file part (``file``, also named ``image``) or as base64 in JSON; every
multipart text field is read as the type its schema gives.
"""

from __future__ import annotations

from api.contract import BASE64, FILE, Body, Contract, Param, Reply
from api.errors import AuthFailed, Conflict, NoFace, NotFound
from api.names import LABEL_PATTERN, NAME_PATTERN
from api.schemas import Schema, any_of, array, boolean, integer, nullable, number, obj, string
from vision.attribute_names import ATTRIBUTE_NAMES

__all__ = (
    "LOGIN", "REFRESH", "LIST_GALLERIES", "CREATE_GALLERY", "GET_GALLERY", "RENAME_GALLERY", "DELETE",
    "DELETE_GALLERY",
    "LIST_SUBJECTS", "CREATE_SUBJECT", "GET_SUBJECT", "UPDATE_SUBJECT", "DELETE_SUBJECT", "ADD_FACES", "LIST_FACES",
    "GET_FACE", "FACE_IMAGE", "FACE_THUMBNAIL", "ADD_NEGATIVE", "LIST_NEGATIVES", "DETECT", "VERIFY", "IDENTIFY",
    "BULK_ENROL", "JOB", "CANCEL_JOB", "IMAGE_TYPES", "ZIP_TYPE", "PRESETS", "JOB_SCHEMA", "DETECTED_FACE", "NAME",
    "ME", "LIST_KEYS", "CREATE_KEY", "ROTATE_KEY", "REVOKE_KEY", "THRESHOLD", "present", "as_text",
)

PRESETS = ("strict", "medium", "low")  # facewatch.config.Preset
IMAGE_TYPES = "image/jpeg, image/png, image/webp, image/bmp, image/gif, image/tiff"
ZIP_TYPE = "application/zip"

NAME = string(pattern=NAME_PATTERN, description="1-200 ASCII letters, digits, spaces, '.', '_' or '-', not only dots")
LABEL = string(pattern=LABEL_PATTERN, description="1-200 characters without control characters")
_ID = string(min_length=1, max_length=200)
_TIME = number(description="seconds since the epoch")
_SCORE = number()
_PLUGINS = (*ATTRIBUTE_NAMES, "embedding", "landmarks")
_COORD = r" *-?[0-9]+(\.[0-9]+)? *"  # [0-9], not \d: Python's \d also reads other scripts' digits

# -- replies -------------------------------------------------------------------------------------
GALLERY = obj({"name": NAME, "created_at": _TIME, "subjects": integer(0), "faces": integer(0)},
              ["name", "created_at"])
SUBJECT = obj({"id": NAME, "name": LABEL, "meta": obj({}), "faces": integer(0), "created_at": _TIME},
              ["id", "name", "meta", "faces", "created_at"])
STORED_FACE = obj({
    "id": string(), "box": array(number(), max_items=4, description="x1, y1, x2, y2; empty for a face that came "
                                                                    "without one (promoted from a group)"),
    "landmarks": array(array(number())),
    "det_score": _SCORE, "quality": _SCORE, "model_id": string(), "photo_hash": string(), "image_saved": boolean(),
    "created_at": _TIME, "subject": NAME, "gallery": NAME,
}, ["id", "box", "landmarks", "det_score", "quality", "model_id", "photo_hash", "image_saved", "created_at"])
NEGATIVE = obj({"id": string(), "subject": NAME, "gallery": NAME, "source": string(), "model_id": string(),
                "created_at": _TIME, "similarity": _SCORE},
               ["id", "subject", "gallery", "source", "model_id", "created_at"])
JOB_SCHEMA = obj({
    "id": string(), "kind": string(), "status": string(enum=("queued", "running", "done", "failed", "cancelled")),
    "done": integer(0), "total": integer(0), "result": obj({}), "created_at": _TIME, "updated_at": _TIME,
    "events": string(description="the STOMP topic of its progress"),
}, ["id", "kind", "status", "done", "total"])
TOKENS = obj({"access_token": string(), "token_type": string(enum=("Bearer",)), "expires_in": number(0),
              "refresh_token": string()}, ["access_token", "token_type", "expires_in", "refresh_token"])
DETECTED_FACE = obj({
    "box": obj({"x_min": number(), "y_min": number(), "x_max": number(), "y_max": number(), "probability": _SCORE},
               ["x_min", "y_min", "x_max", "y_max", "probability"]),
    "landmarks": array(array(number(), min_items=2, max_items=2)),
    "quality": obj({}, extra=number()),
    "attributes": obj({}),
    "embedding": array(number()),
}, ["box"])
_POLICY = obj({"threshold": number(), "rate": number(), "margin": number(), "min_quality": number()})
_CANDIDATE = obj({"subject": NAME, "name": LABEL, "gallery": NAME, "similarity": _SCORE, "face_id": string()},
                 ["subject", "name", "gallery", "similarity", "face_id"])
_NAMED = nullable(obj({"subject": nullable(obj({"id": NAME, "name": LABEL, "gallery": NAME})),
                       "similarity": _SCORE}, ["subject", "similarity"]))
_DECISION = obj({"matched": boolean(), "reason": string(), "threshold": number(), "best": _NAMED,
                 "runner_up": _NAMED, "margin": number(), "policy": _POLICY},
                ["matched", "reason", "threshold", "best", "runner_up", "margin", "policy"])
IDENTIFIED_FACE = {"allOf": [DETECTED_FACE, obj({"matches": array(_CANDIDATE), "candidates": array(_CANDIDATE),
                                                 "decision": _DECISION}, ["matches", "candidates", "decision"])]}
VERDICT = obj({"similarity": _SCORE, "threshold": number(), "verified": boolean(), "quality": _SCORE,
               "policy": _POLICY}, ["similarity", "threshold", "verified", "quality", "policy"])


def _faces(item: Schema) -> Schema:
    return obj({"faces": array(item)}, ["faces"])


# -- request parts -------------------------------------------------------------------------------
def present(*names: str) -> Schema:
    """At least one of ``names`` is given."""
    return {"anyOf": [{"required": [name]} for name in names]}


def as_text(fields: dict[str, Schema]) -> dict[str, Schema]:
    """``fields`` as multipart text fields: a list is sent as one comma-separated value, never as
    repeated parts, so the list (and object) forms are left out."""
    out = {}
    for name, schema in fields.items():
        options = [o for o in schema.get("anyOf", [schema]) if o.get("type") not in ("array", "object")]
        out[name] = options[0] if len(options) == 1 else {**schema, "anyOf": options}
    return out


def _image_body(fields: dict[str, Schema], required: tuple[str, ...] = ()) -> Body:
    """An image as base64 ``image`` (or ``file``) in JSON, or as a multipart file part ``file`` (or
    ``image``), with the other ``fields`` (``required`` of them) in either form."""
    json_schema = obj({"image": BASE64, "file": BASE64, **fields}, required) | {"allOf": [present("image", "file")]}
    form_schema = obj({"file": FILE, "image": FILE, **as_text(fields)}, required, extra=False)
    form_schema["allOf"] = [present("file", "image")]
    return Body(json=json_schema, multipart=form_schema, files={"file": IMAGE_TYPES, "image": IMAGE_TYPES})


# The face an image names: face_index (in /detect's order) and/or face_box: a box as /detect shows it, or
# [x1, y1, x2, y2], or "x1,y1,x2,y2" (a form field).
_FACE_INDEX = integer(0, 1000)
_FACE_BOX = any_of(obj({k: number() for k in ("x_min", "y_min", "x_max", "y_max")},
                       ["x_min", "y_min", "x_max", "y_max"], extra=True),
                   array(number(), min_items=4, max_items=4),
                   string(pattern=f"^{_COORD},{_COORD},{_COORD},{_COORD}$", description="four numbers x1,y1,x2,y2"))
_CHOICE = {"face_index": _FACE_INDEX, "face_box": _FACE_BOX}
THRESHOLD = any_of(number(-1, 1), string(enum=PRESETS))
_LIMIT = integer(0, 1000, description="at most this many faces, most prominent first (0: all)")
_DET = number(0, 1, description="faces detected with less confidence are left out")

_NAME_BODY = Body(json=obj({"name": NAME}, ["name"]))
_GALLERY_PATH = (Param("gallery", NAME),)
_SUBJECT_PATH = (Param("gallery", NAME), Param("subject", NAME))

# -- operations ----------------------------------------------------------------------------------
LOGIN = Contract((Reply(200, TOKENS),), body=Body(json=obj(
    {"client_id": string(), "client_secret": string()}, ["client_id", "client_secret"])), errors=(AuthFailed,))
REFRESH = Contract((Reply(200, TOKENS),), body=Body(json=obj({"refresh_token": string()}, ["refresh_token"])),
                   errors=(AuthFailed,))
LIST_GALLERIES = Contract((Reply(200, obj({"galleries": array(GALLERY)}, ["galleries"])),))
CREATE_GALLERY = Contract((Reply(201, GALLERY),), body=_NAME_BODY, errors=(Conflict,))
GET_GALLERY = Contract((Reply(200, GALLERY),), path=_GALLERY_PATH)
RENAME_GALLERY = Contract((Reply(200, GALLERY),), body=_NAME_BODY, errors=(Conflict,), path=_GALLERY_PATH)
DELETE = Contract((Reply(204, description="deleted"),))
DELETE_GALLERY = Contract((Reply(204, description="deleted"),), path=_GALLERY_PATH)
LIST_SUBJECTS = Contract(
    (Reply(200, obj({"subjects": array(SUBJECT), "total": integer(0), "offset": integer(0), "limit": integer(1)},
                    ["subjects", "total", "offset", "limit"])),),
    query=(Param("offset", integer(0, 10**9)), Param("limit", integer(1, 1000))), path=_GALLERY_PATH)
CREATE_SUBJECT = Contract((Reply(201, SUBJECT),), body=Body(json=obj(
    {"name": LABEL, "id": NAME, "meta": obj({})}, ["name"])), errors=(Conflict,), path=_GALLERY_PATH)
GET_SUBJECT = Contract((Reply(200, SUBJECT),), path=_SUBJECT_PATH)
UPDATE_SUBJECT = Contract((Reply(200, SUBJECT),), body=Body(json=obj({"name": LABEL, "meta": nullable(obj({}))})),
                          errors=(Conflict,), path=_SUBJECT_PATH)
DELETE_SUBJECT = Contract((Reply(204, description="deleted"),), path=_SUBJECT_PATH)
_ENROL_FIELDS = {"all_faces": boolean(description="enrol every face, not the most prominent one"),
                 "force": boolean(description="enrol faces under the size and quality gates"), **_CHOICE}
ADD_FACES = Contract((Reply(201, _faces(STORED_FACE)),),
                     body=_image_body(_ENROL_FIELDS),
                     errors=(NoFace, Conflict), path=_SUBJECT_PATH)
LIST_FACES = Contract((Reply(200, _faces(STORED_FACE)),), path=_SUBJECT_PATH)
GET_FACE = Contract((Reply(200, STORED_FACE),))
FACE_IMAGE = Contract((Reply(200, media_type="application/octet-stream", description="the image as uploaded"),))
FACE_THUMBNAIL = Contract((Reply(200, media_type="image/jpeg", description="the aligned face"),))
_NEGATIVE_FIELDS = {"source": string(max_length=200, description="what the face was (an event id...)"),
                    "force": boolean(description="store a face under the matching gate"), **_CHOICE}
ADD_NEGATIVE = Contract((Reply(201, NEGATIVE),),
                        body=_image_body(_NEGATIVE_FIELDS),
                        errors=(NoFace, Conflict), path=_SUBJECT_PATH)
LIST_NEGATIVES = Contract((Reply(200, obj({"negatives": array(NEGATIVE)}, ["negatives"])),), path=_SUBJECT_PATH)
_PLUGIN_LIST = any_of(array(string(enum=_PLUGINS)),
                      string(pattern=f"^ *(({'|'.join(_PLUGINS)}) *(, *({'|'.join(_PLUGINS)}) *)*)?$",
                             description=f"a comma-separated list of {', '.join(_PLUGINS)}"))
_DETECT_FIELDS = {"face_plugins": _PLUGIN_LIST, "limit": _LIMIT, "det_prob_threshold": _DET}
# Every route that reads an image answers NO_FACE for one too small to hold a face.
DETECT = Contract((Reply(200, _faces(DETECTED_FACE)),), body=_image_body(_DETECT_FIELDS), errors=(NoFace,))
_VERIFY_FIELDS = {
    "threshold": THRESHOLD, "face_id": _ID, "gallery": NAME, "subject": NAME, **_CHOICE,
    "face_index2": _FACE_INDEX, "face_box2": _FACE_BOX,
}


def _verify_body() -> Body:
    """image1 (or file, or image) against image2, a stored face, or a subject's faces."""
    rules = [present("image1", "file", "image"),
             {"anyOf": [{"required": ["image2"]}, {"required": ["face_id"]}, {"required": ["gallery", "subject"]}]}]
    images = ("image1", "file", "image", "image2")
    return Body(json=obj({**{i: BASE64 for i in images}, **_VERIFY_FIELDS}) | {"allOf": rules},
                multipart=obj({**{i: FILE for i in images}, **as_text(_VERIFY_FIELDS)}, extra=False)
                | {"allOf": rules},
                files={i: IMAGE_TYPES for i in images})


VERIFY = Contract((Reply(200, VERDICT),), body=_verify_body(), errors=(NoFace, Conflict, NotFound))
_GALLERIES = any_of(array(NAME), string(pattern=r"^([A-Za-z0-9_. -]+(,[A-Za-z0-9_. -]+)*)?$",
                                        description="comma-separated gallery names"))  # none: all of them
_IDENTIFY_FIELDS = {"galleries": _GALLERIES, "threshold": THRESHOLD,
                    "prediction_count": integer(1, 100), "limit": _LIMIT, "det_prob_threshold": _DET}
IDENTIFY = Contract((Reply(200, _faces(IDENTIFIED_FACE)),),
                    body=_image_body(_IDENTIFY_FIELDS), errors=(NoFace, NotFound))
BULK_ENROL = Contract(
    (Reply(202, JOB_SCHEMA, description="accepted: progress on the job's topic and at GET /api/v1/jobs/{id}"),),
    body=Body(json=obj({"items": array(obj({"subject": NAME, "image": BASE64}, ["subject", "image"]), min_items=1)},
                       ["items"]),
              multipart=obj({"file": FILE, "zip": FILE}, extra=False, description="a zip of <subject>/<image> files")
              | present("file", "zip"),
              files={"file": ZIP_TYPE, "zip": ZIP_TYPE}),
    errors=(Conflict,), path=_GALLERY_PATH)
JOB = Contract((Reply(200, JOB_SCHEMA),))
CANCEL_JOB = Contract((Reply(200, JOB_SCHEMA),), errors=(Conflict,))


# -- the caller and its API keys (repo.key_handlers) --------------------------------------------------
_CAMERA_ID = string(pattern=r"^[a-z0-9][a-z0-9_-]{0,63}$")  # api.names.CAMERA_ID
_SCOPE = any_of(string(enum=("full", "read")),
                obj({"kind": string(enum=("full", "read"))}, ["kind"], extra=False),
                obj({"kind": string(enum=("subscribe",)), "cameras": array(_CAMERA_ID, min_items=1, max_items=256)},
                    ["kind", "cameras"], extra=False))
_KEY_ID = string(pattern=r"^[0-9a-f]{16}$", description="the key's id: the part after fwk_")
_KEY_PATH = (Param("key", _KEY_ID),)
KEY = obj({"id": _KEY_ID, "name": LABEL, "scope": _SCOPE, "revoked": boolean(), "created_at": _TIME},
          ["id", "name", "scope", "revoked", "created_at"])
NEW_KEY = obj({"id": _KEY_ID, "name": LABEL, "scope": _SCOPE,
               "key": string(description="the whole key: shown this once")}, ["id", "name", "scope", "key"])
ME = Contract((Reply(200, obj({
    "tenant": string(), "via": string(enum=("token", "api_key")), "key": nullable(string()), "scope": _SCOPE,
    "topics": obj({}, description="the STOMP topics this tenant may read"),
}, ["tenant", "via", "scope", "topics"])),))
LIST_KEYS = Contract((Reply(200, obj({"keys": array(KEY)}, ["keys"])),))
CREATE_KEY = Contract((Reply(201, NEW_KEY),), body=Body(json=obj({"name": LABEL, "scope": _SCOPE}, extra=False),
                                                        required=False))
ROTATE_KEY = Contract((Reply(201, NEW_KEY),), path=_KEY_PATH)
REVOKE_KEY = Contract((Reply(204, description="revoked"),), path=_KEY_PATH)
