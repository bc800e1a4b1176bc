"""A camera's galleries: read from a real SQLite store, then kept current by repo events."""

from __future__ import annotations

import base64
import uuid
from pathlib import Path

import numpy as np
import pytest

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


def enrol(store: RepoStore, gallery_id: str, subject_pk: str, embedding: np.ndarray) -> str:
    face_id = uuid.uuid4().hex
    store.add_faces([FaceRecord(face_id, subject_pk, gallery_id, [], [], 1.0, 1.0, embedding, MODEL, "h", None, 0.0)],
                    [None])
    return face_id


def added(tenant: str, gallery: str, gallery_id: str, subject_pk: str, face_id: str, embedding: np.ndarray,
          model: str = MODEL) -> dict[str, object]:
    return {"type": "face.added", "tenant": tenant, "gallery": gallery, "gallery_id": gallery_id,
            "subject_pk": subject_pk, "face_id": face_id, "model_id": model,
            "embedding": base64.b64encode(embedding.astype(np.float32).tobytes()).decode()}


def test_loads_the_database_then_applies_events_held_meanwhile(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    staff = store.create_gallery(tenant, "staff")
    ada = store.create_subject(staff.id, "ada", "Ada", {})
    enrol(store, staff.id, ada.pk, vector(1, 0, 0, 0))
    follower = GalleryFollower(store, tenant, ["staff"], DIM, MODEL)
    bob = store.create_subject(staff.id, "bob", "Bob", {})
    # An enrolment whose event arrives while the follower is still loading.
    bob_face = enrol(store, staff.id, bob.pk, vector(0, 1, 0, 0))
    follower.apply(added(tenant, "staff", staff.id, bob.pk, bob_face, vector(0, 1, 0, 0)))
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
    follower.apply(added(other, "staff", "x", "pk", "f1", v))
    follower.apply(added(tenant, "visitors", "y", "pk", "f2", v))
    follower.apply(added(tenant, "staff", staff.id, "pk", "f3", v, model="another-model"))
    assert len(follower) == 0 and follower.candidates(v) == ([], 0)


def test_a_gallery_created_later_removals_and_merges_are_followed(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    follower = GalleryFollower(store, tenant, ["late"], DIM, MODEL)
    assert follower.load() == 0  # "late" does not exist yet
    late = store.create_gallery(tenant, "late")
    ada, eve = store.create_subject(late.id, "ada", "Ada", {}), store.create_subject(late.id, "eve", "Eve", {})
    first = enrol(store, late.id, ada.pk, vector(1, 0, 0, 0))
    follower.apply(added(tenant, "late", late.id, ada.pk, first, vector(1, 0, 0, 0)))
    second = enrol(store, late.id, eve.pk, vector(0, 0, 0, 1))
    follower.apply(added(tenant, "late", late.id, eve.pk, second, vector(0, 0, 0, 1)))
    assert len(follower) == 2
    follower.apply({"type": "face.removed", "tenant": tenant, "gallery": "late", "gallery_id": late.id,
                    "face_id": first})
    assert [c.subject_pk for c in follower.candidates(vector(1, 0, 0, 0))[0]] == [eve.pk]  # Ada's one face went
    merge = store.update_subject(eve, "Ada", None)  # renaming Eve onto Ada merges them in the database
    follower.apply({"type": "subject.merged", "tenant": tenant, "gallery": "late", "gallery_id": late.id,
                    "subject": "ada", "merged": "eve", "subject_pk": ada.pk, "merged_pk": eve.pk,
                    "face_ids": list(merge.moved_faces)})
    (best,), _ = follower.candidates(vector(0, 0, 0, 1))
    assert best.subject_pk == ada.pk  # Eve's face is Ada's now
    follower.apply({"type": "gallery.removed", "tenant": tenant, "gallery": "late", "gallery_id": late.id})
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
    event = {"tenant": tenant, "gallery": "staff", "gallery_id": staff.id}
    follower.apply({**event, "type": "negative.removed", "negative_id": "n1", "subject_pk": ada.pk})
    assert follower.candidates(vector(1, 1, 0.1, 0))[0][0].negative_similarity is None
    follower.apply({**event, "type": "negative.added", "negative_id": "n2", "subject_pk": ada.pk, "model_id": MODEL,
                    "embedding": base64.b64encode(vector(0, 1, 0, 0).tobytes()).decode()})
    assert follower.candidates(vector(0, 1, 0, 0))[0][0].negative_similarity == pytest.approx(1.0)
    follower.apply({**event, "type": "negative.added", "negative_id": "n3", "subject_pk": ada.pk,
                    "model_id": "another-model", "embedding": base64.b64encode(vector(0, 0, 1, 0).tobytes()).decode()})
    assert follower.candidates(vector(0, 0, 1, 0))[0][0].negative_similarity == pytest.approx(0.0, abs=1e-6)
    follower.apply({**event, "type": "subject.removed", "subject": "ada", "subject_pk": ada.pk, "face_ids": []})
    assert follower.candidates(vector(0, 1, 0, 0))[0][0].negative_similarity is None
