"""Sightings in a real SQLite database: parsing the watchers' events, batched writes numbered per tenant,
deduplication, time ranges, groups, retention and erasure."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from events import (
    Box, CameraStatus, CandidateRef, DecisionRef, FaceEvent, FaceRecognized, FaceUnknown, FrameRef, TrackEnded,
    encode_vector,
)
from events import SubjectRef as EventSubject
from repo.store import RepoStore, open_store
from sightings.events import parse_event
from sightings.records import NewSighting, SightingFilter, SubjectRef, TrackEnd
from sightings.store import Relabel, SightingStore

EMBEDDING = (np.ones(8) / np.sqrt(8)).astype(np.float32)
BOB = EventSubject("bob", "Bob", "staff", "pk-bob")


def event(kind: str, track: int = 1, seen_at: float = 1000.0, subject: str = "ada",
          **extra: Any) -> FaceRecognized | FaceUnknown:
    """A face.recognized of ``subject`` or a face.unknown (nearest to bob), seen at ``seen_at``."""
    decision = DecisionRef(matched=kind == "face.recognized", reason="matched", threshold=0.3, margin=0.4,
                           best=CandidateRef(BOB, 0.2), runner_up=CandidateRef(BOB, 0.2), policy={})
    fields: dict[str, Any] = dict(
        camera="door", track=track, box=Box(10.0, 10.0, 90.0, 90.0), det_score=0.99, quality=0.8,
        frame=FrameRef(0, 0.0, seen_at, 640, 360), first_seen=seen_at - 2, analysed_frame_time=seen_at + 1,
        shots=1, decision=decision, runner_up=decision.runner_up, margin=0.4, threshold=0.3, model_id="m",
        embedding=encode_vector(EMBEDDING), crop=base64.b64encode(b"\xff\xd8crop").decode())
    if kind == "face.recognized":
        named = EventSubject(subject, subject.title(), "staff", f"pk-{subject}")
        return FaceRecognized(**(fields | {"subject": named, "similarity": 0.9} | extra))
    assert kind == "face.unknown"
    return FaceUnknown(**(fields | {"best_similarity": 0.2, "group": None} | extra))


def parsed(e: FaceEvent | dict[str, Any]) -> NewSighting:
    found = parse_event(json.dumps(e).encode() if isinstance(e, dict) else e.encode())
    assert isinstance(found, NewSighting)
    return found


@pytest.fixture
def stores(tmp_path: Path) -> Iterator[tuple[RepoStore, SightingStore, str, str]]:
    repo = open_store(f"sqlite:///{tmp_path / 's.db'}")
    yield repo, SightingStore(repo), repo.create_tenant("acme"), repo.create_tenant("globex")
    repo.close()


def test_events_are_read_in_one_place() -> None:
    recognized = parsed(event("face.recognized"))
    assert recognized.kind == "recognized" and recognized.subject == SubjectRef("pk-ada", "ada", "Ada", "staff")
    assert recognized.runner_up == SubjectRef("pk-bob", "bob", "Bob", "staff")
    assert recognized.runner_up_similarity == 0.2
    assert (recognized.first_seen, recognized.seen_at, recognized.last_seen) == (998.0, 1000.0, 1001.0)
    assert recognized.crop == b"\xff\xd8crop" and recognized.embedding is not None
    assert np.allclose(recognized.embedding, EMBEDDING)
    # An unknown face's closest subject and its similarity are one pair: the decision's, not the highest
    # similarity over the track's earlier decisions.
    unknown = parsed(event("face.unknown", best_similarity=0.35))
    assert unknown.subject is None and unknown.runner_up == SubjectRef("pk-bob", "bob", "Bob", "staff")
    assert unknown.similarity == unknown.runner_up_similarity == 0.2
    ended = parse_event(TrackEnded(camera="door", track=1, first_seen=998.0, last_seen=1010.0, shots=2,
                                   subject=None, announced=False, unknown_sent=True,
                                   decision=event("face.unknown").decision).encode())
    assert ended == TrackEnd("door", 1, 998.0, 1010.0)
    # A malformed embedding no longer loses the sighting: it is stored without one.
    bare = parsed(event("face.unknown").to_json() | {"embedding": "%%%"})
    assert bare.kind == "unknown" and bare.embedding is None and bare.crop == b"\xff\xd8crop"
    for bad in (b"not json", b"[]", json.dumps({"type": "camera.status"}).encode(),
                CameraStatus(camera="door", state="running").encode(),  # an event, but no sighting
                json.dumps(event("face.recognized", subject="x").to_json() | {"subject": None}).encode(),
                json.dumps(event("face.unknown").to_json() | {"frame": {}}).encode(),
                json.dumps(event("face.unknown").to_json() | {"crop": "%%%"}).encode(),
                # a NaN time would fail the writer's batch on every retry: refused as it is read
                json.dumps(event("face.unknown").to_json() | {"time": float("nan")}).encode(),
                event("face.unknown", frame=FrameRef(1, 0.0, float("nan"), 640, 360)).encode()):
        assert parse_event(bad) is None, bad


def test_batches_are_numbered_per_tenant_and_stored_once(stores: tuple[RepoStore, SightingStore, str, str]) -> None:
    _, store, acme, globex = stores
    events = [event("face.recognized", track=i) for i in range(3)]
    first = store.write_batch([(acme, parsed(events[0])), (globex, parsed(events[1])), (acme, parsed(events[2])),
                               (acme, parsed(events[2]))])  # the same event twice in one batch: stored once
    assert sorted((s.sighting.tenant_id == acme, s.sighting.seq) for s in first) == [(False, 1), (True, 1), (True, 2)]
    again = store.write_batch([(acme, parsed(e)) for e in events] + [(acme, parsed(event("face.unknown", track=9)))])
    assert [s.sighting.seq for s in again] == [3]  # redeliveries skipped: only the new one, next in line
    rows, last = store.after(acme, SightingFilter(), 0, 10)
    assert [r.seq for r in rows] == [1, 2, 3] and last == 3
    assert [r.seq for r in store.newest(acme, SightingFilter(kind="recognized"), None, 10)] == [2, 1]
    assert store.newest(acme, SightingFilter(), 2, 10)[0].seq == 1  # the page below sequence 2
    assert store.seq_of_event(acme, events[2].id) == 2
    with pytest.raises(Exception):
        store.seq_of_event(globex, events[2].id)  # another tenant's event is not found
    with pytest.raises(Exception):
        store.sighting(globex, rows[0].id)
    assert store.crop(acme, rows[0].id) == b"\xff\xd8crop"


def test_track_end_groups_and_relabelling(stores: tuple[RepoStore, SightingStore, str, str]) -> None:
    _, store, acme, _ = stores
    unknown = event("face.unknown", track=4)
    stored = store.write_batch([(acme, parsed(unknown))], groups={unknown.id: "g1"})[0].sighting
    assert stored.group_id == "g1"
    store.write_batch([], [(acme, TrackEnd("door", 4, 998.0, 1500.0)), (acme, TrackEnd("door", 4, 1.0, 2000.0))])
    assert store.sighting(acme, stored.id).last_seen == 1500.0  # the same track (its first_seen), not a namesake
    assert store.merge_groups(acme, "g2", ["g1"]) == 1 and store.sighting(acme, stored.id).group_id == "g2"
    ada = SubjectRef("pk-ada", "ada", "Ada", "staff")
    assert store.relabel(acme, [Relabel(stored.id, ada, 0.7, None, None, 0.4, 0.5)]) == [stored.id]
    named = store.sighting(acme, stored.id)
    assert named.kind == "recognized" and named.subject_id == "ada" and named.relabelled_at is not None
    assert store.relabel(acme, [Relabel(stored.id, ada, 0.7, None, None, 0.4, 0.5)]) == []  # no longer unknown


def test_retention_drops_crops_and_embeddings_and_expires(stores: tuple[RepoStore, SightingStore, str, str]) -> None:
    _, store, acme, _ = stores
    old, new = event("face.recognized", seen_at=100.0), event("face.recognized", seen_at=time.time())
    ids = [s.sighting.id for s in store.write_batch([(acme, parsed(old)), (acme, parsed(new))])]
    assert store.drop_crops(acme, 500.0, 10) == 1
    assert store.crop(acme, ids[0]) is None and store.crop(acme, ids[1]) is not None
    assert store.sighting(acme, ids[0]).has_crop is False
    assert store.drop_embeddings(acme, 500.0, 10) == [ids[0]] and store.embedding(acme, ids[0])[0] is None
    assert store.expire(acme, ["unknown"], 500.0, 10) == []
    assert store.expire(acme, ["recognized"], 500.0, 10) == [ids[0]]
    assert [r.id for r in store.after(acme, SightingFilter(), 0, 10)[0]] == [ids[1]]


def test_an_erased_subject_leaves_bare_events_and_late_ones_arrive_bare(
        stores: tuple[RepoStore, SightingStore, str, str]) -> None:
    _, store, acme, _ = stores
    ada, bob = event("face.recognized"), event("face.recognized", subject="bob")
    runner_up = CandidateRef(EventSubject("ada", "Ada", "staff", "pk-ada"), 0.3)
    bob = replace(bob, decision=replace(bob.decision, runner_up=runner_up))
    grouped = event("face.unknown")
    stored = store.write_batch([(acme, parsed(ada)), (acme, parsed(bob)), (acme, parsed(grouped))],
                               groups={grouped.id: "ada-group"})
    audit = store.open_erasure(acme, "pk-ada", "api_key:k1")
    erased = store.erase(acme, "pk-ada", ["ada-group"])
    assert sorted(erased.sightings) == sorted([stored[0].sighting.id, stored[2].sighting.id])
    assert (erased.crops, erased.embeddings, erased.mentions) == (2, 2, 1)
    for sighting_id in erased.sightings:
        bare = store.sighting(acme, sighting_id)
        assert bare.kind == "erased" and bare.subject_id is None and bare.group_id is None and not bare.has_embedding
        assert store.crop(acme, sighting_id) is None
    assert store.sighting(acme, stored[1].sighting.id).runner_up_id is None  # bob's no longer names ada
    late = store.write_batch([(acme, parsed(event("face.recognized", track=7)))])[0].sighting
    assert late.kind == "erased" and late.subject_name is None and not late.has_crop
    assert store.relabel(acme, [Relabel(stored[1].sighting.id, SubjectRef("pk-ada", "ada", "Ada", "staff"), 0.9,
                                        None, None, 0.3, 0.5)]) == []
    store.close_erasure(audit, {"sightings": 2})
    [record] = store.erasure_log(acme, 10)
    assert record.actor == "api_key:k1" and record.counts == {"sightings": 2} and record.finished_at is not None
    store.compact()
