"""Bulk enrolment jobs resume without adding an item twice: real SQLite, real models, real faces, in process."""

from __future__ import annotations

import asyncio
import io
import zipfile
from pathlib import Path
from typing import Any

import pytest

from facewatch.config import parse_config
from facewatch.repo_setup import build_repo
from repo.events import NullPublisher
from vision.analyzer import FaceAnalyzer

pytestmark = [pytest.mark.models, pytest.mark.data]


def test_an_item_committed_before_a_crash_is_not_enrolled_again(tmp_path: Path, models_dir: Path,
                                                                 analyzer: FaceAnalyzer, shared_data: Path) -> None:
    cfg = parse_config({"data_dir": str(tmp_path), "models": {"dir": str(models_dir)},
                        "runtime": {"analysis_processes": 0}}, environ={})
    parts = build_repo(cfg, analyzer, NullPublisher())
    store, repo = parts.store, parts.repo
    tenant = store.create_tenant("acme")
    gallery = store.create_gallery(tenant, "people")
    photos = {person: sorted((shared_data / "faces" / "enroll" / person).iterdir())[0] for person in ("biden", "obama")}
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as archive:
        for person, photo in photos.items():
            archive.writestr(f"{person}/{photo.name}", photo.read_bytes())

    async def crash_then_resume() -> dict[str, Any]:
        # What a crash leaves: the job accepted and spooled, its first item's face committed,
        # its progress row not yet moved past that item.
        job_id = store.create_job(tenant, "enrol", 2, {"gallery": "people"})
        parts.jobs._write(parts.jobs.spool / f"{job_id}.zip", buf.getvalue())
        biden = store.create_subject(gallery.id, "biden", "biden", {})
        await repo.add_faces(gallery, biden, photos["biden"].read_bytes(), job_item=f"{job_id}/0")
        assert parts.jobs.resume_all() == 1
        while (job := store.job(tenant, job_id))["status"] != "done":
            await asyncio.sleep(0.05)
        return job

    job = asyncio.run(crash_then_resume())
    subjects, total = store.list_subjects(gallery.id, 0, 10)
    assert total == 2
    assert {s.id: s.face_count for s in subjects} == {"biden": 1, "obama": 1}
    assert job["done"] == 2 and job["result"]["added"] == 2 and job["result"]["failed"] == []
    store.close()
