"""Placing unknown faces when other nodes change the groups, on SQLite and PostgreSQL.

The service runs here on a real database; its repository is a stand-in that says only the embedding
size and model id (all GroupingService asks of it when faces come with their embeddings).
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import numpy as np
import pytest

from grouping.service import GroupingOptions, GroupingService
from grouping.store import GroupStore, NewFace
from repo.events import NullPublisher
from repo.service import FaceRepository
from repo.store import RepoStore, open_store

from .test_repo_api import PG, _drop_database, _postgres_database

DIM = 8


@dataclass
class _Embedder:
    dim: int = DIM
    model_id: str = "test-model"


@dataclass
class _Analyzer:
    embedder: _Embedder


@dataclass
class _Repo:
    analyzer: _Analyzer


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[RepoStore]:
    name = _postgres_database() if request.param == "postgres" else None
    opened = open_store(f"{PG}/{name}" if name else f"sqlite:///{tmp_path / 'g.db'}")
    yield opened
    opened.close()
    if name:
        _drop_database(name)


def _service(store: RepoStore) -> GroupingService:
    repo = cast(FaceRepository, _Repo(_Analyzer(_Embedder())))
    return GroupingService(GroupStore(store), repo, NullPublisher(), GroupingOptions(threshold=0.5))


def _face(vector: list[float], event_id: str | None = None) -> NewFace:
    v = np.asarray(vector, np.float32)
    return NewFace(v / np.linalg.norm(v), "test-model", "camera", 1.0, 0.9, camera="cam", track=1,
                   event_id=event_id)


def _run(coro: Any) -> Any:
    return asyncio.run(coro)


def test_a_redelivered_event_is_placed_once_even_by_another_node(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    one, other = _service(store), _service(store)  # two nodes on one database
    first = _run(one.add_face(tenant, _face([1, 0, 0, 0, 0, 0, 0, 0], "event-1")))
    again = _run(other.add_face(tenant, _face([1, 0, 0, 0, 0, 0, 0, 0], "event-1")))
    assert again == (first[0], first[1], False)
    groups, total = _run(one.list_groups(tenant, camera=None, since=None, until=None, status=None, offset=0,
                                         limit=10))
    assert total == 1 and groups[0].face_count == 1


def test_a_group_deleted_on_another_node_is_not_a_lost_face(store: RepoStore) -> None:
    tenant = store.create_tenant("acme")
    here, there = _service(store), _service(store)
    group, _, created = _run(here.add_face(tenant, _face([1, 0.1, 0, 0, 0, 0, 0, 0], "a")))
    assert created
    assert there.load() == 1
    _run(there.delete(tenant, group))  # this node's index still has the group
    placed_group, face_id, created = _run(here.add_face(tenant, _face([1, 0.12, 0, 0, 0, 0, 0, 0], "b")))
    assert created and placed_group != group  # placed again, in a new group: not dropped
    stored = _run(here.group(tenant, placed_group))
    assert stored.face_count == 1 and stored.best_face == face_id
