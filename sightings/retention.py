"""Retention: each tenant's sightings forget on schedule, in small transactions.

Per tenant (its own settings, else the configured defaults), by the time a
sighting was seen: recognised and unknown sightings are deleted after their
spans; crops and embeddings are dropped sooner if so set, the sighting itself
kept (e.g. the event for a year, the crop for a week). The search index
forgets with the embeddings.
"""

from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field

from .service import SightingService

__all__ = ("RetentionOptions", "RetentionReport", "apply_retention", "run_retention")

log = logging.getLogger(__name__)


@dataclass(slots=True, frozen=True)
class RetentionOptions:
    interval_s: float = 3600.0
    chunk: int = 5000  # rows per transaction: writers and readers get in between


@dataclass(slots=True)
class RetentionReport:
    deleted: int = 0
    crops: int = 0
    embeddings: int = 0
    tenants: list[str] = field(default_factory=list)


async def apply_retention(service: SightingService, options: RetentionOptions = RetentionOptions(),
                          now: float | None = None) -> RetentionReport:
    """One pass over every tenant that has sightings."""
    now = time.time() if now is None else now
    store, index = service.store, service.index
    report = RetentionReport()
    for tenant in await asyncio.to_thread(store.tenants):
        rules, _ = await service.retention(tenant)
        report.tenants.append(tenant)
        for span, kinds in ((rules.recognized_s, ["recognized"]), (rules.unknown_s, ["unknown", "erased"])):
            if span is None:
                continue
            while ids := await asyncio.to_thread(store.expire, tenant, kinds, now - span, options.chunk):
                await asyncio.to_thread(index.remove, tenant, ids)
                report.deleted += len(ids)
        if rules.crop_s is not None:
            while dropped := await asyncio.to_thread(store.drop_crops, tenant, now - rules.crop_s, options.chunk):
                report.crops += dropped
        if rules.embedding_s is not None:
            cutoff = now - rules.embedding_s
            while ids := await asyncio.to_thread(store.drop_embeddings, tenant, cutoff, options.chunk):
                report.embeddings += len(ids)
            await asyncio.to_thread(index.drop_before, tenant, cutoff)
    return report


async def run_retention(service: SightingService, options: RetentionOptions) -> None:
    """A pass every ``interval_s`` while the app runs (the first one at start)."""
    while True:
        try:
            report = await apply_retention(service, options)
            if report.deleted or report.crops or report.embeddings:
                log.info("sightings retention: %d deleted, %d crops and %d embeddings dropped", report.deleted,
                         report.crops, report.embeddings)
        except Exception:  # the database away: the next pass does it
            log.exception("sightings retention pass failed")
        await asyncio.sleep(options.interval_s)
