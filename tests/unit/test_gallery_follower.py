"""A camera's galleries: read from a real SQLite store, then kept current by repo events."""

from __future__ import annotations

import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from events import (
    FaceAdded, FaceRemoved, GalleryRemoved, NegativeAdded, NegativeRemoved, SubjectMerged, SubjectRemoved,
    encode_vector,
)
from repo.store import FaceRecord, NegativeRecord, RepoStore, open_store
from watcher.galleries import GalleryFollower

DIM = 4
MODEL = "test-model"


def vector(*values: float) -> np.ndarray:
    v = np.array(values, np.float32)
    return v / np.linalg.norm(v)


@pytest.fixture
def store(tmp_path: Path) -> RepoStore:
    return open_store(f"sqlite:///{tmp_path / 'repo.db'}")


def enrol(store: RepoStore, gallery_id: str, subject_pk: str, embedding: np.ndarray) -> tuple[str, int]:
    """A face written to the database; its id and the gallery version of the change."""
    face_id = uuid.uuid4().hex
    (version,) = store.add_faces([FaceRecord(face_id, subject_pk, gallery_id, [], [], 1.0, 1.0, embedding, MODEL, "h",
                                             None, 0.0)], [None])
    return face_id, version


def added(tenant: str, gallery: str, gallery_id: str, subject_pk: str, face_id: str, embedding: np.ndarray,
          version: int, model: str = MODEL) -> dict[str, Any]:
    """A face.added as /topic/repo.events carries it (a JSON object)."""
    event = FaceAdded(tenant=tenant, gallery=gallery, gallery_id=gallery_id, version=version, subject="s",
                      subject_pk=subject_pk, face_id=face_id, model_id=model, embedding=encode_vector(embedding))
    return event.to_json()


