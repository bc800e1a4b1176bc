"""Jobs over the images of a zip (bulk enrolment here; grouping registers its
own kind): accepted (202) only once the job's row and its zip are committed
(in the database, so any node can read it), resumed from the last batch done,
with progress on /topic/jobs.<id> and in GET /api/v1/jobs/{job}.

A job runs under a lease (``jobs.runner``, ``lease_epoch``, ``lease_expires_at``)
that its runner renews every third of ``lease_ttl_s``. A job whose lease expired
(its node died) or was released (its node stopped) is claimed, with the next
epoch, by whichever node's runner finds it first, and resumed there. Progress
writes name the lease, so a runner that lost its job (it was presumed dead)
writes nothing more, and it starts no batch once the lease it last renewed has
expired. Items are never applied twice: each item's writes carry its key
(``JobItem.key``), and an item found done is skipped. Not covered: a runner
paused (not dead) past its lease in the middle of a batch finishes that batch
beside the new runner.
"""

from __future__ import annotations

import asyncio
import io
import logging
import os
import time
import zipfile
import zlib
from collections.abc import Awaitable, Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from api.errors import ApiError, BadParam, Conflict, NotFound, PayloadTooLarge

from events import JobProgress, job_topic

from .events import EventPublisher
from .images import photo_hash
from .service import FaceRepository
from .store import JobLease, RepoStore, Subject

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
        # The same photo enrolled again (a folder enrolled twice, after a few photos were added to it) would
        # only be a duplicate face: skipped, and counted as such.
        digest = await asyncio.to_thread(photo_hash, data)
        if await asyncio.to_thread(repo.store.subject_has_photo, subject.pk, digest):
            result["skipped"] += 1
            return
        records = await repo.add_faces(gallery, subject, data, job_item=item.key)
        result["added"] += len(records)

    return JobKind("enrol", enrol, nested=True, counters=("added", "skipped"))


@dataclass(slots=True)
class _Held:
    """A job this runner holds."""

    tenant_id: str
    lease: JobLease
    valid_until: float  # the lease's expiry as last written: no batch starts after it
    task: asyncio.Task[None] | None = None


