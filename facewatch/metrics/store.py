"""Sizes of what is stored (tenants, galleries, subjects, faces, groups), jobs by state, re-embedding
progress: read from the database at each scrape (off the event loop)."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import Engine, Table, func, select

from grouping.store import group_faces, groups
from repo import schema
from repo.reembed import Reembedder

__all__ = ("StoreCollector", "ReembedCollector")

_SIZES: tuple[tuple[str, Table, str], ...] = (
    ("facewatch_repo_tenants", schema.tenants, "tenants"),
    ("facewatch_repo_galleries", schema.galleries, "galleries"),
    ("facewatch_repo_subjects", schema.subjects, "subjects"),
    ("facewatch_repo_faces", schema.faces, "enrolled faces"),
    ("facewatch_repo_negatives", schema.negatives, "negative examples"),
    ("facewatch_grouping_groups", groups, "groups of unknown faces"),
    ("facewatch_grouping_faces", group_faces, "grouped faces"),
)


class StoreCollector(Collector):
    def __init__(self, engine: Engine, grouping: bool) -> None:
        """``grouping``: whether grouping's tables exist (grouping enabled)."""
        self.engine = engine
        self.grouping = grouping

    def collect(self) -> Iterator[Metric]:
        with self.engine.connect() as conn:
            for name, table, text in _SIZES:
                if table in (groups, group_faces) and not self.grouping:
                    continue
                count = conn.execute(select(func.count()).select_from(table)).scalar_one()
                yield GaugeMetricFamily(name, f"{text} stored", value=float(count))
            jobs = GaugeMetricFamily("facewatch_jobs", "jobs by kind and status", labels=["kind", "status"])
            rows = conn.execute(select(schema.jobs.c.kind, schema.jobs.c.status, func.count())
                                .group_by(schema.jobs.c.kind, schema.jobs.c.status)).all()
            for kind, status, count in rows:
                jobs.add_metric([kind, status], float(count))
        yield jobs


class ReembedCollector(Collector):
    """Progress of bringing faces stored by another embedding model over to the current one."""

    def __init__(self, reembedders: Sequence[tuple[str, Reembedder]]) -> None:
        self.reembedders = reembedders

    def collect(self) -> Iterator[Metric]:
        families = {key: GaugeMetricFamily(f"facewatch_reembed_{key}", text, labels=["store"])
                    for key, text in (("pending", "faces on another model when the run started"),
                                      ("done", "faces re-embedded"), ("failed", "faces with no usable source"),
                                      ("running", "1 while a run goes on"))}
        for store, reembedder in self.reembedders:
            status = reembedder.status
            for key, value in (("pending", status.pending), ("done", status.done), ("failed", status.failed),
                               ("running", int(status.running))):
                families[key].add_metric([store], float(value))
        yield from families.values()
