"""A changed embedding model: after restart the stored faces (the repo's and grouping's) are re-embedded in the
background, from their original photos or their crops; nothing is compared across models meanwhile. A real
server on SQLite, and in process; real faces."""

from __future__ import annotations

import asyncio
import base64
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api.errors import Conflict
from facewatch.analyzer_setup import build_analyzer
from facewatch.config import parse_config
from facewatch.repo_setup import build_repo
from grouping.reembed import grouped_faces
from grouping.service import GroupingOptions, GroupingService
from grouping.store import GroupStore, NewFace
from repo.events import NullPublisher
from repo.reembed import Reembedder, ReembedStatus, repo_faces
from repo.service import EmbeddedFace, FaceRepository
from tests.waiting import eventually
from vision.analyzer import FaceAnalyzer
from vision.images import decode_image
from watcher.pipeline import crop_jpeg

from .repo_server import Http, RepoServer, enrol

pytestmark = [pytest.mark.models, pytest.mark.data]

PEOPLE = ("biden", "kit_harington", "obama", "rose_leslie")


def _identified(http: Http, data: Path, gallery: str) -> set[str]:
    probe = (data / "faces/probe/kit_with_rose.jpg").read_bytes()
    reply = http.call("POST", "/api/v1/identify", files={"file": ("p.jpg", probe)}, fields={"galleries": gallery})
    assert reply.status == 200, reply.body
    return {f["matches"][0]["subject"] for f in reply.body["faces"] if f["matches"]}


def _reembedding_when_done(server: RepoServer, timeout_s: float = 120) -> dict[str, Any]:
    def finished() -> dict[str, Any] | None:
        status: dict[str, Any] = server.http().call("GET", "/api/v1/health").body["reembedding"]
        return None if status["running"] else status

    return eventually(finished, timeout_s=timeout_s, interval_s=0.2, what="the re-embedding to finish")


def test_stored_faces_are_reembedded_when_the_model_changes(tmp_path: Path, models_dir: Path,
                                                            shared_data: Path) -> None:
    server = RepoServer(tmp_path, models_dir, None, FACEWATCH_STORAGE__SAVE_IMAGES="false")
    tenant = server.create_tenant("acme")
    http = server.http(api_key=tenant["api_key"])
    server.start()
    try:
        crops_only = enrol(http, shared_data, "crops", PEOPLE)  # no originals kept: re-embedded from the aligned crops
        server.stop()
        server.env["FACEWATCH_STORAGE__SAVE_IMAGES"] = "true"
        server.start()
        with_originals = enrol(http, shared_data, "people", PEOPLE)
        old_model = server.http().call("GET", "/api/v1/health").body["embedding_model"]
        assert _reembedding_when_done(server) == {"pending": 0, "done": 0, "failed": 0, "running": False, "error": None}
        server.stop()

        # A new model to the store: another id, and mirrored-crop averaging so that its vectors really differ.
        # No calibration ships for a model of our own: it needs a fixed cosine (or bench/calibrate.py's file).
        server.env.update(FACEWATCH_MODELS__EMBEDDER__MODEL_ID="fr_feature-flip-test",
                          FACEWATCH_MODELS__EMBEDDER__FLIP="true", FACEWATCH_RECOGNITION__THRESHOLD="0.278")
        server.start()
        total = len(crops_only) + len(with_originals)
        assert _reembedding_when_done(server) == {"pending": total, "done": total, "failed": 0, "running": False,
                                                  "error": None}
        for face_id in (crops_only[0], with_originals[0]):
            face = http.call("GET", f"/api/v1/faces/{face_id}").body
            assert face["model_id"] == "fr_feature-flip-test" != old_model
        assert _identified(http, shared_data, "people") == {"kit_harington", "rose_leslie"}
        assert _identified(http, shared_data, "crops") == {"kit_harington", "rose_leslie"}
        obama_face = http.call("GET", "/api/v1/galleries/people/subjects/obama/faces").body["faces"][0]["id"]
        probe = (shared_data / "faces/probe/obama1.jpg").read_bytes()
        verified = http.call("POST", "/api/v1/verify", files={"image1": ("p.jpg", probe)},
                             fields={"face_id": obama_face})
        assert verified.status == 200 and verified.body["verified"], verified.body

        server.stop()
        server.start()  # nothing left to do
        assert _reembedding_when_done(server)["pending"] == 0
    finally:
        server.stop()