class JobRunner:
    def __init__(self, store: RepoStore, events: EventPublisher, spool: Path, concurrency: int = 2,
                 runner_id: str = "", lease_ttl_s: float = 10.0, stop_timeout_s: float = 30.0,
                 max_item_bytes: int | None = None) -> None:
        """``runner_id`` names this runner in the jobs' leases (the data directory's id: a restarted node
        takes its own jobs back at once). ``spool``: where jobs from before leases kept their zip.
        ``max_item_bytes``: the most one member may expand to (an image's byte limit)."""
        self.store = store
        self.events = events
        self.spool = spool
        self.runner_id = runner_id
        self.lease_ttl_s = lease_ttl_s
        self.stop_timeout_s = stop_timeout_s
        self.max_item_bytes = max_item_bytes
        # Items analysed at once: the models release the GIL, so 2 fill 2 cores.
        self.concurrency = concurrency
        self.kinds: dict[str, JobKind] = {}
        self._tasks: set[asyncio.Task[None]] = set()
        self._held: dict[str, _Held] = {}
        self._stopping = False

    def register(self, kind: JobKind) -> None:
        self.kinds[kind.name] = kind

    async def submit_zip(self, tenant_id: str, kind: str, params: dict[str, Any], data: bytes, *, max_files: int,
                         max_total_bytes: int) -> dict[str, Any]:
        items = items_from_zip(data, max_files, max_total_bytes, nested=self.kinds[kind].nested,
                               max_item_bytes=self.max_item_bytes)
        now = time.time()
        job_id = await asyncio.to_thread(self.store.create_job, tenant_id, kind, len(items), params, self.runner_id,
                                         data=data, lease_ttl_s=self.lease_ttl_s)
        self._hold(tenant_id, job_id, JobLease(self.runner_id, 1), now)
        return await asyncio.to_thread(self.store.job, tenant_id, job_id)

    async def job(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        """A job's status, progress and result."""
        return await asyncio.to_thread(self.store.job, tenant_id, job_id)

    async def cancel(self, tenant_id: str, job_id: str) -> dict[str, Any]:
        """Cancel an unfinished job (its runner stops after the items in hand); Conflict if it has ended."""
        return await asyncio.to_thread(self.store.cancel_job, tenant_id, job_id)

    def _write(self, path: Path, data: bytes) -> None:
        """A spooled zip, as jobs from before leases kept their input."""
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        with tmp.open("wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        tmp.replace(path)

    def resume_all(self) -> int:
        """At start (on the event loop): take back our unfinished jobs and those no live runner holds; drop
        spooled zips of jobs that ended while we were down (cancelled)."""
        claimed = self._claim(time.time(), set(self._held), restarted=True)
        for tenant_id, job_id, lease, now in claimed:
            self._hold(tenant_id, job_id, lease, now)
        for spooled in self.spool.glob("*.zip") if self.spool.is_dir() else ():
            if spooled.stem not in self._held:
                spooled.unlink(missing_ok=True)
        return len(claimed)

    async def keep_leases(self) -> None:
        """While the server runs: renew our jobs' leases, and resume jobs whose runner died (on a thread of
        its own: renewals must not queue behind the requests' work in the default executor)."""
        thread = ThreadPoolExecutor(1, thread_name_prefix="job-leases")
        try:
            while True:
                await asyncio.sleep(self.lease_ttl_s / 3)  # a heartbeat: a timer by nature
                try:
                    await self._tick(thread)
                except Exception:  # the database may be away: our jobs pause at their lease's expiry
                    log.exception("job leases not kept this time")
        finally:
            thread.shutdown(wait=False)  # a renewal in progress ends on its own; the loop does not wait for it

    async def _tick(self, thread: ThreadPoolExecutor) -> None:
        loop = asyncio.get_running_loop()
        held = {job_id: h.lease for job_id, h in self._held.items()}
        now = time.time()
        if held:
            renewed = await loop.run_in_executor(thread, self.store.renew_jobs, held, self.lease_ttl_s, now)
            for job_id, lease in held.items():
                h = self._held.get(job_id)
                if h is None or h.lease != lease:
                    continue
                if job_id in renewed:
                    h.valid_until = now + self.lease_ttl_s
                else:  # cancelled, or taken by another runner: it stops before its next batch
                    h.valid_until = 0.0
        if self._stopping:
            return
        for tenant_id, job_id, lease, claimed_at in await loop.run_in_executor(thread, self._claim, time.time(),
                                                                                 set(self._held)):
            self._hold(tenant_id, job_id, lease, claimed_at)

    def _claim(self, now: float, held: set[str], *,
               restarted: bool = False) -> list[tuple[str, str, JobLease, float]]:
        """Claim the jobs we may run, other than those ``held`` (blocking); ``restarted``: at start, our own
        unfinished jobs too, whatever their lease says (the process that held them is gone)."""
        claimed = []
        for job in self.store.unheld_jobs(self.runner_id, now, restarted=restarted):
            if job.job_id in held:
                continue
            if not job.has_input and not (self.spool / f"{job.job_id}.zip").is_file():
                continue  # a job from before leases: its zip is in another node's spool
            lease = self.store.claim_job(job, self.runner_id, self.lease_ttl_s, now)
            if lease is None:
                continue  # another runner was quicker
            if job.runner not in (None, self.runner_id):
                log.warning("job %s: its runner %s stopped renewing its lease; resuming it here", job.job_id,
                            job.runner)
            claimed.append((job.tenant_id, job.job_id, lease, now))
        return claimed

    def _hold(self, tenant_id: str, job_id: str, lease: JobLease, claimed_at: float) -> None:
        held = self._held[job_id] = _Held(tenant_id, lease, claimed_at + self.lease_ttl_s)
        task = asyncio.get_running_loop().create_task(self._run(tenant_id, job_id, held))
        held.task = task
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def stop(self) -> None:
        """Stop after the batches in hand (for ``stop_timeout_s`` at most), and release the leases of the jobs
        that stopped cleanly, so that another node resumes them at once (one cut short waits for its lease's
        expiry: its last batch may still be being written)."""
        self._stopping = True
        if self._tasks:
            _, pending = await asyncio.wait(list(self._tasks), timeout=self.stop_timeout_s)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            clean = {job_id: h.lease for job_id, h in self._held.items() if h.task not in pending}
        else:
            clean = {job_id: h.lease for job_id, h in self._held.items()}
        if clean:
            await asyncio.to_thread(self.store.release_jobs, clean)

    def _publish(self, job: dict[str, Any]) -> None:
        self.events.publish(job_topic(job["id"]), JobProgress(
            job=job["id"], kind=job["kind"], status=job["status"], done=job["done"], total=job["total"],
            result={k: v for k, v in job["result"].items() if k != "params"}))

    def _runnable(self, held: _Held) -> bool:
        return not self._stopping and time.time() < held.valid_until

    async def _run(self, tenant_id: str, job_id: str, held: _Held) -> None:
        try:
            if await self._run_held(tenant_id, job_id, held):
                await asyncio.to_thread((self.spool / f"{job_id}.zip").unlink, True)
        finally:
            if self._held.get(job_id) is held and not self._stopping:
                del self._held[job_id]

    async def _run_held(self, tenant_id: str, job_id: str, held: _Held) -> bool:
        """Run the job from its last batch; True when it ended (done, failed or cancelled)."""
        store, lease = self.store, held.lease
        job = await asyncio.to_thread(store.job, tenant_id, job_id)
        result = job["result"]
        result.setdefault("failed", [])
        kind = self.kinds.get(job["kind"])
        for counter in kind.counters if kind else ():
            result.setdefault(counter, 0)
        try:
            if kind is None:
                raise BadParam(f"no job kind {job['kind']!r} in this server")
            data = await asyncio.to_thread(store.job_input, job_id)
            if data is None:  # a job from before leases: its zip is in our spool
                data = await asyncio.to_thread((self.spool / f"{job_id}.zip").read_bytes)
            items = [replace(item, key=f"{job_id}/{position}")
                     for position, item in enumerate(items_from_zip(data, 1 << 30, 1 << 40, nested=kind.nested,
                                                                    max_item_bytes=self.max_item_bytes))]
        except (OSError, ApiError) as exc:
            await asyncio.to_thread(store.update_job, job_id, "failed", job["done"], result | {"error": str(exc)},
                                    lease)
            self._publish(await asyncio.to_thread(store.job, tenant_id, job_id))
            return True
        try:
            ended = await self._items(tenant_id, job_id, kind, items, zipfile.ZipFile(io.BytesIO(data)), job["done"],
                                      result, held)
        except Exception as exc:  # never a job that stays unfinished (and crashes again at every start)
            log.exception("job %s failed", job_id)
            result["error"] = f"unexpected error: {exc!r}"[:500]
            ended = await asyncio.to_thread(store.update_job, job_id, "failed", job["done"], result, lease)
            ended = True if ended else await self._cancelled(tenant_id, job_id)
        if ended:
            self._publish(await asyncio.to_thread(store.job, tenant_id, job_id))  # done, failed or cancelled
        return ended

    async def _cancelled(self, tenant_id: str, job_id: str) -> bool:
        job = await asyncio.to_thread(self.store.job, tenant_id, job_id)
        return bool(job["status"] == "cancelled")

    async def _items(self, tenant_id: str, job_id: str, kind: JobKind, items: list[JobItem],
                     archive: zipfile.ZipFile, done: int, result: dict[str, Any], held: _Held) -> bool:
        """The items from ``done`` on; True when the job ended (done, or cancelled), False when this runner
        lost it or stops (another runner, or this one at its next start, resumes it)."""
        store, lease = self.store, held.lease

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
        while done < len(items):
            if not self._runnable(held):
                if not self._stopping:
                    log.warning("job %s: lease %d lost or not renewed in time; leaving the job", job_id, lease.epoch)
                return False
            batch = items[done : done + self.concurrency]
            await asyncio.gather(*(one(item) for item in batch))
            done += len(batch)
            if not await asyncio.to_thread(store.update_job, job_id, "running", done, result, lease):
                return await self._cancelled(tenant_id, job_id)  # else taken by another runner
            self._publish({"id": job_id, "kind": kind.name, "status": "running", "done": done,
                           "total": len(items), "result": result})
        if await asyncio.to_thread(store.update_job, job_id, "done", done, result, lease):
            return True
        return await self._cancelled(tenant_id, job_id)
