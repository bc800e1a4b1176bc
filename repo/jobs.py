"""Bulk enrolment as a job: accepted (202) only once its input is on disk and
its row committed, resumed after a restart from the last item done, with
progress on /topic/jobs.<id> and in GET /api/v1/jobs/{job}."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from api.errors import ApiError, BadParam, Conflict, NotFound, PayloadTooLarge

from .events import EventPublisher
from .service import FaceRepository
from .store import Subject

__all__ = ("EnrolItem", "JobRunner", "items_from_zip")

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(slots=True, frozen=True)
class EnrolItem:
    subject: str
    name: str  # file name inside the zip, for reports


def items_from_zip(data: bytes, max_files: int, max_total_bytes: int) -> list[EnrolItem]:
    """The ``<subject>/<image>`` members of a zip, validated before any work."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BadParam("not a zip file", "file") from None
    items, total = [], 0
    for info in archive.infolist():
        if info.is_dir() or not info.filename.lower().endswith(_IMAGE_SUFFIXES):
            continue
        parts = Path(info.filename).parts
        if len(parts) != 2 or parts[0] in ("", ".", "..") or info.filename.startswith("/"):
            raise BadParam(f"zip members must be <subject>/<image>, got {info.filename!r}", "file")
        total += info.file_size  # the uncompressed size: zip bombs stop here
        if total > max_total_bytes:
            raise PayloadTooLarge(f"zip expands to more than {max_total_bytes} bytes", "file")
        items.append(EnrolItem(parts[0], info.filename))
    if not items:
        raise BadParam("the zip holds no images", "file")
    if len(items) > max_files:
        raise PayloadTooLarge(f"the zip holds {len(items)} images, the limit is {max_files}", "file")
    return sorted(items, key=lambda i: i.name)


class JobRunner:
    def __init__(self, repo: FaceRepository, events: EventPublisher, spool: Path, concurrency: int = 2) -> None:
        self.repo = repo
        self.events = events
        self.spool = spool
        # Items analysed at once: the models release the GIL, so 2 fill 2 cores.
        self.concurrency = concurrency
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit_zip(self, tenant_id: str, gallery_name: str, data: bytes, *, max_files: int,
                         max_total_bytes: int) -> dict[str, Any]:
        await asyncio.to_thread(self.repo.store.gallery, tenant_id, gallery_name)  # 404 before 202
        items = items_from_zip(data, max_files, max_total_bytes)
        job_id = await asyncio.to_thread(self.repo.store.create_job, tenant_id, "enrol", len(items),
                                         {"gallery": gallery_name})
        path = self.spool / f"{job_id}.zip"
        await asyncio.to_thread(self._write, path, data)
        self._start(tenant_id, job_id)
        return await asyncio.to_thread(self.repo.store.job, tenant_id, job_id)

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    def resume_all(self) -> int:
        unfinished = self.repo.store.unfinished_jobs()
        for tenant_id, job_id in unfinished:
            self._start(tenant_id, job_id)
        return len(unfinished)

    def _start(self, tenant_id: str, job_id: str) -> None:
        task = asyncio.get_running_loop().create_task(self._run(tenant_id, job_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        for task in list(self._tasks):
            task.cancel()  # the job row keeps "running"; it resumes at the next start
        await asyncio.gather(*self._tasks, return_exceptions=True)

    def _publish(self, job: dict[str, Any]) -> None:
        self.events.publish(f"/topic/jobs.{job['id']}", {k: job[k] for k in ("id", "kind", "status", "done", "total")}
                            | {"result": {k: v for k, v in job["result"].items() if k != "params"}})

    async def _run(self, tenant_id: str, job_id: str) -> None:
        store = self.repo.store
        job = await asyncio.to_thread(store.job, tenant_id, job_id)
        result = job["result"]
        result.setdefault("added", 0)
        result.setdefault("failed", [])
        path = self.spool / f"{job_id}.zip"
        try:
            data = await asyncio.to_thread(path.read_bytes)
            items = items_from_zip(data, 1 << 30, 1 << 40)
            gallery = await asyncio.to_thread(store.gallery, tenant_id, result["params"]["gallery"])
        except (OSError, ApiError) as exc:
            await asyncio.to_thread(store.update_job, job_id, "failed", job["done"], result | {"error": str(exc)})
            self._publish(await asyncio.to_thread(store.job, tenant_id, job_id))
            return
        archive = zipfile.ZipFile(io.BytesIO(data))
        done = job["done"]

        async def enrol(item: EnrolItem) -> None:
            try:
                subject = await self._subject(gallery.id, item.subject)
                records = await self.repo.add_faces(gallery, subject, archive.read(item.name))
                result["added"] += len(records)
            except ApiError as exc:
                result["failed"].append({"item": item.name, "code": exc.code, "reason": exc.reason})

        # Progress is committed per batch, so a crash redoes at most one batch.
        while done < len(items):
            batch = items[done : done + self.concurrency]
            await asyncio.gather(*(enrol(item) for item in batch))
            done += len(batch)
            await asyncio.to_thread(store.update_job, job_id, "running", done, result)
            self._publish({"id": job_id, "kind": "enrol", "status": "running", "done": done, "total": len(items),
                           "result": result})
        await asyncio.to_thread(store.update_job, job_id, "done", done, result)
        self._publish(await asyncio.to_thread(store.job, tenant_id, job_id))
        await asyncio.to_thread(path.unlink, True)

    async def _subject(self, gallery_id: str, subject_id: str) -> Subject:
        store = self.repo.store
        try:
            return await asyncio.to_thread(store.subject, gallery_id, subject_id)
        except NotFound:
            try:
                return await asyncio.to_thread(store.create_subject, gallery_id, subject_id, subject_id, {})
            except Conflict:  # a subject named like this id already exists: use it
                return await asyncio.to_thread(store.subject, gallery_id, subject_id)
