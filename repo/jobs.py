"""Jobs over the images of a zip (bulk enrolment here; grouping registers its
own kind): accepted (202) only once the zip is on disk and the job's row
committed, resumed after a restart from the last item done, with progress on
/topic/jobs.<id> and in GET /api/v1/jobs/{job}."""

from __future__ import annotations

import asyncio
import io
import logging
import os
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from api.errors import ApiError, BadParam, Conflict, NotFound, PayloadTooLarge

from .events import EventPublisher
from .service import FaceRepository
from .store import RepoStore, Subject

__all__ = ("JobItem", "JobKind", "ItemHandler", "JobRunner", "items_from_zip", "enrol_kind")

log = logging.getLogger(__name__)

_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp", ".gif", ".tif", ".tiff")


@dataclass(slots=True, frozen=True)
class JobItem:
    name: str  # the member's path inside the zip
    key: str = ""  # "<job id>/<position>", set by the runner: what a handler marks its writes with

    @property
    def folder(self) -> str:
        return Path(self.name).parts[0]


# (tenant, job params, the item's bytes, the item, the job's result to add to)
ItemHandler = Callable[[str, dict[str, Any], bytes, JobItem, dict[str, Any]], Awaitable[None]]


@dataclass(slots=True, frozen=True)
class JobKind:
    name: str
    handle: ItemHandler
    nested: bool  # members must be <folder>/<image> (the folder names the subject)
    counters: tuple[str, ...] = ()  # result fields that start at 0


def items_from_zip(data: bytes, max_files: int, max_total_bytes: int, *, nested: bool = True,
                   max_item_bytes: int | None = None) -> list[JobItem]:
    """The image members of a zip (``<subject>/<image>`` when ``nested``), validated before any work.
    ``max_item_bytes``: the most one image may be (it is read whole into memory to be decoded)."""
    try:
        archive = zipfile.ZipFile(io.BytesIO(data))
    except zipfile.BadZipFile:
        raise BadParam("not a zip file", "file") from None
    items, total = [], 0
    for info in archive.infolist():
        if info.is_dir() or not info.filename.lower().endswith(_IMAGE_SUFFIXES):
            continue
        parts = Path(info.filename).parts
        if info.filename.startswith("/") or any(p in ("", ".", "..") for p in parts):
            raise BadParam(f"zip member {info.filename!r} has an unsafe path", "file")
        if nested and len(parts) != 2:
            raise BadParam(f"zip members must be <subject>/<image>, got {info.filename!r}", "file")
        if max_item_bytes is not None and info.file_size > max_item_bytes:
            # A member is decompressed whole before its image is checked: one that expands to gigabytes
            # (a few KB of zeros, deflated) must not be read at all.
            raise PayloadTooLarge(f"zip member {info.filename!r} expands to {info.file_size} bytes, more than an "
                                  f"image may be ({max_item_bytes})", "file")
        total += info.file_size  # the uncompressed size: zip bombs stop here
        if total > max_total_bytes:
            raise PayloadTooLarge(f"zip expands to more than {max_total_bytes} bytes", "file")
        items.append(JobItem(info.filename))
    if not items:
        raise BadParam("the zip holds no images", "file")
    if len(items) > max_files:
        raise PayloadTooLarge(f"the zip holds {len(items)} images, the limit is {max_files}", "file")
    return sorted(items, key=lambda i: i.name)


def enrol_kind(repo: FaceRepository) -> JobKind:
    """Bulk enrolment: each ``<subject>/<image>`` into that subject (made if new) of the job's gallery."""

    async def subject_for(gallery_id: str, subject_id: str) -> Subject:
        try:
            return await asyncio.to_thread(repo.store.subject, gallery_id, subject_id)
        except NotFound:
            try:
                return await asyncio.to_thread(repo.store.create_subject, gallery_id, subject_id, subject_id, {})
            except Conflict:  # a subject named like this id already exists: use it
                return await asyncio.to_thread(repo.store.subject, gallery_id, subject_id)

    async def enrol(tenant_id: str, params: dict[str, Any], data: bytes, item: JobItem, result: dict[str, Any]) -> None:
        # A crash between an item's commit and the job's progress row redoes the
        # item at resume: its faces carry the item's key, so it is not added twice.
        already = await asyncio.to_thread(repo.store.faces_of_job_item, item.key)
        if already:
            result["added"] += already
            return
        gallery = await asyncio.to_thread(repo.store.gallery, tenant_id, params["gallery"])
        subject = await subject_for(gallery.id, item.folder)
        records = await repo.add_faces(gallery, subject, data, job_item=item.key)
        result["added"] += len(records)

    return JobKind("enrol", enrol, nested=True, counters=("added",))