def _cosine(a: Any, b: Any) -> float:
    return float(np.dot(a, b) / (np.linalg.norm(a) * np.linalg.norm(b)))


def test_each_kept_source_gives_the_new_models_embedding(tmp_path: Path, models_dir: Path, analyzer: FaceAnalyzer,
                                                         shared_data: Path) -> None:
    """In process, the three sources one by one (original + points, aligned crop, face crop of an
    embedded face) and a face with none, against what the new model makes of the same photo."""
    settings: dict[str, Any] = {"data_dir": str(tmp_path), "models": {"dir": str(models_dir)},
                                "runtime": {"analysis_processes": 0}}
    cfg = parse_config(settings, environ={})
    parts = build_repo(cfg, analyzer, NullPublisher())
    store, old = parts.store, parts.repo
    no_originals = FaceRepository(store, analyzer, old.images, replace(old.options, save_images=False), NullPublisher())
    tenant = store.create_tenant("acme")
    gallery = store.create_gallery(tenant, "people")
    subject = store.create_subject(gallery.id, "obama", "Obama", {})
    photos = sorted((shared_data / "faces" / "enroll" / "obama").iterdir())
    probe = (shared_data / "faces" / "probe" / "obama1.jpg").read_bytes()
    probe_face = analyzer.analyze(decode_image(probe), max_faces=1)[0]
    probe_embedding = probe_face.embedding
    assert probe_embedding is not None
    crop = base64.b64decode(crop_jpeg(decode_image(probe), probe_face.box, 256))  # what a watcher keeps

    async def enrol() -> list[str]:
        ids = [(await old.add_faces(gallery, subject, photos[0].read_bytes()))[0].id,
               (await no_originals.add_faces(gallery, subject, photos[1].read_bytes()))[0].id]
        for image in (crop, None):
            faces = [EmbeddedFace(probe_embedding, analyzer.embedder.model_id, 0.9, image)]
            ids.append((await old.add_embedded_faces(gallery, subject, faces))[0].id)
        return ids

    original_id, crop_only_id, embedded_id, sourceless_id = asyncio.run(enrol())

    settings["models"]["embedder"] = {"model_id": "fr_feature-flip-test", "flip": True}
    new_analyzer = build_analyzer(parse_config(settings, environ={}))
    new = FaceRepository(store, new_analyzer, old.images, old.options, NullPublisher())
    assert new.load_indexes() == 0  # nothing of the old model is searched
    with pytest.raises(Conflict):
        new.face_embedding(store.face(tenant, original_id)[0])

    status = asyncio.run(Reembedder(new_analyzer, repo_faces(new)).run())
    assert (status.pending, status.done, status.failed, status.error) == (4, 3, 1, None)
    assert new.face_count(gallery.id) == 3

    def fresh(photo: bytes) -> Any:
        return new_analyzer.analyze(decode_image(photo), max_faces=1)[0].embedding

    stored = {face_id: store.face(tenant, face_id)[0]
              for face_id in (original_id, crop_only_id, embedded_id, sourceless_id)}
    assert _cosine(stored[original_id].embedding, fresh(photos[0].read_bytes())) > 0.99
    assert _cosine(stored[crop_only_id].embedding, fresh(photos[1].read_bytes())) > 0.97  # through a JPEG crop
    assert _cosine(stored[embedded_id].embedding, fresh(probe)) > 0.95  # detected again in the crop
    assert _cosine(stored[embedded_id].embedding, probe_face.embedding) < 0.999  # the new model's vector, not the old
    assert stored[sourceless_id].model_id == analyzer.embedder.model_id  # left as it was
    assert {stored[i].model_id for i in (original_id, crop_only_id, embedded_id)} == {"fr_feature-flip-test"}
    store.close()


