"""The event vocabulary itself (events/): every event registered under its type, one wire shape that
round-trips through JSON and msgpack, decoding that answers a typed event or an EventError, and the
tenant copies without embeddings."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import fields, replace
from typing import Any

import msgpack
import numpy as np
import pytest

import events
from events import (
    EVENT_TYPES, MSGPACK, Box, CameraEvent, CameraStatus, CandidateRef, DecisionRef, Event, EventError, FaceAdded,
    FaceEvent, FaceRecognized, FaceRemoved, FrameRef, GalleryRemoved, GalleryRenamed, GroupChanged, GroupCreated,
    GroupDeleted, GroupGrown, GroupIgnored, GroupMerged, GroupPromoted, GroupReembedded, GroupRestored, JobProgress,
    MovedFace, NegativeAdded, NegativeRemoved, ReembeddedFace, SightingsRelabelled, SightingStored, SubjectErased,
    SubjectMerged, SubjectRef, SubjectRemoved, SubjectUpdated, TrackEnded, decode, decode_as, decode_vector,
    encode_vector,
)
from tests.event_factory import recognized, unknown

VECTOR = np.arange(1, 9, dtype=np.float32) / 10
EMBEDDING = encode_vector(VECTOR)
ADA = SubjectRef("ada", "Ada", "staff", "pk-ada")
BOB = SubjectRef("bob", "Bob", "staff", "pk-bob")


def _subclasses(cls: type[Event]) -> Iterator[type[Event]]:
    for sub in cls.__subclasses__():
        yield sub
        yield from _subclasses(sub)


def event_classes() -> set[type[Event]]:
    """Every subclass of Event, as its module names it (a slots dataclass replaces the class its body made:
    on Python 3.11 that first class may linger among __subclasses__)."""
    return {cls for cls in _subclasses(Event) if getattr(sys.modules[cls.__module__], cls.__qualname__, None) is cls}


def face_recognized() -> FaceRecognized:
    """A face.recognized with every nested record filled in: subject, decision with both candidates, frame, box."""
    return recognized("door", 7, subject="ada", embedding=EMBEDDING, attributes={"age": 42, "mask": False},
                      node="alpha", lease=3, run="r1", seq=5)


def samples() -> list[Event]:
    """One event of each type (tests/unit/test_events.py: none may be missing)."""
    repo: dict[str, Any] = {"tenant": "t1", "gallery": "staff", "gallery_id": "g1", "version": 4}
    grouping: dict[str, Any] = {"tenant": "t1", "version": 9}
    placed: dict[str, Any] = dict(group="grp", face="f1", camera="door", track=7, event="e1", similarity=0.8,
                                  model_id="m", embedding=EMBEDDING)
    ended = face_recognized()
    return [
        face_recognized(),
        unknown("door", 8, VECTOR, b"\xff\xd8jpeg", group="grp"),
        TrackEnded(camera="door", track=7, first_seen=1.0, last_seen=2.5, shots=3, subject=ADA, announced=True,
                   unknown_sent=False, decision=ended.decision, run="r1", seq=6),
        CameraStatus(camera="door", state="restarting", attempt=2, reason="worker exited with code 3",
                     restart_in_s=0.4),
        FaceAdded(**repo, face_id="f1", subject="ada", subject_pk="pk-ada", model_id="m", embedding=EMBEDDING),
        FaceRemoved(**repo, face_id="f1"),
        NegativeAdded(**repo, negative_id="n1", subject="ada", subject_pk="pk-ada", model_id="m",
                      embedding=EMBEDDING),
        NegativeRemoved(**repo, negative_id="n1", subject_pk="pk-ada"),
        SubjectRemoved(**repo, subject="ada", subject_pk="pk-ada", face_ids=["f1", "f2"]),
        SubjectMerged(**repo, subject="ada", subject_pk="pk-ada", merged="eve", merged_pk="pk-eve", face_ids=["f3"]),
        SubjectUpdated(tenant="t1", gallery="staff", gallery_id="g1", subject="ada"),
        GalleryRenamed(**repo, old_name="staf"),
        GalleryRemoved(**repo),
        GroupCreated(**grouping, **placed),
        GroupGrown(**grouping, **(placed | {"camera": None, "track": None, "event": None})),
        GroupMerged(**grouping, group="grp", merged=["g2", "g3"], similarity=0.7),
        GroupChanged(**grouping, group="grp", moved=["f4"], removed=["f5"],
                     faces=[MovedFace("f4", "g2", "m", EMBEDDING), MovedFace("f5", "grp", "m", None)]),
        GroupDeleted(**grouping, group="grp"),
        GroupReembedded(**grouping, faces=[ReembeddedFace("f1", "grp", EMBEDDING), ReembeddedFace("f2", "g2")]),
        GroupIgnored(tenant="t1", group="grp"),
        GroupRestored(tenant="t1", group="grp"),
        GroupPromoted(tenant="t1", group="grp", gallery="staff", subject="ada"),
        SightingStored(tenant="t1", sighting={"id": "s1", "seq": 12, "kind": "recognized", "subject": None}),
        SubjectErased(tenant="t1", erasure="er1", counts={"sightings": 2, "faces": 1}),
        SightingsRelabelled(tenant="t1", gallery="staff", subject="ada", trigger="group.promoted", group="grp",
                            count=2, sightings=["s1", "s2"]),
        JobProgress(job="job1", kind="reembed", status="running", done=3, total=10, result={"failed": []}),
    ]


# -- the registry ---------------------------------------------------------------------------------------
def test_every_concrete_event_is_registered_under_its_type() -> None:
    classes = event_classes()
    assert classes >= set(EVENT_TYPES.values())
    for cls in classes:
        if not cls.TYPE:  # an abstract base: CameraEvent, FaceEvent, RepoEvent, GroupingEvent
            assert cls.__subclasses__(), f"{cls.__name__} has no TYPE and nothing derives from it"
            continue
        assert "TYPE" in vars(cls), f"{cls.__name__} inherits its TYPE {cls.TYPE!r}: it needs its own"
        assert EVENT_TYPES.get(cls.TYPE) is cls, cls
    concrete = {cls for cls in classes if cls.TYPE}
    assert set(EVENT_TYPES.values()) == concrete and len(concrete) == len(EVENT_TYPES)  # types are unique
    assert all(name in events.__all__ for name in (cls.__name__ for cls in concrete))


def test_every_type_has_a_sample_here() -> None:
    assert sorted(e.TYPE for e in samples()) == sorted(EVENT_TYPES)


# -- the wire shape ---------------------------------------------------------------------------------------
@pytest.mark.parametrize("event", samples(), ids=lambda e: e.TYPE)
def test_every_event_round_trips_through_json_and_msgpack(event: Event) -> None:
    body = event.to_json()
    assert next(iter(body)) == "type" and body["type"] == event.TYPE
    # Every declared field is present (null when unset).
    assert set(body) == {"type"} | {f.name for f in fields(event)}
    assert json.loads(json.dumps(body)) == body  # plain JSON values only
    assert decode(event.encode()) == event
    assert decode(event.encode().decode()) == event  # a str body too
    assert decode(event.encode(MSGPACK), MSGPACK) == event
    assert decode(event.encode(MSGPACK), MSGPACK + "; charset=binary") == event
    assert decode(body) == event and type(event).from_json(body) == event


def test_a_face_recognized_with_nested_records_round_trips_equal() -> None:
    event = face_recognized()
    assert isinstance(event.decision.best, CandidateRef) and event.decision.best.subject is not None
    for back in (decode(event.encode()), decode(event.encode(MSGPACK), MSGPACK),
                 decode(json.loads(event.encode()))):
        assert back == event and isinstance(back, FaceRecognized)
        assert back.subject == SubjectRef("ada", "Ada", "staff", "pk-ada")
        assert isinstance(back.box, Box) and isinstance(back.frame, FrameRef)
        assert isinstance(back.decision, DecisionRef) and back.decision.runner_up == event.runner_up
        assert (back.run, back.seq, back.node, back.lease) == ("r1", 5, "alpha", 3)
        embedding = decode_vector(back.embedding)
        assert embedding is not None and np.array_equal(embedding, VECTOR)


def test_the_wire_shape_of_what_changed_on_purpose() -> None:
    face = face_recognized().to_json()
    assert face["box"] == {"x_min": 10.0, "y_min": 20.0, "x_max": 110.0, "y_max": 140.0}  # an object, not a list
    assert (face["frame"]["width"], face["frame"]["height"]) == (640, 360)
    assert face["crop"] == "/9j/AAAA" and face["subject"]["pk"] == "pk-ada"
    status = CameraStatus(camera="door", state="running").to_json()
    assert status["pid"] is None and status["reason"] is None and (status["run"], status["seq"]) == ("", 0)
    changed = GroupChanged(tenant="t", group="g", faces=[MovedFace("f", "g0", "m")]).to_json()
    assert changed["faces"] == [{"id": "f", "from_group": "g0", "model_id": "m", "embedding": None}]
    assert GroupRestored(tenant="t", group="g").to_json()["type"] == "group.restored"
    progress = JobProgress(job="j1", kind="k", status="done", done=1, total=1, result={}).to_json()
    assert progress["type"] == "job.progress" and progress["job"] == "j1" and progress["id"] != "j1"
    assert Box.of(np.array([1.04, 2.06, 3.0, 4.0, 0.9])) == Box(1.0, 2.1, 3.0, 4.0)
    assert Box(1.0, 2.0, 3.0, 4.0).corners() == [1.0, 2.0, 3.0, 4.0]


def test_events_get_their_own_ids() -> None:
    first, second = CameraStatus(camera="c", state="running"), CameraStatus(camera="c", state="running")
    assert first.id and first.id != second.id and first.time > 0


# -- decoding what is not an event --------------------------------------------------------------------
def _valid() -> dict[str, Any]:
    return face_recognized().to_json()


@pytest.mark.parametrize("body", [
    pytest.param(json.dumps(_valid() | {"type": "face.vanished"}).encode(), id="unknown type"),
    pytest.param(json.dumps({k: v for k, v in _valid().items() if k != "type"}).encode(), id="no type"),
    pytest.param(json.dumps(_valid() | {"type": []}).encode(), id="a list for the type"),
    pytest.param(json.dumps(_valid() | {"type": {"a": 1}}).encode(), id="an object for the type"),
    pytest.param(json.dumps({k: v for k, v in _valid().items() if k != "camera"}).encode(), id="missing field"),
    pytest.param(json.dumps({k: v for k, v in _valid().items() if k != "subject"}).encode(), id="missing subject"),
    pytest.param(json.dumps(_valid() | {"frame": {"index": 1, "wall_time": 2.0}}).encode(), id="missing nested"),
    pytest.param(json.dumps({k: v for k, v in _valid().items() if k != "id"}).encode(), id="no id"),
    pytest.param(json.dumps({k: v for k, v in _valid().items() if k != "time"}).encode(), id="no time"),
    pytest.param(json.dumps(_valid() | {"track": "seven"}).encode(), id="wrong type"),
    pytest.param(json.dumps(_valid() | {"camera": 7}).encode(), id="number for a string"),
    pytest.param(json.dumps(_valid() | {"subject": None}).encode(), id="null for a record"),
    pytest.param(json.dumps(_valid() | {"box": [10.0, 20.0, 110.0, 140.0]}).encode(), id="the old list box"),
    pytest.param(json.dumps(_valid() | {"decision": "matched"}).encode(), id="string for a record"),
    pytest.param(json.dumps(_valid() | {"time": float("nan")}).encode(), id="NaN time"),
    pytest.param(json.dumps(_valid() | {"similarity": float("inf")}).encode(), id="infinite similarity"),
    pytest.param(json.dumps(_valid() | {"frame": _valid()["frame"] | {"wall_time": float("-inf")}}).encode(),
                 id="infinite nested time"),
    pytest.param(b"[]", id="array"),
    pytest.param(b'"face.recognized"', id="string"),
    pytest.param(b"7", id="number"),
    pytest.param(b"null", id="null"),
    pytest.param(b"{", id="bad json"),
    pytest.param(b"not json at all", id="not json"),
    pytest.param(b"\xff\xfe", id="not utf-8"),
    pytest.param(b"", id="empty"),
])
def test_what_is_not_an_event_of_the_vocabulary_is_an_event_error(body: bytes) -> None:
    with pytest.raises(EventError):
        decode(body)


def test_bad_msgpack_and_non_objects_are_event_errors() -> None:
    for body in (b"\xc1", msgpack.packb([1, 2]), msgpack.packb("x"), _valid_msgpack() + b"\x00", b""):
        with pytest.raises(EventError):
            decode(body, MSGPACK)
    not_objects: list[Any] = [[], "x", 7, None]
    for data in not_objects:
        with pytest.raises(EventError):
            decode(json.dumps(data))
        with pytest.raises(EventError):
            events.from_json(data)
    with pytest.raises(EventError):
        decode({"type": "face.recognized"})  # an already parsed object is checked too
    with pytest.raises(EventError):
        FaceRecognized.from_json({"camera": "door"})
    assert issubclass(EventError, ValueError)


def test_decode_as_reads_only_the_class_asked_for() -> None:
    recognized = face_recognized()
    assert decode_as(recognized.encode(), FaceRecognized) == recognized
    assert decode_as(recognized.encode(MSGPACK), FaceEvent, MSGPACK) == recognized  # a subclass is one
    assert decode_as(recognized, FaceEvent) is recognized  # an event in hand is not decoded again
    assert decode_as(recognized, CameraStatus) is None
    # Another type is skipped without reading its fields: even a malformed one is no error here...
    assert decode_as(json.dumps(_valid() | {"track": "seven"}), CameraStatus) is None
    # ...but a malformed one of the class asked for is, and so is what is no event at all.
    with pytest.raises(EventError):
        decode_as(json.dumps(_valid() | {"track": "seven"}), FaceRecognized)
    for body in (b"[]", b"not json", json.dumps({"id": "x"}).encode()):
        with pytest.raises(EventError):
            decode_as(body, CameraStatus)
    # A type this vocabulary does not know (a newer node's) is nobody's business here; decode refuses it.
    newer = json.dumps({"type": "face.vanished", "id": "x", "time": 1.0}).encode()
    assert decode_as(newer, CameraStatus) is None
    with pytest.raises(EventError):
        decode(newer)


def _valid_msgpack() -> bytes:
    return bytes(msgpack.packb(_valid()))


def test_unknown_fields_are_ignored_for_forward_compatibility() -> None:
    event = face_recognized()
    body = event.to_json()
    newer = body | {"mood": "calm", "frame": body["frame"] | {"fps": 25},
                    "decision": body["decision"] | {"explanation": {"why": "close"}}}
    assert decode(json.dumps(newer)) == event
    assert decode(msgpack.packb(newer), MSGPACK) == event
    changed = GroupChanged(tenant="t", group="g", faces=[MovedFace("f", "g0", "m", EMBEDDING)])
    faces = [face | {"quality": 0.9} for face in changed.to_json()["faces"]]
    assert decode(changed.to_json() | {"faces": faces, "actor": "api_key:k1"}) == changed


# -- tenant copies ----------------------------------------------------------------------------------------
def test_tenant_copies_leave_out_embeddings_and_nothing_else() -> None:
    carried = 0
    for event in samples():
        copy = event.for_tenant()
        assert type(copy) is type(event)
        match event:
            case FaceAdded() | NegativeAdded() | GroupCreated():  # GroupGrown too
                assert event.embedding is not None and copy == replace(event, embedding=None)
            case GroupChanged():
                assert any(face.embedding for face in event.faces)
                assert copy == replace(event, faces=[replace(face, embedding=None) for face in event.faces])
            case GroupReembedded():
                assert any(face.embedding for face in event.faces)
                assert copy == replace(event, faces=[replace(face, embedding=None) for face in event.faces])
            case _:
                assert copy == event, event.TYPE  # camera events included: the tenant's own cameras' faces
                continue
        carried += 1
        assert any(_embeddings(event.to_json()))
        assert not any(_embeddings(copy.to_json()))  # none left anywhere in what the tenant reads
    assert carried == 6  # face.added, negative.added, group.created, group.grown, group.changed, group.reembedded
    # The original is left as it was (events are frozen; the copy is another object).
    added = next(e for e in samples() if isinstance(e, FaceAdded))
    assert added.for_tenant() is not added and added.embedding == EMBEDDING


def _embeddings(value: Any) -> Iterator[Any]:
    """Every value under an "embedding" key, however deep."""
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "embedding":
                yield inner
            else:
                yield from _embeddings(inner)
    elif isinstance(value, list):
        for inner in value:
            yield from _embeddings(inner)


# -- camera events ------------------------------------------------------------------------------------
def test_stamped_sets_run_seq_node_and_lease_and_nothing_else() -> None:
    event = recognized("door", 1)
    assert (event.run, event.seq, event.node, event.lease) == ("", 0, None, None)
    stamped = event.stamped(run="r9", seq=4, node="alpha", lease=2)
    assert isinstance(stamped, FaceRecognized) and stamped is not event
    assert (stamped.run, stamped.seq, stamped.node, stamped.lease) == ("r9", 4, "alpha", 2)
    assert replace(stamped, run="", seq=0, node=None, lease=None) == event  # the id and time are kept
    assert (event.run, event.seq) == ("", 0)  # the original is unchanged
    unfenced = CameraStatus(camera="door", state="running").stamped(run="r1", seq=1, node=None, lease=None)
    assert isinstance(unfenced, CameraStatus) and (unfenced.run, unfenced.seq, unfenced.lease) == ("r1", 1, None)
    assert decode(stamped.encode()) == stamped
    assert isinstance(stamped, CameraEvent)


def test_track_ended_says_whether_it_closes_a_sighting() -> None:
    ended = next(e for e in samples() if isinstance(e, TrackEnded))
    assert ended.had_sighting
    assert replace(ended, announced=False, unknown_sent=True).had_sighting
    assert not replace(ended, announced=False, unknown_sent=False).had_sighting


def test_vectors_are_float32_base64_and_bad_ones_read_as_none() -> None:
    back = decode_vector(encode_vector(np.array([1.0, 2.0])))
    assert back is not None and back.dtype == np.float32 and np.array_equal(back, [1.0, 2.0])
    nan = encode_vector(np.array([1.0, np.nan]))
    for text in (None, "", "%%%", "AAA", "AAAA", nan, encode_vector(np.array([], np.float32))):
        assert decode_vector(text) is None, text