def test_loads_the_database_then_applies_events_held_meanwhile(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    staff = store.create_gallery(tenant, "staff")
    ada = store.create_subject(staff.id, "ada", "Ada", {})
    enrol(store, staff.id, ada.pk, vector(1, 0, 0, 0))
    follower = GalleryFollower(store, tenant, ["staff"], DIM, MODEL)
    bob = store.create_subject(staff.id, "bob", "Bob", {})
    # An enrolment whose event arrives while the follower is still loading.
    bob_face, version = enrol(store, staff.id, bob.pk, vector(0, 1, 0, 0))
    follower.apply(added(tenant, "staff", staff.id, bob.pk, bob_face, vector(0, 1, 0, 0), version))
    assert follower.load() == 2  # Bob's face counted once: from the database, the held event skipped
    (best, *_), compared = follower.candidates(vector(0, 1, 0.1, 0))
    assert best.subject_pk == bob.pk and best.gallery == "staff" and best.similarity > 0.9 and compared == 2
    subject = follower.subject(best.subject_pk)
    assert subject is not None and subject.id == "bob"


def test_events_of_other_tenants_galleries_and_models_are_ignored(store: RepoStore) -> None:
    tenant, other = store.create_tenant("acme"), store.create_tenant("globex")
    staff = store.create_gallery(tenant, "staff")
    follower = GalleryFollower(store, tenant, ["staff"], DIM, MODEL)
    follower.load()
    v = vector(0, 0, 1, 0)
    follower.apply(added(other, "staff", "x", "pk", "f1", v, 1))
    follower.apply(added(tenant, "visitors", "y", "pk", "f2", v, 1))
    follower.apply(added(tenant, "staff", staff.id, "pk", "f3", v, 1, model="another-model"))
    assert len(follower) == 0 and follower.candidates(v) == ([], 0)
    follower.apply(added(tenant, "staff", staff.id, "pk", "f4", v, 2))  # the gallery's own, of its model: followed
    assert len(follower) == 1


def test_a_gallery_created_later_removals_and_merges_are_followed(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    follower = GalleryFollower(store, tenant, ["late"], DIM, MODEL)
    assert follower.load() == 0  # "late" does not exist yet
    late = store.create_gallery(tenant, "late")
    ada, eve = store.create_subject(late.id, "ada", "Ada", {}), store.create_subject(late.id, "eve", "Eve", {})
    first, version = enrol(store, late.id, ada.pk, vector(1, 0, 0, 0))
    follower.apply(added(tenant, "late", late.id, ada.pk, first, vector(1, 0, 0, 0), version))
    second, version = enrol(store, late.id, eve.pk, vector(0, 0, 0, 1))
    follower.apply(added(tenant, "late", late.id, eve.pk, second, vector(0, 0, 0, 1), version))
    assert len(follower) == 2
    removed = store.delete_face(first)
    assert removed is not None
    follower.apply(FaceRemoved(tenant=tenant, gallery="late", gallery_id=late.id, version=removed,
                               face_id=first).to_json())
    assert [c.subject_pk for c in follower.candidates(vector(1, 0, 0, 0))[0]] == [eve.pk]  # Ada's one face went
    merge = store.update_subject(eve, "Ada", None)  # renaming Eve onto Ada merges them in the database
    follower.apply(SubjectMerged(tenant=tenant, gallery="late", gallery_id=late.id, version=merge.version,
                                 subject="ada", merged="eve", subject_pk=ada.pk, merged_pk=eve.pk,
                                 face_ids=list(merge.moved_faces)).to_json())
    (best,), _ = follower.candidates(vector(0, 0, 0, 1))
    assert best.subject_pk == ada.pk  # Eve's face is Ada's now
    _, version = store.delete_gallery(late)
    follower.apply(GalleryRemoved(tenant=tenant, gallery="late", gallery_id=late.id, version=version).encode())
    assert len(follower) == 0


def test_negatives_are_loaded_and_followed(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    staff = store.create_gallery(tenant, "staff")
    ada = store.create_subject(staff.id, "ada", "Ada", {})
    enrol(store, staff.id, ada.pk, vector(1, 0, 0, 0))
    store.add_negative(NegativeRecord("n1", ada.pk, staff.id, vector(1, 1, 0, 0), MODEL, "event", 0.0), None)
    follower = GalleryFollower(store, tenant, ["staff"], DIM, MODEL)
    follower.load()
    (best,), _ = follower.candidates(vector(1, 1, 0.1, 0))
    assert best.subject_pk == ada.pk and best.negative_similarity is not None
    assert best.negative_similarity > best.similarity  # this probe looks like the correction, not like Ada
    where: dict[str, Any] = {"tenant": tenant, "gallery": "staff", "gallery_id": staff.id}
    follower.apply(NegativeRemoved(**where, version=store.delete_negative("n1"), negative_id="n1",
                                   subject_pk=ada.pk).to_json())
    assert follower.candidates(vector(1, 1, 0.1, 0))[0][0].negative_similarity is None
    for negative_id, v, model in (("n2", vector(0, 1, 0, 0), MODEL), ("n3", vector(0, 0, 1, 0), "another-model")):
        version = store.add_negative(NegativeRecord(negative_id, ada.pk, staff.id, v, model, "event", 0.0), None)
        follower.apply(NegativeAdded(**where, version=version, negative_id=negative_id, subject="ada",
                                     subject_pk=ada.pk, model_id=model, embedding=encode_vector(v)).to_json())
    assert follower.candidates(vector(0, 1, 0, 0))[0][0].negative_similarity == pytest.approx(1.0)
    # Another model's negative is not followed: n3's vector is not there.
    assert follower.candidates(vector(0, 0, 1, 0))[0][0].negative_similarity == pytest.approx(0.0, abs=1e-6)
    assert len(follower.mirror.negatives(staff.id)) == 1  # n2 only
    faces, version = store.delete_subject(ada)
    follower.apply(SubjectRemoved(**where, version=version, subject="ada", subject_pk=ada.pk,
                                  face_ids=[face_id for face_id, _ in faces]).to_json())
    assert len(follower) == 0 and follower.candidates(vector(0, 1, 0, 0)) == ([], 0)
    assert len(follower.mirror.negatives(staff.id)) == 0  # its negatives went with it
