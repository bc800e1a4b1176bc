"""Change events put back in order (repo/sync.py), and the mirrors that follow them on every node:
the repo's galleries (a real SQLite store) and grouping's groups."""

from __future__ import annotations

import uuid
from pathlib import Path

import numpy as np
import pytest

from events import FaceAdded, GroupChanged, GroupCreated, MovedFace, encode_vector
from grouping.mirror import GroupMirror
from grouping.store import GroupStore, NewFace
from repo.mirror import GalleryMirror
from repo.store import FaceRecord, Gallery, RepoStore, Subject, open_store
from repo.sync import Sequencer

DIM = 4
MODEL = "test-model"


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def vector(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


# -- the sequencer ---------------------------------------------------------------------------------
def test_events_apply_in_version_order_whatever_order_they_arrive_in() -> None:
    clock = Clock()
    seq: Sequencer[str, str] = Sequencer(clock)
    assert seq.offer("g", 1, "one") == ["one"]
    assert seq.offer("g", 1, "one again") == []  # a duplicate (this node's own event, back from the bus)
    assert seq.offer("g", 3, "three") == []  # overtook two: waits for it
    assert seq.due(0.5) == []  # within the grace period two may still come
    assert seq.offer("g", 2, "two") == ["two", "three"]
    assert seq.applied("g") == 3 and seq.due(0.0) == []
    assert seq.offer("other", 1, "first of another") == ["first of another"]  # streams are independent


def test_a_version_missing_past_the_grace_period_is_a_gap_a_reload_closes() -> None:
    clock = Clock()
    seq: Sequencer[str, str] = Sequencer(clock)
    seq.offer("g", 1, "one")
    seq.offer("g", 3, "three")
    seq.offer("g", 5, "five")
    clock.now += 0.6
    assert seq.due(0.5) == ["g"]
    seq.begin_reload("g")
    assert seq.due(0.0) == []  # being reloaded
    assert seq.offer("g", 6, "six") == []  # held through the reload
    # The snapshot had version 4: three is in it; five and six follow on.
    assert seq.end_reload("g", 4) == ["five", "six"]
    assert seq.applied("g") == 6 and seq.due(0.0) == []


def test_the_database_ahead_with_no_event_coming_is_a_gap_too() -> None:
    clock = Clock()
    seq: Sequencer[str, str] = Sequencer(clock)
    seq.expect("g", 2)  # reconcile read version 2; nothing of it arrived
    assert seq.due(0.5) == []
    assert seq.offer("g", 1, "one") == ["one"]
    clock.now += 1
    assert seq.due(0.5) == ["g"]  # one came, two never did
    assert seq.offer("g", 2, "two") == ["two"]
    assert seq.due(0.0) == []


def test_a_removed_stream_ignores_late_events() -> None:
    seq: Sequencer[str, str] = Sequencer(Clock())
    seq.offer("g", 1, "one")
    seq.end("g")
    assert seq.offer("g", 2, "late") == [] and seq.due(0.0) == []
    seq.begin_reload("h")
    assert seq.end_reload("h", None) == [] and seq.ended("h")  # reloaded: the database has it no more


# -- the repo's galleries --------------------------------------------------------------------------
@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    return open_store(f"sqlite:///{tmp_path / 'repo.db'}")


def enrol(store: RepoStore, gallery_id: str, subject_pk: str, embedding: np.ndarray) -> tuple[str, int]:
    """A face written straight to the database (no event: as if its event was lost); its version."""
    face_id = uuid.uuid4().hex
    (version,) = store.add_faces([FaceRecord(face_id, subject_pk, gallery_id, [], [], 1.0, 1.0, embedding, MODEL, "h",
                                             None, 0.0)], [None])
    return face_id, version


def ada_in_staff(store: RepoStore) -> tuple[Clock, str, Gallery, Subject, GalleryMirror]:
    """A tenant's gallery "staff" with a subject "ada", and a mirror of its galleries on the test's clock."""
    clock = Clock()
    tenant = store.create_tenant("acme")
    staff = store.create_gallery(tenant, "staff")
    return (clock, tenant, staff, store.create_subject(staff.id, "ada", "Ada", {}),
            GalleryMirror(store, DIM, MODEL, clock=clock))


def added(tenant: str, gallery_id: str, subject_pk: str, face_id: str, embedding: np.ndarray,
          version: int) -> FaceAdded:
    return FaceAdded(tenant=tenant, gallery="staff", gallery_id=gallery_id, subject="ada", subject_pk=subject_pk,
                     face_id=face_id, model_id=MODEL, version=version, embedding=encode_vector(embedding))


def test_a_lost_event_is_found_by_the_next_one_and_the_gallery_reloaded(store: RepoStore) -> None:
    clock, tenant, staff, ada, mirror = ada_in_staff(store)
    assert mirror.load() == 0 and mirror.applied(staff.id) == 0
    lost, _ = enrol(store, staff.id, ada.pk, vector(1, 0, 0, 0))  # version 1: its event never comes
    seen, version = enrol(store, staff.id, ada.pk, vector(0, 1, 0, 0))
    mirror.apply(added(tenant, staff.id, ada.pk, seen, vector(0, 1, 0, 0), version).encode())  # as it comes
    assert len(mirror) == 0 and mirror.applied(staff.id) == 0  # version 2 waits for version 1
    clock.now += 1
    assert mirror.due(0.5) == [staff.id]
    mirror.reload(staff.id)
    assert mirror.applied(staff.id) == 2 and mirror.index(staff.id).contains(lost)
    assert mirror.index(staff.id).contains(seen) and len(mirror) == 2  # not twice: the held event was in the snapshot


def test_changes_whose_events_all_got_lost_are_found_by_reconciling(store: RepoStore) -> None:
    clock, tenant, staff, ada, mirror = ada_in_staff(store)
    mirror.load()
    face, _ = enrol(store, staff.id, ada.pk, vector(1, 0, 0, 0))
    assert mirror.reconcile() == 1 and mirror.due(0.5) == []  # its event may still be on the way
    clock.now += 1
    assert mirror.due(0.5) == [staff.id]
    mirror.reload(staff.id)
    assert mirror.index(staff.id).contains(face)
    version = store.delete_face(face)
    assert version == 2
    gone = store.create_gallery(tenant, "gone")
    mirror.apply(added(tenant, gone.id, ada.pk, "f", vector(0, 0, 1, 0), 1))  # a gallery created elsewhere
    store.delete_gallery(gone)  # ...and deleted; neither event comes
    assert mirror.reconcile() == 2
    clock.now += 1
    for gallery_id in mirror.due(0.5):
        mirror.reload(gallery_id)
    assert not mirror.index(staff.id).contains(face) and mirror.applied(staff.id) == 2
    assert gone.id not in {g.id for g in mirror.galleries()}


def test_this_nodes_own_change_is_answered_once_indexed(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    staff = store.create_gallery(tenant, "staff")
    mirror = GalleryMirror(store, DIM, MODEL, clock=Clock())
    mirror.load()
    woken: list[int] = []
    assert mirror.when_applied(staff.id, 2, lambda: woken.append(2)) is not None
    mirror.apply(added(tenant, staff.id, "pk", "b", vector(0, 1, 0, 0), 2))  # this node's: another's 1 is late
    assert woken == []
    mirror.apply(added(tenant, staff.id, "pk", "a", vector(1, 0, 0, 0), 1))
    assert woken == [2] and len(mirror) == 2
    assert mirror.when_applied(staff.id, 2, lambda: woken.append(0)) is None


# -- grouping's groups --------------------------------------------------------------------------------
def test_two_nodes_group_indexes_stay_equal_through_their_events(store: RepoStore) -> None:
    clock = Clock()
    tenant = store.create_tenant("acme")
    groups = GroupStore(store)
    here, there = GroupMirror(groups, DIM, MODEL, clock), GroupMirror(groups, DIM, MODEL, clock)
    v = vector(1, 0, 0, 0)
    group, face, version = groups.add_face(tenant, None, NewFace(v, MODEL, "upload", 0.0, 0.9))
    event = GroupCreated(tenant=tenant, version=version, group=group, face=face, camera=None, track=None,
                         event=None, similarity=1.0, model_id=MODEL, embedding=encode_vector(v))
    here.apply(event)
    there.apply(event.encode())  # as it comes from the bus
    assert there.index(tenant).place(v, 0.5).group == group
    # A face added while "there" was not listening: the next event reveals the gap.
    groups.add_face(tenant, group, NewFace(vector(1, 0.1, 0, 0), MODEL, "upload", 0.0, 0.9))
    removed, version = groups.remove_face(tenant, face)
    there.apply(GroupChanged(tenant=tenant, version=version, group=group, removed=[face],
                             faces=[MovedFace(face, from_group=group, model_id=MODEL, embedding=encode_vector(v))])
                .to_json())
    assert there.index(tenant).size(group) == 1  # nothing applied yet: it waits for the missing version
    clock.now += 1
    assert there.due(0.5) == [tenant]
    there.reload(tenant)
    assert there.index(tenant).size(group) == 1 and there.applied(tenant) == version
    assert removed.id == face


def test_an_event_that_cannot_be_applied_is_read_from_the_database_instead(store: RepoStore) -> None:
    # A vector of another length (a node on another model build) must not break the mirror: the gallery
    # (or tenant) is reloaded, and later events still apply.
    clock, tenant, staff, ada, mirror = ada_in_staff(store)
    mirror.load()
    face, version = enrol(store, staff.id, ada.pk, vector(1, 0, 0, 0))
    mirror.apply(added(tenant, staff.id, ada.pk, face, np.ones(DIM + 3, np.float32), version))
    # The next version, applied in order at once, must not close what the bad one opened.
    second, version = enrol(store, staff.id, ada.pk, vector(0, 1, 0, 0))
    mirror.apply(added(tenant, staff.id, ada.pk, second, vector(0, 1, 0, 0), version))
    assert mirror.index(staff.id).contains(second) and not mirror.index(staff.id).contains(face)
    assert mirror.due(0.5) == [staff.id]
    mirror.reload(staff.id)
    assert mirror.index(staff.id).contains(face) and mirror.applied(staff.id) == version
    assert mirror.due(0.5) == []

    groups = GroupStore(store)
    there = GroupMirror(groups, DIM, MODEL, clock)
    group, first, version = groups.add_face(tenant, None, NewFace(vector(1, 0, 0, 0), MODEL, "upload", 0.0, 0.9))
    there.apply(GroupCreated(tenant=tenant, version=version, group=group, face=first, camera=None, track=None,
                             event=None, similarity=1.0, model_id=MODEL, embedding=encode_vector(np.ones(DIM + 1))))
    clock.now += 1
    assert there.due(0.5) == [tenant]
    there.reload(tenant)
    assert there.index(tenant).size(group) == 1 and there.applied(tenant) == version
