"""Bulk jobs after a crash (enrolment, grouping): resumed by the instance that spooled them, without adding an
item twice. Real SQLite, real models, real faces, in process."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from facewatch.config import parse_config
from facewatch.repo_setup import RepoParts, build_repo, instance_id
from grouping.handlers import grouping_job_kind
from grouping.service import GroupingOptions, GroupingService
from grouping.store import GroupStore
from repo.events import NullPublisher
from repo.jobs import JobRunner
from repo.store import JobLease, RepoStore
from vision.analyzer import FaceAnalyzer

pytestmark = [pytest.mark.models, pytest.mark.data]


def _instance(data_dir: Path, models_dir: Path, analyzer: FaceAnalyzer, storage_url: str | None = None) -> RepoParts:
    settings: dict[str, Any] = {"data_dir": str(data_dir), "models": {"dir": str(models_dir)},
                                "runtime": {"analysis_processes": 0}}
    if storage_url:
        settings["storage"] = {"url": storage_url}
    return build_repo(parse_config(settings, environ={}), analyzer, NullPublisher())


def _zip_of(photos: dict[str, Path]) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for person, photo in photos.items():
            archive.writestr(f"{person}/{photo.name}", photo.read_bytes())
    return buf.getvalue()


async def _until_done(jobs: JobRunner, store: RepoStore, tenant: str, job_id: str) -> dict[str, Any]:
    """The job once its runner has ended (writing "done" is the runner's last step but one)."""
    await asyncio.gather(*list(jobs._tasks))
    job = store.job(tenant, job_id)
    assert job["status"] == "done", job
    return job


def test_an_item_committed_before_a_crash_is_not_enrolled_again(tmp_path: Path, models_dir: Path,
                                                                 analyzer: FaceAnalyzer, shared_data: Path) -> None:
    parts = _instance(tmp_path, models_dir, analyzer)
    store, repo = parts.store, parts.repo
    tenant = store.create_tenant("acme")
    gallery = store.create_gallery(tenant, "people")
    photos = {person: sorted((shared_data / "faces" / "enroll" / person).iterdir())[0] for person in ("biden", "obama")}

    async def crash_then_resume() -> dict[str, Any]:
        # What a crash leaves: the job accepted and spooled, its first item's face committed,
        # its progress row not yet moved past that item.
        job_id = store.create_job(tenant, "enrol", 2, {"gallery": "people"}, parts.jobs.runner_id)
        parts.jobs._write(parts.jobs.spool / f"{job_id}.zip", _zip_of(photos))
        biden = store.create_subject(gallery.id, "biden", "biden", {})
        await repo.add_faces(gallery, biden, photos["biden"].read_bytes(), job_item=f"{job_id}/0")
        assert parts.jobs.resume_all() == 1
        return await _until_done(parts.jobs, store, tenant, job_id)

    job = asyncio.run(crash_then_resume())
    subjects, total = store.list_subjects(gallery.id, 0, 10)
    assert total == 2
    assert {s.id: s.face_count for s in subjects} == {"biden": 1, "obama": 1}
    assert job["done"] == 2 and job["result"]["added"] == 2 and job["result"]["failed"] == []
    store.close()


def test_each_instance_resumes_only_the_jobs_it_spooled(tmp_path: Path, models_dir: Path, analyzer: FaceAnalyzer,
                                                        shared_data: Path) -> None:
    shared_db = f"sqlite:///{tmp_path / 'shared.db'}"
    a = _instance(tmp_path / "a", models_dir, analyzer, shared_db)
    b = _instance(tmp_path / "b", models_dir, analyzer, shared_db)
    assert a.jobs.runner_id != b.jobs.runner_id
    assert instance_id(tmp_path / "a") == a.jobs.runner_id  # stable across restarts of the same directory
    store = a.store
    tenant = store.create_tenant("acme")
    store.create_gallery(tenant, "people")
    photos = {"obama": sorted((shared_data / "faces" / "enroll" / "obama").iterdir())[0]}
    a_job = store.create_job(tenant, "enrol", 1, {"gallery": "people"}, a.jobs.runner_id)
    a.jobs._write(a.jobs.spool / f"{a_job}.zip", _zip_of(photos))
    # A job from before runners were recorded, spooled in b's directory.
    legacy_job = store.create_job(tenant, "enrol", 1, {"gallery": "people"}, None)
    b.jobs._write(b.jobs.spool / f"{legacy_job}.zip", _zip_of(photos))

    async def restart_both() -> None:
        assert b.jobs.resume_all() == 1  # the legacy job in its spool, not a's job
        assert a.jobs.resume_all() == 1  # its own job, not the legacy one it cannot read
        await _until_done(a.jobs, store, tenant, a_job)
        await _until_done(b.jobs, store, tenant, legacy_job)
        await a.jobs.stop()
        await b.jobs.stop()

    asyncio.run(restart_both())
    assert store.job(tenant, a_job)["result"]["added"] == store.job(tenant, legacy_job)["result"]["added"] == 1
    a.store.close()
    b.store.close()


def test_a_job_whose_runner_died_is_resumed_by_another_from_the_database(tmp_path: Path, models_dir: Path,
                                                                        analyzer: FaceAnalyzer,
                                                                        shared_data: Path) -> None:
    shared_db = f"sqlite:///{tmp_path / 'shared.db'}"
    a = _instance(tmp_path / "a", models_dir, analyzer, shared_db)
    b = _instance(tmp_path / "b", models_dir, analyzer, shared_db)
    store = a.store
    tenant = store.create_tenant("acme")
    gallery = store.create_gallery(tenant, "people")
    photos = {person: sorted((shared_data / "faces" / "enroll" / person).iterdir())[0] for person in ("biden", "obama")}
    # What a's death leaves: the job and its zip in the database, its first item's face committed, its
    # progress row not yet past it, and a lease that a stopped renewing (expired now).
    job_id = store.create_job(tenant, "enrol", 2, {"gallery": "people"}, a.jobs.runner_id, data=_zip_of(photos),
                              lease_ttl_s=0.0)

    async def die_then_resume() -> dict[str, Any]:
        biden = store.create_subject(gallery.id, "biden", "biden", {})
        await a.repo.add_faces(gallery, biden, photos["biden"].read_bytes(), job_item=f"{job_id}/0")
        assert b.jobs.resume_all() == 1  # b has no spool of it: the zip comes from the database
        return await _until_done(b.jobs, store, tenant, job_id)

    job = asyncio.run(die_then_resume())
    subjects, _ = store.list_subjects(gallery.id, 0, 10)
    assert {s.id: s.face_count for s in subjects} == {"biden": 1, "obama": 1}  # the committed item not again
    assert job["done"] == 2 and job["result"]["added"] == 2
    # a wakes up with its old lease: its writes are refused (it was presumed dead), and the input is gone.
    assert not store.update_job(job_id, "running", 1, {}, JobLease(a.jobs.runner_id, 1))
    assert store.job(tenant, job_id)["status"] == "done" and store.job_input(job_id) is None
    a.store.close()
    b.store.close()


def test_a_grouping_job_resumed_mid_item_places_each_face_once(tmp_path: Path, models_dir: Path,
                                                               analyzer: FaceAnalyzer, shared_data: Path) -> None:
    parts = _instance(tmp_path, models_dir, analyzer)
    store = parts.store
    service = GroupingService(GroupStore(store), parts.repo, NullPublisher(), GroupingOptions())
    parts.jobs.register(grouping_job_kind(service))
    tenant = store.create_tenant("acme")
    photo = (shared_data / "faces" / "probe" / "two_people.jpg").read_bytes()
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("two_people.jpg", photo)

    async def crash_then_resume() -> tuple[dict[str, Any], list[dict[str, Any]]]:
        job_id = store.create_job(tenant, "group", 1, {}, parts.jobs.runner_id)
        parts.jobs._write(parts.jobs.spool / f"{job_id}.zip", buf.getvalue())
        # What a crash halfway through the item leaves: its first face placed, the second not.
        placed = await service.add_image(tenant, photo, job_item=f"{job_id}/0")
        assert len(placed) == 2
        await service.remove_face(tenant, placed[1]["face"])
        assert parts.jobs.resume_all() == 1
        return await _until_done(parts.jobs, store, tenant, job_id), placed

    job, before = asyncio.run(crash_then_resume())
    groups, total = GroupStore(store).list_groups(tenant, camera=None, since=None, until=None, status=None,
                                                  offset=0, limit=10)
    assert sum(g.face_count for g in groups) == 2  # not 3: the first face was not placed again
    faces = {f.id for g in groups for f in GroupStore(store).faces(tenant, g.id)}
    assert before[0]["face"] in faces and before[1]["face"] not in faces
    assert job["result"]["faces"] == 2 and set(job["result"]["groups"]) == {g.id for g in groups}
    store.close()


def test_a_job_cancelled_while_its_instance_was_down_is_dropped_at_start(tmp_path: Path, models_dir: Path,
                                                                       analyzer: FaceAnalyzer) -> None:
    parts = _instance(tmp_path, models_dir, analyzer)
    store = parts.store
    tenant = store.create_tenant("acme")
    store.create_gallery(tenant, "people")
    job_id = store.create_job(tenant, "enrol", 1, {"gallery": "people"}, parts.jobs.runner_id)
    spooled = parts.jobs.spool / f"{job_id}.zip"
    parts.jobs._write(spooled, b"PK\x05\x06" + bytes(18))  # an empty zip: never read
    assert store.cancel_job(tenant, job_id)["status"] == "cancelled"
    assert parts.jobs.resume_all() == 0
    assert not spooled.exists()
    assert store.job(tenant, job_id)["status"] == "cancelled"
    store.close()


def _patch(data: bytearray, member: str, local_offset: int, central_offset: int, value: bytes) -> None:
    """Overwrite a field of ``member`` in both its local header and its central directory entry."""
    archive = zipfile.ZipFile(io.BytesIO(bytes(data)))
    info = archive.getinfo(member)
    data[info.header_offset + local_offset: info.header_offset + local_offset + len(value)] = value
    entry = bytes(data).rindex(b"PK\x01\x02", 0, bytes(data).rindex(member.encode()))
    data[entry + central_offset: entry + central_offset + len(value)] = value


def _hostile_zip(photo: Path) -> bytes:
    """One good photo and four members no job may choke on."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        archive.writestr("good/photo.jpg", photo.read_bytes())
        archive.writestr("crc/photo.jpg", photo.read_bytes())  # stored: its bytes are changed below
        archive.writestr("encrypted/photo.jpg", photo.read_bytes())  # flagged encrypted below
        archive.writestr("method/photo.jpg", photo.read_bytes())
        archive.writestr("lying/photo.jpg", photo.read_bytes(), compress_type=zipfile.ZIP_DEFLATED)
    data = bytearray(buf.getvalue())
    info = zipfile.ZipFile(io.BytesIO(bytes(data))).getinfo("crc/photo.jpg")
    start = info.header_offset + 30 + len(info.filename) + len(info.extra)
    data[start + 100] ^= 0xFF  # one byte of the member's data: its CRC no longer matches
    _patch(data, "encrypted/photo.jpg", 6, 8, (1).to_bytes(2, "little"))  # the "encrypted" flag bit
    _patch(data, "method/photo.jpg", 8, 10, (9).to_bytes(2, "little"))  # Deflate64: not in zipfile
    _patch(data, "lying/photo.jpg", 22, 24, (1000).to_bytes(4, "little"))  # declared size: 1,000 bytes
    return bytes(data)


def test_bad_zip_members_fail_their_items_and_the_job_ends(tmp_path: Path, models_dir: Path,
                                                           analyzer: FaceAnalyzer, shared_data: Path) -> None:
    parts = _instance(tmp_path, models_dir, analyzer)
    store = parts.store
    tenant = store.create_tenant("acme")
    store.create_gallery(tenant, "people")
    data = _hostile_zip(sorted((shared_data / "faces" / "enroll" / "obama").iterdir())[0])

    async def run() -> dict[str, Any]:
        job = await parts.jobs.submit_zip(tenant, "enrol", {"gallery": "people"}, data, max_files=10,
                                          max_total_bytes=10 << 20)
        return await _until_done(parts.jobs, store, tenant, job["id"])

    job = asyncio.run(run())
    assert job["done"] == 5 and job["result"]["added"] == 1
    failed = {f["item"]: f for f in job["result"]["failed"]}
    assert set(failed) == {"crc/photo.jpg", "encrypted/photo.jpg", "method/photo.jpg", "lying/photo.jpg"}
    assert all(f["code"] == "BAD_PARAM" and "unreadable zip member" in f["reason"] for f in failed.values())
    store.close()