def test_a_face_merged_into_another_subject_while_being_reembedded_is_indexed_under_it(
        tmp_path: Path, models_dir: Path, analyzer: FaceAnalyzer, shared_data: Path) -> None:
    settings: dict[str, Any] = {"data_dir": str(tmp_path), "models": {"dir": str(models_dir)},
                                "runtime": {"analysis_processes": 0}}
    parts = build_repo(parse_config(settings, environ={}), analyzer, NullPublisher())
    repo, store = parts.repo, parts.store
    tenant = store.create_tenant("acme")
    gallery = store.create_gallery(tenant, "people")
    barack = store.create_subject(gallery.id, "barack", "Barack", {})
    obama = store.create_subject(gallery.id, "obama", "Obama", {})
    photo = sorted((shared_data / "faces" / "enroll" / "obama").iterdir())[0].read_bytes()

    async def merge_between_read_and_write() -> list[Any]:
        (record,) = await repo.add_faces(gallery, barack, photo)
        await repo.update_subject(gallery, barack, "Obama", None)  # renamed onto Obama: merged into it
        repo._index(gallery.id).remove([record.id])  # as if another model had made it: not in the index
        await repo.replace_embeddings([record], [record.embedding])  # the record still names Barack
        return repo._index(gallery.id).search(record.embedding, 1)

    (match,) = asyncio.run(merge_between_read_and_write())
    assert match.subject_pk == obama.pk
    store.close()


def test_grouped_faces_are_reembedded_and_stay_in_their_groups(tmp_path: Path, models_dir: Path,
                                                               analyzer: FaceAnalyzer, shared_data: Path) -> None:
    settings: dict[str, Any] = {"data_dir": str(tmp_path), "models": {"dir": str(models_dir)},
                                "runtime": {"analysis_processes": 0}}
    parts = build_repo(parse_config(settings, environ={}), analyzer, NullPublisher())
    old = GroupingService(GroupStore(parts.store), parts.repo, NullPublisher(), GroupingOptions())
    tenant = parts.store.create_tenant("acme")
    gallery = parts.store.create_gallery(tenant, "people")
    enrol = sorted((shared_data / "faces" / "enroll" / "obama").iterdir())
    probe = (shared_data / "faces" / "probe" / "obama1.jpg").read_bytes()
    probe_face = analyzer.analyze(decode_image(probe), max_faces=1)[0]
    probe_embedding = probe_face.embedding
    assert probe_embedding is not None
    camera_crop = base64.b64decode(crop_jpeg(decode_image(probe), probe_face.box, 256))

    async def group_with_the_old_model() -> tuple[str, str, str, str]:
        uploaded = (await old.add_image(tenant, enrol[0].read_bytes()))[0]  # keeps the aligned crop
        from_camera = NewFace(probe_embedding, analyzer.embedder.model_id, "camera", time.time(), 0.9,
                              camera="door", track=1, crop=camera_crop)
        _, camera_face, _ = await old.add_face(tenant, from_camera)
        _, no_crop, _ = await old.add_face(tenant, replace(from_camera, crop=None, track=2))
        return uploaded["group"], uploaded["face"], camera_face, no_crop

    group, uploaded_id, camera_id, no_crop_id = asyncio.run(group_with_the_old_model())
    assert {f.id for f in old.store.faces(tenant, group)} == {uploaded_id, camera_id, no_crop_id}

    settings["models"]["embedder"] = {"model_id": "fr_feature-flip-test", "flip": True}
    new_analyzer = build_analyzer(parse_config(settings, environ={}))
    new_repo = FaceRepository(parts.store, new_analyzer, parts.repo.images, parts.repo.options, NullPublisher())
    new = GroupingService(GroupStore(parts.store), new_repo, NullPublisher(), GroupingOptions())
    assert new.load() == 0  # another model's faces are not in the index

    async def reembed_then_place() -> tuple[ReembedStatus, str]:
        with pytest.raises(Conflict):  # nothing of the current model to enrol yet
            await new.promote(tenant, group, "people", "obama", "Obama")
        await new.remove_face(tenant, no_crop_id)  # an old-model face leaves without touching the index
        status = await Reembedder(new_analyzer, grouped_faces(new)).run()
        placed = await new.add_image(tenant, enrol[1].read_bytes())  # another photo of him, new model
        return status, placed[0]["group"]

    status, placed_in = asyncio.run(reembed_then_place())
    assert (status.pending, status.done, status.failed) == (2, 2, 0)
    assert parts.store.list_subjects(gallery.id, 0, 10)[1] == 0  # the refused promotion left no subject
    assert placed_in == group  # the re-embedded faces carry their group in the new model's index
    stored = {f.id: f for f in new.store.faces(tenant, group)}
    assert {stored[uploaded_id].model_id, stored[camera_id].model_id} == {"fr_feature-flip-test"}
    fresh = new_analyzer.analyze(decode_image(probe), max_faces=1)[0].embedding
    assert _cosine(stored[camera_id].embedding, fresh) > 0.95  # detected again in the camera's crop
    parts.store.close()