class JobRunner:
    def __init__(self, store: RepoStore, events: EventPublisher, spool: Path, concurrency: int = 2,
                 runner_id: str = "", max_item_bytes: int | None = None) -> None:
        """``runner_id`` names this instance's spool: several API instances share one database, each
        resumes only the jobs it spooled (another host cannot read the zip). ``max_item_bytes``: the
        most one member may expand to (an image's byte limit)."""
        self.store = store
        self.events = events
        self.spool = spool
        self.runner_id = runner_id
        self.max_item_bytes = max_item_bytes
        # Items analysed at once: the models release the GIL, so 2 fill 2 cores.
        self.concurrency = concurrency
        self.kinds: dict[str, JobKind] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    def register(self, kind: JobKind) -> None:
        self.kinds[kind.name] = kind

    async def submit_zip(self, tenant_id: str, kind: str, params: dict[str, Any], data: bytes, *, max_files: int,
                         max_total_bytes: int) -> dict[str, Any]:
        items = items_from_zip(data, max_files, max_total_bytes, nested=self.kinds[kind].nested,
                               max_item_bytes=self.max_item_bytes)
        job_id = await asyncio.to_thread(self.store.create_job, tenant_id, kind, len(items), params, self.runner_id)
        path = self.spool / f"{job_id}.zip"
        await asyncio.to_thread(self._write, path, data)
        self._start(tenant_id, job_id)
        return await asyncio.to_thread(self.store.job, tenant_id, job_id)

    async def job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        """A job's status, progress and result."""
        return await asyncio.to_thread(self.store.job, tenant_id, job_id)

    async def cancel(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        """Cancel an unfinished job (its runner stops after the items in hand); Conflict if it has ended."""
        return await asyncio.to_thread(self.store.cancel_job, tenant_id, job_id)

    def _write(self, path: Path, data: bytes) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    def resume_all(self) -> int:
        """At start: run our unfinished jobs again, and drop spooled zips of jobs that ended
        while we were down (cancelled)."""
        resumed = set()
        for tenant_id, job_id, ours in self.store.unfinished_jobs(self.runner_id):
            # A job from before runners were recorded is ours if its zip is in our spool.
            if ours or (self.spool / f"{job_id}.zip").is_file():
                self._start(tenant_id, job_id)
                resumed.add(job_id)
        for spooled in self.spool.glob("*.zip") if self.spool.is_dir() else ():
            if spooled.stem not in resumed:
                spooled.unlink(missing_ok=True)
        return len(resumed)

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
        store = self.store
        job = await asyncio.to_thread(store.job, tenant_id, job_id)
        result = job["result"]
        result.setdefault("failed", [])
        path = self.spool / f"{job_id}.zip"
        kind = self.kinds.get(job["kind"])
        for counter in kind.counters if kind else ():
            result.setdefault(counter, 0)
        try:
            if kind is None:
                raise BadParam(f"no job kind {job['kind']!r} in this server")
            data = await asyncio.to_thread(path.read_bytes)
            items = [replace(item, key=f"{job_id}/{position}")
                     for position, item in enumerate(items_from_zip(data, 1 << 30, 1 << 40, nested=kind.nested,
                                                                    max_item_bytes=self.max_item_bytes))]
        except (OSError, ApiError) as exc:
            await asyncio.to_thread(store.update_job, job_id, "failed", job["done"], result | {"error": str(exc)})
            self._publish(await asyncio.to_thread(store.job, tenant_id, job_id))
            return
        try:
            await self._items(tenant_id, job_id, kind, items, zipfile.ZipFile(io.BytesIO(data)), job["done"], result)
        except Exception as exc:  # never a job that stays unfinished (and crashes again at every start)
            log.exception("job %s failed", job_id)
            result["error"] = f"unexpected error: {exc!r}"[:500]
            await asyncio.to_thread(store.update_job, job_id, "failed", job["done"], result)
        self._publish(await asyncio.to_thread(store.job, tenant_id, job_id))  # done, failed or cancelled
        await asyncio.to_thread(path.unlink, True)

    async def _items(self, tenant_id: str, job_id: str, kind: JobKind, items: list[JobItem],
                     archive: zipfile.ZipFile, done: int, result: dict[str, Any]) -> None:
        store = self.store

        async def one(item: JobItem) -> None:
            try:
                # Decompressed off the event loop; a bad member (CRC, encryption, an unknown method, a
                # size that lies) fails its item, not the job.
                data = await asyncio.to_thread(archive.read, item.name)
            except (zipfile.BadZipFile, zlib.error, RuntimeError, NotImplementedError, EOFError, ValueError,
                    OSError) as exc:
                result["failed"].append({"item": item.name, "code": "BAD_PARAM",
                                         "reason": f"unreadable zip member: {exc}"[:300]})
                return
            try:
                await kind.handle(tenant_id, result["params"], data, item, result)
            except ApiError as exc:
                result["failed"].append({"item": item.name, "code": exc.code, "reason": exc.reason})

        # Progress is committed per batch, so a crash redoes at most one batch
        # (handlers skip the items whose writes were committed: JobItem.key).
        running = True
        while done < len(items) and running:
            batch = items[done : done + self.concurrency]
            await asyncio.gather(*(one(item) for item in batch))
            done += len(batch)
            running = await asyncio.to_thread(store.update_job, job_id, "running", done, result)
            if running:
                self._publish({"id": job_id, "kind": kind.name, "status": "running", "done": done,
                               "total": len(items), "result": result})
        if running:
            await asyncio.to_thread(store.update_job, job_id, "done", done, result)
