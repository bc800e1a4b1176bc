"""What each sightings route takes and answers (api.contract), for ``ROUTES`` in sightings.handlers: the
OpenAPI document is generated from these, and every request is checked against them."""

from __future__ import annotations

from api.contract import BASE64, FILE, Body, Contract, Param, Reply
from api.errors import NoFace, NotFound
from api.names import CAMERA_ID
from api.schemas import Schema, any_of, array, integer, nullable, number, obj, string
from repo.contracts import IMAGE_TYPES, NAME, THRESHOLD, as_text, present

from .records import KINDS

__all__ = ("LIST", "SEARCH", "GET", "CROP", "RETENTION", "SET_RETENTION", "ERASE", "ERASURES")

_TIME = number(description="seconds since the epoch")
_ID = string(min_length=1, max_length=64)
_CAMERA = string(pattern=CAMERA_ID.pattern)
_MAX_SPAN_S = 100 * 365 * 86400  # sightings.handlers: a retention is at most a century
SIGHTING = obj({"id": string(), "seq": integer(), "event_id": string(), "camera": string(), "decision": string(),
                "seen_at": _TIME}, ["id", "seq", "camera", "decision"])
_SIGHTINGS = obj({"sightings": array(SIGHTING)}, ["sightings"])

LIST = Contract((Reply(200, _SIGHTINGS),), query=(
    Param("camera", _CAMERA), Param("gallery", NAME), Param("subject", NAME), Param("group", _ID),
    Param("decision", string(enum=KINDS)), Param("from", _TIME), Param("to", _TIME),
    Param("since", string(pattern=r"^[A-Za-z0-9_.:-]{1,64}$",
                          description="a sequence number or an event id: the sightings after it, oldest first")),
    Param("before", integer(0, 2**62, description="a sequence number: the page of sightings before it")),
    Param("limit", integer(1, 1000))), errors=(NotFound,))

_COMMON: dict[str, Schema] = {
    "cameras": any_of(array(_CAMERA, max_items=256), string(max_length=20_000, description="comma-separated")),
    "camera": _CAMERA, "from": _TIME, "to": _TIME, "threshold": THRESHOLD, "limit": integer(1, 1000)}
_PROBES: tuple[dict[str, Schema], ...] = (
    {"face_id": _ID}, {"sighting": _ID}, {"group": _ID}, {"gallery": NAME, "subject": NAME}, {"file": BASE64},
    {"image": BASE64})
_FORM = obj({"file": FILE, "image": FILE, **as_text(_COMMON)}, extra=False)
_FORM["allOf"] = [present("file", "image")]
# Exactly one face to look for: each form of the body names one, and nothing else.
SEARCH = Contract((Reply(200, _SIGHTINGS | {"properties": {**_SIGHTINGS["properties"], "threshold": number()}}),),
                  body=Body(json=any_of(*(obj({**probe, **_COMMON}, list(probe), extra=False) for probe in _PROBES)),
                            multipart=_FORM, files={"file": IMAGE_TYPES, "image": IMAGE_TYPES}),
                  errors=(NoFace, NotFound))
GET = Contract((Reply(200, SIGHTING),), path=(Param("sighting", _ID),))
CROP = Contract((Reply(200, media_type="image/jpeg", description="the sighting's best crop"),),
                path=(Param("sighting", _ID),))
_SPANS: dict[str, Schema] = {name: nullable(number(1, _MAX_SPAN_S, description="seconds; null: for ever"))
                             for name in ("recognized_s", "unknown_s", "crop_s", "embedding_s")}
RETENTION = Contract((Reply(200, obj(_SPANS)),))
SET_RETENTION = Contract((Reply(200, obj(_SPANS)),), body=Body(json=obj(_SPANS, extra=False)))
ERASE = Contract((Reply(200, obj({"erasure": string(), "counts": obj({})}, ["erasure", "counts"])),),
                 path=(Param("gallery", NAME), Param("subject", NAME)))
ERASURES = Contract((Reply(200, obj({"erasures": array(obj({}))}, ["erasures"])),),
                    query=(Param("limit", integer(1, 1000)),))
